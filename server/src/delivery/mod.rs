//! Outbound delivery: workers claim due messages from the shared queue (with a lease,
//! so several nodes share it), route each recipient through the most specific send
//! connector (smart hosts, or DNS MX), and record a per-recipient outcome: delivered,
//! deferred (retried on the schedule until the message expires) or failed (a DSN to
//! the sender). A retry never re-sends to recipients that already succeeded: only
//! pending and deferred recipients are claimed.

pub mod bounce;
pub mod mx;
pub mod transport;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use uuid::Uuid;

use self::bounce::{BounceInput, FailedRecipient};
use self::mx::{MxError, MxResolver};
use self::transport::{Hop, SendFailure, Transport};
use crate::domain::{Domain, SendConnector};
use crate::policy::Snapshot;
use crate::queue::RetrySchedule;
use crate::store::{ClaimedMessage, ClaimedRecipient, MessageOutcome, RecipientOutcome, RecipientStatus, Store};
use crate::tracking::{NewTrackingEvent, Tracker};

#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// Messages being delivered at the same time on this node.
    pub concurrency: usize,
    /// Most messages taken in one claim.
    pub batch: i64,
    /// After a wake-up, how long to let more messages arrive before claiming.
    pub claim_linger: Duration,
    /// How long a claim is ours; a node that dies loses its claims after this.
    pub lease: Duration,
    /// The longest one send to a next hop may take (the transport's timeout).
    pub send_timeout: Duration,
    /// Claims that may find the previous attempt's lease expired without an outcome
    /// before the message is quarantined as poison.
    pub poison_threshold: i32,
    /// How often idle workers look for due messages (retries, other nodes' mail).
    pub poll_interval: Duration,
    pub retry: RetrySchedule,
    /// Name in HELO to next hops, in Reporting-MTA and as the DSN sender's domain.
    pub hostname: String,
    pub message_expiry: Duration,
}

impl DeliverySettings {
    /// How long after a claim a send may still start: the lease less the send timeout
    /// and a tenth of the lease to spare for recording the outcome, or half the lease
    /// when that is shorter (a configuration where a slow next hop can outlive the
    /// lease; the node warns at start).
    pub fn send_window(&self) -> Duration {
        let window = self.lease.checked_sub(self.send_timeout + self.lease / 10);
        window.filter(|w| *w >= self.lease / 2).unwrap_or(self.lease / 2)
    }
}

/// Everything a delivery worker needs.
#[derive(Debug)]
pub struct Delivery {
    pub store: Store,
    pub tracker: Tracker,
    pub config: Arc<ArcSwap<Snapshot>>,
    pub transport: Arc<dyn Transport>,
    pub resolver: Arc<dyn MxResolver>,
    pub wakeup: Arc<Notify>,
    pub settings: DeliverySettings,
    /// This node's identity, for logs.
    pub node_id: Uuid,
}

impl Delivery {
    /// Runs delivery until `shutdown`: one claimer fills up to `concurrency` delivery
    /// tasks, and one recorder writes their outcomes in batches. Deliveries running at
    /// shutdown finish (each is bounded by its deadline) and are recorded.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let (outcomes, received) = mpsc::channel(4096);
        let recorder = tokio::spawn(Arc::clone(&self).record(received));
        self.claim(outcomes, &shutdown).await;
        let _ = recorder.await;
    }

    /// Claims due messages whenever delivery slots are free, and starts one task per
    /// message. After `shutdown` it claims nothing more and waits for running deliveries.
    async fn claim(self: &Arc<Self>, outcomes: mpsc::Sender<MessageOutcome>, shutdown: &CancellationToken) {
        let slots = Arc::new(Semaphore::new(self.settings.concurrency.max(1)));
        let tasks = TaskTracker::new();
        while !shutdown.is_cancelled() {
            let free = slots.available_permits().min(self.settings.batch.max(1) as usize);
            if free == 0 {
                tokio::select! {
                    _ = slots.acquire() => {}
                    () = shutdown.cancelled() => break,
                }
                continue;
            }
            let lease = Uuid::new_v4();
            let limit = free as i64;
            let claimed = match self
                .store
                .claim_due_messages(lease, self.settings.lease, limit, self.settings.poison_threshold)
                .await
            {
                Ok(claimed) => claimed,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming due messages failed");
                    Vec::new()
                }
            };
            let saturated = claimed.len() == free;
            let (poisoned, claimed): (Vec<_>, Vec<_>) = claimed.into_iter().partition(|m| m.poisoned);
            for message in &poisoned {
                self.quarantined(message);
            }
            for message in claimed {
                let Ok(permit) = Arc::clone(&slots).acquire_owned().await else { break };
                let (delivery, outcomes) = (Arc::clone(self), outcomes.clone());
                let span = tracing::info_span!("delivery", queue_id = %message.id.simple(), attempt = message.attempts);
                tasks.spawn(
                    async move {
                        let outcome = delivery.attempt(&message).await;
                        let _ = outcomes.send(outcome).await;
                        drop(permit);
                    }
                    .instrument(span),
                );
            }
            if saturated {
                continue; // more may be due right now
            }
            tokio::select! {
                () = self.wakeup.notified() => {
                    // Let a few more arrivals gather so one claim takes them together.
                    tokio::time::sleep(self.settings.claim_linger).await;
                }
                () = tokio::time::sleep(self.settings.poll_interval) => {}
                () = shutdown.cancelled() => break,
            }
        }
        tasks.close();
        tasks.wait().await;
    }

    /// Reports a message set aside as poison: its attempts kept ending without an
    /// outcome, so it is held until an administrator resumes or removes it.
    fn quarantined(&self, message: &ClaimedMessage) {
        tracing::warn!(
            queue_id = %message.id.simple(),
            threshold = self.settings.poison_threshold,
            "message quarantined as poison: its delivery attempts kept ending without an outcome"
        );
        self.tracker.record(NewTrackingEvent {
            event_id: "POISONMESSAGE",
            source: "QUEUE",
            sender: Some(message.sender.clone().unwrap_or_default()),
            recipients: message.recipients.iter().map(|r| r.address.clone()).collect(),
            queue_id: Some(message.id),
            message_id: message.message_id.clone(),
            detail: Some(format!(
                "{} delivery attempts ended without an outcome; held until resumed or removed",
                self.settings.poison_threshold
            )),
            ..NewTrackingEvent::default()
        });
    }

    /// Writes outcomes in batches: whatever arrived while the previous write ran.
    async fn record(self: Arc<Self>, mut received: mpsc::Receiver<MessageOutcome>) {
        let mut batch = Vec::with_capacity(256);
        while received.recv_many(&mut batch, 256).await > 0 {
            // If this fails the leases expire and the messages are tried again:
            // at-least-once, never lost.
            if let Err(e) = self.store.record_outcomes(&batch).await {
                tracing::error!(error = %e, "recording delivery outcomes failed; messages will be retried");
            }
            batch.clear();
        }
    }

    /// One delivery attempt of one message: every pending recipient, grouped by route.
    async fn attempt(&self, message: &ClaimedMessage) -> MessageOutcome {
        // Start no send that could outlast the lease (a send may take up to the send
        // timeout): what is left is deferred, so no other claim can start on this
        // message while we still work on it.
        let deadline = Instant::now() + self.settings.send_window();
        let snapshot = self.config.load_full();
        let mut results: Vec<RecipientOutcome> = Vec::new();
        for group in group_by_route(&snapshot, &message.recipients) {
            let outcomes = match &group.connector {
                Some(connector) => {
                    self.deliver_route(message, connector, group.mx_domain.as_ref(), &group.recipients, deadline).await
                }
                None => group.recipients.iter().map(|r| outcome(r, Err(no_route()), None)).collect(),
            };
            results.extend(outcomes);
        }
        self.finish(message, results).await
    }

    /// Delivers one group of recipients that share a route, falling back to one
    /// transaction per recipient when a shared one fails, so each gets its own outcome.
    async fn deliver_route(
        &self,
        message: &ClaimedMessage,
        connector: &SendConnector,
        mx_domain: Option<&Domain>,
        recipients: &[&ClaimedRecipient],
        deadline: Instant,
    ) -> Vec<RecipientOutcome> {
        let hops = match self.hops(connector, mx_domain).await {
            Ok(hops) => hops,
            Err(failure) => {
                return recipients.iter().map(|r| outcome(r, Err(failure.clone()), Some(connector))).collect();
            }
        };
        let addresses: Vec<String> = recipients.iter().map(|r| r.address.clone()).collect();
        let shared = self.send_via(&hops, message, &addresses, deadline).await;
        if shared.is_ok() || recipients.len() == 1 || shared.as_ref().is_err_and(|f| f.connection) {
            return recipients.iter().map(|r| outcome(r, shared.clone(), Some(connector))).collect();
        }
        let mut outcomes = Vec::with_capacity(recipients.len());
        for r in recipients {
            let single = self.send_via(&hops, message, std::slice::from_ref(&r.address), deadline).await;
            outcomes.push(outcome(r, single, Some(connector)));
        }
        outcomes
    }

    /// Tries each hop in order until one answers the transaction.
    async fn send_via(
        &self,
        hops: &[Hop],
        message: &ClaimedMessage,
        recipients: &[String],
        deadline: Instant,
    ) -> Result<String, SendFailure> {
        let mut last = no_route();
        for hop in hops {
            if Instant::now() >= deadline {
                let reply = "451 4.4.7 Delivery attempt ran out of time; will retry".to_string();
                return Err(SendFailure { permanent: false, connection: false, reply });
            }
            match self.transport.send(hop, message.sender.as_deref(), recipients, &message.body).await {
                Ok(reply) => return Ok(format!("{reply} (via {}:{})", hop.host, hop.port)),
                Err(failure) if failure.connection => {
                    tracing::info!(host = %hop.host, port = hop.port, reply = %failure.reply, "next hop unreachable; trying the next");
                    last = SendFailure { reply: format!("{} ({}:{})", failure.reply, hop.host, hop.port), ..failure };
                }
                Err(failure) => return Err(failure),
            }
        }
        Err(last)
    }

    /// The next hops of a route: the connector's smart hosts, or the domain's MX hosts.
    async fn hops(&self, connector: &SendConnector, mx_domain: Option<&Domain>) -> Result<Vec<Hop>, SendFailure> {
        let creds = connector.credentials.as_ref();
        let Some(domain) = mx_domain else {
            return Ok(connector
                .smart_hosts
                .iter()
                .map(|h| Hop::new(&h.host, h.port.unwrap_or(connector.port), connector.tls_policy, creds))
                .collect());
        };
        match self.resolver.mail_hosts(domain.as_str()).await {
            Ok(hosts) => Ok(hosts.iter().map(|h| Hop::new(h, connector.port, connector.tls_policy, creds)).collect()),
            Err(MxError::Permanent(why)) => {
                Err(SendFailure { permanent: true, connection: false, reply: format!("550 5.4.4 {why}") })
            }
            Err(MxError::Temporary(why)) => Err(SendFailure {
                permanent: false,
                connection: true,
                reply: format!("451 4.4.3 DNS lookup failed: {why}"),
            }),
        }
    }

    /// Applies the retry schedule and expiry, queues a DSN for failures, tracks.
    async fn finish(&self, message: &ClaimedMessage, mut results: Vec<RecipientOutcome>) -> MessageOutcome {
        let now = OffsetDateTime::now_utc();
        let attempt = u32::try_from(message.attempts).unwrap_or(1);
        let mut next_attempt_at = None;
        if results.iter().any(|r| r.status == RecipientStatus::Deferred) {
            next_attempt_at = self.settings.retry.next_attempt(attempt, now, message.expires_at);
            if next_attempt_at.is_none() {
                for r in results.iter_mut().filter(|r| r.status == RecipientStatus::Deferred) {
                    r.status = RecipientStatus::Failed;
                    r.reply = format!("550 5.4.7 Message expired; last error: {}", r.reply);
                }
            }
        }
        let failed: Vec<FailedRecipient> = results
            .iter()
            .filter(|r| r.status == RecipientStatus::Failed)
            .filter_map(|r| address_of(message, r.idx).map(|a| FailedRecipient { address: a, reply: r.reply.clone() }))
            .collect();
        if !failed.is_empty() && !self.bounce(message, &failed, now).await {
            // The sender must hear of the failure: keep the recipients and try again
            // (the DSN is queued when the next attempt fails the same way).
            for r in results.iter_mut().filter(|r| r.status == RecipientStatus::Failed) {
                r.status = RecipientStatus::Deferred;
            }
            next_attempt_at = Some(now + self.settings.retry.delay_after(1));
        }
        self.track(message, &results);
        MessageOutcome { message_id: message.id, lease: message.lease, recipients: results, next_attempt_at }
    }

    /// Queues a DSN to the sender; never for the null sender (a bounce of a bounce).
    /// False when the DSN could not be queued.
    async fn bounce(&self, message: &ClaimedMessage, failed: &[FailedRecipient], now: OffsetDateTime) -> bool {
        let Some(sender) = &message.sender else { return true };
        let dsn_id = Uuid::now_v7();
        let input = BounceInput {
            reporting_mta: &self.settings.hostname,
            original_sender: sender,
            original_queue_id: message.id,
            original_body: &message.body,
            received_at: message.received_at,
            failed,
            dsn_id,
            now,
        };
        let generation = Some(self.config.load().generation);
        let dsn = bounce::dsn_message(&input, now + self.settings.message_expiry, generation, Some(message.id));
        match self.store.enqueue(&dsn).await {
            Ok(()) => {
                self.tracker.record(NewTrackingEvent {
                    event_id: "DSN",
                    source: "QUEUE",
                    sender: Some(String::new()),
                    recipients: vec![sender.clone()],
                    queue_id: Some(dsn_id),
                    message_id: dsn.message_id.clone(),
                    reference: Some(message.id.simple().to_string()),
                    detail: Some(format!("DSN for {} failed recipient(s) of {}", failed.len(), message.id.simple())),
                    ..NewTrackingEvent::default()
                });
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "could not queue a DSN; the failed recipients are retried");
                false
            }
        }
    }

    /// One tracking event per outcome and send connector, listing its recipients; the
    /// delivery latency of each delivered recipient.
    fn track(&self, message: &ClaimedMessage, results: &[RecipientOutcome]) {
        let latency = (OffsetDateTime::now_utc() - message.received_at).as_seconds_f64().max(0.0);
        for _ in results.iter().filter(|r| r.status == RecipientStatus::Delivered) {
            metrics::histogram!(crate::metrics::DELIVERY_LATENCY).record(latency);
        }
        // (event, send connector) → (recipients, their replies)
        type Groups = BTreeMap<(&'static str, Option<String>), (Vec<String>, Vec<String>)>;
        let mut groups = Groups::new();
        for r in results {
            let event = match r.status {
                RecipientStatus::Delivered => "SEND",
                RecipientStatus::Deferred => "DEFER",
                RecipientStatus::Failed => "FAIL",
            };
            let (recipients, replies) = groups.entry((event, r.route.clone())).or_default();
            recipients.push(address_of(message, r.idx).unwrap_or_default());
            replies.push(r.reply.clone());
        }
        for ((event_id, connector), (recipients, recipient_status)) in groups {
            self.tracker.record(NewTrackingEvent {
                event_id,
                source: "SMTP",
                connector,
                sender: Some(message.sender.clone().unwrap_or_default()),
                recipients,
                recipient_status,
                message_id: message.message_id.clone(),
                queue_id: Some(message.id),
                size: Some(message.body.len() as i64),
                server_hostname: Some(self.settings.hostname.clone()),
                ..NewTrackingEvent::default()
            });
        }
    }
}

/// Recipients of one message that share a next hop.
#[derive(Debug)]
struct RouteGroup<'a> {
    /// `None`: no send connector routes these recipients.
    connector: Option<Arc<SendConnector>>,
    /// The recipient domain for MX routes; `None` for smart hosts, which take every
    /// domain of their connector in one transaction.
    mx_domain: Option<Domain>,
    recipients: Vec<&'a ClaimedRecipient>,
}

fn group_by_route<'a>(snapshot: &Snapshot, recipients: &'a [ClaimedRecipient]) -> Vec<RouteGroup<'a>> {
    let mut groups: Vec<RouteGroup<'a>> = Vec::new();
    for r in recipients {
        let domain = r.address.rsplit_once('@').and_then(|(_, d)| Domain::parse(d, true).ok());
        let connector = domain.as_ref().and_then(|d| snapshot.route(d));
        let mx_domain = connector.as_ref().filter(|c| c.smart_hosts.is_empty()).and(domain);
        let same = |g: &&mut RouteGroup<'a>| {
            g.connector.as_ref().map(|c| c.id) == connector.as_ref().map(|c| c.id) && g.mx_domain == mx_domain
        };
        match groups.iter_mut().find(same) {
            Some(group) => group.recipients.push(r),
            None => groups.push(RouteGroup { connector, mx_domain, recipients: vec![r] }),
        }
    }
    groups
}

fn no_route() -> SendFailure {
    SendFailure { permanent: true, connection: false, reply: "550 5.4.4 No send connector routes this domain".into() }
}

fn outcome(
    r: &ClaimedRecipient,
    result: Result<String, SendFailure>,
    connector: Option<&SendConnector>,
) -> RecipientOutcome {
    let route = connector.map(|c| c.name.clone());
    match result {
        Ok(reply) => RecipientOutcome { idx: r.idx, status: RecipientStatus::Delivered, reply, route },
        Err(f) if f.permanent => {
            RecipientOutcome { idx: r.idx, status: RecipientStatus::Failed, reply: f.reply, route }
        }
        Err(f) => RecipientOutcome { idx: r.idx, status: RecipientStatus::Deferred, reply: f.reply, route },
    }
}

fn address_of(message: &ClaimedMessage, idx: i32) -> Option<String> {
    message.recipients.iter().find(|r| r.idx == idx).map(|r| r.address.clone())
}
