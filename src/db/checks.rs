//! The server's check of a job before anything runs (`crate::preflight`), its estimate of the
//! pending rows, and the contract gate of `verify` (`crate::verify`), through the seam.

use tokio::sync::watch;

use crate::job::Job;
use crate::mysql;
use crate::plan::Plan;
use crate::preflight::{Estimate, Preflight, PreflightError, Start};
use crate::verify::{Subject, Verdict, VerifyError};

use super::Conn;

impl Conn<'_> {
    /// Client connections in use (other than this one) and `max_connections`.
    pub async fn connections(self) -> Result<(u32, u32), sqlx::Error> {
        match self {
            Conn::Postgres(c) => crate::postgres::preflight::connections(c).await,
            Conn::Mysql(c) => mysql::preflight::connections(c).await,
        }
    }

    /// Reads the range and `EXPLAIN`s the batch that `start` names.
    pub async fn preflight(
        self,
        job: &Job,
        plan: &Plan,
        start: &Start,
    ) -> Result<Preflight, PreflightError> {
        match self {
            Conn::Postgres(c) => crate::postgres::preflight::check(c, job, plan, start).await,
            Conn::Mysql(c) => mysql::preflight::check(c, job, plan, start).await,
        }
    }

    /// Rows still matching `where`: counted with `exact`, else estimated as the module says. One
    /// read-only transaction; a sample of a bounded number of blocks unless `exact`.
    pub async fn pending_rows(self, plan: &Plan, exact: bool) -> Result<Estimate, sqlx::Error> {
        match self {
            Conn::Postgres(c) => {
                crate::postgres::preflight::estimate::pending_rows(c, plan, exact).await
            }
            Conn::Mysql(c) => mysql::preflight::pending_rows(c, plan, exact).await,
        }
    }

    /// Counts the rows still matching `where` (and, for a job with a range end, those past it).
    pub async fn verify_pending(self, s: &Subject<'_>) -> Result<Verdict, VerifyError> {
        match self {
            Conn::Postgres(c) => crate::postgres::verify::pending(c, s).await,
            Conn::Mysql(c) => mysql::verify::pending(c, s).await,
        }
    }

    /// Whether every `[set]` expression gives the same value when computed twice: `verify
    /// --values` compares with them, so a volatile one would find differences that are not there.
    pub async fn check_comparable(self, job: &Job) -> Result<(), VerifyError> {
        match self {
            Conn::Postgres(c) => crate::postgres::verify::check_comparable(c, job).await,
            Conn::Mysql(c) => mysql::verify::check_comparable(c, job).await,
        }
    }

    /// `verify --values`: every `[set]` column compared with its expression, batch by batch in
    /// key order; `None` when stopped by the shutdown signal.
    pub async fn verify_values(
        self,
        s: &Subject<'_>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Option<Verdict>, VerifyError> {
        match self {
            Conn::Postgres(c) => crate::postgres::verify::values(c, s, shutdown).await,
            Conn::Mysql(c) => mysql::verify::values(c, s, shutdown).await,
        }
    }
}
