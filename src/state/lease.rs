//! Leases: who holds a job or a range, and when a holder is presumed gone. Pure, apart from
//! reading this host's name and `/proc` to see whether a process of this host still exists.
//!
//! A lease is a row's `owner` (`host:pid:nonce`), its `heartbeat_at` and its `lease_s`: the
//! holder refreshes `heartbeat_at` every [`HEARTBEAT_EVERY`] and declares, in `lease_s`, how
//! long others must wait after its last heartbeat before they may take over (`run
//! --lease-timeout`). The holder's own declaration decides, so processes started with
//! different timeouts still agree. Ages are measured with the database's clock
//! (`now() - heartbeat_at`), so hosts with skewed clocks agree too. A holder on the same host
//! whose process is gone (kill -9) is taken over at once.
//!
//! Leases are rows rather than advisory locks because session advisory locks do not survive
//! PgBouncer's transaction pooling.

use std::time::Duration;

/// The lease timeout when none is declared (`run --lease-timeout`, and rows written by an
/// older version): several missed heartbeats, so that a busy server or a paused VM does not
/// lose its lease.
pub const LEASE_TIMEOUT: Duration = Duration::from_secs(15);

/// The shortest lease timeout a runner may declare: a few heartbeats.
pub const MIN_LEASE_TIMEOUT: Duration = Duration::from_secs(3);

/// How often a running process refreshes its leases and reads its control flag.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// Who runs a job or a range: `host:pid:nonce`. The host and pid let a runner on the same host
/// see at once that a previous owner died (kill -9) instead of waiting for its lease to go
/// stale; the nonce tells a restarted process with a recycled pid from its predecessor.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Owner(pub String);

impl Owner {
    /// An owner id for this process.
    pub fn this_process() -> Owner {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Owner(format!("{}:{}:{nanos:08x}", hostname(), std::process::id()))
    }

    /// The host part of the id.
    pub fn host(&self) -> &str {
        self.0.rsplitn(3, ':').nth(2).unwrap_or(&self.0)
    }

    /// True when the owner ran on this host and its process no longer exists.
    pub fn is_dead_here(&self) -> bool {
        let mut parts = self.0.rsplitn(3, ':');
        let (_nonce, pid, host) = (parts.next(), parts.next(), parts.next());
        match (host, pid.and_then(|p| p.parse::<u32>().ok())) {
            (Some(host), Some(pid)) => {
                host == hostname()
                    && pid != std::process::id()
                    && !std::path::Path::new(&format!("/proc/{pid}")).exists()
            }
            _ => false,
        }
    }
}

/// This machine's name, as the kernel knows it.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown-host".into())
}

/// A lease as a row stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub owner: Owner,
    /// Seconds since the last heartbeat (database clock).
    pub heartbeat_age: Option<f64>,
    /// How long the holder asked others to wait after its last heartbeat, in seconds.
    pub timeout_s: Option<f64>,
}

impl Lease {
    /// The declared timeout, or [`LEASE_TIMEOUT`] for rows that declare none.
    pub fn timeout(&self) -> f64 {
        self.timeout_s.unwrap_or(LEASE_TIMEOUT.as_secs_f64())
    }

    /// True while the holder may still be running: it beat within its timeout and, if it ran
    /// on this host, its process still exists.
    pub fn is_live(&self) -> bool {
        self.heartbeat_age.is_some_and(|age| age < self.timeout()) && !self.owner.is_dead_here()
    }
}

/// `lease_s` as stored: whole seconds, at least [`MIN_LEASE_TIMEOUT`].
pub fn timeout_secs(timeout: Duration) -> i32 {
    i32::try_from(timeout.max(MIN_LEASE_TIMEOUT).as_secs()).unwrap_or(i32::MAX)
}

/// `idle_in_transaction_session_timeout` for batch transactions under a lease of `timeout`: a
/// third of it (at least a second), so that the server ends the transaction of a frozen
/// process — and releases its row locks — well before anyone takes its range over.
pub fn idle_in_transaction_timeout(timeout: Duration) -> Duration {
    (timeout / 3).max(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(owner: &str, age: Option<f64>, timeout_s: Option<f64>) -> Lease {
        Lease {
            owner: Owner(owner.into()),
            heartbeat_age: age,
            timeout_s,
        }
    }

    const ELSEWHERE: &str = "elsewhere.example:4242:00000001";

    #[test]
    fn a_recent_heartbeat_elsewhere_is_live() {
        assert!(lease(ELSEWHERE, Some(1.0), None).is_live());
    }

    #[test]
    fn the_default_timeout_applies_when_none_is_declared() {
        let stale = LEASE_TIMEOUT.as_secs_f64();
        assert!(!lease(ELSEWHERE, Some(stale), None).is_live());
        assert!(lease(ELSEWHERE, Some(stale - 0.1), None).is_live());
    }

    #[test]
    fn the_holders_declared_timeout_decides() {
        assert!(!lease(ELSEWHERE, Some(4.0), Some(4.0)).is_live());
        assert!(lease(ELSEWHERE, Some(20.0), Some(60.0)).is_live());
    }

    #[test]
    fn no_heartbeat_is_not_live() {
        assert!(!lease(ELSEWHERE, None, None).is_live());
    }

    #[test]
    fn a_dead_process_on_this_host_is_not_live_at_once() {
        let dead = format!("{}:{}:00000001", hostname(), u32::MAX - 1);
        assert!(!lease(&dead, Some(0.1), None).is_live());
    }

    #[test]
    fn this_process_is_alive() {
        assert!(lease(&Owner::this_process().0, Some(0.1), None).is_live());
    }

    #[test]
    fn the_host_is_the_part_before_pid_and_nonce() {
        assert_eq!(Owner("db-7.example:12:abc".into()).host(), "db-7.example");
        assert_eq!(Owner("odd".into()).host(), "odd");
    }

    #[test]
    fn timeouts_are_whole_seconds_and_not_too_short() {
        assert_eq!(timeout_secs(Duration::from_millis(1500)), 3);
        assert_eq!(timeout_secs(Duration::from_secs(15)), 15);
    }

    #[test]
    fn frozen_transactions_end_well_before_takeover() {
        assert_eq!(
            idle_in_transaction_timeout(Duration::from_secs(15)),
            Duration::from_secs(5)
        );
        assert_eq!(
            idle_in_transaction_timeout(Duration::from_secs(3)),
            Duration::from_secs(1)
        );
    }
}
