//! A minimal HTTP/1.1 client for the REST API tests: any method, headers and a JSON
//! body, over a plain TCP connection (`Connection: close`), so the tests exercise the
//! server exactly as curl would.

use std::net::SocketAddr;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug)]
pub struct ApiResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl ApiResponse {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn etag(&self) -> String {
        self.header("etag").unwrap_or_else(|| panic!("no ETag: {self:?}")).to_string()
    }

    /// Asserts a problem document with this status; returns it.
    pub fn problem(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "expected {status}, got {}: {}", self.status, self.body);
        assert_eq!(self.header("content-type"), Some("application/problem+json"), "{self:?}");
        let doc = self.json();
        assert_eq!(doc["status"], status);
        assert!(doc["title"].is_string() && doc["detail"].is_string(), "{doc}");
        doc
    }

    /// The fields named in a 422's `errors`.
    pub fn invalid_fields(&self) -> Vec<String> {
        let doc = self.problem(422);
        doc["errors"].as_array().into_iter().flatten().map(|e| e["field"].as_str().unwrap().to_string()).collect()
    }
}

/// A client bound to a server and (optionally) a token.
#[derive(Debug, Clone)]
pub struct Api {
    pub addr: SocketAddr,
    pub token: Option<String>,
}

impl Api {
    pub fn new(addr: SocketAddr, token: &str) -> Self {
        Self { addr, token: Some(token.to_string()) }
    }

    pub async fn get(&self, path: &str) -> ApiResponse {
        self.request("GET", path, &[], None).await
    }

    pub async fn put(&self, path: &str, body: Value) -> ApiResponse {
        self.request("PUT", path, &[], Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> ApiResponse {
        self.request("PATCH", path, &[], Some(body)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> ApiResponse {
        self.request("POST", path, &[], Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> ApiResponse {
        self.request("DELETE", path, &[], None).await
    }

    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> ApiResponse {
        let body = body.map(|b| b.to_string());
        let mut extra: Vec<(String, String)> = headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        if body.is_some() && !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-type")) {
            extra.push(("Content-Type".into(), "application/json".into()));
        }
        self.raw(method, path, &extra, body.as_deref().unwrap_or_default().as_bytes()).await
    }

    /// Sends exactly these headers and body bytes.
    pub async fn raw(&self, method: &str, path: &str, headers: &[(String, String)], body: &[u8]) -> ApiResponse {
        self.raw_from(None, method, path, headers, body).await
    }

    /// As `raw`, from the loopback address `source` (127.0.0.0/8 is all this host's), so
    /// that a test can play several clients.
    pub async fn raw_from(
        &self,
        source: Option<std::net::IpAddr>,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> ApiResponse {
        let mut stream = match source {
            Some(ip) => {
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket.bind(SocketAddr::new(ip, 0)).unwrap();
                socket.connect(self.addr).await.unwrap()
            }
            None => tokio::net::TcpStream::connect(self.addr).await.unwrap(),
        };
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", self.addr);
        if let Some(token) = &self.token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(body).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        parse_response(&raw)
    }
}

fn parse_response(raw: &[u8]) -> ApiResponse {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.get(9..12)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_string() };
    ApiResponse { status, headers, body }
}

/// Decodes a chunked body (RFC 9112 §7.1).
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("0").trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}
