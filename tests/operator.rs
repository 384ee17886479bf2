//! What an operator reads about a job that is not simply running or done: `status` of a paused
//! job and of a job whose runner vanished (a stale lease), and `plan` (text and `--json`) of a
//! stopped job, which must show the batch that would run next, not the first.

mod common;

use common::orders::{TOTAL, orders, orders_job};
use common::{Runner, TestDb, number, path_str, run_backfill, write_job};
use serde_json::Value;

/// 8000 rows at about 2000 rows a second, so that an operator can act while it runs.
fn slow() -> String {
    orders_job(TOTAL, 100, "50ms")
}

fn ok(db: &TestDb, args: &[&str]) -> String {
    let output = run_backfill(&db.url, args);
    output.expect_code(0, &format!("{args:?}"));
    output.stdout
}

/// The fields of the `status` line of job `slow`.
fn status_fields(db: &TestDb) -> (Vec<String>, String) {
    let text = ok(db, &["status"]);
    let line = text
        .lines()
        .find(|l| l.starts_with("slow "))
        .unwrap_or_else(|| panic!("no line for slow:\n{text}"))
        .to_owned();
    (line.split_whitespace().map(str::to_owned).collect(), line)
}

#[tokio::test]
async fn status_and_plan_tell_a_paused_a_stopped_and_an_abandoned_job_as_they_are() {
    let (db, dir) = orders(8000).await;
    let path = write_job(&dir, "slow", &slow());
    let mut runner = Runner::spawn(&db.url, &dir, "run", &["run", path_str(&path)]);
    runner
        .wait_until(
            &db.pool,
            "(SELECT rows_done FROM backfill.jobs WHERE name = 'slow') >= 500",
        )
        .await;

    // Paused by an operator: `paused`, not `running`.
    ok(&db, &["pause", "slow"]);
    runner
        .wait_until(
            &db.pool,
            "(SELECT note FROM backfill.jobs WHERE name = 'slow') LIKE 'paused%'",
        )
        .await;
    let (fields, line) = status_fields(&db);
    assert_eq!(fields[1], "paused", "{line}");
    let json: Value = serde_json::from_str(&ok(&db, &["status", "--json"])).unwrap();
    assert_eq!(json[0]["status"], "paused", "{json}");

    // Stopped: `plan` explains the batch after the checkpoint.
    runner.signal("INT");
    runner
        .finish()
        .await
        .expect_code(130, "the interrupted run");
    ok(&db, &["resume", "slow"]);
    let cursor = number(
        &db.pool,
        "SELECT (cursor->>0)::int8 FROM backfill.ranges WHERE job = 'slow'",
    )
    .await;
    assert!(cursor > 0 && cursor < 8000, "cursor {cursor}");
    let plan = ok(&db, &["plan", path_str(&path)]);
    assert!(
        plan.contains(&format!(
            "range     next batch runs after the checkpoint ({cursor}) up to ("
        )),
        "{plan}"
    );
    let walk = plan
        .split("-- EXPLAIN of the next batch's key walk:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no EXPLAIN of the next batch:\n{plan}"));
    assert!(
        walk.contains(&format!("(id > '{cursor}'::bigint)")),
        "the walk must start after the checkpoint:\n{plan}"
    );
    assert!(
        plan.contains(&format!("pending   {} rows (exact count)", 8000 - cursor)),
        "{plan}"
    );

    let json: Value = serde_json::from_str(&ok(&db, &["plan", "--json", path_str(&path)]))
        .expect("plan --json prints one JSON object");
    assert_eq!(json["range"]["after"][0], cursor.to_string(), "{json}");
    assert_eq!(json["range"]["end"][0], "8000", "{json}");
    assert_eq!(json["explain"]["batch"], "next", "{json}");
    assert_eq!(json["pending"]["rows"], 8000 - cursor, "{json}");
    assert_eq!(json["pending"]["method"], "exact", "{json}");
    assert_eq!(json["state"]["status"], "stopped", "{json}");
    assert_eq!(json["key"][0]["name"], "id", "{json}");

    // A runner that vanished elsewhere: `stale` in its column, and the truth about takeover.
    sqlx::raw_sql(
        "UPDATE backfill.jobs SET status = 'running', owner = 'elsewhere:4242:ab',
                heartbeat_at = now() - interval '2 minutes' WHERE name = 'slow'",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let (fields, line) = status_fields(&db);
    assert_eq!(fields[1], "stale", "{line}");
    assert_eq!(
        fields[2],
        cursor.to_string(),
        "the columns must stay aligned: {line}"
    );
    assert!(
        line.contains(
            "no heartbeat from elsewhere:4242:ab for 2m; the next `backfill run` takes the job over"
        ),
        "{line}"
    );
    let fast = slow().replace("pause = \"50ms\"", "pause = \"0ms\"");
    write_job(&dir, "slow", &fast);
    ok(&db, &["run", path_str(&path)]);
    assert_eq!(
        number(
            &db.pool,
            "SELECT count(*) FROM orders WHERE total_cents IS NULL"
        )
        .await,
        0
    );
}
