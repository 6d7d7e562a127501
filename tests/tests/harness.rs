//! The test harness itself: the embedded cluster the tests start when no
//! `TEST_DATABASE_URL` is given must not outlive the test processes, however they end.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A cluster directory of this test's own (short: the socket path has a length limit).
fn cluster_dir() -> PathBuf {
    let target = PathBuf::from(env!("CARGO_BIN_EXE_cluster-user")).parent().unwrap().parent().unwrap().to_path_buf();
    target.join(format!("thc-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]))
}

/// Starts a process that uses the cluster in `dir`; returns once it has a database.
fn start_user(dir: &Path, how: &str) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cluster-user"))
        .arg(how)
        .env_remove("TEST_DATABASE_URL")
        .env("POSTERN_TEST_PG_DIR", dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    assert!(line.starts_with("ready "), "the cluster user did not get a database: {line:?}");
    child
}

/// The postmaster (first) and every process it started, while they run.
fn cluster_processes(dir: &Path) -> Vec<u32> {
    let pid_file = std::fs::read_to_string(dir.join("postgres/postmaster.pid")).unwrap();
    let postmaster: u32 = pid_file.lines().next().unwrap().trim().parse().unwrap();
    let mut pids = vec![postmaster];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // pid (comm) state ppid …: the fields after the last ')'.
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if ppid == Some(postmaster) {
            pids.push(entry.file_name().to_string_lossy().parse().unwrap());
        }
    }
    pids
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z ")
}

/// Waits for every one of `pids` to be gone and the cluster's pid file removed.
fn assert_stopped(dir: &Path, pids: &[u32], how: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while pids.iter().any(|&p| alive(p)) || dir.join("postgres/postmaster.pid").exists() {
        assert!(
            Instant::now() < deadline,
            "after a user ended by {how}, the cluster still runs: {:?}",
            pids.iter().filter(|&&p| alive(p)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_embedded_test_cluster_stops_after_its_last_user_however_it_ended() {
    let dir = cluster_dir();

    // A failed test (panic): the process exits non-zero, the cluster stops after it.
    let panicking = start_user(&dir, "panic");
    let pids = cluster_processes(&dir);
    assert!(pids.len() > 1, "a running postmaster has its background processes: {pids:?}");
    let out = panicking.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert_stopped(&dir, &pids, "a panic");

    // Ctrl-C (SIGINT), and SIGKILL: nothing runs on afterwards either. The second user
    // starts the cluster again from the same directory.
    for signal in ["-INT", "-KILL"] {
        let mut waiting = start_user(&dir, "wait");
        let pids = cluster_processes(&dir);
        // Two users at once: the first one's end must not stop the cluster under the second.
        let mut second = start_user(&dir, "wait");
        Command::new("kill").arg(signal).arg(waiting.id().to_string()).status().unwrap();
        waiting.wait().unwrap();
        std::thread::sleep(Duration::from_secs(7));
        assert!(alive(pids[0]), "the cluster stopped while a user still ran");
        Command::new("kill").arg(signal).arg(second.id().to_string()).status().unwrap();
        second.wait().unwrap();
        assert_stopped(&dir, &pids, signal);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
