//! A worker's link to the database: its session, and — once a reconnect has failed — since
//! when it is lost and the error that broke it, so that a paused worker goes on trying and
//! gives up only after `--reconnect-timeout`; and the reads and writes of the range row the
//! worker holds, outside its batches (finishing it, re-reading it).

use std::time::{Duration, Instant};

use crate::db::{Session, Target};
use crate::state::{Holder, RangeRow, StateError, Store};

use super::BatchError;
use super::EngineError;

/// How often a paused worker with a broken connection tries to reconnect.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);

pub(super) struct Link {
    pub(super) session: Session,
    /// The session's `application_name`, given again on every reconnect.
    app: String,
    /// The session is broken and the last reconnect failed: since when (the first failure of
    /// the streak), and the error that broke it.
    lost: Option<(Instant, BatchError)>,
}

impl Link {
    pub(super) fn new(session: Session, app: String) -> Link {
        Link {
            session,
            app,
            lost: None,
        }
    }

    /// Replaces the session by a new one; whether that worked.
    pub(super) async fn reconnect(&mut self, target: &Target) -> bool {
        match target.connect(&self.app).await {
            Ok(session) => {
                self.session = session;
                true
            }
            Err(e) => {
                tracing::debug!("reconnect failed: {e}");
                false
            }
        }
    }

    /// Records whether the session works after a retry: when not, it has been lost since
    /// `since`, broken by `error`.
    pub(super) fn settle(&mut self, connected: bool, since: Instant, error: BatchError) {
        self.lost = (!connected).then_some((since, error));
    }

    pub(super) fn is_lost(&self) -> bool {
        self.lost.is_some()
    }

    /// While lost: tries to reconnect. Gives back the error that broke the session once
    /// `timeout` has passed since it broke and the session is still out of reach.
    pub(super) async fn probe(
        &mut self,
        target: &Target,
        timeout: Duration,
    ) -> Result<(), BatchError> {
        let Some((since, _)) = &self.lost else {
            return Ok(());
        };
        let since = *since;
        if self.reconnect(target).await {
            self.lost = None;
            return Ok(());
        }
        match self.lost.take() {
            Some((_, source)) if since.elapsed() >= timeout => Err(source),
            lost => {
                self.lost = lost;
                Ok(())
            }
        }
    }

    /// Marks the walked range done; who holds it now if it is no longer ours.
    pub(super) async fn finish(
        &mut self,
        store: &Store,
        holder: &Holder<'_>,
        range: u32,
    ) -> Result<Option<String>, BatchError> {
        let mut tx = self.session.begin_state().await?;
        match store.finish_range(tx.conn(), holder, range).await {
            Ok(()) => {
                tx.commit().await?;
                Ok(None)
            }
            Err(StateError::RangeTaken { owner, .. }) => Ok(Some(owner)),
            Err(e) => Err(e.into()),
        }
    }

    /// Re-reads `range`, held by `holder`, after anything but a commit: a commit may have
    /// landed before a connection broke, and a split may have moved its upper end.
    pub(super) async fn reload(
        &mut self,
        store: &Store,
        holder: &Holder<'_>,
        range: &mut RangeRow,
    ) -> Result<Reread, EngineError> {
        let read = async {
            let mut tx = self.session.begin_read_only().await?;
            let row = store.range(tx.conn(), holder.job, range.id).await;
            tx.commit().await?;
            Ok::<_, BatchError>(row?)
        };
        match read.await {
            Ok(Some(row)) => {
                let owner = row.lease.as_ref().map(|l| l.owner.0.clone());
                let mine = owner.as_deref() == Some(holder.owner.0.as_str())
                    && row.worker == Some(holder.worker)
                    && row.status == "running";
                if !mine {
                    return Ok(Reread::Lost(owner.unwrap_or_else(|| "nobody".into())));
                }
                *range = row;
                Ok(Reread::Mine)
            }
            Ok(None) => Err(EngineError::LeaseLost(format!(
                "job {:?} was reset while this run was walking it",
                holder.job
            ))),
            Err(e) => {
                tracing::debug!("cannot re-read range {}: {e}", range.id);
                Ok(Reread::Unread)
            }
        }
    }
}

/// Ticks every [`RECONNECT_EVERY`] while `lost`; never otherwise.
pub(super) async fn reconnect_tick(lost: bool) {
    if lost {
        tokio::time::sleep(RECONNECT_EVERY).await;
    } else {
        std::future::pending::<()>().await;
    }
}

/// What re-reading a range found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Reread {
    /// Still ours; the copy is up to date.
    Mine,
    /// The row could not be read; the copy stays (the next attempt will tell).
    Unread,
    /// Another process holds it now (named), or it is done.
    Lost(String),
}

impl Reread {
    /// Who holds the range now, when it is no longer ours.
    pub(super) fn lost(self) -> Option<String> {
        match self {
            Reread::Lost(owner) => Some(owner),
            Reread::Mine | Reread::Unread => None,
        }
    }
}
