//! Keeps the live configuration current. Every configuration change fires a NOTIFY
//! from a trigger (so even hand-written SQL is seen); each node then reloads a whole
//! snapshot in one transaction and swaps it in atomically. Sessions keep the snapshot
//! they started with; the SMTP hot path never runs SQL for configuration.
//!
//! A reload that fails (the database briefly away, a lock timeout) is retried with backoff
//! until one succeeds: a node must not keep old IP ranges or a disabled account's password
//! until the next change happens to come. Meanwhile `Freshness` says since when the
//! snapshot may be stale, for `/readyz` and the `postern_config_stale_seconds` gauge.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use crate::policy::Snapshot;
use crate::smtp::Engine;
use crate::store::{CONFIG_CHANNEL, Store, StoreError};

/// Reads the configuration and prepares what the snapshot derives from it (TLS
/// configurations, generating certificates where none is configured).
pub async fn load(store: &Store) -> Result<Snapshot, StoreError> {
    let mut snapshot = Snapshot::new(store.load_configuration().await?);
    snapshot.tls = crate::tls::load(store, &snapshot.receive_connectors).await;
    Ok(snapshot)
}

/// First wait after a failed reload, doubled after each further failure up to the cap.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_CAP: Duration = Duration::from_secs(30);

/// Whether the live snapshot is known to be current: since when a reload has been failing.
#[derive(Debug, Default)]
pub struct Freshness {
    stale_since: Mutex<Option<Instant>>,
}

impl Freshness {
    /// How long the snapshot has been possibly stale (`None`: the last reload succeeded).
    pub fn stale_for(&self) -> Option<Duration> {
        self.stale_since.lock().unwrap_or_else(PoisonError::into_inner).map(|since| since.elapsed())
    }

    fn record(&self, loaded: bool) {
        let mut since = self.stale_since.lock().unwrap_or_else(PoisonError::into_inner);
        match (loaded, *since) {
            (true, _) => *since = None,
            (false, None) => *since = Some(Instant::now()),
            (false, Some(_)) => {}
        }
    }

    /// Sets the `postern_config_stale_seconds` gauge, at scrape time: set only when a
    /// reload is tried, it would read 0 for the whole first second of an outage.
    pub fn publish(&self) {
        let seconds = self.stale_for().map_or(0.0, |d| d.as_secs_f64());
        metrics::gauge!("postern_config_stale_seconds").set(seconds);
    }
}

/// Reloads on every NOTIFY until shutdown, then reconciles the listeners.
pub async fn watch(
    store: Store,
    live: Arc<ArcSwap<Snapshot>>,
    engine: Arc<Engine>,
    freshness: Arc<Freshness>,
    shutdown: CancellationToken,
) {
    loop {
        let listener = tokio::select! {
            l = subscribe(&store) => l,
            () = shutdown.cancelled() => return,
        };
        let mut listener = match listener {
            Ok(l) => l,
            Err(e) => {
                // Not listening: a change now would go unseen.
                freshness.record(false);
                tracing::warn!(error = %e, "cannot listen for configuration changes; retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    () = shutdown.cancelled() => return,
                }
            }
        };
        // Changes made while we were not listening would be missed: reload first.
        let mut backoff = Backoff::default();
        backoff.after(refresh(&store, &live, &engine, &freshness).await);
        let mut retry = tokio::time::interval(Duration::from_secs(10));
        loop {
            let notified = tokio::select! {
                n = listener.recv() => n,
                () = backoff.due() => {
                    backoff.after(refresh(&store, &live, &engine, &freshness).await);
                    continue;
                }
                _ = retry.tick() => {
                    // A port that was busy may have been freed meanwhile.
                    if engine.has_failed_listeners() {
                        engine.reconcile().await;
                    }
                    freshness.record(backoff.next.is_none());
                    continue;
                }
                () = shutdown.cancelled() => return,
            };
            if let Err(e) = notified {
                tracing::warn!(error = %e, "configuration listener lost its connection; reconnecting");
                break;
            }
            backoff.after(refresh(&store, &live, &engine, &freshness).await);
        }
    }
}

async fn subscribe(store: &Store) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(store.pool()).await?;
    listener.listen(CONFIG_CHANNEL).await?;
    Ok(listener)
}

/// When the next reload is due after failures (none while reloads succeed).
#[derive(Debug, Default)]
struct Backoff {
    next: Option<tokio::time::Instant>,
    wait: Duration,
}

impl Backoff {
    fn after(&mut self, loaded: bool) {
        if loaded {
            *self = Self::default();
        } else {
            self.wait = if self.wait.is_zero() { RETRY_FIRST } else { (self.wait * 2).min(RETRY_CAP) };
            self.next = Some(tokio::time::Instant::now() + self.wait);
        }
    }

    /// Resolves when a retry is due; never while none is.
    async fn due(&self) {
        match self.next {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    }
}

/// Loads the configuration and swaps it in if it changed; whether it loaded.
async fn refresh(store: &Store, live: &ArcSwap<Snapshot>, engine: &Engine, freshness: &Freshness) -> bool {
    let loaded = match load(store).await {
        Ok(snapshot) if snapshot.generation != live.load().generation => {
            tracing::info!(generation = snapshot.generation, "configuration reloaded");
            live.store(Arc::new(snapshot));
            engine.reconcile().await;
            true
        }
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(error = %e, "configuration reload failed; keeping the current snapshot and retrying");
            false
        }
    };
    freshness.record(loaded);
    loaded
}
