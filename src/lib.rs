//! `backfill` fills new PostgreSQL columns in small keyset-paginated batches, each in a short
//! transaction that also records its checkpoint, so that a run never blocks the application,
//! never loses or repeats a row, and resumes exactly where it stopped.
//!
//! Layout (ARCHITECTURE.md):
//! - [`job`]: job file → validated [`job::Job`], no I/O beyond reading the file.
//! - [`catalog`]: the table's key, columns, indexes and triggers, read once per run.
//! - [`plan`]: pure; every statement about the target table. [`sql`] is its quoting type.
//! - [`preflight`]: the server's check of a job's SQL before anything is written.
//! - [`lockwait`]: a start waits, paused, while a lock on the table is in its way.
//! - [`engine`]: the batch loop, retries, adaptive sizing and pacing, the lease heartbeat.
//! - [`monitor`]: samples locks, load, replicas and WAL retention on its own connection; the pure
//!   [`monitor::policy::decide`] turns a sample into go, throttle, pause or yield.
//! - [`guard`]: the latency guard: times a probe on its own connection and backs the run off
//!   (pure AIMD in [`guard::aimd`]) while the probe is slower than its baseline allows.
//! - [`state`]: the state tables — jobs and their ranges: checkpoints, leases, control flags.
//! - [`share`]: how a job's key range is laid out, claimed, split and stolen by workers.
//! - [`event`] and [`progress`]: what a run reports, and its display (the only module that
//!   knows indicatif); [`metrics`] serves the same events to Prometheus.
//! - [`db`]: connections and statement execution that also work behind PgBouncer.
//! - [`disk`]: the table's heap, who may vacuum it, and what a run costs in heap and WAL.
//! - [`scratch`]: a throwaway PostgreSQL cluster for `demo` and the tests.
//! - [`verify`]: the gate before the contract migration, `verify --values` included.
//! - [`cli`], [`commands`], [`report`], [`demo`]: the command line and what it prints.

pub mod cli;
pub mod commands;
pub mod db;
pub mod demo;
pub mod disk;
pub mod engine;
pub mod event;
pub mod guard;
pub mod jitter;
pub mod job;
pub mod lockwait;
pub mod metrics;
pub mod monitor;
pub mod plan;
pub mod postgres;
pub mod preflight;
pub mod progress;
pub mod ranges;
pub mod rate;
pub mod report;
pub mod state;
pub mod verify;
