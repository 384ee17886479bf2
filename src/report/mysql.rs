//! The parts of `plan`'s report that MySQL and MariaDB have their own way: the server, the
//! index the key walk reads (as the server's `EXPLAIN` says), the timeouts as the servers
//! apply them, what the monitor watches, the statements that begin and end a batch, and the
//! disk as InnoDB keeps it. `plan.rs` and `disk.rs` hold the rest, which is shared, and
//! PostgreSQL's parts. Pure, like the rest of `report`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::disk::innodb::Table;
use crate::job::{Job, ThrottlePolicy};
use crate::monitor::policy::Bytes;
use crate::mysql::Flavor;
use crate::mysql::explain::{Access, access};
use crate::mysql::session::{Limits, Server, begin_sql, seconds};
use crate::mysql::state::RangeSql;
use crate::postgres::privileges::Privileges;
use crate::preflight::Preflight;
use crate::state::idle_in_transaction_timeout;

use super::plan::PlanReport;
use super::throttle::block;

/// `MariaDB 10.11.19 (10.11.19-MariaDB-0+deb12u1)`: the flavor and version, and `VERSION()`
/// whole when it says more.
pub(super) fn server(s: &Server) -> String {
    let number = numeric(&s.version);
    if number == s.version {
        format!("{} {number}", s.flavor)
    } else {
        format!("{} {number} ({})", s.flavor, s.version)
    }
}

/// `9.7.4` of `9.7.4-2`.
fn numeric(version: &str) -> &str {
    let end = version
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(version.len());
    &version[..end]
}

/// `PRIMARY serves the key walk (EXPLAIN: range access)`, from the `EXPLAIN` of the key walk;
/// from the catalog when there is none (an empty table).
pub(super) fn index(checked: &Preflight, catalog_index: Option<&str>) -> String {
    match access(&checked.walk_plan) {
        Some(Access {
            index: Some(index),
            access_type,
        }) => format!(
            "{index} serves the key walk (EXPLAIN: {} access)",
            access_type.as_deref().unwrap_or("index")
        ),
        Some(Access { access_type, .. }) => format!(
            "none: EXPLAIN shows the key walk reading the whole table ({} access)",
            access_type.as_deref().unwrap_or("ALL")
        ),
        None => catalog_index.map_or("none leads with the key".to_owned(), |i| {
            format!("{i} serves the key walk")
        }),
    }
}

/// The index the key walk reads, for `plan --json`.
pub(super) fn walk_index(checked: &Preflight) -> Option<String> {
    access(&checked.walk_plan)?.index
}

/// `statement 30s (max_statement_time), lock 2s (innodb_lock_wait_timeout and
/// lock_wait_timeout)`: the job's timeouts as the server applies them.
pub(super) fn timeouts(s: &Server, job: &Job) -> String {
    let t = &job.timeouts;
    let d = |d: Duration| humantime::format_duration(d).to_string();
    let statement = match s.flavor {
        Flavor::MariaDb => "max_statement_time",
        Flavor::MySql => "a watchdog's KILL QUERY: MySQL's max_execution_time bounds only SELECTs",
    };
    let whole = Duration::from_secs(seconds(t.lock));
    let lock = if whole == t.lock {
        "innodb_lock_wait_timeout and lock_wait_timeout".to_owned()
    } else {
        format!(
            "innodb_lock_wait_timeout and lock_wait_timeout of {}: the servers wait in whole \
             seconds",
            d(whole)
        )
    };
    format!(
        "timeouts  statement {} ({statement}), lock {} ({lock})",
        d(t.statement),
        d(t.lock)
    )
}

/// The `[throttle]` block: what the monitor watches on these servers so far.
pub(super) fn throttle(
    p: &ThrottlePolicy,
    query_now: Option<f64>,
    sight: Option<&Privileges>,
) -> String {
    let d = |d: Duration| humantime::format_duration(d).to_string();
    let mut lines = Vec::new();
    if !p.enabled {
        lines.push(
            "off ([throttle] enabled = false): no pause or throttle; only the lock timeout \
             bounds how long the application waits behind a batch"
                .to_owned(),
        );
    } else {
        lines.push(format!(
            "sample every {}; full speed after {} clear; pause when no sample for {}",
            d(p.poll),
            d(p.cooldown),
            d(p.fail_closed_after)
        ));
        if p.yield_to_waiters {
            lines.push(format!(
                "yield (KILL QUERY our batch, roll it back) when a session waits for a metadata \
                 lock on the table, then pause until none has waited for {}",
                d(p.cooldown)
            ));
        }
        if p.pause_on_table_locks {
            lines.push(
                "pause while another session holds a metadata lock our UPDATE would wait for \
                 (LOCK TABLES, DDL in progress)"
                    .to_owned(),
            );
        }
        lines.push(format!(
            "throttle above {:.0}% of max_connections in use (Threads_connected)",
            p.max_connection_use * 100.0
        ));
        if p.max_active_sessions > 0 {
            lines.push(format!(
                "throttle above {} other sessions running (Threads_running)",
                p.max_active_sessions
            ));
        }
        if p.max_history_length > 0 {
            lines.push(format!(
                "throttle while InnoDB's history list is over {}, pause over {} (naming the \
                 oldest open transaction)",
                p.max_history_length,
                p.max_history_length.saturating_mul(2)
            ));
        }
        if !p.max_replica_lag.is_zero() {
            lines.push(format!(
                "pause while a --replica-url replica is over {} behind, or its lag is unknown \
                 (SQL thread stopped, unreachable)",
                d(p.max_replica_lag)
            ));
        }
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
        lines.extend(sight.map(Privileges::describe));
    }
    if let Some(rate) = p.max_wal_rate {
        lines.push(format!(
            "max_wal_rate ({}/s) is not applied: MySQL and MariaDB have no WAL position to \
             pace by",
            Bytes(rate)
        ));
    }
    block("throttle", &lines)
}

/// What a batch sends, in order, up to its `COMMIT`: the statements that begin its
/// transaction (as `db::Session::begin_batch` begins it), the key walk, the `UPDATE`, the
/// checkpoint and, on MySQL, the statement that puts the session's idle limit back before the
/// commit (`mysql::session::Tx::commit`); and what the comment above them says.
pub(super) fn transaction(report: &PlanReport<'_>, s: &Server) -> (String, Vec<String>) {
    let t = &report.job.timeouts;
    let limits = Limits {
        statement_timeout: t.statement,
        lock_timeout: t.lock,
        idle: Some(idle_in_transaction_timeout(report.lease_timeout)),
        read_only: false,
    };
    let walk = &report.plan.walk;
    let mut sql: Vec<String> = begin_sql(s.flavor, &limits)
        .split("; ")
        .map(str::to_owned)
        .collect();
    sql.extend([
        walk.upper_bound.after_cursor.clone(),
        walk.update.after_cursor.clone(),
        RangeSql::new(report.store, &report.plan.key_types)
            .checkpoint_sql()
            .to_owned(),
    ]);
    let note = match s.flavor {
        Flavor::MariaDb => " at READ COMMITTED".to_owned(),
        Flavor::MySql => {
            sql.push(crate::mysql::session::RESTORE_WAIT.to_owned());
            format!(
                " at READ COMMITTED; a watchdog on a connection of its own sends KILL QUERY if \
                 it runs past the statement timeout ({}), and wait_timeout ends it if the \
                 client goes quiet",
                humantime::format_duration(t.statement)
            )
        }
    };
    (note, sql)
}

/// The `disk` and `vacuum` lines on MySQL and MariaDB.
pub(super) fn disk_lines(t: &Table, job: &Job, pending: u64) -> Vec<String> {
    vec![
        format!(
            "disk      InnoDB: the rows {} now (DATA_LENGTH, the clustered index), secondary \
             indexes {} (INDEX_LENGTH); {} rows of ~{} B",
            Bytes(t.data_bytes),
            Bytes(t.index_bytes),
            t.rows,
            t.row_bytes
        ),
        "          rows are updated in place, their old versions kept in the undo log until \
         purge; growth from longer rows (page splits), undo and redo are not estimated on \
         MySQL and MariaDB"
            .to_owned(),
        format!("          {}", binlog_line(t, job, pending)),
        "vacuum    none needed: InnoDB's purge removes old row versions itself (its backlog \
         is the history list length of SHOW ENGINE INNODB STATUS)"
            .to_owned(),
    ]
}

/// What the run writes to the binary log.
fn binlog_line(t: &Table, job: &Job, pending: u64) -> String {
    let Some(log) = &t.binlog else {
        return "binary log off (log_bin = OFF): nothing for replicas to apply".to_owned();
    };
    let settings = format!(
        "binlog_format = {}, binlog_row_image = {}",
        log.format, log.row_image
    );
    match t.binlog_bytes(pending, job.batch.size) {
        Some(bytes) => format!(
            "binary log ~{} ({settings}; rough: each changed row's before and after image), \
             which every replica applies too",
            Bytes(bytes)
        ),
        None if log.format.eq_ignore_ascii_case("ROW") => format!(
            "binary log ({settings}): each changed row's key and new values, small; not \
             estimated"
        ),
        None => format!(
            "binary log ({settings}): about one UPDATE statement per batch, or its rows where \
             the server deems the statement unsafe; not estimated"
        ),
    }
}

/// The `disk` and `vacuum` objects of `plan --json` on MySQL and MariaDB.
pub(super) fn disk_json(t: &Table, job: &Job, pending: u64) -> (Value, Value) {
    let disk = json!({
        "engine": "InnoDB",
        "data_bytes": t.data_bytes,
        "index_bytes": t.index_bytes,
        "rows": t.rows,
        "row_bytes": t.row_bytes,
        "binlog": t.binlog.as_ref().map(|log| json!({
            "format": log.format,
            "row_image": log.row_image,
            "bytes": t.binlog_bytes(pending, job.batch.size),
        })),
    });
    let vacuum = json!({"pacing": false, "final": false, "purges": true});
    (disk, vacuum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::innodb::Binlog;

    fn mariadb() -> Server {
        Server {
            flavor: Flavor::MariaDb,
            version: "10.11.19-MariaDB-0+deb12u1".into(),
            connection_id: 7,
            performance_schema: false,
        }
    }

    #[test]
    fn the_server_line_names_the_flavor_and_version() {
        assert_eq!(
            server(&mariadb()),
            "MariaDB 10.11.19 (10.11.19-MariaDB-0+deb12u1)"
        );
        let mysql = Server {
            flavor: Flavor::MySql,
            version: "8.4.4".into(),
            connection_id: 7,
            performance_schema: false,
        };
        assert_eq!(server(&mysql), "MySQL 8.4.4");
    }

    fn job(batch: &str) -> Job {
        Job::parse(
            &format!("table = \"t\"\nwhere = \"v IS NULL\"\n[set]\nv = \"1\"\n{batch}"),
            std::path::Path::new("t.toml"),
        )
        .expect("valid job")
    }

    #[test]
    fn lock_waits_in_whole_seconds_are_said() {
        let line = timeouts(
            &mariadb(),
            &job("[timeouts]\nstatement = \"30s\"\nlock = \"200ms\"\n"),
        );
        assert_eq!(
            line,
            "timeouts  statement 30s (max_statement_time), lock 200ms (innodb_lock_wait_timeout \
             and lock_wait_timeout of 1s: the servers wait in whole seconds)"
        );
    }

    #[test]
    fn the_binary_log_is_estimated_for_full_row_images_only() {
        let mut t = Table {
            data_bytes: 10_000_000,
            index_bytes: 0,
            rows: 100_000,
            row_bytes: 100,
            binlog: None,
        };
        let j = job("");
        assert!(binlog_line(&t, &j, 1000).starts_with("binary log off"));
        t.binlog = Some(Binlog {
            format: "ROW".into(),
            row_image: "FULL".into(),
        });
        assert!(
            binlog_line(&t, &j, 100_000).starts_with("binary log ~15."),
            "{}",
            binlog_line(&t, &j, 100_000)
        );
        t.binlog = Some(Binlog {
            format: "MIXED".into(),
            row_image: "FULL".into(),
        });
        assert!(binlog_line(&t, &j, 1000).ends_with("not estimated"));
    }
}
