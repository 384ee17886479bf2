//! The report: what ran where, the results of each scenario, and the issues' targets checked
//! against them (see `targets`) — as JSON (for machines) and Markdown (for BENCHMARKS.md and
//! the terminal).

use std::fmt::Write as _;

use anyhow::Result;
use serde::Serialize;

use crate::bloat;
use crate::ddl::Waits;
use crate::fixture::{SETTINGS, Server};
use crate::latency::Latency;
use crate::profile::Profile;
use crate::scaling::{Growth, Point};
use crate::throughput::Row;

/// Everything one benchmark run found.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub command: String,
    pub rows: u64,
    pub duration_s: f64,
    pub throughput: Option<Vec<Row>>,
    pub profile: Option<Profile>,
    pub ddl: Option<Vec<Waits>>,
    pub bloat: Option<Vec<bloat::Row>>,
    pub latency: Option<Latency>,
    pub scaling: Option<Vec<Point>>,
    pub growth: Vec<Growth>,
    /// MySQL and MariaDB (issue 18).
    pub mysql: Option<crate::mysql::Results>,
    pub targets: Vec<Target>,
    /// Scenarios that failed, with their error.
    pub errors: Vec<String>,
}

/// The machine and server the numbers come from.
#[derive(Debug, Default, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_gib: f64,
    pub kernel: String,
    pub postgres: String,
    pub settings: Vec<(String, String)>,
}

impl Machine {
    /// Reads the machine from `/proc` and the server's version and settings.
    pub async fn describe(server: &mut Server, overrides: &[(String, String)]) -> Result<Machine> {
        let mut settings = Vec::new();
        let mut names: Vec<&str> = SETTINGS.iter().map(|(name, _)| *name).collect();
        names.extend(["wal_level", "autovacuum", "max_connections", "wal_buffers"]);
        names.extend(overrides.iter().map(|(name, _)| name.as_str()));
        for name in names {
            if !settings.iter().any(|(known, _)| known == name) {
                settings.push((name.to_string(), server.show(name).await?));
            }
        }
        Ok(Machine {
            postgres: server.show("server_version").await?,
            settings,
            ..Machine::local()
        })
    }

    /// Reads the machine from `/proc` (no PostgreSQL: the MySQL section alone).
    pub fn local() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Machine {
            cpus: std::thread::available_parallelism().map_or(0, usize::from),
            cpu_model: field(&cpuinfo, "model name").unwrap_or_default(),
            memory_gib: field(&meminfo, "MemTotal")
                .and_then(|kb| kb.trim_end_matches("kB").trim().parse::<f64>().ok())
                .map_or(0.0, |kb| kb / 1024.0 / 1024.0),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
            postgres: String::new(),
            settings: Vec::new(),
        }
    }
}

/// The value of the first `name: value` line.
fn field(text: &str, name: &str) -> Option<String> {
    text.lines()
        .find(|line| line.starts_with(name))
        .and_then(|line| line.split_once(':'))
        .map(|(_, value)| value.trim().to_string())
}

/// `1 worker`, `2 workers`.
pub fn workers_text(n: u32) -> String {
    if n == 1 {
        "1 worker".into()
    } else {
        format!("{n} workers")
    }
}

/// `2000000` → `2M`.
pub fn millions(rows: u64) -> String {
    format!("{}M", rows as f64 / 1e6)
}

/// The report as Markdown tables.
pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let m = &report.machine;
    let _ = writeln!(out, "Command: `{}`  ", report.command);
    let postgres = if m.postgres.is_empty() {
        String::new()
    } else {
        format!(", PostgreSQL {}", m.postgres)
    };
    let _ = writeln!(
        out,
        "Machine: {} CPUs ({}), {:.0} GiB RAM, Linux {}{postgres}; whole run {:.0} s\n",
        m.cpus, m.cpu_model, m.memory_gib, m.kernel, report.duration_s
    );
    if !m.settings.is_empty() {
        let settings: Vec<String> = m.settings.iter().map(|(n, v)| format!("{n}={v}")).collect();
        let _ = writeln!(out, "Server settings: {}\n", settings.join(", "));
    }
    if let Some(rows) = &report.throughput {
        throughput_table(&mut out, rows);
    }
    if let Some(profile) = &report.profile {
        profile_table(&mut out, profile);
    }
    if let Some(modes) = &report.ddl {
        ddl_table(&mut out, modes);
    }
    if let Some(rows) = &report.bloat {
        bloat_table(&mut out, rows);
    }
    if let Some(latency) = &report.latency {
        latency_table(&mut out, latency);
    }
    if let Some(points) = &report.scaling {
        scaling_table(&mut out, points, &report.growth);
    }
    if let Some(mysql) = &report.mysql {
        crate::mysql::report::markdown(&mut out, mysql);
    }
    targets_table(&mut out, &report.targets);
    for error in &report.errors {
        let _ = writeln!(out, "**Scenario failed:** {error}\n");
    }
    out
}

fn throughput_table(out: &mut String, rows: &[Row]) {
    let _ = writeln!(out, "### Throughput\n");
    let _ = writeln!(
        out,
        "| method | rows | transactions | wall s | rows/s | × single UPDATE | WAL MB | peak RSS MB | run queue |"
    );
    let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|--:|");
    for r in rows {
        let rss = r
            .peak_rss_kb
            .map_or("-".into(), |kb| format!("{:.1}", kb as f64 / 1024.0));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.1} | {:.0} | {:.3} | {:.0} | {rss} | {:.2} |",
            r.method, r.rows, r.batches, r.wall_s, r.rows_per_s, r.vs_update, r.wal_mb, r.run_queue
        );
    }
    out.push('\n');
}

fn profile_table(out: &mut String, p: &Profile) {
    let _ = writeln!(
        out,
        "### Profile of one `backfill run` batch (statement log on)\n"
    );
    let _ = writeln!(
        out,
        "{} rows, {} batches ({:.0} rows each), wall {:.1} s; a batch transaction takes {:.2} ms \
         at the client, of which the server spends {:.2} ms executing statements.\n",
        p.rows, p.batches, p.rows_per_batch, p.wall_s, p.batch_ms, p.server_ms_per_batch
    );
    let _ = writeln!(
        out,
        "| statement | executed | total ms | ms per batch | share of batch |"
    );
    let _ = writeln!(out, "|---|--:|--:|--:|--:|");
    for c in &p.costs {
        let share = 100.0 * c.ms_per_batch / p.batch_ms;
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.3} | {share:.1} % |",
            c.kind, c.executed, c.total_ms, c.ms_per_batch
        );
    }
    out.push('\n');
}

fn ddl_table(out: &mut String, modes: &[Waits]) {
    let _ = writeln!(
        out,
        "### DDL wait (`ALTER TABLE … ADD COLUMN` ×10 during ~2 s batches)\n"
    );
    ddl_rows(out, modes);
}

/// The DDL wait's table, one row per mode (also the MySQL section's).
pub fn ddl_rows(out: &mut String, modes: &[Waits]) {
    let _ = writeln!(
        out,
        "| mode | n | p50 ms | p99 ms | max ms | batch p50 ms | batches | retries | yields | waits ms |"
    );
    let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|--:|---|");
    for w in modes {
        if let Some(error) = &w.error {
            let _ = writeln!(
                out,
                "| {} | not measured: {} |||||||||",
                w.mode,
                error.replace('\n', " ")
            );
            continue;
        }
        let waits: Vec<String> = w.waits_ms.iter().map(|ms| format!("{ms:.0}")).collect();
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} |",
            w.mode,
            w.summary.count,
            w.summary.p50,
            w.summary.p99,
            w.summary.max,
            w.batch_ms_p50,
            w.batches,
            w.retries,
            w.yields,
            waits.join(" ")
        );
    }
    out.push('\n');
}

fn bloat_table(out: &mut String, rows: &[bloat::Row]) {
    let _ = writeln!(
        out,
        "### Bloat (fillfactor 100, primary key and an index on `qty`; sizes read before and after)\n"
    );
    let _ = writeln!(
        out,
        "| method | wall s | rows/s | heap MB before → after | heap × | relation MB before → after \
         | relation × | vacuums done (pacing + final) | final vacuum s | `finished`: heap MB before → after |"
    );
    let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for r in rows {
        let vacuums = r.vacuums.map_or("-".into(), |v| {
            format!("{} + {}", v.pacing, u8::from(v.final_ms.is_some()))
        });
        let final_s = r
            .vacuums
            .and_then(|v| v.final_ms)
            .map_or("-".into(), |ms| format!("{:.1}", ms as f64 / 1000.0));
        let finished = r.finished.map_or("-".into(), |f| {
            format!(
                "{} → {}",
                optional_mb(f.heap_bytes_before),
                optional_mb(f.heap_bytes_after)
            )
        });
        let _ = writeln!(
            out,
            "| {} | {:.1} | {:.0} | {:.0} → {:.0} | {:.2} | {:.0} → {:.0} | {:.2} | {vacuums} | {final_s} | {finished} |",
            r.method,
            r.wall_s,
            r.rows_per_s,
            mb(r.before.heap_bytes),
            mb(r.after.heap_bytes),
            r.heap_growth,
            mb(r.before.total_bytes),
            mb(r.after.total_bytes),
            r.total_growth,
        );
    }
    out.push('\n');
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1024.0 / 1024.0
}

fn optional_mb(bytes: Option<u64>) -> String {
    bytes.map_or("?".into(), |b| format!("{:.0}", mb(b)))
}

fn latency_table(out: &mut String, latency: &Latency) {
    let _ = writeln!(
        out,
        "### Foreground latency (pgbench -R, single-row UPDATE + SELECT; medians of {} interleaved rounds)\n",
        latency.rounds
    );
    let _ = writeln!(
        out,
        "| mode | transactions | p50 ms | p95 ms | p99 ms | max ms | p99 × idle | run queue \
         | wall s | rows/s | × default run | time in batches | guard holds | probe baseline ms \
         | probe ms |"
    );
    let _ = writeln!(
        out,
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
    );
    let figure =
        |value: Option<f64>, digits: usize| value.map_or("-".into(), |v| format!("{v:.digits$}"));
    for m in &latency.modes {
        // A window with no application has no latency to show.
        let loaded = |value: f64, digits: usize| {
            figure(Some(value).filter(|_| m.transactions > 0.0), digits)
        };
        let _ = writeln!(
            out,
            "| {} | {:.0} | {} | {} | {} | {} | {} | {:.2} | {} | {} | {} | {} | {} | {} | {} |",
            m.mode,
            m.transactions,
            loaded(m.p50_ms, 2),
            loaded(m.p95_ms, 2),
            loaded(m.p99_ms, 2),
            loaded(m.max_ms, 1),
            loaded(m.p99_vs_idle, 2),
            m.run_queue,
            figure(m.wall_s, 1),
            figure(m.rows_per_s, 0),
            figure(m.vs_default_run, 2),
            m.in_batches
                .map_or("-".into(), |share| format!("{:.0} %", 100.0 * share)),
            figure(m.guarded, 0),
            figure(m.probe_baseline_ms, 2),
            figure(m.probe_ms, 2),
        );
    }
    let guard = latency.guard_toml.trim().replace('\n', "; ");
    let _ = writeln!(out, "\nThe guarded run's job text: `{guard}`.");
    out.push('\n');
}

fn scaling_table(out: &mut String, points: &[Point], growth: &[Growth]) {
    let _ = writeln!(
        out,
        "### Scaling (`backfill run` at its defaults, by workers)\n"
    );
    let _ = writeln!(
        out,
        "| rows | workers | batches | wall s | s per million rows | peak RSS MB | \
         s outside batches, per worker | batch ms, first ¼ | batch ms, last ¼ |"
    );
    let _ = writeln!(out, "|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for p in points {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.1} | {:.2} | {:.1} | {:.2} | {:.2} | {:.2} |",
            p.rows,
            p.workers,
            p.batches,
            p.wall_s,
            p.s_per_million,
            p.peak_rss_kb as f64 / 1024.0,
            p.outside_batches_s,
            p.first_quarter_batch_ms,
            p.last_quarter_batch_ms
        );
    }
    for g in growth {
        let _ = writeln!(
            out,
            "\ntime({})/time({}) = {:.2} with {} (linear: {:.1})",
            millions(g.large_rows),
            millions(g.small_rows),
            g.time_ratio,
            workers_text(g.workers),
            g.size_ratio
        );
    }
    out.push('\n');
}

/// One goal of an issue, and whether this run met it.
#[derive(Debug, Serialize)]
pub struct Target {
    pub issue: u32,
    pub target: String,
    pub measured: String,
    pub met: bool,
}

/// The targets as a Markdown table.
fn targets_table(out: &mut String, targets: &[Target]) {
    let _ = writeln!(out, "### Targets\n");
    let _ = writeln!(out, "| issue | target | measured | met |");
    let _ = writeln!(out, "|--:|---|--:|---|");
    for t in targets {
        let met = if t.met { "yes" } else { "**no**" };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {met} |",
            t.issue, t.target, t.measured
        );
    }
    out.push('\n');
}
