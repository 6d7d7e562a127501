//! What the engine adds to a message: a `Received:` trace header (RFC 5321 §4.4) and a
//! `Message-ID` when the client sent none (RFC 5322 §3.6.4), and the few header values
//! tracking needs.

use std::net::IpAddr;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

use crate::domain::EmailAddress;

/// Header values read from the message for tracking.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HeaderFacts {
    pub message_id: Option<String>,
    pub subject: Option<String>,
    pub from: Option<String>,
}

/// Reads the header section (up to the first empty line), unfolding continuation lines.
pub fn read_facts(body: &[u8]) -> HeaderFacts {
    let mut facts = HeaderFacts::default();
    for (name, value) in header_fields(body) {
        let slot = if name.eq_ignore_ascii_case("message-id") {
            &mut facts.message_id
        } else if name.eq_ignore_ascii_case("subject") {
            &mut facts.subject
        } else if name.eq_ignore_ascii_case("from") {
            &mut facts.from
        } else {
            continue;
        };
        if slot.is_none() {
            *slot = Some(value);
        }
    }
    facts
}

/// The header fields as (name, unfolded value) pairs.
fn header_fields(body: &[u8]) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in body.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let text = String::from_utf8_lossy(line);
        if line[0] == b' ' || line[0] == b'\t' {
            // RFC 5322 §2.2.3: a folded line continues the previous field.
            if let Some((_, value)) = fields.last_mut() {
                value.push(' ');
                value.push_str(text.trim());
            }
            continue;
        }
        match text.split_once(':') {
            Some((name, value)) => fields.push((name.trim().to_string(), value.trim().to_string())),
            // Not a header line: the header section is malformed; stop reading it.
            None => break,
        }
    }
    fields
}

/// Every address in every `From:` and `Sender:` field (RFC 5322 §3.6.2), parsed by
/// mail-parser (folding, comments, quoted names, encoded words, groups). An error means a
/// field is present but holds no readable address, which the Send-As check refuses
/// rather than guesses about.
pub fn author_addresses(body: &[u8]) -> Result<Vec<EmailAddress>, String> {
    use mail_parser::{HeaderName, MessageParser};
    let Some(parsed) = MessageParser::new().parse_headers(body) else { return Ok(Vec::new()) };
    let mut addresses = Vec::new();
    for name in [HeaderName::From, HeaderName::Sender] {
        let field = name.as_str().to_string();
        for value in parsed.header_values(name) {
            let list = value.as_address().ok_or_else(|| format!("{field}: no address"))?;
            for addr in list.iter() {
                let text = addr.address().ok_or_else(|| format!("{field}: a name without an address"))?;
                addresses.push(EmailAddress::parse(text, true).map_err(|e| format!("{field}: {e}"))?);
            }
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
/// Message-ID added at the top of the header section if it had none.
/// A message without a header section (a script that sends bare text) gets an empty
/// line after our headers, so its first lines stay body instead of becoming headers.
pub fn stamp(body: &[u8], received: &str, missing_message_id: Option<&str>) -> Vec<u8> {
    let extra = missing_message_id.map(|id| format!("Message-ID: {id}\r\n")).unwrap_or_default();
    let mut stamped = Vec::with_capacity(received.len() + extra.len() + body.len() + 2);
    stamped.extend_from_slice(received.as_bytes());
    stamped.extend_from_slice(extra.as_bytes());
    if header_fields(body).is_empty() && !body.starts_with(b"\r\n") {
        stamped.extend_from_slice(b"\r\n");
    }
    stamped.extend_from_slice(body);
    stamped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_folded_headers_until_the_body() {
        let msg = b"From: App <app@cloudmonkeys.xyz>\r\nSubject: Anonymous\r\n Test\r\nMessage-ID: <1@x>\r\n\r\nSubject: not a header\r\n";
        let facts = read_facts(msg);
        assert_eq!(facts.subject.as_deref(), Some("Anonymous Test"));
        assert_eq!(facts.message_id.as_deref(), Some("<1@x>"));
        assert_eq!(facts.from.as_deref(), Some("App <app@cloudmonkeys.xyz>"));
        assert_eq!(read_facts(b"no header here\r\n\r\n"), HeaderFacts::default());
    }

    #[test]
    fn author_addresses_cover_every_from_and_sender() {
        let addrs =
            |msg: &[u8]| author_addresses(msg).map(|list| list.iter().map(ToString::to_string).collect::<Vec<_>>());
        let folded = b"From: \"App, Inc\" <smb1@cloudmonkeys.xyz>,\r\n\tceo@cloudmonkeys.xyz\r\nSender: =?utf-8?q?Sv=C3=A9?= <svc@cloudmonkeys.xyz>\r\n\r\nbody";
        assert_eq!(addrs(folded).unwrap(), ["smb1@cloudmonkeys.xyz", "ceo@cloudmonkeys.xyz", "svc@cloudmonkeys.xyz"]);
        let twice = b"From: a@cloudmonkeys.xyz\r\nFrom: b@evil.example\r\n\r\n";
        assert_eq!(addrs(twice).unwrap(), ["a@cloudmonkeys.xyz", "b@evil.example"]);
        assert!(addrs(b"From: just a name\r\n\r\n").is_err());
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
        let out = stamp(b"Subject: x\r\n\r\nbody\r\n", "Received: r\r\n", Some("<id@relay>"));
        assert_eq!(out, b"Received: r\r\nMessage-ID: <id@relay>\r\nSubject: x\r\n\r\nbody\r\n");
        let bare = stamp(b"just text\r\n", "Received: r\r\n", None);
        assert_eq!(bare, b"Received: r\r\n\r\njust text\r\n");
    }
}
