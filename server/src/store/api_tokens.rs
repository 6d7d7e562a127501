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
}

impl Store {
    pub async fn create_api_token(
        &self,
        name: &str,
        scope: &str,
        sha256: &[u8],
        actor: &str,
    ) -> Result<ApiTokenRow, StoreError> {
        let mut tx = self.begin().await?;
        let row = sqlx::query_as::<_, ApiTokenRow>(
            "insert into api_tokens (id, name, scope, token_sha256) values ($1, $2, $3, $4) \
             returning id, name, scope, created_at, last_used_at, revoked_at",
        )
        .bind(Uuid::now_v7())
        .bind(name)
        .bind(scope)
        .bind(sha256)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| StoreError::conflict_on_unique(e, || format!("an API token named {name:?} exists")))?;
        let after = serde_json::to_value(&row).ok();
        audit::record(&mut tx, actor, "create", "api_token", name, None, after).await?;
        tx.commit().await?;
        Ok(row)
    }

    pub async fn api_tokens(&self) -> Result<Vec<ApiTokenRow>, StoreError> {
        Ok(sqlx::query_as::<_, ApiTokenRow>(
            "select id, name, scope, created_at, last_used_at, revoked_at from api_tokens order by lower(name), created_at",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn revoke_api_token(&self, name: &str, actor: &str) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let revoked: Option<String> = sqlx::query_scalar(
            "update api_tokens set revoked_at = now() where lower(name) = lower($1) and revoked_at is null returning name",
        )
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        let name = revoked.ok_or_else(|| StoreError::NotFound(format!("API token {name:?}")))?;
        audit::record(&mut tx, actor, "revoke", "api_token", &name, None, None).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The live (not revoked) token with this digest: its name and scope.
    pub async fn api_token_by_digest(&self, sha256: &[u8]) -> Result<Option<(Uuid, String, String)>, StoreError> {
        Ok(sqlx::query_as("select id, name, scope from api_tokens where token_sha256 = $1 and revoked_at is null")
            .bind(sha256)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Whether the token exists and is not revoked.
    pub async fn api_token_is_live(&self, id: Uuid) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar("select exists (select 1 from api_tokens where id = $1 and revoked_at is null)")
            .bind(id)
            .fetch_one(&self.pool)
            .await?)
    }

    pub async fn touch_api_token(&self, id: Uuid) -> Result<(), StoreError> {
        sqlx::query("update api_tokens set last_used_at = now() where id = $1").bind(id).execute(&self.relaxed).await?;
        Ok(())
    }
}
