//! The console's tools, in a real headless Chromium: trying a connector edit before
//! saving it, sending a test message through a connector, uploading a certificate, the
//! queue's remove-with-DSN and header view, and the pages at phone width and from the
//! keyboard.

use std::net::SocketAddr;

use postern_tests::api::Api;
use postern_tests::browser::{Browser, ENTER, TAB};
use postern_tests::console::{PASSWORD, form_headers, http_session, sign_in};
use postern_tests::smtp_client::RawClient;
use postern_tests::{TestApp, TestDb, free_port, seeded_anonymous_app, test_settings};

async fn scalar<T>(app: &TestApp, sql: &'static str) -> T
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
{
    sqlx::query_scalar(sql).fetch_one(app.admin.store().pool()).await.unwrap()
}

async fn connector_state(app: &TestApp) -> (bool, i64, i64) {
    let (relay, version): (bool, i64) =
        sqlx::query_as("select accept_any_recipient, version from receive_connectors where name = 'SMTP Relay Script'")
            .fetch_one(app.admin.store().pool())
            .await
            .unwrap();
    (relay, version, scalar(app, "select count(*) from audit_log where object_type <> 'console_sign_in'").await)
}

#[tokio::test]
async fn trying_an_edit_answers_with_the_unsaved_settings_and_saves_nothing() {
    postern_tests::require_tool!(Browser);
    let (app, _sink, addr) = seeded_anonymous_app().await;
    app.admin.new_admin_user("alice", "admin", Some(PASSWORD.into())).await.unwrap();
    let before = connector_state(&app).await;
    let browser = Browser::start().await;
    sign_in(&browser, &app, "alice").await;
    browser.goto(&format!("http://{}/receive-connectors/SMTP%20Relay%20Script", app.http)).await;

    // The seed's external recipient, with the relay right ticked but not saved.
    browser.click("#accept_any_recipient").await;
    browser.fill("#client_ip", "127.0.0.1").await;
    browser.fill("#mail_from", "scanner@cloudmonkeys.xyz").await;
    browser.fill("#rcpt_to", "someone@gmail.com").await;
    // Enter in a what-if field tries the settings; it must not save them.
    browser.keys(ENTER).await;
    browser.wait_for_text("#answer-connector", "SMTP Relay Script").await;
    let answer = browser.text("#answer").await;
    assert!(answer.contains("RCPT TO:<someone@gmail.com> 250"), "the unsaved relay right applies: {answer}");
    assert!(browser.path().await.ends_with("/what-if"));
    assert_eq!(connector_state(&app).await, before, "trying saved nothing and audited nothing");
    browser.screenshot("what-if-unsaved").await;

    // The live configuration still refuses (the what-if page asks the saved connector).
    browser
        .goto(&format!(
            "http://{}/what-if?server={addr}&client_ip=127.0.0.1&mail_from=scanner%40cloudmonkeys.xyz&rcpt_to=someone%40gmail.com",
            app.http
        ))
        .await;
    assert!(browser.text("#answer").await.contains("550 5.7.54"));

    // A client outside an edited range is turned away, before saving.
    browser.goto(&format!("http://{}/receive-connectors/SMTP%20Relay%20Script", app.http)).await;
    browser.fill("#remote_ip_ranges", "127.0.0.2").await;
    browser.fill("#client_ip", "127.0.0.1").await;
    browser.click("#try").await;
    browser.wait_for_text("#answer-connector", "none admits this client").await;
    assert!(browser.text("#answer").await.contains("5.7.1"), "{}", browser.text("#answer").await);

    // A bad value is shown next to its field; still nothing saved.
    browser.fill("#remote_ip_ranges", "192.168.1.300").await;
    browser.click("#try").await;
    browser.wait_for_text("#error-remote_ip_ranges", "192.168.1.300").await;
    assert!(!browser.exists("#answer").await);
    assert_eq!(connector_state(&app).await, before);

    // And a connector not yet created can be tried from the new-connector form.
    let port = free_port();
    browser.goto(&format!("http://{}/receive-connectors/new", app.http)).await;
    browser.fill("#name", "Printers").await;
    browser.fill("#bindings", &format!("127.0.0.1:{port}")).await;
    browser.fill("#remote_ip_ranges", "127.0.0.1").await;
    browser.click("#anonymous").await;
    browser.fill("#client_ip", "127.0.0.1").await;
    browser.fill("#mail_from", "printer@cloudmonkeys.xyz").await;
    browser.fill("#rcpt_to", "smb1@cloudmonkeys.xyz").await;
    browser.click("#try").await;
    browser.wait_for_text("#answer-connector", "Printers").await;
    assert!(browser.text("#answer").await.contains("250 2.1.5"), "{}", browser.text("#answer").await);
    assert_eq!(scalar::<i64>(&app, "select count(*) from receive_connectors").await, 1, "not created");
    browser.close().await;
    app.stop().await;
}

#[tokio::test]
async fn a_test_message_goes_through_the_chosen_connector_and_shows_the_conversation() {
    postern_tests::require_tool!(Browser);
    let (app, sink, _addr) = seeded_anonymous_app().await;
    app.admin.new_admin_user("alice", "admin", Some(PASSWORD.into())).await.unwrap();
    app.wait_for_current_config().await;
    let browser = Browser::start().await;
    sign_in(&browser, &app, "alice").await;
    browser.goto(&format!("http://{}/receive-connectors/SMTP%20Relay%20Script", app.http)).await;
    browser.click("#test-link").await;
    browser.wait_for_text("h1", "Send test message").await;

    // A bad sender is shown next to its field and nothing is sent.
    browser.fill("#from", "not an address").await;
    browser.fill("#to", "smb1@cloudmonkeys.xyz").await;
    browser.click("#send").await;
    browser.wait_for_text("#error-from", "not an address").await;
    assert_eq!(scalar::<i64>(&app, "select count(*) from messages").await, 0);

    // The seed's Send-MailMessage: anonymous, to an internal recipient.
    browser.fill("#from", "scanner@cloudmonkeys.xyz").await;
    browser.click("#send").await;
    browser.wait_for_text("#result-summary", "Accepted").await;
    let transcript = browser.text("#transcript").await;
    assert!(transcript.starts_with("S: 220"), "{transcript}");
    assert!(
        transcript.contains("C: RCPT TO:<smb1@cloudmonkeys.xyz>") && transcript.contains("250 2.6.0"),
        "{transcript}"
    );
    let delivered = sink.wait_for(1).await;
    assert_eq!(delivered[0].sender, "scanner@cloudmonkeys.xyz");
    assert!(String::from_utf8_lossy(&delivered[0].raw).contains("Subject: Postern test message"));
    browser.scroll_to("#result").await;
    browser.screenshot("test-message").await;

    // The queued message's page shows its headers.
    browser.click("#result-message").await;
    browser.wait_for_text("#message-headers", "Subject: Postern test message").await;
    assert!(browser.text("#message-headers").await.contains("From: scanner@cloudmonkeys.xyz"));

    // The seed's external recipient: the connector's own refusal is the result.
    browser.goto(&format!("http://{}/test-message", app.http)).await;
    browser.fill("#from", "scanner@cloudmonkeys.xyz").await;
    browser.fill("#to", "someone@gmail.com").await;
    browser.click("#send").await;
    browser.wait_for_text("#result-summary", "Not accepted").await;
    assert!(browser.text("#transcript").await.contains("550 5.7.54"));
    assert_eq!(scalar::<i64>(&app, "select count(*) from messages").await, 1, "only the first was queued");
    browser.close().await;
    app.stop().await;
}

/// The seed's PART 2 check from the console: STARTTLS and AUTH PLAIN as svc-mailer, as
/// smb1 (granted) and as smb2 (not granted).
#[tokio::test]
async fn a_test_message_signs_in_over_starttls_and_send_as_is_enforced() {
    let sink = postern_tests::sink::Sink::start().await;
    let db = TestDb::new().await;
    let port = free_port();
    postern_tests::seed_auth_relay(&db.store().await, port, sink.addr).await;
    let settings = test_settings(&db);
    let app = TestApp::start(db, settings).await;
    app.admin.new_admin_user("alice", "admin", Some(PASSWORD.into())).await.unwrap();
    app.wait_for_current_config().await;
    let http = Api { addr: app.http, token: None };
    let (cookie, csrf) = http_session(&app, "alice").await;
    let send = |from: &str, password: &str| {
        let form = format!(
            "csrf={csrf}&connector=SMTP+Auth+Relay+Script&starttls=on&account=svc-mailer&password={}\
             &from={}&to=someone%40gmail.example&subject=Authenticated+Test&body=Test",
            postern_tests::console::urlencode(password),
            postern_tests::console::urlencode(from)
        );
        let (http, cookie) = (&http, cookie.clone());
        async move { http.raw("POST", "/test-message", &form_headers(Some(&cookie)), form.as_bytes()).await }
    };
    let granted = send("smb1@cloudmonkeys.xyz", postern_tests::SVC_PASSWORD).await;
    assert_eq!(granted.status, 200);
    assert!(granted.body.contains("id=\"result-summary\">Accepted"), "{}", granted.body);
    assert!(granted.body.contains("TLS established: TLSv1_3"), "{}", granted.body);
    assert!(granted.body.contains("AUTH PLAIN (credentials hidden)") && granted.body.contains("235 2.7.0"));
    assert!(!granted.body.contains(postern_tests::SVC_PASSWORD), "the password is never shown back");
    assert_eq!(sink.wait_for(1).await[0].sender, "smb1@cloudmonkeys.xyz");
    let denied = send("smb2@cloudmonkeys.xyz", postern_tests::SVC_PASSWORD).await;
    assert!(denied.body.contains("Not accepted") && denied.body.contains("5.7.60"), "{}", denied.body);
    // Only an address the connector listens on: never another host, nor another port.
    let form = format!(
        "csrf={csrf}&connector=SMTP+Auth+Relay+Script&server=127.0.0.1%3A1&from=a%40cloudmonkeys.xyz&to=b%40cloudmonkeys.xyz&subject=x&body=x"
    );
    let elsewhere = http.raw("POST", "/test-message", &form_headers(Some(&cookie)), form.as_bytes()).await;
    assert_eq!(elsewhere.status, 422);
    assert!(elsewhere.body.contains("not an address this connector listens on"), "{}", elsewhere.body);
    let wrong = send("smb1@cloudmonkeys.xyz", "not-the-password").await;
    assert!(wrong.body.contains("Not accepted") && wrong.body.contains("535"), "{}", wrong.body);
    assert_eq!(scalar::<i64>(&app, "select count(*) from messages").await, 1);
    app.stop().await;
}

fn self_signed(name: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap().self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

#[tokio::test]
async fn a_certificate_uploaded_in_the_form_is_presented_and_a_mismatched_key_saves_nothing() {
    postern_tests::require_tool!(Browser);
    let (app, _sink, addr) = seeded_anonymous_app().await;
    app.admin.new_admin_user("alice", "admin", Some(PASSWORD.into())).await.unwrap();
    let dir = std::env::temp_dir().join(format!("postern-cert-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = self_signed("relay.test");
    let (_, other_key) = self_signed("relay.test");
    for (file, text) in [("relay.crt", &cert), ("relay.key", &key), ("other.key", &other_key)] {
        std::fs::write(dir.join(file), text).unwrap();
    }
    let browser = Browser::start().await;
    sign_in(&browser, &app, "alice").await;
    let form = format!("http://{}/receive-connectors/SMTP%20Relay%20Script", app.http);

    // A key that does not belong to the certificate: refused next to the field.
    browser.goto(&form).await;
    browser.click("#tls_mode option[value='starttls_offered']").await;
    let upload = |css: &'static str, path: std::path::PathBuf| {
        let browser = &browser;
        async move {
            let input = browser.client.find(fantoccini::Locator::Css(css)).await.unwrap();
            input.send_keys(path.to_str().unwrap()).await.unwrap();
        }
    };
    upload("input[data-fills='tls_certificate_pem']", dir.join("relay.crt")).await;
    upload("input[data-fills='tls_key_pem']", dir.join("other.key")).await;
    browser.wait_for_value("#tls_certificate_pem", cert.trim()).await;
    browser.wait_for_value("#tls_key_pem", other_key.trim()).await;
    browser.click("#save").await;
    browser.wait_for_text("#error-tls_certificate_pem", "key").await;
    let stored: Option<String> =
        scalar(&app, "select tls_certificate_pem from receive_connectors where name = 'SMTP Relay Script'").await;
    assert_eq!(stored, None, "nothing saved");

    // The right pair, uploaded from files: saved, and presented to STARTTLS clients.
    upload("input[data-fills='tls_key_pem']", dir.join("relay.key")).await;
    browser.wait_for_value("#tls_key_pem", key.trim()).await;
    assert_eq!(browser.value("#tls_certificate_pem").await.trim(), cert.trim(), "the chain is kept as typed");
    browser.click("#save").await;
    browser.wait_for_text("#certificate-state", "its own certificate").await;
    let stored: Option<String> =
        scalar(&app, "select tls_certificate_pem from receive_connectors where name = 'SMTP Relay Script'").await;
    assert_eq!(stored.as_deref().map(str::trim), Some(cert.trim()));
    assert!(browser.value("#tls_key_pem").await.is_empty(), "the key is never shown back");
    app.wait_for_current_config().await;
    let mut client = RawClient::connect(addr).await;
    assert!(client.reply().await.starts_with("220"));
    client.ehlo("client.test").await;
    client.starttls(postern_tests::tls_client_trusting(&cert), "relay.test").await;
    let extensions = client.ehlo("client.test").await;
    assert!(!extensions.iter().any(|e| e == "STARTTLS"), "TLS is in place: {extensions:?}");
    browser.close().await;
    std::fs::remove_dir_all(dir).unwrap();
    app.stop().await;
}

async fn queue_a_message(port: u16, subject: &str) {
    let mut client = RawClient::connect(SocketAddr::from(([127, 0, 0, 1], port))).await;
    assert!(client.start_transaction("scanner@cloudmonkeys.xyz", "smb1@cloudmonkeys.xyz").await.starts_with("250"));
    assert!(client.command("DATA").await.starts_with("354"));
    assert!(client.command(&format!("Subject: {subject}\r\n\r\nTest\r\n.")).await.starts_with("250"));
}

async fn queue_id_with_subject(app: &TestApp, subject: &str) -> uuid::Uuid {
    sqlx::query_scalar("select id from messages where subject = $1")
        .bind(subject)
        .fetch_one(app.admin.store().pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn removing_with_a_dsn_tells_the_sender_and_the_headers_of_a_queued_message_show() {
    let db = TestDb::new().await;
    let port = free_port();
    // A smart host that refuses connections: messages stay queued.
    let dead = SocketAddr::from(([127, 0, 0, 1], free_port()));
    postern_tests::seed_anonymous_relay(&db.store().await, port, dead).await;
    let settings = test_settings(&db);
    let app = TestApp::start(db, settings).await;
    app.admin.new_admin_user("alice", "admin", Some(PASSWORD.into())).await.unwrap();
    queue_a_message(port, "Remove me quietly").await;
    queue_a_message(port, "Remove me and say so").await;
    app.wait_for_events("DEFER", 2).await;
    let (quiet, loud) = (
        queue_id_with_subject(&app, "Remove me quietly").await,
        queue_id_with_subject(&app, "Remove me and say so").await,
    );

    let http = Api { addr: app.http, token: None };
    let (cookie, csrf) = http_session(&app, "alice").await;
    let page = http.raw("GET", &format!("/messages/{}", loud), &form_headers(Some(&cookie)), b"").await;
    let headers = page.body.split("id=\"message-headers\">").nth(1).unwrap().split("</pre>").next().unwrap();
    assert!(headers.contains("Subject: Remove me and say so") && headers.contains("Received: from"), "{headers}");
    assert!(!headers.contains("Test"), "only the header section is shown: {headers}");

    let post = |action: String| {
        let (http, cookie, csrf) = (&http, cookie.clone(), csrf.clone());
        async move { http.raw("POST", &action, &form_headers(Some(&cookie)), format!("csrf={csrf}").as_bytes()).await }
    };
    assert_eq!(post(format!("/queue/{quiet}/remove")).await.status, 303);
    // While a node holds the delivery lease, a removal with a DSN waits (it could race a
    // delivery that succeeds).
    sqlx::query("update messages set lease_expires_at = now() + interval '1 hour' where id = $1")
        .bind(loud)
        .execute(app.admin.store().pool())
        .await
        .unwrap();
    let busy = post(format!("/queue/{loud}/remove-with-dsn")).await;
    assert_eq!(busy.status, 409, "{}", busy.body);
    assert!(busy.body.contains("being delivered right now"));
    sqlx::query("update messages set lease_expires_at = null where id = $1")
        .bind(loud)
        .execute(app.admin.store().pool())
        .await
        .unwrap();
    // The retry schedule (1 s in tests) may be claiming it at this very moment: try again
    // while it says so.
    let removed = postern_tests::wait_for(std::time::Duration::from_secs(5), "no 409 to the removal", || async {
        Some(post(format!("/queue/{loud}/remove-with-dsn")).await).filter(|r| r.status != 409)
    })
    .await;
    assert_eq!(removed.status, 303, "{}", removed.body);

    let dsns: Vec<(String, String)> = sqlx::query_as(
        "select m.sender, r.address from messages m join recipients r on r.message_id = m.id where m.receive_connector = '(internal)'",
    )
    .fetch_all(app.admin.store().pool())
    .await
    .unwrap();
    assert_eq!(dsns, vec![(String::new(), "scanner@cloudmonkeys.xyz".to_string())], "one DSN, from <>, to the sender");
    let body: Vec<u8> = sqlx::query_scalar(
        "select b.body from message_bodies b join messages m on m.id = b.message_id where m.receive_connector = '(internal)'",
    )
    .fetch_one(app.admin.store().pool())
    .await
    .unwrap();
    let body = String::from_utf8(body).unwrap();
    assert!(body.contains("smb1@cloudmonkeys.xyz") && body.contains("5.3.0"), "{body}");
    assert!(body.contains("Subject: Remove me and say so"), "the DSN carries the original headers");
    let events: Vec<String> =
        sqlx::query_scalar("select event_id from tracking_events where source = 'ADMIN' order by id")
            .fetch_all(app.admin.store().pool())
            .await
            .unwrap();
    assert_eq!(events, ["DROP", "DROP", "DSN"]);
    let audited: serde_json::Value =
        sqlx::query_scalar("select after from audit_log where action = 'remove' and object_name = $1")
            .bind(loud.simple().to_string())
            .fetch_one(app.admin.store().pool())
            .await
            .unwrap();
    assert!(audited["dsn"].is_string(), "{audited}");
    // A removed message is gone: a second removal is a clear 404 and changes nothing.
    let again = post(format!("/queue/{loud}/remove-with-dsn")).await;
    assert_eq!(again.status, 404, "{}", again.body);
    assert_eq!(scalar::<i64>(&app, "select count(*) from messages where receive_connector = '(internal)'").await, 1);
    app.stop().await;
}

/// The pages an admin uses most, at phone width: none scrolls sideways.
#[tokio::test]
async fn every_main_page_fits_a_phone_and_sign_in_works_from_the_keyboard() {
    postern_tests::require_tool!(Browser);
    let (app, _sink, _addr) = seeded_anonymous_app().await;
    app.admin.new_admin_user("alice", "admin", Some(PASSWORD.into())).await.unwrap();
    let browser = Browser::start_sized(390, 844).await;
    browser.goto(&format!("http://{}/sign-in", app.http)).await;
    // Keyboard only: the name field has focus, Tab reaches the password, Enter signs in.
    assert_eq!(browser.focused_id().await, "name");
    browser.keys("alice").await;
    browser.keys(TAB).await;
    assert_eq!(browser.focused_id().await, "password");
    browser.keys(PASSWORD).await;
    browser.keys(ENTER).await;
    browser.wait_for_text("h1", "Overview").await;
    assert_eq!(browser.viewport_width().await, 390, "a phone's viewport");
    for path in [
        "/",
        "/receive-connectors",
        "/receive-connectors/SMTP%20Relay%20Script",
        "/receive-connectors/new",
        "/accepted-domains",
        "/send-connectors",
        "/send-connectors/Smart%20host",
        "/service-accounts",
        "/service-accounts/new",
        "/tracking",
        "/queue",
        "/audit-log",
        "/what-if",
        "/test-message",
    ] {
        browser.goto(&format!("http://{}{path}", app.http)).await;
        assert!(browser.exists("h1").await, "{path} renders");
        assert!(browser.horizontal_overflow().await <= 0, "{path} scrolls sideways on a phone");
    }
    browser.goto(&format!("http://{}/receive-connectors/SMTP%20Relay%20Script", app.http)).await;
    browser.screenshot("phone-connector").await;
    browser.close().await;
    app.stop().await;
}
