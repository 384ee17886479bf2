//! The migration guides' loop in its MySQL form: `UPDATE orders SET … WHERE total_cents IS
//! NULL ORDER BY id LIMIT 5000`, each statement its own (autocommit) transaction at the
//! server's default isolation, until one changes no row. MySQL refuses the PostgreSQL form,
//! `WHERE id IN (SELECT id … LIMIT 5000)`: a `LIMIT` in an `IN` subquery (error 1235) and a
//! subquery on the table being updated (1093).
//!
//! Each statement walks the key from the start, past every row already filled, so the loop is
//! quadratic: on 2 M rows it takes minutes. Unless told to run it whole, it is timed on a
//! bounded portion and scaled: `batches` statements at the middle of each quarter of the table,
//! the rows before them filled (untimed) by one `UPDATE` and the server settled. A statement
//! costs a fixed part plus a part linear in the rows before it, so its cost at a quarter's
//! middle is the mean over that quarter, and the whole loop is the sum over the quarters of
//! that cost times the quarter's statements (the midpoint rule, exact for a linear cost). The
//! loop's last statement, which finds nothing after walking the whole table, is left out (one of
//! 400 at 2 M rows).

use std::time::Instant;

use anyhow::Result;
use serde::Serialize;
use sqlx::{AssertSqlSafe, Connection as _, MySqlConnection};

use super::server::{Bench, EXPR, TABLE};
use crate::stats::median;

/// Rows per statement, as in the guides.
pub const BATCH: u64 = 5000;
/// Where the sampled statements run: the middle of each quarter of the table.
const DEPTHS: [f64; 4] = [0.125, 0.375, 0.625, 0.875];

/// The loop's time, measured whole or scaled from the sampled statements.
#[derive(Debug, Clone, Serialize)]
pub struct Timed {
    /// The whole loop's time: measured, or estimated from `depths`.
    pub wall_s: f64,
    /// Statements that changed rows (the whole loop's, also when estimated).
    pub statements: u64,
    pub estimated: bool,
    /// The time actually measured.
    pub measured_s: f64,
    /// The sampled statements, per depth (empty for a whole loop).
    pub depths: Vec<Depth>,
}

/// The statements timed at one depth.
#[derive(Debug, Clone, Serialize)]
pub struct Depth {
    /// Rows before the first timed statement, as a share of the table.
    pub at: f64,
    /// Median time of one statement there.
    pub ms: f64,
}

fn statement(filter: &str) -> String {
    format!("UPDATE {TABLE} SET total_cents = {EXPR} WHERE {filter}")
}

/// Runs the loop to its end and checks the table.
pub async fn whole(bench: &mut Bench) -> Result<Timed> {
    let mut conn = MySqlConnection::connect(&bench.url).await?;
    let sql = statement(&format!("total_cents IS NULL ORDER BY id LIMIT {BATCH}"));
    let started = Instant::now();
    let mut statements = 0;
    while execute(&mut conn, &sql).await? > 0 {
        statements += 1;
    }
    let wall_s = started.elapsed().as_secs_f64();
    conn.close().await?;
    bench.check_filled("the guides' loop").await?;
    Ok(Timed {
        wall_s,
        statements,
        estimated: false,
        measured_s: wall_s,
        depths: vec![],
    })
}

/// Times `batches` statements at each of [`DEPTHS`] and scales them to the whole loop.
pub async fn sampled(bench: &mut Bench, batches: u32) -> Result<Timed> {
    let rows = bench.rows;
    let total = rows.div_ceil(BATCH);
    let sql = statement(&format!("total_cents IS NULL ORDER BY id LIMIT {BATCH}"));
    let mut depths = Vec::new();
    let mut measured_s = 0.0;
    for at in DEPTHS {
        let before = (at * rows as f64) as u64;
        let fill = statement(&format!("id <= {before} AND total_cents IS NULL"));
        bench.execute(&fill).await?;
        bench.settle().await?;
        let mut conn = MySqlConnection::connect(&bench.url).await?;
        let mut times = Vec::new();
        for _ in 0..batches {
            let started = Instant::now();
            let changed = execute(&mut conn, &sql).await?;
            let took = started.elapsed().as_secs_f64();
            anyhow::ensure!(
                changed == BATCH,
                "a statement of the guides' loop at {at} changed {changed} rows"
            );
            measured_s += took;
            times.push(took * 1000.0);
        }
        conn.close().await?;
        depths.push(Depth {
            at,
            ms: median(times),
        });
    }
    let per_quarter = total as f64 / DEPTHS.len() as f64;
    let wall_s = depths.iter().map(|d| d.ms / 1000.0 * per_quarter).sum();
    Ok(Timed {
        wall_s,
        statements: total,
        estimated: true,
        measured_s,
        depths,
    })
}

/// One autocommit statement; the rows it matched.
async fn execute(conn: &mut MySqlConnection, sql: &str) -> Result<u64> {
    Ok(sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(conn)
        .await?
        .rows_affected())
}
