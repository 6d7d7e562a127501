//! The logs written off the hot path: the SMTP protocol log, and the tracking events that
//! describe no change of stored state (REJECT, THROTTLE, POISONMESSAGE). The events of
//! a state change (RECEIVE, DSN, SEND, DEFER, FAIL) are not written here: they commit in
//! the same transaction as the message or the recipients' new state.
//!
//! The engine hands entries to a `BatchWriter`, which writes them to Postgres in batches
//! on its own task, retrying through a database outage for as long as it lasts. Recording
//! never waits on the database: when the buffer is full (a long outage, or a flood of
//! refusals faster than the database) the entry is dropped. An entry the database refuses
//! for its data is dropped alone, not with its batch. Every drop is counted in
//! `postern_log_entries_dropped_total{log,reason}` and reported in the node's log, never silent.

pub mod export;
pub mod feed;
pub mod protocol;
mod query;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use crate::store::NewTrackingEvent;
use crate::store::{ProtocolLine, Store, StoreError};
pub use query::{TimeError, parse_time};

/// Entries buffered before new ones are dropped.
const BUFFER: usize = 65_536;
/// Largest batch written in one statement.
const MAX_BATCH: usize = 512;
/// The longest pause between two tries of a failed write.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(5);
/// Entries dropped, per log and reason: `buffer_full`, `refused` (the database refused
/// the entry's data), `shutdown` (the node stopped during an outage).
pub const DROPPED: &str = "postern_log_entries_dropped_total";

/// An entry type and how a batch of it is stored.
pub trait Batch: Send + Sync + Sized + 'static {
    /// Names the log in warnings.
    const LOG: &'static str;
    fn insert(store: &Store, batch: &[Self]) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Counts the entry in the metrics, whether or not it is written.
    fn observe(&self) {}
    /// Dates the entry when it is recorded, not when it is written (which an outage can
    /// put off for minutes).
    fn stamp(&mut self) {}
}

impl Batch for NewTrackingEvent {
    const LOG: &'static str = "tracking";
    fn insert(store: &Store, batch: &[Self]) -> impl Future<Output = Result<(), StoreError>> + Send {
        store.insert_tracking_events(batch)
    }
    fn observe(&self) {
        crate::metrics::observe(self);
    }
    fn stamp(&mut self) {
        self.at.get_or_insert_with(time::OffsetDateTime::now_utc);
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

    pub fn record(&self, mut entry: T) {
        entry.stamp();
        entry.observe();
        if self.sender.try_send(entry).is_err() {
            metrics::counter!(DROPPED, "log" => T::LOG, "reason" => "buffer_full").increment(1);
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // Every drop is counted; the log says so at 1, 2, 4, 8... so a flood of
            // refusals cannot flood the node's log as well.
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
        write_until_stored(&store, &batch, &shutdown).await;
        batch.clear();
    }
}

/// Writes `batch`. A batch the database refuses for its data (one entry it cannot store,
/// say a byte its encoding forbids) is split in halves until the entry is alone, and only
/// that entry is dropped and counted: one bad entry must neither take its batch with it
/// nor be retried forever while the buffer fills behind it.
async fn write_until_stored<T: Batch>(store: &Store, batch: &[T], shutdown: &CancellationToken) {
    let mut pending = vec![batch];
    while let Some(part) = pending.pop() {
        match write_retrying(store, part, shutdown).await {
            Ok(()) => {}
            Err(Unwritten::Refused(e)) if part.len() > 1 => {
                tracing::debug!(error = %e, entries = part.len(), log = T::LOG, "batch refused; splitting it");
                let (first, second) = part.split_at(part.len() / 2);
                pending.extend([second, first]);
            }
            Err(Unwritten::Refused(e)) => {
                metrics::counter!(DROPPED, "log" => T::LOG, "reason" => "refused").increment(1);
                tracing::error!(error = %e, log = T::LOG, "log entry refused by the database: dropped");
            }
            Err(Unwritten::ShutDown(e)) => {
                let lost = part.len() + pending.iter().map(|p| p.len()).sum::<usize>();
                metrics::counter!(DROPPED, "log" => T::LOG, "reason" => "shutdown").increment(lost as u64);
                tracing::error!(error = %e, lost, log = T::LOG, "stopping with log entries unwritten");
                return;
            }
        }
    }
}

/// Why a part of a batch was not written.
enum Unwritten {
    /// The database refused the data itself: trying again cannot help.
    Refused(StoreError),
    /// The node is stopping and the database still does not answer.
    ShutDown(StoreError),
}

/// Writes `part`, trying again with growing pauses for as long as the failure may pass
/// (an outage holds the batch, and the buffer takes what arrives meanwhile). Only a
/// shutdown during an outage ends the tries.
async fn write_retrying<T: Batch>(store: &Store, part: &[T], shutdown: &CancellationToken) -> Result<(), Unwritten> {
    let mut pause = Duration::from_millis(100);
    let mut attempt = 1u32;
    loop {
        let failure = match T::insert(store, part).await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_refused_data() => return Err(Unwritten::Refused(e)),
            Err(e) => e,
        };
        if shutdown.is_cancelled() && attempt >= 3 {
            return Err(Unwritten::ShutDown(failure));
        }
        // Once per doubling of the attempts, so an hour's outage logs a few lines.
        if attempt.is_power_of_two() {
            tracing::warn!(error = %failure, attempt, held = part.len(), log = T::LOG, "log write failed; retrying");
        }
        // A shutdown cuts the pause short: the last tries come at once.
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = shutdown.cancelled() => {}
        }
        pause = (pause * 2).min(MAX_RETRY_PAUSE);
        attempt += 1;
    }
}
