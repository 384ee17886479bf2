//! What `backfill serve` reads and writes, through the same seam as every command: one session
//! of its own, used by one request at a time, and made again on the next request after any
//! failure (a restart, a failover). Reads take no lock (`list` and `load` read without
//! `FOR UPDATE`); only a control writes, as `backfill pause` does.

use tokio::sync::Mutex;

use crate::db::{Session, Target};
use crate::state::{Control, FailedRow, JobRow, RangeRow, StateError, Store};

/// How many failed rows a job's page shows.
const FAILED_SHOWN: u32 = 10;

/// The server's sessions say who they are in `pg_stat_activity`.
const APPLICATION_NAME: &str = "backfill:serve";

/// Every job, by name, with its table's heap now (unknown when it cannot be read).
pub struct Jobs {
    rows: Vec<JobRow>,
    heaps: Vec<Option<u64>>,
}

impl Jobs {
    /// Each job with its table's heap.
    pub fn iter(&self) -> impl Iterator<Item = (&JobRow, Option<u64>)> {
        self.rows
            .iter()
            .enumerate()
            .map(|(i, row)| (row, self.heaps.get(i).copied().flatten()))
    }
}

/// One job, whole.
pub struct OneJob {
    pub row: JobRow,
    pub heap: Option<u64>,
    pub ranges: Vec<RangeRow>,
    pub failed: Vec<FailedRow>,
}

/// Why a read or a control failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot connect to {target}")]
    Connect {
        target: String,
        #[source]
        source: sqlx::Error,
    },
}

/// The server's way to the state tables.
pub struct Reader {
    target: Target,
    store: Store,
    session: Mutex<Option<Session>>,
}

impl Reader {
    /// Connects once, so that a wrong URL or password is said before the server listens.
    pub async fn connect(target: Target, store: Store) -> Result<Reader, sqlx::Error> {
        let session = target.connect(APPLICATION_NAME).await?;
        Ok(Reader {
            target,
            store,
            session: Mutex::new(Some(session)),
        })
    }

    /// Every job, by name.
    pub async fn jobs(&self) -> Result<Jobs, ReadError> {
        let store = &self.store;
        self.with_session(async |s: &mut Session| {
            let rows = store.list(s.conn()).await?;
            let tables: Vec<String> = rows.iter().map(|r| r.table_name.clone()).collect();
            let heaps = s.conn().heaps(&tables).await.unwrap_or_default();
            Ok(Jobs { rows, heaps })
        })
        .await
    }

    /// Job `name` with its ranges and first failed rows.
    pub async fn job(&self, name: &str) -> Result<OneJob, ReadError> {
        let store = &self.store;
        self.with_session(async |s: &mut Session| {
            let row = store.load(s.conn(), name).await?;
            let ranges = store.ranges(s.conn(), name).await?;
            let failed = store.failures(s.conn(), name, FAILED_SHOWN).await?;
            let tables = [row.table_name.clone()];
            let heap = s
                .conn()
                .heaps(&tables)
                .await
                .ok()
                .and_then(|h| h.first().copied().flatten());
            Ok(OneJob {
                row,
                heap,
                ranges,
                failed,
            })
        })
        .await
    }

    /// Asks job `name`'s runners to pause, resume or cancel, as `backfill pause` does.
    pub async fn control(&self, name: &str, control: Control) -> Result<JobRow, ReadError> {
        let store = &self.store;
        self.with_session(async |s: &mut Session| {
            Ok(store.control(s.conn(), name, control).await?)
        })
        .await
    }

    /// Runs `work` on the server's session, connecting first when there is none; after a
    /// failure the session is dropped, and the next request connects again.
    async fn with_session<T>(
        &self,
        work: impl AsyncFnOnce(&mut Session) -> Result<T, ReadError>,
    ) -> Result<T, ReadError> {
        let mut slot = self.session.lock().await;
        let mut session = match slot.take() {
            Some(session) => session,
            None => self
                .target
                .connect(APPLICATION_NAME)
                .await
                .map_err(|source| ReadError::Connect {
                    target: self.target.describe(),
                    source,
                })?,
        };
        let result = work(&mut session).await;
        match &result {
            Ok(_) | Err(ReadError::State(StateError::UnknownJob { .. })) => {
                *slot = Some(session);
            }
            Err(_) => session.hang_up().await,
        }
        result
    }
}
