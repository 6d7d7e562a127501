//! Per-source request budgets in fixed windows: "at most N of these per minute from one
//! client". A client is an IPv4 address or an IPv6 /64 (`domain::source_key`). State is
//! in memory, per node, and bounded: past `MAX_KEYS` tracked keys, finished windows are
//! forgotten, and if a flood from many sources still leaves too many, all of them are
//! (a limit restarts; memory does not grow).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MAX_KEYS: usize = 10_000;

#[derive(Debug)]
pub struct FixedWindow<K> {
    window: Duration,
    counts: Mutex<HashMap<K, (Instant, u32)>>,
}

impl<K: Eq + Hash> FixedWindow<K> {
    pub fn new(window: Duration) -> Self {
        Self { window, counts: Mutex::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (Instant, u32)>> {
        // Each update is one insert: the map is consistent even after a panic elsewhere.
        self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// True when `key` has used `limit` in its current window (0 = unlimited).
    pub fn exceeded(&self, key: &K, limit: u32, now: Instant) -> bool {
        limit > 0
            && self.lock().get(key).is_some_and(|(start, n)| now.duration_since(*start) < self.window && *n >= limit)
    }

    /// Counts one use of `key`.
    pub fn count(&self, key: K, now: Instant) {
        let mut counts = self.lock();
        if counts.len() > MAX_KEYS {
            counts.retain(|_, (start, _)| now.duration_since(*start) < self.window);
            if counts.len() > MAX_KEYS / 2 {
                counts.clear();
            }
        }
        let entry = counts.entry(key).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }

    /// Counts one use and says whether it was within `limit`: the check and the count
    /// in one step, so concurrent requests cannot all pass before any is counted.
    pub fn admit(&self, key: K, limit: u32, now: Instant) -> bool {
        if self.exceeded(&key, limit, now) {
            return false;
        }
        self.count(key, now);
        true
    }
}

/// Requests per source address for one kind of request (a route).
pub type SourceRate = FixedWindow<(&'static str, IpAddr)>;

impl SourceRate {
    /// Admits a request of `kind` from `ip` if its source has not used `limit` this window.
    pub fn admit_source(&self, kind: &'static str, ip: IpAddr, limit: u32) -> bool {
        self.admit((kind, crate::domain::source_key(ip)), limit, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_gets_its_budget_per_window_and_ipv6_counts_per_64() {
        let rate = SourceRate::new(Duration::from_secs(60));
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        let other_64: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        assert!(rate.admit_source("acs", a, 2));
        assert!(rate.admit_source("acs", same_64, 2));
        assert!(!rate.admit_source("acs", a, 2), "the /64 used its budget");
        assert!(rate.admit_source("acs", other_64, 2));
        assert!(rate.admit_source("login", a, 2), "each kind has its own budget");
        let t0 = Instant::now();
        let window = FixedWindow::new(Duration::from_secs(60));
        assert!(window.admit(1, 1, t0));
        assert!(!window.admit(1, 1, t0 + Duration::from_secs(59)));
        assert!(window.admit(1, 1, t0 + Duration::from_secs(60)), "a new window");
        assert!(window.admit(2, 0, t0) && window.admit(2, 0, t0), "0 is unlimited");
    }

    #[test]
    fn a_flood_of_sources_cannot_grow_memory() {
        let window = FixedWindow::new(Duration::from_secs(60));
        let now = Instant::now();
        for n in 0..(3 * MAX_KEYS as u32) {
            window.count(n, now);
        }
        assert!(window.lock().len() <= MAX_KEYS + 1);
    }
}
