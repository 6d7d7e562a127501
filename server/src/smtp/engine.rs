//! The SMTP engine: one listener per distinct binding of the enabled receive
//! connectors, reconciled with every new configuration snapshot; connector selection
//! and connection limits at accept time; one task per session.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::pressure::BackPressure;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use super::connection;
use super::reply;
use super::session::{Rejection, Session, SessionInfo};
use super::stream::Stream;
use crate::auth::Authenticator;
use crate::domain::{Binding, ReceiveConnector, ServiceAccount};
use crate::policy::Snapshot;
use crate::queue::Committer;
use crate::store::{NewTrackingEvent, Store};
use crate::tracking::{ProtocolLogger, Tracker};

/// Engine settings from the bootstrap configuration.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// How long a queued message may wait for delivery before it bounces.
    pub message_expiry: Duration,
    /// How long to watch for a client that talks before the greeting (0 = only check
    /// what has already arrived).
    pub pregreet_wait: Duration,
    /// Whether subjects are recorded in the queue listing and the tracking log.
    pub record_subjects: bool,
    /// This node's name, recorded as the tracking log's server hostname (as Exchange
    /// records the transport server), so an event says which node handled it.
    pub node_hostname: String,
    /// Let other Postern processes of this host listen on the same bindings.
    pub share_ports: bool,
    /// `Received:` fields a message may carry before it is refused as a loop.
    pub max_hops: usize,
}

/// What every session needs, shared.
#[derive(Debug)]
pub struct EngineContext {
    pub store: Store,
    /// Commits accepted messages, grouped (see `queue::Committer`).
    pub committer: Committer,
    pub tracker: Tracker,
    /// Transcripts of sessions on connectors with verbose protocol logging.
    pub protocol_log: ProtocolLogger,
    pub config: Arc<ArcSwap<Snapshot>>,
    /// Wakes the local delivery workers when a message is queued.
    pub queue_wakeup: Arc<Notify>,
    pub settings: EngineSettings,
    pub shutdown: CancellationToken,
    pub pressure: Arc<BackPressure>,
    load: ConnectionLoad,
    /// Bounds the connections being refused (no connector admits them) at one time.
    refusals: Arc<tokio::sync::Semaphore>,
    /// Messages accepted per connector and source in the current minute.
    pub rates: SubmissionRate,
    /// Service-account sign-in (cache and throttle are shared by all sessions).
    pub authenticator: Arc<Authenticator>,
    /// Messages per service account, for the account's own limits.
    pub accounts: AccountUsage,
    sessions: TaskTracker,
}

/// What the engine is built from, shared with the rest of the node.
#[derive(Debug)]
pub struct EngineParts {
    pub store: Store,
    pub tracker: Tracker,
    pub protocol_log: ProtocolLogger,
    pub config: Arc<ArcSwap<Snapshot>>,
    /// Wakes the local delivery workers when a message is queued.
    pub queue_wakeup: Arc<Notify>,
    pub authenticator: Arc<Authenticator>,
    /// Says when new mail must be refused (452 4.3.1).
    pub pressure: Arc<BackPressure>,
}

/// The state of one listening socket, for status pages.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ListenerStatus {
    pub binding: String,
    /// The address actually bound (differs from the binding for port 0 in tests).
    pub local_addr: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug)]
struct RunningListener {
    local_addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// The SMTP engine of one node.
#[derive(Debug)]
pub struct Engine {
    ctx: Arc<EngineContext>,
    listeners: Mutex<BTreeMap<Binding, Result<RunningListener, String>>>,
}

impl Engine {
    pub fn new(parts: EngineParts, settings: EngineSettings, shutdown: CancellationToken) -> Self {
        let EngineParts { store, tracker, protocol_log, config, queue_wakeup, authenticator, pressure } = parts;
        let ctx = EngineContext {
            committer: Committer::start(store.clone()),
            store,
            tracker,
            protocol_log,
            config,
            queue_wakeup,
            settings,
            shutdown,
            load: ConnectionLoad::default(),
            refusals: Arc::new(tokio::sync::Semaphore::new(MAX_REFUSALS)),
            rates: SubmissionRate::default(),
            authenticator,
            accounts: AccountUsage::default(),
            sessions: TaskTracker::new(),
            pressure,
        };
        Self { ctx: Arc::new(ctx), listeners: Mutex::new(BTreeMap::new()) }
    }

    /// The sockets to listen on for a snapshot. A wildcard binding on a port covers
    /// every specific address on that port (the OS would refuse both), and selection
    /// looks at the local address of each accepted connection anyway.
    pub fn wanted_bindings(snapshot: &Snapshot) -> Vec<Binding> {
        let all: Vec<Binding> =
            snapshot.receive_connectors.iter().filter(|c| c.enabled).flat_map(|c| c.bindings.iter().copied()).collect();
        let mut wanted: Vec<Binding> = all
            .iter()
            .copied()
            .filter(|b| {
                let covered = |w: &Binding| {
                    w.is_wildcard() && w.port() == b.port() && w.socket_addr().is_ipv4() == b.socket_addr().is_ipv4()
                };
                b.is_wildcard() || !all.iter().any(covered)
            })
            .collect();
        wanted.sort();
        wanted.dedup();
        wanted
    }

    /// Opens listeners for new bindings and stops those no longer wanted. A binding that
    /// cannot be opened is recorded and retried later (see `has_failed_listeners`); the
    /// others run on.
    pub async fn reconcile(&self) {
        let wanted = Self::wanted_bindings(&self.ctx.config.load());
        let (stopped, to_open): (Vec<RunningListener>, Vec<Binding>) = {
            let mut listeners = self.lock_listeners();
            let unwanted: Vec<Binding> = listeners.keys().filter(|b| !wanted.contains(b)).copied().collect();
            let stopped = unwanted
                .iter()
                .filter_map(|b| listeners.remove(b))
                .filter_map(Result::ok)
                .inspect(|running| running.stop.cancel())
                .collect();
            let to_open = wanted.iter().filter(|b| !matches!(listeners.get(b), Some(Ok(_)))).copied().collect();
            (stopped, to_open)
        };
        // The old sockets must be closed before a new binding may reuse their port
        // (e.g. 10.0.0.1:25 replaced by 0.0.0.0:25).
        for running in stopped {
            let _ = running.task.await;
            tracing::info!(addr = %running.local_addr, "listener stopped");
        }
        for binding in to_open {
            let state = match bind(binding.socket_addr(), self.ctx.settings.share_ports) {
                Ok(listener) => {
                    let local_addr = listener.local_addr().unwrap_or(binding.socket_addr());
                    let stop = self.ctx.shutdown.child_token();
                    let task = tokio::spawn(accept_loop(listener, Arc::clone(&self.ctx), stop.clone()));
                    tracing::info!(%binding, %local_addr, "listening");
                    Ok(RunningListener { local_addr, stop, task })
                }
                Err(e) => {
                    tracing::error!(%binding, error = %e, "cannot listen; other listeners keep running");
                    Err(e.to_string())
                }
            };
            self.lock_listeners().insert(binding, state);
        }
    }

    /// True when a wanted binding could not be opened (port in use, address missing).
    pub fn has_failed_listeners(&self) -> bool {
        self.lock_listeners().values().any(Result::is_err)
    }

    pub fn listener_status(&self) -> Vec<ListenerStatus> {
        self.lock_listeners()
            .iter()
            .map(|(binding, state)| ListenerStatus {
                binding: binding.to_string(),
                local_addr: state.as_ref().ok().map(|r| r.local_addr.to_string()),
                error: state.as_ref().err().cloned(),
            })
            .collect()
    }

    /// Waits until every session has ended (after shutdown was signalled).
    pub async fn drain(&self, grace: Duration) {
        self.ctx.sessions.close();
        if tokio::time::timeout(grace, self.ctx.sessions.wait()).await.is_err() {
            tracing::warn!(open = self.ctx.sessions.len(), "sessions still open at the end of the grace period");
        }
    }

    /// Sources and logins locked out after repeated authentication failures.
    pub fn auth_lockouts(&self) -> Vec<crate::auth::Lockout> {
        self.ctx.authenticator.throttle.lockouts(std::time::Instant::now())
    }

    pub fn open_sessions(&self) -> usize {
        self.ctx.sessions.len()
    }

    fn lock_listeners(&self) -> std::sync::MutexGuard<'_, BTreeMap<Binding, Result<RunningListener, String>>> {
        // A poisoned lock only means another thread panicked mid-update of a map of
        // handles; the map itself is still usable.
        self.listeners.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Binds a listener. With `share` (SO_REUSEPORT), several Postern processes of one host
/// (nodes sharing a machine, or the old and the new binary during an upgrade) serve the
/// same binding, the kernel spreading connections between them; Linux lets only
/// processes of the same user share a port this way. Off by default, so that a second
/// instance started by mistake finds the port busy instead of silently taking half the
/// mail into another queue.
fn bind(addr: std::net::SocketAddr, share: bool) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(share)?;
    socket.bind(addr)?;
    // The kernel caps this at net.core.somaxconn.
    socket.listen(1024)
}

async fn accept_loop(listener: TcpListener, ctx: Arc<EngineContext>, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let ctx2 = Arc::clone(&ctx);
                ctx.sessions.spawn(start_session(stream, peer, ctx2));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn start_session(mut stream: TcpStream, peer: SocketAddr, ctx: Arc<EngineContext>) {
    let _ = stream.set_nodelay(true);
    let Ok(local) = stream.local_addr() else { return };
    let snapshot = ctx.config.load_full();
    let id = Uuid::now_v7();
    let Some(connector) = snapshot.select_connector(local, peer.ip()) else {
        refuse_unlisted(stream, peer, local, &snapshot, &ctx).await;
        return;
    };
    let info = SessionInfo { id, peer, local, snapshot, connector, max_hops: ctx.settings.max_hops };
    let span = tracing::info_span!("smtp", session = %id, %peer, connector = %info.connector.name);
    let session = Session::new(info);
    let _slot = match ctx.load.admit(&session.info.connector, peer.ip()) {
        Ok(slot) => slot,
        Err(()) => {
            let refused = reply::Reply::from(reply::TOO_MANY_CONNECTIONS).summary();
            connection::record_rejection(&ctx, &session, Rejection::throttled(refused));
            let mut out = Vec::new();
            reply::Reply::from(reply::TOO_MANY_CONNECTIONS).write_to(&mut out);
            let _ = stream.write_all(&out).await;
            return;
        }
    };
    tracing::Instrument::instrument(connection::serve(Stream::Plain(stream), session, Arc::clone(&ctx)), span).await;
}

/// Connections without a connector answered at the same time; beyond, they are closed
/// at once (a flood from an unlisted network must not exhaust file descriptors).
const MAX_REFUSALS: usize = 256;

/// No connector admits this client: greet with `554 5.7.1 <fqdn> Access denied`, answer
/// QUIT with 221 and anything else with 503 (RFC 5321 §3.1), then close.
async fn refuse_unlisted(
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    snapshot: &Snapshot,
    ctx: &EngineContext,
) {
    let Ok(_permit) = Arc::clone(&ctx.refusals).try_acquire_owned() else { return };
    let fqdn = snapshot
        .receive_connectors
        .iter()
        .find(|c| c.bindings.iter().any(|b| b.accepts(local)))
        .map_or_else(|| "postern".to_string(), |c| c.fqdn.clone());
    let denied = reply::access_denied(&fqdn);
    ctx.tracker.record(NewTrackingEvent {
        event_id: "REJECT",
        source: "SMTP",
        client_ip: Some(peer.ip().to_canonical()),
        server_ip: Some(local.ip().to_canonical()),
        server_hostname: Some(ctx.settings.node_hostname.clone()),
        config_generation: Some(snapshot.generation),
        detail: Some(format!("{} (no receive connector admits this client)", denied.summary())),
        ..NewTrackingEvent::default()
    });
    tracing::info!(%peer, %local, "refused: no receive connector admits this client");
    connection::refuse(stream, denied, &fqdn).await;
}

/// Open connections per connector and per source address.
#[derive(Debug, Default)]
struct ConnectionLoad {
    counts: Arc<Mutex<HashMap<Uuid, ConnectorCount>>>,
}

#[derive(Debug, Default)]
struct ConnectorCount {
    total: u32,
    per_source: HashMap<IpAddr, u32>,
}

/// Holds one connection's place; gives it back when dropped.
#[derive(Debug)]
struct Slot {
    counts: Arc<Mutex<HashMap<Uuid, ConnectorCount>>>,
    connector: Uuid,
    source: IpAddr,
}

impl ConnectionLoad {
    /// Counts a connection against its connector and its source (an IPv4 address or an
    /// IPv6 /64: rotating addresses inside one /64 gains nothing).
    fn admit(&self, connector: &ReceiveConnector, source: IpAddr) -> Result<Slot, ()> {
        let source = crate::domain::source_key(source);
        let mut counts = self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = counts.entry(connector.id).or_default();
        let from_source = count.per_source.get(&source).copied().unwrap_or(0);
        if count.total >= connector.limits.max_connections || from_source >= connector.limits.max_connections_per_source
        {
            return Err(());
        }
        count.total += 1;
        *count.per_source.entry(source).or_default() += 1;
        Ok(Slot { counts: Arc::clone(&self.counts), connector: connector.id, source })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.connector) {
            count.total = count.total.saturating_sub(1);
            if let Some(n) = count.per_source.get_mut(&self.source) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    count.per_source.remove(&self.source);
                }
            }
        }
    }
}

/// A fixed one-minute window of accepted messages per (connector, source), for the
/// connector's `max_messages_per_minute_per_source` (0 = unlimited). A source is an IPv4
/// address or an IPv6 /64.
#[derive(Debug)]
pub struct SubmissionRate {
    windows: crate::limits::FixedWindow<(Uuid, IpAddr)>,
}

impl Default for SubmissionRate {
    fn default() -> Self {
        Self { windows: crate::limits::FixedWindow::new(MINUTE) }
    }
}

impl SubmissionRate {
    /// True when this source has used up its messages for the current minute.
    pub fn exceeded(&self, connector: &ReceiveConnector, source: IpAddr) -> bool {
        let key = (connector.id, crate::domain::source_key(source));
        self.windows.exceeded(&key, connector.limits.max_messages_per_minute_per_source, std::time::Instant::now())
    }

    /// Counts one accepted message.
    pub fn count(&self, connector: &ReceiveConnector, source: IpAddr) {
        if connector.limits.max_messages_per_minute_per_source == 0 {
            return;
        }
        self.windows.count((connector.id, crate::domain::source_key(source)), std::time::Instant::now());
    }
}

/// Messages per service account in the current minute and day (fixed windows, per
/// node), for the account's `max_messages_per_minute` / `max_messages_per_day`; and when
/// the account was last recorded as used.
#[derive(Debug, Default)]
pub struct AccountUsage {
    accounts: Mutex<HashMap<Uuid, AccountWindows>>,
}

#[derive(Debug, Clone, Copy)]
struct AccountWindows {
    minute: (std::time::Instant, u32),
    day: (std::time::Instant, u32),
    touched: Option<std::time::Instant>,
}

const MINUTE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(86_400);
/// `last_used_at` is written at most this often per account.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

impl AccountWindows {
    fn new() -> Self {
        let now = std::time::Instant::now();
        Self { minute: (now, 0), day: (now, 0), touched: None }
    }

    /// Starts a new window where the old one has run out.
    fn roll(&mut self) {
        let now = std::time::Instant::now();
        if self.minute.0.elapsed() >= MINUTE {
            self.minute = (now, 0);
        }
        if self.day.0.elapsed() >= DAY {
            self.day = (now, 0);
        }
    }
}

impl AccountUsage {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, AccountWindows>> {
        self.accounts.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// True when the account has used up its messages for this minute or day.
    pub fn exceeded(&self, account: &ServiceAccount) -> bool {
        let mut accounts = self.lock();
        let Some(windows) = accounts.get_mut(&account.id) else { return false };
        windows.roll();
        account.max_messages_per_minute.is_some_and(|limit| windows.minute.1 >= limit)
            || account.max_messages_per_day.is_some_and(|limit| windows.day.1 >= limit)
    }

    pub fn count(&self, account: &ServiceAccount) {
        let mut accounts = self.lock();
        let windows = accounts.entry(account.id).or_insert_with(AccountWindows::new);
        windows.roll();
        windows.minute.1 += 1;
        windows.day.1 += 1;
    }

    /// True (and remembered) when `last_used_at` should be written for this account now.
    pub fn due_for_touch(&self, id: Uuid) -> bool {
        let mut accounts = self.lock();
        let windows = accounts.entry(id).or_insert_with(AccountWindows::new);
        if windows.touched.is_some_and(|t| t.elapsed() < TOUCH_EVERY) {
            return false;
        }
        windows.touched = Some(std::time::Instant::now());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::tests::connector;

    #[test]
    fn connections_and_submissions_count_an_ipv6_source_per_slash_64() {
        let mut c = connector("Relay", "[::]:2526", &["::/0"]);
        c.limits.max_connections_per_source = 2;
        c.limits.max_messages_per_minute_per_source = 2;
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let load = ConnectionLoad::default();
        let _a = load.admit(&c, ip("2001:db8:1:2::1")).unwrap();
        let _b = load.admit(&c, ip("2001:db8:1:2:ffff::9")).unwrap();
        assert!(load.admit(&c, ip("2001:db8:1:2::77")).is_err(), "the same /64 is one source");
        let other = load.admit(&c, ip("2001:db8:1:3::1"));
        assert!(other.is_ok(), "another /64 is another source");
        drop(_a);
        assert!(load.admit(&c, ip("2001:db8:1:2::77")).is_ok(), "a closed connection gives its place back");

        let rate = SubmissionRate::default();
        rate.count(&c, ip("2001:db8:1:2::1"));
        rate.count(&c, ip("2001:db8:1:2::2"));
        assert!(rate.exceeded(&c, ip("2001:db8:1:2::3")));
        assert!(!rate.exceeded(&c, ip("2001:db8:1:4::3")));
        assert!(!rate.exceeded(&c, ip("192.0.2.1")));
    }
}
