//! One session's protocol log (Exchange's SmtpReceive log, verbose level): a numbered line
//! for the connection, every line sent and received, TLS and other facts, and the
//! disconnection. Secrets never reach it: AUTH responses and initial responses are
//! written as `****`, and message bodies only as their size.

use std::net::SocketAddr;

use time::OffsetDateTime;
use uuid::Uuid;

use super::ProtocolLogger;
use crate::store::ProtocolLine;

/// The event column, as in Exchange's RECV logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Connect,
    Disconnect,
    Sent,
    Received,
    Information,
}

impl Event {
    fn symbol(self) -> &'static str {
        match self {
            Event::Connect => "+",
            Event::Disconnect => "-",
            Event::Sent => ">",
            Event::Received => "<",
            Event::Information => "*",
        }
    }
}

/// What a redacted secret is written as.
pub const REDACTED: &str = "****";

#[derive(Debug)]
pub struct SessionLog {
    logger: ProtocolLogger,
    session_id: Uuid,
    connector: String,
    local: String,
    remote: String,
    seq: i32,
}

impl SessionLog {
    pub fn new(
        logger: ProtocolLogger,
        session_id: Uuid,
        connector: &str,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Self {
        Self {
            logger,
            session_id,
            connector: connector.to_string(),
            local: local.to_string(),
            remote: remote.to_string(),
            seq: 0,
        }
    }

    pub fn line(&mut self, event: Event, data: &str, context: &str) {
        self.logger.record(ProtocolLine {
            at: OffsetDateTime::now_utc(),
            session_id: self.session_id,
            seq: self.seq,
            connector: self.connector.clone(),
            local_endpoint: self.local.clone(),
            remote_endpoint: self.remote.clone(),
            event: crate::store::ProtocolEvent(event.symbol()),
            data: printable(data),
            context: context.to_string(),
        });
        self.seq += 1;
    }

    /// A command line as received, with AUTH's initial response redacted, and any line
    /// that looks like a base64 credential (a client that sends its user name and
    /// password although AUTH was refused) written as `****` too.
    pub fn command(&mut self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let mut words = text.split_whitespace();
        let redacted = match (words.next(), words.next(), words.next()) {
            (Some(verb), Some(mechanism), Some(_)) if verb.eq_ignore_ascii_case("AUTH") => {
                format!("{verb} {mechanism} {REDACTED}")
            }
            (Some(word), None, None) if looks_like_base64(word) => REDACTED.to_string(),
            _ => text.into_owned(),
        };
        self.line(Event::Received, &redacted, "");
    }
}

/// A single word of base64 at least as long as a short secret, which is not a command
/// verb (verbs are at most eight letters, like STARTTLS).
fn looks_like_base64(word: &str) -> bool {
    let verb = word.len() <= 8 && word.bytes().all(|b| b.is_ascii_alphabetic());
    word.len() >= 4 && !verb && word.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
}

/// Control, line-separator and bidirectional-override characters shown escaped, so a
/// hostile client cannot forge or disguise log lines; and a length cap (a line is at
/// most 12 KiB on the wire anyway).
fn printable(data: &str) -> String {
    let hidden = |c: char| {
        c.is_control()
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    data.chars().take(2048).flat_map(|c| if hidden(c) { c.escape_unicode().collect() } else { vec![c] }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_initial_responses_are_redacted_and_controls_escaped() {
        let (logger, mut written) = ProtocolLogger::unstarted();
        let (local, remote) = ("127.0.0.1:25".parse().unwrap(), "127.0.0.1:1".parse().unwrap());
        let mut log = SessionLog::new(logger, Uuid::nil(), "c", local, remote);
        log.command(b"AUTH PLAIN AHN2YwBzZWNyZXQ=");
        log.command(b"auth login c3Zj");
        log.command(b"AUTH LOGIN");
        log.command(b"MAIL FROM:<a@b.example>\x1b[2J");
        log.command(b" AUTH\tPLAIN\tAHN2YwBzZWNyZXQ=");
        log.command(b"c3ZjLW1haWxlcg==");
        log.command(b"QUIT");
        log.command(b"EHLO");
        log.command("HELO a\u{202e}b".as_bytes());
        let lines: Vec<String> = std::iter::from_fn(|| written.try_recv().ok()).map(|l| l.data).collect();
        assert_eq!(
            lines,
            [
                "AUTH PLAIN ****",
                "auth login ****",
                "AUTH LOGIN",
                "MAIL FROM:<a@b.example>\\u{1b}[2J",
                "AUTH PLAIN ****",
                "****",
                "QUIT",
                "EHLO",
                "HELO a\\u{202e}b"
            ]
        );
    }
}
