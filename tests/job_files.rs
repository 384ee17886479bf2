//! Invalid job files and arguments, end to end: every one is refused with exit code 2 and one
//! error message that names the job file (and `line:column` where the TOML parser knows the
//! place), and the database is left exactly as it was — no state schema, no row changed.
//!
//! Each test gets a database of its own with the same three tables (`fixture`) and checks a
//! fingerprint of the whole database before and after the refused command.

mod common;

use std::path::{Path, PathBuf};

use common::{Finished, TestDb, fresh_database, path_str, run_backfill, schema_exists, write_job};
use sqlx::Row as _;
use tempfile::TempDir;

/// The tables every test starts from: `users` has a primary key, `items` a nullable column to
/// misuse as a key, `nokey` neither a primary key nor a unique index.
const FIXTURE: &str = "
    CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL, total int, flag text);
    INSERT INTO users (id, name) SELECT g, 'user ' || g FROM generate_series(1, 50) g;
    CREATE TABLE items (id int PRIMARY KEY, code int, total int);
    INSERT INTO items (id, code) SELECT g, g * 10 FROM generate_series(1, 20) g;
    CREATE TABLE nokey (a int NOT NULL, b text, total int);
    INSERT INTO nokey (a, b) SELECT g, 'b' || g FROM generate_series(1, 20) g;
";

/// A valid job on `users`, lines 1–5, so that tests can append lines 6 onwards.
const VALID: &str = "table = \"users\"
where = \"total IS NULL\"

[set]
total = \"length(name)\"
";

/// A fresh database with [`FIXTURE`] and a directory for job files.
async fn setup() -> (TestDb, TempDir) {
    let db = fresh_database().await;
    sqlx::raw_sql(FIXTURE)
        .execute(&db.pool)
        .await
        .expect("create the fixture tables");
    (
        db,
        TempDir::new().expect("create a directory for job files"),
    )
}

/// Everything a refused command must leave alone: the schemas, the tables of `public` and
/// every fixture row.
async fn fingerprint(db: &TestDb) -> String {
    let row = sqlx::query(
        "SELECT
            (SELECT string_agg(nspname::text, ',' ORDER BY nspname) FROM pg_namespace),
            (SELECT string_agg(relname::text, ',' ORDER BY relname) FROM pg_class
              WHERE relnamespace = 'public'::regnamespace),
            (SELECT string_agg(u::text, ';' ORDER BY id) FROM users u),
            (SELECT string_agg(i::text, ';' ORDER BY id) FROM items i),
            (SELECT string_agg(n::text, ';' ORDER BY a) FROM nokey n)",
    )
    .fetch_one(&db.pool)
    .await
    .expect("fingerprint the database");
    (0..5)
        .map(|i| row.get::<Option<String>, _>(i).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs `backfill --database-url URL <args>`, asserts that it was refused the way an invalid
/// job file must be (exit 2, one error message, nothing printed on stdout, database untouched)
/// and returns the message.
async fn assert_refused(db: &TestDb, args: &[&str]) -> String {
    let before = fingerprint(db).await;
    let output = run_backfill(&db.url, args);
    let stderr = output.stderr.clone();
    assert_eq!(
        output.status.code(),
        Some(2),
        "{args:?} must exit 2; stderr:\n{stderr}"
    );
    assert_one_message(&output, &stderr);
    assert!(
        !schema_exists(&db.pool, "backfill").await,
        "{args:?} created the state schema; stderr:\n{stderr}"
    );
    assert_eq!(
        fingerprint(db).await,
        before,
        "{args:?} changed the database"
    );
    stderr
}

/// One `error: …` message, no panic, nothing on stdout.
fn assert_one_message(output: &Finished, stderr: &str) {
    assert!(stderr.starts_with("error: "), "stderr:\n{stderr}");
    let messages = stderr.lines().filter(|l| l.starts_with("error:")).count();
    assert_eq!(messages, 1, "expected one error message; stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "stderr:\n{stderr}");
    assert!(output.stdout.is_empty(), "stdout: {}", output.stdout);
}

/// `backfill run` of a job file with `toml`, refused; returns the job's path and the message.
///
/// Whether the message names the file is left to [`assert_names_file`], which tests call
/// last, so that a message without the file name does not hide the other checks.
async fn refuse_run(db: &TestDb, dir: &TempDir, toml: &str) -> (PathBuf, String) {
    let path = write_job(dir, "job", toml);
    let stderr = assert_refused(db, &["run", path_str(&path)]).await;
    (path, stderr)
}

/// The message says which job file is wrong: with `run a b c`, or in a CI log, the error alone
/// does not tell.
fn assert_names_file(stderr: &str, path: &Path) {
    assert!(
        stderr.contains(path_str(path)),
        "the message must name the job file {}; stderr:\n{stderr}",
        path.display()
    );
}

/// Asserts that `stderr` is `error: PATH:LINE:COLUMN: …` and contains every one of `parts`.
fn assert_located(stderr: &str, path: &Path, line_col: &str, parts: &[&str]) {
    let prefix = format!("error: {}:{line_col}: ", path.display());
    assert!(
        stderr.starts_with(&prefix),
        "expected {prefix:?} at the start; stderr:\n{stderr}"
    );
    assert_contains(stderr, parts);
}

fn assert_contains(stderr: &str, parts: &[&str]) {
    for part in parts {
        assert!(stderr.contains(part), "{part:?} not in stderr:\n{stderr}");
    }
}

/// [`VALID`] with `tail` appended from line 6 on.
fn valid_with(tail: &str) -> String {
    format!("{VALID}{tail}")
}

#[tokio::test]
async fn bad_toml_syntax_is_located() {
    let (db, dir) = setup().await;
    let (path, stderr) = refuse_run(&db, &dir, "table = users\nwhere = \"x\"\n").await;
    assert_located(&stderr, &path, "1:9", &["users"]);

    let unterminated = "table = \"users\nwhere = \"x\"\n";
    let (path, stderr) = refuse_run(&db, &dir, unterminated).await;
    assert_located(&stderr, &path, "1:15", &["string"]);
}

#[tokio::test]
async fn unknown_top_level_key_is_located_and_lists_the_valid_keys() {
    let (db, dir) = setup().await;
    let (path, stderr) = refuse_run(&db, &dir, &format!("tabel = \"users\"\n{VALID}")).await;
    assert_located(&stderr, &path, "1:1", &["unknown key `tabel`", "`table`"]);
}

#[tokio::test]
async fn unknown_key_in_batch_is_located() {
    let (db, dir) = setup().await;
    let (path, stderr) = refuse_run(&db, &dir, &valid_with("[batch]\nsise = 100\n")).await;
    assert_located(&stderr, &path, "7:1", &["unknown key `sise`", "`size`"]);
}

#[tokio::test]
async fn missing_table_is_refused() {
    let (db, dir) = setup().await;
    let toml = "where = \"total IS NULL\"\n[set]\ntotal = \"1\"\n";
    let (path, stderr) = refuse_run(&db, &dir, toml).await;
    assert!(
        stderr.starts_with(&format!("error: {}: missing `table`", path.display())),
        "stderr:\n{stderr}"
    );
}

#[tokio::test]
async fn missing_set_is_refused() {
    let (db, dir) = setup().await;
    let toml = "table = \"users\"\nwhere = \"total IS NULL\"\n";
    let (path, stderr) = refuse_run(&db, &dir, toml).await;
    assert!(
        stderr.starts_with(&format!("error: {}: missing [set]", path.display())),
        "stderr:\n{stderr}"
    );
}

#[tokio::test]
async fn empty_set_is_located() {
    let (db, dir) = setup().await;
    let toml = "table = \"users\"\nwhere = \"total IS NULL\"\n[set]\n";
    let (path, stderr) = refuse_run(&db, &dir, toml).await;
    assert_located(&stderr, &path, "3:1", &["[set] is empty"]);
}

#[tokio::test]
async fn missing_where_is_refused() {
    let (db, dir) = setup().await;
    let toml = "table = \"users\"\n[set]\ntotal = \"1\"\n";
    let (path, stderr) = refuse_run(&db, &dir, toml).await;
    assert!(
        stderr.starts_with(&format!("error: {}: missing `where`", path.display())),
        "stderr:\n{stderr}"
    );
}

#[tokio::test]
async fn bad_duration_is_located_with_examples() {
    let (db, dir) = setup().await;
    let (path, stderr) = refuse_run(&db, &dir, &valid_with("[batch]\ntarget = \"fast\"\n")).await;
    assert_located(&stderr, &path, "7:10", &["\"fast\"", "\"250ms\""]);
}

#[tokio::test]
async fn min_above_max_is_located() {
    let (db, dir) = setup().await;
    let toml = valid_with("[batch]\nmin = 5000\nmax = 1000\n");
    let (path, stderr) = refuse_run(&db, &dir, &toml).await;
    assert_located(
        &stderr,
        &path,
        "7:7",
        &["batch.min (5000) is larger than batch.max (1000)"],
    );
}

#[tokio::test]
async fn batch_bounds_outside_one_to_100000_are_located() {
    let (db, dir) = setup().await;
    for (field, value) in [("min", 0), ("max", 0), ("min", 100_001), ("max", 100_001)] {
        let toml = valid_with(&format!("[batch]\n{field} = {value}\n"));
        let (path, stderr) = refuse_run(&db, &dir, &toml).await;
        let message = format!("batch.{field} ({value}) is outside 1..=100000");
        assert_located(&stderr, &path, "7:7", &[&message]);
    }
}

#[tokio::test]
async fn statement_timeout_not_above_lock_timeout_is_located() {
    let (db, dir) = setup().await;
    let toml = valid_with("[timeouts]\nstatement = \"2s\"\nlock = \"2s\"\n");
    let (path, stderr) = refuse_run(&db, &dir, &toml).await;
    assert_located(
        &stderr,
        &path,
        "7:13",
        &["timeouts.statement (2s) must be larger than timeouts.lock (2s)"],
    );

    let toml = valid_with("[timeouts]\nstatement = \"1s\"\nlock = \"2s\"\n");
    let (path, stderr) = refuse_run(&db, &dir, &toml).await;
    assert_located(&stderr, &path, "7:13", &["timeouts.lock (2s)"]);
}

#[tokio::test]
async fn statement_timeout_not_above_target_is_located() {
    let (db, dir) = setup().await;
    let toml =
        valid_with("[batch]\ntarget = \"5s\"\n[timeouts]\nstatement = \"5s\"\nlock = \"1s\"\n");
    let (path, stderr) = refuse_run(&db, &dir, &toml).await;
    assert_located(
        &stderr,
        &path,
        "9:13",
        &["timeouts.statement (5s) must be larger than batch.target (5s)"],
    );
}

#[tokio::test]
async fn sql_in_the_table_name_is_refused_and_runs_nowhere() {
    let (db, dir) = setup().await;
    let toml = VALID.replace("\"users\"", "\"users; DROP TABLE users\"");
    let (path, stderr) = refuse_run(&db, &dir, &toml).await;
    assert_located(
        &stderr,
        &path,
        "1:9",
        &["invalid table: `users; DROP TABLE users`", "public.users"],
    );
    let users_exists: bool = sqlx::query_scalar("SELECT to_regclass('public.users') IS NOT NULL")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(users_exists, "table users was dropped");
}

#[tokio::test]
async fn missing_job_file_is_refused() {
    let (db, dir) = setup().await;
    let path = dir.path().join("no_such_job.toml");
    let stderr = assert_refused(&db, &["run", path_str(&path)]).await;
    assert_contains(
        &stderr,
        &[
            &format!("cannot read job file {}", path.display()),
            "No such file",
        ],
    );
}

#[tokio::test]
async fn missing_job_file_refuses_the_whole_run() {
    // A bad second job stops the first one from running too: files are read before anything.
    let (db, dir) = setup().await;
    let good = write_job(&dir, "good", VALID);
    let missing = dir.path().join("missing.toml");
    let stderr = assert_refused(&db, &["run", path_str(&good), path_str(&missing)]).await;
    assert_contains(
        &stderr,
        &[&format!("cannot read job file {}", missing.display())],
    );
}

#[tokio::test]
async fn column_missing_asks_about_the_expand_migration() {
    let (db, dir) = setup().await;
    let toml = VALID.replace("total = ", "new_total = ");
    let (path, stderr) = refuse_run(&db, &dir, &toml).await;
    assert_contains(
        &stderr,
        &["new_total", "has the expand migration been applied?"],
    );
    assert_names_file(&stderr, &path);
}

#[tokio::test]
async fn missing_table_in_the_database_is_refused() {
    let (db, dir) = setup().await;
    let toml = VALID.replace("\"users\"", "\"public.no_such_table\"");
    let (path, stderr) = refuse_run(&db, &dir, &toml).await;
    assert_contains(&stderr, &["no_such_table", "does not exist"]);
    assert_names_file(&stderr, &path);
}

#[tokio::test]
async fn where_on_a_missing_column_is_rejected_by_the_server() {
    let (db, dir) = setup().await;
    let toml = VALID.replace("total IS NULL", "no_such_col IS NULL");
    let (path, stderr) = refuse_run(&db, &dir, &toml).await;
    assert_contains(&stderr, &["`where`", "no_such_col"]);
    assert_names_file(&stderr, &path);
}

#[tokio::test]
async fn where_with_a_syntax_error_is_rejected_by_the_server() {
    let (db, dir) = setup().await;
    let toml = VALID.replace("total IS NULL", "total IS");
    let (path, stderr) = refuse_run(&db, &dir, &toml).await;
    assert_contains(&stderr, &["`where`", "syntax error"]);
    // sqlx's Display of a server error appends the line of PostgreSQL's C source that raised
    // it (`... at line 1188`), which reads as a place in the job file or the statement.
    assert!(
        !stderr.contains(" at line "),
        "the message points at a line that is in neither the job file nor the statement; stderr:\n{stderr}"
    );
    assert_names_file(&stderr, &path);
}

#[tokio::test]
async fn rejected_where_is_refused_by_plan() {
    let (db, dir) = setup().await;
    let path = write_job(&dir, "job", &VALID.replace("total IS NULL", "total IS"));
    let stderr = assert_refused(&db, &["plan", path_str(&path)]).await;
    assert_contains(&stderr, &["syntax error"]);
    assert_names_file(&stderr, &path);
}

#[tokio::test]
async fn rejected_where_is_refused_by_verify() {
    // `verify` gates the contract migration in CI: a broken job file must read as "fix the
    // job" (2), not as a failure of the database (1).
    let (db, dir) = setup().await;
    let path = write_job(&dir, "job", &VALID.replace("total IS NULL", "total IS"));
    let stderr = assert_refused(&db, &["verify", path_str(&path)]).await;
    assert_contains(&stderr, &["syntax error"]);
    assert_names_file(&stderr, &path);
}

#[tokio::test]
async fn set_expression_of_the_wrong_type_is_rejected_by_the_server() {
    let (db, dir) = setup().await;
    // `total` is an int; `name` is text, and text has no assignment cast to int.
    let toml = VALID.replace("length(name)", "name");
    let (path, stderr) = refuse_run(&db, &dir, &toml).await;
    assert_contains(&stderr, &["[set]", "total", "integer"]);
    assert_names_file(&stderr, &path);
}

#[tokio::test]
async fn nullable_key_column_is_refused() {
    let (db, dir) = setup().await;
    let toml =
        "table = \"items\"\nkey = [\"code\"]\nwhere = \"total IS NULL\"\n[set]\ntotal = \"code\"\n";
    let (path, stderr) = refuse_run(&db, &dir, toml).await;
    assert_contains(&stderr, &["\"code\"", "allows NULL"]);
    assert_names_file(&stderr, &path);
}

#[tokio::test]
async fn table_without_a_key_asks_for_key() {
    let (db, dir) = setup().await;
    let toml = "table = \"nokey\"\nwhere = \"total IS NULL\"\n[set]\ntotal = \"a\"\n";
    let (path, stderr) = refuse_run(&db, &dir, toml).await;
    assert_contains(&stderr, &["no primary key", "set key = ["]);
    assert_names_file(&stderr, &path);
}

#[tokio::test]
async fn unreadable_database_url_is_refused_without_its_password() {
    let (db, dir) = setup().await;
    let path = write_job(&dir, "job", VALID);
    for url in ["postgres://app:s3cret@localhost:notaport/db", "not a url"] {
        let before = fingerprint(&db).await;
        let output = run_backfill(url, &["run", path_str(&path)]);
        let stderr = output.stderr.clone();
        assert_eq!(output.status.code(), Some(2), "{url}: stderr:\n{stderr}");
        assert_one_message(&output, &stderr);
        assert_contains(&stderr, &["invalid database URL"]);
        assert!(!stderr.contains("s3cret"), "password shown: {stderr}");
        assert!(!schema_exists(&db.pool, "backfill").await);
        assert_eq!(fingerprint(&db).await, before);
    }
}

#[tokio::test]
async fn pacing_keys_out_of_bounds_are_located() {
    let (db, dir) = setup().await;
    for (tail, line_col, message) in [
        (
            "[batch]\npause_ratio = -1\n",
            "7:15",
            "batch.pause_ratio (-1) must be at least 0 and at most 1000",
        ),
        (
            "[throttle]\nmax_wal_rate = \"32 MiB\"\n",
            "7:16",
            "throttle.max_wal_rate (\"32 MiB\") is not a rate: it does not end in /s; write \
             bytes per second with a unit, e.g. \"32MiB/s\"",
        ),
        (
            "[guard]\nenabled = true\nmax_latency_ratio = 0.5\n",
            "8:21",
            "guard.max_latency_ratio (0.5) must be above 1 and at most 1000",
        ),
    ] {
        let (path, stderr) = refuse_run(&db, &dir, &valid_with(tail)).await;
        assert_located(&stderr, &path, line_col, &[message]);
    }
}

#[tokio::test]
async fn a_guard_probe_the_server_rejects_is_refused_before_anything_runs() {
    let (db, dir) = setup().await;
    let toml = valid_with("[guard]\nenabled = true\nprobe = \"SELECT nosuch FROM users\"\n");
    let (path, stderr) = refuse_run(&db, &dir, &toml).await;
    assert_contains(
        &stderr,
        &[
            "guard.probe failed",
            "statement: SELECT nosuch FROM users",
            "column \"nosuch\" does not exist",
        ],
    );
    assert_names_file(&stderr, &path);
    let stderr = assert_refused(&db, &["plan", path_str(&path)]).await;
    assert_contains(&stderr, &["guard.probe failed"]);
}

#[tokio::test]
async fn every_bad_job_leaves_a_shared_database_untouched() {
    // Many refusals in a row against one database: none may leave the state schema behind.
    let (db, dir) = setup().await;
    let bad = [
        "table = \"users\"\nwhere = \"total IS NULL\"\n[set]\nnew_total = \"1\"\n",
        "table = \"nosuch\"\nwhere = \"true\"\n[set]\ntotal = \"1\"\n",
        "table = \"users\"\nwhere = \"nosuch > 0\"\n[set]\ntotal = \"1\"\n",
        "table = \"users\"\nwhere = \"true\"\n[set]\ntotal = \"now()\"\n",
        "table = \"nokey\"\nwhere = \"true\"\n[set]\ntotal = \"1\"\n",
        "table = \"items\"\nkey = [\"code\"]\nwhere = \"true\"\n[set]\ntotal = \"1\"\n",
        "table = \"items\"\nkey = [\"nosuch\"]\nwhere = \"true\"\n[set]\ntotal = \"1\"\n",
        "table = \"users\"\nwhere = \"true\"\n[set]\ntotal = \"1\"\n[batch]\nmin = 0\n",
    ];
    let mut unnamed = Vec::new();
    for toml in bad {
        let (path, stderr) = refuse_run(&db, &dir, toml).await;
        if !stderr.contains(path_str(&path)) {
            unnamed.push(stderr);
        }
    }
    assert!(
        unnamed.is_empty(),
        "{} of {} messages do not name the job file:\n{}",
        unnamed.len(),
        bad.len(),
        unnamed.concat()
    );
}
