//! The `throttle` and `guard` blocks of `plan`: the effective `[throttle]` policy, one signal per
//! line, with what the monitor's role may see and do, and the latency guard's settings. Pure,
//! like the rest of `report`.

use std::fmt::Write as _;
use std::time::Duration;

use crate::guard::aimd::STEP_UP;
use crate::job::{GuardPolicy, ThrottlePolicy};
use crate::monitor::policy::Bytes;
use crate::postgres::privileges::Privileges;

/// The effective `[throttle]` policy, one signal per line, for `plan`.
pub(super) fn policy(
    p: &ThrottlePolicy,
    query_now: Option<f64>,
    sight: Option<&Privileges>,
) -> String {
    let d = |d: Duration| humantime::format_duration(d).to_string();
    let mut lines = Vec::new();
    if !p.enabled {
        lines.push(
            "off ([throttle] enabled = false): no pause, throttle or yield; only the lock \
             timeout bounds how long the application waits behind a batch"
                .to_owned(),
        );
    } else {
        lines.push(format!(
            "sample every {}; full speed after {} clear; pause when no sample for {}",
            d(p.poll),
            d(p.cooldown),
            d(p.fail_closed_after)
        ));
        lines.push(if p.yield_to_waiters {
            format!(
                "yield: cancel the batch when a session waits for its locks (checked every {})",
                d(p.batch_poll)
            )
        } else {
            "yield: off (sessions waiting on a batch wait until it commits)".to_owned()
        });
        lines.push(if p.pause_on_table_locks {
            "pause while another session holds or waits for a conflicting lock on the table"
                .to_owned()
        } else {
            "table locks: ignored".to_owned()
        });
        lines.push(format!(
            "throttle above {:.0}% of max_connections in use",
            p.max_connection_use * 100.0
        ));
        lines.push(if p.max_idle_in_transaction.is_zero() {
            "idle in transaction: ignored".to_owned()
        } else {
            format!(
                "throttle while a session is idle in transaction over {}",
                d(p.max_idle_in_transaction)
            )
        });
        let mut lag = Vec::new();
        if !p.max_replica_lag.is_zero() {
            lag.push(d(p.max_replica_lag));
        }
        if p.max_replica_lag_bytes > 0 {
            lag.push(format!("{} of WAL", Bytes(p.max_replica_lag_bytes)));
        }
        lines.push(if lag.is_empty() {
            "replica lag: ignored".to_owned()
        } else {
            format!(
                "pause while a replica is behind by more than {}",
                lag.join(" or ")
            )
        });
        lines.extend(wal_and_sessions(p));
        if let Some(q) = &p.throttle_query {
            let now = query_now.map_or(String::new(), |v| format!(" (returns {v} now)"));
            lines.push(format!("throttle while throttle_query > 0: {q}{now}"));
        }
        if let Some(f) = &p.throttle_file {
            let now = if f.exists() {
                "exists now"
            } else {
                "absent now"
            };
            lines.push(format!("pause while {} exists ({now})", f.display()));
        }
        lines.push(format!(
            "throttled: batches of batch.min rows, pauses doubling up to {}",
            d(p.max_pause)
        ));
        lines.extend(sight.map(Privileges::describe));
    }
    lines.push(match p.max_wal_rate {
        None => "WAL rate: no budget (max_wal_rate)".to_owned(),
        Some(rate) => format!(
            "pace batches to at most {}/s of WAL, for this process (the server's WAL position \
             read as each batch starts and before it commits)",
            Bytes(rate)
        ),
    });
    block("throttle", &lines)
}

/// The `[guard]` policy, for `plan`.
pub(super) fn guard(g: &GuardPolicy) -> String {
    let d = |d: Duration| humantime::format_duration(d).to_string();
    if !g.enabled {
        return block("guard", &["off ([guard] enabled = false)".to_owned()]);
    }
    let probe = g.probe.clone().unwrap_or_else(|| {
        "one row of the table read by its key (keys sampled from the job's range), then a \
         commit that waits for the WAL flush"
            .to_owned()
    });
    let absolute = g
        .max_latency
        .map_or(String::new(), |l| format!(" or over {}", d(l)));
    let lines = [
        format!(
            "probe every {} on its own connection: {probe}; baseline: its p90 over {} before \
             the first batch",
            d(g.poll),
            d(g.window)
        ),
        format!(
            "back off while the p90 of the last {} is over {}× the baseline{absolute}: halve \
             the run's share of time every {} (a sleep after each batch of 1×, 3×, 7× … the \
             batch's time, at most {}×); give {:.0}% of the time back every {} once healthy",
            d(g.window),
            g.max_latency_ratio,
            d(g.window),
            g.max_pause_ratio,
            STEP_UP * 100.0,
            d(g.window)
        ),
    ];
    block("guard", &lines)
}

/// `lines` under `label`, the label on the first line only.
pub(super) fn block(label: &str, lines: &[String]) -> String {
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        let label = if i == 0 { label } else { "" };
        let _ = writeln!(out, "{label:<10}{line}");
    }
    out
}

/// The policy's lines for replication slots, the archiver, active sessions and autovacuum.
fn wal_and_sessions(p: &ThrottlePolicy) -> [String; 4] {
    let slots = if p.max_slot_lag_bytes == 0 {
        "replication slots: ignored".to_owned()
    } else {
        let ignoring = match p.ignore_slots.as_slice() {
            [] => String::new(),
            names => format!(" (except {})", names.join(", ")),
        };
        format!(
            "pause while a replication slot retains more than {} of WAL{ignoring}",
            Bytes(p.max_slot_lag_bytes)
        )
    };
    let archiver = if p.max_archive_lag == 0 {
        "WAL archiver: ignored".to_owned()
    } else {
        format!(
            "pause while the WAL archiver fails or is more than {} segments behind (where \
             archive_mode is on)",
            p.max_archive_lag
        )
    };
    let sessions = if p.max_active_sessions == 0 {
        "active sessions: ignored".to_owned()
    } else {
        format!(
            "throttle while more than {} other sessions are active",
            p.max_active_sessions
        )
    };
    let autovacuum = if p.watch_autovacuum {
        "throttle while autovacuum works on the table; pause while it prevents wraparound"
    } else {
        "autovacuum: ignored"
    };
    [slots, archiver, sessions, autovacuum.to_owned()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_policy_reads_one_signal_a_line() {
        let text = policy(&ThrottlePolicy::default(), None, None);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "throttle  sample every 250ms; full speed after 2s clear; pause when no sample for 5s"
        );
        assert!(
            lines[1..].iter().all(|l| l.starts_with("          ")),
            "{text}"
        );
        assert!(text.contains("throttle while a session is idle in transaction over 1m"));
        assert!(text.contains("throttled: batches of batch.min rows, pauses doubling up to 2s"));
        for line in [
            "pause while a replication slot retains more than 1.0 GiB of WAL",
            "pause while the WAL archiver fails or is more than 64 segments behind (where \
             archive_mode is on)",
            "active sessions: ignored",
            "throttle while autovacuum works on the table; pause while it prevents wraparound",
        ] {
            assert!(
                lines.contains(&format!("          {line}").as_str()),
                "{text}"
            );
        }
        let set = ThrottlePolicy {
            ignore_slots: vec!["cdc".into(), "old".into()],
            max_active_sessions: 16,
            ..ThrottlePolicy::default()
        };
        let text = policy(&set, None, None);
        assert!(text.contains("retains more than 1.0 GiB of WAL (except cdc, old)\n"));
        assert!(text.contains("throttle while more than 16 other sessions are active\n"));
    }

    #[test]
    fn switched_off_signals_and_monitor_say_so() {
        let off = ThrottlePolicy {
            yield_to_waiters: false,
            max_idle_in_transaction: Duration::ZERO,
            max_replica_lag: Duration::ZERO,
            max_replica_lag_bytes: 0,
            max_slot_lag_bytes: 0,
            max_archive_lag: 0,
            watch_autovacuum: false,
            ..ThrottlePolicy::default()
        };
        let text = policy(&off, None, None);
        assert!(text.contains("yield: off"), "{text}");
        assert!(text.contains("replication slots: ignored"), "{text}");
        assert!(text.contains("WAL archiver: ignored"), "{text}");
        assert!(text.contains("autovacuum: ignored"), "{text}");
        assert!(text.contains("idle in transaction: ignored"), "{text}");
        assert!(text.contains("replica lag: ignored"), "{text}");
        let disabled = ThrottlePolicy {
            enabled: false,
            ..ThrottlePolicy::default()
        };
        assert!(
            policy(&disabled, None, None).starts_with("throttle  off ([throttle] enabled = false)")
        );
    }

    #[test]
    fn the_wal_budget_has_a_line_even_without_the_monitor() {
        let text = policy(&ThrottlePolicy::default(), None, None);
        assert!(
            text.contains("WAL rate: no budget (max_wal_rate)\n"),
            "{text}"
        );
        let paced = ThrottlePolicy {
            enabled: false,
            max_wal_rate: Some(32 * 1024 * 1024),
            ..ThrottlePolicy::default()
        };
        let text = policy(&paced, None, None);
        assert!(
            text.contains("          pace batches to at most 32.0 MiB/s of WAL, for this process"),
            "{text}"
        );
    }

    #[test]
    fn the_guard_block_says_what_it_probes_and_how_it_backs_off() {
        assert_eq!(
            guard(&GuardPolicy::default()),
            "guard     off ([guard] enabled = false)\n"
        );
        let on = GuardPolicy {
            enabled: true,
            max_latency: Some(Duration::from_millis(20)),
            ..GuardPolicy::default()
        };
        let text = guard(&on);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "guard     probe every 100ms on its own connection: one row of the table read by \
                 its key (keys sampled from the job's range), then a commit that waits for the \
                 WAL flush; baseline: its p90 over 2s before the first batch",
                "          back off while the p90 of the last 2s is over 3× the baseline or over \
                 20ms: halve the run's share of time every 2s (a sleep after each batch of 1×, \
                 3×, 7× … the batch's time, at most 16×); give 10% of the time back every 2s \
                 once healthy",
            ]
        );
        let custom = GuardPolicy {
            probe: Some("SELECT 1".into()),
            ..on
        };
        assert!(guard(&custom).contains("on its own connection: SELECT 1; baseline"));
    }
}
