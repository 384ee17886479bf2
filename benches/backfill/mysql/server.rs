//! The MySQL section's server: one throwaway MariaDB or MySQL with the benchmark's global
//! variables, the `orders` table built once as a template, and a fresh copy of it, settled, for
//! every window.
//!
//! Owns: the servers' settings, the table and its contents, settling InnoDB before a window
//! (purge done, every dirty page written), checking the filled column, and what the server
//! spent (its CPU time). Does not own what runs against the table (`mysql` and `guides` do) nor
//! the statement log (`slowlog`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use backfill::mysql::throwaway::{self, Flavor};
use sqlx::{AssertSqlSafe, Connection as _, MySqlConnection, Row as _};

/// The table every window fills, re-created from [`TEMPLATE`] before each.
pub const TABLE: &str = "orders";
pub const TEMPLATE: &str = "orders_template";
/// The database the table lives in (the state tables go to `backfill`, as a user's would).
pub const DATABASE: &str = "bench";

/// The expression of every method: the MySQL demo job's (`jobs/demo_orders_mysql.toml`).
pub const EXPR: &str = "CAST(qty AS SIGNED) * price_cents";

/// How long purge and the page cleaner may take to settle a fresh copy.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Settled: at most this much undo left to purge, and this many dirty pages (the state tables
/// and InnoDB's own bookkeeping dirty a few pages now and then; a window writes tens of
/// thousands).
const SETTLED_HISTORY: u64 = 100;
const SETTLED_DIRTY: u64 = 64;

/// Global variables set once the server is up: the throwaway server takes no options, and all
/// of these are dynamic. The buffer pool holds the table, its template and the undo of the
/// single `UPDATE` (128 MB by default: the 2 M-row table alone is ~120 MB). The redo log is
/// large enough (2 GB; ~100 MB by default) that a checkpoint's forced flush does not land in
/// a measurement, as `max_wal_size` on PostgreSQL. `innodb_flush_log_at_trx_commit` stays 1:
/// every commit is durable, as in production.
pub fn settings(flavor: Flavor) -> Vec<(String, String)> {
    let redo = match flavor {
        Flavor::MariaDb => "innodb_log_file_size",
        Flavor::MySql => "innodb_redo_log_capacity",
    };
    [
        ("innodb_buffer_pool_size", "1073741824"),
        (redo, "6442450944"),
        ("innodb_flush_log_at_trx_commit", "1"),
    ]
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .to_vec()
}

/// Read back for the report beside the ones set, as the server has them.
const SHOWN: &[&str] = &[
    "innodb_doublewrite",
    "innodb_flush_method",
    "innodb_io_capacity",
    "innodb_purge_threads",
    "log_bin",
    "performance_schema",
    "transaction_isolation",
    "tx_isolation",
];

/// A started server of one flavor with the template built.
pub struct Bench {
    admin: MySqlConnection,
    pub flavor: Flavor,
    pub version: String,
    /// `mysql://…/bench` (`mariadb://…`), what `backfill --database-url` gets.
    pub url: String,
    pub rows: u64,
    /// The global variables as the server reports them after they were set.
    pub settings: Vec<(String, String)>,
    pid: Option<u32>,
    /// Last, so that it is dropped (and the server killed) after the connection.
    server: throwaway::Server,
}

impl Bench {
    /// Starts a `flavor` server, sets [`settings`] and then `overrides`, and builds the
    /// `rows`-row template; `Ok(Err(why))` when the flavor is not installed.
    pub async fn start(
        flavor: Flavor,
        rows: u64,
        overrides: &[(String, String)],
    ) -> Result<std::result::Result<Bench, String>> {
        let started = tokio::task::spawn_blocking(move || throwaway::Server::start(flavor)).await?;
        let server = match started {
            Ok(server) => server,
            Err(error @ throwaway::Error::NotFound { .. }) => return Ok(Err(error.to_string())),
            Err(error) => return Err(error).context(format!("start a throwaway {flavor}")),
        };
        let mut admin = MySqlConnection::connect(&server.url("")).await?;
        execute(&mut admin, &format!("CREATE DATABASE {DATABASE}")).await?;
        execute(&mut admin, &format!("USE {DATABASE}")).await?;
        let mut bench = Bench {
            flavor,
            version: server.version().to_string(),
            url: server.url(DATABASE),
            pid: None,
            server,
            admin,
            rows,
            settings: Vec::new(),
        };
        let wanted: Vec<_> = settings(flavor)
            .into_iter()
            .chain(overrides.to_vec())
            .collect();
        for (name, value) in &wanted {
            bench.set_global(name, value).await?;
        }
        bench.wait_for_buffer_pool().await?;
        bench.settings = bench.read_settings(&wanted).await?;
        let pid_file: String = bench.scalar("SELECT CAST(@@pid_file AS CHAR)").await?;
        bench.pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|pid| pid.trim().parse().ok());
        bench.build_template().await?;
        Ok(Ok(bench))
    }

    /// The server's port, for messages.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Drops the last window's table and makes a fresh copy of the template, then lets InnoDB
    /// settle: purge finished and every dirty page written, so that no window pays for the
    /// one before (as each PostgreSQL copy is checkpointed before it is timed).
    pub async fn fresh(&mut self) -> Result<()> {
        self.execute(&format!("DROP TABLE IF EXISTS {TABLE}"))
            .await?;
        self.execute(&format!("CREATE TABLE {TABLE} LIKE {TEMPLATE}"))
            .await?;
        self.execute(&format!("INSERT INTO {TABLE} SELECT * FROM {TEMPLATE}"))
            .await?;
        self.execute(&format!("ANALYZE TABLE {TABLE}")).await?;
        self.settle().await
    }

    /// Waits until purge has nothing left (the history list is empty) and the page cleaner has
    /// written every dirty page: `innodb_max_dirty_pages_pct = 0` with the I/O capacity raised
    /// for the while (at its default of 200 pages a second the 2 M-row table takes minutes),
    /// then both put back as they were.
    pub async fn settle(&mut self) -> Result<()> {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        while self.history_length().await? > SETTLED_HISTORY {
            anyhow::ensure!(Instant::now() < deadline, "purge did not finish in time");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let names = [
            "innodb_io_capacity_max",
            "innodb_io_capacity",
            "innodb_max_dirty_pages_pct_lwm",
            "innodb_max_dirty_pages_pct",
        ];
        let mut kept = Vec::new();
        for name in names {
            kept.push(self.global(name).await?);
        }
        let flushing = [("20000", 0), ("20000", 1), ("0", 2), ("0", 3)];
        for (value, i) in flushing {
            self.set_global(names[i], value).await?;
        }
        let flushed = async {
            while self.status("Innodb_buffer_pool_pages_dirty").await? > SETTLED_DIRTY {
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "dirty pages were not written in time"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(())
        }
        .await;
        // Put back in the reverse order: each pair's bound stays consistent on the way.
        for (name, value) in names.iter().zip(&kept).rev() {
            self.set_global(name, value).await?;
        }
        flushed
    }

    /// Checks that every row holds the right total; a window that skipped or mangled rows
    /// would measure nothing.
    pub async fn check_filled(&mut self, label: &str) -> Result<()> {
        let sql = format!(
            "SELECT CAST(COUNT(*) AS SIGNED), \
                    CAST(COALESCE(SUM(total_cents IS NULL OR total_cents <> {EXPR}), 0) AS SIGNED) \
               FROM {TABLE}"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .fetch_one(&mut self.admin)
            .await?;
        let (count, wrong): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
        anyhow::ensure!(
            count as u64 == self.rows && wrong == 0,
            "{label} on {}: {wrong} of {count} rows are not filled right",
            self.flavor
        );
        Ok(())
    }

    /// The server process's CPU time so far (user and system), in seconds; 0 when unknown.
    pub fn cpu_s(&self) -> f64 {
        self.pid.map_or(0.0, crate::runner::process_cpu_s)
    }

    /// The table's clustered index as InnoDB counts it, in MB (after `ANALYZE TABLE`).
    pub async fn table_mb(&mut self) -> Result<f64> {
        let sql = format!(
            "SELECT CAST(DATA_LENGTH + INDEX_LENGTH AS CHAR) FROM information_schema.TABLES \
              WHERE TABLE_SCHEMA = '{DATABASE}' AND TABLE_NAME = '{TABLE}'"
        );
        let bytes: f64 = self.scalar(&sql).await?.parse()?;
        Ok(bytes / 1024.0 / 1024.0)
    }

    /// `SET GLOBAL name = value` (a number or a word, as written).
    pub async fn set_global(&mut self, name: &str, value: &str) -> Result<()> {
        let value = if value.parse::<f64>().is_ok() || value.eq_ignore_ascii_case("DEFAULT") {
            value.to_string()
        } else {
            format!("'{}'", value.replace('\'', "''"))
        };
        self.execute(&format!("SET GLOBAL {name} = {value}")).await
    }

    /// `@@GLOBAL.name` as text.
    pub async fn global(&mut self, name: &str) -> Result<String> {
        self.scalar(&format!("SELECT CAST(@@GLOBAL.{name} AS CHAR)"))
            .await
    }

    /// Runs one statement on the admin connection.
    pub async fn execute(&mut self, sql: &str) -> Result<()> {
        execute(&mut self.admin, sql).await
    }

    async fn scalar(&mut self, sql: &str) -> Result<String> {
        let row = sqlx::query(AssertSqlSafe(sql.to_owned()))
            .fetch_one(&mut self.admin)
            .await
            .with_context(|| format!("run {sql}"))?;
        Ok(row.try_get::<Option<String>, _>(0)?.unwrap_or_default())
    }

    /// A global status counter (`SHOW GLOBAL STATUS LIKE name`).
    async fn status(&mut self, name: &str) -> Result<u64> {
        let sql = format!("SHOW GLOBAL STATUS LIKE '{name}'");
        let row = sqlx::query(AssertSqlSafe(sql))
            .fetch_one(&mut self.admin)
            .await?;
        Ok(row.try_get::<String, _>(1)?.parse()?)
    }

    /// InnoDB's history list: undo that purge has not processed yet.
    async fn history_length(&mut self) -> Result<u64> {
        self.innodb_status("History list length").await
    }

    /// How far the redo log has come, in bytes: a window's redo is the difference.
    pub async fn redo_position(&mut self) -> Result<u64> {
        self.innodb_status("Log sequence number").await
    }

    /// The number on the line of `SHOW ENGINE INNODB STATUS` that starts with `label`: the one
    /// place where both flavors show the history list and the log sequence number.
    async fn innodb_status(&mut self, label: &str) -> Result<u64> {
        let row = sqlx::query("SHOW ENGINE INNODB STATUS")
            .fetch_one(&mut self.admin)
            .await?;
        let text: String = row.try_get(2)?;
        text.lines()
            .find_map(|line| line.strip_prefix(label))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("no {label:?} in SHOW ENGINE INNODB STATUS"))
    }

    /// A buffer pool resize runs in the background: waits until the pool has its new size.
    async fn wait_for_buffer_pool(&mut self) -> Result<()> {
        let wanted: f64 = self.global("innodb_buffer_pool_size").await?.parse()?;
        let page: f64 = self.global("innodb_page_size").await?.parse()?;
        let deadline = Instant::now() + Duration::from_secs(120);
        while (self.status("Innodb_buffer_pool_pages_total").await? as f64) * page < 0.9 * wanted {
            anyhow::ensure!(Instant::now() < deadline, "the buffer pool did not grow");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// The variables set and [`SHOWN`], as the server has them (those it lacks left out).
    async fn read_settings(&mut self, set: &[(String, String)]) -> Result<Vec<(String, String)>> {
        let names = set
            .iter()
            .map(|(n, _)| n.as_str())
            .chain(SHOWN.iter().copied());
        let mut shown = Vec::new();
        for name in names {
            if let Ok(value) = self.global(name).await {
                shown.push((name.to_string(), value));
            }
        }
        Ok(shown)
    }

    /// Creates and fills the template: `orders` as an expand migration leaves it, with a few
    /// columns of an application's beside the new, NULL `total_cents`. Rows are numbered from
    /// a cross join of six sets of the ten digits, a million at a time (MySQL has no
    /// `generate_series`, and caps a recursive CTE at 1000 levels by default).
    async fn build_template(&mut self) -> Result<()> {
        let started = Instant::now();
        self.execute(&format!(
            "CREATE TABLE {TEMPLATE} (
                 id          BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
                 customer_id INT         NOT NULL,
                 qty         INT         NOT NULL,
                 price_cents INT         NOT NULL,
                 status      VARCHAR(16) NOT NULL,
                 sku         VARCHAR(32) NOT NULL,
                 total_cents BIGINT      NULL
             ) ENGINE=InnoDB"
        ))
        .await?;
        let digits = "(SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 \
             UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 \
             UNION ALL SELECT 8 UNION ALL SELECT 9)";
        for offset in (0..self.rows).step_by(1_000_000) {
            let sql = format!(
                "INSERT INTO {TEMPLATE} (id, customer_id, qty, price_cents, status, sku)
                 SELECT n, 1 + n % 50000, 1 + n % 7, 100 + n % 9973,
                        ELT(1 + n % 4, 'paid', 'shipped', 'delivered', 'returned'),
                        CONCAT('SKU-', LPAD(n % 100000, 6, '0'))
                   FROM (SELECT {offset} + 1 + a.d + 10 * b.d + 100 * c.d + 1000 * e.d
                                + 10000 * f.d + 100000 * g.d AS n
                           FROM {digits} a, {digits} b, {digits} c, {digits} e, {digits} f,
                                {digits} g) AS numbers
                  WHERE n <= {}",
                self.rows
            );
            self.execute(&sql).await?;
        }
        eprintln!(
            "  built the {}-row template on {} in {:.1} s",
            self.rows,
            self.flavor,
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }
}

async fn execute(conn: &mut MySqlConnection, sql: &str) -> Result<()> {
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(conn)
        .await
        .with_context(|| {
            format!(
                "run {}",
                sql.split_whitespace().collect::<Vec<_>>().join(" ")
            )
        })?;
    Ok(())
}

/// The whole machine's busy CPU time so far, in seconds.
pub fn machine_cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().next().and_then(|l| l.strip_prefix("cpu ")) else {
        return 0.0;
    };
    let ticks: Vec<u64> = line
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    // user, nice, system, irq, softirq: not idle, iowait, steal, nor guest (counted in user).
    let busy: u64 = [0, 1, 2, 5, 6].iter().filter_map(|&i| ticks.get(i)).sum();
    busy as f64 / 100.0
}

/// Where the slow log of a flavor's profiled windows goes: beside the JSON report, as an
/// absolute path (the server resolves a relative one against its data directory).
pub fn slow_log_path(json: &std::path::Path, flavor: Flavor) -> Result<PathBuf> {
    let name = match flavor {
        Flavor::MariaDb => "mariadb",
        Flavor::MySql => "mysql",
    };
    let path = json.with_extension(format!("{name}.slow.log"));
    Ok(std::env::current_dir()?.join(path))
}
