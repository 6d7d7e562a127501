//! A raw SMTP client for transcripts: write exact bytes, read replies, and switch to TLS
//! (STARTTLS or implicit) with a real rustls client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

/// Any byte stream the client can talk over (plain TCP or TLS).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub struct RawClient {
    stream: BufReader<Box<dyn Io>>,
}

impl RawClient {
    pub async fn connect(server: SocketAddr) -> Self {
        Self::over(TcpStream::connect(server).await.unwrap())
    }

    /// Connects from a chosen local address, e.g. 127.0.0.2 as "another server".
    pub async fn connect_from(local_ip: &str, server: SocketAddr) -> Self {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(format!("{local_ip}:0").parse().unwrap()).unwrap();
        Self::over(socket.connect(server).await.unwrap())
    }

    /// Connects with TLS from the first byte (implicit TLS, port 465 style).
    pub async fn connect_tls(server: SocketAddr, tls: Arc<rustls::ClientConfig>, name: &str) -> Self {
        let tcp = TcpStream::connect(server).await.unwrap();
        let server_name = ServerName::try_from(name.to_string()).unwrap();
        let stream = tokio_rustls::TlsConnector::from(tls).connect(server_name, tcp).await.unwrap();
        Self::over(stream)
    }

    /// A client on a connection opened by the caller (who may handle a refused connect).
    pub fn from_stream(stream: TcpStream) -> Self {
        Self::over(stream)
    }

    fn over(stream: impl Io + 'static) -> Self {
        Self { stream: BufReader::new(Box::new(stream)) }
    }

    /// After a 220 to STARTTLS: runs the TLS handshake over the same connection. Anything
    /// the client had buffered from the server is dropped, as RFC 3207 requires.
    pub async fn upgrade(&mut self, tls: Arc<rustls::ClientConfig>, name: &str) -> std::io::Result<()> {
        let placeholder: Box<dyn Io> = Box::new(tokio::io::duplex(1).0);
        let plain = std::mem::replace(&mut self.stream, BufReader::new(placeholder)).into_inner();
        let server_name = ServerName::try_from(name.to_string()).unwrap();
        let stream = tokio_rustls::TlsConnector::from(tls).connect(server_name, plain).await?;
        self.stream = BufReader::new(Box::new(stream));
        Ok(())
    }

    /// STARTTLS and the handshake; panics unless the server said 220.
    pub async fn starttls(&mut self, tls: Arc<rustls::ClientConfig>, name: &str) {
        let reply = self.command("STARTTLS").await;
        assert!(reply.starts_with("220 2.0.0"), "STARTTLS answered {reply}");
        self.upgrade(tls, name).await.unwrap();
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.get_mut().write_all(bytes).await.unwrap();
        self.stream.get_mut().flush().await.unwrap();
    }

    /// Sends a command line and returns the reply, or "EOF" when the connection is gone
    /// (for clients of a server that may be killed under them).
    pub async fn try_command(&mut self, line: &str) -> String {
        let sent = async {
            self.stream.get_mut().write_all(format!("{line}\r\n").as_bytes()).await?;
            self.stream.get_mut().flush().await
        };
        match sent.await {
            Ok(()) => self.reply().await,
            Err(_) => "EOF".into(),
        }
    }

    /// Reads one (possibly multi-line) reply; returns its last line without CRLF, or
    /// "EOF" when the server closed the connection.
    pub async fn reply(&mut self) -> String {
        self.reply_lines().await.pop().unwrap_or_default()
    }

    /// Reads one reply with all its lines.
    pub async fn reply_lines(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let read = tokio::time::timeout(Duration::from_secs(10), self.stream.read_line(&mut line)).await;
            let n = read.expect("server answers within 10 s").unwrap_or(0); // a reset is an end
            if n == 0 {
                lines.push("EOF".into());
                return lines;
            }
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line.trim_end().to_string());
            if last {
                return lines;
            }
        }
    }

    /// Sends a command line and returns the reply.
    pub async fn command(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// Sends EHLO and returns the extension keywords (the lines after the first).
    pub async fn ehlo(&mut self, name: &str) -> Vec<String> {
        self.send(format!("EHLO {name}\r\n").as_bytes()).await;
        let lines = self.reply_lines().await;
        assert!(lines[0].starts_with("250"), "EHLO answered {lines:?}");
        lines.iter().skip(1).map(|l| l[4..].to_string()).collect()
    }

    /// Greeting, EHLO, MAIL, RCPT for a simple transaction; returns the RCPT reply.
    pub async fn start_transaction(&mut self, from: &str, to: &str) -> String {
        assert!(self.reply().await.starts_with("220"));
        assert!(self.command("EHLO client.test").await.starts_with("250"));
        assert!(self.command(&format!("MAIL FROM:<{from}>")).await.starts_with("250"));
        self.command(&format!("RCPT TO:<{to}>")).await
    }
}

/// One message from app@ to user@cloudmonkeys.xyz with `subject` on a new connection;
/// returns the reply to its data ("250 2.6.0 <id> ..." when queued).
pub async fn send_one(server: std::net::SocketAddr, subject: &str) -> String {
    let mut client = RawClient::connect(server).await;
    let rcpt = client.start_transaction("app@cloudmonkeys.xyz", "user@cloudmonkeys.xyz").await;
    assert!(rcpt.starts_with("250"), "RCPT answered {rcpt}");
    assert!(client.command("DATA").await.starts_with("354"));
    client.send(format!("Subject: {subject}\r\n\r\nbody of {subject}\r\n.\r\n").as_bytes()).await;
    client.reply().await
}

/// The queue id in a "250 2.6.0 <id> Queued mail for delivery" reply.
pub fn queue_id(reply: &str) -> uuid::Uuid {
    let id = reply.split(['<', '>']).nth(1).unwrap_or_else(|| panic!("no queue id in {reply:?}"));
    uuid::Uuid::parse_str(id).unwrap_or_else(|_| panic!("bad queue id in {reply:?}"))
}
