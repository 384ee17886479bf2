//! The table's heap, who may vacuum it, and what `plan` reads to estimate a run's cost in heap
//! and WAL (InnoDB's figures and the binary log on MySQL), through the seam (`crate::disk` says
//! what they mean).

use crate::disk::{Costs, Upkeep};
use crate::plan::Plan;

use super::Conn;
use crate::mysql;

impl Conn<'_> {
    /// The heap of `table` (as SQL, `"public"."users"`) in bytes now; an error (a lock timeout)
    /// rather than a wait while DDL holds the table.
    pub async fn heap_bytes(self, table: &str) -> Result<u64, sqlx::Error> {
        match self {
            Conn::Postgres(c) => crate::postgres::disk::heap_bytes(c, table).await,
            Conn::Mysql(c) => mysql::disk::heap_bytes(c, table).await,
        }
    }

    /// The heap now of each of `tables` (as SQL, as the state table stores them), in order; `None`
    /// for one that no longer exists (or none, for a job of a version that did not store it).
    pub async fn heaps(self, tables: &[String]) -> Result<Vec<Option<u64>>, sqlx::Error> {
        match self {
            Conn::Postgres(c) => crate::postgres::disk::heaps(c, tables).await,
            Conn::Mysql(c) => mysql::disk::heaps(c, tables).await,
        }
    }

    /// The rows of `table` (as SQL) as the last `VACUUM` or `ANALYZE` counted them (`reltuples`,
    /// summed over its leaf partitions); `None` when none has counted them yet.
    pub async fn counted_rows(self, table: &str) -> Result<Option<u64>, sqlx::Error> {
        match self {
            Conn::Postgres(c) => crate::postgres::disk::counted_rows(c, table).await,
            Conn::Mysql(c) => mysql::disk::counted_rows(c, table).await,
        }
    }

    /// Reads whether the current role may vacuum `relations` (as SQL).
    pub async fn upkeep(self, relations: &[String]) -> Result<Upkeep, sqlx::Error> {
        match self {
            Conn::Postgres(c) => crate::postgres::disk::upkeep(c, relations).await,
            Conn::Mysql(c) => mysql::disk::upkeep(c).await,
        }
    }

    /// Reads what `plan` needs of `plan`'s table, which has `rows` rows (the estimate's count),
    /// to say what a job that sets `columns` costs in disk: on PostgreSQL what
    /// [`Cost::of`](crate::disk::estimate::Cost::of) needs, on MySQL and MariaDB InnoDB's
    /// figures and the binary log's settings.
    pub async fn table_costs(
        self,
        plan: &Plan,
        columns: &[String],
        rows: u64,
    ) -> Result<Costs, sqlx::Error> {
        match self {
            Conn::Postgres(c) => Ok(Costs::Heap(
                crate::postgres::disk::estimate::read(c, plan, columns, rows).await?,
            )),
            Conn::Mysql(c) => Ok(Costs::InnoDb(
                mysql::disk::table_costs(c, plan, rows).await?,
            )),
        }
    }
}
