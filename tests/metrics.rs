//! `run --metrics-addr`: Prometheus scrapes `/metrics` over HTTP while a real run goes on, and
//! the numbers agree with the state table; a bad or busy address stops the run before the
//! database is touched.

mod common;

use std::net::TcpListener;

use common::orders::{TOTAL, orders, orders_job};
use common::{Runner, TestDb, number, path_str, run_backfill, schema_exists, write_job};

/// 8000 rows at about 2000 rows a second (batches of 100 keys, 50 ms apart): long enough to
/// scrape while it runs.
fn slow() -> String {
    orders_job(TOTAL, 100, "50ms")
}

/// A port nobody listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("an ephemeral port")
        .port()
}

/// `GET /metrics` as Prometheus does it.
fn scrape(port: u16) -> Result<String, ureq::Error> {
    ureq::get(&format!("http://127.0.0.1:{port}/metrics"))
        .call()?
        .body_mut()
        .read_to_string()
}

/// The value of the sample whose name and labels are `series`.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
}

async fn state(db: &TestDb, column: &str) -> i64 {
    number(
        &db.pool,
        &format!("SELECT {column}::int8 FROM backfill.jobs WHERE name = 'slow'"),
    )
    .await
}

#[tokio::test]
async fn metrics_are_served_during_the_run_and_match_the_state_table() {
    let (db, dir) = orders(8000).await;
    let path = write_job(&dir, "slow", &slow());
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut runner = Runner::spawn(
        &db.url,
        &dir,
        "run",
        &["run", "--metrics-addr", &addr, path_str(&path)],
    );
    runner
        .wait_until(
            &db.pool,
            "(SELECT rows_done FROM backfill.jobs WHERE name = 'slow') >= 500",
        )
        .await;

    // Held still by an operator's pause, the run's numbers and the state table's agree.
    run_backfill(&db.url, &["pause", "slow"]).expect_code(0, "pause");
    runner
        .wait_until(
            &db.pool,
            "(SELECT note FROM backfill.jobs WHERE name = 'slow') LIKE 'paused%'",
        )
        .await;
    let text = tokio::task::spawn_blocking(move || scrape(port))
        .await
        .unwrap()
        .expect("scrape /metrics during the run");
    eprintln!("{text}");
    let (rows_done, batches_done) = (
        state(&db, "rows_done").await,
        state(&db, "batches_done").await,
    );
    assert!(
        rows_done < 8000,
        "the run finished before the scrape; slow it down"
    );
    assert_eq!(
        sample(&text, "backfill_rows_done_total{job=\"slow\"}"),
        rows_done as f64
    );
    assert_eq!(
        sample(&text, "backfill_batches_total{job=\"slow\"}"),
        batches_done as f64
    );
    assert_eq!(
        sample(&text, "backfill_batch_duration_seconds_count{job=\"slow\"}"),
        batches_done as f64
    );
    assert_eq!(
        sample(&text, "backfill_rows_estimate{job=\"slow\"}"),
        8000.0
    );
    let size = sample(&text, "backfill_batch_size{job=\"slow\"}");
    assert!((10.0..=100.0).contains(&size), "batch size {size}");
    assert_eq!(
        sample(
            &text,
            "backfill_state{job=\"slow\",state=\"paused\",signal=\"operator\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            "backfill_state{job=\"slow\",state=\"running\",signal=\"\"}"
        ),
        0.0
    );
    assert_eq!(sample(&text, "backfill_retries_total{job=\"slow\"}"), 0.0);

    run_backfill(&db.url, &["resume", "slow"]).expect_code(0, "resume");
    runner.finish().await.expect_code(0, "the run");
    assert_eq!(state(&db, "rows_done").await, 8000);
    assert!(
        tokio::task::spawn_blocking(move || scrape(port))
            .await
            .unwrap()
            .is_err(),
        "metrics are served only while the run lasts"
    );
}

#[tokio::test]
async fn a_bad_or_busy_address_stops_the_run_before_the_database_is_touched() {
    let (db, dir) = orders(8000).await;
    let path = write_job(&dir, "slow", &slow());

    let output = run_backfill(&db.url, &["run", "--metrics-addr", "9187", path_str(&path)]);
    output.expect_code(2, "a port without a host");
    assert!(
        output.stderr.contains("expected HOST:PORT"),
        "{}",
        output.stderr
    );

    let busy = TcpListener::bind("127.0.0.1:0").expect("a port to occupy");
    let addr = busy.local_addr().unwrap().to_string();
    let output = run_backfill(&db.url, &["run", "--metrics-addr", &addr, path_str(&path)]);
    output.expect_code(2, "a port in use");
    assert!(
        output
            .stderr
            .contains(&format!("cannot serve metrics on {addr}")),
        "{}",
        output.stderr
    );
    assert!(
        !schema_exists(&db.pool, "backfill").await,
        "the run touched the database"
    );
    drop(busy);
}
