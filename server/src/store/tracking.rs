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
    pub recipients: Vec<String>,
    pub recipient_status: Vec<String>,
    pub message_id: Option<String>,
    pub queue_id: Option<Uuid>,
    pub subject: Option<String>,
    pub size: Option<i64>,
    pub auth_as: Option<&'static str>,
    pub account: Option<String>,
    pub tls: Option<String>,
    pub config_generation: Option<i64>,
    pub session_id: Option<Uuid>,
    pub reference: Option<String>,
    pub detail: Option<String>,
}

/// A tracking event as read back.
#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct TrackingRecord {
    pub id: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub event_id: String,
    pub source: String,
    pub connector: Option<String>,
    pub client_ip: Option<IpNet>,
    pub client_hostname: Option<String>,
    pub server_hostname: Option<String>,
    pub sender: Option<String>,
    pub recipients: Vec<String>,
    pub recipient_status: Vec<String>,
    pub message_id: Option<String>,
    pub queue_id: Option<Uuid>,
    pub subject: Option<String>,
    pub size: Option<i64>,
    pub auth_as: Option<String>,
    pub account: Option<String>,
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
    pub limit: i64,
}

impl Store {
    /// Inserts a batch in one statement on the relaxed pool (`synchronous_commit = off`):
    /// tracking is a log, not the durability point, and must not cost an fsync per batch.
    pub async fn insert_tracking_events(&self, events: &[NewTrackingEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut insert = QueryBuilder::new(
            "insert into tracking_events (at, event_id, source, connector, client_ip, client_hostname, server_ip, \
             server_hostname, sender, recipients, recipient_status, message_id, queue_id, subject, size, \
             recipient_count, auth_as, account, tls, config_generation, session_id, reference, detail) ",
        );
        insert.push_values(events, |mut row, e| {
            row.push_bind(e.at.unwrap_or_else(OffsetDateTime::now_utc))
                .push_bind(e.event_id)
                .push_bind(e.source)
                .push_bind(&e.connector)
                .push_bind(e.client_ip.map(IpNet::from))
                .push_bind(&e.client_hostname)
                .push_bind(e.server_ip.map(IpNet::from))
                .push_bind(&e.server_hostname)
                .push_bind(&e.sender)
                .push_bind(&e.recipients)
                .push_bind(&e.recipient_status)
                .push_bind(&e.message_id)
                .push_bind(e.queue_id)
                .push_bind(&e.subject)
                .push_bind(e.size)
                .push_bind(e.recipients.len() as i32)
                .push_bind(e.auth_as)
                .push_bind(&e.account)
                .push_bind(&e.tls)
                .push_bind(e.config_generation)
                .push_bind(e.session_id)
                .push_bind(&e.reference)
                .push_bind(&e.detail);
        });
        insert.build().execute(&self.relaxed).await?;
        Ok(())
    }

    pub async fn search_tracking(&self, filter: &TrackingFilter) -> Result<Vec<TrackingRecord>, StoreError> {
        let mut q = QueryBuilder::new(
            "select id, at, event_id, source, connector, client_ip, client_hostname, server_hostname, sender, \
             recipients, recipient_status, message_id, queue_id, subject, size, auth_as, account, tls, \
             config_generation, session_id, reference, detail from tracking_events where true",
        );
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
            // Recipients are stored as given; match case-insensitively like Exchange.
            q.push(" and exists (select 1 from unnest(recipients) r where lower(r) = lower(")
                .push_bind(recipient.clone())
                .push("))");
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
        q.push(" order by at, id limit ").push_bind(filter.limit);
        Ok(q.build_query_as::<TrackingRecord>().fetch_all(&self.pool).await?)
    }
}
