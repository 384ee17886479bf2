//! The batch's statements about the target table on MySQL and MariaDB, run as
//! `crate::mysql::plan` wrote them: each key value bound as text, as often and in the order
//! its comparison takes it ([`bind_compared`]), and cast back by the statement.

use futures_util::TryStreamExt as _;
use sqlx::mysql::MySqlArguments;
use sqlx::{MySql, MySqlConnection, Row as _};

use crate::mysql::session::statement;
use crate::mysql::sql::Compare;
use crate::plan::{Key, RelationSize, Sampled, Walk};
use crate::rows::{bind_keys, key, leading_key};

type Query = sqlx::query::Query<'static, MySql, MySqlArguments>;

/// Binds `key` as a comparison with the key columns takes it: each value in
/// [`Compare::order`]'s order, every column but the last twice. (The order is the same for
/// `>`, `<=` and `<`.)
pub fn bind_compared(query: Query, key: &[String]) -> Query {
    let order = Compare::AFTER.over(key.len()).order();
    bind_keys(query, order.iter().map(|&i| Some(&key[i])))
}

/// Binds a range `(lower, upper]`: the lower key when there is one, then the upper.
fn bind_range(query: Query, lower: Option<&[String]>, upper: &[String]) -> Query {
    let query = match lower {
        Some(lower) => bind_compared(query, lower),
        None => query,
    };
    bind_compared(query, upper)
}

/// The `n`-th key after `lower` (from the relation's first key without it), at most `upper`;
/// `None` when fewer keys are left.
pub async fn upper_bound(
    conn: &mut MySqlConnection,
    walk: &Walk,
    lower: Option<&[String]>,
    upper: &[String],
    n: u64,
) -> Result<Option<Key>, sqlx::Error> {
    let query = statement(walk.upper_bound.pick(lower.is_some()));
    bind_range(query, lower, upper)
        .bind(n.saturating_sub(1))
        .fetch_optional(conn)
        .await?
        .as_ref()
        .map(key)
        .transpose()
}

/// Updates the rows in `(lower, upper]` that still match `where`; how many (matched, not only
/// changed: sqlx connects with `CLIENT_FOUND_ROWS`).
pub async fn update(
    conn: &mut MySqlConnection,
    walk: &Walk,
    lower: Option<&[String]>,
    upper: &[String],
) -> Result<u64, sqlx::Error> {
    let query = statement(walk.update.pick(lower.is_some()));
    Ok(bind_range(query, lower, upper)
        .execute(conn)
        .await?
        .rows_affected())
}

/// The keys in `(lower, upper]`, in order.
pub async fn keys(
    conn: &mut MySqlConnection,
    walk: &Walk,
    lower: Option<&[String]>,
    upper: &[String],
) -> Result<Vec<Key>, sqlx::Error> {
    let query = statement(walk.keys.pick(lower.is_some()));
    bind_range(query, lower, upper)
        .fetch_all(conn)
        .await?
        .iter()
        .map(key)
        .collect()
}

/// Updates the one row at `key`, if it still matches `where`; how many (0 or 1).
pub async fn update_key(
    conn: &mut MySqlConnection,
    walk: &Walk,
    key: &[String],
) -> Result<u64, sqlx::Error> {
    Ok(bind_keys(statement(&walk.update_key), key.iter().map(Some))
        .execute(conn)
        .await?
        .rows_affected())
}

/// The relation's greatest key now, where a new job's range ends; `None` for an empty one.
pub async fn range_end(
    conn: &mut MySqlConnection,
    walk: &Walk,
) -> Result<Option<Key>, sqlx::Error> {
    statement(&walk.range_end)
        .fetch_optional(conn)
        .await?
        .as_ref()
        .map(key)
        .transpose()
}

/// The relation's size as InnoDB last counted it: its clustered index's pages
/// (`DATA_LENGTH` over the page size) and its rows (`TABLE_ROWS`, an estimate). Both come from
/// InnoDB's statistics, not a count; MySQL also caches them for
/// `information_schema_stats_expiry` seconds (a day by default), so a session that wants them
/// fresh sets that to 0. `relation` is the table as the plan writes it, `` `db`.`t` ``.
pub async fn relation_size(
    conn: &mut MySqlConnection,
    relation: &str,
) -> Result<RelationSize, sqlx::Error> {
    let (schema, name) = super::sql::unquoted(relation).ok_or_else(|| {
        sqlx::Error::Protocol(format!("{relation} is not a table as `db`.`table`"))
    })?;
    let row = statement(
        "SELECT CAST(DATA_LENGTH AS SIGNED), CAST(TABLE_ROWS AS SIGNED), \
                CAST(@@innodb_page_size AS SIGNED) \
           FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
    )
    .bind(schema)
    .bind(name)
    .fetch_one(conn)
    .await?;
    let bytes: Option<i64> = row.try_get(0)?;
    let rows: Option<i64> = row.try_get(1)?;
    let page: i64 = row.try_get(2)?;
    let blocks = bytes.unwrap_or(0).max(0) as u64 / page.max(1) as u64;
    Ok(RelationSize {
        blocks,
        rows: rows.and_then(|r| u64::try_from(r).ok()).filter(|&r| r > 0),
    })
}

/// A sample (`percent` of the rows, `RAND(0)`; MySQL has no block sample) of the keys in
/// `(lower, upper]`, in key order, each with whether its row still matches `where`. It reads
/// every row of the range.
///
/// Each row is decoded into its key as it arrives, not collected first (`fetch_all`): a
/// layout's sample is tens of thousands of rows (its share is worked out from 16 KB pages,
/// each holding a few hundred of a narrow table's rows), and the driver's rows held all at
/// once would take twice the memory of the keys kept.
pub async fn sample(
    conn: &mut MySqlConnection,
    walk: &Walk,
    lower: Option<&[String]>,
    upper: &[String],
    percent: f64,
) -> Result<Vec<Sampled>, sqlx::Error> {
    let query = statement(walk.sample.pick(lower.is_some()));
    let mut rows = bind_range(query, lower, upper).bind(percent).fetch(conn);
    let mut sample = Vec::new();
    while let Some(row) = rows.try_next().await? {
        let n = row.len() - 1;
        sample.push(Sampled {
            key: leading_key(&row, n)?,
            pending: row.try_get::<i64, _>(n)? != 0,
        });
    }
    Ok(sample)
}
