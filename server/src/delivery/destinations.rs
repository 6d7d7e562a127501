//! Where delivery by MX may connect. DNS is the recipient domain's to write, and anyone
//! who may relay can make Postern look up any domain: an MX or A/AAAA answer pointing at
//! loopback, a private network (RFC 1918, ULA), CGNAT, link-local (the cloud metadata
//! service at 169.254.169.254), multicast or unspecified space, or at this node itself,
//! would turn Postern into a probe of its own network or a mail loop. Such addresses are
//! refused unless the send connector says `allow_private_destinations` (an internal
//! domain routed by MX on purpose). Postern connects to the address it checked, never
//! to a name resolved again (no DNS rebinding between check and connect).
//!
//! Explicit smart hosts are the administrator's choice and are not checked here.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::domain::{IpPreference, canonical_ip, is_public};

/// This host's own addresses (every interface), read from /proc at start and on reload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnAddresses(BTreeSet<IpAddr>);

impl OwnAddresses {
    /// The interface addresses Linux lists in /proc/net (IPv4 local routes, IPv6
    /// interface addresses); empty elsewhere, where only the public-address rule applies.
    pub fn read() -> Self {
        let mut own = BTreeSet::new();
        if let Ok(trie) = std::fs::read_to_string("/proc/net/fib_trie") {
            own.extend(local_ipv4(&trie));
        }
        if let Ok(table) = std::fs::read_to_string("/proc/net/if_inet6") {
            own.extend(interface_ipv6(&table));
        }
        Self(own)
    }

    pub fn with(addresses: impl IntoIterator<Item = IpAddr>) -> Self {
        Self(addresses.into_iter().map(canonical_ip).collect())
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&canonical_ip(ip))
    }
}

/// `/proc/net/fib_trie`: an address line (`|-- 192.0.2.5`) followed by `/32 host LOCAL`
/// is one of this host's addresses.
fn local_ipv4(trie: &str) -> Vec<IpAddr> {
    let mut found = Vec::new();
    let mut last: Option<IpAddr> = None;
    for line in trie.lines() {
        let text = line.trim();
        if let Some(address) = text.strip_prefix("|-- ") {
            last = address.trim().parse().ok();
        } else if text.contains("/32 host LOCAL")
            && let Some(ip) = last
        {
            found.push(ip);
        }
    }
    found
}

/// `/proc/net/if_inet6`: the first column is the address, 32 hex digits.
fn interface_ipv6(table: &str) -> Vec<IpAddr> {
    table
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter_map(|hex| u128::from_str_radix(hex, 16).ok())
        .map(|n| IpAddr::V6(std::net::Ipv6Addr::from(n)))
        .collect()
}

/// Why an address may not be connected to by MX.
pub fn refusal(ip: IpAddr, own: &OwnAddresses) -> Option<&'static str> {
    if own.contains(ip) {
        Some("this node's own address")
    } else if !is_public(ip) {
        Some("not a public address")
    } else {
        None
    }
}

/// Orders a host's addresses by the connector's preference, keeping the resolver's order
/// within each family.
pub fn ordered(mut addresses: Vec<IpAddr>, preference: IpPreference) -> Vec<IpAddr> {
    match preference {
        IpPreference::Any => {}
        IpPreference::Ipv4 => addresses.sort_by_key(|ip| !ip.is_ipv4()),
        IpPreference::Ipv6 => addresses.sort_by_key(|ip| !ip.is_ipv6()),
    }
    addresses
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_addresses_are_read_from_proc() {
        let trie = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n     +-- 127.0.0.0/8 2 0 2\n        |-- 127.0.0.1\n           /32 host LOCAL\n     |-- 203.0.113.7\n        /32 host LOCAL\n     |-- 203.0.113.255\n        /32 link BROADCAST\n";
        assert_eq!(local_ipv4(trie), vec!["127.0.0.1".parse::<IpAddr>().unwrap(), "203.0.113.7".parse().unwrap()]);
        let inet6 = "00000000000000000000000000000001 01 80 10 80       lo\n2a001450400100000000000000000005 02 40 00 80     eth0\n";
        assert_eq!(interface_ipv6(inet6), vec!["::1".parse::<IpAddr>().unwrap(), "2a00:1450:4001::5".parse().unwrap()]);
        // This machine has loopback at least.
        assert!(OwnAddresses::read().contains("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn private_and_own_addresses_are_refused_and_families_ordered() {
        let own = OwnAddresses::with(["198.51.100.9".parse().unwrap()]);
        assert_eq!(refusal("198.51.100.9".parse().unwrap(), &own), Some("this node's own address"));
        assert_eq!(refusal("10.0.0.5".parse().unwrap(), &own), Some("not a public address"));
        assert_eq!(refusal("52.96.1.1".parse().unwrap(), &own), None);
        let mixed: Vec<IpAddr> =
            ["2a00::1", "52.96.1.1", "2a00::2", "52.96.1.2"].iter().map(|a| a.parse().unwrap()).collect();
        let v4_first = ordered(mixed.clone(), IpPreference::Ipv4);
        assert_eq!(v4_first[..2], [mixed[1], mixed[3]]);
        assert_eq!(ordered(mixed.clone(), IpPreference::Any), mixed);
    }
}
