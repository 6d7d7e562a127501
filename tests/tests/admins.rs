//! The console's administrators: signing in (attempts counted before any password is
//! checked, a trusted reverse proxy's client address, per-account lockout that spares
//! sources that signed in before, everything audited), the first-start password that must
//! be replaced, and the lifecycle (password reset, role, disable, sessions ended,
//! removal; never the last admin) through the CLI, the API and the console.

use std::net::IpAddr;

use postern_tests::api::{Api, ApiResponse};
use postern_tests::console::{PASSWORD, form_headers, node_with_admins, urlencode};
use postern_tests::node::{cli, cli_with_input};
use postern_tests::{TestApp, TestDb, test_settings};
use serde_json::json;

fn client(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 3, n])
}

async fn sign_in_from(
    app: &TestApp,
    source: Option<IpAddr>,
    name: &str,
    password: &str,
    xff: Option<&str>,
) -> ApiResponse {
    let http = Api { addr: app.http, token: None };
    let mut headers = form_headers(None);
    if let Some(forwarded) = xff {
        headers.push(("X-Forwarded-For".into(), forwarded.into()));
    }
    let form = format!("name={}&password={}", urlencode(name), urlencode(password));
    http.raw_from(source, "POST", "/sign-in", &headers, form.as_bytes()).await
}

fn session_cookie(response: &ApiResponse) -> String {
    response.header("set-cookie").unwrap().split(';').next().unwrap().to_string()
}

async fn get(app: &TestApp, cookie: &str, path: &str) -> ApiResponse {
    Api { addr: app.http, token: None }.raw("GET", path, &form_headers(Some(cookie)), b"").await
}

async fn post(app: &TestApp, cookie: &str, path: &str, form: &str) -> ApiResponse {
    Api { addr: app.http, token: None }.raw("POST", path, &form_headers(Some(cookie)), form.as_bytes()).await
}

/// The CSRF token a console page carries.
fn csrf(page: &ApiResponse) -> String {
    page.body.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string()
}

async fn audit_rows(app: &TestApp, action: &str) -> Vec<serde_json::Value> {
    sqlx::query_scalar("select after from audit_log where action = $1 and object_type = 'console_sign_in' order by id")
        .bind(action)
        .fetch_all(app.admin.store().pool())
        .await
        .unwrap()
}

/// Thirty wrong passwords at once from one source: the throttle counts each before its
/// password is checked, so only the first ten are checked at all and the rest are
/// refused as locked out (with check-then-count all thirty would have been hashed).
#[tokio::test]
async fn concurrent_bad_sign_ins_are_counted_before_any_password_is_checked() {
    let app = node_with_admins().await;
    let attempts = (0..30).map(|_| sign_in_from(&app, Some(client(1)), "alice", "wrong-password-here", None));
    let statuses: Vec<u16> = futures::future::join_all(attempts).await.iter().map(|r| r.status).collect();
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let locked = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((checked, locked), (10, 20), "{statuses:?}");
    // Locked out now, even with the right password, from that source.
    assert_eq!(sign_in_from(&app, Some(client(1)), "alice", PASSWORD, None).await.status, 429);
    // Everything is in the audit log: the lockout, the first failures (the rest summed up later).
    let lockouts = audit_rows(&app, "lockout").await;
    assert!(lockouts.iter().any(|l| l["locked"] == "ip" && l["key"] == "127.0.3.1"), "{lockouts:?}");
    let refusals = audit_rows(&app, "refuse-sign-in").await;
    assert_eq!(refusals.len(), 5, "five written per source and window: {refusals:?}");
    assert!(refusals.iter().all(|r| r["source"] == "127.0.3.1" && r["name"] == "alice"));
    app.stop().await;
}

/// A name longer than any administrator's, a NUL, or an over-long password is refused
/// unread (never kept as a throttle key); the right password signs in, and that is audited.
#[tokio::test]
async fn malformed_sign_ins_are_refused_and_a_good_one_is_audited() {
    let app = node_with_admins().await;
    let long_name = "a".repeat(100 * 1024);
    for (name, password) in [(long_name.as_str(), PASSWORD), ("alice\0", PASSWORD), ("alice", &"p".repeat(2000))] {
        let refused = sign_in_from(&app, Some(client(2)), name, password, None).await;
        assert_eq!(refused.status, 401, "{}", &refused.body[..200.min(refused.body.len())]);
    }
    let huge = sign_in_from(&app, Some(client(2)), &"a".repeat(3 * 1024 * 1024), PASSWORD, None).await;
    assert_eq!(huge.status, 413, "a form body over 2 MiB is not even read");
    let signed_in = sign_in_from(&app, Some(client(2)), "Alice", PASSWORD, None).await;
    assert_eq!(signed_in.status, 303, "names are case-insensitive");
    assert_eq!(signed_in.header("location"), Some("/"));
    let audited = audit_rows(&app, "sign-in").await;
    assert_eq!(audited, vec![json!({ "source": "127.0.3.2" })]);
    app.stop().await;
}

/// Behind a reverse proxy listed in `console_trusted_proxies`, each client has its own
/// budget (the address the proxy appends to X-Forwarded-For); from anyone else,
/// X-Forwarded-For is ignored, so it cannot be used to dodge the throttle.
#[tokio::test]
async fn a_trusted_proxy_names_the_client_and_nobody_else_can() {
    let db = TestDb::new().await;
    let mut settings = test_settings(&db);
    settings.console_trusted_proxies = vec!["127.0.3.100".into()];
    settings.auth_failure_delay_ms = 20;
    let app = TestApp::start(db, settings).await;
    app.admin.new_admin_user("alice", "admin", Some(PASSWORD.into())).await.unwrap();
    let proxy = Some(client(100));
    for _ in 0..10 {
        let refused =
            sign_in_from(&app, proxy, "nobody", "wrong-password-here", Some("198.51.100.7, 203.0.113.5")).await;
        assert_eq!(refused.status, 401);
    }
    let locked = sign_in_from(&app, proxy, "alice", PASSWORD, Some("203.0.113.5")).await;
    assert_eq!(locked.status, 429, "the client behind the proxy is locked out");
    let other = sign_in_from(&app, proxy, "alice", PASSWORD, Some("203.0.113.6")).await;
    assert_eq!(other.status, 303, "another client behind the same proxy is not");
    let lockouts = audit_rows(&app, "lockout").await;
    assert!(lockouts.iter().any(|l| l["key"] == "203.0.113.5"), "{lockouts:?}");

    // Not a trusted proxy: its X-Forwarded-For is ignored; it is the client.
    for n in 0..10 {
        let spoofed = format!("192.0.2.{n}");
        sign_in_from(&app, Some(client(101)), "nobody", "wrong-password-here", Some(&spoofed)).await;
    }
    let locked = sign_in_from(&app, Some(client(101)), "alice", PASSWORD, Some("192.0.2.200")).await;
    assert_eq!(locked.status, 429, "rotating X-Forwarded-For gained nothing");
    app.stop().await;
}

/// Twenty wrong passwords for one administrator, spread over many sources, lock that
/// name out, except from a source it signed in from before: the real administrator is
/// not locked out by someone else's guessing.
#[tokio::test]
async fn an_account_lockout_spares_the_sources_that_signed_in_before() {
    let app = node_with_admins().await;
    assert_eq!(sign_in_from(&app, Some(client(10)), "alice", PASSWORD, None).await.status, 303);
    for n in 0..20u8 {
        let refused = sign_in_from(&app, Some(client(20 + n)), "alice", "wrong-password-here", None).await;
        assert_eq!(refused.status, 401);
    }
    let lockouts = audit_rows(&app, "lockout").await;
    assert!(lockouts.iter().any(|l| l["locked"] == "account" && l["key"] == "alice"), "{lockouts:?}");
    assert_eq!(sign_in_from(&app, Some(client(60)), "alice", PASSWORD, None).await.status, 429, "a new source");
    assert_eq!(sign_in_from(&app, Some(client(10)), "alice", PASSWORD, None).await.status, 303, "her usual source");
    app.stop().await;
}

/// The password printed at the first start must be replaced before anything else: every
/// page sends the administrator to the password form, a wrong current password or a
/// mistyped confirmation changes nothing, and the old password stops working.
#[tokio::test]
async fn the_first_start_password_must_be_replaced_at_the_first_sign_in() {
    let db = TestDb::new().await;
    let settings = test_settings(&db);
    let app = TestApp::start(db, settings).await;
    let bootstrap = postern::admin::Admin::new(app.admin.store().clone(), "bootstrap", String::new());
    let generated = bootstrap.bootstrap_admin_user().await.unwrap().unwrap();
    let signed_in = sign_in_from(&app, None, "admin", &generated, None).await;
    assert_eq!(signed_in.header("location"), Some("/account/password"));
    let cookie = session_cookie(&signed_in);
    for path in ["/", "/receive-connectors", "/administrators"] {
        let page = get(&app, &cookie, path).await;
        assert_eq!((page.status, page.header("location")), (303, Some("/account/password")), "{path}");
    }
    let form_page = get(&app, &cookie, "/account/password").await;
    assert!(form_page.body.contains("id=\"must-change\""));
    let token = csrf(&form_page);
    let hash = || async {
        sqlx::query_scalar::<_, String>("select password_hash from admin_users where name = 'admin'")
            .fetch_one(app.admin.store().pool())
            .await
            .unwrap()
    };
    let before = hash().await;
    let change = |current: &str, new: &str, confirm: &str| {
        format!(
            "csrf={token}&current={}&password={}&confirm={}",
            urlencode(current),
            urlencode(new),
            urlencode(confirm)
        )
    };
    let new_password = "my-own-long-password";
    for (form, why) in [
        (change("not-the-password", new_password, new_password), "current password"),
        (change(&generated, new_password, "something-else-entirely"), "differ"),
        (change(&generated, "short", "short"), "at least"),
        (change(&generated, &generated, &generated), "must differ"),
    ] {
        let refused = post(&app, &cookie, "/account/password", &form).await;
        assert_eq!(refused.status, 422, "{why}");
        assert!(refused.body.contains(why), "{why}: {}", refused.body);
        assert_eq!(hash().await, before, "{why}: nothing changed");
    }
    let changed = post(&app, &cookie, "/account/password", &change(&generated, new_password, new_password)).await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert!(changed.body.contains("id=\"password-changed\""));
    assert_eq!(get(&app, &cookie, "/").await.status, 200, "this session goes on");
    assert_eq!(sign_in_from(&app, None, "admin", &generated, None).await.status, 401, "the old password is gone");
    assert_eq!(sign_in_from(&app, None, "admin", new_password, None).await.header("location"), Some("/"));
    app.stop().await;
}

/// The administrators API needs the admin scope; it creates (password to be replaced),
/// changes role and enabled (ending sessions), resets a password, ends sessions and
/// removes; the last enabled admin is protected, and every refusal changes nothing.
#[tokio::test]
async fn administrators_are_managed_through_the_api_with_the_admin_scope() {
    let app = node_with_admins().await;
    let (_, write) = app.admin.new_api_token("writer", "write").await.unwrap();
    Api::new(app.http, &write).get("/api/v1/administrators").await.problem(403);
    let (_, token) = app.admin.new_api_token("people", "admin").await.unwrap();
    let api = Api::new(app.http, &token);

    let created = api.post("/api/v1/administrators", json!({ "name": "oscar", "role": "viewer" })).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let oscar_password = created.json()["password"].as_str().unwrap().to_string();
    assert_eq!(created.json()["must_change_password"], true);
    let oscar = sign_in_from(&app, None, "oscar", &oscar_password, None).await;
    assert_eq!(oscar.header("location"), Some("/account/password"));
    let oscar = session_cookie(&oscar);
    let alice = session_cookie(&sign_in_from(&app, None, "alice", PASSWORD, None).await);

    let audited = audit_count(&app).await;
    api.post("/api/v1/administrators", json!({ "name": "oscar" })).await.problem(409);
    assert_eq!(api.post("/api/v1/administrators", json!({ "name": "bad name!" })).await.invalid_fields(), ["name"]);
    assert_eq!(api.patch("/api/v1/administrators/oscar", json!({ "role": "owner" })).await.invalid_fields(), ["role"]);
    api.patch("/api/v1/administrators/nobody", json!({ "enabled": false })).await.problem(404);
    assert_eq!(audit_count(&app).await, audited, "refusals changed nothing");

    // Disabling ends the sessions; the last enabled admin cannot be disabled or demoted.
    let disabled = api.patch("/api/v1/administrators/oscar", json!({ "enabled": false })).await;
    assert_eq!(disabled.json()["enabled"], false);
    assert_eq!(get(&app, &oscar, "/account/password").await.header("location"), Some("/sign-in"));
    for change in [json!({ "enabled": false }), json!({ "role": "viewer" })] {
        let refused = api.patch("/api/v1/administrators/alice", change).await;
        assert!(refused.problem(409)["detail"].as_str().unwrap().contains("last enabled admin"));
    }
    api.delete("/api/v1/administrators/alice").await.problem(409);
    assert_eq!(get(&app, &alice, "/").await.status, 200, "alice is untouched");

    // A reset password is returned once, must be replaced, and ends the sessions.
    let reset = api.post("/api/v1/administrators/alice/password", json!({})).await;
    let alice_new = reset.json()["password"].as_str().unwrap().to_string();
    assert_eq!(get(&app, &alice, "/").await.header("location"), Some("/sign-in"), "her session ended");
    let again = sign_in_from(&app, None, "alice", &alice_new, None).await;
    assert_eq!(again.header("location"), Some("/account/password"));
    let alice = session_cookie(&again);
    let ended = api.delete("/api/v1/administrators/alice/sessions").await;
    assert_eq!(ended.json()["sessions_ended"], 1);
    assert_eq!(get(&app, &alice, "/account/password").await.header("location"), Some("/sign-in"));

    assert_eq!(api.delete("/api/v1/administrators/oscar").await.status, 204);
    let names: Vec<String> = api.get("/api/v1/administrators").await.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["alice", "victor"]);
    assert!(!api.get("/api/v1/administrators").await.body.contains("password_hash"));
    app.stop().await;
}

async fn audit_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("select count(*) from audit_log where object_type <> 'console_sign_in'")
        .fetch_one(app.admin.store().pool())
        .await
        .unwrap()
}

/// `postern admin set|remove|sessions revoke` on the command line.
#[tokio::test]
async fn administrators_are_managed_on_the_command_line() {
    let app = node_with_admins().await;
    let victor = session_cookie(&sign_in_from(&app, None, "victor", PASSWORD, None).await);
    let out = cli_with_input(&app.db, &["admin", "set", "victor", "--password-stdin"], "a-brand-new-password\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(get(&app, &victor, "/").await.header("location"), Some("/sign-in"), "the session ended");
    let back = sign_in_from(&app, None, "victor", "a-brand-new-password", None).await;
    assert_eq!(back.header("location"), Some("/account/password"), "to be replaced at sign-in");

    let out = cli(&app.db, &["admin", "set", "alice", "--enabled", "false"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("last enabled admin"));
    let out = cli(&app.db, &["admin", "set", "victor", "--role", "admin"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let victor = session_cookie(&sign_in_from(&app, None, "victor", "a-brand-new-password", None).await);
    let out = cli(&app.db, &["admin", "sessions", "revoke", "victor"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 session(s)"), "{out:?}");
    assert_eq!(get(&app, &victor, "/account/password").await.header("location"), Some("/sign-in"));
    let out = cli(&app.db, &["admin", "remove", "victor"]);
    assert!(out.status.success());
    let out = cli(&app.db, &["admin", "list"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.contains("alice") && !listed.contains("victor"), "{listed}");
    app.stop().await;
}

/// The console's administrators page: admins act with the CSRF token, viewers only see.
#[tokio::test]
async fn administrators_are_managed_in_the_console() {
    let app = node_with_admins().await;
    let alice = session_cookie(&sign_in_from(&app, None, "alice", PASSWORD, None).await);
    let page = get(&app, &alice, "/administrators").await;
    assert_eq!(page.status, 200);
    let token = csrf(&page);
    let created = post(&app, &alice, "/administrators", &format!("csrf={token}&name=olga&role=viewer")).await;
    assert_eq!(created.status, 200, "{}", created.body);
    let password = created.body.split("id=\"generated-password\">").nth(1).unwrap().split('<').next().unwrap();
    assert_eq!(sign_in_from(&app, None, "olga", password, None).await.header("location"), Some("/account/password"));

    let refused = post(&app, &alice, "/administrators/alice", &format!("csrf={token}&role=viewer")).await;
    assert_eq!(refused.status, 409, "disabling (no 'enabled' box) the last admin");
    assert!(refused.body.contains("last enabled admin"));
    assert_eq!(post(&app, &alice, "/administrators/olga/delete", "csrf=wrong").await.status, 403);
    let victor = session_cookie(&sign_in_from(&app, None, "victor", PASSWORD, None).await);
    let viewer_page = get(&app, &victor, "/administrators").await;
    assert!(!viewer_page.body.contains("/administrators/olga/delete"), "viewers get no buttons");
    let viewer_token = csrf(&viewer_page);
    let forbidden = post(&app, &victor, "/administrators/olga/delete", &format!("csrf={viewer_token}")).await;
    assert_eq!(forbidden.status, 403);
    let removed = post(&app, &alice, "/administrators/olga/delete", &format!("csrf={token}")).await;
    assert_eq!(removed.status, 303);
    assert!(!get(&app, &alice, "/administrators").await.body.contains("olga"));
    app.stop().await;
}

/// Every response says nosniff, no framing and no cross-site referrer; console pages
/// carry a CSP that allows no inline script (the console has none) and are not cached;
/// over HTTPS the session cookie is `Secure` with the `__Host-` prefix, and only that
/// cookie is read; `/metrics` asks for its bearer token when one is set.
#[tokio::test]
async fn console_and_metrics_hardening() {
    let db = TestDb::new().await;
    let mut settings = test_settings(&db);
    settings.console_public_url = Some("https://relay.example.com".into());
    settings.metrics_token = Some(postern::domain::Secret::new("scrape-me-please"));
    let app = TestApp::start(db, settings).await;
    app.admin.new_admin_user("alice", "admin", Some(PASSWORD.into())).await.unwrap();
    let http = Api { addr: app.http, token: None };

    let signed_in = sign_in_from(&app, None, "alice", PASSWORD, None).await;
    let set_cookie = signed_in.header("set-cookie").unwrap().to_string();
    assert!(set_cookie.starts_with("__Host-postern_session="), "{set_cookie}");
    assert!(set_cookie.contains("; Secure") && set_cookie.contains("Path=/") && !set_cookie.contains("Domain"));
    let cookie = session_cookie(&signed_in);
    let page = get(&app, &cookie, "/").await;
    assert_eq!(page.status, 200);
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.split(';').any(|d| d.contains("script-src") && d.contains("unsafe-inline")), "{csp}");
    assert!(!page.body.contains("<script>"), "no inline script on the page");
    assert_eq!(page.header("cache-control"), Some("no-store"));
    for response in [&page, &http.get("/api/v1/status").await, &http.get("/healthz").await] {
        assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(response.header("x-frame-options"), Some("DENY"));
        assert_eq!(response.header("referrer-policy"), Some("same-origin"));
    }
    let script = http.get("/static/console.js").await;
    assert_eq!((script.status, script.header("content-type")), (200, Some("text/javascript; charset=utf-8")));
    // The plain-HTTP cookie name is not read over HTTPS (no cookie tossing).
    let plain = cookie.replacen("__Host-postern_session", "postern_session", 1);
    assert_eq!(get(&app, &plain, "/").await.header("location"), Some("/sign-in"));

    assert_eq!(http.get("/metrics").await.status, 401);
    let wrong = Api::new(app.http, "not-the-token").get("/metrics").await;
    assert_eq!(wrong.status, 401);
    let scraped = Api::new(app.http, "scrape-me-please").get("/metrics").await;
    assert_eq!(scraped.status, 200);
    assert!(scraped.body.contains("postern_config_generation"), "{}", &scraped.body[..200.min(scraped.body.len())]);
    app.stop().await;
}
