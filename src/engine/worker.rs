//! One worker, top to bottom: the life of a batch (ARCHITECTURE.md, "How a batch flows").
//!
//! A batch loop on its own session: take a range ([`Worker::work`]), walk it
//! ([`Worker::walk_range`]): for each batch obey ([`Worker::obey`]), run it with its
//! checkpoint (`batch.rs`, or `narrow.rs` down to the row at fault), then pace and report it,
//! or make sense of its failure ([`Worker::after`]): a yield, a range that moved, an error to
//! back off from ([`Worker::recover`]). After anything but a commit the range is re-read: the
//! stored row says where the walk stands and whose it is.

use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::db::{Failure, Session, error_chain};
use crate::event::{Event, millis, millis_f64};
use crate::monitor::{BatchWatch, Decision};
use crate::plan::Walk;
use crate::ranges::Taken;
use crate::rate::RateWindow;
use crate::state::{RangeRow, StateError};

use super::batch::{self, Committed};
use super::condition::{Condition, decided};
use super::crew::Crew;
use super::end::{End, Stop};
use super::link::{Link, Reread, reconnect_tick};
use super::narrow;
use super::pace::{After, Pace};
use super::sizer::Sizer;
use super::streak::Streak;
use super::{BatchError, EngineError, backoff};

/// How long a worker with nothing to take waits before it asks again.
const WAIT_FOR_WORK: Duration = Duration::from_millis(500);

/// What [`Worker::obey`] allows.
pub(super) enum Step {
    Stop(Stop),
    Batch { throttled: bool },
}

/// How the walk over one range ended.
enum Walked {
    /// The range is walked to its end and marked done.
    Done,
    /// Another process took the range over (this one was frozen or cut off for too long),
    /// or it is done: who holds it now.
    Lost(String),
    Stopped(Stop),
}

/// What a walk carries from one batch to the next.
#[derive(Default)]
struct Stride {
    failures: Streak,
    pace: Pace,
    rate: RateWindow,
}

/// One worker's state.
pub(super) struct Worker<'c, 'r, 'a> {
    pub(super) crew: &'c Crew<'r, 'a>,
    pub(super) id: u32,
    pub(super) link: Link,
    decisions: Option<watch::Receiver<Option<Decision>>>,
    shutdown: watch::Receiver<bool>,
    halted: watch::Receiver<bool>,
    /// The heartbeat was late: the range must be re-read before the next write.
    doubted: bool,
    /// The range being walked, if any.
    range: Option<u32>,
    pub(super) sizer: Sizer,
}

impl<'c, 'r, 'a> Worker<'c, 'r, 'a> {
    /// Worker `id` of the crew, on `session` (whose `application_name` is `app`).
    pub fn new(crew: &'c Crew<'r, 'a>, id: u32, session: Session, app: String) -> Self {
        let batch = &crew.r.job.batch;
        Worker {
            crew,
            id,
            link: Link::new(session, app),
            decisions: crew.watchers.decisions(),
            shutdown: crew.stops.shutdown(),
            halted: crew.stops.halted(),
            doubted: false,
            range: None,
            sizer: Sizer::new(batch.min, batch.max, batch.target, batch.size),
        }
    }

    /// Works until every range is done (with `--retry-failures`: every failed row was tried)
    /// or the worker must stop; gives its session back. An error halts the crew.
    pub async fn run(mut self) -> (Result<End, EngineError>, Session) {
        let result = if self.crew.r.options.retry_failures {
            self.retry_failed().await
        } else {
            self.work().await
        };
        if result.is_err() {
            self.crew.stops.halt();
        }
        (result, self.link.session)
    }

    /// Takes ranges one after another and walks each, until every range of the job is done.
    async fn work(&mut self) -> Result<End, EngineError> {
        let mut failures = Streak::default();
        loop {
            if let Step::Stop(stop) = self.obey().await? {
                return Ok(End::Stopped(stop));
            }
            let holder = self.crew.holder(self.id);
            let taken = self.crew.share.take(&mut self.link.session, &holder).await;
            let stop = match taken {
                Ok(Taken::AllDone) => return Ok(End::AllDone),
                Ok(Taken::Range { range, from }) => {
                    failures = Streak::default();
                    self.walk(*range, from).await?
                }
                Ok(Taken::Wait) => {
                    failures = Streak::default();
                    self.sleep(WAIT_FOR_WORK).await
                }
                Err(e) => self.recover(e.into(), None, &mut failures).await?,
            };
            if let Some(stop) = stop {
                return Ok(End::Stopped(stop));
            }
        }
    }

    /// Walks `range` (split off `from`, when stolen), with its events. `Some` when the worker
    /// must stop.
    async fn walk(
        &mut self,
        mut range: RangeRow,
        from: Option<u32>,
    ) -> Result<Option<Stop>, EngineError> {
        let (worker, id, relation) = (self.id, range.id, range.relation.clone());
        self.crew.send(|job| Event::Claimed {
            job,
            worker,
            range: id,
            relation,
            split_from: from,
        });
        self.range = Some(range.id);
        let walked = self.walk_range(&mut range).await;
        self.range = None;
        self.crew.ledger.rate(range.id, None);
        match walked? {
            Walked::Done => Ok(None),
            Walked::Lost(owner) => {
                let (worker, range) = (self.id, range.id);
                self.crew.send(|job| Event::Lost {
                    job,
                    worker,
                    range,
                    owner,
                });
                Ok(None)
            }
            Walked::Stopped(stop) => Ok(Some(stop)),
        }
    }

    /// The batch loop over one range: obey, batch, pace, until the range is walked.
    async fn walk_range(&mut self, range: &mut RangeRow) -> Result<Walked, EngineError> {
        let walk = self
            .crew
            .share
            .walk(range)
            .map_err(|e| EngineError::Batch {
                at: format!("range {}", range.id),
                source: e.into(),
            })?;
        let mut stride = Stride::default();
        loop {
            let throttled = match self.obey().await? {
                Step::Stop(stop) => return Ok(Walked::Stopped(stop)),
                Step::Batch { throttled } => throttled,
            };
            if std::mem::take(&mut self.doubted)
                && let Some(owner) = self.reload(range).await?.lost()
            {
                return Ok(Walked::Lost(owner));
            }
            if range.is_walked() {
                let holder = self.crew.holder(self.id);
                let e = match self.link.finish(self.crew.r.store, &holder, range.id).await {
                    Ok(None) => return Ok(Walked::Done),
                    Ok(Some(owner)) => return Ok(Walked::Lost(owner)),
                    Err(e) => e,
                };
                let at = Some(range.at());
                if let Some(stop) = self.recover(e, at, &mut stride.failures).await? {
                    return Ok(Walked::Stopped(stop));
                }
                continue;
            }
            // Throttled, a batch is the smallest the job allows.
            let floor = self
                .crew
                .r
                .job
                .batch
                .min
                .max(u32::from(!throttled) * u32::MAX);
            let size = self.sizer.size().min(floor);
            // Throttled workers take turns: one throttled batch and its pause at a time.
            let turn = match throttled {
                true => Some(self.crew.brakes.turn().await),
                false => None,
            };
            let result = self.batch(walk, range, size).await;
            let seen = self.crew.watchers.batch_ended(self.id);
            let after = self.after(result, seen, range, size, throttled, &mut stride);
            if let Some(walked) = after.await? {
                return Ok(walked);
            }
            drop(turn);
        }
    }

    /// One batch of `size` keys after `range`'s cursor: its rows and the range's checkpoint in
    /// one transaction; narrowed down to the row at fault when it failed on a row's data.
    async fn batch(
        &mut self,
        walk: &Walk,
        range: &RangeRow,
        size: u32,
    ) -> Result<Committed, BatchError> {
        let (session, crew, id) = (&mut self.link.session, self.crew, self.id);
        let result = match batch::run(session, crew, id, walk, range, size).await {
            Err(e) if narrow::applies(&e) => {
                narrow::run(session, crew, id, walk, range, size).await
            }
            result => result,
        };
        if result.is_err() {
            // Nothing of a rolled-back batch is charged to the WAL budget.
            crew.brakes.wal_abandoned(id);
        }
        result
    }

    /// After a batch: a committed one feeds the sizer, is paced and reported; a failed one is
    /// a yield, a range that moved under it, or an error to recover from. `Some` when the walk
    /// ends here.
    async fn after(
        &mut self,
        result: Result<Committed, BatchError>,
        seen: BatchWatch,
        range: &mut RangeRow,
        size: u32,
        throttled: bool,
        stride: &mut Stride,
    ) -> Result<Option<Walked>, EngineError> {
        match result {
            Ok(mut done) => {
                stride.failures = Streak::default();
                let busy = done.elapsed.saturating_sub(seen.lock_wait);
                self.sizer.record(size, busy);
                let after = After {
                    elapsed: done.elapsed,
                    throttled,
                    guard_ratio: self.crew.watchers.guard_ratio(),
                    wal_wait: done.wal.map_or(Duration::ZERO, |(_, wait)| wait),
                };
                let pause = stride.pace.next(&self.crew.brakes.pacing, &after);
                self.committed(range, &done, size, pause, &mut stride.rate);
                if let Some(row) = done.failed.take()
                    && let Some(stop) = narrow::stop_or_skip(self.crew, self.id, range.id, row)
                {
                    return Err(stop);
                }
                Ok(self.sleep(pause).await.map(Walked::Stopped))
            }
            Err(_) if seen.yielded => {
                self.sizer.yielded();
                let reason = self.crew.watchers.reason();
                let (worker, id) = (self.id, range.id);
                self.crew.send(|job| Event::Yielded {
                    job,
                    worker,
                    range: Some(id),
                    reason,
                });
                Ok(self.reload(range).await?.lost().map(Walked::Lost))
            }
            Err(BatchError::State(StateError::RangeTaken { owner, .. })) => {
                Ok(Some(Walked::Lost(owner)))
            }
            Err(BatchError::State(e @ StateError::RangeShrunk { .. })) => {
                let upper = range.upper.clone();
                match self.reload(range).await? {
                    Reread::Lost(owner) => Ok(Some(Walked::Lost(owner))),
                    // The checkpoint put the batch outside a range that did not move: the
                    // key's order in SQL disagrees with the walk's. Stop, never loop.
                    Reread::Mine if range.upper == upper => Err(EngineError::Batch {
                        at: range.at(),
                        source: e.into(),
                    }),
                    _ => Ok(None),
                }
            }
            Err(e) => {
                let at = range.at();
                if let Some(stop) = self.recover(e, Some(at), &mut stride.failures).await? {
                    return Ok(Some(Walked::Stopped(stop)));
                }
                Ok(self.reload(range).await?.lost().map(Walked::Lost))
            }
        }
    }

    /// Takes in a committed batch: the range's copy, the rate, the event (with the `pause`
    /// that follows it).
    fn committed(
        &mut self,
        range: &mut RangeRow,
        done: &Committed,
        size: u32,
        pause: Duration,
        rate: &mut RateWindow,
    ) {
        range.cursor = Some(done.upper.clone());
        range.rows_done += done.rows;
        range.batches_done += 1;
        range.keys_walked += u64::from(done.keys);
        rate.push(Instant::now(), range.rows_done);
        self.crew.ledger.rate(range.id, rate.per_sec());
        let totals =
            self.crew
                .ledger
                .committed(&range.relation, done.rows, Some(done.job), done.keys);
        let (worker, id, rows) = (self.id, range.id, done.rows);
        let (elapsed_ms, pause_ms) = (millis(done.elapsed), millis(pause));
        self.crew.send(|job| Event::Batch {
            job,
            worker,
            range: id,
            rows,
            rows_done: totals.rows_done,
            batches_done: totals.batches_done,
            total_estimate: totals.total_estimate,
            batch_size: size,
            elapsed_ms,
            pause_ms,
            wal_bytes: done.wal.map(|(bytes, _)| bytes),
            probe_ms: self.crew.watchers.probe().map(millis_f64),
        });
    }

    /// Re-reads the range this worker walks (see [`Link::reload`]).
    async fn reload(&mut self, range: &mut RangeRow) -> Result<Reread, EngineError> {
        let holder = self.crew.holder(self.id);
        self.link.reload(self.crew.r.store, &holder, range).await
    }

    /// Before each batch and each search for a range: stop on shutdown, a halt, a lost lease
    /// or `cancel`; wait out an operator's `pause`, the monitor's pauses (silently until its
    /// first decision) and a late heartbeat; report every change of condition, the latency
    /// guard's hold included.
    pub(super) async fn obey(&mut self) -> Result<Step, EngineError> {
        let mut beats = self.crew.heartbeat.watch();
        loop {
            if let Some(stop) = self.stopping() {
                return Ok(Step::Stop(stop));
            }
            let beat = self.crew.heartbeat.beat();
            if let Some(lost) = beat.lost {
                return Err(EngineError::LeaseLost(lost));
            }
            let late = beat
                .at
                .is_some_and(|at| at.elapsed() > self.crew.beat_in_doubt_after());
            self.doubted |= late;
            let condition = {
                let decision = self.decisions.as_ref().map(|d| d.borrow());
                let decision = decision.as_ref().map(|d| d.as_ref());
                Condition::now(beat.control.as_deref(), late, decision)
            };
            let Ok(condition) = condition else {
                return Ok(Step::Stop(Stop::Cancelled));
            };
            if let Some(condition) = condition.map(|c| self.crew.watchers.guarded(c)) {
                let throttled = condition.throttled();
                self.crew.enter(condition);
                if let Some(throttled) = throttled {
                    return Ok(Step::Batch { throttled });
                }
            }
            tokio::select! {
                _ = beats.changed() => {}
                _ = decided(&mut self.decisions) => {}
                _ = self.shutdown.changed() => {}
                _ = self.halted.changed() => {}
                _ = reconnect_tick(self.link.is_lost()) => self.probe().await?,
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
        failures: &mut Streak,
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
                self.crew.unreachable(e)
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
        self.link.settle(connected, since, e);
        Ok(None)
    }

    /// While paused with a broken connection: reconnect, or give up once
    /// `--reconnect-timeout` has passed since the connection broke.
    async fn probe(&mut self) -> Result<(), EngineError> {
        let options = self.crew.r.options;
        let probed = self
            .link
            .probe(self.crew.r.target, options.reconnect_timeout);
        probed.await.map_err(|source| self.crew.unreachable(source))
    }

    /// Reports the failure, waits the backoff and reconnects if asked. `None` on shutdown,
    /// otherwise whether the connection is usable (as far as is known).
    async fn retry(&mut self, attempt: u32, err: &BatchError, reconnect: bool) -> Option<bool> {
        let wait = backoff::delay(attempt, crate::jitter::jitter());
        let (worker, range) = (self.id, self.range);
        self.crew.send(|job| Event::Retry {
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
        Some(self.link.reconnect(self.crew.r.target).await)
    }

    /// Sleeps `d` unless shutdown or a halt comes first: then which.
    pub(super) async fn sleep(&mut self, d: Duration) -> Option<Stop> {
        if !d.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(d) => {}
                _ = self.shutdown.changed() => {}
                _ = self.halted.changed() => {}
            }
        }
        self.stopping()
    }

    /// Shutdown or a halt, if either came.
    fn stopping(&self) -> Option<Stop> {
        if *self.shutdown.borrow() {
            Some(Stop::Interrupted)
        } else if *self.halted.borrow() {
            Some(Stop::Halted)
        } else {
            None
        }
    }
}
