//! Starting behind a lock, on real PostgreSQL: a run started while another session holds or
//! waits for a lock that conflicts with ours on the table waits, paused with the monitor's own
//! sentence, and starts once the lock is gone — exit 0, no retry, no error, every row filled
//! once; with one worker or two, before the first job or at the start of a later one. `plan`
//! waits at most `--lock-wait` and names the session in the way. Ctrl-C while waiting writes
//! nothing. And stderr carries no colour codes and no sqlx warning when it is not a terminal.

mod common;

use std::time::{Duration, Instant};

use common::watched::{
    NOTE_PAUSED, assert_clean, items_with_job, items_with_job_text, kinds, of_kind,
};
use common::{
    Finished, Runner, assert_all_done_once, backfill_command, fresh_database, holds, number,
    path_str, run_backfill, schema_exists, wait_for, write_job,
};
use serde_json::Value;
use sqlx::{Connection as _, PgConnection, PgPool};

/// A session of the test's own that holds `ACCESS EXCLUSIVE` on `table` until it commits,
/// as a migration does; and its pid.
async fn lock_table(url: &str, table: &str) -> (PgConnection, i32) {
    let mut holder = PgConnection::connect(url).await.unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut holder)
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE;"
    )))
    .execute(&mut holder)
    .await
    .unwrap();
    (holder, pid)
}

async fn commit(mut holder: PgConnection) {
    sqlx::raw_sql("COMMIT").execute(&mut holder).await.unwrap();
    let _ = holder.close().await;
}

/// The one `paused` event of `events`, which must name `pid` holding or waiting for
/// `AccessExclusiveLock` with the monitor's signal, and come before `started`.
fn the_pause<'a>(events: &'a [Value], pid: i32, verb: &str, out: &Finished) -> &'a Value {
    let paused = of_kind(events, "paused");
    assert_eq!(paused.len(), 1, "one pause:\n{}", out.stdout);
    let reason = paused[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!(
            "pid {pid} {verb} AccessExclusiveLock on the table"
        )),
        "{reason}"
    );
    assert_eq!(paused[0]["signal"], "table_lock");
    paused[0]
}

/// A run of a 4,000-row job started while a session holds the table: it waits (and writes
/// nothing) until the lock is gone, then fills every row once. Returns its events.
async fn run_behind_a_held_lock(extra: &[&str]) -> Vec<Value> {
    let db = fresh_database().await;
    let (dir, job) = items_with_job(&db.pool, 4_000, "size = 500\nmin = 500\nmax = 500", "").await;
    let (holder, pid) = lock_table(&db.url, "items").await;
    let mut args = vec!["run", "--json", &job];
    args.extend_from_slice(extra);
    let mut runner = Runner::spawn(&db.url, &dir, "run", &args);
    let began = Instant::now();
    runner.wait_for_line(&["\"paused\""]).await;
    // Held a while longer: the run keeps waiting, and writes nothing meanwhile.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !schema_exists(&db.pool, "backfill").await,
        "the run wrote its state while the table was locked"
    );
    let held = began.elapsed();
    commit(holder).await;
    let released = Instant::now();
    runner.wait_for_line(&["\"started\""]).await;
    let to_start = released.elapsed();
    let out = runner.finish().await;
    println!(
        "held the lock {held:.1?} after the run started; the run started {to_start:.0?} after \
         the lock was released and ended {:.1?} after it",
        released.elapsed()
    );
    let events = assert_clean(&out, "run behind a held lock");
    let pause = the_pause(&events, pid, "holds", &out);
    assert!(
        pause["reason"]
            .as_str()
            .unwrap()
            .contains("LOCK TABLE items"),
        "{pause}"
    );
    let order: Vec<&str> = kinds(&events).into_iter().take(3).collect();
    assert_eq!(order, ["paused", "running", "started"], "{}", out.stdout);
    assert_all_done_once(&db.pool, 4_000).await;
    events
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_started_behind_a_held_lock_waits_paused_then_fills_every_row_once() {
    let events = run_behind_a_held_lock(&[]).await;
    assert_eq!(of_kind(&events, "started")[0]["workers"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_workers_started_behind_a_held_lock_wait_paused_then_fill_every_row_once() {
    let events = run_behind_a_held_lock(&["--workers", "2"]).await;
    assert_eq!(of_kind(&events, "started")[0]["workers"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_waits_for_a_queued_lock_not_for_a_holder_that_does_not_conflict() {
    let db = fresh_database().await;
    let (dir, job) = items_with_job(&db.pool, 2_000, "size = 500\nmin = 500\nmax = 500", "").await;
    // A reader holds ACCESS SHARE, which conflicts with nothing we do; a migration queues
    // behind it for ACCESS EXCLUSIVE, and everything after it would queue behind that.
    let mut reader = PgConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql("BEGIN; SELECT count(*) FROM items;")
        .execute(&mut reader)
        .await
        .unwrap();
    let mut migration = PgConnection::connect(&db.url).await.unwrap();
    let waiter: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut migration)
        .await
        .unwrap();
    let queued = tokio::spawn(async move {
        sqlx::raw_sql("BEGIN; LOCK TABLE items IN ACCESS EXCLUSIVE MODE;")
            .execute(&mut migration)
            .await
    });
    wait_for(
        &db.pool,
        "EXISTS (SELECT FROM pg_locks WHERE relation = 'items'::regclass AND NOT granted)",
    )
    .await;
    let mut runner = Runner::spawn(&db.url, &dir, "run", &["run", "--json", &job]);
    runner.wait_for_line(&["\"paused\""]).await;
    // The migration gives up; the reader still holds its lock and the run goes ahead anyway.
    sqlx::query("SELECT pg_cancel_backend($1)")
        .bind(waiter)
        .execute(&db.pool)
        .await
        .unwrap();
    let out = runner.finish().await;
    let gave_up = queued.await.unwrap();
    assert!(gave_up.is_err(), "the queued migration was not cancelled");
    let events = assert_clean(&out, "run behind a queued lock");
    the_pause(&events, waiter, "waits for", &out);
    assert_all_done_once(&db.pool, 2_000).await;
    sqlx::raw_sql("COMMIT").execute(&mut reader).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_behind_a_held_lock_gives_up_after_lock_wait_naming_the_session() {
    let db = fresh_database().await;
    let (_dir, job) = items_with_job(&db.pool, 100, "size = 50\nmin = 50\nmax = 50", "").await;
    let (holder, pid) = lock_table(&db.url, "items").await;
    let began = Instant::now();
    let out = run_backfill(&db.url, &["plan", "--lock-wait", "1s", &job]);
    let took = began.elapsed();
    commit(holder).await;
    out.expect_code(1, "plan behind a held lock");
    let said = format!("pid {pid} holds AccessExclusiveLock on the table");
    assert!(out.stderr.contains(&said), "{}", out.stderr);
    assert!(out.stderr.contains("--lock-wait"), "{}", out.stderr);
    assert!(!out.stderr.contains("55P03"), "{}", out.stderr);
    assert!(!schema_exists(&db.pool, "backfill").await);
    println!(
        "plan --lock-wait 1s gave up after {took:.1?}:\n{}",
        out.stderr
    );
    let out = run_backfill(&db.url, &["plan", "--lock-wait", "1s", &job]);
    out.expect_code(0, "plan once the lock is gone");
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_while_waiting_for_a_lock_writes_nothing_and_status_showed_the_wait() {
    let db = fresh_database().await;
    let (dir, job) = items_with_job(&db.pool, 500, "size = 100\nmin = 100\nmax = 100", "").await;
    run_backfill(&db.url, &["run", &job]).expect_code(0, "first run");
    let before: (String, i64, i64) =
        sqlx::query_as("SELECT status, rows_done, batches_done FROM backfill.jobs")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    let (holder, pid) = lock_table(&db.url, "items").await;
    let mut runner = Runner::spawn(&db.url, &dir, "again", &["run", "--restart", &job]);
    runner
        .wait_until(
            &db.pool,
            &format!("{NOTE_PAUSED}pid {pid} holds AccessExclusiveLock on the table%')"),
        )
        .await;
    let status = run_backfill(&db.url, &["status"]);
    assert!(
        status.stdout.contains("paused: pid"),
        "status does not show the wait:\n{}",
        status.stdout
    );
    runner.signal("INT");
    let out = runner.finish().await;
    commit(holder).await;
    out.expect_code(130, "Ctrl-C while waiting");
    assert!(out.stderr.contains("nothing was written"), "{}", out.stderr);
    let after: (String, i64, i64) =
        sqlx::query_as("SELECT status, rows_done, batches_done FROM backfill.jobs")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(before, after, "the job's row changed");
    assert!(
        holds(&db.pool, "(SELECT note IS NULL FROM backfill.jobs)").await,
        "the note of the wait stayed"
    );
    println!("status while waiting:\n{}", status.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_later_job_whose_table_is_locked_when_its_turn_comes_waits_paused() {
    let db = fresh_database().await;
    let (dir, first) = items_with_job(
        &db.pool,
        2_000,
        "size = 100\nmin = 100\nmax = 100\npause = \"50ms\"",
        "",
    )
    .await;
    sqlx::raw_sql(
        "CREATE TABLE others (id bigint PRIMARY KEY, qty int NOT NULL, total bigint);
         INSERT INTO others (id, qty) SELECT i, i % 5 FROM generate_series(1, 1000) AS i;",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let second = write_job(
        &dir,
        "others_total",
        "table = \"others\"\nwhere = \"total IS NULL\"\n[set]\ntotal = \"qty * 2\"\n",
    );
    let mut runner = Runner::spawn(
        &db.url,
        &dir,
        "run",
        &["run", "--json", &first, path_str(&second)],
    );
    runner
        .wait_until(&db.pool, "(SELECT rows_done FROM backfill.jobs) > 0")
        .await;
    let (holder, pid) = lock_table(&db.url, "others").await;
    let paused = runner
        .wait_for_line(&["\"paused\"", "\"others_total\""])
        .await;
    assert!(
        paused.contains(&format!("pid {pid} holds AccessExclusiveLock")),
        "{paused}"
    );
    // It holds the job by now: its heartbeat carries the note.
    runner
        .wait_until(
            &db.pool,
            &format!(
                "EXISTS (SELECT FROM backfill.jobs WHERE name = 'others_total' \
                 AND note LIKE 'paused: pid {pid} holds AccessExclusiveLock%')"
            ),
        )
        .await;
    commit(holder).await;
    let out = runner.finish().await;
    let events = assert_clean(&out, "run of two jobs");
    let others: Vec<&Value> = events
        .iter()
        .filter(|e| e["job"] == "others_total")
        .collect();
    let order: Vec<&str> = others.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(
        order.iter().take(3).copied().collect::<Vec<_>>(),
        ["paused", "running", "started"],
        "{}",
        out.stdout
    );
    assert_eq!(
        order.iter().filter(|k| **k == "paused").count(),
        1,
        "paused again after the lock was gone:\n{}",
        out.stdout
    );
    assert_items_done_once(&db.pool).await;
    let wrong = number(
        &db.pool,
        "SELECT count(*) FROM others WHERE total IS DISTINCT FROM qty * 2",
    )
    .await;
    assert_eq!(wrong, 0);
}

/// The first job of [`a_later_job_whose_table_is_locked_when_its_turn_comes_waits_paused`]
/// filled every row of `items` once.
async fn assert_items_done_once(pool: &PgPool) {
    let wrong = number(
        pool,
        "SELECT count(*) FROM items WHERE total IS DISTINCT FROM qty::bigint * price OR updates <> 1",
    )
    .await;
    assert_eq!(wrong, 0, "rows of items left wrong or updated twice");
}

/// `backfill run JOB` (and `extra`) with its stderr in a file (not a terminal), `NO_COLOR`
/// unset and `BACKFILL_LOG` as given: its exit code and its stderr.
async fn run_to_file(
    url: &str,
    dir: &std::path::Path,
    job: &str,
    extra: &[&str],
    log: Option<&str>,
) -> (Option<i32>, String) {
    let path = dir.join("stderr");
    let mut args = vec!["--database-url", url, "run", job];
    args.extend_from_slice(extra);
    let mut command = backfill_command(&args);
    command
        .env_remove("NO_COLOR")
        .env_remove("BACKFILL_LOG")
        .stderr(std::fs::File::create(&path).unwrap());
    if let Some(log) = log {
        command.env("BACKFILL_LOG", log);
    }
    let status = tokio::process::Command::from(command)
        .kill_on_drop(true)
        .status()
        .await
        .unwrap();
    (status.code(), std::fs::read_to_string(&path).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn stderr_that_is_not_a_terminal_gets_no_colour_codes_and_no_sqlx_warnings() {
    let db = fresh_database().await;
    // A batch takes 1.2 s: longer than sqlx's one-second slow-statement threshold.
    let (dir, job) = items_with_job_text(
        &db.pool,
        20,
        "qty * price + (pg_sleep(CASE WHEN id % 10 = 1 THEN 1.2 ELSE 0 END) IS NULL)::int",
        "[batch]\nsize = 10\nmin = 10\nmax = 10\ntarget = \"5s\"\n[timeouts]\nstatement = \"30s\"\n",
    )
    .await;
    // Started behind a lock too, held for longer than the old 2 s lock timeout.
    let (holder, _) = lock_table(&db.url, "items").await;
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        commit(holder).await;
    });
    let (code, stderr) = run_to_file(&db.url, dir.path(), &job, &[], None).await;
    release.await.unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        !stderr.contains("\x1b["),
        "escape codes on stderr:\n{stderr:?}"
    );
    assert!(!stderr.contains("slow statement"), "{stderr}");
    assert!(!stderr.contains("WARN"), "{stderr}");
    assert_all_done_once(&db.pool, 20).await;
    println!("stderr of the run:\n{stderr}");

    // Asked for, the slow statements are logged, still without escape codes.
    sqlx::raw_sql(
        "ALTER TABLE items DISABLE TRIGGER count_update;
         UPDATE items SET total = NULL, updates = 0;
         ALTER TABLE items ENABLE TRIGGER count_update;",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let (code, stderr) = run_to_file(&db.url, dir.path(), &job, &["--restart"], Some("info")).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("slow statement"), "{stderr}");
    assert!(
        !stderr.contains("\x1b["),
        "escape codes on stderr:\n{stderr:?}"
    );
    assert_all_done_once(&db.pool, 20).await;
}
