//! Delivery status notifications (RFC 3464, carried in multipart/report, RFC 6522).
//! A DSN is itself queued with the null reverse-path `<>`, so a failing DSN never
//! produces another one (RFC 5321 §6.1, §4.5.5).

use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;
use uuid::Uuid;

/// One recipient that could not be delivered.
#[derive(Debug, Clone)]
pub struct FailedRecipient {
    pub address: String,
    pub reply: String,
    /// The next hop that refused it, when one did (RFC 3464 §2.3.5 Remote-MTA).
    pub remote_mta: Option<String>,
}

/// What the DSN reports on.
#[derive(Debug)]
pub struct BounceInput<'a> {
    pub reporting_mta: &'a str,
    pub original_sender: &'a str,
    pub original_queue_id: Uuid,
    pub original_body: &'a [u8],
    pub received_at: OffsetDateTime,
    pub failed: &'a [FailedRecipient],
    pub dsn_id: Uuid,
    pub now: OffsetDateTime,
}

/// The DSN as a message to queue: from the null reverse-path `<>` to the original sender.
/// `dsn_for` links it to the original while that is still stored.
pub fn dsn_message(
    input: &BounceInput<'_>,
    expires_at: OffsetDateTime,
    config_generation: Option<i64>,
    dsn_for: Option<Uuid>,
) -> crate::store::NewMessage {
    crate::store::NewMessage {
        id: input.dsn_id,
        sender: None,
        recipients: vec![input.original_sender.to_string()],
        body: build(input),
        message_id: Some(format!("<{}@{}>", input.dsn_id.simple(), input.reporting_mta)),
        subject: Some("Undeliverable: delivery has failed".into()),
        expires_at,
        receive_connector: "(internal)".into(),
        client_ip: None,
        client_helo: None,
        auth_as: "internal",
        account: None,
        session_id: None,
        config_generation,
        dsn_for,
        spooled: None,
        tracking: Vec::new(),
    }
}

/// The RFC 3463 status code in a reply ("550 5.1.1 ..." → "5.1.1"), or one derived from
/// the reply class.
pub fn status_code(reply: &str) -> String {
    let found = reply.split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ':').find(|w| {
        let parts: Vec<&str> = w.split('.').collect();
        parts.len() == 3
            && matches!(parts[0], "2" | "4" | "5")
            && parts.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
    });
    match found {
        Some(code) => code.to_string(),
        None if reply.contains("(4") || reply.starts_with('4') => "4.0.0".to_string(),
        None => "5.0.0".to_string(),
    }
}

/// Builds the DSN message: a readable part, the machine-readable delivery-status part,
/// and the original headers (not the body: it may be large or sensitive).
pub fn build(input: &BounceInput<'_>) -> Vec<u8> {
    let boundary = format!("postern-dsn-{}", input.dsn_id.simple());
    let date = input.now.format(&Rfc2822).unwrap_or_default();
    let arrival = input.received_at.format(&Rfc2822).unwrap_or_default();
    let mta = input.reporting_mta;
    let mut text = String::new();
    let list: Vec<String> =
        input.failed.iter().map(|f| format!("  {}\r\n    {}\r\n", f.address, one_line(&f.reply))).collect();
    text.push_str(&format!(
        "From: Mail Delivery System <MAILER-DAEMON@{mta}>\r\n\
         To: <{sender}>\r\n\
         Subject: Undeliverable: delivery has failed\r\n\
         Date: {date}\r\n\
         Message-ID: <{dsn}@{mta}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         Postern at {mta} could not deliver your message (queue id {queue}) to:\r\n\
         \r\n{list}\r\n\
         --{boundary}\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; {mta}\r\n\
         X-Postern-Queue-ID: {queue}\r\n\
         Arrival-Date: {arrival}\r\n",
        sender = input.original_sender,
        dsn = input.dsn_id.simple(),
        queue = input.original_queue_id.simple(),
        list = list.concat(),
    ));
    for failed in input.failed {
        text.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {}\r\nAction: failed\r\nStatus: {}\r\n",
            failed.address,
            status_code(&failed.reply),
        ));
        if let Some(remote) = &failed.remote_mta {
            text.push_str(&format!("Remote-MTA: dns; {}\r\n", one_line(remote)));
        }
        text.push_str(&format!("Diagnostic-Code: smtp; {}\r\n", one_line(&failed.reply)));
    }
    text.push_str(&format!("\r\n--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"));
    let mut out = text.into_bytes();
    out.extend_from_slice(header_section(input.original_body));
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// The original message's header section as the engine reads it, never the body.
fn header_section(body: &[u8]) -> &[u8] {
    crate::smtp::headers::HeaderSection::parse(body).map_or(&[], |section| section.header_bytes(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_come_from_the_reply_or_its_class() {
        assert_eq!(status_code("550 5.1.1 <x@y>: Recipient address rejected"), "5.1.1");
        assert_eq!(status_code("550 user unknown"), "5.0.0");
        assert_eq!(status_code("451 try later"), "4.0.0");
        assert_eq!(status_code("451 4.4.1 connect: Connection refused (mx.example:25)"), "4.4.1");
    }

    #[test]
    fn dsn_is_a_multipart_report_with_the_original_headers_only() {
        let original = b"Subject: secret\r\nFrom: a@b.example\r\n\r\nbody must not appear\r\n";
        let dsn = build(&BounceInput {
            reporting_mta: "relay.example",
            original_sender: "a@b.example",
            original_queue_id: Uuid::nil(),
            original_body: original,
            received_at: OffsetDateTime::UNIX_EPOCH,
            failed: &[FailedRecipient {
                address: "x@y.example".into(),
                reply: "550 5.1.1 unknown".into(),
                remote_mta: Some("mx.y.example".into()),
            }],
            dsn_id: Uuid::nil(),
            now: OffsetDateTime::UNIX_EPOCH,
        });
        let text = String::from_utf8(dsn).unwrap();
        assert!(text.contains("Content-Type: multipart/report; report-type=delivery-status;"));
        assert!(text.contains("Final-Recipient: rfc822; x@y.example\r\nAction: failed\r\nStatus: 5.1.1\r\n"));
        assert!(text.contains("Remote-MTA: dns; mx.y.example\r\nDiagnostic-Code: smtp; 550 5.1.1 unknown"));
        assert!(text.contains("Subject: secret"));
        assert!(!text.contains("body must not appear"));
        assert_eq!(header_section(b"no headers at all\r\nsecret\r\n"), b"");
        assert_eq!(header_section(b"A: 1\r\n b\r\nbody without blank line\r\n"), b"A: 1\r\n b\r\n");
        let bytes = text.as_bytes();
        assert!(bytes.iter().enumerate().all(|(i, &b)| b != b'\n' || (i > 0 && bytes[i - 1] == b'\r')), "CRLF only");
    }
}
