//! The walk over one job's key range: the batch loop that [`run`](super::run) drives once the
//! lease is claimed and the heartbeat and monitor are running.
//!
//! Before every batch it obeys the shutdown signal, the operator's control flag and the
//! monitor's decision, reporting each change of condition; after a batch it feeds the sizer,
//! paces the next one, and on a failure tells a yield from an error, backs off, reconnects and
//! re-reads the stored cursor.

use std::time::{Duration, Instant};

use sqlx::PgConnection;
use tokio::sync::watch;

use crate::db::{Failure, begin_read_only, error_chain};
use crate::event::{Event, signal_name};
use crate::monitor::{Action, Decision, Monitor, Signal};
use crate::preflight;
use crate::rate::RateWindow;
use crate::state::{JobRow, Live};

use super::heartbeat::Heartbeat;
use super::sizer::{self, Sizer};
use super::{EngineError, MAX_ATTEMPTS, Outcome, Run, backoff, batch};

/// The failures of the current batch since its last success.
#[derive(Debug, Default)]
struct Failures {
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

/// Where the walk stands: what has committed, as last known.
struct Position {
    cursor: Option<Vec<String>>,
    rows_done: u64,
    batches_done: u64,
}

impl Position {
    fn of(row: &JobRow) -> Position {
        Position {
            cursor: row.cursor.clone(),
            rows_done: row.rows_done,
            batches_done: row.batches_done,
        }
    }
}

/// What the run is doing about the database's state, as last reported.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Condition {
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
}

impl Condition {
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
    fn same_as(&self, other: &Condition) -> bool {
        use Condition::*;
        match (self, other) {
            (Running, Running) => true,
            (Throttled { signal: a, .. }, Throttled { signal: b, .. })
            | (Paused { signal: a, .. }, Paused { signal: b, .. }) => a == b,
            _ => false,
        }
    }

    /// The note published for `status`: `paused: …`, `throttled: …`, or none at full speed.
    fn note(&self) -> Option<String> {
        match self {
            Condition::Running => None,
            Condition::Throttled { reason, .. } => Some(format!("throttled: {reason}")),
            Condition::Paused { reason, .. } => Some(format!("paused: {reason}")),
        }
    }
}

/// What [`Walker::obey`] allows.
enum Step {
    Stop(Outcome),
    Batch { throttled: bool },
}

/// What a walk starts from: the run, its open batch connection and the tasks beside it.
pub(super) struct Parts<'r, 'a> {
    pub r: &'r Run<'a>,
    pub conn: PgConnection,
    /// `application_name` of the batch connection, for reconnecting.
    pub app: String,
    pub heartbeat: &'r Heartbeat,
    /// `None` when `[throttle] enabled = false`.
    pub monitor: Option<&'r Monitor>,
    pub emit: &'r mut dyn FnMut(&Event),
    pub shutdown: &'r mut watch::Receiver<bool>,
}

/// The state of one walk over the key range.
pub(super) struct Walker<'r, 'a> {
    r: &'r Run<'a>,
    conn: PgConnection,
    app: String,
    heartbeat: &'r Heartbeat,
    monitor: Option<&'r Monitor>,
    decisions: Option<watch::Receiver<Option<Decision>>>,
    condition: Condition,
    /// The batch connection is broken and the last reconnect failed: since when (the first
    /// failure of the streak), and the error that broke it. A pause goes on reconnecting.
    lost: Option<(Instant, batch::BatchError)>,
    emit: &'r mut dyn FnMut(&Event),
    shutdown: &'r mut watch::Receiver<bool>,
    started: Instant,
    /// Recent rows per second, published with the heartbeat for `status`.
    rate: RateWindow,
}

impl<'r, 'a> Walker<'r, 'a> {
    /// Starts the clock; the walk itself is [`Walker::walk`].
    pub fn new(p: Parts<'r, 'a>) -> Walker<'r, 'a> {
        Walker {
            r: p.r,
            conn: p.conn,
            app: p.app,
            heartbeat: p.heartbeat,
            monitor: p.monitor,
            decisions: p.monitor.map(Monitor::decisions),
            condition: Condition::Running,
            lost: None,
            emit: p.emit,
            shutdown: p.shutdown,
            started: Instant::now(),
            rate: RateWindow::default(),
        }
    }

    /// The batch connection, once the walk is over (to release the lease on).
    pub fn into_connection(self) -> PgConnection {
        self.conn
    }
}

impl Walker<'_, '_> {
    /// Emits the event `make` builds for this job's name.
    fn send(&mut self, make: impl FnOnce(String) -> Event) {
        let event = make(self.r.job.name.clone());
        (self.emit)(&event);
    }

    pub async fn walk(&mut self, row: JobRow) -> Result<Outcome, EngineError> {
        let mut at = Position::of(&row);
        let Some(range_end) = self.range_end(&row).await? else {
            self.started_event(&at, 0);
            return Ok(self.finish(&at));
        };
        let r = self.r;
        let pending = preflight::pending_rows(&mut self.conn, r.plan, r.options.exact_count)
            .await
            .map_err(|source| range_error(r, source))?;
        self.started_event(&at, pending.rows);
        let batch = &self.r.job.batch;
        let mut sizer = Sizer::new(
            batch.min,
            batch.max,
            batch.target,
            row.batch_size.unwrap_or(batch.size),
        );
        let mut failures = Failures::default();
        let mut pause = Duration::ZERO;
        loop {
            let throttled = match self.obey(&mut at).await? {
                Step::Stop(outcome) => return Ok(outcome),
                Step::Batch { throttled } => throttled,
            };
            if at.cursor.as_deref() == Some(range_end.as_slice()) {
                return Ok(self.finish(&at));
            }
            let size = if throttled {
                sizer.size().min(batch.min)
            } else {
                sizer.size()
            };
            let cursor = at.cursor.as_deref();
            let result = batch::run(
                &mut self.conn,
                self.r,
                self.monitor,
                cursor,
                &range_end,
                size,
            )
            .await;
            let seen = self.monitor.map(Monitor::batch_ended).unwrap_or_default();
            match result {
                Ok(done) => {
                    failures = Failures::default();
                    sizer.record(size, done.elapsed.saturating_sub(seen.lock_wait));
                    at.rows_done += done.rows;
                    at.batches_done += 1;
                    at.cursor = Some(done.upper);
                    self.rate.push(Instant::now(), at.rows_done);
                    self.publish();
                    self.send(|job| Event::Batch {
                        job,
                        rows: done.rows,
                        rows_done: at.rows_done,
                        batches_done: at.batches_done,
                        batch_size: size,
                        elapsed_ms: millis(done.elapsed),
                    });
                    let max_pause = self.r.job.throttle.max_pause;
                    pause = sizer::pause_before_next(throttled, pause, batch.pause, max_pause);
                    if self.sleep(pause).await {
                        return Ok(self.interrupted(&at));
                    }
                }
                Err(_) if seen.yielded => {
                    sizer.yielded();
                    let reason = self.decision().map(|d| d.reason).unwrap_or_default();
                    self.send(|job| Event::Yielded { job, reason });
                    self.reload(&mut at).await?;
                }
                Err(e) => {
                    if let Some(outcome) =
                        self.recover(e, &mut at, &mut sizer, &mut failures).await?
                    {
                        return Ok(outcome);
                    }
                }
            }
        }
    }

    /// After a failed batch: stop on a fatal error or when retrying is exhausted; otherwise
    /// back off, reconnect if needed and reload the position. `Some` on shutdown.
    async fn recover(
        &mut self,
        e: batch::BatchError,
        at: &mut Position,
        sizer: &mut Sizer,
        failures: &mut Failures,
    ) -> Result<Option<Outcome>, EngineError> {
        let cursor = describe_cursor(at.cursor.as_deref());
        let Failure::Transient { halve, reconnect } = e.failure() else {
            return Err(EngineError::Batch { cursor, source: e });
        };
        if failures.give_up(reconnect, Instant::now(), self.r.options.reconnect_timeout) {
            return Err(if reconnect {
                self.unreachable(e)
            } else {
                EngineError::GaveUp {
                    cursor,
                    attempts: failures.count,
                    source: e,
                }
            });
        }
        if halve {
            sizer.halve();
        }
        let since = failures.since.unwrap_or_else(Instant::now);
        let Some(connected) = self.retry(failures.count, &e, reconnect).await else {
            return Ok(Some(self.interrupted(at)));
        };
        self.lost = (!connected).then_some((since, e));
        // A commit may have landed before the connection broke: the stored cursor, not our
        // copy, says where to go on.
        self.reload(at).await?;
        Ok(None)
    }

    /// The database stayed out of reach for `--reconnect-timeout`.
    fn unreachable(&self, source: batch::BatchError) -> EngineError {
        EngineError::Unreachable {
            target: self.r.target.describe(),
            waited: self.r.options.reconnect_timeout,
            source,
        }
    }

    /// While paused with a broken batch connection: reconnect (and re-read the position), or
    /// give up once `--reconnect-timeout` has passed since the connection broke.
    async fn probe(&mut self, at: &mut Position) -> Result<(), EngineError> {
        let Some((since, _)) = &self.lost else {
            return Ok(());
        };
        let since = *since;
        match self.r.target.connect(&self.app).await {
            Ok(c) => {
                self.conn = c;
                self.lost = None;
                self.reload(at).await
            }
            Err(e) => {
                tracing::debug!("reconnect failed: {e}");
                match self.lost.take() {
                    Some((_, source)) if since.elapsed() >= self.r.options.reconnect_timeout => {
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

    /// Re-reads the position from the state row after a batch that did not succeed; keeps `at`
    /// if the row cannot be read (the next attempt will tell).
    async fn reload(&mut self, at: &mut Position) -> Result<(), EngineError> {
        if let Ok(row) = self.r.store.load(&mut self.conn, &self.r.job.name).await {
            if row.owner.as_ref() != Some(self.r.owner) {
                return Err(EngineError::LeaseLost(format!(
                    "job {:?} was taken over or reset while this run was retrying",
                    self.r.job.name
                )));
            }
            *at = Position::of(&row);
        }
        Ok(())
    }

    /// The stored range end, or the table's greatest key captured and stored now (`None`: the
    /// table is empty).
    async fn range_end(&mut self, row: &JobRow) -> Result<Option<Vec<String>>, EngineError> {
        let r = self.r;
        if let Some(end) = &row.range_end {
            return Ok(Some(end.clone()));
        }
        let end = async {
            let mut tx = begin_read_only(&mut self.conn).await?;
            let end = preflight::range_end(&mut tx, r.plan).await?;
            tx.commit().await?;
            Ok(end)
        }
        .await
        .map_err(|source| range_error(r, source))?;
        if let Some(end) = &end {
            self.r
                .store
                .set_range_end(&mut self.conn, &self.r.job.name, self.r.owner, end)
                .await?;
        }
        Ok(end)
    }

    fn started_event(&mut self, at: &Position, pending: u64) {
        self.send(|job| Event::Started {
            job,
            total_estimate: at.rows_done + pending,
            rows_done: at.rows_done,
            resumed: at.cursor.is_some(),
        });
    }

    fn finish(&mut self, at: &Position) -> Outcome {
        let elapsed_ms = millis(self.started.elapsed());
        self.send(|job| Event::Finished {
            job,
            rows_done: at.rows_done,
            batches_done: at.batches_done,
            elapsed_ms,
        });
        Outcome::Finished {
            rows_done: at.rows_done,
        }
    }

    fn interrupted(&mut self, at: &Position) -> Outcome {
        self.send(|job| Event::Interrupted {
            job,
            rows_done: at.rows_done,
        });
        Outcome::Interrupted {
            rows_done: at.rows_done,
        }
    }

    /// Before each batch: stop on shutdown, a lost lease or `cancel`; wait out an operator's
    /// `pause` and the monitor's pauses (silently until its first decision); report every
    /// change of condition.
    async fn obey(&mut self, at: &mut Position) -> Result<Step, EngineError> {
        let mut beats = self.heartbeat.watch();
        loop {
            if *self.shutdown.borrow() {
                return Ok(Step::Stop(self.interrupted(at)));
            }
            let beat = self.heartbeat.beat();
            if let Some(lost) = beat.lost {
                return Err(EngineError::LeaseLost(lost));
            }
            let condition = match (beat.control.as_deref(), &self.decisions) {
                (Some("cancel"), _) => {
                    return Ok(Step::Stop(Outcome::Cancelled {
                        rows_done: at.rows_done,
                    }));
                }
                (Some("pause"), _) => Some(Condition::Paused {
                    signal: None,
                    reason: "by operator".into(),
                }),
                (_, None) => Some(Condition::Running),
                (_, Some(decisions)) => decisions.borrow().as_ref().map(Condition::of),
            };
            if let Some(condition) = condition {
                let step = match &condition {
                    Condition::Running => Some(Step::Batch { throttled: false }),
                    Condition::Throttled { .. } => Some(Step::Batch { throttled: true }),
                    Condition::Paused { .. } => None,
                };
                self.enter(condition);
                if let Some(step) = step {
                    return Ok(step);
                }
            }
            tokio::select! {
                _ = beats.changed() => {}
                _ = changed(&mut self.decisions) => {}
                _ = self.shutdown.changed() => {}
                _ = reconnect_tick(self.lost.is_some()) => self.probe(at).await?,
            }
        }
    }

    /// The monitor's latest decision, if it runs and has made one.
    fn decision(&self) -> Option<Decision> {
        self.decisions.as_ref().and_then(|d| d.borrow().clone())
    }

    /// Takes on `condition`: an event when it differs from the current one in kind or signal,
    /// and the note for `status` when anything in it changed.
    fn enter(&mut self, condition: Condition) {
        if !self.condition.same_as(&condition) {
            let event = match &condition {
                Condition::Running => Event::Running {
                    job: self.r.job.name.clone(),
                },
                Condition::Throttled { signal, reason } => Event::Throttled {
                    job: self.r.job.name.clone(),
                    reason: reason.clone(),
                    signal: signal.as_ref().map(signal_name),
                },
                Condition::Paused { signal, reason } => Event::Paused {
                    job: self.r.job.name.clone(),
                    reason: reason.clone(),
                    signal: signal.as_ref().map(signal_name),
                },
            };
            (self.emit)(&event);
        }
        // Every batch passes here: publish only what changed (a batch publishes its rate).
        if self.condition != condition {
            self.condition = condition;
            self.publish();
        }
    }

    /// Publishes the rate and the condition for the next heartbeats (and so for `status`).
    fn publish(&self) {
        let paused = matches!(self.condition, Condition::Paused { .. });
        self.heartbeat.publish(Live {
            rate: if paused { None } else { self.rate.per_sec() },
            note: self.condition.note(),
        });
    }

    /// Reports the failure, waits the backoff and reconnects if asked. `None` on shutdown,
    /// otherwise whether the batch connection is usable (as far as is known).
    async fn retry(
        &mut self,
        attempt: u32,
        err: &batch::BatchError,
        reconnect: bool,
    ) -> Option<bool> {
        let wait = backoff::delay(attempt, backoff::jitter());
        self.send(|job| Event::Retry {
            job,
            attempt,
            delay_ms: millis(wait),
            error: error_chain(err),
            reconnecting: reconnect,
        });
        if self.sleep(wait).await {
            return None;
        }
        if !reconnect {
            return Some(true);
        }
        match self.r.target.connect(&self.app).await {
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

    /// Sleeps `d` unless shutdown comes first. True on shutdown.
    async fn sleep(&mut self, d: Duration) -> bool {
        if d.is_zero() {
            return *self.shutdown.borrow();
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => *self.shutdown.borrow(),
            _ = self.shutdown.changed() => true,
        }
    }
}

/// How often a paused run with a broken batch connection tries to reconnect.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);

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

fn range_error(r: &Run<'_>, source: sqlx::Error) -> EngineError {
    EngineError::Range {
        table: r.plan.table.clone(),
        source,
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A cursor for messages: `[5000]`, `["acme", 42]`-like, or `(start)`.
fn describe_cursor(cursor: Option<&[String]>) -> String {
    match cursor {
        Some(values) => format!("({})", values.join(", ")),
        None => "(start)".into(),
    }
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

    #[test]
    fn cursor_is_described_for_messages() {
        assert_eq!(
            describe_cursor(Some(&["acme".into(), "42".into()])),
            "(acme, 42)"
        );
        assert_eq!(describe_cursor(None), "(start)");
    }
}
