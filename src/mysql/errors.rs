//! What a MySQL or MariaDB error means to a run, by the server's error number (its SQLSTATE
//! is `HY000` for most of them): wait and retry, halve the batch, reconnect, the row's data, or
//! give up. The classes are the engine's, shared with PostgreSQL (`crate::failure::Failure`).

use sqlx::mysql::MySqlDatabaseError;

use crate::failure::Failure;

/// `ER_LOCK_WAIT_TIMEOUT`: a row lock (`innodb_lock_wait_timeout`) or a metadata lock
/// (`lock_wait_timeout`) was not granted in time.
const LOCK_WAIT_TIMEOUT: u16 = 1205;
/// `ER_LOCK_DEADLOCK`: chosen as a deadlock's victim; the transaction was rolled back.
const DEADLOCK: u16 = 1213;
/// `ER_QUERY_INTERRUPTED`: `KILL QUERY`, our watchdog's or the monitor's.
const QUERY_INTERRUPTED: u16 = 1317;
/// MariaDB's `ER_STATEMENT_TIMEOUT` (`max_statement_time`) and MySQL's
/// `ER_QUERY_TIMEOUT` (`max_execution_time`).
const STATEMENT_TIMEOUTS: [u16; 2] = [1969, 3024];
/// The session was killed or the server is going away: `ER_CONNECTION_KILLED` (MariaDB),
/// `ER_SERVER_SHUTDOWN`, `ER_CON_COUNT_ERROR` (too many connections),
/// `ER_SERVER_OFFLINE_MODE` and MySQL's `ER_CLIENT_INTERACTION_TIMEOUT`.
const LOST: [u16; 5] = [1927, 1053, 1040, 3032, 4031];
/// Errors about one row's data: out of range, too long, truncated, incorrect value, NULL
/// into NOT NULL, duplicate key, a foreign key, a CHECK constraint, division by zero, and a
/// trigger's `SIGNAL` (1644).
const ROW: [u16; 16] = [
    1048, 1062, 1264, 1265, 1292, 1366, 1406, 1451, 1452, 1365, 3819, 1644, 1411, 1367, 3101, 1690,
];

/// The server's error number, when `err` is MySQL's.
pub(super) fn number(err: &sqlx::Error) -> Option<u16> {
    err.as_database_error()?
        .try_downcast_ref::<MySqlDatabaseError>()
        .map(MySqlDatabaseError::number)
}

/// How to go on after `err` from a MySQL or MariaDB server; `None` when it is not one of
/// theirs (PostgreSQL's classes, or the client's own, then apply).
pub fn classify(err: &sqlx::Error) -> Option<Failure> {
    let n = number(err)?;
    Some(match n {
        LOCK_WAIT_TIMEOUT | DEADLOCK => Failure::Transient {
            halve: false,
            reconnect: false,
        },
        QUERY_INTERRUPTED => Failure::Transient {
            halve: true,
            reconnect: false,
        },
        n if STATEMENT_TIMEOUTS.contains(&n) => Failure::Transient {
            halve: true,
            reconnect: false,
        },
        n if LOST.contains(&n) => Failure::Transient {
            halve: false,
            reconnect: true,
        },
        _ => Failure::Fatal,
    })
}

/// Whether `err` is MySQL's lock wait running out; `None` when it is not MySQL's.
pub fn gave_up_on_lock(err: &sqlx::Error) -> Option<bool> {
    number(err).map(|n| n == LOCK_WAIT_TIMEOUT)
}

/// Whether `err` is about one row's data (so a batch narrows to that row); `None` when it is
/// not MySQL's.
pub fn is_row_error(err: &sqlx::Error) -> Option<bool> {
    number(err).map(|n| ROW.contains(&n))
}

/// Whether `err` is a statement that ran out of its time or its lock wait: a probe that was
/// that slow.
pub(super) fn ends_in_time(err: &sqlx::Error) -> bool {
    number(err).is_some_and(|n| {
        n == LOCK_WAIT_TIMEOUT || n == QUERY_INTERRUPTED || STATEMENT_TIMEOUTS.contains(&n)
    })
}
