//! A small SMTP server standing in for the smart host: records every transaction and
//! answers RCPT / end-of-data with scripted replies.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One transaction the sink accepted.
#[derive(Debug, Clone)]
pub struct Received {
    pub sender: String,
    pub recipients: Vec<String>,
    /// The data as it crossed the wire, dot-stuffed, without the final ".\r\n".
    pub raw: Vec<u8>,
}

#[derive(Debug, Default)]
struct Script {
    /// Replies for RCPT by recipient substring; default 250.
    rcpt: Vec<(String, String)>,
    /// Replies for the end of data, used in order; default 250.
    data: VecDeque<String>,
}

#[derive(Debug, Clone)]
pub struct Sink {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<Script>>,
}

impl Sink {
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    pub async fn start_on(addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let sink = Sink { addr: listener.local_addr().unwrap(), received: Arc::default(), script: Arc::default() };
        let s = sink.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(s.clone().serve(stream));
            }
        });
        sink
    }

    /// Answer RCPT for recipients containing `pattern` with `reply`.
    pub fn reject_rcpt(&self, pattern: &str, reply: &str) {
        self.script.lock().unwrap().rcpt.push((pattern.into(), reply.into()));
    }

    /// Answer the next end-of-data with `reply`.
    pub fn next_data_reply(&self, reply: &str) {
        self.script.lock().unwrap().data.push_back(reply.into());
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until `n` messages arrived; returns them.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let start = Instant::now();
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "sink got {} of {n} messages", got.len());
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn serve(self, stream: tokio::net::TcpStream) {
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read);
        let _ = write.write_all(b"220 sink.test ESMTP\r\n").await;
        let (mut sender, mut recipients) = (String::new(), Vec::new());
        loop {
            let mut line = String::new();
            if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let upper = line.to_ascii_uppercase();
            let reply = if upper.starts_with("EHLO") {
                "250-sink.test\r\n250-8BITMIME\r\n250 SIZE 100000000\r\n".to_string()
            } else if upper.starts_with("MAIL FROM:") {
                sender = between_brackets(&line);
                recipients.clear();
                "250 2.1.0 Ok\r\n".into()
            } else if upper.starts_with("RCPT TO:") {
                let rcpt = between_brackets(&line);
                let scripted = self
                    .script
                    .lock()
                    .unwrap()
                    .rcpt
                    .iter()
                    .find(|(p, _)| rcpt.contains(p.as_str()))
                    .map(|(_, r)| r.clone());
                match scripted {
                    Some(r) => format!("{r}\r\n"),
                    None => {
                        recipients.push(rcpt);
                        "250 2.1.5 Ok\r\n".into()
                    }
                }
            } else if upper.starts_with("DATA") {
                let _ = write.write_all(b"354 go ahead\r\n").await;
                let mut raw = Vec::new();
                loop {
                    let mut data_line = Vec::new();
                    if lines.read_until(b'\n', &mut data_line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if data_line == b".\r\n" {
                        break;
                    }
                    raw.extend_from_slice(&data_line);
                }
                let scripted = self.script.lock().unwrap().data.pop_front();
                match scripted {
                    Some(r) => format!("{r}\r\n"),
                    None => {
                        let received = Received { sender: sender.clone(), recipients: recipients.clone(), raw };
                        self.received.lock().unwrap().push(received);
                        "250 2.0.0 Ok: queued\r\n".into()
                    }
                }
            } else if upper.starts_with("QUIT") {
                let _ = write.write_all(b"221 2.0.0 Bye\r\n").await;
                return;
            } else {
                "250 2.0.0 Ok\r\n".into()
            };
            if write.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
        }
    }
}

fn between_brackets(line: &str) -> String {
    let start = line.find('<').map_or(0, |i| i + 1);
    let end = line.rfind('>').unwrap_or(line.len());
    line[start..end.max(start)].to_string()
}
