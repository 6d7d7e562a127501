//! The message tracking log: batched inserts off the SMTP hot path, and search.

use std::net::IpAddr;

use ipnet::IpNet;
use sqlx::{FromRow, QueryBuilder};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Store, StoreError};

/// One tracking event as written. Fields follow Exchange's message tracking log.
#[derive(Debug, Clone, Default)]
pub struct NewTrackingEvent {
    pub at: Option<OffsetDateTime>,
    pub event_id: &'static str,
    pub source: &'static str,
    pub connector: Option<String>,
    pub client_ip: Option<IpAddr>,
    pub client_hostname: Option<String>,
    pub server_ip: Option<IpAddr>,
    pub server_hostname: Option<String>,
    pub sender: Option<String>,
    pub header_from: Option<String>,
    pub recipients: Vec<String>,
    pub recipient_status: Vec<String>,
    pub message_id: Option<String>,
    pub queue_id: Option<Uuid>,
    pub subject: Option<String>,
    pub size: Option<i64>,
    pub auth_as: Option<&'static str>,
    pub account: Option<String>,
    pub auth_mechanism: Option<&'static str>,
    pub tls: Option<String>,
    pub config_generation: Option<i64>,
    pub session_id: Option<Uuid>,
    pub reference: Option<String>,
    pub detail: Option<String>,
}

/// A tracking event as read back.
#[derive(Debug, Clone, FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct TrackingRecord {
    pub id: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub event_id: String,
    pub source: String,
    pub connector: Option<String>,
    #[schema(value_type = Option<String>)]
    pub client_ip: Option<IpNet>,
    pub client_hostname: Option<String>,
    #[schema(value_type = Option<String>)]
    pub server_ip: Option<IpNet>,
    pub server_hostname: Option<String>,
    pub sender: Option<String>,
    pub header_from: Option<String>,
    pub recipients: Vec<String>,
    pub recipient_status: Vec<String>,
    pub message_id: Option<String>,
    pub queue_id: Option<Uuid>,
    pub subject: Option<String>,
    pub size: Option<i64>,
    pub recipient_count: Option<i32>,
    pub auth_as: Option<String>,
    pub account: Option<String>,
    pub auth_mechanism: Option<String>,
    pub tls: Option<String>,
    pub config_generation: Option<i64>,
    pub session_id: Option<Uuid>,
    pub reference: Option<String>,
    pub detail: Option<String>,
}

/// Get-MessageTrackingLog's filters. Every field narrows the result.
#[derive(Debug, Clone, Default)]
pub struct TrackingFilter {
    pub start: Option<OffsetDateTime>,
    pub end: Option<OffsetDateTime>,
    pub sender: Option<String>,
    pub recipient: Option<String>,
    pub event_id: Option<String>,
    pub message_id: Option<String>,
    pub queue_id: Option<Uuid>,
    pub connector: Option<String>,
    pub client_ip: Option<IpAddr>,
    pub account: Option<String>,
    /// Case-insensitive substring of the subject.
    pub subject: Option<String>,
    /// Events of one SMTP session (the link to its protocol log).
    pub session_id: Option<Uuid>,
    /// Only events after this id (a live stream resuming from Last-Event-ID).
    pub after_id: Option<i64>,
    pub limit: i64,
}

macro_rules! tracking_columns {
    () => {
        "id, at, event_id, source, connector, client_ip, client_hostname, server_ip, server_hostname, sender, \
         header_from, recipients, recipient_status, message_id, queue_id, subject, size, recipient_count, auth_as, \
         account, auth_mechanism, tls, config_generation, session_id, reference, detail"
    };
}

impl TrackingFilter {
    /// The same test as `search_tracking`, in memory, for events as they stream by. (A
    /// client IP or account matches only the events that carry it.)
    pub fn matches(&self, e: &TrackingRecord) -> bool {
        let same = |want: &Option<String>, have: &Option<String>| {
            want.as_ref().is_none_or(|w| have.as_ref().is_some_and(|h| h.eq_ignore_ascii_case(w)))
        };
        let recipient = self.recipient.as_deref().map(canonical_address);
        self.start.is_none_or(|t| e.at >= t)
            && self.end.is_none_or(|t| e.at <= t)
            && self.after_id.is_none_or(|id| e.id > id)
            && same(&self.sender, &e.sender)
            && recipient.is_none_or(|r| e.recipients.contains(&r))
            && self.event_id.as_ref().is_none_or(|id| id.eq_ignore_ascii_case(&e.event_id))
            && self.message_id.as_ref().is_none_or(|m| e.message_id.as_ref() == Some(m))
            && self.queue_id.is_none_or(|q| e.queue_id == Some(q))
            && same(&self.connector, &e.connector)
            && self.client_ip.is_none_or(|ip| e.client_ip.map(|n| n.addr()) == Some(crate::domain::canonical_ip(ip)))
            && same(&self.account, &e.account)
            && self.subject.as_ref().is_none_or(|s| {
                e.subject.as_ref().is_some_and(|subject| subject.to_lowercase().contains(&s.to_lowercase()))
            })
            && self.session_id.is_none_or(|id| e.session_id == Some(id))
    }
}

impl Store {
    /// Inserts a batch in one statement on the relaxed pool (`synchronous_commit = off`):
    /// tracking is a log, not the durability point, and must not cost an fsync per batch.
    /// The statement text is the same for every batch size (arrays, not a VALUES list), so
    /// it is prepared once per connection.
    pub async fn insert_tracking_events(&self, events: &[NewTrackingEvent]) -> Result<(), StoreError> {
        insert_tracking_in(&self.relaxed, events).await
    }

    /// Events written after `after_id`, in id order (the live stream's feed).
    pub async fn tracking_after(&self, after_id: i64, limit: i64) -> Result<Vec<TrackingRecord>, StoreError> {
        let sql = concat!("select ", tracking_columns!(), " from tracking_events where id > $1 order by id limit $2");
        Ok(sqlx::query_as::<_, TrackingRecord>(sql).bind(after_id).bind(limit).fetch_all(&self.pool).await?)
    }

    /// Events per event id in the last minute: the console's live counters.
    pub async fn tracking_counts_last_minute(&self) -> Result<std::collections::BTreeMap<String, i64>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "select event_id, count(*) from tracking_events where at > now() - interval '1 minute' group by event_id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().collect())
    }

    /// Messages received and sent per minute over the last hour (oldest first, 60
    /// entries, zeros included): the console's throughput chart. Served by the index on
    /// `at`.
    pub async fn throughput_last_hour(&self) -> Result<Vec<(i64, i64)>, StoreError> {
        let rows: Vec<(i64, i64, i64)> = sqlx::query_as(
            "select (extract(epoch from date_trunc('minute', now()) - date_trunc('minute', at)) / 60)::bigint as ago, \
             count(*) filter (where event_id = 'RECEIVE'), count(*) filter (where event_id = 'SEND') \
             from tracking_events where at > date_trunc('minute', now()) - interval '59 minutes' \
             and event_id in ('RECEIVE', 'SEND') group by 1",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut minutes = vec![(0, 0); 60];
        for (ago, received, sent) in rows {
            if let Some(slot) =
                usize::try_from(ago).ok().and_then(|a| 59usize.checked_sub(a)).and_then(|i| minutes.get_mut(i))
            {
                *slot = (received, sent);
            }
        }
        Ok(minutes)
    }

    /// The newest event id (0 when there is none).
    pub async fn last_tracking_id(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("select coalesce(max(id), 0) from tracking_events").fetch_one(&self.pool).await?)
    }

    pub async fn search_tracking(&self, filter: &TrackingFilter) -> Result<Vec<TrackingRecord>, StoreError> {
        let mut q = QueryBuilder::new(concat!("select ", tracking_columns!(), " from tracking_events where true"));
        if let Some(start) = filter.start {
            q.push(" and at >= ").push_bind(start);
        }
        if let Some(end) = filter.end {
            q.push(" and at <= ").push_bind(end);
        }
        if let Some(sender) = &filter.sender {
            q.push(" and lower(sender) = lower(").push_bind(sender.clone()).push(")");
        }
        if let Some(recipient) = &filter.recipient {
            // Recipients are stored as the client wrote them, with the domain in lower case
            // (the GIN index serves this containment test).
            q.push(" and recipients @> array[").push_bind(canonical_address(recipient)).push("]::text[]");
        }
        if let Some(event_id) = &filter.event_id {
            q.push(" and event_id = upper(").push_bind(event_id.clone()).push(")");
        }
        if let Some(message_id) = &filter.message_id {
            q.push(" and message_id = ").push_bind(message_id.clone());
        }
        if let Some(queue_id) = filter.queue_id {
            q.push(" and queue_id = ").push_bind(queue_id);
        }
        if let Some(connector) = &filter.connector {
            q.push(" and lower(connector) = lower(").push_bind(connector.clone()).push(")");
        }
        // A client IP or an account names the events of that client's session and also
        // what happened later to the messages it sent (SEND, DEFER, FAIL carry the queue
        // id, not the client): "what happened to the mail from 192.168.1.13" in one search.
        // Written as a union of two index lookups, not an OR: the OR would scan the table.
        if let Some(ip) = filter.client_ip {
            let ip = IpNet::from(crate::domain::canonical_ip(ip));
            q.push(" and id in (select id from tracking_events where client_ip = ").push_bind(ip);
            q.push(
                " union select t.id from tracking_events t where t.queue_id in (select queue_id from tracking_events",
            );
            q.push(" where client_ip = ").push_bind(ip).push(" and queue_id is not null))");
        }
        if let Some(account) = &filter.account {
            q.push(" and id in (select id from tracking_events where lower(account) = lower(")
                .push_bind(account.clone());
            q.push(") and account is not null union select t.id from tracking_events t where t.queue_id in");
            q.push(" (select queue_id from tracking_events where lower(account) = lower(").push_bind(account.clone());
            q.push(") and account is not null and queue_id is not null))");
        }
        if let Some(subject) = &filter.subject {
            let pattern = format!("%{}%", subject.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
            q.push(" and subject ilike ").push_bind(pattern);
        }
        if let Some(session_id) = filter.session_id {
            q.push(" and session_id = ").push_bind(session_id);
        }
        if let Some(after) = filter.after_id {
            q.push(" and id > ").push_bind(after);
        }
        // Resuming after an id pages by id; a search reads in time order.
        q.push(if filter.after_id.is_some() { " order by id limit " } else { " order by at, id limit " });
        q.push_bind(filter.limit);
        Ok(q.build_query_as::<TrackingRecord>().fetch_all(&self.pool).await?)
    }
}

/// `Local@Example.COM` → `Local@example.com`: the form addresses are stored in.
fn canonical_address(address: &str) -> String {
    match address.trim().rsplit_once('@') {
        Some((local, domain)) => format!("{local}@{}", domain.to_lowercase()),
        None => address.trim().to_string(),
    }
}

/// Inserts tracking events with `executor` (a pool, or the transaction whose change they
/// record, so that the log and the state it describes commit together), and announces
/// them with `NOTIFY postern_tracking`, delivered when the insert commits.
pub(crate) async fn insert_tracking_in<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    events: &[NewTrackingEvent],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let column = |f: &dyn Fn(&NewTrackingEvent) -> Option<String>| events.iter().map(f).collect::<Vec<_>>();
    let now = OffsetDateTime::now_utc();
    let at: Vec<OffsetDateTime> = events.iter().map(|e| e.at.unwrap_or(now)).collect();
    let ips = |f: &dyn Fn(&NewTrackingEvent) -> Option<IpAddr>| {
        events.iter().map(|e| f(e).map(IpNet::from)).collect::<Vec<Option<IpNet>>>()
    };
    // Text arrays of arrays cannot be ragged in Postgres: carry the recipient lists as
    // JSON and unpack them in SQL.
    let lists = |f: &dyn Fn(&NewTrackingEvent) -> &Vec<String>| {
        events.iter().map(|e| serde_json::to_string(f(e)).unwrap_or_else(|_| "[]".into())).collect::<Vec<_>>()
    };
    // One statement: insert the batch and announce it to every node's live stream (the
    // NOTIFY is delivered when the insert commits).
    sqlx::query(
        "with inserted as (insert into tracking_events (at, event_id, source, connector, client_ip, client_hostname, server_ip, \
         server_hostname, sender, header_from, recipients, recipient_status, message_id, queue_id, subject, size, \
         recipient_count, auth_as, account, auth_mechanism, tls, config_generation, session_id, reference, detail) \
         select at, event_id, source, connector, client_ip, client_hostname, server_ip, server_hostname, sender, \
         header_from, \
         array(select jsonb_array_elements_text(recipients::jsonb)), \
         array(select jsonb_array_elements_text(recipient_status::jsonb)), \
         message_id, queue_id, subject, size, jsonb_array_length(recipients::jsonb), auth_as, account, \
         auth_mechanism, tls, config_generation, session_id, reference, detail \
         from unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::inet[], $6::text[], $7::inet[], \
         $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::uuid[], $14::text[], $15::int8[], \
         $16::text[], $17::text[], $18::text[], $19::text[], $20::int8[], $21::uuid[], $22::text[], \
         $23::text[], $24::text[]) \
         as e(at, event_id, source, connector, client_ip, client_hostname, server_ip, server_hostname, sender, \
         recipients, recipient_status, message_id, queue_id, subject, size, auth_as, account, auth_mechanism, \
         tls, config_generation, session_id, reference, detail, header_from) returning 1) \
         select pg_notify('postern_tracking', count(*)::text) from inserted",
    )
    .bind(at)
    .bind(events.iter().map(|e| e.event_id).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.source).collect::<Vec<_>>())
    .bind(column(&|e| e.connector.clone()))
    .bind(ips(&|e| e.client_ip))
    .bind(column(&|e| e.client_hostname.clone()))
    .bind(ips(&|e| e.server_ip))
    .bind(column(&|e| e.server_hostname.clone()))
    .bind(column(&|e| e.sender.clone()))
    .bind(lists(&|e| &e.recipients))
    .bind(lists(&|e| &e.recipient_status))
    .bind(column(&|e| e.message_id.clone()))
    .bind(events.iter().map(|e| e.queue_id).collect::<Vec<_>>())
    .bind(column(&|e| e.subject.clone()))
    .bind(events.iter().map(|e| e.size).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.auth_as).collect::<Vec<_>>())
    .bind(column(&|e| e.account.clone()))
    .bind(events.iter().map(|e| e.auth_mechanism).collect::<Vec<_>>())
    .bind(column(&|e| e.tls.clone()))
    .bind(events.iter().map(|e| e.config_generation).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.session_id).collect::<Vec<_>>())
    .bind(column(&|e| e.reference.clone()))
    .bind(column(&|e| e.detail.clone()))
    .bind(column(&|e| e.header_from.clone()))
    .execute(executor)
    .await?;
    Ok(())
}
