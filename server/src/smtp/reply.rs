//! SMTP replies as named values (RFC 5321 §4.2, enhanced codes RFC 3463 / RFC 2034).
//! Handlers return these; only the connection writes them to the socket.

use std::borrow::Cow;
use std::fmt::Write as _;

/// One SMTP reply: a code, an enhanced status code and one or more lines of text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub enhanced: Option<&'static str>,
    pub lines: Vec<Cow<'static, str>>,
}

impl Reply {
    pub const fn fixed(code: u16, enhanced: &'static str, text: &'static str) -> FixedReply {
        FixedReply { code, enhanced, text }
    }

    pub fn new(code: u16, enhanced: Option<&'static str>, text: impl Into<Cow<'static, str>>) -> Self {
        Self { code, enhanced, lines: vec![text.into()] }
    }

    /// A multi-line reply such as the EHLO response.
    pub fn multiline(code: u16, lines: Vec<Cow<'static, str>>) -> Self {
        Self { code, enhanced: None, lines }
    }

    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// RFC 5321 §4.2.1: every line but the last is `code-text`, the last `code text`.
    /// The enhanced code (RFC 2034 §4) prefixes the text of each line.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let mut text = String::new();
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            let _ = match self.enhanced {
                Some(e) => write!(text, "{}{}{} {}\r\n", self.code, sep, e, line),
                None => write!(text, "{}{}{}\r\n", self.code, sep, line),
            };
        }
        if self.lines.is_empty() {
            let _ = write!(text, "{}\r\n", self.code);
        }
        out.extend_from_slice(text.as_bytes());
    }

    /// The reply as one line, for logs and tracking.
    pub fn summary(&self) -> String {
        let text = self.lines.join(" ");
        match self.enhanced {
            Some(e) => format!("{} {} {}", self.code, e, text),
            None => format!("{} {}", self.code, text),
        }
    }
}

/// A reply known at compile time; `Reply::from` turns it into a sendable one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedReply {
    pub code: u16,
    pub enhanced: &'static str,
    pub text: &'static str,
}

impl From<FixedReply> for Reply {
    fn from(r: FixedReply) -> Self {
        Reply::new(r.code, Some(r.enhanced), r.text)
    }
}

impl FixedReply {
    /// The same code with a different text, e.g. with the reason appended.
    pub fn with_text(self, text: impl Into<Cow<'static, str>>) -> Reply {
        Reply::new(self.code, Some(self.enhanced), text)
    }
}

// The replies of the engine. Texts follow Exchange where an admin would search for them.
pub const OK: FixedReply = Reply::fixed(250, "2.0.0", "OK");
pub const SENDER_OK: FixedReply = Reply::fixed(250, "2.1.0", "Sender OK");
pub const RECIPIENT_OK: FixedReply = Reply::fixed(250, "2.1.5", "Recipient OK");
pub const RESET_OK: FixedReply = Reply::fixed(250, "2.0.0", "Resetting");
pub const START_DATA: FixedReply = Reply::fixed(354, "2.0.0", "Start mail input; end with <CRLF>.<CRLF>");
pub const CANNOT_VRFY: FixedReply =
    Reply::fixed(252, "2.1.5", "Cannot VRFY user, but will accept message and attempt delivery");
pub const HELP: FixedReply =
    Reply::fixed(214, "2.0.0", "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP; see RFC 5321");
pub const NOT_IMPLEMENTED: FixedReply = Reply::fixed(502, "5.5.1", "Command not implemented");
pub const UNRECOGNIZED: FixedReply = Reply::fixed(500, "5.5.1", "Unrecognized command");
pub const LINE_TOO_LONG: FixedReply = Reply::fixed(500, "5.5.2", "Line too long");
pub const NUL_IN_COMMAND: FixedReply = Reply::fixed(500, "5.5.2", "Command contains a NUL byte");
pub const BAD_SEQUENCE: FixedReply = Reply::fixed(503, "5.5.1", "Bad sequence of commands");
pub const HELO_FIRST: FixedReply = Reply::fixed(503, "5.5.1", "Send EHLO or HELO first");
pub const NESTED_MAIL: FixedReply = Reply::fixed(503, "5.5.1", "Sender already specified");
pub const NEED_MAIL: FixedReply = Reply::fixed(503, "5.5.1", "Need MAIL command");
pub const NEED_RCPT: FixedReply = Reply::fixed(503, "5.5.1", "Need RCPT command");
pub const SYNTAX_ERROR: FixedReply = Reply::fixed(501, "5.5.4", "Syntax error in parameters or arguments");
pub const BAD_SENDER_SYNTAX: FixedReply = Reply::fixed(501, "5.1.7", "Invalid address");
pub const BAD_RECIPIENT_SYNTAX: FixedReply = Reply::fixed(501, "5.1.3", "Invalid address");
pub const UNKNOWN_PARAMETER: FixedReply = Reply::fixed(555, "5.5.4", "Unsupported parameter");
pub const ADDRESS_LITERAL_RECIPIENT: FixedReply =
    Reply::fixed(550, "5.1.2", "Recipients at address literals are not accepted");
pub const NEEDS_SMTPUTF8: FixedReply =
    Reply::fixed(553, "5.6.7", "Non-ASCII address requires the SMTPUTF8 parameter on MAIL");
pub const UNABLE_TO_RELAY: FixedReply =
    Reply::fixed(550, "5.7.54", "SMTP; Unable to relay recipient in non-accepted domain");
pub const NOT_AUTHENTICATED: FixedReply =
    Reply::fixed(530, "5.7.57", "SMTP; Client was not authenticated to send anonymous mail during MAIL FROM");
pub const TOO_MANY_RECIPIENTS: FixedReply = Reply::fixed(452, "4.5.3", "Too many recipients");
pub const MESSAGE_TOO_BIG: FixedReply = Reply::fixed(552, "5.3.4", "Message size exceeds fixed maximum message size");
pub const BARE_LINE_ENDING: FixedReply =
    Reply::fixed(550, "5.5.2", "Message contains a bare CR or LF; lines must end with CRLF (RFC 5321 2.3.8)");
pub const DATA_LINE_TOO_LONG: FixedReply =
    Reply::fixed(550, "5.5.2", "Message contains a line longer than 1000 octets (RFC 5321 4.5.3.1.6)");
pub const NUL_IN_DATA: FixedReply = Reply::fixed(550, "5.6.0", "Message contains a NUL byte");
/// RFC 3463 §3.4: 5.3.4, message too big for system (here its header section).
pub const HEADER_SECTION_TOO_BIG: FixedReply =
    Reply::fixed(552, "5.3.4", "Header section too large (more than 1 MiB before the body)");
/// RFC 3463 §3.5: 5.4.6, routing loop detected.
pub const TOO_MANY_HOPS: FixedReply = Reply::fixed(554, "5.4.6", "Too many hops: the message loops");
/// RFC 3463 §3.7: 5.6.0, other or undefined media error.
pub const MALFORMED_HEADERS: FixedReply = Reply::fixed(554, "5.6.0", "Malformed header section");
pub const STORE_UNAVAILABLE: FixedReply = Reply::fixed(451, "4.3.0", "Temporary server error, please try again later");
pub const TIMEOUT: FixedReply = Reply::fixed(451, "4.7.0", "Timeout waiting for client input");
pub const TOO_MANY_CONNECTIONS: FixedReply = Reply::fixed(421, "4.3.2", "Too many connections, try again later");
/// Back-pressure (RFC 5321 §4.2.2, RFC 3463 §3.4): the queue is too deep or the
/// database does not answer; the client tries again later.
pub const INSUFFICIENT_RESOURCES: FixedReply =
    Reply::fixed(452, "4.3.1", "Insufficient system resources; try again later");
pub const TOO_MANY_MESSAGES: FixedReply =
    Reply::fixed(421, "4.4.2", "Message submission rate for this client has exceeded the configured limit");
pub const SHUTTING_DOWN: FixedReply = Reply::fixed(421, "4.3.2", "Service shutting down, try again later");
pub const TOO_MANY_ERRORS: FixedReply = Reply::fixed(421, "4.7.0", "Too many errors on this connection");
// STARTTLS (RFC 3207) and AUTH (RFC 4954); texts as Exchange words them where the seed
// shows them.
pub const READY_FOR_TLS: FixedReply = Reply::fixed(220, "2.0.0", "SMTP server ready");
pub const TLS_UNAVAILABLE: FixedReply = Reply::fixed(454, "4.7.0", "TLS not available due to temporary reason");
pub const ALREADY_TLS: FixedReply = Reply::fixed(503, "5.5.1", "TLS already active");
pub const MUST_STARTTLS: FixedReply = Reply::fixed(530, "5.7.0", "Must issue a STARTTLS command first");
pub const ENCRYPTION_REQUIRED: FixedReply =
    Reply::fixed(538, "5.7.11", "Encryption required for requested authentication mechanism");
pub const AUTH_OK: FixedReply = Reply::fixed(235, "2.7.0", "Authentication successful");
pub const AUTH_INVALID: FixedReply = Reply::fixed(535, "5.7.8", "Authentication credentials invalid");
pub const AUTH_THROTTLED: FixedReply = Reply::fixed(454, "4.7.0", "Too many authentication failures; try again later");
pub const AUTH_CANCELLED: FixedReply = Reply::fixed(501, "5.7.0", "Authentication cancelled");
pub const AUTH_BAD_ENCODING: FixedReply = Reply::fixed(501, "5.5.2", "Cannot decode response");
pub const AUTH_UNKNOWN_MECHANISM: FixedReply = Reply::fixed(504, "5.5.4", "Unrecognized authentication type");
pub const AUTH_NOT_AVAILABLE: FixedReply = Reply::fixed(503, "5.5.1", "Authentication not available on this connector");
pub const ALREADY_AUTHENTICATED: FixedReply = Reply::fixed(503, "5.5.1", "Already authenticated");
pub const AUTH_IN_TRANSACTION: FixedReply = Reply::fixed(503, "5.5.1", "AUTH not allowed during a mail transaction");
pub const SEND_AS_DENIED: FixedReply =
    Reply::fixed(550, "5.7.60", "SMTP; Client does not have permissions to send as this sender");
pub const PREGREETING: FixedReply = Reply::fixed(554, "5.5.1", "Protocol error: client sent data before the greeting");

/// The reply for a refusal of the policy.
pub fn denial(denial: crate::policy::Denial) -> FixedReply {
    use crate::policy::Denial;
    match denial {
        Denial::NotAuthenticated => NOT_AUTHENTICATED,
        Denial::UnableToRelay => UNABLE_TO_RELAY,
        Denial::AddressLiteral => ADDRESS_LITERAL_RECIPIENT,
        Denial::TlsRequired => MUST_STARTTLS,
        Denial::TlsUnavailable => TLS_UNAVAILABLE,
        Denial::SendAsDenied => SEND_AS_DENIED,
    }
}

/// `554 5.7.1 <fqdn> Access denied`: the greeting for a client no connector admits.
pub fn access_denied(fqdn: &str) -> Reply {
    Reply::new(554, Some("5.7.1"), format!("{fqdn} Access denied"))
}

/// `250 2.6.0 <queue-id> Queued mail for delivery`, sent only after the commit.
pub fn queued(queue_id: &str) -> Reply {
    Reply::new(250, Some("2.6.0"), format!("<{queue_id}> Queued mail for delivery"))
}

pub fn closing(fqdn: &str) -> Reply {
    Reply::new(221, Some("2.0.0"), format!("{fqdn} Service closing transmission channel"))
}

pub fn greeting(fqdn: &str, banner: Option<&str>) -> Reply {
    Reply::new(220, None, format!("{fqdn} {}", banner.unwrap_or("Postern ESMTP ready")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_multi_line_replies_are_framed_per_rfc_5321() {
        let mut out = Vec::new();
        Reply::from(UNABLE_TO_RELAY).write_to(&mut out);
        assert_eq!(out, b"550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain\r\n");
        out.clear();
        Reply::multiline(250, vec!["relay.example".into(), "PIPELINING".into(), "SIZE 100".into()]).write_to(&mut out);
        assert_eq!(out, b"250-relay.example\r\n250-PIPELINING\r\n250 SIZE 100\r\n");
    }
}
