//! Single sign-on in the console: the values to give the identity provider (Postern's
//! entity ID, ACS URL and metadata), and the identity provider's metadata and role
//! mapping. Also the public SP metadata document at `/saml/metadata`.

use std::collections::HashMap;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::session::Console;
use super::sign_in::ClientAddress;
use super::{ConsoleError, ConsoleForm, FormPage, admin};
use crate::admin::SingleSignOnChanges;
use crate::http::AppState;
use crate::saml::ServiceProviderUrls;

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct SsoForm {
    metadata_xml: String,
    group_attribute: String,
    admin_group: String,
    viewer_group: String,
}

/// The identity provider as stored (what identifies it, not the whole metadata).
pub struct CurrentIdp {
    entity_id: String,
    sso_url: String,
    certificates: usize,
    enabled: bool,
    local_sign_in: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "sso.html")]
pub struct SsoPage {
    console: Console,
    sp: ServiceProviderUrls,
    current: Option<CurrentIdp>,
    form: SsoForm,
    errors: HashMap<String, String>,
    problem: Option<String>,
}

impl SsoPage {
    fn error(&self, field: &str) -> String {
        self.errors.get(field).cloned().unwrap_or_default()
    }
}

impl FormPage for SsoPage {
    fn show_refusal(&mut self, fields: HashMap<String, String>, problem: Option<String>) {
        (self.errors, self.problem) = (fields, problem);
    }
}

async fn sso_page(state: &AppState, console: Console) -> Result<SsoPage, ConsoleError> {
    let stored = state.store.identity_provider().await?;
    let form = match &stored {
        Some(row) => SsoForm {
            group_attribute: row.group_attribute.clone(),
            admin_group: row.admin_group.clone().unwrap_or_default(),
            viewer_group: row.viewer_group.clone().unwrap_or_default(),
            ..SsoForm::default()
        },
        None => SsoForm { group_attribute: "groups".into(), ..SsoForm::default() },
    };
    Ok(SsoPage {
        console,
        sp: ServiceProviderUrls::new(&state.console.public_url),
        current: stored.map(|row| CurrentIdp {
            entity_id: row.entity_id,
            sso_url: row.sso_url,
            certificates: row.signing_certificates.len(),
            enabled: row.enabled,
            local_sign_in: row.local_sign_in,
        }),
        form,
        errors: HashMap::new(),
        problem: None,
    })
}

pub async fn page(State(state): State<AppState>, console: Console) -> Result<SsoPage, ConsoleError> {
    sso_page(&state, console).await
}

pub async fn save(
    State(state): State<AppState>,
    ConsoleForm { console, form }: ConsoleForm<SsoForm>,
) -> Result<Response, ConsoleError> {
    let changes = SingleSignOnChanges {
        // Browsers send a textarea's line breaks as CRLF.
        metadata_xml: form.metadata_xml.replace("\r\n", "\n"),
        group_attribute: form.group_attribute.clone(),
        admin_group: form.admin_group.clone(),
        viewer_group: form.viewer_group.clone(),
    };
    match admin(&state, &console).set_identity_provider(&changes).await {
        Ok(_) => Ok(Redirect::to("/single-sign-on").into_response()),
        Err(e) => {
            let mut page = sso_page(&state, console).await?;
            // What was typed comes back (the metadata too, to be corrected).
            page.form = form;
            Ok(page.refused(e))
        }
    }
}

/// The service provider's metadata (public: the identity provider may fetch it).
pub async fn metadata(State(state): State<AppState>) -> Response {
    match ServiceProviderUrls::new(&state.console.public_url).metadata_xml() {
        Ok(xml) => ([(header::CONTENT_TYPE, "application/samlmetadata+xml")], xml).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "could not build the SAML metadata");
            (StatusCode::INTERNAL_SERVER_ERROR, "the SAML metadata could not be built").into_response()
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PolicyForm {
    enabled: Option<String>,
    local_sign_in: Option<String>,
}

pub async fn save_policy(
    State(state): State<AppState>,
    ConsoleForm { console, form }: ConsoleForm<PolicyForm>,
) -> Result<Response, ConsoleError> {
    let admin = admin(&state, &console);
    match admin.set_sign_in_policy(form.enabled.is_some(), form.local_sign_in.is_some()).await {
        Ok(()) => Ok(Redirect::to("/single-sign-on").into_response()),
        Err(e) => {
            // The policy form has no fields of its own to mark: say it at the top.
            let refusal = super::error::FormRefusal::of(e)?;
            let mut page = sso_page(&state, console).await?;
            page.problem = Some(format!("Sign-in policy not changed: {}", refusal.message()));
            Ok((refusal.status, page).into_response())
        }
    }
}

/// The browser's cookie that binds an AuthnRequest to it (read back at the ACS).
const REQUEST_COOKIE: &str = "postern_saml";
/// An AuthnRequest must be answered within this long.
const REQUEST_LIFETIME_SECS: i64 = 600;

#[derive(Debug, Default, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// Only a path on this console: `/x`, never `//host`, `/\host`, a scheme, or control
/// characters. Anything else goes to the overview.
pub fn relative_path(next: Option<&str>) -> String {
    match next {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.contains('\\')
                && !p.chars().any(char::is_control)
                && p.len() <= 512 =>
        {
            p.to_string()
        }
        _ => "/".to_string(),
    }
}

/// Requests per minute one source may make to `/saml/login` and to `/saml/acs` (a person
/// signs in a few times a day; each login stores a pending request, each response costs
/// a signature verification).
const SSO_REQUESTS_PER_MINUTE: u32 = 20;
/// The longest a response's verification may take before the sign-in is refused.
const VERIFY_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// SP-initiated sign-in: a fresh AuthnRequest, remembered for this browser, and the
/// browser sent to the identity provider with it (HTTP-Redirect binding).
pub async fn login(
    State(state): State<AppState>,
    ClientAddress(client): ClientAddress,
    Query(q): Query<LoginQuery>,
) -> Response {
    if !state.console.requests.admit_source("saml-login", client, SSO_REQUESTS_PER_MINUTE) {
        metrics::counter!("postern_console_sign_in_refusals_total", "method" => "saml").increment(1);
        return (StatusCode::TOO_MANY_REQUESTS, "too many sign-in attempts from this address; try again in a minute")
            .into_response();
    }
    let idp = match state.store.identity_provider().await {
        Ok(Some(idp)) if idp.enabled => idp,
        Ok(_) => return (StatusCode::NOT_FOUND, "single sign-on is not enabled").into_response(),
        Err(e) => return ConsoleError::from(e).into_response(),
    };
    let urls = ServiceProviderUrls::new(&state.console.public_url);
    let Ok(sp) = crate::saml::ServiceProviderSession::new(&urls, &idp.metadata_xml) else {
        return (
            StatusCode::CONFLICT,
            "the identity provider's metadata no longer reads; an admin must upload it again",
        )
            .into_response();
    };
    let (Some(browser), Some(nonce)) = (super::session::random_token(), super::session::random_token()) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "no randomness").into_response();
    };
    // An NCName that cannot be guessed (samael's own has only 32 random bits).
    let request_id = format!("_{nonce}");
    let relay_path = relative_path(q.next.as_deref());
    let digest = crate::admin::token_digest(&browser);
    if let Err(e) = state.store.save_saml_request(&request_id, &digest, &relay_path, REQUEST_LIFETIME_SECS).await {
        return ConsoleError::from(e).into_response();
    }
    let Ok(url) = sp.authn_request_url(&request_id, "") else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "could not build the AuthnRequest").into_response();
    };
    // The identity provider posts back cross-site: over HTTPS the cookie must be
    // SameSite=None (and Secure); over plain HTTP only a same-site IdP can be used.
    let same_site = if state.console.secure_cookie { "None; Secure" } else { "Lax" };
    let cookie = format!(
        "{REQUEST_COOKIE}={browser}; Path=/saml; HttpOnly; Max-Age={REQUEST_LIFETIME_SECS}; SameSite={same_site}"
    );
    let mut response = Redirect::to(&url).into_response();
    if let Ok(value) = axum::http::HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

#[derive(Debug, Default, Deserialize)]
pub struct AcsForm {
    #[serde(rename = "SAMLResponse", default)]
    saml_response: String,
}

/// The Assertion Consumer Service: verifies the identity provider's response, creates or
/// updates the administrator, and starts a console session. Every sign-in and every
/// refusal (with its reason) goes to the audit log (a sign-in in its own transaction).
pub async fn acs(
    State(state): State<AppState>,
    ClientAddress(client): ClientAddress,
    headers: axum::http::HeaderMap,
    axum::Form(form): axum::Form<AcsForm>,
) -> Response {
    let outcome = if state.console.requests.admit_source("saml-acs", client, SSO_REQUESTS_PER_MINUTE) {
        federated_sign_in(&state, &headers, form.saml_response).await
    } else {
        Err(crate::saml::Refusal::Throttled)
    };
    match outcome {
        Ok((cookie, relay_path)) => {
            // A page of our own moves on, so that the (SameSite=Strict) session cookie
            // travels on a same-site navigation rather than the identity provider's POST.
            let target =
                askama::filters::escape(&relay_path, askama::filters::Html).map(|e| e.to_string()).unwrap_or_default();
            let page = format!(
                "<!doctype html><meta http-equiv=\"refresh\" content=\"0;url={target}\"><title>Signed in</title><a href=\"{target}\">Continue</a>"
            );
            let mut response = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response();
            response.headers_mut().insert(header::SET_COOKIE, cookie);
            // The request cookie has served its purpose.
            if let Ok(expired) = axum::http::HeaderValue::from_str(&format!("{REQUEST_COOKIE}=; Path=/saml; Max-Age=0"))
            {
                response.headers_mut().append(header::SET_COOKIE, expired);
            }
            response
        }
        Err(crate::saml::Refusal::Unavailable) => {
            // Logged where it happened, with its cause; nothing the sender did.
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "Single sign-on could not be completed: the database is unavailable; try again.",
            )
                .into_response()
        }
        Err(refusal) => {
            let reason = refusal.to_string();
            metrics::counter!("postern_console_sign_in_refusals_total", "method" => "saml").increment(1);
            tracing::warn!(%reason, %client, "single sign-on refused");
            // Anyone can post here: past a few per source and window, refusals are only
            // counted, and summed up in the audit log when the window ends.
            if state.console.refusals.note("saml", client, std::time::Instant::now()) {
                let detail = serde_json::json!({ "reason": reason, "source": client.to_string() });
                super::sign_in::audit_refusal(&state, "refuse-sign-in", "saml", detail).await;
            }
            (StatusCode::FORBIDDEN, format!("Single sign-on refused: {reason}")).into_response()
        }
    }
}

async fn federated_sign_in(
    state: &AppState,
    headers: &axum::http::HeaderMap,
    encoded: String,
) -> Result<(axum::http::HeaderValue, String), crate::saml::Refusal> {
    use crate::saml::Refusal;
    use crate::store::{FederatedSignIn, SignInOutcome};
    if encoded.len() > crate::saml::MAX_RESPONSE_BYTES {
        return Err(Refusal::TooLarge);
    }
    let unavailable = |e: crate::store::StoreError| {
        tracing::error!(error = %e, "single sign-on could not be completed: the database is unavailable");
        Refusal::Unavailable
    };
    let idp = match state.store.identity_provider().await.map_err(unavailable)? {
        Some(idp) if idp.enabled => idp,
        _ => return Err(Refusal::NotEnabled),
    };
    let browser = super::session::cookie_value(headers, REQUEST_COOKIE).ok_or(Refusal::NoPendingRequest)?;
    let digest = crate::admin::token_digest(&browser);
    let pending = state.store.pending_saml_requests(&digest).await.map_err(unavailable)?;
    let urls = ServiceProviderUrls::new(&state.console.public_url);
    let metadata = idp.metadata_xml.clone();
    let attribute = idp.group_attribute.clone();
    // xmlsec is synchronous and CPU-bound: on the one SAML thread, within a time limit
    // (a response that would take longer is refused, whatever it holds).
    let verified = state
        .console
        .saml
        .try_run(VERIFY_LIMIT, move || {
            let sp = crate::saml::ServiceProviderSession::new(&urls, &metadata).map_err(|_| Refusal::NotEnabled)?;
            sp.verify(&encoded, &pending, &attribute)
        })
        .await
        .map_err(|e| match e {
            crate::auth::PoolError::Busy => Refusal::Throttled,
            crate::auth::PoolError::TimedOut | crate::auth::PoolError::Stopped => {
                tracing::error!(
                    "a SAML response was not verified within {VERIFY_LIMIT:?}; its thread may still be busy"
                );
                Refusal::TooSlow
            }
        })??;
    let role = if idp.admin_group.as_ref().is_some_and(|g| verified.groups.contains(g)) {
        "admin"
    } else if idp.viewer_group.as_ref().is_some_and(|g| verified.groups.contains(g)) {
        "viewer"
    } else {
        return Err(Refusal::NoRole);
    };
    let outcome = state
        .store
        .federated_sign_in(&FederatedSignIn {
            idp_entity_id: &idp.entity_id,
            name_id: &verified.name_id,
            role,
            request_id: &verified.in_response_to,
            browser_sha256: &digest,
            assertion_id: &verified.assertion_id,
            assertion_valid_until: verified.valid_until,
        })
        .await
        .map_err(unavailable)?;
    let (user, relay_path) = match outcome {
        SignInOutcome::SignedIn { user, relay_path } => (user, relay_path),
        SignInOutcome::UnknownRequest => return Err(Refusal::NoPendingRequest),
        SignInOutcome::Replayed => return Err(Refusal::Replayed(verified.assertion_id)),
        SignInOutcome::Disabled => {
            return Err(Refusal::Invalid(format!("the administrator {:?} is disabled here", verified.name_id)));
        }
        SignInOutcome::NameTaken => {
            return Err(Refusal::Invalid(format!("a local administrator is already named {:?}", verified.name_id)));
        }
    };
    // (start_session's answer logs why it failed, when that is the database.)
    let cookie = super::sign_in::start_session(state, user).await.map_err(|response| {
        tracing::error!(status = %response.status(), "single sign-on could not start a console session");
        Refusal::Unavailable
    })?;
    Ok((cookie, relay_path))
}
