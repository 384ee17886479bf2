//! Runs whose batches are made slow on purpose, so that another session can be seen waiting
//! on them and the monitor's yield can be checked: a job over `items` that sleeps per row, roles
//! of their own for the job and the monitor, and a statement sent while batches hold their
//! locks. Shared by the yield tests of one worker and of several.

use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::{AssertSqlSafe, Connection as _, PgConnection, PgPool};
use tempfile::TempDir;

use super::watched::{assert_clean, items_with_job_text};
use super::{Runner, assert_all_done_once, fresh_database, number};

/// Like [`items_with_job`], but every row first sleeps `seconds` (an SQL expression), so that a
/// batch holds the row locks it has taken long enough to be seen waiting on. Its batches aim at
/// 10 s and may take 60 s.
pub async fn slow_items_job(
    pool: &PgPool,
    rows: i64,
    seconds: &str,
    batch: &str,
    throttle: &str,
) -> (TempDir, String) {
    items_with_job_text(
        pool,
        rows,
        &format!("qty * price + (pg_sleep({seconds}) IS NULL)::int"),
        &format!(
            "[batch]\ntarget = \"10s\"\n{batch}\n[timeouts]\nstatement = \"60s\"\n\
             [throttle]\n{throttle}\n"
        ),
    )
    .await
}

/// Roles of their own for a run: `batch` owns the table and runs the job, `monitor` watches
/// with `--monitor-url`. Cluster-wide, so named after the test and the process.
pub struct Roles {
    pub batch: String,
    pub monitor: String,
    /// What the monitor's role is granted (`pg_monitor, pg_signal_backend`, or nothing).
    grants: &'static str,
}

impl Roles {
    pub fn new(test: &str, grants: &'static str) -> Roles {
        let pid = std::process::id();
        Roles {
            batch: format!("{test}_app_{pid}"),
            monitor: format!("{test}_watcher_{pid}"),
            grants,
        }
    }

    /// Creates both roles and hands them `tables` and the database (for the state schema).
    pub async fn create(&self, pool: &PgPool, tables: &[&str]) {
        let Roles {
            batch,
            monitor,
            grants,
        } = self;
        let mut sql = format!(
            "CREATE ROLE {batch} LOGIN; CREATE ROLE {monitor} LOGIN;
             DO $$ BEGIN EXECUTE format('GRANT CREATE ON DATABASE %I TO {batch}', current_database()); END $$;"
        );
        for table in tables {
            sql.push_str(&format!("ALTER TABLE {table} OWNER TO {batch};"));
        }
        if !grants.is_empty() {
            sql.push_str(&format!("GRANT {grants} TO {monitor};"));
        }
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(pool)
            .await
            .unwrap();
    }

    /// `url` with `role` as the user.
    pub fn url(url: &str, role: &str) -> String {
        url.replacen("postgres@", &format!("{role}@"), 1)
    }
}

/// Runs `statement` from another session while `workers` deliberately slow batches (10 s
/// each), 200 ms into their `UPDATE`s, hold their locks, and checks that it went ahead at once:
/// the batches yielded, none committed first, and the run still ended with every row filled
/// once. With `roles`, the job runs as one role and the monitor as another. Returns the run's
/// events.
pub async fn goes_ahead_of_slow_batches(
    statement: &str,
    roles: Option<&Roles>,
    workers: u32,
) -> Vec<Value> {
    let rows = 1_000 * i64::from(workers);
    let db = fresh_database().await;
    // Each row sleeps for `knob.per_row` seconds: 0.02 s × 500 rows makes a 10 s batch, until
    // the test turns the knob down.
    sqlx::raw_sql("CREATE TABLE knob (per_row float8); INSERT INTO knob VALUES (0.02);")
        .execute(&db.pool)
        .await
        .unwrap();
    let (dir, job) = slow_items_job(
        &db.pool,
        rows,
        "(SELECT per_row FROM knob)",
        &format!("size = 500\nmin = 500\nmax = 500\nworkers = {workers}"),
        "",
    )
    .await;
    let (run_url, monitor_url) = match roles {
        None => (db.url.clone(), None),
        Some(roles) => {
            roles.create(&db.pool, &["items", "knob"]).await;
            (
                Roles::url(&db.url, &roles.batch),
                Some(Roles::url(&db.url, &roles.monitor)),
            )
        }
    };
    let mut args = vec!["run", "--json"];
    if let Some(url) = &monitor_url {
        args.extend(["--monitor-url", url]);
    }
    args.push(&job);
    let mut runner = Runner::spawn(&run_url, &dir, "run", &args);
    runner
        .wait_until(
            &db.pool,
            &format!(
                "(SELECT count(*) FROM pg_stat_activity WHERE application_name = 'backfill:items_total' \
                 AND datname = current_database() AND state = 'active' \
                 AND query LIKE 'UPDATE \"public\".\"items\"%' \
                 AND clock_timestamp() - query_start > interval '200 ms') = {workers}"
            ),
        )
        .await;
    let mut other = PgConnection::connect(&db.url).await.unwrap();
    let asked = Instant::now();
    sqlx::raw_sql(AssertSqlSafe(statement.to_owned()))
        .execute(&mut other)
        .await
        .unwrap();
    let waited = asked.elapsed();
    // The batch it queued behind did not commit: it was cancelled for the statement.
    let done_then = number(&db.pool, "SELECT rows_done FROM backfill.jobs").await;
    sqlx::raw_sql("UPDATE knob SET per_row = 0")
        .execute(&db.pool)
        .await
        .unwrap();
    let out = runner.finish().await;
    println!("{statement} waited {waited:?} behind {workers} 10 s batch(es)");
    assert_eq!(
        done_then, 0,
        "a slow batch committed before {statement} went ahead"
    );
    assert!(
        waited < Duration::from_secs(5),
        "{statement} waited {waited:?}"
    );
    let events = assert_clean(&out, "run");
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);
    assert_all_done_once(&db.pool, rows).await;
    events
}
