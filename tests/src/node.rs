//! The real `postern` binary as a child process: configured with the CLI, started,
//! killed with SIGKILL (no shutdown code runs), restarted.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{TestDb, free_port, postern_binary};

/// `postern` on `db`, its console on `http_port`, with fast retries.
pub fn postern(db: &TestDb, http_port: u16) -> Command {
    let mut command = Command::new(postern_binary());
    command
        .env("DATABASE_URL", &db.url)
        .env("POSTERN_HTTP_ADDR", format!("127.0.0.1:{http_port}"))
        .env("POSTERN_RETRY_SCHEDULE_SECS", "[1]")
        .env("POSTERN_HOSTNAME", "relay.test")
        .env("POSTERN_LOG_LEVEL", "warn")
        .stdin(Stdio::null());
    command
}

pub fn cli(db: &TestDb, args: &[&str]) -> std::process::Output {
    postern(db, free_port()).args(args).output().unwrap()
}

/// Runs a CLI command with `input` on its standard input (for --password-stdin).
pub fn cli_with_input(db: &TestDb, args: &[&str], input: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = postern(db, free_port())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// Runs a CLI command (with `input` on standard input, if any) and insists it succeeds.
pub fn cli_ok(db: &TestDb, args: &[&str], input: Option<&str>) {
    let out = match input {
        Some(text) => cli_with_input(db, args, text),
        None => cli(db, args),
    };
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A running `postern serve`, killed (SIGKILL) when dropped, also when a test fails.
pub struct Server(pub std::process::Child);

impl Server {
    pub fn start(db: &TestDb) -> Self {
        Self::start_with(db, free_port(), &[])
    }

    pub fn start_with_http(db: &TestDb, http_port: u16) -> Self {
        Self::start_with(db, http_port, &[])
    }

    /// Starts with extra environment variables (settings).
    pub fn start_with(db: &TestDb, http_port: u16, env: &[(&str, &str)]) -> Self {
        let mut command = postern(db, http_port);
        command.envs(env.iter().copied());
        Self(command.arg("serve").spawn().unwrap())
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub async fn wait_for_listener(addr: SocketAddr) {
    let what = format!("postern listens on {addr}");
    crate::eventually(Duration::from_secs(30), &what, || async { tokio::net::TcpStream::connect(addr).await.is_ok() })
        .await;
}

/// The seed's accepted domain and a smart host (the sink) for every domain.
pub fn configure_domain_and_smart_host(db: &TestDb, sink_port: u16) {
    cli_ok(db, &["accepted-domain", "new", "cloudmonkeys.xyz"], None);
    let smart_host = format!("127.0.0.1:{sink_port}");
    let args = ["send-connector", "new", "--name", "Smart host", "--address-spaces", "*", "--smart-hosts", &smart_host];
    cli_ok(db, &[&args[..], &["--tls-policy", "none"]].concat(), None);
}

/// The seed's anonymous relay connector on `smtp_port` for 127.0.0.1, relaying to the
/// sink on `sink_port`.
pub fn configure(db: &TestDb, smtp_port: u16, sink_port: u16) {
    configure_domain_and_smart_host(db, sink_port);
    let binding = format!("127.0.0.1:{smtp_port}");
    let args = ["receive-connector", "new", "--name", "SMTP Relay Script", "--bindings", &binding];
    cli_ok(db, &[&args[..], &["--remote-ip-ranges", "127.0.0.1", "--permission-groups", "anonymous"]].concat(), None);
}
