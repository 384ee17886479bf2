//! What a job does to the disk: the table's heap, measured here and nowhere else; whether the
//! job's role may vacuum the table ([`Upkeep`]); and, in `estimate`, what `plan` expects a run
//! to cost in heap and WAL (on MySQL and MariaDB, in `innodb`, what InnoDB and the binary log
//! make of it).
//!
//! The heap is the table's main fork (`pg_relation_size`), summed over its leaf partitions for
//! a partitioned table: that is what a backfill grows (every changed row gets a new version)
//! and what vacuum pacing keeps in check. Indexes and TOAST are left out: indexes grow anyway
//! (non-HOT updates add an entry per index, which only the final vacuum cleans), and a
//! backfill that does not change a toasted value copies only its pointer. The statements here
//! are read-only, each in its own transaction; none builds SQL about the table but the
//! vacuums' (`plan/vacuum.rs`).

pub mod estimate;
pub mod innodb;

use crate::job::Job;

use crate::monitor::policy::Bytes;

use crate::postgres::sql::Ident;

/// What `plan` reads to say what a run costs in disk: the database's own figures.
#[derive(Debug, Clone, PartialEq)]
pub enum Costs {
    /// PostgreSQL's heap, indexes and WAL ([`estimate`]).
    Heap(estimate::Table),
    /// InnoDB's clustered and secondary indexes and the binary log ([`innodb`]).
    InnoDb(innodb::Table),
}

impl Costs {
    /// The table's rows now, in bytes: PostgreSQL's heap, InnoDB's clustered index.
    pub fn heap_bytes(&self) -> u64 {
        match self {
            Costs::Heap(t) => t.heap_bytes,
            Costs::InnoDb(t) => t.data_bytes,
        }
    }
}

/// `heap 149.0 MiB → 171.0 MiB (+15 %)`: the heap now and its growth since `start`.
pub fn growth_text(start: u64, now: u64) -> String {
    format!("heap {} → {}", Bytes(start), size_and_growth(start, now))
}

/// `171.0 MiB (+15 %)`: a heap of `now` bytes and its growth from `start` (no growth from
/// nothing).
pub fn size_and_growth(start: u64, now: u64) -> String {
    if start == 0 {
        return Bytes(now).to_string();
    }
    let percent = (now as f64 - start as f64) * 100.0 / start as f64;
    format!("{} ({percent:+.0} %)", Bytes(now))
}

/// What a run vacuums: the relations its batches change while it runs (pacing), and the table
/// once the job is done. Both need the role's right to vacuum ([`Upkeep`]) and the monitor,
/// which cancels a vacuum that DDL waits for: without the monitor nothing would, and an
/// `ALTER TABLE` would wait out the whole vacuum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Vacuums {
    pub pacing: bool,
    /// The pacing vacuums clean the indexes too (`[vacuum] index_cleanup`).
    pub index_cleanup: bool,
    pub final_vacuum: bool,
}

impl Vacuums {
    /// What `job` vacuums when its role's rights are `upkeep`.
    pub fn of(job: &Job, upkeep: &Upkeep) -> Vacuums {
        let able = job.throttle.enabled && upkeep.allowed() && !upkeep.purges;
        Vacuums {
            pacing: able && job.vacuum.enabled,
            index_cleanup: job.vacuum.index_cleanup,
            final_vacuum: able && job.vacuum.final_vacuum,
        }
    }

    /// The run vacuums at all, on a connection of its own.
    pub fn any(&self) -> bool {
        self.pacing || self.final_vacuum
    }
}

/// Why a job that asks for vacuums gets none, each with what fixes it: `plan` and `run` say
/// it once, before anything is written.
pub fn warnings(job: &Job, upkeep: &Upkeep) -> Vec<String> {
    if upkeep.purges || (!job.vacuum.enabled && !job.vacuum.final_vacuum) {
        return Vec::new();
    }
    if !job.throttle.enabled {
        return vec![
            "[throttle] enabled = false, so this run vacuums nothing: without the monitor \
             nothing would cancel a vacuum that DDL waits for. The heap may grow by every row \
             the run changes; turn the monitor on, or set [vacuum] enabled = false and \
             final = false to say it is meant"
                .to_owned(),
        ];
    }
    upkeep.warning().into_iter().collect()
}

/// Who may vacuum the relations a job changes. `VACUUM` needs the relation's owner (or a
/// member of its role), the database's owner, or — from PostgreSQL 17 on — the `MAINTAIN`
/// privilege (`pg_maintain` has it on every table). A role without them does not get an
/// error: the server skips the relation with a warning, so this is read before anything
/// runs, and a job whose role may not vacuum runs without pacing, saying so once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upkeep {
    /// The role the job runs as.
    pub role: String,
    /// The relations it may not vacuum, with their owners.
    pub denied: Vec<Denied>,
    /// The server has the `MAINTAIN` privilege (PostgreSQL 17 and later).
    pub maintain: bool,
    /// The database reclaims old row versions itself (InnoDB's purge): there is nothing to
    /// vacuum, and nothing to warn about.
    pub purges: bool,
}

/// A relation the job's role may not vacuum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// As SQL (`"public"."users"`).
    pub relation: String,
    pub owner: String,
}

impl Upkeep {
    /// The role may vacuum every relation the job changes.
    pub fn allowed(&self) -> bool {
        self.denied.is_empty()
    }

    /// What a job that would vacuum loses when the role may not, and the `GRANT` (or owner)
    /// that fixes it; `None` when it may.
    pub fn warning(&self) -> Option<String> {
        let first = self.denied.first()?;
        let more = match self.denied.len() {
            1 => String::new(),
            n => format!(" and {} more of its partitions", n - 1),
        };
        let role = Ident(&self.role);
        let fix = if self.maintain {
            let on = self
                .denied
                .iter()
                .map(|d| d.relation.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "run `GRANT MAINTAIN ON {on} TO {role};` (or `GRANT pg_maintain TO {role};`), or run \
                 the job as the table's owner {}",
                Ident(&first.owner)
            )
        } else {
            format!(
                "run the job as the table's owner {} (before PostgreSQL 17 only the owner, the \
                 database's owner or a superuser may vacuum it)",
                Ident(&first.owner)
            )
        };
        Some(format!(
            "the job's role {} may not VACUUM {}{more} (owned by {}), so this run vacuums \
             nothing: no vacuum pacing, no final VACUUM (ANALYZE), and the heap may grow by \
             every row the run changes; {fix}",
            self.role, first.relation, first.owner
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(relations: &[&str], maintain: bool) -> Upkeep {
        Upkeep {
            role: "app".into(),
            denied: relations
                .iter()
                .map(|r| Denied {
                    relation: (*r).into(),
                    owner: "owner".into(),
                })
                .collect(),
            maintain,
            purges: false,
        }
    }

    #[test]
    fn a_role_that_may_vacuum_gets_no_warning() {
        let upkeep = denied(&[], true);
        assert!(upkeep.allowed());
        assert_eq!(upkeep.warning(), None);
    }

    #[test]
    fn postgres_17_is_told_the_grant() {
        let warning = denied(&["\"public\".\"items\""], true).warning().unwrap();
        assert!(
            warning.starts_with(
                "the job's role app may not VACUUM \"public\".\"items\" (owned by owner), so \
                 this run vacuums nothing"
            ),
            "{warning}"
        );
        assert!(
            warning.ends_with(
                "run `GRANT MAINTAIN ON \"public\".\"items\" TO \"app\";` (or `GRANT \
                 pg_maintain TO \"app\";`), or run the job as the table's owner \"owner\""
            ),
            "{warning}"
        );
    }

    #[test]
    fn older_servers_are_told_the_owner() {
        let warning = denied(&["\"p\".\"a\"", "\"p\".\"b\""], false)
            .warning()
            .unwrap();
        assert!(
            warning.contains("VACUUM \"p\".\"a\" and 1 more of its partitions (owned by owner)"),
            "{warning}"
        );
        assert!(
            warning.contains("run the job as the table's owner \"owner\" (before PostgreSQL 17"),
            "{warning}"
        );
    }

    #[test]
    fn growth_reads_as_the_progress_line_shows_it() {
        let mib = 1024 * 1024;
        assert_eq!(
            growth_text(149 * mib, 171 * mib),
            "heap 149.0 MiB → 171.0 MiB (+15 %)"
        );
        assert_eq!(growth_text(100, 100), "heap 100 B → 100 B (+0 %)");
        assert_eq!(growth_text(0, 8192), "heap 0 B → 8.0 KiB");
    }
}
