//! What `backfill failures` prints, and the lines `verify` shows of the failed rows: the rows a
//! job set aside (`[batch] on_error = "skip"`), each named by its key with the server's
//! reason, how often and how long ago it failed. Pure.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::state::{FailedRow, JobRow};

use super::{age_text, rows};

/// `(id)=(77777)  invalid input syntax for type bigint: "n/a" [SQLSTATE 22P02]  (2 attempts,
/// the last 4s ago)`
pub fn failure_line(f: &FailedRow) -> String {
    let attempts = match f.attempts {
        1 => "1 attempt".to_owned(),
        n => format!("{n} attempts"),
    };
    let when = f.age.map_or(String::new(), |age| {
        format!(", the last {} ago", age_text(age))
    });
    format!("{}  {}  ({attempts}{when})", f.row(), f.reason())
}

/// `backfill failures JOB`: how many rows the job set aside, the first of them, and what to do.
pub fn failures_text(job: &JobRow, failed: &[FailedRow]) -> String {
    let name = &job.name;
    if job.failures == 0 {
        return format!("{name}: no failed rows\n");
    }
    let mut out = format!(
        "{name}: {} of {} could not be backfilled and {} set aside{}:\n",
        rows(job.failures),
        job.table_name,
        if job.failures == 1 { "is" } else { "are" },
        if (failed.len() as u64) < job.failures {
            format!("; the first {}", failed.len())
        } else {
            String::new()
        }
    );
    for f in failed {
        let _ = writeln!(out, "  {}", failure_line(f));
    }
    let _ = writeln!(
        out,
        "{name}: fix the data (or the [set] expressions), then `backfill run --retry-failures {name}`"
    );
    out
}

/// One failed row for a script.
pub fn failure_json(f: &FailedRow) -> Value {
    let key: serde_json::Map<String, Value> = f
        .columns
        .iter()
        .zip(&f.key)
        .map(|(c, k)| (c.clone(), json!(k)))
        .collect();
    json!({
        "row": f.row(),
        "key": key,
        "relation": f.relation,
        "sqlstate": f.sqlstate,
        "message": f.message,
        "notes": f.notes,
        "attempts": f.attempts,
        "age_s": f.age,
    })
}

/// `backfill failures JOB --json`.
pub fn failures_json(job: &JobRow, failed: &[FailedRow]) -> Value {
    json!({
        "job": job.name,
        "table": job.table_name,
        "count": job.failures,
        "failures": failed.iter().map(failure_json).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(id: &str, attempts: u32) -> FailedRow {
        FailedRow {
            columns: vec!["id".into()],
            key: vec![id.into()],
            relation: "\"public\".\"t\"".into(),
            sqlstate: "22P02".into(),
            message: "invalid input syntax for type bigint: \"n/a\"".into(),
            notes: None,
            attempts,
            age: Some(4.0),
        }
    }

    fn job(failures: u64) -> JobRow {
        let mut row = crate::report::tests::row("fill", "done");
        row.failures = failures;
        row
    }

    #[test]
    fn a_failed_row_reads_with_its_reason_and_attempts() {
        assert_eq!(
            failure_line(&failed("77777", 2)),
            "(id)=(77777)  invalid input syntax for type bigint: \"n/a\" [SQLSTATE 22P02]  \
             (2 attempts, the last 4s ago)"
        );
    }

    #[test]
    fn the_list_says_how_many_and_what_to_do() {
        let text = failures_text(&job(3), &[failed("7", 1), failed("9", 1)]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "fill: 3 rows of \"public\".\"t\" could not be backfilled and are set aside; the first 2:"
        );
        assert!(lines[1].starts_with("  (id)=(7)  "), "{text}");
        assert_eq!(
            lines[3],
            "fill: fix the data (or the [set] expressions), then `backfill run --retry-failures fill`"
        );
        assert_eq!(failures_text(&job(0), &[]), "fill: no failed rows\n");
        let v = failures_json(&job(1), &[failed("7", 1)]);
        assert_eq!(v["count"], 1);
        assert_eq!(v["failures"][0]["key"]["id"], "7");
        assert_eq!(v["failures"][0]["sqlstate"], "22P02");
    }
}
