use super::*;

const JOB: &str = "fill";

fn batch(rows_done: u64, batches_done: u64) -> Event {
    Event::Batch {
        job: JOB.into(),
        worker: 0,
        range: 1,
        rows: 100,
        rows_done,
        batches_done,
        total_estimate: 8000 + rows_done,
        batch_size: 100,
        elapsed_ms: 12,
        pause_ms: 0,
        wal_bytes: None,
        probe_ms: None,
    }
}

/// The value of the sample `line_start` (name and labels), from the encoded text.
fn sample(metrics: &Metrics, line_start: &str) -> Option<f64> {
    metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
}

#[test]
fn counters_follow_the_jobs_totals_and_never_go_back() {
    let mut m = Metrics::new();
    m.record(&Event::Started {
        job: JOB.into(),
        workers: 1,
        joined: false,
        total_estimate: 8000,
        rows_done: 300,
        resumed: true,
    });
    m.record(&batch(400, 4));
    m.record(&batch(600, 6));
    m.record(&batch(500, 5)); // from another worker, late
    assert_eq!(
        sample(&m, "backfill_rows_done_total{job=\"fill\"}"),
        Some(600.0)
    );
    assert_eq!(
        sample(&m, "backfill_batches_total{job=\"fill\"}"),
        Some(6.0)
    );
    // The last batch's refined total, whichever worker sent it.
    assert_eq!(
        sample(&m, "backfill_rows_estimate{job=\"fill\"}"),
        Some(8500.0)
    );
    assert_eq!(sample(&m, "backfill_batch_size{job=\"fill\"}"), Some(100.0));
    assert_eq!(
        sample(&m, "backfill_batch_duration_seconds_count{job=\"fill\"}"),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &m,
            "backfill_batch_duration_seconds_bucket{le=\"0.02\",job=\"fill\"}"
        ),
        Some(3.0)
    );
}

#[test]
fn the_state_gauge_names_the_current_state_and_its_signal() {
    let mut m = Metrics::new();
    m.record(&Event::Running { job: JOB.into() });
    m.record(&Event::Paused {
        job: JOB.into(),
        reason: "replica lag 12s".into(),
        signal: Some("replica_lag".into()),
    });
    let paused = "backfill_state{job=\"fill\",state=\"paused\",signal=\"replica_lag\"}";
    let running = "backfill_state{job=\"fill\",state=\"running\",signal=\"\"}";
    assert_eq!(sample(&m, paused), Some(1.0));
    assert_eq!(sample(&m, running), Some(0.0));
    m.record(&Event::Running { job: JOB.into() });
    assert_eq!(sample(&m, paused), Some(0.0));
    assert_eq!(sample(&m, running), Some(1.0));
    m.record(&Event::Guarded {
        job: JOB.into(),
        reason: "probe 4.1 ms (baseline 1.2 ms)".into(),
        probe_ms: 4.1,
        baseline_ms: 1.2,
    });
    let guarded = "backfill_state{job=\"fill\",state=\"guarded\",signal=\"latency\"}";
    assert_eq!(sample(&m, guarded), Some(1.0));
    assert_eq!(sample(&m, running), Some(0.0));
}

#[test]
fn retries_and_yields_are_counted() {
    let mut m = Metrics::new();
    m.record(&Event::Retry {
        job: JOB.into(),
        worker: 0,
        range: Some(1),
        attempt: 1,
        delay_ms: 100,
        error: "lock timeout".into(),
        reconnecting: false,
    });
    m.record(&Event::Yielded {
        job: JOB.into(),
        worker: 0,
        range: Some(1),
        reason: "ALTER TABLE waits".into(),
    });
    assert_eq!(
        sample(&m, "backfill_retries_total{job=\"fill\"}"),
        Some(1.0)
    );
    assert_eq!(sample(&m, "backfill_yields_total{job=\"fill\"}"), Some(1.0));
    m.record(&Event::Skipped {
        job: JOB.into(),
        worker: 0,
        range: Some(1),
        row: "(id)=(77777)".into(),
        key: vec!["77777".into()],
        sqlstate: "22P02".into(),
        message: "invalid input syntax for type bigint: \"n/a\" [SQLSTATE 22P02]".into(),
    });
    assert_eq!(
        sample(&m, "backfill_rows_skipped_total{job=\"fill\"}"),
        Some(1.0)
    );
}

#[test]
fn addresses_are_host_and_port() {
    assert_eq!(
        parse_addr("127.0.0.1:9187"),
        Ok("127.0.0.1:9187".parse().unwrap())
    );
    assert!(parse_addr("localhost:9187").is_ok());
    let err = parse_addr("9187").unwrap_err();
    assert!(err.contains("expected HOST:PORT"), "{err}");
    assert!(parse_addr("127.0.0.1:99999").is_err());
}

#[test]
fn a_job_seen_in_the_state_tables_follows_its_counters_back_after_a_reset() {
    let mut m = Metrics::new();
    let row = |rows_done| crate::state::JobRow {
        rows_done,
        batches_done: rows_done / 10,
        ..crate::state::JobRow::example(JOB, "running")
    };
    m.observe(&row(1000), Some(8192));
    assert!(
        m.encode()
            .contains(&format!("backfill_rows_done_total{{job=\"{JOB}\"}} 1000"))
    );
    m.observe(&row(30), None);
    let text = m.encode();
    assert!(
        text.contains(&format!("backfill_rows_done_total{{job=\"{JOB}\"}} 30")),
        "{text}"
    );
    assert!(
        text.contains(&format!("backfill_heap_bytes{{job=\"{JOB}\"}} 8192")),
        "{text}"
    );
}
