//! The SAML identity provider's configuration (one row).

use serde_json::json;
use sqlx::FromRow;

use super::{Store, StoreError};

/// The stored identity provider and its role mapping.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct IdentityProviderRow {
    pub metadata_xml: String,
    pub entity_id: String,
    pub sso_url: String,
    pub signing_certificates: Vec<Vec<u8>>,
    pub group_attribute: String,
    pub admin_group: Option<String>,
    pub viewer_group: Option<String>,
    pub enabled: bool,
    pub local_sign_in: bool,
    pub version: i64,
}

impl IdentityProviderRow {
    /// What the audit log records: never the whole metadata, but what identifies it.
    fn audited(&self) -> serde_json::Value {
        json!({
            "entity_id": self.entity_id,
            "sso_url": self.sso_url,
            "signing_certificates": self.signing_certificates.len(),
            "group_attribute": self.group_attribute,
            "admin_group": self.admin_group,
            "viewer_group": self.viewer_group,
            "enabled": self.enabled,
            "local_sign_in": self.local_sign_in,
        })
    }
}

impl Store {
    pub async fn identity_provider(&self) -> Result<Option<IdentityProviderRow>, StoreError> {
        Ok(sqlx::query_as::<_, IdentityProviderRow>(
            "select metadata_xml, entity_id, sso_url, signing_certificates, group_attribute, admin_group, \
             viewer_group, enabled, local_sign_in, version from saml_identity_provider",
        )
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Stores the identity provider (replacing the one before), audited with its
    /// identifying fields before and after.
    pub async fn save_identity_provider(&self, idp: &IdentityProviderRow, actor: &str) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let before: Option<IdentityProviderRow> = sqlx::query_as(
            "select metadata_xml, entity_id, sso_url, signing_certificates, group_attribute, admin_group, \
             viewer_group, enabled, local_sign_in, version from saml_identity_provider for update",
        )
        .fetch_optional(&mut *tx)
        .await?;
        sqlx::query(
            "insert into saml_identity_provider (metadata_xml, entity_id, sso_url, signing_certificates, \
             group_attribute, admin_group, viewer_group, enabled, local_sign_in) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             on conflict (singleton) do update set metadata_xml = excluded.metadata_xml, \
             entity_id = excluded.entity_id, sso_url = excluded.sso_url, \
             signing_certificates = excluded.signing_certificates, group_attribute = excluded.group_attribute, \
             admin_group = excluded.admin_group, viewer_group = excluded.viewer_group, enabled = excluded.enabled, \
             local_sign_in = excluded.local_sign_in, version = saml_identity_provider.version + 1, updated_at = now()",
        )
        .bind(&idp.metadata_xml)
        .bind(&idp.entity_id)
        .bind(&idp.sso_url)
        .bind(&idp.signing_certificates)
        .bind(&idp.group_attribute)
        .bind(&idp.admin_group)
        .bind(&idp.viewer_group)
        .bind(idp.enabled)
        .bind(idp.local_sign_in)
        .execute(&mut *tx)
        .await?;
        let action = if before.is_some() { "set" } else { "new" };
        let before = before.map(|b| b.audited());
        super::audit::record(&mut tx, actor, action, "identity_provider", &idp.entity_id, before, Some(idp.audited()))
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// An administrator signing in through the identity provider.
#[derive(Debug, Clone)]
pub struct FederatedSignIn<'a> {
    pub idp_entity_id: &'a str,
    pub name_id: &'a str,
    pub role: &'a str,
    pub request_id: &'a str,
    pub browser_sha256: &'a [u8],
    pub assertion_id: &'a str,
    pub assertion_valid_until: time::OffsetDateTime,
}

/// What a federated sign-in ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignInOutcome {
    /// The user (created or updated to the role the groups grant now), and where to go.
    SignedIn { user: uuid::Uuid, relay_path: String },
    /// The request was not this browser's, expired, or already used.
    UnknownRequest,
    /// The assertion was accepted before.
    Replayed,
    /// A local administrator already has that name.
    NameTaken,
    /// The administrator was disabled here (the identity provider cannot re-enable them).
    Disabled,
}

impl Store {
    /// Remembers an AuthnRequest issued to a browser (usable once, until it expires), and
    /// forgets expired ones.
    pub async fn save_saml_request(
        &self,
        id: &str,
        browser_sha256: &[u8],
        relay_path: &str,
        lifetime_secs: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("delete from saml_requests where expires_at < now()").execute(&self.pool).await?;
        sqlx::query(
            "insert into saml_requests (id, browser_sha256, relay_path, expires_at) \
             values ($1, $2, $3, now() + make_interval(secs => $4))",
        )
        .bind(id)
        .bind(browser_sha256)
        .bind(relay_path)
        .bind(lifetime_secs as f64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The unexpired requests this browser started.
    pub async fn pending_saml_requests(&self, browser_sha256: &[u8]) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar("select id from saml_requests where browser_sha256 = $1 and expires_at > now()")
            .bind(browser_sha256)
            .fetch_all(&self.pool)
            .await?)
    }

    /// In one transaction: uses up the request (it must still be this browser's), records
    /// the assertion in the replay cache (refused if seen), creates or updates the
    /// administrator keyed by (IdP, NameID) with the role granted now, and audits it.
    pub async fn federated_sign_in(&self, s: &FederatedSignIn<'_>) -> Result<SignInOutcome, StoreError> {
        let mut tx = self.begin().await?;
        let relay_path: Option<String> = sqlx::query_scalar(
            "delete from saml_requests where id = $1 and browser_sha256 = $2 and expires_at > now() returning relay_path",
        )
        .bind(s.request_id)
        .bind(s.browser_sha256)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(relay_path) = relay_path else { return Ok(SignInOutcome::UnknownRequest) };
        sqlx::query("delete from saml_assertions_seen where expires_at < now()").execute(&mut *tx).await?;
        let fresh =
            sqlx::query("insert into saml_assertions_seen (id, expires_at) values ($1, $2) on conflict do nothing")
                .bind(s.assertion_id)
                .bind(s.assertion_valid_until)
                .execute(&mut *tx)
                .await?;
        if fresh.rows_affected() == 0 {
            tx.commit().await?;
            return Ok(SignInOutcome::Replayed);
        }
        let existing: Option<(uuid::Uuid, bool)> =
            sqlx::query_as("select id, enabled from admin_users where idp_entity_id = $1 and name_id = $2")
                .bind(s.idp_entity_id)
                .bind(s.name_id)
                .fetch_optional(&mut *tx)
                .await?;
        let user = match existing {
            Some((_, false)) => {
                tx.commit().await?;
                return Ok(SignInOutcome::Disabled);
            }
            Some((id, true)) => {
                sqlx::query("update admin_users set role = $2, last_sign_in_at = now() where id = $1")
                    .bind(id)
                    .bind(s.role)
                    .execute(&mut *tx)
                    .await?;
                id
            }
            None => {
                let id = uuid::Uuid::now_v7();
                // No password: '!' is not a PHC string, so a password never verifies.
                let created = sqlx::query(
                    "insert into admin_users (id, name, password_hash, role, idp_entity_id, name_id, last_sign_in_at) \
                     values ($1, $2, '!', $3, $4, $2, now()) on conflict do nothing",
                )
                .bind(id)
                .bind(s.name_id)
                .bind(s.role)
                .bind(s.idp_entity_id)
                .execute(&mut *tx)
                .await?;
                if created.rows_affected() == 0 {
                    tx.commit().await?;
                    return Ok(SignInOutcome::NameTaken);
                }
                id
            }
        };
        let detail = json!({ "idp": s.idp_entity_id, "name_id": s.name_id, "role": s.role });
        super::audit::record(&mut tx, "saml", "sign-in", "console_sign_in", "saml", None, Some(detail)).await?;
        tx.commit().await?;
        Ok(SignInOutcome::SignedIn { user, relay_path })
    }

    /// Records a refused SSO sign-in in the audit log.
    /// Audits a console sign-in, a refusal or a lockout; `method` is `saml` or `password`.
    pub async fn audit_sign_in(
        &self,
        actor: &str,
        action: &str,
        method: &str,
        detail: serde_json::Value,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        super::audit::record(&mut tx, actor, action, "console_sign_in", method, None, Some(detail)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Turns single sign-on and local (password) sign-in on or off.
    pub async fn set_sign_in_policy(&self, enabled: bool, local_sign_in: bool, actor: &str) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let changed = sqlx::query(
            "update saml_identity_provider set enabled = $1, local_sign_in = $2, version = version + 1, updated_at = now()",
        )
        .bind(enabled)
        .bind(local_sign_in)
        .execute(&mut *tx)
        .await?;
        if changed.rows_affected() == 0 {
            return Err(StoreError::NotFound("identity provider".into()));
        }
        let after = json!({ "enabled": enabled, "local_sign_in": local_sign_in });
        super::audit::record(&mut tx, actor, "set", "sign_in_policy", "saml", None, Some(after)).await?;
        tx.commit().await?;
        Ok(())
    }
}
