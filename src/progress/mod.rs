//! Turns the engine's [`Event`]s into what the operator sees.
//!
//! Owns all terminal output of a run: a live progress bar per job when stderr is a terminal,
//! plain throttled lines when it is not (CI logs), or NDJSON events on stdout for `--json`.
//! It is the only module that knows indicatif. It does not decide anything about the job: the
//! numbers it shows come from the events, and the rate and ETA are computed here from the recent
//! batches only. The total is the estimate of the `started` event, then the one each `batch`
//! event brings (the engine refines it from what the walk has seen). It never shows a job as
//! complete before it is: should the rows done reach the estimate, the total is shown as
//! unknown rather than equal to the rows done.
//!
//! Writing never panics: a closed stderr or stdout (say, `backfill run … | head`) loses the
//! output, not the run.
//!
//! Layout: this file writes lines and NDJSON and words numbers; `track.rs` follows each job's
//! events and words them; `bars.rs` draws bar mode; `scan.rs` shows the progress of `verify --values`' walk;
//! `vacuum.rs` words the vacuums; `fit.rs` fits the bar's message to the terminal.

mod bars;
mod fit;
pub mod scan;
mod track;
mod vacuum;

use std::collections::HashMap;
use std::io::{self, IsTerminal, Write};
use std::time::{Duration, Instant};

use bars::Bars;
use track::Track;

use crate::event::Event;

/// In lines mode, at most one progress line per job per this interval while batches arrive.
const LINE_INTERVAL: Duration = Duration::from_secs(5);

/// How often a bar redraws on its own, so that it stays live while no event arrives.
const TICK: Duration = Duration::from_millis(200);

/// How the progress of a run is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A live progress bar per job on stderr, for a person at a terminal.
    Bar,
    /// Plain lines on stderr, few enough for a CI log.
    Lines,
    /// Every event as one JSON object per line on stdout, for scripts; nothing on stderr.
    Json,
}

impl Mode {
    /// `Json` when asked for; otherwise a bar when stderr is a terminal and lines when it is not.
    pub fn detect(json: bool) -> Mode {
        if json {
            Mode::Json
        } else if io::stderr().is_terminal() {
            Mode::Bar
        } else {
            Mode::Lines
        }
    }
}

/// Whether escape codes (colours) may be written to stderr: only to a terminal, and not when
/// `NO_COLOR` is set to anything but the empty string (<https://no-color.org>). A log file or a
/// CI log gets plain text. The progress bar has no colours; this is for the log lines.
pub fn ansi_on_stderr() -> bool {
    io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Shows the events of a run as they happen, in one [`Mode`].
///
/// The engine calls [`Reporter::emit`] for every event, from one task, and [`Reporter::finish`]
/// when the run is over.
pub struct Reporter {
    tracks: HashMap<String, Track>,
    output: Output,
}

enum Output {
    Bar(Bars),
    Lines(Lines),
    Json,
}

impl Reporter {
    /// A reporter that writes in `mode`; nothing is written before the first event.
    pub fn new(mode: Mode) -> Reporter {
        let output = match mode {
            Mode::Bar => Output::Bar(Bars::default()),
            Mode::Lines => Output::Lines(Lines::default()),
            Mode::Json => Output::Json,
        };
        Reporter {
            tracks: HashMap::new(),
            output,
        }
    }

    /// Shows one event; cheap enough to call after every batch.
    pub fn emit(&mut self, event: &Event) {
        let now = Instant::now();
        match &mut self.output {
            Output::Json => write_json(event),
            Output::Bar(bars) => {
                let track = self.tracks.entry(event.job().to_owned()).or_default();
                track.apply(event, now);
                bars.show(event, track);
            }
            Output::Lines(lines) => {
                let track = self.tracks.entry(event.job().to_owned()).or_default();
                let news = track.apply(event, now);
                if let Some(line) = lines.line(event, track, news, now) {
                    write_stderr(&line);
                }
            }
        }
    }

    /// Ends the display with `line`, the run's last word (`cancelled by an operator…`): a
    /// live bar is cleared first, so that its last frame (`… running`) is not drawn again
    /// around the message.
    pub fn conclude(&mut self, line: &str) {
        match &self.output {
            // Through indicatif, which owns the terminal while bars are drawn.
            Output::Bar(bars) => {
                bars.clear_live();
                // Ignored on purpose, as in `write_stderr`.
                let _ = bars.multi.println(line);
            }
            Output::Lines(_) | Output::Json => write_stderr(line),
        }
    }

    /// Leaves every bar that is still live on screen as it is and stops its redraws. Called
    /// again on drop, so an early return in the caller does not wipe the bars.
    pub fn finish(&mut self) {
        if let Output::Bar(bars) = &self.output {
            bars.abandon_live();
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Lines mode: which line, if any, an event is worth.
#[derive(Debug, Default)]
struct Lines {
    /// When each job last had a progress line.
    last_progress: HashMap<String, Instant>,
}

impl Lines {
    /// Batches give a progress line at most every [`LINE_INTERVAL`] per job; every other event
    /// gives its line at once, unless it is no news. A stop and an error give none: the
    /// command's last word (`stopped after …, checkpoint saved`) and `main`'s `error: …` say
    /// them, once.
    fn line(&mut self, event: &Event, track: &Track, news: bool, now: Instant) -> Option<String> {
        let due = match event {
            Event::Batch { .. } => self.progress_due(event.job(), now),
            Event::Interrupted { .. } | Event::Error { .. } => false,
            _ => news,
        };
        due.then(|| format!("{}: {}", event.job(), track.event_text(event)))
    }

    fn progress_due(&mut self, job: &str, now: Instant) -> bool {
        let due = self
            .last_progress
            .get(job)
            .is_none_or(|last| now.duration_since(*last) >= LINE_INTERVAL);
        if due {
            self.last_progress.insert(job.to_owned(), now);
        }
        due
    }
}

fn write_stderr(line: &str) {
    // Ignored on purpose: a closed stderr must not stop the run.
    let _ = writeln!(io::stderr().lock(), "{line}");
}

fn write_json(event: &Event) {
    let mut out = io::stdout().lock();
    // Ignored on purpose: a reader that went away must not stop the run.
    let _ = serde_json::to_writer(&mut out, event)
        .map_err(io::Error::from)
        .and_then(|()| writeln!(out))
        .and_then(|()| out.flush());
}

/// A count with an SI suffix, three significant digits from a thousand on:
/// `999`, `1.0k`, `48.2k`, `1.21M`, `2.00M`, `3.50G`.
fn si(value: f64) -> String {
    const UNITS: [(f64, &str, usize); 3] = [(1e3, "k", 1), (1e6, "M", 2), (1e9, "G", 2)];
    if value.round() < 1000.0 {
        return format!("{value:.0}");
    }
    // The first unit whose rounded figure stays below a thousand: 999_999 is 1.00M, not 1000.0k.
    let (scale, suffix, decimals) = UNITS
        .into_iter()
        .find(|&(scale, _, decimals)| {
            let shift = 10f64.powi(decimals as i32);
            (value / scale * shift).round() / shift < 1000.0
        })
        .unwrap_or(UNITS[UNITS.len() - 1]);
    format!("{:.decimals$}{suffix}", value / scale)
}

/// `48.2k rows/s`, or `-- rows/s` while the rate is unknown.
fn rate_text(rows_per_sec: Option<f64>) -> String {
    match rows_per_sec {
        Some(rate) => format!("{} rows/s", si(rate)),
        None => "-- rows/s".to_owned(),
    }
}

/// `ETA 16s`: the remaining rows at the recent rate. `ETA --` when the rate is unknown or zero
/// (no finite ETA), or when the estimate is used up while the job still runs.
fn eta_text(remaining: u64, rows_per_sec: Option<f64>) -> String {
    let eta = rows_per_sec
        .filter(|_| remaining > 0)
        .and_then(|rate| Duration::try_from_secs_f64(remaining as f64 / rate).ok());
    match eta {
        Some(eta) => format!("ETA {}", duration_text(eta)),
        None => "ETA --".to_owned(),
    }
}

/// A short human duration: `0.4s`, `9.5s`, `41s`, `3m05s`, `2h03m`.
fn duration_text(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs < 10.0 {
        return format!("{secs:.1}s");
    }
    let whole = secs.round() as u64;
    match whole {
        0..60 => format!("{whole}s"),
        60..3600 => format!("{}m{:02}s", whole / 60, whole % 60),
        _ => format!("{}h{:02}m", whole / 3600, whole % 3600 / 60),
    }
}

#[cfg(test)]
mod tests;
