//! The seam between `backfill` and the databases it runs on. Everything above this module (the
//! engine, the ranges, the state tables' API, the monitor's task, the guard, the commands) holds
//! a [`Target`], a [`Session`], a [`Tx`] or a [`Conn`] and never a driver type; everything that
//! speaks one database's SQL lives in that database's folder (`crate::postgres`).
//!
//! The seam is a set of enums, one variant per database, rather than a trait: an operation is
//! a `match` that hands the driver's own connection to that database's function, so each
//! database's code is plain async Rust over its own sqlx types, with no boxing, no generic
//! parameter threaded through the engine, and one place per operation where a new database is
//! added — the compiler lists every `match` that lacks its arm (ARCHITECTURE.md, "The seam").

mod checks;
mod disk;
mod errors;
mod state;
mod table;
mod target;

pub use target::Target;

use std::time::Duration;

use sqlx::{MySqlConnection, PgConnection};

use crate::monitor::policy::Replica;
use crate::monitor::sample::{Request, Sampled};
use crate::{mysql, postgres};

pub use crate::catalog::{Catalog, CatalogError};
pub use crate::monitor::sample::Backend;
pub use errors::{Failure, classify, gave_up_on_lock, is_row_error};
pub use postgres::privileges::Privileges;
pub use postgres::{ServerError, error_chain};
pub use state::RangeSql;
pub use target::TargetError;

/// Which server a session reached, for what a command says of it (`plan`'s `server` line and
/// the parts of its report that differ between databases).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Server {
    /// PostgreSQL, whose version the catalog reads ([`Catalog::server_version`]).
    Postgres,
    /// MySQL or MariaDB, as the session learnt when it connected.
    Mysql(mysql::session::Server),
}

/// One open connection to the database, owned: what a worker, the monitor, the guard or a
/// command holds between transactions.
pub enum Session {
    Postgres(PgConnection),
    Mysql(mysql::session::Session),
}

/// An open transaction on a [`Session`], committed or rolled back by its owner (dropped, it
/// rolls back).
pub enum Tx<'c> {
    Postgres(sqlx::Transaction<'c, sqlx::Postgres>),
    Mysql(mysql::session::Tx<'c>),
}

/// Somewhere to run statements — a [`Session`] between transactions or a [`Tx`] — borrowed for
/// one call: what the functions that run statements take.
pub enum Conn<'a> {
    Postgres(&'a mut PgConnection),
    Mysql(&'a mut MySqlConnection),
}

impl Conn<'_> {
    /// The same connection again, for one more call.
    pub fn reborrow(&mut self) -> Conn<'_> {
        match self {
            Conn::Postgres(c) => Conn::Postgres(c),
            Conn::Mysql(c) => Conn::Mysql(c),
        }
    }
}

impl Session {
    /// Which server the session reached.
    pub fn server(&self) -> Server {
        match self {
            Session::Postgres(_) => Server::Postgres,
            Session::Mysql(s) => Server::Mysql(s.server.clone()),
        }
    }

    /// Runs statements on the session itself, outside a transaction of ours.
    pub fn conn(&mut self) -> Conn<'_> {
        match self {
            Session::Postgres(c) => Conn::Postgres(c),
            Session::Mysql(s) => Conn::Mysql(&mut s.conn),
        }
    }

    /// A transaction that only reads, ended by the server if it idles.
    pub async fn begin_read_only(&mut self) -> Result<Tx<'_>, sqlx::Error> {
        match self {
            Session::Postgres(c) => Ok(Tx::Postgres(postgres::begin_read_only(c).await?)),
            Session::Mysql(s) => Ok(Tx::Mysql(s.begin_read_only().await?)),
        }
    }

    /// A transaction that writes the state tables: no statement or lock limit, ended by the
    /// server if it idles, and durable at commit.
    pub async fn begin_state(&mut self) -> Result<Tx<'_>, sqlx::Error> {
        match self {
            Session::Postgres(c) => Ok(Tx::Postgres(postgres::begin_state(c).await?)),
            Session::Mysql(s) => Ok(Tx::Mysql(s.begin_state().await?)),
        }
    }

    /// A transaction whose statements are bounded by `statement_timeout` and `lock_timeout`,
    /// and the [`Backend`] that runs it.
    pub async fn begin_bounded(
        &mut self,
        statement_timeout: Duration,
        lock_timeout: Duration,
        read_only: bool,
    ) -> Result<(Tx<'_>, Backend), sqlx::Error> {
        match self {
            Session::Postgres(c) => {
                let (tx, backend) =
                    postgres::begin_bounded(c, statement_timeout, lock_timeout, read_only).await?;
                Ok((Tx::Postgres(tx), backend))
            }
            Session::Mysql(s) => {
                let (tx, backend) = s
                    .begin_bounded(statement_timeout, lock_timeout, read_only)
                    .await?;
                Ok((Tx::Mysql(tx), backend))
            }
        }
    }

    /// A batch's transaction: bounded like [`Session::begin_bounded`], ended by the server
    /// once idle for `idle_in_transaction`, and with `wal` the server's WAL position at its
    /// start.
    pub async fn begin_batch(
        &mut self,
        statement_timeout: Duration,
        lock_timeout: Duration,
        idle_in_transaction: Duration,
        wal: bool,
    ) -> Result<(Tx<'_>, Backend, Option<u64>), sqlx::Error> {
        match self {
            Session::Postgres(c) => {
                let (tx, backend, lsn) = postgres::begin_batch(
                    c,
                    statement_timeout,
                    lock_timeout,
                    idle_in_transaction,
                    wal,
                )
                .await?;
                Ok((Tx::Postgres(tx), backend, lsn))
            }
            Session::Mysql(s) => {
                let limits = mysql::session::Limits {
                    statement_timeout,
                    lock_timeout,
                    idle: Some(idle_in_transaction),
                    read_only: false,
                };
                let (tx, backend) = s.begin_limited(limits).await?;
                Ok((Tx::Mysql(tx), backend, None))
            }
        }
    }

    /// Times the latency guard's probe: `sql` (bound to `key` when it reads one row by key,
    /// whose commit then waits for the flush as an application's write does) in a read-only
    /// transaction bounded by `timeout`; one that runs into the timeout counts as that slow.
    pub async fn time_probe(
        &mut self,
        sql: &str,
        key: Option<&[String]>,
        timeout: Duration,
    ) -> Result<Duration, sqlx::Error> {
        match self {
            Session::Postgres(c) => postgres::probe::time(c, sql, key, timeout).await,
            Session::Mysql(s) => mysql::monitor::time_probe(s, sql, key, timeout).await,
        }
    }

    /// One sample of the server's locks (and with [`Request::full`] its load, replicas and WAL
    /// retention) for the monitor, in one read-only transaction.
    pub async fn sample(&mut self, request: &Request<'_>) -> Result<Sampled, sqlx::Error> {
        match self {
            Session::Postgres(c) => postgres::sample::take(c, request).await,
            Session::Mysql(s) => mysql::monitor::sample(s, request).await,
        }
    }

    /// The lag of the replica this session reached (`--replica-url`), which reasons call
    /// `name`. MySQL and MariaDB only: a PostgreSQL primary's replicas are read on the primary,
    /// in [`Session::sample`].
    pub async fn replica_lag(&mut self, name: &str) -> Result<Replica, sqlx::Error> {
        match self {
            Session::Postgres(_) => Err(sqlx::Error::Configuration(
                "a PostgreSQL replica's lag is read on its primary".into(),
            )),
            Session::Mysql(s) => mysql::monitor::replicas::read(s, name).await,
        }
    }

    /// Cancels the statements our `batches` run (those whose transaction still runs) and our
    /// `statements` (by the comment their text starts with); how many were signalled.
    pub async fn cancel(
        &mut self,
        batches: &[Backend],
        statements: &[String],
        timeout: Duration,
    ) -> Result<usize, sqlx::Error> {
        match self {
            Session::Postgres(c) => postgres::sample::cancel(c, batches, statements, timeout).await,
            Session::Mysql(s) => mysql::monitor::cancel(&mut s.conn, batches).await,
        }
    }

    /// Who holds or waits for a lock on `relation` that a vacuum would wait for, in words;
    /// `None` when nobody does.
    pub async fn vacuum_holder(&mut self, relation: &str) -> Result<Option<String>, sqlx::Error> {
        match self {
            Session::Postgres(c) => postgres::vacuum::holder(c, relation).await,
            Session::Mysql(_) => Err(mysql::not_yet("vacuum holder")),
        }
    }

    /// Vacuums `relation` (the final vacuum when `last`, else a pacing one), its text starting
    /// with `marker` so that the monitor can find and cancel it.
    pub async fn vacuum(
        &mut self,
        relation: &str,
        last: bool,
        index_cleanup: bool,
        marker: &str,
    ) -> Result<(), sqlx::Error> {
        match self {
            Session::Postgres(c) => {
                postgres::vacuum::run(c, relation, last, index_cleanup, marker).await
            }
            Session::Mysql(_) => Err(mysql::not_yet("vacuum")),
        }
    }

    /// The table's facts that a plan is made from — its key, columns, partitions, indexes and
    /// triggers — read once per run.
    pub async fn catalog(&mut self, job: &crate::job::Job) -> Result<Catalog, CatalogError> {
        match self {
            Session::Postgres(c) => Catalog::read(c, job).await,
            Session::Mysql(s) => mysql::catalog::read(&mut s.conn, job).await,
        }
    }

    /// Every statement for `job` on its table, as this database's planner writes them.
    pub fn plan(&self, job: &crate::job::Job, catalog: &Catalog) -> crate::plan::Plan {
        match self {
            Session::Postgres(_) => crate::plan::Plan::new(job, catalog),
            Session::Mysql(_) => mysql::plan::plan(job, catalog),
        }
    }

    /// The role the session runs as: whose privileges the batches have.
    pub async fn role(&mut self) -> Result<String, sqlx::Error> {
        match self {
            Session::Postgres(c) => postgres::privileges::role(c).await,
            Session::Mysql(s) => mysql::monitor::role(&mut s.conn).await,
        }
    }

    /// What this session (the monitor's) may see of other sessions, replicas and WAL, with
    /// `batch_role` the role of the batches.
    pub async fn privileges(&mut self, batch_role: &str) -> Result<Privileges, sqlx::Error> {
        match self {
            Session::Postgres(c) => postgres::privileges::read(c, batch_role).await,
            Session::Mysql(s) => {
                let role = mysql::monitor::role(&mut s.conn).await?;
                Ok(Privileges {
                    sees_all: mysql::monitor::sees_all(&mut s.conn).await?,
                    superuser: false,
                    batch_superuser: false,
                    // KILL QUERY needs only the same account, or CONNECTION_ADMIN.
                    may_signal: role == batch_role,
                    mysql: Some(mysql::monitor::sight(s).await?),
                    batch_role: batch_role.to_owned(),
                    role,
                })
            }
        }
    }

    /// Runs one statement of our own — the demo's and the tests' setup, a migration's DDL —
    /// outside any transaction of ours; how many rows it changed.
    pub async fn execute(&mut self, sql: &str) -> Result<u64, sqlx::Error> {
        match self {
            Session::Postgres(c) => Ok(postgres::statement(sql).execute(c).await?.rows_affected()),
            Session::Mysql(s) => Ok(sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(&mut s.conn)
                .await?
                .rows_affected()),
        }
    }

    /// Ends the session politely (see [`postgres::hang_up`]).
    pub async fn hang_up(self) {
        match self {
            Session::Postgres(c) => postgres::hang_up(c).await,
            Session::Mysql(s) => mysql::session::hang_up(s).await,
        }
    }
}

/// How long [`Tx::abandon`] waits for the server to confirm its rollback.
const ABANDON_WITHIN: Duration = Duration::from_secs(5);

impl Tx<'_> {
    /// Runs statements inside the transaction.
    pub fn conn(&mut self) -> Conn<'_> {
        match self {
            Tx::Postgres(tx) => Conn::Postgres(tx),
            Tx::Mysql(tx) => Conn::Mysql(&mut tx.tx),
        }
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Postgres(tx) => tx.commit().await,
            Tx::Mysql(tx) => tx.commit().await,
        }
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Postgres(tx) => tx.rollback().await,
            Tx::Mysql(tx) => tx.tx.rollback().await,
        }
    }

    /// Rolls back now a transaction whose statement failed, instead of leaving the rollback to
    /// the driver's next use of the connection, which may come only after a pause: a statement
    /// killed on MySQL (`KILL QUERY`, error 1317) leaves its transaction open, holding its row
    /// and metadata locks. Errors are ignored (a connection that is gone has ended the
    /// transaction too), and the wait is bounded, so that a server that does not answer cannot
    /// hold the worker.
    pub async fn abandon(self) {
        let _ = tokio::time::timeout(ABANDON_WITHIN, self.rollback()).await;
    }

    /// Ends the transaction by the outcome of the work done in it: commits it when `done` is
    /// `Ok`, else rolls it back at once ([`Tx::abandon`]) and hands the error on.
    pub async fn settle<T, E: From<sqlx::Error>>(self, done: Result<T, E>) -> Result<T, E> {
        match done {
            Ok(value) => {
                self.commit().await?;
                Ok(value)
            }
            Err(e) => {
                self.abandon().await;
                Err(e)
            }
        }
    }

    /// A savepoint inside the transaction: committed, it keeps its statements; rolled back,
    /// it undoes them and the transaction goes on.
    pub async fn savepoint(&mut self) -> Result<Tx<'_>, sqlx::Error> {
        match self {
            Tx::Postgres(tx) => Ok(Tx::Postgres(sqlx::Connection::begin(&mut **tx).await?)),
            Tx::Mysql(tx) => Ok(Tx::Mysql(mysql::session::Tx {
                tx: sqlx::Connection::begin(&mut *tx.tx).await?,
                watchdog: None,
                restore_wait: false,
            })),
        }
    }
}
