//! Load signals: connections in use, a session idle in transaction, replica lag. Pure: the
//! full sample's numbers in, signals out.

use std::time::Duration;

use super::{Action, Bytes, Found, Session, Signal, human, query};
use crate::job::ThrottlePolicy;

/// How busy the server and its replicas are.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Load {
    /// Client backends connected now.
    pub connections: u32,
    /// `max_connections`.
    pub max_connections: u32,
    /// The session idle in transaction for longest, with how long.
    pub idle_in_transaction: Option<(Session, Duration)>,
    pub replicas: Vec<Replica>,
}

/// One row of `pg_stat_replication`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    /// `application_name`, or the client address when that is empty.
    pub name: String,
    /// `replay_lag`: NULL once an idle replica has caught up, which is not lag.
    pub lag: Option<Duration>,
    /// WAL bytes sent but not yet replayed (NULL without the privilege to see it).
    pub lag_bytes: Option<u64>,
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
    out
}

/// Why `replica` is too far behind, if it is.
fn replica_lag(policy: &ThrottlePolicy, replica: &Replica) -> Option<String> {
    let limit = policy.max_replica_lag;
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
