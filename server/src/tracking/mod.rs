//! The logs written off the hot path: message tracking and the SMTP protocol log. The
//! engine and the delivery workers hand entries to a `BatchWriter`, which writes them
//! to Postgres in batches on its own task. Recording never waits on the database: a
//! full buffer drops the entry and counts it, so a slow database can never slow an SMTP
//! reply beyond the queue commit itself.

pub mod export;
pub mod feed;
pub mod protocol;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use crate::store::NewTrackingEvent;
use crate::store::{ProtocolLine, Store, StoreError};

/// Entries buffered before new ones are dropped.
const BUFFER: usize = 65_536;
/// Largest batch written in one statement.
const MAX_BATCH: usize = 512;

/// An entry type and how a batch of it is stored.
pub trait Batch: Send + Sized + 'static {
    /// Names the log in warnings.
    const LOG: &'static str;
    fn insert(store: &Store, batch: &[Self]) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Counts the entry in the metrics, whether or not it is written.
    fn observe(&self) {}
}

impl Batch for NewTrackingEvent {
    const LOG: &'static str = "tracking";
    fn insert(store: &Store, batch: &[Self]) -> impl Future<Output = Result<(), StoreError>> + Send {
        store.insert_tracking_events(batch)
    }
    fn observe(&self) {
        crate::metrics::observe(self);
    }
}

impl Batch for ProtocolLine {
    const LOG: &'static str = "protocol log";
    fn insert(store: &Store, batch: &[Self]) -> impl Future<Output = Result<(), StoreError>> + Send {
        store.insert_protocol_lines(batch)
    }
}

/// Hands entries to the writer task.
#[derive(Debug)]
pub struct BatchWriter<T> {
    sender: mpsc::Sender<T>,
    dropped: Arc<AtomicU64>,
}

impl<T> Clone for BatchWriter<T> {
    fn clone(&self) -> Self {
        Self { sender: self.sender.clone(), dropped: Arc::clone(&self.dropped) }
    }
}

/// The message tracking log's writer.
pub type Tracker = BatchWriter<NewTrackingEvent>;
/// The protocol log's writer.
pub type ProtocolLogger = BatchWriter<ProtocolLine>;

impl<T: Batch> BatchWriter<T> {
    /// Starts the writer task; it drains what is buffered and stops after `shutdown`.
    pub fn start(store: Store, shutdown: CancellationToken) -> (Self, tokio::task::JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel(BUFFER);
        let handle = tokio::spawn(write_batches(store, receiver, shutdown));
        (Self { sender, dropped: Arc::new(AtomicU64::new(0)) }, handle)
    }

    /// A writer whose entries go to the returned receiver (for tests).
    #[cfg(test)]
    pub(crate) fn unstarted() -> (Self, mpsc::Receiver<T>) {
        let (sender, receiver) = mpsc::channel(BUFFER);
        (Self { sender, dropped: Arc::new(AtomicU64::new(0)) }, receiver)
    }

    pub fn record(&self, entry: T) {
        entry.observe();
        if self.sender.try_send(entry).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(dropped, log = T::LOG, "log buffer full: entries dropped");
            }
        }
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

async fn write_batches<T: Batch>(store: Store, mut receiver: mpsc::Receiver<T>, shutdown: CancellationToken) {
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
            match T::insert(&store, &batch).await {
                Ok(()) => break,
                Err(e) if attempt == 5 => {
                    tracing::error!(error = %e, lost = batch.len(), log = T::LOG, "log entries lost")
                }
                Err(e) => {
                    tracing::warn!(error = %e, attempt, log = T::LOG, "log write failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                }
            }
        }
        batch.clear();
    }
}
