//! OAuth2 access tokens for smart hosts that take XOAUTH2 (Exchange Online, Google
//! Workspace): the client-credentials grant (RFC 6749 §4.4) against the provider's token
//! endpoint, the token kept until shortly before it expires and shared by every delivery
//! of the node, and fetched again when the smart host refuses it. The token endpoint is
//! reached over HTTPS, verified against the system CAs and the connector's CA bundle (plain
//! HTTP only to a loopback address: a local token proxy, or the tests).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::tls::{HopTls, Verified};
use crate::domain::{Secret, TlsPolicy};

/// A token is fetched again this long before the provider says it expires.
const EXPIRY_MARGIN: Duration = Duration::from_secs(120);
/// The whole token request: connect, TLS, request, answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// A token response larger than this is not a token response.
const MAX_RESPONSE: usize = 64 * 1024;

/// What a send connector asks its identity provider for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenRequest {
    /// `https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token`
    pub url: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// `https://outlook.office365.com/.default`, `https://mail.google.com/`
    pub scope: String,
}

/// One connector's tokens: fetched on demand, cached, shared.
#[derive(Debug)]
pub struct TokenSource {
    request: TokenRequest,
    tls: HopTls,
    cached: tokio::sync::Mutex<Option<(String, Instant)>>,
    /// Tokens fetched so far (status page, tests).
    pub fetched: AtomicU64,
}

impl TokenSource {
    pub fn new(request: TokenRequest, tls: HopTls) -> Arc<Self> {
        Arc::new(Self { request, tls, cached: tokio::sync::Mutex::new(None), fetched: AtomicU64::new(0) })
    }

    /// A token valid for a while yet: the cached one, or a new one. One fetch at a time:
    /// deliveries that need a token meanwhile wait for it instead of asking too.
    pub async fn token(&self) -> Result<String, String> {
        let mut cached = self.cached.lock().await;
        if let Some((token, until)) = cached.as_ref()
            && Instant::now() + EXPIRY_MARGIN < *until
        {
            return Ok(token.clone());
        }
        let (token, lifetime) = tokio::time::timeout(REQUEST_TIMEOUT, self.fetch()).await.map_err(|_| {
            format!("OAuth2 token endpoint {} did not answer within {REQUEST_TIMEOUT:?}", self.request.url)
        })??;
        self.fetched.fetch_add(1, Ordering::Relaxed);
        *cached = Some((token.clone(), Instant::now() + lifetime));
        Ok(token)
    }

    /// The smart host refused `token`: forget it, so the next sign-in fetches another.
    pub fn refused(&self, token: &str) {
        if let Ok(mut cached) = self.cached.try_lock()
            && cached.as_ref().is_some_and(|(t, _)| t == token)
        {
            *cached = None;
        }
    }

    async fn fetch(&self) -> Result<(String, Duration), String> {
        let url = &self.request.url;
        let endpoint = Endpoint::parse(url)?;
        let form = serde_urlencoded::to_string([
            ("grant_type", "client_credentials"),
            ("client_id", self.request.client_id.as_str()),
            ("client_secret", self.request.client_secret.expose()),
            ("scope", self.request.scope.as_str()),
        ])
        .map_err(|e| e.to_string())?;
        let request = hyper::Request::post(endpoint.path_and_query.as_str())
            .header(hyper::header::HOST, endpoint.authority.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(hyper::header::ACCEPT, "application/json")
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| e.to_string())?;
        let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
            .await
            .map_err(|e| format!("OAuth2 token endpoint {url}: {e}"))?;
        let (status, body) = if endpoint.https {
            let mut tls = self.tls.clone();
            tls.policy = TlsPolicy::Verify;
            tls.connector.pin = None;
            let (stream, report) = super::tls::handshake(tcp, &endpoint.host, &tls)
                .await
                .map_err(|e| format!("OAuth2 token endpoint {url}: TLS: {e}"))?;
            debug_assert!(report.verified != Verified::NotChecked);
            exchange(stream, request).await
        } else {
            exchange(tcp, request).await
        }
        .map_err(|e| format!("OAuth2 token endpoint {url}: {e}"))?;
        parse_token(status, &body).map_err(|e| format!("OAuth2 token endpoint {url}: {e}"))
    }
}

/// One HTTP/1.1 request over `stream` (hyper's client); the status and the body.
async fn exchange<S>(stream: S, request: hyper::Request<Full<Bytes>>) -> Result<(u16, Vec<u8>), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    let driver = tokio::spawn(connection);
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let limited = http_body_util::Limited::new(response.into_body(), MAX_RESPONSE);
    let body = limited.collect().await.map_err(|e| e.to_string())?.to_bytes().to_vec();
    driver.abort();
    Ok((status, body))
}

/// The token and its lifetime from a token response (RFC 6749 §5.1), or the provider's
/// error (§5.2) in its own words.
fn parse_token(status: u16, body: &[u8]) -> Result<(String, Duration), String> {
    let json: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| format!("HTTP {status}, and the answer is not JSON"))?;
    if let Some(error) = json.get("error").and_then(|e| e.as_str()) {
        let description = json.get("error_description").and_then(|e| e.as_str()).unwrap_or_default();
        let description: String = description.lines().next().unwrap_or_default().chars().take(200).collect();
        return Err(format!("HTTP {status}: {error}: {description}"));
    }
    if status != 200 {
        return Err(format!("HTTP {status}"));
    }
    let token = json.get("access_token").and_then(|t| t.as_str()).filter(|t| !t.is_empty());
    let token = token.ok_or("the answer holds no access_token")?;
    if token.chars().any(|c| c.is_control() || c == '\u{1}') {
        return Err("the access token holds control characters".into());
    }
    // Azure AD sends expires_in as a number, some servers as a string.
    let seconds = match json.get("expires_in") {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    Ok((token.to_string(), Duration::from_secs(seconds.unwrap_or(3600).clamp(60, 86_400))))
}

/// The parts of a token URL Postern needs.
#[derive(Debug, PartialEq, Eq)]
struct Endpoint {
    https: bool,
    host: String,
    port: u16,
    authority: String,
    path_and_query: String,
}

impl Endpoint {
    fn parse(url: &str) -> Result<Self, String> {
        let uri: hyper::Uri = url.parse().map_err(|_| format!("{url:?} is not a URL"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(format!("{url:?} is neither https:// nor http://")),
        };
        let host = uri.host().ok_or_else(|| format!("{url:?} names no host"))?.to_string();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let loopback = bare == "localhost" || bare.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if !https && !loopback {
            return Err(format!("{url:?}: the client secret goes only over https:// (http:// only to this host)"));
        }
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let authority = uri.authority().map(ToString::to_string).unwrap_or_else(|| host.clone());
        let path_and_query = uri.path_and_query().map_or("/".to_string(), ToString::to_string);
        Ok(Self { https, host: bare.to_string(), port, authority, path_and_query })
    }
}

/// Checks a token URL when a connector is saved.
pub fn check_token_url(url: &str) -> Result<(), String> {
    Endpoint::parse(url).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_urls_must_be_https_except_to_this_host() {
        let e = Endpoint::parse("https://login.microsoftonline.com/tenant/oauth2/v2.0/token").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.path_and_query.as_str()),
            ("login.microsoftonline.com", 443, "/tenant/oauth2/v2.0/token")
        );
        assert!(Endpoint::parse("http://127.0.0.1:8080/token").is_ok());
        assert!(Endpoint::parse("http://login.example.com/token").is_err());
        assert!(Endpoint::parse("ftp://x/token").is_err());
        assert!(Endpoint::parse("not a url").is_err());
    }

    /// A token endpoint on loopback that answers every request with `expires_in` and
    /// counts the requests.
    async fn endpoint(expires_in: u64) -> (String, Arc<AtomicU64>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        let served = Arc::new(AtomicU64::new(0));
        let count = Arc::clone(&served);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                let mut request = vec![0u8; 4096];
                let _ = stream.read(&mut request).await;
                let body = format!(r#"{{"access_token":"tok-{n}","expires_in":{expires_in}}}"#);
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            }
        });
        (url, served)
    }

    fn source(url: String) -> Arc<TokenSource> {
        let request =
            TokenRequest { url, client_id: "id".into(), client_secret: Secret::new("secret"), scope: "scope".into() };
        let tls = HopTls {
            policy: TlsPolicy::Verify,
            system: super::super::tls::SystemTrust::load(),
            connector: super::super::tls::ConnectorTrust::default(),
        };
        TokenSource::new(request, tls)
    }

    #[tokio::test]
    async fn tokens_are_cached_until_shortly_before_they_expire_and_dropped_when_refused() {
        let (url, served) = endpoint(3600).await;
        let tokens = source(url);
        assert_eq!(tokens.token().await.unwrap(), "tok-1");
        assert_eq!(tokens.token().await.unwrap(), "tok-1", "cached");
        assert_eq!(served.load(Ordering::SeqCst), 1);
        tokens.refused("tok-1");
        assert_eq!(tokens.token().await.unwrap(), "tok-2", "a refused token is fetched again");
        tokens.refused("tok-1");
        assert_eq!(tokens.token().await.unwrap(), "tok-2", "refusing an older token changes nothing");

        // A token that expires within the margin is never reused.
        let (url, served) = endpoint(60).await;
        let tokens = source(url);
        assert_eq!(tokens.token().await.unwrap(), "tok-1");
        assert_eq!(tokens.token().await.unwrap(), "tok-2");
        assert_eq!(served.load(Ordering::SeqCst), 2);
        assert_eq!(tokens.fetched.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn token_responses_and_errors_are_read() {
        let ok = br#"{"token_type":"Bearer","expires_in":3599,"access_token":"eyJ0eXAi"}"#;
        assert_eq!(parse_token(200, ok), Ok(("eyJ0eXAi".to_string(), Duration::from_secs(3599))));
        let as_string = br#"{"expires_in":"600","access_token":"t"}"#;
        assert_eq!(parse_token(200, as_string).unwrap().1, Duration::from_secs(600));
        let refused = br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: x"}"#;
        assert_eq!(
            parse_token(401, refused),
            Err("HTTP 401: invalid_client: AADSTS7000215: Invalid client secret provided.".to_string())
        );
        assert!(parse_token(502, b"<html>bad gateway</html>").unwrap_err().contains("not JSON"));
        assert!(parse_token(200, br#"{"access_token":""}"#).is_err());
    }
}
