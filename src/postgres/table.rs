//! The batch's statements about the target table, run as the plan wrote them: key values bound
//! as text and cast back by the statement, one unnamed statement each.

use futures_util::TryStreamExt as _;
use sqlx::{PgConnection, Row as _};

use crate::plan::{Key, RelationSize, Sampled, Walk};

use super::{fetch_key, fetch_keys, statement};
use crate::rows::{bind_keys, leading_key};

/// The `n`-th key after `lower` (from the relation's first key without it), at most `upper`;
/// `None` when fewer keys are left.
pub async fn upper_bound(
    conn: &mut PgConnection,
    walk: &Walk,
    lower: Option<&[String]>,
    upper: &[String],
    n: u64,
) -> Result<Option<Key>, sqlx::Error> {
    let keys = lower.into_iter().flatten().chain(upper).map(Some);
    let offset = i64::try_from(n.saturating_sub(1)).unwrap_or(i64::MAX);
    let query = bind_keys(statement(walk.upper_bound.pick(lower.is_some())), keys).bind(offset);
    fetch_key(query, conn).await
}

/// Updates the rows in `(lower, upper]` that still match `where`; how many.
pub async fn update(
    conn: &mut PgConnection,
    walk: &Walk,
    lower: Option<&[String]>,
    upper: &[String],
) -> Result<u64, sqlx::Error> {
    let keys = lower.into_iter().flatten().chain(upper).map(Some);
    Ok(
        bind_keys(statement(walk.update.pick(lower.is_some())), keys)
            .execute(conn)
            .await?
            .rows_affected(),
    )
}

/// The keys in `(lower, upper]`, in order.
pub async fn keys(
    conn: &mut PgConnection,
    walk: &Walk,
    lower: Option<&[String]>,
    upper: &[String],
) -> Result<Vec<Key>, sqlx::Error> {
    let bounds = lower.into_iter().flatten().chain(upper).map(Some);
    fetch_keys(
        bind_keys(statement(walk.keys.pick(lower.is_some())), bounds),
        conn,
    )
    .await
}

/// Updates the one row at `key`, if it still matches `where`; how many (0 or 1).
pub async fn update_key(
    conn: &mut PgConnection,
    walk: &Walk,
    key: &[String],
) -> Result<u64, sqlx::Error> {
    Ok(bind_keys(statement(&walk.update_key), key.iter().map(Some))
        .execute(conn)
        .await?
        .rows_affected())
}

/// The relation's greatest key now, where a new job's range ends; `None` for an empty one.
pub async fn range_end(conn: &mut PgConnection, walk: &Walk) -> Result<Option<Key>, sqlx::Error> {
    fetch_key(statement(&walk.range_end), conn).await
}

/// The relation's size in blocks (exact, unlike `reltuples`, which is -1 or 0 before the
/// first `ANALYZE`).
pub async fn relation_size(
    conn: &mut PgConnection,
    relation: &str,
) -> Result<RelationSize, sqlx::Error> {
    let row = statement(
        "SELECT pg_relation_size(c.oid) / current_setting('block_size')::int8, \
                CASE WHEN c.relpages > 0 AND c.reltuples > 0 \
                     THEN c.reltuples::float8 / c.relpages END \
           FROM pg_class c WHERE c.oid = $1::regclass",
    )
    .bind(relation)
    .fetch_one(conn)
    .await?;
    let blocks = u64::try_from(row.try_get::<i64, _>(0)?).unwrap_or(0);
    let per_block: Option<f64> = row.try_get(1)?;
    Ok(RelationSize {
        blocks,
        rows: per_block.map(|r| (r * blocks as f64).round() as u64),
    })
}

/// A block sample (`percent` of the relation's blocks) of the keys in `(lower, upper]`, in key
/// order, each with whether its row still matches `where`. Each row is decoded into its key as
/// it arrives, not collected first: a layout's sample is tens of thousands of rows, and the
/// driver's rows held all at once would take about as much memory as the keys kept.
pub async fn sample(
    conn: &mut PgConnection,
    walk: &Walk,
    lower: Option<&[String]>,
    upper: &[String],
    percent: f64,
) -> Result<Vec<Sampled>, sqlx::Error> {
    let keys = lower.into_iter().flatten().chain(upper).map(Some);
    let mut rows = bind_keys(statement(walk.sample.pick(lower.is_some())), keys)
        .bind(percent)
        .fetch(conn);
    let mut sample = Vec::new();
    while let Some(row) = rows.try_next().await? {
        let n = row.len() - 1;
        sample.push(Sampled {
            key: leading_key(&row, n)?,
            pending: row.try_get(n)?,
        });
    }
    Ok(sample)
}
