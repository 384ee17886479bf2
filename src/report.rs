//! Text that `plan` and `status` print: pure functions from data to strings, so the output is
//! unit-tested without a database. `plan.rs` holds `plan`'s report (`mysql.rs` its parts that
//! MySQL and MariaDB have their own way); this file `status` and what both share. The live progress display is `progress`'s, not this.

mod disk;
mod failures;
mod mysql;
mod plan;
mod ranges;
mod throttle;

pub use disk::DiskReport;
pub use failures::{failure_json, failure_line, failures_json, failures_text};
pub use plan::{PlanReport, plan, plan_json};
pub use ranges::{key as key_text_of, range_json, ranges_table, state as range_state};

use std::fmt::Write as _;

use crate::catalog::KeySource;
use crate::monitor::policy::Bytes;
use crate::state::{Control, HEARTBEAT_EVERY, JobRow};

/// Seconds as a short age: `4s`, `3m`, `2h`, `5d`.
pub fn age_text(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// `1 row`, `2 rows`.
pub fn rows(n: u64) -> String {
    if n == 1 {
        "1 row".to_owned()
    } else {
        format!("{n} rows")
    }
}

/// The job's status as it is now: `paused` while its runners hold it paused (the stored
/// status stays `running`), `stale` while its lease is held by nobody alive and no worker of
/// another process runs it either, else the stored status. One word, so that `status`'s
/// columns stay aligned.
pub fn describe_status(row: &JobRow) -> String {
    let paused = row.note.as_deref().is_some_and(|n| n.starts_with("paused"));
    match (row.owner.is_some(), row.is_running()) {
        (true, false) => "stale".to_owned(),
        (_, true) if row.status == "running" && paused => "paused".to_owned(),
        _ => row.status.clone(),
    }
}

/// What is true of the job's lease when something is wrong with it, and when it can be taken
/// over: a stale lease at once, by the next `run`; a live one only once its heartbeat is as
/// old as the timeout its holder declared.
pub fn lease_note(row: &JobRow) -> Option<String> {
    let lease = row.lease()?;
    let (owner, age) = (&lease.owner, lease.heartbeat_age?);
    let timeout = lease.timeout();
    if !row.lease_is_live() {
        let why = if age < timeout {
            format!("the process of {} is gone", owner.0)
        } else {
            format!("no heartbeat from {} for {}", owner.0, age_text(age))
        };
        Some(format!("{why}; the next `backfill run` takes the job over"))
    } else if age >= 2.0 * HEARTBEAT_EVERY.as_secs_f64() {
        Some(format!(
            "no heartbeat from {} for {}; another `backfill run` may take the job over in {}",
            owner.0,
            age_text(age),
            age_text(timeout - age)
        ))
    } else {
        None
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

/// The job's heap against its start, when the start is known:
///
/// - while its row says `running` (also a stale run, which the next `run` resumes), the
///   table's heap now: `heap 149.0 MiB → 171.0 MiB (+15 %)`;
/// - once a run ended (done, failed, cancelled, stopped), the heap as it ended, not now: the
///   table may have grown since by other work, which is not the job's
///   (`heap 149.0 MiB → 171.0 MiB (+15 %) when the run ended`);
/// - a run that ended without its heap read (a crash, DDL, an older version) is not compared
///   with now: `heap 149.0 MiB at the start, 553.0 MiB now`.
pub fn heap_note(row: &JobRow, heap_now: Option<u64>) -> Option<String> {
    let start = row.heap_bytes_start?;
    if row.status == "running" {
        return Some(crate::disk::growth_text(start, heap_now?));
    }
    Some(match (row.heap_bytes_end, heap_now) {
        (Some(end), _) => format!(
            "{} when the run ended",
            crate::disk::growth_text(start, end)
        ),
        (None, Some(now)) => format!("heap {} at the start, {} now", Bytes(start), Bytes(now)),
        (None, None) => format!("heap {} at the start", Bytes(start)),
    })
}

/// What a control did, for `backfill pause` and the page's buttons: `running` when a runner
/// holds the job's lease.
pub fn control_text(control: Control, running: bool) -> &'static str {
    match (control, running) {
        (Control::Pause, true) => "pause requested; the runner pauses before its next batch",
        (Control::Pause, false) => "not running; it will start paused until `backfill resume`",
        (Control::Resume, _) => "resumed",
        (Control::Cancel, true) => "cancel requested; the runner stops after its current batch",
        (Control::Cancel, false) => "cancelled",
    }
}

/// `status` as a table; `heaps` are the jobs' tables' heaps now, in the rows' order.
pub fn status_table(rows: &[JobRow], heaps: &[Option<u64>]) -> String {
    if rows.is_empty() {
        return "no jobs yet\n".into();
    }
    let mut out = format!(
        "{:<24} {:<10} {:>12} {:>9} {:>12} {:>8}  {}\n",
        "JOB", "STATUS", "ROWS", "BATCHES", "RATE", "UPDATED", "NOTE"
    );
    for (i, row) in rows.iter().enumerate() {
        let rate = row.rate.map_or("-".to_owned(), |r| format!("{r:.0}/s"));
        let updated = row
            .updated_age
            .map_or("-".to_owned(), |a| format!("{} ago", age_text(a)));
        let crew = match (row.workers, row.processes, row.hosts) {
            (0 | 1, _, _) => String::new(),
            (w, _, h) if h > 1 => format!("{w} workers on {h} hosts; "),
            (w, p, _) if p > 1 => format!("{w} workers in {p} processes; "),
            (w, _, _) => format!("{w} workers; "),
        };
        let note = lease_note(row)
            .or_else(|| row.note.clone())
            .or_else(|| row.last_error.clone());
        let heap = heap_note(row, heaps.get(i).copied().flatten());
        let note = note.into_iter().chain(heap).collect::<Vec<_>>().join("; ");
        let failed = match row.failures {
            0 => String::new(),
            n => format!(
                "{} set aside (`backfill failures {}`); ",
                self::rows(n),
                row.name
            ),
        };
        let note = format!("{crew}{failed}{note}");
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

/// `status --json`: one object per job, with its table's heap now when known
/// (`heap_bytes`) beside the job's heap at its start and at the end of its last run.
pub fn status_json(row: &JobRow, heap_now: Option<u64>) -> serde_json::Value {
    serde_json::json!({
        "name": row.name,
        "table": row.table_name,
        "status": describe_status(row),
        "stored_status": row.status,
        "lease": lease_note(row),
        "live": row.lease_is_live(),
        "rows_done": row.rows_done,
        "batches_done": row.batches_done,
        "total_estimate": row.total_estimate(),
        "batch_size": row.batch_size,
        "cursor": row.cursor,
        "range_end": row.range_end,
        "owner": row.owner.as_ref().map(|o| o.0.clone()),
        "heartbeat_age_s": row.heartbeat_age,
        "updated_age_s": row.updated_age,
        "control": row.control,
        "ranges": row.ranges,
        "ranges_done": row.ranges_done,
        "workers": row.workers,
        "processes": row.processes,
        "hosts": row.hosts,
        "rate": row.rate,
        "note": row.note,
        "last_error": row.last_error,
        "failures": row.failures,
        "heap_bytes_start": row.heap_bytes_start,
        "heap_bytes_end": row.heap_bytes_end,
        "heap_bytes": heap_now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Owner;

    pub(super) fn row(name: &str, status: &str) -> JobRow {
        JobRow {
            cursor: Some(vec!["42".into()]),
            range_end: Some(vec!["100".into()]),
            rows_done: 1234,
            batches_done: 3,
            batch_size: Some(2000),
            updated_age: Some(5.0),
            last_error: Some("boom".into()),
            ranges: 1,
            ..JobRow::example(name, status)
        }
    }

    #[test]
    fn ages_are_short() {
        assert_eq!(age_text(4.2), "4s");
        assert_eq!(age_text(200.0), "3m");
        assert_eq!(age_text(7300.0), "2h");
        assert_eq!(age_text(200_000.0), "2d");
    }

    #[test]
    fn empty_status_says_so() {
        assert_eq!(status_table(&[], &[]), "no jobs yet\n");
    }

    #[test]
    fn status_lists_each_job_with_its_error() {
        let text = status_table(&[row("a", "failed")], &[]);
        let line = text.lines().nth(1).unwrap();
        assert!(line.starts_with("a "), "{line}");
        assert!(
            line.contains("failed") && line.contains("1234") && line.contains("boom"),
            "{line}"
        );
    }

    #[test]
    fn status_counts_the_rows_set_aside() {
        let skipped = JobRow {
            failures: 2,
            last_error: None,
            ..row("a", "done")
        };
        let text = status_table(std::slice::from_ref(&skipped), &[None]);
        assert!(
            text.contains("2 rows set aside (`backfill failures a`); "),
            "{text}"
        );
        assert_eq!(status_json(&skipped, None)["failures"], 2);
    }

    #[test]
    fn status_json_has_the_counters() {
        let v = status_json(&row("a", "done"), None);
        assert_eq!(v["rows_done"], 1234);
        assert_eq!(v["total_estimate"], 1234);
        assert_eq!(v["cursor"][0], "42");
    }

    #[test]
    fn status_json_has_the_shared_total_of_a_running_job() {
        let running = JobRow {
            pending: Some(crate::state::Pending {
                rows: 10_000,
                rows_done: 0,
                exact: true,
                table_rows: None,
            }),
            ..row("a", "running")
        };
        assert_eq!(status_json(&running, None)["total_estimate"], 10_000);
    }

    fn owned(status: &str, heartbeat_age: f64, note: Option<&str>) -> JobRow {
        JobRow {
            owner: Some(Owner("elsewhere:1:ab".into())),
            heartbeat_age: Some(heartbeat_age),
            note: note.map(str::to_owned),
            ..row("a", status)
        }
    }

    #[test]
    fn the_workers_of_every_process_are_named() {
        let crew = JobRow {
            workers: 4,
            processes: 2,
            hosts: 2,
            ..row("a", "running")
        };
        assert!(status_table(&[crew], &[]).contains("4 workers on 2 hosts; boom"));
        let stale_primary_live_joiner = JobRow {
            workers: 2,
            processes: 1,
            hosts: 1,
            ..owned("running", 60.0, None)
        };
        assert_eq!(describe_status(&stale_primary_live_joiner), "running");
    }

    const MIB: u64 = 1024 * 1024;

    /// A job whose heap was 149 MiB at its start, with no error to show.
    fn started(status: &str) -> JobRow {
        JobRow {
            heap_bytes_start: Some(149 * MIB),
            last_error: None,
            ..row("a", status)
        }
    }

    #[test]
    fn a_running_job_shows_the_heap_now_against_its_start() {
        let text = status_table(&[started("running")], &[Some(171 * MIB)]);
        assert!(
            text.lines()
                .nth(1)
                .unwrap()
                .ends_with("  heap 149.0 MiB → 171.0 MiB (+15 %)"),
            "{text}"
        );
        let paused = JobRow {
            note: Some("paused: by operator".into()),
            ..started("running")
        };
        let text = status_table(&[paused], &[Some(171 * MIB)]);
        assert!(
            text.contains("paused: by operator; heap 149.0 MiB → 171.0 MiB (+15 %)"),
            "{text}"
        );
        assert!(!status_table(&[started("running")], &[None]).contains("heap"));
    }

    #[test]
    fn an_ended_job_shows_its_heap_when_the_run_ended_not_now() {
        for status in ["done", "failed", "cancelled", "stopped"] {
            let ended = JobRow {
                heap_bytes_end: Some(150 * MIB),
                ..started(status)
            };
            let text = status_table(std::slice::from_ref(&ended), &[Some(553 * MIB)]);
            assert!(
                text.lines()
                    .nth(1)
                    .unwrap()
                    .ends_with("  heap 149.0 MiB → 150.0 MiB (+1 %) when the run ended"),
                "{status}: {text}"
            );
            assert!(!text.contains("553"), "{status}: {text}");
        }
    }

    #[test]
    fn an_ended_job_without_its_end_does_not_compare_its_start_with_now() {
        let text = status_table(&[started("done")], &[Some(553 * MIB)]);
        assert!(
            text.ends_with("  heap 149.0 MiB at the start, 553.0 MiB now\n"),
            "{text}"
        );
        let text = status_table(&[started("done")], &[None]);
        assert!(text.ends_with("  heap 149.0 MiB at the start\n"), "{text}");
    }

    #[test]
    fn status_json_has_the_heap_at_the_start_at_the_end_and_now() {
        let ended = JobRow {
            heap_bytes_end: Some(150 * MIB),
            ..started("done")
        };
        let v = status_json(&ended, Some(553 * MIB));
        assert_eq!(v["heap_bytes_start"], 149 * MIB);
        assert_eq!(v["heap_bytes_end"], 150 * MIB);
        assert_eq!(v["heap_bytes"], 553 * MIB);
        assert!(status_json(&started("running"), None)["heap_bytes_end"].is_null());
    }

    #[test]
    fn a_paused_job_reads_paused_not_running() {
        let paused = owned("running", 0.5, Some("paused: by operator"));
        assert_eq!(describe_status(&paused), "paused");
        assert_eq!(describe_status(&owned("running", 0.5, None)), "running");
    }

    #[test]
    fn a_stale_lease_is_one_word_and_its_note_says_the_next_run_takes_over() {
        let stale = owned("running", 120.0, None);
        assert_eq!(describe_status(&stale), "stale");
        assert_eq!(
            lease_note(&stale).as_deref(),
            Some(
                "no heartbeat from elsewhere:1:ab for 2m; the next `backfill run` takes the job over"
            )
        );
        let text = status_table(&[stale], &[]);
        let fields: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(fields[..3], ["a", "stale", "1234"], "{text}");
    }

    #[test]
    fn a_late_heartbeat_says_when_the_lease_may_be_taken_over() {
        assert_eq!(
            lease_note(&owned("running", 10.0, None)).as_deref(),
            Some(
                "no heartbeat from elsewhere:1:ab for 10s; another `backfill run` may take the job over in 5s"
            )
        );
        assert_eq!(lease_note(&owned("running", 0.5, None)), None);
    }
}
