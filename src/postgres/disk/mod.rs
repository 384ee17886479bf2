//! The table's heap and who may vacuum it, read from PostgreSQL's catalog and file sizes (see
//! `crate::disk` for what they mean to a run).

pub mod estimate;

use std::time::Duration;

use sqlx::{PgConnection, Row as _};

use crate::disk::{Denied, Upkeep};
use crate::postgres::{begin_bounded, begin_read_only, statement};

/// The heap of `relation` (SQL that yields a `regclass`), in bytes, as an `int8` expression:
/// its own main fork plus its leaf partitions' (a partitioned table has no storage of its
/// own, and `pg_partition_tree` lists nothing for a plain table). Exact — the file sizes —
/// unlike `relpages`, which only `VACUUM` and `ANALYZE` update. NULL for a NULL relation.
pub fn heap_bytes_sql(relation: &str) -> String {
    format!(
        "(pg_relation_size({relation}) + coalesce((SELECT sum(pg_relation_size(t.relid)) \
         FROM pg_partition_tree({relation}) AS t WHERE t.isleaf), 0))::int8"
    )
}

/// How long reading a heap size may wait for a lock: `pg_relation_size` and
/// `pg_partition_tree` take the table's `ACCESS SHARE` lock, which DDL may hold for a long
/// time (a table rewrite), and the heartbeat that reads it must never wait behind DDL.
const HEAP_LOCK_TIMEOUT: Duration = Duration::from_millis(100);

/// The longest a heap size reading may take.
const HEAP_TIMEOUT: Duration = Duration::from_secs(2);

/// The heap of `table` (as SQL, `"public"."users"`) in bytes now; an error (a lock timeout)
/// rather than a wait while DDL holds the table.
pub async fn heap_bytes(conn: &mut PgConnection, table: &str) -> Result<u64, sqlx::Error> {
    let (mut tx, _) = begin_bounded(conn, HEAP_TIMEOUT, HEAP_LOCK_TIMEOUT, true).await?;
    let sql = format!("SELECT {}", heap_bytes_sql("$1::regclass"));
    let bytes: i64 = statement(&sql)
        .bind(table)
        .fetch_one(&mut *tx)
        .await?
        .get(0);
    tx.commit().await?;
    Ok(u64::try_from(bytes).unwrap_or(0))
}

/// The heap now of each of `tables` (as SQL, as the state table stores them), in order; `None`
/// for one that no longer exists (or none, for a job of a version that did not store it).
pub async fn heaps(
    conn: &mut PgConnection,
    tables: &[String],
) -> Result<Vec<Option<u64>>, sqlx::Error> {
    let (mut tx, _) = begin_bounded(conn, HEAP_TIMEOUT, HEAP_LOCK_TIMEOUT, true).await?;
    let sql = format!(
        "SELECT {} FROM unnest($1::text[]) WITH ORDINALITY AS x(name, n) ORDER BY x.n",
        heap_bytes_sql("to_regclass(nullif(x.name, ''))")
    );
    let rows = statement(&sql).bind(tables).fetch_all(&mut *tx).await?;
    tx.commit().await?;
    Ok(rows
        .iter()
        .map(|r| {
            r.get::<Option<i64>, _>(0)
                .and_then(|b| u64::try_from(b).ok())
        })
        .collect())
}

/// The rows of `table` (as SQL) as the last `VACUUM` or `ANALYZE` counted them (`reltuples`,
/// summed over its leaf partitions); `None` when none has counted them yet.
pub async fn counted_rows(
    conn: &mut PgConnection,
    table: &str,
) -> Result<Option<u64>, sqlx::Error> {
    let (mut tx, _) = begin_bounded(conn, HEAP_TIMEOUT, HEAP_LOCK_TIMEOUT, true).await?;
    let rows: f64 = statement(
        "SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)::float8 FROM pg_class AS c \
          WHERE c.oid = $1::regclass \
             OR c.oid IN (SELECT t.relid FROM pg_partition_tree($1::regclass) AS t WHERE t.isleaf)",
    )
    .bind(table)
    .fetch_one(&mut *tx)
    .await?
    .get(0);
    tx.commit().await?;
    Ok((rows >= 1.0).then_some(rows as u64))
}

/// Which of `$1` (relations as SQL) the current role may not vacuum, with their owners; and
/// whether the server knows `MAINTAIN` (a `CASE`, so that older servers never parse the
/// privilege's name).
const UPKEEP: &str = "\
SELECT current_user::text, current_setting('server_version_num')::int4 >= 170000,
       coalesce((SELECT json_agg(json_build_object('relation', r.name,
                                                   'owner', pg_get_userbyid(c.relowner)))
                   FROM unnest($1::text[]) AS r(name) JOIN pg_class c ON c.oid = r.name::regclass
                  WHERE NOT (pg_has_role(c.relowner, 'USAGE')
                             OR pg_has_role((SELECT datdba FROM pg_database
                                              WHERE datname = current_database()), 'USAGE')
                             OR CASE WHEN current_setting('server_version_num')::int4 >= 170000
                                     THEN has_table_privilege(c.oid, 'MAINTAIN')
                                     ELSE false END)),
                '[]')::text";

/// Reads whether the current role may vacuum `relations` (as SQL).
pub async fn upkeep(conn: &mut PgConnection, relations: &[String]) -> Result<Upkeep, sqlx::Error> {
    let mut tx = begin_read_only(conn).await?;
    let row = statement(UPKEEP)
        .bind(relations)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    #[derive(serde::Deserialize)]
    struct Raw {
        relation: String,
        owner: String,
    }
    let denied: Vec<Raw> = serde_json::from_str(&row.get::<String, _>(2))
        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    Ok(Upkeep {
        role: row.get(0),
        maintain: row.get(1),
        purges: false,
        denied: denied
            .into_iter()
            .map(|d| Denied {
                relation: d.relation,
                owner: d.owner,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_bytes_sums_the_leaves() {
        assert_eq!(
            heap_bytes_sql("$1::regclass"),
            "(pg_relation_size($1::regclass) + coalesce((SELECT sum(pg_relation_size(t.relid)) \
             FROM pg_partition_tree($1::regclass) AS t WHERE t.isleaf), 0))::int8"
        );
    }
}
