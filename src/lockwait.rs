//! Starting behind a lock. Before a job's first batch, `backfill` reads the catalog, has the
//! server `EXPLAIN` the batch, lays out the job's ranges and samples the pending rows: each of
//! these takes a lock on the table, and a session may hold one that conflicts (a migration's
//! `ACCESS EXCLUSIVE`, a `LOCK TABLE`) or wait for one. A statement sent then would queue
//! behind it — and, while it waits, in front of whatever the application sends next that
//! conflicts with the waiter.
//!
//! So a start looks first and sends afterwards: each step runs only once the monitor's own lock
//! sample finds the way clear, and under a short `lock_timeout` ([`START_LOCK_TIMEOUT`]) in case a
//! lock arrives in between. While the sample shows a lock, the start waits in the `paused`
//! state a running job shows for the same lock (the monitor's sentence, its `paused` event,
//! the `status` note), and goes on once the lock is gone. `run` waits for as long as it takes;
//! `plan` and `verify` only for `--lock-wait`, then fail naming the session in the way.
//!
//! Owns the waiting only: the sample and its sentence are the monitor's, the steps their
//! modules'.

use std::time::{Duration, Instant};

use crate::db::Session;
use crate::plan::START_LOCK_TIMEOUT;
use thiserror::Error;
use tokio::sync::watch;

use crate::db::gave_up_on_lock;
use crate::event::{Event, signal_name};
use crate::monitor::{self, Decision};
use crate::state::Store;

/// How many times in a row a step may give up on a lock that the sample does not show (it
/// came and went in between, or it is on a relation the sample does not watch, such as one
/// the job's `where` reads) before its error stands.
const UNSEEN_LOCKS: u32 = 10;

/// Where `status` shows that a start is waiting.
pub enum Note<'a> {
    /// Nowhere: `plan` and `verify` write nothing.
    Nowhere,
    /// On the job's row, when it has one that no runner holds: a run that has not claimed its
    /// job yet. Taken away again when the wait ends, however it ends.
    Row(&'a Store),
    /// Handed to the caller, which publishes it: the engine, through its heartbeat, once it
    /// holds the job.
    Publish(&'a dyn Fn(Option<String>)),
}

/// Why a start stopped waiting without its step done.
#[derive(Debug, Error)]
pub enum LockWaitError {
    #[error(
        "waited {} (--lock-wait) for the table {table}: {reason}; try again once that session is done, or wait longer with --lock-wait",
        humantime::format_duration(*waited)
    )]
    TooLong {
        table: String,
        reason: String,
        waited: Duration,
    },
    #[error("cannot read the locks on the table {table}")]
    Sample {
        table: String,
        #[source]
        source: sqlx::Error,
    },
}

/// Waits at the start of one job for the locks on its table to clear; see the module header.
pub struct LockWait<'a> {
    /// The job's name, for events and the note.
    pub job: String,
    /// The relations whose locks hold the start back, as SQL: the table first, then its leaf
    /// partitions once the catalog has named them.
    pub relations: Vec<String>,
    /// The application names of the job's own sessions, whose locks are never in the way.
    pub ours: Vec<String>,
    /// How often to look again while the way is blocked (`[throttle] poll`).
    pub poll: Duration,
    /// How long to wait at most (`--lock-wait`); `None`: for as long as it takes.
    pub patience: Option<Duration>,
    pub note: Note<'a>,
    /// Receives `paused` when the start begins to wait and `running` when it stops.
    pub emit: &'a mut dyn FnMut(&Event),
    /// Ctrl-C or SIGTERM: stop waiting.
    pub shutdown: watch::Receiver<bool>,
}

/// Where a wait stands: the reason shown now, if any, and the step's unseen locks.
#[derive(Default)]
struct Waited {
    shown: Option<String>,
    unseen: u32,
}

impl LockWait<'_> {
    /// Runs `step` once no lock is in its way, waiting while one is, and again after the step
    /// gave up on a lock. `Ok(None)` when shutdown came while waiting: the step did not run to
    /// its end, and nothing of it was committed (each step commits at most once, at its end).
    pub async fn step<T, E>(
        &mut self,
        conn: &mut Session,
        mut step: impl AsyncFnMut(&mut Session) -> Result<T, E>,
    ) -> Result<Option<T>, E>
    where
        E: From<LockWaitError> + AsRef<dyn std::error::Error + 'static>,
    {
        let since = Instant::now();
        let mut waited = Waited::default();
        loop {
            let lock = match monitor::table_lock(conn, &self.relations, &self.ours).await {
                Ok(lock) => lock,
                // The table does not resolve: the step says so in its own words.
                Err(e) if undefined(&e) => None,
                Err(source) => {
                    self.show(conn, &mut waited, None).await;
                    return Err(self.sample_failed(source).into());
                }
            };
            if let Some(decision) = lock {
                waited.unseen = 0;
                self.show(conn, &mut waited, Some(&decision)).await;
                let Some(wait) = next_look(self.poll, self.patience, since.elapsed()) else {
                    self.show(conn, &mut waited, None).await;
                    return Err(self.too_long(decision).into());
                };
                if self.stopped_during(wait).await {
                    self.show(conn, &mut waited, None).await;
                    return Ok(None);
                }
                continue;
            }
            if waited.shown.is_some() {
                self.show(conn, &mut waited, None).await;
                (self.emit)(&Event::Running {
                    job: self.job.clone(),
                });
            }
            match step(conn).await {
                Ok(done) => return Ok(Some(done)),
                Err(e) if gave_up_on_lock(e.as_ref()) && waited.unseen < UNSEEN_LOCKS => {
                    waited.unseen += 1;
                    let out_of_time = self.patience.is_some_and(|p| since.elapsed() >= p);
                    if out_of_time {
                        return Err(e);
                    }
                    if self.stopped_during(self.poll).await {
                        return Ok(None);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Shows `decision` — the event when the start begins to wait, the note whenever its
    /// sentence changes — or, with `None`, takes the note away.
    async fn show(&mut self, conn: &mut Session, waited: &mut Waited, decision: Option<&Decision>) {
        let reason = decision.map(|d| d.reason.clone());
        if reason == waited.shown {
            return;
        }
        if let Some(d) = decision
            && waited.shown.is_none()
        {
            (self.emit)(&Event::Paused {
                job: self.job.clone(),
                reason: d.reason.clone(),
                signal: d.signal.as_ref().map(signal_name),
            });
        }
        waited.shown = reason;
        let note = waited.shown.as_ref().map(|r| format!("paused: {r}"));
        match &self.note {
            Note::Nowhere => {}
            Note::Publish(publish) => publish(note),
            Note::Row(store) => {
                // Only for `status`: a note that cannot be written costs the run nothing.
                let written = store
                    .note_unclaimed(conn.conn(), &self.job, note.as_deref(), START_LOCK_TIMEOUT)
                    .await;
                if let Err(e) = written {
                    tracing::debug!("could not write the note of job {}: {e}", self.job);
                }
            }
        }
    }

    /// Sleeps `d`; true when shutdown came first (or had come).
    async fn stopped_during(&mut self, d: Duration) -> bool {
        if !*self.shutdown.borrow() {
            tokio::select! {
                _ = tokio::time::sleep(d) => {}
                _ = self.shutdown.changed() => {}
            }
        }
        *self.shutdown.borrow()
    }

    fn table(&self) -> String {
        self.relations.first().cloned().unwrap_or_default()
    }

    fn too_long(&self, decision: Decision) -> LockWaitError {
        LockWaitError::TooLong {
            table: self.table(),
            reason: decision.reason,
            waited: self.patience.unwrap_or_default(),
        }
    }

    fn sample_failed(&self, source: sqlx::Error) -> LockWaitError {
        LockWaitError::Sample {
            table: self.table(),
            source,
        }
    }
}

/// How long to sleep before looking at the locks again, after `waited` behind one: `poll`, or
/// less when `patience` runs out sooner; `None` once it has run out.
fn next_look(poll: Duration, patience: Option<Duration>, waited: Duration) -> Option<Duration> {
    match patience {
        None => Some(poll),
        Some(patience) if waited >= patience => None,
        Some(patience) => Some(poll.min(patience - waited)),
    }
}

/// Whether the sample failed because a relation it names does not exist (`undefined_table`,
/// `invalid_schema_name`).
fn undefined(e: &sqlx::Error) -> bool {
    let code = e.as_database_error().and_then(|db| db.code());
    matches!(code.as_deref(), Some("42P01" | "3F000"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_next_look_comes_after_a_poll_until_patience_runs_out() {
        let cases = [
            (
                "no patience: for as long as it takes",
                None,
                60_000,
                Some(250),
            ),
            ("well within patience", Some(10_000), 1_000, Some(250)),
            (
                "patience runs out before the next poll",
                Some(1_000),
                900,
                Some(100),
            ),
            ("patience run out", Some(1_000), 1_000, None),
            ("no patience at all (--lock-wait 0s)", Some(0), 0, None),
        ];
        for (what, patience, waited, expected) in cases {
            assert_eq!(
                next_look(ms(250), patience.map(ms), ms(waited)),
                expected.map(ms),
                "{what}"
            );
        }
    }
}
