//! The monitor (DESIGN §5): a task with its own connection that samples the database every
//! `poll` — and every `batch_poll` while a batch runs — judges the sample with the pure
//! [`policy::decide`], and publishes the [`Decision`] on a watch channel that the batch loop
//! obeys before every batch.
//!
//! A yield it carries out itself, at once: it cancels the statement of our running batch
//! (identified by pid *and* transaction start, see [`Backend`]) so that the session waiting for
//! its locks goes ahead, and tells the batch loop that the failure was a yield, not an error.
//! While a batch waits for a lock the monitor counts that time, so that the adaptive sizer can
//! leave it out. A lost connection is retried on every tick; after `fail_closed_after` without
//! a sample the decision is a pause.

pub mod policy;
mod sample;
pub mod sight;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::PgConnection;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::db::{Backend, Target, error_chain, hang_up};
use crate::job::ThrottlePolicy;

pub use policy::{Action, Decision, Signal};
use policy::{History, Reading, Snapshot};
pub use sample::throttle_query_sql;

/// The monitor's connection, made on first use and after a failure.
async fn connection<'c>(
    conn: &'c mut Option<PgConnection>,
    watch: &Watch,
) -> Result<&'c mut PgConnection, sqlx::Error> {
    if conn.is_none() {
        *conn = Some(watch.target.connect(&watch.application_name).await?);
    }
    Ok(conn.as_mut().expect("connected just above"))
}

/// The shortest statement timeout of a sample.
const MIN_SAMPLE_TIMEOUT: Duration = Duration::from_secs(1);

/// The statement timeout of the monitor's samples and cancels: `poll`, but at least
/// [`MIN_SAMPLE_TIMEOUT`].
fn sample_timeout(policy: &ThrottlePolicy) -> Duration {
    policy.poll.max(MIN_SAMPLE_TIMEOUT)
}

/// What the monitor needs to watch one job.
pub struct Watch {
    pub policy: ThrottlePolicy,
    /// Where to connect (`--monitor-url`, or the main URL).
    pub target: Target,
    pub application_name: String,
    /// The `application_name` of the job's own sessions, which `max_active_sessions` does not
    /// count.
    pub job_application_name: String,
    /// The target table as SQL (`"public"."items"`).
    pub table: String,
}

/// What the monitor saw of one batch while it ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchWatch {
    /// Time the batch spent waiting for locks, as sampled every `batch_poll`.
    pub lock_wait: Duration,
    /// The monitor cancelled the batch to let another session go ahead.
    pub yielded: bool,
}

/// The running monitor task.
pub struct Monitor {
    task: JoinHandle<()>,
    decision: watch::Receiver<Option<Decision>>,
    batch: watch::Sender<Option<Backend>>,
    seen: Arc<Mutex<BatchWatch>>,
    /// How long [`Monitor::stop`] waits for the task to end by itself.
    stop_within: Duration,
}

impl Monitor {
    /// Starts watching; the first decision comes with the first sample (or, if none succeeds,
    /// after `fail_closed_after`).
    pub fn start(watch: Watch) -> Monitor {
        let (decision_tx, decision) = watch::channel(None);
        let (batch, batch_rx) = watch::channel(None);
        let seen = Arc::new(Mutex::new(BatchWatch::default()));
        let stop_within = sample_timeout(&watch.policy);
        let task = tokio::spawn(
            Task {
                watch,
                decision: decision_tx,
                batch: batch_rx,
                seen: Arc::clone(&seen),
                conn: None,
                last_full: None,
                full_tried: None,
            }
            .run(),
        );
        Monitor {
            task,
            decision,
            batch,
            seen,
            stop_within,
        }
    }

    /// A receiver of the decisions; `None` until the first one.
    pub fn decisions(&self) -> watch::Receiver<Option<Decision>> {
        self.decision.clone()
    }

    /// Our batch runs on `backend` from now on: watch it closely.
    pub fn batch_started(&self, backend: Backend) {
        if let Ok(mut seen) = self.seen.lock() {
            *seen = BatchWatch::default();
        }
        self.batch.send_replace(Some(backend));
    }

    /// The batch ended (committed or rolled back): what the monitor saw of it.
    pub fn batch_ended(&self) -> BatchWatch {
        self.batch.send_replace(None);
        self.seen
            .lock()
            .map(|mut seen| std::mem::take(&mut *seen))
            .unwrap_or_default()
    }

    /// Stops the task and waits for it. Asked first, so that it ends between two samples and
    /// hangs up cleanly: a session dropped inside its sample transaction would cost PgBouncer a
    /// server connection. Aborted if it does not end within one sample's statement timeout,
    /// which only happens while it is stuck connecting to a server that does not answer.
    pub async fn stop(self) {
        let Monitor {
            mut task,
            batch,
            stop_within,
            ..
        } = self;
        drop(batch);
        if tokio::time::timeout(stop_within, &mut task).await.is_err() {
            task.abort();
            let _ = task.await;
        }
    }
}

/// The monitor task's state.
struct Task {
    watch: Watch,
    decision: watch::Sender<Option<Decision>>,
    batch: watch::Receiver<Option<Backend>>,
    seen: Arc<Mutex<BatchWatch>>,
    conn: Option<PgConnection>,
    /// The last full sample's load, WAL retention, `throttle_query` and `throttle_file`, reused
    /// by the lock-only samples taken in between.
    last_full: Option<Reading>,
    /// When the last full sample was tried, whether it succeeded or not: the next is due `poll`
    /// later (so that a server that is down is not hammered).
    full_tried: Option<Instant>,
}

impl Task {
    /// Watches until the batch loop is gone, then hangs up.
    async fn run(mut self) {
        self.watch_until_gone().await;
        if let Some(conn) = self.conn.take() {
            hang_up(conn).await;
        }
    }

    async fn watch_until_gone(&mut self) {
        let mut history = History::new(Instant::now());
        let mut previous = Instant::now();
        loop {
            let batch = *self.batch.borrow_and_update();
            let at = Instant::now();
            let reading = self.sample(batch, at).await;
            let snapshot = Snapshot { at, reading };
            let policy = &self.watch.policy;
            let decision = policy::decide(policy, &snapshot, &history);
            history.record(policy, &snapshot);
            if let (Some(b), Ok(reading)) = (batch, &snapshot.reading) {
                self.account(b, reading, at.saturating_duration_since(previous));
            }
            previous = at;
            let yield_now = decision.action == Action::Yield;
            // Published before the cancel, so that the batch loop knows why its batch failed.
            self.decision.send_if_modified(|slot| {
                let changed = slot.as_ref() != Some(&decision);
                *slot = Some(decision);
                changed
            });
            if let Some(b) = batch
                && yield_now
            {
                self.cancel(b).await;
            }
            // Batches start and end every few milliseconds: a change only moves the next sample
            // earlier (to `batch_poll` after this one), it never takes one at once.
            loop {
                let in_batch = self.batch.borrow_and_update().is_some();
                let due = self.next_sample(in_batch, at);
                tokio::select! {
                    _ = tokio::time::sleep_until(due.into()) => break,
                    // The batch loop is gone: so is the reason to watch.
                    gone = self.batch.changed() => if gone.is_err() { return },
                }
            }
        }
    }

    /// When to sample next, after one taken at `last`: `batch_poll` later while a batch runs,
    /// otherwise when the next full sample is due.
    fn next_sample(&self, in_batch: bool, last: Instant) -> Instant {
        let policy = &self.watch.policy;
        let full = self.full_tried.map_or(last, |at| at + policy.poll);
        if in_batch {
            full.min(last + policy.batch_poll)
        } else {
            full
        }
    }

    /// One sample: locks always, the rest when a full sample is due. On an error the connection
    /// is dropped and the next tick reconnects.
    async fn sample(&mut self, batch: Option<Backend>, at: Instant) -> Result<Reading, String> {
        let policy = &self.watch.policy;
        let full = self
            .full_tried
            .is_none_or(|last| at.saturating_duration_since(last) >= policy.poll);
        if full {
            self.full_tried = Some(at);
        }
        let probe = sample::Probe {
            table: &self.watch.table,
            batch,
            full,
            job_application_name: &self.watch.job_application_name,
            throttle_query: policy.throttle_query.as_deref(),
            timeout: sample_timeout(policy),
        };
        let conn = connection(&mut self.conn, &self.watch)
            .await
            .map_err(|e| error_chain(&e))?;
        let sampled = match sample::take(conn, &probe).await {
            Ok(sampled) => sampled,
            Err(e) => {
                self.conn = None;
                return Err(error_chain(&e));
            }
        };
        let mut reading = match (&self.last_full, full) {
            (Some(last), false) => last.clone(),
            _ => Reading::default(),
        };
        reading.locks = sampled.locks;
        if full {
            (reading.load, reading.wal) = sampled.load.unwrap_or_default();
            reading.throttle_query = sampled.throttle_query;
            reading.throttle_file = policy
                .throttle_file
                .as_deref()
                .is_some_and(sample::file_exists);
            self.last_full = Some(reading.clone());
        }
        Ok(reading)
    }

    /// Adds `since_last` to the batch's lock wait when the sample saw it waiting.
    fn account(&self, batch: Backend, reading: &Reading, since_last: Duration) {
        if !reading.locks.batch_waiting || *self.batch.borrow() != Some(batch) {
            return;
        }
        if let Ok(mut seen) = self.seen.lock() {
            seen.lock_wait += since_last.min(self.watch.policy.poll);
        }
    }

    /// Marks our batch yielded, then cancels its statement if `batch` still runs. Marked first,
    /// so that the batch loop never sees the cancelled batch's error before the mark; the mark
    /// on a batch that commits anyway changes nothing.
    async fn cancel(&mut self, batch: Backend) {
        if *self.batch.borrow() == Some(batch)
            && let Ok(mut seen) = self.seen.lock()
        {
            seen.yielded = true;
        }
        let timeout = sample_timeout(&self.watch.policy);
        let sent = match connection(&mut self.conn, &self.watch).await {
            Ok(conn) => sample::cancel(conn, batch, timeout).await,
            Err(e) => Err(e),
        };
        match sent {
            Ok(_) => {}
            Err(e) => {
                tracing::warn!("could not cancel our batch to yield: {}", error_chain(&e));
                self.conn = None;
            }
        }
    }
}
