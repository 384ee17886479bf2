//! The `disk` and `vacuum` blocks of `plan`: what the run is expected to cost in heap and WAL
//! before anything is written, what already holds WAL back, and how the run vacuums. Pure,
//! like the rest of `report`. On MySQL and MariaDB the blocks are InnoDB's (`super::mysql`).

use serde_json::{Value, json};

use crate::disk::estimate::{Cost, Table};
use crate::disk::{Costs, Upkeep, Vacuums, size_and_growth};
use crate::job::Job;
use crate::monitor::policy::{Bytes, Wal};
use crate::plan::Plan;
use crate::postgres::plan::vacuum;

/// The share of the heap now by which `index_cleanup = true` must keep the heap after the run
/// smaller for `plan` to suggest it: each such vacuum reads every index whole.
const CLEANUP_WORTH: f64 = 0.10;

/// What `plan` read for its disk blocks.
pub struct DiskReport<'a> {
    /// The database's figures of the table: on PostgreSQL its heap, rows, indexes, and the
    /// `[set]` columns' width.
    pub table: &'a Costs,
    /// The server's replication slots and archiver now.
    pub wal: &'a Wal,
    /// Whether the job's role may vacuum the table.
    pub upkeep: &'a Upkeep,
    /// What a run would vacuum.
    pub vacuums: Vacuums,
}

impl DiskReport<'_> {
    /// The rows between two pacing vacuums of `t`, when the run paces.
    fn every(&self, job: &Job, t: &Table) -> Option<u64> {
        self.vacuums.pacing.then(|| job.vacuum.every.rows(t.rows))
    }

    fn cost(&self, job: &Job, t: &Table, pending: u64) -> Cost {
        Cost::of(t, pending, self.every(job, t), self.vacuums.index_cleanup)
    }

    /// The heap after the run if the pacing vacuums cleaned the indexes too, when they do not
    /// and that would keep it notably smaller ([`CLEANUP_WORTH`] of the heap now): a table of
    /// narrow rows, whose freed pages run out of line pointers.
    fn heap_with_index_cleanup(
        &self,
        job: &Job,
        t: &Table,
        pending: u64,
        cost: &Cost,
    ) -> Option<u64> {
        let with = cost
            .heap_with_pacing
            .filter(|_| !self.vacuums.index_cleanup)?;
        let cleaned = Cost::of(t, pending, self.every(job, t), true).heap_with_pacing?;
        let worth = (t.heap_bytes as f64 * CLEANUP_WORTH) as u64;
        (with.saturating_sub(cleaned) > worth).then_some(cleaned)
    }

    /// The slots that retain WAL now, the most first.
    fn slots(&self) -> Vec<(String, u64)> {
        let mut slots: Vec<(String, u64)> = self
            .wal
            .slots
            .iter()
            .filter_map(|s| Some((s.describe(), s.retained?)))
            .collect();
        slots.sort_by_key(|(_, retained)| std::cmp::Reverse(*retained));
        slots
    }
}

/// How the WAL figure is found, for `plan` to say.
fn wal_method(table: &Table) -> String {
    let indexes = match table.indexes {
        1 => "1 index entry".to_owned(),
        n => format!("{n} index entries"),
    };
    let images = if table.full_page_writes {
        "; with full_page_writes on, a full image of each heap and index page it changes, once"
    } else {
        ""
    };
    format!("each new row version with its record and {indexes}{images}")
}

/// The `disk` and `vacuum` lines of `plan`.
pub fn lines(d: &DiskReport<'_>, job: &Job, plan: &Plan, pending: u64) -> Vec<String> {
    match d.table {
        Costs::Heap(t) => heap_lines(d, t, job, plan, pending),
        Costs::InnoDb(t) => super::mysql::disk_lines(t, job, pending),
    }
}

/// PostgreSQL's `disk` and `vacuum` lines: the heap, the WAL, the slots and the vacuums.
fn heap_lines(d: &DiskReport<'_>, t: &Table, job: &Job, plan: &Plan, pending: u64) -> Vec<String> {
    let cost = d.cost(job, t, pending);
    let mut lines = vec![
        format!(
            "disk      heap {} now, {} rows; {pending} new row versions of ~{} B: ~{} of new heap",
            Bytes(t.heap_bytes),
            t.rows,
            cost.row_bytes,
            Bytes(cost.new_heap)
        ),
        match cost.heap_with_pacing {
            Some(with) => format!(
                "          heap after the run ~{} with vacuum pacing, ~{} without",
                size_and_growth(t.heap_bytes, with),
                size_and_growth(t.heap_bytes, cost.heap_without_pacing)
            ),
            None => format!(
                "          heap after the run ~{} (no vacuum pacing)",
                size_and_growth(t.heap_bytes, cost.heap_without_pacing)
            ),
        },
    ];
    if let Some(cleaned) = d.heap_with_index_cleanup(job, t, pending, &cost) {
        lines.push(format!(
            "          narrow rows: a heap-only vacuum leaves a freed page too few line \
             pointers for them; with [vacuum] index_cleanup = true (each vacuum then reads the \
             indexes) the heap would end ~{}",
            size_and_growth(t.heap_bytes, cleaned)
        ));
    }
    lines.push(format!(
        "          WAL ~{} (rough: {})",
        Bytes(cost.wal),
        wal_method(t)
    ));
    let slots = d.slots();
    lines.push(match slots.as_slice() {
        [] => "          replication slots: none retains WAL".to_owned(),
        _ => format!(
            "          replication slots retain WAL now, and will keep the run's until their \
             consumers confirm it: {}",
            slots
                .iter()
                .map(|(slot, bytes)| format!("{slot} {}", Bytes(*bytes)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    });
    lines.push(vacuum_line(d, t, job, plan));
    lines
}

/// `vacuum    VACUUM (…) every 25000 rows (…); VACUUM (ANALYZE) … when the job is done`, or
/// why the run vacuums nothing.
fn vacuum_line(d: &DiskReport<'_>, t: &Table, job: &Job, plan: &Plan) -> String {
    let wanted = job.vacuum.enabled || job.vacuum.final_vacuum;
    let why_not = if !wanted {
        Some("[vacuum] enabled = false and final = false")
    } else if !job.throttle.enabled {
        Some("[throttle] enabled = false, and nothing would cancel a vacuum that DDL waits for")
    } else if !d.upkeep.allowed() {
        Some("the job's role may not vacuum the table (see the warning)")
    } else {
        None
    };
    if let Some(why) = why_not {
        return format!("vacuum    none: {why}");
    }
    let mut parts = Vec::new();
    if let Some(every) = d.every(job, t) {
        let relations = if plan.partitioned {
            "of each leaf partition that changed,".to_owned()
        } else {
            plan.table.clone()
        };
        parts.push(format!(
            "VACUUM ({}) {relations} every {every} changed rows ([vacuum] every = {}), on a \
             connection of its own, yielding to DDL like a batch",
            vacuum::pacing_options(d.vacuums.index_cleanup),
            job.vacuum.every
        ));
    } else {
        parts.push("no pacing ([vacuum] enabled = false)".to_owned());
    }
    if d.vacuums.final_vacuum {
        parts.push(format!(
            "{} when the job is done",
            vacuum::last(&plan.table)
        ));
    } else {
        parts.push("no final vacuum ([vacuum] final = false)".to_owned());
    }
    format!("vacuum    {}", parts.join("; "))
}

/// The `disk` and `vacuum` objects of `plan --json`.
pub fn json(d: &DiskReport<'_>, job: &Job, plan: &Plan, pending: u64) -> (Value, Value) {
    match d.table {
        Costs::Heap(t) => heap_json(d, t, job, plan, pending),
        Costs::InnoDb(t) => super::mysql::disk_json(t, job, pending),
    }
}

/// PostgreSQL's `disk` and `vacuum` objects.
fn heap_json(
    d: &DiskReport<'_>,
    t: &Table,
    job: &Job,
    plan: &Plan,
    pending: u64,
) -> (Value, Value) {
    let cost = d.cost(job, t, pending);
    let disk = json!({
        "heap_bytes": t.heap_bytes,
        "rows": t.rows,
        "row_bytes": cost.row_bytes,
        "new_heap_bytes": cost.new_heap,
        "heap_bytes_with_pacing": cost.heap_with_pacing,
        "heap_bytes_without_pacing": cost.heap_without_pacing,
        "heap_bytes_with_index_cleanup": d.heap_with_index_cleanup(job, t, pending, &cost),
        "wal_bytes": cost.wal,
        "wal_method": wal_method(t),
        "slots": d.slots().iter().map(|(slot, bytes)| json!({"slot": slot, "retained_bytes": bytes})).collect::<Vec<_>>(),
    });
    let vacuum = json!({
        "pacing": d.vacuums.pacing,
        "every": job.vacuum.every.to_string(),
        "every_rows": d.every(job, t),
        "index_cleanup": d.vacuums.index_cleanup,
        "pacing_sql": d.vacuums.pacing.then(|| {
            plan.walks().iter().map(|w| vacuum::pacing(&w.relation, d.vacuums.index_cleanup)).collect::<Vec<_>>()
        }),
        "final": d.vacuums.final_vacuum,
        "final_sql": d.vacuums.final_vacuum.then(|| vacuum::last(&plan.table)),
        "role_may_vacuum": d.upkeep.allowed(),
    });
    (disk, vacuum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::policy::Slot;

    fn slot(name: &str, retained: Option<u64>) -> Slot {
        Slot {
            name: name.into(),
            kind: "logical".into(),
            plugin: Some("pgoutput".into()),
            consumer: None,
            retained,
            unconfirmed: None,
            wal_status: None,
        }
    }

    #[test]
    fn slots_that_retain_are_listed_the_most_first() {
        let wal = Wal {
            slots: vec![
                slot("small", Some(10)),
                slot("gone", None),
                slot("big", Some(1000)),
            ],
            archiver: None,
        };
        let upkeep = upkeep();
        let d = DiskReport {
            table: &Costs::Heap(Table::example()),
            wal: &wal,
            upkeep: &upkeep,
            vacuums: Vacuums::default(),
        };
        let names: Vec<String> = d.slots().into_iter().map(|(s, _)| s).collect();
        assert_eq!(
            names,
            [
                "big (logical pgoutput, no consumer connected)",
                "small (logical pgoutput, no consumer connected)"
            ]
        );
    }

    /// A role that may vacuum the table.
    fn upkeep() -> Upkeep {
        Upkeep {
            role: "app".into(),
            denied: vec![],
            maintain: true,
            purges: false,
        }
    }

    fn report<'a>(
        table: &'a Costs,
        wal: &'a Wal,
        upkeep: &'a Upkeep,
        cleanup: bool,
    ) -> DiskReport<'a> {
        DiskReport {
            table,
            wal,
            upkeep,
            vacuums: Vacuums {
                pacing: true,
                index_cleanup: cleanup,
                final_vacuum: true,
            },
        }
    }

    #[test]
    fn index_cleanup_is_suggested_for_narrow_rows_only() {
        let job = Job::parse(
            "table = \"t\"\nwhere = \"v IS NULL\"\n[set]\nv = \"1\"\n",
            std::path::Path::new("t.toml"),
        )
        .expect("valid job");
        let wal = Wal {
            slots: vec![],
            archiver: None,
        };
        let upkeep = upkeep();
        // 44 bytes a row, as the benchmark's `orders`: 186 to a page, which takes 105 again.
        let narrow = Table {
            heap_bytes: 44 * 1_000_000,
            ..Table::example()
        };
        let costs = Costs::Heap(narrow.clone());
        let d = report(&costs, &wal, &upkeep, false);
        let cost = d.cost(&job, &narrow, 1_000_000);
        let cleaned = d
            .heap_with_index_cleanup(&job, &narrow, 1_000_000, &cost)
            .expect("suggested for narrow rows");
        let heap_only = cost.heap_with_pacing.unwrap();
        assert!(
            cleaned < heap_only,
            "{cleaned} with cleanup, {heap_only} without"
        );
        let on = report(&costs, &wal, &upkeep, true);
        let cost = on.cost(&job, &narrow, 1_000_000);
        assert_eq!(
            on.heap_with_index_cleanup(&job, &narrow, 1_000_000, &cost),
            None,
            "already on"
        );
        assert_eq!(cost.heap_with_pacing, Some(cleaned));
        // 100 bytes a row: 81 to a page, which has line pointers for them all again.
        let wide = Table::example();
        let costs = Costs::Heap(wide.clone());
        let d = report(&costs, &wal, &upkeep, false);
        let cost = d.cost(&job, &wide, 1_000_000);
        assert_eq!(
            d.heap_with_index_cleanup(&job, &wide, 1_000_000, &cost),
            None
        );
    }

    #[test]
    fn the_wal_method_names_the_indexes_and_page_images() {
        assert_eq!(
            wal_method(&Table::example()),
            "each new row version with its record and 1 index entry; with full_page_writes \
             on, a full image of each heap and index page it changes, once"
        );
        let bare = Table {
            indexes: 3,
            full_page_writes: false,
            ..Table::example()
        };
        assert_eq!(
            wal_method(&bare),
            "each new row version with its record and 3 index entries"
        );
    }
}
