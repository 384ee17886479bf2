//! Unit tests of the progress display, with an injected clock and no terminal: the numbers'
//! words (counts, rates, ETAs, durations) and the plain-line throttle here, and in `track` what
//! a job's events make of its progress line, bar and texts. The events are built here, for both.

use super::*;
use crate::event::VacuumState;

const JOB: &str = "users_status_flag";

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn started(total_estimate: u64, rows_done: u64) -> Event {
    Event::Started {
        job: JOB.to_owned(),
        total_estimate,
        rows_done,
        resumed: rows_done > 0,
        workers: 1,
        joined: false,
    }
}

/// A batch of a job whose total is about 2,000,000 rows.
fn batch(rows_done: u64) -> Event {
    batch_toward(rows_done, 2_000_000)
}

/// A batch that brings the total `total_estimate`.
fn batch_toward(rows_done: u64, total_estimate: u64) -> Event {
    batch_probed(rows_done, total_estimate, None)
}

/// A batch that brings the total `total_estimate` and the latency guard's `probe_ms`.
fn batch_probed(rows_done: u64, total_estimate: u64, probe_ms: Option<f64>) -> Event {
    Event::Batch {
        job: JOB.to_owned(),
        worker: 0,
        range: 1,
        rows: 5000,
        rows_done,
        batches_done: rows_done / 5000,
        total_estimate,
        batch_size: 5000,
        elapsed_ms: 100,
        pause_ms: 0,
        wal_bytes: None,
        probe_ms,
    }
}

fn paused(reason: &str) -> Event {
    Event::Paused {
        job: JOB.to_owned(),
        reason: reason.to_owned(),
        signal: None,
    }
}

fn finished(rows_done: u64, elapsed_ms: u64) -> Event {
    Event::Finished {
        job: JOB.to_owned(),
        rows_done,
        batches_done: rows_done / 5000,
        elapsed_ms,
        heap_bytes_before: None,
        heap_bytes_after: None,
    }
}

fn running() -> Event {
    Event::Running {
        job: JOB.to_owned(),
    }
}

fn retry() -> Event {
    Event::Retry {
        job: JOB.to_owned(),
        worker: 0,
        range: Some(1),
        attempt: 2,
        delay_ms: 1500,
        error: "canceling statement due to lock timeout".to_owned(),
        reconnecting: false,
    }
}

/// What `event` says when it comes a second after the last batch of [`busy_track`].
fn event_text(event: &Event) -> String {
    let t0 = Instant::now();
    let mut track = busy_track(t0);
    track.apply(event, t0 + secs(16));
    track.event_text(event)
}

/// A job at 1.21M of 2.00M rows that moved 484k rows in the last 10 s (48.4k rows/s); the
/// start, 15 s ago, has left the rate window.
fn busy_track(t0: Instant) -> Track {
    let mut track = Track::default();
    track.apply(&started(2_000_000, 0), t0);
    track.apply(&batch(726_000), t0 + secs(5));
    track.apply(&batch(1_210_000), t0 + secs(15));
    track
}

#[test]
fn si_leaves_hundreds_alone() {
    assert_eq!(si(999.0), "999");
}

#[test]
fn si_writes_thousands_with_one_decimal() {
    assert_eq!(si(1000.0), "1.0k");
}

#[test]
fn si_rounds_thousands() {
    assert_eq!(si(48_249.0), "48.2k");
}

#[test]
fn si_writes_millions_with_two_decimals() {
    assert_eq!(si(1_210_000.0), "1.21M");
}

#[test]
fn si_keeps_trailing_zeros() {
    assert_eq!(si(2_000_000.0), "2.00M");
}

#[test]
fn si_moves_to_the_next_unit_when_rounding_reaches_a_thousand() {
    assert_eq!(si(999_999.0), "1.00M");
}

#[test]
fn si_writes_billions() {
    assert_eq!(si(3_500_000_000.0), "3.50G");
}

#[test]
fn eta_divides_remaining_by_rate() {
    assert_eq!(eta_text(790_000, Some(48_200.0)), "ETA 16s");
}

#[test]
fn eta_is_unknown_without_a_rate() {
    assert_eq!(eta_text(790_000, None), "ETA --");
}

#[test]
fn eta_is_unknown_at_zero_rate() {
    assert_eq!(eta_text(790_000, Some(0.0)), "ETA --");
}

#[test]
fn eta_is_unknown_when_it_would_overflow() {
    assert_eq!(eta_text(u64::MAX, Some(0.1)), "ETA --");
}

#[test]
fn eta_is_unknown_when_the_estimate_is_used_up() {
    assert_eq!(eta_text(0, Some(48_200.0)), "ETA --");
}

#[test]
fn duration_below_ten_seconds_has_a_decimal() {
    assert_eq!(duration_text(Duration::from_millis(420)), "0.4s");
}

#[test]
fn duration_in_minutes_pads_seconds() {
    assert_eq!(duration_text(secs(185)), "3m05s");
}

#[test]
fn duration_in_hours_pads_minutes() {
    assert_eq!(duration_text(secs(2 * 3600 + 3 * 60 + 40)), "2h03m");
}

/// Feeds events to a lines-mode output at the given seconds; returns the lines written.
fn lines_at(events: &[(u64, Event)]) -> Vec<String> {
    let t0 = Instant::now();
    let (mut lines, mut track) = (Lines::default(), Track::default());
    events
        .iter()
        .filter_map(|(at, event)| {
            let now = t0 + secs(*at);
            let news = track.apply(event, now);
            lines.line(event, &track, news, now)
        })
        .collect()
}

#[test]
fn lines_print_the_first_batch_at_once() {
    assert_eq!(lines_at(&[(0, batch(5000))]).len(), 1);
}

#[test]
fn lines_skip_batches_within_the_interval() {
    assert_eq!(lines_at(&[(0, batch(5000)), (4, batch(10_000))]).len(), 1);
}

#[test]
fn lines_print_a_batch_once_the_interval_passed() {
    assert_eq!(lines_at(&[(0, batch(5000)), (5, batch(10_000))]).len(), 2);
}

#[test]
fn lines_print_state_changes_at_once() {
    let events = [
        (0, batch(5000)),
        (1, paused("lock waiters")),
        (2, running()),
    ];
    assert_eq!(lines_at(&events).len(), 3);
}

#[test]
fn lines_skip_a_repeated_pause() {
    let events = [(0, paused("lock waiters")), (1, paused("lock waiters"))];
    assert_eq!(lines_at(&events).len(), 1);
}

#[test]
fn lines_skip_running_when_already_running() {
    assert_eq!(lines_at(&[(0, running())]), Vec::<String>::new());
}

#[test]
fn lines_leave_a_stop_and_an_error_to_the_command() {
    let stop = Event::Interrupted {
        job: JOB.to_owned(),
        rows_done: 618_128,
    };
    let error = Event::Error {
        job: JOB.to_owned(),
        message: "row (id)=(7) cannot be backfilled".to_owned(),
    };
    assert_eq!(
        lines_at(&[(0, batch(5000)), (1, stop), (2, error)]).len(),
        1,
        "only the batch's line"
    );
}

#[test]
fn lines_name_the_job() {
    assert_eq!(
        lines_at(&[(0, paused("lock waiters"))]),
        ["users_status_flag: paused: lock waiters"]
    );
}

mod track;
