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
    /// The password was generated or set by someone else: replace it at next sign-in.
    pub must_change_password: bool,
    /// Signed in through the identity provider (has no password).
    pub federated: bool,
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
    pub must_change_password: bool,
}

/// A change to an administrator (each `None` leaves that part as it is).
#[derive(Default)]
pub struct AdminUserChange<'a> {
    pub password_hash: Option<&'a str>,
    pub must_change_password: Option<bool>,
    pub role: Option<&'a str>,
    pub enabled: Option<bool>,
    /// Sessions to keep although the change ends the others (the caller's own, when an
    /// administrator changes their own password).
    pub keep_session: Option<&'a [u8]>,
}

/// A session ends after this many hours even when in use (sign in again).
const MAX_SESSION_HOURS: i32 = 12;

macro_rules! admin_columns {
    () => {
        "id, name, password_hash, role, enabled, created_at, last_sign_in_at, must_change_password, \
         idp_entity_id is not null as federated"
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
        must_change_password: bool,
        actor: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "insert into admin_users (id, name, password_hash, role, must_change_password) values ($1, $2, $3, $4, $5)",
        )
        .bind(Uuid::now_v7())
        .bind(name)
        .bind(password_hash)
        .bind(role)
        .bind(must_change_password)
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
        // The generated password is printed in the log: it must be replaced at first use.
        let mut tx = self.begin().await?;
        sqlx::query("select pg_advisory_xact_lock(hashtext('postern.admin_users'))").execute(&mut *tx).await?;
        let any: bool = sqlx::query_scalar("select exists (select 1 from admin_users)").fetch_one(&mut *tx).await?;
        if any {
            return Ok(false);
        }
        sqlx::query(
            "insert into admin_users (id, name, password_hash, role, must_change_password) \
             values ($1, $2, $3, 'admin', true)",
        )
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
             returning s.user_id, u.name, u.role, s.csrf_token, u.must_change_password",
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

    /// Changes an administrator, ends their sessions (but `keep_session`) when the change
    /// touches the password, the role or whether they are enabled, and audits it. The
    /// last enabled admin can be neither disabled nor made a viewer.
    pub async fn change_admin_user(
        &self,
        name: &str,
        change: &AdminUserChange<'_>,
        actor: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        lock_admin_users(&mut tx).await?;
        let before = admin_for_update(&mut tx, name).await?;
        let role = change.role.unwrap_or(&before.role);
        let enabled = change.enabled.unwrap_or(before.enabled);
        if before.role == "admin" && before.enabled && !(role == "admin" && enabled) {
            refuse_last_admin(&mut tx, before.id, "disabled or made a viewer").await?;
        }
        sqlx::query(
            "update admin_users set password_hash = coalesce($2, password_hash), \
             must_change_password = coalesce($3, must_change_password), role = $4, enabled = $5 where id = $1",
        )
        .bind(before.id)
        .bind(change.password_hash)
        .bind(change.must_change_password)
        .bind(role)
        .bind(enabled)
        .execute(&mut *tx)
        .await?;
        let ends_sessions = change.password_hash.is_some() || role != before.role || enabled != before.enabled;
        let ended = if ends_sessions { end_sessions(&mut tx, before.id, change.keep_session).await? } else { 0 };
        let after = serde_json::json!({
            "name": before.name, "role": role, "enabled": enabled,
            "password_changed": change.password_hash.is_some(),
            "must_change_password": change.must_change_password.unwrap_or(before.must_change_password),
            "sessions_ended": ended,
        });
        let before_json = serde_json::json!({ "name": before.name, "role": before.role, "enabled": before.enabled });
        audit::record(&mut tx, actor, "set", "admin_user", &before.name, Some(before_json), Some(after)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes an administrator (their sessions go with them). Not the last enabled admin.
    pub async fn remove_admin_user(&self, name: &str, actor: &str) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        lock_admin_users(&mut tx).await?;
        let before = admin_for_update(&mut tx, name).await?;
        if before.role == "admin" && before.enabled {
            refuse_last_admin(&mut tx, before.id, "removed").await?;
        }
        sqlx::query("delete from admin_users where id = $1").bind(before.id).execute(&mut *tx).await?;
        let before_json = serde_json::json!({ "name": before.name, "role": before.role, "enabled": before.enabled });
        audit::record(&mut tx, actor, "remove", "admin_user", &before.name, Some(before_json), None).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Ends every session of an administrator (but `keep`); returns how many ended.
    pub async fn end_admin_sessions(&self, name: &str, keep: Option<&[u8]>, actor: &str) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let user = admin_for_update(&mut tx, name).await?;
        let ended = end_sessions(&mut tx, user.id, keep).await?;
        let after = serde_json::json!({ "sessions_ended": ended });
        audit::record(&mut tx, actor, "revoke-sessions", "admin_user", &user.name, None, Some(after)).await?;
        tx.commit().await?;
        Ok(ended)
    }

    /// Sessions and SAML requests past any possible use (run hourly with retention).
    pub async fn prune_admin_sessions(&self, idle_secs: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "delete from admin_sessions where last_seen_at < now() - make_interval(secs => $1) \
             or created_at < now() - make_interval(hours => $2)",
        )
        .bind(idle_secs as f64)
        .bind(MAX_SESSION_HOURS)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    pub async fn delete_admin_session(&self, token_sha256: &[u8]) -> Result<(), StoreError> {
        sqlx::query("delete from admin_sessions where token_sha256 = $1")
            .bind(token_sha256)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// Serialises changes that could leave no enabled admin (two admins disabling each
/// other at once must not both succeed).
async fn lock_admin_users(tx: &mut sqlx::PgConnection) -> Result<(), StoreError> {
    sqlx::query("select pg_advisory_xact_lock(hashtext('postern.admin_users'))").execute(&mut *tx).await?;
    Ok(())
}

async fn admin_for_update(tx: &mut sqlx::PgConnection, name: &str) -> Result<AdminUserRow, StoreError> {
    let sql = concat!("select ", admin_columns!(), " from admin_users where lower(name) = lower($1) for update");
    sqlx::query_as::<_, AdminUserRow>(sql)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("administrator {name:?}")))
}

async fn refuse_last_admin(tx: &mut sqlx::PgConnection, id: Uuid, what: &str) -> Result<(), StoreError> {
    let others: bool =
        sqlx::query_scalar("select exists (select 1 from admin_users where id <> $1 and role = 'admin' and enabled)")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
    if others {
        return Ok(());
    }
    Err(StoreError::Conflict(format!("the last enabled admin cannot be {what}: add or enable another admin first")))
}

async fn end_sessions(tx: &mut sqlx::PgConnection, user: Uuid, keep: Option<&[u8]>) -> Result<u64, StoreError> {
    let done = sqlx::query("delete from admin_sessions where user_id = $1 and token_sha256 is distinct from $2")
        .bind(user)
        .bind(keep)
        .execute(&mut *tx)
        .await?;
    Ok(done.rows_affected())
}
