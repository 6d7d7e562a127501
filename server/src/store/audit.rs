//! The audit log: who changed what, when, with the object before and after.

use serde_json::Value;
use sqlx::{FromRow, PgConnection};
use time::OffsetDateTime;

use super::{Store, StoreError};

#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct AuditEntry {
    pub id: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub actor: String,
    pub action: String,
    pub object_type: String,
    pub object_name: String,
    pub before: Option<Value>,
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

impl Store {
    pub async fn audit_log(&self, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(sqlx::query_as::<_, AuditEntry>("select * from audit_log order by id desc limit $1")
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
    }
}
