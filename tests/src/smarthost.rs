//! A real smart host for the outbound tests: aiosmtpd (PyPI), started from
//! `tests/smarthost/smarthost.py` in a virtual environment the suite makes once under
//! the target directory. STARTTLS with a certificate of the test PKI, AUTH PLAIN/LOGIN,
//! XOAUTH2; every accepted message is a file, with what the session was (TLS, AUTH).
//! Also the test PKI (a private CA and certificates, made with rcgen) and an OAuth2
//! token endpoint (axum over rustls) that counts what it hands out.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

const AIOSMTPD: &str = "aiosmtpd==1.4.6";

fn target_dir() -> PathBuf {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace.join("target"))
}

/// The virtual environment's python, made (and aiosmtpd installed) on first use. Test
/// processes may race to make it: a lock directory (mkdir is atomic) makes one of them
/// build it while the others wait.
pub fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let venv = target_dir().join("python-tests");
            let python = venv.join("bin/python");
            let ready = venv.join(".ready");
            let lock = target_dir().join("python-tests.lock");
            let start = Instant::now();
            while !ready.exists() {
                if std::fs::create_dir(&lock).is_ok() {
                    let made = Command::new("python3").arg("-m").arg("venv").arg(&venv).status().expect("python3 runs");
                    assert!(made.success(), "python3 -m venv failed");
                    let installed = Command::new(venv.join("bin/pip"))
                        .args(["install", "--quiet", "--disable-pip-version-check", AIOSMTPD])
                        .status()
                        .expect("pip runs");
                    let _ = std::fs::remove_dir(&lock);
                    assert!(installed.success(), "pip install {AIOSMTPD} failed");
                    std::fs::write(&ready, AIOSMTPD).unwrap();
                } else {
                    assert!(start.elapsed() < Duration::from_secs(300), "waited 5 minutes for the test venv");
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
            python
        })
        .clone()
}

/// What the smart host offers and asks.
#[derive(Debug, Clone, Default)]
pub struct SmartHostOptions {
    /// Certificate chain and key (PEM files) for STARTTLS; none: no STARTTLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The most recent TLS version offered, `1.1` to make a modern client's handshake fail.
    pub max_tls: Option<String>,
    pub require_tls: bool,
    /// AUTH PLAIN/LOGIN with this account.
    pub account: Option<(String, String)>,
    /// XOAUTH2 with this mailbox and token.
    pub xoauth2: Option<(String, String)>,
}

/// One message the smart host accepted.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    pub tls: bool,
    pub auth: Option<String>,
    pub login: Option<String>,
    pub data: Vec<u8>,
}

pub struct SmartHost {
    pub addr: SocketAddr,
    out: PathBuf,
    child: Child,
}

impl SmartHost {
    pub fn start(options: &SmartHostOptions) -> Self {
        let out = std::env::temp_dir().join(format!("postern-smarthost-{}", uuid::Uuid::new_v4().simple()));
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("smarthost/smarthost.py");
        let mut command = Command::new(python());
        command.arg(script).arg("--out").arg(&out);
        if let Some((cert, key)) = &options.tls {
            command.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        if let Some(version) = &options.max_tls {
            command.args(["--max-tls", version]);
        }
        if options.require_tls {
            command.arg("--require-tls");
        }
        if let Some((user, password)) = &options.account {
            command.args(["--user", user, "--password", password]);
        }
        if let Some((user, token)) = &options.xoauth2 {
            command.args(["--xoauth2-user", user, "--xoauth2-token", token]);
        }
        let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port: u16 = line.trim().strip_prefix("ready ").and_then(|p| p.parse().ok()).unwrap_or_else(|| {
            panic!("the smart host did not start: {line:?}");
        });
        Self { addr: SocketAddr::from(([127, 0, 0, 1], port)), out, child }
    }

    /// The messages accepted so far, in order.
    pub fn accepted(&self) -> Vec<Accepted> {
        let mut found = Vec::new();
        for n in 1.. {
            let (facts, data) = (self.out.join(format!("{n}.json")), self.out.join(format!("{n}.eml")));
            let (Ok(facts), Ok(data)) = (std::fs::read_to_string(&facts), std::fs::read(&data)) else { break };
            let facts: serde_json::Value = serde_json::from_str(&facts).unwrap();
            let text = |key: &str| facts[key].as_str().map(str::to_string);
            found.push(Accepted {
                mail_from: text("mail_from").unwrap_or_default(),
                rcpt_tos: facts["rcpt_tos"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_str().unwrap().to_string())
                    .collect(),
                tls: facts["tls"].as_bool().unwrap_or(false),
                auth: text("auth"),
                login: text("login"),
                data,
            });
        }
        found
    }

    /// Waits (up to 20 s) for `n` accepted messages.
    pub async fn wait_for(&self, n: usize) -> Vec<Accepted> {
        let what = format!("{n} messages reach the smart host");
        crate::wait_for(Duration::from_secs(20), &what, || {
            let accepted = self.accepted();
            std::future::ready((accepted.len() >= n).then_some(accepted))
        })
        .await
    }
}

impl Drop for SmartHost {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.out);
    }
}

/// A private CA (as an AD CS root would be) and the files of what it signs.
pub struct TestPki {
    pub dir: PathBuf,
    ca_params: rcgen::CertificateParams,
    ca_key: rcgen::KeyPair,
    pub ca_pem: String,
}

impl TestPki {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("postern-pki-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut ca_params = rcgen::CertificateParams::new(vec![]).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "Corp Issuing CA");
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
        std::fs::write(dir.join("ca.pem"), &ca_pem).unwrap();
        Self { dir, ca_params, ca_key, ca_pem }
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A server certificate for `names`, signed by the CA: (chain file, key file).
    pub fn server(&self, file: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        let issuer = rcgen::Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        self.write(file, &cert.pem(), &key.serialize_pem())
    }

    /// A self-signed certificate for `names` (no CA): (chain file, key file).
    pub fn self_signed(&self, file: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        let cert = params.self_signed(&key).unwrap();
        self.write(file, &cert.pem(), &key.serialize_pem())
    }

    fn write(&self, file: &str, chain: &str, key: &str) -> (PathBuf, PathBuf) {
        let (chain_file, key_file) = (self.dir.join(format!("{file}.pem")), self.dir.join(format!("{file}.key")));
        std::fs::write(&chain_file, chain).unwrap();
        std::fs::write(&key_file, key).unwrap();
        (chain_file, key_file)
    }

    /// `sha256:<base64>` of the key in a certificate file: what `--tls-pin` takes.
    pub fn pin_of(&self, chain_file: &Path) -> String {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let der = CertificateDer::from_pem_file(chain_file).unwrap();
        let pin = postern::delivery::tls::pin_of(&der).unwrap();
        postern::delivery::tls::format_pin(&pin)
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An OAuth2 token endpoint (client-credentials grant) over HTTPS with a certificate of
/// the test PKI. It checks the grant, client and scope, and hands out `tok-1`, `tok-2`…
#[derive(Clone)]
pub struct TokenEndpoint {
    pub url: String,
    /// Every request's form, in order.
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl TokenEndpoint {
    pub async fn start(pki: &TestPki, client_id: &str, secret: &str, scope: &str) -> Self {
        use axum::routing::post;
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let (id, secret, scope) = (client_id.to_string(), secret.to_string(), scope.to_string());
        let seen = Arc::clone(&requests);
        let app = axum::Router::new().route(
            "/tenant/oauth2/v2.0/token",
            post(move |body: String| {
                let (seen, id, secret, scope) = (Arc::clone(&seen), id.clone(), secret.clone(), scope.clone());
                async move {
                    let form: std::collections::HashMap<String, String> = serde_urlencoded::from_str(&body).unwrap_or_default();
                    let n = {
                        let mut seen = seen.lock().unwrap();
                        seen.push(body);
                        seen.len()
                    };
                    let field = |k: &str| form.get(k).cloned().unwrap_or_default();
                    if field("grant_type") != "client_credentials" || field("client_id") != id || field("client_secret") != secret
                    {
                        let error = serde_json::json!({ "error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided." });
                        return (axum::http::StatusCode::UNAUTHORIZED, axum::Json(error));
                    }
                    if field("scope") != scope {
                        let error = serde_json::json!({ "error": "invalid_scope", "error_description": "AADSTS70011: The provided value for scope is not valid." });
                        return (axum::http::StatusCode::BAD_REQUEST, axum::Json(error));
                    }
                    let token = serde_json::json!({ "token_type": "Bearer", "expires_in": 3599, "access_token": format!("tok-{n}") });
                    (axum::http::StatusCode::OK, axum::Json(token))
                }
            }),
        );
        let (chain, key) = pki.server("token-endpoint", &["localhost"]);
        let config = tls_server_config(&chain, &key);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self { url: format!("https://localhost:{port}/tenant/oauth2/v2.0/token"), requests }
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

fn tls_server_config(chain: &Path, key: &Path) -> Arc<rustls::ServerConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(chain).unwrap().collect::<Result<_, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    Arc::new(config)
}
