//! `backfill run` behind a real PgBouncer in transaction mode (ARCHITECTURE.md), with other clients
//! sharing the same two server connections: every statement must be unnamed and inside an
//! explicit transaction, and no `extra_float_digits` may be sent at startup, or the run fails
//! with "prepared statement … already exists" or reads another client's result.
//!
//! Needs `/usr/sbin/pgbouncer` (Debian's `pgbouncer` package; `.ci/run` installs it).

mod common;

use std::collections::BTreeSet;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::str::FromStr as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{
    XorShift, create_items, events, number, own_cluster, run_backfill, write_job, wrong_items,
};
use serde_json::Value;
use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, ConnectOptions as _, Connection as _, Executor as _, PgConnection};
use tempfile::TempDir;

const PGBOUNCER: &str = "/usr/sbin/pgbouncer";

/// A PgBouncer process in front of one server, stopped and removed on drop.
struct PgBouncer {
    child: Child,
    dir: TempDir,
    port: u16,
}

impl PgBouncer {
    /// Starts PgBouncer in transaction mode with two server connections per database and user,
    /// in front of `127.0.0.1:server_port`. As root it runs as `postgres` (it refuses root),
    /// with its files in a directory `postgres` owns.
    fn start(server_port: u16) -> PgBouncer {
        assert!(
            Path::new(PGBOUNCER).is_file(),
            "{PGBOUNCER} is missing: apt-get install pgbouncer"
        );
        let dir = TempDir::new().expect("create the PgBouncer directory");
        let port = TcpListener::bind(("127.0.0.1", 0))
            .and_then(|listener| listener.local_addr())
            .expect("find a free port")
            .port();
        let d = dir.path().display();
        let config = dir.path().join("pgbouncer.ini");
        std::fs::write(
            &config,
            format!(
                "[databases]\n* = host=127.0.0.1 port={server_port}\n\n[pgbouncer]\n\
                 listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir = {d}\n\
                 auth_type = trust\nauth_file = {d}/userlist.txt\npool_mode = transaction\n\
                 default_pool_size = 2\nmax_client_conn = 100\n\
                 logfile = {d}/pgbouncer.log\npidfile = {d}/pgbouncer.pid\n"
            ),
        )
        .expect("write pgbouncer.ini");
        std::fs::write(dir.path().join("userlist.txt"), "\"postgres\" \"\"\n")
            .expect("write userlist.txt");
        let is_root = std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0);
        let mut command = if is_root {
            let (uid, gid) = postgres_ids();
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("give the PgBouncer directory to postgres");
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--", PGBOUNCER]);
            command
        } else {
            Command::new(PGBOUNCER)
        };
        let child = command
            .arg(&config)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr")).expect("create stderr"))
            .spawn()
            .expect("start pgbouncer");
        let mut bouncer = PgBouncer { child, dir, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = bouncer.child.try_wait().expect("poll pgbouncer") {
                panic!("pgbouncer exited ({status}):\n{}", bouncer.log());
            }
            assert!(
                Instant::now() < deadline,
                "pgbouncer did not listen:\n{}",
                bouncer.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        bouncer
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    fn log(&self) -> String {
        ["stderr", "pgbouncer.log"]
            .iter()
            .map(|file| std::fs::read_to_string(self.dir.path().join(file)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for PgBouncer {
    /// SIGTERM to PgBouncer itself (under `runuser` our child is its parent), then reap.
    fn drop(&mut self) {
        let pid = std::fs::read_to_string(self.dir.path().join("pgbouncer.pid"))
            .ok()
            .map(|pid| pid.trim().to_owned())
            .filter(|pid| !pid.is_empty())
            .unwrap_or_else(|| self.child.id().to_string());
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The uid and gid of `postgres` in `/etc/passwd`.
fn postgres_ids() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.len() > 3 && fields[0] == "postgres")
                .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
                .flatten()
        })
        .expect("a postgres user in /etc/passwd")
}

/// A client of the pool that stays out of PgBouncer's way as backfill must: no
/// `extra_float_digits`, no statement cache.
async fn client(url: &str) -> PgConnection {
    PgConnectOptions::from_str(url)
        .expect("parse the PgBouncer URL")
        .extra_float_digits(None)
        .statement_cache_capacity(0)
        .application_name("hammer")
        .connect()
        .await
        .expect("connect through PgBouncer")
}

/// Short transactions on random rows until `stop`: an UPDATE of another column (simple
/// protocol) and a SELECT (an unnamed statement in an explicit transaction). Returns how many
/// transactions it committed and the server backends that ran its SELECTs.
async fn hammer(url: String, seed: u64, stop: Arc<AtomicBool>) -> (u64, BTreeSet<i32>) {
    let mut conn = client(&url).await;
    let mut rng = XorShift(seed);
    let mut done = 0;
    let mut backends = BTreeSet::new();
    while !stop.load(Ordering::Relaxed) {
        let id = (rng.next() % 50_000 + 1) as i64;
        let update = format!(
            "BEGIN; UPDATE items SET touched = touched + 1 WHERE id = {id}; \
             SELECT count(*) FROM items WHERE id BETWEEN {id} AND {id} + 100; COMMIT"
        );
        sqlx::raw_sql(AssertSqlSafe(update))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|error| panic!("hammer UPDATE through PgBouncer: {error}"));
        let mut tx = conn.begin().await.expect("hammer BEGIN");
        let (qty, backend): (i32, i32) =
            sqlx::query_as("SELECT qty, pg_backend_pid() FROM items WHERE id = $1")
                .bind(id)
                .persistent(false)
                .fetch_one(&mut *tx)
                .await
                .unwrap_or_else(|error| panic!("hammer SELECT through PgBouncer: {error}"));
        assert_eq!(qty, (id % 7 + 1) as i32, "another client's result");
        tx.commit().await.expect("hammer COMMIT");
        backends.insert(backend);
        done += 2;
    }
    (done, backends)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_behind_pgbouncer_transaction_pooling_shares_the_pool_and_finishes() {
    run_behind_pgbouncer(&[]).await;
}

/// Two workers behind the same two server connections: their claims, splits and checkpoints
/// are unnamed statements in explicit transactions too, and they share the pool with the
/// monitor, the heartbeat and four other clients.
#[tokio::test(flavor = "multi_thread")]
async fn two_workers_behind_pgbouncer_share_the_pool_and_finish() {
    run_behind_pgbouncer(&["--workers", "2"]).await;
}

/// `backfill run --json ARGS` of 50 000 rows through a PgBouncer of two server connections
/// while four other clients hammer it: every row filled, no error or retry, no server
/// connection thrown away, and the table vacuumed along the way and at the end (pacing every
/// 10 000 rows, the default's floor).
async fn run_behind_pgbouncer(args: &[&str]) {
    let (cluster, direct) = own_cluster().await;
    create_items(&direct, 50_000).await;
    direct
        .execute("ALTER TABLE items ADD COLUMN touched int NOT NULL DEFAULT 0")
        .await
        .expect("add the column the hammers update");
    let port = cluster.port();
    let bouncer = tokio::task::spawn_blocking(move || PgBouncer::start(port))
        .await
        .unwrap();
    let url = bouncer.url("postgres");

    let stop = Arc::new(AtomicBool::new(false));
    let hammers: Vec<_> = (1..=4u64)
        .map(|n| {
            tokio::spawn(hammer(
                url.clone(),
                n.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                stop.clone(),
            ))
        })
        .collect();

    let dir = TempDir::new().unwrap();
    let job = write_job(
        &dir,
        "items_total",
        "table = \"items\"\nwhere = \"total IS NULL\"\n[set]\ntotal = \"qty * price\"\n\
         [batch]\nsize = 500\nmin = 500\nmax = 500\n",
    );
    let mut run_args: Vec<String> = ["run", "--json"].map(String::from).to_vec();
    run_args.extend(args.iter().map(|a| (*a).to_owned()));
    run_args.push(job.to_str().unwrap().to_owned());
    let run_url = url.clone();
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = run_args.iter().map(String::as_str).collect();
        run_backfill(&run_url, &args)
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    let mut transactions = Vec::new();
    let mut backends = BTreeSet::new();
    for hammer in hammers {
        let (done, seen) = hammer.await.expect("a hammer failed");
        transactions.push(done);
        backends.extend(seen);
    }

    let (stdout, stderr) = (&out.stdout, &out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "backfill behind PgBouncer\nstdout:\n{stdout}\nstderr:\n{stderr}\npgbouncer:\n{}",
        bouncer.log()
    );
    println!("hammer transactions while backfill ran: {transactions:?}, backends {backends:?}");
    // Four clients on at most two server backends: PgBouncer really pools by transaction.
    let log = bouncer.log();
    assert!(
        backends.len() <= 2,
        "not transaction pooling: {backends:?}\npgbouncer:\n{log}"
    );
    // Every session of the run ended between transactions and said goodbye: PgBouncer never
    // had to throw a server connection away because a client vanished inside a transaction.
    let server_closed: Vec<&str> = log
        .lines()
        .filter(|line| line.contains(" S-0x") && line.contains("closing because"))
        .collect();
    assert!(
        server_closed.is_empty(),
        "PgBouncer closed server connections: {server_closed:#?}"
    );
    assert!(
        transactions.iter().all(|&n| n > 0),
        "a hammer never got a transaction in: {transactions:?}"
    );
    // No error on either stream: not on stderr, and no `error` event (or field) in the NDJSON.
    let error_lines: Vec<&str> = stderr
        .lines()
        .chain(stdout.lines())
        .filter(|line| line.to_lowercase().contains("error"))
        .collect();
    assert!(error_lines.is_empty(), "error lines: {error_lines:#?}");
    let retries: Vec<&str> = stdout
        .lines()
        .filter(|line| line.contains("\"event\":\"retry\""))
        .collect();
    assert!(retries.is_empty(), "retries behind PgBouncer: {retries:#?}");
    // The run vacuumed through the pool too: each VACUUM is one statement outside a
    // transaction block, which transaction pooling runs on one server connection.
    let vacuums: Vec<Value> = events(stdout)
        .into_iter()
        .filter(|e| e["event"] == "vacuum")
        .collect();
    let done = |last: bool| {
        vacuums
            .iter()
            .filter(|e| e["final"] == last && e["state"] == "done")
            .count()
    };
    println!(
        "vacuums behind PgBouncer: {} pacing, {} final",
        done(false),
        done(true)
    );
    assert!(done(false) >= 1, "no pacing vacuum: {vacuums:#?}");
    assert_eq!(done(true), 1, "no final vacuum: {vacuums:#?}");
    assert!(
        vacuums
            .iter()
            .all(|e| e["state"] == "done" || e["state"] == "started"),
        "{vacuums:#?}"
    );
    assert_eq!(wrong_items(&direct).await, 0);
    let rows_done = number(
        &direct,
        "SELECT rows_done FROM backfill.jobs WHERE name = 'items_total'",
    )
    .await;
    assert_eq!(rows_done, 50_000);
    drop(bouncer);
    drop(cluster);
}
