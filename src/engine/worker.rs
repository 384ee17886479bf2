//! One worker: a batch loop on its own connection that takes ranges one after another — a free
//! one, an abandoned one, or the upper part of a running one it splits — walks each (`walk.rs`)
//! and waits when there is nothing to take, until every range of the job is done.
//!
//! Before every batch, and while waiting, it obeys the shutdown signal, the crew's halt, the
//! operator's control flag and the monitor's decision; it will not write after its process was
//! frozen or cut off for half a lease until the heartbeat is back and its range is re-read. On
//! a failure it tells a transient one from a fatal one, backs off, reconnects and re-reads.

use std::time::{Duration, Instant};

use crate::db::Session;
use tokio::sync::watch;

use crate::db::{Failure, error_chain};
use crate::event::{Event, millis};
use crate::monitor::Decision;
use crate::ranges::Taken;

use super::batch::BatchError;
use super::crew::{Condition, Crew};
use super::sizer::Sizer;
use super::{EngineError, MAX_ATTEMPTS, backoff};

/// How long a worker with nothing to take waits before it asks again.
const WAIT_FOR_WORK: Duration = Duration::from_millis(500);

/// How often a paused worker with a broken connection tries to reconnect.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);

/// Why a worker stopped before the job was done, least to most decisive for how the run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Stop {
    /// Ctrl-C or SIGTERM.
    Interrupted,
    /// `backfill cancel`.
    Cancelled,
    /// Another worker of this process met an error.
    Halted,
}

/// How a worker ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// Every range of the job is done.
    AllDone,
    Stopped(Stop),
}

/// What [`Worker::obey`] allows.
pub(super) enum Step {
    Stop(Stop),
    Batch { throttled: bool },
}

/// The failures of the current batch (or search for a range) since its last success.
#[derive(Debug, Default)]
pub(super) struct Failures {
    count: u32,
    since: Option<Instant>,
}

impl Failures {
    /// Counts one more failure at `now`; true when the job should stop: after
    /// [`MAX_ATTEMPTS`] failures in a row, or, while the database is unreachable, once
    /// `reconnect_timeout` has passed since the first failure.
    fn give_up(&mut self, reconnect: bool, now: Instant, reconnect_timeout: Duration) -> bool {
        self.count += 1;
        let since = *self.since.get_or_insert(now);
        if reconnect {
            now.duration_since(since) >= reconnect_timeout
        } else {
            self.count >= MAX_ATTEMPTS
        }
    }
}

/// One worker's state.
pub(super) struct Worker<'c, 'r, 'a> {
    pub(super) crew: &'c Crew<'r, 'a>,
    pub(super) id: u32,
    pub(super) conn: Session,
    app: String,
    decisions: Option<watch::Receiver<Option<Decision>>>,
    shutdown: watch::Receiver<bool>,
    halted: watch::Receiver<bool>,
    /// The connection is broken and the last reconnect failed: since when (the first failure
    /// of the streak), and the error that broke it. A pause goes on reconnecting.
    lost: Option<(Instant, BatchError)>,
    /// The heartbeat was late: the range must be re-read before the next write.
    pub(super) doubted: bool,
    /// The range being walked, if any.
    pub(super) range: Option<u32>,
    pub(super) sizer: Sizer,
}

impl<'c, 'r, 'a> Worker<'c, 'r, 'a> {
    /// Worker `id` of the crew, on `conn` (whose `application_name` is `app`).
    pub fn new(crew: &'c Crew<'r, 'a>, id: u32, conn: Session, app: String) -> Self {
        let batch = &crew.r.job.batch;
        Worker {
            crew,
            id,
            conn,
            app,
            decisions: crew.decisions(),
            shutdown: crew.shutdown(),
            halted: crew.halted(),
            lost: None,
            doubted: false,
            range: None,
            sizer: Sizer::new(batch.min, batch.max, batch.target, batch.size),
        }
    }

    /// Works until every range is done (with `--retry-failures`: every failed row was tried)
    /// or the worker must stop; gives its connection back. An error halts the crew.
    pub async fn run(mut self) -> (Result<End, EngineError>, Session) {
        let result = if self.crew.r.options.retry_failures {
            self.retry_failed().await
        } else {
            self.work().await
        };
        if result.is_err() {
            self.crew.halt();
        }
        (result, self.conn)
    }

    async fn work(&mut self) -> Result<End, EngineError> {
        let mut failures = Failures::default();
        loop {
            if let Step::Stop(stop) = self.obey().await? {
                return Ok(End::Stopped(stop));
            }
            let holder = self.crew.holder(self.id);
            let taken = self.crew.share.take(&mut self.conn, &holder).await;
            let stop = match taken {
                Ok(Taken::AllDone) => return Ok(End::AllDone),
                Ok(Taken::Range { range, from }) => {
                    failures = Failures::default();
                    self.walk(*range, from).await?
                }
                Ok(Taken::Wait) => {
                    failures = Failures::default();
                    self.sleep(WAIT_FOR_WORK).await
                }
                Err(e) => self.recover(e.into(), None, &mut failures).await?,
            };
            if let Some(stop) = stop {
                return Ok(End::Stopped(stop));
            }
        }
    }

    /// Emits an event built for this job.
    pub(super) fn send(&self, make: impl FnOnce(String) -> Event) {
        self.crew.send(make);
    }

    /// Before each batch and each search for a range: stop on shutdown, a halt, a lost lease
    /// or `cancel`; wait out an operator's `pause`, the monitor's pauses (silently until its
    /// first decision) and a late heartbeat; report every change of condition, the latency
    /// guard's hold included.
    pub(super) async fn obey(&mut self) -> Result<Step, EngineError> {
        let mut beats = self.crew.heartbeat.watch();
        loop {
            if *self.shutdown.borrow() {
                return Ok(Step::Stop(Stop::Interrupted));
            }
            if *self.halted.borrow() {
                return Ok(Step::Stop(Stop::Halted));
            }
            let beat = self.crew.heartbeat.beat();
            if let Some(lost) = beat.lost {
                return Err(EngineError::LeaseLost(lost));
            }
            let late = beat
                .at
                .is_some_and(|at| at.elapsed() > self.crew.beat_in_doubt_after());
            self.doubted |= late;
            let condition = match (beat.control.as_deref(), &self.decisions) {
                (Some("cancel"), _) => return Ok(Step::Stop(Stop::Cancelled)),
                _ if late => None,
                (Some("pause"), _) => Some(Condition::Paused {
                    signal: None,
                    reason: "by operator".into(),
                }),
                (_, None) => Some(Condition::Running),
                (_, Some(decisions)) => decisions.borrow().as_ref().map(Condition::of),
            };
            if let Some(condition) = condition.map(|c| self.crew.guarded(c)) {
                let step = match &condition {
                    Condition::Running | Condition::Guarded { .. } => {
                        Some(Step::Batch { throttled: false })
                    }
                    Condition::Throttled { .. } => Some(Step::Batch { throttled: true }),
                    Condition::Paused { .. } => None,
                };
                self.crew.enter(condition);
                if let Some(step) = step {
                    return Ok(step);
                }
            }
            tokio::select! {
                _ = beats.changed() => {}
                _ = changed(&mut self.decisions) => {}
                _ = self.shutdown.changed() => {}
                _ = self.halted.changed() => {}
                _ = reconnect_tick(self.lost.is_some()) => self.probe().await?,
            }
        }
    }

    /// After a failure: stop on a fatal error or when retrying is exhausted; otherwise back
    /// off and reconnect if needed (the caller then re-reads what it knows). `Some` on
    /// shutdown. `at` says what failed, for messages.
    pub(super) async fn recover(
        &mut self,
        e: BatchError,
        at: Option<String>,
        failures: &mut Failures,
    ) -> Result<Option<Stop>, EngineError> {
        let at = at.unwrap_or_else(|| format!("worker {} looking for a range", self.id));
        let Failure::Transient { halve, reconnect } = e.failure() else {
            return Err(match e {
                BatchError::Row(row) => EngineError::Row(row),
                e => EngineError::Batch { at, source: e },
            });
        };
        let options = self.crew.r.options;
        if failures.give_up(reconnect, Instant::now(), options.reconnect_timeout) {
            return Err(if reconnect {
                self.unreachable(e)
            } else {
                EngineError::GaveUp {
                    at,
                    attempts: failures.count,
                    source: e,
                }
            });
        }
        if halve {
            self.sizer.halve();
        }
        let since = failures.since.unwrap_or_else(Instant::now);
        let Some(connected) = self.retry(failures.count, &e, reconnect).await else {
            return Ok(Some(Stop::Interrupted));
        };
        self.lost = (!connected).then_some((since, e));
        Ok(None)
    }

    /// The database stayed out of reach for `--reconnect-timeout`.
    fn unreachable(&self, source: BatchError) -> EngineError {
        EngineError::Unreachable {
            target: self.crew.r.target.describe(),
            waited: self.crew.r.options.reconnect_timeout,
            source,
        }
    }

    /// While paused with a broken connection: reconnect, or give up once
    /// `--reconnect-timeout` has passed since the connection broke.
    async fn probe(&mut self) -> Result<(), EngineError> {
        let Some((since, _)) = &self.lost else {
            return Ok(());
        };
        let since = *since;
        match self.crew.r.target.connect(&self.app).await {
            Ok(c) => {
                self.conn = c;
                self.lost = None;
                Ok(())
            }
            Err(e) => {
                tracing::debug!("reconnect failed: {e}");
                match self.lost.take() {
                    Some((_, source))
                        if since.elapsed() >= self.crew.r.options.reconnect_timeout =>
                    {
                        Err(self.unreachable(source))
                    }
                    lost => {
                        self.lost = lost;
                        Ok(())
                    }
                }
            }
        }
    }

    /// Reports the failure, waits the backoff and reconnects if asked. `None` on shutdown,
    /// otherwise whether the connection is usable (as far as is known).
    async fn retry(&mut self, attempt: u32, err: &BatchError, reconnect: bool) -> Option<bool> {
        let wait = backoff::delay(attempt, crate::jitter::jitter());
        let (worker, range) = (self.id, self.range);
        self.send(|job| Event::Retry {
            job,
            worker,
            range,
            attempt,
            delay_ms: millis(wait),
            error: error_chain(err),
            reconnecting: reconnect,
        });
        if self.sleep(wait).await.is_some() {
            return None;
        }
        if !reconnect {
            return Some(true);
        }
        match self.crew.r.target.connect(&self.app).await {
            Ok(c) => {
                self.conn = c;
                Some(true)
            }
            Err(e) => {
                tracing::debug!("reconnect failed: {e}");
                Some(false)
            }
        }
    }

    /// Sleeps `d` unless shutdown or a halt comes first: then which.
    pub(super) async fn sleep(&mut self, d: Duration) -> Option<Stop> {
        let stop = |w: &Self| {
            if *w.shutdown.borrow() {
                Some(Stop::Interrupted)
            } else if *w.halted.borrow() {
                Some(Stop::Halted)
            } else {
                None
            }
        };
        if !d.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(d) => {}
                _ = self.shutdown.changed() => {}
                _ = self.halted.changed() => {}
            }
        }
        stop(self)
    }
}

/// Ticks every [`RECONNECT_EVERY`] while `lost`; never otherwise.
async fn reconnect_tick(lost: bool) {
    if lost {
        tokio::time::sleep(RECONNECT_EVERY).await;
    } else {
        std::future::pending::<()>().await;
    }
}

/// Waits for the next decision; forever when there is no monitor (or it is gone).
async fn changed(decisions: &mut Option<watch::Receiver<Option<Decision>>>) {
    if let Some(rx) = decisions
        && rx.changed().await.is_ok()
    {
        return;
    }
    std::future::pending::<()>().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_failures_give_up_after_max_attempts() {
        let mut f = Failures::default();
        let now = Instant::now();
        let stops: Vec<bool> = (0..MAX_ATTEMPTS)
            .map(|_| f.give_up(false, now, Duration::from_secs(60)))
            .collect();
        assert_eq!(stops.iter().filter(|s| **s).count(), 1);
        assert!(stops[MAX_ATTEMPTS as usize - 1]);
    }

    #[test]
    fn lost_connections_retry_until_the_reconnect_timeout() {
        let mut f = Failures::default();
        let t0 = Instant::now();
        let limit = Duration::from_secs(60);
        for i in 0..50 {
            assert!(!f.give_up(true, t0 + Duration::from_secs(i), limit));
        }
        assert!(f.give_up(true, t0 + limit, limit));
    }
}
