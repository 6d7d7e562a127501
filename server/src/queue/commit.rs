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
        let messages: Vec<&NewMessage> = batch.iter().map(|(m, _)| m).collect();
        let result = store.enqueue_batch(&messages).await.map_err(Arc::new);
        for (_, done) in batch.drain(..) {
            let _ = done.send(result.clone());
        }
    }
}
