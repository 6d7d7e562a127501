//! Refused sign-ins are audited, but whoever can reach the console can cause them: a
//! flood of bad passwords or forged SAML responses must not fill the audit log (or push
//! real entries out of a log shipper's window). Per kind and source, the first few
//! refusals of a ten-minute window are written as they come; the rest are only counted,
//! and one summary row per window says how many were left out. Past `MAX_SOURCES`
//! sources in play, new ones share one "many sources" key, so memory stays bounded too.
//! Every refusal is still counted in the metrics.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(600);
/// Refusals written one by one per kind and source in a window.
const WRITTEN_PER_WINDOW: u32 = 5;
const MAX_SOURCES: usize = 1000;
/// The key that stands for every source beyond `MAX_SOURCES`.
const MANY_SOURCES: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

#[derive(Debug, Clone, Copy)]
struct Window {
    since: Instant,
    written: u32,
    left_out: u32,
}

/// What the audit log should say about refusals that were only counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftOut {
    pub kind: &'static str,
    /// `None`: many sources, each beyond the tracked ones.
    pub source: Option<IpAddr>,
    pub count: u32,
}

#[derive(Debug, Default)]
pub struct RefusalDigest {
    windows: Mutex<HashMap<(&'static str, IpAddr), Window>>,
}

impl RefusalDigest {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(&'static str, IpAddr), Window>> {
        self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Notes one refusal of `kind` from `ip`; true when it should be written to the audit
    /// log now, false when it is only counted (for `left_out`).
    pub fn note(&self, kind: &'static str, ip: IpAddr, now: Instant) -> bool {
        let mut windows = self.lock();
        let mut source = crate::domain::source_key(ip);
        if !windows.contains_key(&(kind, source)) && windows.len() >= MAX_SOURCES {
            source = MANY_SOURCES;
        }
        let window = windows.entry((kind, source)).or_insert(Window { since: now, written: 0, left_out: 0 });
        if window.written < WRITTEN_PER_WINDOW && source != MANY_SOURCES {
            window.written += 1;
            true
        } else {
            window.left_out += 1;
            false
        }
    }

    /// The windows that have ended, with how many refusals each left out (only those
    /// that left some out); ended windows are forgotten.
    pub fn ended(&self, now: Instant) -> Vec<LeftOut> {
        let mut windows = self.lock();
        let mut ended = Vec::new();
        windows.retain(|&(kind, source), w| {
            if now.duration_since(w.since) < WINDOW {
                return true;
            }
            if w.left_out > 0 {
                let source = (source != MANY_SOURCES).then_some(source);
                ended.push(LeftOut { kind, source, count: w.left_out });
            }
            false
        });
        ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_refusals_are_written_and_the_rest_summed_up_when_the_window_ends() {
        let digest = RefusalDigest::default();
        let t0 = Instant::now();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let written = (0..50).filter(|_| digest.note("password", ip, t0)).count();
        assert_eq!(written, WRITTEN_PER_WINDOW as usize);
        assert!(digest.note("saml", ip, t0), "another kind has its own window");
        assert!(digest.ended(t0 + Duration::from_secs(60)).is_empty(), "the window is still open");
        let ended = digest.ended(t0 + WINDOW);
        assert_eq!(ended, vec![LeftOut { kind: "password", source: Some(ip), count: 45 }]);
        assert!(digest.note("password", ip, t0 + WINDOW), "a new window writes again");
    }

    #[test]
    fn a_flood_from_many_sources_shares_one_summary() {
        let digest = RefusalDigest::default();
        let t0 = Instant::now();
        for n in 0..(MAX_SOURCES as u32 + 500) {
            digest.note("password", IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n)), t0);
        }
        assert!(digest.lock().len() <= MAX_SOURCES + 1);
        let ended = digest.ended(t0 + WINDOW);
        assert_eq!(ended, vec![LeftOut { kind: "password", source: None, count: 500 }]);
    }
}
