//! Slows down and then refuses repeated authentication failures, per source and per
//! account. A source is an IPv4 address or an IPv6 /64 (one host's usual allocation, so
//! rotating addresses inside it gains nothing). The caller names the account it
//! resolved, not the login as typed, so a name and an address of one account share a
//! budget, and every unknown login shares one. Failures are counted in a sliding window; past a first threshold every failed
//! attempt is answered late (a tarpit), past a second the source or login is refused
//! for a while. An account lockout never applies to a source that recently signed in to
//! it successfully, so an attacker elsewhere cannot lock the real application out.
//!
//! State is in memory, per node: a restart forgets it, which only shortens a lockout.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// The thresholds. The defaults suit service accounts, which never mistype: an
/// application with a wrong password fails the same way on every message.
#[derive(Debug, Clone)]
pub struct ThrottlePolicy {
    pub window: Duration,
    pub ip_delay_after: u32,
    pub ip_lock_after: u32,
    pub account_delay_after: u32,
    pub account_lock_after: u32,
    pub lock_for: Duration,
    pub delay_step: Duration,
    pub max_delay: Duration,
    /// How long a successful sign-in exempts that source from its account's lockout.
    pub trust_for: Duration,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(15 * 60),
            ip_delay_after: 3,
            ip_lock_after: 10,
            account_delay_after: 5,
            account_lock_after: 20,
            lock_for: Duration::from_secs(15 * 60),
            delay_step: Duration::from_secs(1),
            max_delay: Duration::from_secs(5),
            trust_for: Duration::from_secs(24 * 3600),
        }
    }
}

/// What to do with an authentication attempt before checking the password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleVerdict {
    Allow,
    /// Refused: the source or the login is locked out.
    Refuse,
}

/// A current lockout, for the status page and the log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Lockout {
    /// `ip` or `account`.
    #[schema(value_type = String)]
    pub kind: &'static str,
    pub key: String,
    pub failures: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub until: time::OffsetDateTime,
}

#[derive(Debug, Clone, Copy)]
struct Counter {
    failures: u32,
    since: Instant,
    locked_until: Option<Instant>,
}

impl Counter {
    fn new(now: Instant) -> Self {
        Self { failures: 0, since: now, locked_until: None }
    }

    fn is_locked(&self, now: Instant) -> bool {
        self.locked_until.is_some_and(|until| until > now)
    }

    /// Counts one failure; true when this failure starts a lockout.
    fn fail(&mut self, now: Instant, policy: &ThrottlePolicy, lock_after: u32) -> bool {
        if now.duration_since(self.since) > policy.window && !self.is_locked(now) {
            *self = Counter::new(now);
        }
        self.failures += 1;
        if self.failures >= lock_after && !self.is_locked(now) {
            self.locked_until = Some(now + policy.lock_for);
            return true;
        }
        false
    }
}

#[derive(Debug, Default)]
struct State {
    by_ip: HashMap<IpAddr, Counter>,
    by_login: HashMap<String, Counter>,
    trusted: HashMap<(String, IpAddr), Instant>,
}

#[derive(Debug, Default)]
pub struct Throttle {
    policy: ThrottlePolicy,
    state: Mutex<State>,
}

/// Beyond this many tracked keys, stale ones are pruned (a spray from many addresses
/// must not grow the maps without bound).
const PRUNE_ABOVE: usize = 10_000;

impl Throttle {
    pub fn new(policy: ThrottlePolicy) -> Self {
        Self { policy, state: Mutex::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The maps stay consistent even if a holder panicked: each update is one insert.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn check(&self, ip: IpAddr, login: &str, now: Instant) -> ThrottleVerdict {
        self.verdict(&self.lock(), ip, login, now)
    }

    fn verdict(&self, state: &State, ip: IpAddr, login: &str, now: Instant) -> ThrottleVerdict {
        let (ip, login) = (source(ip), login.to_lowercase());
        if state.by_ip.get(&ip).is_some_and(|c| c.is_locked(now)) {
            return ThrottleVerdict::Refuse;
        }
        let trusted =
            state.trusted.get(&(login.clone(), ip)).is_some_and(|&t| now.duration_since(t) < self.policy.trust_for);
        if !trusted && state.by_login.get(&login).is_some_and(|c| c.is_locked(now)) {
            return ThrottleVerdict::Refuse;
        }
        ThrottleVerdict::Allow
    }

    /// Checks and counts an attempt in one step, before the password is checked: it is
    /// counted as a failure now (so a burst of concurrent attempts cannot all pass the
    /// check before the first is counted) and given back by `succeeded_attempt` if the
    /// password was right. Returns the tarpit delay for a failure and the lockouts this
    /// attempt started; `None` when the source or the login is locked out.
    pub fn attempt(&self, ip: IpAddr, login: &str, now: Instant) -> Option<(Duration, Vec<Lockout>)> {
        let mut state = self.lock();
        if self.verdict(&state, ip, login, now) == ThrottleVerdict::Refuse {
            return None;
        }
        Some(self.count_failure(&mut state, ip, login, now))
    }

    /// A counted attempt (`attempt`) turned out right: its failure is given back to the
    /// source, and the login's failures are cleared as `succeeded` does.
    pub fn succeeded_attempt(&self, ip: IpAddr, login: &str, now: Instant) {
        {
            let mut state = self.lock();
            if let Some(counter) = state.by_ip.get_mut(&source(ip)) {
                counter.failures = counter.failures.saturating_sub(1);
            }
        }
        self.succeeded(ip, login, now);
    }

    /// Records a failure. Returns how long to wait before answering, and the lockouts
    /// this failure started (to be logged).
    pub fn failed(&self, ip: IpAddr, login: &str, now: Instant) -> (Duration, Vec<Lockout>) {
        self.count_failure(&mut self.lock(), ip, login, now)
    }

    fn count_failure(&self, state: &mut State, ip: IpAddr, login: &str, now: Instant) -> (Duration, Vec<Lockout>) {
        let policy = &self.policy;
        let (ip, login) = (source(ip), login.to_lowercase());
        if state.by_ip.len() + state.by_login.len() + state.trusted.len() > PRUNE_ABOVE {
            prune(state, now, policy);
        }
        let mut started = Vec::new();
        let ip_counter = state.by_ip.entry(ip).or_insert_with(|| Counter::new(now));
        if ip_counter.fail(now, policy, policy.ip_lock_after) {
            started.push(lockout("ip", ip.to_string(), ip_counter, now));
        }
        let ip_failures = ip_counter.failures;
        let login_counter = state.by_login.entry(login.clone()).or_insert_with(|| Counter::new(now));
        if login_counter.fail(now, policy, policy.account_lock_after) {
            started.push(lockout("account", login, login_counter, now));
        }
        let login_failures = login_counter.failures;
        let excess = ip_failures
            .saturating_sub(policy.ip_delay_after)
            .max(login_failures.saturating_sub(policy.account_delay_after));
        let delay = (policy.delay_step * excess).min(policy.max_delay);
        (delay, started)
    }

    /// A success clears the account's failures (its owner is here) and exempts this
    /// source from the account's lockout. The source's own failures stay: one valid
    /// account must not buy unlimited guesses against the others.
    pub fn succeeded(&self, ip: IpAddr, login: &str, now: Instant) {
        let mut state = self.lock();
        let login = login.to_lowercase();
        state.by_login.remove(&login);
        state.trusted.insert((login, source(ip)), now);
    }

    /// The lockouts in force now.
    pub fn lockouts(&self, now: Instant) -> Vec<Lockout> {
        let state = self.lock();
        let ips =
            state.by_ip.iter().filter(|(_, c)| c.is_locked(now)).map(|(ip, c)| lockout("ip", ip.to_string(), c, now));
        let logins =
            state.by_login.iter().filter(|(_, c)| c.is_locked(now)).map(|(l, c)| lockout("account", l.clone(), c, now));
        ips.chain(logins).collect()
    }
}

fn lockout(kind: &'static str, key: String, counter: &Counter, now: Instant) -> Lockout {
    let remaining = counter.locked_until.map_or(Duration::ZERO, |until| until.saturating_duration_since(now));
    let until = time::OffsetDateTime::from(SystemTime::now() + remaining);
    Lockout { kind, key, failures: counter.failures, until }
}

use crate::domain::source_key as source;

/// Forgets stale entries; if a flood still leaves too many, forgets every entry that is
/// not a lockout (the tarpit restarts for them, the lockouts hold).
fn prune(state: &mut State, now: Instant, policy: &ThrottlePolicy) {
    let fresh = |c: &Counter| c.is_locked(now) || now.duration_since(c.since) <= policy.window;
    state.by_ip.retain(|_, c| fresh(c));
    state.by_login.retain(|_, c| fresh(c));
    state.trusted.retain(|_, at| now.duration_since(*at) < policy.trust_for);
    if state.by_ip.len() + state.by_login.len() > PRUNE_ABOVE / 2 {
        state.by_ip.retain(|_, c| c.is_locked(now));
        state.by_login.retain(|_, c| c.is_locked(now));
    }
    if state.trusted.len() > PRUNE_ABOVE / 2 {
        state.trusted.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_source_is_slowed_then_locked_then_forgiven() {
        let throttle = Throttle::default();
        let t0 = Instant::now();
        let delays: Vec<u64> = (0..10).map(|_| throttle.failed(ip("10.0.0.1"), "svc", t0).0.as_secs()).collect();
        assert_eq!(delays, [0, 0, 0, 1, 2, 3, 4, 5, 5, 5]);
        assert_eq!(throttle.check(ip("10.0.0.1"), "other", t0), ThrottleVerdict::Refuse);
        assert_eq!(throttle.check(ip("10.0.0.2"), "other", t0), ThrottleVerdict::Allow);
        assert_eq!(throttle.lockouts(t0).len(), 1);
        let later = t0 + Duration::from_secs(16 * 60);
        assert_eq!(throttle.check(ip("10.0.0.1"), "svc", later), ThrottleVerdict::Allow);
        assert!(throttle.lockouts(later).is_empty());
    }

    #[test]
    fn an_account_lockout_spares_sources_that_signed_in_before() {
        let throttle = Throttle::default();
        let t0 = Instant::now();
        throttle.succeeded(ip("192.168.1.13"), "svc-mailer", t0);
        // A spray from many addresses, each failing once.
        for n in 0..20 {
            throttle.failed(IpAddr::from([10, 0, 0, n]), "SVC-mailer", t0);
        }
        assert_eq!(throttle.check(ip("10.9.9.9"), "svc-mailer", t0), ThrottleVerdict::Refuse);
        assert_eq!(throttle.check(ip("192.168.1.13"), "svc-mailer", t0), ThrottleVerdict::Allow);
    }

    #[test]
    fn a_success_does_not_clear_the_sources_failures_and_ipv6_counts_per_64() {
        let throttle = Throttle::default();
        let t0 = Instant::now();
        for n in 0..10u16 {
            // Guesses against other accounts from rotating addresses of one /64, each
            // followed by a success with an account the attacker holds.
            let ip = IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, n]);
            throttle.failed(ip, &format!("victim{n}"), t0);
            throttle.succeeded(ip, "own-account", t0);
        }
        assert_eq!(throttle.check("2001:db8:0:1::ffff".parse().unwrap(), "x", t0), ThrottleVerdict::Refuse);
        assert_eq!(throttle.check("2001:db8:0:2::1".parse().unwrap(), "x", t0), ThrottleVerdict::Allow);
    }

    #[test]
    fn failures_outside_the_window_start_over() {
        let throttle = Throttle::default();
        let t0 = Instant::now();
        for _ in 0..9 {
            throttle.failed(ip("10.0.0.1"), "svc", t0);
        }
        let later = t0 + Duration::from_secs(20 * 60);
        let (delay, started) = throttle.failed(ip("10.0.0.1"), "svc", later);
        assert_eq!((delay, started.len()), (Duration::ZERO, 0));
    }
}
