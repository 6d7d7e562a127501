//! MX lookup (RFC 5321 §5.1) behind a trait: hickory-resolver in production, a static
//! map in tests (there is no outside DNS on a test machine).

use std::collections::HashMap;

use futures::future::BoxFuture;

/// Why a domain has no usable mail hosts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MxError {
    /// RFC 7505 null MX, or the domain does not exist: a permanent failure.
    #[error("{0}")]
    Permanent(String),
    /// DNS timed out or failed: try again later.
    #[error("{0}")]
    Temporary(String),
}

/// Resolves a domain to its mail hosts, most preferred first.
pub trait MxResolver: Send + Sync + std::fmt::Debug {
    fn mail_hosts<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<Vec<String>, MxError>>;
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
                Err(e) if e.is_no_records_found() => {
                    // RFC 5321 §5.1: no MX records means the domain itself is the host.
                    return match self.resolver.lookup_ip(format!("{domain}.")).await {
                        Ok(_) => Ok(vec![domain.to_string()]),
                        Err(e) if e.is_no_records_found() => {
                            Err(MxError::Permanent(format!("no MX or address records for {domain}")))
                        }
                        Err(e) => Err(MxError::Temporary(e.to_string())),
                    };
                }
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
            hosts.sort();
            // RFC 7505: a single MX of "." says the domain accepts no mail.
            if hosts.iter().all(|(_, h)| h.is_empty()) {
                return Err(MxError::Permanent(format!("{domain} publishes a null MX: it accepts no mail")));
            }
            Ok(hosts.into_iter().map(|(_, h)| h).filter(|h| !h.is_empty()).collect())
        })
    }
}

/// A fixed domain → hosts map, for tests and air-gapped sites.
#[derive(Debug, Default, Clone)]
pub struct StaticResolver {
    pub hosts: HashMap<String, Vec<String>>,
}

impl MxResolver for StaticResolver {
    fn mail_hosts<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<Vec<String>, MxError>> {
        Box::pin(async move {
            self.hosts.get(domain).cloned().ok_or_else(|| MxError::Permanent(format!("no MX records for {domain}")))
        })
    }
}
