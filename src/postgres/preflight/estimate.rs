//! The pending rows' estimate on PostgreSQL: the planner's, a block sample's, or an exact
//! count (see `crate::preflight::estimate` for how one is chosen).

use std::time::Duration;

use sqlx::{PgConnection, Row as _};

use crate::plan::Plan;
use crate::plan::START_LOCK_TIMEOUT;
use crate::postgres::disk::heap_bytes_sql;
use crate::postgres::{begin_bounded, statement};
use crate::preflight::estimate::*;

/// The table's size in blocks, with all its leaf partitions: its heap
/// ([`heap_bytes_sql`]) over the block size. Exact, unlike `relpages`, which only `VACUUM`
/// and `ANALYZE` update. Then the rows per block the last `VACUUM` or `ANALYZE` counted
/// (`reltuples / relpages`; NULL for a table never counted, or a partitioned one).
fn blocks_sql() -> String {
    format!(
        "SELECT ({} / current_setting('block_size')::int8)::int8, \
                CASE WHEN c.relpages > 0 AND c.reltuples > 0 \
                     THEN c.reltuples::float8 / c.relpages END \
           FROM pg_class c WHERE c.oid = $1::regclass",
        heap_bytes_sql("$1::regclass")
    )
}

/// The table's columns among `$2` that have no statistics (`pg_stats` shows what the role may
/// read; a partitioned table's statistics cover its partitions, `inherited`).
const WITHOUT_STATS: &str = "SELECT count(*) FROM pg_attribute a \
    JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
    WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped \
      AND a.attname = ANY($2::text[]) \
      AND NOT EXISTS (SELECT FROM pg_stats s WHERE s.schemaname = n.nspname \
                      AND s.tablename = c.relname AND s.attname = a.attname)";

/// Rows still matching `where`: counted with `exact`, else estimated as the module says. One
/// read-only transaction; reads at most [`SAMPLE_BLOCKS`](crate::preflight::estimate::SAMPLE_BLOCKS) blocks unless `exact`.
pub async fn pending_rows(
    conn: &mut PgConnection,
    plan: &Plan,
    exact: bool,
) -> Result<Estimate, sqlx::Error> {
    // No statement_timeout (0): `--exact-count` reads the whole table. The lock timeout is
    // short: the caller waits for DDL before the estimate, not in it (see `lockwait`).
    let (mut tx, _) = begin_bounded(conn, Duration::ZERO, START_LOCK_TIMEOUT, true).await?;
    let estimate = if exact {
        let n: i64 = statement(&plan.pending_count)
            .fetch_one(&mut *tx)
            .await?
            .get(0);
        Estimate {
            rows: count(n),
            table_rows: None,
            method: Method::Exact,
        }
    } else {
        let size = statement(&blocks_sql())
            .bind(&plan.table)
            .fetch_one(&mut *tx)
            .await?;
        let blocks = count(size.try_get(0)?);
        let percent = sample_percent(blocks);
        let row = statement(&plan.pending_sample)
            .bind(percent as f32)
            .fetch_one(&mut *tx)
            .await?;
        let sample = Sample {
            matched: count(row.get(0)),
            rows: count(row.get(1)),
            percent,
            counted: size
                .try_get::<Option<f64>, _>(1)?
                .map(|per_block| per_block * blocks as f64),
        };
        let planner = if sample.percent < 100.0 {
            // EXPLAIN's column is `json`, whose binary form is its text.
            let doc: String = statement(&plan.pending_estimate)
                .fetch_one(&mut *tx)
                .await?
                .try_get_unchecked(0)?;
            let unknown: i64 = statement(WITHOUT_STATS)
                .bind(&plan.table)
                .bind(&plan.filter_columns)
                .fetch_one(&mut *tx)
                .await?
                .get(0);
            (unknown == 0).then(|| plan_rows(&doc))
        } else {
            None
        };
        choose(planner, sample)
    };
    tx.commit().await?;
    Ok(estimate)
}
