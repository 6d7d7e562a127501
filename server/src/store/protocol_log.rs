//! The SMTP protocol log: stored in batches, read back per session or per connector.

use sqlx::FromRow;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Store, StoreError};

/// One line of a session transcript.
#[derive(Debug, Clone, FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct ProtocolLine {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub session_id: Uuid,
    pub seq: i32,
    pub connector: String,
    pub local_endpoint: String,
    pub remote_endpoint: String,
    /// `+`, `-`, `>`, `<` or `*`.
    #[sqlx(try_from = "String")]
    #[schema(value_type = String)]
    pub event: ProtocolEvent,
    pub data: String,
    pub context: String,
}

/// The event symbol as stored (read back from text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct ProtocolEvent(pub &'static str);

impl TryFrom<String> for ProtocolEvent {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        ["+", "-", ">", "<", "*"].into_iter().find(|e| *e == s).map(ProtocolEvent).ok_or(s)
    }
}

/// Which transcripts to read.
#[derive(Debug, Clone, Default)]
pub struct ProtocolFilter {
    pub session_id: Option<Uuid>,
    pub connector: Option<String>,
    pub start: Option<OffsetDateTime>,
    pub end: Option<OffsetDateTime>,
    pub limit: i64,
}

impl Store {
    /// Inserts a batch in one statement on the relaxed pool (a log, not a durability point).
    pub async fn insert_protocol_lines(&self, lines: &[ProtocolLine]) -> Result<(), StoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        let text = |f: &dyn Fn(&ProtocolLine) -> String| lines.iter().map(f).collect::<Vec<_>>();
        sqlx::query(
            "insert into protocol_log (at, session_id, seq, connector, local_endpoint, remote_endpoint, event, data, \
             context) select * from unnest($1::timestamptz[], $2::uuid[], $3::int4[], $4::text[], $5::text[], \
             $6::text[], $7::text[], $8::text[], $9::text[])",
        )
        .bind(lines.iter().map(|l| l.at).collect::<Vec<_>>())
        .bind(lines.iter().map(|l| l.session_id).collect::<Vec<_>>())
        .bind(lines.iter().map(|l| l.seq).collect::<Vec<_>>())
        .bind(text(&|l| l.connector.clone()))
        .bind(text(&|l| l.local_endpoint.clone()))
        .bind(text(&|l| l.remote_endpoint.clone()))
        .bind(text(&|l| l.event.0.to_string()))
        .bind(text(&|l| l.data.clone()))
        .bind(text(&|l| l.context.clone()))
        .execute(&self.relaxed)
        .await?;
        Ok(())
    }

    /// Transcript lines in session order.
    pub async fn protocol_log(&self, filter: &ProtocolFilter) -> Result<Vec<ProtocolLine>, StoreError> {
        let mut q = sqlx::QueryBuilder::new(
            "select at, session_id, seq, connector, local_endpoint, remote_endpoint, event, data, context \
             from protocol_log where true",
        );
        if let Some(id) = filter.session_id {
            q.push(" and session_id = ").push_bind(id);
        }
        if let Some(connector) = &filter.connector {
            q.push(" and lower(connector) = lower(").push_bind(connector.clone()).push(")");
        }
        if let Some(start) = filter.start {
            q.push(" and at >= ").push_bind(start);
        }
        if let Some(end) = filter.end {
            q.push(" and at <= ").push_bind(end);
        }
        q.push(" order by at, session_id, seq limit ").push_bind(filter.limit);
        Ok(q.build_query_as::<ProtocolLine>().fetch_all(&self.pool).await?)
    }

    /// Deletes tracking events and protocol log lines older than their retention, in
    /// slices so no statement holds locks for long. Returns the rows removed.
    /// A retention of 0 days is taken as 1 ("keep nothing" is never what was meant), and
    /// one beyond a century as a century.
    pub async fn prune_logs(&self, tracking_days: u32, protocol_days: u32) -> Result<(u64, u64), StoreError> {
        let days = |d: u32| i32::try_from(d.clamp(1, 36_500)).unwrap_or(36_500);
        let mut removed = (0, 0);
        for (table, days, total) in [
            ("tracking_events", days(tracking_days), &mut removed.0),
            ("protocol_log", days(protocol_days), &mut removed.1),
        ] {
            let sql = format!(
                "delete from {table} where id in (select id from {table} \
                 where at < now() - make_interval(days => $1) limit 10000)"
            );
            loop {
                let done = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(days)
                    .execute(&self.relaxed)
                    .await?
                    .rows_affected();
                *total += done;
                if done < 10_000 {
                    break;
                }
            }
        }
        Ok(removed)
    }
}
