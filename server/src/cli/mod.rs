//! The command-line face, over the same service layer as the console and the API. The
//! commands mirror the Exchange cmdlets of the seed (New-ReceiveConnector →
//! `receive-connector new`, Get-MessageTrackingLog → `tracking-log`, …).

mod output;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::admin::{
    Admin, ReceiveConnectorChanges, SendConnectorChanges, ServiceAccountChanges, receive_connector_warnings,
};
use crate::app::{Application, open_store};
use crate::settings::Settings;
use crate::store::{ProtocolFilter, QueueFilter, TrackingFilter};

#[derive(Debug, Parser)]
#[command(name = "postern", version, about = "Postern: a web-managed SMTP relay appliance")]
pub struct Cli {
    /// Bootstrap settings file (TOML). Default: ./postern.toml if present.
    #[arg(long, global = true, env = "POSTERN_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the console, the SMTP engine and delivery.
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Receive connectors (New/Set/Get/Remove-ReceiveConnector).
    #[command(subcommand)]
    ReceiveConnector(ReceiveConnectorCommand),
    /// Accepted domains (New/Get/Remove-AcceptedDomain).
    #[command(subcommand)]
    AcceptedDomain(AcceptedDomainCommand),
    /// Send connectors (New/Set/Get/Remove-SendConnector).
    #[command(subcommand)]
    SendConnector(SendConnectorCommand),
    /// Service accounts for authenticated relay.
    #[command(subcommand)]
    ServiceAccount(ServiceAccountCommand),
    /// Send-As grants (Add/Remove/Get-RecipientPermission -AccessRights SendAs).
    #[command(subcommand)]
    SendAs(SendAsCommand),
    /// The delivery queue (Get-Message, Retry-Queue, Remove-Message).
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Search the message tracking log (Get-MessageTrackingLog).
    TrackingLog(TrackingLogArgs),
    /// Read SMTP session transcripts (the SmtpReceive protocol log).
    ProtocolLog(ProtocolLogArgs),
    /// What would this client get? Connector, rights and every reply, from the live
    /// configuration and the engine's own session logic.
    WhatIf(WhatIfArgs),
    /// API tokens for /api/v1 (shown once, stored hashed).
    #[command(subcommand)]
    ApiToken(ApiTokenCommand),
    /// Console administrators.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Stop the embedded PostgreSQL cluster (when no DATABASE_URL is set).
    StopDatabase,
    /// Exit 0 when the running node on this machine is ready (its `/readyz` answers 200):
    /// the container image's HEALTHCHECK, with no HTTP client in the image.
    Healthcheck,
    /// Print the REST API's OpenAPI document (the one `/api/v1/openapi.json` serves), for
    /// client generators; needs no database.
    Openapi,
}

#[derive(Debug, Subcommand)]
pub enum ReceiveConnectorCommand {
    New(ReceiveConnectorArgs),
    /// Change the named connector; only the options given change.
    Set {
        /// The connector to change (use --name to rename it)
        #[arg(value_name = "NAME")]
        connector: String,
        #[command(flatten)]
        args: ReceiveConnectorArgs,
    },
    List,
    Show {
        name: String,
    },
    Remove {
        name: String,
    },
    /// Print the certificate the connector presents (PEM), e.g. to give clients the
    /// generated self-signed one to trust.
    Certificate {
        name: String,
    },
}

#[derive(Debug, Args, Default)]
pub struct ReceiveConnectorArgs {
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    enabled: Option<bool>,
    /// IP:port list, e.g. 0.0.0.0:2526
    #[arg(long, num_args = 1..)]
    bindings: Option<Vec<String>>,
    /// IPs or CIDR ranges allowed to use the connector
    #[arg(long, num_args = 1..)]
    remote_ip_ranges: Option<Vec<String>>,
    /// anonymous, authenticated
    #[arg(long, num_args = 1..)]
    permission_groups: Option<Vec<String>>,
    /// plain, login, or Exchange's names: tls, basic-auth, basic-auth-require-tls, none
    #[arg(long, num_args = 1..)]
    auth_mechanisms: Option<Vec<String>>,
    /// none, starttls-offered, starttls-required, implicit
    #[arg(long)]
    tls_mode: Option<String>,
    /// Exchange's RequireTLS: true makes STARTTLS mandatory before MAIL
    #[arg(long)]
    require_tls: Option<bool>,
    /// PEM certificate chain (leaf first) for the connector's FQDN; needs --tls-key-file
    #[arg(long, requires = "tls_key_file")]
    tls_certificate_file: Option<PathBuf>,
    /// PEM private key of --tls-certificate-file
    #[arg(long, requires = "tls_certificate_file")]
    tls_key_file: Option<PathBuf>,
    /// Forget the configured certificate and use the self-signed one Postern generates
    #[arg(long, conflicts_with = "tls_certificate_file")]
    generated_certificate: bool,
    /// The relay right for anonymous clients (Ms-Exch-SMTP-Accept-Any-Recipient)
    #[arg(long)]
    accept_any_recipient: Option<bool>,
    #[arg(long)]
    max_message_size: Option<u64>,
    #[arg(long)]
    max_recipients: Option<u32>,
    #[arg(long)]
    max_connections: Option<u32>,
    #[arg(long)]
    max_connections_per_source: Option<u32>,
    /// Messages accepted per minute from one source address (0 = unlimited)
    #[arg(long)]
    max_messages_per_minute_per_source: Option<u32>,
    #[arg(long)]
    connection_timeout_secs: Option<u32>,
    #[arg(long)]
    banner: Option<String>,
    #[arg(long)]
    fqdn: Option<String>,
    /// none, verbose
    #[arg(long)]
    protocol_logging: Option<String>,
    /// Confirm remote IP ranges wider than a /8 of public IPv4 (or a /32 of IPv6) on a
    /// connector that relays anonymously to any domain: an open relay.
    #[arg(long)]
    i_mean_open_relay: bool,
}

impl ReceiveConnectorArgs {
    fn changes(&self) -> anyhow::Result<ReceiveConnectorChanges> {
        let read = |path: &PathBuf| {
            std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))
        };
        let tls_certificate = match (&self.tls_certificate_file, &self.tls_key_file) {
            (Some(chain), Some(key)) => Some(Some((read(chain)?, read(key)?))),
            _ if self.generated_certificate => Some(None),
            _ => None,
        };
        Ok(ReceiveConnectorChanges {
            name: self.name.clone(),
            enabled: self.enabled,
            bindings: self.bindings.clone(),
            remote_ip_ranges: self.remote_ip_ranges.clone(),
            permission_groups: self.permission_groups.clone(),
            auth_mechanisms: self.auth_mechanisms.clone(),
            auth_requires_tls: None,
            tls_mode: self.tls_mode.clone(),
            require_tls: self.require_tls,
            tls_certificate,
            accept_any_recipient: self.accept_any_recipient,
            max_message_size: self.max_message_size,
            max_recipients: self.max_recipients,
            max_connections: self.max_connections,
            max_connections_per_source: self.max_connections_per_source,
            max_messages_per_minute_per_source: self.max_messages_per_minute_per_source,
            connection_timeout_secs: self.connection_timeout_secs,
            banner: self.banner.clone(),
            fqdn: self.fqdn.clone(),
            protocol_logging: self.protocol_logging.clone(),
            i_mean_open_relay: self.i_mean_open_relay,
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum AcceptedDomainCommand {
    New {
        domain: String,
        /// authoritative (default) or internal-relay
        #[arg(long = "type")]
        domain_type: Option<String>,
    },
    List,
    Remove {
        domain: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SendConnectorCommand {
    New(SendConnectorArgs),
    Set {
        /// The connector to change (use --name to rename it)
        #[arg(value_name = "NAME")]
        connector: String,
        #[command(flatten)]
        args: SendConnectorArgs,
    },
    List,
    Show {
        name: String,
    },
    Remove {
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct SendConnectorArgs {
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    enabled: Option<bool>,
    /// Domain patterns: example.com, *.example.com, or * for everything
    #[arg(long, num_args = 1..)]
    address_spaces: Option<Vec<String>>,
    /// host:port list; omit (or give "") to deliver by DNS MX
    #[arg(long, num_args = 0..)]
    smart_hosts: Option<Vec<String>>,
    #[arg(long)]
    port: Option<u16>,
    /// none, opportunistic (STARTTLS when offered, unverified), encrypt (TLS, unverified),
    /// verify (TLS, verified certificate); required = verify
    #[arg(long)]
    tls_policy: Option<String>,
    /// A PEM file of CAs trusted for these hosts besides the system store (stored in the
    /// database: every node uses it)
    #[arg(long, value_name = "PATH")]
    tls_ca_file: Option<PathBuf>,
    /// Remove the connector's CA bundle
    #[arg(long, conflicts_with = "tls_ca_file")]
    no_tls_ca: bool,
    /// Accept the next hop by its public key: sha256:<base64 of the SPKI's SHA-256>; "" removes it
    #[arg(long)]
    tls_pin: Option<String>,
    /// Smart-host user name (or, with --auth oauth2, the mailbox); the password or the
    /// OAuth2 client secret is read from standard input; "" removes the credentials
    #[arg(long)]
    username: Option<String>,
    /// password (AUTH PLAIN/LOGIN), oauth2 (XOAUTH2: Microsoft 365, Google), or none
    #[arg(long)]
    auth: Option<String>,
    /// OAuth2 token endpoint, e.g. https://login.microsoftonline.com/TENANT/oauth2/v2.0/token
    #[arg(long)]
    oauth_token_url: Option<String>,
    /// OAuth2 application (client) ID
    #[arg(long)]
    oauth_client_id: Option<String>,
    /// OAuth2 scope, e.g. https://outlook.office365.com/.default
    #[arg(long)]
    oauth_scope: Option<String>,
    /// Read a new OAuth2 client secret from standard input (without --username)
    #[arg(long)]
    oauth_client_secret_stdin: bool,
    /// MX answers may point at private, loopback or this node's own addresses
    #[arg(long)]
    allow_private_destinations: Option<bool>,
    /// any, ipv4 or ipv6: which address family of an MX host is tried first
    #[arg(long)]
    ip_preference: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ServiceAccountCommand {
    /// Create an account; without --password-stdin a password is generated and shown once.
    New(ServiceAccountArgs),
    /// Change the named account; only the options given change.
    Set {
        /// The account to change (use --name to rename it)
        #[arg(value_name = "NAME")]
        account: String,
        #[command(flatten)]
        args: ServiceAccountArgs,
    },
    List,
    Show {
        name: String,
    },
    Remove {
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct ServiceAccountArgs {
    #[arg(long)]
    name: Option<String>,
    /// The account's own address (it may always send as this)
    #[arg(long)]
    address: Option<String>,
    /// Read the password from standard input (one line)
    #[arg(long)]
    password_stdin: bool,
    #[arg(long)]
    enabled: Option<bool>,
    /// IPs or CIDR ranges the account may be used from; none given = any
    #[arg(long, num_args = 0..)]
    remote_ip_ranges: Option<Vec<String>>,
    /// 0 = unlimited
    #[arg(long)]
    max_messages_per_minute: Option<u32>,
    /// 0 = unlimited
    #[arg(long)]
    max_messages_per_day: Option<u32>,
}

impl ServiceAccountArgs {
    fn changes(&self) -> anyhow::Result<ServiceAccountChanges> {
        Ok(ServiceAccountChanges {
            name: self.name.clone(),
            address: self.address.clone(),
            password: if self.password_stdin { Some(read_secret_from_stdin()?) } else { None },
            enabled: self.enabled,
            remote_ip_ranges: self.remote_ip_ranges.clone(),
            max_messages_per_minute: self.max_messages_per_minute,
            max_messages_per_day: self.max_messages_per_day,
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum SendAsCommand {
    /// Let an account send as an address, or as any address of a domain (*@domain).
    Add(SendAsArgs),
    Remove(SendAsArgs),
    List {
        #[arg(long)]
        account: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct SendAsArgs {
    #[arg(long)]
    account: String,
    /// user@domain or *@domain
    #[arg(long)]
    sender: String,
}

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Queued messages (add --all for finished ones).
    List {
        #[arg(long)]
        all: bool,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// Try a queued message again now.
    Retry { id: String },
    /// Remove a message from the queue (Remove-Message).
    Remove {
        id: String,
        /// Send the sender a DSN listing the undelivered recipients (-WithNDR).
        #[arg(long)]
        with_ndr: bool,
    },
}

#[derive(Debug, Args)]
pub struct TrackingLogArgs {
    /// Start time: RFC 3339, or relative like -10m, -2h, -1d
    #[arg(long, allow_hyphen_values = true)]
    start: Option<String>,
    #[arg(long, allow_hyphen_values = true)]
    end: Option<String>,
    #[arg(long)]
    sender: Option<String>,
    #[arg(long)]
    recipient: Option<String>,
    /// RECEIVE, SEND, DEFER, FAIL, DSN, REJECT …
    #[arg(long)]
    event_id: Option<String>,
    #[arg(long)]
    message_id: Option<String>,
    /// Internal queue id
    #[arg(long)]
    queue_id: Option<String>,
    #[arg(long)]
    connector: Option<String>,
    /// The client's IP address, e.g. 192.168.1.13
    #[arg(long)]
    client_ip: Option<String>,
    /// Service account that sent
    #[arg(long)]
    account: Option<String>,
    /// Part of the subject (case-insensitive)
    #[arg(long)]
    subject: Option<String>,
    /// Events of one SMTP session (see also `protocol-log --session-id`)
    #[arg(long)]
    session_id: Option<String>,
    #[arg(long, default_value_t = 1000)]
    limit: i64,
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// Exchange's MSGTRK CSV layout
    #[arg(long)]
    csv: bool,
}

#[derive(Debug, Args)]
pub struct WhatIfArgs {
    /// The address the client connects to, e.g. 10.0.0.5:587
    #[arg(long)]
    server: String,
    /// The client's IP address, e.g. 192.168.1.13
    #[arg(long)]
    client_ip: String,
    /// The client uses STARTTLS where offered
    #[arg(long)]
    tls: bool,
    /// The service account it signs in as (password assumed right)
    #[arg(long)]
    account: Option<String>,
    /// MAIL FROM address ("" for the null sender)
    #[arg(long)]
    mail_from: String,
    #[arg(long, num_args = 1.., required = true)]
    rcpt_to: Vec<String>,
    /// The message's From: header (default: the MAIL FROM address)
    #[arg(long)]
    from_header: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create an administrator; without --password-stdin a password is generated and printed once.
    New {
        #[arg(long)]
        name: String,
        /// admin (edits), or viewer (reads tracking, queue and logs)
        #[arg(long, default_value = "admin")]
        role: String,
        /// Read the password from standard input (one line).
        #[arg(long)]
        password_stdin: bool,
    },
    List,
    /// Change an administrator: a new password (they must replace it at their next
    /// sign-in), their role, or whether they may sign in. A change ends their sessions.
    Set {
        name: String,
        /// Read a new password from standard input (one line).
        #[arg(long)]
        password_stdin: bool,
        /// Generate a new password and print it once.
        #[arg(long, conflicts_with = "password_stdin")]
        reset_password: bool,
        /// admin or viewer
        #[arg(long)]
        role: Option<String>,
        /// false: the administrator can no longer sign in
        #[arg(long)]
        enabled: Option<bool>,
    },
    /// Remove an administrator (not the last enabled admin).
    Remove {
        name: String,
    },
    /// Sign an administrator out of every browser.
    Sessions {
        #[command(subcommand)]
        command: AdminSessionsCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminSessionsCommand {
    /// End every console session of the administrator.
    Revoke { name: String },
}

#[derive(Debug, Subcommand)]
pub enum ApiTokenCommand {
    /// Create a token; it is printed once.
    New {
        #[arg(long)]
        name: String,
        /// read; write (read and change the relay); admin (also administrators and tokens)
        #[arg(long)]
        scope: String,
        /// Days until the token expires; 0: never.
        #[arg(long, default_value_t = crate::admin::DEFAULT_TOKEN_DAYS)]
        expires_in_days: u32,
    },
    List,
    Revoke {
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct ProtocolLogArgs {
    /// One session's transcript (the session id of a tracking event)
    #[arg(long)]
    session_id: Option<String>,
    #[arg(long)]
    connector: Option<String>,
    /// Start time: RFC 3339, or relative like -10m, -2h, -1d
    #[arg(long, allow_hyphen_values = true)]
    start: Option<String>,
    #[arg(long, allow_hyphen_values = true)]
    end: Option<String>,
    #[arg(long, default_value_t = 10_000)]
    limit: i64,
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// Exchange's RECV CSV layout
    #[arg(long)]
    csv: bool,
}

/// Runs a parsed command line. Errors are returned for `main` to print.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut settings = Settings::load(cli.config.as_deref())?;
    if !matches!(cli.command, Command::Serve) && std::env::var_os("POSTERN_LOG_LEVEL").is_none() {
        // Administrative commands print their result; logs only for problems.
        settings.log_level = "warn".into();
    }
    crate::telemetry::init(&settings);
    match cli.command {
        Command::Serve => serve(settings).await,
        Command::StopDatabase => stop_database(&settings).await,
        Command::Healthcheck => healthcheck(&settings).await,
        Command::Openapi => {
            let (_, document) = crate::http::api::router();
            println!("{}", document.to_pretty_json()?);
            Ok(())
        }
        command => {
            let (store, _embedded) = open_store(&settings).await?;
            let actor = format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()));
            let admin =
                Admin::new(store, actor, settings.hostname.clone()).with_reserved_addresses(vec![settings.http_addr]);
            administer(&admin, command).await
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    for l in app.listeners() {
        match (&l.local_addr, &l.error) {
            (Some(addr), _) => tracing::info!(binding = %l.binding, %addr, "SMTP listener up"),
            (_, Some(e)) => tracing::error!(binding = %l.binding, error = %e, "SMTP listener failed"),
            _ => {}
        }
    }
    // The first start creates the console's first administrator and shows its password
    // once (the log is the only place it ever appears).
    let bootstrap = Admin::new(app.store().clone(), "bootstrap", String::new());
    if let Some(password) = bootstrap.bootstrap_admin_user().await? {
        eprintln!(
            "\n  Postern's console has no administrator yet: created \"admin\" with the password\n\n      {password}\n\n  Sign in at {} with it; you will be asked to replace it at once (it is in this log).\n",
            console_url(app.http_addr())
        );
    }
    let stop = CancellationToken::new();
    let signal_stop = stop.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        signal_stop.cancel();
    });
    app.run_until_stopped(stop).await
}

/// Where to sign in: the console's address, or this machine's name in place of a
/// wildcard address (a container listens on 0.0.0.0, which no browser can open).
fn console_url(addr: std::net::SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("http://<this machine's address>:{}/", addr.port())
    } else {
        format!("http://{addr}/")
    }
}

async fn admin_user(admin: &Admin, command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::New { name, role, password_stdin } => {
            let password = if password_stdin { Some(read_secret_from_stdin()?) } else { None };
            let generated = admin.new_admin_user(&name, &role, password).await?;
            println!("administrator {name:?} ({role}) created");
            if let Some(password) = generated {
                println!("password: {password}");
                println!("(shown once; only its hash is kept)");
            }
        }
        AdminCommand::List => {
            println!("{:<32} {:<8} {:<8} {:<10} LAST SIGN-IN", "NAME", "ROLE", "ENABLED", "SIGN-IN");
            for u in admin.admin_users().await? {
                let last = u.last_sign_in_at.map_or_else(|| "-".to_string(), |t| t.to_string());
                let how = if u.federated {
                    "sso"
                } else if u.must_change_password {
                    "new pass"
                } else {
                    "password"
                };
                println!("{:<32} {:<8} {:<8} {how:<10} {last}", u.name, u.role, u.enabled);
            }
        }
        AdminCommand::Set { name, password_stdin, reset_password, role, enabled } => {
            if password_stdin || reset_password {
                let password = if password_stdin { Some(read_secret_from_stdin()?) } else { None };
                let generated = admin.reset_admin_password(&name, password).await?;
                println!("password of {name:?} set; it must be changed at the next sign-in");
                if let Some(password) = generated {
                    println!("password: {password}");
                    println!("(shown once; only its hash is kept)");
                }
            }
            if role.is_some() || enabled.is_some() {
                admin.set_admin_user(&name, &crate::admin::AdminUserChanges { role, enabled }).await?;
                println!("administrator {name:?} changed");
            }
        }
        AdminCommand::Remove { name } => {
            admin.remove_admin_user(&name).await?;
            println!("administrator {name:?} removed");
        }
        AdminCommand::Sessions { command: AdminSessionsCommand::Revoke { name } } => {
            let ended = admin.end_admin_sessions(&name, None).await?;
            println!("{ended} session(s) of {name:?} ended");
        }
    }
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// GET /readyz on the console's own address (loopback when it listens on every
/// interface), within a few seconds.
/// A byte stream, plain or TLS.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

async fn healthcheck(settings: &Settings) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut addr = settings.http_addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let https = settings.console_https();
    let check = async {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        let mut stream: Box<dyn Stream> = if https {
            // The node's own console, over loopback: any certificate (often the generated
            // one) will do, the probe sends nothing secret.
            let connector = crate::probe::tls_connector().map_err(std::io::Error::other)?;
            let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
            Box::new(connector.connect(name, stream).await?)
        } else {
            Box::new(stream)
        };
        stream.write_all(b"GET /readyz HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n").await?;
        let mut response = Vec::new();
        stream.take(64 * 1024).read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&response).into_owned())
    };
    let response = tokio::time::timeout(std::time::Duration::from_secs(4), check)
        .await
        .map_err(|_| anyhow::anyhow!("{addr}/readyz did not answer within 4 s"))?
        .map_err(|e| anyhow::anyhow!("{addr}/readyz: {e}"))?;
    let status = response.lines().next().unwrap_or_default();
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    anyhow::ensure!(status.split_whitespace().nth(1) == Some("200"), "not ready: {status} {body}");
    println!("ready: {body}");
    Ok(())
}

async fn stop_database(settings: &Settings) -> anyhow::Result<()> {
    anyhow::ensure!(settings.database_url.is_none(), "DATABASE_URL is set: there is no embedded database to stop");
    let cluster = crate::embedded_postgres::EmbeddedPostgres::start(&settings.data_dir).await?;
    cluster.stop().await?;
    println!("embedded PostgreSQL stopped");
    Ok(())
}

async fn administer(admin: &Admin, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Migrate => println!("migrations applied"),
        Command::ReceiveConnector(c) => receive_connector(admin, c).await?,
        Command::AcceptedDomain(c) => accepted_domain(admin, c).await?,
        Command::SendConnector(c) => send_connector(admin, c).await?,
        Command::ServiceAccount(c) => service_account(admin, c).await?,
        Command::SendAs(c) => send_as(admin, c).await?,
        Command::Queue(c) => queue(admin, c).await?,
        Command::TrackingLog(args) => tracking_log(admin, args).await?,
        Command::ProtocolLog(args) => protocol_log(admin, args).await?,
        Command::ApiToken(c) => api_token(admin, c).await?,
        Command::Admin(c) => admin_user(admin, c).await?,
        Command::WhatIf(args) => what_if(admin, args).await?,
        Command::Serve | Command::StopDatabase | Command::Healthcheck | Command::Openapi => {}
    }
    Ok(())
}

async fn receive_connector(admin: &Admin, command: ReceiveConnectorCommand) -> anyhow::Result<()> {
    match command {
        ReceiveConnectorCommand::New(args) => {
            let c = admin.new_receive_connector(&args.changes()?).await?;
            println!("receive connector {:?} created", c.name);
            output::print_receive_connector(&admin.receive_connector(&c.name).await?);
            print_warnings(&receive_connector_warnings(&c));
        }
        ReceiveConnectorCommand::Set { connector, args } => {
            let c = admin.set_receive_connector(&connector, &args.changes()?, None).await?;
            println!("receive connector {:?} updated", c.name);
            output::print_receive_connector(&admin.receive_connector(&c.name).await?);
            print_warnings(&receive_connector_warnings(&c));
        }
        ReceiveConnectorCommand::List => output::print_receive_connectors(&admin.receive_connectors().await?),
        ReceiveConnectorCommand::Show { name } => {
            output::print_receive_connector(&admin.receive_connector(&name).await?)
        }
        ReceiveConnectorCommand::Remove { name } => {
            admin.remove_receive_connector(&name, None).await?;
            println!("receive connector {name:?} removed");
        }
        ReceiveConnectorCommand::Certificate { name } => {
            print!("{}", admin.receive_connector_certificate(&name, true).await?)
        }
    }
    Ok(())
}

async fn accepted_domain(admin: &Admin, command: AcceptedDomainCommand) -> anyhow::Result<()> {
    match command {
        AcceptedDomainCommand::New { domain, domain_type } => {
            let d = admin.new_accepted_domain(&domain, domain_type.as_deref()).await?;
            println!("accepted domain {} ({}) created", d.domain, d.domain_type);
        }
        AcceptedDomainCommand::List => {
            for d in admin.store().accepted_domains().await? {
                println!("{:<40} {}", d.domain, d.domain_type);
            }
        }
        AcceptedDomainCommand::Remove { domain } => {
            admin.remove_accepted_domain(&domain, None).await?;
            println!("accepted domain {domain} removed");
        }
    }
    Ok(())
}

async fn send_connector(admin: &Admin, command: SendConnectorCommand) -> anyhow::Result<()> {
    let changes = |args: &SendConnectorArgs| -> anyhow::Result<SendConnectorChanges> {
        let oauth = args.auth.as_deref().is_some_and(|a| a.eq_ignore_ascii_case("oauth2"));
        let (mut username, mut password, mut secret) = (None, None, None);
        match &args.username {
            Some(user) if user.is_empty() => username = Some(None),
            Some(user) if oauth => {
                username = Some(Some(user.clone()));
                secret = Some(read_secret_from_stdin()?);
            }
            Some(user) => (username, password) = (Some(Some(user.clone())), Some(Some(read_secret_from_stdin()?))),
            None if args.oauth_client_secret_stdin => secret = Some(read_secret_from_stdin()?),
            None => {}
        }
        let tls_ca_pem = match (&args.tls_ca_file, args.no_tls_ca) {
            (Some(path), _) => Some(Some(
                std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?,
            )),
            (None, true) => Some(None),
            (None, false) => None,
        };
        Ok(SendConnectorChanges {
            name: args.name.clone(),
            enabled: args.enabled,
            address_spaces: args.address_spaces.clone(),
            smart_hosts: args.smart_hosts.clone(),
            port: args.port,
            tls_policy: args.tls_policy.clone(),
            username,
            password,
            auth: args.auth.clone(),
            oauth_token_url: args.oauth_token_url.clone(),
            oauth_client_id: args.oauth_client_id.clone(),
            oauth_scope: args.oauth_scope.clone(),
            oauth_client_secret: secret,
            tls_ca_pem,
            tls_pin: args.tls_pin.clone().map(|p| Some(p).filter(|p| !p.is_empty())),
            allow_private_destinations: args.allow_private_destinations,
            ip_preference: args.ip_preference.clone(),
        })
    };
    match command {
        SendConnectorCommand::New(args) => {
            let c = admin.new_send_connector(&changes(&args)?).await?;
            println!("send connector {:?} created", c.name);
            output::print_send_connector(&admin.send_connector(&c.name).await?);
        }
        SendConnectorCommand::Set { connector, args } => {
            let before = admin.send_connector(&connector).await?;
            let c = admin.set_send_connector(&connector, &changes(&args)?, None).await?;
            println!("send connector {:?} updated", c.name);
            let after = admin.send_connector(&c.name).await?;
            if before.username.is_some() && after.username.is_none() && args.username.is_none() {
                print_warnings(&["the smart-host credentials were removed: they never follow a changed smart host, \
                                  port or weaker TLS policy (give --username again to keep them)"
                    .to_string()]);
            }
            output::print_send_connector(&after);
        }
        SendConnectorCommand::List => {
            for c in admin.send_connectors().await? {
                output::print_send_connector(&c);
            }
        }
        SendConnectorCommand::Show { name } => output::print_send_connector(&admin.send_connector(&name).await?),
        SendConnectorCommand::Remove { name } => {
            admin.remove_send_connector(&name, None).await?;
            println!("send connector {name:?} removed");
        }
    }
    Ok(())
}

fn print_warnings(warnings: &[String]) {
    for w in warnings {
        eprintln!("warning: {w}");
    }
}

async fn service_account(admin: &Admin, command: ServiceAccountCommand) -> anyhow::Result<()> {
    match command {
        ServiceAccountCommand::New(args) => {
            let (account, generated) = admin.new_service_account(&args.changes()?).await?;
            println!("service account {:?} created", account.name);
            if let Some(password) = generated {
                // Shown once: only its hash is stored.
                println!("password: {password}");
                println!("(store it now; it cannot be shown again)");
            }
            output::print_service_account(&admin.service_account(&account.name).await?);
        }
        ServiceAccountCommand::Set { account, args } => {
            let a = admin.set_service_account(&account, &args.changes()?, None).await?;
            println!("service account {:?} updated", a.name);
            output::print_service_account(&admin.service_account(&a.name).await?);
        }
        ServiceAccountCommand::List => output::print_service_accounts(&admin.service_accounts().await?),
        ServiceAccountCommand::Show { name } => output::print_service_account(&admin.service_account(&name).await?),
        ServiceAccountCommand::Remove { name } => {
            admin.remove_service_account(&name, None).await?;
            println!("service account {name:?} removed (with its Send-As grants)");
        }
    }
    Ok(())
}

async fn send_as(admin: &Admin, command: SendAsCommand) -> anyhow::Result<()> {
    match command {
        SendAsCommand::Add(args) => {
            let (pattern, added) = admin.add_send_as(&args.account, &args.sender).await?;
            let already = if added { "" } else { " (already granted; nothing changed)" };
            println!("{} may send as {pattern}{already}", args.account);
        }
        SendAsCommand::Remove(args) => {
            admin.remove_send_as(&args.account, &args.sender).await?;
            println!("{} may no longer send as {}", args.account, args.sender);
        }
        SendAsCommand::List { account } => {
            let grants = admin.send_as_grants(account.as_deref()).await?;
            if grants.is_empty() {
                println!("no Send-As grants");
            }
            for g in grants {
                println!("{:<32} {}", g.account, g.sender);
            }
        }
    }
    Ok(())
}

fn read_secret_from_stdin() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let secret = line.trim_end_matches(['\r', '\n']).to_string();
    anyhow::ensure!(!secret.is_empty(), "expected the password on standard input");
    Ok(secret)
}

fn parse_queue_id(id: &str) -> anyhow::Result<Uuid> {
    Uuid::parse_str(id.trim()).map_err(|_| anyhow::anyhow!("{id:?} is not a queue id (32 hex digits)"))
}

async fn queue(admin: &Admin, command: QueueCommand) -> anyhow::Result<()> {
    let store = admin.store();
    match command {
        QueueCommand::List { all, limit, json } => {
            let messages = store.queue_messages(&QueueFilter { include_done: all, after: None, limit }).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&messages)?);
            } else {
                output::print_queue(&messages);
            }
        }
        QueueCommand::Retry { id } => {
            admin.retry_message(parse_queue_id(&id)?).await?;
            println!("message {id} will be retried now");
        }
        QueueCommand::Remove { id, with_ndr } => {
            let removed = admin.remove_message(parse_queue_id(&id)?, with_ndr).await?;
            let dsn = match removed.dsn_id {
                Some(dsn) => format!("DSN {} queued for {}", dsn.simple(), removed.sender),
                None => "no DSN sent".to_string(),
            };
            println!("message {id} removed ({} undelivered recipient(s) dropped, {dsn})", removed.undelivered.len());
        }
    }
    Ok(())
}

async fn tracking_log(admin: &Admin, args: TrackingLogArgs) -> anyhow::Result<()> {
    let now = OffsetDateTime::now_utc();
    let filter = TrackingFilter {
        start: args.start.as_deref().map(|s| crate::tracking::parse_time(s, now)).transpose()?,
        end: args.end.as_deref().map(|s| crate::tracking::parse_time(s, now)).transpose()?,
        sender: args.sender,
        recipient: args.recipient,
        event_id: args.event_id,
        message_id: args.message_id,
        queue_id: args.queue_id.as_deref().map(parse_queue_id).transpose()?,
        connector: args.connector,
        client_ip: args.client_ip.as_deref().map(parse_ip).transpose()?,
        account: args.account,
        subject: args.subject,
        session_id: args.session_id.as_deref().map(parse_session_id).transpose()?,
        after_id: None,
        limit: args.limit,
    };
    let events = admin.store().search_tracking(&filter).await?;
    let format = Format::from_flags(args.json, args.csv);
    format.print(&events, crate::tracking::export::write_msgtrk, output::print_tracking)
}

/// How a log is printed: a table for people, JSON for tools, Exchange's CSV for scripts.
#[derive(Debug, Clone, Copy)]
enum Format {
    Table,
    Json,
    Csv,
}

type CsvWriter<T> = fn(&mut dyn std::io::Write, &[T]) -> std::io::Result<()>;

impl Format {
    fn from_flags(json: bool, csv: bool) -> Self {
        match (json, csv) {
            (true, _) => Format::Json,
            (_, true) => Format::Csv,
            _ => Format::Table,
        }
    }

    fn print<T: serde::Serialize>(self, rows: &[T], csv: CsvWriter<T>, table: fn(&[T])) -> anyhow::Result<()> {
        match self {
            Format::Json => println!("{}", serde_json::to_string_pretty(rows)?),
            Format::Csv => csv(&mut std::io::stdout().lock(), rows)?,
            Format::Table => table(rows),
        }
        Ok(())
    }
}

async fn protocol_log(admin: &Admin, args: ProtocolLogArgs) -> anyhow::Result<()> {
    let now = OffsetDateTime::now_utc();
    let filter = ProtocolFilter {
        session_id: args.session_id.as_deref().map(parse_session_id).transpose()?,
        connector: args.connector,
        start: args.start.as_deref().map(|s| crate::tracking::parse_time(s, now)).transpose()?,
        end: args.end.as_deref().map(|s| crate::tracking::parse_time(s, now)).transpose()?,
        limit: args.limit,
    };
    let lines = admin.store().protocol_log(&filter).await?;
    Format::from_flags(args.json, args.csv).print(
        &lines,
        crate::tracking::export::write_recv,
        output::print_protocol_log,
    )
}

async fn what_if(admin: &Admin, args: WhatIfArgs) -> anyhow::Result<()> {
    let server = args.server.trim().parse().map_err(|_| anyhow::anyhow!("{:?} is not an IP:port", args.server))?;
    let question = crate::smtp::what_if::WhatIf {
        server,
        client: parse_ip(&args.client_ip)?,
        tls: args.tls,
        account: args.account,
        mail_from: Some(args.mail_from).filter(|m| !m.is_empty()),
        rcpt_to: args.rcpt_to,
        header_from: args.from_header,
    };
    let snapshot = std::sync::Arc::new(crate::reload::load(admin.store()).await?);
    let outcome = question.evaluate(snapshot);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
        return Ok(());
    }
    println!(
        "connector: {}  (configuration generation {})",
        outcome.connector.as_deref().unwrap_or("none admits this client"),
        outcome.config_generation
    );
    for step in &outcome.steps {
        println!("  {:<44} {}", step.client, step.reply);
    }
    Ok(())
}

async fn api_token(admin: &Admin, command: ApiTokenCommand) -> anyhow::Result<()> {
    match command {
        ApiTokenCommand::New { name, scope, expires_in_days } => {
            let (row, token) = admin.new_api_token_with(&name, &scope, expires_in_days, None).await?;
            let expires = row.expires_at.map_or_else(|| "never expires".to_string(), |t| format!("expires {t}"));
            println!("API token {:?} ({}, {expires}) created:", row.name, row.scope);
            println!("{token}");
            println!("(store it now; only its digest is kept)");
        }
        ApiTokenCommand::List => {
            println!("{:<32} {:<6} {:<26} {:<26} {:<26} REVOKED", "NAME", "SCOPE", "CREATED", "LAST USED", "EXPIRES");
            let when = |t: Option<time::OffsetDateTime>| {
                t.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
                    .unwrap_or_else(|| "-".to_string())
            };
            for t in admin.api_tokens().await? {
                let expires = if t.expires_at.is_none() { "never".to_string() } else { when(t.expires_at) };
                println!(
                    "{:<32} {:<6} {:<26} {:<26} {:<26} {}",
                    t.name,
                    t.scope,
                    when(Some(t.created_at)),
                    when(t.last_used_at),
                    expires,
                    when(t.revoked_at)
                );
            }
        }
        ApiTokenCommand::Revoke { name } => {
            let revoked = admin.revoke_api_token(&name).await?;
            println!("API token {name:?} revoked");
            for child in &revoked[1..] {
                println!("  and {child:?}, which it created");
            }
        }
    }
    Ok(())
}

fn parse_ip(text: &str) -> anyhow::Result<std::net::IpAddr> {
    text.trim().parse().map_err(|_| anyhow::anyhow!("{text:?} is not an IP address"))
}

fn parse_session_id(id: &str) -> anyhow::Result<Uuid> {
    Uuid::parse_str(id.trim()).map_err(|_| anyhow::anyhow!("{id:?} is not a session id (a UUID)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
