//! Single sign-on configuration: the service provider's metadata, and an identity
//! provider configured from its metadata file in the console (upload in a real browser),
//! with metadata that could not be verified against refused and nothing stored.

use base64::Engine as _;
use postern_tests::api::Api;
use postern_tests::browser::Browser;
use postern_tests::console::{PASSWORD, form_headers, http_session, node_with_admins, sign_in, urlencode};
use postern_tests::saml_idp::{ENTITY_ID, IdpSite, Response, Signing, TestIdp};
use postern_tests::{TestApp, http_get};

const IDP: &str = "https://idp.example.com/realms/ops";

/// An identity provider's metadata with a real (generated) signing certificate.
fn idp_metadata(key_use: &str) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["idp.example.com".into()]).unwrap().self_signed(&key).unwrap();
    let der = base64::engine::general_purpose::STANDARD.encode(cert.der());
    format!(
        r#"<?xml version="1.0"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{IDP}">
  <md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:KeyDescriptor use="{key_use}"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{der}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.example.com/sso"/>
  </md:IDPSSODescriptor>
</md:EntityDescriptor>"#
    )
}

async fn stored_idps(app: &TestApp) -> (i64, i64) {
    let pool = app.admin.store().pool();
    let rows = sqlx::query_scalar("select count(*) from saml_identity_provider").fetch_one(pool).await.unwrap();
    // Changes only: signing in is audited too, but changes nothing.
    let audited = sqlx::query_scalar("select count(*) from audit_log where object_type <> 'console_sign_in'")
        .fetch_one(pool)
        .await
        .unwrap();
    (rows, audited)
}

#[tokio::test]
async fn the_service_provider_metadata_names_the_console_urls() {
    let app = node_with_admins().await;
    let (status, xml) = http_get(app.http, "/saml/metadata", None).await;
    assert_eq!(status, 200, "public, no session needed");
    let base = format!("http://{}", app.http);
    assert!(xml.contains(&format!(r#"entityID="{base}/saml/metadata""#)), "{xml}");
    assert!(xml.contains(&format!(r#"Location="{base}/saml/acs""#)), "{xml}");
    assert!(xml.contains("urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"), "{xml}");
    app.stop().await;
}

#[tokio::test]
async fn bad_identity_provider_settings_are_refused_and_store_nothing() {
    let app = node_with_admins().await;
    let http = Api { addr: app.http, token: None };
    let (cookie, csrf) = http_session(&app, "alice").await;
    let post = |metadata: String, admin_group: &str, viewer_group: &str, csrf: &str, cookie: &str| {
        let form = format!(
            "csrf={csrf}&metadata_xml={}&group_attribute=groups&admin_group={}&viewer_group={}",
            urlencode(&metadata),
            urlencode(admin_group),
            urlencode(viewer_group)
        );
        let (http, cookie) = (&http, cookie.to_string());
        async move { http.raw("POST", "/single-sign-on", &form_headers(Some(&cookie)), form.as_bytes()).await }
    };
    let before = stored_idps(&app).await;
    let with_dtd = idp_metadata("signing").replacen("<?xml version=\"1.0\"?>", "<!DOCTYPE x [<!ENTITY e \"x\">]>", 1);
    let cases = [
        (idp_metadata("encryption"), "relay-admins", "", "no signing certificate"),
        (with_dtd, "relay-admins", "", "DTD"),
        ("<html>not metadata</html>".to_string(), "relay-admins", "", "not a SAML EntityDescriptor"),
        (String::new(), "relay-admins", "", "upload the identity provider"),
        (idp_metadata("signing"), "", "", "map at least one group"),
        (idp_metadata("signing"), "relay-admins", "relay-admins", "must differ"),
    ];
    for (metadata, admin_group, viewer_group, expected) in cases {
        let refused = post(metadata, admin_group, viewer_group, &csrf, &cookie).await;
        assert_eq!(refused.status, 422, "{expected}: {}", refused.body);
        assert!(refused.body.contains(expected), "{expected}: {}", refused.body);
        assert_eq!(stored_idps(&app).await, before, "{expected}: nothing stored, nothing audited");
    }
    // A viewer cannot change it, even with valid settings and a CSRF token.
    let (viewer, viewer_csrf) = http_session(&app, "victor").await;
    let refused = post(idp_metadata("signing"), "relay-admins", "", &viewer_csrf, &viewer).await;
    assert_eq!(refused.status, 403);
    assert_eq!(stored_idps(&app).await, before);
    app.stop().await;
}

#[tokio::test]
async fn an_admin_configures_the_identity_provider_from_its_metadata_file_in_the_browser() {
    postern_tests::require_tool!(Browser);
    let app = node_with_admins().await;
    let dir = std::env::temp_dir().join(format!("postern-idp-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("idp-metadata.xml");
    std::fs::write(&file, idp_metadata("signing")).unwrap();
    let browser = Browser::start().await;
    sign_in(&browser, &app, "alice").await;
    browser.goto(&format!("http://{}/single-sign-on", app.http)).await;
    assert!(browser.text("#sp-values").await.contains(&format!("http://{}/saml/acs", app.http)));
    assert!(browser.exists("#idp-none").await);
    let upload = browser.client.find(fantoccini::Locator::Css("input[data-fills='metadata_xml']")).await.unwrap();
    upload.send_keys(file.to_str().unwrap()).await.unwrap();
    browser.wait_for_value("#metadata_xml", IDP).await;
    browser.fill("#admin_group", "relay-admins").await;
    browser.fill("#viewer_group", "relay-viewers").await;
    browser.click("#save").await;
    browser.wait_for_text("#idp-current", IDP).await;
    assert!(browser.text("#idp-current").await.contains("1 pinned signing certificate"));
    let (role_admin, role_viewer, actor): (Option<String>, Option<String>, String) = sqlx::query_as(
        "select admin_group, viewer_group, (select actor from audit_log where object_type = 'identity_provider') \
         from saml_identity_provider",
    )
    .fetch_one(app.admin.store().pool())
    .await
    .unwrap();
    assert_eq!((role_admin.as_deref(), role_viewer.as_deref()), (Some("relay-admins"), Some("relay-viewers")));
    assert_eq!(actor, "console:alice");
    // Changing the mapping keeps the metadata when none is uploaded.
    browser.fill("#viewer_group", "").await;
    browser.click("#save").await;
    browser.wait_for_text("#idp-current", IDP).await;
    let viewer: Option<String> = sqlx::query_scalar("select viewer_group from saml_identity_provider")
        .fetch_one(app.admin.store().pool())
        .await
        .unwrap();
    assert_eq!(viewer, None);
    browser.close().await;
    std::fs::remove_dir_all(dir).unwrap();
    app.stop().await;
}

/// A node with the test identity provider configured and single sign-on enabled.
struct SsoNode {
    app: TestApp,
    idp: TestIdp,
    console: String,
    /// Each response is posted from its own loopback address (a client of its own), so
    /// that many cases stay under the per-source limits.
    clients: std::sync::atomic::AtomicU32,
}

impl SsoNode {
    async fn start() -> Self {
        let app = node_with_admins().await;
        let idp = TestIdp::new();
        let console = format!("http://{}", app.http);
        let changes = postern::admin::SingleSignOnChanges {
            metadata_xml: idp.metadata("https://idp.test.example/sso"),
            group_attribute: "groups".into(),
            admin_group: "relay-admins".into(),
            viewer_group: "relay-viewers".into(),
        };
        app.admin.set_identity_provider(&changes).await.unwrap();
        app.admin.set_sign_in_policy(true, true).await.unwrap();
        Self { app, idp, console, clients: std::sync::atomic::AtomicU32::new(0) }
    }

    /// A loopback address no earlier post of this test used.
    fn next_client(&self) -> std::net::IpAddr {
        let n = self.clients.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::net::IpAddr::from([127, 0, 1, 1 + (n % 250) as u8])
    }

    fn http(&self) -> Api {
        Api { addr: self.app.http, token: None }
    }

    /// Starts a sign-in as a browser would; returns its request cookie and the request ID.
    async fn start_login(&self, next: &str) -> (String, String) {
        let path = format!("/saml/login?next={}", urlencode(next));
        let started = self.http().raw_from(Some(self.next_client()), "GET", &path, &[], b"").await;
        assert_eq!(started.status, 303, "{}", started.body);
        let location = started.header("location").unwrap();
        assert!(location.starts_with("https://idp.test.example/sso?SAMLRequest="), "{location}");
        let cookie = started.header("set-cookie").unwrap().split(';').next().unwrap().to_string();
        let token = cookie.split_once('=').unwrap().1;
        let id: String = sqlx::query_scalar("select id from saml_requests where browser_sha256 = $1")
            .bind(postern::admin::token_digest(token))
            .fetch_one(self.app.admin.store().pool())
            .await
            .unwrap();
        (cookie, id)
    }

    async fn post(&self, cookie: Option<&str>, saml_response: &str) -> postern_tests::api::ApiResponse {
        let body = format!("SAMLResponse={}&RelayState=https%3A%2F%2Fevil.example%2F", urlencode(saml_response));
        let mut headers = form_headers(cookie);
        // As a browser posting from the identity provider's site.
        headers.push(("Origin".into(), "https://idp.test.example".into()));
        headers.push(("Sec-Fetch-Site".into(), "cross-site".into()));
        self.http().raw_from(Some(self.next_client()), "POST", "/saml/acs", &headers, body.as_bytes()).await
    }

    /// Posts from one given client address.
    async fn post_from(
        &self,
        client: std::net::IpAddr,
        cookie: Option<&str>,
        saml_response: &str,
    ) -> postern_tests::api::ApiResponse {
        let body = format!("SAMLResponse={}", urlencode(saml_response));
        let mut headers = form_headers(cookie);
        headers.push(("Origin".into(), "https://idp.test.example".into()));
        self.http().raw_from(Some(client), "POST", "/saml/acs", &headers, body.as_bytes()).await
    }

    async fn sessions(&self) -> i64 {
        sqlx::query_scalar("select count(*) from admin_sessions")
            .fetch_one(self.app.admin.store().pool())
            .await
            .unwrap()
    }

    async fn last_refusal(&self) -> String {
        sqlx::query_scalar(
            "select after->>'reason' from audit_log where action = 'refuse-sign-in' order by id desc limit 1",
        )
        .fetch_one(self.app.admin.store().pool())
        .await
        .unwrap()
    }
}

#[tokio::test]
async fn a_valid_signed_response_signs_in_and_creates_the_user_with_the_mapped_role() {
    let node = SsoNode::start().await;
    let (cookie, request) = node.start_login("/queue").await;
    let response = Response::new(&node.console, &request, "jane@example.com", &["staff", "relay-admins"]);
    let signed_in = node.post(Some(&cookie), &TestIdp::encode(&node.idp.signed_xml(&response))).await;
    assert_eq!(signed_in.status, 200, "{}", signed_in.body);
    assert!(signed_in.body.contains("url=/queue"), "the relay path stored with the request: {}", signed_in.body);
    let session = signed_in.header("set-cookie").unwrap().split(';').next().unwrap().to_string();
    assert!(session.starts_with("postern_session="));
    let (role, idp, name_id): (String, String, String) =
        sqlx::query_as("select role, idp_entity_id, name_id from admin_users where name = 'jane@example.com'")
            .fetch_one(node.app.admin.store().pool())
            .await
            .unwrap();
    assert_eq!((role.as_str(), idp.as_str(), name_id.as_str()), ("admin", ENTITY_ID, "jane@example.com"));
    let page = node.http().raw("GET", "/receive-connectors", &form_headers(Some(&session)), b"").await;
    assert_eq!(page.status, 200, "the session works");
    assert!(page.body.contains("jane@example.com (admin)"));
    let audited: String = sqlx::query_scalar(
        "select after->>'role' from audit_log where action = 'sign-in' and object_type = 'console_sign_in'",
    )
    .fetch_one(node.app.admin.store().pool())
    .await
    .unwrap();
    assert_eq!(audited, "admin");

    // The response signed as a whole works too, and the same user comes back as a viewer
    // when only the viewer group is released (the role follows the groups).
    let (cookie, request) = node.start_login("https://evil.example/").await;
    let mut response = Response::new(&node.console, &request, "jane@example.com", &["relay-viewers"]);
    response.signing = Signing::Response;
    let signed_in = node.post(Some(&cookie), &TestIdp::encode(&node.idp.signed_xml(&response))).await;
    assert_eq!(signed_in.status, 200, "{}", signed_in.body);
    assert!(signed_in.body.contains("url=/\""), "an off-site next goes to the overview: {}", signed_in.body);
    let users: Vec<(String, String)> = sqlx::query_as("select name, role from admin_users where name_id is not null")
        .fetch_all(node.app.admin.store().pool())
        .await
        .unwrap();
    assert_eq!(users, vec![("jane@example.com".to_string(), "viewer".to_string())], "keyed by (IdP, NameID)");

    // Disabled here, the identity provider cannot sign them back in; nor can a password.
    sqlx::query("update admin_users set enabled = false where name_id = 'jane@example.com'")
        .execute(node.app.admin.store().pool())
        .await
        .unwrap();
    let (cookie, request) = node.start_login("/").await;
    let response = Response::new(&node.console, &request, "jane@example.com", &["relay-admins"]);
    assert_eq!(node.post(Some(&cookie), &TestIdp::encode(&node.idp.signed_xml(&response))).await.status, 403);
    assert!(node.last_refusal().await.contains("disabled"));
    node.app.stop().await;
}

/// Each hostile or broken response is refused with its reason audited and no session.
#[tokio::test]
async fn every_forged_or_broken_response_is_refused_and_no_session_is_created() {
    let node = SsoNode::start().await;
    let other = TestIdp::new();
    type Case = (&'static str, Box<dyn Fn(&SsoNode, &str) -> String>, &'static str);
    let valid =
        |node: &SsoNode, request: &str| Response::new(&node.console, request, "mallory@example.com", &["relay-admins"]);
    let cases: Vec<Case> = vec![
        (
            "unsigned",
            Box::new(move |n, r| {
                let mut x = valid(n, r);
                x.signing = Signing::Unsigned;
                n.idp.signed_xml(&x)
            }),
            "FailedToValidateSignature",
        ),
        (
            "signature stripped",
            Box::new(move |n, r| {
                let xml = n.idp.signed_xml(&valid(n, r));
                let start = xml.find("<ds:Signature").unwrap();
                let end = xml.find("</ds:Signature>").unwrap() + "</ds:Signature>".len();
                format!("{}{}", &xml[..start], &xml[end..])
            }),
            "FailedToValidateSignature",
        ),
        ("signed by another key", Box::new(move |n, r| other.signed_xml(&valid(n, r))), "FailedToValidateSignature"),
        (
            "SHA-1",
            Box::new(move |n, r| {
                let mut x = valid(n, r);
                x.signing = Signing::AssertionSha1;
                n.idp.signed_xml(&x)
            }),
            "FailedToValidateSignature",
        ),
        (
            "wrapped: a forged assertion beside the signed one",
            Box::new(move |n, r| {
                let xml = n.idp.signed_xml(&valid(n, r));
                let mut forged = valid(n, r);
                forged.name_id = "admin".into();
                let evil = n.idp.assertion_xml(&forged, false);
                xml.replacen("</samlp:Status>", &format!("</samlp:Status>{evil}"), 1)
            }),
            "more than one assertion",
        ),
        (
            "comment injected into the NameID",
            Box::new(move |n, r| {
                n.idp.signed_xml(&valid(n, r)).replacen("mallory@example.com", "mallory@example.com<!---->.evil", 1)
            }),
            "FailedToValidateSignature",
        ),
        (
            "expired",
            Box::new(move |n, r| {
                let mut x = valid(n, r);
                x.issued -= time::Duration::hours(2);
                x.not_on_or_after = x.issued + time::Duration::minutes(5);
                n.idp.signed_xml(&x)
            }),
            "AssertionExpired",
        ),
        (
            "wrong audience",
            Box::new(move |n, r| {
                let mut x = valid(n, r);
                x.audience = Some("https://other.example/".into());
                n.idp.signed_xml(&x)
            }),
            "AudienceRestrictionFailed",
        ),
        (
            "no audience",
            Box::new(move |n, r| {
                let mut x = valid(n, r);
                x.audience = None;
                n.idp.signed_xml(&x)
            }),
            "names no audience",
        ),
        (
            "wrong recipient",
            Box::new(move |n, r| {
                let mut x = valid(n, r);
                x.recipient = "https://other.example/saml/acs".into();
                n.idp.signed_xml(&x)
            }),
            "AssertionRecipientMismatch",
        ),
        (
            "unknown InResponseTo",
            Box::new(move |n, _| n.idp.signed_xml(&valid(n, "_never-issued"))),
            "InResponseToInvalid",
        ),
        (
            "IdP-initiated (no InResponseTo)",
            Box::new(move |n, r| {
                let mut x = valid(n, r);
                x.in_response_to = None;
                n.idp.signed_xml(&x)
            }),
            "InResponseToInvalid",
        ),
        (
            "DTD present",
            Box::new(move |n, r| format!("<!DOCTYPE r [<!ENTITY e \"x\">]>{}", n.idp.signed_xml(&valid(n, r)))),
            "DTD",
        ),
        (
            "reference to a local file",
            Box::new(move |n, r| n.idp.signed_xml(&valid(n, r)).replacen("URI=\"#", "URI=\"file:///etc/passwd#", 1)),
            "outside itself",
        ),
        (
            "no group granting a role",
            Box::new(move |n, r| n.idp.signed_xml(&Response::new(&n.console, r, "mallory@example.com", &["staff"]))),
            "grant no role",
        ),
        (
            "wrong issuer",
            Box::new(move |n, r| {
                let mut x = valid(n, r);
                x.issuer = "https://evil.example/".into();
                n.idp.signed_xml(&x)
            }),
            "IssuerMismatch",
        ),
        (
            "transient NameID",
            Box::new(move |n, r| {
                let mut x = valid(n, r);
                x.name_id_format = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient".into();
                n.idp.signed_xml(&x)
            }),
            "transient",
        ),
    ];
    for (name, make, reason) in &cases {
        let (cookie, request) = node.start_login("/").await;
        let before = node.sessions().await;
        let refused = node.post(Some(&cookie), &TestIdp::encode(&make(&node, &request))).await;
        assert_eq!(refused.status, 403, "{name}: {}", refused.body);
        assert!(refused.body.contains("Single sign-on refused"), "{name}: {}", refused.body);
        assert_eq!(node.sessions().await, before, "{name}: no session");
        let audited = node.last_refusal().await;
        assert!(audited.contains(reason), "{name}: audited {audited:?}, expected {reason:?}");
    }
    let users: i64 = sqlx::query_scalar("select count(*) from admin_users where name_id is not null")
        .fetch_one(node.app.admin.store().pool())
        .await
        .unwrap();
    assert_eq!(users, 0, "no user was created");
    node.app.stop().await;
}

#[tokio::test]
async fn requests_are_single_use_per_browser_and_assertions_are_never_accepted_twice() {
    let node = SsoNode::start().await;
    // Oversized, before anything is decoded.
    let (cookie, _) = node.start_login("/").await;
    let huge = "A".repeat(postern::saml::MAX_RESPONSE_BYTES + 4);
    assert_eq!(node.post(Some(&cookie), &huge).await.status, 403);
    assert!(node.last_refusal().await.contains("larger than"));

    // A valid response answering this browser's request, posted without the browser's
    // cookie (another browser), is refused; with it, accepted; posted again, refused.
    let (cookie, request) = node.start_login("/").await;
    let first =
        TestIdp::encode(&node.idp.signed_xml(&Response::new(&node.console, &request, "jane", &["relay-admins"])));
    assert_eq!(node.post(None, &first).await.status, 403);
    assert!(node.last_refusal().await.contains("no sign-in was started from this browser"));
    let (stranger, _) = node.start_login("/").await;
    assert_eq!(node.post(Some(&stranger), &first).await.status, 403, "another browser's request");
    assert_eq!(node.post(Some(&cookie), &first).await.status, 200);
    assert_eq!(node.post(Some(&cookie), &first).await.status, 403, "the request was used up");
    // A fresh response to the used request is refused as well.
    let again =
        TestIdp::encode(&node.idp.signed_xml(&Response::new(&node.console, &request, "jane", &["relay-admins"])));
    assert_eq!(node.post(Some(&cookie), &again).await.status, 403, "reused InResponseTo");

    // The replay cache: the same assertion ID answering a new request is refused.
    let (cookie_a, request_a) = node.start_login("/").await;
    let (cookie_b, request_b) = node.start_login("/").await;
    let mut a = Response::new(&node.console, &request_a, "jane", &["relay-admins"]);
    let mut b = Response::new(&node.console, &request_b, "jane", &["relay-admins"]);
    b.assertion_id = a.assertion_id.clone();
    a.response_id = format!("{}a", a.response_id);
    assert_eq!(node.post(Some(&cookie_a), &TestIdp::encode(&node.idp.signed_xml(&a))).await.status, 200);
    let replayed = node.post(Some(&cookie_b), &TestIdp::encode(&node.idp.signed_xml(&b))).await;
    assert_eq!(replayed.status, 403, "{}", replayed.body);
    assert!(node.last_refusal().await.contains("already used"));
    node.app.stop().await;
}

#[tokio::test]
async fn password_sign_in_can_be_turned_off_and_never_both_ways() {
    let node = SsoNode::start().await;
    let bad = node.app.admin.set_sign_in_policy(false, false).await;
    assert!(bad.is_err(), "at least one way to sign in");
    // Without passwords, single sign-on must be able to grant the admin role.
    let viewers_only = postern::admin::SingleSignOnChanges {
        metadata_xml: String::new(),
        group_attribute: "groups".into(),
        admin_group: String::new(),
        viewer_group: "relay-viewers".into(),
    };
    node.app.admin.set_identity_provider(&viewers_only).await.unwrap();
    assert!(node.app.admin.set_sign_in_policy(true, false).await.is_err(), "nobody could administer");
    let restored = postern::admin::SingleSignOnChanges { admin_group: "relay-admins".into(), ..viewers_only };
    node.app.admin.set_identity_provider(&restored).await.unwrap();
    node.app.admin.set_sign_in_policy(true, false).await.unwrap();
    let form = format!("name=alice&password={}", urlencode(PASSWORD));
    let refused = node.http().raw("POST", "/sign-in", &form_headers(None), form.as_bytes()).await;
    assert_eq!(refused.status, 401);
    assert!(refused.body.contains("Password sign-in is turned off"), "{}", refused.body);
    let page = node.http().raw("GET", "/sign-in", &[], b"").await;
    assert!(page.body.contains("id=\"sso-sign-in\"") && !page.body.contains("id=\"password\""));
    // Break-glass back on: the local admin signs in while the IdP is unreachable.
    node.app.admin.set_sign_in_policy(true, true).await.unwrap();
    let signed_in = node.http().raw("POST", "/sign-in", &form_headers(None), form.as_bytes()).await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    node.app.stop().await;
}

#[tokio::test]
async fn an_administrator_signs_in_through_the_identity_provider_in_the_browser() {
    postern_tests::require_tool!(Browser);
    let app = node_with_admins().await;
    let idp = std::sync::Arc::new(TestIdp::new());
    let console = format!("http://{}", app.http);
    let site = IdpSite::start(idp.clone(), console.clone(), app.admin.store().pool().clone(), &["relay-admins"]).await;
    let changes = postern::admin::SingleSignOnChanges {
        metadata_xml: idp.metadata(&site.sso_url()),
        group_attribute: "groups".into(),
        admin_group: "relay-admins".into(),
        viewer_group: String::new(),
    };
    app.admin.set_identity_provider(&changes).await.unwrap();
    app.admin.set_sign_in_policy(true, true).await.unwrap();
    let browser = Browser::start().await;
    browser.goto(&format!("{console}/sign-in")).await;
    browser.click("#sso-sign-in").await;
    browser.wait_for_text("h1", "Test identity provider").await;
    browser.fill("#idp-user", "jane@example.com").await;
    browser.click("#idp-sign-in").await;
    browser.wait_for_text("h1", "Overview").await;
    assert!(browser.text("header").await.contains("jane@example.com (admin)"));
    browser.goto(&format!("{console}/single-sign-on")).await;
    browser.wait_for_text("#idp-current", ENTITY_ID).await;
    browser.screenshot("single-sign-on").await;
    browser.close().await;
    app.stop().await;
}

/// The document the pre-check reads is the document libxml2 and xmlsec read: a response
/// in any encoding but plain UTF-8 (UTF-16 with or without a byte-order mark, an XML
/// declaration naming another encoding, NUL or other control characters) is refused
/// before xmlsec sees it, and nothing reaches out: the FIFO its `file:` reference names
/// is never opened, the listener its `http:` reference names is never connected to.
#[tokio::test]
async fn a_response_in_another_encoding_is_refused_and_nothing_is_fetched() {
    let node = SsoNode::start().await;
    let wire = postern_tests::tripwire::Tripwire::new().await;
    let utf16 = |text: &str, big_endian: bool, bom: bool| -> Vec<u8> {
        let mut units: Vec<u16> = text.encode_utf16().collect();
        if bom {
            units.insert(0, 0xfeff);
        }
        units.iter().flat_map(|u| if big_endian { u.to_be_bytes() } else { u.to_le_bytes() }).collect()
    };
    type Variant = (&'static str, Box<dyn Fn(&str) -> Vec<u8>>, &'static str);
    let variants: Vec<Variant> = vec![
        ("UTF-16LE without a byte-order mark", Box::new(move |x| utf16(x, false, false)), "not plain UTF-8"),
        ("UTF-16BE without a byte-order mark", Box::new(move |x| utf16(x, true, false)), "not plain UTF-8"),
        ("UTF-16LE with a byte-order mark", Box::new(move |x| utf16(x, false, true)), "not base64-encoded XML"),
        (
            "a declaration naming UTF-16",
            Box::new(|x| format!("<?xml version=\"1.0\" encoding=\"UTF-16\"?>{x}").into_bytes()),
            "another encoding",
        ),
        (
            "a declaration naming UTF-7",
            Box::new(|x| format!("<?xml version='1.0' encoding='utf-7'?>{x}").into_bytes()),
            "another encoding",
        ),
        (
            "a declaration naming ISO-8859-1",
            Box::new(|x| format!("<?xml version=\"1.0\" encoding = \"ISO-8859-1\" ?>{x}").into_bytes()),
            "another encoding",
        ),
        (
            "a NUL byte",
            Box::new(|x| x.replacen("<saml:Issuer>", "<saml:Issuer>\0", 1).into_bytes()),
            "control character",
        ),
        (
            "a control character",
            Box::new(|x| x.replacen("<samlp:Status>", "\u{1}<samlp:Status>", 1).into_bytes()),
            "control character",
        ),
    ];
    for (i, (name, encode, reason)) in variants.iter().enumerate() {
        let (cookie, request) = node.start_login("/").await;
        let valid = Response::new(&node.console, &request, "mallory@example.com", &["relay-admins"]);
        let target = if i % 2 == 0 { wire.file_uri() } else { wire.http_uri() };
        let xml = node.idp.signed_xml(&valid).replacen("URI=\"#", &format!("URI=\"{target}#"), 1);
        let encoded = base64::engine::general_purpose::STANDARD.encode(encode(&xml));
        let refused = node.post(Some(&cookie), &encoded).await;
        assert_eq!(refused.status, 403, "{name}: {}", refused.body);
        assert!(refused.body.contains(reason), "{name}: {}", refused.body);
        assert!(!wire.tripped(), "{name}: something opened the file or connected");
    }
    assert_eq!(node.sessions().await, 0);
    node.app.stop().await;
}

/// The second wall: even a document that got past Postern's pre-check (here samael is
/// called directly, with no pre-check at all) makes xmlsec follow no reference outside
/// the document. The same document with its own reference verifies, so xmlsec was
/// reached.
#[tokio::test]
async fn xmlsec_never_follows_a_reference_outside_the_document() {
    let wire = postern_tests::tripwire::Tripwire::new().await;
    let idp = TestIdp::new();
    let console = "https://relay.test";
    let metadata: samael::metadata::EntityDescriptor = idp.metadata("https://idp.test.example/sso").parse().unwrap();
    let sp = samael::service_provider::ServiceProvider {
        entity_id: Some(format!("{console}/saml/metadata")),
        acs_url: Some(format!("{console}/saml/acs")),
        idp_metadata: metadata,
        ..Default::default()
    };
    let response = Response::new(console, "_request", "mallory@example.com", &["relay-admins"]);
    let signed = idp.signed_xml(&response);
    let verify = |xml: String| {
        let sp = sp.clone();
        // On a thread with a deadline: a reference that blocked (a FIFO with no writer)
        // must fail this test, not hang it.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(sp.parse_xml_response(&xml, Some(&["_request"])).map(|_| ()).map_err(|e| format!("{e:?}")));
        });
        rx.recv_timeout(std::time::Duration::from_secs(10)).expect("xmlsec answered within 10 s")
    };
    assert_eq!(verify(signed.clone()), Ok(()), "the untouched response verifies");
    for target in [wire.file_uri(), wire.http_uri(), format!("{}#x", wire.file_uri())] {
        let forged = signed.replacen("URI=\"#", &format!("URI=\"{target}#"), 1);
        assert!(verify(forged).is_err(), "{target}: refused");
        assert!(!wire.tripped(), "{target}: xmlsec opened it");
    }
}

/// `/saml/login` and `/saml/acs` take a budget of requests per source a minute; past it,
/// 429 (login) or 403 (the response); refusals are written to the audit log a few at a
/// time per source, then only counted (the summary comes when the window ends), so a
/// flood cannot fill the audit log.
#[tokio::test]
async fn sso_requests_are_limited_per_source_and_refusals_cannot_flood_the_audit_log() {
    let node = SsoNode::start().await;
    let flooder: std::net::IpAddr = [127, 0, 2, 9].into();
    let http = node.http();
    let login = |source| http.raw_from(Some(source), "GET", "/saml/login", &[], b"");
    let mut statuses = Vec::new();
    for _ in 0..25 {
        statuses.push(login(flooder).await.status);
    }
    assert_eq!(statuses.iter().filter(|s| **s == 303).count(), 20, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 5, "{statuses:?}");
    assert_eq!(login([127, 0, 2, 10].into()).await.status, 303, "another source has its own budget");

    let audited = || async {
        sqlx::query_scalar::<_, i64>(
            "select count(*) from audit_log where action = 'refuse-sign-in' and after->>'source' = '127.0.2.9'",
        )
        .fetch_one(node.app.admin.store().pool())
        .await
        .unwrap()
    };
    let mut reasons = Vec::new();
    for _ in 0..30 {
        let refused = node.post_from(flooder, None, "PHNhbWxwOlJlc3BvbnNlLz4=").await;
        assert_eq!(refused.status, 403, "{}", refused.body);
        reasons.push(refused.body);
    }
    assert!(reasons[0].contains("no sign-in was started"), "{}", reasons[0]);
    assert!(reasons[29].contains("too many single sign-on attempts"), "{}", reasons[29]);
    assert_eq!(audited().await, 5, "five written, the rest counted for the summary");
    node.app.stop().await;
}
