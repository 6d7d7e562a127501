//! The console's test helpers: admins, signing in (in the browser and over raw HTTP),
//! form posts.

use crate::api::Api;
use crate::browser::Browser;
use crate::{TestApp, TestDb, test_settings};

pub const PASSWORD: &str = "correct-horse-battery";

pub async fn node_with_admins() -> TestApp {
    let db = TestDb::new().await;
    let mut settings = test_settings(&db);
    // Short tarpit steps keep throttling tests quick; the thresholds are the defaults.
    settings.auth_failure_delay_ms = 20;
    let app = TestApp::start(db, settings).await;
    app.admin.new_admin_user("alice", "admin", Some(PASSWORD.into())).await.unwrap();
    app.admin.new_admin_user("victor", "viewer", Some(PASSWORD.into())).await.unwrap();
    app
}

pub async fn sign_in(browser: &Browser, app: &TestApp, name: &str) {
    browser.goto(&format!("http://{}/", app.http)).await;
    assert_eq!(browser.path().await, "/sign-in", "a visitor is sent to the sign-in page");
    browser.fill("#name", name).await;
    browser.fill("#password", PASSWORD).await;
    browser.click("#sign-in").await;
    browser.wait_for_text("h1", "Overview").await;
}

/// Signs in over raw HTTP; returns the session cookie and the page's CSRF token.
pub async fn http_session(app: &TestApp, name: &str) -> (String, String) {
    let anonymous = Api { addr: app.http, token: None };
    let form = format!("name={name}&password={PASSWORD}");
    let signed_in = anonymous.raw("POST", "/sign-in", &form_headers(None), form.as_bytes()).await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    let cookie = signed_in.header("set-cookie").unwrap().split(';').next().unwrap().to_string();
    assert!(signed_in.header("set-cookie").unwrap().contains("HttpOnly; SameSite=Strict"));
    let page = anonymous.raw("GET", "/receive-connectors/new", &form_headers(Some(&cookie)), b"").await;
    let csrf = page.body.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    (cookie, csrf)
}

pub fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

pub fn form_headers(cookie: Option<&str>) -> Vec<(String, String)> {
    let mut headers = vec![("Content-Type".to_string(), "application/x-www-form-urlencoded".to_string())];
    if let Some(cookie) = cookie {
        headers.push(("Cookie".to_string(), cookie.to_string()));
    }
    headers
}

/// Ticks a checkbox unless it is ticked already.
pub async fn tick(browser: &Browser, css: &str) {
    let element = browser.client.find(fantoccini::Locator::Css(css)).await.unwrap();
    if element.prop("checked").await.unwrap().as_deref() != Some("true") {
        element.click().await.unwrap();
    }
}
