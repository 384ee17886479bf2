//! The monitor's queries: catalog views in, [`Locks`], [`Load`] and [`Wal`] out, and the cancel
//! of our own batch. Every sample runs in one short read-only transaction with its own
//! timeouts, so that the monitor itself never waits behind DDL and works behind PgBouncer too.

use std::time::Duration;

use serde::Deserialize;
use sqlx::{PgConnection, Row as _};

use crate::monitor::sample::Backend;
use crate::monitor::sample::{Request, Sampled, shorten};
use crate::postgres::{OUR_BACKENDS, begin_bounded, statement};

use crate::monitor::policy::{
    Archiver, Autovacuum, Load, Locks, Replica, Session, Slot, TableLock, Wal,
};

/// The longest a sample may wait for a lock: `throttle_query` may read a table that DDL is
/// waiting for, and the monitor must not join that queue.
const SAMPLE_LOCK_TIMEOUT: Duration = Duration::from_millis(100);

/// Lock contention: `$1`/`$2` our running batches' [`Backend`]s (pids and transaction
/// starts, as arrays), `$3` the relations batches update (the table and its leaf partitions),
/// `$4` the job's own application names, `$5` the markers of our running statements (see
/// [`our_statements`]). Row kinds: `batch_waits` (one of our batches or statements waits for
/// a lock), `waits_on_batch` (another session waits for a lock one of ours holds, or queued
/// behind it; `blocker` names ours, `mode` the waiter's `wait_event`), `table` (another session
/// holds a lock on a relation that conflicts with `ROW EXCLUSIVE`, or waits for any lock on
/// it), `statement` (the backend running one of our statements now: its pid, and its marker in
/// `query`). The job's own sessions — its other batches, in this process or another, its
/// heartbeat, its vacuum — are never a reason to yield or pause: they only wait for each
/// other's checkpoints, for a moment.
///
/// It reads the functions behind `pg_stat_activity` and `pg_locks` rather than the views, and
/// the activity once: this runs every `batch_poll` and, unnamed behind PgBouncer, is planned
/// every time, so planning is most of its cost. The statements' part is left out while none
/// runs, which is nearly always.
fn locks_sql(statements: bool) -> String {
    let (act_state, ours) = if statements {
        (
            ", state",
            format!(
                "
           UNION ALL
           SELECT a.pid, a.wait_event_type = 'Lock' FROM act a WHERE {}",
                our_statements(5)
            ),
        )
    } else {
        ("", String::new())
    };
    let found = if statements {
        "
UNION ALL
SELECT 'statement', a.pid, '', false, m.marker, a.pid
  FROM act a JOIN unnest($5::text[]) AS m(marker) ON starts_with(a.query, m.marker)
 WHERE a.state = 'active'"
    } else {
        ""
    };
    format!(
        "WITH act AS MATERIALIZED (
     SELECT pid, wait_event_type, wait_event, query, xact_start, application_name{act_state}
       FROM pg_stat_get_activity(NULL)),
 batch AS (SELECT a.pid, a.wait_event_type = 'Lock' AS waiting FROM act a {OUR_BACKENDS}{ours})
SELECT 'batch_waits' AS kind, b.pid, '' AS mode, false AS granted, '' AS query, b.pid AS blocker
  FROM batch b WHERE b.waiting{found}
UNION ALL
SELECT 'waits_on_batch', w.pid, coalesce(w.wait_event, ''), false, coalesce(w.query, ''), b.pid
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

/// Everything but locks, in one row: connections, the longest idle-in-transaction session,
/// the replicas, other sessions at work, autovacuum on the relations batches update (`$1`, the
/// table and its leaves), the replication slots and the archiver. `$2` are the
/// `application_name`s of the job's own sessions, which do not count as other sessions at work.
///
/// One statement, so that a full sample costs one round trip more than a lock sample; the
/// activity is read once. Slots and archiver read as they do on a primary: the WAL position
/// is the replay position on a standby, and the archiver counts only where it runs
/// (`archive_mode = on` on a primary, `always` anywhere).
const LOAD_SQL: &str = "\
WITH act AS MATERIALIZED (
       SELECT pid, backend_type, state, state_change, wait_event, application_name, query
         FROM pg_stat_activity),
     wal AS (
       SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
                   ELSE pg_current_wal_lsn() END AS lsn)
SELECT (SELECT count(*) FROM act WHERE backend_type = 'client backend')::int4,
       current_setting('max_connections')::int4,
       i.pid, i.idle_ms, i.query,
       (SELECT coalesce(json_agg(json_build_object(
                 'name', coalesce(nullif(application_name, ''), host(client_addr), 'pid ' || pid),
                 'lag_ms', (extract(epoch FROM replay_lag) * 1000)::int8,
                 'lag_bytes', CASE WHEN pg_is_in_recovery() THEN NULL
                              ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::int8 END)),
               '[]')::text
          FROM pg_stat_replication),
       (SELECT count(*) FROM act
         WHERE backend_type = 'client backend' AND state = 'active'
           AND pid <> pg_backend_pid() AND coalesce(application_name, '') <> ALL ($2::text[])
           AND wait_event IS DISTINCT FROM 'ClientRead')::int8,
       (SELECT coalesce(json_agg(json_build_object(
                 'pid', p.pid, 'relation', p.relid::regclass::text, 'phase', p.phase,
                 'wraparound', a.query LIKE '%(to prevent wraparound)')), '[]')::text
          FROM pg_stat_progress_vacuum p JOIN act a ON a.pid = p.pid
         WHERE a.backend_type = 'autovacuum worker'
           AND p.datid = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND p.relid IN (SELECT c.oid FROM pg_class c WHERE c.oid = ANY ($1::text[]::regclass[])
                           UNION ALL
                           SELECT c.reltoastrelid FROM pg_class c
                            WHERE c.oid = ANY ($1::text[]::regclass[]))),
       (SELECT coalesce(json_agg(json_build_object(
                 'name', slot_name, 'kind', slot_type, 'plugin', plugin, 'consumer', active_pid,
                 'retained', pg_wal_lsn_diff(wal.lsn, restart_lsn)::int8,
                 'unconfirmed', pg_wal_lsn_diff(wal.lsn, confirmed_flush_lsn)::int8,
                 'wal_status', wal_status)), '[]')::text
          FROM pg_replication_slots, wal),
       current_setting('archive_mode') = 'always'
         OR (current_setting('archive_mode') = 'on' AND NOT pg_is_in_recovery()),
       ar.last_archived_wal,
       (extract(epoch FROM clock_timestamp() - ar.last_archived_time) * 1000)::int8,
       ar.last_failed_wal,
       (extract(epoch FROM clock_timestamp() - ar.last_failed_time) * 1000)::int8,
       pg_wal_lsn_diff(wal.lsn, '0/0')::int8,
       pg_size_bytes(current_setting('wal_segment_size'))
  FROM pg_stat_archiver AS ar, wal
  LEFT JOIN LATERAL (
       SELECT pid, (extract(epoch FROM clock_timestamp() - state_change) * 1000)::int8 AS idle_ms,
              coalesce(query, '') AS query
         FROM act
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

/// One row of `pg_stat_progress_vacuum` for the table, as the load query spells it.
#[derive(Deserialize)]
struct RawAutovacuum {
    pid: i32,
    relation: String,
    phase: String,
    wraparound: bool,
}

/// One row of `pg_replication_slots`, as the load query spells it.
#[derive(Deserialize)]
struct RawSlot {
    name: String,
    kind: String,
    plugin: Option<String>,
    consumer: Option<i32>,
    retained: Option<i64>,
    unconfirmed: Option<i64>,
    wal_status: Option<String>,
}

/// Takes one sample in one read-only transaction.
pub async fn take(conn: &mut PgConnection, probe: &Request<'_>) -> Result<Sampled, sqlx::Error> {
    let (mut tx, _) = begin_bounded(conn, probe.timeout, SAMPLE_LOCK_TIMEOUT, true).await?;
    let with_statements = !probe.statements.is_empty();
    let mut query = statement(&locks_sql(with_statements))
        .bind(probe.batches.iter().map(|b| b.pid).collect::<Vec<_>>())
        .bind(
            probe
                .batches
                .iter()
                .map(|b| b.xact_start_us)
                .collect::<Vec<_>>(),
        )
        .bind(probe.relations)
        .bind(probe.ours);
    if with_statements {
        query = query.bind(probe.statements);
    }
    let rows = query.fetch_all(&mut *tx).await?;
    let mut locks = Locks::default();
    let (mut in_the_way, mut waiting, mut statements) = (Vec::new(), Vec::new(), Vec::new());
    let mut rows_only = true;
    for row in rows {
        let kind: String = row.try_get(0)?;
        if kind == "statement" {
            statements.push((row.try_get(4)?, i64::from(row.try_get::<i32, _>(1)?)));
            continue;
        }
        let session = Session {
            pid: i64::from(row.try_get::<i32, _>(1)?),
            query: shorten(&row.try_get::<String, _>(4)?),
        };
        let blocker = i64::from(row.try_get::<i32, _>(5)?);
        match kind.as_str() {
            "batch_waits" => {
                locks.batch_waiting = true;
                waiting.push(blocker);
                in_the_way.push(blocker);
            }
            "waits_on_batch" => {
                in_the_way.push(blocker);
                let event: String = row.try_get(2)?;
                rows_only &= matches!(event.as_str(), "transactionid" | "tuple");
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
    locks.waiting_for_rows = rows_only && !locks.waiting_on_batch.is_empty();
    let mut sampled = Sampled {
        locks,
        in_the_way,
        waiting,
        statements,
        load: None,
        throttle_query: None,
    };
    if probe.full {
        sampled.load = Some(load(&mut tx, probe).await?);
        if let Some(query) = probe.throttle_query {
            let sql = throttle_query_sql(query);
            sampled.throttle_query = Some(statement(&sql).fetch_one(&mut *tx).await?.try_get(0)?);
        }
    }
    tx.commit().await?;
    Ok(sampled)
}

async fn load(conn: &mut PgConnection, probe: &Request<'_>) -> Result<(Load, Wal), sqlx::Error> {
    let row = statement(LOAD_SQL)
        .bind(probe.relations)
        .bind(probe.ours)
        .fetch_one(conn)
        .await?;
    let connections: i32 = row.try_get(0)?;
    let max_connections: i32 = row.try_get(1)?;
    let idle_pid: Option<i32> = row.try_get(2)?;
    let idle_ms: Option<i64> = row.try_get(3)?;
    let idle_query: Option<String> = row.try_get(4)?;
    let replicas: Vec<RawReplica> = json(&row.try_get::<String, _>(5)?)?;
    let active_sessions: i64 = row.try_get(6)?;
    let autovacuum: Vec<RawAutovacuum> = json(&row.try_get::<String, _>(7)?)?;
    let slots: Vec<RawSlot> = json(&row.try_get::<String, _>(8)?)?;
    let archiving: bool = row.try_get(9)?;
    let file_ago = |name: usize, ms: usize| -> Result<Option<(String, Duration)>, sqlx::Error> {
        let file: Option<String> = row.try_get(name)?;
        let ago: Option<i64> = row.try_get(ms)?;
        Ok(file.zip(ago).map(|(file, ago)| (file, millis(ago))))
    };
    let archiver = Archiver {
        last_archived: file_ago(10, 11)?,
        last_failed: file_ago(12, 13)?,
        // NULL only on a standby that has replayed nothing yet.
        position: row.try_get::<Option<i64>, _>(14)?.map_or(0, bytes),
        segment_size: bytes(row.try_get(15)?),
    };
    let wal = Wal {
        slots: slots
            .into_iter()
            .map(|s| Slot {
                name: s.name,
                kind: s.kind,
                plugin: s.plugin,
                consumer: s.consumer,
                retained: s.retained.map(bytes),
                unconfirmed: s.unconfirmed.map(bytes),
                wal_status: s.wal_status,
            })
            .collect(),
        archiver: archiving.then_some(archiver),
    };
    let load = Load {
        connections: u32::try_from(connections).unwrap_or(0),
        max_connections: u32::try_from(max_connections).unwrap_or(0),
        idle_in_transaction: idle_pid.zip(idle_ms).map(|(pid, ms)| {
            let session = Session {
                pid: i64::from(pid),
                query: shorten(&idle_query.unwrap_or_default()),
            };
            (session, millis(ms))
        }),
        replicas: replicas
            .into_iter()
            .map(|r| Replica {
                name: r.name,
                lag: r.lag_ms.map(millis),
                lag_bytes: r.lag_bytes.map(bytes),
                unknown: None,
            })
            .collect(),
        active_sessions: u64::try_from(active_sessions).unwrap_or(0),
        autovacuum: autovacuum
            .into_iter()
            .map(|a| Autovacuum {
                pid: i64::from(a.pid),
                relation: a.relation,
                phase: a.phase,
                wraparound: a.wraparound,
            })
            .collect(),
        purge: None,
    };
    Ok((load, wal))
}

/// A JSON column of the load query.
fn json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, sqlx::Error> {
    serde_json::from_str(text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

/// A byte count from SQL; a negative one (a slot ahead of a standby's replay) is none.
fn bytes(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The condition, on `pg_stat_activity` (or the function behind it) aliased `a`, that keeps
/// the backends running one of our statements now: those whose query starts with one of the
/// markers bound as `$param` (`text[]`). A statement that runs outside a transaction block
/// (VACUUM) cannot be known by its [`Backend`] beforehand — behind PgBouncer the server
/// session that runs it is picked when it is sent, and VACUUM runs several transactions of its
/// own — so it starts with a comment unique to it, which the marker is.
fn our_statements(param: usize) -> String {
    format!(
        "a.state = 'active' AND EXISTS (SELECT FROM unnest(${param}::text[]) AS m(marker) \
         WHERE starts_with(a.query, m.marker))"
    )
}

/// Cancels the statements `batches` are running, those of them whose transaction still runs
/// (a pid alone might by now serve another client behind PgBouncer), and our `statements`
/// (markers) that still run. How many were signalled.
pub async fn cancel(
    conn: &mut PgConnection,
    batches: &[Backend],
    statements: &[String],
    timeout: Duration,
) -> Result<usize, sqlx::Error> {
    let (mut tx, _) = begin_bounded(conn, timeout, SAMPLE_LOCK_TIMEOUT, true).await?;
    let sql = format!(
        "SELECT count(*) FILTER (WHERE pg_cancel_backend(o.pid))::int8 FROM (
           SELECT a.pid FROM pg_stat_activity a {OUR_BACKENDS}
           UNION
           SELECT a.pid FROM pg_stat_activity a WHERE {}) AS o",
        our_statements(3)
    );
    let sent: i64 = statement(&sql)
        .bind(batches.iter().map(|b| b.pid).collect::<Vec<_>>())
        .bind(batches.iter().map(|b| b.xact_start_us).collect::<Vec<_>>())
        .bind(statements)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
    tx.commit().await?;
    Ok(usize::try_from(sent).unwrap_or(0))
}

fn millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_query_is_wrapped_as_a_number() {
        assert_eq!(
            throttle_query_sql("SELECT count(*) FROM brake"),
            "SELECT coalesce((SELECT t.v FROM (SELECT count(*) FROM brake) AS t(v) LIMIT 1)::float8, 0)"
        );
    }
}
