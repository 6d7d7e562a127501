//! Message tracking: the engine and the delivery workers hand events to a `Tracker`,
//! which writes them to Postgres in batches on its own task. Recording an event never
//! waits on the database: a full buffer drops the event and counts it, so a slow
//! database can never slow an SMTP reply beyond the queue commit itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use crate::store::NewTrackingEvent;
use crate::store::Store;

/// Events buffered before new ones are dropped.
const BUFFER: usize = 65_536;
/// Largest batch written in one statement.
const MAX_BATCH: usize = 512;

#[derive(Debug, Clone)]
pub struct Tracker {
    sender: mpsc::Sender<NewTrackingEvent>,
    dropped: Arc<AtomicU64>,
}

impl Tracker {
    /// Starts the writer task; it drains what is buffered and stops after `shutdown`.
    pub fn start(store: Store, shutdown: CancellationToken) -> (Self, tokio::task::JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel(BUFFER);
        let handle = tokio::spawn(write_batches(store, receiver, shutdown));
        (Self { sender, dropped: Arc::new(AtomicU64::new(0)) }, handle)
    }

    pub fn record(&self, event: NewTrackingEvent) {
        if self.sender.try_send(event).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(dropped, "tracking buffer full: events dropped");
            }
        }
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

async fn write_batches(store: Store, mut receiver: mpsc::Receiver<NewTrackingEvent>, shutdown: CancellationToken) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let received = tokio::select! {
            n = receiver.recv_many(&mut batch, MAX_BATCH) => n,
            () = shutdown.cancelled() => {
                receiver.close();
                receiver.recv_many(&mut batch, BUFFER).await
            }
        };
        if received == 0 {
            return;
        }
        // Retry a failed write a few times (Postgres restarting); then give up on the
        // batch rather than grow memory without bound.
        for attempt in 1..=5u32 {
            match store.insert_tracking_events(&batch).await {
                Ok(()) => break,
                Err(e) if attempt == 5 => tracing::error!(error = %e, lost = batch.len(), "tracking events lost"),
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "tracking write failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                }
            }
        }
        batch.clear();
    }
}
