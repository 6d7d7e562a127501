//! Human-readable CLI output.

use crate::store::{
    ProtocolLine, QueuedMessageSummary, ReceiveConnectorRow, SendConnectorRow, ServiceAccountRow, TrackingRecord,
};

pub fn print_receive_connectors(rows: &[ReceiveConnectorRow]) {
    if rows.is_empty() {
        println!("no receive connectors; create one with `postern receive-connector new`");
        return;
    }
    println!("{:<32} {:<8} {:<28} {:<32} PERMISSIONS", "NAME", "ENABLED", "BINDINGS", "REMOTE IP RANGES");
    for r in rows {
        let ranges: Vec<String> =
            r.remote_ip_ranges.iter().map(|n| crate::domain::IpRange::from(*n).to_string()).collect();
        println!(
            "{:<32} {:<8} {:<28} {:<32} {}{}",
            r.name,
            r.enabled,
            r.bindings.join(","),
            ranges.join(","),
            r.permission_groups.join(","),
            if r.accept_any_recipient { " +relay" } else { "" }
        );
    }
}

pub fn print_receive_connector(r: &ReceiveConnectorRow) {
    let ranges: Vec<String> = r.remote_ip_ranges.iter().map(|n| crate::domain::IpRange::from(*n).to_string()).collect();
    println!("Name                 : {}", r.name);
    println!("Enabled              : {}", r.enabled);
    println!("Bindings             : {}", r.bindings.join(", "));
    println!("RemoteIPRanges       : {}", ranges.join(", "));
    println!("PermissionGroups     : {}", r.permission_groups.join(", "));
    println!("AuthMechanisms       : {}", r.auth_mechanisms.join(", "));
    println!("AuthRequiresTls      : {}", r.auth_requires_tls);
    println!("TlsMode              : {}", r.tls_mode);
    println!(
        "TlsCertificate       : {}",
        if r.tls_certificate_pem.is_some() { "configured" } else { "(generated, self-signed)" }
    );
    println!("AcceptAnyRecipient   : {}", r.accept_any_recipient);
    println!("MaxMessageSize       : {}", r.max_message_size);
    println!("MaxRecipients        : {}", r.max_recipients);
    println!("MaxConnections       : {} ({} per source)", r.max_connections, r.max_connections_per_source);
    println!("MessageRatePerSource : {}/min (0 = unlimited)", r.max_messages_per_minute_per_source);
    println!("ConnectionTimeout    : {}s", r.connection_timeout_secs);
    println!("Fqdn                 : {}", r.fqdn);
    println!("Banner               : {}", r.banner.as_deref().unwrap_or("(default)"));
    println!("ProtocolLogging      : {}", r.protocol_logging);
}

pub fn print_send_connector(c: &SendConnectorRow) {
    println!("Name          : {}", c.name);
    println!("Enabled       : {}", c.enabled);
    println!("AddressSpaces : {}", c.address_spaces.join(", "));
    println!(
        "SmartHosts    : {}",
        if c.smart_hosts.is_empty() { "(DNS MX)".to_string() } else { c.smart_hosts.join(", ") }
    );
    println!("Port          : {}", c.port);
    println!("TlsPolicy     : {}", c.tls_policy);
    for ca in c.ca_summaries() {
        println!("TlsCa         : {} (expires {})", ca.subject, ca.not_after);
    }
    if let Some(pin) = &c.tls_pin {
        println!("TlsPin        : {pin}");
    }
    let credentials = match (&c.username, &c.oauth_token_url) {
        (Some(u), Some(url)) => {
            format!("OAuth2 (XOAUTH2) as {u}, client {} from {url}", c.oauth_client_id.as_deref().unwrap_or(""))
        }
        (Some(u), None) => format!("{u} / ********"),
        _ => "(none)".to_string(),
    };
    println!("Credentials   : {credentials}");
    println!("PrivateDest.  : {}", if c.allow_private_destinations { "allowed" } else { "refused" });
    println!("IpPreference  : {}", c.ip_preference);
    println!();
}

pub fn print_queue(messages: &[QueuedMessageSummary]) {
    if messages.is_empty() {
        println!("the queue is empty");
        return;
    }
    for m in messages {
        println!(
            "{}  {}  {} bytes  attempts {}  from <{}>  next {}",
            m.id.simple(),
            m.state,
            m.size,
            m.attempts,
            m.sender,
            m.next_attempt_at
        );
        for ((rcpt, status), reply) in m.recipients.iter().zip(&m.statuses).zip(&m.last_replies) {
            println!("    {rcpt:<40} {status:<10} {}", reply.as_deref().unwrap_or(""));
        }
    }
}

pub fn print_tracking(events: &[TrackingRecord]) {
    if events.is_empty() {
        println!("no matching tracking events");
        return;
    }
    println!(
        "{:<26} {:<8} {:<20} {:<16} {:<30} {:<30} DETAIL",
        "TIMESTAMP", "EVENT", "CONNECTOR", "CLIENT", "SENDER", "RECIPIENTS"
    );
    for e in events {
        let client = e.client_ip.map(|ip| ip.addr().to_string()).unwrap_or_default();
        let detail = e.recipient_status.first().cloned().or_else(|| e.detail.clone()).unwrap_or_default();
        println!(
            "{:<26} {:<8} {:<20} {:<16} {:<30} {:<30} {}",
            e.at.to_string().chars().take(26).collect::<String>(),
            e.event_id,
            e.connector.as_deref().unwrap_or(""),
            client,
            e.sender.as_deref().unwrap_or(""),
            e.recipients.join(","),
            detail
        );
    }
}

fn limit(value: Option<i32>) -> String {
    value.map_or_else(|| "unlimited".to_string(), |v| v.to_string())
}

pub fn print_service_accounts(rows: &[ServiceAccountRow]) {
    if rows.is_empty() {
        println!("no service accounts; create one with `postern service-account new`");
        return;
    }
    println!("{:<32} {:<8} {:<40} LAST USED", "NAME", "ENABLED", "ADDRESS");
    for a in rows {
        let used = a.last_used_at.map_or_else(|| "never".to_string(), |t| t.to_string());
        println!("{:<32} {:<8} {:<40} {}", a.name, a.enabled, a.address, used);
    }
}

pub fn print_service_account((a, grants): &(ServiceAccountRow, Vec<String>)) {
    let ranges: Vec<String> =
        a.remote_ip_ranges.iter().flatten().map(|n| crate::domain::IpRange::from(*n).to_string()).collect();
    println!("Name                 : {}", a.name);
    println!("Address              : {}", a.address);
    println!("Enabled              : {}", a.enabled);
    println!("RemoteIPRanges       : {}", if ranges.is_empty() { "(any)".to_string() } else { ranges.join(", ") });
    println!("MaxMessagesPerMinute : {}", limit(a.max_messages_per_minute));
    println!("MaxMessagesPerDay    : {}", limit(a.max_messages_per_day));
    println!(
        "SendAs               : {}",
        if grants.is_empty() { "(own address only)".to_string() } else { grants.join(", ") }
    );
    println!("LastUsed             : {}", a.last_used_at.map_or_else(|| "never".to_string(), |t| t.to_string()));
}

pub fn print_protocol_log(lines: &[ProtocolLine]) {
    if lines.is_empty() {
        println!("no protocol log lines (is the connector's protocol logging verbose?)");
        return;
    }
    let mut session = None;
    for l in lines {
        if session != Some(l.session_id) {
            session = Some(l.session_id);
            println!("session {} on {:?}: {} -> {}", l.session_id, l.connector, l.remote_endpoint, l.local_endpoint);
        }
        let at = l.at.to_string().chars().take(26).collect::<String>();
        println!("  {at} {:>4} {} {} {}", l.seq, l.event.0, l.data, l.context);
    }
}
