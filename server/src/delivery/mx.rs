//! MX and address lookup (RFC 5321 §5.1) behind a trait: hickory-resolver in production,
//! a static map in tests (there is no outside DNS on a test machine).

use std::collections::HashMap;
use std::net::IpAddr;

use futures::future::BoxFuture;

/// Why a domain or host has no usable address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MxError {
    /// RFC 7505: the domain publishes a null MX; it accepts no mail.
    #[error("{0} publishes a null MX: it accepts no mail")]
    NullMx(String),
    /// The domain or host does not exist, or has no records: a permanent failure.
    #[error("{0}")]
    Permanent(String),
    /// DNS timed out or failed: try again later.
    #[error("{0}")]
    Temporary(String),
}

/// Resolves a domain to its mail hosts, and a host to its addresses.
pub trait MxResolver: Send + Sync + std::fmt::Debug {
    /// The mail hosts of `domain`, most preferred first (equal preferences in the order
    /// the resolver gave them); the domain itself when it has no MX (the implicit MX).
    fn mail_hosts<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<Vec<String>, MxError>>;

    /// The IPv6 and IPv4 addresses of `host`.
    fn addresses<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, MxError>>;
}

/// The system resolver (hickory-resolver, reading /etc/resolv.conf).
#[derive(Debug)]
pub struct DnsResolver {
    resolver: hickory_resolver::TokioResolver,
}

impl DnsResolver {
    pub fn from_system() -> Result<Self, String> {
        let resolver = hickory_resolver::Resolver::builder_tokio()
            .map_err(|e| e.to_string())?
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self { resolver })
    }
}

impl MxResolver for DnsResolver {
    fn mail_hosts<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<Vec<String>, MxError>> {
        Box::pin(async move {
            use hickory_resolver::proto::rr::RData;
            let lookup = match self.resolver.mx_lookup(format!("{domain}.")).await {
                Ok(lookup) => lookup,
                // RFC 5321 §5.1: no MX records means the domain itself is the host (the
                // address lookup then says whether it exists).
                Err(e) if e.is_no_records_found() => return Ok(vec![domain.to_string()]),
                Err(e) => return Err(MxError::Temporary(e.to_string())),
            };
            let mut hosts: Vec<(u16, String)> = lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::MX(mx) => Some((mx.preference, mx.exchange.to_utf8().trim_end_matches('.').to_string())),
                    _ => None,
                })
                .collect();
            order_mail_hosts(domain, &mut hosts)
        })
    }

    fn addresses<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, MxError>> {
        Box::pin(async move {
            match self.resolver.lookup_ip(format!("{host}.")).await {
                Ok(lookup) => Ok(lookup.iter().collect()),
                Err(e) if e.is_no_records_found() => Err(MxError::Permanent(format!("no address records for {host}"))),
                Err(e) => Err(MxError::Temporary(e.to_string())),
            }
        })
    }
}

/// MX records in preference order (a stable sort keeps the resolver's order among
/// equals). RFC 7505 §3: a single MX of "." (preference 0) is a null MX.
fn order_mail_hosts(domain: &str, hosts: &mut Vec<(u16, String)>) -> Result<Vec<String>, MxError> {
    if hosts.iter().any(|(_, h)| h.is_empty()) {
        return Err(MxError::NullMx(domain.to_string()));
    }
    if hosts.is_empty() {
        return Ok(vec![domain.to_string()]);
    }
    hosts.sort_by_key(|(preference, _)| *preference);
    Ok(hosts.drain(..).map(|(_, h)| h).collect())
}

/// A fixed map, for tests and air-gapped sites: domains to MX hosts (`["."]` is a null
/// MX; a domain not listed has no MX, so it is its own host), hosts to addresses.
#[derive(Debug, Default, Clone)]
pub struct StaticResolver {
    pub hosts: HashMap<String, Vec<String>>,
    pub addresses: HashMap<String, Vec<IpAddr>>,
}

impl MxResolver for StaticResolver {
    fn mail_hosts<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<Vec<String>, MxError>> {
        Box::pin(async move {
            let mut hosts: Vec<(u16, String)> = match self.hosts.get(domain) {
                Some(list) => {
                    list.iter().enumerate().map(|(n, h)| (n as u16, h.trim_end_matches('.').to_string())).collect()
                }
                None => Vec::new(),
            };
            order_mail_hosts(domain, &mut hosts)
        })
    }

    fn addresses<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, MxError>> {
        Box::pin(async move {
            if let Ok(ip) = host.parse::<IpAddr>() {
                return Ok(vec![ip]);
            }
            self.addresses
                .get(host)
                .cloned()
                .ok_or_else(|| MxError::Permanent(format!("no address records for {host}")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mx_records_are_ordered_and_a_null_mx_refuses() {
        let mut hosts =
            vec![(20, "b.example".to_string()), (10, "a.example".to_string()), (20, "c.example".to_string())];
        assert_eq!(order_mail_hosts("x.example", &mut hosts).unwrap(), ["a.example", "b.example", "c.example"]);
        assert_eq!(order_mail_hosts("x.example", &mut Vec::new()).unwrap(), ["x.example"], "the implicit MX");
        let mut null = vec![(0, String::new())];
        assert_eq!(order_mail_hosts("x.example", &mut null), Err(MxError::NullMx("x.example".into())));
    }
}
