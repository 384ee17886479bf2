//! What `plan` prints, as text for a person or as JSON for a script (`plan --json`): the job,
//! the table facts, the effective throttle policy, the estimate, the state, the SQL of a batch
//! and the server's `EXPLAIN` of the batch that would run next. Pure. The lines that differ
//! between databases are chosen here, by [`Server`]: PostgreSQL's are in this file, MySQL's
//! and MariaDB's in `super::mysql`.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

use crate::catalog::Catalog;
use crate::db::Server;
use crate::event::millis;
use crate::job::{Job, OnError};
use crate::plan::Plan;
use crate::postgres::privileges::Privileges;
use crate::postgres::state::RangeSql;
use crate::postgres::{Limits, NEWEST_TESTED_MAJOR, limits_sql, version_name, wal_position_sql};
use crate::preflight::Budget;
use crate::preflight::{Estimate, Method, Preflight};
use crate::state::{JobRow, Store, idle_in_transaction_timeout};

use super::disk::DiskReport;
use super::{describe_status, key_source, lease_note, status_json};

/// What the dry run found: checks, catalog, the server's preflight, the estimate, the state.
pub struct PlanReport<'a> {
    /// The server the plan was made on: which database's lines the report prints.
    pub server: &'a Server,
    pub job: &'a Job,
    pub catalog: &'a Catalog,
    pub plan: &'a Plan,
    pub checked: &'a Preflight,
    /// Rows still matching `where`, and how that was found.
    pub pending: Estimate,
    pub store: &'a Store,
    pub state: Option<&'a JobRow>,
    /// What the monitor's role may see and do; `None` when throttling is off.
    pub sight: Option<&'a Privileges>,
    /// The connections one process of the job would hold, and the server's room.
    pub budget: &'a Budget,
    /// The lease timeout a `run` declares, which bounds how long a frozen batch may hold rows.
    pub lease_timeout: Duration,
    /// What the run is expected to cost in disk, and how it vacuums.
    pub disk: &'a DiskReport<'a>,
}

impl PlanReport<'_> {
    /// `"id" bigint`, one per key column.
    fn key(&self) -> Vec<String> {
        self.catalog
            .key
            .iter()
            .map(|c| format!("{} {}", self.plan.dialect.ident(&c.name), c.type_sql))
            .collect()
    }

    /// The server in words.
    fn server_line(&self) -> String {
        match self.server {
            Server::Postgres => server(self.catalog.server_version),
            Server::Mysql(s) => super::mysql::server(s),
        }
    }

    /// The index that serves the key walk.
    fn index_line(&self) -> String {
        let catalog_index = self.catalog.key_index.as_deref();
        match self.server {
            Server::Postgres => catalog_index.map_or("none leads with the key".to_owned(), |i| {
                format!("{i} serves the key walk")
            }),
            Server::Mysql(_) => super::mysql::index(self.checked, catalog_index),
        }
    }

    /// The job's timeouts, as the server applies them.
    fn timeouts_line(&self) -> String {
        let t = &self.job.timeouts;
        match self.server {
            Server::Postgres => format!(
                "timeouts  statement {}, lock {}",
                humantime::format_duration(t.statement),
                humantime::format_duration(t.lock)
            ),
            Server::Mysql(s) => super::mysql::timeouts(s, self.job),
        }
    }

    /// The `[throttle]` block: what the monitor watches and does.
    fn throttle_block(&self) -> String {
        let (p, now) = (&self.job.throttle, self.checked.throttle_query);
        match self.server {
            Server::Postgres => super::throttle::policy(p, now, self.sight),
            Server::Mysql(_) => super::mysql::throttle(p, now, self.sight),
        }
    }

    /// What the comment above a batch's statements adds, and every statement a batch sends
    /// before its `COMMIT`, in order.
    fn transaction(&self) -> (String, Vec<String>) {
        match self.server {
            Server::Postgres => {
                let mut sql = vec!["BEGIN".to_owned()];
                sql.extend(self.batch_sql());
                (String::new(), sql)
            }
            Server::Mysql(s) => super::mysql::transaction(self, s),
        }
    }

    /// `batch_sql` of `plan --json`: PostgreSQL's statements inside `BEGIN`, MySQL's from the
    /// first that begins the transaction.
    fn batch_sql_json(&self) -> Vec<String> {
        match self.server {
            Server::Postgres => self.batch_sql(),
            Server::Mysql(s) => super::mysql::transaction(self, s).1,
        }
    }

    /// `first` for a job that starts at its first key, `next` for one that resumes.
    fn which_batch(&self) -> &'static str {
        if self.checked.after.is_some() {
            "next"
        } else {
            "first"
        }
    }

    /// Each thing that would make the run slow or blind, in a sentence that says what to do.
    fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if !self.checked.walk_uses_index() {
            warnings.push(format!(
                "the key walk does not use an index on ({}); every batch would scan the table. Create one, or set `key` to indexed columns.",
                self.key().join(", ")
            ));
        }
        warnings.extend(
            self.sight
                .map(|s| s.warnings(&self.job.throttle))
                .unwrap_or_default(),
        );
        warnings.extend(crate::disk::warnings(self.job, self.disk.upkeep));
        warnings
    }

    /// The statement of every batch, in the order a batch transaction runs them (over the
    /// first leaf, for a partitioned table); under a WAL budget the first also reads the WAL
    /// position, and another reads it again before the commit.
    fn batch_sql(&self) -> Vec<String> {
        let t = &self.job.timeouts;
        let walk = self.plan.walks().first().unwrap_or(&self.plan.walk);
        let wal = self.job.throttle.max_wal_rate.is_some();
        let limits = Limits {
            statement_timeout: t.statement,
            lock_timeout: t.lock,
            idle_in_transaction: Some(idle_in_transaction_timeout(self.lease_timeout)),
            wal,
            flushed_commit: false,
        };
        let mut sql = vec![
            limits_sql(&limits),
            walk.upper_bound.after_cursor.clone(),
            walk.update.after_cursor.clone(),
            RangeSql::new(self.store, &self.plan.key_types)
                .checkpoint_sql()
                .to_owned(),
        ];
        if wal {
            sql.push(wal_position_sql());
        }
        sql
    }
}

/// `partitions 3 leaves, each walked and updated on its own: …`.
fn partitions(plan: &Plan) -> String {
    match plan.walks().len() {
        0 => "partitions none yet; a run finishes at once".to_owned(),
        n => format!(
            "partitions {n} lea{}, each walked and updated on its own: {}",
            if n == 1 { "f" } else { "ves" },
            plan.walks()
                .iter()
                .map(|w| w.relation.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `workers   4 per process: 6 connections …`, and what `run` does when they do not fit.
fn workers(b: &Budget) -> String {
    let extras = b.extras().join(", ");
    let mut line = format!(
        "workers   {} per process: {} connections ({} batch, {extras}); the server has {} of max_connections {} in use, {} under max_connection_use {}",
        b.workers,
        b.per_process(),
        b.workers,
        b.in_use,
        b.max_connections,
        b.limit(),
        b.share
    );
    if !b.fits() {
        line.push_str(&format!(
            " — too many: `run` refuses; at most {} fit now",
            b.most_workers()
        ));
    }
    line
}

/// The server's version, and whether CI vouches for it (an older one never gets this far).
fn server(version: u32) -> String {
    let name = version_name(version);
    if version / 10000 > NEWEST_TESTED_MAJOR {
        format!(
            "PostgreSQL {name} (newer than {NEWEST_TESTED_MAJOR}, the newest version backfill is \
             tested on)"
        )
    } else {
        format!("PostgreSQL {name}")
    }
}

/// `(a, b)` for a key's text values.
fn key_text(key: &[String]) -> String {
    format!("({})", key.join(", "))
}

/// The dry run's report: checks, the SQL of one batch, EXPLAINs, the estimate, the state, and
/// a warning for each thing that would make the run slow or blind.
pub fn plan(report: &PlanReport<'_>) -> String {
    let PlanReport {
        job,
        catalog,
        plan,
        checked,
        pending,
        store,
        state,
        budget,
        ..
    } = report;
    let mut out = String::new();
    let b = &job.batch;
    let _ = writeln!(out, "job       {} ({})", job.name, job.source.display());
    let _ = writeln!(out, "server    {}", report.server_line());
    let _ = writeln!(out, "table     {}", plan.table);
    let _ = writeln!(
        out,
        "key       ({}) from {}",
        report.key().join(", "),
        key_source(&catalog.key_source)
    );
    let _ = writeln!(out, "index     {}", report.index_line());
    let triggers = if catalog.triggers.is_empty() {
        "none".to_owned()
    } else {
        format!(
            "{} (fire for every row changed)",
            catalog.triggers.join(", ")
        )
    };
    let _ = writeln!(out, "triggers  {triggers}");
    if plan.partitioned {
        let _ = writeln!(out, "{}", partitions(plan));
    }
    let _ = writeln!(out, "where     {}", job.filter);
    for a in &job.set {
        let _ = writeln!(
            out,
            "set       {} = {}",
            plan.dialect.ident(&a.column),
            a.expr
        );
    }
    let _ = writeln!(
        out,
        "batch     {} rows to start, adaptive {}..={} aiming at {} per batch, then a pause of {} + {}× the batch's time",
        b.size,
        b.min,
        b.max,
        humantime::format_duration(b.target),
        humantime::format_duration(b.pause),
        b.pause_ratio
    );
    let on_error = match b.on_error {
        OnError::Stop => "stop: a row that cannot be backfilled stops the run, named".to_owned(),
        OnError::Skip => format!(
            "skip: a row that cannot be backfilled goes to {} and the run goes on",
            report.store.failures_table()
        ),
    };
    let _ = writeln!(out, "on_error  {on_error}");
    let _ = writeln!(out, "{}", workers(budget));
    let _ = writeln!(out, "{}", report.timeouts_line());
    out.push_str(&report.throttle_block());
    out.push_str(&super::throttle::guard(&job.guard));
    let hint = match pending.method {
        Method::Exact => "",
        Method::Planner | Method::Sampled { .. } => "; --exact-count counts",
    };
    let _ = writeln!(
        out,
        "pending   {} rows ({}{hint})",
        pending.rows, pending.method
    );
    let later = "rows inserted later are left to the application's dual write";
    let range = match (&checked.range_end, &checked.upper, &checked.after) {
        (None, _, _) => "the table is empty; a run finishes at once".to_owned(),
        (Some(end), upper, None) => format!(
            "first batch ends at {}; the walk ends at {} — {later}",
            key_text(upper.as_ref().unwrap_or(end)),
            key_text(end)
        ),
        (Some(end), upper, Some(after)) => format!(
            "next batch runs after the checkpoint {} up to {}; the walk ends at {} (captured when the job started) — {later}",
            key_text(after),
            key_text(upper.as_ref().unwrap_or(end)),
            key_text(end)
        ),
    };
    let _ = writeln!(out, "range     {range}");
    for line in super::disk::lines(report.disk, job, plan, pending.rows) {
        let _ = writeln!(out, "{line}");
    }
    let state_line = match state {
        None => format!(
            "no checkpoint (no row in {}); a run starts at the first key",
            store.table()
        ),
        Some(row) => {
            format!(
                "{}, {} rows done in {} batches{}{}",
                describe_status(row),
                row.rows_done,
                row.batches_done,
                row.cursor.as_ref().map_or(String::new(), |c| format!(
                    "; resumes after {}",
                    key_text(c)
                )),
                lease_note(row).map_or(String::new(), |n| format!("; {n}"))
            ) + &format!(" (the job's row in {})", store.table())
        }
    };
    let _ = writeln!(out, "state     {state_line}");
    let (note, statements) = report.transaction();
    let _ = writeln!(out, "\n-- every batch is one transaction{note}:");
    for sql in statements {
        let _ = writeln!(out, "{sql};");
    }
    let _ = writeln!(out, "COMMIT;");
    let which = report.which_batch();
    let _ = writeln!(
        out,
        "\n-- EXPLAIN of the {which} batch's key walk:\n{}",
        checked.walk_plan
    );
    let _ = writeln!(
        out,
        "\n-- EXPLAIN of the {which} batch's UPDATE:\n{}",
        checked.update_plan
    );
    for warning in report.warnings() {
        let _ = writeln!(out, "\nwarning: {warning}");
    }
    out
}

/// `plan --json`: the same facts as [`plan`], as one JSON object.
pub fn plan_json(report: &PlanReport<'_>) -> Value {
    let PlanReport {
        job,
        catalog,
        plan,
        checked,
        pending,
        store,
        state,
        sight,
        budget,
        ..
    } = report;
    let (method, percent) = match pending.method {
        Method::Exact => ("exact", None),
        Method::Planner => ("planner", None),
        Method::Sampled { percent } => ("sampled", Some(percent)),
    };
    let (disk, vacuum) = super::disk::json(report.disk, job, plan, pending.rows);
    let heap_now = Some(report.disk.table.heap_bytes());
    let mut value = json!({
        "job": job.name,
        "file": job.source.display().to_string(),
        "server": match report.server {
            Server::Postgres => version_name(catalog.server_version),
            Server::Mysql(s) => super::mysql::server(s),
        },
        "table": plan.table,
        "key": catalog.key.iter().map(|c| json!({"name": c.name, "type": c.type_sql})).collect::<Vec<_>>(),
        "key_source": key_source(&catalog.key_source),
        "key_index": catalog.key_index,
        "triggers": catalog.triggers,
        "where": job.filter,
        "set": job.set.iter().map(|a| json!({"column": a.column, "expr": a.expr})).collect::<Vec<_>>(),
        "batch": {
            "size": job.batch.size,
            "min": job.batch.min,
            "max": job.batch.max,
            "target_ms": millis(job.batch.target),
            "pause_ms": millis(job.batch.pause),
            "on_error": job.batch.on_error.as_str(),
            "pause_ratio": job.batch.pause_ratio,
        },
        "workers": {
            "per_process": budget.workers,
            "connections_per_process": budget.per_process(),
            "connections_in_use": budget.in_use,
            "max_connections": budget.max_connections,
            "limit": budget.limit(),
            "fits": budget.fits(),
        },
        "partitions": plan.partitioned.then(|| plan.walks().iter().map(|w| w.relation.clone()).collect::<Vec<_>>()),
        "timeouts": {
            "statement_ms": millis(job.timeouts.statement),
            "lock_ms": millis(job.timeouts.lock),
        },
        "throttle": {
            "enabled": job.throttle.enabled,
            "throttle_query_now": checked.throttle_query,
            "monitor": sight.map(Privileges::describe),
            "max_wal_rate_bytes_per_sec": job.throttle.max_wal_rate,
        },
        "guard": {
            "enabled": job.guard.enabled,
            "probe": job.guard.probe,
            "poll_ms": millis(job.guard.poll),
            "window_ms": millis(job.guard.window),
            "max_latency_ratio": job.guard.max_latency_ratio,
            "max_latency_ms": job.guard.max_latency.map(millis),
            "max_pause_ratio": job.guard.max_pause_ratio,
        },
        "pending": {"rows": pending.rows, "method": method, "sampled_percent": percent},
        "range": {
            "after": checked.after,
            "upper": checked.upper,
            "end": checked.range_end,
        },
        "disk": disk,
        "vacuum": vacuum,
        "state": state.map(|row| status_json(row, heap_now)),
        "state_table": store.table(),
        "batch_sql": report.batch_sql_json(),
        "explain": {
            "batch": report.which_batch(),
            "walk": checked.walk_plan,
            "update": checked.update_plan,
            "walk_uses_index": checked.walk_uses_index(),
        },
        "warnings": report.warnings(),
    });
    if let (Server::Mysql(_), Some(explain)) = (report.server, value.get_mut("explain")) {
        explain["walk_index"] = json!(super::mysql::walk_index(checked));
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_line_says_when_a_version_is_newer_than_the_tested_ones() {
        assert_eq!(server(130023), "PostgreSQL 13.23");
        assert_eq!(server(180004), "PostgreSQL 18.4");
        assert_eq!(
            server(190001),
            "PostgreSQL 19.1 (newer than 18, the newest version backfill is tested on)"
        );
    }
}
