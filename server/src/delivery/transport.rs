//! The outbound SMTP client behind a trait (a real seam: tests may swap it). The
//! production one opens the connection itself, reads the greeting, and for a TLS policy
//! says EHLO and STARTTLS and runs the handshake with Postern's own verifier (`tls`), so
//! that every policy, CA bundle and pin applies and the hop's TLS facts are known; then
//! it hands the (encrypted) stream to lettre's SMTP client for EHLO, AUTH and the
//! transaction. lettre dot-stuffs and terminates the data with exactly CRLF.CRLF, so what
//! we relay is canonical whatever the client sent. Connections are reused per next hop.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use lettre::address::{Address, Envelope};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream};
use lettre::transport::smtp::extension::ClientId;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf};
use tokio::net::TcpStream;

use super::oauth::TokenSource;
use super::tls::{HopTls, TlsReport};
use crate::domain::{SmartHostCredentials, TlsPolicy};

/// How a next hop is signed in to.
#[derive(Debug, Clone)]
pub enum HopAuth {
    /// AUTH PLAIN or LOGIN with a stored password.
    Password(SmartHostCredentials),
    /// XOAUTH2 with a token from an OAuth2 token endpoint (Microsoft 365, Google).
    OAuth2 { mailbox: String, tokens: Arc<TokenSource> },
}

/// One next hop: where to connect, the name it goes by, and how to talk to it.
#[derive(Debug, Clone)]
pub struct Hop {
    /// The name the certificate must carry and SNI sends (the smart host or MX name).
    pub host: String,
    /// Where to connect: a vetted address (MX), or `None` to resolve `host` (smart hosts).
    pub address: Option<IpAddr>,
    pub port: u16,
    pub tls: HopTls,
    pub auth: Option<HopAuth>,
    /// Identifies the configuration this hop was made from: pooled connections are only
    /// reused by hops of the same connector and configuration generation.
    pub config_key: String,
}

impl Hop {
    fn pool_key(&self) -> String {
        format!("{}|{}|{:?}|{}", self.config_key, self.host, self.address, self.port)
    }

    /// `host:port` (and the address when it was resolved here), for replies and logs.
    pub fn describe(&self) -> String {
        match self.address {
            Some(ip) => format!("{}[{}]:{}", self.host, ip, self.port),
            None => format!("{}:{}", self.host, self.port),
        }
    }
}

/// How a hop was made, for tracking: TLS and AUTH.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HopFacts {
    pub tls: Option<TlsReport>,
    /// `PLAIN`, `LOGIN`, `XOAUTH2`.
    pub auth: Option<String>,
}

impl std::fmt::Display for HopFacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.tls {
            Some(tls) => write!(f, "{tls}")?,
            None => f.write_str("no TLS")?,
        }
        if let Some(auth) = &self.auth {
            write!(f, "; AUTH {auth}")?;
        }
        Ok(())
    }
}

/// A transaction the next hop accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The next hop's final reply.
    pub reply: String,
    pub facts: HopFacts,
}

/// How a send ended when it did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendFailure {
    /// The next hop that answered (or failed to), for a DSN's Remote-MTA.
    pub remote: Option<String>,
    /// A 5xx from the server: do not retry.
    pub permanent: bool,
    /// The server never answered the transaction (connect, TLS, timeout): another host
    /// of the same route may be tried.
    pub connection: bool,
    pub reply: String,
}

pub trait Transport: Send + Sync + std::fmt::Debug {
    /// Sends one transaction.
    fn send<'a>(
        &'a self,
        hop: &'a Hop,
        sender: Option<&'a str>,
        recipients: &'a [String],
        body: &'a [u8],
    ) -> BoxFuture<'a, Result<Sent, SendFailure>>;
}

/// Idle connections kept per hop, and for how long.
const IDLE_PER_HOP: usize = 32;
const IDLE_FOR: Duration = Duration::from_secs(30);
/// The longest SMTP reply line Postern reads before lettre takes over (RFC 5321
/// §4.5.3.1.5: 512 octets; some servers send longer EHLO lines).
const MAX_REPLY_LINE: usize = 4096;

/// A pooled connection and what it was opened with.
struct Pooled {
    conn: AsyncSmtpConnection,
    facts: HopFacts,
    since: Instant,
}

pub struct LettreTransport {
    hello: ClientId,
    hello_name: String,
    timeout: Duration,
    idle: Mutex<IdleConnections>,
}

/// Reusable connections per hop, and when stale ones were last swept out.
#[derive(Default)]
struct IdleConnections {
    by_hop: HashMap<String, Vec<Pooled>>,
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

/// Enhanced status codes (RFC 3463 §3.5, §3.8) for failures that are ours to describe:
/// the next hop gave no SMTP reply to record. Every recorded reply starts with a reply
/// code and an enhanced code, so tracking, the queue and DSNs read alike.
const NO_ANSWER: &str = "451 4.4.1"; // no answer from host
const BAD_CONNECTION: &str = "451 4.4.2"; // bad connection
const NO_TLS: &str = "451 4.7.4"; // security features not supported (RFC 5248 registry)
const AUTH_TROUBLE: &str = "451 4.7.0"; // security or policy status

/// A failure before or outside an SMTP reply: temporary, and another host of the route
/// may be tried.
fn unreachable(code: &str, why: String) -> SendFailure {
    SendFailure { remote: None, permanent: false, connection: true, reply: format!("{code} {why}") }
}

/// A lettre error as a reply: the next hop's own reply when it sent one (4xx and 5xx are
/// its words, kept), otherwise a connection failure in our words.
fn failure(e: &lettre::transport::smtp::Error) -> SendFailure {
    use std::error::Error as _;
    match e.status() {
        Some(code) => {
            let text = e.source().map(ToString::to_string).unwrap_or_default();
            SendFailure {
                remote: None,
                permanent: e.is_permanent(),
                connection: false,
                reply: format!("{code} {text}"),
            }
        }
        None if e.is_timeout() => unreachable(NO_ANSWER, format!("timed out: {e}")),
        None => unreachable(BAD_CONNECTION, e.to_string()),
    }
}

/// What a connection attempt should do about TLS after the greeting.
enum Opened {
    Ready(Box<AsyncSmtpConnection>, HopFacts),
    /// `opportunistic`: the handshake failed; RFC 7435 §3 lets the same host be tried once
    /// more in clear text.
    RetryInClear(String),
}

impl LettreTransport {
    pub fn new(hello_name: String, timeout: Duration) -> Self {
        Self {
            hello: ClientId::Domain(hello_name.clone()),
            hello_name,
            timeout,
            idle: Mutex::new(IdleConnections::default()),
        }
    }

    fn take_idle(&self, hop: &Hop) -> Option<(AsyncSmtpConnection, HopFacts)> {
        let mut idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let pool = idle.by_hop.get_mut(&hop.pool_key())?;
        while let Some(pooled) = pool.pop() {
            if pooled.since.elapsed() < IDLE_FOR && !pooled.conn.has_broken() {
                return Some((pooled.conn, pooled.facts));
            }
        }
        None
    }

    fn put_idle(&self, hop: &Hop, conn: AsyncSmtpConnection, facts: HopFacts) {
        let mut idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Now and then, close connections to hops that were not used again, so sockets
        // to thousands of MX hosts do not pile up.
        if idle.swept.is_none_or(|at| at.elapsed() > IDLE_FOR) {
            idle.by_hop.retain(|_, pool| {
                pool.retain(|p| p.since.elapsed() < IDLE_FOR);
                !pool.is_empty()
            });
            idle.swept = Some(Instant::now());
        }
        let pool = idle.by_hop.entry(hop.pool_key()).or_default();
        if pool.len() < IDLE_PER_HOP {
            pool.push(Pooled { conn, facts, since: Instant::now() });
        }
    }

    /// Opens a session to `hop` as its policy says, signed in if it has credentials.
    async fn connect(&self, hop: &Hop) -> Result<(AsyncSmtpConnection, HopFacts), SendFailure> {
        let (mut conn, mut facts) = match self.open(hop, hop.tls.policy).await? {
            Opened::Ready(conn, facts) => (*conn, facts),
            Opened::RetryInClear(why) => {
                tracing::info!(host = %hop.describe(), %why, "TLS handshake failed; trying the host again without TLS");
                match self.open(hop, TlsPolicy::None).await? {
                    Opened::Ready(conn, facts) => (*conn, facts),
                    Opened::RetryInClear(why) => return Err(unreachable(NO_TLS, why)),
                }
            }
        };
        if let Some(auth) = &hop.auth {
            // Invariant 13: credentials never cross a connection without TLS.
            if facts.tls.is_none() {
                return Err(unreachable(NO_TLS, "credentials are only sent over TLS".into()));
            }
            facts.auth = Some(self.sign_in(&mut conn, auth).await?);
        }
        Ok((conn, facts))
    }

    /// TCP (no Nagle), the greeting, then STARTTLS as `policy` says; lettre takes the
    /// (encrypted) stream from the EHLO on.
    async fn open(&self, hop: &Hop, policy: TlsPolicy) -> Result<Opened, SendFailure> {
        let stream = match hop.address {
            Some(ip) => TcpStream::connect(SocketAddr::new(ip, hop.port)).await,
            None => TcpStream::connect((hop.host.as_str(), hop.port)).await,
        }
        .map_err(|e| unreachable(NO_ANSWER, format!("connect: {e}")))?;
        stream.set_nodelay(true).map_err(|e| unreachable(BAD_CONNECTION, e.to_string()))?;
        let peer = stream.peer_addr().map_err(|e| unreachable(BAD_CONNECTION, e.to_string()))?;
        let mut stream = BufReader::new(stream);
        // A refusal at the greeting (554, 421) is this host's, not the message's: another
        // host of the route may take it (RFC 5321 §5.1).
        let greeting = read_reply(&mut stream).await?;
        if !greeting.starts_with('2') {
            return Err(SendFailure {
                remote: None,
                permanent: false,
                connection: true,
                reply: format!("{greeting} (greeting)"),
            });
        }
        if policy == TlsPolicy::None {
            let replayed = Replay::new(format!("{greeting}\r\n"), stream.into_inner(), peer);
            return self
                .hand_over(Box::new(replayed), HopFacts::default())
                .await
                .map(|(c, f)| Opened::Ready(Box::new(c), f));
        }
        stream.write_all(format!("EHLO {}\r\n", self.hello_name).as_bytes()).await.map_err(broken)?;
        let ehlo = read_reply(&mut stream).await?;
        let offers_starttls = ehlo.starts_with("250")
            && ehlo.lines().any(|l| l.get(4..).is_some_and(|k| k.trim().eq_ignore_ascii_case("STARTTLS")));
        if !offers_starttls {
            if policy == TlsPolicy::Opportunistic {
                // RFC 5321 §4.1.4: a second EHLO (lettre's) is allowed and starts afresh.
                let replayed = Replay::new(format!("{greeting}\r\n"), stream.into_inner(), peer);
                return self
                    .hand_over(Box::new(replayed), HopFacts::default())
                    .await
                    .map(|(c, f)| Opened::Ready(Box::new(c), f));
            }
            return Err(unreachable(
                NO_TLS,
                format!("TLS is required ({policy}) but the server does not offer STARTTLS"),
            ));
        }
        stream.write_all(b"STARTTLS\r\n").await.map_err(broken)?;
        let ready = read_reply(&mut stream).await?;
        if !ready.starts_with("220") {
            return match policy {
                TlsPolicy::Opportunistic => Ok(Opened::RetryInClear(format!("STARTTLS refused: {ready}"))),
                _ => Err(unreachable(NO_TLS, format!("STARTTLS refused: {ready}"))),
            };
        }
        // Whatever the server sent after its 220 is dropped with the buffer: it came
        // before the handshake and must not be read as protected (RFC 3207 §4.2).
        let tcp = stream.into_inner();
        let mut tls = hop.tls.clone();
        tls.policy = policy;
        match super::tls::handshake(tcp, &hop.host, &tls).await {
            Ok((encrypted, report)) => {
                let replayed = Replay::new("220 TLS established\r\n".to_string(), encrypted, peer);
                let facts = HopFacts { tls: Some(report), auth: None };
                self.hand_over(Box::new(replayed), facts).await.map(|(c, f)| Opened::Ready(Box::new(c), f))
            }
            Err(why) if policy == TlsPolicy::Opportunistic => Ok(Opened::RetryInClear(why)),
            Err(why) => Err(unreachable(NO_TLS, format!("TLS with {}: {why}", hop.host))),
        }
    }

    /// lettre reads the (replayed) greeting and says EHLO: from here on it speaks.
    async fn hand_over(
        &self,
        stream: Box<dyn AsyncTokioStream>,
        facts: HopFacts,
    ) -> Result<(AsyncSmtpConnection, HopFacts), SendFailure> {
        let conn = AsyncSmtpConnection::connect_with_transport(stream, &self.hello).await.map_err(|e| {
            let refused = failure(&e);
            SendFailure { remote: None, connection: true, permanent: false, reply: format!("{} (EHLO)", refused.reply) }
        })?;
        Ok((conn, facts))
    }

    /// AUTH with the hop's credentials; the mechanism used. A refused login is the
    /// connector's configuration, not the message's: transient (an admin fixes the
    /// password; mail waits instead of bouncing), and no other recipient is tried on its
    /// own with the same credentials.
    async fn sign_in(&self, conn: &mut AsyncSmtpConnection, auth: &HopAuth) -> Result<String, SendFailure> {
        let refused = |e: &lettre::transport::smtp::Error| SendFailure {
            remote: None,
            permanent: false,
            connection: true,
            reply: format!("{} (AUTH)", failure(e).reply),
        };
        match auth {
            HopAuth::Password(c) => {
                let mechanisms = [Mechanism::Plain, Mechanism::Login];
                let used = conn.server_info().get_auth_mechanism(&mechanisms).ok_or_else(|| {
                    unreachable(AUTH_TROUBLE, "the smart host offers neither AUTH PLAIN nor LOGIN".into())
                })?;
                conn.auth(&mechanisms, &Credentials::new(c.username.clone(), c.password.clone()))
                    .await
                    .map_err(|e| refused(&e))?;
                Ok(used.to_string())
            }
            HopAuth::OAuth2 { mailbox, tokens } => {
                if !conn.server_info().supports_auth_mechanism(Mechanism::Xoauth2) {
                    return Err(unreachable(AUTH_TROUBLE, "the smart host does not offer AUTH XOAUTH2".into()));
                }
                // A token failure is the connector's (one endpoint for every host): no
                // other host of the route would do better.
                let token = tokens
                    .token()
                    .await
                    .map_err(|why| SendFailure { connection: false, ..unreachable(AUTH_TROUBLE, why) })?;
                match conn.auth(&[Mechanism::Xoauth2], &Credentials::new(mailbox.clone(), token.clone())).await {
                    Ok(_) => Ok("XOAUTH2".into()),
                    Err(e) => {
                        // The token may have been revoked or expired early: the next
                        // connection fetches a new one (once; see `TokenSource`).
                        tokens.refused(&token);
                        Err(refused(&e))
                    }
                }
            }
        }
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

    async fn attempt(&self, hop: &Hop, envelope: &Envelope, body: &[u8]) -> Result<Sent, SendFailure> {
        // A pooled connection may have been closed by the server meanwhile: on a network
        // error with a reused one, try once more on a fresh connection.
        if let Some((mut conn, facts)) = self.take_idle(hop) {
            match self.transaction(&mut conn, envelope, body).await {
                Ok(reply) => {
                    self.put_idle(hop, conn, facts.clone());
                    return Ok(Sent { reply, facts });
                }
                Err(e) if e.is_permanent() || e.is_transient() => return Err(failure(&e)),
                Err(_) => {}
            }
        }
        let (mut conn, facts) = match self.connect(hop).await {
            // An OAuth2 token refused at AUTH: once more with a fresh token.
            Err(f) if matches!(hop.auth, Some(HopAuth::OAuth2 { .. })) && f.reply.ends_with("(AUTH)") => {
                self.connect(hop).await?
            }
            other => other?,
        };
        match self.transaction(&mut conn, envelope, body).await {
            Ok(reply) => {
                self.put_idle(hop, conn, facts.clone());
                Ok(Sent { reply, facts })
            }
            Err(e) => Err(failure(&e)),
        }
    }
}

impl Transport for LettreTransport {
    fn send<'a>(
        &'a self,
        hop: &'a Hop,
        sender: Option<&'a str>,
        recipients: &'a [String],
        body: &'a [u8],
    ) -> BoxFuture<'a, Result<Sent, SendFailure>> {
        Box::pin(async move {
            let envelope = envelope(sender, recipients)?;
            // lettre appends CRLF.CRLF itself; our stored body ends with CRLF already.
            let body = body.strip_suffix(b"\r\n").unwrap_or(body);
            tokio::time::timeout(self.timeout, self.attempt(hop, &envelope, body)).await.unwrap_or_else(|_| {
                Err(unreachable(NO_ANSWER, format!("no reply within {} s", self.timeout.as_secs())))
            })
        })
    }
}

fn broken(e: std::io::Error) -> SendFailure {
    unreachable(BAD_CONNECTION, e.to_string())
}

/// Reads one SMTP reply (RFC 5321 §4.2.1: `ddd-` lines, then `ddd `), joined by CRLF.
async fn read_reply<S: AsyncRead + Unpin>(stream: &mut BufReader<S>) -> Result<String, SendFailure> {
    let mut lines: Vec<String> = Vec::new();
    loop {
        let mut line = Vec::new();
        let read = (&mut *stream).take(MAX_REPLY_LINE as u64).read_until(b'\n', &mut line).await.map_err(broken)?;
        if read == 0 {
            return Err(unreachable(BAD_CONNECTION, "the server closed the connection".into()));
        }
        let text = String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_string();
        let code_ok = text.len() >= 3 && text.as_bytes()[..3].iter().all(u8::is_ascii_digit);
        if !code_ok || !line.ends_with(b"\n") {
            return Err(unreachable(
                BAD_CONNECTION,
                format!("not an SMTP reply: {:?}", text.chars().take(80).collect::<String>()),
            ));
        }
        let last = text.as_bytes().get(3) != Some(&b'-');
        lines.push(text);
        if last {
            return Ok(lines.join("\r\n"));
        }
    }
}

/// A stream that first yields `prefix` (a reply Postern already read, for lettre to read
/// again as the greeting), then what `inner` yields.
struct Replay<S> {
    prefix: Vec<u8>,
    at: usize,
    inner: S,
    peer: SocketAddr,
}

impl<S> Replay<S> {
    fn new(prefix: String, inner: S, peer: SocketAddr) -> Self {
        Self { prefix: prefix.into_bytes(), at: 0, inner, peer }
    }
}

impl<S> std::fmt::Debug for Replay<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replay").field("peer", &self.peer).finish_non_exhaustive()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Replay<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if self.at < self.prefix.len() {
            let n = (self.prefix.len() - self.at).min(buf.remaining());
            let from = self.at;
            buf.put_slice(&self.prefix[from..from + n]);
            self.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replay<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + Sync> AsyncTokioStream for Replay<S> {
    fn peer_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.peer)
    }
}

fn envelope(sender: Option<&str>, recipients: &[String]) -> Result<Envelope, SendFailure> {
    let unsupported = |a: &str| SendFailure {
        remote: None,
        permanent: true,
        connection: false,
        reply: format!("554 5.1.3 Address <{a}> cannot be relayed by the outbound client"),
    };
    let from = sender.map(|s| Address::from_str(s).map_err(|_| unsupported(s))).transpose()?;
    let to =
        recipients.iter().map(|r| Address::from_str(r).map_err(|_| unsupported(r))).collect::<Result<Vec<_>, _>>()?;
    Envelope::new(from, to).map_err(|e| SendFailure {
        remote: None,
        permanent: true,
        connection: false,
        reply: format!("554 5.5.0 {e}"),
    })
}
