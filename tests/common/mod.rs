//! The integration tests' harness: one PostgreSQL server per test binary, a database of its own
//! for every test, the real `backfill` binary, and the helpers the test files share.
//!
//! The server is a scratch [`Cluster`] started on first use and shared by every test in the
//! binary. It lives in a `static` and is never dropped: its watchdog removes it when the test
//! process exits. Set `BACKFILL_TEST_DATABASE_URL` to use an existing server instead; the URL
//! names the database to connect to for `CREATE DATABASE` (the role needs `CREATEDB`), and the
//! databases the tests create there are left behind for inspection. A test that stops or
//! restarts its server takes a cluster of its own instead ([`own_cluster`]).
//!
//! Besides: `backfill` run to completion ([`run_backfill`]) or in the background ([`Runner`]),
//! scalar checks in SQL ([`number`], [`holds`], [`schema_exists`]), the server's version and
//! the tests that cannot run on it ([`server_version`], [`runs_on`]), the `items` table that
//! several files fill ([`create_items`], [`count_updates`], [`items_job`], [`wrong_items`]), the
//! `--json` events ([`events`]) and a seeded generator ([`XorShift`]). Every other table and job
//! is the test's own. [`watched`] has what the tests of the monitor's signals check of a run;
//! [`node`] runs the Drizzle examples with their npm dependencies.

// Every test binary includes this module and uses a different part of it.
#![allow(dead_code)]

pub mod browser;
pub mod kills;
pub mod mysql;
pub mod node;
pub mod orders;
mod runner;
pub mod served;
pub mod watched;
pub mod yielding;

use std::io::Write as _;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use backfill::postgres::throwaway::{Cluster, ClusterOptions};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tempfile::TempDir;

pub use runner::Runner;

/// How long what a test sets up may take to come true ([`wait_for`]).
pub const WAIT: Duration = Duration::from_secs(30);

/// How long a [`Runner`] waits for a condition or for its exit, unless told otherwise
/// ([`Runner::within`]): a run that takes 15 s alone can take three times as long beside the
/// other tests of its file and the other versions' lane in CI; a run that hangs still fails.
pub const RUN_WAIT: Duration = Duration::from_secs(120);

/// A database of one test's own, so that tests run in parallel without seeing each other.
pub struct TestDb {
    /// The database's URL, for `backfill --database-url`.
    pub url: String,
    /// A pool on the database, to arrange tables and rows and to check what `backfill` did.
    pub pool: PgPool,
}

/// Creates an empty database with a unique name on the shared server and connects to it.
///
/// The first call in a test binary starts the scratch cluster (about a second).
pub async fn fresh_database() -> TestDb {
    let server = tokio::task::spawn_blocking(Server::get)
        .await
        .unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()));
    let name = unique_database_name();
    let admin_url = server.admin_url();
    let mut admin = PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|error| panic!("connect to the test server at {admin_url}: {error}"));
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|error| panic!("create the test database {name}: {error}"));
    let _ = admin.close().await;
    let url = server.url(&name);
    let pool = PgPoolOptions::new()
        .max_connections(5)
        .connect(&url)
        .await
        .unwrap_or_else(|error| panic!("connect to the test database {url}: {error}"));
    TestDb { url, pool }
}

/// Runs the real `backfill` binary with `args` to completion, colours off.
///
/// This blocks; a test that must act while `backfill` runs (take a lock, press Ctrl-C) spawns
/// [`backfill_command`] instead.
pub fn backfill(args: &[&str]) -> Output {
    backfill_command(args)
        .output()
        .unwrap_or_else(|error| panic!("run {}: {error}", env!("CARGO_BIN_EXE_backfill")))
}

/// The real `backfill` binary with `args` and colours off, not yet started.
pub fn backfill_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_backfill"));
    command.args(args).env("NO_COLOR", "1");
    command
}

/// Writes a job file `NAME.toml` into `dir` and returns its path, for `backfill run PATH`.
pub fn write_job(dir: &TempDir, name: &str, toml: &str) -> PathBuf {
    let path = dir.path().join(format!("{name}.toml"));
    std::fs::write(&path, toml)
        .unwrap_or_else(|error| panic!("write the job file {}: {error}", path.display()));
    path
}

/// `path` as the `&str` an argument list wants.
pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// A scratch cluster of the test's own (for tests that stop or restart it, or count every
/// session on it), and a small pool on its `postgres` database.
pub async fn own_cluster() -> (Arc<Cluster>, PgPool) {
    own_cluster_with(ClusterOptions::default()).await
}

/// Like [`own_cluster`], with `options` in its `postgresql.conf` (`wal_level = logical`,
/// `archive_mode = on`, a fast `autovacuum_naptime` …).
pub async fn own_cluster_with(options: ClusterOptions) -> (Arc<Cluster>, PgPool) {
    let cluster = tokio::task::spawn_blocking(move || Cluster::start_with(&options))
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

/// A finished `backfill` process, with what it printed.
pub struct Finished {
    /// How it exited.
    pub status: ExitStatus,
    /// What it printed on stdout.
    pub stdout: String,
    /// What it printed on stderr.
    pub stderr: String,
}

impl Finished {
    /// The exit status and both streams of `output`, as text.
    pub fn from_output(output: Output) -> Finished {
        Finished {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Panics with everything the process printed unless it exited with `code`.
    pub fn expect_code(&self, code: i32, what: &str) {
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

/// `backfill --database-url URL ARGS…`, run to completion.
pub fn run_backfill(url: &str, args: &[&str]) -> Finished {
    let mut all = vec!["--database-url", url];
    all.extend_from_slice(args);
    Finished::from_output(backfill(&all))
}

/// Polls `condition` (a SQL boolean, see [`holds`]) until it holds, for at most [`WAIT`]: for
/// what the test sets up before `backfill` runs.
pub async fn wait_for(pool: &PgPool, condition: &str) {
    let deadline = Instant::now() + WAIT;
    while !holds(pool, condition).await {
        assert!(
            Instant::now() < deadline,
            "`{condition}` did not hold within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One number from a query written by the test.
pub async fn number(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(AssertSqlSafe(sql.to_owned()))
        .fetch_one(pool)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"))
}

/// True when the SQL boolean `condition` holds; false also while it cannot be evaluated (the
/// state table is created by the first run, the server is restarting).
pub async fn holds(pool: &PgPool, condition: &str) -> bool {
    sqlx::query_scalar::<_, Option<bool>>(AssertSqlSafe(format!("SELECT ({condition})")))
        .fetch_one(pool)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// True when the schema `schema` exists (a command that must write nothing must not create
/// the state schema).
pub async fn schema_exists(pool: &PgPool, schema: &str) -> bool {
    sqlx::query_scalar("SELECT to_regnamespace($1) IS NOT NULL")
        .bind(schema)
        .fetch_one(pool)
        .await
        .expect("look for a schema")
}

/// The `server_version_num` of the server behind `pool` (`160004` for 16.4).
pub async fn server_version(pool: &PgPool) -> u32 {
    let num = number(pool, "SELECT current_setting('server_version_num')::int8").await;
    u32::try_from(num).expect("server_version_num is a positive number")
}

/// Whether the calling test can run on the server behind `pool`, whose `server_version_num` must
/// be within `versions` (`140000..` for 14 and newer) because of what it `needs`. When it
/// cannot, the test is reported as skipped rather than silently passed: a line on stderr (shown
/// by `--nocapture`) and one in the file `BACKFILL_SKIPPED` names, which `.ci/run` counts into
/// each version's summary. The test then returns at once:
///
/// ```text
/// if !runs_on(&db.pool, 140000.., "pg_stat_wal (PostgreSQL 14)").await { return; }
/// ```
pub async fn runs_on(pool: &PgPool, versions: impl RangeBounds<u32>, needs: &str) -> bool {
    let version = server_version(pool).await;
    if versions.contains(&version) {
        return true;
    }
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    let line = format!(
        "{}::{test}: needs {needs}, the server is {}\n",
        env!("CARGO_CRATE_NAME"),
        backfill::postgres::version_name(version)
    );
    eprint!("skipped {line}");
    if let Some(path) = std::env::var_os("BACKFILL_SKIPPED").filter(|path| !path.is_empty()) {
        // One write of one short line with O_APPEND: tests running at once do not interleave.
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut file| file.write_all(line.as_bytes()))
            .unwrap_or_else(|error| panic!("record the skip in {path:?}: {error}"));
    }
    false
}

/// `items(id bigint primary key, qty, price, total)` with `total` NULL in rows `1..=rows`.
pub async fn create_items(pool: &PgPool, rows: i64) {
    sqlx::raw_sql(
        "CREATE TABLE items (id bigint PRIMARY KEY, qty int NOT NULL, price int NOT NULL, total bigint)",
    )
    .execute(pool)
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

/// Adds `items.updates`, which a BEFORE UPDATE trigger raises on every UPDATE of a row: a row
/// updated twice shows.
pub async fn count_updates(pool: &PgPool) {
    sqlx::raw_sql(
        "ALTER TABLE items ADD COLUMN updates int NOT NULL DEFAULT 0;
         CREATE FUNCTION count_update() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN NEW.updates := OLD.updates + 1; RETURN NEW; END $$;
         CREATE TRIGGER count_update BEFORE UPDATE ON items
           FOR EACH ROW EXECUTE FUNCTION count_update();",
    )
    .execute(pool)
    .await
    .expect("add the update counter");
}

/// A job file for `items`: `total = qty * price` on the rows that `filter` selects, with
/// `batch` as the `[batch]` table's body.
pub fn items_job(filter: &str, batch: &str) -> String {
    format!(
        "table = \"public.items\"\nwhere = \"{filter}\"\n\n[set]\ntotal = \"qty * price\"\n\n[batch]\n{batch}\n"
    )
}

/// Rows of `items` whose `total` is not `qty * price`.
pub async fn wrong_items(pool: &PgPool) -> i64 {
    number(
        pool,
        "SELECT count(*) FROM items WHERE total IS DISTINCT FROM qty::bigint * price",
    )
    .await
}

/// Every item filled with `qty * price` and updated exactly once (by [`count_updates`]'s
/// counter), and the job's `rows_done` says `rows`.
pub async fn assert_all_done_once(pool: &PgPool, rows: i64) {
    assert_eq!(wrong_items(pool).await, 0, "rows left wrong");
    let twice = number(pool, "SELECT count(*) FROM items WHERE updates <> 1").await;
    assert_eq!(twice, 0, "rows not updated exactly once");
    let done = number(pool, "SELECT rows_done FROM backfill.jobs").await;
    assert_eq!(done, rows);
    let updates = number(pool, "SELECT sum(updates)::int8 FROM items").await;
    println!("exactly once: {rows} rows right, {updates} updates in all, rows_done {done}");
}

/// The NDJSON events of `run --json`, one a line; panics on a line that is not JSON.
pub fn events(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("not a JSON line: {line:?}: {error}"))
        })
        .collect()
}

/// xorshift64: a small deterministic generator, so that a run can be replayed from its seed.
pub struct XorShift(pub u64);

impl XorShift {
    /// The next number of the sequence (never 0 for a seed that is not 0).
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// One of `items`.
    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// The server every test of this binary shares.
enum Server {
    /// A throwaway cluster of our own.
    Scratch(Cluster),
    /// `BACKFILL_TEST_DATABASE_URL`: an existing server, reached through the database it names.
    Existing(String),
}

impl Server {
    /// The shared server, started by the first caller (blocking; the others wait for it).
    fn get() -> &'static Server {
        static SERVER: OnceLock<Server> = OnceLock::new();
        SERVER.get_or_init(|| match std::env::var("BACKFILL_TEST_DATABASE_URL") {
            Ok(url) if !url.is_empty() => Server::Existing(url),
            _ => Server::Scratch(Cluster::start().unwrap_or_else(|error| {
                panic!(
                    "start a scratch PostgreSQL for the tests: {error}\n\
                     (or set BACKFILL_TEST_DATABASE_URL to an existing server)"
                )
            })),
        })
    }

    /// Where to connect to create databases.
    fn admin_url(&self) -> String {
        match self {
            Server::Scratch(cluster) => cluster.url("postgres"),
            Server::Existing(url) => url.clone(),
        }
    }

    /// The URL of `database` on this server.
    fn url(&self, database: &str) -> String {
        match self {
            Server::Scratch(cluster) => cluster.url(database),
            Server::Existing(url) => with_database(url, database),
        }
    }
}

/// `backfill_test_PID_N_NANOS`: unique across the tests of one run, and across runs that share
/// an existing server.
fn unique_database_name() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.subsec_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("backfill_test_{}_{n}_{nanos}", std::process::id())
}

/// `url` with its database (the path) replaced by `database`, keeping user, host and query:
/// `postgres://u@h:5432/postgres?sslmode=disable` → `postgres://u@h:5432/DATABASE?sslmode=disable`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority = base.find("://").map_or(0, |scheme_end| scheme_end + 3);
    let path = base[authority..]
        .find('/')
        .map_or(base.len(), |slash| authority + slash);
    format!("{}/{database}{query}", &base[..path])
}
