//! Proof that nothing reached out: a named pipe (FIFO) and a TCP listener that must see
//! nothing. Whoever opens the FIFO to read it blocks there until a writer comes, so a
//! reader is still present when the test looks (a non-blocking open for writing then
//! succeeds); the listener counts every connection it accepts.

use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// `O_NONBLOCK` on Linux: opening a FIFO for writing fails (ENXIO) while no one reads it.
const O_NONBLOCK: i32 = 0o4000;

pub struct Tripwire {
    dir: PathBuf,
    pub fifo: PathBuf,
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    listener: tokio::task::JoinHandle<()>,
}

impl Tripwire {
    pub async fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("postern-tripwire-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("secret");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs");
        assert!(made.success(), "mkfifo failed");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&connections);
        let listener = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
        Self { dir, fifo, addr, connections, listener }
    }

    /// A `file:` URI of the FIFO.
    pub fn file_uri(&self) -> String {
        format!("file://{}", self.fifo.display())
    }

    /// An `http:` URI on the listener.
    pub fn http_uri(&self) -> String {
        format!("http://{}/probe", self.addr)
    }

    /// Whether anyone opened the FIFO (and still waits on it) or connected.
    pub fn tripped(&self) -> bool {
        let reader_waiting = std::fs::OpenOptions::new().write(true).custom_flags(O_NONBLOCK).open(&self.fifo).is_ok();
        reader_waiting || self.connections.load(Ordering::SeqCst) > 0
    }
}

impl Drop for Tripwire {
    fn drop(&mut self) {
        self.listener.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
