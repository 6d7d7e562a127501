//! How the console answers what went wrong, in one place: the error type its handlers
//! return, the form refusal a page shows next to its fields, and the extractor every
//! change goes through (role, CSRF token and NUL bytes checked once, before a handler
//! sees the form).
//!
//! Status codes, the same on every page: 400 a request that cannot be read, 403 a viewer
//! or a forged form, 404 an object that is not there, 409 a conflict with stored state,
//! 412 an object changed since the form was read, 422 invalid values, 503 the database
//! unavailable, 500 a fault of Postern's. Every 5xx is logged with its cause; the browser
//! is told only that it happened.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::session::{Console, Refusal};
use crate::admin::AdminError;
use crate::http::AppState;
use crate::store::StoreError;

/// Why a console request failed.
#[derive(Debug)]
pub enum ConsoleError {
    /// 403: a viewer asked for a change, or the form did not come from this session.
    Refused(Refusal),
    /// 400: the request cannot be read (a NUL character, a form that does not decode).
    BadRequest(String),
    /// 404, with what was not found.
    NotFound(String),
    /// 409, 412 or 422 for a change that has no form to show it in.
    Rejected(StatusCode, String),
    /// 503: the database could not serve the request (the cause is logged).
    Unavailable(String),
    /// 500: something that should not fail did (the cause is logged).
    Internal(String),
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        match self {
            ConsoleError::Refused(refusal) => refusal.into_response(),
            ConsoleError::BadRequest(why) => (StatusCode::BAD_REQUEST, why).into_response(),
            ConsoleError::NotFound(what) => (StatusCode::NOT_FOUND, what).into_response(),
            ConsoleError::Rejected(status, why) => (status, why).into_response(),
            ConsoleError::Unavailable(cause) => {
                tracing::error!(%cause, "a console request failed: the database is unavailable");
                (StatusCode::SERVICE_UNAVAILABLE, "the database is unavailable; try again").into_response()
            }
            ConsoleError::Internal(cause) => {
                tracing::error!(%cause, "a console request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error; the server's log says more").into_response()
            }
        }
    }
}

impl From<Refusal> for ConsoleError {
    fn from(refusal: Refusal) -> Self {
        ConsoleError::Refused(refusal)
    }
}

impl From<StoreError> for ConsoleError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ConsoleError::NotFound(format!("{what} not found")),
            StoreError::Conflict(why) => ConsoleError::Rejected(StatusCode::CONFLICT, why),
            e @ StoreError::PreconditionFailed(_) => {
                ConsoleError::Rejected(StatusCode::PRECONDITION_FAILED, e.to_string())
            }
            // The database refused a value a check should have caught: the same request
            // would fail again, so "try again" would mislead.
            e if e.is_refused_data() => ConsoleError::Internal(e.to_string()),
            e @ (StoreError::Unavailable(_) | StoreError::Database(_) | StoreError::Migration(_)) => {
                ConsoleError::Unavailable(e.to_string())
            }
        }
    }
}

impl From<AdminError> for ConsoleError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Store(e) => e.into(),
            AdminError::Internal(cause) => ConsoleError::Internal(cause),
            AdminError::NotFound(what) => ConsoleError::NotFound(format!("{what} not found")),
            e @ (AdminError::Invalid(_) | AdminError::Conflict(_) | AdminError::PreconditionFailed(_)) => {
                match FormRefusal::of(e) {
                    Ok(refusal) => ConsoleError::Rejected(refusal.status, refusal.message()),
                    Err(e) => e,
                }
            }
        }
    }
}

/// A change the service layer refused for what was typed, as a form shows it: a message
/// per field (the first of each), or one for the whole page.
#[derive(Debug)]
pub struct FormRefusal {
    pub status: StatusCode,
    pub fields: HashMap<String, String>,
    pub problem: Option<String>,
}

impl FormRefusal {
    /// The refusal of `e`, or the error it is when it is not the admin's doing.
    pub fn of(e: AdminError) -> Result<Self, ConsoleError> {
        let page = |status, problem: String| FormRefusal { status, fields: HashMap::new(), problem: Some(problem) };
        match e {
            AdminError::Invalid(errors) => {
                let mut fields = HashMap::new();
                for e in errors {
                    fields.entry(e.field.to_string()).or_insert(e.message);
                }
                Ok(FormRefusal { status: StatusCode::UNPROCESSABLE_ENTITY, fields, problem: None })
            }
            AdminError::Conflict(why) => Ok(page(StatusCode::CONFLICT, why)),
            AdminError::PreconditionFailed(why) => Ok(page(StatusCode::PRECONDITION_FAILED, why)),
            // Removed by someone else while this form was open.
            AdminError::NotFound(what) => Ok(page(StatusCode::NOT_FOUND, format!("{what} not found"))),
            // Not the admin's doing (and never back through `From<AdminError>`).
            AdminError::Internal(cause) => Err(ConsoleError::Internal(cause)),
            AdminError::Store(e) => Err(e.into()),
        }
    }

    /// All of it in one line, for a page without fields.
    pub fn message(&self) -> String {
        let mut fields: Vec<String> =
            self.fields.iter().map(|(field, message)| format!("{field}: {message}")).collect();
        fields.sort();
        self.problem.iter().cloned().chain(fields).collect::<Vec<_>>().join("; ")
    }
}

/// A page with a form that can show a refusal next to its fields.
pub trait FormPage: IntoResponse + Sized {
    fn show_refusal(&mut self, fields: HashMap<String, String>, problem: Option<String>);

    /// The page again, with the values as typed and why the change was refused; an error
    /// that is not about what was typed answers as itself.
    fn refused(mut self, e: AdminError) -> Response {
        match FormRefusal::of(e) {
            Ok(FormRefusal { status, fields, problem }) => {
                self.show_refusal(fields, problem);
                (status, self).into_response()
            }
            Err(e) => e.into_response(),
        }
    }

    /// The page again with the form's own errors (values that did not parse), 422.
    fn invalid(mut self, fields: HashMap<String, String>) -> Response {
        self.show_refusal(fields, None);
        (StatusCode::UNPROCESSABLE_ENTITY, self).into_response()
    }
}

/// A change posted from a console page, checked before the handler runs: a signed-in
/// administrator (not a viewer) with this session's CSRF token, and no NUL character
/// anywhere in the body (raw or `%00`: Postgres cannot store it in text, and nothing a
/// form asks for contains one). `body` is the form as sent, for forms with repeated
/// fields.
#[derive(Debug)]
pub struct ConsoleChange {
    pub console: Console,
    pub body: Bytes,
}

/// A checked change (`ConsoleChange`) with its fields decoded into `T`.
#[derive(Debug)]
pub struct ConsoleForm<T> {
    pub console: Console,
    pub form: T,
}

#[derive(Deserialize)]
struct CsrfField {
    csrf: Option<String>,
}

impl FromRequest<AppState> for ConsoleChange {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let console = Console::from_request_parts(&mut parts, state).await?;
        let body =
            Bytes::from_request(Request::from_parts(parts, body), state).await.map_err(IntoResponse::into_response)?;
        check_change(&console, &body).map_err(IntoResponse::into_response)?;
        Ok(ConsoleChange { console, body })
    }
}

/// Role, token and NUL bytes, in that order: a viewer learns nothing about the form.
fn check_change(console: &Console, body: &[u8]) -> Result<(), ConsoleError> {
    if !console.may_edit() {
        return Err(Refusal::Viewer.into());
    }
    let csrf: CsrfField = serde_urlencoded::from_bytes(body)
        .map_err(|e| ConsoleError::BadRequest(format!("the form could not be read: {e}")))?;
    console.check_change(csrf.csrf.as_deref())?;
    if body.contains(&0) || body.windows(3).any(|w| w.eq_ignore_ascii_case(b"%00")) {
        return Err(ConsoleError::BadRequest("NUL characters are not allowed".into()));
    }
    Ok(())
}

impl<T: DeserializeOwned> FromRequest<AppState> for ConsoleForm<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Response> {
        let ConsoleChange { console, body } = ConsoleChange::from_request(request, state).await?;
        let form = serde_urlencoded::from_bytes(&body)
            .map_err(|e| ConsoleError::BadRequest(format!("the form could not be read: {e}")).into_response())?;
        Ok(ConsoleForm { console, form })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::{AdminRole, FieldError};

    fn admin_console() -> Console {
        Console { name: "a".into(), role: AdminRole::Admin, csrf: "token".into(), must_change_password: false }
    }

    #[test]
    fn a_change_needs_the_role_the_token_and_no_nul() {
        let admin = admin_console();
        assert!(check_change(&admin, b"csrf=token&name=x").is_ok());
        let status = |r: Result<(), ConsoleError>| r.unwrap_err().into_response().status();
        assert_eq!(status(check_change(&admin, b"name=x")), StatusCode::FORBIDDEN);
        assert_eq!(status(check_change(&admin, b"csrf=other&name=x")), StatusCode::FORBIDDEN);
        for nul in [&b"csrf=token&name=a%00b"[..], b"csrf=token&name=a%00", b"csrf=token&name=a\0b"] {
            assert_eq!(status(check_change(&admin, nul)), StatusCode::BAD_REQUEST, "{nul:?}");
        }
        let viewer = Console { role: AdminRole::Viewer, ..admin_console() };
        assert_eq!(status(check_change(&viewer, b"csrf=token&name=a%00b")), StatusCode::FORBIDDEN);
        assert_eq!(status(check_change(&viewer, b"csrf=token&csrf=token")), StatusCode::FORBIDDEN);
        assert_eq!(status(check_change(&admin, b"csrf=token&csrf=token")), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn every_refusal_has_one_status_wherever_it_is_shown() {
        let invalid = || AdminError::Invalid(vec![FieldError { field: "name", message: "is empty".into() }]);
        let cases = [
            (invalid(), StatusCode::UNPROCESSABLE_ENTITY),
            (AdminError::Conflict("exists".into()), StatusCode::CONFLICT),
            (AdminError::PreconditionFailed("changed".into()), StatusCode::PRECONDITION_FAILED),
            (AdminError::NotFound("x".into()), StatusCode::NOT_FOUND),
        ];
        for (e, status) in cases {
            let text = e.to_string();
            assert_eq!(FormRefusal::of(e).unwrap().status, status, "{text}");
        }
        for (e, status) in [
            (invalid(), StatusCode::UNPROCESSABLE_ENTITY),
            (AdminError::Conflict("exists".into()), StatusCode::CONFLICT),
            (AdminError::NotFound("x".into()), StatusCode::NOT_FOUND),
            (AdminError::Store(StoreError::Unavailable("down")), StatusCode::SERVICE_UNAVAILABLE),
            (AdminError::Internal("bug".into()), StatusCode::INTERNAL_SERVER_ERROR),
        ] {
            assert_eq!(ConsoleError::from(e).into_response().status(), status);
        }
        assert!(FormRefusal::of(AdminError::Store(StoreError::Unavailable("down"))).is_err());
        assert_eq!(FormRefusal::of(invalid()).unwrap().message(), "name: is empty");
    }
}
