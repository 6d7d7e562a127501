//! Errors as RFC 9457 `application/problem+json` documents. Validation errors carry an
//! `errors` extension member listing each invalid field (RFC 9457 §3.2 allows extension
//! members), so a provisioning tool can point at the exact input that was refused.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::admin::{AdminError, FieldError};
use crate::store::StoreError;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// A problem as the API sends it.
#[derive(Debug)]
pub struct Problem {
    pub status: StatusCode,
    pub detail: String,
    pub errors: Vec<FieldError>,
}

/// The document's schema (RFC 9457 §3.1 members plus `errors`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Problem)]
pub struct ProblemDocument {
    /// Always `about:blank`: the status code says what kind of problem it is.
    #[serde(rename = "type")]
    pub kind: String,
    /// The status code's reason phrase.
    pub title: String,
    pub status: u16,
    /// What went wrong, for a person.
    pub detail: String,
    /// Each invalid field (422 only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldErrorDocument>,
}

/// One invalid field of a request and what is wrong with it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = FieldError)]
pub struct FieldErrorDocument {
    /// The JSON member (or query parameter) at fault.
    pub field: String,
    pub message: String,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self { status, detail: detail.into(), errors: Vec::new() }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    /// 422 with one field error.
    pub fn invalid_field(field: &'static str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            detail: format!("invalid input: {field}: {message}"),
            errors: vec![FieldError { field, message }],
        }
    }

    fn document(&self) -> ProblemDocument {
        ProblemDocument {
            kind: "about:blank".into(),
            title: self.status.canonical_reason().unwrap_or("Error").into(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            errors: self
                .errors
                .iter()
                .map(|e| FieldErrorDocument { field: e.field.into(), message: e.message.clone() })
                .collect(),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::to_string(&self.document()).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"postern\""));
        }
        response
    }
}

impl From<AdminError> for Problem {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Invalid(errors) => Problem {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                detail: AdminError::Invalid(errors.clone()).to_string(),
                errors,
            },
            AdminError::NotFound(what) => Problem::new(StatusCode::NOT_FOUND, format!("{what} not found")),
            AdminError::Conflict(why) => Problem::new(StatusCode::CONFLICT, why),
            AdminError::PreconditionFailed(why) => Problem::new(StatusCode::PRECONDITION_FAILED, why),
            AdminError::Internal(why) => {
                tracing::error!(error = %why, "API request failed");
                Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "an internal error occurred; see the server log")
            }
            AdminError::Store(e) => e.into(),
        }
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => Problem::new(StatusCode::NOT_FOUND, format!("{what} not found")),
            StoreError::Conflict(why) => Problem::new(StatusCode::CONFLICT, why),
            e @ StoreError::PreconditionFailed(_) => Problem::new(StatusCode::PRECONDITION_FAILED, e.to_string()),
            other => {
                // The database is down or refused the statement: a retry may succeed.
                tracing::warn!(error = %other, "API request failed in the store");
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, "the database cannot serve this request now; try again")
            }
        }
    }
}
