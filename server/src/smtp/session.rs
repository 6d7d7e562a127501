//! The SMTP session as a state machine, sans-IO: commands in, actions out. The state is
//! named for what it expects next; a command out of order falls out of the match as a
//! 503. Every decision about who may do what is asked of the policy snapshot.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;

use uuid::Uuid;

use super::command::{BodyType, Command, MailFrom, ParseError, RcptTo};
use super::data::{DataError, Message};
use super::headers::{self, HeaderSection};
use super::reply::{self, Reply};
use crate::auth::AuthFailure;
use crate::domain::{
    AddressError, AuthMechanism, EmailAddress, PermissionGroup, ReceiveConnector, ServiceAccount, TlsMode,
};
use crate::policy::{AuthState, Snapshot};

/// Errors tolerated before the session is closed with 421 (Postfix's smtpd_hard_error_limit).
const MAX_ERRORS: u32 = 20;
/// Failed AUTH attempts on one connection before it is closed with 421.
const MAX_AUTH_FAILURES: u32 = 3;

/// What the session expects next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    ExpectHelo,
    ExpectMail,
    ExpectRcpt,
    ExpectRcptOrData,
}

/// The facts of one connection, fixed when it was accepted.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub id: Uuid,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub snapshot: Arc<Snapshot>,
    pub connector: Arc<ReceiveConnector>,
    /// A message with more `Received:` fields than this has looped (RFC 5321 §6.3).
    pub max_hops: usize,
}

/// The hop limit where a node's settings do not say otherwise (Postfix's
/// `hopcount_limit` is 50 as well).
pub const DEFAULT_MAX_HOPS: usize = 50;

/// The negotiated TLS parameters, for Received headers and tracking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    pub version: String,
    pub cipher: String,
}

impl std::fmt::Display for TlsInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.version, self.cipher)
    }
}

/// What the connection must do after a command.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Reply(Reply),
    /// Send 220, discard anything the client already sent, and hand the socket to TLS.
    StartTls,
    /// Run the SASL exchange of this mechanism and report with `authenticated`.
    Authenticate {
        mechanism: AuthMechanism,
        initial_response: Option<String>,
    },
    /// Send 354 and read the message with this size limit.
    ReceiveData {
        max_size: usize,
    },
    /// Send the reply and close the connection.
    Close(Reply),
}

/// A refusal the session made, for the tracking log: `REJECT` (a Postern extension), or
/// `THROTTLE` when a rate or a lockout refused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub event_id: &'static str,
    pub sender: Option<String>,
    pub recipient: Option<String>,
    pub reply: String,
}

impl Rejection {
    /// A refusal outside a transaction.
    pub fn refused(reply: String) -> Self {
        Self { event_id: "REJECT", sender: None, recipient: None, reply }
    }

    /// A refusal by a rate limit or lockout.
    pub fn throttled(reply: String) -> Self {
        Self { event_id: "THROTTLE", ..Self::refused(reply) }
    }
}

/// A complete transaction, ready to be queued.
#[derive(Debug)]
pub struct Envelope {
    pub sender: Option<EmailAddress>,
    pub recipients: Vec<EmailAddress>,
    pub message: Message,
    /// The message's header section, read once (for the checks, tracking and stamping).
    pub headers: HeaderSection,
}

#[derive(Debug)]
pub struct Session {
    pub info: SessionInfo,
    state: State,
    helo: Option<String>,
    esmtp: bool,
    tls: Option<TlsInfo>,
    account: Option<Arc<ServiceAccount>>,
    mechanism: Option<AuthMechanism>,
    auth_failures: u32,
    mail: Option<MailFrom>,
    recipients: Vec<EmailAddress>,
    errors: u32,
    rejections: Vec<Rejection>,
}

impl Session {
    pub fn new(info: SessionInfo) -> Self {
        Self {
            info,
            state: State::ExpectHelo,
            helo: None,
            esmtp: false,
            tls: None,
            account: None,
            mechanism: None,
            auth_failures: 0,
            mail: None,
            recipients: Vec::new(),
            errors: 0,
            rejections: Vec::new(),
        }
    }

    pub fn greeting(&self) -> Reply {
        reply::greeting(&self.info.connector.fqdn, self.info.connector.banner.as_deref())
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn helo(&self) -> Option<&str> {
        self.helo.as_deref()
    }

    pub fn auth(&self) -> AuthState {
        if self.account.is_some() { AuthState::Authenticated } else { AuthState::Anonymous }
    }

    pub fn account(&self) -> Option<&Arc<ServiceAccount>> {
        self.account.as_ref()
    }

    pub fn mechanism(&self) -> Option<AuthMechanism> {
        self.mechanism
    }

    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// The TLS handshake completed (after STARTTLS, or at once for implicit TLS). RFC 3207
    /// §4.2: the session starts over; the client must say EHLO again, and nothing it said
    /// before counts (the connection has already discarded its buffered input).
    pub fn tls_established(&mut self, info: TlsInfo) {
        self.tls = Some(info);
        self.state = State::ExpectHelo;
        self.helo = None;
        self.esmtp = false;
        self.account = None;
        self.mechanism = None;
        self.mail = None;
        self.recipients.clear();
    }

    /// The outcome of an AUTH exchange. `login` is what the client gave, for the log.
    pub fn authenticated(
        &mut self,
        mechanism: AuthMechanism,
        login: &str,
        outcome: Result<Arc<ServiceAccount>, AuthFailure>,
    ) -> Action {
        match outcome {
            Ok(account) => {
                self.account = Some(account);
                self.mechanism = Some(mechanism);
                reply(reply::AUTH_OK)
            }
            Err(failure) => {
                self.auth_failures += 1;
                let refused: Reply =
                    if failure == AuthFailure::Throttled { reply::AUTH_THROTTLED } else { reply::AUTH_INVALID }.into();
                // The reason is for the admin only; the client learns nothing about the account.
                let detail = format!("{} (AUTH {mechanism} as {login:?}: {})", refused.summary(), failure.describe());
                self.rejections.push(if failure == AuthFailure::Throttled {
                    Rejection::throttled(detail)
                } else {
                    Rejection::refused(detail)
                });
                if self.auth_failures >= MAX_AUTH_FAILURES {
                    return Action::Close(reply::TOO_MANY_ERRORS.into());
                }
                Action::Reply(refused)
            }
        }
    }

    /// Replaces the signed-in account with its state in the live configuration (`None`
    /// when it was removed, disabled or given a new password since): a change an admin
    /// makes applies to open sessions from their next transaction on.
    pub fn refresh_account(&mut self, live: Option<Arc<ServiceAccount>>) {
        let Some(current) = &self.account else { return };
        let still_valid = live.filter(|a| a.enabled && a.password_hash == current.password_hash);
        if still_valid.is_none() {
            self.mechanism = None;
        }
        self.account = still_valid;
    }

    /// An AUTH exchange that ended without credentials (cancelled or malformed).
    pub fn authentication_aborted(&mut self, refused: Reply) -> Action {
        self.auth_failures += 1;
        if self.auth_failures >= MAX_AUTH_FAILURES {
            return Action::Close(reply::TOO_MANY_ERRORS.into());
        }
        Action::Reply(refused)
    }

    /// Refusals since the last call, for tracking.
    pub fn take_rejections(&mut self) -> Vec<Rejection> {
        std::mem::take(&mut self.rejections)
    }

    /// The protocol name for the Received header (RFC 3848).
    pub fn protocol(&self) -> &'static str {
        match (self.esmtp, self.tls.is_some(), self.account.is_some()) {
            (false, _, _) => "SMTP",
            (true, false, false) => "ESMTP",
            (true, false, true) => "ESMTPA",
            (true, true, false) => "ESMTPS",
            (true, true, true) => "ESMTPSA",
        }
    }

    pub fn handle(&mut self, parsed: Result<Command, ParseError>) -> Action {
        let action = match parsed {
            Ok(command) => self.command(command),
            Err(error) => Action::Reply(parse_error_reply(&error)),
        };
        self.count_errors(action)
    }

    fn command(&mut self, command: Command) -> Action {
        match (self.state, command) {
            (_, Command::Ehlo(name)) => self.hello(name, true),
            (_, Command::Helo(name)) => self.hello(name, false),
            (_, Command::Quit) => Action::Close(reply::closing(&self.info.connector.fqdn)),
            (_, Command::Noop) => reply(reply::OK),
            (_, Command::Vrfy) => reply(reply::CANNOT_VRFY),
            (_, Command::Help) => reply(reply::HELP),
            (_, Command::Rset) => {
                self.reset_transaction();
                reply(reply::RESET_OK)
            }
            (State::ExpectHelo, _) => reply(reply::HELO_FIRST),
            (state, Command::StartTls) => self.start_tls(state),
            (state, Command::Auth { mechanism, initial_response }) => {
                self.auth_command(state, &mechanism, initial_response)
            }
            (State::ExpectMail, Command::Mail(mail)) => self.mail(mail),
            (State::ExpectRcpt | State::ExpectRcptOrData, Command::Mail(_)) => reply(reply::NESTED_MAIL),
            (State::ExpectRcpt | State::ExpectRcptOrData, Command::Rcpt(rcpt)) => self.rcpt(rcpt),
            (State::ExpectMail, Command::Rcpt(_) | Command::Data) => reply(reply::NEED_MAIL),
            (State::ExpectRcpt, Command::Data) => reply(reply::NEED_RCPT),
            (State::ExpectRcptOrData, Command::Data) => {
                Action::ReceiveData { max_size: self.info.connector.limits.max_message_size as usize }
            }
        }
    }

    /// EHLO/HELO (RFC 5321 §4.1.1.1): also resets any transaction.
    fn hello(&mut self, name: String, esmtp: bool) -> Action {
        self.reset_transaction();
        self.state = State::ExpectMail;
        self.esmtp = esmtp;
        let fqdn = &self.info.connector.fqdn;
        let greeting = format!("{fqdn} Hello [{}]", self.info.peer.ip().to_canonical());
        self.helo = Some(name);
        if !esmtp {
            return Action::Reply(Reply::new(250, None, greeting));
        }
        let mut lines: Vec<Cow<'static, str>> = vec![
            greeting.into(),
            format!("SIZE {}", self.info.connector.limits.max_message_size).into(),
            "PIPELINING".into(),
            "8BITMIME".into(),
            "ENHANCEDSTATUSCODES".into(),
            "SMTPUTF8".into(),
        ];
        if self.offers_starttls() {
            lines.push("STARTTLS".into());
        }
        if let Some(auth) = self.offered_auth() {
            lines.push(auth.into());
        }
        lines.push("HELP".into());
        Action::Reply(Reply::multiline(250, lines))
    }

    /// STARTTLS is offered once, on connectors that use it and could set it up.
    fn offers_starttls(&self) -> bool {
        let connector = &self.info.connector;
        self.tls.is_none()
            && matches!(connector.tls_mode, TlsMode::StarttlsOffered | TlsMode::StarttlsRequired)
            && self.info.snapshot.tls.contains_key(&connector.id)
    }

    /// Whether AUTH is available on this connector at all: it needs mechanisms and the
    /// `authenticated` permission group (a sign-in that grants nothing is not offered).
    fn has_auth(&self) -> bool {
        let connector = &self.info.connector;
        !connector.auth_mechanisms.is_empty() && connector.allows(PermissionGroup::Authenticated)
    }

    /// Whether AUTH must wait for TLS: where the connector says so, and wherever TLS is
    /// required anyway (a password must not cross in clear text only to meet 530 at MAIL).
    fn auth_needs_tls(&self) -> bool {
        let connector = &self.info.connector;
        self.tls.is_none() && (connector.auth_requires_tls || connector.tls_mode == TlsMode::StarttlsRequired)
    }

    /// The AUTH keyword, where the connector has mechanisms and they may be used now
    /// (invariant 4: never offered in clear text where the connector requires TLS for it).
    fn offered_auth(&self) -> Option<String> {
        let connector = &self.info.connector;
        if !self.has_auth() || self.auth_needs_tls() {
            return None;
        }
        let names: Vec<String> = connector.auth_mechanisms.iter().map(|m| m.as_str().to_ascii_uppercase()).collect();
        Some(format!("AUTH {}", names.join(" ")))
    }

    /// STARTTLS (RFC 3207): only between transactions, once, where offered.
    fn start_tls(&mut self, state: State) -> Action {
        if self.tls.is_some() {
            return reply(reply::ALREADY_TLS);
        }
        if !self.offers_starttls() {
            return if self.info.connector.tls_mode == TlsMode::None || self.info.connector.tls_mode == TlsMode::Implicit
            {
                reply(reply::NOT_IMPLEMENTED)
            } else {
                reply(reply::TLS_UNAVAILABLE)
            };
        }
        if state != State::ExpectMail {
            return reply(reply::BAD_SEQUENCE);
        }
        Action::StartTls
    }

    /// AUTH (RFC 4954 §4): after EHLO, outside a transaction, once per session.
    fn auth_command(&mut self, state: State, mechanism: &str, initial_response: Option<String>) -> Action {
        let connector = &self.info.connector;
        if !self.esmtp {
            // AUTH is an ESMTP extension: a client that said HELO has not seen it offered.
            return Action::Reply(reply::HELO_FIRST.with_text("Send EHLO first"));
        }
        if self.account.is_some() {
            return reply(reply::ALREADY_AUTHENTICATED);
        }
        if state != State::ExpectMail {
            return reply(reply::AUTH_IN_TRANSACTION);
        }
        if !self.has_auth() {
            return reply(reply::AUTH_NOT_AVAILABLE);
        }
        if self.auth_needs_tls() {
            return reply(reply::ENCRYPTION_REQUIRED);
        }
        match mechanism.parse::<AuthMechanism>() {
            Ok(m) if connector.auth_mechanisms.contains(&m) => Action::Authenticate { mechanism: m, initial_response },
            _ => reply(reply::AUTH_UNKNOWN_MECHANISM),
        }
    }

    fn mail(&mut self, mail: MailFrom) -> Action {
        let sender = mail.sender.as_ref().map(ToString::to_string);
        let snapshot = &self.info.snapshot;
        let allowed = snapshot
            .may_send(&self.info.connector, self.auth(), self.tls.is_some())
            .and_then(|()| snapshot.may_send_as(self.account.as_deref(), mail.sender.as_ref()));
        if let Err(denied) = allowed {
            return self.reject(sender, None, reply::denial(denied).into());
        }
        if !self.esmtp && (mail.size.is_some() || mail.smtputf8 || mail.body != BodyType::SevenBit) {
            // RFC 5321 §4.1.1.2: parameters exist only for clients that said EHLO.
            return reply(reply::UNKNOWN_PARAMETER);
        }
        // RFC 1870 §6.2: refuse at MAIL when the declared size is already too big.
        if mail.size.is_some_and(|size| size > self.info.connector.limits.max_message_size) {
            return self.reject(sender, None, reply::MESSAGE_TOO_BIG.into());
        }
        self.mail = Some(mail);
        self.state = State::ExpectRcpt;
        reply(reply::SENDER_OK)
    }

    fn rcpt(&mut self, rcpt: RcptTo) -> Action {
        let recipient = rcpt.recipient;
        let smtputf8 = self.mail.as_ref().is_some_and(|m| m.smtputf8);
        if !smtputf8 && !recipient.to_string().is_ascii() {
            return reply(reply::NEEDS_SMTPUTF8);
        }
        if self.recipients.len() >= self.info.connector.limits.max_recipients as usize {
            return reply(reply::TOO_MANY_RECIPIENTS);
        }
        if let Err(denied) = self.info.snapshot.may_relay(&self.info.connector, self.auth(), &recipient) {
            let sender = self.mail.as_ref().and_then(|m| m.sender.as_ref()).map(ToString::to_string);
            return self.reject(sender, Some(recipient.to_string()), reply::denial(denied).into());
        }
        // A repeated recipient is accepted once (RFC 5321 §3.3 lets servers drop duplicates).
        if !self.recipients.contains(&recipient) {
            self.recipients.push(recipient);
        }
        self.state = State::ExpectRcptOrData;
        reply(reply::RECIPIENT_OK)
    }

    /// The end of DATA: the envelope to queue, or the reason the message is refused.
    /// Either way the transaction is over (RFC 5321 §4.1.1.4).
    pub fn data_received(&mut self, result: Result<Message, DataError>) -> Result<Envelope, Reply> {
        let mail = self.mail.take();
        let recipients = std::mem::take(&mut self.recipients);
        self.state = State::ExpectMail;
        let message = result.map_err(|error| {
            let refused: Reply = match error {
                DataError::TooBig => reply::MESSAGE_TOO_BIG.into(),
                DataError::HeaderSectionTooBig => reply::HEADER_SECTION_TOO_BIG.into(),
                DataError::BareLineEnding => reply::BARE_LINE_ENDING.into(),
                DataError::LineTooLong => reply::DATA_LINE_TOO_LONG.into(),
                DataError::Nul => reply::NUL_IN_DATA.into(),
            };
            let sender = mail.as_ref().and_then(|m| m.sender.as_ref()).map(ToString::to_string);
            self.rejections.push(Rejection { event_id: "REJECT", sender, recipient: None, reply: refused.summary() });
            self.errors += 1;
            refused
        })?;
        let checked = HeaderSection::parse(&message.body)
            .map_err(|malformed| {
                reply::MALFORMED_HEADERS.with_text(format!("{}: {malformed}", reply::MALFORMED_HEADERS.text))
            })
            .and_then(|section| {
                // RFC 5321 §6.3: a message that has passed through this many relays loops.
                if section.hops() > self.info.max_hops {
                    return Err(reply::TOO_MANY_HOPS.into());
                }
                match self.forged_headers(&section) {
                    Some(refused) => Err(refused),
                    None => Ok(section),
                }
            });
        let headers = checked.inspect_err(|refused| {
            let sender = mail.as_ref().and_then(|m| m.sender.as_ref()).map(ToString::to_string);
            self.rejections.push(Rejection { event_id: "REJECT", sender, recipient: None, reply: refused.summary() });
        })?;
        Ok(Envelope { sender: mail.and_then(|m| m.sender), recipients, message, headers })
    }

    /// Send-As again, on the headers: every address in every author field (`From`,
    /// `Sender`, `Resent-From`, `Resent-Sender`) must be one the account may use, so a
    /// client that passed the envelope check cannot forge the author readers see. A
    /// field that cannot be read is refused too.
    fn forged_headers(&self, section: &HeaderSection) -> Option<Reply> {
        let account = self.account.as_deref()?;
        let denied =
            || Some(reply::SEND_AS_DENIED.with_text(format!("{} (From/Sender header)", reply::SEND_AS_DENIED.text)));
        match headers::author_addresses(section) {
            Ok(addresses) => addresses
                .iter()
                .any(|a| self.info.snapshot.may_send_as(Some(account), Some(a)).is_err())
                .then(denied)
                .flatten(),
            Err(_) => denied(),
        }
    }

    fn reset_transaction(&mut self) {
        self.mail = None;
        self.recipients.clear();
        if self.state != State::ExpectHelo {
            self.state = State::ExpectMail;
        }
    }

    fn reject(&mut self, sender: Option<String>, recipient: Option<String>, refused: Reply) -> Action {
        self.rejections.push(Rejection { event_id: "REJECT", sender, recipient, reply: refused.summary() });
        Action::Reply(refused)
    }

    fn count_errors(&mut self, action: Action) -> Action {
        if let Action::Reply(r) = &action
            && r.code >= 500
        {
            self.errors += 1;
            if self.errors >= MAX_ERRORS {
                return Action::Close(reply::TOO_MANY_ERRORS.into());
            }
        }
        action
    }
}

fn reply(fixed: reply::FixedReply) -> Action {
    Action::Reply(fixed.into())
}

fn parse_error_reply(error: &ParseError) -> Reply {
    match error {
        ParseError::Unrecognized => reply::UNRECOGNIZED.into(),
        ParseError::Syntax => reply::SYNTAX_ERROR.into(),
        ParseError::BadSender(AddressError::NonAsciiWithoutSmtputf8) => reply::NEEDS_SMTPUTF8.into(),
        ParseError::BadSender(e) => reply::BAD_SENDER_SYNTAX.with_text(format!("Invalid address: {e}")),
        ParseError::BadRecipient(e) => reply::BAD_RECIPIENT_SYNTAX.with_text(format!("Invalid address: {e}")),
        ParseError::UnknownParameter(p) => reply::UNKNOWN_PARAMETER.with_text(format!("Unsupported parameter {p}")),
        ParseError::Nul => reply::NUL_IN_COMMAND.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AcceptedDomain, Domain, DomainType};
    use crate::policy::tests::connector;

    fn session(accept_any_recipient: bool) -> Session {
        let mut c = connector("SMTP Relay Script", "0.0.0.0:2526", &["127.0.0.1"]);
        c.accept_any_recipient = accept_any_recipient;
        c.limits.max_recipients = 2;
        c.limits.max_message_size = 1000;
        let snapshot = Snapshot {
            accepted_domains: vec![AcceptedDomain {
                id: Uuid::new_v4(),
                domain: Domain::parse("cloudmonkeys.xyz", false).unwrap(),
                domain_type: DomainType::Authoritative,
            }],
            ..Snapshot::default()
        };
        Session::new(SessionInfo {
            id: Uuid::new_v4(),
            peer: "127.0.0.1:40000".parse().unwrap(),
            local: "127.0.0.1:2526".parse().unwrap(),
            snapshot: Arc::new(snapshot),
            connector: Arc::new(c),
            max_hops: DEFAULT_MAX_HOPS,
        })
    }

    /// Runs a transcript of commands and returns the reply codes with enhanced codes.
    fn transcript(session: &mut Session, lines: &[&str]) -> Vec<String> {
        lines
            .iter()
            .map(|line| match session.handle(Command::parse(line.as_bytes())) {
                Action::Reply(r) | Action::Close(r) => {
                    format!("{}{}", r.code, r.enhanced.map(|e| format!(" {e}")).unwrap_or_default())
                }
                Action::ReceiveData { .. } => "354".to_string(),
                Action::StartTls => "starttls".to_string(),
                Action::Authenticate { mechanism, .. } => format!("auth {mechanism}"),
            })
            .collect()
    }

    fn ehlo_keywords(session: &mut Session) -> Vec<String> {
        match session.handle(Command::parse(b"EHLO app.local")) {
            Action::Reply(r) => r.lines.iter().skip(1).map(ToString::to_string).collect(),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// The seed's "SMTP Auth Relay Script" connector, with svc-mailer allowed to send as smb1.
    fn auth_session() -> (Session, Arc<ServiceAccount>) {
        let mut c = connector("SMTP Auth Relay Script", "0.0.0.0:587", &["127.0.0.1"]);
        c.permission_groups = vec![PermissionGroup::Authenticated];
        c.auth_mechanisms = vec![AuthMechanism::Login, AuthMechanism::Plain];
        c.auth_requires_tls = true;
        c.tls_mode = TlsMode::StarttlsRequired;
        let (cert, key) = crate::tls::generate_self_signed("relay.example").unwrap();
        let tls =
            crate::tls::ConnectorTls { config: crate::tls::server_config(&cert, &key).unwrap(), self_signed: true };
        let account = Arc::new(crate::domain::accounts::tests::account(&["smb1@cloudmonkeys.xyz"]));
        let snapshot = Snapshot { tls: [(c.id, Arc::new(tls))].into(), ..Snapshot::default() };
        let session = Session::new(SessionInfo {
            id: Uuid::new_v4(),
            peer: "127.0.0.1:40000".parse().unwrap(),
            local: "127.0.0.1:587".parse().unwrap(),
            snapshot: Arc::new(snapshot),
            connector: Arc::new(c),
            max_hops: DEFAULT_MAX_HOPS,
        });
        (session, account)
    }

    fn tls13() -> TlsInfo {
        TlsInfo { version: "TLS1.3".into(), cipher: "TLS13_AES_256_GCM_SHA384".into() }
    }

    #[test]
    fn auth_connector_requires_tls_then_auth_then_send_as() {
        let (mut s, account) = auth_session();
        let keywords = ehlo_keywords(&mut s);
        assert!(keywords.contains(&"STARTTLS".to_string()), "{keywords:?}");
        assert!(!keywords.iter().any(|k| k.starts_with("AUTH")), "AUTH offered in clear text: {keywords:?}");
        let before_tls =
            transcript(&mut s, &["AUTH PLAIN AHN2Yy1tYWlsZXIAc2VjcmV0", "MAIL FROM:<smb1@cloudmonkeys.xyz>"]);
        assert_eq!(before_tls, ["538 5.7.11", "530 5.7.0"]);
        assert_eq!(transcript(&mut s, &["STARTTLS"]), ["starttls"]);
        s.tls_established(tls13());
        assert_eq!(transcript(&mut s, &["MAIL FROM:<smb1@cloudmonkeys.xyz>"]), ["503 5.5.1"], "EHLO again first");
        let keywords = ehlo_keywords(&mut s);
        assert!(keywords.contains(&"AUTH LOGIN PLAIN".to_string()), "{keywords:?}");
        assert!(!keywords.contains(&"STARTTLS".to_string()));
        assert_eq!(
            transcript(&mut s, &["MAIL FROM:<smb1@cloudmonkeys.xyz>", "AUTH CRAM-MD5"]),
            ["530 5.7.57", "504 5.5.4"]
        );
        assert_eq!(transcript(&mut s, &["AUTH login"]), ["auth login"]);
        let ok = s.authenticated(AuthMechanism::Login, "svc-mailer", Ok(Arc::clone(&account)));
        assert_eq!(ok, Action::Reply(reply::AUTH_OK.into()));
        assert_eq!(s.protocol(), "ESMTPSA");
        let replies = transcript(
            &mut s,
            &[
                "AUTH PLAIN",
                "MAIL FROM:<smb2@cloudmonkeys.xyz>",
                "MAIL FROM:<>",
                "MAIL FROM:<SMB1@cloudmonkeys.xyz>",
                "AUTH PLAIN",
                "RCPT TO:<someone@gmail.example>",
                "DATA",
            ],
        );
        assert_eq!(replies, ["503 5.5.1", "550 5.7.60", "550 5.7.60", "250 2.1.0", "503 5.5.1", "250 2.1.5", "354"]);
    }

    #[test]
    fn forged_from_headers_are_refused_at_end_of_data() {
        let (mut s, account) = auth_session();
        s.tls_established(tls13());
        ehlo_keywords(&mut s);
        s.authenticated(AuthMechanism::Plain, "svc-mailer", Ok(account));
        let mut message = |headers: &str| {
            transcript(&mut s, &["MAIL FROM:<smb1@cloudmonkeys.xyz>", "RCPT TO:<x@gmail.example>", "DATA"]);
            s.data_received(Ok(Message {
                body: format!("{headers}\r\n\r\nbody\r\n").into_bytes(),
                eight_bit: false,
                spooled: None,
            }))
        };
        assert!(message("From: SMB1 <smb1@cloudmonkeys.xyz>").is_ok());
        let forged = message("From: CEO <ceo@cloudmonkeys.xyz>").unwrap_err();
        assert_eq!((forged.code, forged.enhanced), (550, Some("5.7.60")));
        assert!(message("From: smb1@cloudmonkeys.xyz\r\nSender: ceo@cloudmonkeys.xyz").is_err());
        assert!(message("From: smb1@cloudmonkeys.xyz, ceo@cloudmonkeys.xyz").is_err());
        assert!(message("From: smb1@cloudmonkeys.xyz\r\nFrom: ceo@cloudmonkeys.xyz").is_err());
    }

    #[test]
    fn repeated_auth_failures_close_the_connection() {
        let (mut s, _) = auth_session();
        s.tls_established(tls13());
        ehlo_keywords(&mut s);
        let fail =
            |s: &mut Session| s.authenticated(AuthMechanism::Plain, "svc-mailer", Err(AuthFailure::WrongPassword));
        assert_eq!(fail(&mut s), Action::Reply(reply::AUTH_INVALID.into()));
        assert_eq!(s.authentication_aborted(reply::AUTH_CANCELLED.into()), Action::Reply(reply::AUTH_CANCELLED.into()));
        assert_eq!(fail(&mut s), Action::Close(reply::TOO_MANY_ERRORS.into()));
        let detail = &s.take_rejections()[0].reply;
        assert!(detail.starts_with("535 5.7.8") && detail.contains("wrong password"), "{detail}");
    }

    #[test]
    fn anonymous_relay_transcript_follows_the_seed() {
        let mut s = session(false);
        let replies = transcript(
            &mut s,
            &[
                "EHLO printer.local",
                "MAIL FROM:<test@cloudmonkeys.xyz>",
                "RCPT TO:<user@cloudmonkeys.xyz>",
                "RCPT TO:<someone@gmail.example>",
                "DATA",
            ],
        );
        assert_eq!(replies, ["250", "250 2.1.0", "250 2.1.5", "550 5.7.54", "354"]);
        assert_eq!(s.take_rejections()[0].recipient.as_deref(), Some("someone@gmail.example"));
    }

    #[test]
    fn out_of_order_commands_get_503() {
        let mut s = session(false);
        let replies = transcript(
            &mut s,
            &[
                "MAIL FROM:<a@cloudmonkeys.xyz>",
                "HELO x",
                "RCPT TO:<b@cloudmonkeys.xyz>",
                "DATA",
                "MAIL FROM:<a@cloudmonkeys.xyz>",
                "DATA",
                "MAIL FROM:<a@cloudmonkeys.xyz>",
            ],
        );
        assert_eq!(replies, ["503 5.5.1", "250", "503 5.5.1", "503 5.5.1", "250 2.1.0", "503 5.5.1", "503 5.5.1"]);
    }

    #[test]
    fn limits_on_recipients_and_declared_size() {
        let mut s = session(true);
        let replies = transcript(
            &mut s,
            &[
                "EHLO a",
                "MAIL FROM:<a@cloudmonkeys.xyz> SIZE=5000",
                "MAIL FROM:<a@cloudmonkeys.xyz> SIZE=500",
                "RCPT TO:<x@a.example>",
                "RCPT TO:<y@b.example>",
                "RCPT TO:<z@c.example>",
            ],
        );
        assert_eq!(replies, ["250", "552 5.3.4", "250 2.1.0", "250 2.1.5", "250 2.1.5", "452 4.5.3"]);
    }

    #[test]
    fn data_errors_end_the_transaction_with_the_right_reply() {
        let mut s = session(false);
        transcript(&mut s, &["EHLO a", "MAIL FROM:<a@cloudmonkeys.xyz>", "RCPT TO:<b@cloudmonkeys.xyz>", "DATA"]);
        let refused = s.data_received(Err(DataError::BareLineEnding)).unwrap_err();
        assert_eq!((refused.code, refused.enhanced), (550, Some("5.5.2")));
        assert_eq!(s.state(), State::ExpectMail);
    }

    #[test]
    fn too_many_errors_close_the_session() {
        let mut s = session(false);
        let lines = vec!["BOGUS"; MAX_ERRORS as usize];
        let replies = transcript(&mut s, &lines);
        assert_eq!(replies.last().map(String::as_str), Some("421 4.7.0"));
    }
}
