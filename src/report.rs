//! Text that `plan` and `status` print: pure functions from data to strings, so the output is
//! unit-tested without a database. `plan.rs` holds `plan`'s report; this file `status` and
//! what both share. The live progress display is `progress`'s, not this.

mod plan;

pub use plan::{PlanReport, plan, plan_json};

use std::fmt::Write as _;

use crate::catalog::KeySource;
use crate::state::JobRow;
use crate::state::LEASE_TIMEOUT;

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
