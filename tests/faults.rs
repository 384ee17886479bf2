//! Faults injected into a running `backfill run`: the server restarts, the server stays down
//! past `--reconnect-timeout`, the runner is SIGKILLed again and again at random moments, and
//! the number of server connections a run holds.
//!
//! Each test has a scratch cluster of its own, because it stops or restarts the server (or
//! counts every session on it). Every test checks what a user would: exit code, message, each
//! row's value, and `rows_done` in `backfill.jobs` against the rows that really changed.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use backfill::postgres::throwaway::Cluster;
use common::kills::kill_9_at_random_moments;
use common::{
    Runner, assert_all_done_once, count_updates, create_items, items_job, number, own_cluster,
    path_str, run_backfill, write_job, wrong_items,
};
use sqlx::postgres::{PgPool, PgPoolOptions};
use tempfile::TempDir;

/// The batches of the outage tests: 100 000 rows take a few seconds, long enough to stop or
/// restart the server in the middle.
const OUTAGE_BATCHES: &str = "size = 1000\nmin = 1000\nmax = 1000\npause = \"30ms\"";

/// True once the run has committed its first batch.
const FIRST_BATCH: &str = "(SELECT rows_done > 0 FROM backfill.jobs WHERE name = 'items_total')";

/// Runs a blocking cluster operation (`stop`, `start_again`, `restart`) off the async runtime.
async fn on_cluster(
    cluster: &Arc<Cluster>,
    what: &str,
    op: fn(&Cluster) -> Result<(), backfill::postgres::throwaway::ScratchError>,
) {
    let cluster = Arc::clone(cluster);
    tokio::task::spawn_blocking(move || op(&cluster))
        .await
        .expect("join the cluster operation")
        .unwrap_or_else(|error| panic!("{what} the scratch cluster: {error}"));
}

/// What every test here starts from: a cluster of the test's own ([`own_cluster`]) with `rows`
/// rows of `items` ([`create_items`]) and their [`count_updates`] trigger; a pool on its
/// `postgres` database and that database's URL; a directory for the job file and the runners'
/// output; and the path of the job `items_total` ([`items_job`] with `filter` and `batch`).
async fn fixture(
    rows: i64,
    filter: &str,
    batch: &str,
) -> (Arc<Cluster>, PgPool, String, TempDir, String) {
    let (cluster, pool) = own_cluster().await;
    create_items(&pool, rows).await;
    count_updates(&pool).await;
    let dir = TempDir::new().unwrap();
    let job = write_job(&dir, "items_total", &items_job(filter, batch));
    let job = path_str(&job).to_owned();
    let url = cluster.url("postgres");
    (cluster, pool, url, dir, job)
}

async fn rows_done(pool: &PgPool) -> i64 {
    number(
        pool,
        "SELECT rows_done FROM backfill.jobs WHERE name = 'items_total'",
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_restart_mid_run_is_ridden_out() {
    let (cluster, pool, url, dir, job) = fixture(100_000, "total IS NULL", OUTAGE_BATCHES).await;
    let job = job.as_str();
    let mut runner = Runner::spawn(&url, &dir, "run", &["run", "--json", job]);
    runner.wait_until(&pool, FIRST_BATCH).await;
    assert!(
        rows_done(&pool).await < 100_000,
        "the run ended before the restart"
    );

    on_cluster(&cluster, "restart", Cluster::restart).await;

    let out = runner.finish().await;
    out.expect_code(0, "run across a restart");
    assert_eq!(wrong_items(&pool).await, 0);
    assert_eq!(rows_done(&pool).await, 100_000);
    let reconnected = out
        .stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .any(|event| event["event"] == "retry" && event["reconnecting"] == true);
    assert!(
        reconnected,
        "no retry event with reconnecting: true\nstdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_down_past_the_bound_stops_with_the_checkpoint_intact() {
    let (cluster, pool, url, dir, job) = fixture(100_000, "total IS NULL", OUTAGE_BATCHES).await;
    let job = job.as_str();
    let mut runner = Runner::spawn(
        &url,
        &dir,
        "bounded",
        &["run", "--reconnect-timeout", "3s", job],
    );
    runner.wait_until(&pool, FIRST_BATCH).await;

    // Measured from before the stop: the first lost batch comes after it.
    let stopping = Instant::now();
    on_cluster(&cluster, "stop", Cluster::stop).await;
    let out = runner.finish().await;
    let waited = stopping.elapsed();
    out.expect_code(1, "run with the database gone");
    assert!(
        out.stderr.contains("could not get it back within")
            && out.stderr.contains("checkpoint is intact"),
        "stderr:\n{}",
        out.stderr
    );
    // At least the bound; at most the bound plus one capped (10 s) backoff and some slack.
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(20),
        "gave up after {waited:?} with a 3s bound"
    );

    on_cluster(&cluster, "start", Cluster::start_again).await;
    pool.close().await;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await
        .expect("reconnect after the restart");
    let done = rows_done(&pool).await;
    let changed = number(&pool, "SELECT count(*) FROM items WHERE total IS NOT NULL").await;
    assert!(done > 0 && done < 100_000, "rows_done {done}");
    assert_eq!(done, changed, "rows_done against the rows really changed");
    assert_eq!(
        number(
            &pool,
            "SELECT count(*) FROM items WHERE total IS NOT NULL AND total <> qty::bigint * price"
        )
        .await,
        0
    );
    // Exactly the rows up to the stored cursor are done.
    assert_eq!(
        number(
            &pool,
            "SELECT count(*) FROM items, backfill.jobs j WHERE j.name = 'items_total' \
             AND (id <= (j.cursor->>0)::bigint) <> (total IS NOT NULL)"
        )
        .await,
        0,
        "rows on the wrong side of the stored cursor"
    );

    run_backfill(&url, &["run", job]).expect_code(0, "run after the server came back");
    assert_eq!(wrong_items(&pool).await, 0);
    assert_eq!(rows_done(&pool).await, 100_000);
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_kill_9s_at_random_moments_update_every_row_exactly_once() {
    const ROWS: i64 = 300_000;
    // `where = "true"`: the filter does not hide a row changed twice, so the trigger's counter
    // sees any batch that was applied but not checkpointed.
    let (cluster, pool, url, dir, job) = fixture(
        ROWS,
        "true",
        "size = 1000\nmin = 1000\nmax = 1000\npause = \"2ms\"",
    )
    .await;
    let job = job.as_str();
    kill_9_at_random_moments(&url, &pool, &dir, &["run", job], 20).await;

    run_backfill(&url, &["run", job]).expect_code(0, "final run after 20 kills");
    assert_all_done_once(&pool, ROWS).await;
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_holds_at_most_three_connections_and_names_them() {
    let (cluster, pool, url, dir, job) = fixture(
        3_000,
        "total IS NULL",
        "size = 100\nmin = 100\nmax = 100\npause = \"100ms\"",
    )
    .await;
    let job = job.as_str();
    let mut runner = Runner::spawn(&url, &dir, "slow", &["run", job]);
    let mut samples = std::collections::BTreeMap::<i64, u32>::new();
    let deadline = Instant::now() + common::RUN_WAIT;
    let status = loop {
        if let Some(status) = runner.child.try_wait().expect("poll the runner") {
            break status;
        }
        assert!(Instant::now() < deadline, "the slow run did not end");
        let sessions = number(
            &pool,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'backfill:%'",
        )
        .await;
        *samples.entry(sessions).or_default() += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    runner.output(status).expect_code(0, "slow run");
    assert_eq!(wrong_items(&pool).await, 0);
    println!("backfill sessions seen (count → samples): {samples:?}");
    let most = samples.keys().max().copied().unwrap_or(0);
    assert!(most <= 3, "more than three connections: {samples:?}");
    assert!(
        samples.contains_key(&3),
        "never saw the batch, heartbeat and monitor sessions named backfill:items_total…: \
         {samples:?}"
    );
    drop(cluster);
}
