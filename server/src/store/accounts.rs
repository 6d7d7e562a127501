//! Service accounts, their Send-As grants, and the self-signed certificates generated for
//! TLS connectors. Every account change is audited in its transaction; the audit record
//! never holds a password hash.

use ipnet::IpNet;
use sqlx::FromRow;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{IfMatch, Store, StoreError, audit, precondition};
use crate::domain::{EmailAddress, IpRange, SenderPattern, ServiceAccount};

/// A service account as stored (the grants are read separately). Neither serialized nor
/// `Debug` output shows the password hash.
#[derive(Clone, FromRow, serde::Serialize)]
pub struct ServiceAccountRow {
    pub id: Uuid,
    pub name: String,
    pub address: String,
    #[serde(skip)]
    pub password_hash: String,
    pub enabled: bool,
    pub remote_ip_ranges: Option<Vec<IpNet>>,
    pub max_messages_per_minute: Option<i32>,
    pub max_messages_per_day: Option<i32>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    /// Grows with every change, grants included (the API's ETag).
    pub version: i64,
}

impl std::fmt::Debug for ServiceAccountRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountRow").field("id", &self.id).field("name", &self.name).finish_non_exhaustive()
    }
}

impl ServiceAccountRow {
    fn from_domain(a: &ServiceAccount) -> Self {
        Self {
            id: a.id,
            name: a.name.clone(),
            address: a.address.to_string(),
            password_hash: a.password_hash.clone(),
            enabled: a.enabled,
            remote_ip_ranges: Some(a.remote_ip_ranges.iter().map(IpRange::net).collect())
                .filter(|r: &Vec<IpNet>| !r.is_empty()),
            max_messages_per_minute: a.max_messages_per_minute.map(|v| v as i32),
            max_messages_per_day: a.max_messages_per_day.map(|v| v as i32),
            last_used_at: None,
            version: 0,
        }
    }

    pub fn to_domain(&self, grants: &[String]) -> Result<ServiceAccount, String> {
        let send_as: Result<Vec<SenderPattern>, String> =
            grants.iter().map(|g| SenderPattern::parse(g).map_err(|e| format!("grant {g:?}: {e}"))).collect();
        Ok(ServiceAccount {
            id: self.id,
            name: self.name.clone(),
            address: EmailAddress::parse(&self.address, true).map_err(|e| e.to_string())?,
            password_hash: self.password_hash.clone(),
            enabled: self.enabled,
            remote_ip_ranges: self.remote_ip_ranges.iter().flatten().map(|n| IpRange::from(*n)).collect(),
            max_messages_per_minute: self.max_messages_per_minute.map(|v| v.max(0) as u32),
            max_messages_per_day: self.max_messages_per_day.map(|v| v.max(0) as u32),
            send_as: send_as?,
        })
    }
}

/// One Send-As grant, for listing.
#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct SendAsGrantRow {
    pub account: String,
    pub sender: String,
}

/// A certificate Postern generated for an FQDN. `Debug` never shows the key.
#[derive(Clone, FromRow)]
pub struct GeneratedCertificate {
    pub fqdn: String,
    pub certificate_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for GeneratedCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedCertificate").field("fqdn", &self.fqdn).finish_non_exhaustive()
    }
}

macro_rules! account_columns {
    () => {
        "id, name, address, password_hash, enabled, remote_ip_ranges, max_messages_per_minute, \
         max_messages_per_day, last_used_at, version"
    };
}

/// Every account with its grants, inside the caller's snapshot transaction. An invalid
/// row is left out (and logged): it can then sign nobody in.
pub(super) async fn load_accounts(conn: &mut sqlx::PgConnection) -> Result<Vec<ServiceAccount>, StoreError> {
    let sql = concat!("select ", account_columns!(), " from service_accounts");
    let rows = sqlx::query_as::<_, ServiceAccountRow>(sql).fetch_all(&mut *conn).await?;
    let grants: Vec<(Uuid, String)> =
        sqlx::query_as("select account_id, sender from send_as_grants").fetch_all(&mut *conn).await?;
    let mut by_account: std::collections::HashMap<Uuid, Vec<String>> = std::collections::HashMap::new();
    for (id, sender) in grants {
        by_account.entry(id).or_default().push(sender);
    }
    let mut accounts = Vec::with_capacity(rows.len());
    for row in rows {
        match row.to_domain(by_account.get(&row.id).map_or(&[][..], Vec::as_slice)) {
            Ok(account) => accounts.push(account),
            Err(e) => tracing::error!(account = %row.name, error = %e, "service account ignored: invalid row"),
        }
    }
    Ok(accounts)
}

/// A grant change is a change of its account (whose representation lists its grants).
async fn bump_version(conn: &mut sqlx::PgConnection, account: Uuid) -> Result<(), StoreError> {
    sqlx::query("update service_accounts set version = version + 1 where id = $1").bind(account).execute(conn).await?;
    Ok(())
}

fn to_json<T: serde::Serialize>(value: &T) -> Option<serde_json::Value> {
    serde_json::to_value(value).ok()
}

impl Store {
    pub async fn service_accounts(&self) -> Result<Vec<ServiceAccountRow>, StoreError> {
        let sql = concat!("select ", account_columns!(), " from service_accounts order by lower(name)");
        Ok(sqlx::query_as::<_, ServiceAccountRow>(sql).fetch_all(&self.pool).await?)
    }

    pub async fn service_account(&self, name: &str) -> Result<(ServiceAccountRow, Vec<String>), StoreError> {
        let sql = concat!("select ", account_columns!(), " from service_accounts where lower(name) = lower($1)");
        let row = sqlx::query_as::<_, ServiceAccountRow>(sql)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("service account {name:?}")))?;
        let grants = sqlx::query_scalar("select sender from send_as_grants where account_id = $1 order by sender")
            .bind(row.id)
            .fetch_all(&self.pool)
            .await?;
        Ok((row, grants))
    }

    /// Inserts a new account or replaces the one with the same id (grants are kept).
    /// `action` names the change for the audit log ("create", "update", "set_password").
    pub async fn save_service_account(
        &self,
        account: &ServiceAccount,
        action: &str,
        actor: &str,
        if_match: Option<&IfMatch>,
    ) -> Result<(), StoreError> {
        let mut row = ServiceAccountRow::from_domain(account);
        let mut tx = self.begin().await?;
        // A client signs in with an account's name or its address, so one login must
        // mean one account across both columns. The lock serialises account saves so
        // two concurrent ones cannot both pass this check.
        sqlx::query("select pg_advisory_xact_lock(hashtext('postern.service_accounts'))").execute(&mut *tx).await?;
        let logins = vec![row.name.to_lowercase(), row.address.to_lowercase()];
        let clash: Option<String> = sqlx::query_scalar(
            "select name from service_accounts where id <> $1 and (lower(name) = any($2) or lower(address) = any($2))",
        )
        .bind(row.id)
        .bind(&logins)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(other) = clash {
            return Err(StoreError::Conflict(format!(
                "service account {other:?} already uses {:?} or {:?} as its name or address (a login must name one account)",
                row.name, row.address
            )));
        }
        let before_sql = concat!("select ", account_columns!(), " from service_accounts where id = $1 for update");
        let before = sqlx::query_as::<_, ServiceAccountRow>(before_sql).bind(row.id).fetch_optional(&mut *tx).await?;
        precondition::check(if_match, before.as_ref().map(|b| (b.id, b.version)), || {
            format!("service account {:?}", row.name)
        })?;
        row.version = sqlx::query_scalar(
            "insert into service_accounts (id, name, address, password_hash, enabled, remote_ip_ranges, \
             max_messages_per_minute, max_messages_per_day) values ($1, $2, $3, $4, $5, $6, $7, $8) \
             on conflict (id) do update set name = excluded.name, address = excluded.address, \
             password_hash = excluded.password_hash, enabled = excluded.enabled, \
             remote_ip_ranges = excluded.remote_ip_ranges, max_messages_per_minute = excluded.max_messages_per_minute, \
             max_messages_per_day = excluded.max_messages_per_day, updated_at = now(), \
             version = service_accounts.version + 1 returning version",
        )
        .bind(row.id)
        .bind(&row.name)
        .bind(&row.address)
        .bind(&row.password_hash)
        .bind(row.enabled)
        .bind(&row.remote_ip_ranges)
        .bind(row.max_messages_per_minute)
        .bind(row.max_messages_per_day)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| StoreError::conflict_on_unique(e, || format!("a service account named {:?} exists", row.name)))?;
        let (before, after) = (before.as_ref().and_then(to_json), to_json(&row));
        audit::record(&mut tx, actor, action, "service_account", &row.name, before, after).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn remove_service_account(
        &self,
        name: &str,
        actor: &str,
        if_match: Option<&IfMatch>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let sql = concat!("delete from service_accounts where lower(name) = lower($1) returning ", account_columns!());
        let removed = sqlx::query_as::<_, ServiceAccountRow>(sql)
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("service account {name:?}")))?;
        precondition::check(if_match, Some((removed.id, removed.version)), || format!("service account {name:?}"))?;
        audit::record(&mut tx, actor, "remove", "service_account", &removed.name, to_json(&removed), None).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records that an account signed in. Called at most once a minute per account by the
    /// engine; the column is outside the configuration trigger, so it causes no reload.
    pub async fn touch_service_account(&self, id: Uuid) -> Result<(), StoreError> {
        sqlx::query("update service_accounts set last_used_at = now() where id = $1")
            .bind(id)
            .execute(&self.relaxed)
            .await?;
        Ok(())
    }

    /// Grants Send-As; `Ok(false)` when the grant already existed (nothing changes then).
    pub async fn add_send_as(&self, account: &str, sender: &SenderPattern, actor: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let (id, name): (Uuid, String) =
            sqlx::query_as("select id, name from service_accounts where lower(name) = lower($1) for update")
                .bind(account)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("service account {account:?}")))?;
        let sender = sender.to_string();
        let inserted =
            sqlx::query("insert into send_as_grants (account_id, sender) values ($1, $2) on conflict do nothing")
                .bind(id)
                .bind(&sender)
                .execute(&mut *tx)
                .await?;
        if inserted.rows_affected() == 0 {
            return Ok(false);
        }
        bump_version(&mut tx, id).await?;
        let grant = serde_json::json!({ "account": name, "sender": sender });
        audit::record(&mut tx, actor, "create", "send_as_grant", &format!("{name} -> {sender}"), None, Some(grant))
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn remove_send_as(&self, account: &str, sender: &SenderPattern, actor: &str) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let sender = sender.to_string();
        let removed: Option<(String, Uuid)> = sqlx::query_as(
            "delete from send_as_grants g using service_accounts a \
             where g.account_id = a.id and lower(a.name) = lower($1) and g.sender = $2 returning a.name, a.id",
        )
        .bind(account)
        .bind(&sender)
        .fetch_optional(&mut *tx)
        .await?;
        let (name, id) = removed.ok_or_else(|| StoreError::NotFound(format!("Send-As grant {account} -> {sender}")))?;
        bump_version(&mut tx, id).await?;
        let grant = serde_json::json!({ "account": name, "sender": sender });
        audit::record(&mut tx, actor, "remove", "send_as_grant", &format!("{name} -> {sender}"), Some(grant), None)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every grant, or those of one account.
    pub async fn send_as_grants(&self, account: Option<&str>) -> Result<Vec<SendAsGrantRow>, StoreError> {
        Ok(sqlx::query_as::<_, SendAsGrantRow>(
            "select a.name as account, g.sender from send_as_grants g join service_accounts a on a.id = g.account_id \
             where $1::text is null or lower(a.name) = lower($1) order by lower(a.name), g.sender",
        )
        .bind(account)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The generated certificate for `fqdn`, creating it with `generate` if there is none.
    /// Two nodes racing both generate; the first insert wins and both use it.
    /// The generated certificate for `fqdn`, if one was made.
    pub async fn existing_generated_certificate(&self, fqdn: &str) -> Result<Option<GeneratedCertificate>, StoreError> {
        let select = "select fqdn, certificate_pem, key_pem from generated_certificates where fqdn = $1";
        Ok(sqlx::query_as(select).bind(fqdn).fetch_optional(&self.pool).await?)
    }

    pub async fn generated_certificate(
        &self,
        fqdn: &str,
        generate: impl FnOnce() -> Result<(String, String), String>,
    ) -> Result<(GeneratedCertificate, bool), StoreError> {
        let select = "select fqdn, certificate_pem, key_pem from generated_certificates where fqdn = $1";
        if let Some(found) = sqlx::query_as(select).bind(fqdn).fetch_optional(&self.pool).await? {
            return Ok((found, false));
        }
        let (certificate_pem, key_pem) = generate().map_err(StoreError::Conflict)?;
        let inserted = sqlx::query(
            "insert into generated_certificates (fqdn, certificate_pem, key_pem) values ($1, $2, $3) \
             on conflict (fqdn) do nothing",
        )
        .bind(fqdn)
        .bind(&certificate_pem)
        .bind(&key_pem)
        .execute(&self.pool)
        .await?;
        let found = sqlx::query_as(select).bind(fqdn).fetch_one(&self.pool).await?;
        Ok((found, inserted.rows_affected() == 1))
    }
}
