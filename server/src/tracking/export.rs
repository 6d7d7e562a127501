//! Exports in Exchange's log layouts, for admins who keep their scripts: the message
//! tracking log as MSGTRK CSV and the protocol log as RECV CSV (W3C-style `#` headers,
//! then CSV rows; multi-valued fields joined with `;`). Postern's own facts that
//! Exchange has no column for go into `custom-data` as `S:Name=Value` pairs, as Exchange
//! does for its extensions.

use std::io::Write;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::store::{ProtocolLine, TrackingRecord};

const MSGTRK_FIELDS: [&str; 30] = [
    "date-time",
    "client-ip",
    "client-hostname",
    "server-ip",
    "server-hostname",
    "source-context",
    "connector-id",
    "source",
    "event-id",
    "internal-message-id",
    "message-id",
    "network-message-id",
    "recipient-address",
    "recipient-status",
    "total-bytes",
    "recipient-count",
    "related-recipient-address",
    "reference",
    "message-subject",
    "sender-address",
    "return-path",
    "message-info",
    "directionality",
    "tenant-id",
    "original-client-ip",
    "original-server-ip",
    "custom-data",
    "transport-traffic-type",
    "log-id",
    "schema-version",
];

const RECV_FIELDS: [&str; 9] = [
    "date-time",
    "connector-id",
    "session-id",
    "sequence-number",
    "local-endpoint",
    "remote-endpoint",
    "event",
    "data",
    "context",
];

fn header(out: &mut dyn Write, log_type: &str, fields: &[&str]) -> std::io::Result<()> {
    let now = OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default();
    writeln!(out, "#Software: Postern {}", env!("CARGO_PKG_VERSION"))?;
    writeln!(out, "#Version: 15.02.0000.000")?;
    writeln!(out, "#Log-type: {log_type}")?;
    writeln!(out, "#Date: {now}")?;
    writeln!(out, "#Fields: {}", fields.join(","))
}

fn timestamp(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

/// The tracking events as an Exchange MSGTRK log.
pub fn write_msgtrk(out: &mut dyn Write, events: &[TrackingRecord]) -> std::io::Result<()> {
    header(out, "Message Tracking Log", &MSGTRK_FIELDS)?;
    let mut csv = csv::WriterBuilder::new().has_headers(false).from_writer(out);
    for e in events {
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        let ip = |v: &Option<ipnet::IpNet>| v.map(|n| n.addr().to_string()).unwrap_or_default();
        let mut custom = Vec::new();
        for (name, value) in [
            ("AuthAs", e.auth_as.clone()),
            ("Account", e.account.clone()),
            ("AuthMechanism", e.auth_mechanism.clone()),
            ("Tls", e.tls.clone()),
            ("ConfigGeneration", e.config_generation.map(|g| g.to_string())),
            ("SessionId", e.session_id.map(|s| s.to_string())),
        ] {
            if let Some(v) = value {
                custom.push(format!("S:{name}={v}"));
            }
        }
        let row: [String; 30] = [
            timestamp(e.at),
            ip(&e.client_ip),
            opt(&e.client_hostname),
            ip(&e.server_ip),
            opt(&e.server_hostname),
            opt(&e.detail),
            opt(&e.connector),
            e.source.clone(),
            e.event_id.clone(),
            e.queue_id.map(|q| q.simple().to_string()).unwrap_or_default(),
            opt(&e.message_id),
            String::new(),
            e.recipients.join(";"),
            e.recipient_status.join(";"),
            e.size.map(|s| s.to_string()).unwrap_or_default(),
            e.recipient_count.map(|c| c.to_string()).unwrap_or_default(),
            String::new(),
            opt(&e.reference),
            opt(&e.subject),
            e.header_from.clone().or_else(|| e.sender.clone()).unwrap_or_default(),
            opt(&e.sender),
            String::new(),
            "Originating".into(),
            String::new(),
            String::new(),
            String::new(),
            custom.join(";"),
            String::new(),
            e.id.to_string(),
            "15.02.0000.000".into(),
        ];
        csv.write_record(&row)?;
    }
    csv.flush()
}

/// Protocol log lines as an Exchange SmtpReceive (RECV) log.
pub fn write_recv(out: &mut dyn Write, lines: &[ProtocolLine]) -> std::io::Result<()> {
    header(out, "SMTP Receive Protocol Log", &RECV_FIELDS)?;
    let mut csv = csv::WriterBuilder::new().has_headers(false).from_writer(out);
    for l in lines {
        csv.write_record([
            timestamp(l.at),
            l.connector.clone(),
            l.session_id.simple().to_string(),
            l.seq.to_string(),
            l.local_endpoint.clone(),
            l.remote_endpoint.clone(),
            l.event.0.to_string(),
            l.data.clone(),
            l.context.clone(),
        ])?;
    }
    csv.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recv_rows_are_quoted_csv_under_exchange_headers() {
        let line = ProtocolLine {
            at: OffsetDateTime::UNIX_EPOCH,
            session_id: uuid::Uuid::nil(),
            seq: 3,
            connector: "SMTP Relay, Script".into(),
            local_endpoint: "127.0.0.1:2526".into(),
            remote_endpoint: "192.168.1.13:40000".into(),
            event: crate::store::ProtocolEvent("<"),
            data: "MAIL FROM:<a@b.example> \"x\"".into(),
            context: String::new(),
        };
        let mut out = Vec::new();
        write_recv(&mut out, &[line]).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("#Fields: date-time,connector-id,session-id,sequence-number,"));
        let row = text.lines().last().unwrap();
        assert_eq!(
            row,
            "1970-01-01T00:00:00Z,\"SMTP Relay, Script\",00000000000000000000000000000000,3,127.0.0.1:2526,\
             192.168.1.13:40000,<,\"MAIL FROM:<a@b.example> \"\"x\"\"\","
        );
    }
}
