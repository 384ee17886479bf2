//! The state tables' statements on PostgreSQL: the schema created and migrated here, and one
//! file per table beside it, each an `impl StateSql` that `crate::state`'s API calls with the
//! connection it was given. Every statement is unnamed and runs in an explicit transaction, so
//! that it works behind PgBouncer.

mod checkpoint;
mod failures;
mod heartbeat;
mod jobs;
mod ranges;

use std::ops::Deref;
use std::time::Duration;

use sqlx::{PgConnection, Row as _};

use crate::postgres::sql::Ident;
use crate::postgres::{begin_bounded, begin_read_only, statement};
use crate::state::stored::to_json;
use crate::state::{StateError, Store};

pub use checkpoint::RangeSql;

/// `schema.name` as PostgreSQL reads it back: `"backfill"."jobs"`.
pub fn quoted(schema: &str, name: &str) -> String {
    crate::postgres::sql::Qualified { schema, name }.to_string()
}

/// The statements of one [`Store`] on PostgreSQL.
pub struct StateSql<'s>(pub &'s Store);

impl Deref for StateSql<'_> {
    type Target = Store;

    fn deref(&self) -> &Store {
        self.0
    }
}

/// What of the state schema exists: a schema made by an older version that no run of this
/// version has touched lacks the later tables and columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tables {
    pub jobs: bool,
    pub ranges: bool,
    pub failures: bool,
    /// Which of the columns added to a table after its first version ([`ADDED`]) are there,
    /// in `ADDED`'s order.
    pub added: [bool; ADDED.len()],
}

impl Tables {
    /// Everything this version uses is there.
    fn current(&self) -> bool {
        self.jobs && self.ranges && self.failures && self.added.iter().all(|&a| a)
    }

    /// Whether `column`, one of [`ADDED`], is there: a schema that a run of an older version
    /// made lacks the later ones until a run of this version adds them, and `status` reads
    /// such a schema as it is.
    pub fn has(&self, column: &str) -> bool {
        ADDED
            .iter()
            .position(|(_, c, _)| *c == column)
            .is_some_and(|i| self.added[i])
    }
}

impl StateSql<'_> {
    /// What of the state schema exists, in the caller's transaction.
    pub(crate) async fn tables(&self, conn: &mut PgConnection) -> Result<Tables, StateError> {
        let (tables, columns): (Vec<String>, Vec<String>) = ADDED
            .iter()
            .map(|(table, column, _)| (self.state_table(table), column.to_string()))
            .unzip();
        let row = statement(
            "SELECT to_regclass($1) IS NOT NULL, to_regclass($2) IS NOT NULL, \
                    to_regclass($3) IS NOT NULL, \
                    ARRAY(SELECT EXISTS (SELECT FROM pg_attribute \
                        WHERE attrelid = to_regclass(added.tab) AND attname = added.col \
                          AND NOT attisdropped) \
                      FROM unnest($4::text[], $5::text[]) WITH ORDINALITY AS added(tab, col, n) \
                      ORDER BY added.n)",
        )
        .bind(&self.jobs)
        .bind(&self.ranges)
        .bind(&self.failures)
        .bind(tables)
        .bind(columns)
        .fetch_one(conn)
        .await
        .map_err(self.db("read"))?;
        let present: Vec<bool> = row.get(3);
        let mut added = [false; ADDED.len()];
        for (slot, there) in added.iter_mut().zip(present) {
            *slot = there;
        }
        Ok(Tables {
            jobs: row.get(0),
            ranges: row.get(1),
            failures: row.get(2),
            added,
        })
    }

    /// Creates the schema and tables if they are missing, and brings tables made by an older
    /// version up to date (new columns only; rows migrate when their job next runs).
    ///
    /// Looks before it alters: `ALTER TABLE … ADD COLUMN IF NOT EXISTS` takes an `ACCESS
    /// EXCLUSIVE` lock on the table even when the column is there, so it would queue behind
    /// any open transaction that read the jobs table (a `pg_dump`, a dashboard) and hold up
    /// every other job's heartbeat behind it. When something is missing, the DDL waits at
    /// most `lock_timeout` for its locks, and is serialised by a transaction-scoped advisory
    /// lock (fine behind PgBouncer) so that two first runs do not race.
    pub async fn ensure(
        &self,
        conn: &mut PgConnection,
        lock_timeout: Duration,
    ) -> Result<(), StateError> {
        let mut tx = begin_read_only(conn).await.map_err(self.db("create"))?;
        let tables = self.tables(&mut tx).await?;
        tx.commit().await.map_err(self.db("create"))?;
        if tables.current() {
            return Ok(());
        }
        let (mut tx, _) = begin_bounded(conn, Duration::ZERO, lock_timeout, false)
            .await
            .map_err(self.db("create"))?;
        statement("SELECT pg_advisory_xact_lock(hashtext('backfill state schema'))")
            .execute(&mut *tx)
            .await
            .map_err(self.db("create"))?;
        let (jobs, ranges) = (&self.jobs, &self.ranges);
        let create = [
            format!("CREATE SCHEMA IF NOT EXISTS {}", Ident(&self.schema)),
            format!(
                "CREATE TABLE IF NOT EXISTS {jobs} (
                    name text PRIMARY KEY,
                    table_name text,
                    definition_hash text NOT NULL,
                    status text NOT NULL,
                    cursor jsonb,
                    range_end jsonb,
                    rows_done bigint NOT NULL DEFAULT 0,
                    batches_done bigint NOT NULL DEFAULT 0,
                    batch_size int,
                    started_at timestamptz,
                    updated_at timestamptz NOT NULL DEFAULT now(),
                    finished_at timestamptz,
                    owner text,
                    heartbeat_at timestamptz,
                    control text,
                    last_error text,
                    rate double precision,
                    note text)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {ranges} (
                    job text NOT NULL REFERENCES {jobs} (name) ON DELETE CASCADE,
                    id int NOT NULL,
                    relation text NOT NULL,
                    lower jsonb,
                    upper jsonb NOT NULL,
                    cursor jsonb,
                    status text NOT NULL DEFAULT 'pending',
                    owner text,
                    worker int,
                    heartbeat_at timestamptz,
                    lease_s int,
                    rows_done bigint NOT NULL DEFAULT 0,
                    batches_done bigint NOT NULL DEFAULT 0,
                    keys_estimate bigint,
                    keys_walked bigint NOT NULL DEFAULT 0,
                    batch_size int,
                    rate double precision,
                    note text,
                    updated_at timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (job, id))"
            ),
            self.failures_ddl(),
        ];
        let added = ADDED.iter().map(|(table, column, type_sql)| {
            format!(
                "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {type_sql}",
                self.state_table(table),
                Ident(column)
            )
        });
        for sql in create.into_iter().chain(added) {
            statement(&sql)
                .execute(&mut *tx)
                .await
                .map_err(self.db("create"))?;
        }
        tx.commit().await.map_err(self.db("create"))
    }

    /// `jobs` or `ranges`, as written in SQL.
    fn state_table(&self, name: &str) -> String {
        match name {
            "ranges" => self.ranges.clone(),
            _ => self.jobs.clone(),
        }
    }
}

/// Columns added after a table's first version: table (`jobs`, `ranges`), column, type.
/// [`Store::ensure`] adds the missing ones, and looks for all of them before it alters.
const ADDED: [(&str, &str, &str); 8] = [
    ("jobs", "lease_s", "int"),
    ("jobs", "heap_bytes_start", "bigint"),
    ("jobs", "heap_bytes_end", "bigint"),
    ("jobs", "estimate_rows", "bigint"),
    ("jobs", "estimate_rows_done", "bigint"),
    ("jobs", "estimate_exact", "boolean"),
    ("jobs", "estimate_table_rows", "bigint"),
    ("jobs", "settings", "text"),
];

/// Whether `e` says the state tables do not exist yet (no job has ever run here).
fn is_missing_table(e: &sqlx::Error) -> bool {
    e.as_database_error().and_then(|d| d.code()).as_deref() == Some("42P01")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_table_name_is_quoted() {
        assert_eq!(
            Store::new("Our \"State\"", quoted).table(),
            r#""Our ""State"""."jobs""#
        );
    }
}
