//! A raw SMTP client for transcripts: write exact bytes, read replies.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

pub struct RawClient {
    stream: BufReader<TcpStream>,
}

impl RawClient {
    pub async fn connect(server: SocketAddr) -> Self {
        Self { stream: BufReader::new(TcpStream::connect(server).await.unwrap()) }
    }

    /// Connects from a chosen local address, e.g. 127.0.0.2 as "another server".
    pub async fn connect_from(local_ip: &str, server: SocketAddr) -> Self {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(format!("{local_ip}:0").parse().unwrap()).unwrap();
        Self { stream: BufReader::new(socket.connect(server).await.unwrap()) }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.get_mut().write_all(bytes).await.unwrap();
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
            let n = read.expect("server answers within 10 s").unwrap_or(0);
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

    /// Greeting, EHLO, MAIL, RCPT for a simple transaction; returns the RCPT reply.
    pub async fn start_transaction(&mut self, from: &str, to: &str) -> String {
        assert!(self.reply().await.starts_with("220"));
        assert!(self.command("EHLO client.test").await.starts_with("250"));
        assert!(self.command(&format!("MAIL FROM:<{from}>")).await.starts_with("250"));
        self.command(&format!("RCPT TO:<{to}>")).await
    }
}
