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
