//! The MySQL section as Markdown: per flavor, the server and its settings, the medians of
//! every method with their ratios, the guides' loop's sampled statements, the profiled runs,
//! and the DDL wait (in PostgreSQL's table). The targets are `crate::targets`'s, printed with
//! the others.

use std::fmt::Write as _;

use super::{Flavored, LOOP, Results};

/// The section's tables, one set per flavor.
pub fn markdown(out: &mut String, results: &Results) {
    let _ = writeln!(
        out,
        "### MySQL and MariaDB ({} rows; {} interleaved rounds: throughput as medians, DDL \
         waits pooled)\n",
        results.rows, results.rounds
    );
    for flavored in &results.flavors {
        flavor(out, flavored);
    }
}

fn flavor(out: &mut String, f: &Flavored) {
    let _ = writeln!(out, "#### {} {}\n", f.flavor, f.version);
    if let Some(why) = &f.skipped {
        let _ = writeln!(out, "**Not measured:** {}\n", why.replace('\n', " "));
    }
    if !f.settings.is_empty() {
        let settings: Vec<String> = f.settings.iter().map(|(n, v)| format!("{n}={v}")).collect();
        let table = Some(f.table_mb)
            .filter(|mb| *mb > 0.0)
            .map_or(String::new(), |mb| format!(" Table: {mb:.0} MB."));
        let _ = writeln!(out, "Global variables: {}.{table}\n", settings.join(", "));
    }
    if !f.windows.is_empty() {
        methods(out, f);
        depths(out, f);
    }
    for p in &f.profiles {
        profile(out, p);
    }
    if let Some(ddl) = &f.ddl {
        ddl_wait(out, ddl);
    }
}

/// The DDL wait: each mode's waits pooled over the rounds, then every window's p99.
fn ddl_wait(out: &mut String, ddl: &super::ddl::DdlWait) {
    let _ = writeln!(
        out,
        "DDL wait (`ALTER TABLE … ADD COLUMN` ×{} per window, each inside a ~2 s batch; {} \
         rounds, waits pooled):\n",
        crate::ddl::ALTERS,
        ddl.rounds
    );
    crate::report::ddl_rows(out, &ddl.modes);
    let by_round: Vec<String> = ddl
        .windows
        .iter()
        .map(|w| {
            format!(
                "round {} {}: {:.0}",
                w.round, w.waits.mode, w.waits.summary.p99
            )
        })
        .collect();
    let _ = writeln!(out, "p99 ms by window: {}.\n", by_round.join("; "));
}

fn methods(out: &mut String, f: &Flavored) {
    let _ = writeln!(
        out,
        "| method | rows/s | rows/s per round | × single UPDATE | × guides' loop | × 1 worker \
         | wall s | transactions | redo MB | peak RSS MB (max) | RSS at exit MB | server CPU s \
         | client CPU s | others' CPU s | run queue | time in batches |"
    );
    let _ = writeln!(
        out,
        "|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
    );
    let figure = |v: Option<f64>, digits: usize| v.map_or("-".into(), |v| format!("{v:.digits$}"));
    for m in &f.methods {
        let rounds: Vec<String> = m
            .rows_per_s_by_round
            .iter()
            .map(|r| format!("{r:.0}"))
            .collect();
        let estimated = if m.estimated { " (estimated)" } else { "" };
        let _ = writeln!(
            out,
            "| {}{estimated} | {:.0} | {} | {:.3} | {} | {} | {:.1} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} |",
            m.method,
            m.rows_per_s,
            rounds.join(", "),
            m.vs_update,
            figure(m.vs_loop, 1),
            figure(m.vs_one_worker, 2),
            m.wall_s,
            m.transactions,
            figure(m.redo_mb, 0),
            figure(m.peak_rss_kb.map(|kb| kb as f64 / 1024.0), 1),
            figure(m.last_rss_kb.map(|kb| kb as f64 / 1024.0), 1),
            figure(m.server_cpu_s, 1),
            figure(m.client_cpu_s, 1),
            figure(m.others_cpu_s, 1),
            figure(m.run_queue, 2),
            m.in_batches
                .map_or("-".into(), |share| format!("{:.0} %", 100.0 * share)),
        );
    }
    out.push('\n');
}

/// The guides' loop's sampled statements: ms per statement at each depth, per round.
fn depths(out: &mut String, f: &Flavored) {
    let sampled: Vec<_> = f
        .windows
        .iter()
        .filter(|w| w.method == LOOP)
        .filter_map(|w| {
            w.guides
                .as_ref()
                .filter(|g| g.estimated)
                .map(|g| (w.round, g))
        })
        .collect();
    let Some((_, first)) = sampled.first() else {
        return;
    };
    let heads: Vec<String> = first
        .depths
        .iter()
        .map(|d| format!("at {:.1} %", 100.0 * d.at))
        .collect();
    let _ = writeln!(
        out,
        "The guides' loop, sampled: ms per statement (median of the statements timed there)\n"
    );
    let _ = writeln!(
        out,
        "| round | {} | measured s | whole loop, estimated s |",
        heads.join(" | ")
    );
    let _ = writeln!(out, "|--:|{}--:|--:|", "--:|".repeat(heads.len()));
    for (round, g) in sampled {
        let ms: Vec<String> = g.depths.iter().map(|d| format!("{:.1}", d.ms)).collect();
        let _ = writeln!(
            out,
            "| {round} | {} | {:.1} | {:.0} |",
            ms.join(" | "),
            g.measured_s,
            g.wall_s
        );
    }
    out.push('\n');
}

fn profile(out: &mut String, p: &super::slowlog::Profile) {
    let _ = writeln!(
        out,
        "Profile of {} (slow query log on): {} batches of {:.0} rows, wall {:.1} s; a batch takes \
         {:.2} ms at the client, of which the server spends {:.2} ms in its statements.\n",
        p.method, p.batches, p.rows_per_batch, p.wall_s, p.batch_ms, p.server_ms_per_batch
    );
    let _ = writeln!(
        out,
        "| statement | executed | total ms | ms per batch | share of batch | lock wait ms |"
    );
    let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|");
    for c in &p.costs {
        let share = 100.0 * c.ms_per_batch / p.batch_ms.max(f64::MIN_POSITIVE);
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.3} | {share:.1} % | {:.0} |",
            c.kind, c.executed, c.total_ms, c.ms_per_batch, c.lock_ms
        );
    }
    out.push('\n');
}
