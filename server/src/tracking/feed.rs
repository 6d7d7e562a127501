//! The live tracking feed of one node: every tracking batch written by any node is
//! announced with `NOTIFY postern_tracking` (in the insert statement), so each node
//! reads the new events once and fans them out to its stream subscribers in memory.
//! A subscriber that falls behind the fan-out buffer is told it lagged (it resumes from
//! the database with its last event id); it never slows the writers or grows memory.
//!
//! Ids are handed out when events are inserted, and several transactions insert them at
//! once (each message's commit, each batch of delivery outcomes, the log writer, other
//! nodes), so ids can commit out of order: 101 may be visible while 100 is still being
//! committed. The feed therefore publishes strictly in id order and holds back at a gap
//! until it fills; a gap still open after `GAP_WAIT` is an insert that rolled back (its
//! id is never used) and is passed. Subscribers resume by id (`Last-Event-ID`), which is
//! sound only because of this order.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use sqlx::postgres::PgListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::store::{Store, TrackingRecord};

/// The NOTIFY channel of new tracking events.
pub const TRACKING_CHANNEL: &str = "postern_tracking";
/// Events held for subscribers; a subscriber further behind has lagged.
const FAN_OUT: usize = 4096;
const FETCH: i64 = 1000;
/// How long a gap in the ids is waited for before it is taken for a rolled-back insert.
/// Far longer than any commit Postern makes, however loaded.
const GAP_WAIT: Duration = Duration::from_secs(5);
/// How often a held-back feed looks again (a rolled-back id sends no notification).
const GAP_POLL: Duration = Duration::from_millis(100);

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
    let mut cursor = Cursor { last_seen: position.load(Ordering::Acquire), gap: None };
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
            publish_new(&store, &events, &position, &mut cursor).await;
            // A missed notification costs at most this delay; a gap is looked at often.
            let wait = if cursor.gap.is_some() { GAP_POLL } else { Duration::from_secs(5) };
            let notified = tokio::select! {
                n = listener.recv() => n,
                () = tokio::time::sleep(wait) => continue,
                () = shutdown.cancelled() => return,
            };
            if notified.is_err() {
                break;
            }
        }
    }
}

/// Where the feed is: the last id published, and the gap it is holding back at (the
/// missing id and when it was first seen missing).
#[derive(Debug)]
struct Cursor {
    last_seen: i64,
    gap: Option<(i64, Instant)>,
}

impl Cursor {
    /// Whether the event with `id` is next: the id after the last, or one past a gap that
    /// has been waited for long enough (`now`).
    fn admits(&mut self, id: i64, now: Instant) -> bool {
        let missing = self.last_seen + 1;
        if id <= missing {
            self.gap = None;
            return true;
        }
        match self.gap {
            Some((gap, since)) if gap == missing && now.duration_since(since) >= GAP_WAIT => {
                tracing::debug!(from = missing, to = id - 1, "tracking ids never committed; passed");
                self.gap = None;
                true
            }
            Some((gap, _)) if gap == missing => false,
            _ => {
                self.gap = Some((missing, now));
                false
            }
        }
    }
}

async fn subscribe(store: &Store) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(store.pool()).await?;
    listener.listen(TRACKING_CHANNEL).await?;
    Ok(listener)
}

/// Sends the events after the cursor to the subscribers, in id order, up to the first gap
/// still being waited for.
async fn publish_new(
    store: &Store,
    events: &broadcast::Sender<Arc<TrackingRecord>>,
    position: &AtomicI64,
    cursor: &mut Cursor,
) {
    loop {
        let batch = match store.tracking_after(cursor.last_seen, FETCH).await {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(error = %e, "live tracking feed: read failed");
                return;
            }
        };
        let full = batch.len() as i64 == FETCH;
        let now = Instant::now();
        for event in batch {
            if !cursor.admits(event.id, now) {
                return;
            }
            cursor.last_seen = event.id;
            // No subscriber is fine: the event is in the database. The position moves
            // only after the send, so a subscriber that reads it has the event either
            // from the channel or from its catch-up, never from neither.
            let _ = events.send(Arc::new(event));
            position.store(cursor.last_seen, Ordering::Release);
        }
        if !full {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_feed_holds_at_a_gap_until_it_fills_or_has_waited_long_enough() {
        let start = Instant::now();
        let mut cursor = Cursor { last_seen: 10, gap: None };
        assert!(cursor.admits(11, start), "the next id");
        cursor.last_seen = 11;
        assert!(!cursor.admits(13, start), "12 is missing: hold");
        assert!(!cursor.admits(13, start + GAP_WAIT / 2), "still waiting for 12");
        assert!(cursor.admits(12, start + GAP_WAIT / 2), "12 committed: it goes first");
        cursor.last_seen = 12;
        assert!(cursor.admits(13, start + GAP_WAIT / 2), "then 13");
        cursor.last_seen = 13;
        assert!(!cursor.admits(15, start + GAP_WAIT), "14 is missing");
        assert!(cursor.admits(15, start + GAP_WAIT * 2), "14 never came: passed after the wait");
        cursor.last_seen = 15;
        assert!(!cursor.admits(17, start + GAP_WAIT * 2), "a new gap waits its own time");
    }
}
