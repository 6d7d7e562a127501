//! Bootstrap configuration: what a node needs before it can reach its database.
//! Sources, later ones winning: built-in defaults < a TOML file (`--config`, or
//! `postern.toml` in the working directory if present) < environment variables
//! (`DATABASE_URL`, and `POSTERN_<FIELD>` for every field below, e.g.
//! `POSTERN_HTTP_ADDR`). Everything an administrator edits lives in Postgres instead.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::domain::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Whether the console and the REST API are served over HTTPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsoleTls {
    /// HTTPS unless the console listens on loopback only (where a reverse proxy, an SSH
    /// tunnel or the machine's own browser reaches it).
    #[default]
    Auto,
    On,
    /// Plain HTTP wherever it listens: only behind a reverse proxy that terminates TLS.
    Off,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    /// Postgres connection URL. Unset: Postern runs a private PostgreSQL cluster in
    /// `<data_dir>/postgres` (unix socket only) from the machine's initdb/pg_ctl.
    pub database_url: Option<Secret>,
    /// Refuse to start without `database_url` instead of running the embedded cluster
    /// (the container image sets it: a database inside the container would be lost with it).
    pub require_database_url: bool,
    /// Console and API listen address.
    pub http_addr: SocketAddr,
    /// Where the embedded database and generated files live.
    pub data_dir: PathBuf,
    /// tracing filter, e.g. `info` or `postern=debug,info`.
    pub log_level: String,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// This node's name: HELO to next hops, DSN sender domain, default connector FQDN.
    pub hostname: String,
    /// Messages being delivered at the same time on this node.
    pub delivery_concurrency: usize,
    /// Most messages taken from the queue in one claim.
    pub delivery_batch: i64,
    /// Seconds between delivery attempts of a deferred recipient; the last repeats.
    pub retry_schedule_secs: Vec<u64>,
    /// Seconds a message may stay queued before undelivered recipients bounce.
    pub message_expiry_secs: u64,
    /// Seconds a node owns a message it claimed for delivery. A node that dies loses its
    /// claims after this, and another node (or its own restart) tries again.
    pub delivery_lease_secs: u64,
    /// Seconds one transaction with a next hop may take, from connecting to its final
    /// reply. Keep it well under the lease: no send starts later than the lease less
    /// this after a claim.
    pub delivery_timeout_secs: u64,
    /// Delivery attempts that may end without an outcome (the node crashed or was
    /// killed while delivering) before the message is set aside as poison.
    pub poison_threshold: u32,
    /// Milliseconds to watch for clients that talk before the greeting (0 = no wait,
    /// only data already received counts).
    pub pregreet_wait_ms: u64,
    /// Size of the database connection pool.
    pub db_max_connections: u32,
    /// Messages waiting for delivery (all nodes) from which new mail is refused with
    /// `452 4.3.1` until the queue drains; 0 = no limit.
    pub max_queue_depth: i64,
    /// Days delivered (and failed) messages are kept for the queue view, their headers and
    /// tracking; then their bodies and recipients are deleted.
    pub delivered_retention_days: u32,
    /// Let several Postern processes of this host listen on the same SMTP bindings
    /// (SO_REUSEPORT): nodes sharing a machine, or an upgrade that starts the new binary
    /// before the old one drains. Off: a second instance finds the ports busy.
    pub share_smtp_ports: bool,
    /// Seconds running sessions get to finish on shutdown.
    pub shutdown_grace_secs: u64,
    /// AUTH throttling: the tarpit step added per failure beyond the first few.
    pub auth_failure_delay_ms: u64,
    /// AUTH failures from one source (in 15 minutes) before it is locked out; a login
    /// is locked out after twice as many, except for sources it signed in from before.
    pub auth_lockout_failures: u32,
    /// How long a lockout lasts.
    pub auth_lockout_secs: u64,
    /// How long a successful password verification is reused (0 = verify every time).
    pub auth_cache_secs: u64,
    /// Record message subjects in the tracking log and the queue (off for privacy).
    pub tracking_subjects: bool,
    /// Days tracking events are kept.
    pub tracking_retention_days: u32,
    /// Days protocol log lines are kept.
    pub protocol_log_retention_days: u32,
    /// Minutes a console session may stay unused before it ends.
    pub console_idle_minutes: u32,
    /// Mark the console's session cookie `Secure` (and name it `__Host-postern_session`):
    /// set when the console is served over HTTPS (behind a reverse proxy), so the cookie
    /// never travels in clear text. Implied by an `https://` `console_public_url`.
    pub console_secure_cookie: bool,
    /// The URL browsers use to reach the console (e.g. `https://relay.example.com`), from
    /// which the SAML service provider's entity ID and ACS URL are made. Default:
    /// `http://` and the HTTP listener's address.
    pub console_public_url: Option<String>,
    /// HTTPS for the console and the API: `auto` (the default: HTTPS unless `http_addr`
    /// is a loopback address), `on` or `off`.
    pub console_tls: ConsoleTls,
    /// The console's certificate chain (leaf first) and private key, PEM files. Unset:
    /// the certificate Postern generates for the console's host name (the host of
    /// `console_public_url`, else `hostname`), kept in the database so every node
    /// presents the same one.
    pub console_tls_certificate_file: Option<PathBuf>,
    pub console_tls_key_file: Option<PathBuf>,
    /// Reverse proxies (addresses or CIDR ranges) in front of the console: for a request
    /// from one of them, the client is the address it names in `X-Forwarded-For` (for
    /// sign-in throttling and the audit log). Anyone else's `X-Forwarded-For` is ignored.
    pub console_trusted_proxies: Vec<String>,
    /// A bearer token `/metrics` requires (unset: `/metrics` is open to whoever reaches
    /// the HTTP port). `POSTERN_METRICS_TOKEN_FILE` reads it from a file instead.
    pub metrics_token: Option<Secret>,
    pub metrics_token_file: Option<PathBuf>,
    /// A message with more `Received:` fields than this has looped: refused at the end of
    /// DATA with `554 5.4.6`, or, if already queued, failed with a DSN saying so.
    pub max_received_headers: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            database_url: None,
            require_database_url: false,
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            log_level: "info".into(),
            log_format: LogFormat::Text,
            hostname: system_hostname(),
            delivery_concurrency: 64,
            delivery_batch: 64,
            retry_schedule_secs: vec![60, 300, 900, 1800, 3600],
            message_expiry_secs: 2 * 24 * 3600,
            delivery_lease_secs: 300,
            delivery_timeout_secs: 60,
            // Exchange's PoisonThreshold is 2; one more spares a message caught in an
            // unlucky restart.
            poison_threshold: 3,
            pregreet_wait_ms: 0,
            db_max_connections: 40,
            shutdown_grace_secs: 30,
            share_smtp_ports: false,
            max_queue_depth: 50_000,
            delivered_retention_days: 7,
            auth_failure_delay_ms: 1000,
            auth_lockout_failures: 10,
            auth_lockout_secs: 900,
            auth_cache_secs: 300,
            tracking_subjects: true,
            tracking_retention_days: 30,
            protocol_log_retention_days: 30,
            console_idle_minutes: 30,
            console_secure_cookie: false,
            console_public_url: None,
            console_tls: ConsoleTls::Auto,
            console_tls_certificate_file: None,
            console_tls_key_file: None,
            console_trusted_proxies: Vec::new(),
            metrics_token: None,
            metrics_token_file: None,
            max_received_headers: crate::smtp::session::DEFAULT_MAX_HOPS,
        }
    }
}

impl Settings {
    /// Whether the console and the API are served over HTTPS (see `console_tls`).
    pub fn console_https(&self) -> bool {
        match self.console_tls {
            ConsoleTls::On => true,
            ConsoleTls::Off => false,
            ConsoleTls::Auto => !self.http_addr.ip().is_loopback(),
        }
    }

    /// The name the console's generated certificate is made for: the host browsers use
    /// (from `console_public_url`), else this node's host name.
    pub fn console_host(&self) -> String {
        let from_url = self.console_public_url.as_deref().and_then(|url| {
            let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
            let authority = rest.split(['/', '?', '#']).next()?;
            let host = match authority.strip_prefix('[') {
                Some(v6) => v6.split(']').next()?,
                None => authority.rsplit_once(':').map_or(authority, |(host, _)| host),
            };
            (!host.is_empty()).then(|| host.to_ascii_lowercase())
        });
        from_url.unwrap_or_else(|| self.hostname.to_ascii_lowercase())
    }

    /// Defaults < file < environment.
    pub fn load(file: Option<&Path>) -> Result<Self, Box<figment::Error>> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        match file {
            Some(path) => figment = figment.merge(Toml::file_exact(path)),
            None => figment = figment.merge(Toml::file("postern.toml")),
        }
        figment.merge(Env::raw().only(&["DATABASE_URL"])).merge(Env::prefixed("POSTERN_")).extract().map_err(Box::new)
    }

    pub fn auth_throttle(&self) -> crate::auth::ThrottlePolicy {
        let failures = self.auth_lockout_failures.max(1);
        crate::auth::ThrottlePolicy {
            ip_delay_after: 3.min(failures - 1),
            ip_lock_after: failures,
            account_delay_after: 5.min(failures * 2 - 1),
            account_lock_after: failures * 2,
            lock_for: Duration::from_secs(self.auth_lockout_secs),
            delay_step: Duration::from_millis(self.auth_failure_delay_ms),
            max_delay: Duration::from_millis(self.auth_failure_delay_ms * 5),
            ..crate::auth::ThrottlePolicy::default()
        }
    }

    /// The trusted reverse proxies, parsed; an entry that is not an address or a range
    /// stops the start with its name.
    pub fn trusted_proxies(&self) -> Result<Vec<ipnet::IpNet>, String> {
        self.console_trusted_proxies
            .iter()
            .map(|entry| {
                crate::domain::IpRange::parse(entry)
                    .map(|range| range.net())
                    .map_err(|e| format!("console_trusted_proxies: {e}"))
            })
            .collect()
    }

    /// The token `/metrics` requires: `metrics_token`, or the first line of
    /// `metrics_token_file`.
    pub fn metrics_token(&self) -> Result<Option<String>, String> {
        if let Some(path) = &self.metrics_token_file {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("metrics_token_file {}: {e}", path.display()))?;
            let token = text.lines().next().unwrap_or_default().trim().to_string();
            if token.is_empty() {
                return Err(format!("metrics_token_file {} is empty", path.display()));
            }
            return Ok(Some(token));
        }
        Ok(self.metrics_token.as_ref().map(|t| t.expose().trim().to_string()).filter(|t| !t.is_empty()))
    }

    pub fn message_expiry(&self) -> Duration {
        Duration::from_secs(self.message_expiry_secs)
    }

    pub fn retry_schedule(&self) -> crate::queue::RetrySchedule {
        crate::queue::RetrySchedule::new(self.retry_schedule_secs.iter().map(|s| Duration::from_secs(*s)).collect())
    }
}

fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_ascii_lowercase())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_is_https_unless_it_listens_on_loopback_only() {
        let on = |addr: &str, tls: ConsoleTls| {
            Settings { http_addr: addr.parse().unwrap(), console_tls: tls, ..Settings::default() }.console_https()
        };
        assert!(!on("127.0.0.1:8080", ConsoleTls::Auto));
        assert!(!on("127.0.0.2:8080", ConsoleTls::Auto), "all of 127/8 is loopback");
        assert!(!on("[::1]:8080", ConsoleTls::Auto));
        assert!(on("0.0.0.0:8080", ConsoleTls::Auto));
        assert!(on("[::]:8080", ConsoleTls::Auto));
        assert!(on("192.0.2.7:8080", ConsoleTls::Auto));
        assert!(on("127.0.0.1:8080", ConsoleTls::On));
        assert!(!on("0.0.0.0:8080", ConsoleTls::Off));
    }

    #[test]
    fn the_console_certificate_names_the_host_browsers_use() {
        let host = |url: Option<&str>| {
            Settings {
                console_public_url: url.map(str::to_string),
                hostname: "Node1.Example".into(),
                ..Settings::default()
            }
            .console_host()
        };
        assert_eq!(host(None), "node1.example");
        assert_eq!(host(Some("https://Relay.Example.com")), "relay.example.com");
        assert_eq!(host(Some("https://relay.example.com:8443/console?x=1")), "relay.example.com");
        assert_eq!(host(Some("https://[2001:db8::1]:8443/")), "2001:db8::1");
        assert_eq!(host(Some("https://192.0.2.7/")), "192.0.2.7");
        assert_eq!(host(Some("https://")), "node1.example", "no host: the node's name");
    }

    #[test]
    fn debug_output_never_shows_a_secret() {
        let settings = Settings {
            database_url: Some(Secret::new("postgres://postern:hunter2@db:5432/postern")),
            metrics_token: Some(Secret::new("scrape-token-123")),
            ..Settings::default()
        };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("scrape-token-123"), "{shown}");
        let credentials = crate::domain::SmartHostCredentials { username: "relay".into(), password: "hunter2".into() };
        let hop = crate::delivery::transport::Hop {
            host: "smtp.corp.example".into(),
            address: None,
            port: 587,
            tls: crate::delivery::tls::HopTls {
                policy: crate::domain::TlsPolicy::Verify,
                system: crate::delivery::tls::SystemTrust::load(),
                connector: crate::delivery::tls::ConnectorTrust::default(),
            },
            auth: Some(crate::delivery::transport::HopAuth::Password(credentials)),
            config_key: String::new(),
        };
        let shown = format!("{hop:?}");
        assert!(shown.contains("relay") && !shown.contains("hunter2"), "{shown}");
    }
}
