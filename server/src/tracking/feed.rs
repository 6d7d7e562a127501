//! The live tracking feed of one node: every tracking batch written by any node is
//! announced with `NOTIFY postern_tracking` (in the insert statement), so each node
//! reads the new events once and fans them out to its stream subscribers in memory.
//! A subscriber that falls behind the fan-out buffer is told it lagged (it resumes from
//! the database with its last event id); it never slows the writers or grows memory.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::store::{Store, TrackingRecord};

/// The NOTIFY channel of new tracking events.
pub const TRACKING_CHANNEL: &str = "postern_tracking";
/// Events held for subscribers; a subscriber further behind has lagged.
const FAN_OUT: usize = 4096;
const FETCH: i64 = 1000;

#[derive(Debug, Clone)]
pub struct TrackingFeed {
    events: broadcast::Sender<Arc<TrackingRecord>>,
}

impl TrackingFeed {
    pub fn start(store: Store, shutdown: CancellationToken) -> Self {
        let (events, _) = broadcast::channel(FAN_OUT);
        tokio::spawn(run(store, events.clone(), shutdown));
        Self { events }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<TrackingRecord>> {
        self.events.subscribe()
    }
}

async fn run(store: Store, events: broadcast::Sender<Arc<TrackingRecord>>, shutdown: CancellationToken) {
    let mut last_seen = loop {
        match store.last_tracking_id().await {
            Ok(id) => break id,
            Err(e) => tracing::warn!(error = %e, "live tracking feed: database unavailable; retrying"),
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = shutdown.cancelled() => return,
        }
    };
    loop {
        let mut listener = match subscribe(&store).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "live tracking feed cannot listen; retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    () = shutdown.cancelled() => return,
                }
            }
        };
        loop {
            // Events written while the listener was (re)connecting are read now too.
            last_seen = publish_new(&store, &events, last_seen).await;
            let notified = tokio::select! {
                n = listener.recv() => n,
                // A missed notification costs at most this delay.
                () = tokio::time::sleep(Duration::from_secs(5)) => continue,
                () = shutdown.cancelled() => return,
            };
            if notified.is_err() {
                break;
            }
        }
    }
}

async fn subscribe(store: &Store) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(store.pool()).await?;
    listener.listen(TRACKING_CHANNEL).await?;
    Ok(listener)
}

/// Sends every event after `last_seen` to the subscribers; returns the new last id.
async fn publish_new(store: &Store, events: &broadcast::Sender<Arc<TrackingRecord>>, mut last_seen: i64) -> i64 {
    loop {
        let batch = match store.tracking_after(last_seen, FETCH).await {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(error = %e, "live tracking feed: read failed");
                return last_seen;
            }
        };
        let full = batch.len() as i64 == FETCH;
        for event in batch {
            last_seen = event.id;
            // No subscriber is fine: the event is in the database.
            let _ = events.send(Arc::new(event));
        }
        if !full {
            return last_seen;
        }
    }
}
