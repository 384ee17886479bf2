//! Load signals: connections in use, a session idle in transaction, replica lag, other
//! sessions at work, autovacuum on the table. Pure: the full sample's numbers in, signals out.
//! (InnoDB's purge backlog is read with the load, and judged in `purge`.)

use std::time::Duration;

use super::{Action, Bytes, Found, Purge, Session, Signal, human, query};
use crate::job::ThrottlePolicy;

/// How busy the server, its replicas and the table are.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Load {
    /// Client backends connected now.
    pub connections: u32,
    /// `max_connections`.
    pub max_connections: u32,
    /// The session idle in transaction for longest, with how long.
    pub idle_in_transaction: Option<(Session, Duration)>,
    pub replicas: Vec<Replica>,
    /// Client sessions running a query now, other than the job's own and the monitor's (and
    /// not merely waiting for their client to send more).
    pub active_sessions: u64,
    /// Autovacuum workers vacuuming the table (or its TOAST table).
    pub autovacuum: Vec<Autovacuum>,
    /// InnoDB's purge backlog (MySQL and MariaDB); `None` on PostgreSQL, or where the monitor
    /// may not read it.
    pub purge: Option<Purge>,
}

/// An autovacuum worker at work on the table, from `pg_stat_progress_vacuum`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Autovacuum {
    /// The worker's pid, for the reason (and for `pg_cancel_backend`, if the operator must).
    pub pid: i64,
    /// The relation it vacuums, as SQL (`items`, `pg_toast.pg_toast_16384`).
    pub relation: String,
    /// `phase`, e.g. `scanning heap`, `vacuuming indexes`.
    pub phase: String,
    /// Its query says `(to prevent wraparound)`: PostgreSQL must freeze the table before
    /// transaction ids run out, and this vacuum cannot be cancelled by a lock request.
    pub wraparound: bool,
}

/// A replica: one row of `pg_stat_replication`, or a MySQL replica's `SHOW REPLICA STATUS`
/// (`--replica-url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    /// `application_name`, or the client address when that is empty; a MySQL replica's
    /// `host:port`.
    pub name: String,
    /// `replay_lag`: NULL once an idle replica has caught up, which is not lag. On MySQL,
    /// `Seconds_Behind_Source`.
    pub lag: Option<Duration>,
    /// WAL bytes sent but not yet replayed (NULL without the privilege to see it).
    pub lag_bytes: Option<u64>,
    /// Why its lag is not known when that must hold the run back, as a sentence after the
    /// replica's name: a MySQL replica whose replication is stopped (`Seconds_Behind_Source`
    /// is NULL then) or that cannot be read. `None` on PostgreSQL.
    pub unknown: Option<String>,
}

/// The load signals `load` shows.
pub(super) fn signals(policy: &ThrottlePolicy, load: &Load) -> Vec<Found> {
    let mut out = Vec::new();
    if load.max_connections > 0 {
        let share = f64::from(load.connections) / f64::from(load.max_connections);
        if share > policy.max_connection_use {
            let reason = format!(
                "{} of {} connections in use ({:.0}% > {:.0}%)",
                load.connections,
                load.max_connections,
                share * 100.0,
                policy.max_connection_use * 100.0
            );
            out.push((Signal::Connections, Action::Throttle, reason));
        }
    }
    if !policy.max_idle_in_transaction.is_zero()
        && let Some((session, idle)) = &load.idle_in_transaction
        && *idle > policy.max_idle_in_transaction
    {
        let reason = format!(
            "pid {} has been idle in transaction for {} (limit {}){}",
            session.pid,
            human(*idle),
            human(policy.max_idle_in_transaction),
            query(session)
        );
        out.push((Signal::IdleInTransaction, Action::Throttle, reason));
    }
    if let Some(reason) = load.replicas.iter().find_map(|r| replica_lag(policy, r)) {
        out.push((Signal::ReplicaLag, Action::Pause, reason));
    }
    let limit = policy.max_active_sessions;
    if limit > 0 && load.active_sessions > limit {
        let reason = format!(
            "{} other sessions are active (limit {limit})",
            load.active_sessions
        );
        out.push((Signal::ActiveSessions, Action::Throttle, reason));
    }
    if policy.watch_autovacuum
        && let Some(found) = autovacuum(&load.autovacuum)
    {
        out.push(found);
    }
    out
}

/// A wraparound vacuum of the table pauses the run, any other autovacuum of it throttles.
fn autovacuum(workers: &[Autovacuum]) -> Option<Found> {
    let worker = workers.iter().find(|w| w.wraparound).or(workers.first())?;
    let (action, purpose) = if worker.wraparound {
        (Action::Pause, " to prevent wraparound")
    } else {
        (Action::Throttle, "")
    };
    let reason = format!(
        "autovacuum pid {} is vacuuming {}{purpose} (phase {})",
        worker.pid, worker.relation, worker.phase
    );
    Some((Signal::Autovacuum, action, reason))
}

/// Why `replica` is too far behind, if it is. One whose lag is not known is as far behind as
/// can be (fail closed), unless `max_replica_lag` is off.
fn replica_lag(policy: &ThrottlePolicy, replica: &Replica) -> Option<String> {
    let limit = policy.max_replica_lag;
    if let Some(why) = &replica.unknown
        && !limit.is_zero()
    {
        return Some(format!("replica {}: {why}", replica.name));
    }
    if let Some(lag) = replica.lag
        && !limit.is_zero()
        && lag > limit
    {
        return Some(format!(
            "replica {} is {} behind (limit {})",
            replica.name,
            human(lag),
            human(limit)
        ));
    }
    let limit = policy.max_replica_lag_bytes;
    match replica.lag_bytes {
        Some(bytes) if limit > 0 && bytes > limit => Some(format!(
            "replica {} has {} of WAL to replay (limit {})",
            replica.name,
            Bytes(bytes),
            Bytes(limit)
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
