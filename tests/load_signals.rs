//! Load on real PostgreSQL (issue 12): other sessions at work throttle a run until
//! they end, an autovacuum of the table throttles it, and one to prevent wraparound pauses it
//! until it is gone. Each test has a cluster of its own: active sessions are counted across the
//! server, and autovacuum needs a fast `autovacuum_naptime`. Every run ends with every row
//! correct and nothing applied twice.

mod common;

use std::sync::Arc;

use backfill::postgres::throwaway::{Cluster, ClusterOptions};
use common::watched::{
    NOTE_PAUSED, assert_clean, batch_sizes, items_with_job, kinds, reasons,
    rows_done_across_heartbeats,
};
use common::{Runner, assert_all_done_once, own_cluster, own_cluster_with, wait_for};
use serde_json::Value;
use sqlx::{AssertSqlSafe, Connection as _, PgConnection, PgPool};

/// Throttled batches of 50 rows, 100 ms apart at most; full speed up to 1000.
const BATCH: &str = "size = 1000\nmin = 50\nmax = 1000";

async fn execute(pool: &PgPool, sql: &str) {
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(pool)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
}

/// The run throttled for a while, then went back to full speed: the batches in between were
/// of `batch.min` rows, and some after were larger. Returns the throttle reasons.
fn throttled_then_released(events: &[Value]) -> Vec<String> {
    let kinds = kinds(events);
    let throttled = kinds
        .iter()
        .position(|k| *k == "throttled")
        .expect("never throttled");
    let running = throttled
        + kinds[throttled..]
            .iter()
            .position(|k| *k == "running")
            .expect("never ran at full speed again");
    let during = batch_sizes(&events[throttled..running]);
    assert!(during.iter().all(|s| *s == 50), "throttled: {during:?}");
    let after = batch_sizes(&events[running..]);
    assert!(after.iter().any(|s| *s > 50), "never sped up: {after:?}");
    reasons(events, "throttled")
}

#[tokio::test(flavor = "multi_thread")]
async fn busy_sessions_throttle_the_run_until_they_end() {
    let (cluster, pool) = own_cluster().await;
    let url = cluster.url("postgres");
    let (dir, job) = items_with_job(
        &pool,
        20_000,
        BATCH,
        "max_active_sessions = 2\nmax_pause = \"100ms\"\ncooldown = \"300ms\"",
    )
    .await;
    let sleepers: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let mut conn = PgConnection::connect(&url).await.unwrap();
                // Cancelled by the test once the run has been throttled.
                let _ = sqlx::raw_sql("SELECT pg_sleep(600)")
                    .execute(&mut conn)
                    .await;
            })
        })
        .collect();
    let sleeping = "(SELECT count(*) FROM pg_stat_activity \
                     WHERE query = 'SELECT pg_sleep(600)' AND state = 'active')";
    wait_for(&pool, &format!("{sleeping} = 3")).await;
    let mut runner = Runner::spawn(&url, &dir, "run", &["run", "--json", &job]);
    runner
        .wait_until(
            &pool,
            "EXISTS (SELECT 1 FROM backfill.jobs WHERE rows_done >= 150 \
             AND note LIKE 'throttled: % other sessions are active (limit 2)')",
        )
        .await;
    execute(
        &pool,
        "SELECT pg_cancel_backend(pid) FROM pg_stat_activity \
          WHERE query = 'SELECT pg_sleep(600)'",
    )
    .await;
    for sleeper in sleepers {
        sleeper.await.unwrap();
    }
    let out = runner.finish().await;

    let events = assert_clean(&out, "run");
    let throttled = throttled_then_released(&events);
    println!("throttled: {throttled:#?}");
    let counted: u64 = throttled[0]
        .strip_suffix(" other sessions are active (limit 2)")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{throttled:?}"));
    assert!(counted >= 3, "{throttled:?}");
    assert_all_done_once(&pool, 20_000).await;
    drop(cluster);
}

/// A cluster whose autovacuum looks at every table every second, and `items` (`rows` rows)
/// with a job over it; autovacuum of `items` is made slow, so that it is seen at work.
async fn autovacuum_cluster(rows: i64, reloptions: &str) -> (Arc<Cluster>, PgPool, Job) {
    let options = ClusterOptions {
        settings: vec![("autovacuum_naptime".into(), "1s".into())],
    };
    let (cluster, pool) = own_cluster_with(options).await;
    let (dir, path) = items_with_job(
        &pool,
        rows,
        BATCH,
        "max_pause = \"100ms\"\ncooldown = \"300ms\"",
    )
    .await;
    execute(
        &pool,
        &format!(
            "ALTER TABLE items SET (autovacuum_vacuum_cost_delay = 100, \
             autovacuum_vacuum_cost_limit = 1, {reloptions})"
        ),
    )
    .await;
    let job = Job {
        dir,
        path,
        url: cluster.url("postgres"),
    };
    (cluster, pool, job)
}

/// A job file, the directory that holds it (and the runner's output), and where to run it.
struct Job {
    dir: tempfile::TempDir,
    path: String,
    url: String,
}

impl Job {
    fn spawn(&self) -> Runner {
        Runner::spawn(&self.url, &self.dir, "run", &["run", "--json", &self.path])
    }
}

/// A SQL condition: autovacuum works on `items`, and its query says `purpose`.
fn vacuuming_items(purpose: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM pg_stat_progress_vacuum p JOIN pg_stat_activity a USING (pid) \
          WHERE p.relid = 'items'::regclass AND a.query LIKE 'autovacuum: VACUUM%{purpose}')"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn an_autovacuum_of_the_table_throttles_the_run() {
    let (cluster, pool, job) = autovacuum_cluster(
        20_000,
        "autovacuum_vacuum_threshold = 0, autovacuum_vacuum_scale_factor = 0",
    )
    .await;
    // Dead rows without an UPDATE (which the update counter would count): out and back in.
    execute(
        &pool,
        "WITH gone AS (DELETE FROM items WHERE id % 100 = 0 RETURNING *) \
         INSERT INTO items SELECT * FROM gone",
    )
    .await;
    wait_for(&pool, &vacuuming_items("items")).await;
    let mut runner = job.spawn();
    runner
        .wait_until(
            &pool,
            "EXISTS (SELECT 1 FROM backfill.jobs WHERE rows_done >= 100 \
             AND note LIKE 'throttled: autovacuum pid % is vacuuming items (phase %)')",
        )
        .await;
    // Turning autovacuum off for the table queues behind the worker, which PostgreSQL then
    // cancels (an ordinary autovacuum gives way to a lock request after deadlock_timeout).
    execute(&pool, "ALTER TABLE items SET (autovacuum_enabled = false)").await;
    let out = runner.finish().await;

    let events = assert_clean(&out, "run");
    let throttled = throttled_then_released(&events);
    println!("throttled: {throttled:#?}");
    assert!(
        throttled[0].starts_with("autovacuum pid ")
            && throttled[0].contains(" is vacuuming items (phase "),
        "{throttled:?}"
    );
    assert_all_done_once(&pool, 20_000).await;
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_autovacuum_to_prevent_wraparound_pauses_the_run_until_it_is_gone() {
    // Ordinary autovacuum is off for the table; the wraparound one comes anyway, once the
    // table's oldest transaction id is older than its autovacuum_freeze_max_age.
    let (cluster, pool, job) = autovacuum_cluster(
        20_000,
        "autovacuum_enabled = false, autovacuum_freeze_max_age = 100000",
    )
    .await;
    // 100 000 transaction ids, one subtransaction each.
    execute(
        &pool,
        "CREATE TABLE burn (n int);
         DO $$ BEGIN
           FOR i IN 1..100000 LOOP
             BEGIN INSERT INTO burn VALUES (i); EXCEPTION WHEN others THEN NULL; END;
           END LOOP;
         END $$;",
    )
    .await;
    wait_for(&pool, &vacuuming_items("(to prevent wraparound)")).await;
    let mut runner = job.spawn();
    runner
        .wait_until(
            &pool,
            &format!(
                "{NOTE_PAUSED}autovacuum pid % is vacuuming items to prevent wraparound \
                 (phase %)')"
            ),
        )
        .await;
    let (paused_at, still) = rows_done_across_heartbeats(&mut runner, &pool).await;
    // The freeze limit goes back to the server's (200 million): once this worker is gone no
    // other comes. A wraparound vacuum gives way to nobody, so the reset queues behind it until
    // it is cancelled.
    let reset = tokio::spawn({
        let url = job.url.clone();
        async move {
            let mut conn = PgConnection::connect(&url).await.unwrap();
            sqlx::raw_sql("ALTER TABLE items RESET (autovacuum_freeze_max_age)")
                .execute(&mut conn)
                .await
                .expect("reset the freeze limit");
        }
    });
    wait_for(
        &pool,
        "EXISTS (SELECT 1 FROM pg_locks WHERE relation = 'items'::regclass AND NOT granted)",
    )
    .await;
    execute(
        &pool,
        "SELECT pg_cancel_backend(pid) FROM pg_stat_progress_vacuum \
          WHERE relid = 'items'::regclass",
    )
    .await;
    reset.await.unwrap();
    let out = runner.finish().await;

    let events = assert_clean(&out, "run");
    let paused = reasons(&events, "paused");
    println!("paused: {paused:#?}");
    assert_eq!(
        (paused_at, still),
        (0, 0),
        "batches ran during the wraparound vacuum"
    );
    assert!(
        paused[0].starts_with("autovacuum pid ")
            && paused[0].contains(" is vacuuming items to prevent wraparound (phase "),
        "{paused:?}"
    );
    assert_all_done_once(&pool, 20_000).await;
    drop(cluster);
}
