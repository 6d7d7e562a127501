//! The console's administrators and their sessions.

use sqlx::FromRow;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Store, StoreError, audit};

/// An administrator. `Debug` leaves out the password hash.
#[derive(Clone, FromRow)]
pub struct AdminUserRow {
    pub id: Uuid,
    pub name: String,
    pub password_hash: String,
    pub role: String,
    pub enabled: bool,
    pub created_at: OffsetDateTime,
    pub last_sign_in_at: Option<OffsetDateTime>,
}

impl std::fmt::Debug for AdminUserRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminUserRow").field("name", &self.name).field("role", &self.role).finish_non_exhaustive()
    }
}

/// A live session and who it belongs to.
#[derive(Debug, Clone, FromRow)]
pub struct AdminSession {
    pub user_id: Uuid,
    pub name: String,
    pub role: String,
    pub csrf_token: String,
}

/// A session ends after this many hours even when in use (sign in again).
const MAX_SESSION_HOURS: i32 = 12;

macro_rules! admin_columns {
    () => {
        "id, name, password_hash, role, enabled, created_at, last_sign_in_at"
    };
}

impl Store {
    pub async fn admin_users(&self) -> Result<Vec<AdminUserRow>, StoreError> {
        let sql = concat!("select ", admin_columns!(), " from admin_users order by lower(name)");
        Ok(sqlx::query_as::<_, AdminUserRow>(sql).fetch_all(&self.pool).await?)
    }

    pub async fn admin_user(&self, name: &str) -> Result<Option<AdminUserRow>, StoreError> {
        let sql = concat!("select ", admin_columns!(), " from admin_users where lower(name) = lower($1)");
        Ok(sqlx::query_as::<_, AdminUserRow>(sql).bind(name).fetch_optional(&self.pool).await?)
    }

    /// Creates an administrator, with an audit record (without the hash).
    pub async fn create_admin_user(
        &self,
        name: &str,
        password_hash: &str,
        role: &str,
        actor: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query("insert into admin_users (id, name, password_hash, role) values ($1, $2, $3, $4)")
            .bind(Uuid::now_v7())
            .bind(name)
            .bind(password_hash)
            .bind(role)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::conflict_on_unique(e, || format!("an administrator named {name:?} exists")))?;
        let after = serde_json::json!({ "name": name, "role": role });
        audit::record(&mut tx, actor, "create", "admin_user", name, None, Some(after)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Creates `name` only if there is no administrator at all (the first start);
    /// returns whether it did. Two nodes starting together create one.
    pub async fn bootstrap_admin_user(&self, name: &str, password_hash: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query("select pg_advisory_xact_lock(hashtext('postern.admin_users'))").execute(&mut *tx).await?;
        let any: bool = sqlx::query_scalar("select exists (select 1 from admin_users)").fetch_one(&mut *tx).await?;
        if any {
            return Ok(false);
        }
        sqlx::query("insert into admin_users (id, name, password_hash, role) values ($1, $2, $3, 'admin')")
            .bind(Uuid::now_v7())
            .bind(name)
            .bind(password_hash)
            .execute(&mut *tx)
            .await?;
        let after = serde_json::json!({ "name": name, "role": "admin" });
        audit::record(&mut tx, "bootstrap", "create", "admin_user", name, None, Some(after)).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn create_admin_session(&self, user: Uuid, token_sha256: &[u8], csrf: &str) -> Result<(), StoreError> {
        sqlx::query("insert into admin_sessions (token_sha256, user_id, csrf_token) values ($1, $2, $3)")
            .bind(token_sha256)
            .bind(user)
            .bind(csrf)
            .execute(&self.pool)
            .await?;
        sqlx::query("update admin_users set last_sign_in_at = now() where id = $1")
            .bind(user)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The session with this token if it was used within `idle_secs`, is younger than
    /// `MAX_SESSION_HOURS`, and its user is enabled; using it extends its idle time.
    pub async fn admin_session(&self, token_sha256: &[u8], idle_secs: i64) -> Result<Option<AdminSession>, StoreError> {
        Ok(sqlx::query_as::<_, AdminSession>(
            "update admin_sessions s set last_seen_at = now() from admin_users u \
             where s.token_sha256 = $1 and u.id = s.user_id and u.enabled \
             and s.last_seen_at > now() - make_interval(secs => $2) \
             and s.created_at > now() - make_interval(hours => $3) \
             returning s.user_id, u.name, u.role, s.csrf_token",
        )
        .bind(token_sha256)
        .bind(idle_secs as f64)
        .bind(MAX_SESSION_HOURS)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Whether the session is still valid, without extending it: an open live tail must
    /// not keep an unattended browser signed in.
    pub async fn admin_session_is_live(&self, token_sha256: &[u8], idle_secs: i64) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar(
            "select exists (select 1 from admin_sessions s join admin_users u on u.id = s.user_id \
             where s.token_sha256 = $1 and u.enabled and s.last_seen_at > now() - make_interval(secs => $2) \
             and s.created_at > now() - make_interval(hours => $3))",
        )
        .bind(token_sha256)
        .bind(idle_secs as f64)
        .bind(MAX_SESSION_HOURS)
        .fetch_one(&self.pool)
        .await?)
    }

    pub async fn delete_admin_session(&self, token_sha256: &[u8]) -> Result<(), StoreError> {
        sqlx::query("delete from admin_sessions where token_sha256 = $1")
            .bind(token_sha256)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
