//! The commands around a run on real MariaDB and MySQL servers, as an operator uses them:
//! `plan` names the server, the key and the index its walk reads, and prints the statements a
//! batch sends and InnoDB's disk lines (no vacuum, no WAL); `verify --values` compares every
//! row with its expression and names a corrupted one, and refuses an expression that is not
//! the same twice; a row whose value overflows its column under strict mode is narrowed down,
//! set aside with `on_error = "skip"`, listed by `failures` with MySQL's error, filled by
//! `run --retry-failures` once fixed, forgotten by `reset`, and stops a run with
//! `on_error = "stop"`; `status --json` and `--metrics-addr` report the run.
//!
//! What a user checks: the lines printed, the exit codes, the rows' values. A flavor whose
//! programs are missing is skipped, saying why.

mod common;

use std::net::TcpListener;

use backfill::mysql::Flavor;
use common::mysql::{FLAVORS, create_items, exec, items_job, number, start, wait_for};
use common::{Runner, path_str, run_backfill, write_job};
use tempfile::TempDir;

/// Batches of 50–200 keys: many batches in a small table.
const BATCH: &str = "size = 200\nmin = 50\nmax = 200";

/// The line of `text` that starts with `prefix`, or a panic that shows `text`.
fn line<'a>(text: &'a str, prefix: &str, what: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("{what}: no line starting {prefix:?} in:\n{text}"))
}

/// `plan` on a table with a primary key: the server, the key and where it came from, the index
/// the key walk reads, the statements of a batch from `SET TRANSACTION` to `COMMIT`, and
/// InnoDB's disk lines; with a key no index leads with, the walk's scan and its warning.
#[tokio::test(flavor = "multi_thread")]
async fn plan_names_the_server_the_index_and_the_statements_of_a_batch() {
    for flavor in FLAVORS {
        let Some(db) = start(flavor).await else {
            continue;
        };
        create_items(&db.pool, 2000).await;
        let dir = TempDir::new().unwrap();
        let job = write_job(&dir, "items_total", &items_job(BATCH, "0"));
        let plan = run_backfill(&db.url, &["plan", path_str(&job)]);
        plan.expect_code(0, &format!("{flavor}: plan"));
        let out = &plan.stdout;
        let what = &format!("{flavor}: plan");
        assert!(
            line(out, "server    ", what).starts_with(&format!("server    {flavor} ")),
            "{out}"
        );
        assert!(
            line(out, "key       ", what).starts_with("key       (`id` bigint"),
            "{out}"
        );
        assert!(
            line(out, "key       ", what).ends_with("from primary key PRIMARY"),
            "{out}"
        );
        assert!(
            line(out, "index     ", what)
                .starts_with("index     PRIMARY serves the key walk (EXPLAIN: range access"),
            "{out}"
        );
        assert_eq!(
            line(out, "set       ", what),
            "set       `done` = v * 2 + SLEEP(0)"
        );
        assert_eq!(
            line(out, "pending   ", what),
            "pending   2000 rows (exact count)"
        );
        assert!(
            line(out, "disk      ", what).starts_with("disk      InnoDB: the rows "),
            "{out}"
        );
        assert!(
            line(out, "vacuum    ", what).starts_with("vacuum    none needed: InnoDB's purge"),
            "{out}"
        );
        // The statements of a batch, in the order it sends them.
        let batch: Vec<&str> = out
            .lines()
            .skip_while(|l| !l.starts_with("-- every batch is one transaction at READ COMMITTED"))
            .skip(1)
            .take_while(|l| !l.is_empty())
            .filter(|l| !l.starts_with(' '))
            .collect();
        assert_eq!(
            batch.first(),
            Some(&"SET TRANSACTION ISOLATION LEVEL READ COMMITTED;"),
            "{out}"
        );
        let session = batch[1];
        assert!(
            session.starts_with("SET SESSION innodb_lock_wait_timeout = 2, lock_wait_timeout = 2"),
            "{out}"
        );
        match flavor {
            Flavor::MariaDb => assert!(session.contains("max_statement_time = 30"), "{out}"),
            Flavor::MySql => {
                assert!(!session.contains("max_statement_time"), "{out}");
                assert!(out.contains("sends KILL QUERY"), "{out}");
            }
        }
        assert_eq!(batch[2], "START TRANSACTION;");
        assert!(batch[3].starts_with("SELECT CAST(`id` AS CHAR) FROM `db`.`items`"));
        assert!(
            batch[4].starts_with("UPDATE `db`.`items` SET `done` = (v * 2 + SLEEP(0)) WHERE"),
            "{out}"
        );
        assert!(batch[5].starts_with("UPDATE `backfill`.`jobs` j"), "{out}");
        assert_eq!(batch.last(), Some(&"COMMIT;"), "{out}");
        // PostgreSQL's reasoning is not MySQL's.
        for postgres in ["WAL ~", "VACUUM", "heap after the run", "BEGIN;"] {
            assert!(!out.contains(postgres), "{flavor}: {postgres} in:\n{out}");
        }
        assert!(!out.contains("warning: the key walk"), "{out}");

        let json = run_backfill(&db.url, &["plan", "--json", path_str(&job)]);
        json.expect_code(0, &format!("{flavor}: plan --json"));
        let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("plan --json");
        assert!(
            v["server"]
                .as_str()
                .is_some_and(|s| s.starts_with(&flavor.to_string())),
            "{v}"
        );
        assert_eq!(v["explain"]["walk_index"], "PRIMARY");
        assert_eq!(v["explain"]["walk_uses_index"], true);
        assert_eq!(v["disk"]["engine"], "InnoDB");
        assert_eq!(v["vacuum"]["purges"], true);
        assert_eq!(v["batch_sql"][2], "START TRANSACTION");

        // A key that no index leads with: every batch would scan the table.
        exec(
            &db.pool,
            "CREATE TABLE plain (k INT NOT NULL, done INT NULL)",
        )
        .await;
        exec(&db.pool, "INSERT INTO plain (k) VALUES (1), (2), (3)").await;
        let toml =
            "table = \"plain\"\nkey = [\"k\"]\nwhere = \"done IS NULL\"\n[set]\ndone = \"k\"\n";
        let job = write_job(&dir, "plain", toml);
        let plan = run_backfill(&db.url, &["plan", path_str(&job)]);
        plan.expect_code(0, &format!("{flavor}: plan without an index"));
        let out = &plan.stdout;
        assert!(
            line(out, "index     ", what)
                .starts_with("index     none: EXPLAIN shows the key walk reading the whole table"),
            "{out}"
        );
        assert!(
            out.contains("warning: the key walk does not use an index on (`k` int"),
            "{out}"
        );
    }
}

/// `verify --values` after a run: exit 0; a row changed behind the job's back is named with
/// both values, exit 3; a string that differs only in case is told apart though its column's
/// collation ignores case; an expression that reads the clock or is random is refused, exit 2.
#[tokio::test(flavor = "multi_thread")]
async fn verify_values_names_a_corrupted_row_and_refuses_what_cannot_be_compared() {
    for flavor in FLAVORS {
        let Some(db) = start(flavor).await else {
            continue;
        };
        create_items(&db.pool, 3000).await;
        let dir = TempDir::new().unwrap();
        let job = write_job(&dir, "items_total", &items_job(BATCH, "0"));
        run_backfill(&db.url, &["run", path_str(&job)]).expect_code(0, "run");
        let verify = run_backfill(&db.url, &["verify", "--values", path_str(&job)]);
        verify.expect_code(0, &format!("{flavor}: verify --values after the run"));
        assert!(
            verify
                .stdout
                .contains("the [set] columns of all 3000 rows equal their expressions"),
            "{flavor}: {}",
            verify.stdout
        );

        exec(&db.pool, "UPDATE items SET done = done + 1 WHERE id = 2077").await;
        let verify = run_backfill(&db.url, &["verify", "--values", path_str(&job)]);
        verify.expect_code(
            3,
            &format!("{flavor}: verify --values with a corrupted row"),
        );
        let expected = 2077 % 97 * 2;
        let named = format!(
            "  (id)=(2077): `done` {}, expected {expected}",
            expected + 1
        );
        assert!(
            verify.stdout.lines().any(|l| l == named),
            "{flavor}: {named:?} in:\n{}",
            verify.stdout
        );
        assert!(
            verify.stdout.contains("1 of 3000 rows differ"),
            "{flavor}: {}",
            verify.stdout
        );

        // Strings compare by their bytes, not by a collation that ignores case.
        exec(
            &db.pool,
            "CREATE TABLE people (id INT NOT NULL PRIMARY KEY, name VARCHAR(20) NOT NULL, \
             shout VARCHAR(20) NULL) COLLATE utf8mb4_general_ci",
        )
        .await;
        exec(
            &db.pool,
            "INSERT INTO people (id, name) VALUES (1, 'ada'), (2, 'grace'), (3, 'zoë')",
        )
        .await;
        let toml =
            "table = \"people\"\nwhere = \"shout IS NULL\"\n[set]\nshout = \"UPPER(name)\"\n";
        let people = write_job(&dir, "people", toml);
        run_backfill(&db.url, &["run", path_str(&people)]).expect_code(0, "run people");
        run_backfill(&db.url, &["verify", "--values", path_str(&people)])
            .expect_code(0, &format!("{flavor}: verify people"));
        exec(&db.pool, "UPDATE people SET shout = 'Zoë' WHERE id = 3").await;
        let verify = run_backfill(&db.url, &["verify", "--values", path_str(&people)]);
        verify.expect_code(3, &format!("{flavor}: verify people, one in another case"));
        assert!(
            verify
                .stdout
                .contains("  (id)=(3): `shout` Zoë, expected ZOË"),
            "{flavor}: {}",
            verify.stdout
        );

        for (expr, named) in [
            ("v * 2 + FLOOR(RAND())", "rand()"),
            ("v * 2 + 0 * UNIX_TIMESTAMP(NOW())", "now()"),
            ("IF(CURRENT_DATE > '2000-01-01', v * 2, 0)", "CURRENT_DATE"),
        ] {
            let toml = format!(
                "name = \"items_total\"\ntable = \"items\"\nwhere = \"done IS NULL\"\n\
                 [set]\ndone = {expr:?}\n"
            );
            let volatile = write_job(&dir, "volatile", &toml);
            let verify = run_backfill(&db.url, &["verify", "--values", path_str(&volatile)]);
            verify.expect_code(2, &format!("{flavor}: verify --values of {expr}"));
            assert!(
                verify
                    .stderr
                    .contains(&format!("cannot be verified with --values: {named} ")),
                "{flavor}: {}",
                verify.stderr
            );
        }
    }
}

/// A value that overflows its `TINYINT` under strict mode: the batch narrows down to the row.
/// With `on_error = "skip"` the run finishes and `failures` names each row with MySQL's error;
/// `run --retry-failures` fills a fixed row; `reset` forgets the job and its failures; with
/// `on_error = "stop"` the run stops at the row, exit 1, the rows before it done.
#[tokio::test(flavor = "multi_thread")]
async fn a_row_that_overflows_is_set_aside_retried_reset_or_stops_the_run() {
    for flavor in FLAVORS {
        let Some(db) = start(flavor).await else {
            continue;
        };
        create_items(&db.pool, 2000).await;
        exec(&db.pool, "ALTER TABLE items ADD COLUMN small TINYINT NULL").await;
        exec(&db.pool, "UPDATE items SET v = 0").await;
        exec(&db.pool, "UPDATE items SET v = 1 WHERE id IN (500, 1500)").await;
        let dir = TempDir::new().unwrap();
        let toml = |name: &str, on_error: &str| {
            format!(
                "name = \"{name}\"\ntable = \"items\"\nwhere = \"small IS NULL\"\n\
                 [set]\nsmall = \"v * 1000\"\n[batch]\n{BATCH}\non_error = \"{on_error}\"\n"
            )
        };
        let skip = write_job(&dir, "small_skip", &toml("small_skip", "skip"));
        let run = run_backfill(&db.url, &["run", path_str(&skip)]);
        run.expect_code(0, &format!("{flavor}: run, skipping"));
        assert!(
            run.stderr
                .contains("2 rows could not be backfilled and are set aside"),
            "{flavor}: {}",
            run.stderr
        );
        let filled = "SELECT COUNT(*) FROM items WHERE small = 0";
        assert_eq!(number(&db.pool, filled).await, 1998);

        let failures = run_backfill(&db.url, &["failures", "small_skip"]);
        failures.expect_code(0, &format!("{flavor}: failures"));
        for id in [500, 1500] {
            let listed = line(
                &failures.stdout,
                &format!("  (id)=({id})  "),
                &format!("{flavor}: failures"),
            );
            assert!(
                listed.contains("Out of range value for column 'small'")
                    && listed.contains("[SQLSTATE 22003]; error 1264"),
                "{flavor}: {listed}"
            );
        }
        let json = run_backfill(&db.url, &["failures", "--json", "small_skip"]);
        let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("failures --json");
        assert_eq!(v["count"], 2, "{v}");
        assert_eq!(v["failures"][0]["key"]["id"], "500", "{v}");
        assert_eq!(v["failures"][0]["sqlstate"], "22003", "{v}");
        assert_eq!(v["failures"][0]["notes"], "error 1264", "{v}");

        let status = run_backfill(&db.url, &["status", "--json", "small_skip"]);
        status.expect_code(0, &format!("{flavor}: status --json"));
        let v: serde_json::Value = serde_json::from_str(&status.stdout).expect("status --json");
        assert_eq!(v[0]["name"], "small_skip", "{v}");
        assert_eq!(v[0]["status"], "done", "{v}");
        assert_eq!(v[0]["failures"], 2, "{v}");
        assert_eq!(v[0]["rows_done"], 1998, "{v}");
        assert_eq!(v[0]["table"], "`db`.`items`", "{v}");
        // The rows set aside still match `where`: the contract must wait.
        run_backfill(&db.url, &["verify", path_str(&skip)])
            .expect_code(3, &format!("{flavor}: verify with rows set aside"));

        exec(&db.pool, "UPDATE items SET v = 0 WHERE id = 500").await;
        let retry = run_backfill(&db.url, &["run", "--retry-failures", path_str(&skip)]);
        retry.expect_code(0, &format!("{flavor}: run --retry-failures"));
        assert_eq!(number(&db.pool, filled).await, 1999);
        let failures = run_backfill(&db.url, &["failures", "small_skip"]);
        assert!(
            !failures.stdout.contains("(id)=(500)") && failures.stdout.contains("(id)=(1500)"),
            "{flavor}: {}",
            failures.stdout
        );

        let reset = run_backfill(&db.url, &["reset", "small_skip"]);
        reset.expect_code(0, &format!("{flavor}: reset"));
        assert!(
            reset.stdout.contains("its 1 row set aside"),
            "{flavor}: {}",
            reset.stdout
        );
        let status = run_backfill(&db.url, &["status", "--json"]);
        assert_eq!(status.stdout.trim(), "[]", "{flavor}: status after reset");
        let kept = "SELECT COUNT(*) FROM backfill.failures";
        assert_eq!(number(&db.pool, kept).await, 0);

        exec(&db.pool, "UPDATE items SET small = NULL").await;
        let stop = write_job(&dir, "small_stop", &toml("small_stop", "stop"));
        let run = run_backfill(&db.url, &["run", path_str(&stop)]);
        run.expect_code(1, &format!("{flavor}: run, stopping"));
        assert!(
            run.stderr.contains(
                "row (id)=(1500) cannot be backfilled: Out of range value for column 'small'"
            ),
            "{flavor}: {}",
            run.stderr
        );
        assert_eq!(
            number(
                &db.pool,
                "SELECT COUNT(*) FROM items WHERE small IS NOT NULL"
            )
            .await,
            1499,
            "{flavor}: the rows before it are done"
        );
        let status = run_backfill(&db.url, &["status", "--json", "small_stop"]);
        let v: serde_json::Value = serde_json::from_str(&status.stdout).expect("status --json");
        assert_eq!(v[0]["status"], "failed", "{v}");
    }
}

/// `GET /metrics` as Prometheus does it.
fn scrape(port: u16) -> Result<String, ureq::Error> {
    ureq::get(&format!("http://127.0.0.1:{port}/metrics"))
        .call()?
        .body_mut()
        .read_to_string()
}

/// The value of the sample whose name and labels are `series`.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
}

/// `run --metrics-addr`: held still by an operator's pause, the served numbers and the state
/// table's agree; the run then finishes.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_are_served_during_a_run_and_match_the_state_table() {
    const ROWS: i64 = 5000;
    for flavor in FLAVORS {
        let Some(db) = start(flavor).await else {
            continue;
        };
        create_items(&db.pool, ROWS).await;
        let dir = TempDir::new().unwrap();
        let job = write_job(&dir, "items_total", &items_job(BATCH, "0.001"));
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("an ephemeral port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let mut run = Runner::spawn(
            &db.url,
            &dir,
            "run",
            &["run", "--json", "--metrics-addr", &addr, path_str(&job)],
        );
        run.wait_for_line(&["\"batch\""]).await;
        run_backfill(&db.url, &["pause", "items_total"]).expect_code(0, "pause");
        run.wait_for_line(&["\"paused\"", "operator"]).await;
        wait_for(
            &db.pool,
            "SELECT COUNT(*) FROM backfill.jobs WHERE name = 'items_total' AND note LIKE 'paused%'",
        )
        .await;
        let text = tokio::task::spawn_blocking(move || scrape(port))
            .await
            .unwrap()
            .expect("scrape /metrics during the run");
        let state =
            |column: &str| format!("SELECT {column} FROM backfill.jobs WHERE name = 'items_total'");
        let rows_done = number(&db.pool, &state("rows_done")).await;
        let batches_done = number(&db.pool, &state("batches_done")).await;
        assert!(
            rows_done < ROWS,
            "{flavor}: the run finished before the scrape"
        );
        assert_eq!(
            sample(&text, "backfill_rows_done_total{job=\"items_total\"}"),
            rows_done as f64,
            "{flavor}"
        );
        assert_eq!(
            sample(&text, "backfill_batches_total{job=\"items_total\"}"),
            batches_done as f64,
            "{flavor}"
        );
        assert_eq!(
            sample(
                &text,
                "backfill_state{job=\"items_total\",state=\"paused\",signal=\"operator\"}"
            ),
            1.0,
            "{flavor}"
        );
        run_backfill(&db.url, &["resume", "items_total"]).expect_code(0, "resume");
        run.finish()
            .await
            .expect_code(0, &format!("{flavor}: the run"));
        assert_eq!(number(&db.pool, &state("rows_done")).await, ROWS);
    }
}
