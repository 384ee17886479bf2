//! Behaviour of [`Job::parse`] end to end: text in, `Job` or located error message out.
//!
//! One small assertion per rule of the job file. Table-name parsing, line/column arithmetic
//! and the FNV-1a primitive are tested beside their own code.

use std::path::Path;
use std::time::Duration;

use super::*;

pub(super) const FILE: &str = "jobs/x.toml";

/// Lines 1–4; tests append lines 5 onwards so that positions are easy to read.
pub(super) const MINIMAL: &str =
    "table = \"users\"\nwhere = \"flag IS NULL\"\n[set]\nflag = \"legacy\"\n";

pub(super) fn parse(text: &str) -> Result<Job, JobError> {
    Job::parse(text, Path::new(FILE))
}

pub(super) fn ok(text: &str) -> Job {
    parse(text).unwrap_or_else(|err| panic!("expected a valid job, got: {err}"))
}

pub(super) fn err(text: &str) -> String {
    match parse(text) {
        Ok(job) => panic!("expected an error, got {job:?}"),
        Err(err) => err.to_string(),
    }
}

pub(super) fn with(tail: &str) -> String {
    format!("{MINIMAL}{tail}")
}

pub(super) fn assert_has(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "{part:?} not in {message:?}");
    }
}

pub(super) const FULL: &str = r#"
name = "users-flag.v2"
table = '"Sales Data"."Users"'
key = ["tenant", "id"]
where = "  status_flag IS NULL  "
[set]
status_flag = "legacy_status"
"Total Cents" = "qty * price_cents"
[batch]
size = 300
min = 100
max = 400
target = "1s"
pause = "50ms"
pause_ratio = 0.5
workers = 3
on_error = "skip"
[timeouts]
statement = "10s"
lock = "500ms"
"#;

#[test]
fn full_file_round_trips_into_a_job() {
    let expected = Job {
        name: "users-flag.v2".to_owned(),
        table: TableName {
            schema: Some("Sales Data".to_owned()),
            name: "Users".to_owned(),
            case_kept: None,
        },
        key: Some(vec!["tenant".to_owned(), "id".to_owned()]),
        filter: "status_flag IS NULL".to_owned(),
        set: vec![
            Assignment {
                column: "Total Cents".to_owned(),
                expr: "qty * price_cents".to_owned(),
            },
            Assignment {
                column: "status_flag".to_owned(),
                expr: "legacy_status".to_owned(),
            },
        ],
        batch: BatchSettings {
            size: 300,
            min: 100,
            max: 400,
            target: Duration::from_secs(1),
            pause: Duration::from_millis(50),
            pause_ratio: 0.5,
            workers: 3,
            on_error: OnError::Skip,
        },
        timeouts: Timeouts {
            statement: Duration::from_secs(10),
            lock: Duration::from_millis(500),
        },
        throttle: ThrottlePolicy::default(),
        vacuum: VacuumPolicy::default(),
        guard: GuardPolicy::default(),
        source: FILE.into(),
    };
    assert_eq!(ok(FULL), expected);
}

#[test]
fn defaults_fill_what_the_file_leaves_out() {
    let job = ok(MINIMAL);
    let batch = BatchSettings {
        size: 2000,
        min: 1000,
        max: 5000,
        target: Duration::from_millis(200),
        pause: Duration::ZERO,
        pause_ratio: 0.0,
        workers: 1,
        on_error: OnError::Stop,
    };
    let timeouts = Timeouts {
        statement: Duration::from_secs(30),
        lock: Duration::from_secs(2),
    };
    assert_eq!((job.key, job.batch, job.timeouts), (None, batch, timeouts));
}

#[test]
fn name_defaults_to_the_file_stem() {
    assert_eq!(ok(MINIMAL).name, "x");
}

#[test]
fn default_size_is_clamped_up_to_min() {
    assert_eq!(ok(&with("[batch]\nmin = 3000\n")).batch.size, 3000);
}

#[test]
fn default_size_is_clamped_down_to_max() {
    assert_eq!(ok(&with("[batch]\nmax = 1500\n")).batch.size, 1500);
}

#[test]
fn load_reads_the_file() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/jobs/demo_orders.toml");
    assert_eq!(
        Job::load(Path::new(path))
            .map(|job| job.name)
            .ok()
            .as_deref(),
        Some("demo_orders")
    );
}

#[test]
fn every_example_job_file_parses() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/jobs");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).expect("jobs directory") {
        let path = entry.expect("directory entry").path();
        if path.extension().is_some_and(|ext| ext == "toml") {
            Job::load(&path).unwrap_or_else(|err| panic!("{err}"));
            seen += 1;
        }
    }
    assert!(seen >= 3, "expected at least 3 example jobs, found {seen}");
}

// ---- errors: reading and TOML ----

#[test]
fn missing_file_names_the_path_and_keeps_the_io_error_as_source() {
    let err = Job::load(Path::new("jobs/does-not-exist.toml")).unwrap_err();
    let source = std::error::Error::source(&err).map(ToString::to_string);
    assert_eq!(
        err.to_string(),
        "cannot read job file jobs/does-not-exist.toml"
    );
    assert_has(&source.unwrap_or_default(), &["No such file or directory"]);
}

#[test]
fn bad_toml_syntax_is_located() {
    assert_has(
        &err("table = \n"),
        &["jobs/x.toml:1:9: ", "string values must be quoted"],
    );
}

#[test]
fn duplicate_key_quotes_the_key() {
    assert_has(
        &err("table = 'a'\ntable = 'b'\n"),
        &["jobs/x.toml:2:1: ", "duplicate key", "`table`"],
    );
}

#[test]
fn unknown_top_level_key_is_located_and_lists_valid_keys() {
    assert_has(
        &err(&format!("tabel = 'x'\n{MINIMAL}")),
        &["jobs/x.toml:1:1: ", "unknown key `tabel`", "`table`"],
    );
}

#[test]
fn unknown_batch_key_is_located() {
    assert_has(
        &err(&with("[batch]\nsise = 10\n")),
        &["jobs/x.toml:6:1: ", "unknown key `sise`", "`size`"],
    );
}

#[test]
fn bad_duration_quotes_the_value_and_shows_valid_forms() {
    let message = err(&with("[batch]\ntarget = \"fast\"\n"));
    assert_has(&message, &["jobs/x.toml:6:10: ", "\"fast\"", "\"250ms\""]);
}

#[test]
fn wrong_type_is_located() {
    assert_has(
        &err(&with("[batch]\nsize = 1.5\n")),
        &["jobs/x.toml:6:8: ", "1.5"],
    );
}

// ---- errors: required keys ----

#[test]
fn missing_table_names_the_file_and_an_example() {
    let message = err("where = 'true'\n[set]\na = 'b'\n");
    assert_eq!(
        message,
        "jobs/x.toml: missing `table`; add the table to fill, e.g. table = \"public.users\""
    );
}

#[test]
fn missing_where_suggests_both_forms() {
    let message = err("table = 't'\n[set]\na = 'b'\n");
    assert_has(
        &message,
        &[
            "jobs/x.toml: missing `where`",
            "where = \"new_col IS NULL\"",
            "where = \"true\"",
        ],
    );
}

#[test]
fn blank_where_is_located() {
    let message = err("table = 't'\nwhere = '  '\n[set]\na = 'b'\n");
    assert_has(
        &message,
        &["jobs/x.toml:2:9: ", "`where` is empty", "where = \"true\""],
    );
}

#[test]
fn nul_in_where_is_refused() {
    let message = err("table = 't'\nwhere = \"a\\u0000\"\n[set]\na = 'b'\n");
    assert_has(&message, &["jobs/x.toml:2:9: ", "NUL byte"]);
}

#[test]
fn missing_set_is_reported() {
    assert_has(
        &err("table = 't'\nwhere = 'true'\n"),
        &["jobs/x.toml: missing [set]"],
    );
}

#[test]
fn empty_set_is_located() {
    assert_has(
        &err("table = 't'\nwhere = 'true'\n[set]\n"),
        &["jobs/x.toml:3:1: ", "[set] is empty"],
    );
}

#[test]
fn blank_set_expression_is_located() {
    assert_has(
        &err(&with("other = ''\n")),
        &["jobs/x.toml:5:9: ", "set.`other` has an empty expression"],
    );
}

// ---- errors: batch ----

#[test]
fn min_above_max_is_located_at_min() {
    let message = err(&with("[batch]\nmin = 6000\nmax = 5000\n"));
    assert_eq!(
        message,
        "jobs/x.toml:6:7: batch.min (6000) is larger than batch.max (5000); make min <= max"
    );
}

#[test]
fn min_above_default_max_is_refused() {
    assert_has(
        &err(&with("[batch]\nmin = 6000\n")),
        &["jobs/x.toml:6:7: ", "(6000)", "(5000)"],
    );
}

#[test]
fn zero_min_is_out_of_bounds() {
    assert_has(
        &err(&with("[batch]\nmin = 0\n")),
        &["jobs/x.toml:6:7: ", "batch.min (0) is outside 1..=100000"],
    );
}

#[test]
fn huge_max_is_out_of_bounds() {
    assert_has(
        &err(&with("[batch]\nmax = 100001\n")),
        &["jobs/x.toml:6:7: ", "batch.max (100001) is outside"],
    );
}

#[test]
fn negative_size_is_out_of_bounds() {
    assert_has(
        &err(&with("[batch]\nsize = -5\n")),
        &["jobs/x.toml:6:8: ", "batch.size (-5) is outside"],
    );
}

#[test]
fn explicit_size_outside_min_max_is_refused() {
    let message = err(&with("[batch]\nsize = 500\n"));
    assert_has(
        &message,
        &["jobs/x.toml:6:8: ", "batch.size (500)", "(1000..=5000)"],
    );
}

#[test]
fn zero_target_is_refused() {
    assert_has(
        &err(&with("[batch]\ntarget = \"0s\"\n")),
        &["jobs/x.toml:6:10: ", "batch.target (0s)"],
    );
}

// ---- errors: timeouts ----

#[test]
fn zero_lock_says_it_disables_the_timeout() {
    let message = err(&with("[timeouts]\nlock = \"0s\"\n"));
    assert_has(
        &message,
        &[
            "jobs/x.toml:6:8: ",
            "timeouts.lock (0s)",
            "0 disables the timeout",
        ],
    );
}

#[test]
fn sub_millisecond_lock_is_refused() {
    assert_has(
        &err(&with("[timeouts]\nlock = \"500us\"\n")),
        &["jobs/x.toml:6:8: ", "(500us) is less than 1ms"],
    );
}

#[test]
fn zero_statement_is_refused() {
    assert_has(
        &err(&with("[timeouts]\nstatement = \"0s\"\n")),
        &["jobs/x.toml:6:13: ", "0 disables the timeout"],
    );
}

#[test]
fn statement_beyond_postgres_limit_is_refused() {
    assert_has(
        &err(&with("[timeouts]\nstatement = \"25days\"\n")),
        &["jobs/x.toml:6:13: ", "longer than PostgreSQL allows"],
    );
}

#[test]
fn statement_not_above_lock_is_refused() {
    let message = err(&with("[timeouts]\nstatement = \"2s\"\n"));
    assert_has(
        &message,
        &[
            "jobs/x.toml:6:13: ",
            "timeouts.statement (2s) must be larger than timeouts.lock (2s)",
        ],
    );
}

#[test]
fn statement_not_above_target_is_refused() {
    let message = err(&with(
        "[batch]\ntarget = \"5s\"\n[timeouts]\nstatement = \"4s\"\nlock = \"1s\"\n",
    ));
    assert_has(
        &message,
        &[
            "jobs/x.toml:8:13: ",
            "timeouts.statement (4s) must be larger than batch.target (5s)",
        ],
    );
}

#[test]
fn statement_not_above_target_points_at_target_when_statement_is_default() {
    assert_has(
        &err(&with("[batch]\ntarget = \"31s\"\n")),
        &["jobs/x.toml:6:10: ", "batch.target (31s)"],
    );
}

#[test]
fn problem_is_available_for_matching() {
    let err = parse(&with("[batch]\nmin = 6000\n")).unwrap_err();
    assert_eq!(
        err.problem(),
        Some(&Problem::MinAboveMax {
            min: 6000,
            max: 5000
        })
    );
}

#[test]
fn workers_default_to_one_and_stay_within_bounds() {
    assert_eq!(parse(&with("")).unwrap().batch.workers, 1);
    assert_eq!(
        parse(&with("[batch]\nworkers = 64\n"))
            .unwrap()
            .batch
            .workers,
        64
    );
    for bad in [0, 65, -1] {
        let err = parse(&with(&format!("[batch]\nworkers = {bad}\n"))).unwrap_err();
        assert_eq!(err.problem(), Some(&Problem::WorkersOutOfBounds(bad)));
        assert!(err.to_string().starts_with("jobs/x.toml:6:11: "), "{err}");
    }
}

#[test]
fn on_error_is_stop_or_skip() {
    assert_eq!(parse(&with("")).unwrap().batch.on_error, OnError::Stop);
    let skip = parse(&with("[batch]\non_error = \"skip\"\n")).unwrap();
    assert_eq!(skip.batch.on_error, OnError::Skip);
    let err = parse(&with("[batch]\non_error = \"ignore\"\n")).unwrap_err();
    assert_eq!(
        err.problem(),
        Some(&Problem::BadOnError("ignore".to_owned()))
    );
    assert!(err.to_string().starts_with("jobs/x.toml:6:12: "), "{err}");
    assert!(err.to_string().contains("\"skip\""), "{err}");
}

#[test]
fn pause_ratio_is_a_finite_ratio_of_at_least_zero() {
    assert_eq!(
        ok(&with("[batch]\npause_ratio = 2\n")).batch.pause_ratio,
        2.0
    );
    for bad in ["-0.5", "nan", "inf", "1001"] {
        assert_has(
            &err(&with(&format!("[batch]\npause_ratio = {bad}\n"))),
            &[
                "jobs/x.toml:6:15: ",
                "batch.pause_ratio (",
                "must be at least 0 and at most 1000",
                "pause_ratio = 1 leaves the application half of the time",
            ],
        );
    }
}
