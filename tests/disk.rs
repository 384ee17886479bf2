//! The disk a run costs, on real PostgreSQL: vacuum pacing keeps a full-table backfill from
//! doubling the heap (shown against the same run without it), on a table of narrow rows only
//! when the vacuums clean the indexes too (`index_cleanup`, which `plan` suggests for them), a
//! vacuum that an `ALTER TABLE` queues behind gives way at once, and a role that may not vacuum
//! is told so and runs without pacing. (Behind PgBouncer: `tests/pgbouncer.rs`.)

mod common;

use std::time::{Duration, Instant};

use common::watched::{kinds, of_kind};
use common::{Runner, events, fresh_database, number, path_str, run_backfill, write_job};
use serde_json::Value;
use sqlx::{AssertSqlSafe, Connection as _, PgConnection, PgPool};
use tempfile::TempDir;

/// `name(id bigint primary key, email text (indexed), legacy int, flag int, updates int)` with
/// `rows` rows and `flag` to fill from `legacy`; `updates` counts each row's updates. Packed
/// full (fillfactor 100, the default), and without autovacuum, so that only the run's own
/// vacuums move the heap. `updates` is a column from the start: a column added later with a
/// default would widen every new row version and blur the comparison.
async fn users(pool: &PgPool, name: &str, rows: i64) {
    let sql = format!(
        "CREATE TABLE {name} (id bigint PRIMARY KEY, email text NOT NULL, legacy int NOT NULL,
                              updates int NOT NULL DEFAULT 0) WITH (autovacuum_enabled = off);
         INSERT INTO {name} (id, email, legacy)
              SELECT i, 'user' || i || '@example.com', i % 5 FROM generate_series(1, {rows}) AS i;
         CREATE INDEX {name}_email ON {name} (email);
         ALTER TABLE {name} ADD COLUMN flag int;
         CREATE FUNCTION {name}_counted() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN NEW.updates := OLD.updates + 1; RETURN NEW; END $$;
         CREATE TRIGGER counted BEFORE UPDATE ON {name} FOR EACH ROW EXECUTE FUNCTION {name}_counted();"
    );
    // VACUUM on its own: it cannot run in the implicit transaction of a multi-statement string.
    for sql in [sql, format!("VACUUM (ANALYZE) {name}")] {
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(pool)
            .await
            .unwrap_or_else(|error| panic!("create {name}: {error}"));
    }
}

/// A job that fills `name.flag`, with `tail` (e.g. a `[vacuum]` table) after it.
fn users_job(dir: &TempDir, name: &str, tail: &str) -> String {
    let job = write_job(
        dir,
        name,
        &format!("table = \"{name}\"\nwhere = \"flag IS NULL\"\n[set]\nflag = \"legacy\"\n{tail}"),
    );
    path_str(&job).to_owned()
}

/// The heap of `name` in bytes.
async fn heap(pool: &PgPool, name: &str) -> i64 {
    number(pool, &format!("SELECT pg_relation_size('{name}')")).await
}

/// Every row of `name` filled, each updated exactly once, and `rows_done` says so.
async fn assert_every_row_once(pool: &PgPool, name: &str, rows: i64) {
    let wrong = number(
        pool,
        &format!("SELECT count(*) FROM {name} WHERE flag IS DISTINCT FROM legacy OR updates <> 1"),
    )
    .await;
    assert_eq!(wrong, 0, "{name}: rows not filled exactly once");
    let done = number(
        pool,
        &format!("SELECT rows_done FROM backfill.jobs WHERE name = '{name}'"),
    )
    .await;
    assert_eq!(done, rows, "{name}: rows_done");
}

/// The `vacuum` events of `events` that are (or are not) the final one, by state.
fn vacuums<'a>(events: &'a [Value], last: bool, state: &str) -> Vec<&'a Value> {
    of_kind(events, "vacuum")
        .into_iter()
        .filter(|e| e["final"] == last && e["state"] == state)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn vacuum_pacing_keeps_a_full_table_backfill_from_doubling_the_heap() {
    const ROWS: i64 = 500_000;
    let db = fresh_database().await;
    let setup = Instant::now();
    tokio::join!(
        users(&db.pool, "paced", ROWS),
        users(&db.pool, "unpaced", ROWS)
    );
    let setup = setup.elapsed();
    let dir = TempDir::new().unwrap();
    let paced = users_job(&dir, "paced", "");
    let unpaced = users_job(&dir, "unpaced", "[vacuum]\nenabled = false\n");
    let before = (
        heap(&db.pool, "paced").await,
        heap(&db.pool, "unpaced").await,
    );

    let started = Instant::now();
    let with = Runner::spawn(&db.url, &dir, "paced", &["run", "--json", &paced]).within(WAIT);
    let without =
        Runner::spawn(&db.url, &dir, "unpaced", &["run", "--json", &unpaced]).within(WAIT);
    let (with, without) = tokio::join!(with.finish(), without.finish());
    let runs = started.elapsed();
    with.expect_code(0, "paced run");
    without.expect_code(0, "unpaced run");

    let after = (
        heap(&db.pool, "paced").await,
        heap(&db.pool, "unpaced").await,
    );
    let ratio = |before: i64, after: i64| after as f64 / before as f64;
    let (paced_ratio, unpaced_ratio) = (ratio(before.0, after.0), ratio(before.1, after.1));
    let (with, without) = (events(&with.stdout), events(&without.stdout));
    println!(
        "{ROWS} rows each, setup {setup:.1?}, both runs {runs:.1?}: heap with pacing {} → {} \
         bytes ({paced_ratio:.3}×, {} vacuums), without {} → {} bytes ({unpaced_ratio:.3}×)",
        before.0,
        after.0,
        vacuums(&with, false, "done").len(),
        before.1,
        after.1
    );
    assert!(
        paced_ratio <= 1.30,
        "with pacing the heap grew {paced_ratio:.3}×"
    );
    assert!(
        unpaced_ratio >= 1.8,
        "without pacing the heap grew only {unpaced_ratio:.3}×"
    );

    // What the user sees: the paced run vacuumed along the way and at the end, the other only
    // at the end; each `finished` event carries the heap before and after.
    assert!(
        !vacuums(&with, false, "done").is_empty(),
        "no pacing vacuum"
    );
    assert!(
        vacuums(&without, false, "done").is_empty(),
        "paced with pacing off"
    );
    for (events, name, before, after) in [
        (&with, "paced", before.0, after.0),
        (&without, "unpaced", before.1, after.1),
    ] {
        assert_eq!(
            vacuums(events, true, "done").len(),
            1,
            "{name}: final vacuum"
        );
        let finished = of_kind(events, "finished");
        assert_eq!(finished.len(), 1, "{name}: {:?}", kinds(events));
        assert_eq!(finished[0]["heap_bytes_before"], before, "{name}");
        assert_eq!(finished[0]["heap_bytes_after"], after, "{name}");
        assert!(
            !of_kind(events, "heap").is_empty(),
            "{name}: no heap reading while it ran"
        );
        assert_every_row_once(&db.pool, name, ROWS).await;
    }
    let status = run_backfill(&db.url, &["status"]);
    status.expect_code(0, "status");
    for name in ["paced", "unpaced"] {
        let line = status.stdout.lines().find(|l| l.starts_with(name)).unwrap();
        assert!(line.contains("heap ") && line.contains(" → "), "{line}");
    }
    println!("{}", status.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_narrow_table_needs_the_pacing_vacuums_to_clean_its_indexes() {
    const ROWS: i64 = 200_000;
    let db = fresh_database().await;
    // Rows of four integers (a 40-byte tuple): some 185 to a page, whose line pointers a
    // heap-only vacuum leaves dead, so that a freed page takes only 291 - 185 new versions.
    for name in ["heap_only", "cleaned"] {
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE TABLE {name} (id bigint PRIMARY KEY, qty int NOT NULL, price int NOT NULL,
                                  total bigint) WITH (autovacuum_enabled = off);
             INSERT INTO {name} (id, qty, price)
                  SELECT g, g % 7 + 1, g % 1000 FROM generate_series(1, {ROWS}) g;
             CREATE INDEX {name}_qty ON {name} (qty);"
        )))
        .execute(&db.pool)
        .await
        .unwrap();
        sqlx::raw_sql(AssertSqlSafe(format!("VACUUM (FREEZE, ANALYZE) {name}")))
            .execute(&db.pool)
            .await
            .unwrap();
    }
    let dir = TempDir::new().unwrap();
    // Batches of at most 2,000 rows 10 ms apart: on a loaded machine the rows changed while a
    // vacuum runs (whose space it cannot free yet) stay few against its 10,000-row `every`.
    let job = |name: &str, tail: &str| {
        let text = format!(
            "table = \"{name}\"\nwhere = \"total IS NULL\"\n[set]\ntotal = \"qty::bigint * price\"\n\
             [batch]\nmax = 2000\npause = \"10ms\"\n[vacuum]\nfinal = false\n{tail}"
        );
        path_str(&write_job(&dir, name, &text)).to_owned()
    };
    let (heap_only, cleaned) = (
        job("heap_only", ""),
        job("cleaned", "index_cleanup = true\n"),
    );
    // `plan` says beforehand that these rows need index_cleanup, and what it gives.
    let hint = "with [vacuum] index_cleanup = true";
    let told = run_backfill(&db.url, &["plan", &heap_only]);
    told.expect_code(0, "plan of the heap-only job");
    let line = told.stdout.lines().find(|l| l.contains(hint));
    println!("plan: {}", line.unwrap_or_default().trim());
    assert!(
        line.is_some(),
        "plan did not suggest index_cleanup:\n{}",
        told.stdout
    );
    let told = run_backfill(&db.url, &["plan", &cleaned]);
    told.expect_code(0, "plan of the cleaning job");
    assert!(!told.stdout.contains(hint), "{}", told.stdout);
    let before = (
        heap(&db.pool, "heap_only").await,
        heap(&db.pool, "cleaned").await,
    );
    let first = Runner::spawn(&db.url, &dir, "heap_only", &["run", "--json", &heap_only]);
    let second = Runner::spawn(&db.url, &dir, "cleaned", &["run", "--json", &cleaned]);
    let (first, second) = tokio::join!(first.within(WAIT).finish(), second.within(WAIT).finish());
    first.expect_code(0, "heap-only run");
    second.expect_code(0, "cleaning run");
    let grew = |name, before: i64| {
        let pool = &db.pool;
        async move { heap(pool, name).await as f64 / before as f64 }
    };
    let (heap_only_ratio, cleaned_ratio) = (
        grew("heap_only", before.0).await,
        grew("cleaned", before.1).await,
    );
    let paced = |out: &common::Finished| vacuums(&events(&out.stdout), false, "done").len();
    println!(
        "{ROWS} narrow rows: heap {heap_only_ratio:.3}× with heap-only pacing vacuums ({}), \
         {cleaned_ratio:.3}× with index_cleanup = true ({})",
        paced(&first),
        paced(&second)
    );
    assert!(paced(&first) > 0 && paced(&second) > 0, "no pacing vacuum");
    assert!(
        cleaned_ratio <= 1.40,
        "with index_cleanup the heap grew {cleaned_ratio:.3}×"
    );
    assert!(
        heap_only_ratio >= 1.45,
        "heap-only vacuums kept the heap at {heap_only_ratio:.3}×: the line pointers did not bind"
    );
    for name in ["heap_only", "cleaned"] {
        let wrong = number(
            &db.pool,
            &format!(
                "SELECT count(*) FROM {name} WHERE total IS DISTINCT FROM qty::bigint * price"
            ),
        )
        .await;
        assert_eq!(wrong, 0, "{name}: rows left wrong");
    }
}

/// How long a [`Runner`] of this file may take: two 500,000-row runs side by side, or 200
/// paused batches, on a loaded machine.
const WAIT: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread")]
async fn an_alter_table_queued_behind_our_vacuum_goes_ahead_at_once() {
    let db = fresh_database().await;
    users(&db.pool, "users", 200_000).await;
    // Every session of this database vacuums slowly (cost-based delay): our vacuum lasts
    // long enough for the ALTER TABLE to queue behind it.
    let database: String = sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!(
        "ALTER DATABASE \"{database}\" SET vacuum_cost_delay = '10ms';
         ALTER DATABASE \"{database}\" SET vacuum_cost_limit = 1;"
    )))
    .execute(&db.pool)
    .await
    .unwrap();
    let dir = TempDir::new().unwrap();
    // Batches of 1,000 rows 50 ms apart: the run is still going when the ALTER TABLE queues,
    // so that what lets it through is the yield, not the end of the job.
    let job = users_job(
        &dir,
        "users",
        "[batch]\nsize = 1000\nmax = 1000\npause = \"50ms\"\n\
         [vacuum]\nevery = 20000\nfinal = false\n",
    );
    // 200 batches with their pauses: 17 s alone, over 30 s beside the file's other runs.
    let mut runner = Runner::spawn(&db.url, &dir, "run", &["run", "--json", &job]).within(WAIT);
    runner
        .wait_until(
            &db.pool,
            "EXISTS (SELECT FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
             WHERE l.relation = 'users'::regclass AND l.mode = 'ShareUpdateExclusiveLock' \
             AND l.granted AND a.state = 'active' \
             AND a.query LIKE '/* backfill:users vacuum %VACUUM (INDEX_CLEANUP OFF%')",
        )
        .await;
    let mut ddl = PgConnection::connect(&db.url).await.unwrap();
    let asked = Instant::now();
    tokio::time::timeout(
        common::WAIT,
        sqlx::raw_sql("ALTER TABLE users ADD COLUMN note text").execute(&mut ddl),
    )
    .await
    .expect("the ALTER TABLE never got its lock")
    .expect("ALTER TABLE");
    let waited = asked.elapsed();
    let _ = ddl.close().await;
    let out = runner.finish().await;
    out.expect_code(0, "run");
    let events = events(&out.stdout);
    let gave_way = vacuums(&events, false, "yielded");
    println!(
        "ALTER TABLE waited {waited:?} behind our vacuum (batch_poll 50ms); {} vacuums ran, \
         {} gave way",
        vacuums(&events, false, "done").len(),
        gave_way.len()
    );
    assert!(
        gave_way.iter().any(|e| e["reason"]
            .as_str()
            .is_some_and(|r| r.contains("ALTER TABLE users ADD COLUMN note text"))),
        "our vacuum did not give way to the ALTER TABLE: {:?}",
        of_kind(&events, "vacuum")
    );
    assert_every_row_once(&db.pool, "users", 200_000).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_role_that_may_not_vacuum_is_told_the_fix_and_runs_without_pacing() {
    let db = fresh_database().await;
    users(&db.pool, "users", 30_000).await;
    let (database, version): (String, i32) = sqlx::query_as(
        "SELECT current_database()::text, current_setting('server_version_num')::int4",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    // Roles belong to the whole cluster, which the tests share: a name of this test's own.
    let role = format!("app_{}", database.trim_start_matches("backfill_test_"));
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE ROLE \"{role}\" LOGIN;
         GRANT SELECT, UPDATE ON users TO \"{role}\";
         GRANT CREATE ON DATABASE \"{database}\" TO \"{role}\";"
    )))
    .execute(&db.pool)
    .await
    .unwrap();
    let url = db.url.replacen("postgres@", &format!("{role}@"), 1);
    assert_ne!(url, db.url, "the test URL names the postgres user");
    let dir = TempDir::new().unwrap();
    let job = users_job(&dir, "users", "[vacuum]\nevery = 5000\n");

    let refusal = "may not VACUUM \"public\".\"users\" (owned by postgres), so this run \
                   vacuums nothing";
    let plan = run_backfill(&url, &["plan", &job]);
    plan.expect_code(0, "plan");
    assert!(plan.stdout.contains(refusal), "{}", plan.stdout);
    assert!(
        plan.stdout
            .contains("vacuum    none: the job's role may not vacuum the table"),
        "{}",
        plan.stdout
    );
    let fix = if version >= 170000 {
        format!("`GRANT MAINTAIN ON \"public\".\"users\" TO \"{role}\";`")
    } else {
        "run the job as the table's owner \"postgres\"".to_owned()
    };
    assert!(plan.stdout.contains(&fix), "{}", plan.stdout);

    let out = run_backfill(&url, &["run", "--json", &job]);
    out.expect_code(0, "run");
    assert_eq!(
        out.stderr.matches(refusal).count(),
        1,
        "said once:\n{}",
        out.stderr
    );
    let first = events(&out.stdout);
    assert!(
        of_kind(&first, "vacuum").is_empty(),
        "vacuumed: {:?}",
        of_kind(&first, "vacuum")
    );
    assert_every_row_once(&db.pool, "users", 30_000).await;
    println!("{}", out.stderr);

    if version >= 170000 {
        // The GRANT the message names is all it takes.
        sqlx::raw_sql(AssertSqlSafe(format!(
            "ALTER TABLE users DISABLE TRIGGER counted;
             UPDATE users SET flag = NULL, updates = 0;
             ALTER TABLE users ENABLE TRIGGER counted;
             GRANT MAINTAIN ON users TO \"{role}\";"
        )))
        .execute(&db.pool)
        .await
        .unwrap();
        let again = run_backfill(&url, &["run", "--restart", "--json", &job]);
        again.expect_code(0, "run after GRANT MAINTAIN");
        assert!(!again.stderr.contains(refusal), "{}", again.stderr);
        let events = events(&again.stdout);
        assert!(!vacuums(&events, false, "done").is_empty(), "no pacing");
        assert_eq!(vacuums(&events, true, "done").len(), 1, "no final vacuum");
        assert_every_row_once(&db.pool, "users", 30_000).await;
    }
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP OWNED BY \"{role}\"; DROP ROLE \"{role}\";"
    )))
    .execute(&db.pool)
    .await
    .unwrap();
}
