//! The throwaway cluster that `backfill demo` and the tests stand on: it serves, restarts,
//! follows as a replica, and leaves nothing behind — on drop, on Ctrl-C and on SIGKILL.

mod common;

use std::io::{BufRead as _, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use backfill::postgres::throwaway::{Cluster, ClusterOptions};
use sqlx::{Connection as _, PgConnection};

async fn select_one(url: &str) -> Result<i32, sqlx::Error> {
    let mut connection = PgConnection::connect(url).await?;
    sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut connection)
        .await
}

fn is_gone(dir: &Path, port: u16) -> bool {
    !dir.exists() && TcpStream::connect(("127.0.0.1", port)).is_err()
}

fn wait_until_gone(dir: &Path, port: u16) -> bool {
    (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        is_gone(dir, port)
    })
}

#[tokio::test]
async fn cluster_serves_restarts_and_vanishes_on_drop() {
    let cluster = Cluster::start().unwrap();
    assert_eq!(select_one(&cluster.url("postgres")).await.unwrap(), 1);
    cluster.restart().unwrap();
    assert_eq!(select_one(&cluster.url("postgres")).await.unwrap(), 1);
    cluster.stop().unwrap();
    assert!(select_one(&cluster.url("postgres")).await.is_err());
    cluster.start_again().unwrap();
    assert_eq!(select_one(&cluster.url("postgres")).await.unwrap(), 1);
    let (dir, port) = (cluster.socket_dir().to_path_buf(), cluster.port());
    drop(cluster);
    assert!(is_gone(&dir, port));
}

#[tokio::test]
async fn settings_reach_the_server() {
    let options = ClusterOptions {
        settings: vec![("work_mem".into(), "7MB".into())],
    };
    let cluster = Cluster::start_with(&options).unwrap();
    let mut connection = PgConnection::connect(&cluster.url("postgres"))
        .await
        .unwrap();
    let work_mem: String = sqlx::query_scalar("SHOW work_mem")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert_eq!(work_mem, "7MB");
}

#[test]
fn clusters_start_in_parallel_on_distinct_ports() {
    let ports: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..3).map(|_| scope.spawn(Cluster::start)).collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap().unwrap().port())
            .collect()
    });
    let mut unique = ports.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ports.len());
}

/// The first value of `sql` on `url`, polled until it is there: a replica replays what the
/// primary wrote a moment later.
async fn eventually(url: &str, sql: &'static str) -> Option<i32> {
    let mut connection = PgConnection::connect(url).await.unwrap();
    for _ in 0..100 {
        let value = sqlx::query_scalar(sql)
            .fetch_optional(&mut connection)
            .await
            .ok()
            .flatten();
        if value.is_some() {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test]
async fn replica_starts_from_the_primary_s_data_and_follows_it() {
    let primary = Cluster::start().unwrap();
    let mut connection = PgConnection::connect(&primary.url("postgres"))
        .await
        .unwrap();
    sqlx::raw_sql("CREATE TABLE before AS SELECT i FROM generate_series(1, 10000) AS i")
        .execute(&mut connection)
        .await
        .unwrap();
    let replica = primary.replica(&ClusterOptions::default()).unwrap();
    sqlx::query("CREATE TABLE after AS SELECT 42 AS answer")
        .execute(&mut connection)
        .await
        .unwrap();
    let url = replica.url("postgres");
    assert_eq!(eventually(&url, "SELECT answer FROM after").await, Some(42));
    let copied = "SELECT count(*)::int4 FROM before";
    assert_eq!(eventually(&url, copied).await, Some(10000));
    let standby = "SELECT 1 WHERE pg_is_in_recovery()";
    assert_eq!(eventually(&url, standby).await, Some(1));
    let streaming = "SELECT count(*)::int4 FROM pg_stat_replication WHERE state = 'streaming'";
    assert_eq!(
        eventually(&primary.url("postgres"), streaming).await,
        Some(1)
    );
}

/// Starts `backfill demo` on a large table, its stderr piped.
fn spawn_demo() -> Child {
    common::backfill_command(&["demo", "--rows", "3000000"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits until the demo's cluster is up; returns its port and data directory.
fn cluster_of(demo: &mut Child) -> (u16, PathBuf) {
    let mut stderr = BufReader::new(demo.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert_ne!(stderr.read_line(&mut line).unwrap(), 0, "demo exited early");
        if let Some(rest) = line.trim().strip_prefix("PostgreSQL is up on port ") {
            let (port, dir) = rest.split_once(" in ").unwrap();
            let data_dir = PathBuf::from(dir);
            // Keep draining stderr so the demo never blocks on a full pipe.
            std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
            return (port.parse().unwrap(), data_dir);
        }
    }
}

#[test]
fn demo_killed_with_sigkill_leaves_no_cluster_behind() {
    let mut child = spawn_demo();
    let (port, dir) = cluster_of(&mut child);
    assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        wait_until_gone(&dir, port),
        "{} is still there",
        dir.display()
    );
}

#[test]
fn demo_interrupted_with_ctrl_c_exits_130_and_cleans_up() {
    let mut child = spawn_demo();
    let (port, dir) = cluster_of(&mut child);
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(130));
    assert!(
        wait_until_gone(&dir, port),
        "{} is still there",
        dir.display()
    );
}

#[test]
fn demo_runs_the_whole_story() {
    let out = common::backfill(&["demo", "--rows", "20000"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("verified"), "{stdout}");
    assert!(stderr.contains("contract"), "{stderr}");
}
