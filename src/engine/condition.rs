//! The condition a process's workers are in — running, throttled, paused, guarded — made of
//! the operator's control flag, the monitor's decision and the latency guard, reported once
//! for all the workers of the process. Pure: the rules are unit-tested in `condition/tests.rs`.

use std::time::Duration;

use tokio::sync::watch;

use crate::event::{Event, millis_f64, signal_name};
use crate::guard::Guarding;
use crate::monitor::{Action, Decision, Signal};

/// An operator cancelled the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Cancelled;

/// What the process is doing about the database's state and the operator's requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Condition {
    Running,
    Throttled {
        signal: Option<Signal>,
        reason: String,
    },
    /// `signal` is `None` for an operator's pause.
    Paused {
        signal: Option<Signal>,
        reason: String,
    },
    /// Running, but the latency guard holds the run back: its probe's recent p90 against the
    /// baseline, and `probe 4.1 ms (baseline 1.2 ms)`.
    Guarded {
        probe: Duration,
        baseline: Duration,
        reason: String,
    },
}

impl Condition {
    /// What the operator's control flag and the monitor's decision make of the process now:
    /// `Err` for a cancel; `None` while there is nothing to go by (the heartbeat is `late`, or
    /// the monitor has not decided yet). `decision` is `None` without a monitor.
    pub(super) fn now(
        control: Option<&str>,
        late: bool,
        decision: Option<Option<&Decision>>,
    ) -> Result<Option<Condition>, Cancelled> {
        Ok(match (control, decision) {
            (Some("cancel"), _) => return Err(Cancelled),
            _ if late => None,
            (Some("pause"), _) => Some(Condition::Paused {
                signal: None,
                reason: "by operator".into(),
            }),
            (_, None) => Some(Condition::Running),
            (_, Some(decision)) => decision.map(Condition::of),
        })
    }

    /// Whether batches may run, and throttled: `None` while paused.
    pub(super) fn throttled(&self) -> Option<bool> {
        match self {
            Condition::Running | Condition::Guarded { .. } => Some(false),
            Condition::Throttled { .. } => Some(true),
            Condition::Paused { .. } => None,
        }
    }

    fn of(decision: &Decision) -> Condition {
        let (signal, reason) = (decision.signal, decision.reason.clone());
        match decision.action {
            Action::Go => Condition::Running,
            Action::Throttle => Condition::Throttled { signal, reason },
            Action::Pause | Action::Yield => Condition::Paused { signal, reason },
        }
    }

    /// Same state for the same signal: not worth another event even if the numbers in the
    /// reason moved.
    pub(super) fn same_as(&self, other: &Condition) -> bool {
        use Condition::*;
        match (self, other) {
            (Running, Running) => true,
            (Throttled { signal: a, .. }, Throttled { signal: b, .. })
            | (Paused { signal: a, .. }, Paused { signal: b, .. }) => a == b,
            (Guarded { .. }, Guarded { .. }) => true,
            _ => false,
        }
    }

    /// The note published for `status`: `paused: …`, `throttled: …`, `guarded: …`, or none
    /// at full speed.
    pub(super) fn note(&self) -> Option<String> {
        match self {
            Condition::Running => None,
            Condition::Throttled { reason, .. } => Some(format!("throttled: {reason}")),
            Condition::Paused { reason, .. } => Some(format!("paused: {reason}")),
            Condition::Guarded { reason, .. } => Some(format!("guarded: {reason}")),
        }
    }

    /// The event that announces entering this condition from `from`: full speed after the
    /// guard's hold is `released`, with what the guard says `now`.
    pub(super) fn event(&self, job: String, from: &Condition, now: Option<&Guarding>) -> Event {
        match (self, from, now) {
            (Condition::Running, Condition::Guarded { .. }, Some(now)) => Event::Released {
                job,
                reason: now.reason(),
                probe_ms: millis_f64(now.recent),
                baseline_ms: millis_f64(now.baseline),
            },
            _ => self.announce(job),
        }
    }

    fn announce(&self, job: String) -> Event {
        match self {
            Condition::Running => Event::Running { job },
            Condition::Throttled { signal, reason } => Event::Throttled {
                job,
                reason: reason.clone(),
                signal: signal.as_ref().map(signal_name),
            },
            Condition::Paused { signal, reason } => Event::Paused {
                job,
                reason: reason.clone(),
                signal: signal.as_ref().map(signal_name),
            },
            Condition::Guarded {
                probe,
                baseline,
                reason,
            } => Event::Guarded {
                job,
                reason: reason.clone(),
                probe_ms: millis_f64(*probe),
                baseline_ms: millis_f64(*baseline),
            },
        }
    }
}

/// Waits for the next decision; forever when there is no monitor (or it is gone).
pub(super) async fn decided(decisions: &mut Option<watch::Receiver<Option<Decision>>>) {
    if let Some(rx) = decisions
        && rx.changed().await.is_ok()
    {
        return;
    }
    std::future::pending::<()>().await;
}

#[cfg(test)]
mod tests;
