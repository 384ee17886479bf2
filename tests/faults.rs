//! Faults injected into a running `backfill run`: the server restarts, the server stays down
//! past `--reconnect-timeout`, the runner is SIGKILLed again and again at random moments, and
//! the number of server connections a run holds.
//!
//! Each test has a scratch cluster of its own, because it stops or restarts the server (or
//! counts every session on it). Every test checks what a user would: exit code, message, each
//! row's value, and `rows_done` in `backfill.jobs` against the rows that really changed.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use backfill::scratch::Cluster;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Executor as _};
use tempfile::TempDir;

/// How long a condition may take to come true, or a run to end, before the test fails.
const WAIT: Duration = Duration::from_secs(60);

/// A scratch cluster of the test's own, and a small pool on its `postgres` database.
async fn own_cluster() -> (Arc<Cluster>, PgPool) {
    let cluster = tokio::task::spawn_blocking(Cluster::start)
        .await
        .expect("join the cluster start")
        .expect("start a scratch PostgreSQL");
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&cluster.url("postgres"))
        .await
        .expect("connect to the scratch cluster");
    (Arc::new(cluster), pool)
}

/// Runs a blocking cluster operation (`stop`, `start_again`, `restart`) off the async runtime.
async fn on_cluster(
    cluster: &Arc<Cluster>,
    what: &str,
    op: fn(&Cluster) -> Result<(), backfill::scratch::ScratchError>,
) {
    let cluster = Arc::clone(cluster);
    tokio::task::spawn_blocking(move || op(&cluster))
        .await
        .expect("join the cluster operation")
        .unwrap_or_else(|error| panic!("{what} the scratch cluster: {error}"));
}

/// `items(id bigint primary key, qty, price, total, updates)` with `total` NULL in rows
/// `1..=rows`; `updates` counts every UPDATE of a row (a BEFORE UPDATE trigger).
async fn create_items(pool: &PgPool, rows: i64) {
    pool.execute(
        "CREATE TABLE items (id bigint PRIMARY KEY, qty int NOT NULL, price int NOT NULL, \
           total bigint, updates int NOT NULL DEFAULT 0);
         CREATE FUNCTION count_update() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN NEW.updates := OLD.updates + 1; RETURN NEW; END $$;
         CREATE TRIGGER count_update BEFORE UPDATE ON items
           FOR EACH ROW EXECUTE FUNCTION count_update();",
    )
    .await
    .expect("create items");
    sqlx::query(
        "INSERT INTO items (id, qty, price) \
         SELECT i, i % 7 + 1, i % 13 + 1 FROM generate_series(1, $1::bigint) AS i",
    )
    .bind(rows)
    .execute(pool)
    .await
    .expect("fill items");
}

/// The job `items_total`: `total = qty * price` on the rows that `filter` selects, with
/// `batch` as the `[batch]` table's body.
fn items_job(dir: &TempDir, filter: &str, batch: &str) -> PathBuf {
    let path = dir.path().join("items_total.toml");
    let text = format!(
        "table = \"public.items\"\nwhere = \"{filter}\"\n\n[set]\ntotal = \"qty * price\"\n\n\
         [batch]\n{batch}\n"
    );
    std::fs::write(&path, text).expect("write the job file");
    path
}

/// One number from a query written by the test.
async fn number(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(AssertSqlSafe(sql.to_owned()))
        .fetch_one(pool)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"))
}

/// Rows of `items` whose `total` is not `qty * price`.
async fn wrong_items(pool: &PgPool) -> i64 {
    number(
        pool,
        "SELECT count(*) FROM items WHERE total IS DISTINCT FROM qty::bigint * price",
    )
    .await
}

async fn rows_done(pool: &PgPool) -> i64 {
    number(
        pool,
        "SELECT rows_done FROM backfill.jobs WHERE name = 'items_total'",
    )
    .await
}

/// True when the SQL boolean `condition` holds; false while it cannot be evaluated (the state
/// table does not exist yet, the server is restarting).
async fn holds(pool: &PgPool, condition: &str) -> bool {
    sqlx::query_scalar::<_, Option<bool>>(AssertSqlSafe(format!("SELECT ({condition})")))
        .fetch_one(pool)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// A `backfill` process in the background, its output in files (never a full pipe), killed if
/// the test panics.
struct Runner {
    child: tokio::process::Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

/// What a finished run printed.
struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Finished {
    fn expect_code(&self, code: i32, what: &str) {
        assert_eq!(
            self.status.code(),
            Some(code),
            "{what}: expected exit {code}, got {:?}\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
    }
}

impl Runner {
    fn spawn(url: &str, dir: &TempDir, label: &str, args: &[&str]) -> Runner {
        let stdout = dir.path().join(format!("{label}.stdout"));
        let stderr = dir.path().join(format!("{label}.stderr"));
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_backfill"))
            .args(["--database-url", url])
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("create the stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("create the stderr file"))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn backfill");
        Runner {
            child,
            stdout,
            stderr,
        }
    }

    fn output(&self, status: ExitStatus) -> Finished {
        Finished {
            status,
            stdout: std::fs::read_to_string(&self.stdout).unwrap_or_default(),
            stderr: std::fs::read_to_string(&self.stderr).unwrap_or_default(),
        }
    }

    /// Polls `condition` until it holds; fails with the runner's output if it exits first.
    async fn wait_until(&mut self, pool: &PgPool, condition: &str) {
        let deadline = Instant::now() + WAIT;
        while !holds(pool, condition).await {
            if let Some(status) = self.child.try_wait().expect("poll the runner") {
                let out = self.output(status);
                panic!(
                    "backfill exited ({:?}) before `{condition}` held\nstdout:\n{}\nstderr:\n{}",
                    out.status, out.stdout, out.stderr
                );
            }
            assert!(
                Instant::now() < deadline,
                "`{condition}` did not hold within {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn finish(mut self) -> Finished {
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("backfill did not exit in time")
            .expect("wait for backfill");
        self.output(status)
    }
}

fn run_to_end(url: &str, job: &str) -> Finished {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_backfill"))
        .args(["--database-url", url, "run", job])
        .env("NO_COLOR", "1")
        .output()
        .expect("run backfill");
    Finished {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_restart_mid_run_is_ridden_out() {
    let (cluster, pool) = own_cluster().await;
    create_items(&pool, 100_000).await;
    let dir = TempDir::new().unwrap();
    let job = items_job(
        &dir,
        "total IS NULL",
        "size = 1000\nmin = 1000\nmax = 1000\npause = \"30ms\"",
    );
    let url = cluster.url("postgres");
    let mut runner = Runner::spawn(&url, &dir, "run", &["run", "--json", job.to_str().unwrap()]);
    runner
        .wait_until(
            &pool,
            "(SELECT rows_done > 0 FROM backfill.jobs WHERE name = 'items_total')",
        )
        .await;
    assert!(
        rows_done(&pool).await < 100_000,
        "the run ended before the restart"
    );

    on_cluster(&cluster, "restart", Cluster::restart).await;

    let out = runner.finish().await;
    out.expect_code(0, "run across a restart");
    assert_eq!(wrong_items(&pool).await, 0);
    assert_eq!(rows_done(&pool).await, 100_000);
    let reconnected = out
        .stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .any(|event| event["event"] == "retry" && event["reconnecting"] == true);
    assert!(
        reconnected,
        "no retry event with reconnecting: true\nstdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_down_past_the_bound_stops_with_the_checkpoint_intact() {
    let (cluster, pool) = own_cluster().await;
    create_items(&pool, 100_000).await;
    let dir = TempDir::new().unwrap();
    let job = items_job(
        &dir,
        "total IS NULL",
        "size = 1000\nmin = 1000\nmax = 1000\npause = \"30ms\"",
    );
    let job = job.to_str().unwrap();
    let url = cluster.url("postgres");
    let mut runner = Runner::spawn(
        &url,
        &dir,
        "bounded",
        &["run", "--reconnect-timeout", "3s", job],
    );
    runner
        .wait_until(
            &pool,
            "(SELECT rows_done > 0 FROM backfill.jobs WHERE name = 'items_total')",
        )
        .await;

    // Measured from before the stop: the first lost batch comes after it.
    let stopping = Instant::now();
    on_cluster(&cluster, "stop", Cluster::stop).await;
    let out = runner.finish().await;
    let waited = stopping.elapsed();
    out.expect_code(1, "run with the database gone");
    assert!(
        out.stderr.contains("could not get it back within")
            && out.stderr.contains("checkpoint is intact"),
        "stderr:\n{}",
        out.stderr
    );
    // At least the bound; at most the bound plus one capped (10 s) backoff and some slack.
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(20),
        "gave up after {waited:?} with a 3s bound"
    );

    on_cluster(&cluster, "start", Cluster::start_again).await;
    pool.close().await;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await
        .expect("reconnect after the restart");
    let done = rows_done(&pool).await;
    let changed = number(&pool, "SELECT count(*) FROM items WHERE total IS NOT NULL").await;
    assert!(done > 0 && done < 100_000, "rows_done {done}");
    assert_eq!(done, changed, "rows_done against the rows really changed");
    assert_eq!(
        number(
            &pool,
            "SELECT count(*) FROM items WHERE total IS NOT NULL AND total <> qty::bigint * price"
        )
        .await,
        0
    );
    // Exactly the rows up to the stored cursor are done.
    assert_eq!(
        number(
            &pool,
            "SELECT count(*) FROM items, backfill.jobs j WHERE j.name = 'items_total' \
             AND (id <= (j.cursor->>0)::bigint) <> (total IS NOT NULL)"
        )
        .await,
        0,
        "rows on the wrong side of the stored cursor"
    );

    run_to_end(&url, job).expect_code(0, "run after the server came back");
    assert_eq!(wrong_items(&pool).await, 0);
    assert_eq!(rows_done(&pool).await, 100_000);
}

/// xorshift64: a small deterministic generator, so that a failing run can be replayed from its
/// printed seed (`BACKFILL_STRESS_SEED`).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_kill_9s_at_random_moments_update_every_row_exactly_once() {
    const ROWS: i64 = 300_000;
    let (cluster, pool) = own_cluster().await;
    create_items(&pool, ROWS).await;
    let dir = TempDir::new().unwrap();
    // `where = "true"`: the filter does not hide a row changed twice, so the trigger's counter
    // sees any batch that was applied but not checkpointed.
    let job = items_job(
        &dir,
        "true",
        "size = 1000\nmin = 1000\nmax = 1000\npause = \"2ms\"",
    );
    let job = job.to_str().unwrap();
    let url = cluster.url("postgres");
    let seed = std::env::var("BACKFILL_STRESS_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |since| since.as_nanos() as u64)
                | 1
        });
    println!("kill -9 stress: BACKFILL_STRESS_SEED={seed}");
    let mut rng = XorShift(seed);
    let mut kills = Vec::new();
    for round in 0..20 {
        let delay = Duration::from_millis(rng.next() % 401);
        let mut runner = Runner::spawn(&url, &dir, &format!("kill{round}"), &["run", job]);
        tokio::time::sleep(delay).await;
        if let Some(status) = runner.child.try_wait().expect("poll the runner") {
            let out = runner.output(status);
            panic!(
                "round {round}: backfill exited before the kill\nstdout:\n{}\nstderr:\n{}",
                out.stdout, out.stderr
            );
        }
        runner.child.start_kill().expect("SIGKILL backfill");
        let status = runner.child.wait().await.expect("reap backfill");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "round {round}: {status:?}"
        );
        // One snapshot: the checkpoint counts exactly the rows changed so far. `None` while
        // the runs are killed before they create the state table.
        let done: Option<i64> =
            sqlx::query_scalar("SELECT rows_done FROM backfill.jobs WHERE name = 'items_total'")
                .fetch_optional(&pool)
                .await
                .ok()
                .flatten();
        if done.is_some() {
            let (stored, changed): (i64, i64) = sqlx::query_as(
                "SELECT (SELECT rows_done FROM backfill.jobs WHERE name = 'items_total'),                         (SELECT count(*) FROM items WHERE updates > 0)",
            )
            .fetch_one(&pool)
            .await
            .expect("read the checkpoint and the changed rows");
            assert_eq!(
                stored, changed,
                "round {round} (delay {delay:?}, seed {seed}): rows_done against rows changed"
            );
        }
        kills.push((delay.as_millis(), done));
    }
    println!("kill delays (ms) and rows_done after each kill: {kills:?}");

    run_to_end(&url, job).expect_code(0, "final run after 20 kills");
    assert_eq!(wrong_items(&pool).await, 0);
    let (min, max): (i32, i32) = sqlx::query_as("SELECT min(updates), max(updates) FROM items")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        (min, max),
        (1, 1),
        "every row updated exactly once (seed {seed})"
    );
    assert_eq!(rows_done(&pool).await, ROWS, "seed {seed}");
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_holds_at_most_three_connections_and_names_them() {
    let (cluster, pool) = own_cluster().await;
    create_items(&pool, 3_000).await;
    let dir = TempDir::new().unwrap();
    let job = items_job(
        &dir,
        "total IS NULL",
        "size = 100\nmin = 100\nmax = 100\npause = \"100ms\"",
    );
    let url = cluster.url("postgres");
    let mut runner = Runner::spawn(&url, &dir, "slow", &["run", job.to_str().unwrap()]);
    let mut samples = std::collections::BTreeMap::<i64, u32>::new();
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = runner.child.try_wait().expect("poll the runner") {
            break status;
        }
        assert!(Instant::now() < deadline, "the slow run did not end");
        let sessions = number(
            &pool,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'backfill:%'",
        )
        .await;
        *samples.entry(sessions).or_default() += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    runner.output(status).expect_code(0, "slow run");
    assert_eq!(wrong_items(&pool).await, 0);
    println!("backfill sessions seen (count → samples): {samples:?}");
    let most = samples.keys().max().copied().unwrap_or(0);
    assert!(most <= 3, "more than three connections: {samples:?}");
    assert!(
        samples.contains_key(&2),
        "never saw the batch and heartbeat sessions named backfill:items_total: {samples:?}"
    );
    drop(cluster);
}
