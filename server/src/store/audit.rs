//! The audit log: who changed what, when, with the object before and after.

use serde_json::Value;
use sqlx::{FromRow, PgConnection};
use time::OffsetDateTime;

use super::{Store, StoreError};

/// One change or sign-in in the audit log: who, what, and the object before and after.
#[derive(Debug, Clone, FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub actor: String,
    pub action: String,
    pub object_type: String,
    pub object_name: String,
    /// The object before the change (secrets left out).
    #[schema(value_type = Option<Object>)]
    pub before: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub after: Option<Value>,
}

/// Writes one audit row inside the caller's transaction, so the change and its record
/// commit or roll back together.
pub(super) async fn record(
    conn: &mut PgConnection,
    actor: &str,
    action: &str,
    object_type: &str,
    object_name: &str,
    before: Option<Value>,
    after: Option<Value>,
) -> Result<(), StoreError> {
    sqlx::query(
        "insert into audit_log (actor, action, object_type, object_name, before, after) values ($1, $2, $3, $4, $5, $6)",
    )
    .bind(actor)
    .bind(action)
    .bind(object_type)
    .bind(object_name)
    .bind(before)
    .bind(after)
    .execute(conn)
    .await?;
    Ok(())
}

/// Which audit entries to read, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub object_type: Option<String>,
    /// Case-insensitive, exact.
    pub object_name: Option<String>,
    pub actor: Option<String>,
    /// Only entries older than this id (the next page).
    pub before_id: Option<i64>,
    pub limit: i64,
}

impl Store {
    pub async fn audit_log(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(sqlx::query_as::<_, AuditEntry>(
            "select id, at, actor, action, object_type, object_name, before, after from audit_log \
             where ($1::text is null or object_type = $1) and ($2::text is null or lower(object_name) = lower($2)) \
             and ($3::text is null or actor = $3) and ($4::bigint is null or id < $4) order by id desc limit $5",
        )
        .bind(&filter.object_type)
        .bind(&filter.object_name)
        .bind(&filter.actor)
        .bind(filter.before_id)
        .bind(filter.limit)
        .fetch_all(&self.pool)
        .await?)
    }
}
