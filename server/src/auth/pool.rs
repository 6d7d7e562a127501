//! A few dedicated threads for work that is too heavy for the async workers and must not
//! go to tokio's blocking pool, which grows to 512 threads on demand: argon2 password
//! checks (19 MiB and tens of milliseconds each) and SAML signature verification
//! (libxml2 and xmlsec). Memory and CPU stay at `threads` jobs at a time; further jobs
//! wait in a queue of fixed length, and a caller that cannot wait is told the pool is
//! busy. A time limit ends the caller's wait (the thread itself cannot be interrupted:
//! its job runs on, and the answer is thrown away).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

type Job = Box<dyn FnOnce() + Send>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// Every thread is working and the queue is full.
    #[error("too many requests are waiting")]
    Busy,
    /// The job did not finish within the caller's time limit.
    #[error("the work took too long")]
    TimedOut,
    /// No thread runs (never in practice: a thread could not be started).
    #[error("no worker thread is running")]
    Stopped,
}

#[derive(Debug, Clone)]
pub struct BoundedPool {
    jobs: mpsc::Sender<Job>,
}

impl BoundedPool {
    /// Starts `threads` threads named `postern-{name}-N`, with room for `queue` waiting jobs.
    pub fn start(name: &str, threads: usize, queue: usize) -> Self {
        let (jobs, waiting) = mpsc::channel::<Job>(queue.max(1));
        let waiting = Arc::new(Mutex::new(waiting));
        for n in 0..threads.max(1) {
            let waiting = Arc::clone(&waiting);
            let spawned = std::thread::Builder::new().name(format!("postern-{name}-{n}")).spawn(move || {
                loop {
                    // Hold the lock only to take a job, not while running it.
                    let job = waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner).blocking_recv();
                    let Some(job) = job else { return };
                    job();
                }
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, pool = name, "cannot start a worker thread");
            }
        }
        Self { jobs }
    }

    /// Runs `work`, waiting for room in the queue if need be.
    pub async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, PoolError> {
        let (job, answer) = wrap(work);
        self.jobs.send(job).await.map_err(|_| PoolError::Stopped)?;
        answer.await.map_err(|_| PoolError::Stopped)
    }

    /// Runs `work` if the queue has room (`Busy` otherwise), and waits at most `limit`
    /// for its result.
    pub async fn try_run<T: Send + 'static>(
        &self,
        limit: Duration,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PoolError> {
        let (job, answer) = wrap(work);
        self.jobs.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => PoolError::Busy,
            mpsc::error::TrySendError::Closed(_) => PoolError::Stopped,
        })?;
        match tokio::time::timeout(limit, answer).await {
            Ok(result) => result.map_err(|_| PoolError::Stopped),
            Err(_) => Err(PoolError::TimedOut),
        }
    }
}

fn wrap<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> (Job, oneshot::Receiver<T>) {
    let (tx, rx) = oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(work());
    });
    (job, rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_and_a_full_queue_says_busy() {
        let pool = BoundedPool::start("test", 1, 1);
        assert_eq!(pool.run(|| 2 + 2).await, Ok(4));
        // The one thread is held, the one queue place taken: a third job is refused.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = oneshot::channel();
        let blocker = tokio::spawn({
            let pool = pool.clone();
            async move {
                pool.run(move || {
                    let _ = started_tx.send(());
                    let _ = held.recv();
                })
                .await
            }
        });
        started.await.unwrap();
        let queued = tokio::spawn({
            let pool = pool.clone();
            async move { pool.try_run(Duration::from_secs(5), || 1).await }
        });
        // Wait (bounded) until the second job holds the queue's place.
        for _ in 0..5000 {
            if pool.jobs.capacity() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(pool.jobs.capacity(), 0, "the second job is queued");
        assert_eq!(pool.try_run(Duration::from_secs(5), || 3).await, Err(PoolError::Busy));
        release.send(()).unwrap();
        assert_eq!(blocker.await.unwrap(), Ok(()));
        assert_eq!(queued.await.unwrap(), Ok(1));
    }

    #[tokio::test]
    async fn a_slow_job_times_out_for_its_caller() {
        let pool = BoundedPool::start("test", 1, 4);
        let slow = pool.try_run(Duration::from_millis(50), || std::thread::sleep(Duration::from_millis(500))).await;
        assert_eq!(slow, Err(PoolError::TimedOut));
        // The thread finishes the slow job, then serves the next.
        assert_eq!(pool.run(|| "next").await, Ok("next"));
    }
}
