//! Outbound delivery: workers claim due messages from the shared queue (with a lease,
//! so several nodes share it), route each recipient through the most specific send
//! connector (smart hosts, or DNS MX), and record a per-recipient outcome: delivered,
//! deferred (retried on the schedule until the message expires) or failed (a DSN to
//! the sender). A retry never re-sends to recipients that already succeeded: only
//! pending and deferred recipients are claimed.

pub mod bounce;
pub mod destinations;
pub mod mx;
pub mod oauth;
pub mod tls;
pub mod transport;

use std::collections::BTreeMap;
use std::net::IpAddr;
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
use self::destinations::OwnAddresses;
use self::mx::{MxError, MxResolver};
use self::oauth::{TokenRequest, TokenSource};
use self::tls::{ConnectorTrust, HopTls, SystemTrust};
use self::transport::{Hop, HopAuth, HopFacts, SendFailure, Sent, Transport};
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
    /// `Received:` fields beyond which a queued message is failed as a loop.
    pub max_hops: usize,
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
    /// The system's CAs and this host's addresses, as of a configuration generation:
    /// read again when the generation changes (a reload), so a CA added to the host or
    /// a new interface address counts without a restart.
    pub environment: std::sync::Mutex<Option<Environment>>,
    /// Kibibytes of large message bodies (those left out of claims) held by deliveries at
    /// once: memory for bodies stays bounded whatever the messages' sizes.
    pub large_bodies: Semaphore,
    /// OAuth2 token sources, one per client, shared by every delivery of the node.
    pub tokens: std::sync::Mutex<std::collections::HashMap<TokenRequest, Arc<TokenSource>>>,
}

/// What delivery reads from the host rather than the configuration.
#[derive(Debug, Clone)]
pub struct Environment {
    pub generation: i64,
    pub trust: SystemTrust,
    pub own: OwnAddresses,
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
                        let outcome = delivery.attempt_with_body(message).await;
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

    /// Writes outcomes, with their tracking events, in batches: whatever arrived while
    /// the previous write ran.
    async fn record(self: Arc<Self>, mut received: mpsc::Receiver<MessageOutcome>) {
        let mut batch = Vec::with_capacity(256);
        while received.recv_many(&mut batch, 256).await > 0 {
            if self.record_batch(&batch).await {
                batch.iter().flat_map(|o| &o.tracking).for_each(crate::metrics::observe);
            }
            batch.clear();
        }
    }

    /// Records one batch, retrying through a database outage for a tenth of the lease
    /// (the leases are still ours then). Past that, the leases run out and the messages
    /// are tried again: delivered twice at worst, never lost, and the log shows what the
    /// queue says.
    async fn record_batch(&self, batch: &[MessageOutcome]) -> bool {
        let give_up = tokio::time::Instant::now() + self.settings.lease / 10;
        let mut pause = Duration::from_millis(100);
        loop {
            match self.store.record_outcomes(batch).await {
                Ok(()) => return true,
                Err(e) if tokio::time::Instant::now() + pause > give_up => {
                    tracing::error!(error = %e, outcomes = batch.len(), "recording delivery outcomes failed; the messages will be tried again");
                    return false;
                }
                Err(e) => {
                    tracing::warn!(error = %e, outcomes = batch.len(), "recording delivery outcomes failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Reads a large message's body (left out of its claim) within the node's budget for
    /// large bodies, then attempts delivery; the budget is given back when it is done.
    /// A body that cannot be read defers the message (its lease is released now, not left
    /// to expire, which would count as a crash).
    async fn attempt_with_body(&self, mut message: ClaimedMessage) -> MessageOutcome {
        if message.body.is_some() {
            return self.attempt(&message).await;
        }
        let kib = u32::try_from(message.size / 1024).unwrap_or(u32::MAX).clamp(1, LARGE_BODY_BUDGET_KIB);
        let Ok(_budget) = self.large_bodies.acquire_many(kib).await else {
            return self.unreadable(&message, "the delivery budget is closed").await;
        };
        match self.store.message_body(message.id).await {
            Ok(body) => {
                message.body = Some(body);
                self.attempt(&message).await
            }
            Err(e) => self.unreadable(&message, &e.to_string()).await,
        }
    }

    async fn unreadable(&self, message: &ClaimedMessage, why: &str) -> MessageOutcome {
        tracing::warn!(queue_id = %message.id.simple(), %why, "a message's body could not be read; deferred");
        let failure = SendFailure {
            remote: None,
            permanent: false,
            connection: false,
            reply: format!("451 4.3.0 The message could not be read from the queue: {why}"),
        };
        let outcomes = message.recipients.iter().map(|r| outcome(r, Err(failure.clone()), None)).collect();
        self.finish(message, outcomes).await
    }

    /// One delivery attempt of one message: every pending recipient, grouped by route.
    async fn attempt(&self, message: &ClaimedMessage) -> MessageOutcome {
        // Start no send that could outlast the lease (a send may take up to the send
        // timeout): what is left is deferred, so no other claim can start on this
        // message while we still work on it.
        let deadline = Instant::now() + self.settings.send_window();
        let snapshot = self.config.load_full();
        let mut results: Vec<Attempted> = Vec::new();
        // A message queued before the limit was lowered, or by a path that does not
        // count: it has looped, and sending it on would make it loop again.
        let hops = crate::smtp::headers::HeaderSection::parse(body_of(message)).map_or(0, |s| s.hops());
        if hops > self.settings.max_hops {
            let reply = format!("554 5.4.6 Too many hops ({hops} Received fields): the message loops");
            let failed = SendFailure { remote: None, permanent: true, connection: false, reply };
            // (Only recipients still to deliver are claimed.)
            let outcomes = message.recipients.iter().map(|r| outcome(r, Err(failed.clone()), None)).collect();
            return self.finish(message, outcomes).await;
        }
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
    ) -> Vec<Attempted> {
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
    ) -> Result<Sent, SendFailure> {
        let mut last = no_route();
        for hop in hops {
            if Instant::now() >= deadline {
                let reply = "451 4.4.7 Delivery attempt ran out of time; will retry".to_string();
                return Err(SendFailure { remote: None, permanent: false, connection: false, reply });
            }
            match self.transport.send(hop, message.sender.as_deref(), recipients, body_of(message)).await {
                Ok(sent) => {
                    let reply = format!("{} (via {}; {})", sent.reply, hop.describe(), sent.facts);
                    return Ok(Sent { reply, ..sent });
                }
                Err(failure) if failure.connection => {
                    tracing::info!(host = %hop.describe(), reply = %failure.reply, "next hop unreachable; trying the next");
                    let reply = format!("{} ({})", failure.reply, hop.describe());
                    last = SendFailure { reply, remote: Some(hop.host.clone()), ..failure };
                }
                Err(failure) => {
                    let reply = format!("{} ({})", failure.reply, hop.describe());
                    return Err(SendFailure { reply, remote: Some(hop.host.clone()), ..failure });
                }
            }
        }
        Err(last)
    }

    /// The system's CAs and this host's addresses for `generation`, read again after a
    /// reload.
    fn environment(&self, generation: i64) -> Environment {
        let mut cached = self.environment.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match cached.as_ref() {
            Some(env) if env.generation == generation => env.clone(),
            _ => {
                let env = Environment { generation, trust: SystemTrust::load(), own: OwnAddresses::read() };
                tracing::info!(trust = %env.trust.source, generation, "outbound TLS trust loaded");
                *cached = Some(env.clone());
                env
            }
        }
    }

    /// The token source of a connector's OAuth2 client (one per client and node).
    fn token_source(&self, request: TokenRequest, tls: &HopTls) -> Arc<TokenSource> {
        let mut tokens = self.tokens.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(tokens.entry(request.clone()).or_insert_with(|| TokenSource::new(request, tls.clone())))
    }

    /// How the connector's hops talk TLS and sign in.
    fn hop_template(
        &self,
        connector: &SendConnector,
        generation: i64,
    ) -> Result<(HopTls, Option<HopAuth>, String), SendFailure> {
        let env = self.environment(generation);
        let ca = match &connector.tls_ca_pem {
            Some(pem) => tls::parse_ca_bundle(pem).map(|(certs, _)| certs).map_err(|e| SendFailure {
                remote: None,
                permanent: false,
                connection: false,
                reply: format!("451 4.7.5 the send connector's CA bundle is unusable: {e}"),
            })?,
            None => Vec::new(),
        };
        let tls = HopTls {
            policy: connector.tls_policy,
            system: env.trust,
            connector: ConnectorTrust { ca, pin: connector.tls_pin },
        };
        let auth = match (&connector.credentials, &connector.oauth2) {
            (Some(password), _) => Some(HopAuth::Password(password.clone())),
            (None, Some(client)) => {
                let request = TokenRequest {
                    url: client.token_url.clone(),
                    client_id: client.client_id.clone(),
                    client_secret: client.client_secret.clone(),
                    scope: client.scope.clone(),
                };
                Some(HopAuth::OAuth2 { mailbox: client.mailbox.clone(), tokens: self.token_source(request, &tls) })
            }
            (None, None) => None,
        };
        Ok((tls, auth, format!("{}@{generation}", connector.id)))
    }

    /// The next hops of a route: the connector's smart hosts, or the domain's MX hosts
    /// at the addresses they may be reached at.
    async fn hops(&self, connector: &SendConnector, mx_domain: Option<&Domain>) -> Result<Vec<Hop>, SendFailure> {
        let generation = self.config.load().generation;
        let (tls, auth, config_key) = self.hop_template(connector, generation)?;
        let hop = |host: &str, address: Option<IpAddr>, port: u16| Hop {
            host: host.to_string(),
            address,
            port,
            tls: tls.clone(),
            auth: auth.clone(),
            config_key: config_key.clone(),
        };
        let Some(domain) = mx_domain else {
            return Ok(connector
                .smart_hosts
                .iter()
                .map(|h| hop(&h.host, None, h.port.unwrap_or(connector.port)))
                .collect());
        };
        let hosts = self.resolver.mail_hosts(domain.as_str()).await.map_err(dns_failure)?;
        let own = self.environment(generation).own;
        let (mut hops, mut refused, mut last_error) = (Vec::new(), Vec::new(), None);
        for host in &hosts {
            let addresses = match self.resolver.addresses(host).await {
                Ok(addresses) => destinations::ordered(addresses, connector.ip_preference),
                Err(e) => {
                    last_error = Some(e);
                    continue;
                }
            };
            for ip in addresses {
                match destinations::refusal(ip, &own) {
                    Some(why) if !connector.allow_private_destinations => refused.push(format!("{host} [{ip}]: {why}")),
                    _ => hops.push(hop(host, Some(ip), connector.port)),
                }
            }
        }
        if !hops.is_empty() {
            return Ok(hops);
        }
        if !refused.is_empty() {
            // RFC 3463 §3.5 X.4.4 (unable to route): the domain's mail hosts are somewhere
            // Postern does not connect to (allow_private_destinations would).
            return Err(SendFailure {
                remote: None,
                permanent: true,
                connection: false,
                reply: format!(
                    "550 5.4.4 The mail hosts of {domain} are not reachable from here: {}",
                    refused.join(", ")
                ),
            });
        }
        Err(last_error.map_or_else(no_route, dns_failure))
    }

    /// Applies the retry schedule and expiry, queues a DSN for failures, tracks.
    async fn finish(&self, message: &ClaimedMessage, attempted: Vec<Attempted>) -> MessageOutcome {
        let mut results = Vec::with_capacity(attempted.len());
        let (mut facts, mut remotes) = (Vec::with_capacity(attempted.len()), Vec::with_capacity(attempted.len()));
        for a in attempted {
            results.push(a.outcome);
            facts.push(a.facts);
            remotes.push(a.remote);
        }
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
            .zip(&remotes)
            .filter(|(r, _)| r.status == RecipientStatus::Failed)
            .filter_map(|(r, remote)| {
                let remote_mta = remote.clone();
                address_of(message, r.idx).map(|address| FailedRecipient {
                    address,
                    reply: r.reply.clone(),
                    remote_mta,
                })
            })
            .collect();
        if !failed.is_empty() && !self.bounce(message, &failed, now).await {
            // The sender must hear of the failure: keep the recipients and try again
            // (the DSN is queued when the next attempt fails the same way).
            for r in results.iter_mut().filter(|r| r.status == RecipientStatus::Failed) {
                r.status = RecipientStatus::Deferred;
            }
            next_attempt_at = Some(now + self.settings.retry.delay_after(1));
        }
        let tracking = self.track(message, &results, &facts);
        MessageOutcome { message_id: message.id, lease: message.lease, recipients: results, next_attempt_at, tracking }
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
            original_body: body_of(message),
            received_at: message.received_at,
            failed,
            dsn_id,
            now,
        };
        let generation = Some(self.config.load().generation);
        let mut dsn = bounce::dsn_message(&input, now + self.settings.message_expiry, generation, Some(message.id));
        dsn.tracking.push(NewTrackingEvent {
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
        // The DSN event commits with the DSN.
        match self.store.enqueue(&dsn).await {
            Ok(()) => {
                dsn.tracking.iter().for_each(crate::metrics::observe);
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "could not queue a DSN; the failed recipients are retried");
                false
            }
        }
    }

    /// One tracking event per outcome and send connector, listing its recipients (they
    /// commit with the outcome); the delivery latency of each delivered recipient.
    fn track(
        &self,
        message: &ClaimedMessage,
        results: &[RecipientOutcome],
        facts: &[Option<HopFacts>],
    ) -> Vec<NewTrackingEvent> {
        let latency = (OffsetDateTime::now_utc() - message.received_at).as_seconds_f64().max(0.0);
        for _ in results.iter().filter(|r| r.status == RecipientStatus::Delivered) {
            metrics::histogram!(crate::metrics::DELIVERY_LATENCY).record(latency);
        }
        // (event, send connector, TLS, AUTH) → (recipients, their replies)
        type Groups =
            BTreeMap<(&'static str, Option<String>, Option<String>, Option<String>), (Vec<String>, Vec<String>)>;
        let mut groups = Groups::new();
        for (r, hop) in results.iter().zip(facts) {
            let event = match r.status {
                RecipientStatus::Delivered => "SEND",
                RecipientStatus::Deferred => "DEFER",
                RecipientStatus::Failed => "FAIL",
            };
            let tls = hop.as_ref().map(|h| h.tls.as_ref().map_or_else(|| "no TLS".to_string(), ToString::to_string));
            let auth = hop.as_ref().and_then(|h| h.auth.clone());
            let (recipients, replies) = groups.entry((event, r.route.clone(), tls, auth)).or_default();
            recipients.push(address_of(message, r.idx).unwrap_or_default());
            replies.push(r.reply.clone());
        }
        let mut events = Vec::with_capacity(groups.len());
        for ((event_id, connector, tls, auth), (recipients, recipient_status)) in groups {
            events.push(NewTrackingEvent {
                event_id,
                source: "SMTP",
                connector,
                tls,
                auth_mechanism: auth.as_deref().and_then(static_mechanism),
                sender: Some(message.sender.clone().unwrap_or_default()),
                recipients,
                recipient_status,
                message_id: message.message_id.clone(),
                queue_id: Some(message.id),
                size: Some(message.size),
                server_hostname: Some(self.settings.hostname.clone()),
                ..NewTrackingEvent::default()
            });
        }
        events
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

/// A failed MX or address lookup as a delivery failure. RFC 7505 §4.2: a null MX is
/// permanent, `556 5.1.10`.
fn dns_failure(e: MxError) -> SendFailure {
    match e {
        MxError::NullMx(_) => {
            SendFailure { remote: None, permanent: true, connection: false, reply: format!("556 5.1.10 {e}") }
        }
        MxError::Permanent(why) => {
            SendFailure { remote: None, permanent: true, connection: false, reply: format!("550 5.4.4 {why}") }
        }
        MxError::Temporary(why) => SendFailure {
            remote: None,
            permanent: false,
            connection: true,
            reply: format!("451 4.4.3 DNS lookup failed: {why}"),
        },
    }
}

fn no_route() -> SendFailure {
    SendFailure {
        remote: None,
        permanent: true,
        connection: false,
        reply: "550 5.4.4 No send connector routes this domain".into(),
    }
}

/// The AUTH mechanisms tracking names (its column takes a fixed set of names).
fn static_mechanism(name: &str) -> Option<&'static str> {
    ["PLAIN", "LOGIN", "XOAUTH2"].into_iter().find(|m| m.eq_ignore_ascii_case(name))
}

/// One recipient's outcome, and how the hop that took it was made (for tracking).
/// The budget of `Delivery::large_bodies`: 40 MiB (a body in memory has one more copy
/// while the SMTP client dot-stuffs it). A larger message takes all of it.
pub const LARGE_BODY_BUDGET_KIB: u32 = 40 * 1024;

/// A claimed message's bytes (read before its attempt when it was left out of the claim).
fn body_of(message: &ClaimedMessage) -> &[u8] {
    message.body.as_deref().unwrap_or_default()
}

#[derive(Debug)]
struct Attempted {
    outcome: RecipientOutcome,
    /// How the hop that took it was made (for tracking).
    facts: Option<HopFacts>,
    /// The next hop that refused it (a DSN's Remote-MTA).
    remote: Option<String>,
}

fn outcome(r: &ClaimedRecipient, result: Result<Sent, SendFailure>, connector: Option<&SendConnector>) -> Attempted {
    let route = connector.map(|c| c.name.clone());
    let recipient = |status, reply| RecipientOutcome { idx: r.idx, status, reply, route: route.clone() };
    match result {
        Ok(sent) => Attempted {
            outcome: recipient(RecipientStatus::Delivered, sent.reply),
            facts: Some(sent.facts),
            remote: None,
        },
        Err(f) => {
            let status = if f.permanent { RecipientStatus::Failed } else { RecipientStatus::Deferred };
            Attempted { outcome: recipient(status, f.reply), facts: None, remote: f.remote }
        }
    }
}

fn address_of(message: &ClaimedMessage, idx: i32) -> Option<String> {
    message.recipients.iter().find(|r| r.idx == idx).map(|r| r.address.clone())
}
