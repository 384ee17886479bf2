//! The heartbeat: a task with its own connection that refreshes, every [`HEARTBEAT_EVERY`],
//! every lease this process holds on the job (its ranges, and the job itself if it started
//! the run), publishes its workers' rates and its note for `status` on other hosts, and
//! brings back the operator's control flag and the job's totals across every process — and,
//! since it comes by every second anyway, reads the table's heap size for the progress line.
//! Separate from the batch connections so that a long batch or a retry backoff never lets a
//! lease go stale.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::db::Session;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{MissedTickBehavior, interval};

use crate::db::Target;
use crate::state::{HEARTBEAT_EVERY, JobRow, Live, Owner, StateError, Store};

/// What the last heartbeat learned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Beat {
    /// The control flag an operator set (`pause`, `cancel`), if any.
    pub control: Option<String>,
    /// Set when another runner holds the job's lease now: the message to stop with.
    pub lost: Option<String>,
    /// The job's row as the last successful heartbeat read it.
    pub job: Option<JobRow>,
    /// When the last heartbeat succeeded: a process that was frozen for a while must not
    /// write before it has checked that its leases are still its own.
    pub at: Option<Instant>,
    /// The table's heap in bytes, as the last heartbeat read it.
    pub heap_bytes: Option<u64>,
}

/// A running heartbeat task.
pub struct Heartbeat {
    task: JoinHandle<()>,
    stop: watch::Sender<bool>,
    beat: watch::Receiver<Beat>,
    live: Arc<Mutex<Live>>,
}

/// Who the heartbeat beats for.
pub struct Holdings {
    pub store: Store,
    pub target: Target,
    pub name: String,
    pub owner: Owner,
    /// This process holds the job's lease (it started the run), not only range leases.
    pub holds_job: bool,
    pub application_name: String,
    /// The table whose heap to read, as SQL.
    pub table: String,
}

impl Heartbeat {
    /// Starts beating for `lease`.
    pub fn start(lease: Holdings) -> Heartbeat {
        let (stop, stopped) = watch::channel(false);
        let (beat_tx, beat) = watch::channel(Beat::default());
        let live = Arc::new(Mutex::new(Live::default()));
        let task = tokio::spawn(beat_loop(lease, Arc::clone(&live), beat_tx, stopped));
        Heartbeat {
            task,
            stop,
            beat,
            live,
        }
    }

    /// The latest beat.
    pub fn beat(&self) -> Beat {
        self.beat.borrow().clone()
    }

    /// Reads the job's row as the last beat saw it, without copying the beat: what every batch
    /// consults.
    pub fn with_job<T>(&self, read: impl FnOnce(Option<&JobRow>) -> T) -> T {
        read(self.beat.borrow().job.as_ref())
    }

    /// A receiver that wakes on every beat.
    pub fn watch(&self) -> watch::Receiver<Beat> {
        self.beat.clone()
    }

    /// Sets what the next heartbeats publish.
    pub fn publish(&self, live: Live) {
        if let Ok(mut slot) = self.live.lock() {
            *slot = live;
        }
    }

    /// Stops the task and waits for it.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn beat_loop(
    lease: Holdings,
    live: Arc<Mutex<Live>>,
    beat: watch::Sender<Beat>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut conn: Option<Session> = None;
    let mut ticks = interval(HEARTBEAT_EVERY);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            _ = ticks.tick() => {}
        }
        if conn.is_none() {
            match lease.target.connect(&lease.application_name).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    tracing::debug!("heartbeat cannot connect: {e}");
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let now = live.lock().map(|l| l.clone()).unwrap_or_default();
        let store = &lease.store;
        match store
            .heartbeat(c.conn(), &lease.name, &lease.owner, lease.holds_job, &now)
            .await
        {
            Ok(job) => {
                let heap_bytes = c.conn().heap_bytes(&lease.table).await.ok();
                beat.send_replace(Beat {
                    control: job.control.clone(),
                    lost: None,
                    job: Some(job),
                    at: Some(Instant::now()),
                    heap_bytes,
                });
            }
            Err(e @ StateError::LeaseLost { .. }) => {
                beat.send_modify(|b| b.lost = Some(e.to_string()));
                break;
            }
            Err(e) => {
                tracing::debug!("heartbeat failed, reconnecting: {e}");
                conn = None;
            }
        }
    }
    if let Some(conn) = conn {
        conn.hang_up().await;
    }
}
