//! Bar mode: one live bar per job on stderr, drawn by indicatif, which shows a fill level only
//! while the total is known and a sweep while it is not.

use std::collections::HashMap;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::{TICK, Track};
use crate::event::Event;

/// The bars of bar mode, one per job, drawn together on stderr.
#[derive(Default)]
pub(super) struct Bars {
    pub(super) multi: MultiProgress,
    pub(super) bars: HashMap<String, ProgressBar>,
}

impl Bars {
    /// Brings the job's bar up to date with its track (the event is already applied).
    pub(super) fn show(&mut self, event: &Event, track: &Track) {
        let Bars { multi, bars } = self;
        let bar = bars
            .entry(event.job().to_owned())
            .or_insert_with(|| new_bar(multi, event.job(), track));
        shape(bar, track.total());
        bar.set_position(track.rows_done);
        match event {
            Event::Finished { .. } => bar.finish_with_message(track.event_text(event)),
            // The command's last word replaces the bar (`Reporter::conclude`): saying the stop
            // here too would say it twice.
            Event::Interrupted { .. } => {}
            // `main` prints the error under the bar, which stays where the job got to.
            Event::Error { .. } => bar.abandon_with_message(format!(
                "{}  stopped by the error below",
                track.counts_text()
            )),
            _ => bar.set_message(track.bar_message(room(event.job()))),
        }
    }

    pub(super) fn abandon_live(&self) {
        for bar in self.bars.values().filter(|bar| !bar.is_finished()) {
            bar.abandon();
        }
    }

    pub(super) fn clear_live(&self) {
        for bar in self.bars.values().filter(|bar| !bar.is_finished()) {
            bar.finish_and_clear();
        }
    }
}

/// A bar under `multi` that starts out showing the track, so its first frame is not empty.
fn new_bar(multi: &MultiProgress, job: &str, track: &Track) -> ProgressBar {
    let bar = multi.add(
        ProgressBar::no_length()
            .with_position(track.rows_done)
            .with_message(track.bar_message(room(job)))
            .with_style(unknown_total_style())
            .with_prefix(job.to_owned()),
    );
    shape(&bar, track.total());
    bar.enable_steady_tick(TICK);
    bar
}

/// Gives the bar `total` as its length, or, when the total is unknown, no length and a sweep
/// instead of a fill level (a full or an empty bar would both say something untrue).
pub(super) fn shape(bar: &ProgressBar, total: Option<u64>) {
    match (total, bar.length()) {
        (Some(total), None) => {
            bar.set_style(bar_style());
            bar.set_length(total);
        }
        (Some(total), Some(_)) => bar.set_length(total),
        (None, Some(_)) => {
            bar.unset_length();
            bar.set_style(unknown_total_style());
        }
        (None, None) => {}
    }
}

/// Width of the bar, in cells.
const BAR_WIDTH: usize = 16;

/// The columns the message of `job`'s bar has on stderr's terminal (the same terminal
/// indicatif draws on), after `job ▕…▏ `; `None` when stderr's width is unknown.
fn room(job: &str) -> Option<usize> {
    let (_, columns) = console::Term::stderr().size_checked()?;
    Some(usize::from(columns).saturating_sub(job.chars().count() + BAR_WIDTH + 4))
}

/// `users_status_flag ▕█████████▌      ▏ <message>`; the message carries all the numbers.
pub(super) fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template(&format!("{{prefix}} ▕{{bar:{BAR_WIDTH}}}▏ {{msg}}"))
        .expect("the bar template is valid")
        .progress_chars("█▉▊▋▌▍▎▏ ")
}

/// `users_status_flag ▕    █           ▏ <message>`: a block sweeping the bar while the total
/// is unknown.
pub(super) fn unknown_total_style() -> ProgressStyle {
    let frames: Vec<String> = (0..BAR_WIDTH)
        .chain((1..BAR_WIDTH - 1).rev())
        .map(|at| format!("{}█{}", " ".repeat(at), " ".repeat(BAR_WIDTH - 1 - at)))
        .chain([" ".repeat(BAR_WIDTH)])
        .collect();
    let frames: Vec<&str> = frames.iter().map(String::as_str).collect();
    ProgressStyle::with_template("{prefix} ▕{spinner}▏ {msg}")
        .expect("the sweep template is valid")
        .tick_strings(&frames)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io;

    use super::*;
    use crate::progress::{Output, Reporter};

    const JOB: &str = "users_status_flag";

    fn started(total_estimate: u64) -> Event {
        Event::Started {
            job: JOB.to_owned(),
            workers: 1,
            joined: false,
            total_estimate,
            rows_done: 0,
            resumed: false,
        }
    }

    fn batch(rows_done: u64) -> Event {
        Event::Batch {
            job: JOB.to_owned(),
            worker: 0,
            range: 1,
            rows: 5000,
            rows_done,
            batches_done: 1,
            total_estimate: 2_000_000,
            batch_size: 5000,
            elapsed_ms: 100,
            pause_ms: 0,
            wal_bytes: None,
            probe_ms: None,
        }
    }

    #[test]
    fn bar_templates_are_valid() {
        bar_style();
        unknown_total_style();
    }

    #[test]
    fn a_bar_past_its_estimate_has_no_length_until_it_finishes() {
        let bar = ProgressBar::hidden();
        shape(&bar, Some(5000));
        assert_eq!(bar.length(), Some(5000));
        shape(&bar, None);
        assert_eq!(bar.length(), None);
        shape(&bar, Some(510_000));
        assert_eq!(bar.length(), Some(510_000));
    }

    /// A terminal that keeps what is on its screen, for indicatif to draw on.
    #[derive(Debug, Clone, Default)]
    struct Screen(std::sync::Arc<std::sync::Mutex<(Vec<String>, usize)>>);

    impl Screen {
        fn text(&self) -> String {
            let screen = self.0.lock().unwrap();
            screen.0.join("\n")
        }

        fn edit(&self, f: impl FnOnce(&mut Vec<String>, &mut usize)) -> io::Result<()> {
            let mut screen = self.0.lock().unwrap();
            let (lines, row) = &mut *screen;
            if lines.len() <= *row {
                lines.resize(*row + 1, String::new());
            }
            f(lines, row);
            Ok(())
        }
    }

    impl indicatif::TermLike for Screen {
        fn width(&self) -> u16 {
            120
        }
        fn move_cursor_up(&self, n: usize) -> io::Result<()> {
            self.edit(|_, row| *row = row.saturating_sub(n))
        }
        fn move_cursor_down(&self, n: usize) -> io::Result<()> {
            self.edit(|_, row| *row += n)
        }
        fn move_cursor_right(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> io::Result<()> {
            self.edit(|lines, row| {
                lines[*row].push_str(s);
                *row += 1;
            })
        }
        fn write_str(&self, s: &str) -> io::Result<()> {
            self.edit(|lines, row| lines[*row].push_str(s))
        }
        fn clear_line(&self) -> io::Result<()> {
            self.edit(|lines, row| lines[*row].clear())
        }
        fn flush(&self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A reporter drawing its bars on a screen the test reads.
    fn on_screen() -> (Screen, Reporter) {
        let screen = Screen::default();
        let target = indicatif::ProgressDrawTarget::term_like(Box::new(screen.clone()));
        let reporter = Reporter {
            tracks: HashMap::new(),
            output: Output::Bar(Bars {
                multi: MultiProgress::with_draw_target(target),
                bars: HashMap::new(),
            }),
        };
        (screen, reporter)
    }

    #[test]
    fn the_last_word_replaces_the_live_bar() {
        let (screen, mut reporter) = on_screen();
        reporter.emit(&started(2_000_000));
        reporter.emit(&batch(5000));
        let Output::Bar(bars) = &reporter.output else {
            unreachable!()
        };
        bars.bars[JOB].tick();
        assert!(screen.text().contains("running"), "{}", screen.text());

        reporter.conclude("users_status_flag: cancelled by an operator after 5000 rows");
        reporter.finish();
        let text = screen.text();
        assert!(
            !text.contains("running"),
            "the bar is still on screen:\n{text}"
        );
        assert_eq!(
            text.trim(),
            "users_status_flag: cancelled by an operator after 5000 rows"
        );
    }

    #[test]
    fn a_stop_is_said_once() {
        let (screen, mut reporter) = on_screen();
        reporter.emit(&started(2_000_000));
        reporter.emit(&batch(5000));
        reporter.emit(&Event::Interrupted {
            job: JOB.to_owned(),
            rows_done: 5000,
        });
        reporter.conclude(
            "users_status_flag: stopped after 5000 rows, checkpoint saved; run it again to resume",
        );
        reporter.finish();
        assert_eq!(
            screen.text().trim(),
            "users_status_flag: stopped after 5000 rows, checkpoint saved; run it again to resume"
        );
    }
}
