//! The integration tests' harness: one PostgreSQL server per test binary, a database of its own
//! for every test, and the real `backfill` binary.
//!
//! The server is a scratch [`Cluster`] started on first use and shared by every test in the
//! binary. It lives in a `static` and is never dropped: its watchdog removes it when the test
//! process exits. Set `BACKFILL_TEST_DATABASE_URL` to use an existing server instead; the URL
//! names the database to connect to for `CREATE DATABASE` (the role needs `CREATEDB`), and the
//! databases the tests create there are left behind for inspection.
//!
//! Owns nothing about jobs or tables: each test arranges its own schema through [`TestDb::pool`].

// Every test binary includes this module and uses a different part of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use backfill::scratch::Cluster;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tempfile::TempDir;

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
