//! The SMTP session as a state machine, sans-IO: commands in, actions out. The state is
//! named for what it expects next; a command out of order falls out of the match as a
//! 503. Every decision about who may do what is asked of the policy snapshot.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;

use uuid::Uuid;

use super::command::{BodyType, Command, MailFrom, ParseError, RcptTo};
use super::data::{DataError, Message};
use super::reply::{self, Reply};
use crate::domain::{AddressError, EmailAddress, ReceiveConnector};
use crate::policy::{AuthState, Snapshot};

/// Errors tolerated before the session is closed with 421 (Postfix's smtpd_hard_error_limit).
const MAX_ERRORS: u32 = 20;

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
}

/// What the connection must do after a command.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Reply(Reply),
    /// Send 354 and read the message with this size limit.
    ReceiveData {
        max_size: usize,
    },
    /// Send the reply and close the connection.
    Close(Reply),
}

/// A refusal the session made, for the tracking log's REJECT events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub sender: Option<String>,
    pub recipient: Option<String>,
    pub reply: String,
}

/// A complete transaction, ready to be queued.
#[derive(Debug)]
pub struct Envelope {
    pub sender: Option<EmailAddress>,
    pub recipients: Vec<EmailAddress>,
    pub message: Message,
}

#[derive(Debug)]
pub struct Session {
    pub info: SessionInfo,
    state: State,
    helo: Option<String>,
    esmtp: bool,
    auth: AuthState,
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
            auth: AuthState::Anonymous,
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
        self.auth
    }

    /// Refusals since the last call, for tracking.
    pub fn take_rejections(&mut self) -> Vec<Rejection> {
        std::mem::take(&mut self.rejections)
    }

    /// The protocol name for the Received header (RFC 3848).
    pub fn protocol(&self) -> &'static str {
        match (self.esmtp, self.auth) {
            (false, _) => "SMTP",
            (true, AuthState::Anonymous) => "ESMTP",
            (true, AuthState::Authenticated) => "ESMTPA",
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
            // STARTTLS and AUTH are offered only by connectors that have them; none yet.
            (_, Command::StartTls | Command::Auth { .. }) => reply(reply::NOT_IMPLEMENTED),
            (State::ExpectHelo, _) => reply(reply::HELO_FIRST),
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
        let lines: Vec<Cow<'static, str>> = vec![
            greeting.into(),
            format!("SIZE {}", self.info.connector.limits.max_message_size).into(),
            "PIPELINING".into(),
            "8BITMIME".into(),
            "ENHANCEDSTATUSCODES".into(),
            "SMTPUTF8".into(),
            "HELP".into(),
        ];
        Action::Reply(Reply::multiline(250, lines))
    }

    fn mail(&mut self, mail: MailFrom) -> Action {
        let sender = mail.sender.as_ref().map(ToString::to_string);
        if let Err(denied) = self.info.snapshot.may_send(&self.info.connector, self.auth) {
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
        if let Err(denied) = self.info.snapshot.may_relay(&self.info.connector, self.auth, &recipient) {
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
                DataError::BareLineEnding => reply::BARE_LINE_ENDING.into(),
                DataError::LineTooLong => reply::DATA_LINE_TOO_LONG.into(),
                DataError::Nul => reply::NUL_IN_DATA.into(),
            };
            let sender = mail.as_ref().and_then(|m| m.sender.as_ref()).map(ToString::to_string);
            self.rejections.push(Rejection { sender, recipient: None, reply: refused.summary() });
            self.errors += 1;
            refused
        })?;
        Ok(Envelope { sender: mail.and_then(|m| m.sender), recipients, message })
    }

    fn reset_transaction(&mut self) {
        self.mail = None;
        self.recipients.clear();
        if self.state != State::ExpectHelo {
            self.state = State::ExpectMail;
        }
    }

    fn reject(&mut self, sender: Option<String>, recipient: Option<String>, refused: Reply) -> Action {
        self.rejections.push(Rejection { sender, recipient, reply: refused.summary() });
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
            })
            .collect()
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
