//! What every command that reads a job's table does first: wait while a lock on the table is
//! in the way (`lockwait`), read the catalog, build the plan and have the server check the
//! batch that would run next, and whether the job's role may vacuum the table. Writes nothing
//! (a `run`'s wait may only note itself on the job's existing row).

use std::time::Duration;

use crate::db::{Catalog, Session};
use anyhow::{Context as _, Result};
use tokio::sync::watch;

use crate::disk::{Upkeep, Vacuums};
use crate::engine::own_sessions;
use crate::event::Event;
use crate::job::Job;
use crate::lockwait::{LockWait, Note};
use crate::plan::Plan;
use crate::preflight;
use crate::state::JobRow;

/// A job made ready to run: validated file, catalog facts, statements, and whether its role
/// may vacuum the table.
pub struct Prepared {
    pub job: Job,
    pub catalog: Catalog,
    pub plan: Plan,
    pub upkeep: Upkeep,
}

impl Prepared {
    /// What a run of the job vacuums.
    pub fn vacuums(&self) -> Vacuums {
        Vacuums::of(&self.job, &self.upkeep)
    }
}

/// How a command waits for the locks on `job`'s table before it reads the table: at most
/// `patience` (`None`: as long as it takes), showing it through `emit` and `note`.
pub fn lock_wait<'a>(
    job: &Job,
    patience: Option<Duration>,
    note: Note<'a>,
    emit: &'a mut dyn FnMut(&Event),
    shutdown: watch::Receiver<bool>,
) -> LockWait<'a> {
    LockWait {
        job: job.name.clone(),
        relations: vec![job.table.to_string()],
        ours: own_sessions(&job.name),
        poll: job.throttle.poll,
        patience,
        note,
        emit,
        shutdown,
    }
}

/// Reads the catalog, builds the plan and has the server check the batch that would run next
/// (the first, unless `state` holds a checkpoint to resume from), each step once no lock on
/// the table is in its way (`wait`): the catalog is read after a migration that holds the
/// table commits, not before. Writes nothing. `None` when shutdown came while waiting. Errors
/// name the job file, so that the log of `run a b c` says which job failed.
pub async fn prepare(
    conn: &mut Session,
    job: Job,
    state: Option<&JobRow>,
    wait: &mut LockWait<'_>,
) -> Result<Option<(Prepared, preflight::Preflight)>> {
    let source = job.source.display().to_string();
    let ready = async {
        let read = wait.step(conn, async |conn| anyhow::Ok(conn.catalog(&job).await?));
        let Some(catalog) = read.await? else {
            return anyhow::Ok(None);
        };
        let plan = conn.plan(&job, &catalog);
        wait.relations = plan.relations();
        let start = preflight::Start::next(&job, state);
        let check = async |conn: &mut Session| {
            anyhow::Ok(conn.conn().preflight(&job, &plan, &start).await?)
        };
        let Some(checked) = wait.step(conn, check).await? else {
            return Ok(None);
        };
        let upkeep = conn
            .conn()
            .upkeep(&plan.relations())
            .await
            .context("cannot read who may vacuum the table")?;
        Ok(Some((catalog, plan, checked, upkeep)))
    }
    .await
    .context(source)?;
    Ok(ready.map(|(catalog, plan, checked, upkeep)| {
        let prepared = Prepared {
            job,
            catalog,
            plan,
            upkeep,
        };
        (prepared, checked)
    }))
}

/// What `plan` and `verify` say on stderr when they start to wait for a lock.
pub(super) fn say_waiting(patience: Duration) -> impl FnMut(&Event) {
    move |event| {
        if let Event::Paused { job, reason, .. } = event {
            eprintln!(
                "{job}: paused: {reason}; waiting up to {} (--lock-wait)",
                humantime::format_duration(patience)
            );
        }
    }
}

/// What a command stopped by Ctrl-C while waiting for a lock says.
pub(super) fn stopped_waiting(job: &str) -> String {
    format!("{job}: stopped while waiting for the lock on its table; nothing was written")
}
