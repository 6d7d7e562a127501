//! The outbound SMTP client behind a trait (a real seam: tests may swap it). The
//! production one is lettre, with a connection pool per next hop. lettre dot-stuffs and
//! terminates the data with exactly CRLF.CRLF, so what we relay is canonical whatever
//! the client sent (we refused non-canonical input on the way in anyway).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;
use lettre::address::{Address, Envelope};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::domain::{SmartHostCredentials, TlsPolicy};

/// One next hop: a host and how to talk to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Hop {
    pub host: String,
    pub port: u16,
    pub tls: TlsPolicy,
    pub credentials: Option<(String, String)>,
}

impl Hop {
    pub fn new(host: &str, port: u16, tls: TlsPolicy, credentials: Option<&SmartHostCredentials>) -> Self {
        Self {
            host: host.to_string(),
            port,
            tls,
            credentials: credentials.map(|c| (c.username.clone(), c.password.clone())),
        }
    }
}

/// How a send ended when it did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendFailure {
    /// A 5xx from the server: do not retry.
    pub permanent: bool,
    /// The server never answered the transaction (connect, TLS, timeout): another host
    /// of the same route may be tried.
    pub connection: bool,
    pub reply: String,
}

pub trait Transport: Send + Sync + std::fmt::Debug {
    /// Sends one transaction; Ok carries the server's final reply.
    fn send<'a>(
        &'a self,
        hop: &'a Hop,
        sender: Option<&'a str>,
        recipients: &'a [String],
        body: &'a [u8],
    ) -> BoxFuture<'a, Result<String, SendFailure>>;
}

/// lettre's async SMTP client with pooled connections per hop.
#[derive(Debug)]
pub struct LettreTransport {
    hello_name: String,
    timeout: Duration,
    pools: Mutex<HashMap<Hop, AsyncSmtpTransport<Tokio1Executor>>>,
}

impl LettreTransport {
    pub fn new(hello_name: String, timeout: Duration) -> Self {
        Self { hello_name, timeout, pools: Mutex::new(HashMap::new()) }
    }

    fn transport_for(&self, hop: &Hop) -> Result<AsyncSmtpTransport<Tokio1Executor>, SendFailure> {
        let mut pools = self.pools.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(t) = pools.get(hop) {
            return Ok(t.clone());
        }
        let tls = match hop.tls {
            TlsPolicy::None => Tls::None,
            TlsPolicy::Opportunistic => Tls::Opportunistic(tls_parameters(&hop.host)?),
            TlsPolicy::Required => Tls::Required(tls_parameters(&hop.host)?),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(hop.host.as_str())
            .port(hop.port)
            .tls(tls)
            .timeout(Some(self.timeout))
            .hello_name(ClientId::Domain(self.hello_name.clone()))
            .pool_config(PoolConfig::new().max_size(32).idle_timeout(Duration::from_secs(30)));
        if let Some((user, password)) = &hop.credentials {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        let transport = builder.build();
        pools.insert(hop.clone(), transport.clone());
        Ok(transport)
    }
}

fn tls_parameters(host: &str) -> Result<TlsParameters, SendFailure> {
    TlsParameters::new(host.to_string()).map_err(|e| SendFailure {
        permanent: false,
        connection: true,
        reply: format!("TLS setup for {host} failed: {e}"),
    })
}

impl Transport for LettreTransport {
    fn send<'a>(
        &'a self,
        hop: &'a Hop,
        sender: Option<&'a str>,
        recipients: &'a [String],
        body: &'a [u8],
    ) -> BoxFuture<'a, Result<String, SendFailure>> {
        Box::pin(async move {
            let envelope = envelope(sender, recipients)?;
            let transport = self.transport_for(hop)?;
            match transport.send_raw(&envelope, body).await {
                Ok(response) => Ok(format!("{} {}", response.code(), response.message().collect::<Vec<_>>().join(" "))),
                Err(e) => Err(SendFailure {
                    permanent: e.is_permanent(),
                    connection: !(e.is_permanent() || e.is_transient()),
                    reply: e.to_string(),
                }),
            }
        })
    }
}

fn envelope(sender: Option<&str>, recipients: &[String]) -> Result<Envelope, SendFailure> {
    let unsupported = |a: &str| SendFailure {
        permanent: true,
        connection: false,
        reply: format!("554 5.1.3 Address <{a}> cannot be relayed by the outbound client"),
    };
    let from = sender.map(|s| Address::from_str(s).map_err(|_| unsupported(s))).transpose()?;
    let to =
        recipients.iter().map(|r| Address::from_str(r).map_err(|_| unsupported(r))).collect::<Result<Vec<_>, _>>()?;
    Envelope::new(from, to).map_err(|e| SendFailure {
        permanent: true,
        connection: false,
        reply: format!("554 5.5.0 {e}"),
    })
}
