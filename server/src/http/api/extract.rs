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
        let unfit = |e: serde_json::Error| {
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, format!("the body does not fit the schema: {e}"))
        };
        let StrictValue(value) = serde_json::from_slice(&bytes).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => unfit(e),
            _ => Problem::bad_request(format!("the body is not valid JSON: {e}")),
        })?;
        T::deserialize(integers_as_integers(value)).map(ApiJson).map_err(unfit)
    }
}

/// A JSON value whose objects may not repeat a member: `{"a":1,"a":2}` is refused, not
/// read as whichever one a parser happens to keep (RFC 8259 §4 leaves it open).
struct StrictValue(serde_json::Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let StrictValue(value) = map.next_value()?;
            if object.insert(key.clone(), value).is_some() {
                return Err(serde::de::Error::custom(format!("duplicate member `{key}`")));
            }
        }
        Ok(serde_json::Value::Object(object))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(serde_json::Value::Array(items))
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, serde_json::Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        StrictValue::deserialize(d).map(|StrictValue(v)| v)
    }
}

/// Numbers written with a fraction of zero (`5.0`, `1e3`) as the integers they are: JSON
/// Schema's `integer` matches any number whose fractional part is zero, and clients
/// produce them (Python's `/`, a float in a config file), so a member the document types
/// as an integer accepts them. A true fraction stays a float, and a
/// field that wants an integer still refuses it.
fn integers_as_integers(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            // Exactly representable integers only (|f| < 2^53), so nothing is rounded.
            let exact = f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0;
            if exact { Value::from(f as i64) } else { Value::Number(n) }
        }
        Value::Array(items) => Value::Array(items.into_iter().map(integers_as_integers).collect()),
        Value::Object(members) => {
            Value::Object(members.into_iter().map(|(k, v)| (k, integers_as_integers(v))).collect())
        }
        other => other,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Limits {
        size: u32,
        ranges: Vec<u16>,
        ratio: Option<f64>,
    }

    fn read(json: &str) -> Result<Limits, String> {
        let StrictValue(value) = serde_json::from_str(json).map_err(|e| e.to_string())?;
        Limits::deserialize(integers_as_integers(value)).map_err(|e| e.to_string())
    }

    #[test]
    fn integers_may_be_written_with_a_zero_fraction_and_nothing_else_changes() {
        let limits = read(r#"{"size": 36700160.0, "ranges": [25, 5.87e2], "ratio": 0.5}"#).unwrap();
        assert_eq!(limits, Limits { size: 36_700_160, ranges: vec![25, 587], ratio: Some(0.5) });
        assert!(read(r#"{"size": 1.5, "ranges": []}"#).unwrap_err().contains("expected u32"));
        assert!(read(r#"{"size": -1.0, "ranges": []}"#).is_err(), "still a u32");
        assert!(read(r#"{"size": 1e300, "ranges": []}"#).is_err(), "too large to be exact");
        assert_eq!(read(r#"{"size": 2, "ranges": [], "ratio": 2.0}"#).unwrap().ratio, Some(2.0));
    }

    #[test]
    fn a_member_given_twice_is_refused_at_any_depth() {
        assert!(read(r#"{"size": 1, "size": 2, "ranges": []}"#).unwrap_err().contains("duplicate member `size`"));
        let nested: Result<StrictValue, _> = serde_json::from_str(r#"[{"a": {"b": 1, "b": 1}}]"#);
        assert!(nested.is_err());
        assert!(serde_json::from_str::<StrictValue>(r#"{"a": [1, {"b": null}], "c": "x"}"#).is_ok());
    }
}
