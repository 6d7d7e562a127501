//! Outbound delivery to real smart hosts (aiosmtpd, from PyPI: an SMTP server nobody
//! here wrote), with STARTTLS and AUTH: a private CA given to the send connector, an
//! unverified self-signed host under `opportunistic`, the fallback to clear text when a
//! handshake fails, a wrong host name and a wrong pin under `verify`, a wrong password
//! kept as the smart host said it, and XOAUTH2 with tokens from an OAuth2 endpoint. Each
//! delivery's TLS and AUTH are in tracking.

use std::net::SocketAddr;
use std::time::Duration;

use postern::admin::SendConnectorChanges;
use postern::store::{TrackingFilter, TrackingRecord};
use postern_tests::smarthost::{SmartHost, SmartHostOptions, TestPki, TokenEndpoint};
use postern_tests::smtp_client::{queue_id, send_one};
use postern_tests::{TestApp, TestDb, eventually, free_port, seed_anonymous_relay, test_settings, wait_for};

/// A node with the seed's anonymous relay; its send connector "Smart host" for every
/// domain is replaced by `connector` (named "Outbound").
async fn node(connector: SendConnectorChanges) -> (TestApp, SocketAddr) {
    let db = TestDb::new().await;
    let port = free_port();
    let store = db.store().await;
    // The seed's smart host first (a port nothing listens on), then ours instead.
    seed_anonymous_relay(&store, port, SocketAddr::from(([127, 0, 0, 1], free_port()))).await;
    let admin = postern::admin::Admin::new(store, "test", "relay.test");
    admin.remove_send_connector("Smart host", None).await.unwrap();
    let changes =
        SendConnectorChanges { name: Some("Outbound".into()), address_spaces: Some(vec!["*".into()]), ..connector };
    admin.new_send_connector(&changes).await.unwrap();
    let mut settings = test_settings(&db);
    settings.retry_schedule_secs = vec![1];
    let app = TestApp::start(db, settings).await;
    (app, SocketAddr::from(([127, 0, 0, 1], port)))
}

fn to(host: &SmartHost, tls_policy: &str) -> SendConnectorChanges {
    SendConnectorChanges {
        smart_hosts: Some(vec![format!("localhost:{}", host.addr.port())]),
        tls_policy: Some(tls_policy.into()),
        ..Default::default()
    }
}

fn with_password(changes: SendConnectorChanges, password: &str) -> SendConnectorChanges {
    SendConnectorChanges { username: Some(Some("relay".into())), password: Some(Some(password.into())), ..changes }
}

async fn events(app: &TestApp, event_id: &str, queue: uuid::Uuid) -> Vec<TrackingRecord> {
    let filter = TrackingFilter { event_id: Some(event_id.into()), limit: 100, ..TrackingFilter::default() };
    let all = app.admin.store().search_tracking(&filter).await.unwrap();
    all.into_iter().filter(|e| e.queue_id == Some(queue)).collect()
}

/// Waits for the first `event_id` event of message `queue`.
async fn first(app: &TestApp, event_id: &str, queue: uuid::Uuid) -> TrackingRecord {
    let what = format!("a {event_id} event for {queue}");
    wait_for(Duration::from_secs(20), &what, || async { events(app, event_id, queue).await.into_iter().next() }).await
}

#[tokio::test]
async fn a_smart_host_with_a_private_ca_is_verified_against_the_connectors_ca_bundle() {
    postern_tests::require_tool!(Python);
    let pki = TestPki::new();
    let host = SmartHost::start(&SmartHostOptions {
        tls: Some(pki.server("smarthost", &["localhost"])),
        require_tls: true,
        account: Some(("relay".into(), "smart-host-secret".into())),
        ..Default::default()
    });
    let connector = SendConnectorChanges {
        tls_ca_pem: Some(Some(pki.ca_pem.clone())),
        ..with_password(to(&host, "verify"), "smart-host-secret")
    };
    let (app, relay) = node(connector).await;
    let id = queue_id(&send_one(relay, "private ca").await);
    let accepted = host.wait_for(1).await;
    assert!(accepted[0].tls, "delivered inside TLS");
    assert_eq!((accepted[0].auth.as_deref(), accepted[0].login.as_deref()), (Some("PLAIN"), Some("relay")));
    assert!(String::from_utf8_lossy(&accepted[0].data).contains("Subject: private ca"));
    let sent = first(&app, "SEND", id).await;
    let tls = sent.tls.clone().unwrap_or_default();
    assert!(tls.contains("TLSv1.3") && tls.contains("certificate verified (connector CA)"), "{sent:?}");
    assert_eq!(sent.auth_mechanism.as_deref(), Some("PLAIN"));
    assert!(sent.recipient_status[0].contains("via localhost"), "{sent:?}");

    // The same host without the CA bundle: only the system's CAs, which do not know it.
    let without = SendConnectorChanges {
        tls_ca_pem: Some(None),
        password: Some(Some("smart-host-secret".into())),
        ..Default::default()
    };
    app.admin.set_send_connector("Outbound", &without, None).await.unwrap();
    app.wait_for_current_config().await;
    let id = queue_id(&send_one(relay, "no ca").await);
    let deferred = first(&app, "DEFER", id).await;
    let reply = &deferred.recipient_status[0];
    assert!(reply.starts_with("451 4.7.4") && reply.contains("UnknownIssuer"), "{reply}");
    assert_eq!(host.accepted().len(), 1, "nothing more was delivered");
    app.stop().await;
}

#[tokio::test]
async fn opportunistic_tls_encrypts_to_a_self_signed_host_and_falls_back_when_the_handshake_fails() {
    postern_tests::require_tool!(Python);
    let pki = TestPki::new();
    let self_signed = SmartHost::start(&SmartHostOptions {
        tls: Some(pki.self_signed("self-signed", &["mx.partner.example"])),
        ..Default::default()
    });
    let (app, relay) = node(to(&self_signed, "opportunistic")).await;
    let id = queue_id(&send_one(relay, "self signed").await);
    assert!(self_signed.wait_for(1).await[0].tls, "encrypted, though not verified");
    let sent = first(&app, "SEND", id).await;
    assert!(sent.tls.as_deref().is_some_and(|t| t.contains("certificate not verified")), "{sent:?}");
    app.stop().await;

    // A host whose TLS Postern cannot speak (TLS 1.1 only): the handshake fails, and the
    // same host is tried once more in clear text (RFC 7435).
    let old = SmartHost::start(&SmartHostOptions {
        tls: Some(pki.self_signed("old", &["localhost"])),
        max_tls: Some("1.1".into()),
        ..Default::default()
    });
    let (app, relay) = node(to(&old, "opportunistic")).await;
    let id = queue_id(&send_one(relay, "fallback").await);
    let accepted = old.wait_for(1).await;
    assert!(!accepted[0].tls, "delivered in clear text after the failed handshake");
    assert_eq!(first(&app, "SEND", id).await.tls.as_deref(), Some("no TLS"));
    // `encrypt` never falls back: it defers.
    app.admin
        .set_send_connector(
            "Outbound",
            &SendConnectorChanges { tls_policy: Some("encrypt".into()), ..Default::default() },
            None,
        )
        .await
        .unwrap();
    app.wait_for_current_config().await;
    let id = queue_id(&send_one(relay, "must encrypt").await);
    let reply = first(&app, "DEFER", id).await.recipient_status[0].clone();
    assert!(reply.starts_with("451 4.7.4"), "{reply}");
    assert_eq!(old.accepted().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn verify_refuses_a_wrong_host_name_and_a_pin_decides_alone() {
    postern_tests::require_tool!(Python);
    let pki = TestPki::new();
    let (chain, key) = pki.server("elsewhere", &["smtp.elsewhere.example"]);
    let host = SmartHost::start(&SmartHostOptions { tls: Some((chain.clone(), key)), ..Default::default() });
    let connector = SendConnectorChanges { tls_ca_pem: Some(Some(pki.ca_pem.clone())), ..to(&host, "verify") };
    let (app, relay) = node(connector).await;
    let id = queue_id(&send_one(relay, "wrong name").await);
    let reply = first(&app, "DEFER", id).await.recipient_status[0].clone();
    assert!(reply.starts_with("451 4.7.4") && reply.contains("not valid for name"), "{reply}");

    // A pin of another key: refused, naming the key it found.
    let (other, _) = pki.self_signed("other", &["localhost"]);
    let wrong_pin = SendConnectorChanges { tls_pin: Some(Some(pki.pin_of(&other))), ..Default::default() };
    app.admin.set_send_connector("Outbound", &wrong_pin, None).await.unwrap();
    app.wait_for_current_config().await;
    let id = queue_id(&send_one(relay, "wrong pin").await);
    let reply = first(&app, "DEFER", id).await.recipient_status[0].clone();
    assert!(reply.contains("does not match the connector's pin"), "{reply}");
    // The server's own pin: accepted whatever the name (the pin alone decides).
    let right_pin = SendConnectorChanges { tls_pin: Some(Some(pki.pin_of(&chain))), ..Default::default() };
    app.admin.set_send_connector("Outbound", &right_pin, None).await.unwrap();
    app.wait_for_current_config().await;
    let id = queue_id(&send_one(relay, "right pin").await);
    host.wait_for(1).await;
    let sent = first(&app, "SEND", id).await;
    assert!(sent.tls.as_deref().is_some_and(|t| t.contains("pinned key")), "{sent:?}");
    app.stop().await;
}

/// A wrong password is the connector's problem, not the message's: deferred with the
/// smart host's own reply, never bounced.
#[tokio::test]
async fn a_wrong_password_defers_with_the_smart_hosts_reply_and_no_bounce() {
    postern_tests::require_tool!(Python);
    let pki = TestPki::new();
    let host = SmartHost::start(&SmartHostOptions {
        tls: Some(pki.server("smarthost", &["localhost"])),
        account: Some(("relay".into(), "the-right-one".into())),
        ..Default::default()
    });
    let connector = SendConnectorChanges {
        tls_ca_pem: Some(Some(pki.ca_pem.clone())),
        ..with_password(to(&host, "verify"), "a-wrong-one")
    };
    let (app, relay) = node(connector).await;
    let id = queue_id(&send_one(relay, "wrong password").await);
    let deferred = first(&app, "DEFER", id).await;
    let reply = &deferred.recipient_status[0];
    assert!(reply.starts_with("535") && reply.contains("(AUTH)"), "the smart host's reply: {reply}");
    // The retry (1 s later) is refused the same way and still bounces nothing.
    eventually(Duration::from_secs(10), "a second DEFER", || async { events(&app, "DEFER", id).await.len() >= 2 })
        .await;
    assert!(events(&app, "FAIL", id).await.is_empty() && app.tracking("DSN").await.is_empty(), "no bounce");
    assert!(host.accepted().is_empty());
    app.stop().await;
}

/// XOAUTH2 as Exchange Online takes it: a token from the OAuth2 endpoint (client
/// credentials, checked there), used until it is refused, then fetched again once.
#[tokio::test]
async fn xoauth2_signs_in_with_a_token_from_the_oauth2_endpoint_and_refreshes_a_refused_one() {
    postern_tests::require_tool!(Python);
    let pki = TestPki::new();
    let endpoint =
        TokenEndpoint::start(&pki, "client-1", "client-secret", "https://outlook.office365.com/.default").await;
    // The smart host takes only the second token the endpoint hands out.
    let host = SmartHost::start(&SmartHostOptions {
        tls: Some(pki.server("smarthost", &["localhost"])),
        xoauth2: Some(("relay@contoso.example".into(), "tok-2".into())),
        ..Default::default()
    });
    let connector = SendConnectorChanges {
        tls_ca_pem: Some(Some(pki.ca_pem.clone())),
        auth: Some("oauth2".into()),
        username: Some(Some("relay@contoso.example".into())),
        oauth_token_url: Some(endpoint.url.clone()),
        oauth_client_id: Some("client-1".into()),
        oauth_scope: Some("https://outlook.office365.com/.default".into()),
        oauth_client_secret: Some("client-secret".into()),
        ..to(&host, "verify")
    };
    let (app, relay) = node(connector).await;
    let first_id = queue_id(&send_one(relay, "oauth one").await);
    let accepted = host.wait_for(1).await;
    assert_eq!(
        (accepted[0].auth.as_deref(), accepted[0].login.as_deref()),
        (Some("XOAUTH2"), Some("relay@contoso.example"))
    );
    assert_eq!(endpoint.count(), 2, "tok-1 was refused, tok-2 fetched at once");
    assert!(endpoint.requests.lock().unwrap()[0].contains("grant_type=client_credentials"));
    assert_eq!(first(&app, "SEND", first_id).await.auth_mechanism.as_deref(), Some("XOAUTH2"));
    for n in 0..3 {
        send_one(relay, &format!("oauth again {n}")).await;
    }
    host.wait_for(4).await;
    assert_eq!(endpoint.count(), 2, "the token is cached and shared");

    // A client secret the endpoint refuses: deferred, the endpoint's words kept.
    let wrong = SendConnectorChanges {
        oauth_client_secret: Some("a-wrong-secret".into()),
        smart_hosts: Some(vec![format!("localhost:{}", host.addr.port()), "localhost:1".into()]),
        ..Default::default()
    };
    app.admin.set_send_connector("Outbound", &wrong, None).await.unwrap();
    app.wait_for_current_config().await;
    let id = queue_id(&send_one(relay, "bad secret").await);
    let reply = first(&app, "DEFER", id).await.recipient_status[0].clone();
    assert!(reply.starts_with("451 4.7.0") && reply.contains("invalid_client"), "{reply}");
    app.stop().await;
}

/// The system trust store is read as OpenSSL reads it: `SSL_CERT_FILE` adds a private CA
/// for every connector, with no CA bundle on the connector (the real binary, configured
/// with the CLI).
#[tokio::test]
async fn ssl_cert_file_puts_a_private_ca_in_the_system_store() {
    postern_tests::require_tool!(Python);
    use postern_tests::node::{Server, cli_ok, wait_for_listener};
    let pki = TestPki::new();
    let host = SmartHost::start(&SmartHostOptions {
        tls: Some(pki.server("smarthost", &["localhost"])),
        require_tls: true,
        ..Default::default()
    });
    let db = TestDb::new().await;
    let smtp_port = free_port();
    cli_ok(&db, &["accepted-domain", "new", "cloudmonkeys.xyz"], None);
    let smart_host = format!("localhost:{}", host.addr.port());
    cli_ok(
        &db,
        &[
            "send-connector",
            "new",
            "--name",
            "Outbound",
            "--address-spaces",
            "*",
            "--smart-hosts",
            &smart_host,
            "--tls-policy",
            "verify",
        ],
        None,
    );
    let binding = format!("127.0.0.1:{smtp_port}");
    cli_ok(
        &db,
        &[
            "receive-connector",
            "new",
            "--name",
            "Apps",
            "--bindings",
            &binding,
            "--remote-ip-ranges",
            "127.0.0.1",
            "--permission-groups",
            "anonymous",
        ],
        None,
    );
    let ca = pki.ca_file();
    let _server = Server::start_with(
        &db,
        free_port(),
        &[("SSL_CERT_FILE", ca.to_str().unwrap()), ("SSL_CERT_DIR", "/nonexistent")],
    );
    let relay = SocketAddr::from(([127, 0, 0, 1], smtp_port));
    wait_for_listener(relay).await;
    send_one(relay, "system store").await;
    assert!(host.wait_for(1).await[0].tls);
    let tls: String = sqlx::query_scalar("select tls from tracking_events where event_id = 'SEND'")
        .fetch_one(db.store().await.pool())
        .await
        .unwrap();
    assert!(tls.contains("certificate verified (system CAs)"), "{tls}");
}

/// A send connector whose smart host is Postern itself: the message goes round until it
/// carries more Received fields than the limit, is refused with 554 5.4.6, and its
/// sender gets exactly one DSN saying so; an independent parser (Python's `email`) reads
/// the DSN as RFC 3464 says: per recipient Final-Recipient, Action, Status and
/// Diagnostic-Code (Remote-MTA when a next hop refused; here Postern did), and the
/// original headers.
#[tokio::test]
async fn a_loop_through_postern_itself_ends_at_the_hop_limit_with_one_dsn() {
    postern_tests::require_tool!(Python);
    let sink = postern_tests::sink::Sink::start().await;
    let db = TestDb::new().await;
    let port = free_port();
    let store = db.store().await;
    seed_anonymous_relay(&store, port, sink.addr).await;
    let admin = postern::admin::Admin::new(store, "test", "relay.test");
    let looping = SendConnectorChanges {
        name: Some("Back to myself".into()),
        address_spaces: Some(vec!["loop.example".into()]),
        smart_hosts: Some(vec![format!("127.0.0.1:{port}")]),
        tls_policy: Some("none".into()),
        ..Default::default()
    };
    admin.new_send_connector(&looping).await.unwrap();
    relay_to_any_domain(&admin).await;
    let mut settings = test_settings(&db);
    settings.max_received_headers = 8;
    let app = TestApp::start(db, settings).await;
    let relay = SocketAddr::from(([127, 0, 0, 1], port));
    let mut client = postern_tests::smtp_client::RawClient::connect(relay).await;
    assert!(client.start_transaction("app@cloudmonkeys.xyz", "x@loop.example").await.starts_with("250"));
    assert!(client.command("DATA").await.starts_with("354"));
    client.send(b"Subject: round and round\r\nMessage-ID: <loop-1@app>\r\n\r\nhello\r\n.\r\n").await;
    assert!(client.reply().await.starts_with("250 2.6.0"));

    let dsn = sink.wait_for(1).await;
    assert_eq!(dsn[0].sender, "", "a DSN comes from the null sender");
    assert_eq!(dsn[0].recipients, ["app@cloudmonkeys.xyz"]);
    let refused = app.wait_for_events("FAIL", 1).await;
    assert!(refused[0].recipient_status[0].starts_with("554 5.4.6"), "{refused:?}");
    // Once the queue is empty nothing more can happen: then count.
    let store = app.admin.store().clone();
    postern_tests::wait_until_all_done(&store, Duration::from_secs(10)).await;
    // The original (no Received field of its own) and the copies carrying 1 to 8 were
    // taken; the one carrying 9 was refused at the end of its DATA.
    assert_eq!(app.tracking("RECEIVE").await.len(), 9);
    assert_eq!(app.tracking("DSN").await.len(), 1, "one DSN");
    assert_eq!(sink.received().len(), 1);

    let raw = String::from_utf8_lossy(&dsn[0].raw).replace("\r\n..", "\r\n.");
    let script = r#"
import sys, json
from email import message_from_string, policy
m = message_from_string(sys.stdin.read(), policy=policy.default)
assert m.get_content_type() == "multipart/report", m.get_content_type()
assert m.get_param("report-type") == "delivery-status"
parts = list(m.iter_parts())
status = [p for p in parts if p.get_content_type() == "message/delivery-status"][0]
groups = status.get_payload()
per_recipient = [dict(g.items()) for g in groups[1:]]
headers = [p for p in parts if p.get_content_type() == "text/rfc822-headers"][0]
print(json.dumps({"reporting": dict(groups[0].items()), "recipients": per_recipient,
                  "original": headers.get_payload()}))
"#;
    let mut python = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    python.stdin.take().unwrap().write_all(raw.as_bytes()).unwrap();
    let out = python.wait_with_output().unwrap();
    assert!(out.status.success(), "Python could not read the DSN: {}", String::from_utf8_lossy(&out.stderr));
    let read: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(read["reporting"]["Reporting-MTA"], "dns; relay.test");
    let recipient = &read["recipients"][0];
    assert_eq!(recipient["Final-Recipient"], "rfc822; x@loop.example");
    assert_eq!(recipient["Action"], "failed");
    assert_eq!(recipient["Status"], "5.4.6");
    // Postern itself refused to send the looping copy on (no remote MTA was involved).
    assert_eq!(recipient["Remote-MTA"], serde_json::Value::Null);
    assert!(recipient["Diagnostic-Code"].as_str().unwrap().starts_with("smtp; 554 5.4.6"), "{recipient}");
    assert!(read["original"].as_str().unwrap().contains("Message-ID: <loop-1@app>"), "{read}");
    app.stop().await;
}

/// MX answers are the recipient domain's to write: loopback, private, link-local and
/// this node's own addresses are refused (a permanent failure with a DSN, naming why),
/// unless the connector allows private destinations; a null MX fails at once with
/// 556 5.1.10; MX preference is followed, with the implicit MX when there is none.
#[tokio::test]
async fn mx_answers_pointing_inside_are_refused_and_a_null_mx_fails_at_once() {
    use postern::app::Dependencies;
    use postern::delivery::mx::StaticResolver;
    use std::sync::Arc;
    let sink = postern_tests::sink::Sink::start().await;
    let db = TestDb::new().await;
    let port = free_port();
    let store = db.store().await;
    seed_anonymous_relay(&store, port, sink.addr).await;
    let admin = postern::admin::Admin::new(store, "test", "relay.test");
    let by_mx = SendConnectorChanges {
        name: Some("Internet by MX".into()),
        address_spaces: Some(vec!["evil.example".into(), "nullmx.example".into(), "inside.example".into()]),
        smart_hosts: Some(vec![]),
        port: Some(sink.addr.port()),
        tls_policy: Some("none".into()),
        ..Default::default()
    };
    admin.new_send_connector(&by_mx).await.unwrap();
    relay_to_any_domain(&admin).await;
    let resolver = StaticResolver {
        hosts: [
            ("evil.example".to_string(), vec!["mx1.evil.example".to_string(), "mx2.evil.example".to_string()]),
            ("nullmx.example".to_string(), vec![".".to_string()]),
        ]
        .into(),
        addresses: [
            ("mx1.evil.example".to_string(), vec!["127.0.0.1".parse().unwrap(), "169.254.169.254".parse().unwrap()]),
            ("mx2.evil.example".to_string(), vec!["10.0.0.5".parse().unwrap()]),
            ("inside.example".to_string(), vec!["127.0.0.1".parse().unwrap()]),
        ]
        .into(),
    };
    let settings = test_settings(&db);
    let mut deps = Dependencies::production(&settings).unwrap();
    deps.resolver = Arc::new(resolver);
    let app = TestApp::start_with(db, settings, deps).await;
    let relay = SocketAddr::from(([127, 0, 0, 1], port));
    let send_to = |to: &'static str| async move {
        let mut client = postern_tests::smtp_client::RawClient::connect(relay).await;
        assert!(client.start_transaction("app@cloudmonkeys.xyz", to).await.starts_with("250"));
        assert!(client.command("DATA").await.starts_with("354"));
        client.send(b"Subject: where to\r\n\r\nx\r\n.\r\n").await;
        queue_id(&client.reply().await)
    };
    let evil = send_to("victim@evil.example").await;
    let reply = first(&app, "FAIL", evil).await.recipient_status[0].clone();
    assert!(reply.starts_with("550 5.4.4"), "{reply}");
    for refused in ["mx1.evil.example [127.0.0.1]", "[169.254.169.254]", "mx2.evil.example [10.0.0.5]"] {
        assert!(reply.contains(refused), "{refused} named: {reply}");
    }
    let null = send_to("x@nullmx.example").await;
    let reply = first(&app, "FAIL", null).await.recipient_status[0].clone();
    assert!(reply.starts_with("556 5.1.10") && reply.contains("null MX"), "{reply}");
    // The DSNs (to app@cloudmonkeys.xyz, through the '*' smart host) are all that arrived.
    let arrived = sink.wait_for(2).await;
    assert!(arrived.iter().all(|m| m.sender.is_empty()), "only DSNs reached the sink");

    // Allowed on purpose: the implicit MX (no MX records) at loopback is delivered to.
    let allow = SendConnectorChanges { allow_private_destinations: Some(true), ..Default::default() };
    app.admin.set_send_connector("Internet by MX", &allow, None).await.unwrap();
    app.wait_for_current_config().await;
    let inside = send_to("someone@inside.example").await;
    let sent = first(&app, "SEND", inside).await;
    assert!(sent.recipient_status[0].contains("via inside.example[127.0.0.1]"), "{sent:?}");
    app.stop().await;
}

/// A message larger than a spool chunk is written to Postgres while it arrives and
/// delivered byte for byte; a large one refused at its end (a bare LF deep inside, a
/// header section that never ends) leaves no chunk behind; a large message still gets
/// the Send-As check on its headers.
#[tokio::test]
async fn large_messages_are_spooled_while_they_arrive_and_delivered_intact() {
    let (app, sink, relay) = postern_tests::seeded_anonymous_app().await;
    let line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ.-_=+\r\n";
    let mut body = Vec::new();
    while body.len() < 3 * 1024 * 1024 {
        body.extend_from_slice(line);
        body.extend_from_slice(b".a line starting with a dot\r\n");
    }
    let send = |data: Vec<u8>| async move {
        let mut client = postern_tests::smtp_client::RawClient::connect(relay).await;
        assert!(client.start_transaction("app@cloudmonkeys.xyz", "user@cloudmonkeys.xyz").await.starts_with("250"));
        assert!(client.command("DATA").await.starts_with("354"));
        // Dot-stuffed on the wire, as a client must.
        let stuffed = String::from_utf8(data).unwrap().replace("\r\n.", "\r\n..");
        client.send(stuffed.as_bytes()).await;
        client.send(b".\r\n").await;
        client.reply().await
    };
    let mut message = b"Subject: a big scan\r\nFrom: scanner@cloudmonkeys.xyz\r\n\r\n".to_vec();
    message.extend_from_slice(&body);
    let queued = send(message).await;
    assert!(queued.starts_with("250 2.6.0"), "{queued}");
    let delivered = sink.wait_for(1).await;
    let raw = String::from_utf8(delivered[0].raw.clone()).unwrap().replace("\r\n..", "\r\n.");
    let (_, received_body) = raw.split_once("\r\n\r\n").unwrap();
    assert_eq!(received_body.as_bytes(), body.as_slice(), "the body arrives byte for byte");
    assert!(raw.starts_with("Received: "), "stamped as any message");
    let spooled: i64 =
        sqlx::query_scalar("select count(*) from spool_chunks").fetch_one(app.admin.store().pool()).await.unwrap();
    assert_eq!(spooled, 0, "the chunks went into the message");

    // Refused at the end: a bare LF far past the first chunks.
    let mut bad = b"Subject: broken\r\n\r\n".to_vec();
    bad.extend_from_slice(&body);
    bad.extend_from_slice(b"bare\nline\r\n");
    let refused = send(bad).await;
    assert!(refused.starts_with("550 5.5.2"), "{refused}");
    // A header section that never ends within 1 MiB.
    let mut endless = Vec::new();
    while endless.len() < 2 * 1024 * 1024 {
        endless
            .extend_from_slice(b"X-Filler: 0123456789012345678901234567890123456789012345678901234567890123456789\r\n");
    }
    endless.extend_from_slice(b"\r\nbody\r\n");
    let refused = send(endless).await;
    assert!(refused.starts_with("552 5.3.4"), "{refused}");
    let spooled: i64 =
        sqlx::query_scalar("select count(*) from spool_chunks").fetch_one(app.admin.store().pool()).await.unwrap();
    assert_eq!(spooled, 0, "refused messages leave no chunk");
    assert_eq!(sink.received().len(), 1);
    app.stop().await;
}

/// Lets the seed's anonymous connector relay to any domain, so that mail reaches the
/// send connector under test.
async fn relay_to_any_domain(admin: &postern::admin::Admin) {
    let changes = postern::admin::ReceiveConnectorChanges { accept_any_recipient: Some(true), ..Default::default() };
    admin.set_receive_connector("SMTP Relay Script", &changes, None).await.unwrap();
}
