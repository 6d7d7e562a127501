//! Queue policy: group commit of accepted messages, when a deferred recipient is tried
//! again, and when a message expires. The SQL lives in `store` (commit before 250,
//! claim with a lease).

mod commit;

use std::time::Duration;

pub use commit::Committer;

use time::OffsetDateTime;

/// Retry delays after the 1st, 2nd, … failed attempt; the last one repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
}

impl Default for RetrySchedule {
    /// 1m, 5m, 15m, 30m, then hourly (until the message expires, 2 days by default).
    fn default() -> Self {
        Self::new([60, 300, 900, 1800, 3600].map(Duration::from_secs).to_vec())
    }
}

impl RetrySchedule {
    pub fn new(delays: Vec<Duration>) -> Self {
        let delays = if delays.is_empty() { vec![Duration::from_secs(60)] } else { delays };
        Self { delays }
    }

    /// The delay after attempt number `attempt` (1-based) failed.
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let i = (attempt.max(1) as usize - 1).min(self.delays.len() - 1);
        self.delays[i]
    }

    /// When to try again after attempt `attempt`, or `None` if the message expires first
    /// and should be bounced now. A retry that would land after expiry is moved to the
    /// expiry time itself: the last chance.
    pub fn next_attempt(
        &self,
        attempt: u32,
        now: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> Option<OffsetDateTime> {
        if now >= expires_at {
            return None;
        }
        Some((now + self.delay_after(attempt)).min(expires_at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn delays_follow_the_schedule_then_repeat_the_last() {
        let s = RetrySchedule::default();
        let got: Vec<u64> = (1..=7).map(|a| s.delay_after(a).as_secs()).collect();
        assert_eq!(got, [60, 300, 900, 1800, 3600, 3600, 3600]);
    }

    #[test]
    fn expiry_caps_the_next_attempt_and_then_stops_retries() {
        let s = RetrySchedule::default();
        let now = datetime!(2026-11-28 10:00 UTC);
        assert_eq!(s.next_attempt(1, now, datetime!(2026-11-30 10:00 UTC)), Some(datetime!(2026-11-28 10:01 UTC)));
        assert_eq!(s.next_attempt(5, now, datetime!(2026-11-28 10:30 UTC)), Some(datetime!(2026-11-28 10:30 UTC)));
        assert_eq!(s.next_attempt(5, now, now), None);
    }
}
