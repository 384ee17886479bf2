//! The pending-row estimate right after the expand migration, when the planner knows nothing
//! about the new column: `plan`'s pending line and the `started` event of `run --json` must be
//! within ±5 % of the truth on a table analysed before the column was added, within ±25 % on
//! one never analysed, and say how they were found.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Runner, TestDb, fresh_database, path_str, run_backfill, write_job};
use tempfile::TempDir;

/// `users` of `rows` rows with a `pad` of `width` characters (wider rows, fewer per block),
/// `ANALYZE`d first when `analyzed`, then the expand migration: a new column with no
/// statistics.
async fn users_after_add_column(db: &TestDb, rows: u32, width: u32, analyzed: bool) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE users (id bigint PRIMARY KEY, legacy_status text NOT NULL, pad text NOT NULL);
         INSERT INTO users SELECT g, 'status-' || g % 5, repeat('x', {width})
           FROM generate_series(1, {rows}) g;
         {}
         ALTER TABLE users ADD COLUMN status_flag varchar(32);",
        if analyzed { "ANALYZE users;" } else { "" }
    )))
    .execute(&db.pool)
    .await
    .expect("create users and add the column");
}

const JOB: &str = "table = \"users\"
where = \"status_flag IS NULL\"

[set]
status_flag = \"legacy_status\"
";

/// The number and the parenthesis of `plan`'s `pending` line.
fn pending_line(plan: &str) -> (u64, String) {
    let line = plan
        .lines()
        .find(|l| l.starts_with("pending "))
        .unwrap_or_else(|| panic!("plan has no pending line:\n{plan}"));
    let mut words = line.split_whitespace().skip(1);
    let rows = words
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number in {line:?}"));
    let how = line
        .split_once('(')
        .map(|(_, how)| how.trim_end_matches(')').to_owned())
        .unwrap_or_default();
    (rows, how)
}

fn assert_within(what: &str, estimate: u64, truth: u64, share: f64) {
    let ratio = estimate as f64 / truth as f64;
    assert!(
        (1.0 - share..=1.0 + share).contains(&ratio),
        "{what}: {estimate} is not within ±{}% of {truth}",
        share * 100.0
    );
}

/// `plan` of the job, timed (the time is printed for the record, not asserted).
fn plan(db: &TestDb, path: &Path) -> String {
    let started = Instant::now();
    let output = run_backfill(&db.url, &["plan", path_str(path)]);
    output.expect_code(0, "plan");
    eprintln!("plan took {:?}", started.elapsed());
    output.stdout
}

/// The `total_estimate` of the `started` event of `run --json`, read while the run is held
/// before its first batch by its throttle file; the run is then stopped with Ctrl-C.
async fn started_estimate(db: &TestDb, dir: &TempDir) -> u64 {
    let brake = dir.path().join("brake");
    std::fs::write(&brake, "").expect("create the throttle file");
    let job = format!(
        "{JOB}\n[throttle]\nthrottle_file = \"{}\"\n",
        brake.display()
    );
    let path = write_job(dir, "held", &job);
    let runner = Runner::spawn(&db.url, dir, "held", &["run", "--json", path_str(&path)]);
    let stdout = dir.path().join("held.stdout");
    let deadline = Instant::now() + common::WAIT;
    let started = loop {
        let text = std::fs::read_to_string(&stdout).unwrap_or_default();
        // Whole lines only: the last one may still be being written.
        let whole = text.rsplit_once('\n').map_or("", |(whole, _)| whole);
        if let Some(event) = common::events(whole)
            .into_iter()
            .find(|e| e["event"] == "started")
        {
            break event;
        }
        assert!(Instant::now() < deadline, "no started event:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    runner.signal("INT");
    runner
        .finish()
        .await
        .expect_code(130, "the held run, stopped");
    started["total_estimate"]
        .as_u64()
        .unwrap_or_else(|| panic!("no total_estimate in {started}"))
}

#[tokio::test]
async fn a_million_rows_right_after_add_column_are_sampled_not_guessed() {
    let db = fresh_database().await;
    users_after_add_column(&db, 1_000_000, 8, true).await;
    let dir = TempDir::new().unwrap();
    let path = write_job(&dir, "flag", JOB);

    let (rows, how) = pending_line(&plan(&db, &path));
    eprintln!("plan: {rows} rows ({how}); truth 1000000");
    assert_within("plan's pending line", rows, 1_000_000, 0.05);
    assert!(how.starts_with("sampled "), "{how}");
    assert!(how.contains("% of blocks"), "{how}");

    let total = started_estimate(&db, &dir).await;
    eprintln!("started: total_estimate {total}; truth 1000000");
    assert_within("the started event's total_estimate", total, 1_000_000, 0.05);

    // Once the column has statistics, the planner agrees with the sample and is named.
    sqlx::raw_sql("ANALYZE users")
        .execute(&db.pool)
        .await
        .unwrap();
    let (rows, how) = pending_line(&plan(&db, &path));
    assert_within("plan after ANALYZE", rows, 1_000_000, 0.05);
    assert!(how.starts_with("planner estimate"), "{how}");
}

#[tokio::test]
async fn a_table_that_was_never_analyzed_is_sampled_too() {
    let db = fresh_database().await;
    // About 15 rows a block: 100,000 rows fill more blocks than the sample reads.
    users_after_add_column(&db, 100_000, 500, false).await;
    let dir = TempDir::new().unwrap();
    let path = write_job(&dir, "flag", JOB);

    let (rows, how) = pending_line(&plan(&db, &path));
    eprintln!("plan: {rows} rows ({how}); truth 100000");
    assert_within("plan's pending line", rows, 100_000, 0.25);
    assert!(how.starts_with("sampled "), "{how}");

    let total = started_estimate(&db, &dir).await;
    assert_within("the started event's total_estimate", total, 100_000, 0.25);
}

#[tokio::test]
async fn a_small_table_is_counted() {
    let db = fresh_database().await;
    users_after_add_column(&db, 3_000, 8, false).await;
    sqlx::raw_sql("UPDATE users SET status_flag = 'done' WHERE id <= 1000")
        .execute(&db.pool)
        .await
        .unwrap();
    let dir = TempDir::new().unwrap();
    let path = write_job(&dir, "flag", JOB);

    assert_eq!(
        pending_line(&plan(&db, &path)),
        (2000, "exact count".to_owned())
    );
}
