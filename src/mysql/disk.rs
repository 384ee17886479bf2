//! The table's size on MySQL and MariaDB, as `information_schema.TABLES` keeps it: InnoDB's
//! clustered index (`DATA_LENGTH`) is the heap, and `TABLE_ROWS` the rows as last estimated.
//! InnoDB purges old row versions itself, so there is nothing for a job to vacuum.

use sqlx::{MySqlConnection, Row as _};

use super::session::{begin_reading, statement};
use crate::disk::Upkeep;
use crate::disk::innodb::{Binlog, Table};
use crate::plan::{Plan, START_LOCK_TIMEOUT};

/// `DATA_LENGTH` and `TABLE_ROWS` of the table that `table`, written as our SQL names it
/// (`` `shop`.`orders` ``), is; `None` when there is no such table.
async fn stats(
    conn: &mut MySqlConnection,
    table: &str,
) -> Result<Option<(u64, Option<u64>)>, sqlx::Error> {
    let Some((schema, name)) = super::sql::unquoted(table) else {
        return Ok(None);
    };
    let row = statement(
        "SELECT CAST(DATA_LENGTH AS UNSIGNED), CAST(TABLE_ROWS AS UNSIGNED) \
         FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
    )
    .bind(schema)
    .bind(name)
    .fetch_optional(conn)
    .await?;
    row.map(|r| Ok((r.try_get::<Option<u64>, _>(0)?.unwrap_or(0), r.try_get(1)?)))
        .transpose()
}

/// The heap of `table` in bytes now.
pub async fn heap_bytes(conn: &mut MySqlConnection, table: &str) -> Result<u64, sqlx::Error> {
    Ok(stats(conn, table).await?.map_or(0, |(bytes, _)| bytes))
}

/// The heap of each of `tables`; `None` for one that no longer exists.
pub async fn heaps(
    conn: &mut MySqlConnection,
    tables: &[String],
) -> Result<Vec<Option<u64>>, sqlx::Error> {
    let mut heaps = Vec::with_capacity(tables.len());
    for table in tables {
        heaps.push(stats(conn, table).await?.map(|(bytes, _)| bytes));
    }
    Ok(heaps)
}

/// The rows of `table` as InnoDB last estimated them.
pub async fn counted_rows(
    conn: &mut MySqlConnection,
    table: &str,
) -> Result<Option<u64>, sqlx::Error> {
    Ok(stats(conn, table).await?.and_then(|(_, rows)| rows))
}

/// Reads what `plan` says of `plan`'s table, which has at least `rows` rows (the estimate's
/// count, else InnoDB's): its clustered and secondary indexes, its average row, and how the
/// server writes its binary log (`crate::disk::innodb`), in one read-only transaction.
pub async fn table_costs(
    conn: &mut MySqlConnection,
    plan: &Plan,
    rows: u64,
) -> Result<Table, sqlx::Error> {
    let (schema, name) = super::sql::unquoted(&plan.table).unwrap_or_default();
    let mut tx = begin_reading(conn, START_LOCK_TIMEOUT, true).await?;
    let sizes = statement(
        "SELECT CAST(DATA_LENGTH AS UNSIGNED), CAST(INDEX_LENGTH AS UNSIGNED), \
                CAST(AVG_ROW_LENGTH AS UNSIGNED), CAST(TABLE_ROWS AS UNSIGNED) \
           FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
    )
    .bind(schema)
    .bind(name)
    .fetch_optional(&mut *tx)
    .await?;
    // Global values: what the batches' new sessions start with.
    let log = statement(
        "SELECT CAST(@@GLOBAL.log_bin AS SIGNED), CAST(@@GLOBAL.binlog_format AS CHAR), \
                CAST(@@GLOBAL.binlog_row_image AS CHAR)",
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    let size = |i: usize| -> Result<u64, sqlx::Error> {
        Ok(match &sizes {
            Some(row) => row.try_get::<Option<u64>, _>(i)?.unwrap_or(0),
            None => 0,
        })
    };
    let data_bytes = size(0)?;
    // An exact count of the pending rows says nothing of the table's: then InnoDB's estimate.
    let rows = rows.max(size(3)?);
    let row_bytes = match size(2)? {
        0 => data_bytes.checked_div(rows).unwrap_or(0),
        n => n,
    };
    let binlog = (log.try_get::<i64, _>(0)? != 0)
        .then(|| -> Result<Binlog, sqlx::Error> {
            Ok(Binlog {
                format: log.try_get(1)?,
                row_image: log.try_get(2)?,
            })
        })
        .transpose()?;
    Ok(Table {
        data_bytes,
        index_bytes: size(1)?,
        rows,
        row_bytes,
        binlog,
    })
}

/// Nothing to vacuum: InnoDB's purge reclaims old row versions.
pub async fn upkeep(conn: &mut MySqlConnection) -> Result<Upkeep, sqlx::Error> {
    Ok(Upkeep {
        role: super::monitor::role(conn).await?,
        denied: vec![],
        maintain: false,
        purges: true,
    })
}
