//! What every test of the state tables stands on: the shared server of each flavor, a state
//! schema per test, and the engine's steps (claim, lay out, take a range, checkpoint) as the
//! engine takes them.

use std::io::Write as _;
use std::sync::OnceLock;
use std::time::Duration;

use backfill::db::RangeSql;
use backfill::db::{Session, Target};
use backfill::mysql::state::quoted;
use backfill::mysql::throwaway::{Error, Flavor, Server};
use backfill::state::{
    Admission, Claim, FailedRow, Holder, NewRange, Owner, Progress, StateError, Store,
};

pub fn server(flavor: Flavor) -> Option<&'static Server> {
    static MARIADB: OnceLock<Option<Server>> = OnceLock::new();
    static MYSQL: OnceLock<Option<Server>> = OnceLock::new();
    let cell = match flavor {
        Flavor::MariaDb => &MARIADB,
        Flavor::MySql => &MYSQL,
    };
    cell.get_or_init(|| match Server::start(flavor) {
        Ok(server) => {
            let _ = writeln!(std::io::stderr(), "{flavor} {}", server.version());
            Some(server)
        }
        Err(error @ Error::NotFound { .. }) => {
            let _ = writeln!(std::io::stderr(), "skipping the {flavor} server: {error}");
            None
        }
        Err(error) => panic!("start a {flavor} server: {error}"),
    })
    .as_ref()
}

/// A test's state schema on one server, and sessions to it as `run` opens them.
pub struct Fixture {
    pub target: Target,
    pub store: Store,
}

impl Fixture {
    /// `None` when the flavor is not installed.
    pub fn new(flavor: Flavor, test: &str) -> Option<Fixture> {
        let server = server(flavor)?;
        Some(Fixture {
            target: Target::new(Some(&server.url(""))).unwrap(),
            store: Store::new(&format!("state_{test}"), quoted),
        })
    }

    pub async fn session(&self) -> Session {
        self.target.connect("mysql_state").await.unwrap()
    }

    /// A session with the state tables created.
    pub async fn ready(&self) -> Session {
        let mut session = self.session().await;
        self.store
            .ensure(session.conn(), Duration::from_secs(5))
            .await
            .unwrap();
        session
    }

    /// Runs `sql` as is (a test's own reach into the tables: `{jobs}`, `{ranges}` and
    /// `{failures}` name them).
    pub async fn execute(&self, session: &mut Session, sql: &str) {
        let sql = sql
            .replace("{ranges}", self.store.ranges_table())
            .replace("{jobs}", self.store.table())
            .replace("{failures}", self.store.failures_table());
        session.execute(&sql).await.unwrap();
    }
}

pub const JOB: &str = "fill";
pub const ELSEWHERE: &str = "elsewhere.example:4242:00000001";
pub const THIRD: &str = "third.example:4343:00000002";
pub const INT: &str = "CAST({} AS SIGNED)";

pub fn key(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|p| p.to_string()).collect()
}

pub fn claim(owner: &Owner) -> Claim<'_> {
    Claim {
        name: JOB,
        table_name: "`shop`.`orders`",
        definition_hash: "h1",
        settings: "{}",
        owner,
        lease_timeout: Duration::from_secs(15),
        restart: false,
        resume_cancelled: false,
        join: false,
        retry_failures: false,
        heap_bytes: Some(8192),
    }
}

pub fn holder(owner: &Owner, worker: u32) -> Holder<'_> {
    Holder {
        job: JOB,
        owner,
        worker,
        lease_timeout: Duration::from_secs(15),
    }
}

pub fn range(upper: &[&str], keys: u64) -> NewRange {
    NewRange {
        relation: "`shop`.`orders`".into(),
        lower: None,
        upper: key(upper),
        keys_estimate: Some(keys),
        cursor: None,
        rows_done: 0,
        batches_done: 0,
    }
}

/// Claims the job for `owner` and lays out `ranges`, as `run`'s start does.
pub async fn start(f: &Fixture, session: &mut Session, owner: &Owner, ranges: &[NewRange]) {
    let (admission, _) = f.store.claim(session.conn(), &claim(owner)).await.unwrap();
    assert_eq!(admission, Admission::Run);
    let mut tx = session.begin_state().await.unwrap();
    f.store.lock_layout(tx.conn(), JOB).await.unwrap();
    let end = ranges.last().map(|r| r.upper.clone());
    f.store
        .lay_out(tx.conn(), JOB, ranges, end.as_ref())
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

/// Claims a range for worker `w` in a transaction of its own, as `ranges::Share::take` does.
pub async fn take(f: &Fixture, session: &mut Session, w: &Holder<'_>) -> Option<u32> {
    let mut tx = session.begin_state().await.unwrap();
    let taken = f.store.claim_range(tx.conn(), w, &[]).await.unwrap();
    tx.commit().await.unwrap();
    taken.map(|r| r.id)
}

/// A batch's checkpoint, committed when it succeeds.
pub async fn checkpoint(
    f: &Fixture,
    session: &mut Session,
    sql: &RangeSql,
    w: &Holder<'_>,
    range: u32,
    cursor: &[&str],
    rows: u64,
) -> Result<Progress, StateError> {
    let (mut tx, _) = session
        .begin_bounded(Duration::from_secs(30), Duration::from_secs(5), false)
        .await
        .unwrap();
    let progress = f
        .store
        .checkpoint(tx.conn(), sql, w, range, &key(cursor), rows, 10)
        .await?;
    tx.commit().await.unwrap();
    Ok(progress)
}

pub fn failed(key_parts: &[&str], message: &str) -> FailedRow {
    FailedRow {
        columns: key(&["id"]),
        key: key(key_parts),
        relation: "`shop`.`orders`".into(),
        sqlstate: "22007".into(),
        message: message.into(),
        notes: None,
        attempts: 1,
        age: None,
    }
}
