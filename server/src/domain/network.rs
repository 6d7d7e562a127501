//! Remote IP ranges and listener bindings, as typed values.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use ipnet::IpNet;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    #[error("{0:?} is not an IP address or CIDR range (expected e.g. 192.168.1.13 or 192.168.1.0/24)")]
    InvalidRange(String),
    #[error("{0:?} has host bits set; did you mean {1}?")]
    HostBitsSet(String, IpNet),
    #[error("{0:?} is not a binding (expected IP:port, e.g. 0.0.0.0:2526 or [::]:587)")]
    InvalidBinding(String),
    #[error("binding {0:?} has port 0; a connector must listen on a fixed port")]
    PortZero(String),
}

/// A remote IP range in CIDR form. A bare address means that one host (`/32`, `/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpRange(IpNet);

impl IpRange {
    /// Parses `192.168.1.13`, `192.168.1.0/24` or `2001:db8::/32`. A range with host bits
    /// set (`192.168.1.13/24`) is refused: it is almost always a typo, and guessing which
    /// of the two the admin meant is how relays get opened.
    pub fn parse(input: &str) -> Result<Self, NetworkError> {
        let text = input.trim();
        if let Ok(ip) = IpAddr::from_str(text) {
            return Ok(Self(IpNet::from(canonical_ip(ip))));
        }
        let net = IpNet::from_str(text).map_err(|_| NetworkError::InvalidRange(input.to_string()))?;
        if net.trunc() != net {
            return Err(NetworkError::HostBitsSet(input.to_string(), net.trunc()));
        }
        Ok(Self(net))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&canonical_ip(ip))
    }

    /// Longer prefixes are more specific; used to pick the best-matching connector.
    pub fn prefix_len(&self) -> u8 {
        self.0.prefix_len()
    }

    pub fn net(&self) -> IpNet {
        self.0
    }

    /// True for ranges that admit the whole Internet (`0.0.0.0/0`, `::/0`).
    pub fn is_everything(&self) -> bool {
        self.0.prefix_len() == 0
    }
}

/// IPv4 blocks that are not public Internet addresses (RFC 6890's special-purpose
/// registry: this network, private, shared CGNAT, loopback, link-local, protocol
/// assignments, documentation, benchmarking, multicast, reserved). Disjoint.
const NON_PUBLIC_V4: [(u32, u8); 14] = [
    (0x0000_0000, 8),
    (0x0a00_0000, 8),
    (0x6440_0000, 10),
    (0x7f00_0000, 8),
    (0xa9fe_0000, 16),
    (0xac10_0000, 12),
    (0xc000_0000, 24),
    (0xc000_0200, 24),
    (0xc0a8_0000, 16),
    (0xc612_0000, 15),
    (0xc633_6400, 24),
    (0xcb00_7100, 24),
    (0xe000_0000, 4),
    (0xf000_0000, 4),
];

/// How much of the public Internet a set of ranges admits: the number of public IPv4
/// addresses, and the number of global unicast IPv6 /64s (2000::/3, less documentation).
pub fn public_span(ranges: &[IpRange]) -> (u64, u128) {
    let v4: Vec<ipnet::Ipv4Net> =
        ranges.iter().filter_map(|r| if let IpNet::V4(n) = r.net() { Some(n) } else { None }).collect();
    let v6: Vec<ipnet::Ipv6Net> =
        ranges.iter().filter_map(|r| if let IpNet::V6(n) = r.net() { Some(n) } else { None }).collect();
    let public_v4 = ipnet::Ipv4Net::aggregate(&v4)
        .iter()
        .map(|net| {
            let size = 1u64 << (32 - net.prefix_len());
            let private: u64 = NON_PUBLIC_V4
                .iter()
                .filter_map(|(start, len)| ipnet::Ipv4Net::new((*start).into(), *len).ok())
                .map(|block| overlap_v4(net, &block))
                .sum();
            size - private
        })
        .sum();
    let global = ipnet::Ipv6Net::new(std::net::Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3).ok();
    let documentation = ipnet::Ipv6Net::new(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32).ok();
    let slash64s = |net: &ipnet::Ipv6Net| 1u128 << (64 - net.prefix_len().min(64));
    let public_v6 = ipnet::Ipv6Net::aggregate(&v6)
        .iter()
        .map(|net| {
            let within = match global {
                Some(g) if net.contains(&g) => slash64s(&g),
                Some(g) if g.contains(net) => slash64s(net),
                _ => 0,
            };
            let documented = documentation.map_or(0, |d| {
                if net.contains(&d) {
                    slash64s(&d)
                } else if d.contains(net) {
                    slash64s(net)
                } else {
                    0
                }
            });
            within.saturating_sub(documented)
        })
        .sum();
    (public_v4, public_v6)
}

/// Whether an address is on the public Internet: not loopback, private (RFC 1918, ULA),
/// shared CGNAT, link-local, multicast, unspecified, documentation or otherwise reserved
/// (RFC 6890). An IPv4-mapped IPv6 address is judged as the IPv4 address it carries.
pub fn is_public(ip: IpAddr) -> bool {
    match canonical_ip(ip) {
        IpAddr::V4(v4) => !NON_PUBLIC_V4
            .iter()
            .any(|(start, len)| ipnet::Ipv4Net::new((*start).into(), *len).is_ok_and(|block| block.contains(&v4))),
        IpAddr::V6(v6) => {
            let global = ipnet::Ipv6Net::new(std::net::Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3);
            let documentation = ipnet::Ipv6Net::new(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32);
            global.is_ok_and(|g| g.contains(&v6)) && !documentation.is_ok_and(|d| d.contains(&v6))
        }
    }
}

/// Addresses two IPv4 prefixes share (prefixes either nest or are disjoint).
fn overlap_v4(a: &ipnet::Ipv4Net, b: &ipnet::Ipv4Net) -> u64 {
    if a.contains(b) {
        1u64 << (32 - b.prefix_len())
    } else if b.contains(a) {
        1u64 << (32 - a.prefix_len())
    } else {
        0
    }
}

impl From<IpNet> for IpRange {
    fn from(net: IpNet) -> Self {
        Self(net.trunc())
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.prefix_len() == self.0.max_prefix_len() {
            write!(f, "{}", self.0.addr())
        } else {
            write!(f, "{}", self.0)
        }
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, seen on dual-stack sockets) is the
/// IPv4 client it stands for.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// The source a per-client limit counts: an IPv4 address, or the /64 an IPv6 address is
/// in (one host's usual allocation, so rotating addresses inside it gains nothing).
pub fn source_key(ip: IpAddr) -> IpAddr {
    match canonical_ip(ip) {
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        v4 => v4,
    }
}

/// A listening address of a receive connector: `IP:port`. `0.0.0.0` and `[::]` mean
/// every local address on that port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Binding(SocketAddr);

impl Binding {
    pub fn parse(input: &str) -> Result<Self, NetworkError> {
        let addr = SocketAddr::from_str(input.trim()).map_err(|_| NetworkError::InvalidBinding(input.to_string()))?;
        if addr.port() == 0 {
            return Err(NetworkError::PortZero(input.to_string()));
        }
        Ok(Self(addr))
    }

    pub fn socket_addr(&self) -> SocketAddr {
        self.0
    }

    pub fn port(&self) -> u16 {
        self.0.port()
    }

    pub fn is_wildcard(&self) -> bool {
        self.0.ip().is_unspecified()
    }

    /// Does a connection accepted on `local` arrive through this binding?
    pub fn accepts(&self, local: SocketAddr) -> bool {
        let local_ip = canonical_ip(local.ip());
        self.port() == local.port()
            && match self.0.ip() {
                IpAddr::V4(Ipv4Addr::UNSPECIFIED) => local_ip.is_ipv4(),
                IpAddr::V6(Ipv6Addr::UNSPECIFIED) => true,
                ip => ip == local_ip,
            }
    }
}

impl fmt::Display for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_addresses_are_told_from_private_and_reserved_ones() {
        for private in [
            "127.0.0.1",
            "10.0.0.5",
            "172.16.3.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["8.8.8.8", "52.96.0.1", "2a00:1450:4001::1", "::ffff:8.8.4.4"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn the_public_span_of_ranges_leaves_out_private_and_reserved_space() {
        let span =
            |ranges: &[&str]| public_span(&ranges.iter().map(|r| IpRange::parse(r).unwrap()).collect::<Vec<_>>());
        assert_eq!(span(&["10.0.0.0/8", "192.168.0.0/16", "127.0.0.1"]), (0, 0));
        assert_eq!(span(&["192.0.2.0/24"]), (0, 0), "documentation");
        assert_eq!(span(&["203.0.112.0/24", "203.0.112.0/25"]).0, 256, "overlaps count once");
        assert_eq!(span(&["11.0.0.0/8"]).0, 1 << 24);
        let halves = span(&["0.0.0.0/1", "128.0.0.0/1"]).0;
        assert!(halves > 3_000_000_000 && halves < 1 << 32, "{halves}");
        assert_eq!(span(&["0.0.0.0/0"]).0, halves);
        assert_eq!(span(&["2001:db8::/32"]), (0, 0));
        assert_eq!(span(&["fd00::/8", "::1", "fe80::/10"]), (0, 0));
        assert_eq!(span(&["2a00:1450::/32"]).1, 1 << 32);
        assert_eq!(span(&["::/1", "8000::/1"]).1, (1 << 61) - (1 << 32));
    }

    #[test]
    fn bare_ip_is_a_single_host_range() {
        let range = IpRange::parse("192.168.1.13").unwrap();
        assert_eq!(range.prefix_len(), 32);
        assert!(range.contains("192.168.1.13".parse().unwrap()));
        assert!(!range.contains("192.168.1.14".parse().unwrap()));
        assert_eq!(range.to_string(), "192.168.1.13");
    }

    #[test]
    fn host_bits_and_garbage_are_refused_with_a_hint() {
        assert_eq!(
            IpRange::parse("192.168.1.13/24"),
            Err(NetworkError::HostBitsSet("192.168.1.13/24".into(), "192.168.1.0/24".parse().unwrap()))
        );
        assert!(IpRange::parse("192.168.1.300").is_err());
        assert!(IpRange::parse("10.0.0.0/33").is_err());
        assert!(IpRange::parse("banana").is_err());
    }

    #[test]
    fn mapped_ipv4_clients_match_ipv4_ranges() {
        let range = IpRange::parse("127.0.0.0/8").unwrap();
        assert!(range.contains("::ffff:127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn bindings_parse_and_match_local_addresses() {
        let any = Binding::parse("0.0.0.0:2526").unwrap();
        assert!(any.is_wildcard());
        assert!(any.accepts("127.0.0.1:2526".parse().unwrap()));
        assert!(!any.accepts("127.0.0.1:2527".parse().unwrap()));
        let one = Binding::parse("127.0.0.2:25").unwrap();
        assert!(one.accepts("127.0.0.2:25".parse().unwrap()));
        assert!(!one.accepts("127.0.0.1:25".parse().unwrap()));
        assert!(Binding::parse("0.0.0.0").is_err());
        assert!(Binding::parse("0.0.0.0:0").is_err());
        assert!(Binding::parse("localhost:25").is_err());
    }
}
