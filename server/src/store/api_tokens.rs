//! API tokens: stored as SHA-256 digests, looked up by digest, revocable, audited.

use sqlx::FromRow;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Store, StoreError, audit};

#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct ApiTokenRow {
    pub id: Uuid,
    pub name: String,
    pub scope: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    /// After this the token is refused (`None`: it never expires).
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// The token that created this one through the API (revoked with it).
    pub created_by: Option<Uuid>,
}

/// A new token's particulars.
#[derive(Debug)]
pub struct NewApiToken<'a> {
    pub name: &'a str,
    pub scope: &'a str,
    pub sha256: &'a [u8],
    pub expires_at: Option<OffsetDateTime>,
    pub created_by: Option<Uuid>,
}

const TOKEN_COLUMNS: &str = "id, name, scope, created_at, last_used_at, revoked_at, expires_at, created_by";

/// A token in force: not revoked, not expired.
const LIVE: &str = "revoked_at is null and (expires_at is null or expires_at > now())";

impl Store {
    pub async fn create_api_token(&self, new: &NewApiToken<'_>, actor: &str) -> Result<ApiTokenRow, StoreError> {
        let name = new.name;
        let mut tx = self.begin().await?;
        // A token that creates one must itself be in force at that moment (not revoked
        // in between): checked under a lock on its row, which revocation also takes.
        if let Some(parent) = new.created_by {
            let live: Option<Uuid> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "select id from api_tokens where id = $1 and {LIVE} for update"
            )))
            .bind(parent)
            .fetch_optional(&mut *tx)
            .await?;
            if live.is_none() {
                return Err(StoreError::Conflict("the creating token is revoked or expired".into()));
            }
        }
        let row = sqlx::query_as::<_, ApiTokenRow>(sqlx::AssertSqlSafe(format!(
            "insert into api_tokens (id, name, scope, token_sha256, expires_at, created_by) \
             values ($1, $2, $3, $4, $5, $6) returning {TOKEN_COLUMNS}"
        )))
        .bind(Uuid::now_v7())
        .bind(name)
        .bind(new.scope)
        .bind(new.sha256)
        .bind(new.expires_at)
        .bind(new.created_by)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| StoreError::conflict_on_unique(e, || format!("an API token named {name:?} exists")))?;
        let after = serde_json::to_value(&row).ok();
        audit::record(&mut tx, actor, "create", "api_token", name, None, after).await?;
        tx.commit().await?;
        Ok(row)
    }

    pub async fn api_tokens(&self) -> Result<Vec<ApiTokenRow>, StoreError> {
        Ok(sqlx::query_as::<_, ApiTokenRow>(sqlx::AssertSqlSafe(format!(
            "select {TOKEN_COLUMNS} from api_tokens order by lower(name), created_at"
        )))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Revokes the live token named `name` and every token it created, directly or
    /// through tokens it created (whether those are still live or not). Returns the
    /// names of the tokens revoked, the named one first.
    pub async fn revoke_api_token(&self, name: &str, actor: &str) -> Result<Vec<String>, StoreError> {
        let mut tx = self.begin().await?;
        let root: Option<(Uuid, String)> = sqlx::query_as(
            "select id, name from api_tokens where lower(name) = lower($1) and revoked_at is null for update",
        )
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        let (root, name) = root.ok_or_else(|| StoreError::NotFound(format!("API token {name:?}")))?;
        let descendants: Vec<String> = sqlx::query_scalar(
            "with recursive created(id) as ( \
                 select id from api_tokens where created_by = $1 \
                 union select t.id from api_tokens t join created c on t.created_by = c.id), \
             revoked as (update api_tokens set revoked_at = now() \
                 where id in (select id from created) and revoked_at is null returning name, created_at) \
             select name from revoked order by created_at",
        )
        .bind(root)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query("update api_tokens set revoked_at = now() where id = $1").bind(root).execute(&mut *tx).await?;
        let after = serde_json::json!({ "also_revoked": descendants });
        audit::record(&mut tx, actor, "revoke", "api_token", &name, None, Some(after)).await?;
        tx.commit().await?;
        Ok(std::iter::once(name).chain(descendants).collect())
    }

    /// The live (not revoked, not expired) token with this digest: its id, name and scope.
    pub async fn api_token_by_digest(&self, sha256: &[u8]) -> Result<Option<(Uuid, String, String)>, StoreError> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "select id, name, scope from api_tokens where token_sha256 = $1 and {LIVE}"
        )))
        .bind(sha256)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Whether the token exists and is neither revoked nor expired.
    pub async fn api_token_is_live(&self, id: Uuid) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "select exists (select 1 from api_tokens where id = $1 and {LIVE})"
        )))
        .bind(id)
        .fetch_one(&self.pool)
        .await?)
    }

    pub async fn touch_api_token(&self, id: Uuid) -> Result<(), StoreError> {
        sqlx::query("update api_tokens set last_used_at = now() where id = $1").bind(id).execute(&self.relaxed).await?;
        Ok(())
    }
}
