//! Keeps the live configuration current. Every configuration change fires a NOTIFY
//! from a trigger (so even hand-written SQL is seen); each node then reloads a whole
//! snapshot in one transaction and swaps it in atomically. Sessions keep the snapshot
//! they started with; the SMTP hot path never runs SQL for configuration.

use std::sync::Arc;
use std::time::Duration;

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

/// Reloads on every NOTIFY until shutdown, then reconciles the listeners.
pub async fn watch(store: Store, live: Arc<ArcSwap<Snapshot>>, engine: Arc<Engine>, shutdown: CancellationToken) {
    loop {
        let listener = tokio::select! {
            l = subscribe(&store) => l,
            () = shutdown.cancelled() => return,
        };
        let mut listener = match listener {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for configuration changes; retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    () = shutdown.cancelled() => return,
                }
            }
        };
        // Changes made while we were not listening would be missed: reload first.
        refresh(&store, &live, &engine).await;
        let mut retry = tokio::time::interval(Duration::from_secs(10));
        loop {
            let notified = tokio::select! {
                n = listener.recv() => n,
                _ = retry.tick() => {
                    // A port that was busy may have been freed meanwhile.
                    if engine.has_failed_listeners() {
                        engine.reconcile().await;
                    }
                    continue;
                }
                () = shutdown.cancelled() => return,
            };
            if let Err(e) = notified {
                tracing::warn!(error = %e, "configuration listener lost its connection; reconnecting");
                break;
            }
            refresh(&store, &live, &engine).await;
        }
    }
}

async fn subscribe(store: &Store) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(store.pool()).await?;
    listener.listen(CONFIG_CHANNEL).await?;
    Ok(listener)
}

async fn refresh(store: &Store, live: &ArcSwap<Snapshot>, engine: &Engine) {
    match load(store).await {
        Ok(snapshot) if snapshot.generation != live.load().generation => {
            tracing::info!(generation = snapshot.generation, "configuration reloaded");
            live.store(Arc::new(snapshot));
            engine.reconcile().await;
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "configuration reload failed; keeping the current snapshot"),
    }
}
