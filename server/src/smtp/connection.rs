//! One SMTP connection: the only code that reads from or writes to a client socket.
//! It frames lines, feeds the session and the DATA reader, and commits accepted
//! messages to the queue before answering 250.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use uuid::Uuid;

use super::command::{Command, MAX_COMMAND_LINE};
use super::data::{DataReader, Progress};
use super::engine::EngineContext;
use super::headers::{self, TraceInfo};
use super::reply::{self, Reply};
use super::sasl::{self, Step};
use super::session::{Action, Envelope, Rejection, Session, State};
use super::stream::Stream;
use crate::auth::AuthFailure;
use crate::domain::{AuthMechanism, ProtocolLogging, TlsMode};
use crate::policy::AuthState;
use crate::store::{NewMessage, NewTrackingEvent, SpooledBody, Store};
use crate::tracking::protocol::{Event, REDACTED, SessionLog};

/// RFC 4954 §4: AUTH command lines and SASL responses may be up to 12288 octets; every
/// other command line stays within RFC 5321's 512.
const MAX_AUTH_LINE: usize = 12_288;
/// The longest a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

const READ_CHUNK: usize = 16 * 1024;

/// Why the connection ends early.
#[derive(Debug)]
enum Closed {
    /// The client went away or the socket failed.
    Io,
    /// The client was told why (timeout); nothing more to say.
    Told,
    /// The node is shutting down and the session is between transactions.
    Shutdown,
}

impl From<io::Error> for Closed {
    fn from(_: io::Error) -> Self {
        Closed::Io
    }
}

/// A framed client stream with RFC 2920 pipelining: replies are buffered and flushed
/// only when every complete command already received has been answered.
struct Connection<S> {
    stream: S,
    input: Vec<u8>,
    output: Vec<u8>,
    idle_timeout: Duration,
    /// Cancelled when the node shuts down.
    shutdown: tokio_util::sync::CancellationToken,
    /// Whether a shutdown may end the session now (no transaction in progress).
    interruptible: bool,
    /// The session's protocol log, on connectors with verbose logging.
    log: Option<SessionLog>,
}

/// A command line, or why there is none.
enum Line {
    Complete(Vec<u8>),
    TooLong,
    BareLineEnding,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    fn new(stream: S, idle_timeout: Duration, shutdown: tokio_util::sync::CancellationToken) -> Self {
        Self {
            stream,
            input: Vec::with_capacity(READ_CHUNK),
            output: Vec::with_capacity(1024),
            idle_timeout,
            shutdown,
            interruptible: false,
            log: None,
        }
    }

    fn queue_reply(&mut self, reply: &Reply) {
        let start = self.output.len();
        reply.write_to(&mut self.output);
        if let Some(log) = &mut self.log {
            let written = String::from_utf8_lossy(&self.output[start..]);
            for line in written.split_terminator("\r\n") {
                log.line(Event::Sent, line, "");
            }
        }
    }

    /// Writes a line to the protocol log, if the session keeps one.
    fn note(&mut self, event: Event, data: &str) {
        if let Some(log) = &mut self.log {
            log.line(event, data, "");
        }
    }

    /// Writes pending replies. A client that stops reading is cut off after the idle
    /// timeout, so it cannot hold a connection slot forever.
    async fn flush(&mut self) -> io::Result<()> {
        let write = async {
            self.stream.write_all(&self.output).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(self.idle_timeout, write).await {
            Ok(result) => {
                self.output.clear();
                result
            }
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "client does not read its replies")),
        }
    }

    /// Reads more input, flushing pending replies first. Answers 451 4.7.0 and ends the
    /// connection when the client stays silent past the connector's timeout.
    async fn read_more(&mut self) -> Result<(), Closed> {
        self.flush().await?;
        let mut chunk = [0u8; READ_CHUNK];
        let read = tokio::time::timeout(self.idle_timeout, self.stream.read(&mut chunk));
        let read = tokio::select! {
            read = read => read,
            () = self.shutdown.cancelled(), if self.interruptible => return Err(Closed::Shutdown),
        };
        match read {
            Ok(Ok(0)) => Err(Closed::Io),
            Ok(Ok(n)) => {
                self.input.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Ok(Err(e)) => Err(e.into()),
            Err(_) => {
                self.queue_reply(&reply::TIMEOUT.into());
                let _ = self.flush().await;
                Err(Closed::Told)
            }
        }
    }

    /// The next command line, reading as needed. RFC 5321 §2.3.8: only CRLF ends a
    /// line, so `RSET\nMAIL ...\r\n` is one (refused) line, never two commands. An
    /// overlong line is skipped up to its end and reported once.
    async fn next_line(&mut self, max: usize) -> Result<Line, Closed> {
        let mut too_long = false;
        loop {
            if let Some(end) = self.input.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.input.drain(..end + 2).collect();
                let content = &line[..end];
                if too_long || line.len() > max {
                    return Ok(Line::TooLong);
                }
                if content.contains(&b'\n') || content.contains(&b'\r') {
                    return Ok(Line::BareLineEnding);
                }
                return Ok(Line::Complete(content.to_vec()));
            }
            if self.input.len() > max {
                too_long = true;
                // Keep a final CR: it may be the first half of the CRLF we wait for.
                let keep_cr = self.input.last() == Some(&b'\r');
                self.input.clear();
                if keep_cr {
                    self.input.push(b'\r');
                }
            }
            self.read_more().await?;
        }
    }

    /// Reads a message body up to its terminator, leaving pipelined input after it. A
    /// large message is spooled to `store` as it arrives (see `Spool`): memory per
    /// session stays at its head and about a chunk, whatever the message's size.
    async fn read_data(&mut self, mut reader: DataReader, store: &Store) -> Result<(DataReader, Spool), Closed> {
        let mut spool = Spool::default();
        loop {
            match reader.feed(&self.input) {
                Progress::Done { consumed } => {
                    self.input.drain(..consumed);
                    return Ok((reader, spool));
                }
                Progress::NeedMore => self.input.clear(),
            }
            spool.spill(&mut reader, store).await;
            self.read_more().await?;
        }
    }

    /// True when the client has already sent something (before our greeting).
    async fn has_early_input(&mut self, wait: Duration) -> bool {
        let mut probe = [0u8; 512];
        let read = if wait.is_zero() {
            // No waiting: only what already sits in the socket buffer counts.
            futures::FutureExt::now_or_never(self.stream.read(&mut probe))
        } else {
            tokio::time::timeout(wait, self.stream.read(&mut probe)).await.ok()
        };
        match read {
            Some(Ok(n)) if n > 0 => {
                self.input.extend_from_slice(&probe[..n]);
                true
            }
            _ => false,
        }
    }
}

/// Held in memory before a message is spooled: a chunk's worth (small: twenty
/// scanners sending at once hold twenty of them).
const SPOOL_CHUNK: usize = 256 * 1024;

/// A message's middle, written to `spool_chunks` while it arrives. The head (up to the
/// end of the header section, which every check and the stamp read) stays in memory;
/// so does whatever arrived after the last chunk. The message is queued with the chunks
/// assembled in between (`Store::enqueue_batch`), or the chunks are dropped.
#[derive(Debug, Default)]
struct Spool {
    id: Option<Uuid>,
    /// The head's length: where the chunks go.
    head: usize,
    chunks: i32,
    bytes: usize,
    /// A chunk could not be stored: the message is answered 451 at its end.
    failed: bool,
}

impl Spool {
    /// Spools what is held beyond the head once it is a chunk's worth.
    async fn spill(&mut self, reader: &mut DataReader, store: &Store) {
        if self.failed || reader.held().len() < self.head + SPOOL_CHUNK {
            return;
        }
        if self.id.is_none() {
            // The head must hold the whole header section, so that nothing a check or
            // the stamp reads is in a chunk.
            match super::headers::HeaderSection::parse(reader.held()) {
                Ok(section) => match section.end() {
                    Some(end) => self.head = end,
                    None if reader.held().len() > super::data::MAX_HEADER_SECTION => {
                        reader.header_section_too_big();
                        return;
                    }
                    None => return,
                },
                // Refused at the end anyway; the head keeps the line that says why.
                Err(_) => self.head = reader.held().len(),
            }
            self.id = Some(Uuid::now_v7());
        }
        let chunk = reader.spill_after(self.head);
        let Some(id) = self.id.filter(|_| !chunk.is_empty()) else { return };
        match store.spool_chunk(id, self.chunks, &chunk).await {
            Ok(()) => {
                self.chunks += 1;
                self.bytes += chunk.len();
            }
            Err(e) => {
                tracing::warn!(error = %e, "spooling a large message failed; it will be answered 451");
                self.failed = true;
            }
        }
    }

    fn spooled(&self) -> Option<super::data::Spooled> {
        self.id.map(|id| super::data::Spooled { id, head: self.head, bytes: self.bytes })
    }

    /// The chunks of a message that is not queued after all.
    async fn discard(&self, store: &Store) {
        if let Some(id) = self.id {
            let _ = store.drop_spool(id).await;
        }
    }
}

/// Counts a session in `postern_smtp_sessions` for as long as it lives, however it ends.
struct OpenSession;

impl OpenSession {
    fn count() -> Self {
        metrics::gauge!("postern_smtp_sessions").increment(1.0);
        Self
    }
}

impl Drop for OpenSession {
    fn drop(&mut self) {
        metrics::gauge!("postern_smtp_sessions").decrement(1.0);
    }
}

/// Serves one accepted connection to its end.
pub async fn serve(stream: Stream, mut session: Session, ctx: Arc<EngineContext>) {
    let idle = Duration::from_secs(u64::from(session.info.connector.limits.connection_timeout_secs));
    let mut conn = Connection::new(stream, idle, ctx.shutdown.clone());
    if session.info.connector.protocol_logging == ProtocolLogging::Verbose {
        let info = &session.info;
        let mut log = SessionLog::new(ctx.protocol_log.clone(), info.id, &info.connector.name, info.local, info.peer);
        log.line(Event::Connect, "", &format!("config generation {}", info.snapshot.generation));
        conn.log = Some(log);
    }
    let connector = session.info.connector.name.clone();
    metrics::counter!("postern_smtp_sessions_total", "connector" => connector).increment(1);
    let _open = OpenSession::count();
    serve_connection(&mut conn, &mut session, &ctx).await;
    conn.note(Event::Disconnect, "");
}

async fn serve_connection(conn: &mut Connection<Stream>, session: &mut Session, ctx: &EngineContext) {
    if session.info.connector.tls_mode == TlsMode::Implicit && !implicit_tls(conn, session, ctx).await {
        return;
    }
    if conn.has_early_input(ctx.settings.pregreet_wait).await {
        // RFC 5321 §4.3.1: the client must wait for the greeting. Spambots and smuggling
        // probes don't; refuse them before they say anything we would act on.
        record_rejection(ctx, session, Rejection::refused(Reply::from(reply::PREGREETING).summary()));
        conn.queue_reply(&reply::PREGREETING.into());
        let _ = conn.flush().await;
        return;
    }
    conn.queue_reply(&session.greeting());
    if let Err(Closed::Shutdown) = command_loop(conn, session, ctx).await {
        // Between transactions: tell the client to come back later (RFC 5321 §3.8).
        conn.queue_reply(&reply::SHUTTING_DOWN.into());
    }
    let _ = conn.flush().await;
    let _ = conn.stream.shutdown().await;
}

/// Implicit TLS (RFC 8314 §3.3): the handshake comes before the greeting. False when
/// there is no TLS configuration or the handshake fails; the connection is then dropped.
async fn implicit_tls(conn: &mut Connection<Stream>, session: &mut Session, ctx: &EngineContext) -> bool {
    let Some(tls) = session.info.snapshot.tls_for(&session.info.connector) else {
        record_rejection(ctx, session, Rejection::refused("TLS is not available on this connector".into()));
        return false;
    };
    match conn.stream.upgrade(Arc::clone(&tls.config), HANDSHAKE_TIMEOUT.min(conn.idle_timeout)).await {
        Ok(info) => {
            conn.note(Event::Information, &format!("TLS negotiated: {info}"));
            session.tls_established(info);
            true
        }
        Err(e) => {
            tracing::info!(error = %e, "TLS handshake failed");
            false
        }
    }
}

async fn command_loop(conn: &mut Connection<Stream>, session: &mut Session, ctx: &EngineContext) -> Result<(), Closed> {
    loop {
        // A shutdown ends the session only between transactions; one in progress may
        // finish (bounded by the idle timeout and the shutdown grace period).
        conn.interruptible = matches!(session.state(), State::ExpectHelo | State::ExpectMail);
        let line = conn.next_line(MAX_AUTH_LINE).await?;
        let action = match line {
            Line::Complete(bytes) if bytes.len() + 2 > MAX_COMMAND_LINE && !is_auth_command(&bytes) => {
                Action::Reply(reply::LINE_TOO_LONG.into())
            }
            Line::Complete(bytes) => {
                if let Some(log) = &mut conn.log {
                    log.command(&bytes);
                }
                let command = Command::parse(&bytes);
                if matches!(command, Ok(Command::Mail(_)))
                    && let Some(id) = session.account().map(|a| a.id)
                {
                    session.refresh_account(ctx.config.load().account_by_id(id));
                }
                if matches!(command, Ok(Command::Mail(_))) && ctx.pressure.refusing() {
                    // Refused before anything is accepted; the session stays, and the
                    // client's next MAIL is checked again.
                    let refused = Reply::from(reply::INSUFFICIENT_RESOURCES);
                    record_rejection(ctx, session, Rejection::throttled(refused.summary()));
                    metrics::counter!("postern_back_pressure_refusals_total").increment(1);
                    conn.queue_reply(&refused);
                    continue;
                }
                if matches!(command, Ok(Command::Mail(_))) && submission_limit_reached(session, ctx) {
                    let refused = Reply::from(reply::TOO_MANY_MESSAGES);
                    record_rejection(ctx, session, Rejection::throttled(refused.summary()));
                    conn.queue_reply(&refused);
                    return Ok(());
                }
                session.handle(command)
            }
            Line::TooLong => Action::Reply(reply::LINE_TOO_LONG.into()),
            Line::BareLineEnding => Action::Reply(reply::LINE_TOO_LONG.with_text("Line must end with CRLF")),
        };
        let action = match action {
            Action::Authenticate { mechanism, initial_response } => {
                authenticate(conn, session, ctx, mechanism, initial_response).await?
            }
            other => other,
        };
        for rejection in session.take_rejections() {
            record_rejection(ctx, session, rejection);
        }
        match action {
            Action::Reply(r) => conn.queue_reply(&r),
            Action::Close(r) => {
                conn.queue_reply(&r);
                return Ok(());
            }
            Action::StartTls => start_tls(conn, session).await?,
            // Run above; the session never asks for it twice.
            Action::Authenticate { .. } => conn.queue_reply(&reply::BAD_SEQUENCE.into()),
            Action::ReceiveData { max_size } => {
                conn.queue_reply(&reply::START_DATA.into());
                let (reader, spool) = conn.read_data(DataReader::new(max_size), &ctx.store).await?;
                conn.note(Event::Information, &format!("message data received ({} bytes kept)", reader.kept()));
                let message = reader.finish().map(|m| super::data::Message { spooled: spool.spooled(), ..m });
                let reply = match session.data_received(message) {
                    Ok(_) if spool.failed => reply::STORE_UNAVAILABLE.into(),
                    Ok(envelope) => commit(session, envelope, ctx).await,
                    Err(refused) => {
                        for rejection in session.take_rejections() {
                            record_rejection(ctx, session, rejection);
                        }
                        refused
                    }
                };
                // Queued, the chunks went with the message; otherwise they go now.
                if !reply.is_positive() {
                    spool.discard(&ctx.store).await;
                }
                conn.queue_reply(&reply);
            }
        }
    }
}

fn is_auth_command(line: &[u8]) -> bool {
    line.get(..5).is_some_and(|verb| verb.eq_ignore_ascii_case(b"AUTH "))
}

/// The connector's per-source and the account's own submission limits.
fn submission_limit_reached(session: &Session, ctx: &EngineContext) -> bool {
    let source = session.info.peer.ip().to_canonical();
    ctx.rates.exceeded(&session.info.connector, source) || session.account().is_some_and(|a| ctx.accounts.exceeded(a))
}

/// STARTTLS accepted: answer 220, then hand the socket to TLS. Invariant 3 (the
/// CVE-2011-0411 class): whatever the client pipelined after STARTTLS arrived in clear
/// text, possibly injected by a man in the middle; it is discarded, never executed
/// inside the encrypted session. A failed handshake ends the connection.
async fn start_tls(conn: &mut Connection<Stream>, session: &mut Session) -> Result<(), Closed> {
    let Some(tls) = session.info.snapshot.tls_for(&session.info.connector) else {
        conn.queue_reply(&reply::TLS_UNAVAILABLE.into());
        return Ok(());
    };
    conn.queue_reply(&reply::READY_FOR_TLS.into());
    conn.flush().await?;
    if !conn.input.is_empty() {
        tracing::info!(bytes = conn.input.len(), "discarded plaintext pipelined after STARTTLS");
        let discarded = format!("discarded {} bytes sent in clear text after STARTTLS", conn.input.len());
        conn.note(Event::Information, &discarded);
        conn.input.clear();
    }
    match conn.stream.upgrade(Arc::clone(&tls.config), HANDSHAKE_TIMEOUT.min(conn.idle_timeout)).await {
        Ok(info) => {
            conn.note(Event::Information, &format!("TLS negotiated: {info}"));
            session.tls_established(info);
            Ok(())
        }
        Err(e) => {
            tracing::info!(error = %e, "TLS handshake failed");
            Err(Closed::Io)
        }
    }
}

/// Runs the SASL exchange and checks the credentials against the live snapshot's
/// accounts (the newest one, not the session's: a password changed or an account
/// disabled while a client is connected counts at once).
async fn authenticate(
    conn: &mut Connection<Stream>,
    session: &mut Session,
    ctx: &EngineContext,
    mechanism: AuthMechanism,
    initial_response: Option<String>,
) -> Result<Action, Closed> {
    let (mut exchange, mut step) = sasl::Exchange::start(mechanism.into(), initial_response.as_deref());
    loop {
        step = match step {
            Step::Challenge(challenge) => {
                conn.queue_reply(&Reply::new(334, None, challenge));
                let line = conn.next_line(MAX_AUTH_LINE).await?;
                conn.note(Event::Received, REDACTED);
                match line {
                    Line::Complete(bytes) => match std::str::from_utf8(&bytes) {
                        Ok(text) => exchange.respond(text),
                        Err(_) => Step::Malformed,
                    },
                    Line::TooLong | Line::BareLineEnding => Step::Malformed,
                }
            }
            Step::Done(credentials) => {
                let snapshot = ctx.config.load_full();
                let ip = session.info.peer.ip().to_canonical();
                let outcome = ctx
                    .authenticator
                    .authenticate(&snapshot, &credentials.login, &credentials.password, ip)
                    .await
                    .and_then(|account| match &credentials.authzid {
                        // PLAIN's authorization identity may name the same account
                        // another way (its address for its name), never another account.
                        Some(authzid) if !account.is_login(authzid) => Err(AuthFailure::AuthzidMismatch),
                        _ => Ok(account),
                    });
                if outcome.is_err() {
                    let connector = session.info.connector.name.clone();
                    metrics::counter!("postern_auth_failures_total", "connector" => connector).increment(1);
                }
                if let Ok(account) = &outcome
                    && ctx.accounts.due_for_touch(account.id)
                {
                    let (store, id) = (ctx.store.clone(), account.id);
                    tokio::spawn(async move { store.touch_service_account(id).await });
                }
                return Ok(session.authenticated(mechanism, &credentials.login, outcome));
            }
            Step::Cancelled => return Ok(session.authentication_aborted(reply::AUTH_CANCELLED.into())),
            Step::Malformed => return Ok(session.authentication_aborted(reply::AUTH_BAD_ENCODING.into())),
        }
    }
}

/// Commits the message to the queue and only then answers 250 (invariant 1). A store
/// failure answers 451 4.3.0 with nothing half-written: the insert is one transaction.
async fn commit(session: &Session, envelope: Envelope, ctx: &EngineContext) -> Reply {
    let queue_id = Uuid::now_v7();
    let queue_id_text = queue_id.simple().to_string();
    let info = &session.info;
    let connector = &info.connector;
    let facts = headers::HeaderFacts::new(&envelope.headers);
    let now = OffsetDateTime::now_utc();
    let recipients: Vec<String> = envelope.recipients.iter().map(ToString::to_string).collect();
    let tls = session.tls().map(ToString::to_string);
    let account = session.account().map(|a| a.name.clone());
    let single = (recipients.len() == 1).then(|| recipients[0].as_str());
    let received = headers::received_header(&TraceInfo {
        helo: session.helo().unwrap_or("unknown"),
        client_ip: info.peer.ip(),
        fqdn: &connector.fqdn,
        protocol: session.protocol(),
        queue_id: &queue_id_text,
        connector: &connector.name,
        tls: tls.as_deref(),
        authenticated: account.is_some(),
        single_recipient: single,
        at: now,
    });
    let generated_id = format!("<{queue_id_text}@{}>", connector.fqdn);
    let added_id = facts.message_id.is_none().then_some(generated_id.as_str());
    // A spooled message is stamped on its head; the chunks and the tail follow it.
    let split = envelope.message.spooled.map_or(envelope.message.body.len(), |s| s.head);
    let (head, tail) = envelope.message.body.split_at(split.min(envelope.message.body.len()));
    let mut message = NewMessage {
        id: queue_id,
        sender: envelope.sender.as_ref().map(ToString::to_string),
        recipients,
        body: headers::stamp(head, &envelope.headers, &received, added_id),
        message_id: facts.message_id.clone().or_else(|| added_id.map(str::to_string)),
        subject: facts.subject.clone().filter(|_| ctx.settings.record_subjects),
        expires_at: now + ctx.settings.message_expiry,
        receive_connector: connector.name.clone(),
        client_ip: Some(info.peer.ip().to_canonical()),
        client_helo: session.helo().map(str::to_string),
        auth_as: auth_as(session.auth()),
        account: account.clone(),
        session_id: Some(info.id),
        config_generation: Some(info.snapshot.generation),
        dsn_for: None,
        spooled: envelope.message.spooled.map(|s| SpooledBody { spool: s.id, bytes: s.bytes, tail: tail.to_vec() }),
        tracking: Vec::new(),
    };
    message.tracking.push(NewTrackingEvent {
        at: Some(now),
        event_id: "RECEIVE",
        source: "SMTP",
        connector: Some(connector.name.clone()),
        client_ip: Some(info.peer.ip().to_canonical()),
        client_hostname: session.helo().map(str::to_string),
        server_ip: Some(info.local.ip().to_canonical()),
        server_hostname: Some(ctx.settings.node_hostname.clone()),
        sender: Some(message.sender.clone().unwrap_or_default()),
        header_from: facts.from.clone(),
        recipients: message.recipients.clone(),
        message_id: message.message_id.clone(),
        queue_id: Some(queue_id),
        subject: message.subject.clone(),
        size: Some(message.size() as i64),
        auth_as: Some(message.auth_as),
        account,
        auth_mechanism: session.mechanism().map(AuthMechanism::as_str),
        tls,
        config_generation: Some(info.snapshot.generation),
        session_id: Some(info.id),
        ..NewTrackingEvent::default()
    });
    // The RECEIVE event commits with the message (or neither does).
    if let Err(e) = ctx.committer.enqueue(message).await {
        tracing::error!(session = %info.id, error = %e, "enqueue failed; answering 451");
        return reply::STORE_UNAVAILABLE.into();
    }
    ctx.queue_wakeup.notify_one();
    ctx.rates.count(connector, info.peer.ip().to_canonical());
    if let Some(a) = session.account() {
        ctx.accounts.count(a);
    }
    reply::queued(&queue_id_text)
}

fn auth_as(auth: AuthState) -> &'static str {
    match auth {
        AuthState::Anonymous => "anonymous",
        AuthState::Authenticated => "authenticated",
    }
}

/// A REJECT or THROTTLE tracking event (REJECT is a Postern extension: Exchange keeps
/// these only in its protocol log, but "why didn't my printer's mail arrive" needs them).
pub fn record_rejection(ctx: &EngineContext, session: &Session, rejection: Rejection) {
    let Rejection { event_id, sender, recipient, reply } = rejection;
    let info = &session.info;
    ctx.tracker.record(NewTrackingEvent {
        event_id,
        source: "SMTP",
        connector: Some(info.connector.name.clone()),
        client_ip: Some(info.peer.ip().to_canonical()),
        client_hostname: session.helo().map(str::to_string),
        server_ip: Some(info.local.ip().to_canonical()),
        server_hostname: Some(ctx.settings.node_hostname.clone()),
        sender,
        recipient_status: recipient.iter().map(|_| reply.clone()).collect(),
        recipients: recipient.into_iter().collect(),
        auth_as: Some(auth_as(session.auth())),
        account: session.account().map(|a| a.name.clone()),
        auth_mechanism: session.mechanism().map(AuthMechanism::as_str),
        tls: session.tls().map(ToString::to_string),
        config_generation: Some(info.snapshot.generation),
        session_id: Some(info.id),
        detail: Some(reply),
        ..NewTrackingEvent::default()
    });
}

/// Greets a client no connector admits with `denied`, answers its next command (221 for
/// QUIT, 503 for anything else) and closes.
pub async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(stream: S, denied: Reply, fqdn: &str) {
    // A short leash: these clients are not ours, and they must not tie up resources.
    let mut conn = Connection::new(stream, Duration::from_secs(5), tokio_util::sync::CancellationToken::new());
    conn.queue_reply(&denied);
    let answer = match conn.next_line(MAX_COMMAND_LINE).await {
        Ok(Line::Complete(line)) if matches!(Command::parse(&line), Ok(Command::Quit)) => reply::closing(fqdn),
        Ok(_) => reply::BAD_SEQUENCE.into(),
        Err(_) => return,
    };
    conn.queue_reply(&answer);
    let _ = conn.flush().await;
    let _ = conn.stream.shutdown().await;
}
