//! The lease heartbeat: a task with its own connection that refreshes the job's lease every
//! [`HEARTBEAT_EVERY`], publishes the runner's rate and note for `status` on other hosts, and
//! brings back the operator's control flag. Separate from the batch connection so that a long
//! batch or a retry backoff never lets the lease go stale.

use std::sync::{Arc, Mutex};

use sqlx::PgConnection;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{MissedTickBehavior, interval};

use crate::db::{Target, hang_up};
use crate::state::{HEARTBEAT_EVERY, Live, Owner, StateError, Store};

/// What the last heartbeat learned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Beat {
    /// The control flag an operator set (`pause`, `cancel`), if any.
    pub control: Option<String>,
    /// Set when another runner holds the lease now: the message to stop with.
    pub lost: Option<String>,
}

/// A running heartbeat task.
pub struct Heartbeat {
    task: JoinHandle<()>,
    stop: watch::Sender<bool>,
    beat: watch::Receiver<Beat>,
    live: Arc<Mutex<Live>>,
}

/// Who the heartbeat beats for.
pub struct Lease {
    pub store: Store,
    pub target: Target,
    pub name: String,
    pub owner: Owner,
    pub application_name: String,
}

impl Heartbeat {
    /// Starts beating for `lease`.
    pub fn start(lease: Lease) -> Heartbeat {
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

    /// A receiver that wakes on every changed beat.
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
    lease: Lease,
    live: Arc<Mutex<Live>>,
    beat: watch::Sender<Beat>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut conn: Option<PgConnection> = None;
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
        match lease
            .store
            .heartbeat(c, &lease.name, &lease.owner, &now)
            .await
        {
            Ok(control) => {
                beat.send_if_modified(|b| {
                    let changed = b.control != control;
                    b.control = control;
                    changed
                });
            }
            Err(e @ StateError::LeaseLost { .. }) => {
                let _ = beat.send(Beat {
                    control: None,
                    lost: Some(e.to_string()),
                });
                break;
            }
            Err(e) => {
                tracing::debug!("heartbeat failed, reconnecting: {e}");
                conn = None;
            }
        }
    }
    if let Some(conn) = conn {
        hang_up(conn).await;
    }
}
