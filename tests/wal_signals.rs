//! WAL retention on real PostgreSQL (issue 11): a logical replication slot without a
//! consumer pauses the run until it is dropped (or not at all when it is in `ignore_slots`),
//! and an archiver that fails, or falls behind, pauses it until it ships again. Every test
//! starts a cluster of its own, since each needs server settings (`wal_level = logical`,
//! `archive_mode = on`). Every run ends with every row correct and nothing applied twice.

mod common;

use std::path::Path;
use std::sync::Arc;

use backfill::postgres::throwaway::{Cluster, ClusterOptions};
use common::watched::{
    NOTE_PAUSED, assert_clean, items_with_job, kinds, reasons, rows_done_across_heartbeats,
};
use common::{
    Runner, assert_all_done_once, holds, number, own_cluster_with, run_backfill, wait_for,
};
use sqlx::{AssertSqlSafe, PgPool};

/// Batches of 500 rows with a short pause, so that the monitor samples between batches.
const BATCH: &str = "size = 500\nmin = 500\nmax = 500\npause = \"20ms\"";

/// A cluster of its own with `settings`, its URL, and a pool on it.
async fn cluster(settings: &[(&str, &str)]) -> (Arc<Cluster>, String, PgPool) {
    let options = ClusterOptions {
        settings: settings
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect(),
    };
    let (cluster, pool) = own_cluster_with(options).await;
    let url = cluster.url("postgres");
    (cluster, url, pool)
}

async fn execute(pool: &PgPool, sql: &str) {
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(pool)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slot_without_a_consumer_pauses_the_run_until_it_is_dropped() {
    let (cluster, url, pool) = cluster(&[("wal_level", "logical")]).await;
    let (dir, job) = items_with_job(
        &pool,
        20_000,
        BATCH,
        "max_slot_lag_bytes = 262144\ncooldown = \"300ms\"",
    )
    .await;
    // Created after the table is filled: the slot retains only what the run writes.
    execute(
        &pool,
        "SELECT pg_create_logical_replication_slot('cdc', 'test_decoding')",
    )
    .await;
    let mut runner = Runner::spawn(&url, &dir, "run", &["run", "--json", &job]);
    runner
        .wait_until(
            &pool,
            &format!(
                "{NOTE_PAUSED}replication slot cdc (logical test_decoding, no consumer connected) \
                 retains % of WAL (limit 256.0 KiB)%')"
            ),
        )
        .await;
    let (paused_at, still) = rows_done_across_heartbeats(&mut runner, &pool).await;
    let still_paused = holds(&pool, &format!("{NOTE_PAUSED}replication slot cdc%')")).await;
    execute(&pool, "SELECT pg_drop_replication_slot('cdc')").await;
    let out = runner.finish().await;

    let events = assert_clean(&out, "run");
    let paused = reasons(&events, "paused");
    println!("paused: {paused:#?}");
    assert_eq!(paused_at, still, "batches ran while the slot held the WAL");
    assert!(still_paused, "the pause did not hold:\n{}", out.stdout);
    assert!(
        paused_at < 20_000,
        "the run ended before the slot paused it"
    );
    assert!(
        paused.iter().any(|r| r.starts_with(
            "replication slot cdc (logical test_decoding, no consumer connected) retains "
        ) && r.contains(" of WAL (limit 256.0 KiB), ")
            && r.ends_with(" not confirmed")),
        "{paused:?}"
    );
    let kinds = kinds(&events);
    let first_pause = kinds.iter().position(|k| *k == "paused").unwrap();
    assert!(
        kinds[first_pause..].contains(&"batch"),
        "no batch after the slot was dropped: {kinds:?}"
    );
    assert_all_done_once(&pool, 20_000).await;
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slot_in_ignore_slots_does_not_pause_the_run() {
    let (cluster, url, pool) = cluster(&[("wal_level", "logical")]).await;
    // Created before the table is filled: it retains more than the limit from the start.
    execute(
        &pool,
        "SELECT pg_create_logical_replication_slot('abandoned', 'test_decoding')",
    )
    .await;
    let (_dir, job) = items_with_job(
        &pool,
        20_000,
        BATCH,
        "max_slot_lag_bytes = 65536\nignore_slots = [\"abandoned\"]",
    )
    .await;
    let plan = run_backfill(&url, &["plan", &job]);
    plan.expect_code(0, "plan");
    assert!(
        plan.stdout.contains(
            "pause while a replication slot retains more than 64.0 KiB of WAL (except abandoned)"
        ),
        "{}",
        plan.stdout
    );
    let out = run_backfill(&url, &["run", "--json", &job]);
    let events = assert_clean(&out, "run");
    let retained = number(
        &pool,
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::int8 \
           FROM pg_replication_slots WHERE slot_name = 'abandoned'",
    )
    .await;
    println!("the ignored slot retains {retained} bytes");
    assert!(retained > 65_536, "the slot retained only {retained} bytes");
    assert!(
        reasons(&events, "paused").is_empty(),
        "paused for an ignored slot:\n{}",
        out.stdout
    );
    assert_all_done_once(&pool, 20_000).await;
    drop(cluster);
}

/// A cluster that archives with `archive_command`, and a job over `items`.
async fn archiving(command: &str, throttle: &str) -> (Arc<Cluster>, String, PgPool, Job) {
    let (cluster, url, pool) = cluster(&[
        ("wal_level", "replica"),
        ("archive_mode", "on"),
        ("archive_command", command),
    ])
    .await;
    let (dir, path) = items_with_job(&pool, 4_000, BATCH, throttle).await;
    (cluster, url, pool, Job { dir, path })
}

/// A job file and the directory that holds it (and the runner's output).
struct Job {
    dir: tempfile::TempDir,
    path: String,
}

impl Job {
    fn spawn(&self, url: &str) -> Runner {
        Runner::spawn(url, &self.dir, "run", &["run", "--json", &self.path])
    }
}

/// Changes `archive_command` the way an operator would: `ALTER SYSTEM` (a statement of its
/// own: it cannot run in a transaction block) and a reload. From PostgreSQL 14 on the reload
/// also makes the archiver try again at once; before, it waits for the next segment or a
/// minute.
async fn set_archive_command(pool: &PgPool, command: &str) {
    let quoted = command.replace('\'', "''");
    execute(
        pool,
        &format!("ALTER SYSTEM SET archive_command = '{quoted}'"),
    )
    .await;
    execute(pool, "SELECT pg_reload_conf()").await;
}

/// A shell command that waits as long as `file` exists.
fn hold_while(file: &Path) -> String {
    format!("while [ -f {} ]; do sleep 0.1; done", file.display())
}

/// Completes the current WAL segment, so that the archiver has one more to ship.
async fn switch_wal(pool: &PgPool) {
    execute(
        pool,
        "CREATE TABLE IF NOT EXISTS wal_filler (n int); INSERT INTO wal_filler VALUES (1); \
         SELECT pg_switch_wal();",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_archiver_pauses_the_run_until_it_ships_again() {
    let (cluster, url, pool, job) = archiving("false", "cooldown = \"300ms\"").await;
    switch_wal(&pool).await;
    // `false` fails at once: wait for the archiver to have tried.
    wait_for(&pool, "(SELECT failed_count FROM pg_stat_archiver) > 0").await;
    let mut runner = job.spawn(&url);
    runner
        .wait_until(
            &pool,
            &format!("{NOTE_PAUSED}the WAL archiver is failing: %')"),
        )
        .await;
    let (paused_at, still) = rows_done_across_heartbeats(&mut runner, &pool).await;
    set_archive_command(&pool, "true").await;
    // A completed segment wakes the archiver on every version (PostgreSQL 13 ignores the reload).
    switch_wal(&pool).await;
    let out = runner.finish().await;

    let events = assert_clean(&out, "run");
    let paused = reasons(&events, "paused");
    println!("paused: {paused:#?}");
    assert_eq!(
        (paused_at, still),
        (0, 0),
        "batches ran while archiving failed"
    );
    assert!(
        paused.iter().any(|r| r
            .starts_with("the WAL archiver is failing: 000000010000000000000001 failed ")
            && r.contains(", nothing archived yet")),
        "{paused:?}"
    );
    assert!(
        number(&pool, "SELECT archived_count FROM pg_stat_archiver").await > 0,
        "nothing was archived after the fix"
    );
    assert_all_done_once(&pool, 4_000).await;
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_archiver_too_far_behind_pauses_the_run_until_it_catches_up() {
    let (cluster, url, pool, job) =
        archiving("true", "max_archive_lag = 2\ncooldown = \"300ms\"").await;
    switch_wal(&pool).await;
    wait_for(&pool, "(SELECT archived_count FROM pg_stat_archiver) > 0").await;
    // From now on the archive command waits while the hold file exists: the archiver stalls on
    // the next segment while others complete behind it. The file is in the cluster's own
    // directory, which the server's user may read.
    let hold = cluster.socket_dir().join("hold");
    std::fs::write(&hold, "").unwrap();
    set_archive_command(&pool, &hold_while(&hold)).await;
    // Five more: the reload reaches the archiver a moment later, so the first one or two may
    // still be shipped by the old command; at least three stay behind the stalled one.
    for _ in 0..5 {
        switch_wal(&pool).await;
    }
    let mut runner = job.spawn(&url);
    runner
        .wait_until(
            &pool,
            &format!("{NOTE_PAUSED}the WAL archiver is % segments (% MiB) behind (limit 2)%')"),
        )
        .await;
    let (paused_at, still) = rows_done_across_heartbeats(&mut runner, &pool).await;
    std::fs::remove_file(&hold).unwrap();
    let out = runner.finish().await;

    let events = assert_clean(&out, "run");
    let paused = reasons(&events, "paused");
    println!("paused: {paused:#?}");
    assert_eq!(
        (paused_at, still),
        (0, 0),
        "batches ran while the archiver lagged"
    );
    assert!(
        paused
            .iter()
            .any(|r| r.contains("segments (") && r.contains("it archived 0000000100000000000000")),
        "{paused:?}"
    );
    assert_all_done_once(&pool, 4_000).await;
    drop(cluster);
}
