//! How long a committed configuration change takes to be enforced on a new connection.
//! Against a running Postern whose connector `bench` listens on --smtp: each round
//! rewrites the connector's remote IP ranges with plain SQL (as a hand-written change
//! would), alternately admitting and refusing 127.0.0.1, and then connects again and
//! again until the greeting follows the new rule. Prints p50, p99 and max over --rounds.
//!
//!   reload-bench --database-url postgres://postgres@127.0.0.1:5432/db --smtp 127.0.0.1:2525 --rounds 100

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::AsyncBufReadExt;

fn arg(flag: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned().unwrap_or_else(|| {
        eprintln!("missing {flag}");
        std::process::exit(2)
    })
}

/// True when 127.0.0.1 is greeted with 220 (admitted), false for 554 (refused).
async fn admitted(smtp: SocketAddr) -> bool {
    let stream = tokio::net::TcpStream::connect(smtp).await.expect("connect");
    let mut reader = tokio::io::BufReader::new(stream);
    let mut greeting = String::new();
    reader.read_line(&mut greeting).await.expect("greeting");
    greeting.starts_with("220")
}

#[tokio::main]
async fn main() {
    let url = arg("--database-url");
    let smtp: SocketAddr = arg("--smtp").parse().expect("--smtp host:port");
    let rounds: usize = arg("--rounds").parse().expect("--rounds N");
    let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await.expect("database");
    let mut latencies = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let admit = round % 2 == 1;
        let ranges = if admit { "{127.0.0.1/32}" } else { "{127.0.0.2/32}" };
        sqlx::query("update receive_connectors set remote_ip_ranges = $1::cidr[] where name = 'bench'")
            .bind(ranges)
            .execute(&mut db)
            .await
            .expect("update");
        let committed = Instant::now();
        while admitted(smtp).await != admit {
            assert!(committed.elapsed() < Duration::from_secs(30), "round {round}: change not enforced within 30 s");
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        latencies.push(committed.elapsed());
        // Let the node settle before the next change, as separate admin edits would.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    latencies.sort();
    let at =
        |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)].as_secs_f64() * 1000.0;
    println!("rounds\t{rounds}\tp50_ms\t{:.1}\tp99_ms\t{:.1}\tmax_ms\t{:.1}", at(0.5), at(0.99), at(1.0));
}
