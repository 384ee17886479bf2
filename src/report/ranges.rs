//! `status --ranges`: every range of a job, one line each — who walks it, its state, where its
//! cursor stands, its rows and rate.

use std::fmt::Write as _;

use crate::state::RangeRow;

use super::age_text;

/// A range's state in a word: `done`, `pending`, `running`, or `stale` for a running range
/// whose holder stopped beating (it is taken over by the next worker that looks). A range
/// whose cursor has reached its upper end has nothing left to walk: it reads `done` even
/// while its row still says `pending` (a run stopped after its last batch, before it marked
/// the range done; the next run does).
pub fn state(range: &RangeRow) -> &str {
    match &range.lease {
        Some(lease) if !lease.is_live() => "stale",
        _ if range.status == "pending" && range.cursor.as_ref() == Some(&range.upper) => "done",
        _ => &range.status,
    }
}

/// `(a, 1)`, or `(start)` for no key.
pub fn key(key: Option<&Vec<String>>) -> String {
    match key {
        Some(values) => format!("({})", values.join(", ")),
        None => "(start)".into(),
    }
}

/// The lines under a job's line in `status --ranges`; `relation` is shown when the job walks
/// partitions (it differs from `table`).
pub fn ranges_table(ranges: &[RangeRow], table: &str) -> String {
    let mut out = format!(
        "  {:>5} {:<8} {:<40} {:>12} {:>10}  {}\n",
        "RANGE", "STATE", "WORKER", "ROWS", "RATE", "CURSOR → UPPER"
    );
    for r in ranges {
        let worker = match (&r.lease, r.worker) {
            (Some(lease), Some(w)) => format!(
                "{}/{w} ({} ago)",
                lease.owner.0,
                lease.heartbeat_age.map_or("-".into(), age_text)
            ),
            _ => "-".into(),
        };
        let rate = r.rate.map_or("-".to_owned(), |v| format!("{v:.0}/s"));
        let relation = if r.relation == table {
            String::new()
        } else {
            format!("{} ", r.relation)
        };
        let _ = writeln!(
            out,
            "  {:>5} {:<8} {:<40} {:>12} {:>10}  {relation}{} → {}",
            r.id,
            state(r),
            worker,
            r.rows_done,
            rate,
            key(r.cursor.as_ref()),
            key(Some(&r.upper))
        );
    }
    out
}

/// `status --ranges --json`: one object per range.
pub fn range_json(r: &RangeRow) -> serde_json::Value {
    serde_json::json!({
        "id": r.id,
        "relation": r.relation,
        "state": state(r),
        "owner": r.lease.as_ref().map(|l| l.owner.0.clone()),
        "worker": r.worker,
        "heartbeat_age_s": r.lease.as_ref().and_then(|l| l.heartbeat_age),
        "lower": r.lower,
        "cursor": r.cursor,
        "upper": r.upper,
        "rows_done": r.rows_done,
        "batches_done": r.batches_done,
        "rate": r.rate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Lease, Owner};

    fn range(id: u32, status: &str, age: Option<f64>) -> RangeRow {
        RangeRow {
            id,
            relation: "\"public\".\"t\"".into(),
            lower: None,
            upper: vec!["100".into()],
            cursor: Some(vec!["42".into()]),
            status: status.into(),
            lease: age.map(|a| Lease {
                owner: Owner("db-1:77:ab".into()),
                heartbeat_age: Some(a),
                timeout_s: Some(15.0),
            }),
            worker: age.map(|_| 2),
            rows_done: 4200,
            batches_done: 3,
            keys_estimate: None,
            keys_walked: 0,
            batch_size: None,
            rate: Some(1234.4),
            note: None,
        }
    }

    #[test]
    fn each_range_shows_its_worker_state_and_cursor() {
        let text = ranges_table(
            &[
                range(1, "running", Some(1.0)),
                range(2, "running", Some(60.0)),
            ],
            "\"public\".\"t\"",
        );
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].contains("running") && lines[1].contains("db-1:77:ab/2 (1s ago)"));
        assert!(lines[1].contains("1234/s") && lines[1].ends_with("(42) → (100)"));
        assert!(lines[2].contains("stale"), "{}", lines[2]);
    }

    #[test]
    fn a_range_walked_to_its_upper_end_is_done() {
        let walked = RangeRow {
            cursor: Some(vec!["100".into()]),
            ..range(4, "pending", None)
        };
        assert!(
            ranges_table(std::slice::from_ref(&walked), "\"public\".\"t\"")
                .lines()
                .nth(1)
                .is_some_and(|line| line.contains(" done ")),
            "{walked:?}"
        );
        assert_eq!(range_json(&walked)["state"], "done");
        assert_eq!(range_json(&range(5, "pending", None))["state"], "pending");
    }

    #[test]
    fn a_leaf_partition_is_named() {
        let text = ranges_table(&[range(3, "pending", None)], "\"public\".\"parent\"");
        assert!(text.contains("\"public\".\"t\" (42) → (100)"), "{text}");
        assert_eq!(range_json(&range(3, "done", None))["state"], "done");
    }
}
