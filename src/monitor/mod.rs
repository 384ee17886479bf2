//! The monitor (ARCHITECTURE.md): a task with its own connection that samples the database every
//! `poll` — and every `batch_poll` while a batch runs — judges the sample with the pure
//! [`policy::decide`], and publishes the [`Decision`] on a watch channel that the batch loop
//! obeys before every batch.
//!
//! One monitor watches every batch of its process — one per worker — and the process's vacuum
//! (a statement outside a transaction block, known by the comment its text starts with, see
//! [`Running`]). A yield it carries out itself, at once: it cancels those of our running
//! batches and statements that another session waits for (a batch identified by pid *and*
//! transaction start, see [`Backend`]) so that the session goes ahead, and tells each
//! cancelled one's owner that the failure was a yield, not an error. It also cancels, on
//! request, a statement its owner withdraws ([`Monitor::withdraw`]). While a batch waits for a
//! lock the monitor counts that time, so that its worker's adaptive sizer can leave it out. A
//! lost connection is retried on every tick; after `fail_closed_after` without a sample the
//! decision is a pause. MySQL's replicas (`--replica-url`) are read on connections of their own
//! ([`replicas`]).

mod once;
pub mod policy;
mod replicas;
pub mod sample;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::db::{Backend, Session, Target, error_chain};
use crate::job::ThrottlePolicy;

use once::MIN_SAMPLE_TIMEOUT;
pub use once::{table_lock, wal_retention};
pub use policy::{Action, Decision, Signal};
use policy::{History, Reading, Snapshot};
use replicas::Replicas;

/// The monitor's connection, made on first use and after a failure.
async fn connection<'c>(
    conn: &'c mut Option<Session>,
    watch: &Watch,
) -> Result<&'c mut Session, sqlx::Error> {
    if conn.is_none() {
        *conn = Some(watch.target.connect(&watch.application_name).await?);
    }
    Ok(conn.as_mut().expect("connected just above"))
}

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
    /// The target table as SQL (`"public"."items"`), followed by the leaf partitions that
    /// batches update when it is partitioned.
    pub relations: Vec<String>,
    /// The application names of the job's own sessions (batches, heartbeat, monitor), whose
    /// waits are never a reason to yield or pause.
    pub ours: Vec<String>,
    /// Replicas whose lag is read on each one (`--replica-url`; MySQL and MariaDB).
    pub replicas: Vec<Target>,
}

/// What the monitor saw of one batch while it ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchWatch {
    /// Time the batch spent waiting for locks, as sampled every `batch_poll`.
    pub lock_wait: Duration,
    /// The monitor cancelled the batch to let another session go ahead.
    pub yielded: bool,
}

/// One of our sessions that the monitor watches while it runs, and cancels when another
/// session waits for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Running {
    /// A batch transaction, known by its backend.
    Batch(Backend),
    /// A statement that runs outside a transaction block (VACUUM), known by the comment its
    /// text starts with (the marker), unique to it: which server session runs it is not known
    /// beforehand behind PgBouncer, so every sample finds it by its text.
    Statement(String),
}

/// A running session of ours, and whether its owner asked for it to be cancelled.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Tracked {
    running: Running,
    withdrawn: bool,
}

/// Our running batches and statements, by worker (or the id a statement was registered
/// under).
type Batches = BTreeMap<u32, Tracked>;

/// What the monitor saw of each running batch, by worker.
type Seen = Arc<Mutex<HashMap<u32, BatchWatch>>>;

/// The session (pid) each worker ran its last batch on, kept between its batches: on MySQL,
/// whose sessions carry no application name, how the sample knows a transaction begun since
/// it took its list of running batches as ours.
type Sessions = Arc<Mutex<BTreeMap<u32, i64>>>;

/// The running monitor task.
pub struct Monitor {
    task: JoinHandle<()>,
    decision: watch::Receiver<Option<Decision>>,
    batches: watch::Sender<Batches>,
    seen: Seen,
    sessions: Sessions,
    /// How long [`Monitor::stop`] waits for the task to end by itself.
    stop_within: Duration,
}

impl Monitor {
    /// Starts watching; the first decision comes with the first sample (or, if none succeeds,
    /// after `fail_closed_after`).
    pub fn start(watch: Watch) -> Monitor {
        let (decision_tx, decision) = watch::channel(None);
        let (batches, batches_rx) = watch::channel(Batches::new());
        let seen = Seen::default();
        let sessions = Sessions::default();
        let stop_within = sample_timeout(&watch.policy);
        let replicas = Replicas::new(&watch.replicas);
        let task = tokio::spawn(
            Task {
                watch,
                replicas,
                decision: decision_tx,
                batches: batches_rx,
                seen: Arc::clone(&seen),
                sessions: Arc::clone(&sessions),
                conn: None,
                last_full: None,
                full_tried: None,
            }
            .run(),
        );
        Monitor {
            task,
            decision,
            batches,
            seen,
            sessions,
            stop_within,
        }
    }

    /// A receiver of the decisions; `None` until the first one.
    pub fn decisions(&self) -> watch::Receiver<Option<Decision>> {
        self.decision.clone()
    }

    /// `worker`'s batch runs on `backend` from now on: watch it closely.
    pub fn batch_started(&self, worker: u32, backend: Backend) {
        self.started(worker, Running::Batch(backend));
    }

    /// The statement whose text starts with `marker` is about to be sent, on behalf of `id`
    /// (an id no worker has): watch it as closely as a batch, cancel it as a batch when a
    /// session waits for it, and end it with [`Monitor::batch_ended`].
    pub fn statement_started(&self, id: u32, marker: String) {
        self.started(id, Running::Statement(marker));
    }

    fn started(&self, id: u32, running: Running) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.insert(id, BatchWatch::default());
        }
        if let (Running::Batch(backend), Ok(mut sessions)) = (&running, self.sessions.lock()) {
            sessions.insert(id, backend.pid);
        }
        self.batches.send_modify(|b| {
            b.insert(
                id,
                Tracked {
                    running,
                    withdrawn: false,
                },
            );
        });
    }

    /// Cancels what `id` runs at the next sample (within `batch_poll`): its owner gives up on
    /// it (shutdown). Its end reads as a yield.
    pub fn withdraw(&self, id: u32) {
        self.batches.send_if_modified(|b| match b.get_mut(&id) {
            Some(tracked) if !tracked.withdrawn => {
                tracked.withdrawn = true;
                true
            }
            _ => false,
        });
    }

    /// `worker`'s batch (or `id`'s statement) ended (committed, rolled back or cancelled):
    /// what the monitor saw of it.
    pub fn batch_ended(&self, worker: u32) -> BatchWatch {
        self.batches.send_modify(|b| {
            b.remove(&worker);
        });
        self.seen
            .lock()
            .ok()
            .and_then(|mut seen| seen.remove(&worker))
            .unwrap_or_default()
    }

    /// Stops the task and waits for it. Asked first, so that it ends between two samples and
    /// hangs up cleanly: a session dropped inside its sample transaction would cost PgBouncer a
    /// server connection. Aborted if it does not end within one sample's statement timeout,
    /// which only happens while it is stuck connecting to a server that does not answer.
    pub async fn stop(self) {
        let Monitor {
            mut task,
            batches,
            stop_within,
            ..
        } = self;
        drop(batches);
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
    batches: watch::Receiver<Batches>,
    seen: Seen,
    sessions: Sessions,
    conn: Option<Session>,
    replicas: Replicas,
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
            conn.hang_up().await;
        }
        self.replicas.hang_up().await;
    }

    async fn watch_until_gone(&mut self) {
        let mut history = History::new(Instant::now());
        let mut previous = Instant::now();
        loop {
            let batches = self.batches.borrow_and_update().clone();
            let at = Instant::now();
            let sampled = self.sample(&batches, at).await;
            let (reading, ours) = match sampled {
                Ok((reading, ours)) => (Ok(reading), ours),
                Err(e) => (Err(e), Ours::default()),
            };
            let snapshot = Snapshot { at, reading };
            let policy = &self.watch.policy;
            let decision = policy::decide(policy, &snapshot, &history);
            history.record(policy, &snapshot);
            let pids = ours.pids(&batches);
            self.account(
                &batches,
                &pids,
                &ours.waiting,
                at.saturating_duration_since(previous),
            );
            previous = at;
            let yield_now = decision.action == Action::Yield;
            // Published before the cancel, so that the batch loop knows why its batch failed.
            self.decision.send_if_modified(|slot| {
                let changed = slot.as_ref() != Some(&decision);
                *slot = Some(decision);
                changed
            });
            let to_cancel: Vec<(u32, Running)> = batches
                .iter()
                .filter(|(id, tracked)| {
                    let in_the_way = || {
                        pids.get(id)
                            .is_some_and(|pid| ours.in_the_way.contains(pid))
                    };
                    tracked.withdrawn || (yield_now && in_the_way())
                })
                .map(|(id, tracked)| (*id, tracked.running.clone()))
                .collect();
            if !to_cancel.is_empty() {
                self.cancel(&to_cancel).await;
            }
            // Batches start and end every few milliseconds: a change only moves the next sample
            // earlier (to `batch_poll` after this one), it never takes one at once.
            loop {
                let in_batch = !self.batches.borrow_and_update().is_empty();
                let due = self.next_sample(in_batch, at);
                tokio::select! {
                    _ = tokio::time::sleep_until(due.into()) => break,
                    // The batch loops are gone: so is the reason to watch.
                    gone = self.batches.changed() => if gone.is_err() { return },
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
    async fn sample(&mut self, batches: &Batches, at: Instant) -> Result<(Reading, Ours), String> {
        let policy = &self.watch.policy;
        let full = self
            .full_tried
            .is_none_or(|last| at.saturating_duration_since(last) >= policy.poll);
        if full {
            self.full_tried = Some(at);
        }
        let (backends, statements) = split(batches.values().map(|t| &t.running));
        let sessions: Vec<i64> = match self.sessions.lock() {
            Ok(sessions) => sessions.values().copied().collect(),
            Err(_) => Vec::new(),
        };
        let probe = sample::Request {
            relations: &self.watch.relations,
            ours: &self.watch.ours,
            sessions: &sessions,
            batches: &backends,
            statements: &statements,
            full,
            throttle_query: policy.throttle_query.as_deref(),
            timeout: sample_timeout(policy),
        };
        let conn = connection(&mut self.conn, &self.watch)
            .await
            .map_err(|e| error_chain(&e))?;
        let sampled = match conn.sample(&probe).await {
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
            let timeout = sample_timeout(policy);
            let replicas = self.replicas.read(&self.watch.application_name, timeout);
            reading.load.replicas.extend(replicas.await);
            reading.throttle_query = sampled.throttle_query;
            reading.throttle_file = policy
                .throttle_file
                .as_deref()
                .is_some_and(sample::file_exists);
            self.last_full = Some(reading.clone());
        }
        let ours = Ours {
            in_the_way: sampled.in_the_way,
            waiting: sampled.waiting,
            statements: sampled.statements,
        };
        Ok((reading, ours))
    }

    /// Adds `since_last` to the lock wait of each batch the sample saw waiting (by `pids`), if
    /// it still runs.
    fn account(
        &self,
        batches: &Batches,
        pids: &BTreeMap<u32, i64>,
        waiting: &[i64],
        since_last: Duration,
    ) {
        let running = self.batches.borrow();
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        for (worker, tracked) in batches {
            if pids.get(worker).is_some_and(|pid| waiting.contains(pid))
                && still_runs(&running, *worker, &tracked.running)
                && let Some(watch) = seen.get_mut(worker)
            {
                watch.lock_wait += since_last.min(self.watch.policy.poll);
            }
        }
    }

    /// Marks each of `ours` yielded, then cancels those that still run. Marked first, so that
    /// an owner never sees its cancelled batch's error before the mark; the mark on a batch
    /// that commits anyway changes nothing.
    async fn cancel(&mut self, ours: &[(u32, Running)]) {
        {
            let running = self.batches.borrow();
            if let Ok(mut seen) = self.seen.lock() {
                for (id, what) in ours {
                    if still_runs(&running, *id, what)
                        && let Some(watch) = seen.get_mut(id)
                    {
                        watch.yielded = true;
                    }
                }
            }
        }
        let (backends, statements) = split(ours.iter().map(|(_, r)| r));
        let timeout = sample_timeout(&self.watch.policy);
        let sent = match connection(&mut self.conn, &self.watch).await {
            Ok(conn) => conn.cancel(&backends, &statements, timeout).await,
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            tracing::warn!("could not cancel our batches to yield: {}", error_chain(&e));
            self.conn = None;
        }
    }
}

/// Whether `id` still runs `what` (not yet ended, nor replaced by its next batch).
fn still_runs(running: &Batches, id: u32, what: &Running) -> bool {
    running.get(&id).is_some_and(|t| t.running == *what)
}

/// The batches' backends and the statements' markers among `running`.
fn split<'a>(running: impl Iterator<Item = &'a Running>) -> (Vec<Backend>, Vec<String>) {
    let (mut backends, mut statements) = (Vec::new(), Vec::new());
    for r in running {
        match r {
            Running::Batch(backend) => backends.push(*backend),
            Running::Statement(marker) => statements.push(marker.clone()),
        }
    }
    (backends, statements)
}

/// Which of our batches and statements a sample found in another session's way, which wait
/// themselves, and which backend runs each of our statements.
#[derive(Debug, Default)]
struct Ours {
    in_the_way: Vec<i64>,
    waiting: Vec<i64>,
    statements: Vec<(String, i64)>,
}

impl Ours {
    /// The backend (pid) of each of `batches` as this sample saw it: a batch's own, a
    /// statement's if the sample found it running.
    fn pids(&self, batches: &Batches) -> BTreeMap<u32, i64> {
        batches
            .iter()
            .filter_map(|(id, tracked)| {
                let pid = match &tracked.running {
                    Running::Batch(backend) => Some(backend.pid),
                    Running::Statement(marker) => self
                        .statements
                        .iter()
                        .find(|(m, _)| m == marker)
                        .map(|(_, pid)| *pid),
                };
                pid.map(|pid| (*id, pid))
            })
            .collect()
    }
}
