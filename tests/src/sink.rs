//! A small SMTP server standing in for the smart host: records every transaction and
//! answers RCPT / end-of-data with scripted replies.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    /// Messages containing one of these never get an answer after their data: the
    /// connection is held open, as by a host that hangs.
    hang_on: Vec<String>,
    /// Messages containing one of these get their answer after the delay.
    slow_on: Vec<(String, Duration)>,
    /// The next this many transfers are cut: the connection drops after the first line
    /// of data.
    drops: usize,
}

#[derive(Debug, Clone)]
pub struct Sink {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<Script>>,
    /// Every byte each connection sent, in order: what crossed the wire, terminators and
    /// commands included.
    wire: Arc<Mutex<Vec<Vec<u8>>>>,
    interrupted: Arc<Mutex<usize>>,
}

impl Sink {
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    pub async fn start_on(addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let sink = Sink {
            addr: listener.local_addr().unwrap(),
            received: Arc::default(),
            script: Arc::default(),
            wire: Arc::default(),
            interrupted: Arc::default(),
        };
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

    /// Never answer the end of data of messages containing `pattern`.
    pub fn hang_on_data(&self, pattern: &str) {
        self.script.lock().unwrap().hang_on.push(pattern.into());
    }

    /// Answer the end of data of messages containing `pattern` only after `delay`.
    pub fn slow_on_data(&self, pattern: &str, delay: Duration) {
        self.script.lock().unwrap().slow_on.push((pattern.into(), delay));
    }

    /// Drop the connection in the middle of the next `n` data transfers.
    pub fn drop_during_data(&self, n: usize) {
        self.script.lock().unwrap().drops += n;
    }

    /// How many transfers were held without an answer or dropped so far.
    pub fn interrupted(&self) -> usize {
        *self.interrupted.lock().unwrap()
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The bytes each connection sent so far, one entry per connection.
    pub fn wire(&self) -> Vec<Vec<u8>> {
        self.wire.lock().unwrap().clone()
    }

    /// Waits until `n` messages arrived; returns them.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let what = format!("the sink gets {n} messages");
        crate::wait_for(Duration::from_secs(20), &what, || {
            let got = self.received();
            std::future::ready((got.len() >= n).then_some(got))
        })
        .await
    }

    async fn serve(self, stream: tokio::net::TcpStream) {
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read);
        let connection = {
            let mut wire = self.wire.lock().unwrap();
            wire.push(Vec::new());
            wire.len() - 1
        };
        let record = |bytes: &[u8]| self.wire.lock().unwrap()[connection].extend_from_slice(bytes);
        let _ = write.write_all(b"220 sink.test ESMTP\r\n").await;
        let (mut sender, mut recipients) = (String::new(), Vec::new());
        loop {
            let mut line = String::new();
            if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            record(line.as_bytes());
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
                    record(&data_line);
                    if data_line == b".\r\n" {
                        break;
                    }
                    raw.extend_from_slice(&data_line);
                    if self.take_drop() {
                        return; // both halves drop: the connection closes mid-transfer
                    }
                }
                if self.hangs_on(&raw) {
                    *self.interrupted.lock().unwrap() += 1;
                    std::future::pending::<()>().await;
                }
                if let Some(delay) = self.delay_for(&raw) {
                    tokio::time::sleep(delay).await;
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

impl Sink {
    fn take_drop(&self) -> bool {
        let mut script = self.script.lock().unwrap();
        if script.drops == 0 {
            return false;
        }
        script.drops -= 1;
        *self.interrupted.lock().unwrap() += 1;
        true
    }

    fn delay_for(&self, raw: &[u8]) -> Option<Duration> {
        let text = String::from_utf8_lossy(raw);
        self.script.lock().unwrap().slow_on.iter().find(|(p, _)| text.contains(p.as_str())).map(|(_, d)| *d)
    }

    fn hangs_on(&self, raw: &[u8]) -> bool {
        let text = String::from_utf8_lossy(raw);
        self.script.lock().unwrap().hang_on.iter().any(|p| text.contains(p.as_str()))
    }
}

fn between_brackets(line: &str) -> String {
    let start = line.find('<').map_or(0, |i| i + 1);
    let end = line.rfind('>').unwrap_or(line.len());
    line[start..end.max(start)].to_string()
}
