//! The latency guard on real PostgreSQL (issue 12): a probe that is made slow — it sleeps while
//! a flag row says so — backs the run off (the `guarded` event and the `status` note say so, and
//! the batches are spread out by the sleeps after them, each with the probe as it is then), and
//! once the flag is cleared the run speeds back up to full speed (`released`, no note) and
//! finishes with every row correct.

mod common;

use common::watched::{assert_clean, items_with_job_text, kinds, of_kind};
use common::{Runner, assert_all_done_once, fresh_database, number};
use serde_json::Value;
use sqlx::{AssertSqlSafe, PgPool};

async fn execute(pool: &PgPool, sql: &str) {
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(pool)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
}

/// Batches of 500 rows 50 ms apart; no monitor, so that only the guard holds the run back. The
/// probe sleeps 300 ms while `guard_flag.slow`; the guard backs off above 150 ms whatever the
/// baseline (a busy machine's baseline must not decide the test: on a loaded 2-core machine a
/// probe that does nothing took 30 ms at p90), at most to a sleep of the batch's own time after
/// each batch.
const TABLES: &str = "[batch]\nsize = 500\nmin = 500\nmax = 500\npause = \"50ms\"\n\
    [throttle]\nenabled = false\n\
    [guard]\nenabled = true\n\
    probe = \"SELECT pg_sleep(CASE WHEN slow THEN 0.3 ELSE 0 END) FROM guard_flag\"\n\
    poll = \"25ms\"\nwindow = \"1s\"\nmax_latency_ratio = 1000\nmax_latency = \"150ms\"\n\
    max_pause_ratio = 1\n";

/// `field` of an event, as a number.
fn n(event: &Value, field: &str) -> u64 {
    event[field]
        .as_u64()
        .unwrap_or_else(|| panic!("no {field} in {event}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_probe_backs_the_run_off_until_it_is_fast_again() {
    let db = fresh_database().await;
    let rows = 100_000;
    execute(
        &db.pool,
        "CREATE TABLE guard_flag (slow boolean NOT NULL); INSERT INTO guard_flag VALUES (false)",
    )
    .await;
    let (dir, job) = items_with_job_text(&db.pool, rows, "qty * price", TABLES).await;
    let mut runner = Runner::spawn(&db.url, &dir, "run", &["run", "--json", &job]);
    runner
        .wait_until(
            &db.pool,
            "EXISTS (SELECT 1 FROM backfill.jobs WHERE rows_done >= 2000)",
        )
        .await;
    execute(&db.pool, "UPDATE guard_flag SET slow = true").await;
    runner
        .wait_until(
            &db.pool,
            "EXISTS (SELECT 1 FROM backfill.jobs \
              WHERE note LIKE 'guarded: probe % ms (baseline % ms)')",
        )
        .await;
    let guarded_at = number(&db.pool, "SELECT rows_done FROM backfill.jobs").await;
    runner
        .wait_until(
            &db.pool,
            &format!(
                "EXISTS (SELECT 1 FROM backfill.jobs WHERE rows_done >= {})",
                guarded_at + 2000
            ),
        )
        .await;
    let cleared_at = number(&db.pool, "SELECT rows_done FROM backfill.jobs").await;
    execute(&db.pool, "UPDATE guard_flag SET slow = false").await;
    runner
        .wait_until(
            &db.pool,
            "EXISTS (SELECT 1 FROM backfill.jobs WHERE note IS NULL AND status = 'running')",
        )
        .await;
    let released_at = number(&db.pool, "SELECT rows_done FROM backfill.jobs").await;
    assert!(released_at < rows, "the run ended before the guard let go");
    let out = runner.finish().await;
    let events = assert_clean(&out, "run with a guard");
    assert_all_done_once(&db.pool, rows).await;

    let kinds = kinds(&events);
    let guarded = kinds
        .iter()
        .position(|k| *k == "guarded")
        .expect("no guarded event");
    let running = guarded
        + kinds[guarded..]
            .iter()
            .position(|k| *k == "released")
            .expect("never released after the guard");
    let release = &events[running];
    assert!(
        release["probe_ms"].as_f64().unwrap() <= 150.0,
        "released while the probe was slow: {release}"
    );
    let event = &events[guarded];
    let reason = event["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("probe ") && reason.contains(" ms (baseline "),
        "{event}"
    );
    let (probe, baseline) = (
        event["probe_ms"].as_f64().unwrap(),
        event["baseline_ms"].as_f64().unwrap(),
    );
    assert!(probe > 150.0, "the probe sleeps 300 ms: {event}");
    // While the probe is slow, each batch is followed by its own time on top of the 50 ms
    // pause; once it is fast again, by less and less of it until the guard lets go.
    let held: Vec<&Value> = of_kind(&events[guarded..running], "batch");
    let slow: Vec<&&Value> = held
        .iter()
        .filter(|b| n(b, "rows_done") <= u64::try_from(cleared_at).unwrap())
        .collect();
    assert!(!slow.is_empty(), "no batch ran while the probe was slow");
    for batch in &slow {
        assert!(
            n(batch, "pause_ms") >= 50 + n(batch, "elapsed_ms"),
            "not held back: {batch}"
        );
        assert!(batch["probe_ms"].as_f64().is_some(), "no probe in {batch}");
    }
    let before: Vec<u64> = of_kind(&events[..guarded], "batch")
        .iter()
        .map(|b| n(b, "pause_ms"))
        .collect();
    let during: Vec<u64> = held.iter().map(|b| n(b, "pause_ms")).collect();
    println!(
        "guarded: {reason} (probe {probe:.1} ms, baseline {baseline:.2} ms); sleeps after batches \
         before: {:?}…, while guarded: {during:?}; guarded at {guarded_at} rows, probe fast \
         again at {cleared_at}, released at {released_at}",
        &before[..before.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_probe_reads_the_table_by_key_and_measures_a_baseline_first() {
    let db = fresh_database().await;
    let rows = 5_000;
    let (dir, job) = items_with_job_text(
        &db.pool,
        rows,
        "qty * price",
        "[batch]\nsize = 1000\nmin = 1000\nmax = 1000\n[guard]\nenabled = true\n",
    )
    .await;
    // A column of a type of the database's own: the probe must read it without decoding it.
    execute(
        &db.pool,
        "CREATE TYPE mood AS ENUM ('calm', 'busy'); \
         ALTER TABLE items ADD COLUMN mood mood NOT NULL DEFAULT 'calm'",
    )
    .await;
    let out = Runner::spawn(&db.url, &dir, "run", &["run", "--json", &job])
        .finish()
        .await;
    let events = assert_clean(&out, "run with the default probe");
    assert_all_done_once(&db.pool, rows).await;
    let kinds = kinds(&events);
    let ready = kinds
        .iter()
        .position(|k| *k == "guard_ready")
        .unwrap_or_else(|| panic!("no baseline:\n{}", out.stdout));
    let first_batch = kinds.iter().position(|k| *k == "batch").unwrap();
    assert!(
        ready < first_batch,
        "the baseline comes first:\n{}",
        out.stdout
    );
    let baseline = events[ready]["baseline_ms"].as_f64().unwrap();
    println!("the default probe's baseline: {baseline:.2} ms");
    assert!(baseline > 0.0 && baseline < 1000.0, "{}", events[ready]);
}
