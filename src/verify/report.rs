//! What `verify` prints: the verdict as text for a person or as one JSON object for a script.
//! Pure.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::report::{failure_json, failure_line, rows};
use crate::state::key_text;

use super::{Difference, Subject, Verdict, advice};

/// The verdict as text for a person.
pub fn text(s: &Subject<'_>, verdict: &Verdict) -> String {
    let (job, table) = (s.job, &s.plan.table);
    let mut out = String::new();
    if verdict.pending == 0 {
        let _ = writeln!(
            out,
            "{}: no row of {table} matches `{}`",
            job.name, job.filter
        );
    } else {
        let verb = if verdict.pending == 1 {
            "matches"
        } else {
            "match"
        };
        let _ = writeln!(
            out,
            "{}: {} of {table} still {verb} `{}`; {}",
            job.name,
            rows(verdict.pending),
            job.filter,
            advice(job, s.state, verdict)
        );
    }
    if let Some(values) = &verdict.values {
        if values.differing == 0 {
            let _ = writeln!(
                out,
                "{}: the [set] columns of all {} equal their expressions",
                job.name,
                rows(values.rows)
            );
        } else {
            let _ = writeln!(
                out,
                "{}: {} of {} differ from their [set] expressions ({} of them no longer match `where`, so no run rewrites them); the first:",
                job.name,
                values.differing,
                rows(values.rows),
                values.written
            );
            for d in &values.first {
                let _ = writeln!(out, "  {}", difference_text(s, d));
            }
            if values.written > 0 {
                let _ = writeln!(
                    out,
                    "{}: something other than the backfill wrote those values (the \
                     application's dual write?): fix that writer, then correct the rows",
                    job.name
                );
            }
        }
    }
    let failed = &verdict.failed;
    if failed.count > 0 {
        let _ = writeln!(
            out,
            "{}: {} could not be backfilled and {} set aside in the failures table; the first:",
            job.name,
            rows(failed.count),
            if failed.count == 1 { "is" } else { "are" }
        );
        for f in &failed.first {
            let _ = writeln!(out, "  {}", failure_line(f));
        }
        let _ = writeln!(
            out,
            "{}: fix their data, then `backfill run --retry-failures {}`; `backfill failures {}` \
             lists them all",
            job.name, job.name, job.name
        );
    }
    if verdict.ok() {
        let _ = writeln!(
            out,
            "{}: verified — the contract migration may go ahead",
            job.name
        );
    }
    out
}

/// `(id)=(17): total_cents 119, expected 120`, as PostgreSQL writes keys in its messages.
fn difference_text(s: &Subject<'_>, d: &Difference) -> String {
    let names: Vec<String> = s.catalog.key.iter().map(|c| c.name.clone()).collect();
    let null = |v: &Option<String>| v.clone().unwrap_or_else(|| "NULL".to_owned());
    let columns: Vec<String> = s
        .job
        .set
        .iter()
        .zip(&d.values)
        .filter(|(_, (value, expected))| value != expected)
        .map(|(a, (value, expected))| {
            format!(
                "{} {}, expected {}",
                s.plan.dialect.ident(&a.column),
                null(value),
                null(expected)
            )
        })
        .collect();
    format!("{}: {}", key_text(&names, &d.key), columns.join("; "))
}

/// The verdict as one JSON object for a script.
pub fn json(s: &Subject<'_>, verdict: &Verdict) -> Value {
    let values = verdict.values.as_ref().map(|v| {
        let first: Vec<Value> = v
            .first
            .iter()
            .map(|d| {
                let key: serde_json::Map<String, Value> = s
                    .catalog
                    .key
                    .iter()
                    .zip(&d.key)
                    .map(|(c, k)| (c.name.clone(), json!(k)))
                    .collect();
                let columns: serde_json::Map<String, Value> = s
                    .job
                    .set
                    .iter()
                    .zip(&d.values)
                    .map(|(a, (value, expected))| {
                        (a.column.clone(), json!({"value": value, "expected": expected}))
                    })
                    .collect();
                json!({"key": key, "columns": columns})
            })
            .collect();
        json!({"rows": v.rows, "differing": v.differing, "no_longer_pending": v.written, "first": first})
    });
    json!({
        "job": s.job.name,
        "table": s.plan.table,
        "pending": verdict.pending,
        "past_range_end": verdict.past_end,
        "values": values,
        "failures": {
            "count": verdict.failed.count,
            "first": verdict.failed.first.iter().map(failure_json).collect::<Vec<_>>(),
        },
        "advice": (verdict.pending > 0).then(|| advice(s.job, s.state, verdict)),
        "ok": verdict.ok(),
    })
}
