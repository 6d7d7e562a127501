//! The console in a real headless Chromium (and, for the forgery checks, raw HTTP): sign
//! in, the seed's anonymous connector created through the form, a bad CIDR shown inline
//! with nothing saved, the what-if tester's 5.7.54, a POST without the CSRF token
//! refused, a viewer unable to change anything.

use std::net::SocketAddr;

use postern_tests::api::{Api, ApiResponse};
use postern_tests::browser::Browser;
use postern_tests::console::{PASSWORD, form_headers, http_session, node_with_admins, sign_in, tick, urlencode};
use postern_tests::smtp_client::RawClient;
use postern_tests::{TestApp, TestDb, free_port, seeded_anonymous_app, test_settings};

async fn connector_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("select count(*) from receive_connectors").fetch_one(app.admin.store().pool()).await.unwrap()
}

#[tokio::test]
async fn an_admin_creates_the_seeds_anonymous_connector_in_the_browser_and_a_bad_cidr_saves_nothing() {
    postern_tests::require_tool!(Browser);
    let app = node_with_admins().await;
    let browser = Browser::start().await;
    browser.goto(&format!("http://{}/sign-in", app.http)).await;
    browser.fill("#name", "alice").await;
    browser.fill("#password", "wrong-password-here").await;
    browser.click("#sign-in").await;
    browser.wait_for_text("#sign-in-error", "Wrong name or password").await;
    sign_in(&browser, &app, "alice").await;

    let port = free_port();
    browser.goto(&format!("http://{}/receive-connectors", app.http)).await;
    browser.click("#new-connector").await;
    browser.fill("#name", "SMTP Relay Script").await;
    browser.fill("#bindings", &format!("127.0.0.1:{port}")).await;
    browser.fill("#remote_ip_ranges", "192.168.1.300").await;
    browser.click("#anonymous").await;
    browser.click("#save").await;
    browser.wait_for_text("#error-remote_ip_ranges", "192.168.1.300").await;
    assert_eq!(connector_count(&app).await, 0, "nothing saved on error");
    assert_eq!(
        browser.client.find(fantoccini::Locator::Css("#name")).await.unwrap().prop("value").await.unwrap().as_deref(),
        Some("SMTP Relay Script"),
        "the form keeps what was typed"
    );
    browser.screenshot("connector-error").await;

    browser.fill("#remote_ip_ranges", "127.0.0.1").await;
    browser.click("#save").await;
    browser.wait_for_text("h1", "Receive connector SMTP Relay Script").await;
    assert_eq!(connector_count(&app).await, 1);
    let actor: String = sqlx::query_scalar("select actor from audit_log where object_type = 'receive_connector'")
        .fetch_one(app.admin.store().pool())
        .await
        .unwrap();
    assert_eq!(actor, "console:alice");
    // The engine serves it at once: the seed's scanner address is greeted.
    app.wait_for_current_config().await;
    let mut client = RawClient::connect(SocketAddr::from(([127, 0, 0, 1], port))).await;
    assert!(client.reply().await.starts_with("220"));
    browser.goto(&format!("http://{}/receive-connectors", app.http)).await;
    assert!(browser.text("table").await.contains("SMTP Relay Script"));
    browser.screenshot("receive-connectors").await;
    browser.close().await;
    app.stop().await;
}

#[tokio::test]
async fn the_what_if_tester_gives_5_7_54_for_the_seeds_external_recipient() {
    postern_tests::require_tool!(Browser);
    let (app, _sink, addr) = seeded_anonymous_app().await;
    app.admin.new_admin_user("victor", "viewer", Some(PASSWORD.into())).await.unwrap();
    let browser = Browser::start().await;
    sign_in(&browser, &app, "victor").await;
    browser.goto(&format!("http://{}/what-if", app.http)).await;
    browser.fill("#server", &addr.to_string()).await;
    browser.fill("#client_ip", "127.0.0.1").await;
    browser.fill("#mail_from", "scanner@cloudmonkeys.xyz").await;
    browser.fill("#rcpt_to", "someone@gmail.com").await;
    browser.click("#ask").await;
    browser.wait_for_text("#answer-connector", "SMTP Relay Script").await;
    assert!(browser.text("#answer").await.contains("550 5.7.54"), "{}", browser.text("#answer").await);
    browser.screenshot("what-if").await;
    browser.close().await;
    app.stop().await;
}

async fn post_connector(app: &TestApp, cookie: &str, csrf: Option<&str>, ranges: &str) -> ApiResponse {
    let mut form = format!(
        "name=Forged&enabled=on&bindings=127.0.0.1%3A2600&remote_ip_ranges={ranges}&anonymous=on\
        &accept_any_recipient=on&tls_mode=none&max_message_size=1048576&max_recipients=10&max_connections=10\
        &max_connections_per_source=10&max_messages_per_minute_per_source=0&connection_timeout_secs=60\
        &fqdn=relay.test&protocol_logging=none"
    );
    if let Some(csrf) = csrf {
        form.push_str(&format!("&csrf={csrf}"));
    }
    Api { addr: app.http, token: None }
        .raw("POST", "/receive-connectors/new", &form_headers(Some(cookie)), form.as_bytes())
        .await
}

#[tokio::test]
async fn a_post_without_the_csrf_token_is_refused_and_a_viewer_cannot_change_anything() {
    let app = node_with_admins().await;
    let (cookie, csrf) = http_session(&app, "alice").await;
    let open = "0.0.0.0%2F0";
    assert_eq!(post_connector(&app, &cookie, None, open).await.status, 403, "no token");
    assert_eq!(post_connector(&app, &cookie, Some("forged-token"), open).await.status, 403, "a wrong token");
    assert_eq!(connector_count(&app).await, 0);
    let (viewer_cookie, viewer_csrf) = http_session(&app, "victor").await;
    let refused = post_connector(&app, &viewer_cookie, Some(&viewer_csrf), "10.0.0.0%2F8").await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body.contains("viewers may not change"));
    let page = Api { addr: app.http, token: None }
        .raw("GET", "/receive-connectors", &form_headers(Some(&viewer_cookie)), b"")
        .await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("new-connector"), "no edit controls for a viewer");
    assert_eq!(connector_count(&app).await, 0, "nothing was saved");
    // With its token, the admin's form is accepted, but never an open relay.
    let open_relay = post_connector(&app, &cookie, Some(&csrf), open).await;
    assert_eq!(open_relay.status, 422);
    assert!(open_relay.body.contains("an open relay"), "{}", open_relay.body);
    assert_eq!(connector_count(&app).await, 0);
    let accepted = post_connector(&app, &cookie, Some(&csrf), "10.0.0.0%2F8").await;
    assert_eq!(accepted.status, 303, "{}", accepted.body);
    assert_eq!(connector_count(&app).await, 1);
    // A form opened before someone else's change is refused, not applied over it.
    let anonymous = Api { addr: app.http, token: None };
    let edit_page = anonymous.raw("GET", "/receive-connectors/Forged", &form_headers(Some(&cookie)), b"").await;
    let etag = edit_page
        .body
        .split("name=\"etag\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .replace("&#34;", "\"")
        .replace("&quot;", "\"");
    let banner =
        postern::admin::ReceiveConnectorChanges { banner: Some("changed elsewhere".into()), ..Default::default() };
    app.admin.set_receive_connector("Forged", &banner, None).await.unwrap();
    let stale = format!(
        "csrf={csrf}&etag={}&name=Forged&enabled=on&bindings=127.0.0.1%3A2600&remote_ip_ranges=10.0.0.0%2F8&anonymous=on\
         &tls_mode=none&max_message_size=1048576&max_recipients=10&max_connections=10&max_connections_per_source=10\
         &max_messages_per_minute_per_source=0&connection_timeout_secs=60&fqdn=relay.test&protocol_logging=none&banner=mine",
        urlencode(&etag)
    );
    let refused =
        anonymous.raw("POST", "/receive-connectors/Forged", &form_headers(Some(&cookie)), stale.as_bytes()).await;
    assert_eq!(refused.status, 412, "{}", refused.body);
    assert!(refused.body.contains("changed by someone else"));
    let banner: Option<String> =
        sqlx::query_scalar("select banner from receive_connectors").fetch_one(app.admin.store().pool()).await.unwrap();
    assert_eq!(banner.as_deref(), Some("changed elsewhere"));
    // A cross-site POST is refused before it reaches a handler, even with the right password.
    let mut cross_site = form_headers(None);
    cross_site.push(("Origin".to_string(), "http://evil.example".to_string()));
    let login = format!("name=alice&password={PASSWORD}");
    let forged_login = anonymous.raw("POST", "/sign-in", &cross_site, login.as_bytes()).await;
    assert_eq!(forged_login.status, 403);
    assert!(forged_login.header("set-cookie").is_none());
    // Deleting needs the edit right and the token too.
    let viewer_delete = format!("csrf={viewer_csrf}");
    let refused = anonymous
        .raw("POST", "/receive-connectors/Forged/delete", &form_headers(Some(&viewer_cookie)), viewer_delete.as_bytes())
        .await;
    assert_eq!(refused.status, 403);
    let no_token = anonymous.raw("POST", "/receive-connectors/Forged/delete", &form_headers(Some(&cookie)), b"").await;
    assert_eq!(no_token.status, 403);
    assert_eq!(connector_count(&app).await, 1);
    let delete = format!("csrf={csrf}");
    let deleted = anonymous
        .raw("POST", "/receive-connectors/Forged/delete", &form_headers(Some(&cookie)), delete.as_bytes())
        .await;
    assert_eq!((deleted.status, deleted.header("location")), (303, Some("/receive-connectors")));
    assert_eq!(connector_count(&app).await, 0);
    let again = anonymous
        .raw("POST", "/receive-connectors/Forged/delete", &form_headers(Some(&cookie)), delete.as_bytes())
        .await;
    assert_eq!(again.status, 404);
    // Signing out ends the session.
    let out = anonymous.raw("POST", "/sign-out", &form_headers(Some(&cookie)), format!("csrf={csrf}").as_bytes()).await;
    assert_eq!(out.status, 303);
    let after = anonymous.raw("GET", "/", &form_headers(Some(&cookie)), b"").await;
    assert_eq!((after.status, after.header("location")), (303, Some("/sign-in")));
    app.stop().await;
}

#[tokio::test]
async fn a_message_sent_while_the_tracking_page_is_open_appears_on_it_without_a_reload() {
    postern_tests::require_tool!(Browser);
    let (app, sink, addr) = seeded_anonymous_app().await;
    app.admin.new_admin_user("victor", "viewer", Some(PASSWORD.into())).await.unwrap();
    let verbose =
        postern::admin::ReceiveConnectorChanges { protocol_logging: Some("verbose".into()), ..Default::default() };
    app.admin.set_receive_connector("SMTP Relay Script", &verbose, None).await.unwrap();
    app.wait_for_current_config().await;
    let browser = Browser::start().await;
    sign_in(&browser, &app, "victor").await;
    // Two filters on the live tail: only SEND events of this sender may appear.
    browser.goto(&format!("http://{}/tracking?event_id=SEND&sender=scanner%40cloudmonkeys.xyz", app.http)).await;
    browser.wait_for_text("#live-state", "new events appear").await;
    assert!(browser.exists("#no-events").await, "an empty window says what will happen");
    // A mark in the page: a reload would erase it.
    browser.client.execute("window.postern_mark = 'still here'; return null;", vec![]).await.unwrap();
    let mut client = RawClient::connect(addr).await;
    assert!(client.start_transaction("scanner@cloudmonkeys.xyz", "smb1@cloudmonkeys.xyz").await.starts_with("250"));
    assert!(client.command("DATA").await.starts_with("354"));
    assert!(client.command("Subject: Live\r\n\r\nTest\r\n.").await.starts_with("250"));
    sink.wait_for(1).await;
    browser.wait_for_text("#events tbody", "SEND").await;
    let table = browser.text("#events tbody").await;
    assert!(table.contains("scanner@cloudmonkeys.xyz") && table.contains("Smart host"), "{table}");
    assert!(!table.contains("RECEIVE"), "the live tail applies every filter: {table}");
    let mark = browser.client.execute("return window.postern_mark || null;", vec![]).await.unwrap();
    assert_eq!(mark, serde_json::json!("still here"), "the page was not reloaded");
    // Without filters, the search (server-side) and the tail show both events.
    browser.goto(&format!("http://{}/tracking", app.http)).await;
    let table = browser.text("#events tbody").await;
    assert!(table.contains("RECEIVE") && table.contains("SMTP Relay Script") && table.contains("SEND"), "{table}");
    browser.screenshot("tracking-live").await;
    // Each event opens its SMTP session: events and transcript (the connector logs verbosely).
    browser.click("#events tbody tr:first-child a").await;
    browser.wait_for_text("h1", "SMTP session").await;
    let transcript = browser.text("#transcript").await;
    assert!(transcript.contains("MAIL FROM:<scanner@cloudmonkeys.xyz>") && transcript.contains("250"), "{transcript}");
    browser.screenshot("session").await;
    // The overview's hour counts it, and its minute is the chart's full-height bar.
    browser.goto(&format!("http://{}/", app.http)).await;
    assert_eq!((browser.text("#hour-received").await, browser.text("#hour-sent").await), ("1".into(), "1".into()));
    let mut heights = Vec::new();
    for bar in browser.client.find_all(fantoccini::Locator::Css("#throughput-chart rect")).await.unwrap() {
        heights.push(bar.attr("height").await.unwrap().unwrap_or_default());
    }
    assert_eq!(heights.len(), 120, "two bars a minute for an hour");
    assert_eq!(heights.iter().filter(|h| *h == "100").count(), 2, "the busiest minute fills the chart: {heights:?}");
    browser.screenshot("overview").await;
    // ... and its message page joins who sent it, the recipients' state and every event.
    browser.goto(&format!("http://{}/tracking?event_id=SEND", app.http)).await;
    browser.click("#events tbody tr:first-child td:nth-child(3) a").await;
    browser.wait_for_text("h1", "Message").await;
    browser.wait_for_text("#recipients", "delivered").await;
    assert!(browser.text("#origin").await.contains("anonymously"));
    let events = browser.text("#events").await;
    assert!(events.contains("RECEIVE") && events.contains("SEND") && events.contains("250 2.0.0"), "{events}");
    browser.click("#transcript-link").await;
    browser.wait_for_text("h1", "SMTP session").await;
    browser.close().await;
    app.stop().await;
}

#[tokio::test]
async fn the_seeds_part_1_and_part_2_are_configured_entirely_in_the_browser_and_relay_mail() {
    postern_tests::require_tool!(Browser);
    let app = node_with_admins().await;
    let sink = postern_tests::sink::Sink::start().await;
    let (anonymous_port, auth_port) = (free_port(), free_port());
    let browser = Browser::start().await;
    let base = format!("http://{}", app.http);
    sign_in(&browser, &app, "alice").await;

    // New-AcceptedDomain cloudmonkeys.xyz
    browser.goto(&format!("{base}/accepted-domains")).await;
    browser.fill("#domain", "cloudmonkeys.xyz").await;
    browser.click("#add-domain").await;
    browser.wait_for_text("#domains", "cloudmonkeys.xyz").await;

    // New-SendConnector -AddressSpaces * -SmartHosts (the test sink)
    browser.goto(&format!("{base}/send-connectors/new")).await;
    browser.fill("#name", "Smart host").await;
    browser.fill("#smart_hosts", &sink.addr.to_string()).await;
    browser.click("#tls_policy option[value='none']").await;
    browser.click("#save").await;
    browser.wait_for_text("h1", "Send connector Smart host").await;

    // PART 1: New-ReceiveConnector "SMTP Relay Script", anonymous, one address.
    browser.goto(&format!("{base}/receive-connectors/new")).await;
    browser.fill("#name", "SMTP Relay Script").await;
    browser.fill("#bindings", &format!("127.0.0.1:{anonymous_port}")).await;
    browser.fill("#remote_ip_ranges", "127.0.0.1").await;
    tick(&browser, "#anonymous").await;
    browser.click("#save").await;
    browser.wait_for_text("h1", "Receive connector SMTP Relay Script").await;

    // PART 2: "SMTP Auth Relay Script": STARTTLS required, basic auth after TLS, service accounts.
    browser.goto(&format!("{base}/receive-connectors/new")).await;
    browser.fill("#name", "SMTP Auth Relay Script").await;
    browser.fill("#bindings", &format!("127.0.0.1:{auth_port}")).await;
    browser.fill("#remote_ip_ranges", "127.0.0.0/8").await;
    tick(&browser, "#authenticated").await;
    browser.click("#tls_mode option[value='starttls_required']").await;
    tick(&browser, "input[name='plain']").await;
    tick(&browser, "input[name='login']").await;
    tick(&browser, "input[name='auth_requires_tls']").await;
    browser.click("#save").await;
    browser.wait_for_text("h1", "Receive connector SMTP Auth Relay Script").await;

    // New-Mailbox svc-mailer (a generated password, shown once) ...
    browser.goto(&format!("{base}/service-accounts/new")).await;
    browser.fill("#name", "svc-mailer").await;
    browser.fill("#address", "svc-mailer@cloudmonkeys.xyz").await;
    browser.click("#save").await;
    browser.wait_for_text("h1", "Service account svc-mailer").await;
    let password = browser.text("#generated-password").await;
    assert!(password.len() >= 24, "a generated password is shown: {password:?}");
    // ... and Add-RecipientPermission smb1 -AccessRights SendAs -Trustee svc-mailer.
    browser.fill("#sender", "smb1@cloudmonkeys.xyz").await;
    browser.click("#grant").await;
    browser.wait_for_text("#grants", "smb1@cloudmonkeys.xyz").await;
    assert!(!browser.exists("#generated-password").await, "the password is shown only once");
    browser.screenshot("service-account").await;
    browser.close().await;

    // Validation, the seed's way: anonymous from the allowed address, and svc-mailer as smb1.
    app.wait_for_current_config().await;
    let mut client = RawClient::connect(SocketAddr::from(([127, 0, 0, 1], anonymous_port))).await;
    assert!(client.start_transaction("scanner@cloudmonkeys.xyz", "smb1@cloudmonkeys.xyz").await.starts_with("250"));
    assert!(client.command("DATA").await.starts_with("354"));
    assert!(client.command("Subject: Test\r\n\r\nTest\r\n.").await.starts_with("250"));
    let certificate = postern_tests::generated_certificate(app.admin.store(), "relay.test").await;
    let tls = lettre::transport::smtp::client::TlsParameters::builder("relay.test".into())
        .add_root_certificate(lettre::transport::smtp::client::Certificate::from_pem(certificate.as_bytes()).unwrap())
        .build_rustls()
        .unwrap();
    let transport = lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(auth_port)
        .tls(lettre::transport::smtp::client::Tls::Required(tls))
        .credentials(lettre::transport::smtp::authentication::Credentials::new("svc-mailer".into(), password))
        .build();
    let message = lettre::Message::builder()
        .from("smb1@cloudmonkeys.xyz".parse().unwrap())
        .to("someone@gmail.example".parse().unwrap())
        .subject("Authenticated Test")
        .body(String::from("Test"))
        .unwrap();
    lettre::AsyncTransport::send(&transport, message).await.unwrap();
    let delivered = sink.wait_for(2).await;
    assert!(delivered.iter().any(|m| m.sender == "smb1@cloudmonkeys.xyz"));
    app.stop().await;
}

#[tokio::test]
async fn the_queue_page_lists_a_stuck_message_and_an_admin_removes_it_which_the_audit_log_shows() {
    let db = TestDb::new().await;
    let port = free_port();
    // A smart host that refuses connections: the message stays queued.
    let dead = SocketAddr::from(([127, 0, 0, 1], free_port()));
    postern_tests::seed_anonymous_relay(&db.store().await, port, dead).await;
    let settings = test_settings(&db);
    let app = TestApp::start(db, settings).await;
    app.admin.new_admin_user("alice", "admin", Some(PASSWORD.into())).await.unwrap();
    app.admin.new_admin_user("victor", "viewer", Some(PASSWORD.into())).await.unwrap();
    let mut client = RawClient::connect(SocketAddr::from(([127, 0, 0, 1], port))).await;
    assert!(client.start_transaction("scanner@cloudmonkeys.xyz", "smb1@cloudmonkeys.xyz").await.starts_with("250"));
    assert!(client.command("DATA").await.starts_with("354"));
    assert!(client.command("Subject: Stuck in the queue\r\n\r\nTest\r\n.").await.starts_with("250"));
    app.wait_for_events("DEFER", 1).await;

    let http = Api { addr: app.http, token: None };
    let (cookie, csrf) = http_session(&app, "alice").await;
    let queue = http.raw("GET", "/queue", &form_headers(Some(&cookie)), b"").await;
    assert_eq!(queue.status, 200);
    assert!(queue.body.contains("Stuck in the queue") && queue.body.contains("deferred"), "{}", queue.body);
    let id = queue.body.split("action=\"/queue/").nth(1).unwrap().split('/').next().unwrap().to_string();
    let message = http.raw("GET", &format!("/messages/{id}"), &form_headers(Some(&cookie)), b"").await;
    assert_eq!(message.status, 200);
    assert!(
        message.body.contains("deferred")
            && message.body.contains("Stuck in the queue")
            && message.body.contains("RECEIVE")
    );
    let (viewer, viewer_csrf) = http_session(&app, "victor").await;
    let body = format!("csrf={viewer_csrf}");
    let refused = http.raw("POST", &format!("/queue/{id}/remove"), &form_headers(Some(&viewer)), body.as_bytes()).await;
    assert_eq!(refused.status, 403, "a viewer cannot remove mail");
    let removed = http
        .raw("POST", &format!("/queue/{id}/remove"), &form_headers(Some(&cookie)), format!("csrf={csrf}").as_bytes())
        .await;
    assert_eq!(removed.status, 303, "{}", removed.body);
    let queue = http.raw("GET", "/queue", &form_headers(Some(&cookie)), b"").await;
    assert!(queue.body.contains("id=\"empty-queue\""), "{}", queue.body);
    let audit = http.raw("GET", "/audit-log", &form_headers(Some(&viewer)), b"").await;
    assert_eq!(audit.status, 200);
    assert!(audit.body.contains("console:alice") && audit.body.contains("remove message"), "{}", audit.body);
    app.stop().await;
}

/// One answer per kind of refusal, on every form: 400 for a NUL character, 409 for a
/// conflict with what is stored, 422 for invalid values, 404 for what is not there, 503
/// while the database is down. Each leaves the stored data as it was.
#[tokio::test]
async fn every_console_form_answers_each_kind_of_refusal_alike_and_saves_nothing() {
    let app = node_with_admins().await;
    let (cookie, csrf) = http_session(&app, "alice").await;
    let http = Api { addr: app.http, token: None };
    let post = |path: &'static str, body: String| {
        let (http, cookie) = (&http, &cookie);
        async move { http.raw("POST", path, &form_headers(Some(cookie)), body.as_bytes()).await }
    };
    let pool = app.admin.store().pool().clone();
    let count = |table: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!("select count(*) from {table}")))
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let account = |name: &str, address: &str| {
        format!("csrf={csrf}&name={name}&address={}&enabled=on&remote_ip_ranges=&password=", urlencode(address))
    };
    assert_eq!(post("/service-accounts/new", account("svc-mailer", "svc-mailer@cloudmonkeys.xyz")).await.status, 200);
    assert_eq!(post("/accepted-domains", format!("csrf={csrf}&domain=cloudmonkeys.xyz")).await.status, 303);
    let (accounts, domains) = (count("service_accounts").await, count("accepted_domains").await);

    let duplicate = post("/service-accounts/new", account("svc-mailer", "other@cloudmonkeys.xyz")).await;
    assert_eq!(duplicate.status, 409, "{}", duplicate.body);
    assert!(duplicate.body.contains("id=\"form-problem\""), "the form shows why: {}", duplicate.body);
    let invalid = post("/service-accounts/new", account("svc-two", "not an address")).await;
    assert_eq!(invalid.status, 422, "{}", invalid.body);
    assert!(!invalid.body.contains("id=\"error-address\"></div>"), "the field says why: {}", invalid.body);
    let domain_again = post("/accepted-domains", format!("csrf={csrf}&domain=cloudmonkeys.xyz")).await;
    assert_eq!(domain_again.status, 409, "{}", domain_again.body);
    for (path, body) in [
        ("/service-accounts/new", account("svc%00two", "svc-two@cloudmonkeys.xyz")),
        ("/accepted-domains", format!("csrf={csrf}&domain=a%00.example")),
        ("/send-connectors/new", format!("csrf={csrf}&name=x%00&address_spaces=*&port=25&tls_policy=none&auth=none")),
        ("/administrators", format!("csrf={csrf}&name=eve%00&role=admin")),
    ] {
        let refused = post(path, body).await;
        assert_eq!(refused.status, 400, "{path}: {}", refused.body);
        assert!(refused.body.contains("NUL"), "{path}: {}", refused.body);
    }
    let policy = post("/single-sign-on/policy", format!("csrf={csrf}")).await;
    assert_eq!(policy.status, 422, "{}", policy.body);
    assert!(policy.body.contains("keep at least one way to sign in"), "the page says why: {}", policy.body);
    let no_account =
        post("/service-accounts/svc-nobody/send-as", format!("csrf={csrf}&sender=a%40cloudmonkeys.xyz")).await;
    assert_eq!(no_account.status, 404, "{}", no_account.body);
    let no_message = post("/queue/00000000-0000-0000-0000-000000000000/retry", format!("csrf={csrf}")).await;
    assert_eq!(no_message.status, 404, "{}", no_message.body);
    assert_eq!((count("service_accounts").await, count("accepted_domains").await), (accounts, domains));
    assert_eq!(count("send_connectors").await, 0);
    assert_eq!(count("admin_users").await, 2);

    postern_tests::database_outage(&app.db.name, true).await;
    let down = post("/service-accounts/new", account("svc-three", "svc-three@cloudmonkeys.xyz")).await;
    assert_eq!(down.status, 503, "{}", down.body);
    assert!(down.body.contains("database is unavailable"), "{}", down.body);
    postern_tests::database_outage(&app.db.name, false).await;
    assert_eq!(count("service_accounts").await, accounts);
    app.stop().await;
}
