//! `backfill` fills new columns of a large table in small keyset-paginated batches, each in a
//! short transaction that also records its checkpoint, so that a run never blocks the
//! application, never loses or repeats a row, and resumes exactly where it stopped.
//!
//! Layout, top to bottom (ARCHITECTURE.md has the layers, the seam and the invariants):
//! - [`cli`], [`commands`], [`report`], [`progress`], [`metrics`], [`serve`], [`demo`]: the
//!   command line, what each command does and prints, the progress display (the only module
//!   that knows indicatif), the Prometheus metrics and the page of every job (`backfill
//!   serve`), both on one HTTP stack ([`http`]).
//! - [`engine`]: one run of one job: the leader, the workers' batch loop
//!   (`engine/worker.rs`), a batch with its checkpoint, pacing, retries, the lease heartbeat
//!   and vacuum pacing.
//! - [`ranges`]: how a job's key range is laid out, claimed, split and stolen by workers.
//! - [`monitor`]: samples the database on its own connection; the pure
//!   [`monitor::policy::decide`] turns a sample into go, throttle, pause or yield.
//! - [`guard`]: the latency guard, and its pure AIMD back-off ([`guard::aimd`]).
//! - [`lockwait`], [`preflight`], [`verify`], [`disk`]: a start behind a lock, the server's
//!   check of a job, the contract gate, the heap and vacuum rights.
//! - [`state`]: the state tables' types and rules: jobs, ranges and their checkpoints, leases,
//!   control flags, the failures table.
//! - [`job`], [`plan`], [`event`], [`rate`], [`jitter`], [`words`]: pure data and arithmetic:
//!   the job file, the statements a run hands back to the database, what a run reports, the
//!   names an expression mentions.
//! - [`db`]: the seam: every operation on a database, dispatched to that database's folder.
//! - [`postgres`]: everything that speaks PostgreSQL, with the throwaway cluster of `demo` and
//!   the tests.
//! - [`mysql`]: everything that speaks MySQL and MariaDB, so far the throwaway server of the
//!   tests.
//! - [`throwaway`]: what the throwaway servers of both share: a private directory removed
//!   however its owner ends, a free port, the programs' output in errors.
//! - [`rows`]: what both databases' code shares over sqlx's traits: reading a row's columns,
//!   binding and reading keys as text.

pub mod catalog;
pub mod cli;
pub mod commands;
pub mod db;
pub mod demo;
pub mod disk;
pub mod engine;
pub mod event;
pub mod failure;
pub mod guard;
pub mod http;
pub mod jitter;
pub mod job;
pub mod lockwait;
pub mod metrics;
pub mod monitor;
pub mod mysql;
pub mod plan;
pub mod postgres;
pub mod preflight;
pub mod progress;
pub mod ranges;
pub mod rate;
pub mod report;
pub mod rows;
pub mod serve;
pub mod state;
pub mod throwaway;
pub mod verify;
pub mod words;
