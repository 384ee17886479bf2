//! The benchmark's PostgreSQL: one throwaway cluster with production-like durability, a
//! template database per table size, and a fresh copy of it for every scenario.
//!
//! Owns: the server settings, the `orders` table and its contents, creating and dropping
//! databases. Does not own what runs against a copy (the scenarios do).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use backfill::postgres::throwaway::{Cluster, ClusterOptions};
use serde::Serialize;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// The one statement every other way of filling the column is compared with (autocommit).
pub const SINGLE_UPDATE: &str =
    "UPDATE orders SET total_cents = qty::bigint * price_cents WHERE total_cents IS NULL";

/// Settings added after the scratch cluster's fast-and-unsafe defaults, so that they win:
/// durability as in production, enough memory for the largest table, and no checkpoint in the
/// middle of a measurement (each copy is checkpointed before it is timed).
pub const SETTINGS: &[(&str, &str)] = &[
    ("fsync", "on"),
    ("synchronous_commit", "on"),
    ("full_page_writes", "on"),
    ("shared_buffers", "3GB"),
    ("work_mem", "16MB"),
    ("maintenance_work_mem", "512MB"),
    ("max_wal_size", "16GB"),
    ("min_wal_size", "2GB"),
    ("checkpoint_timeout", "1h"),
    ("log_checkpoints", "on"),
    ("log_autovacuum_min_duration", "0"),
];

/// The cluster, its admin connection and the template databases built so far.
pub struct Server {
    cluster: Cluster,
    admin: PgConnection,
    templates: BTreeMap<u64, String>,
    copies: u32,
}

/// A fresh copy of the `orders` table in a database of its own.
pub struct Copy {
    pub name: String,
    pub url: String,
    pub rows: u64,
}

impl Server {
    /// Starts the cluster (blocking: `initdb` and `pg_ctl`) with [`SETTINGS`] and then
    /// `overrides` (the later line wins), and connects to it.
    pub async fn start(overrides: &[(String, String)]) -> Result<Server> {
        let settings = SETTINGS
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .chain(overrides.iter().cloned())
            .collect();
        let cluster =
            tokio::task::spawn_blocking(move || Cluster::start_with(&ClusterOptions { settings }))
                .await?
                .context("start the benchmark's PostgreSQL cluster")?;
        let admin = PgConnection::connect(&cluster.url("postgres")).await?;
        Ok(Server {
            cluster,
            admin,
            templates: BTreeMap::new(),
            copies: 0,
        })
    }

    /// The directory of `pgbench` and the other PostgreSQL programs in use.
    pub fn bindir(&self) -> PathBuf {
        self.cluster.bindir().to_path_buf()
    }

    pub fn port(&self) -> u16 {
        self.cluster.port()
    }

    /// The server's log (the scratch cluster writes it beside its data directory).
    pub fn log_path(&self) -> PathBuf {
        let dir = self
            .cluster
            .data_dir()
            .parent()
            .expect("data dir has a parent");
        dir.join("postgres.log")
    }

    /// `SHOW name` on the admin connection.
    pub async fn show(&mut self, name: &str) -> Result<String> {
        let sql = format!("SELECT current_setting('{name}')");
        Ok(sqlx::query_scalar(AssertSqlSafe(sql))
            .fetch_one(&mut self.admin)
            .await?)
    }

    /// A new database holding the `orders` table of `rows` rows, copied from its template
    /// (built on first use) and checkpointed, so that no earlier work is flushed during the
    /// measurement.
    pub async fn fresh(&mut self, rows: u64) -> Result<Copy> {
        let template = self.template(rows).await?;
        self.copies += 1;
        let name = format!("run_{}", self.copies);
        self.execute(&format!(
            "CREATE DATABASE {name} TEMPLATE {template} STRATEGY = FILE_COPY"
        ))
        .await?;
        self.execute("CHECKPOINT").await?;
        Ok(Copy {
            url: self.cluster.url(&name),
            name,
            rows,
        })
    }

    /// The server's current WAL insert position, to measure the WAL a method writes.
    pub async fn wal_position(&mut self) -> Result<String> {
        Ok(
            sqlx::query_scalar("SELECT pg_current_wal_insert_lsn()::text")
                .fetch_one(&mut self.admin)
                .await?,
        )
    }

    /// Megabytes of WAL written since `position`.
    pub async fn wal_mb_since(&mut self, position: &str) -> Result<f64> {
        let bytes: f64 = sqlx::query_scalar(
            "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1::pg_lsn)::float8",
        )
        .bind(position)
        .fetch_one(&mut self.admin)
        .await?;
        Ok(bytes / 1024.0 / 1024.0)
    }

    /// Drops a copy, ending whatever still runs in it.
    pub async fn discard(&mut self, copy: Copy) -> Result<()> {
        self.execute(&format!("DROP DATABASE {} WITH (FORCE)", copy.name))
            .await
    }

    /// Makes the server log every statement run in `copy`'s database, with its duration.
    pub async fn log_statements(&mut self, copy: &Copy) -> Result<()> {
        let name = &copy.name;
        self.execute(&format!(
            "ALTER DATABASE {name} SET log_min_duration_statement = 0"
        ))
        .await
    }

    /// Drops the templates no longer needed (keeps the one of `keep` rows).
    pub async fn drop_templates_except(&mut self, keep: u64) -> Result<()> {
        let others: Vec<u64> = self
            .templates
            .keys()
            .copied()
            .filter(|&r| r != keep)
            .collect();
        for rows in others {
            let name = self.templates.remove(&rows).expect("listed above");
            self.execute(&format!("DROP DATABASE {name}")).await?;
        }
        Ok(())
    }

    async fn template(&mut self, rows: u64) -> Result<String> {
        if let Some(name) = self.templates.get(&rows) {
            return Ok(name.clone());
        }
        let name = format!("template_{rows}");
        let started = Instant::now();
        self.execute(&format!("CREATE DATABASE {name}")).await?;
        let mut conn = PgConnection::connect(&self.cluster.url(&name)).await?;
        fill_orders(&mut conn, rows).await?;
        conn.close().await?;
        eprintln!(
            "  built the {rows}-row template in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        self.templates.insert(rows, name.clone());
        Ok(name)
    }

    async fn execute(&mut self, sql: &str) -> Result<()> {
        sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
            .execute(&mut self.admin)
            .await
            .with_context(|| format!("run {sql}"))?;
        Ok(())
    }
}

/// Creates and fills `orders` as the expand migration leaves it: `total_cents` is new and
/// NULL everywhere. The key is added after the rows (one sorted index build instead of 8 M
/// inserts into a btree), and `VACUUM (FREEZE, ANALYZE)` sets hint bits and the visibility map,
/// so that no scenario pays for the first reader's clean-up of a freshly loaded table.
async fn fill_orders(conn: &mut PgConnection, rows: u64) -> Result<()> {
    let sql = format!(
        "CREATE TABLE orders (
             id          bigint NOT NULL,
             qty         int    NOT NULL,
             price_cents int    NOT NULL,
             total_cents bigint
         );
         INSERT INTO orders (id, qty, price_cents)
             SELECT g, 1 + g % 7, 100 + g % 9973 FROM generate_series(1, {rows}) AS g;
         ALTER TABLE orders ADD PRIMARY KEY (id);"
    );
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(&mut *conn)
        .await
        .context("build the orders table")?;
    // VACUUM cannot run inside the implicit transaction of a multi-statement query.
    sqlx::raw_sql("VACUUM (FREEZE, ANALYZE) orders")
        .execute(&mut *conn)
        .await
        .context("vacuum the orders table")?;
    Ok(())
}

/// Checks that `label` changed every row of the copy once and that every row holds the right
/// total: a benchmark of a run that skipped rows would measure nothing.
pub async fn check_filled(copy: &Copy, label: &str, changed: u64) -> Result<()> {
    anyhow::ensure!(
        changed == copy.rows,
        "{label} changed {changed} of {} rows",
        copy.rows
    );
    verify(copy).await
}

/// Checks that every row of the copy holds the right total.
async fn verify(copy: &Copy) -> Result<()> {
    let mut conn = PgConnection::connect(&copy.url).await?;
    let wrong: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM orders WHERE total_cents IS DISTINCT FROM qty::bigint * price_cents",
    )
    .fetch_one(&mut conn)
    .await?;
    anyhow::ensure!(
        wrong == 0,
        "{wrong} rows of {} have a wrong total",
        copy.name
    );
    Ok(())
}

/// How much disk `orders` takes, in bytes.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Sizes {
    /// The heap's main fork (`pg_relation_size`): where new row versions go.
    pub heap_bytes: u64,
    /// Heap, free space and visibility maps, TOAST and every index (`pg_total_relation_size`).
    pub total_bytes: u64,
}

/// The copy's `orders` sizes now.
pub async fn sizes(copy: &Copy) -> Result<Sizes> {
    let mut conn = PgConnection::connect(&copy.url).await?;
    let (heap, total): (i64, i64) =
        sqlx::query_as("SELECT pg_relation_size('orders'), pg_total_relation_size('orders')")
            .fetch_one(&mut conn)
            .await?;
    conn.close().await?;
    Ok(Sizes {
        heap_bytes: heap.try_into()?,
        total_bytes: total.try_into()?,
    })
}

/// Runs one statement on its own connection to the copy and times it (autocommit).
pub async fn timed(copy: &Copy, sql: &'static str) -> Result<(Duration, u64)> {
    let mut conn = PgConnection::connect(&copy.url).await?;
    let started = Instant::now();
    let rows = sqlx::raw_sql(sql).execute(&mut conn).await?.rows_affected();
    Ok((started.elapsed(), rows))
}
