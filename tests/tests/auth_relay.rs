//! The seed's PART 2 end to end: the "SMTP Auth Relay Script" connector (STARTTLS
//! required, basic auth after TLS only, authenticated senders), the service account
//! svc-mailer and its Send-As right on smb1. Real rustls and lettre clients, a real
//! server, real Postgres.

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use postern::admin::{ReceiveConnectorChanges, ServiceAccountChanges};
use postern_tests::sink::Sink;
use postern_tests::smtp_client::RawClient;
use postern_tests::{
    SVC_PASSWORD, TestApp, TestDb, free_port, generated_certificate, seed_auth_relay, test_settings, tls_client,
};

struct AuthRelay {
    app: TestApp,
    sink: Sink,
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    /// The node's generated certificate, for lettre's root store.
    certificate_pem: String,
}

/// The TLS server name: the connector's FQDN (the node's hostname in the tests).
const FQDN: &str = "relay.test";

async fn auth_relay() -> AuthRelay {
    let sink = Sink::start().await;
    let db = TestDb::new().await;
    let port = free_port();
    seed_auth_relay(&db.store().await, port, sink.addr).await;
    let mut settings = test_settings(&db);
    // Short tarpit steps keep the throttling test quick; the thresholds are the defaults.
    settings.auth_failure_delay_ms = 20;
    let app = TestApp::start(db, settings).await;
    let tls = tls_client(app.admin.store(), FQDN).await;
    let certificate_pem = generated_certificate(app.admin.store(), FQDN).await;
    AuthRelay { app, sink, addr: SocketAddr::from(([127, 0, 0, 1], port)), tls, certificate_pem }
}

fn plain(login: &str, password: &str) -> String {
    STANDARD.encode(format!("\0{login}\0{password}"))
}

impl AuthRelay {
    /// Connected, greeted, STARTTLS done and EHLO said again inside TLS.
    async fn tls_session(&self) -> RawClient {
        self.tls_session_from("127.0.0.1").await
    }

    async fn tls_session_from(&self, ip: &str) -> RawClient {
        let mut c = RawClient::connect_from(ip, self.addr).await;
        assert!(c.reply().await.starts_with("220"));
        c.ehlo("app.test").await;
        c.starttls(Arc::clone(&self.tls), FQDN).await;
        c.ehlo("app.test").await;
        c
    }

    async fn signed_in(&self) -> RawClient {
        let mut c = self.tls_session().await;
        assert_eq!(
            c.command(&format!("AUTH PLAIN {}", plain("svc-mailer", SVC_PASSWORD))).await,
            "235 2.7.0 Authentication successful"
        );
        c
    }

    fn lettre(&self, mechanism: Mechanism, password: &str) -> AsyncSmtpTransport<Tokio1Executor> {
        let cert = Certificate::from_pem(self.certificate_pem.as_bytes()).unwrap();
        let tls = TlsParameters::builder(FQDN.into()).add_root_certificate(cert).build_rustls().unwrap();
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(self.addr.ip().to_string())
            .port(self.addr.port())
            .tls(Tls::Required(tls))
            .credentials(Credentials::new("svc-mailer".into(), password.into()))
            .authentication(vec![mechanism])
            .build()
    }
}

fn message(from: &str, to: &str) -> Message {
    Message::builder()
        .from(from.parse::<Mailbox>().unwrap())
        .to(to.parse::<Mailbox>().unwrap())
        .subject("Authenticated Test")
        .body(String::from("Test"))
        .unwrap()
}

#[tokio::test]
async fn seed_send_as_smb1_with_starttls_and_auth_is_delivered_and_tracked() {
    let relay = auth_relay().await;
    for mechanism in [Mechanism::Plain, Mechanism::Login] {
        let client = relay.lettre(mechanism, SVC_PASSWORD);
        let response = client.send(message("smb1@cloudmonkeys.xyz", "someone@gmail.example")).await.unwrap();
        assert_eq!(response.code().to_string(), "250");
    }
    let delivered = relay.sink.wait_for(2).await;
    assert_eq!(delivered[0].sender, "smb1@cloudmonkeys.xyz");
    assert_eq!(delivered[0].recipients, ["someone@gmail.example"], "authenticated senders may relay");
    let text = String::from_utf8_lossy(&delivered[0].raw);
    assert!(text.contains("with ESMTPSA id"), "{text}");
    assert!(text.contains("TLS1.3 TLS13_"), "{text}");
    assert!(text.contains("; authenticated)") && !text.contains("svc-mailer"), "the account stays private: {text}");

    let received = relay.app.wait_for_events("RECEIVE", 2).await;
    let mechanisms: Vec<Option<&str>> = received.iter().map(|e| e.auth_mechanism.as_deref()).collect();
    assert!(mechanisms.contains(&Some("plain")) && mechanisms.contains(&Some("login")), "{mechanisms:?}");
    for event in &received {
        assert_eq!(event.auth_as.as_deref(), Some("authenticated"));
        assert_eq!(event.account.as_deref(), Some("svc-mailer"));
        assert!(event.tls.as_deref().is_some_and(|t| t.starts_with("TLS1.3 ")), "{:?}", event.tls);
    }
    relay.app.stop().await;
}

#[tokio::test]
async fn before_tls_auth_is_hidden_and_mail_needs_starttls() {
    let relay = auth_relay().await;
    let mut c = RawClient::connect(relay.addr).await;
    assert!(c.reply().await.starts_with("220"));
    let keywords = c.ehlo("app.test").await;
    assert!(keywords.contains(&"STARTTLS".to_string()), "{keywords:?}");
    assert!(!keywords.iter().any(|k| k.starts_with("AUTH")), "AUTH offered in clear text: {keywords:?}");
    let auth = c.command(&format!("AUTH PLAIN {}", plain("svc-mailer", SVC_PASSWORD))).await;
    assert_eq!(auth, "538 5.7.11 Encryption required for requested authentication mechanism");
    assert_eq!(c.command("MAIL FROM:<smb1@cloudmonkeys.xyz>").await, "530 5.7.0 Must issue a STARTTLS command first");

    c.starttls(Arc::clone(&relay.tls), FQDN).await;
    let keywords = c.ehlo("app.test").await;
    assert!(keywords.contains(&"AUTH LOGIN PLAIN".to_string()), "{keywords:?}");
    assert!(!keywords.contains(&"STARTTLS".to_string()));
    // The seed: no credentials on the auth connector.
    assert_eq!(
        c.command("MAIL FROM:<smb1@cloudmonkeys.xyz>").await,
        "530 5.7.57 SMTP; Client was not authenticated to send anonymous mail during MAIL FROM"
    );
    assert_eq!(c.command("STARTTLS").await, "503 5.5.1 TLS already active");
    relay.app.stop().await;
}

#[tokio::test]
async fn plaintext_pipelined_after_starttls_is_discarded() {
    let relay = auth_relay().await;
    let mut c = RawClient::connect(relay.addr).await;
    assert!(c.reply().await.starts_with("220"));
    c.ehlo("app.test").await;
    // A man in the middle appends commands to the clear-text STARTTLS (CVE-2011-0411).
    c.send(b"STARTTLS\r\nEHLO evil\r\nAUTH PLAIN AHN2Yy1tYWlsZXIAeA==\r\nMAIL FROM:<ceo@cloudmonkeys.xyz>\r\n").await;
    assert!(c.reply().await.starts_with("220 2.0.0"));
    c.upgrade(Arc::clone(&relay.tls), FQDN).await.unwrap();
    // Inside TLS, the first reply must answer our command, not an injected one, and the
    // session must have started over (no EHLO, no MAIL in force).
    assert_eq!(c.command("MAIL FROM:<smb1@cloudmonkeys.xyz>").await, "503 5.5.1 Send EHLO or HELO first");
    c.ehlo("app.test").await;
    assert!(c.command("RCPT TO:<x@gmail.example>").await.starts_with("503 5.5.1"));
    assert!(c.command("MAIL FROM:<smb1@cloudmonkeys.xyz>").await.starts_with("530 5.7.57"));
    relay.app.stop().await;
}

#[tokio::test]
async fn send_as_outside_the_grants_is_refused_at_mail_and_in_the_headers() {
    let relay = auth_relay().await;
    let refused =
        relay.lettre(Mechanism::Plain, SVC_PASSWORD).send(message("smb2@cloudmonkeys.xyz", "x@gmail.example")).await;
    let error = refused.unwrap_err().to_string();
    assert!(error.contains("5.7.60"), "{error}");

    let mut c = relay.signed_in().await;
    assert_eq!(
        c.command("MAIL FROM:<ceo@cloudmonkeys.xyz>").await,
        "550 5.7.60 SMTP; Client does not have permissions to send as this sender"
    );
    // The envelope passes; the header tries to forge the author.
    assert!(c.command("MAIL FROM:<smb1@cloudmonkeys.xyz>").await.starts_with("250"));
    assert!(c.command("RCPT TO:<x@gmail.example>").await.starts_with("250"));
    assert!(c.command("DATA").await.starts_with("354"));
    let forged = c.command("From: CEO <ceo@cloudmonkeys.xyz>\r\nSubject: pay this\r\n\r\nurgent\r\n.").await;
    assert!(forged.starts_with("550 5.7.60"), "{forged}");
    // The same author hidden where some parsers do not look: after a white-space line
    // (which would continue Postern's Received), behind an unquoted name with an @,
    // after a ';', and in Resent-From.
    for hidden in [
        " \r\nFrom: CEO <ceo@cloudmonkeys.xyz>\r\n\r\npay\r\n.",
        "Subject: x\r\n \r\nFrom: CEO <ceo@cloudmonkeys.xyz>\r\n\r\npay\r\n.",
        "From: ceo@cloudmonkeys.xyz <smb1@cloudmonkeys.xyz>\r\n\r\npay\r\n.",
        "From: smb1@cloudmonkeys.xyz;ceo@cloudmonkeys.xyz\r\n\r\npay\r\n.",
        "From: smb1@cloudmonkeys.xyz\r\nResent-From: ceo@cloudmonkeys.xyz\r\n\r\npay\r\n.",
    ] {
        assert!(c.command("MAIL FROM:<smb1@cloudmonkeys.xyz>").await.starts_with("250"));
        assert!(c.command("RCPT TO:<x@gmail.example>").await.starts_with("250"));
        assert!(c.command("DATA").await.starts_with("354"));
        let refused = c.command(hidden).await;
        assert!(refused.starts_with("550 5.7.60") || refused.starts_with("554 5.6.0"), "{hidden:?}: {refused}");
    }
    // Its own address is always allowed, in the envelope and in From.
    assert!(c.command("MAIL FROM:<svc-mailer@cloudmonkeys.xyz>").await.starts_with("250"));
    assert!(c.command("RCPT TO:<x@gmail.example>").await.starts_with("250"));
    assert!(c.command("DATA").await.starts_with("354"));
    assert!(c.command("From: svc-mailer@cloudmonkeys.xyz\r\n\r\nok\r\n.").await.starts_with("250"));

    let rejects = relay.app.wait_for_events("REJECT", 8).await;
    assert!(rejects.iter().all(|e| e.account.as_deref() == Some("svc-mailer") || e.account.is_none()));
    assert!(rejects.iter().any(|e| e.detail.as_deref().is_some_and(|d| d.contains("From/Sender header"))));
    assert_eq!(relay.sink.wait_for(1).await.len(), 1);
    relay.app.stop().await;
}

#[tokio::test]
async fn wrong_passwords_get_535_then_throttling_without_locking_out_the_owner() {
    let relay = auth_relay().await;
    let wrong = format!("AUTH PLAIN {}", plain("svc-mailer", "not the password"));
    let unknown = format!("AUTH PLAIN {}", plain("nobody", SVC_PASSWORD));
    let mut c = relay.tls_session().await;
    assert_eq!(c.command(&wrong).await, "535 5.7.8 Authentication credentials invalid");
    assert_eq!(c.command(&unknown).await, "535 5.7.8 Authentication credentials invalid", "same answer for no account");
    assert_eq!(c.command(&wrong).await, "421 4.7.0 Too many errors on this connection");
    assert_eq!(c.reply().await, "EOF");

    // Seven more failures from 127.0.0.1 reach the lockout threshold (10).
    for _ in 0..3 {
        let mut c = relay.tls_session().await;
        for _ in 0..2 {
            c.command(&wrong).await;
        }
    }
    let mut c = relay.tls_session().await;
    c.command(&wrong).await;
    let locked = c.command(&format!("AUTH PLAIN {}", plain("svc-mailer", SVC_PASSWORD))).await;
    assert_eq!(locked, "454 4.7.0 Too many authentication failures; try again later");

    // The owner on another machine is not locked out by failures from this one (the
    // source's lockout; the account's is crossed in the next test).
    let mut owner = relay.tls_session_from("127.0.0.2").await;
    assert!(owner.command(&format!("AUTH PLAIN {}", plain("svc-mailer", SVC_PASSWORD))).await.starts_with("235"));

    let status = relay.app.status().await;
    let lockouts = status["auth_lockouts"].as_array().unwrap();
    assert!(lockouts.iter().any(|l| l["kind"] == "ip" && l["key"] == "127.0.0.1"), "{status}");
    let rejects = relay.app.wait_for_events("REJECT", 10).await;
    let throttled = relay.app.wait_for_events("THROTTLE", 1).await;
    assert!(throttled[0].detail.as_deref().is_some_and(|d| d.starts_with("454 4.7.0")), "{throttled:?}");
    assert!(rejects.iter().any(|e| e.detail.as_deref().is_some_and(|d| d.contains("no such service account"))));
    assert!(rejects.iter().any(|e| e.detail.as_deref().is_some_and(|d| d.contains("wrong password"))));
    relay.app.stop().await;
}

/// The account lockout (20 failures in the window, `auth/throttle.rs`) crossed end to end.
/// 24 wrong passwords for svc-mailer come from three attacker addresses, 8 each: below the
/// per-source lockout (10), so whatever refuses them is the account's lockout. The
/// attacker is then refused even with the right password, from its own addresses and
/// from a fresh one; the owner, who signed in from 127.0.0.2 before the attack, still
/// gets in there. Fails if the account lockout never engages (the right password would
/// get 235 from the fresh address) or if it shuts out the trusted owner as well.
#[tokio::test]
async fn an_account_locked_out_by_an_attack_still_admits_its_owner_from_a_trusted_address() {
    let relay = auth_relay().await;
    let right = format!("AUTH PLAIN {}", plain("svc-mailer", SVC_PASSWORD));
    let wrong = format!("AUTH PLAIN {}", plain("svc-mailer", "not the password"));
    const LOCKED: &str = "454 4.7.0 Too many authentication failures; try again later";
    // The application signs in from its usual address: that source becomes trusted.
    let mut owner = relay.tls_session_from("127.0.0.2").await;
    assert_eq!(owner.command(&right).await, "235 2.7.0 Authentication successful");
    drop(owner);

    // Two tries per connection (a third error would end it), four connections per address.
    let mut replies = Vec::new();
    for attacker in ["127.0.0.3", "127.0.0.4", "127.0.0.5"] {
        for _ in 0..4 {
            let mut c = relay.tls_session_from(attacker).await;
            for _ in 0..2 {
                replies.push(c.command(&wrong).await);
            }
        }
    }
    // The 20th failure starts the lockout; the four after it are refused uncounted.
    let expected: Vec<&str> =
        std::iter::repeat_n("535 5.7.8 Authentication credentials invalid", 20).chain([LOCKED; 4]).collect();
    assert_eq!(replies, expected);

    // The attacker is refused even with the right password: from an address that failed,
    // and from one that never did (so the source's own count is not what refuses it).
    for attacker in ["127.0.0.3", "127.0.0.6"] {
        let mut c = relay.tls_session_from(attacker).await;
        assert_eq!(c.command(&right).await, LOCKED, "from {attacker}");
    }
    let status = relay.app.status().await;
    let lockouts = status["auth_lockouts"].as_array().unwrap();
    assert!(lockouts.iter().any(|l| l["kind"] == "account" && l["key"] == "svc-mailer"), "{status}");
    assert!(!lockouts.iter().any(|l| l["kind"] == "ip"), "no address reached its own lockout: {status}");

    // The owner, from the address it signed in from before, is not locked out, and mails.
    let mut owner = relay.tls_session_from("127.0.0.2").await;
    assert_eq!(owner.command(&right).await, "235 2.7.0 Authentication successful");
    assert!(owner.command("MAIL FROM:<smb1@cloudmonkeys.xyz>").await.starts_with("250"));
    relay.app.stop().await;
}

#[tokio::test]
async fn malformed_and_cancelled_auth_exchanges() {
    let relay = auth_relay().await;
    let mut c = relay.tls_session().await;
    assert_eq!(c.command("AUTH PLAIN not-base64!").await, "501 5.5.2 Cannot decode response");
    assert_eq!(c.command("AUTH LOGIN").await, "334 VXNlcm5hbWU6");
    assert_eq!(c.command("*").await, "501 5.7.0 Authentication cancelled");
    let mut c = relay.tls_session().await;
    assert_eq!(c.command("AUTH DIGEST-MD5").await, "504 5.5.4 Unrecognized authentication type");
    assert_eq!(c.command("AUTH PLAIN").await, "334");
    assert!(c.command(&plain("svc-mailer", SVC_PASSWORD)).await.starts_with("235"));
    assert_eq!(c.command("AUTH PLAIN").await, "503 5.5.1 Already authenticated");
    relay.app.stop().await;
}

#[tokio::test]
async fn a_changed_password_or_disabled_account_counts_at_once_despite_the_cache() {
    let relay = auth_relay().await;
    let auth = |password: &str| format!("AUTH PLAIN {}", plain("svc-mailer", password));
    // Signed in once: the verification is cached. The session stays open.
    let mut open = relay.signed_in().await;
    let new_password = "An0ther-Secret-Passw0rd";
    let change = ServiceAccountChanges { password: Some(new_password.into()), ..Default::default() };
    relay.app.admin.set_service_account("svc-mailer", &change, None).await.unwrap();
    relay.app.wait_for_current_config().await;
    let mut c = relay.tls_session().await;
    assert!(c.command(&auth(SVC_PASSWORD)).await.starts_with("535"), "the old password no longer works");
    assert!(c.command(&auth(new_password)).await.starts_with("235"));
    // The session signed in with the old password loses its sign-in at its next MAIL.
    assert!(open.command("MAIL FROM:<smb1@cloudmonkeys.xyz>").await.starts_with("530 5.7.57"));

    let disable = ServiceAccountChanges { enabled: Some(false), ..Default::default() };
    relay.app.admin.set_service_account("svc-mailer", &disable, None).await.unwrap();
    relay.app.wait_for_current_config().await;
    let mut c = relay.tls_session().await;
    assert!(c.command(&auth(new_password)).await.starts_with("535"), "a disabled account is refused");
    relay.app.stop().await;
}

#[tokio::test]
async fn implicit_tls_connector_greets_inside_tls() {
    let relay = auth_relay().await;
    let port = free_port();
    relay
        .app
        .admin
        .new_receive_connector(&ReceiveConnectorChanges {
            name: Some("Submission TLS".into()),
            bindings: Some(vec![format!("127.0.0.1:{port}")]),
            remote_ip_ranges: Some(vec!["127.0.0.1".into()]),
            auth_mechanisms: Some(vec!["basic-auth-require-tls".into()]),
            permission_groups: Some(vec!["authenticated".into()]),
            tls_mode: Some("implicit".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    relay.app.wait_for_current_config().await;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut c = RawClient::connect_tls(addr, Arc::clone(&relay.tls), FQDN).await;
    assert!(c.reply().await.starts_with("220 relay.test"));
    let keywords = c.ehlo("app.test").await;
    assert!(keywords.contains(&"AUTH LOGIN PLAIN".to_string()) && !keywords.contains(&"STARTTLS".to_string()));
    assert!(c.command(&format!("AUTH PLAIN {}", plain("svc-mailer", SVC_PASSWORD))).await.starts_with("235"));
    relay.app.stop().await;
}

#[tokio::test]
async fn submission_limits_of_an_account_answer_421_4_4_2() {
    let relay = auth_relay().await;
    let limit = ServiceAccountChanges { max_messages_per_minute: Some(1), ..Default::default() };
    relay.app.admin.set_service_account("svc-mailer", &limit, None).await.unwrap();
    relay.app.wait_for_current_config().await;
    let client = relay.lettre(Mechanism::Plain, SVC_PASSWORD);
    client.send(message("smb1@cloudmonkeys.xyz", "x@gmail.example")).await.unwrap();
    let second = client.send(message("smb1@cloudmonkeys.xyz", "x@gmail.example")).await.unwrap_err().to_string();
    assert!(second.contains("4.4.2"), "{second}");
    relay.app.stop().await;
}

/// `max_messages_per_day` alone (no per-minute limit): two messages pass, the third MAIL
/// is refused with 421 4.4.2 and the connection ends, and a new connection is refused too
/// (the count belongs to the account, not to the session). Fails if the daily limit is
/// not enforced: the third message would be accepted.
#[tokio::test]
async fn the_daily_message_limit_of_an_account_answers_421_4_4_2() {
    let relay = auth_relay().await;
    let limit = ServiceAccountChanges { max_messages_per_day: Some(2), ..Default::default() };
    relay.app.admin.set_service_account("svc-mailer", &limit, None).await.unwrap();
    relay.app.wait_for_current_config().await;
    let refused = "421 4.4.2 Message submission rate for this client has exceeded the configured limit";
    let mut c = relay.signed_in().await;
    for n in 1..=2 {
        assert!(c.command("MAIL FROM:<smb1@cloudmonkeys.xyz>").await.starts_with("250"), "message {n}");
        assert!(c.command("RCPT TO:<x@gmail.example>").await.starts_with("250"));
        assert!(c.command("DATA").await.starts_with("354"));
        let queued = c.command(&format!("Subject: day {n}\r\n\r\nx\r\n.")).await;
        assert!(queued.starts_with("250 2.6.0"), "message {n}: {queued}");
    }
    assert_eq!(c.command("MAIL FROM:<smb1@cloudmonkeys.xyz>").await, refused);
    assert_eq!(c.reply().await, "EOF");
    let mut again = relay.signed_in().await;
    assert_eq!(again.command("MAIL FROM:<smb1@cloudmonkeys.xyz>").await, refused, "a new session counts on");
    assert_eq!(relay.sink.wait_for(2).await.len(), 2);
    relay.app.stop().await;
}

#[tokio::test]
async fn verbose_protocol_log_keeps_the_transcript_but_never_the_auth_secret() {
    use postern::store::ProtocolFilter;
    let relay = auth_relay().await;
    let verbose = ReceiveConnectorChanges { protocol_logging: Some("verbose".into()), ..Default::default() };
    relay.app.admin.set_receive_connector("SMTP Auth Relay Script", &verbose, None).await.unwrap();
    relay.app.wait_for_current_config().await;

    let mut c = relay.tls_session().await;
    assert_eq!(c.command("AUTH LOGIN").await, "334 VXNlcm5hbWU6");
    assert_eq!(c.command(&STANDARD.encode("svc-mailer")).await, "334 UGFzc3dvcmQ6");
    assert!(c.command(&STANDARD.encode(SVC_PASSWORD)).await.starts_with("235"));
    assert!(c.command("MAIL FROM:<smb1@cloudmonkeys.xyz>").await.starts_with("250"));
    assert!(c.command("RCPT TO:<x@gmail.example>").await.starts_with("250"));
    assert!(c.command("DATA").await.starts_with("354"));
    assert!(c.command("Subject: secret plans\r\n\r\nthe body stays private\r\n.").await.starts_with("250"));
    let mut second = relay.tls_session().await;
    assert!(second.command(&format!("AUTH PLAIN {}", plain("svc-mailer", SVC_PASSWORD))).await.starts_with("235"));
    assert_eq!(c.command("QUIT").await.split(' ').next(), Some("221"));
    assert_eq!(second.command("QUIT").await.split(' ').next(), Some("221"));

    let received = relay.app.wait_for_events("RECEIVE", 1).await;
    let session = received[0].session_id.expect("RECEIVE names its session");
    let store = relay.app.admin.store();
    let filter = ProtocolFilter { session_id: Some(session), limit: 1000, ..ProtocolFilter::default() };
    let start = std::time::Instant::now();
    let transcript = loop {
        let lines = store.protocol_log(&filter).await.unwrap();
        if lines.last().is_some_and(|l| l.event.0 == "-") {
            break lines;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(10), "transcript incomplete: {lines:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let rendered: Vec<String> = transcript.iter().map(|l| format!("{} {}", l.event.0, l.data)).collect();
    let has = |wanted: &str| rendered.iter().any(|l| l.starts_with(wanted));
    assert!(has("+ ") && has("> 220 relay.test") && has("< EHLO app.test") && has("< STARTTLS"), "{rendered:#?}");
    assert!(has("* TLS negotiated: TLS1.3") && has("< AUTH LOGIN") && has("> 235 2.7.0") && has("< ****"));
    assert!(has("* message data received") && has("- "), "{rendered:#?}");
    let seqs: Vec<i32> = transcript.iter().map(|l| l.seq).collect();
    assert_eq!(seqs, (0..transcript.len() as i32).collect::<Vec<_>>(), "numbered without gaps");

    // Nothing secret or private in any transcript of the connector.
    let all = store.protocol_log(&ProtocolFilter { limit: 10_000, ..ProtocolFilter::default() }).await.unwrap();
    assert!(all.iter().any(|l| l.data == "AUTH PLAIN ****"), "the PLAIN initial response is redacted");
    for secret in [
        SVC_PASSWORD.to_string(),
        STANDARD.encode(SVC_PASSWORD),
        STANDARD.encode("svc-mailer"),
        plain("svc-mailer", SVC_PASSWORD),
        "the body stays private".to_string(),
    ] {
        assert!(all.iter().all(|l| !l.data.contains(&secret) && !l.context.contains(&secret)), "{secret} leaked");
    }
    relay.app.stop().await;
}
