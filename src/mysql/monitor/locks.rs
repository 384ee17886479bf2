//! The metadata locks on the job's table, as the monitor's sample reads them on MySQL and
//! MariaDB (ARCHITECTURE.md, "Watching MySQL and MariaDB").
//!
//! Every statement on a table holds a metadata lock on it until its transaction ends: our
//! batch's `UPDATE` a `SHARED_WRITE` one. An `ALTER TABLE` needs an `EXCLUSIVE` one, so it
//! queues behind our batch, and every later statement on the table queues behind the `ALTER`.
//! Three things are read:
//! - **waiters**: another session waiting for a metadata lock on the table. While one of our
//!   batches runs, the policy yields: our batch is cancelled and rolled back, so that the
//!   waiter goes ahead (and the run pauses while any session waits there);
//! - **holders**: another session holding a lock that our `UPDATE` would queue behind
//!   (`LOCK TABLES`, a DDL statement in progress): the run pauses, or does not start;
//! - **our own waits**: one of our batches queued for a metadata lock.
//!
//! Where they come from:
//! - MySQL with `performance_schema` on (its default): `performance_schema.metadata_locks`,
//!   `PENDING` and `GRANTED` rows joined through `performance_schema.threads` to the
//!   processlist id (gh-ost's cut-over reads the same), which shows waiters and holders alike;
//! - otherwise (MariaDB, whose `performance_schema` is off by default and, when on, does not
//!   instrument metadata locks by default): the processlist. A waiter's state is `Waiting for
//!   table metadata lock`, and its `INFO` names the table; a DDL statement in progress names it too. A session
//!   that holds `LOCK TABLES` sits idle, and the processlist does not say what it holds; on
//!   MariaDB, a probe that may not wait (`lock_wait_timeout = 0`) finds that someone does.

use std::collections::BTreeSet;

use sqlx::{MySqlConnection, Row as _};

use super::super::Flavor;
use super::super::errors::number;
use super::super::plan::words::tokens;
use super::super::session::{Session, statement};
use super::super::sql::unquoted;
use crate::monitor::policy::{Locks, Session as Other, TableLock};
use crate::monitor::sample::{Request, shorten};

/// What a sample found around the table: the locks for the policy, and which of our batches
/// are in another session's way or wait themselves.
#[derive(Debug, Default)]
pub struct Found {
    pub locks: Locks,
    pub in_the_way: Vec<i64>,
    pub waiting: Vec<i64>,
}

/// The metadata-lock types another session may hold that our batch's `SHARED_WRITE` queues
/// behind, or that a DDL statement in progress holds (`SHARED_UPGRADABLE`: it needs an
/// `EXCLUSIVE` lock at its end, which our batches would hold up).
const IN_THE_WAY: [&str; 5] = [
    "SHARED_UPGRADABLE",
    "SHARED_READ_ONLY",
    "SHARED_NO_WRITE",
    "SHARED_NO_READ_WRITE",
    "EXCLUSIVE",
];

/// The processlist state of a session queued for a metadata lock.
const WAITING: &str = "Waiting for table metadata lock";

/// Statements whose run holds a metadata lock on the table they name that our `UPDATE` waits
/// for, as the processlist shows them running.
const DDL: [&str; 7] = [
    "ALTER", "CREATE", "DROP", "OPTIMIZE", "RENAME", "TRUNCATE", "REPAIR",
];

/// Reads the locks on the first of `request.relations` (the table).
pub async fn read(session: &mut Session, request: &Request<'_>) -> Result<Found, sqlx::Error> {
    let Some((schema, name)) = request.relations.first().and_then(|r| unquoted(r)) else {
        return Ok(Found::default());
    };
    let ours: BTreeSet<i64> = request.batches.iter().map(|b| b.pid).collect();
    let from_performance_schema =
        session.server.flavor == Flavor::MySql && session.server.performance_schema;
    let read = if from_performance_schema {
        match metadata_locks(&mut session.conn, &schema, &name).await {
            // ER_TABLEACCESS_DENIED_ERROR: `plan` warned; the processlist still shows waiters.
            Err(e) if number(&e) == Some(1142) => None,
            read => Some(read?),
        }
    } else {
        None
    };
    let rows = if let Some(rows) = read {
        rows
    } else {
        let mut rows = processlist(&mut session.conn, &schema, &name).await?;
        let our_wait = rows.iter().any(|r| ours.contains(&r.pid));
        let unseen = !rows.iter().any(|r| r.granted && !ours.contains(&r.pid));
        if session.server.flavor == Flavor::MariaDb
            && unseen
            && (ours.is_empty() || our_wait)
            && !probe(&mut session.conn, &schema, &name).await?
        {
            rows.push(Row {
                pid: 0,
                granted: true,
                mode: "a metadata lock".to_owned(),
                query: "LOCK TABLES or DDL (MariaDB's processlist does not say which session)"
                    .to_owned(),
            });
        }
        rows
    };
    Ok(judge(&rows, &ours))
}

/// One session's lock on the table: held (`granted`) or waited for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    /// The processlist id; 0 when the server does not say whose it is.
    pid: i64,
    granted: bool,
    /// The lock's type, in words.
    mode: String,
    query: String,
}

/// What `rows` mean for the policy, with `ours` our running batches' processlist ids. Every
/// other session waiting on the table waits for our running batches too, which hold a
/// `SHARED_WRITE` lock from their first statement on; pure.
fn judge(rows: &[Row], ours: &BTreeSet<i64>) -> Found {
    let mut found = Found::default();
    for row in rows {
        if ours.contains(&row.pid) {
            if !row.granted {
                found.waiting.push(row.pid);
                found.locks.batch_waiting = true;
            }
            continue;
        }
        let session = Other {
            pid: row.pid,
            query: row.query.clone(),
        };
        if !row.granted && !ours.is_empty() {
            found.locks.waiting_on_batch.push(session.clone());
        }
        found.locks.table.push(TableLock {
            session,
            mode: row.mode.clone(),
            granted: row.granted,
        });
    }
    if !found.locks.waiting_on_batch.is_empty() {
        found.in_the_way = ours.iter().copied().collect();
    }
    found
}

/// MySQL: every other session's metadata lock on the table that is pending, or held and in
/// the way (see [`IN_THE_WAY`]), and our batches' pending ones.
async fn metadata_locks(
    conn: &mut MySqlConnection,
    schema: &str,
    name: &str,
) -> Result<Vec<Row>, sqlx::Error> {
    let held: Vec<String> = IN_THE_WAY.iter().map(|t| format!("'{t}'")).collect();
    let sql = format!(
        "SELECT CAST(t.PROCESSLIST_ID AS SIGNED), m.LOCK_STATUS = 'GRANTED', \
                CAST(m.LOCK_TYPE AS CHAR), CAST(COALESCE(t.PROCESSLIST_INFO, '') AS CHAR) \
           FROM performance_schema.metadata_locks m \
           JOIN performance_schema.threads t ON t.THREAD_ID = m.OWNER_THREAD_ID \
          WHERE m.OBJECT_TYPE = 'TABLE' AND m.OBJECT_SCHEMA = ? AND m.OBJECT_NAME = ? \
            AND t.PROCESSLIST_ID <> CONNECTION_ID() \
            AND (m.LOCK_STATUS = 'PENDING' OR m.LOCK_TYPE IN ({}))",
        held.join(", ")
    );
    let rows = statement(&sql)
        .bind(schema)
        .bind(name)
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|row| {
            Ok(Row {
                pid: row.try_get(0)?,
                granted: row.try_get(1)?,
                mode: format!("metadata lock {}", row.try_get::<String, _>(2)?),
                query: shorten(&row.try_get::<String, _>(3)?),
            })
        })
        .collect()
}

/// Whether the account may read `performance_schema.metadata_locks`.
pub async fn readable(conn: &mut MySqlConnection) -> Result<bool, sqlx::Error> {
    match statement("SELECT 1 FROM performance_schema.metadata_locks LIMIT 0")
        .fetch_optional(conn)
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if number(&e).is_some() => Ok(false),
        Err(e) => Err(e),
    }
}

/// The processlist's sessions whose statement names the table: those queued for a metadata
/// lock, and those running DDL (a holder).
async fn processlist(
    conn: &mut MySqlConnection,
    schema: &str,
    name: &str,
) -> Result<Vec<Row>, sqlx::Error> {
    let sql = "SELECT CAST(ID AS SIGNED), CAST(COALESCE(STATE, '') AS CHAR), \
                      CAST(INFO AS CHAR), CAST(COALESCE(DB, '') AS CHAR) \
                 FROM information_schema.PROCESSLIST \
                WHERE ID <> CONNECTION_ID() AND COMMAND IN ('Query', 'Execute') \
                  AND INFO IS NOT NULL";
    let mut out = Vec::new();
    for row in statement(sql).fetch_all(conn).await? {
        let (state, info, db): (String, String, String) =
            (row.try_get(1)?, row.try_get(2)?, row.try_get(3)?);
        if !names(&info, &db, schema, name) {
            continue;
        }
        let waiting = state == WAITING;
        let first = info.split_whitespace().next().unwrap_or("");
        if !waiting && !DDL.iter().any(|ddl| first.eq_ignore_ascii_case(ddl)) {
            continue;
        }
        out.push(Row {
            pid: row.try_get(0)?,
            granted: !waiting,
            mode: "a metadata lock".to_owned(),
            query: shorten(&info),
        });
    }
    Ok(out)
}

/// Whether the statement `info`, run in database `db`, names the table `schema`.`name`:
/// qualified with its database, or bare while `db` is its database. Case is ignored, so that
/// a doubt reads as naming it (the safe side: a pause more).
fn names(info: &str, db: &str, schema: &str, name: &str) -> bool {
    tokens(info).iter().any(|word| {
        word.name.eq_ignore_ascii_case(name)
            && match &word.qualifier {
                Some(qualifier) => qualifier.eq_ignore_ascii_case(schema),
                None => db.eq_ignore_ascii_case(schema),
            }
    })
}

/// MariaDB: whether the metadata lock our `UPDATE` takes is free now, asked by taking it for
/// an instant without waiting (`lock_wait_timeout = 0`; a statement that reads no row).
async fn probe(conn: &mut MySqlConnection, schema: &str, name: &str) -> Result<bool, sqlx::Error> {
    let sql = format!(
        "SET STATEMENT lock_wait_timeout = 0 FOR SELECT 1 FROM {} WHERE FALSE FOR UPDATE",
        super::super::sql::quoted(schema, name)
    );
    match statement(&sql).fetch_optional(conn).await {
        Ok(_) => Ok(true),
        // ER_LOCK_WAIT_TIMEOUT: someone holds it.
        Err(e) if number(&e) == Some(1205) => Ok(false),
        // The table is gone or out of reach: nothing to say about its locks.
        Err(e) if number(&e).is_some() => Ok(true),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pid: i64, granted: bool, query: &str) -> Row {
        Row {
            pid,
            granted,
            mode: "metadata lock EXCLUSIVE".into(),
            query: query.into(),
        }
    }

    #[test]
    fn a_waiter_behind_a_running_batch_puts_that_batch_in_the_way() {
        let ours = BTreeSet::from([7]);
        let found = judge(&[row(9, false, "ALTER TABLE items ADD c int")], &ours);
        assert_eq!(found.in_the_way, [7]);
        assert_eq!(found.locks.waiting_on_batch[0].pid, 9);
        assert_eq!(found.locks.table.len(), 1);
        assert!(!found.locks.batch_waiting);
    }

    #[test]
    fn with_no_batch_running_a_waiter_only_holds_the_run_back() {
        let found = judge(
            &[row(9, false, "ALTER TABLE items ADD c int")],
            &BTreeSet::new(),
        );
        assert!(found.in_the_way.is_empty());
        assert!(found.locks.waiting_on_batch.is_empty());
        assert!(!found.locks.table[0].granted);
    }

    #[test]
    fn our_batch_queued_behind_a_holder_is_waiting() {
        let ours = BTreeSet::from([7]);
        let found = judge(&[row(7, false, ""), row(3, true, "")], &ours);
        assert_eq!(found.waiting, [7]);
        assert!(found.locks.batch_waiting);
        assert!(found.in_the_way.is_empty());
        assert_eq!(found.locks.table[0].session.pid, 3);
    }

    #[test]
    fn statements_name_the_table_with_or_without_its_database() {
        assert!(names("ALTER TABLE items ADD c int", "db", "db", "items"));
        assert!(names(
            "alter table `db`.`Items` add c int",
            "other",
            "db",
            "items"
        ));
        assert!(!names(
            "ALTER TABLE items ADD c int",
            "other",
            "db",
            "items"
        ));
        assert!(!names("ALTER TABLE items2 ADD c int", "db", "db", "items"));
        assert!(!names("SELECT 'items'", "db", "db", "items"));
    }
}
