//! A row whose data the `[set]` expression cannot handle (issue 13): `amount_text::bigint` on
//! `'n/a'` at id 77777 of 100,000. The failing batch is narrowed down to that row, which is
//! named with the server's message and SQLSTATE; with `on_error = "stop"` the run stops there
//! with the rows before it done, with `"skip"` the row is set aside in the failures table and
//! the run goes on; `verify`, `backfill failures` and `run --retry-failures` take it from there.
//! With one worker and with three.
//!
//! What a user checks: the exit codes and messages, the `error` and `skipped` events, the
//! `status` note, every row's value and its update counter (a trigger counts every `UPDATE` of
//! `amount`, so a row applied twice shows), `rows_done`, and the failures table.

mod common;

use common::watched::of_kind;
use common::{TestDb, events, fresh_database, number, path_str, run_backfill, write_job};
use serde_json::Value;
use tempfile::TempDir;

const ROWS: i64 = 100_000;
const BAD: i64 = 77_777;
const MESSAGE: &str = "row (id)=(77777) cannot be backfilled: invalid input syntax for type bigint: \"n/a\" [SQLSTATE 22P02]";

/// `payments` of [`ROWS`] rows whose `amount_text` is the id, but `'n/a'` at [`BAD`]; `amount`
/// to fill; `updates` counts the `UPDATE`s of `amount`.
async fn payments(db: &TestDb) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE payments (id bigint PRIMARY KEY, amount_text text NOT NULL, amount bigint,
                                updates int NOT NULL DEFAULT 0);
         INSERT INTO payments (id, amount_text)
           SELECT g, CASE WHEN g = {BAD} THEN 'n/a' ELSE g::text END
             FROM generate_series(1, {ROWS}) g;
         CREATE FUNCTION count_update() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN NEW.updates := OLD.updates + 1; RETURN NEW; END $$;
         CREATE TRIGGER count_update BEFORE UPDATE OF amount ON payments
           FOR EACH ROW EXECUTE FUNCTION count_update();"
    )))
    .execute(&db.pool)
    .await
    .expect("create payments");
}

/// The job over `payments`, with `on_error` when given.
fn job(dir: &TempDir, on_error: Option<&str>) -> String {
    let batch = on_error.map_or(String::new(), |e| {
        format!("\n[batch]\non_error = \"{e}\"\n")
    });
    let text = format!(
        "table = \"payments\"\nwhere = \"amount IS NULL\"\n\n[set]\namount = \"amount_text::bigint\"\n{batch}"
    );
    path_str(&write_job(dir, "payments", &text)).to_owned()
}

/// Fixes the row's data, as the operator would (the counter counts only `amount`).
async fn fix_the_row(db: &TestDb) {
    sqlx::query("UPDATE payments SET amount_text = '77777' WHERE id = $1")
        .bind(BAD)
        .execute(&db.pool)
        .await
        .expect("fix the row");
}

/// Rows filled, rows filled more than once or wrongly, and the job's `rows_done`.
async fn filled(db: &TestDb) -> (i64, i64, i64) {
    let pool = &db.pool;
    (
        number(
            pool,
            "SELECT count(*) FROM payments WHERE amount IS NOT NULL",
        )
        .await,
        number(
            pool,
            "SELECT count(*) FROM payments WHERE (amount IS NULL) <> (updates = 0) OR updates > 1 \
             OR amount IS DISTINCT FROM CASE WHEN amount IS NULL THEN NULL ELSE id END",
        )
        .await,
        number(pool, "SELECT rows_done FROM backfill.jobs").await,
    )
}

fn workers_args(workers: u32) -> Vec<String> {
    vec!["--workers".to_owned(), workers.to_string()]
}

/// `backfill run --json [--workers N] ARGS… JOB`.
fn run(db: &TestDb, job: &str, workers: u32, args: &[&str]) -> common::Finished {
    let workers = workers_args(workers);
    let mut all = vec!["run", "--json"];
    all.extend(workers.iter().map(String::as_str));
    all.extend_from_slice(args);
    all.push(job);
    run_backfill(&db.url, &all)
}

/// The stop case: exit 1 naming the row, the rows before it done and counted (with one worker:
/// exactly the 77,776 before it, the cursor just before it), the `status` note; after the fix a
/// run resumes at the row and finishes with every row filled once.
async fn stops_at_the_row(workers: u32) {
    let db = fresh_database().await;
    payments(&db).await;
    let dir = TempDir::new().unwrap();
    let job = job(&dir, None);

    let out = run(&db, &job, workers, &[]);
    out.expect_code(1, "a run that meets the row");
    eprintln!("exit message: {}", out.stderr.trim());
    assert!(
        out.stderr.contains(&format!("error: {MESSAGE}")),
        "{}",
        out.stderr
    );
    let errors: Vec<String> = of_kind(&events(&out.stdout), "error")
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(errors.len(), 1, "{}", out.stdout);
    assert!(errors[0].starts_with(MESSAGE), "{}", errors[0]);

    let (done, wrong, rows_done) = filled(&db).await;
    eprintln!("{workers} worker(s): {done} rows filled before the stop");
    assert_eq!(wrong, 0, "rows filled twice or wrong");
    assert_eq!(rows_done, done, "rows_done counts exactly the rows filled");
    let holding = number(
        &db.pool,
        "SELECT count(*) FROM backfill.ranges WHERE cursor = '[\"77776\"]'",
    )
    .await;
    assert_eq!(holding, 1, "the range of the row stops just before it");
    if workers == 1 {
        assert_eq!(done, BAD - 1, "every row before 77777 is done");
    }

    let status = run_backfill(&db.url, &["status"]);
    status.expect_code(0, "status");
    let line = status.stdout.lines().nth(1).unwrap_or_default().to_owned();
    assert!(
        line.contains("failed") && line.contains(MESSAGE),
        "{}",
        status.stdout
    );

    fix_the_row(&db).await;
    let out = run(&db, &job, workers, &[]);
    out.expect_code(0, "the run after the fix");
    let (done, wrong, rows_done) = filled(&db).await;
    assert_eq!((done, wrong, rows_done), (ROWS, 0, ROWS));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_row_that_cannot_be_backfilled_stops_the_run_naming_it() {
    stops_at_the_row(1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn three_workers_stop_at_the_row_too() {
    stops_at_the_row(3).await;
}

/// The `skipped` events of a run.
fn skipped(stdout: &str) -> Vec<Value> {
    of_kind(&events(stdout), "skipped")
        .into_iter()
        .cloned()
        .collect()
}

/// The failures table: (key, sqlstate, attempts) of every row.
async fn failures(db: &TestDb) -> Vec<(String, String, i32)> {
    sqlx::query_as("SELECT key::text, sqlstate, attempts FROM backfill.failures ORDER BY seq")
        .fetch_all(&db.pool)
        .await
        .expect("read the failures table")
}

/// The skip case, from the run that sets the row aside to the retry that fills it.
async fn skips_the_row_and_retries_it(workers: u32) {
    let db = fresh_database().await;
    payments(&db).await;
    let dir = TempDir::new().unwrap();
    let job = job(&dir, Some("skip"));
    let plan = run_backfill(&db.url, &["plan", &job]);
    plan.expect_code(0, "plan");
    assert!(
        plan.stdout.contains(
            "on_error  skip: a row that cannot be backfilled goes to \"backfill\".\"failures\" \
             and the run goes on"
        ),
        "{}",
        plan.stdout
    );

    let out = run(&db, &job, workers, &[]);
    out.expect_code(0, "a run that skips the row");
    let skips = skipped(&out.stdout);
    assert_eq!(skips.len(), 1, "{}", out.stdout);
    assert_eq!(skips[0]["row"], "(id)=(77777)");
    assert_eq!(skips[0]["sqlstate"], "22P02");
    assert!(
        out.stderr
            .contains("1 row could not be backfilled and is set aside"),
        "{}",
        out.stderr
    );
    assert_eq!(
        failures(&db).await,
        [("[\"77777\"]".to_owned(), "22P02".to_owned(), 1)]
    );
    let (done, wrong, rows_done) = filled(&db).await;
    assert_eq!((done, wrong, rows_done), (ROWS - 1, 0, ROWS - 1));

    let status = run_backfill(&db.url, &["status"]);
    assert!(
        status
            .stdout
            .contains("1 row set aside (`backfill failures payments`)"),
        "{}",
        status.stdout
    );

    let verify = run_backfill(&db.url, &["verify", &job]);
    verify.expect_code(3, "verify while a row is set aside");
    eprintln!("verify:\n{}", verify.stdout);
    assert!(
        verify.stdout.contains(
            "  (id)=(77777)  invalid input syntax for type bigint: \"n/a\" [SQLSTATE 22P02]"
        ),
        "{}",
        verify.stdout
    );
    let listed = run_backfill(&db.url, &["failures", "payments"]);
    listed.expect_code(0, "backfill failures");
    eprintln!("backfill failures:\n{}", listed.stdout);
    assert!(
        listed.stdout.contains("(id)=(77777)  invalid input syntax"),
        "{}",
        listed.stdout
    );
    let json = run_backfill(&db.url, &["failures", "--json", "payments"]);
    let json: Value = serde_json::from_str(&json.stdout).expect("failures --json");
    assert_eq!(json["count"], 1);
    assert_eq!(json["failures"][0]["key"]["id"], "77777");

    // Retried before the fix: it fails again, stays, with one more attempt.
    let again = run(&db, &job, workers, &["--retry-failures"]);
    again.expect_code(0, "a retry before the fix");
    assert_eq!(skipped(&again.stdout).len(), 1, "{}", again.stdout);
    assert_eq!(failures(&db).await[0].2, 2);

    fix_the_row(&db).await;
    let retry = run(&db, &job, workers, &["--retry-failures"]);
    retry.expect_code(0, "the retry after the fix");
    let fills = of_kind(&events(&retry.stdout), "filled").len();
    assert_eq!(fills, 1, "{}", retry.stdout);
    // One row changed of 100,000: the full run's final vacuum ran, the retry's does not.
    let final_vacuums = |stdout: &str| {
        of_kind(&events(stdout), "vacuum")
            .iter()
            .filter(|e| e["final"] == true)
            .count()
    };
    assert!(final_vacuums(&out.stdout) > 0, "{}", out.stdout);
    assert_eq!(final_vacuums(&retry.stdout), 0, "{}", retry.stdout);
    assert!(failures(&db).await.is_empty());
    let (done, wrong, rows_done) = filled(&db).await;
    assert_eq!((done, wrong, rows_done), (ROWS, 0, ROWS));
    run_backfill(&db.url, &["verify", &job]).expect_code(0, "verify after the retry");
    assert_eq!(
        number(
            &db.pool,
            "SELECT count(*) FROM backfill.jobs WHERE status = 'done'"
        )
        .await,
        1
    );

    let nothing = run(&db, &job, workers, &["--retry-failures"]);
    nothing.expect_code(0, "a retry with nothing to retry");
    assert!(
        nothing.stderr.contains("payments: no failed rows to retry"),
        "{}",
        nothing.stderr
    );
}

/// Without `--json` and with stderr not a terminal (a CI log), the error is said once, by
/// the command, not also by the progress lines.
#[tokio::test(flavor = "multi_thread")]
async fn a_row_error_is_printed_once_in_a_log() {
    let db = fresh_database().await;
    sqlx::raw_sql(
        "CREATE TABLE payments (id bigint PRIMARY KEY, amount_text text NOT NULL, amount bigint);
         INSERT INTO payments (id, amount_text)
           SELECT g, CASE WHEN g = 7 THEN 'n/a' ELSE g::text END FROM generate_series(1, 20) g;",
    )
    .execute(&db.pool)
    .await
    .expect("create payments");
    let dir = TempDir::new().unwrap();
    let job = job(&dir, None);
    let out = run_backfill(&db.url, &["run", &job]);
    out.expect_code(1, "a run that meets the row");
    let said = "row (id)=(7) cannot be backfilled";
    assert_eq!(out.stderr.matches(said).count(), 1, "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_skip_the_row_is_set_aside_and_retried_once_fixed() {
    skips_the_row_and_retries_it(1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn three_workers_set_the_row_aside_too() {
    skips_the_row_and_retries_it(3).await;
}

/// A composite key is named column by column; `--restart` and `reset` forget the failed rows
/// (a restart records the row afresh, as it meets it again).
#[tokio::test(flavor = "multi_thread")]
async fn a_composite_key_is_named_and_restart_and_reset_forget_the_failures() {
    let db = fresh_database().await;
    sqlx::raw_sql(
        "CREATE TABLE orders (tenant text NOT NULL, id int NOT NULL, qty text NOT NULL, n int,
                              PRIMARY KEY (tenant, id));
         INSERT INTO orders SELECT t, g, CASE WHEN t = 'acme' AND g = 42 THEN 'many' ELSE g::text END
           FROM unnest(ARRAY['acme', 'beta']) t, generate_series(1, 3000) g;",
    )
    .execute(&db.pool)
    .await
    .expect("create orders");
    let dir = TempDir::new().unwrap();
    let text = |on_error: &str| {
        format!(
            "table = \"orders\"\nwhere = \"n IS NULL\"\n[set]\nn = \"qty::int\"\n[batch]\non_error = \"{on_error}\"\n"
        )
    };
    let stop = write_job(&dir, "orders", &text("stop"));
    let out = run_backfill(&db.url, &["run", path_str(&stop)]);
    out.expect_code(1, "the composite key's row");
    assert!(
        out.stderr.contains(
            "error: row (tenant, id)=(acme, 42) cannot be backfilled: invalid input syntax for type integer: \"many\" [SQLSTATE 22P02]"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(
        number(&db.pool, "SELECT count(*) FROM orders WHERE n IS NOT NULL").await,
        41
    );

    let skip = write_job(&dir, "orders", &text("skip"));
    run_backfill(&db.url, &["run", path_str(&skip)]).expect_code(0, "the skipping run");
    let recorded = "SELECT count(*) FROM backfill.failures WHERE key = '[\"acme\", \"42\"]' \
                    AND columns = '[\"tenant\", \"id\"]' AND attempts = 1";
    assert_eq!(number(&db.pool, recorded).await, 1);

    run_backfill(&db.url, &["run", "--restart", path_str(&skip)]).expect_code(0, "the restart");
    assert_eq!(
        number(&db.pool, recorded).await,
        1,
        "recorded afresh, not counted twice"
    );
    let reset = run_backfill(&db.url, &["reset", "orders"]);
    reset.expect_code(0, "reset");
    assert!(
        reset.stdout.contains("and its 1 row set aside"),
        "{}",
        reset.stdout
    );
    assert_eq!(
        number(&db.pool, "SELECT count(*) FROM backfill.failures").await,
        0
    );
}
