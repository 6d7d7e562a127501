//! Back-pressure: while the queue is deeper than the configured limit, or the database
//! does not answer, new transactions are refused at MAIL with `452 4.3.1 Insufficient
//! system resources` (RFC 5321 §4.2.2, RFC 3463 §3.4) instead of accepting mail Postern
//! may not be able to keep. Clients retry later, as they do for any 4xx; the session
//! stays open. A watcher re-reads the state every second, so the refusals end as soon as
//! the queue drains or the database returns.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// How often the queue depth and the database are checked.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// A database that takes longer than this to answer counts as unhealthy.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
pub struct BackPressure {
    refusing: AtomicBool,
}

impl BackPressure {
    /// True while new transactions must be refused.
    pub fn refusing(&self) -> bool {
        self.refusing.load(Ordering::Relaxed)
    }

    /// Checks the database and the queue depth every second until `shutdown`.
    /// `max_queue_depth` 0 turns the depth limit off (the database check stays).
    pub async fn watch(self: Arc<Self>, store: Store, max_queue_depth: i64, shutdown: CancellationToken) {
        let mut every = tokio::time::interval(CHECK_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                () = shutdown.cancelled() => return,
            }
            let reason = Self::reason_to_refuse(&store, max_queue_depth).await;
            self.set(reason);
        }
    }

    /// Why new mail should be refused right now, if it should. The same query keeps the
    /// queue gauges of `/metrics`, so a scrape never reads the database.
    async fn reason_to_refuse(store: &Store, max_queue_depth: i64) -> Option<String> {
        let gauges = tokio::time::timeout(HEALTH_TIMEOUT, store.queue_gauges()).await;
        let (depth, oldest, poison) = match &gauges {
            Ok(Ok((depth, oldest, poison))) => (*depth as f64, *oldest, *poison as f64),
            _ => (f64::NAN, f64::NAN, f64::NAN),
        };
        metrics::gauge!("postern_queue_depth").set(depth);
        metrics::gauge!("postern_queue_oldest_age_seconds").set(oldest);
        metrics::gauge!("postern_queue_poison").set(poison);
        match gauges {
            Ok(Ok((depth, _, _))) if max_queue_depth > 0 && depth >= max_queue_depth => {
                Some(format!("{depth} messages are queued (the limit is {max_queue_depth})"))
            }
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(format!("the database does not answer: {e}")),
            Err(_) => Some("the database does not answer".into()),
        }
    }

    fn set(&self, reason: Option<String>) {
        let refusing = reason.is_some();
        metrics::gauge!("postern_back_pressure").set(if refusing { 1.0 } else { 0.0 });
        if self.refusing.swap(refusing, Ordering::Relaxed) == refusing {
            return;
        }
        match reason {
            Some(why) => tracing::warn!(%why, "back-pressure: new mail is refused with 452 4.3.1"),
            None => tracing::info!("back-pressure over: new mail is accepted again"),
        }
    }
}
