//! Load generator for authenticated relay: each session connects, reads the greeting,
//! says EHLO, STARTTLS (a full TLS handshake, verifying the server certificate), EHLO
//! again, AUTH PLAIN, sends one message and QUITs — what an application that opens a
//! connection per message does. Prints one TSV line of results.
//!
//!   auth-bench --server 127.0.0.1:2587 --name relay.bench --ca cert.pem \
//!              --user bench --password ... --sessions 50 --count 5000 --size 10240

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use postern_tests::smtp_client::RawClient;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

struct Options {
    server: std::net::SocketAddr,
    name: String,
    ca: String,
    user: String,
    password: String,
    sessions: usize,
    count: usize,
    size: usize,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().collect();
    let get = |flag: &str| {
        args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned().unwrap_or_else(|| {
            eprintln!("missing {flag}");
            std::process::exit(2)
        })
    };
    Options {
        server: get("--server").parse().expect("--server host:port"),
        name: get("--name"),
        ca: get("--ca"),
        user: get("--user"),
        password: get("--password"),
        sessions: get("--sessions").parse().expect("--sessions N"),
        count: get("--count").parse().expect("--count N"),
        size: get("--size").parse().expect("--size BYTES"),
    }
}

fn client_config(ca_file: &str) -> Arc<rustls::ClientConfig> {
    let pem = std::fs::read(ca_file).expect("read --ca");
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.expect("PEM certificate")).expect("usable root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// One message of `size` bytes (headers plus 76-character lines of body).
fn message(size: usize) -> Vec<u8> {
    let mut body = b"From: smb1@cloudmonkeys.xyz\r\nTo: someone@example.net\r\nSubject: auth bench\r\n\r\n".to_vec();
    while body.len() + 78 < size {
        body.extend_from_slice(&[b'x'; 76]);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b".\r\n");
    body
}

/// One whole session; true when the message was accepted with 250.
async fn session(o: &Options, tls: Arc<rustls::ClientConfig>, auth: &str, body: &[u8]) -> bool {
    let mut c = RawClient::connect(o.server).await;
    if !c.reply().await.starts_with("220") {
        return false;
    }
    c.ehlo("bench.client").await;
    if !c.command("STARTTLS").await.starts_with("220") || c.upgrade(tls, &o.name).await.is_err() {
        return false;
    }
    c.ehlo("bench.client").await;
    let ok = c.command(auth).await.starts_with("235")
        && c.command("MAIL FROM:<smb1@cloudmonkeys.xyz>").await.starts_with("250")
        && c.command("RCPT TO:<someone@example.net>").await.starts_with("250")
        && c.command("DATA").await.starts_with("354");
    if !ok {
        return false;
    }
    c.send(body).await;
    let queued = c.reply().await.starts_with("250");
    c.command("QUIT").await;
    queued
}

#[tokio::main]
async fn main() {
    let o = Arc::new(options());
    let tls = client_config(&o.ca);
    let auth = format!(
        "AUTH PLAIN {}",
        base64::engine::general_purpose::STANDARD.encode(format!("\0{}\0{}", o.user, o.password))
    );
    let body = Arc::new(message(o.size));
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..o.sessions {
        let (o, tls, auth, body, next) =
            (Arc::clone(&o), Arc::clone(&tls), auth.clone(), Arc::clone(&body), Arc::clone(&next));
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failed = 0usize;
            while next.fetch_add(1, Ordering::Relaxed) < o.count {
                let t = Instant::now();
                if session(&o, Arc::clone(&tls), &auth, &body).await {
                    latencies.push(t.elapsed());
                } else {
                    failed += 1;
                }
            }
            (latencies, failed)
        }));
    }
    let mut latencies: Vec<Duration> = Vec::new();
    let mut failed = 0;
    for w in workers {
        let (l, f) = w.await.expect("worker");
        latencies.extend(l);
        failed += f;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| latencies.get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)));
    let ms = |d: Option<&Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    println!(
        "sessions\t{}\tok\t{}\tfailed\t{}\tseconds\t{:.2}\tsessions_per_s\t{:.0}\tp50_ms\t{:.1}\tp99_ms\t{:.1}",
        o.sessions,
        latencies.len(),
        failed,
        elapsed,
        latencies.len() as f64 / elapsed,
        ms(pct(0.5)),
        ms(pct(0.99)),
    );
}
