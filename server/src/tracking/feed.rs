//! The live tracking feed of one node: every tracking batch written by any node is
//! announced with `NOTIFY postern_tracking` (in the insert statement), so each node
//! reads the new events once and fans them out to its stream subscribers in memory.
//! A subscriber that falls behind the fan-out buffer is told it lagged (it resumes from
//! the database with its last event id); it never slows the writers or grows memory.
//!
//! Ids are handed out when events are inserted. One node's writer inserts batch after
//! batch, so its events commit in id order; events committed concurrently by another
//! node (or the CLI) can commit out of id order, and one whose id is below an id
//! already published is not streamed (it is in the log and in every search).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
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
    /// The id of the last event published: a new subscriber gets everything after it.
    position: Arc<AtomicI64>,
}

impl TrackingFeed {
    /// Reads where the log ends now, then follows it. Called before the HTTP server
    /// accepts requests, so a subscriber never starts before the feed's position.
    pub async fn start(store: Store, shutdown: CancellationToken) -> Result<Self, crate::store::StoreError> {
        let (events, _) = broadcast::channel(FAN_OUT);
        let position = Arc::new(AtomicI64::new(store.last_tracking_id().await?));
        tokio::spawn(run(store, events.clone(), Arc::clone(&position), shutdown));
        Ok(Self { events, position })
    }

    /// A receiver of every event published from now on, and the id of the last event
    /// published before it (where a catch-up from the database ends).
    pub fn subscribe(&self) -> (broadcast::Receiver<Arc<TrackingRecord>>, i64) {
        let receiver = self.events.subscribe();
        (receiver, self.position.load(Ordering::Acquire))
    }
}

async fn run(
    store: Store,
    events: broadcast::Sender<Arc<TrackingRecord>>,
    position: Arc<AtomicI64>,
    shutdown: CancellationToken,
) {
    let mut last_seen = position.load(Ordering::Acquire);
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
            last_seen = publish_new(&store, &events, &position, last_seen).await;
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
async fn publish_new(
    store: &Store,
    events: &broadcast::Sender<Arc<TrackingRecord>>,
    position: &AtomicI64,
    mut last_seen: i64,
) -> i64 {
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
            // No subscriber is fine: the event is in the database. The position moves
            // only after the send, so a subscriber that reads it has the event either
            // from the channel or from its catch-up, never from neither.
            let _ = events.send(Arc::new(event));
            position.store(last_seen, Ordering::Release);
        }
        if !full {
            return last_seen;
        }
    }
}
