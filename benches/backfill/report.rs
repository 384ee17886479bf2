//! The report: what ran where, the results of each scenario, and the targets checked
//! against them — as JSON (for machines) and Markdown (for BENCHMARKS.md and the terminal).

use std::fmt::Write as _;

use anyhow::Result;
use serde::Serialize;

use crate::ddl::Waits;
use crate::fixture::{SETTINGS, Server};
use crate::latency::Phase;
use crate::profile::Profile;
use crate::scaling::{Growth, Point};
use crate::throughput::{DEFAULTS, Row, workers_label};

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
    pub latency: Option<Vec<Phase>>,
    pub scaling: Option<Vec<Point>>,
    pub growth: Vec<Growth>,
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

/// One goal of the issue, and whether this run met it.
#[derive(Debug, Serialize)]
pub struct Target {
    pub target: String,
    pub measured: String,
    pub met: bool,
}

impl Machine {
    /// Reads the machine from `/proc` and the server's version and settings.
    pub async fn describe(server: &mut Server, overrides: &[(String, String)]) -> Result<Machine> {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
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
            cpus: std::thread::available_parallelism().map_or(0, usize::from),
            cpu_model: field(&cpuinfo, "model name").unwrap_or_default(),
            memory_gib: field(&meminfo, "MemTotal")
                .and_then(|kb| kb.trim_end_matches("kB").trim().parse::<f64>().ok())
                .map_or(0.0, |kb| kb / 1024.0 / 1024.0),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
            postgres: server.show("server_version").await?,
            settings,
        })
    }
}

/// The value of the first `name: value` line.
fn field(text: &str, name: &str) -> Option<String> {
    text.lines()
        .find(|line| line.starts_with(name))
        .and_then(|line| line.split_once(':'))
        .map(|(_, value)| value.trim().to_string())
}

impl Report {
    /// Checks the targets against what ran.
    pub fn check_targets(&mut self) {
        let mut targets = Vec::new();
        if let Some(rows) = &self.throughput {
            let find = |prefix: &str| rows.iter().find(|r| r.method.starts_with(prefix));
            if let (Some(one), Some(two)) = (find(DEFAULTS), find(&workers_label(2))) {
                let vs_one = two.rows_per_s / one.rows_per_s;
                targets.push(Target::at_least(
                    "2 workers ≥ 1.6× one worker",
                    vs_one,
                    1.6,
                    "×",
                ));
                targets.push(Target::at_least(
                    "2 workers ≥ 1.4× single UPDATE",
                    two.vs_update,
                    1.4,
                    "×",
                ));
                if let Some(guides) = find("guides' loop") {
                    let speedup = two.rows_per_s / guides.rows_per_s;
                    targets.push(Target::at_least(
                        "2 workers ≥ 25× the guides' loop",
                        speedup,
                        25.0,
                        "×",
                    ));
                }
            }
            if let Some(run) = find(DEFAULTS) {
                targets.push(Target::at_least(
                    "throughput ≥ 0.90× single UPDATE",
                    run.vs_update,
                    0.90,
                    "×",
                ));
                if let Some(guides) = find("guides' loop") {
                    let speedup = run.rows_per_s / guides.rows_per_s;
                    targets.push(Target::at_least(
                        "≥ 20× faster than the guides' loop",
                        speedup,
                        20.0,
                        "×",
                    ));
                }
            }
        }
        for growth in &self.growth {
            let limit = 1.1 * growth.size_ratio;
            let name = format!(
                "time({})/time({}) ≤ {limit:.1}, {}",
                millions(growth.large_rows),
                millions(growth.small_rows),
                workers_text(growth.workers)
            );
            targets.push(Target::at_most(&name, growth.time_ratio, limit, ""));
        }
        if let Some(on) = self.ddl.as_ref().and_then(|modes| modes.first()) {
            let name = format!("DDL wait p99 ≤ 100 ms ({})", on.mode);
            targets.push(match &on.error {
                None => Target::at_most(&name, on.summary.p99, 100.0, " ms"),
                Some(error) => Target::failed(&name, error),
            });
        }
        if let Some(during) = self.latency.as_ref().and_then(|phases| phases.get(1)) {
            let name = "foreground p99 during the run ≤ 1.5× idle";
            targets.push(Target::at_most(name, during.p99_vs_idle, 1.5, "×"));
        }
        if let Some(points) = &self.scaling {
            let peak = points.iter().map(|p| p.peak_rss_kb).max().unwrap_or(0);
            let mb = peak as f64 / 1024.0;
            targets.push(Target::at_most(
                "peak RSS ≤ 30 MB at every size",
                mb,
                30.0,
                " MB",
            ));
        }
        self.targets = targets;
    }
}

impl Target {
    fn at_least(name: &str, value: f64, goal: f64, unit: &str) -> Target {
        Target {
            target: name.to_string(),
            measured: format!("{value:.2}{unit}"),
            met: value >= goal,
        }
    }

    fn at_most(name: &str, value: f64, goal: f64, unit: &str) -> Target {
        Target {
            target: name.to_string(),
            measured: format!("{value:.2}{unit}"),
            met: value <= goal,
        }
    }

    fn failed(name: &str, error: &str) -> Target {
        Target {
            target: name.to_string(),
            measured: format!("not measured: {}", error.lines().next().unwrap_or("")),
            met: false,
        }
    }
}

/// `1 worker`, `2 workers`.
fn workers_text(n: u32) -> String {
    if n == 1 {
        "1 worker".into()
    } else {
        format!("{n} workers")
    }
}

fn millions(rows: u64) -> String {
    format!("{}M", rows as f64 / 1e6)
}

/// The report as Markdown tables.
pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let m = &report.machine;
    let _ = writeln!(out, "Command: `{}`  ", report.command);
    let _ = writeln!(
        out,
        "Machine: {} CPUs ({}), {:.0} GiB RAM, Linux {}, PostgreSQL {}; whole run {:.0} s\n",
        m.cpus, m.cpu_model, m.memory_gib, m.kernel, m.postgres, report.duration_s
    );
    let settings: Vec<String> = m.settings.iter().map(|(n, v)| format!("{n}={v}")).collect();
    let _ = writeln!(out, "Server settings: {}\n", settings.join(", "));
    if let Some(rows) = &report.throughput {
        throughput_table(&mut out, rows);
    }
    if let Some(profile) = &report.profile {
        profile_table(&mut out, profile);
    }
    if let Some(modes) = &report.ddl {
        ddl_table(&mut out, modes);
    }
    if let Some(phases) = &report.latency {
        latency_table(&mut out, phases);
    }
    if let Some(points) = &report.scaling {
        scaling_table(&mut out, points, &report.growth);
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
        "| method | rows | transactions | wall s | rows/s | × single UPDATE | WAL MB | peak RSS MB |"
    );
    let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|");
    for r in rows {
        let rss = r
            .peak_rss_kb
            .map_or("-".into(), |kb| format!("{:.1}", kb as f64 / 1024.0));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.1} | {:.0} | {:.3} | {:.0} | {rss} |",
            r.method, r.rows, r.batches, r.wall_s, r.rows_per_s, r.vs_update, r.wal_mb
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
    let _ = writeln!(
        out,
        "| mode | p50 ms | p99 ms | max ms | batch p50 ms | batches | retries | waits ms |"
    );
    let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|---|");
    for w in modes {
        if let Some(error) = &w.error {
            let _ = writeln!(
                out,
                "| {} | not measured: {} |||||||",
                w.mode,
                error.replace('\n', " ")
            );
            continue;
        }
        let waits: Vec<String> = w.waits_ms.iter().map(|ms| format!("{ms:.0}")).collect();
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} | {} |",
            w.mode,
            w.summary.p50,
            w.summary.p99,
            w.summary.max,
            w.batch_ms_p50,
            w.batches,
            w.retries,
            waits.join(" ")
        );
    }
    out.push('\n');
}

fn latency_table(out: &mut String, phases: &[Phase]) {
    let _ = writeln!(
        out,
        "### Foreground latency (pgbench -R, single-row UPDATE + SELECT)\n"
    );
    let _ = writeln!(
        out,
        "| phase | window s | transactions | p50 ms | p99 ms | max ms | p99 × idle |"
    );
    let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|");
    for p in phases {
        let l = &p.latency_ms;
        let _ = writeln!(
            out,
            "| {} | {:.1} | {} | {:.2} | {:.2} | {:.1} | {:.2} |",
            p.phase, p.window_s, l.count, l.p50, l.p99, l.max, p.p99_vs_idle
        );
    }
    out.push('\n');
}

fn scaling_table(out: &mut String, points: &[Point], growth: &[Growth]) {
    let _ = writeln!(out, "### Scaling (`backfill run`, defaults)\n");
    let _ = writeln!(
        out,
        "| rows | workers | batches | wall s | s per million rows | peak RSS MB | \
         s outside batches | batch ms, first ¼ | batch ms, last ¼ |"
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

fn targets_table(out: &mut String, targets: &[Target]) {
    let _ = writeln!(out, "### Targets\n");
    let _ = writeln!(out, "| target | measured | met |");
    let _ = writeln!(out, "|---|--:|---|");
    for t in targets {
        let met = if t.met { "yes" } else { "**no**" };
        let _ = writeln!(out, "| {} | {} | {met} |", t.target, t.measured);
    }
    out.push('\n');
}
