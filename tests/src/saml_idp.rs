//! A test identity provider: an RSA key and self-signed certificate, metadata built from
//! them, and SAML responses written as text (so the tests can make every malformed
//! variant) and signed with xmlsec through samael.

use base64::Engine as _;
use samael::crypto::{Crypto, CryptoProvider};
use samael::idp::{CertificateParams, IdentityProvider, KeyType, Rsa};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

pub const ENTITY_ID: &str = "https://idp.test.example/realms/ops";

pub struct TestIdp {
    idp: IdentityProvider,
    certificate: Vec<u8>,
}

/// Which element carries the signature, and with which algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signing {
    Assertion,
    Response,
    Unsigned,
    /// rsa-sha1 with a sha1 digest (must be refused).
    AssertionSha1,
}

/// What the response says; `Response::new` gives a valid one for a request.
#[derive(Debug, Clone)]
pub struct Response {
    pub response_id: String,
    pub assertion_id: String,
    pub in_response_to: Option<String>,
    pub issuer: String,
    pub destination: String,
    pub recipient: String,
    pub audience: Option<String>,
    pub name_id: String,
    pub name_id_format: String,
    pub groups: Vec<String>,
    pub issued: OffsetDateTime,
    pub not_on_or_after: OffsetDateTime,
    pub signing: Signing,
}

impl Response {
    /// A valid response for `request_id` to the service provider at `console` (its
    /// public URL).
    pub fn new(console: &str, request_id: &str, name_id: &str, groups: &[&str]) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            response_id: format!("_r{}", uuid::Uuid::new_v4().simple()),
            assertion_id: format!("_a{}", uuid::Uuid::new_v4().simple()),
            in_response_to: Some(request_id.to_string()),
            issuer: ENTITY_ID.into(),
            destination: format!("{console}/saml/acs"),
            recipient: format!("{console}/saml/acs"),
            audience: Some(format!("{console}/saml/metadata")),
            name_id: name_id.into(),
            name_id_format: "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent".into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            issued: now,
            not_on_or_after: now + Duration::minutes(5),
            signing: Signing::Assertion,
        }
    }
}

fn at(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

impl Default for TestIdp {
    fn default() -> Self {
        Self::new()
    }
}

impl TestIdp {
    pub fn new() -> Self {
        let idp = IdentityProvider::generate_new(KeyType::Rsa(Rsa::Rsa2048)).unwrap();
        let params = CertificateParams {
            common_name: "idp.test.example",
            issuer_name: "idp.test.example",
            days_until_expiration: 365,
        };
        let certificate = idp.create_certificate(&params).unwrap().der_data().to_vec();
        Self { idp, certificate }
    }

    fn certificate_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.certificate)
    }

    /// The identity provider's metadata, with its signing certificate and SSO endpoint.
    pub fn metadata(&self, sso_url: &str) -> String {
        format!(
            r#"<?xml version="1.0"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{ENTITY_ID}">
  <md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol" WantAuthnRequestsSigned="false">
    <md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="{sso_url}"/>
  </md:IDPSSODescriptor>
</md:EntityDescriptor>"#,
            self.certificate_base64()
        )
    }

    fn signature_template(&self, id: &str, sha1: bool) -> String {
        let (method, digest) = if sha1 {
            ("http://www.w3.org/2000/09/xmldsig#rsa-sha1", "http://www.w3.org/2000/09/xmldsig#sha1")
        } else {
            ("http://www.w3.org/2001/04/xmldsig-more#rsa-sha256", "http://www.w3.org/2001/04/xmlenc#sha256")
        };
        format!(
            r##"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><ds:SignatureMethod Algorithm="{method}"/><ds:Reference URI="#{id}"><ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/><ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms><ds:DigestMethod Algorithm="{digest}"/><ds:DigestValue></ds:DigestValue></ds:Reference></ds:SignedInfo><ds:SignatureValue></ds:SignatureValue><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></ds:Signature>"##,
            self.certificate_base64()
        )
    }

    /// The assertion element alone (signed if the response asks for it).
    pub fn assertion_xml(&self, r: &Response, signed_here: bool) -> String {
        let signature = if signed_here {
            self.signature_template(&r.assertion_id, r.signing == Signing::AssertionSha1)
        } else {
            String::new()
        };
        let in_response_to = r.in_response_to.as_ref().map(|id| format!(r#" InResponseTo="{id}""#)).unwrap_or_default();
        let audience = r
            .audience
            .as_ref()
            .map(|a| format!("<saml:AudienceRestriction><saml:Audience>{a}</saml:Audience></saml:AudienceRestriction>"))
            .unwrap_or_default();
        let groups: String =
            r.groups.iter().map(|g| format!("<saml:AttributeValue>{g}</saml:AttributeValue>")).collect();
        format!(
            r#"<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{id}" Version="2.0" IssueInstant="{issued}"><saml:Issuer>{issuer}</saml:Issuer>{signature}<saml:Subject><saml:NameID Format="{name_id_format}">{name_id}</saml:NameID><saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer"><saml:SubjectConfirmationData{in_response_to} NotOnOrAfter="{until}" Recipient="{recipient}"/></saml:SubjectConfirmation></saml:Subject><saml:Conditions NotBefore="{issued}" NotOnOrAfter="{until}">{audience}</saml:Conditions><saml:AuthnStatement AuthnInstant="{issued}"><saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement><saml:AttributeStatement><saml:Attribute Name="groups">{groups}</saml:Attribute></saml:AttributeStatement></saml:Assertion>"#,
            id = r.assertion_id,
            issued = at(r.issued),
            issuer = r.issuer,
            name_id = r.name_id,
            name_id_format = r.name_id_format,
            until = at(r.not_on_or_after),
            recipient = r.recipient,
        )
    }

    /// The response as XML before signing, with the signature templates in place.
    pub fn unsigned_xml(&self, r: &Response) -> String {
        let signs_response = r.signing == Signing::Response;
        let signs_assertion = matches!(r.signing, Signing::Assertion | Signing::AssertionSha1);
        let signature = if signs_response { self.signature_template(&r.response_id, false) } else { String::new() };
        let in_response_to = r.in_response_to.as_ref().map(|id| format!(r#" InResponseTo="{id}""#)).unwrap_or_default();
        format!(
            r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="{id}" Version="2.0" IssueInstant="{issued}" Destination="{destination}"{in_response_to}><saml:Issuer>{issuer}</saml:Issuer>{signature}<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>{assertion}</samlp:Response>"#,
            id = r.response_id,
            issued = at(r.issued),
            destination = r.destination,
            issuer = r.issuer,
            assertion = self.assertion_xml(r, signs_assertion),
        )
    }

    /// The response as XML, signed as `r.signing` says.
    pub fn signed_xml(&self, r: &Response) -> String {
        let xml = self.unsigned_xml(r);
        if r.signing == Signing::Unsigned {
            return xml;
        }
        let key = self.idp.export_private_key_der().unwrap();
        // The document in the message: a failure to sign a template is the test's own
        // defect or the library's, and the XML is what tells which.
        Crypto::sign_xml(xml.as_bytes(), &key).unwrap_or_else(|e| panic!("cannot sign {xml}: {e:?}"))
    }

    /// The `SAMLResponse` form value.
    pub fn encode(xml: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(xml)
    }
}

/// The test identity provider as a web site: a sign-in form, and a page that posts the
/// signed response back to the console's ACS, as real identity providers do.
pub struct IdpSite {
    pub addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct SiteState {
    idp: std::sync::Arc<TestIdp>,
    console: String,
    pool: sqlx::PgPool,
    groups: Vec<String>,
}

impl IdpSite {
    /// Serves the IdP on 127.0.0.1 (same site as the console under test). Users who sign
    /// in get `groups`.
    pub async fn start(idp: std::sync::Arc<TestIdp>, console: String, pool: sqlx::PgPool, groups: &[&str]) -> Self {
        use axum::routing::{get, post};
        let state = SiteState { idp, console, pool, groups: groups.iter().map(|g| g.to_string()).collect() };
        let app = axum::Router::new()
            .route("/sso", get(sign_in_form))
            .route("/sso/sign-in", post(post_back))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { addr, task }
    }

    pub fn sso_url(&self) -> String {
        format!("http://{}/sso", self.addr)
    }
}

impl Drop for IdpSite {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn sign_in_form(
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> axum::response::Html<String> {
    assert!(q.contains_key("SAMLRequest"), "the SP sends an AuthnRequest");
    axum::response::Html(
        r#"<!doctype html><title>Test IdP</title><h1>Test identity provider</h1>
<form method="post" action="/sso/sign-in"><label for="idp-user">User</label><input id="idp-user" name="user"><button id="idp-sign-in" type="submit">Sign in</button></form>"#
            .to_string(),
    )
}

async fn post_back(
    axum::extract::State(site): axum::extract::State<SiteState>,
    axum::Form(form): axum::Form<std::collections::HashMap<String, String>>,
) -> axum::response::Html<String> {
    // The request this browser started (the only one in this test's database).
    let request: String = sqlx::query_scalar("select id from saml_requests order by expires_at desc limit 1")
        .fetch_one(&site.pool)
        .await
        .unwrap();
    let groups: Vec<&str> = site.groups.iter().map(String::as_str).collect();
    let response = Response::new(&site.console, &request, form.get("user").map_or("", String::as_str), &groups);
    let encoded = TestIdp::encode(&site.idp.signed_xml(&response));
    axum::response::Html(format!(
        r#"<!doctype html><title>Signing in</title><form id="post-back" method="post" action="{}/saml/acs"><input type="hidden" name="SAMLResponse" value="{encoded}"><button type="submit">Continue</button></form><script>document.getElementById('post-back').submit();</script>"#,
        site.console
    ))
}
