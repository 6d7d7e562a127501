//! Group commit for the queue. Sessions that finish DATA at about the same time hand
//! their messages to one committer, which writes whatever has gathered in a single
//! statement and transaction: one commit (one WAL flush) for many messages instead of
//! one each. Each session still answers 250 only after the commit that holds its
//! message returned Ok; if it fails, every session of that batch answers 451.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::store::{NewMessage, Store, StoreError};

/// Most messages written in one statement.
const MAX_BATCH: usize = 64;
/// Most message bytes written in one statement: the statement's parameters are a copy of
/// the bodies, so a batch of large messages is split rather than copied all at once.
const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

type Request = (NewMessage, oneshot::Sender<Result<(), Arc<StoreError>>>);

/// The sessions' handle on the committer.
#[derive(Debug, Clone)]
pub struct Committer {
    requests: mpsc::Sender<Request>,
}

impl Committer {
    /// Starts the committer task; it ends when every handle is dropped.
    pub fn start(store: Store) -> Self {
        let (requests, received) = mpsc::channel(1024);
        tokio::spawn(commit_batches(store, received));
        Self { requests }
    }

    /// Commits `message` (with others that arrive meanwhile); Ok means it is durable.
    pub async fn enqueue(&self, message: NewMessage) -> Result<(), Arc<StoreError>> {
        let (done, result) = oneshot::channel();
        let stopped = || Arc::new(StoreError::Unavailable("the queue committer has stopped"));
        self.requests.send((message, done)).await.map_err(|_| stopped())?;
        result.await.map_err(|_| stopped())?
    }
}

async fn commit_batches(store: Store, mut received: mpsc::Receiver<Request>) {
    let mut batch: Vec<Request> = Vec::with_capacity(MAX_BATCH);
    // No waiting for a batch to fill: while one commit runs, the next batch gathers.
    while received.recv_many(&mut batch, MAX_BATCH).await > 0 {
        for group in by_size(&mut batch) {
            let messages: Vec<&NewMessage> = group.iter().map(|(m, _)| m).collect();
            let result = store.enqueue_batch(&messages).await.map_err(Arc::new);
            if result.is_ok() {
                // Counted once committed, so the metrics and the log agree.
                messages.iter().flat_map(|m| &m.tracking).for_each(crate::metrics::observe);
            }
            for (_, done) in group {
                let _ = done.send(result.clone());
            }
        }
    }
}

/// Splits a batch into groups of at most `MAX_BATCH_BYTES` (a larger message alone).
fn by_size(batch: &mut Vec<Request>) -> Vec<Vec<Request>> {
    let mut groups: Vec<Vec<Request>> = Vec::new();
    let mut bytes = 0;
    for request in batch.drain(..) {
        let size = request.0.body.len();
        match groups.last_mut() {
            Some(group) if bytes + size <= MAX_BATCH_BYTES => {
                bytes += size;
                group.push(request);
            }
            _ => {
                bytes = size;
                groups.push(vec![request]);
            }
        }
    }
    groups
}
