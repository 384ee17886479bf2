//! What a job's events make of its progress: the total and its refinements, the bar's message
//! in every condition, each event's text, the crew, the heap and the vacuums.

use super::*;

/// A job estimated at 5,000 rows that has done 504,500.
fn past_its_estimate() -> Track {
    let t0 = Instant::now();
    let mut track = Track::default();
    track.apply(&started(5000, 0), t0);
    track.apply(&batch_toward(500_000, 5000), t0 + secs(9));
    track.apply(&batch_toward(504_500, 5000), t0 + secs(10));
    track
}

#[test]
fn a_batch_brings_the_refined_total_and_with_it_the_eta() {
    let t0 = Instant::now();
    let mut track = Track::default();
    track.apply(&started(5000, 0), t0);
    track.apply(&batch_toward(100_000, 1_000_000), t0 + secs(2));
    track.apply(&batch_toward(150_000, 1_010_000), t0 + secs(3));
    assert_eq!(
        track.progress_text(),
        "150.0k/1.01M rows (14%)  50.0k rows/s  ETA 17s  batch 5000"
    );
}

#[test]
fn skipped_rows_are_counted_and_each_said() {
    let mut track = busy_track(Instant::now());
    let skipped = Event::Skipped {
        job: JOB.to_owned(),
        worker: 0,
        range: Some(1),
        row: "(id)=(77777)".to_owned(),
        key: vec!["77777".to_owned()],
        sqlstate: "22P02".to_owned(),
        message: "invalid input syntax for type bigint: \"n/a\" [SQLSTATE 22P02]".to_owned(),
    };
    track.apply(&skipped, Instant::now());
    assert_eq!(
        track.event_text(&skipped),
        "row (id)=(77777) skipped, set aside in the failures table: invalid input syntax for \
         type bigint: \"n/a\" [SQLSTATE 22P02]"
    );
    assert!(
        track
            .bar_message(None)
            .ends_with("batch 5000  1 row skipped  running"),
        "{}",
        track.bar_message(None)
    );
}

#[test]
fn past_the_estimate_the_total_is_unknown_not_the_rows_done() {
    let track = past_its_estimate();
    assert_eq!(track.counts_text(), "504.5k/? rows");
    assert_eq!(track.total(), None);
    assert_eq!(track.eta_text(), "ETA --");
}

#[test]
fn past_the_estimate_lines_say_so_instead_of_a_percentage() {
    assert_eq!(
        past_its_estimate().progress_text(),
        "504.5k/? rows (past the 5.0k estimate)  50.5k rows/s  ETA --  batch 5000"
    );
}

#[test]
fn reaching_the_estimate_exactly_is_not_the_end() {
    let mut track = Track::default();
    track.apply(&started(5000, 0), Instant::now());
    track.apply(&batch_toward(5000, 5000), Instant::now());
    assert_eq!(track.counts_text(), "5.0k/? rows");
}

#[test]
fn the_total_is_the_rows_done_once_finished() {
    let mut track = past_its_estimate();
    track.apply(&finished(510_000, 11_000), Instant::now());
    assert_eq!(track.counts_text(), "510.0k/510.0k rows");
}

#[test]
fn bar_message_while_running() {
    assert_eq!(
        busy_track(Instant::now()).bar_message(None),
        "1.21M/2.00M rows  48.4k rows/s  ETA 16s  batch 5000  running"
    );
}

#[test]
fn bar_message_while_paused_has_no_eta() {
    let mut track = busy_track(Instant::now());
    track.apply(&paused("by operator"), Instant::now());
    assert_eq!(
        track.bar_message(None),
        "1.21M/2.00M rows  paused: by operator"
    );
}

#[test]
fn bar_message_fits_an_80_column_terminal_without_cutting_a_number() {
    // `users_status_flag ▕…16 cells…▏ ` leaves 43 of 80 columns to the message.
    let track = busy_track(Instant::now());
    assert_eq!(
        track.bar_message(Some(43)),
        "1.21M/2.00M rows  ETA 16s  running"
    );
    assert_eq!(
        track.bar_message(Some(60)),
        "1.21M/2.00M rows  48.4k rows/s  ETA 16s  batch 5000  running"
    );
}

#[test]
fn a_long_pause_reason_is_shortened_at_a_word_to_fit() {
    let mut track = busy_track(Instant::now());
    let reason = "pid 4711 (psql, alice) holds AccessExclusiveLock on \"public\".\"users\": \
                  ALTER TABLE users ADD COLUMN x int";
    track.apply(&paused(reason), Instant::now());
    assert_eq!(
        track.bar_message(Some(43)),
        "1.21M/2.00M rows  paused: pid 4711 (psql…"
    );
}

#[test]
fn bar_message_while_throttled() {
    let mut track = busy_track(Instant::now());
    let throttled = Event::Throttled {
        job: JOB.to_owned(),
        reason: "82% of max_connections in use".to_owned(),
        signal: Some("connections".to_owned()),
    };
    track.apply(&throttled, Instant::now());
    assert_eq!(
        track.bar_message(None),
        "1.21M/2.00M rows  48.4k rows/s  ETA 16s  batch 5000  \
         throttled: 82% of max_connections in use"
    );
}

#[test]
fn bar_message_while_guarded_until_running() {
    let mut track = busy_track(Instant::now());
    let guarded = Event::Guarded {
        job: JOB.to_owned(),
        reason: "probe 4.1 ms (baseline 1.2 ms)".to_owned(),
        probe_ms: 4.1,
        baseline_ms: 1.2,
    };
    assert!(track.apply(&guarded, Instant::now()));
    assert_eq!(
        track.bar_message(None),
        "1.21M/2.00M rows  48.4k rows/s  ETA 16s  batch 5000  \
         guarded: probe 4.1 ms (baseline 1.2 ms)"
    );
    assert_eq!(
        event_text(&guarded),
        "guarded: probe 4.1 ms (baseline 1.2 ms)"
    );
    // The next batches bring the probe as it changes.
    let slower = batch_probed(1_220_000, 2_000_000, Some(6.25));
    track.apply(&slower, Instant::now());
    assert!(
        track
            .bar_message(None)
            .ends_with("guarded: probe 6.2 ms (baseline 1.2 ms)"),
        "{}",
        track.bar_message(None)
    );
    let released = Event::Released {
        job: JOB.to_owned(),
        reason: "probe 1.1 ms (baseline 1.2 ms)".to_owned(),
        probe_ms: 1.1,
        baseline_ms: 1.2,
    };
    assert!(track.apply(&released, Instant::now()));
    assert_eq!(
        event_text(&released),
        "released: probe 1.1 ms (baseline 1.2 ms); the latency guard lets the run go at full speed"
    );
    assert!(track.bar_message(None).ends_with("running"));
    let ready = Event::GuardReady {
        job: JOB.to_owned(),
        baseline_ms: 1.234,
    };
    assert_eq!(
        event_text(&ready),
        "latency guard on: its probe's baseline is 1.2 ms"
    );
}

#[test]
fn retry_is_shown_until_the_next_batch() {
    let t0 = Instant::now();
    let mut track = busy_track(t0);
    track.apply(&retry(), t0 + secs(15));
    track.apply(&batch(1_215_000), t0 + secs(16));
    assert_eq!(track.status_text(), "running");
}

#[test]
fn bar_message_while_retrying() {
    let mut track = busy_track(Instant::now());
    track.apply(&retry(), Instant::now());
    assert_eq!(
        track.status_text(),
        "retrying (attempt 2): canceling statement due to lock timeout"
    );
}

#[test]
fn started_text() {
    let mut track = Track::default();
    track.apply(&started(2_000_000, 0), Instant::now());
    assert_eq!(
        track.event_text(&started(2_000_000, 0)),
        "started: 2.00M rows to change (estimate)"
    );
}

#[test]
fn one_row_to_change_is_one_row() {
    let mut track = Track::default();
    track.apply(&started(1, 0), Instant::now());
    assert_eq!(
        track.event_text(&started(1, 0)),
        "started: 1 row to change (estimate)"
    );
}

#[test]
fn resumed_text() {
    let mut track = Track::default();
    track.apply(&started(2_000_000, 1_210_000), Instant::now());
    assert_eq!(
        track.event_text(&started(2_000_000, 1_210_000)),
        "resuming at 1.21M/2.00M rows"
    );
}

#[test]
fn batch_text_is_the_progress_line() {
    assert_eq!(
        busy_track(Instant::now()).event_text(&batch(1_210_000)),
        "1.21M/2.00M rows (60%)  48.4k rows/s  ETA 16s  batch 5000"
    );
}

#[test]
fn retry_text() {
    assert_eq!(
        event_text(&retry()),
        "retrying (attempt 2) in 1.5s: canceling statement due to lock timeout"
    );
}

#[test]
fn paused_text() {
    assert_eq!(
        event_text(&paused("replica lag 12s")),
        "paused: replica lag 12s"
    );
}

#[test]
fn throttled_text() {
    let throttled = Event::Throttled {
        job: JOB.to_owned(),
        reason: "throttle_query returned 3".to_owned(),
        signal: Some("throttle_query".to_owned()),
    };
    assert_eq!(
        event_text(&throttled),
        "throttled: throttle_query returned 3"
    );
}

#[test]
fn running_text() {
    assert_eq!(event_text(&running()), "running");
}

#[test]
fn a_job_that_waited_for_a_lock_before_it_started_is_ready_not_running() {
    let t0 = Instant::now();
    let mut track = Track::default();
    track.apply(&paused("pid 42 holds AccessExclusiveLock on the table"), t0);
    assert_eq!(
        track.bar_message(None),
        "0/? rows  paused: pid 42 holds AccessExclusiveLock on the table"
    );
    track.apply(&running(), t0 + secs(1));
    assert_eq!(track.event_text(&running()), "ready to start");
    assert!(track.bar_message(None).ends_with("ready to start"));
    track.apply(&started(2_000, 0), t0 + secs(2));
    assert!(track.bar_message(None).ends_with("running"));
}

#[test]
fn finished_text_uses_this_runs_speed() {
    let finished = Event::Finished {
        job: JOB.to_owned(),
        rows_done: 2_000_000,
        batches_done: 400,
        elapsed_ms: 41_000,
        heap_bytes_before: None,
        heap_bytes_after: None,
    };
    assert_eq!(
        event_text(&finished),
        "done: 2.00M rows in 41s (48.8k rows/s)"
    );
}

#[test]
fn finished_text_of_a_resumed_run_tells_its_share_from_the_total() {
    let mut track = Track::default();
    track.apply(&started(1_000_000, 644_500), Instant::now());
    assert_eq!(
        track.event_text(&finished(1_000_000, 1_400)),
        "done: 1.00M rows (355.5k in this run, 1.4s, 253.9k rows/s)"
    );
}

#[test]
fn finished_text_of_an_instant_run_has_no_speed() {
    assert_eq!(
        Track::default().done_text(0, Duration::ZERO),
        "done: 0 rows in 0.0s (-- rows/s)"
    );
}

#[test]
fn interrupted_text() {
    let interrupted = Event::Interrupted {
        job: JOB.to_owned(),
        rows_done: 1_210_000,
    };
    assert_eq!(
        event_text(&interrupted),
        "stopped at 1.21M rows; run again to resume"
    );
}

#[test]
fn error_text() {
    let error = Event::Error {
        job: JOB.to_owned(),
        message: "column \"legacy_status\" does not exist".to_owned(),
    };
    assert_eq!(
        event_text(&error),
        "error: column \"legacy_status\" does not exist"
    );
}

fn crew(workers: u32, processes: u32, hosts: u32) -> Event {
    Event::Workers {
        job: JOB.to_owned(),
        workers,
        processes,
        hosts,
    }
}

#[test]
fn the_bar_names_the_workers_and_hosts_of_every_process() {
    let t0 = Instant::now();
    let mut track = busy_track(t0);
    assert!(track.apply(&crew(4, 2, 2), t0 + secs(16)));
    assert!(
        track.bar_message(None).contains("4 workers on 2 hosts"),
        "{}",
        track.bar_message(None)
    );
    assert!(track.apply(&crew(3, 2, 1), t0 + secs(17)));
    assert!(track.progress_text().contains("3 workers in 2 processes"));
    assert!(!track.apply(&crew(3, 2, 1), t0 + secs(18)), "no news");
    track.apply(&crew(1, 1, 1), t0 + secs(19));
    assert!(
        !track.bar_message(None).contains("worker"),
        "{}",
        track.bar_message(None)
    );
}

#[test]
fn a_joined_process_says_so() {
    let joined = Event::Started {
        job: JOB.to_owned(),
        total_estimate: 100,
        rows_done: 40,
        resumed: true,
        workers: 2,
        joined: true,
    };
    assert_eq!(event_text(&joined), "joined at 40/100 rows, 2 workers");
}

const MIB: u64 = 1024 * 1024;

fn heap(before: u64, now: u64) -> Event {
    Event::Heap {
        job: JOB.to_owned(),
        heap_bytes_before: before,
        heap_bytes: now,
    }
}

#[test]
fn the_progress_line_shows_the_heap_and_its_growth() {
    let t0 = Instant::now();
    let mut track = busy_track(t0);
    assert!(
        !track.apply(&heap(149 * MIB, 171 * MIB), t0 + secs(16)),
        "no line of its own"
    );
    assert!(
        track
            .progress_text()
            .ends_with("batch 5000  heap 149.0 MiB → 171.0 MiB (+15 %)"),
        "{}",
        track.progress_text()
    );
    assert!(
        track
            .bar_message(None)
            .ends_with("heap 149.0 MiB → 171.0 MiB (+15 %)  running"),
        "{}",
        track.bar_message(None)
    );
}

#[test]
fn the_done_line_shows_the_heap_before_and_after() {
    let finished = Event::Finished {
        job: JOB.to_owned(),
        rows_done: 2_000_000,
        batches_done: 400,
        elapsed_ms: 41_000,
        heap_bytes_before: Some(149 * MIB),
        heap_bytes_after: Some(171 * MIB),
    };
    assert_eq!(
        event_text(&finished),
        "done: 2.00M rows in 41s (48.8k rows/s); heap 149.0 MiB → 171.0 MiB (+15 %)"
    );
}

#[test]
fn the_bar_says_when_the_final_vacuum_runs() {
    let t0 = Instant::now();
    let mut track = busy_track(t0);
    let vacuum = |final_vacuum, state| Event::Vacuum {
        job: JOB.to_owned(),
        relation: "\"public\".\"users\"".to_owned(),
        final_vacuum,
        state,
        elapsed_ms: 0,
        reason: None,
    };
    assert!(track.apply(&vacuum(true, VacuumState::Started), t0 + secs(16)));
    assert!(track.bar_message(None).ends_with("final VACUUM (ANALYZE)"));
    assert!(track.apply(&vacuum(true, VacuumState::Done), t0 + secs(17)));
    assert!(track.bar_message(None).ends_with("running"));
    let pacing = vacuum(false, VacuumState::Done);
    assert!(
        !track.apply(&pacing, t0 + secs(18)),
        "a pacing vacuum is no news"
    );
}
