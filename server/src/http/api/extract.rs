//! What every API handler shares: the JSON body and query extractors (their errors are
//! problem documents), `If-Match`, entity tags on responses, and paging.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::http::problem::Problem;
use crate::store::IfMatch;

/// The largest JSON body accepted (a certificate chain and key fit many times over).
const MAX_BODY: usize = 256 * 1024;

/// A JSON request body. Malformed JSON is a 400, JSON of the wrong shape (a missing or
/// unknown member, a wrong type) a 422 naming the member; NUL characters are refused
/// outright (Postgres text cannot hold them, and no field needs one).
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .is_some_and(|v| v == "application/json" || (v.starts_with("application/") && v.ends_with("+json")));
        if !json {
            return Err(Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "the body must be application/json"));
        }
        let bytes =
            axum::body::Bytes::from_request(req, state).await.map_err(|e| Problem::new(e.status(), e.body_text()))?;
        if bytes.len() > MAX_BODY {
            return Err(Problem::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the body exceeds {MAX_BODY} bytes")));
        }
        if bytes.windows(6).any(|w| w.eq_ignore_ascii_case(b"\\u0000")) {
            return Err(Problem::bad_request("NUL characters (\\u0000) are not allowed"));
        }
        serde_json::from_slice(&bytes).map(ApiJson).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, format!("the body does not fit the schema: {e}"))
            }
            _ => Problem::bad_request(format!("the body is not valid JSON: {e}")),
        })
    }
}

/// Query parameters; a bad one is a 400 naming it.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        serde_urlencoded::from_str(query)
            .map(ApiQuery)
            .map_err(|e| Problem::bad_request(format!("invalid query parameter: {e}")))
    }
}

/// The request's `If-Match` precondition, if any.
#[derive(Debug)]
pub struct IfMatchHeader(pub Option<IfMatch>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatchHeader {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.headers.get(header::IF_MATCH) {
            None => Ok(IfMatchHeader(None)),
            Some(value) => {
                let text = value.to_str().map_err(|_| Problem::bad_request("If-Match is not ASCII"))?;
                IfMatch::parse(text).map(|m| IfMatchHeader(Some(m))).map_err(Problem::bad_request)
            }
        }
    }
}

/// A JSON response carrying the object's entity tag; `location` is set on a 201.
pub fn tagged<T: Serialize>(status: StatusCode, etag: &str, location: Option<String>, body: &T) -> Response {
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    if let Some(value) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        headers.insert(header::LOCATION, value);
    }
    (status, headers, axum::Json(body)).into_response()
}

/// 201 Created for a new object, 200 OK for a replaced or unchanged one.
pub fn created_or_ok(created: bool) -> StatusCode {
    if created { StatusCode::CREATED } else { StatusCode::OK }
}

/// Percent-encodes a name for a `Location` path segment (RFC 3986 §3.3).
pub fn path_segment(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'@' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `after` to read the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;

/// Paging of a list ordered by name, and its filter.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Items per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// The `next` value of the previous page.
    pub after: Option<String>,
    /// Only enabled (true) or disabled (false) objects.
    pub enabled: Option<bool>,
}

/// Paging of a list ordered by name.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// The `next` value of the previous page.
    pub after: Option<String>,
}

impl From<PageQuery> for ListQuery {
    fn from(q: PageQuery) -> Self {
        ListQuery { limit: q.limit, after: q.after, enabled: None }
    }
}

/// The page size asked for, checked.
pub fn page_limit(limit: Option<u32>) -> Result<usize, Problem> {
    match limit.unwrap_or(DEFAULT_LIMIT) {
        n @ 1..=MAX_LIMIT => Ok(n as usize),
        _ => Err(Problem::bad_request(format!("limit must be between 1 and {MAX_LIMIT}"))),
    }
}

/// Pages a list by `key` (names, compared case-insensitively): the items after the
/// cursor, at most `limit`, and the cursor of the next page. Sorted here, not by the
/// database, so that the order and the cursor comparison are the same (a database
/// collation may order `a-c` and `ab` differently from a byte comparison).
pub fn page_by_name<T>(mut items: Vec<T>, key: impl Fn(&T) -> String, query: &ListQuery) -> Result<Page<T>, Problem> {
    let limit = page_limit(query.limit)?;
    items.sort_by_cached_key(|i| key(i).to_lowercase());
    let after = query.after.as_deref().map(str::to_lowercase);
    let mut rest: Vec<T> =
        items.into_iter().filter(|i| after.as_deref().is_none_or(|a| key(i).to_lowercase().as_str() > a)).collect();
    let next = if rest.len() > limit { rest.get(limit - 1).map(&key) } else { None };
    rest.truncate(limit);
    Ok(Page { items: rest, next })
}
