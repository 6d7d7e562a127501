//! Wiring: build every part of a node from its settings, bind the ports, run until
//! stopped, shut down gracefully. Tests start exactly this.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::auth::Authenticator;
use crate::delivery::mx::{DnsResolver, MxResolver};
use crate::delivery::transport::{LettreTransport, Transport};
use crate::delivery::{Delivery, DeliverySettings};
use crate::embedded_postgres::EmbeddedPostgres;
use crate::http;
use crate::policy::Snapshot;
use crate::settings::Settings;
use crate::smtp::{Engine, EngineParts, EngineSettings, ListenerStatus};
use crate::store::Store;
use crate::tracking::{ProtocolLogger, Tracker};

/// The seams a test may replace: DNS and the outbound SMTP client.
#[derive(Debug, Clone)]
pub struct Dependencies {
    pub resolver: Arc<dyn MxResolver>,
    pub transport: Arc<dyn Transport>,
}

impl Dependencies {
    pub fn production(settings: &Settings) -> anyhow::Result<Self> {
        let resolver = DnsResolver::from_system().map_err(|e| anyhow::anyhow!("DNS resolver: {e}"))?;
        Ok(Self {
            resolver: Arc::new(resolver),
            transport: Arc::new(LettreTransport::new(
                settings.hostname.clone(),
                Duration::from_secs(settings.delivery_timeout_secs),
            )),
        })
    }
}

/// Opens the database named by the settings, or the embedded cluster, and migrates it.
pub async fn open_store(settings: &Settings) -> anyhow::Result<(Store, Option<EmbeddedPostgres>)> {
    let (options, embedded) = match &settings.database_url {
        Some(url) => (url.expose().parse()?, None),
        None if settings.require_database_url => anyhow::bail!(
            "DATABASE_URL is not set, and this installation requires it (POSTERN_REQUIRE_DATABASE_URL): \
             set it to the Postgres database Postern should use, e.g. postgres://postern:PASSWORD@db:5432/postern"
        ),
        None => {
            let cluster = EmbeddedPostgres::start(&settings.data_dir).await?;
            cluster.ensure_database().await?;
            (cluster.connect_options(), Some(cluster))
        }
    };
    let store = Store::connect(options, settings.db_max_connections).await?;
    store.migrate().await?;
    Ok((store, embedded))
}

pub struct Application {
    settings: Settings,
    node_id: Uuid,
    store: Store,
    embedded: Option<Arc<EmbeddedPostgres>>,
    engine: Arc<Engine>,
    delivery: Arc<Delivery>,
    config: Arc<ArcSwap<Snapshot>>,
    tracker: Tracker,
    protocol_log: ProtocolLogger,
    /// The log writers: stopped last, after everything that writes to them.
    log_writers: Vec<tokio::task::JoinHandle<()>>,
    tracking_feed: crate::tracking::feed::TrackingFeed,
    log_writers_stop: CancellationToken,
    http: TcpListener,
    /// The console's TLS configuration when it is served over HTTPS.
    http_tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: CancellationToken,
    console: http::console::ConsoleSettings,
    metrics_token: Option<String>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let deps = Dependencies::production(&settings)?;
        Self::build_with(settings, deps).await
    }

    /// Connects, migrates, loads the configuration and binds every port; when this
    /// returns, SMTP and HTTP are accepting connections.
    pub async fn build_with(settings: Settings, deps: Dependencies) -> anyhow::Result<Self> {
        let (store, embedded) = open_store(&settings).await?;
        let embedded = embedded.map(Arc::new);
        let node_id = Uuid::now_v7();
        let shutdown = CancellationToken::new();
        let log_writers_stop = CancellationToken::new();
        let (tracker, tracker_task) = Tracker::start(store.clone(), log_writers_stop.clone());
        let (protocol_log, protocol_task) = ProtocolLogger::start(store.clone(), log_writers_stop.clone());
        let config = Arc::new(ArcSwap::from_pointee(crate::reload::load(&store).await?));
        let wakeup = Arc::new(Notify::new());
        let engine_settings = EngineSettings {
            message_expiry: settings.message_expiry(),
            pregreet_wait: Duration::from_millis(settings.pregreet_wait_ms),
            record_subjects: settings.tracking_subjects,
            node_hostname: settings.hostname.clone(),
            share_ports: settings.share_smtp_ports,
            max_hops: settings.max_received_headers,
        };
        let hashing = crate::auth::hashing_pool();
        let trusted_proxies = settings.trusted_proxies().map_err(anyhow::Error::msg)?;
        let metrics_token = settings.metrics_token().map_err(anyhow::Error::msg)?;
        let decoy_hash = crate::auth::hash_password(&crate::auth::generate_password()?)?;
        let authenticator = Arc::new(
            Authenticator::new(
                settings.auth_throttle(),
                Duration::from_secs(settings.auth_cache_secs),
                hashing.clone(),
            )
            .context("preparing the service-account authenticator")?,
        );
        crate::metrics::handle();
        crate::metrics::describe();
        let pressure = Arc::new(crate::pressure::BackPressure::default());
        let parts = EngineParts {
            store: store.clone(),
            tracker: tracker.clone(),
            protocol_log: protocol_log.clone(),
            config: Arc::clone(&config),
            queue_wakeup: Arc::clone(&wakeup),
            authenticator,
            pressure: Arc::clone(&pressure),
        };
        tokio::spawn(pressure.watch(store.clone(), settings.max_queue_depth, shutdown.clone()));
        let engine = Arc::new(Engine::new(parts, engine_settings, shutdown.clone()));
        engine.reconcile().await;
        if settings.delivery_timeout_secs * 2 > settings.delivery_lease_secs {
            tracing::warn!(
                timeout = settings.delivery_timeout_secs,
                lease = settings.delivery_lease_secs,
                "the delivery timeout is more than half the lease: a slow next hop may outlive a claim, \
                 and the message may be sent twice"
            );
        }
        let delivery = Arc::new(Delivery {
            store: store.clone(),
            tracker: tracker.clone(),
            config: Arc::clone(&config),
            transport: deps.transport,
            resolver: deps.resolver,
            wakeup,
            settings: DeliverySettings {
                concurrency: settings.delivery_concurrency,
                batch: settings.delivery_batch,
                claim_linger: Duration::from_millis(5),
                lease: Duration::from_secs(settings.delivery_lease_secs.max(1)),
                send_timeout: Duration::from_secs(settings.delivery_timeout_secs),
                poison_threshold: settings.poison_threshold.max(1) as i32,
                poll_interval: Duration::from_secs(1),
                retry: settings.retry_schedule(),
                hostname: settings.hostname.clone(),
                message_expiry: settings.message_expiry(),
                max_hops: settings.max_received_headers,
            },
            node_id,
            environment: std::sync::Mutex::new(None),
            large_bodies: tokio::sync::Semaphore::new(crate::delivery::LARGE_BODY_BUDGET_KIB as usize),
            tokens: std::sync::Mutex::default(),
        });
        let tracking_feed = crate::tracking::feed::TrackingFeed::start(store.clone(), shutdown.clone()).await?;
        let http = TcpListener::bind(settings.http_addr).await?;
        let http_addr = http.local_addr()?;
        let http_tls = if settings.console_https() {
            Some(crate::tls::console_config(&store, &settings).await?.config)
        } else {
            None
        };
        let scheme = if http_tls.is_some() { "https" } else { "http" };
        let public_url = settings.console_public_url.clone().unwrap_or_else(|| format!("{scheme}://{http_addr}"));
        let console = http::console::ConsoleSettings {
            idle_secs: i64::from(settings.console_idle_minutes.max(1)) * 60,
            // Browsers reach the console over HTTPS: the cookie must never travel without it.
            secure_cookie: settings.console_secure_cookie || public_url.starts_with("https://") || http_tls.is_some(),
            throttle: Arc::new(crate::auth::Throttle::new(settings.auth_throttle())),
            public_url,
            trusted_proxies,
            hashing,
            // One thread: a sign-in is rare, and a verification that hangs can hold no
            // more than one core.
            saml: crate::auth::BoundedPool::start("saml", 1, 8),
            decoy_hash,
            requests: Arc::new(crate::limits::SourceRate::new(Duration::from_secs(60))),
            refusals: Arc::default(),
        };
        Ok(Self {
            settings,
            node_id,
            store,
            embedded,
            engine,
            delivery,
            config,
            tracker,
            protocol_log,
            log_writers: vec![tracker_task, protocol_task],
            tracking_feed,
            log_writers_stop,
            http,
            http_tls,
            shutdown,
            console,
            metrics_token,
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http.local_addr().unwrap_or(self.settings.http_addr)
    }

    pub fn listeners(&self) -> Vec<ListenerStatus> {
        self.engine.listener_status()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Runs until `stop` is cancelled, then shuts down in order: stop accepting, let
    /// sessions finish their transaction (others get 421), stop delivery and hand back
    /// leases, flush tracking.
    pub async fn run_until_stopped(self, stop: CancellationToken) -> anyhow::Result<()> {
        let freshness = Arc::new(crate::reload::Freshness::default());
        let reload = tokio::spawn(crate::reload::watch(
            self.store.clone(),
            Arc::clone(&self.config),
            Arc::clone(&self.engine),
            Arc::clone(&freshness),
            self.shutdown.clone(),
        ));
        let delivery = tokio::spawn(Arc::clone(&self.delivery).run(self.shutdown.clone()));
        let retention = tokio::spawn(prune_logs_hourly(self.store.clone(), self.settings.clone()));
        let supervisor = self.embedded.clone().map(|cluster| {
            let shutdown = self.shutdown.clone();
            tokio::spawn(async move { cluster.supervise(shutdown).await })
        });
        let state = http::AppState {
            store: self.store.clone(),
            config: Arc::clone(&self.config),
            freshness,
            engine: Arc::clone(&self.engine),
            node_id: self.node_id,
            tracking_feed: self.tracking_feed.clone(),
            token_use: Arc::default(),
            shutdown: self.shutdown.clone(),
            default_fqdn: self.settings.hostname.clone(),
            http_addr: self.http.local_addr()?,
            console: self.console.clone(),
            metrics_token: self.metrics_token.clone(),
        };
        let refusals = Arc::clone(&self.console.refusals);
        let refusal_summaries = tokio::spawn(summarise_refusals(self.store.clone(), refusals));
        let shutdown = self.shutdown.clone();
        let service = http::router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
        let stopped = async move { shutdown.cancelled().await };
        // `tap_io` is a no-op that lets axum give both listeners' handlers the client's
        // address (`ConnectInfo<SocketAddr>`).
        use axum::serve::ListenerExt;
        let http_task = match self.http_tls {
            None => tokio::spawn(axum::serve(self.http, service).with_graceful_shutdown(stopped).into_future()),
            Some(tls) => {
                let listener = http::tls::TlsListener::new(self.http, tls)?.tap_io(|_| {});
                tokio::spawn(axum::serve(listener, service).with_graceful_shutdown(stopped).into_future())
            }
        };
        tracing::info!(node = %self.node_id, http = %self.settings.http_addr, https = self.settings.console_https(),
            "Postern is running");
        stop.cancelled().await;
        tracing::info!("shutting down");
        self.shutdown.cancel();
        let grace = Duration::from_secs(self.settings.shutdown_grace_secs);
        self.engine.drain(grace).await;
        // Deliveries still running after the grace period are abandoned: their leases
        // expire and the messages are tried again (at-least-once).
        if tokio::time::timeout(grace, delivery).await.is_err() {
            tracing::warn!("deliveries still running at the end of the grace period; they will be retried");
        }
        let _ = reload.await;
        if let Some(supervisor) = supervisor {
            let _ = supervisor.await;
        }
        // A client that stops reading a stream would hold the HTTP server open forever.
        let http_abort = http_task.abort_handle();
        if tokio::time::timeout(grace, http_task).await.is_err() {
            http_abort.abort();
        }
        retention.abort();
        refusal_summaries.abort();
        self.log_writers_stop.cancel();
        for writer in self.log_writers {
            let _ = writer.await;
        }
        if self.protocol_log.dropped() > 0 {
            tracing::warn!(dropped = self.protocol_log.dropped(), "protocol log lines were dropped (buffer full)");
        }
        if self.tracker.dropped() > 0 {
            tracing::warn!(dropped = self.tracker.dropped(), "tracking events were dropped under load");
        }
        // The embedded cluster keeps running for the CLI and the next start; `postern
        // stop-database` stops it.
        Ok(())
    }
}

/// Retention: every hour, tracking events and protocol log lines older than their
/// configured age are deleted, and so are messages that finished (every recipient
/// delivered or failed) longer ago than theirs; in slices, and several nodes doing it at
/// once is harmless.
async fn prune_logs_hourly(store: Store, settings: Settings) {
    let mut every_hour = tokio::time::interval(Duration::from_secs(3600));
    loop {
        every_hour.tick().await;
        match store.prune_logs(settings.tracking_retention_days, settings.protocol_log_retention_days).await {
            Ok((0, 0)) => {}
            Ok((tracking, protocol)) => tracing::info!(tracking, protocol, "old log entries removed"),
            Err(e) => tracing::warn!(error = %e, "log retention failed; trying again in an hour"),
        }
        match store.prune_spool().await {
            Ok(0) => {}
            Ok(chunks) => tracing::info!(chunks, "spooled chunks of messages never queued removed"),
            Err(e) => tracing::warn!(error = %e, "spool retention failed; trying again in an hour"),
        }
        match store.prune_finished_messages(settings.delivered_retention_days).await {
            Ok(0) => {}
            Ok(messages) => tracing::info!(messages, "finished messages past their retention removed"),
            Err(e) => tracing::warn!(error = %e, "message retention failed; trying again in an hour"),
        }
    }
}

/// Every minute, the refused sign-ins that were only counted (a flood from one source,
/// or from many) are written to the audit log as one summary row per source and window.
async fn summarise_refusals(store: Store, refusals: Arc<crate::auth::RefusalDigest>) {
    let mut every_minute = tokio::time::interval(Duration::from_secs(60));
    loop {
        every_minute.tick().await;
        for left_out in refusals.ended(std::time::Instant::now()) {
            let source = left_out.source.map_or_else(|| "many sources".to_string(), |ip| ip.to_string());
            let detail = serde_json::json!({ "refusals_not_listed": left_out.count, "source": source });
            let _ = store.audit_sign_in("anonymous", "refusals-summed-up", left_out.kind, detail).await;
        }
    }
}
