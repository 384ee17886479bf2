//! What `plan`'s disk estimate reads from PostgreSQL: the table's pages, tuples and widths
//! (see `crate::disk::estimate` for what it makes of them).

use sqlx::{PgConnection, Row as _};

use crate::disk::estimate::Table;
use crate::plan::Plan;
use crate::postgres::disk::heap_bytes_sql;
use crate::postgres::{begin_read_only, statement};

/// The table's heap, its indexes (count on the table, size over the relations batches
/// update: a partitioned index has no storage of its own), `full_page_writes`, and the width
/// the `[set]` columns `$2` add to a row: each column's width (fixed, or its average in
/// `pg_stats`, else 8 bytes) times its share of NULLs (all of it without statistics).
fn table_sql() -> String {
    format!(
        "SELECT {heap},
       (SELECT count(*) FROM pg_index WHERE indrelid = $1::regclass)::int4,
       (SELECT coalesce(sum(pg_relation_size(indexrelid)), 0) FROM pg_index
         WHERE indrelid = ANY ($3::text[]::regclass[]))::int8,
       current_setting('full_page_writes') = 'on',
       (SELECT coalesce(sum(CASE WHEN t.typlen > 0 THEN t.typlen
                                 ELSE coalesce(nullif(s.avg_width, 0), 8) END
                            * coalesce(s.null_frac, 1)), 0)
          FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
          JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
          LEFT JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = c.relname
                              AND s.attname = a.attname AND s.inherited = (c.relkind = 'p')
         WHERE a.attrelid = $1::regclass AND a.attname = ANY ($2::text[])
           AND NOT a.attisdropped)::float8",
        heap = heap_bytes_sql("$1::regclass")
    )
}

/// Reads what [`Cost::of`](crate::disk::estimate::Cost::of) needs of `plan`'s table, which has `rows` rows (the estimate's
/// count), for a job that sets `columns`.
pub async fn read(
    conn: &mut PgConnection,
    plan: &Plan,
    columns: &[String],
    rows: u64,
) -> Result<Table, sqlx::Error> {
    let relations: Vec<&str> = plan.walks().iter().map(|w| w.relation.as_str()).collect();
    let mut tx = begin_read_only(conn).await?;
    let row = statement(&table_sql())
        .bind(&plan.table)
        .bind(columns)
        .bind(&relations)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    let bytes = |i| -> Result<u64, sqlx::Error> {
        Ok(u64::try_from(row.try_get::<i64, _>(i)?).unwrap_or(0))
    };
    Ok(Table {
        heap_bytes: bytes(0)?,
        rows,
        indexes: u32::try_from(row.try_get::<i32, _>(1)?).unwrap_or(0),
        index_bytes: bytes(2)?,
        full_page_writes: row.try_get(3)?,
        set_width: row.try_get::<f64, _>(4)?.round().max(0.0) as u64,
    })
}
