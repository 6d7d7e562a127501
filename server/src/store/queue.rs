//! The durable queue: enqueue (the commit behind every 250), claim with a lease
//! (`FOR UPDATE SKIP LOCKED`, so nodes share the work), and record outcomes.

use std::net::IpAddr;

use ipnet::IpNet;
use sqlx::FromRow;
use time::OffsetDateTime;
use uuid::Uuid;

use super::tracking::{NewTrackingEvent, insert_tracking_in};
use super::{Store, StoreError};

/// A message accepted by a session, ready to commit.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: Uuid,
    /// `None` is the null reverse-path `<>`.
    pub sender: Option<String>,
    pub recipients: Vec<String>,
    pub body: Vec<u8>,
    pub message_id: Option<String>,
    pub subject: Option<String>,
    pub expires_at: OffsetDateTime,
    pub receive_connector: String,
    pub client_ip: Option<IpAddr>,
    pub client_helo: Option<String>,
    pub auth_as: &'static str,
    pub account: Option<String>,
    pub session_id: Option<Uuid>,
    pub config_generation: Option<i64>,
    pub dsn_for: Option<Uuid>,
    /// A large message's middle, spooled while it arrived: the stored body is `body`,
    /// then the spool's chunks, then `tail`.
    pub spooled: Option<SpooledBody>,
    /// The tracking events of its arrival (RECEIVE, or DSN for a bounce), committed with
    /// it: a queued message always has its event, and a refused commit leaves none.
    pub tracking: Vec<NewTrackingEvent>,
}

/// The parts of a spooled body that are not in `NewMessage::body`.
#[derive(Debug, Clone)]
pub struct SpooledBody {
    pub spool: Uuid,
    pub bytes: usize,
    pub tail: Vec<u8>,
}

impl NewMessage {
    /// The stored body's size.
    pub fn size(&self) -> usize {
        self.body.len() + self.spooled.as_ref().map_or(0, |s| s.bytes + s.tail.len())
    }
}

/// A message an administrator removed from the queue.
#[derive(Debug, Clone)]
pub struct RemovedMessage {
    pub id: Uuid,
    /// Empty for the null reverse-path.
    pub sender: String,
    /// Recipients that had not been delivered.
    pub undelivered: Vec<String>,
    pub received_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub body: Vec<u8>,
    /// The DSN queued for the sender, if one was.
    pub dsn_id: Option<Uuid>,
}

/// Messages up to this size come with their claim; larger ones are read one at a time
/// when their delivery starts.
pub const INLINE_BODY_BYTES: i32 = 256 * 1024;

/// A message this node holds the lease on, with the recipients still to try.
#[derive(Debug, Clone)]

pub struct ClaimedMessage {
    pub id: Uuid,
    /// The claim's token: outcomes are recorded only while the lease still carries it,
    /// so an attempt that outlived its lease cannot overwrite a newer attempt's results.
    pub lease: Uuid,
    pub sender: Option<String>,
    /// The message, when it is small (`INLINE_BODY_BYTES`); a larger one is read when
    /// its delivery starts (`message_body`), so a claim never holds many large bodies.
    pub body: Option<Vec<u8>>,
    /// The message's size in bytes.
    pub size: i64,
    pub message_id: Option<String>,
    pub received_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub attempts: i32,
    pub dsn_for: Option<Uuid>,
    /// Not claimed: set aside as poison by this claim, for the caller to report.
    pub poisoned: bool,
    pub recipients: Vec<ClaimedRecipient>,
}

#[derive(Debug, Clone)]
pub struct ClaimedRecipient {
    pub idx: i32,
    pub address: String,
    pub attempts: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecipientStatus {
    Delivered,
    Deferred,
    Failed,
}

impl RecipientStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Deferred => "deferred",
            Self::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone)]
pub struct RecipientOutcome {
    pub idx: i32,
    pub status: RecipientStatus,
    pub reply: String,
    pub route: Option<String>,
}

/// What one delivery attempt of a message came to.
#[derive(Debug, Clone)]
pub struct MessageOutcome {
    pub message_id: Uuid,
    pub lease: Uuid,
    pub recipients: Vec<RecipientOutcome>,
    /// When to try the deferred recipients again; `None` when none are left.
    pub next_attempt_at: Option<OffsetDateTime>,
    /// The tracking events of this attempt (SEND, DEFER, FAIL), committed with the
    /// recipients' new states.
    pub tracking: Vec<NewTrackingEvent>,
}

/// A message in the delivery queue and the state of its recipients.
#[derive(Debug, Clone, FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct QueuedMessageSummary {
    pub id: Uuid,
    pub sender: String,
    pub state: String,
    pub size: i64,
    pub subject: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub next_attempt_at: OffsetDateTime,
    pub attempts: i32,
    pub recipients: Vec<String>,
    pub statuses: Vec<String>,
    pub last_replies: Vec<Option<String>>,
}

#[derive(Debug, Clone, Default)]
pub struct QueueFilter {
    /// Include messages whose recipients all reached a final outcome.
    pub include_done: bool,
    /// Only messages listed after this one (the next page, newest first).
    pub after: Option<Uuid>,
    pub limit: i64,
}

#[derive(FromRow)]
struct ClaimedRow {
    id: Uuid,
    sender: String,
    body: Option<Vec<u8>>,
    size: i64,
    message_id: Option<String>,
    received_at: OffsetDateTime,
    expires_at: OffsetDateTime,
    attempts: i32,
    dsn_for: Option<Uuid>,
    lease_owner: Uuid,
    poisoned: bool,
    idxs: Vec<i32>,
    addresses: Vec<String>,
    recipient_attempts: Vec<i32>,
}

impl ClaimedRow {
    fn into_claimed(self) -> ClaimedMessage {
        let recipients = self
            .idxs
            .iter()
            .zip(&self.addresses)
            .zip(&self.recipient_attempts)
            .map(|((idx, address), attempts)| ClaimedRecipient {
                idx: *idx,
                address: address.clone(),
                attempts: *attempts,
            })
            .collect();
        ClaimedMessage {
            id: self.id,
            lease: self.lease_owner,
            sender: Some(self.sender).filter(|s| !s.is_empty()),
            body: self.body,
            size: self.size,
            message_id: self.message_id,
            received_at: self.received_at,
            expires_at: self.expires_at,
            attempts: self.attempts,
            dsn_for: self.dsn_for,
            poisoned: self.poisoned,
            recipients,
        }
    }
}

impl Store {
    /// Commits one message and all its recipients atomically.
    pub async fn enqueue(&self, message: &NewMessage) -> Result<(), StoreError> {
        self.enqueue_batch(&[message]).await
    }

    /// Commits messages, all their recipients and their tracking events atomically, in
    /// one transaction: all of them or none. Only after this returns Ok may a session
    /// answer 250 for any of them (invariant 1).
    pub async fn enqueue_batch(&self, messages: &[&NewMessage]) -> Result<(), StoreError> {
        let events: Vec<NewTrackingEvent> = messages.iter().flat_map(|m| m.tracking.iter().cloned()).collect();
        if events.is_empty() && messages.iter().all(|m| m.spooled.is_none()) {
            return enqueue_in(&self.pool, messages).await;
        }
        let mut tx = self.begin().await?;
        enqueue_in(&mut *tx, messages).await?;
        // A spooled body is assembled in Postgres from its chunks, which go with it.
        for m in messages {
            let Some(spooled) = &m.spooled else { continue };
            sqlx::query(
                "update message_bodies set body = body || coalesce((select string_agg(data, ''::bytea order by seq) \
                 from spool_chunks where spool = $2), ''::bytea) || $3 where message_id = $1",
            )
            .bind(m.id)
            .bind(spooled.spool)
            .bind(&spooled.tail)
            .execute(&mut *tx)
            .await?;
            sqlx::query("delete from spool_chunks where spool = $1").bind(spooled.spool).execute(&mut *tx).await?;
        }
        // Last, so the events' ids are taken just before the commit: the live feed waits
        // at an id that is taken and not yet committed (tracking/feed.rs).
        insert_tracking_in(&mut *tx, &events).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Stores one chunk of a message still arriving (committed at once, on its own).
    pub async fn spool_chunk(&self, spool: Uuid, seq: i32, data: &[u8]) -> Result<(), StoreError> {
        sqlx::query("insert into spool_chunks (spool, seq, data) values ($1, $2, $3)")
            .bind(spool)
            .bind(seq)
            .bind(data)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forgets the chunks of a message that will not be queued.
    pub async fn drop_spool(&self, spool: Uuid) -> Result<(), StoreError> {
        sqlx::query("delete from spool_chunks where spool = $1").bind(spool).execute(&self.pool).await?;
        Ok(())
    }

    /// Deletes the chunks of sessions that never queued their message (over an hour old).
    pub async fn prune_spool(&self) -> Result<u64, StoreError> {
        let done = sqlx::query("delete from spool_chunks where created_at < now() - interval '1 hour'")
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Takes the lease on up to `limit` due messages, with their pending recipients, in
    /// one statement. `lease` is a fresh token per claim. A message whose lease expired
    /// (its node died mid-delivery) is due again; each such claim counts as a crashed
    /// attempt, and the one that reaches `poison_threshold` sets the message aside
    /// (state `poison`, returned with `poisoned` set) instead of claiming it.
    pub async fn claim_due_messages(
        &self,
        owner: Uuid,
        lease: std::time::Duration,
        limit: i64,
        poison_threshold: i32,
    ) -> Result<Vec<ClaimedMessage>, StoreError> {
        let rows = sqlx::query_as::<_, ClaimedRow>(
            "with due as ( \
                select id, lease_owner is not null and crashed_attempts + 1 >= $4 as poisoned from messages \
                where state = 'queued' and next_attempt_at <= now() \
                and (lease_expires_at is null or lease_expires_at < now()) \
                order by next_attempt_at limit $3 for update skip locked), \
             claimed as ( \
                update messages m set \
                crashed_attempts = m.crashed_attempts + (m.lease_owner is not null)::int, \
                state = case when due.poisoned then 'poison' else m.state end, \
                lease_owner = case when due.poisoned then null else $1 end, \
                lease_expires_at = case when due.poisoned then null else now() + make_interval(secs => $2) end, \
                attempts = m.attempts + (not due.poisoned)::int from due where m.id = due.id \
                returning m.id, m.sender, m.message_id, m.received_at, m.expires_at, m.attempts, m.dsn_for, \
                due.poisoned, $1 as lease_owner) \
             select claimed.*, case when octet_length(b.body) <= $5 then b.body end as body, \
                    octet_length(b.body)::int8 as size, rs.idxs, rs.addresses, rs.recipient_attempts from claimed \
             join message_bodies b on b.message_id = claimed.id \
             cross join lateral ( \
                select coalesce(array_agg(r.idx order by r.idx), '{}') as idxs, \
                       coalesce(array_agg(r.address order by r.idx), '{}') as addresses, \
                       coalesce(array_agg(r.attempts order by r.idx), '{}') as recipient_attempts \
                from recipients r where r.message_id = claimed.id and r.status in ('pending', 'deferred')) rs",
        )
        .bind(owner)
        .bind(lease.as_secs_f64())
        .bind(limit)
        .bind(poison_threshold)
        .bind(INLINE_BODY_BYTES)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(ClaimedRow::into_claimed).collect())
    }

    /// A message's stored bytes (a large one, left out of its claim), read a megabyte
    /// at a time: a database connection's buffers grow to the largest value it carried
    /// and keep that size, so a whole large body in one row would leave tens of
    /// megabytes behind in the pool.
    pub async fn message_body(&self, id: Uuid) -> Result<Vec<u8>, StoreError> {
        const SLICE: i32 = 1024 * 1024;
        let size: Option<i32> =
            sqlx::query_scalar("select octet_length(body) from message_bodies where message_id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        let size = size.ok_or_else(|| StoreError::NotFound(format!("message {}", id.simple())))?;
        let mut body = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        let mut from = 0;
        while from < size {
            let slice: Vec<u8> =
                sqlx::query_scalar("select substring(body from $2 for $3) from message_bodies where message_id = $1")
                    .bind(id)
                    .bind(from + 1)
                    .bind(SLICE)
                    .fetch_one(&self.pool)
                    .await?;
            if slice.is_empty() {
                break;
            }
            from += i32::try_from(slice.len()).unwrap_or(SLICE);
            body.extend_from_slice(&slice);
        }
        Ok(body)
    }

    /// Records the outcomes of a batch of attempts, with their tracking events, and
    /// releases their leases, in one transaction on the relaxed pool
    /// (`synchronous_commit = off`). That is safe here and only here: if the node crashes
    /// before the WAL is flushed, the message is simply delivered again (at-least-once),
    /// which a lost "250" from the next hop would cause anyway; its events go with it.
    pub async fn record_outcomes(&self, outcomes: &[MessageOutcome]) -> Result<(), StoreError> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let (mut ids, mut idxs, mut statuses, mut replies, mut routes) = (vec![], vec![], vec![], vec![], vec![]);
        for outcome in outcomes {
            for r in &outcome.recipients {
                ids.push(outcome.message_id);
                idxs.push(r.idx);
                statuses.push(r.status.as_str());
                replies.push(r.reply.clone());
                routes.push(r.route.clone());
            }
        }
        let message_ids: Vec<Uuid> = outcomes.iter().map(|o| o.message_id).collect();
        let leases: Vec<Uuid> = outcomes.iter().map(|o| o.lease).collect();
        let next: Vec<Option<OffsetDateTime>> = outcomes.iter().map(|o| o.next_attempt_at).collect();
        let events: Vec<NewTrackingEvent> = outcomes.iter().flat_map(|o| o.tracking.iter().cloned()).collect();
        let mut tx = self.relaxed.begin().await?;
        sqlx::query(
            "with still_ours as ( \
                select m.id from messages m join unnest($6::uuid[], $8::uuid[]) as l(id, lease) \
                on m.id = l.id and m.lease_owner = l.lease for update of m), \
             recipient_update as ( \
                update recipients r set status = u.status, last_reply = u.reply, route = coalesce(u.route, r.route), \
                attempts = r.attempts + 1, updated_at = now() \
                from unnest($1::uuid[], $2::int[], $3::text[], $4::text[], $5::text[]) as u(message_id, idx, status, reply, route) \
                where r.message_id = u.message_id and r.idx = u.idx and r.message_id in (select id from still_ours)) \
             update messages m set state = case when u.next_attempt is null then 'done' else 'queued' end, \
             next_attempt_at = coalesce(u.next_attempt, m.next_attempt_at), lease_owner = null, lease_expires_at = null, \
             crashed_attempts = 0 \
             from unnest($6::uuid[], $7::timestamptz[]) as u(id, next_attempt) \
             where m.id = u.id and m.id in (select id from still_ours)",
        )
        .bind(&ids)
        .bind(&idxs)
        .bind(&statuses)
        .bind(&replies)
        .bind(&routes)
        .bind(&message_ids)
        .bind(&next)
        .bind(&leases)
        .execute(&mut *tx)
        .await?;
        // Even when a lease was lost (another node took the message over), the attempt
        // happened: its events are the truth about what was sent.
        insert_tracking_in(&mut *tx, &events).await?;
        tx.commit().await?;
        Ok(())
    }

    /// One message in the queue (in any state, while it is kept).
    pub async fn queue_message(&self, id: Uuid) -> Result<Option<QueuedMessageSummary>, StoreError> {
        Ok(sqlx::query_as::<_, QueuedMessageSummary>(
            "select m.id, m.sender, m.state, m.size, m.subject, m.received_at, m.next_attempt_at, m.attempts, \
             array_agg(r.address order by r.idx) as recipients, array_agg(r.status order by r.idx) as statuses, \
             array_agg(r.last_reply order by r.idx) as last_replies \
             from messages m join recipients r on r.message_id = m.id where m.id = $1 group by m.id",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn queue_messages(&self, filter: &QueueFilter) -> Result<Vec<QueuedMessageSummary>, StoreError> {
        Ok(sqlx::query_as::<_, QueuedMessageSummary>(
            "select m.id, m.sender, m.state, m.size, m.subject, m.received_at, m.next_attempt_at, m.attempts, \
             array_agg(r.address order by r.idx) as recipients, array_agg(r.status order by r.idx) as statuses, \
             array_agg(r.last_reply order by r.idx) as last_replies \
             from messages m join recipients r on r.message_id = m.id \
             where ($1 or m.state <> 'done') and ($3::uuid is null or (m.received_at, m.id) < \
             (select received_at, id from messages where id = $3)) \
             group by m.id order by m.received_at desc, m.id desc limit $2",
        )
        .bind(filter.include_done)
        .bind(filter.limit)
        .bind(filter.after)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Makes a queued message due now, or resumes a poison message (Exchange's
    /// Resume-Message) with a clean count of crashed attempts. Not found if it does not
    /// exist or is finished.
    pub async fn retry_message(&self, id: Uuid, actor: &str) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "update messages set next_attempt_at = now(), state = 'queued', crashed_attempts = 0 \
             where id = $1 and state in ('queued', 'poison')",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("queued message {}", id.simple())));
        }
        super::audit::record(&mut tx, actor, "retry", "message", &id.simple().to_string(), None, None).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes a message from the queue (Exchange's Remove-Message). `dsn` sees what was
    /// removed and may return a DSN to queue in the same transaction, so the removal and
    /// the sender's notification commit together or not at all.
    pub async fn remove_message(
        &self,
        id: Uuid,
        actor: &str,
        with_dsn: bool,
        dsn: impl FnOnce(&RemovedMessage) -> Option<NewMessage>,
    ) -> Result<RemovedMessage, StoreError> {
        let mut tx = self.begin().await?;
        let found: Option<(String, OffsetDateTime, OffsetDateTime, bool)> = sqlx::query_as(
            "select sender, received_at, expires_at, coalesce(lease_expires_at > now(), false) \
             from messages where id = $1 for update",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let (sender, received_at, expires_at, in_delivery) =
            found.ok_or_else(|| StoreError::NotFound(format!("message {}", id.simple())))?;
        // A node is delivering it right now: telling the sender it failed could race a
        // delivery that succeeds. (Without a DSN the removal stands; the attempt's outcome
        // then finds no message to record against.)
        if in_delivery && with_dsn {
            return Err(StoreError::Conflict(format!(
                "message {} is being delivered right now; try again in a moment",
                id.simple()
            )));
        }
        let undelivered: Vec<String> = sqlx::query_scalar(
            "select address from recipients where message_id = $1 and status in ('pending', 'deferred') order by idx",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        // The body only matters for the DSN (it carries the original headers).
        let body: Vec<u8> = if with_dsn {
            sqlx::query_scalar("select body from message_bodies where message_id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let removed = RemovedMessage { id, sender, undelivered, received_at, expires_at, body, dsn_id: None };
        let notification = dsn(&removed);
        sqlx::query("delete from messages where id = $1").bind(id).execute(&mut *tx).await?;
        if let Some(message) = &notification {
            enqueue_in(&mut *tx, &[message]).await?;
        }
        let before = serde_json::json!({ "sender": removed.sender, "undelivered": removed.undelivered });
        let after = notification.as_ref().map(|n| serde_json::json!({ "dsn": n.id.simple().to_string() }));
        super::audit::record(&mut tx, actor, "remove", "message", &id.simple().to_string(), Some(before), after)
            .await?;
        tx.commit().await?;
        Ok(RemovedMessage { dsn_id: notification.map(|n| n.id), ..removed })
    }

    /// The header section of a stored message (up to the first empty line, at most
    /// `limit` bytes), or None when the message is no longer kept.
    pub async fn message_headers(&self, id: Uuid, limit: i32) -> Result<Option<Vec<u8>>, StoreError> {
        let head: Option<Vec<u8>> =
            sqlx::query_scalar("select substring(body from 1 for $2) from message_bodies where message_id = $1")
                .bind(id)
                .bind(limit)
                .fetch_optional(&self.pool)
                .await?;
        Ok(head.map(|mut head| {
            if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                head.truncate(end + 2);
            }
            head
        }))
    }

    /// Deletes messages that finished (every recipient delivered or failed) and were
    /// received more than `days` ago, with their bodies and recipients, in slices of
    /// 1,000 so no statement holds locks for long. Queued and poison messages are kept
    /// whatever their age: expiry ends queued ones; poison ones wait for an administrator.
    pub async fn prune_finished_messages(&self, days: u32) -> Result<u64, StoreError> {
        let days = i32::try_from(days.clamp(1, 36_500)).unwrap_or(36_500);
        let mut removed = 0;
        loop {
            let done = sqlx::query(
                "delete from messages where id in (select id from messages where state = 'done' \
                 and received_at < now() - make_interval(days => $1) limit 1000 for update skip locked)",
            )
            .bind(days)
            .execute(&self.pool)
            .await?
            .rows_affected();
            removed += done;
            if done < 1000 {
                return Ok(removed);
            }
        }
    }

    /// Queue gauges for /metrics: messages waiting (all nodes), the age in seconds of
    /// the oldest of them (0 when none), and messages set aside as poison.
    pub async fn queue_gauges(&self) -> Result<(i64, f64, i64), StoreError> {
        Ok(sqlx::query_as(
            "select count(*) filter (where state = 'queued'), \
             coalesce(extract(epoch from now() - min(received_at) filter (where state = 'queued'))::float8, 0), \
             count(*) filter (where state = 'poison') from messages where state <> 'done'",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Messages waiting for delivery (state queued).
    pub async fn queue_depth(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("select count(*) from messages where state = 'queued'").fetch_one(&self.pool).await?)
    }
}

/// Inserts messages with their bodies and recipients in one statement, on a pool or
/// inside a caller's transaction.
async fn enqueue_in<'e>(executor: impl sqlx::PgExecutor<'e>, messages: &[&NewMessage]) -> Result<(), StoreError> {
    let (mut rcpt_ids, mut rcpt_idxs, mut rcpt_addresses) = (Vec::new(), Vec::new(), Vec::new());
    for m in messages {
        for (idx, address) in m.recipients.iter().enumerate() {
            rcpt_ids.push(m.id);
            rcpt_idxs.push(idx as i32);
            rcpt_addresses.push(address.as_str());
        }
    }
    sqlx::query(
            "with message as ( \
                insert into messages (id, sender, size, message_id, subject, expires_at, receive_connector, \
                client_ip, client_helo, auth_as, account, session_id, config_generation, dsn_for) \
                select * from unnest($1::uuid[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::timestamptz[], \
                $7::text[], $8::inet[], $9::text[], $10::text[], $11::text[], $12::uuid[], $13::int8[], $14::uuid[])), \
             body as (insert into message_bodies (message_id, body) select * from unnest($1::uuid[], $15::bytea[])) \
             insert into recipients (message_id, idx, address) select * from unnest($16::uuid[], $17::int4[], $18::text[])",
        )
        .bind(messages.iter().map(|m| m.id).collect::<Vec<_>>())
        .bind(messages.iter().map(|m| m.sender.as_deref().unwrap_or("")).collect::<Vec<_>>())
        .bind(messages.iter().map(|m| m.size() as i64).collect::<Vec<_>>())
        .bind(messages.iter().map(|m| m.message_id.as_deref()).collect::<Vec<_>>())
        .bind(messages.iter().map(|m| m.subject.as_deref()).collect::<Vec<_>>())
        .bind(messages.iter().map(|m| m.expires_at).collect::<Vec<_>>())
        .bind(messages.iter().map(|m| m.receive_connector.as_str()).collect::<Vec<_>>())
        .bind(messages.iter().map(|m| m.client_ip.map(IpNet::from)).collect::<Vec<_>>())
        .bind(messages.iter().map(|m| m.client_helo.as_deref()).collect::<Vec<_>>())
        .bind(messages.iter().map(|m| m.auth_as).collect::<Vec<_>>())
        .bind(messages.iter().map(|m| m.account.as_deref()).collect::<Vec<_>>())
        .bind(messages.iter().map(|m| m.session_id).collect::<Vec<_>>())
        .bind(messages.iter().map(|m| m.config_generation).collect::<Vec<_>>())
        .bind(messages.iter().map(|m| m.dsn_for).collect::<Vec<_>>())
        .bind(messages.iter().map(|m| m.body.as_slice()).collect::<Vec<_>>())
        .bind(rcpt_ids)
        .bind(rcpt_idxs)
        .bind(rcpt_addresses)
        .execute(executor)
        .await?;
    Ok(())
}
