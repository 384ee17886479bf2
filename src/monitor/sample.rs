//! The monitor's queries: catalog views in, [`Locks`] and [`Load`] out, and the cancel of our own
//! batch. Every sample runs in one short read-only transaction with its own timeouts, so that the
//! monitor itself never waits behind DDL and works behind PgBouncer too.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use sqlx::{PgConnection, Row as _};

use crate::db::{Backend, OUR_BACKENDS, begin_bounded, statement};

use super::policy::{Load, Locks, Replica, Session, TableLock};

/// The longest a sample may wait for a lock: `throttle_query` may read a table that DDL is
/// waiting for, and the monitor must not join that queue.
const SAMPLE_LOCK_TIMEOUT: Duration = Duration::from_millis(100);

/// Longest query text kept for a reason.
const QUERY_CHARS: usize = 120;

/// Lock contention: `$1`/`$2` our running batches' [`Backend`]s (pids and transaction
/// starts, as arrays), `$3` the relations batches update (the table and its leaf partitions),
/// `$4` the job's own application names. Row kinds: `batch_waits` (one of our batches waits
/// for a lock), `waits_on_batch` (another session waits for a lock one of our batches holds,
/// or queued behind it; `blocker` names that batch), `table` (another session holds a lock on
/// a relation that conflicts with `ROW EXCLUSIVE`, or waits for any lock on it). The job's own
/// sessions — its other batches, in this process or another, its heartbeat — are never a
/// reason to yield or pause: they only wait for each other's checkpoints, for a moment.
///
/// It reads the functions behind `pg_stat_activity` and `pg_locks` rather than the views, and
/// the activity once: this runs every `batch_poll` and, unnamed behind PgBouncer, is planned
/// every time, so planning is most of its cost.
fn locks_sql() -> String {
    format!(
        "WITH act AS MATERIALIZED (
     SELECT pid, wait_event_type, query, xact_start, application_name
       FROM pg_stat_get_activity(NULL)),
 batch AS (SELECT a.pid, a.wait_event_type = 'Lock' AS waiting FROM act a {OUR_BACKENDS})
SELECT 'batch_waits' AS kind, b.pid, '' AS mode, false AS granted, '' AS query, b.pid AS blocker
  FROM batch b WHERE b.waiting
UNION ALL
SELECT 'waits_on_batch', w.pid, '', false, coalesce(w.query, ''), b.pid
  FROM act w, batch b
 WHERE w.wait_event_type = 'Lock' AND w.pid <> b.pid
   AND coalesce(w.application_name, '') <> ALL ($4::text[])
   AND b.pid = ANY (pg_blocking_pids(w.pid))
UNION ALL
SELECT 'table', coalesce(l.pid, 0), l.mode, l.granted, coalesce(a.query, ''), 0
  FROM pg_lock_status() l LEFT JOIN act a ON a.pid = l.pid
 WHERE l.locktype = 'relation'
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND l.relation = ANY ($3::text[]::regclass[])
   AND l.pid <> pg_backend_pid()
   AND coalesce(a.application_name, '') <> ALL ($4::text[])
   AND (NOT l.granted OR l.mode IN ('ShareLock', 'ShareRowExclusiveLock',
                                    'ExclusiveLock', 'AccessExclusiveLock'))"
    )
}

/// Connections, the longest idle-in-transaction session and the replicas, in one row.
const LOAD_SQL: &str = "\
SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int4,
       current_setting('max_connections')::int4,
       i.pid, i.idle_ms, i.query,
       (SELECT coalesce(json_agg(json_build_object(
                 'name', coalesce(nullif(application_name, ''), host(client_addr), 'pid ' || pid),
                 'lag_ms', (extract(epoch FROM replay_lag) * 1000)::int8,
                 'lag_bytes', CASE WHEN pg_is_in_recovery() THEN NULL
                              ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::int8 END)),
               '[]')::text
          FROM pg_stat_replication)
  FROM (SELECT 1) AS one
  LEFT JOIN LATERAL (
       SELECT pid, (extract(epoch FROM clock_timestamp() - state_change) * 1000)::int8 AS idle_ms,
              coalesce(query, '') AS query
         FROM pg_stat_activity
        WHERE state IN ('idle in transaction', 'idle in transaction (aborted)')
          AND pid <> pg_backend_pid()
        ORDER BY state_change LIMIT 1) AS i ON true";

/// The job's `throttle_query` as a number: the first column of its first row, 0 for no row or
/// NULL.
pub fn throttle_query_sql(query: &str) -> String {
    format!("SELECT coalesce((SELECT t.v FROM ({query}) AS t(v) LIMIT 1)::float8, 0)")
}

/// One row of `pg_stat_replication`, as the load query spells it.
#[derive(Deserialize)]
struct RawReplica {
    name: String,
    lag_ms: Option<i64>,
    lag_bytes: Option<i64>,
}

/// What one sample read; `load` and `throttle_query` only on a full sample.
pub struct Sampled {
    pub locks: Locks,
    /// Our batches (pids) that another session waits for, or that wait themselves: the ones
    /// a yield cancels.
    pub in_the_way: Vec<i32>,
    /// Our batches (pids) waiting for a lock.
    pub waiting: Vec<i32>,
    pub load: Option<Load>,
    pub throttle_query: Option<f64>,
}

/// What a sample needs to know.
pub struct Probe<'a> {
    /// The relations batches update, as SQL (`"public"."items"`, or a partitioned table and
    /// its leaves).
    pub relations: &'a [String],
    /// The job's own sessions' application names.
    pub ours: &'a [String],
    /// Our running batches.
    pub batches: &'a [Backend],
    /// Read load and `throttle_query` too, not only locks.
    pub full: bool,
    pub throttle_query: Option<&'a str>,
    /// Bounds each statement of the sample.
    pub timeout: Duration,
}

/// Takes one sample in one read-only transaction.
pub async fn take(conn: &mut PgConnection, probe: &Probe<'_>) -> Result<Sampled, sqlx::Error> {
    let (mut tx, _) = begin_bounded(conn, probe.timeout, SAMPLE_LOCK_TIMEOUT, true).await?;
    let rows = statement(&locks_sql())
        .bind(probe.batches.iter().map(|b| b.pid).collect::<Vec<_>>())
        .bind(
            probe
                .batches
                .iter()
                .map(|b| b.xact_start_us)
                .collect::<Vec<_>>(),
        )
        .bind(probe.relations)
        .bind(probe.ours)
        .fetch_all(&mut *tx)
        .await?;
    let mut locks = Locks::default();
    let (mut in_the_way, mut waiting) = (Vec::new(), Vec::new());
    for row in rows {
        let kind: String = row.try_get(0)?;
        let session = Session {
            pid: row.try_get(1)?,
            query: shorten(&row.try_get::<String, _>(4)?),
        };
        let blocker: i32 = row.try_get(5)?;
        match kind.as_str() {
            "batch_waits" => {
                locks.batch_waiting = true;
                waiting.push(blocker);
                in_the_way.push(blocker);
            }
            "waits_on_batch" => {
                in_the_way.push(blocker);
                if !locks.waiting_on_batch.iter().any(|s| s.pid == session.pid) {
                    locks.waiting_on_batch.push(session);
                }
            }
            _ => locks.table.push(TableLock {
                session,
                mode: row.try_get(2)?,
                granted: row.try_get(3)?,
            }),
        }
    }
    let mut sampled = Sampled {
        locks,
        in_the_way,
        waiting,
        load: None,
        throttle_query: None,
    };
    if probe.full {
        sampled.load = Some(load(&mut tx).await?);
        if let Some(query) = probe.throttle_query {
            let sql = throttle_query_sql(query);
            sampled.throttle_query = Some(statement(&sql).fetch_one(&mut *tx).await?.try_get(0)?);
        }
    }
    tx.commit().await?;
    Ok(sampled)
}

async fn load(conn: &mut PgConnection) -> Result<Load, sqlx::Error> {
    let row = statement(LOAD_SQL).fetch_one(conn).await?;
    let connections: i32 = row.try_get(0)?;
    let max_connections: i32 = row.try_get(1)?;
    let idle_pid: Option<i32> = row.try_get(2)?;
    let idle_ms: Option<i64> = row.try_get(3)?;
    let idle_query: Option<String> = row.try_get(4)?;
    let replicas: String = row.try_get(5)?;
    let replicas: Vec<RawReplica> =
        serde_json::from_str(&replicas).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    Ok(Load {
        connections: u32::try_from(connections).unwrap_or(0),
        max_connections: u32::try_from(max_connections).unwrap_or(0),
        idle_in_transaction: idle_pid.zip(idle_ms).map(|(pid, ms)| {
            let session = Session {
                pid,
                query: shorten(&idle_query.unwrap_or_default()),
            };
            (session, millis(ms))
        }),
        replicas: replicas
            .into_iter()
            .map(|r| Replica {
                name: r.name,
                lag: r.lag_ms.map(millis),
                lag_bytes: r.lag_bytes.map(|b| u64::try_from(b).unwrap_or(0)),
            })
            .collect(),
    })
}

/// Cancels the statements `batches` are running, those of them whose transaction still runs:
/// a pid alone might by now serve another client behind PgBouncer. How many were signalled.
pub async fn cancel(
    conn: &mut PgConnection,
    batches: &[Backend],
    timeout: Duration,
) -> Result<usize, sqlx::Error> {
    let (mut tx, _) = begin_bounded(conn, timeout, SAMPLE_LOCK_TIMEOUT, true).await?;
    let sql = format!(
        "SELECT count(*) FILTER (WHERE pg_cancel_backend(a.pid))::int8 FROM pg_stat_activity a {OUR_BACKENDS}"
    );
    let sent: i64 = statement(&sql)
        .bind(batches.iter().map(|b| b.pid).collect::<Vec<_>>())
        .bind(batches.iter().map(|b| b.xact_start_us).collect::<Vec<_>>())
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
    tx.commit().await?;
    Ok(usize::try_from(sent).unwrap_or(0))
}

/// Whether the operator's brake file exists.
pub fn file_exists(path: &Path) -> bool {
    path.try_exists().unwrap_or(true)
}

fn millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// A query on one line, cut to [`QUERY_CHARS`] characters.
fn shorten(query: &str) -> String {
    let one_line = query.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(QUERY_CHARS) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_put_on_one_line_and_cut() {
        assert_eq!(
            shorten("ALTER TABLE items\n   ADD COLUMN x int"),
            "ALTER TABLE items ADD COLUMN x int"
        );
        let long = "x".repeat(200);
        assert_eq!(shorten(&long).chars().count(), QUERY_CHARS + 1);
    }

    #[test]
    fn throttle_query_is_wrapped_as_a_number() {
        assert_eq!(
            throttle_query_sql("SELECT count(*) FROM brake"),
            "SELECT coalesce((SELECT t.v FROM (SELECT count(*) FROM brake) AS t(v) LIMIT 1)::float8, 0)"
        );
    }
}
