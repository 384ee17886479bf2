//! Every subcommand but `demo`, end to end against a real PostgreSQL: what it prints, its exit
//! code, what it writes (and, for `plan`, `verify` and `status`, that it writes nothing), and
//! the operator's controls (`pause`, `resume`, `cancel`, `reset`) against a running job.
//!
//! Each test has a database of its own holding `orders`; `total_cents` is the new column that
//! the job fills with `qty * price_cents`.

mod common;

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::orders::orders;
use common::{
    Finished, Runner, TestDb, holds, number, path_str, run_backfill, schema_exists, write_job,
};
use serde_json::Value;
use sqlx::Row as _;
use tempfile::TempDir;

/// The job every test runs unless it needs another: the file stem `fill` is its name.
const JOB: &str = "table = \"orders\"
where = \"total_cents IS NULL\"

[set]
total_cents = \"qty::bigint * price_cents\"
";

/// [`JOB`] slowed down to about 2000 rows a second (batches of 100 keys, 50 ms apart), so that
/// an operator can act while it runs.
const SLOW: &str = "
[batch]
size = 100
min = 10
max = 100
pause = \"50ms\"
";

/// `backfill --database-url URL <args>` to completion.
fn cli(db: &TestDb, args: &[&str]) -> Finished {
    run_backfill(&db.url, args)
}

/// `cli` that must exit 0; returns stdout.
fn cli_ok(db: &TestDb, args: &[&str]) -> String {
    let output = cli(db, args);
    output.expect_code(0, &format!("{args:?}"));
    output.stdout
}

/// Rows of `orders` whose `total_cents` is still NULL.
async fn pending(db: &TestDb) -> i64 {
    number(
        &db.pool,
        "SELECT count(*) FROM orders WHERE total_cents IS NULL",
    )
    .await
}

/// Rows of `orders` whose `total_cents` is set but wrong.
async fn wrong(db: &TestDb) -> i64 {
    number(
        &db.pool,
        "SELECT count(*) FROM orders WHERE total_cents <> qty::bigint * price_cents",
    )
    .await
}

/// A job's row in the state table, as the tests read it.
#[derive(Debug, Clone, PartialEq)]
struct JobState {
    status: String,
    rows_done: i64,
    control: Option<String>,
    note: Option<String>,
}

/// The job's row in `<schema>.jobs`; `None` while the table or the row does not exist.
async fn job_state(db: &TestDb, schema: &str, name: &str) -> Option<JobState> {
    let sql =
        format!("SELECT status, rows_done, control, note FROM \"{schema}\".jobs WHERE name = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(name)
        .fetch_optional(&db.pool)
        .await
        .ok()??;
    Some(JobState {
        status: row.get(0),
        rows_done: row.get(1),
        control: row.get(2),
        note: row.get(3),
    })
}

async fn rows_done(db: &TestDb, name: &str) -> i64 {
    job_state(db, "backfill", name)
        .await
        .map_or(0, |s| s.rows_done)
}

/// Polls `condition` every 50 ms until it holds; fails the test after `timeout`.
async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !condition().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A database with `rows` orders and the job `slow` ([`JOB`] with [`SLOW`]) running in the
/// background, past its first batch; the job file's path.
async fn slow_run(rows: i64) -> (TestDb, TempDir, PathBuf, Runner) {
    let (db, dir) = orders(rows).await;
    let path = write_job(&dir, "slow", &format!("{JOB}{SLOW}"));
    let runner = Runner::spawn(&db.url, &dir, "run", &["run", path_str(&path)]);
    let db_ref = &db;
    wait_until(
        "the first batch commits",
        Duration::from_secs(15),
        || async move { rows_done(db_ref, "slow").await > 0 },
    )
    .await;
    (db, dir, path, runner)
}

/// `status --json`, parsed.
fn status_json(db: &TestDb, extra: &[&str]) -> Vec<Value> {
    let mut args = extra.to_vec();
    args.extend(["status", "--json"]);
    let text = cli_ok(db, &args);
    match serde_json::from_str(&text) {
        Ok(Value::Array(jobs)) => jobs,
        other => panic!("status --json must print a JSON array, got {other:?} from {text:?}"),
    }
}

#[tokio::test]
async fn plan_prints_sql_explain_and_estimate_and_writes_nothing() {
    let (db, dir) = orders(1000).await;
    let path = write_job(&dir, "fill", JOB);

    let text = cli_ok(&db, &["plan", path_str(&path)]);
    assert!(
        text.contains(
            "UPDATE \"public\".\"orders\" SET \"total_cents\" = (qty::bigint * price_cents) WHERE (\"id\") > ($1::bigint) AND (\"id\") <= ($2::bigint) AND (total_cents IS NULL);"
        ),
        "plan must print the batch's UPDATE with the quoted table:\n{text}"
    );
    let walk = text
        .split("-- EXPLAIN of the first batch's key walk:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no EXPLAIN of the key walk:\n{text}"));
    assert!(
        walk.lines().next().is_some_and(|l| l.starts_with("Limit")),
        "the key walk's EXPLAIN must follow its heading:\n{text}"
    );
    assert!(
        text.contains("-- EXPLAIN of the first batch's UPDATE:\nUpdate on orders"),
        "plan must EXPLAIN the UPDATE:\n{text}"
    );
    assert!(
        text.contains("pending   1000 rows (exact count)"),
        "plan must count the pending rows of a table smaller than its sample:\n{text}"
    );
    assert!(
        !text.contains("does not use an index"),
        "the primary key serves the walk:\n{text}"
    );
    assert!(
        text.contains(
            "state     no checkpoint (no row in \"backfill\".\"jobs\"); a run starts at the first key"
        ),
        "{text}"
    );

    let counted = cli_ok(&db, &["plan", "--exact-count", path_str(&path)]);
    assert!(
        counted.contains("pending   1000 rows (exact count)"),
        "{counted}"
    );

    assert!(
        !schema_exists(&db.pool, "backfill").await,
        "plan created the state schema"
    );
    assert_eq!(pending(&db).await, 1000, "plan changed rows");
}

#[tokio::test]
async fn plan_says_where_the_state_line_comes_from() {
    let (db, dir) = orders(1000).await;
    let path = write_job(&dir, "fill", JOB);
    cli_ok(&db, &["run", path_str(&path)]);

    let text = cli_ok(&db, &["plan", path_str(&path)]);
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line:\n{text}"))
            .to_owned()
    };
    let state = line("state ");
    assert!(
        state.starts_with("state     done, 1000 rows done in "),
        "{state}"
    );
    assert!(
        state.ends_with("; resumes after (1000) (the job's row in \"backfill\".\"jobs\")"),
        "{state}"
    );
}

/// A resumed run's first line and its first progress line show the same total: the
/// `started` event's total is bounded by the keys left, as every batch's is. Rows inserted
/// past the range's end make the pending rows outnumber the keys left to walk.
#[tokio::test]
async fn a_resumed_run_starts_from_the_total_its_batches_show() {
    let (db, dir, path, runner) = slow_run(4000).await;
    runner.signal("INT");
    let stopped = runner.finish().await;
    stopped.expect_code(130, "the interrupted run");
    // Said once, by the command's last word (stderr is a file: lines mode).
    assert_eq!(
        (
            stopped.stderr.matches("stopped after").count(),
            stopped.stderr.matches("stopped at").count()
        ),
        (1, 0),
        "{}",
        stopped.stderr
    );
    sqlx::raw_sql(
        "INSERT INTO orders (id, qty, price_cents) SELECT g, 1, 5 FROM generate_series(4001, 8000) g",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let done = rows_done(&db, "slow").await as u64;

    let out = cli(&db, &["run", "--json", "--exact-count", path_str(&path)]);
    out.expect_code(0, "the resumed run");
    let events = common::events(&out.stdout);
    let total = |kind: &str| {
        events
            .iter()
            .find(|e| e["event"] == kind)
            .and_then(|e| e["total_estimate"].as_u64())
            .unwrap_or_else(|| panic!("no {kind} event with a total:\n{}", out.stdout))
    };
    let (started, first) = (total("started"), total("batch"));
    assert!(
        started.abs_diff(first) <= started / 100,
        "resuming at {done}/{started}, then a batch at …/{first}"
    );
    assert!(started <= 4000 + 100, "{started}: the range ends at 4000");
    drop(dir);
}

#[tokio::test]
async fn plan_warns_when_the_key_has_no_index() {
    let (db, dir) = orders(1000).await;
    sqlx::raw_sql(
        "ALTER TABLE orders ADD COLUMN seq int;
         UPDATE orders SET seq = 1001 - id;
         ALTER TABLE orders ALTER COLUMN seq SET NOT NULL;
         ANALYZE orders;",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let path = write_job(&dir, "by_seq", &format!("key = [\"seq\"]\n{JOB}"));

    let text = cli_ok(&db, &["plan", path_str(&path)]);
    assert!(
        text.contains("warning: the key walk does not use an index"),
        "plan must warn about a key walk without an index:\n{text}"
    );
    assert!(text.contains("none leads with the key"), "{text}");
    assert!(!schema_exists(&db.pool, "backfill").await);
    assert_eq!(pending(&db).await, 1000);
}

#[tokio::test]
async fn verify_fails_before_the_run_and_passes_after() {
    let (db, dir) = orders(1000).await;
    let path = write_job(&dir, "fill", JOB);

    let output = cli(&db, &["verify", path_str(&path)]);
    output.expect_code(3, "verify before the run");
    assert!(
        output
            .stdout
            .contains("1000 rows of \"public\".\"orders\" still match"),
        "{}",
        output.stdout
    );

    let output = cli(&db, &["verify", "--json", path_str(&path)]);
    output.expect_code(3, "verify --json before the run");
    let v: Value = serde_json::from_str(&output.stdout).expect("verify --json prints JSON");
    assert_eq!(v["pending"], 1000, "{v}");
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["job"], "fill", "{v}");
    assert!(
        !schema_exists(&db.pool, "backfill").await,
        "verify created the state schema"
    );

    cli_ok(&db, &["run", path_str(&path)]);

    let text = cli_ok(&db, &["verify", path_str(&path)]);
    assert!(text.contains("verified"), "{text}");
    let v: Value = serde_json::from_str(&cli_ok(&db, &["verify", "--json", path_str(&path)]))
        .expect("verify --json prints JSON");
    assert_eq!(v["pending"], 0, "{v}");
    assert_eq!(v["ok"], true, "{v}");
}

#[tokio::test]
async fn status_lists_jobs_after_a_run() {
    let (db, dir) = orders(1000).await;
    let path = write_job(&dir, "fill", JOB);

    assert_eq!(cli_ok(&db, &["status"]), "no jobs yet\n");
    assert!(status_json(&db, &[]).is_empty());
    assert!(
        !schema_exists(&db.pool, "backfill").await,
        "status created the state schema"
    );

    cli_ok(&db, &["run", path_str(&path)]);
    assert_eq!(pending(&db).await, 0);
    assert_eq!(wrong(&db).await, 0);

    let text = cli_ok(&db, &["status"]);
    let line = text
        .lines()
        .find(|l| l.starts_with("fill "))
        .unwrap_or_else(|| panic!("status must list the job:\n{text}"));
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields.get(1), Some(&"done"), "{line}");
    assert_eq!(fields.get(2), Some(&"1000"), "{line}");

    let jobs = status_json(&db, &[]);
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["name"], "fill");
    assert_eq!(jobs[0]["status"], "done");
    assert_eq!(jobs[0]["rows_done"], 1000);
}

/// `bytes` as `status` prints a heap of a MiB or more: `1.5 MiB`.
fn mib(bytes: u64) -> String {
    assert!(bytes >= 1 << 20, "{bytes} B is less than a MiB");
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

/// The heap of `orders` now, in bytes.
async fn orders_heap(db: &TestDb) -> u64 {
    let bytes = number(&db.pool, "SELECT pg_relation_size('orders')").await;
    u64::try_from(bytes).expect("a size")
}

/// The note `status` ends the job's line with, and its JSON object.
fn heap_status(db: &TestDb, job: &str) -> (String, Value) {
    let text = cli_ok(db, &["status", job]);
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{job} ")))
        .unwrap_or_else(|| panic!("status must list {job}:\n{text}"))
        .to_owned();
    let json = status_json(db, &[]);
    let object = json
        .into_iter()
        .find(|j| j["name"] == job)
        .unwrap_or_else(|| panic!("status --json must list {job}"));
    (line, object)
}

#[tokio::test]
async fn a_done_job_shows_its_heap_when_the_run_ended_not_the_table_grown_since() {
    let (db, dir) = orders(40_000).await;
    let path = write_job(&dir, "fill", JOB);
    let events = common::events(&cli_ok(&db, &["run", "--json", path_str(&path)]));
    let finished = events
        .iter()
        .find(|e| e["event"] == "finished")
        .unwrap_or_else(|| panic!("no finished event in {events:?}"));
    let start = finished["heap_bytes_before"]
        .as_u64()
        .expect("the heap at the start");
    let end = finished["heap_bytes_after"]
        .as_u64()
        .expect("the heap at the end");
    assert_eq!(
        orders_heap(&db).await,
        end,
        "the finished event's heap is the table's"
    );

    // Other work grows the table well past what the job left.
    sqlx::query(
        "INSERT INTO orders (id, qty, price_cents, total_cents) \
         SELECT g, 1, 1, 1 FROM generate_series(40001, 240000) g",
    )
    .execute(&db.pool)
    .await
    .expect("insert more orders");
    let now = orders_heap(&db).await;
    assert!(now > 3 * end, "the table grew from {end} B to {now} B only");

    let (line, json) = heap_status(&db, "fill");
    let growth = (end as f64 - start as f64) * 100.0 / start as f64;
    let note = format!(
        "  heap {} → {} ({growth:+.0} %) when the run ended",
        mib(start),
        mib(end)
    );
    assert!(line.ends_with(&note), "{line:?} must end with {note:?}");
    assert!(!line.contains(&mib(now)), "{line}");
    assert_eq!(json["status"], "done");
    assert_eq!(json["heap_bytes_start"], start, "{json}");
    assert_eq!(json["heap_bytes_end"], end, "{json}");
    assert_eq!(json["heap_bytes"], now, "{json}");
}

#[tokio::test]
async fn a_state_schema_without_the_heap_at_the_end_is_read_as_is_and_migrated_by_a_run() {
    let (db, dir) = orders(40_000).await;
    let fill = write_job(&dir, "fill", JOB);
    cli_ok(&db, &["run", path_str(&fill)]);
    // The schema as the version before `heap_bytes_end` left it.
    sqlx::query("ALTER TABLE backfill.jobs DROP COLUMN heap_bytes_end")
        .execute(&db.pool)
        .await
        .expect("drop heap_bytes_end");
    let now = orders_heap(&db).await;

    let (line, json) = heap_status(&db, "fill");
    let start = json["heap_bytes_start"]
        .as_u64()
        .expect("the heap at the start");
    let note = format!("  heap {} at the start, {} now", mib(start), mib(now));
    assert!(line.ends_with(&note), "{line:?} must end with {note:?}");
    assert!(json["heap_bytes_end"].is_null(), "{json}");
    assert!(
        !holds(
            &db.pool,
            "EXISTS (SELECT FROM pg_attribute WHERE attrelid = 'backfill.jobs'::regclass \
             AND attname = 'heap_bytes_end' AND NOT attisdropped)"
        )
        .await,
        "status must not alter the state tables"
    );

    let other = write_job(&dir, "again", &JOB.replace("total_cents IS NULL", "id < 0"));
    cli_ok(&db, &["run", path_str(&other)]);
    let (line, json) = heap_status(&db, "again");
    assert_eq!(json["heap_bytes_end"], orders_heap(&db).await, "{json}");
    assert!(line.ends_with(" when the run ended"), "{line}");
}

#[tokio::test]
async fn a_running_job_shows_its_heap_now_and_a_cancelled_one_its_heap_when_it_ended() {
    const ROWS: i64 = 40_000;
    let (db, dir, path, runner) = slow_run(ROWS).await;
    let db = &db;

    let (line, json) = heap_status(db, "slow");
    assert!(line.contains("  heap "), "{line}");
    assert!(!line.contains("when the run ended"), "{line}");
    assert_eq!(json["stored_status"], "running", "{json}");
    assert!(json["heap_bytes_end"].is_null(), "{json}");
    assert!(json["heap_bytes_start"].as_u64().is_some(), "{json}");

    cli_ok(db, &["cancel", "slow"]);
    runner
        .within(Duration::from_secs(15))
        .finish()
        .await
        .expect_code(1, "the cancelled run");
    let end = orders_heap(db).await;
    let (line, json) = heap_status(db, "slow");
    assert_eq!(json["status"], "cancelled", "{json}");
    assert_eq!(json["heap_bytes_end"], end, "{json}");
    assert!(line.contains(&format!(" → {} (", mib(end))), "{line}");
    assert!(line.ends_with(" when the run ended"), "{line}");

    // Running again, the job's heap is the table's now again: the old end is forgotten.
    let resumed = Runner::spawn(
        &db.url,
        &dir,
        "resumed",
        &["run", "--resume-cancelled", path_str(&path)],
    );
    let cancelled_at = rows_done(db, "slow").await;
    wait_until(
        "the resumed run commits a batch",
        Duration::from_secs(15),
        || async move { rows_done(db, "slow").await > cancelled_at },
    )
    .await;
    let (line, json) = heap_status(db, "slow");
    assert!(json["heap_bytes_end"].is_null(), "{json}");
    assert!(!line.contains("when the run ended"), "{line}");
    cli_ok(db, &["cancel", "slow"]);
    resumed
        .within(Duration::from_secs(15))
        .finish()
        .await
        .expect_code(1, "the resumed run, cancelled again");
}

#[tokio::test]
async fn status_shows_the_jobs_named_and_refuses_an_unknown_one() {
    let (db, dir) = orders(100).await;
    let fill = write_job(&dir, "fill", JOB);
    let other = write_job(&dir, "other", JOB);
    cli_ok(&db, &["run", path_str(&fill), path_str(&other)]);

    let names = |text: &str| -> Vec<String> {
        text.lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect()
    };
    assert_eq!(names(&cli_ok(&db, &["status"])), ["fill", "other"]);
    assert_eq!(names(&cli_ok(&db, &["status", "other"])), ["other"]);
    assert_eq!(
        names(&cli_ok(&db, &["status", path_str(&fill)])),
        ["fill"],
        "a job file names its job"
    );
    let json: Value =
        serde_json::from_str(&cli_ok(&db, &["status", "--json", "other", "fill"])).unwrap();
    let listed: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["other", "fill"], "{json}");

    for args in [
        &["status", "nosuch"][..],
        &["status", "fill", "nosuch", "--json"],
    ] {
        let output = cli(&db, args);
        output.expect_code(2, &format!("{args:?}"));
        assert!(
            output.stderr.contains(
                "no job named \"nosuch\" in the state table \"backfill\".\"jobs\"; jobs there: fill, other"
            ),
            "{}",
            output.stderr
        );
        assert!(output.stdout.is_empty(), "{}", output.stdout);
    }
}

#[tokio::test]
async fn reset_makes_the_next_run_start_over() {
    let (db, dir) = orders(1000).await;
    let path = write_job(&dir, "fill", JOB);
    cli_ok(&db, &["run", path_str(&path)]);
    sqlx::query("UPDATE orders SET total_cents = NULL")
        .execute(&db.pool)
        .await
        .unwrap();

    // Without a reset, a finished job is not run again.
    let output = cli(&db, &["run", path_str(&path)]);
    output.expect_code(0, "run of a finished job");
    assert!(output.stderr.contains("already done"), "{}", output.stderr);
    assert_eq!(pending(&db).await, 1000);

    let text = cli_ok(&db, &["reset", "fill"]);
    assert!(
        text.contains("fill: reset (was done, 1000 rows done)"),
        "{text}"
    );
    assert_eq!(job_state(&db, "backfill", "fill").await, None);
    assert!(
        status_json(&db, &[]).is_empty(),
        "reset left the job in status"
    );

    cli_ok(&db, &["run", path_str(&path)]);
    assert_eq!(pending(&db).await, 0);
    assert_eq!(wrong(&db).await, 0);
    let jobs = status_json(&db, &[]);
    assert_eq!(jobs[0]["rows_done"], 1000, "{jobs:?}");
    assert_eq!(jobs[0]["status"], "done", "{jobs:?}");
}

#[tokio::test]
async fn controls_of_an_unknown_job_are_refused() {
    let (db, dir) = orders(10).await;
    cli_ok(&db, &["run", path_str(&write_job(&dir, "fill", JOB))]);
    let before = status_json(&db, &[]);

    for command in ["reset", "pause", "resume", "cancel"] {
        let output = cli(&db, &[command, "nosuch"]);
        output.expect_code(2, &format!("{command} of an unknown job"));
        assert!(
            output.stderr.contains("no job named \"nosuch\""),
            "{}",
            output.stderr
        );
    }
    let after = status_json(&db, &[]);
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0]["status"], before[0]["status"]);
    assert_eq!(after[0]["rows_done"], before[0]["rows_done"]);
}

#[tokio::test]
async fn controls_before_any_run_are_refused_and_create_nothing() {
    // No state table yet: the job is as unknown as in `controls_of_an_unknown_job_are_refused`.
    let (db, _dir) = orders(10).await;
    let mut wrong_answers = Vec::new();
    for command in ["reset", "pause", "resume", "cancel"] {
        let output = cli(&db, &[command, "nosuch"]);
        let message = &output.stderr;
        if output.status.code() != Some(2) || !message.contains("no job named \"nosuch\"") {
            wrong_answers.push(format!(
                "`{command} nosuch` exited {:?}: {message}",
                output.status.code()
            ));
        }
    }
    assert!(
        wrong_answers.is_empty(),
        "expected exit 2 and \"no job named\", got:\n{}",
        wrong_answers.join("\n")
    );
    assert!(!schema_exists(&db.pool, "backfill").await);
}

#[tokio::test]
async fn pause_holds_a_running_job_and_resume_lets_it_finish() {
    const ROWS: i64 = 8000;
    let (db, _dir, _path, runner) = slow_run(ROWS).await;
    let db = &db;

    let text = cli_ok(db, &["pause", "slow"]);
    assert!(text.contains("slow: pause requested"), "{text}");

    // The runner acknowledges by publishing its note with the next heartbeat, which it only
    // does once it has stopped starting batches.
    wait_until(
        "the runner reports it is paused",
        Duration::from_secs(10),
        || async move {
            job_state(db, "backfill", "slow")
                .await
                .and_then(|s| s.note)
                .is_some_and(|n| n.contains("paused"))
        },
    )
    .await;
    let held = job_state(db, "backfill", "slow").await.unwrap();
    assert_eq!(held.control.as_deref(), Some("pause"), "{held:?}");
    assert!(
        held.rows_done < ROWS,
        "the job finished before the pause took effect; slow it down: {held:?}"
    );
    let status = status_json(db, &[]);
    assert_eq!(status[0]["control"], "pause", "{status:?}");
    // Nothing can be polled for "nothing happens": watch the counters for two seconds.
    let watch_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < watch_until {
        assert_eq!(
            rows_done(db, "slow").await,
            held.rows_done,
            "rows done while paused"
        );
        assert_eq!(
            pending(db).await,
            ROWS - held.rows_done,
            "rows changed while paused"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let text = cli_ok(db, &["resume", "slow"]);
    assert!(text.contains("slow: resumed"), "{text}");
    wait_until("the job goes on", Duration::from_secs(10), || async move {
        rows_done(db, "slow").await > held.rows_done
    })
    .await;

    let output = runner.finish().await;
    output.expect_code(0, "the resumed run");
    let done = job_state(db, "backfill", "slow").await.unwrap();
    assert_eq!(done.status, "done");
    assert_eq!(done.rows_done, ROWS, "every row exactly once");
    assert_eq!(done.control, None);
    assert_eq!(pending(db).await, 0);
    assert_eq!(wrong(db).await, 0);
}

#[tokio::test]
async fn cancel_stops_a_running_job_until_resume_cancelled() {
    const ROWS: i64 = 8000;
    let (db, dir, path, runner) = slow_run(ROWS).await;
    let db = &db;

    let text = cli_ok(db, &["cancel", "slow"]);
    assert!(text.contains("slow: cancel requested"), "{text}");

    let output = runner.within(Duration::from_secs(15)).finish().await;
    output.expect_code(1, "the cancelled run");
    assert!(output.stderr.contains("cancelled"), "{}", output.stderr);
    let cancelled = job_state(db, "backfill", "slow").await.unwrap();
    assert_eq!(cancelled.status, "cancelled", "{cancelled:?}");
    assert!(cancelled.rows_done < ROWS, "{cancelled:?}");
    assert_eq!(
        pending(db).await,
        ROWS - cancelled.rows_done,
        "the checkpoint must match the rows written"
    );

    let output = cli(db, &["run", path_str(&path)]);
    output.expect_code(2, "a plain run of a cancelled job");
    assert!(
        output.stderr.contains("--resume-cancelled"),
        "{}",
        output.stderr
    );
    assert_eq!(job_state(db, "backfill", "slow").await.unwrap(), cancelled);

    // Batch settings are not part of the job's definition: the resumed run may go faster.
    write_job(&dir, "slow", JOB);
    cli_ok(db, &["run", "--resume-cancelled", path_str(&path)]);
    let done = job_state(db, "backfill", "slow").await.unwrap();
    assert_eq!(done.status, "done");
    assert_eq!(done.rows_done, ROWS, "every row exactly once");
    assert_eq!(pending(db).await, 0);
    assert_eq!(wrong(db).await, 0);
}

#[tokio::test]
async fn bare_job_name_is_read_from_the_jobs_dir() {
    let (db, dir) = orders(1000).await;
    write_job(&dir, "fill", JOB);
    let jobs_dir = path_str(dir.path());

    let output = cli(&db, &["--jobs-dir", jobs_dir, "verify", "fill"]);
    output.expect_code(3, "verify by name");
    assert!(
        cli_ok(&db, &["--jobs-dir", jobs_dir, "plan", "fill"]).contains("UPDATE"),
        "plan by name"
    );
    cli_ok(&db, &["--jobs-dir", jobs_dir, "run", "fill"]);
    assert_eq!(pending(&db).await, 0);
    assert_eq!(wrong(&db).await, 0);
    assert_eq!(
        job_state(&db, "backfill", "fill").await.unwrap().status,
        "done"
    );
    cli_ok(&db, &["--jobs-dir", jobs_dir, "verify", "fill"]);

    let output = cli(&db, &["--jobs-dir", jobs_dir, "run", "nosuch"]);
    output.expect_code(2, "run of a name with no file");
    let missing = dir.path().join("nosuch.toml");
    assert!(
        output.stderr.contains(path_str(&missing)),
        "{}",
        output.stderr
    );
}

#[tokio::test]
async fn run_takes_several_jobs_in_order() {
    let (db, dir) = orders(1000).await;
    sqlx::query("ALTER TABLE orders ADD COLUMN doubled int")
        .execute(&db.pool)
        .await
        .unwrap();
    let first = write_job(&dir, "first", JOB);
    let second = write_job(
        &dir,
        "second",
        "table = \"orders\"\nwhere = \"doubled IS NULL\"\n[set]\ndoubled = \"qty * 2\"\n",
    );

    cli_ok(&db, &["run", path_str(&first), path_str(&second)]);
    assert_eq!(pending(&db).await, 0);
    assert_eq!(wrong(&db).await, 0);
    let doubled_wrong: i64 =
        sqlx::query_scalar("SELECT count(*) FROM orders WHERE doubled IS DISTINCT FROM qty * 2")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(doubled_wrong, 0);

    let in_order: bool = sqlx::query_scalar(
        "SELECT (SELECT finished_at FROM backfill.jobs WHERE name = 'first')
             <= (SELECT started_at FROM backfill.jobs WHERE name = 'second')",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(in_order, "second started before first finished");
    let jobs = status_json(&db, &[]);
    let summary: Vec<(&str, &str, i64)> = jobs
        .iter()
        .map(|j| {
            (
                j["name"].as_str().unwrap_or(""),
                j["status"].as_str().unwrap_or(""),
                j["rows_done"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(summary, [("first", "done", 1000), ("second", "done", 1000)]);
}

#[tokio::test]
async fn state_schema_option_keeps_state_elsewhere() {
    let (db, dir) = orders(1000).await;
    let path = write_job(&dir, "fill", JOB);

    cli_ok(&db, &["--state-schema", "custom", "run", path_str(&path)]);
    assert_eq!(pending(&db).await, 0);
    let state = job_state(&db, "custom", "fill").await;
    assert_eq!(
        state.as_ref().map(|s| (s.status.as_str(), s.rows_done)),
        Some(("done", 1000)),
        "{state:?}"
    );
    assert!(
        !schema_exists(&db.pool, "backfill").await,
        "the default state schema was created too"
    );

    let jobs = status_json(&db, &["--state-schema", "custom"]);
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["name"], "fill");
    assert_eq!(cli_ok(&db, &["status"]), "no jobs yet\n");
    let text = cli_ok(&db, &["--state-schema", "custom", "reset", "fill"]);
    assert!(text.contains("fill: reset"), "{text}");
    assert_eq!(job_state(&db, "custom", "fill").await, None);
}
