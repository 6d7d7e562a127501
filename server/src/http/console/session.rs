//! Console sign-in sessions: a random token in an HttpOnly, SameSite=Strict cookie, its
//! SHA-256 in Postgres, idle expiry, and a per-session CSRF token that every form must
//! send back (synchronizer token pattern). Over HTTPS the cookie is `Secure` and named
//! `__Host-postern_session`: browsers accept that name only from this exact host over
//! HTTPS with `Path=/`, so a sibling subdomain or a plain-HTTP page cannot plant one
//! (and a cookie of the plain name is then never read).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use crate::admin::{AdminRole, token_digest};
use crate::http::AppState;

/// The session cookie's name over plain HTTP.
pub const COOKIE: &str = "postern_session";
/// Its name over HTTPS (RFC 6265bis §4.1.3.2, the `__Host-` prefix).
pub const SECURE_COOKIE: &str = "__Host-postern_session";

fn cookie_name(secure: bool) -> &'static str {
    if secure { SECURE_COOKIE } else { COOKIE }
}

/// A signed-in administrator.
#[derive(Debug, Clone)]
pub struct Console {
    pub name: String,
    pub role: AdminRole,
    pub csrf: String,
    /// Their password was set by someone else: every page but the password form and
    /// signing out sends them to the password form.
    pub must_change_password: bool,
}

impl Console {
    pub fn may_edit(&self) -> bool {
        self.role == AdminRole::Admin
    }

    /// Refuses a change to a viewer, and a form without this session's CSRF token.
    pub fn check_change(&self, csrf: Option<&str>) -> Result<(), Refusal> {
        if !self.may_edit() {
            return Err(Refusal::Viewer);
        }
        self.check_token(csrf)
    }

    /// Refuses a form without this session's CSRF token (for what any role may do to
    /// its own session: sign out, change its password).
    pub fn check_token(&self, csrf: Option<&str>) -> Result<(), Refusal> {
        let sent = csrf.unwrap_or_default();
        // Compared as digests: equal length, and nothing to learn from timing.
        if sent.is_empty() || token_digest(sent) != token_digest(&self.csrf) {
            return Err(Refusal::Forgery);
        }
        Ok(())
    }
}

/// Why a change was refused (403).
#[derive(Debug, Clone, Copy)]
pub enum Refusal {
    Viewer,
    /// No CSRF token, or another session's: the form did not come from this console.
    Forgery,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let why = match self {
            Refusal::Viewer => "viewers may not change anything",
            Refusal::Forgery => "the form is stale or did not come from this console",
        };
        (StatusCode::FORBIDDEN, why).into_response()
    }
}

pub fn cookie_token(headers: &HeaderMap, secure: bool) -> Option<String> {
    cookie_value(headers, cookie_name(secure))
}

/// The value of the cookie `name` in the request's `Cookie` headers.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(cookie, _)| *cookie == name)
        .map(|(_, value)| value.to_string())
}

/// A random token (session, CSRF, SAML request binding): 32 bytes from the OS.
pub fn random_token() -> Option<String> {
    crate::auth::random_text(32)
}

/// The `Set-Cookie` value for a new session (`Secure` when the console is served over
/// HTTPS, as configured).
pub fn session_cookie(token: &str, secure: bool) -> String {
    let flag = if secure { "; Secure" } else { "" };
    format!("{}={token}; Path=/; HttpOnly; SameSite=Strict{flag}", cookie_name(secure))
}

pub fn expired_cookie(secure: bool) -> String {
    let flag = if secure { "; Secure" } else { "" };
    format!("{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{flag}", cookie_name(secure))
}

/// Where an administrator who must replace their password may still go.
const PASSWORD_PATHS: [&str; 2] = ["/account/password", "/sign-out"];

impl FromRequestParts<AppState> for Console {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let to_sign_in = || Redirect::to("/sign-in").into_response();
        let token = cookie_token(&parts.headers, state.console.secure_cookie).ok_or_else(to_sign_in)?;
        let session = state
            .store
            .admin_session(&token_digest(&token), state.console.idle_secs)
            .await
            .map_err(|e| super::ConsoleError::from(e).into_response())?
            .ok_or_else(to_sign_in)?;
        let role = AdminRole::parse(&session.role).map_err(|_| to_sign_in())?;
        if session.must_change_password && !PASSWORD_PATHS.contains(&parts.uri.path()) {
            return Err(Redirect::to("/account/password").into_response());
        }
        Ok(Console {
            name: session.name,
            role,
            csrf: session.csrf_token,
            must_change_password: session.must_change_password,
        })
    }
}
