//! Replica lag read on the replica (`--replica-url`): a replica whose SQL thread is stopped has
//! no lag to read (`Seconds_Behind_Source` is NULL), and the run pauses, naming it; after
//! `START REPLICA` it finishes, and every row is right on the primary and, once it has caught
//! up, on the replica. MariaDB replicates from a throwaway MariaDB, MySQL from a throwaway
//! MySQL with GTIDs. `--replica-url` is refused on PostgreSQL, and for a URL that is not
//! MySQL's, before anything is contacted.

use backfill::mysql::throwaway::{Flavor, Server};
use sqlx::mysql::MySqlPool;
use sqlx::{Connection as _, MySqlConnection};
use tempfile::TempDir;

use crate::common::mysql::{
    FLAVORS, assert_all_done_once, create_items, exec, start_with, wait_for,
};
use crate::common::watched::assert_clean;
use crate::common::{Runner, backfill, path_str, write_job};
use crate::{held_back, job};

const ROWS: i64 = 2_000;

/// The server options of a primary (server id 1) or its replica (2): a binary log on the
/// primary, and on MySQL GTIDs on both, so that the replica finds its place by itself.
fn options(flavor: Flavor, id: u8) -> Vec<String> {
    let mut options = vec![format!("--server-id={id}")];
    if id == 1 {
        options.push("--log-bin".to_owned());
    }
    if flavor == Flavor::MySql {
        options.extend(["--gtid-mode=ON", "--enforce-gtid-consistency=ON"].map(String::from));
    }
    options
}

/// Starts `replica` replicating everything from the primary on `port`, as the account `repl`
/// the primary has.
async fn replicate(flavor: Flavor, replica: &Server, port: u16) {
    let mut conn = MySqlConnection::connect(&replica.url("")).await.unwrap();
    let source = match flavor {
        Flavor::MariaDb => format!(
            "CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {port}, \
             MASTER_USER = 'repl', MASTER_PASSWORD = 'repl', MASTER_USE_GTID = slave_pos"
        ),
        Flavor::MySql => format!(
            "CHANGE REPLICATION SOURCE TO SOURCE_HOST = '127.0.0.1', SOURCE_PORT = {port}, \
             SOURCE_USER = 'repl', SOURCE_PASSWORD = 'repl', SOURCE_AUTO_POSITION = 1, \
             GET_SOURCE_PUBLIC_KEY = 1"
        ),
    };
    for sql in [source.as_str(), "START REPLICA"] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{flavor}: {sql}: {e}"));
    }
}

/// Waits until the replica has every row of `items` as `condition` (on `items`) says.
async fn caught_up(replica: &MySqlPool, condition: &str) {
    wait_for(
        replica,
        &format!("SELECT COUNT(*) = {ROWS} FROM db.items WHERE {condition}"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_whose_sql_thread_is_stopped_pauses_the_run() {
    for flavor in FLAVORS {
        let primary_options = options(flavor, 1);
        let primary_options: Vec<&str> = primary_options.iter().map(String::as_str).collect();
        let Some(db) = start_with(flavor, &primary_options).await else {
            continue;
        };
        let replica_options = options(flavor, 2);
        let replica_options: Vec<&str> = replica_options.iter().map(String::as_str).collect();
        let replica = Server::start_with(flavor, &replica_options).unwrap();
        exec(
            &db.pool,
            "CREATE USER repl@'127.0.0.1' IDENTIFIED BY 'repl'",
        )
        .await;
        exec(
            &db.pool,
            "GRANT REPLICATION SLAVE ON *.* TO repl@'127.0.0.1'",
        )
        .await;
        create_items(&db.pool, ROWS).await;
        replicate(flavor, &replica, db.server.port()).await;
        let replica_pool = MySqlPool::connect(&replica.url("")).await.unwrap();
        caught_up(&replica_pool, "done IS NULL").await;
        exec(&replica_pool, "STOP REPLICA SQL_THREAD").await;

        let dir = TempDir::new().unwrap();
        let job = write_job(
            &dir,
            "items_total",
            &job("size = 100\nmin = 20\nmax = 100", "0", ""),
        );
        let replica_url = replica.url("");
        let args = [
            "run",
            "--json",
            "--replica-url",
            &replica_url,
            path_str(&job),
        ];
        let mut run = Runner::spawn(&db.url, &dir, "run", &args);
        let reason = held_back(&mut run, flavor, "replica_lag").await;
        let column = match flavor {
            Flavor::MariaDb => "Seconds_Behind_Master",
            Flavor::MySql => "Seconds_Behind_Source",
        };
        assert_eq!(
            reason,
            format!(
                "replica 127.0.0.1:{}: its SQL thread is stopped ({column} is NULL)",
                replica.port()
            ),
            "{flavor}"
        );
        exec(&replica_pool, "START REPLICA").await;
        let out = run.finish().await;
        assert_clean(&out, &format!("{flavor}: run"));
        let password = password(&replica_url);
        assert!(
            !out.stdout.contains(password) && !out.stderr.contains(password),
            "{flavor}: the replica's password was printed:\n{}\n{}",
            out.stdout,
            out.stderr
        );
        assert_all_done_once(&db.pool, ROWS).await;
        caught_up(&replica_pool, "done = v * 2").await;
        let on_replica = MySqlPool::connect(&replica.url("db")).await.unwrap();
        assert_all_done_once(&on_replica, ROWS).await;
    }
}

/// The password in a `scheme://user:password@host/…` URL.
fn password(url: &str) -> &str {
    let userinfo = url.split_once("://").unwrap().1.split_once('@').unwrap().0;
    userinfo.split_once(':').unwrap().1
}

#[test]
fn a_replica_url_is_refused_on_postgresql_and_when_it_is_not_mysql_s() {
    let dir = TempDir::new().unwrap();
    let job = write_job(
        &dir,
        "items_total",
        &job("size = 100\nmin = 20\nmax = 100", "0", ""),
    );
    let job = path_str(&job);
    let on_postgres = backfill(&[
        "--database-url",
        "postgres://app@127.0.0.1:1/shop",
        "run",
        "--replica-url",
        "mysql://watcher:s3cret@replica1:3306/",
        job,
    ]);
    let stderr = String::from_utf8_lossy(&on_postgres.stderr);
    assert_eq!(on_postgres.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("PostgreSQL's replicas are read from pg_stat_replication on the primary"),
        "{stderr}"
    );
    let not_mysql = backfill(&[
        "--database-url",
        "mysql://app@127.0.0.1:1/shop",
        "run",
        "--replica-url",
        "postgres://watcher:s3cret@replica1/shop",
        job,
    ]);
    let stderr = String::from_utf8_lossy(&not_mysql.stderr);
    assert_eq!(not_mysql.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "--replica-url postgres://watcher:***@replica1/shop is not a MySQL or MariaDB URL"
        ),
        "{stderr}"
    );
}
