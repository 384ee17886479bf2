//! The total a run shows, refined as it walks: when the start's estimate is far off, the
//! `batch` events' `total_estimate` converges to the truth, and no `batch` event ever has
//! `rows_done >= total_estimate` — the bar never reads 100 % before the `finished` event. The
//! total is the job's, kept in the state tables: it stays right across a resume, a cancel, a
//! joined process and a process that dies, and two processes show the same.
//!
//! The start's estimate is a block sample (`TABLESAMPLE SYSTEM … REPEATABLE (0)`), so the same
//! blocks are read every time: a table whose pending rows all lie in the blocks the sample does
//! not read makes it see none, deterministically — pending rows clustered where the sample
//! did not look, with statistics from an `ANALYZE` taken before the rows became pending.

mod common;

use common::watched::of_kind;
use common::{Runner, TestDb, events, fresh_database, number, path_str, run_backfill, write_job};
use serde_json::Value;
use tempfile::TempDir;

/// Rows of `t`: three a block (240-byte rows, `fillfactor = 10`), 4000 blocks — more than the
/// 2000 blocks the estimate reads, so it samples about half of them.
const ROWS: i64 = 12_000;

/// `t` with every row done (`flag = 'd'`) and analyzed, then the rows of the blocks the
/// estimate's sample does not read made pending (`'p'`, a HOT update that stays in its block);
/// how many are pending.
async fn pending_where_the_sample_does_not_look(db: &TestDb) -> i64 {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE t (id bigint PRIMARY KEY, flag char(1) NOT NULL, pad char(200) NOT NULL)
           WITH (fillfactor = 10);
         INSERT INTO t SELECT g, 'd', 'x' FROM generate_series(1, {ROWS}) g;
         ANALYZE t;"
    )))
    .execute(&db.pool)
    .await
    .expect("create t");
    let blocks = number(
        &db.pool,
        "SELECT pg_relation_size('t') / current_setting('block_size')::int8",
    )
    .await;
    assert!(
        blocks > 2000,
        "t has {blocks} blocks, too few to be sampled"
    );
    // The estimate's own percentage (preflight/estimate.rs), as the float4 it binds.
    let percent = (2000.0 * 100.0 / blocks as f64) as f32;
    sqlx::query(
        "UPDATE t SET flag = 'p' WHERE (ctid::text::point)[0]::int8 NOT IN (
             SELECT (ctid::text::point)[0]::int8 FROM t TABLESAMPLE SYSTEM ($1) REPEATABLE (0))",
    )
    .bind(percent)
    .execute(&db.pool)
    .await
    .expect("make the unsampled blocks pending");
    number(&db.pool, "SELECT count(*) FROM t WHERE flag = 'p'").await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_far_off_estimate_converges_and_the_bar_never_fills_early() {
    let db = fresh_database().await;
    let truth = pending_where_the_sample_does_not_look(&db).await;
    let dir = TempDir::new().unwrap();
    let job = write_job(
        &dir,
        "t_flag",
        "table = \"t\"\nwhere = \"flag = 'p'\"\n[set]\nflag = \"'d'\"\n\
         [batch]\nsize = 300\nmin = 300\nmax = 300\n",
    );
    let out = run_backfill(&db.url, &["run", "--json", path_str(&job)]);
    out.expect_code(0, "the run");
    let events = events(&out.stdout);
    let started = of_kind(&events, "started")[0]["total_estimate"]
        .as_u64()
        .unwrap();
    let batches: Vec<(u64, u64)> = of_kind(&events, "batch")
        .iter()
        .map(|e| field(e, "rows_done", "total_estimate"))
        .collect();
    let finished = of_kind(&events, "finished")[0]["rows_done"]
        .as_u64()
        .unwrap();
    let truth = u64::try_from(truth).unwrap();

    let at = |share: f64| batches[((batches.len() - 1) as f64 * share) as usize];
    eprintln!(
        "truth {truth}; started at {started}; (rows_done, total) after 10% of the batches {:?}, \
         25% {:?}, 50% {:?}, 75% {:?}, the last {:?}; {} batches; finished at {finished}",
        at(0.1),
        at(0.25),
        at(0.5),
        at(0.75),
        at(1.0),
        batches.len()
    );
    assert!(
        started * 4 < truth,
        "the start's estimate ({started}) is not far off the truth ({truth}): the test's premise"
    );
    assert_eq!(finished, truth);
    for (rows_done, total) in &batches {
        assert!(
            total > rows_done,
            "a batch event at {rows_done} rows with a total of {total}: the bar would be full"
        );
    }
    // From a tenth of the way on, within a third of the truth; at the end, within a tenth.
    let off = |total: u64| (total as f64 - truth as f64).abs() / truth as f64;
    for (i, (_, total)) in batches.iter().enumerate().skip(batches.len() / 10) {
        assert!(
            off(*total) < 0.34,
            "batch {i}: total {total}, truth {truth}"
        );
    }
    assert!(off(at(1.0).1) < 0.1, "the last total {:?}", at(1.0));
    assert!(
        off(at(0.1).1) < off(started),
        "no convergence from the start"
    );
}

fn field(e: &Value, a: &str, b: &str) -> (u64, u64) {
    (e[a].as_u64().unwrap(), e[b].as_u64().unwrap())
}

/// Rows of `s`: about 3,300 blocks, more than the estimate's sample reads. Three in four
/// match the job's `where`, spread evenly; the table is analysed.
const SPREAD_ROWS: i64 = 120_000;

/// `s` as [`SPREAD_ROWS`] says, and the job that fills it (batches of 1,000 keys, 20 ms apart, so
/// that a run lasts long enough to be stopped part of the way); the rows that match.
async fn spread(db: &TestDb, dir: &TempDir) -> (std::path::PathBuf, u64) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE s (id bigint PRIMARY KEY, flag char(1) NOT NULL, pad char(200) NOT NULL);
         INSERT INTO s SELECT g, CASE WHEN g % 4 = 0 THEN 'd' ELSE 'p' END, 'x'
           FROM generate_series(1, {SPREAD_ROWS}) g;
         ANALYZE s;"
    )))
    .execute(&db.pool)
    .await
    .expect("create s");
    let job = write_job(
        dir,
        "s_flag",
        "table = \"s\"\nwhere = \"flag = 'p'\"\n[set]\nflag = \"'d'\"\n\
         [batch]\nsize = 1000\nmin = 1000\nmax = 1000\npause = \"20ms\"\n",
    );
    let truth = number(&db.pool, "SELECT count(*) FROM s WHERE flag = 'p'").await;
    (job, u64::try_from(truth).unwrap())
}

/// The (rows_done, total_estimate) of a run's `started` and `batch` events, in order.
fn totals(stdout: &str) -> Vec<(u64, u64)> {
    events(stdout)
        .iter()
        .filter(|e| e["event"] == "started" || e["event"] == "batch")
        .map(|e| field(e, "rows_done", "total_estimate"))
        .collect()
}

/// Every total from a tenth of the way on is within ±10 % of `truth`.
fn assert_right_from_a_tenth_on(what: &str, totals: &[(u64, u64)], truth: u64) {
    let shown: Vec<_> = totals
        .iter()
        .filter(|(done, _)| *done * 10 >= truth)
        .collect();
    assert!(
        !shown.is_empty(),
        "{what}: no event past a tenth of {truth}"
    );
    for (done, total) in shown {
        let off = (*total as f64 - truth as f64).abs() / truth as f64;
        assert!(
            off <= 0.1,
            "{what}: at {done} rows done the total was {total}, the truth {truth}"
        );
    }
}

/// Runs the job until `share` of `truth` is done, then `stop`s the run (a signal name, or
/// `cancel` from another terminal): the first run's totals.
async fn part_way(
    db: &TestDb,
    dir: &TempDir,
    job: &str,
    truth: u64,
    stop: &str,
) -> Vec<(u64, u64)> {
    let mut first = Runner::spawn(&db.url, dir, "first", &["run", "--json", job]);
    first
        .wait_until(
            &db.pool,
            &format!("(SELECT rows_done > {} FROM backfill.jobs)", truth * 3 / 10),
        )
        .await;
    if stop == "cancel" {
        run_backfill(&db.url, &["cancel", "s_flag"]).expect_code(0, "cancel");
    } else {
        first.signal(stop);
    }
    let out = first.finish().await;
    assert_ne!(out.status.code(), Some(0), "the first run was not stopped");
    totals(&out.stdout)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_total_stays_right_across_a_stop_a_cancel_and_a_death() {
    for (stop, again) in [
        ("INT", vec!["run", "--json"]),
        ("cancel", vec!["run", "--json", "--resume-cancelled"]),
        ("KILL", vec!["run", "--json"]),
    ] {
        let db = fresh_database().await;
        let dir = TempDir::new().unwrap();
        let (job, truth) = spread(&db, &dir).await;
        let first = part_way(&db, &dir, path_str(&job), truth, stop).await;
        // A process of this host that is gone (kill -9) leaves leases the next run takes over
        // at once.
        let mut args = again.clone();
        args.push(path_str(&job));
        let out = run_backfill(&db.url, &args);
        out.expect_code(0, "the run that finishes");
        let second = totals(&out.stdout);
        eprintln!(
            "{stop}: truth {truth}; first run (rows_done, total) {:?} … {:?}; then {:?} … {:?}",
            first.first(),
            first.last(),
            second.first(),
            second.last()
        );
        assert_right_from_a_tenth_on(&format!("before the {stop}"), &first, truth);
        assert_right_from_a_tenth_on(&format!("after the {stop}"), &second, truth);
        let finished = of_kind(&events(&out.stdout), "finished")[0]["rows_done"]
            .as_u64()
            .unwrap();
        assert_eq!(finished, truth, "after the {stop}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_processes_of_a_job_show_the_same_right_total() {
    let db = fresh_database().await;
    let dir = TempDir::new().unwrap();
    let (job, truth) = spread(&db, &dir).await;
    let job = path_str(&job);
    let mut first = Runner::spawn(&db.url, &dir, "first", &["run", "--json", job]);
    first
        .wait_until(&db.pool, "(SELECT rows_done > 0 FROM backfill.jobs)")
        .await;
    let joined = Runner::spawn(&db.url, &dir, "joined", &["run", "--json", "--join", job]);
    let (a, b) = (first.finish().await, joined.finish().await);
    a.expect_code(0, "the first process");
    b.expect_code(0, "the joined process");
    let (a, b) = (totals(&a.stdout), totals(&b.stdout));
    assert!(b.len() > 5, "the joined process ran {} batches", b.len());
    assert_right_from_a_tenth_on("the first process", &a, truth);
    assert_right_from_a_tenth_on("the joined process", &b, truth);
    // Each of the joined process's totals against the first's nearest in rows done.
    let mut worst = 0.0_f64;
    for (done, total) in &b {
        let (_, theirs) = a.iter().min_by_key(|(d, _)| d.abs_diff(*done)).unwrap();
        let apart = (*total as f64 - *theirs as f64).abs() / truth as f64;
        worst = worst.max(apart);
        assert!(
            apart <= 0.05,
            "at {done} rows done the joined process showed {total}, the first {theirs}"
        );
    }
    eprintln!(
        "truth {truth}; first {:?} … {:?}; joined {:?} … {:?}; the furthest apart {:.2}%",
        a.first(),
        a.last(),
        b.first(),
        b.last(),
        worst * 100.0
    );
}
