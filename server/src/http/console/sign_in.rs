//! Signing in with a password, signing out, and changing one's own password (forced
//! after a password someone else chose or saw).
//!
//! A sign-in attempt is counted against its source and its name before the password is
//! checked, and the check runs on the node's few argon2 threads (shared with SMTP AUTH):
//! a burst of concurrent attempts cannot multiply argon2's 19 MiB, and is locked out
//! after the first ten instead of after every one of them was hashed. The source is the
//! TCP peer, or, for a peer listed in `console_trusted_proxies`, the address that proxy
//! says it forwarded (`X-Forwarded-For`), so that a reverse proxy does not put every
//! administrator in one bucket. Every sign-in, failure and lockout is audited (floods of
//! failures summed up, see `auth::RefusalDigest`).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::ConsoleError;
use super::session::{self, Console};
use crate::admin::token_digest;
use crate::auth::PoolError;
use crate::http::AppState;

/// Longest a password check may wait for an argon2 thread before the answer is "busy".
const VERIFY_WAIT: Duration = Duration::from_secs(10);
/// A typed name longer than any administrator's is refused unread (and never kept as a
/// throttle key).
const MAX_NAME_CHARS: usize = 64;
/// The longest password accepted (as `auth::password` enforces when one is set).
const MAX_PASSWORD_BYTES: usize = 1024;

/// The client's address: the TCP peer, or what a trusted reverse proxy says it forwarded.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub IpAddr);

impl FromRequestParts<AppState> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        let peer = peer.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        Ok(ClientAddress(client_address(peer, &parts.headers, &state.console.trusted_proxies)))
    }
}

/// RFC 7239 §5.2 (and the de-facto `X-Forwarded-For`): each proxy appends the address it
/// received the request from. Read from the right, skipping our own trusted proxies, the
/// first address is the client; anything to its left was written by the client itself
/// and proves nothing.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(&crate::domain::canonical_ip(ip)));
    if !is_trusted(peer) {
        return peer;
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in forwarded.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if is_trusted(ip) => continue,
            Ok(ip) => return crate::domain::canonical_ip(ip),
            // Garbage where an address should be: believe nothing further left.
            Err(_) => return peer,
        }
    }
    peer
}

#[derive(Template, WebTemplate)]
#[template(path = "sign_in.html")]
pub struct SignInPage {
    error: Option<String>,
    name: String,
    /// Sign-in through the identity provider is on.
    sso: bool,
    /// Password sign-in is on (the break-glass way when the identity provider is down).
    local: bool,
}

/// Which ways to sign in are on: (single sign-on, password). Password sign-in stays on
/// while single sign-on is not enabled, and when the database cannot say.
async fn sign_in_ways(state: &AppState) -> (bool, bool) {
    match state.store.identity_provider().await {
        Ok(Some(idp)) if idp.enabled => (true, idp.local_sign_in),
        _ => (false, true),
    }
}

pub async fn page(State(state): State<AppState>) -> SignInPage {
    let (sso, local) = sign_in_ways(&state).await;
    SignInPage { error: None, name: String::new(), sso, local }
}

#[derive(Deserialize)]
pub struct SignInForm {
    name: String,
    password: String,
}

/// Why a password sign-in failed, for the audit log (the browser is told less).
#[derive(Debug, Clone, Copy)]
enum Failure {
    WrongPassword,
    UnknownName,
    Disabled,
    LockedOut,
    Malformed,
}

impl Failure {
    fn reason(self) -> &'static str {
        match self {
            Failure::WrongPassword => "wrong password",
            Failure::UnknownName => "no such administrator (or one without a password)",
            Failure::Disabled => "the administrator is disabled",
            Failure::LockedOut => "too many failed sign-ins from this address or for this name",
            Failure::Malformed => "a name or password that cannot be one",
        }
    }
}

pub async fn sign_in(
    State(state): State<AppState>,
    ClientAddress(client): ClientAddress,
    axum::Form(form): axum::Form<SignInForm>,
) -> Response {
    let (sso, local) = sign_in_ways(&state).await;
    let login = form.name.trim().to_lowercase();
    let shown_name = if login.chars().count() <= MAX_NAME_CHARS { form.name.trim().to_string() } else { String::new() };
    let refused = |status: StatusCode, error: &str| {
        (status, SignInPage { error: Some(error.into()), name: shown_name.clone(), sso, local }).into_response()
    };
    if !local {
        return refused(StatusCode::UNAUTHORIZED, "Password sign-in is turned off: sign in with single sign-on.");
    }
    let malformed = login.is_empty()
        || login.chars().count() > MAX_NAME_CHARS
        || login.contains('\0')
        || form.password.contains('\0')
        || form.password.len() > MAX_PASSWORD_BYTES;
    if malformed {
        audit_failure(&state, client, "", Failure::Malformed).await;
        return refused(StatusCode::UNAUTHORIZED, "Wrong name or password.");
    }
    let throttle = &state.console.throttle;
    let delay = match throttle.attempt(client, &login, Instant::now()) {
        Some((delay, lockouts)) => {
            for lockout in lockouts {
                audit_lockout(&state, client, &lockout).await;
            }
            delay
        }
        None => {
            audit_failure(&state, client, &login, Failure::LockedOut).await;
            return refused(StatusCode::TOO_MANY_REQUESTS, "Too many failed sign-ins. Try again later.");
        }
    };
    let user = match state.store.admin_user(&login).await {
        Ok(user) => user,
        Err(e) => return ConsoleError::from(e).into_response(),
    };
    // An unknown name is checked against a decoy hash: it takes as long as a wrong password.
    // So does an administrator from the identity provider ('!': no password at all).
    let phc = user.as_ref().filter(|u| u.password_hash.starts_with('$')).map(|u| u.password_hash.clone());
    let phc = phc.unwrap_or_else(|| state.console.decoy_hash.clone());
    let password = form.password.clone();
    let matches = match state
        .console
        .hashing
        .try_run(VERIFY_WAIT, move || crate::auth::verify_on_this_thread(password.as_bytes(), &phc))
        .await
    {
        Ok(matches) => matches,
        Err(PoolError::Busy | PoolError::TimedOut) => {
            return refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "The console is busy checking passwords. Try again in a moment.",
            );
        }
        Err(PoolError::Stopped) => {
            return ConsoleError::Internal("the password-checking threads have stopped".into()).into_response();
        }
    };
    let failure = match &user {
        None => Some(Failure::UnknownName),
        Some(u) if !u.password_hash.starts_with('$') => Some(Failure::UnknownName),
        Some(_) if !matches => Some(Failure::WrongPassword),
        Some(u) if !u.enabled => Some(Failure::Disabled),
        Some(_) => None,
    };
    let (Some(user), None) = (user, failure) else {
        audit_failure(&state, client, &login, failure.unwrap_or(Failure::WrongPassword)).await;
        tokio::time::sleep(delay).await;
        return refused(StatusCode::UNAUTHORIZED, "Wrong name or password.");
    };
    throttle.succeeded_attempt(client, &login, Instant::now());
    let detail = serde_json::json!({ "source": client.to_string() });
    // No session without its audit record: a sign-in the log cannot show is refused.
    if let Err(e) = state.store.audit_sign_in(&format!("console:{}", user.name), "sign-in", "password", detail).await {
        return ConsoleError::from(e).into_response();
    }
    let cookie = match start_session(&state, user.id).await {
        Ok(cookie) => cookie,
        Err(response) => return response,
    };
    let next = if user.must_change_password { "/account/password" } else { "/" };
    let mut response = Redirect::to(next).into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    response
}

/// Audits a refused sign-in, unless this source already filled its share of the audit
/// log this window (then it is only counted; a summary follows). Always counted in
/// metrics and logged.
async fn audit_failure(state: &AppState, client: IpAddr, login: &str, failure: Failure) {
    metrics::counter!("postern_console_sign_in_refusals_total", "method" => "password").increment(1);
    tracing::info!(%client, reason = failure.reason(), "console sign-in refused");
    if state.console.refusals.note("password", client, Instant::now()) {
        let detail = serde_json::json!({ "reason": failure.reason(), "source": client.to_string(), "name": login });
        audit_refusal(state, "refuse-sign-in", "password", detail).await;
    }
}

async fn audit_lockout(state: &AppState, client: IpAddr, lockout: &crate::auth::Lockout) {
    tracing::warn!(kind = lockout.kind, key = %lockout.key, until = %lockout.until, %client,
        "console sign-in lockout after repeated failures");
    let detail = serde_json::json!({
        "locked": lockout.kind, "key": lockout.key, "failures": lockout.failures,
        "until": lockout.until.to_string(), "source": client.to_string(),
    });
    audit_refusal(state, "lockout", "password", detail).await;
}

/// Writes a refusal to the audit log; if the database cannot take it, the server's log
/// has it (the refusal stands either way).
pub(super) async fn audit_refusal(state: &AppState, action: &str, method: &str, detail: serde_json::Value) {
    let actor = if method == "saml" { "saml" } else { "anonymous" };
    if let Err(e) = state.store.audit_sign_in(actor, action, method, detail.clone()).await {
        tracing::error!(error = %e, %action, %detail, "a refused sign-in could not be written to the audit log");
    }
}

/// A new console session for this administrator: its cookie, to set on the response.
pub async fn start_session(state: &AppState, user: uuid::Uuid) -> Result<HeaderValue, Response> {
    let (Some(token), Some(csrf)) = (session::random_token(), session::random_token()) else {
        return Err((StatusCode::INTERNAL_SERVER_ERROR, "no randomness").into_response());
    };
    if let Err(e) = state.store.create_admin_session(user, &token_digest(&token), &csrf).await {
        return Err(ConsoleError::from(e).into_response());
    }
    HeaderValue::from_str(&session::session_cookie(&token, state.console.secure_cookie))
        .map_err(|_| (StatusCode::INTERNAL_SERVER_ERROR, "bad cookie").into_response())
}

#[derive(Deserialize)]
pub struct CsrfForm {
    pub csrf: Option<String>,
}

pub async fn sign_out(
    State(state): State<AppState>,
    console: Console,
    headers: HeaderMap,
    axum::Form(form): axum::Form<CsrfForm>,
) -> Response {
    // Signing out needs the token too, but no edit right: viewers sign out as well.
    if let Err(refused) = console.check_token(form.csrf.as_deref()) {
        return refused.into_response();
    }
    if let Some(token) = session::cookie_token(&headers, state.console.secure_cookie)
        && let Err(e) = state.store.delete_admin_session(&token_digest(&token)).await
    {
        // The cookie is cleared anyway; the session ends at its idle expiry.
        tracing::warn!(error = %e, "a console session could not be deleted at sign-out");
    }
    let mut response = Redirect::to("/sign-in").into_response();
    if let Ok(cookie) = HeaderValue::from_str(&session::expired_cookie(state.console.secure_cookie)) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

#[derive(Template, WebTemplate)]
#[template(path = "account_password.html")]
pub struct PasswordPage {
    console: Console,
    error: Option<String>,
    done: bool,
}

pub async fn password_page(console: Console) -> PasswordPage {
    PasswordPage { console, error: None, done: false }
}

#[derive(Deserialize)]
pub struct PasswordForm {
    current: String,
    password: String,
    confirm: String,
    csrf: Option<String>,
}

/// An administrator's own new password: every other session of theirs ends.
pub async fn change_password(
    State(state): State<AppState>,
    console: Console,
    headers: HeaderMap,
    axum::Form(form): axum::Form<PasswordForm>,
) -> Response {
    // Any role may change its own password; the form must still come from this session.
    if let Err(refused) = console.check_token(form.csrf.as_deref()) {
        return refused.into_response();
    }
    let again = |console: Console, error: String| {
        (StatusCode::UNPROCESSABLE_ENTITY, PasswordPage { console, error: Some(error), done: false }).into_response()
    };
    if form.password != form.confirm {
        return again(console, "The new password and its confirmation differ.".into());
    }
    let Some(token) = session::cookie_token(&headers, state.console.secure_cookie) else {
        return Redirect::to("/sign-in").into_response();
    };
    let admin = super::admin(&state, &console);
    match admin.change_own_password(&console.name, &form.current, &form.password, &token_digest(&token)).await {
        Ok(()) => PasswordPage { console: Console { must_change_password: false, ..console }, error: None, done: true }
            .into_response(),
        Err(crate::admin::AdminError::Invalid(errors)) => {
            let text = errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ");
            again(console, text)
        }
        Err(e) => ConsoleError::from(e).into_response(),
    }
}
