//! Text that `plan` and `status` print: pure functions from data to strings, so the output is
//! unit-tested without a database. The live progress display is `progress`'s, not this.

use std::fmt::Write as _;
use std::time::Duration;

use crate::catalog::Catalog;
use crate::catalog::KeySource;
use crate::db::{NEWEST_TESTED_MAJOR, version_name};
use crate::job::{Job, ThrottlePolicy};
use crate::monitor::policy::Bytes;
use crate::monitor::sight::Sight;
use crate::plan::Plan;
use crate::preflight::Preflight;
use crate::state::LEASE_TIMEOUT;
use crate::state::{JobRow, Store};

/// What the dry run found: checks, catalog, the server's preflight, the estimate, the state.
pub struct PlanReport<'a> {
    pub job: &'a Job,
    pub catalog: &'a Catalog,
    pub plan: &'a Plan,
    pub checked: &'a Preflight,
    /// Rows still matching `where`.
    pub pending: u64,
    /// `pending` was counted rather than estimated.
    pub exact: bool,
    pub store: &'a Store,
    pub state: Option<&'a JobRow>,
    /// What the monitor's role may see and do; `None` when throttling is off.
    pub sight: Option<&'a Sight>,
}

/// The dry run's report: checks, the SQL of one batch, EXPLAINs, the estimate, the state, and
/// a warning for each thing that would make the run slow or blind.
pub fn plan(report: &PlanReport<'_>) -> String {
    let &PlanReport {
        job,
        catalog,
        plan,
        checked,
        pending,
        exact,
        store,
        state,
        sight,
    } = report;
    let mut out = String::new();
    let key: Vec<String> = catalog
        .key
        .iter()
        .map(|c| format!("{} {}", crate::sql::Ident(&c.name), c.type_sql))
        .collect();
    let b = &job.batch;
    let t = &job.timeouts;
    let _ = writeln!(out, "job       {} ({})", job.name, job.source.display());
    let _ = writeln!(out, "server    {}", server(catalog.server_version));
    let _ = writeln!(out, "table     {}", plan.table);
    let _ = writeln!(
        out,
        "key       ({}) from {}",
        key.join(", "),
        key_source(&catalog.key_source)
    );
    let _ = writeln!(
        out,
        "index     {}",
        catalog
            .key_index
            .as_deref()
            .map_or("none leads with the key".to_owned(), |i| format!(
                "{i} serves the key walk"
            ))
    );
    let triggers = if catalog.triggers.is_empty() {
        "none".to_owned()
    } else {
        format!(
            "{} (fire for every row changed)",
            catalog.triggers.join(", ")
        )
    };
    let _ = writeln!(out, "triggers  {triggers}");
    let _ = writeln!(out, "where     {}", job.filter);
    for a in &job.set {
        let _ = writeln!(
            out,
            "set       {} = {}",
            crate::sql::Ident(&a.column),
            a.expr
        );
    }
    let _ = writeln!(
        out,
        "batch     {} rows to start, adaptive {}..={} aiming at {} per batch, pause {}",
        b.size,
        b.min,
        b.max,
        humantime::format_duration(b.target),
        humantime::format_duration(b.pause)
    );
    let _ = writeln!(
        out,
        "timeouts  statement {}, lock {}",
        humantime::format_duration(t.statement),
        humantime::format_duration(t.lock)
    );
    out.push_str(&throttle(&job.throttle, checked.throttle_query, sight));
    let how = if exact {
        "counted"
    } else {
        "planner estimate; --exact-count counts"
    };
    let _ = writeln!(out, "pending   {pending} rows ({how})");
    let range = match (&checked.range_end, &checked.first_upper) {
        (None, _) => "the table is empty; a run finishes at once".to_owned(),
        (Some(end), upper) => format!(
            "first batch ends at ({}); the walk ends at ({}) — rows inserted later are left to the application's dual write",
            upper.as_ref().unwrap_or(end).join(", "),
            end.join(", ")
        ),
    };
    let _ = writeln!(out, "range     {range}");
    let state_line = match state {
        None => "no checkpoint; a run starts at the first key".to_owned(),
        Some(row) => format!(
            "{}, {} rows done in {} batches{}",
            describe_status(row),
            row.rows_done,
            row.batches_done,
            row.cursor.as_ref().map_or(String::new(), |c| format!(
                "; resumes after ({})",
                c.join(", ")
            ))
        ),
    };
    let _ = writeln!(out, "state     {state_line} [{}]", store.table());
    let _ = writeln!(out, "\n-- every batch is one transaction:");
    let _ = writeln!(out, "BEGIN;");
    let _ = writeln!(
        out,
        "SELECT set_config('statement_timeout', '{}ms', true), set_config('lock_timeout', '{}ms', true), set_config('synchronous_commit', 'off', true), pg_backend_pid(), (extract(epoch FROM now()) * 1000000)::int8;",
        t.statement.as_millis(),
        t.lock.as_millis()
    );
    let _ = writeln!(out, "{};", plan.upper_bound.after_cursor);
    let _ = writeln!(out, "{};", plan.update.after_cursor);
    let _ = writeln!(out, "{};", store.checkpoint_sql());
    let _ = writeln!(out, "COMMIT;");
    let _ = writeln!(
        out,
        "\n-- EXPLAIN of the first batch's key walk:\n{}",
        checked.walk_plan
    );
    let _ = writeln!(
        out,
        "\n-- EXPLAIN of the first batch's UPDATE:\n{}",
        checked.update_plan
    );
    if !checked.walk_uses_index() {
        let _ = writeln!(
            out,
            "\nwarning: the key walk does not use an index on ({}); every batch would scan the table. Create one, or set `key` to indexed columns.",
            key.join(", ")
        );
    }
    for warning in sight.map(|s| s.warnings(&job.throttle)).unwrap_or_default() {
        let _ = writeln!(out, "\nwarning: {warning}");
    }
    out
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

/// The effective `[throttle]` policy, one signal per line, for `plan`.
fn throttle(p: &ThrottlePolicy, query_now: Option<f64>, sight: Option<&Sight>) -> String {
    let d = |d: Duration| humantime::format_duration(d).to_string();
    let mut lines = Vec::new();
    if !p.enabled {
        lines.push(
            "off ([throttle] enabled = false): no pause, throttle or yield; only the lock \
             timeout bounds how long the application waits behind a batch"
                .to_owned(),
        );
    } else {
        lines.push(format!(
            "sample every {}; full speed after {} clear; pause when no sample for {}",
            d(p.poll),
            d(p.cooldown),
            d(p.fail_closed_after)
        ));
        lines.push(if p.yield_to_waiters {
            format!(
                "yield: cancel the batch when a session waits for its locks (checked every {})",
                d(p.batch_poll)
            )
        } else {
            "yield: off (sessions waiting on a batch wait until it commits)".to_owned()
        });
        lines.push(if p.pause_on_table_locks {
            "pause while another session holds or waits for a conflicting lock on the table"
                .to_owned()
        } else {
            "table locks: ignored".to_owned()
        });
        lines.push(format!(
            "throttle above {:.0}% of max_connections in use",
            p.max_connection_use * 100.0
        ));
        lines.push(if p.max_idle_in_transaction.is_zero() {
            "idle in transaction: ignored".to_owned()
        } else {
            format!(
                "throttle while a session is idle in transaction over {}",
                d(p.max_idle_in_transaction)
            )
        });
        let mut lag = Vec::new();
        if !p.max_replica_lag.is_zero() {
            lag.push(d(p.max_replica_lag));
        }
        if p.max_replica_lag_bytes > 0 {
            lag.push(format!("{} of WAL", Bytes(p.max_replica_lag_bytes)));
        }
        lines.push(if lag.is_empty() {
            "replica lag: ignored".to_owned()
        } else {
            format!(
                "pause while a replica is behind by more than {}",
                lag.join(" or ")
            )
        });
        if let Some(q) = &p.throttle_query {
            let now = query_now.map_or(String::new(), |v| format!(" (returns {v} now)"));
            lines.push(format!("throttle while throttle_query > 0: {q}{now}"));
        }
        if let Some(f) = &p.throttle_file {
            let now = if f.exists() {
                "exists now"
            } else {
                "absent now"
            };
            lines.push(format!("pause while {} exists ({now})", f.display()));
        }
        lines.push(format!(
            "throttled: batches of batch.min rows, pauses doubling up to {}",
            d(p.max_pause)
        ));
        lines.extend(sight.map(Sight::describe));
    }
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        let label = if i == 0 { "throttle" } else { "" };
        let _ = writeln!(out, "{label:<10}{line}");
    }
    out
}

/// Seconds as a short age: `4s`, `3m`, `2h`, `5d`.
pub fn age(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// How `status` and `plan` describe a row's status, including a lease that went stale.
pub fn describe_status(row: &JobRow) -> String {
    match (row.owner.is_some(), row.lease_is_live(), row.heartbeat_age) {
        (true, false, Some(age_s)) => format!(
            "{} (stale lease: no heartbeat for {}, taken over after {}s)",
            row.status,
            age(age_s),
            LEASE_TIMEOUT.as_secs()
        ),
        _ => row.status.clone(),
    }
}

/// Where the key came from, in words.
pub fn key_source(source: &KeySource) -> String {
    match source {
        KeySource::PrimaryKey(index) => format!("primary key {index}"),
        KeySource::UniqueIndex(index) => {
            format!("unique index {index} (the table has no primary key)")
        }
        KeySource::JobFile => "`key` in the job file".into(),
    }
}

/// `status` as a table.
pub fn status_table(rows: &[JobRow]) -> String {
    if rows.is_empty() {
        return "no jobs yet\n".into();
    }
    let mut out = format!(
        "{:<24} {:<10} {:>12} {:>9} {:>12} {:>8}  {}\n",
        "JOB", "STATUS", "ROWS", "BATCHES", "RATE", "UPDATED", "NOTE"
    );
    for row in rows {
        let rate = row.rate.map_or("-".to_owned(), |r| format!("{r:.0}/s"));
        let updated = row
            .updated_age
            .map_or("-".to_owned(), |a| format!("{} ago", age(a)));
        let note = row
            .note
            .as_deref()
            .or(row.last_error.as_deref())
            .unwrap_or("");
        let status = describe_status(row);
        let control = match row.control.as_deref() {
            Some(c) => format!(" [{c} requested]"),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "{:<24} {:<10} {:>12} {:>9} {:>12} {:>8}  {note}{control}",
            row.name, status, row.rows_done, row.batches_done, rate, updated
        );
    }
    out
}

/// `status --json`: one object per job.
pub fn status_json(row: &JobRow) -> serde_json::Value {
    serde_json::json!({
        "name": row.name,
        "table": row.table_name,
        "status": row.status,
        "live": row.lease_is_live(),
        "rows_done": row.rows_done,
        "batches_done": row.batches_done,
        "batch_size": row.batch_size,
        "cursor": row.cursor,
        "range_end": row.range_end,
        "owner": row.owner.as_ref().map(|o| o.0.clone()),
        "heartbeat_age_s": row.heartbeat_age,
        "updated_age_s": row.updated_age,
        "control": row.control,
        "rate": row.rate,
        "note": row.note,
        "last_error": row.last_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_policy_reads_one_signal_a_line() {
        let text = throttle(&ThrottlePolicy::default(), None, None);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "throttle  sample every 250ms; full speed after 2s clear; pause when no sample for 5s"
        );
        assert!(
            lines[1..].iter().all(|l| l.starts_with("          ")),
            "{text}"
        );
        assert!(text.contains("throttle while a session is idle in transaction over 1m"));
        assert!(text.contains("throttled: batches of batch.min rows, pauses doubling up to 2s"));
    }

    #[test]
    fn switched_off_signals_and_monitor_say_so() {
        let off = ThrottlePolicy {
            yield_to_waiters: false,
            max_idle_in_transaction: Duration::ZERO,
            max_replica_lag: Duration::ZERO,
            max_replica_lag_bytes: 0,
            ..ThrottlePolicy::default()
        };
        let text = throttle(&off, None, None);
        assert!(text.contains("yield: off"), "{text}");
        assert!(text.contains("idle in transaction: ignored"), "{text}");
        assert!(text.contains("replica lag: ignored"), "{text}");
        let disabled = ThrottlePolicy {
            enabled: false,
            ..ThrottlePolicy::default()
        };
        assert!(
            throttle(&disabled, None, None)
                .starts_with("throttle  off ([throttle] enabled = false)")
        );
    }

    fn row(name: &str, status: &str) -> JobRow {
        JobRow {
            name: name.into(),
            table_name: "\"public\".\"t\"".into(),
            definition_hash: "h".into(),
            status: status.into(),
            cursor: Some(vec!["42".into()]),
            range_end: Some(vec!["100".into()]),
            rows_done: 1234,
            batches_done: 3,
            batch_size: Some(2000),
            owner: None,
            heartbeat_age: None,
            updated_age: Some(5.0),
            control: None,
            last_error: Some("boom".into()),
            rate: None,
            note: None,
        }
    }

    #[test]
    fn the_server_line_says_when_a_version_is_newer_than_the_tested_ones() {
        assert_eq!(server(130023), "PostgreSQL 13.23");
        assert_eq!(server(180004), "PostgreSQL 18.4");
        assert_eq!(
            server(190001),
            "PostgreSQL 19.1 (newer than 18, the newest version backfill is tested on)"
        );
    }

    #[test]
    fn ages_are_short() {
        assert_eq!(age(4.2), "4s");
        assert_eq!(age(200.0), "3m");
        assert_eq!(age(7300.0), "2h");
        assert_eq!(age(200_000.0), "2d");
    }

    #[test]
    fn empty_status_says_so() {
        assert_eq!(status_table(&[]), "no jobs yet\n");
    }

    #[test]
    fn status_lists_each_job_with_its_error() {
        let text = status_table(&[row("a", "failed")]);
        let line = text.lines().nth(1).unwrap();
        assert!(line.starts_with("a "), "{line}");
        assert!(
            line.contains("failed") && line.contains("1234") && line.contains("boom"),
            "{line}"
        );
    }

    #[test]
    fn status_json_has_the_counters() {
        let v = status_json(&row("a", "done"));
        assert_eq!(v["rows_done"], 1234);
        assert_eq!(v["cursor"][0], "42");
    }
}
