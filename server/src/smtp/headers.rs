//! What the engine adds to a message: a `Received:` trace header (RFC 5321 §4.4) and a
//! `Message-ID` when the client sent none (RFC 5322 §3.6.4), and the few header values
//! tracking needs.

use std::net::IpAddr;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

use crate::domain::EmailAddress;

/// The header section of a message as Postern reads it, and as every later reader will
/// read it once `stamp` has put Postern's own fields in front (invariant 10: the Send-As
/// check must see what mail clients see). RFC 5322 §2.2: a field is a name of printable
/// ASCII other than `:` directly followed by `:`; a line starting with white space
/// continues the field before it; an empty line ends the section.
///
/// Two shapes are read differently by different parsers, and so are refused rather
/// than guessed at: a first line that starts with white space (after stamping it would
/// continue Postern's `Received:` field, while a parser that skips it sees the fields
/// after it), and a continuation line of nothing but white space (RFC 5322's obsolete
/// syntax allows it; many parsers take it as the end of the section). A line that is
/// neither a field nor a continuation ends the section, and `stamp` inserts the empty
/// line there, so that nobody downstream reads the rest as fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderSection {
    pub fields: Vec<HeaderField>,
    /// Where the last field ends (after its CRLF).
    fields_end: usize,
    /// The section ended (an empty line, or a line that is no field): `false` when the
    /// input was all fields so far, as a message still arriving may be.
    ended: bool,
    /// Where the body starts: after the empty line, or at the first line that is not a
    /// field (then `needs_separator`).
    body_start: usize,
    /// The section was ended by a line that is not a field: an empty line must be
    /// inserted before the body.
    needs_separator: bool,
}

/// One header field: its name as sent and its value as sent (folding included, without
/// the final CRLF).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderField {
    pub name: String,
    pub raw_value: Vec<u8>,
}

impl HeaderField {
    /// The value unfolded (RFC 5322 §2.2.3) and trimmed, for display.
    pub fn value(&self) -> String {
        let text = String::from_utf8_lossy(&self.raw_value);
        text.split("\r\n").map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
    }
}

/// A header section that two parsers could read differently (refused with 554 5.6.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MalformedHeader {
    #[error("the message starts with a line that begins with white space")]
    LeadingWhiteSpace,
    #[error("a header line holds nothing but white space")]
    WhiteSpaceOnlyLine,
    #[error("a header line ends in a bare CR or LF")]
    BareLineEnding,
}

impl HeaderSection {
    /// Reads the header section of a message (CRLF line endings, as the DATA reader
    /// guarantees).
    pub fn parse(message: &[u8]) -> Result<Self, MalformedHeader> {
        let mut fields: Vec<HeaderField> = Vec::new();
        let mut at = 0;
        while at < message.len() {
            let (line, next) = match find_crlf(&message[at..]) {
                Some(end) => (&message[at..at + end], at + end + 2),
                None => (&message[at..], message.len()),
            };
            if line.contains(&b'\r') || line.contains(&b'\n') {
                return Err(MalformedHeader::BareLineEnding);
            }
            if line.is_empty() {
                return Ok(Self { fields, fields_end: at, ended: true, body_start: next, needs_separator: false });
            }
            if line[0] == b' ' || line[0] == b'\t' {
                let Some(field) = fields.last_mut() else { return Err(MalformedHeader::LeadingWhiteSpace) };
                if line.iter().all(|b| *b == b' ' || *b == b'\t') {
                    return Err(MalformedHeader::WhiteSpaceOnlyLine);
                }
                field.raw_value.extend_from_slice(b"\r\n");
                field.raw_value.extend_from_slice(line);
            } else if let Some(colon) = field_name_end(line) {
                let name = String::from_utf8_lossy(&line[..colon]).into_owned();
                fields.push(HeaderField { name, raw_value: line[colon + 1..].to_vec() });
            } else {
                return Ok(Self { fields, fields_end: at, ended: true, body_start: at, needs_separator: true });
            }
            at = next;
        }
        // All header, no body.
        Ok(Self { fields, fields_end: message.len(), ended: false, body_start: message.len(), needs_separator: false })
    }

    /// The fields named `name` (case-insensitive), in order.
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a HeaderField> + 'a {
        self.fields.iter().filter(move |f| f.name.eq_ignore_ascii_case(name))
    }

    /// Where the section ends in the input, when it has: the head a message can be
    /// split at (every byte a check or the stamp reads lies before it).
    pub fn end(&self) -> Option<usize> {
        self.ended.then_some(self.body_start)
    }

    /// The header fields of `message` (which this section was read from), as sent.
    pub fn header_bytes<'a>(&self, message: &'a [u8]) -> &'a [u8] {
        &message[..self.fields_end.min(message.len())]
    }

    /// How many relays the message has passed: its `Received:` fields.
    pub fn hops(&self) -> usize {
        self.named("Received").count()
    }

    fn first(&self, name: &str) -> Option<String> {
        self.named(name).next().map(HeaderField::value)
    }
}

fn find_crlf(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).position(|w| w == b"\r\n")
}

/// The position of the `:` ending a field name (RFC 5322 §3.6.8: `1*ftext ":"`, ftext
/// being printable ASCII other than `:`), if the line starts with one.
fn field_name_end(line: &[u8]) -> Option<usize> {
    let colon = line.iter().position(|b| *b == b':')?;
    (colon > 0 && line[..colon].iter().all(|b| (33..=126).contains(b))).then_some(colon)
}

/// Header values read from the message for tracking.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HeaderFacts {
    pub message_id: Option<String>,
    pub subject: Option<String>,
    pub from: Option<String>,
}

impl HeaderFacts {
    pub fn new(section: &HeaderSection) -> Self {
        Self { message_id: section.first("message-id"), subject: section.first("subject"), from: section.first("from") }
    }
}

/// The fields that name a message's author or sender (RFC 5322 §3.6.2 and §3.6.6): a
/// service account must be allowed to send as every address in every one of them.
const AUTHOR_FIELDS: [&str; 4] = ["From", "Sender", "Resent-From", "Resent-Sender"];

/// Every address in every author field, each field's value read on its own (comments,
/// quoted names, encoded words, groups). An error means a field holds no address that
/// every reader would agree on (a name alone, an empty group, broken syntax), which the
/// Send-As check refuses rather than guesses about.
pub fn author_addresses(section: &HeaderSection) -> Result<Vec<EmailAddress>, String> {
    let mut addresses = Vec::new();
    for field in AUTHOR_FIELDS.iter().flat_map(|name| section.named(name)) {
        let found = field_addresses(field).map_err(|e| format!("{}: {e}", field.name))?;
        if found.is_empty() {
            return Err(format!("{}: no address", field.name));
        }
        addresses.extend(found);
    }
    Ok(addresses)
}

/// The addresses of one field: read by the strict RFC 5322 grammar, and by mail-parser
/// from that field alone (so that where the field begins and ends is Postern's reading,
/// not mail-parser's). The two must agree, or the field is not read at all.
fn field_addresses(field: &HeaderField) -> Result<Vec<EmailAddress>, String> {
    let text = std::str::from_utf8(&field.raw_value).map_err(|_| "not UTF-8")?;
    let strict = super::address_list::addresses(text).ok_or("not an RFC 5322 address list")?;
    let mut by_mail_parser = mail_parser_addresses(field)?;
    let mut by_grammar: Vec<String> = strict.iter().map(|a| a.to_lowercase()).collect();
    by_mail_parser.sort();
    by_grammar.sort();
    if by_mail_parser != by_grammar {
        return Err("read differently by two parsers".into());
    }
    strict.iter().map(|a| EmailAddress::parse(a, true).map_err(|e| e.to_string())).collect()
}

/// What mail-parser reads from the field alone (lower-cased).
fn mail_parser_addresses(field: &HeaderField) -> Result<Vec<String>, String> {
    use mail_parser::{HeaderName, MessageParser};
    let mut alone = b"From:".to_vec();
    alone.extend_from_slice(&field.raw_value);
    alone.extend_from_slice(b"\r\n\r\n");
    let parsed = MessageParser::new().parse_headers(&alone).ok_or("unreadable")?;
    let mut addresses = Vec::new();
    for value in parsed.header_values(HeaderName::From) {
        let Some(list) = value.as_address() else { continue };
        for addr in list.iter() {
            addresses.push(addr.address().ok_or("a name without an address")?.to_lowercase());
        }
    }
    Ok(addresses)
}

/// The facts a Received header records about the session.
#[derive(Debug)]
pub struct TraceInfo<'a> {
    pub helo: &'a str,
    pub client_ip: IpAddr,
    pub fqdn: &'a str,
    pub protocol: &'a str,
    pub queue_id: &'a str,
    pub connector: &'a str,
    pub tls: Option<&'a str>,
    pub authenticated: bool,
    /// Only named when there is exactly one recipient (RFC 5321 §7.2: no list leaks).
    pub single_recipient: Option<&'a str>,
    pub at: OffsetDateTime,
}

/// Builds the Received header, folded, ending in CRLF.
pub fn received_header(t: &TraceInfo<'_>) -> String {
    let date = t.at.format(&Rfc2822).unwrap_or_default();
    let helo: String = t.helo.chars().filter(|c| !c.is_control() && *c != '(' && *c != ')').collect();
    let connector: String = t.connector.chars().filter(|c| !c.is_control() && *c != '"' && *c != ')').collect();
    // Whether the client signed in, not as whom: the account name is half a credential,
    // and recipients outside need not learn it (Postfix's smtpd_sasl_authenticated_header
    // is off by default for the same reason). Tracking records the account.
    let auth = if t.authenticated { "authenticated" } else { "anonymous" };
    let mut header = format!(
        "Received: from {helo} ([{ip}])\r\n\tby {fqdn} (Postern) with {protocol} id {id}\r\n\t(connector \"{connector}\"; {tls}; {auth})",
        ip = t.client_ip.to_canonical(),
        fqdn = t.fqdn,
        protocol = t.protocol,
        id = t.queue_id,
        tls = t.tls.unwrap_or("no TLS"),
    );
    if let Some(rcpt) = t.single_recipient {
        header.push_str(&format!("\r\n\tfor <{rcpt}>"));
    }
    header.push_str(&format!(";\r\n\t{date}\r\n"));
    header
}

/// The message as stored: our Received first, then the client's message, with a
/// Message-ID added at the top of the header section if it had none, and an empty line
/// where the client's header section ended without one (a message that is bare text
/// gets it first, so its first lines stay body instead of becoming headers). Only one
/// copy of the message is made.
pub fn stamp(message: &[u8], section: &HeaderSection, received: &str, missing_message_id: Option<&str>) -> Vec<u8> {
    let extra = missing_message_id.map(|id| format!("Message-ID: {id}\r\n")).unwrap_or_default();
    let mut stamped = Vec::with_capacity(received.len() + extra.len() + message.len() + 2);
    stamped.extend_from_slice(received.as_bytes());
    stamped.extend_from_slice(extra.as_bytes());
    let (head, body) = message.split_at(section.body_start.min(message.len()));
    stamped.extend_from_slice(head);
    if section.needs_separator {
        stamped.extend_from_slice(b"\r\n");
    }
    stamped.extend_from_slice(body);
    stamped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(message: &[u8]) -> HeaderSection {
        HeaderSection::parse(message).unwrap()
    }

    #[test]
    fn reads_folded_headers_until_the_body() {
        let msg = b"From: App <app@cloudmonkeys.xyz>\r\nSubject: Anonymous\r\n Test\r\nMessage-ID: <1@x>\r\n\r\nSubject: not a header\r\n";
        let facts = HeaderFacts::new(&section(msg));
        assert_eq!(facts.subject.as_deref(), Some("Anonymous Test"));
        assert_eq!(facts.message_id.as_deref(), Some("<1@x>"));
        assert_eq!(facts.from.as_deref(), Some("App <app@cloudmonkeys.xyz>"));
        assert_eq!(HeaderFacts::new(&section(b"no header here\r\n\r\n")), HeaderFacts::default());
    }

    #[test]
    fn shapes_that_parsers_read_differently_are_refused() {
        // The reported forgery: a white-space line first would continue our Received.
        let forged = b" \r\nFrom: CEO <ceo@cloudmonkeys.xyz>\r\n\r\npay\r\n";
        assert_eq!(HeaderSection::parse(forged), Err(MalformedHeader::LeadingWhiteSpace));
        assert_eq!(HeaderSection::parse(b"\tFrom: a@b\r\n\r\n"), Err(MalformedHeader::LeadingWhiteSpace));
        let blank_continuation = b"Subject: x\r\n \t \r\nFrom: ceo@cloudmonkeys.xyz\r\n\r\n";
        assert_eq!(HeaderSection::parse(blank_continuation), Err(MalformedHeader::WhiteSpaceOnlyLine));
        assert_eq!(HeaderSection::parse(b"Subject: x\ny\r\n\r\n"), Err(MalformedHeader::BareLineEnding));
    }

    #[test]
    fn a_line_that_is_no_field_ends_the_section_and_gets_the_empty_line_before_it() {
        let s = section(b"From: a@b.example\r\nnot a field\r\nSubject: body now\r\n");
        assert_eq!(s.fields.len(), 1);
        let stamped = stamp(b"From: a@b.example\r\nnot a field\r\nSubject: body now\r\n", &s, "Received: r\r\n", None);
        assert_eq!(stamped, b"Received: r\r\nFrom: a@b.example\r\n\r\nnot a field\r\nSubject: body now\r\n");
        // A name with a space before the colon (obsolete syntax) is not a field here.
        let spaced = b"From : ceo@cloudmonkeys.xyz\r\n\r\n";
        assert!(section(spaced).fields.is_empty());
        assert_eq!(
            stamp(spaced, &section(spaced), "Received: r\r\n", None),
            b"Received: r\r\n\r\nFrom : ceo@cloudmonkeys.xyz\r\n\r\n"
        );
        assert!(section(b"Fr\xc3\xb6m: x@y\r\n\r\n").fields.is_empty(), "8-bit names are no field names");
        let only_headers = b"Subject: no body";
        assert_eq!(
            stamp(only_headers, &section(only_headers), "Received: r\r\n", None),
            b"Received: r\r\nSubject: no body"
        );
    }

    #[test]
    fn author_addresses_cover_every_author_field() {
        let addrs = |msg: &[u8]| {
            author_addresses(&section(msg)).map(|list| list.iter().map(ToString::to_string).collect::<Vec<_>>())
        };
        let folded = b"From: \"App, Inc\" <smb1@cloudmonkeys.xyz>,\r\n\tceo@cloudmonkeys.xyz\r\nSender: =?utf-8?q?Sv=C3=A9?= <svc@cloudmonkeys.xyz>\r\n\r\nbody";
        assert_eq!(addrs(folded).unwrap(), ["smb1@cloudmonkeys.xyz", "ceo@cloudmonkeys.xyz", "svc@cloudmonkeys.xyz"]);
        let twice = b"From: a@cloudmonkeys.xyz\r\nFrom: b@evil.example\r\n\r\n";
        assert_eq!(addrs(twice).unwrap(), ["a@cloudmonkeys.xyz", "b@evil.example"]);
        let resent =
            b"From: a@cloudmonkeys.xyz\r\nResent-From: c@evil.example\r\nResent-Sender: d@evil.example\r\n\r\n";
        assert_eq!(addrs(resent).unwrap(), ["a@cloudmonkeys.xyz", "c@evil.example", "d@evil.example"]);
        let quoted = b"From: \"ceo@cloudmonkeys.xyz\" <smb1@cloudmonkeys.xyz>\r\n\r\n";
        assert_eq!(addrs(quoted).unwrap(), ["smb1@cloudmonkeys.xyz"], "a display name is not an address");
        assert!(addrs(b"From: just a name\r\n\r\n").is_err());
        assert!(addrs(b"From: \"ceo@cloudmonkeys.xyz\" :;\r\n\r\n").is_err(), "an empty group names nobody");
        assert!(addrs(b"From:\r\n\r\n").is_err());
        assert_eq!(addrs(b"Subject: no author\r\n\r\n").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn received_header_names_connector_and_auth_and_is_folded() {
        let h = received_header(&TraceInfo {
            helo: "printer(evil)",
            client_ip: "192.168.1.13".parse().unwrap(),
            fqdn: "relay.cloudmonkeys.xyz",
            protocol: "ESMTP",
            queue_id: "abc",
            connector: "SMTP Relay Script",
            tls: None,
            authenticated: false,
            single_recipient: Some("user@cloudmonkeys.xyz"),
            at: OffsetDateTime::UNIX_EPOCH,
        });
        assert!(h.starts_with("Received: from printerevil ([192.168.1.13])\r\n\tby relay.cloudmonkeys.xyz"));
        assert!(h.contains("(connector \"SMTP Relay Script\"; no TLS; anonymous)"));
        assert!(h.ends_with("1970 00:00:00 +0000\r\n"));
        assert!(h.lines().all(|l| l.len() < 100));
    }

    #[test]
    fn stamp_prepends_trace_and_missing_message_id() {
        let message = b"Subject: x\r\n\r\nbody\r\n";
        let out = stamp(message, &section(message), "Received: r\r\n", Some("<id@relay>"));
        assert_eq!(out, b"Received: r\r\nMessage-ID: <id@relay>\r\nSubject: x\r\n\r\nbody\r\n");
        let bare = b"just text\r\n";
        assert_eq!(stamp(bare, &section(bare), "Received: r\r\n", None), b"Received: r\r\n\r\njust text\r\n");
        let empty_first = b"\r\nbody\r\n";
        assert_eq!(stamp(empty_first, &section(empty_first), "Received: r\r\n", None), b"Received: r\r\n\r\nbody\r\n");
    }
}
