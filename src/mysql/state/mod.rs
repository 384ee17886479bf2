//! The state tables' statements on MySQL and MariaDB: the schema created here, and one file per
//! table beside it, each an `impl StateSql` that `crate::state`'s API calls with the connection
//! it was given — the counterpart of `postgres::state`, with the same rows and the same
//! outcomes. The types and the rules (who may run, when a lease is live, how a release settles)
//! are `crate::state`'s; only the SQL is here.
//!
//! What differs from PostgreSQL, and why:
//!
//! - **Time** is `DATETIME(6)` written and compared with `UTC_TIMESTAMP(6)` ([`NOW`]), so that
//!   sessions with different `time_zone`s agree on a lease's age, and nothing depends on the
//!   `TIMESTAMP` type's server-dependent defaults or its end in 2038.
//! - **Keys** (`cursor`, `upper`, …) are `LONGTEXT` holding the JSON array we serialise
//!   (`crate::state::stored`), compared as text only for equality (binary collation) and
//!   otherwise in the key's own order, through each column's cast (`RangeSql`).
//! - **Locks.** There are no transaction-scoped advisory locks: the layout is serialised on the
//!   job's row (`SELECT … FOR UPDATE`). Every transaction that locks both the job's row and
//!   range rows takes the job's row first — the checkpoint included — so the two never
//!   deadlock.
//! - **No `RETURNING`** on `UPDATE`: a statement is followed by a `SELECT` in the same
//!   transaction, and `rows_affected` (sqlx sets `CLIENT_FOUND_ROWS`, so it counts the rows
//!   matched) says whether a guard held.
//! - **DDL commits implicitly**, so [`StateSql::ensure`] runs outside any transaction.
//!
//! Every transaction opened here runs at `READ COMMITTED`, as PostgreSQL's do: each statement
//! sees what was committed before it, and no gap locks are taken.

mod checkpoint;
mod failures;
mod heartbeat;
mod jobs;
mod ranges;

use std::ops::Deref;
use std::time::Duration;

use sqlx::mysql::MySqlDatabaseError;
use sqlx::{Connection as _, MySql, MySqlConnection, Row as _, Transaction};

use crate::mysql::session::statement;
use crate::mysql::sql::Ident;
use crate::state::{StateError, Store};

pub use crate::mysql::sql::quoted;
pub use checkpoint::RangeSql;

/// The database's clock, in UTC with microseconds: what every `*_at` column is written with
/// and every age is measured against.
const NOW: &str = "UTC_TIMESTAMP(6)";

/// Seconds from the `DATETIME(6)` expression `at` to [`NOW`], as a `DOUBLE` (`NULL` when `at`
/// is).
fn age(at: &str) -> String {
    format!("TIMESTAMPDIFF(MICROSECOND, {at}, {NOW}) / 1e6")
}

/// The statements of one [`Store`] on MySQL and MariaDB.
pub struct StateSql<'s>(pub &'s Store);

impl Deref for StateSql<'_> {
    type Target = Store;

    fn deref(&self) -> &Store {
        self.0
    }
}

/// Which of the state tables exist: `ensure` creates them one after the other, so a first run
/// cut off half-way leaves some.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tables {
    jobs: bool,
    ranges: bool,
    failures: bool,
}

impl Tables {
    /// Everything this version uses is there.
    fn current(&self) -> bool {
        self.jobs && self.ranges && self.failures
    }
}

/// What a transaction of ours may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Read,
    Write,
}

/// Opens a transaction at `READ COMMITTED` on `conn`, in one round trip.
async fn begin(
    conn: &mut MySqlConnection,
    mode: Mode,
) -> Result<Transaction<'_, MySql>, sqlx::Error> {
    conn.begin_with(match mode {
        Mode::Read => "SET TRANSACTION ISOLATION LEVEL READ COMMITTED; START TRANSACTION READ ONLY",
        Mode::Write => "SET TRANSACTION ISOLATION LEVEL READ COMMITTED; START TRANSACTION",
    })
    .await
}

/// Runs what follows with the session's `variable` (a lock wait, in seconds) set to `timeout`,
/// keeping the session's own value in a user variable for [`restore_wait`]: one round trip.
async fn bound_wait(
    conn: &mut MySqlConnection,
    variable: &'static str,
    timeout: Duration,
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "SET @backfill_{variable} = @@SESSION.{variable}, SESSION {variable} = {}",
        crate::mysql::session::seconds(timeout)
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(conn)
        .await?;
    Ok(())
}

/// Gives the session back its own `variable`, as [`bound_wait`] kept it.
async fn restore_wait(
    conn: &mut MySqlConnection,
    variable: &'static str,
) -> Result<(), sqlx::Error> {
    let sql = format!("SET SESSION {variable} = @backfill_{variable}");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(conn)
        .await?;
    Ok(())
}

impl StateSql<'_> {
    /// Which of the state tables exist (`information_schema`, whose name columns are cast:
    /// MySQL 9 types them `VARBINARY`).
    async fn tables(&self, conn: &mut MySqlConnection) -> Result<Tables, StateError> {
        let names: Vec<String> = statement(
            "SELECT CAST(TABLE_NAME AS CHAR) FROM information_schema.TABLES \
              WHERE TABLE_SCHEMA = ? AND TABLE_NAME IN ('jobs', 'ranges', 'failures')",
        )
        .bind(&self.schema)
        .fetch_all(conn)
        .await
        .map_err(self.db("read"))?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()
        .map_err(self.db("read"))?;
        let has = |name: &str| names.iter().any(|n| n == name);
        Ok(Tables {
            jobs: has("jobs"),
            ranges: has("ranges"),
            failures: has("failures"),
        })
    }

    /// Creates the schema (a MySQL database) and the tables if they are missing.
    ///
    /// Looks before it creates, so that a role without the right to create anything runs
    /// jobs in a schema made for it. DDL commits on its own on MySQL, so the statements run
    /// outside any transaction, each `IF NOT EXISTS`: two first runs at once both succeed,
    /// the server's metadata locks letting one create and the other find. Each statement
    /// waits at most `lock_timeout` (whole seconds, at least one) for its metadata locks
    /// (`lock_wait_timeout`), then the session gets its own limit back.
    pub async fn ensure(
        &self,
        conn: &mut MySqlConnection,
        lock_timeout: Duration,
    ) -> Result<(), StateError> {
        if self.tables(conn).await?.current() {
            return Ok(());
        }
        bound_wait(conn, "lock_wait_timeout", lock_timeout)
            .await
            .map_err(self.db("create"))?;
        let created = self.create(conn).await;
        let restored = restore_wait(conn, "lock_wait_timeout").await;
        created?;
        restored.map_err(self.db("create"))
    }

    async fn create(&self, conn: &mut MySqlConnection) -> Result<(), StateError> {
        for sql in self.ddl() {
            statement(&sql)
                .execute(&mut *conn)
                .await
                .map_err(self.db("create"))?;
        }
        Ok(())
    }

    /// The statements that create the schema and its tables, in the order their foreign keys
    /// need. Text is `utf8mb4` with a binary collation: owners, statuses and stored keys
    /// compare exactly, as PostgreSQL's `text` and `jsonb` do.
    fn ddl(&self) -> [String; 4] {
        let (jobs, ranges) = (&self.jobs, &self.ranges);
        let table = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin";
        [
            format!(
                "CREATE DATABASE IF NOT EXISTS {} CHARACTER SET utf8mb4",
                Ident(&self.schema)
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {jobs} (
                    name VARCHAR(255) NOT NULL PRIMARY KEY,
                    table_name TEXT,
                    definition_hash TEXT NOT NULL,
                    status VARCHAR(32) NOT NULL,
                    `cursor` LONGTEXT,
                    range_end LONGTEXT,
                    rows_done BIGINT NOT NULL DEFAULT 0,
                    batches_done BIGINT NOT NULL DEFAULT 0,
                    batch_size INT,
                    started_at DATETIME(6),
                    updated_at DATETIME(6) NOT NULL,
                    finished_at DATETIME(6),
                    owner TEXT,
                    heartbeat_at DATETIME(6),
                    lease_s INT,
                    control VARCHAR(32),
                    last_error TEXT,
                    rate DOUBLE,
                    note TEXT,
                    heap_bytes_start BIGINT,
                    heap_bytes_end BIGINT,
                    estimate_rows BIGINT,
                    estimate_rows_done BIGINT,
                    estimate_exact BOOLEAN,
                    estimate_table_rows BIGINT,
                    settings LONGTEXT) {table}"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {ranges} (
                    job VARCHAR(255) NOT NULL,
                    id INT NOT NULL,
                    relation TEXT NOT NULL,
                    `lower` LONGTEXT,
                    `upper` LONGTEXT NOT NULL,
                    `cursor` LONGTEXT,
                    status VARCHAR(32) NOT NULL DEFAULT 'pending',
                    owner TEXT,
                    worker INT,
                    heartbeat_at DATETIME(6),
                    lease_s INT,
                    rows_done BIGINT NOT NULL DEFAULT 0,
                    batches_done BIGINT NOT NULL DEFAULT 0,
                    keys_estimate BIGINT,
                    keys_walked BIGINT NOT NULL DEFAULT 0,
                    batch_size INT,
                    rate DOUBLE,
                    note TEXT,
                    updated_at DATETIME(6) NOT NULL,
                    PRIMARY KEY (job, id),
                    FOREIGN KEY (job) REFERENCES {jobs} (name) ON DELETE CASCADE) {table}"
            ),
            self.failures_ddl(table),
        ]
    }
}

/// Whether `e` says a state table does not exist yet (no job has ever run here): MySQL's
/// `ER_NO_SUCH_TABLE`, or `ER_BAD_DB_ERROR` for the schema.
fn is_missing_table(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.try_downcast_ref::<MySqlDatabaseError>())
        .is_some_and(|d| matches!(d.number(), 1146 | 1049))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_table_name_is_backquoted() {
        assert_eq!(
            Store::new("Our `State`", quoted).table(),
            "`Our ``State```.`jobs`"
        );
    }

    #[test]
    fn every_table_is_innodb_in_utf8mb4() {
        let ddl = StateSql(&Store::new("backfill", quoted)).ddl();
        assert_eq!(
            ddl[0],
            "CREATE DATABASE IF NOT EXISTS `backfill` CHARACTER SET utf8mb4"
        );
        for table in &ddl[1..] {
            assert!(
                table.ends_with("ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"),
                "{table}"
            );
        }
    }
}
