//! The outbound SMTP client behind a trait (a real seam: tests may swap it). The
//! production one is lettre's SMTP connection, reused per next hop. lettre dot-stuffs and
//! terminates the data with exactly CRLF.CRLF, so what we relay is canonical whatever
//! the client sent (we refused non-canonical input on the way in anyway).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;
use std::time::Instant;

use lettre::address::{Address, Envelope};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use tokio::net::TcpStream;

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

/// Idle connections kept per hop, and for how long.
const IDLE_PER_HOP: usize = 32;
const IDLE_FOR: Duration = Duration::from_secs(30);

/// lettre's SMTP client on connections we open ourselves, so that TCP_NODELAY is set:
/// lettre writes the final `CRLF.CRLF` as a separate small write, and with Nagle's
/// algorithm that write waits for the delayed ACK of the body (about 40 ms per message
/// on Linux). Connections are reused per hop.
pub struct LettreTransport {
    hello: ClientId,
    timeout: Duration,
    idle: Mutex<IdleConnections>,
}

/// Reusable connections per hop, and when stale ones were last swept out.
#[derive(Default)]
struct IdleConnections {
    by_hop: HashMap<Hop, Vec<(AsyncSmtpConnection, Instant)>>,
    swept: Option<Instant>,
}

impl std::fmt::Debug for LettreTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LettreTransport")
            .field("hello", &self.hello)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl LettreTransport {
    pub fn new(hello_name: String, timeout: Duration) -> Self {
        Self { hello: ClientId::Domain(hello_name), timeout, idle: Mutex::new(IdleConnections::default()) }
    }

    fn take_idle(&self, hop: &Hop) -> Option<AsyncSmtpConnection> {
        let mut idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let pool = idle.by_hop.get_mut(hop)?;
        while let Some((conn, since)) = pool.pop() {
            if since.elapsed() < IDLE_FOR && !conn.has_broken() {
                return Some(conn);
            }
        }
        None
    }

    fn put_idle(&self, hop: &Hop, conn: AsyncSmtpConnection) {
        let mut idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Now and then, close connections to hops that were not used again, so sockets
        // to thousands of MX hosts do not pile up.
        if idle.swept.is_none_or(|at| at.elapsed() > IDLE_FOR) {
            idle.by_hop.retain(|_, pool| {
                pool.retain(|(_, since)| since.elapsed() < IDLE_FOR);
                !pool.is_empty()
            });
            idle.swept = Some(Instant::now());
        }
        let pool = idle.by_hop.entry(hop.clone()).or_default();
        if pool.len() < IDLE_PER_HOP {
            pool.push((conn, Instant::now()));
        }
    }

    /// Opens a session to `hop`: TCP (no Nagle), EHLO, STARTTLS as the policy says, AUTH.
    async fn connect(&self, hop: &Hop) -> Result<AsyncSmtpConnection, SendFailure> {
        let stream = TcpStream::connect((hop.host.as_str(), hop.port))
            .await
            .map_err(|e| unreachable(NO_ANSWER, format!("connect: {e}")))?;
        stream.set_nodelay(true).map_err(|e| unreachable(BAD_CONNECTION, e.to_string()))?;
        // A refusal at the greeting or EHLO (554, 421) is this host's, not the message's:
        // another host of the route may take it (RFC 5321 §5.1).
        let mut conn = AsyncSmtpConnection::connect_with_transport(Box::new(stream), &self.hello)
            .await
            .map_err(|e| SendFailure { connection: true, ..failure(&e) })?;
        let offered = conn.can_starttls();
        match hop.tls {
            TlsPolicy::None => {}
            TlsPolicy::Opportunistic if !offered => {}
            TlsPolicy::Required if !offered => {
                // Never fall back to clear text against policy.
                return Err(unreachable(NO_TLS, "TLS is required but the server does not offer STARTTLS".into()));
            }
            TlsPolicy::Opportunistic | TlsPolicy::Required => {
                conn.starttls(tls_parameters(&hop.host)?, &self.hello)
                    .await
                    .map_err(|e| unreachable(NO_TLS, format!("STARTTLS: {e}")))?;
            }
        }
        if let Some((user, password)) = &hop.credentials {
            if !conn.is_encrypted() {
                return Err(unreachable(NO_TLS, "credentials are only sent over TLS".into()));
            }
            let mechanisms = [Mechanism::Plain, Mechanism::Login];
            conn.auth(&mechanisms, &Credentials::new(user.clone(), password.clone()))
                .await
                // A refused login is the connector's configuration, not the message's:
                // transient (an admin fixes the password; mail waits instead of bouncing),
                // and no other recipient is tried on its own with the same credentials.
                .map_err(|e| SendFailure {
                    permanent: false,
                    connection: true,
                    reply: format!("{} (AUTH)", failure(&e).reply),
                })?;
        }
        Ok(conn)
    }

    async fn transaction(
        &self,
        conn: &mut AsyncSmtpConnection,
        envelope: &Envelope,
        body: &[u8],
    ) -> Result<String, lettre::transport::smtp::Error> {
        let response = conn.send(envelope, body).await?;
        Ok(format!("{} {}", response.code(), response.message().collect::<Vec<_>>().join(" ")))
    }
}

fn tls_parameters(host: &str) -> Result<TlsParameters, SendFailure> {
    TlsParameters::new(host.to_string()).map_err(|e| unreachable(NO_TLS, format!("TLS setup for {host} failed: {e}")))
}

/// Enhanced status codes (RFC 3463 §3.5, §3.8) for failures that are ours to describe:
/// the next hop gave no SMTP reply to record. Every recorded reply starts with a reply
/// code and an enhanced code, so tracking, the queue and DSNs read alike.
const NO_ANSWER: &str = "451 4.4.1"; // no answer from host
const BAD_CONNECTION: &str = "451 4.4.2"; // bad connection
const NO_TLS: &str = "451 4.7.4"; // security features not supported (RFC 5248 registry)

/// A failure before or outside an SMTP reply: temporary, and another host of the route
/// may be tried.
fn unreachable(code: &str, why: String) -> SendFailure {
    SendFailure { permanent: false, connection: true, reply: format!("{code} {why}") }
}

/// A lettre error as a reply: the next hop's own reply when it sent one (4xx and 5xx are
/// its words, kept), otherwise a connection failure in our words.
fn failure(e: &lettre::transport::smtp::Error) -> SendFailure {
    use std::error::Error as _;
    match e.status() {
        Some(code) => {
            let text = e.source().map(ToString::to_string).unwrap_or_default();
            SendFailure { permanent: e.is_permanent(), connection: false, reply: format!("{code} {text}") }
        }
        None if e.is_timeout() => unreachable(NO_ANSWER, format!("timed out: {e}")),
        None => unreachable(BAD_CONNECTION, e.to_string()),
    }
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
            // lettre appends CRLF.CRLF itself; our stored body ends with CRLF already.
            let body = body.strip_suffix(b"\r\n").unwrap_or(body);
            let attempt = async {
                // A pooled connection may have been closed by the server meanwhile: on a
                // network error with a reused one, try once more on a fresh connection.
                if let Some(mut conn) = self.take_idle(hop) {
                    match self.transaction(&mut conn, &envelope, body).await {
                        Ok(reply) => {
                            self.put_idle(hop, conn);
                            return Ok(reply);
                        }
                        Err(e) if e.is_permanent() || e.is_transient() => return Err(failure(&e)),
                        Err(_) => {}
                    }
                }
                let mut conn = self.connect(hop).await?;
                match self.transaction(&mut conn, &envelope, body).await {
                    Ok(reply) => {
                        self.put_idle(hop, conn);
                        Ok(reply)
                    }
                    Err(e) => Err(failure(&e)),
                }
            };
            tokio::time::timeout(self.timeout, attempt).await.unwrap_or_else(|_| {
                Err(unreachable(NO_ANSWER, format!("no reply within {} s", self.timeout.as_secs())))
            })
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
