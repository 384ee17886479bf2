//! `[throttle]` → [`ThrottlePolicy`]: defaults and the checks that need only the file.
//!
//! Whether `throttle_query` runs is the server's business (`preflight` runs it once before
//! anything is written); here it is only trimmed and checked for being there at all.

use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::error::{JobError, Problem};
use super::rate::parse_byte_rate;
use super::raw::{RawDuration, RawRate, RawText, RawThrottle};
use super::validate::{Checker, duration};
use super::{ThrottlePolicy, defaults::throttle as default};

impl Checker<'_> {
    pub(super) fn throttle(&self, raw: RawThrottle) -> Result<ThrottlePolicy, JobError> {
        let poll = self.poll("throttle.poll", raw.poll.as_ref(), default::POLL)?;
        let batch_poll = self.poll(
            "throttle.batch_poll",
            raw.batch_poll.as_ref(),
            default::BATCH_POLL,
        )?;
        if batch_poll > poll {
            let span = span_of(raw.batch_poll.as_ref()).or(span_of(raw.poll.as_ref()));
            return Err(self.invalid(span, Problem::BatchPollAbovePoll { batch_poll, poll }));
        }
        let fail_closed_after =
            duration(raw.fail_closed_after.as_ref(), default::FAIL_CLOSED_AFTER);
        if fail_closed_after <= poll {
            let span = span_of(raw.fail_closed_after.as_ref()).or(span_of(raw.poll.as_ref()));
            let problem = Problem::FailClosedNotAbovePoll {
                fail_closed_after,
                poll,
            };
            return Err(self.invalid(span, problem));
        }
        Ok(ThrottlePolicy {
            enabled: raw.enabled.unwrap_or(true),
            poll,
            batch_poll,
            cooldown: duration(raw.cooldown.as_ref(), default::COOLDOWN),
            yield_to_waiters: raw.yield_to_waiters.unwrap_or(true),
            pause_on_table_locks: raw.pause_on_table_locks.unwrap_or(true),
            max_connection_use: self.connection_use(raw.max_connection_use)?,
            max_idle_in_transaction: duration(
                raw.max_idle_in_transaction.as_ref(),
                default::MAX_IDLE_IN_TRANSACTION,
            ),
            max_replica_lag: duration(raw.max_replica_lag.as_ref(), default::MAX_REPLICA_LAG),
            max_replica_lag_bytes: self.limit(raw.max_replica_lag_bytes, &REPLICA_LAG_BYTES)?,
            max_slot_lag_bytes: self.limit(raw.max_slot_lag_bytes, &SLOT_LAG_BYTES)?,
            ignore_slots: self.slot_names(raw.ignore_slots)?,
            max_archive_lag: self.limit(raw.max_archive_lag, &ARCHIVE_LAG)?,
            max_active_sessions: self.limit(raw.max_active_sessions, &ACTIVE_SESSIONS)?,
            max_history_length: self.limit(raw.max_history_length, &HISTORY_LENGTH)?,
            watch_autovacuum: raw.watch_autovacuum.unwrap_or(true),
            throttle_query: self.throttle_query(raw.throttle_query)?,
            throttle_file: self.throttle_file(raw.throttle_file)?,
            fail_closed_after,
            max_pause: duration(raw.max_pause.as_ref(), default::MAX_PAUSE),
            max_wal_rate: self.wal_rate(raw.max_wal_rate)?,
        })
    }

    /// `max_wal_rate` in bytes per second, or `None` when absent.
    fn wal_rate(&self, value: Option<Spanned<RawRate>>) -> Result<Option<u64>, JobError> {
        let Some(value) = value else { return Ok(None) };
        let span = Some(value.span());
        let (shown, read) = match value.into_inner() {
            RawRate::Text(text) => {
                let read = parse_byte_rate(&text);
                (format!("{text:?}"), read)
            }
            RawRate::Number(n) => (n.to_string(), Err("a number alone has no unit".to_owned())),
        };
        read.map(Some).map_err(|why| {
            let problem = Problem::BadWalRate { value: shown, why };
            self.invalid(span, problem)
        })
    }

    /// A sampling interval of at least 10ms, or `default` when absent.
    pub(super) fn poll(
        &self,
        field: &'static str,
        value: Option<&Spanned<RawDuration>>,
        default: Duration,
    ) -> Result<Duration, JobError> {
        let poll = duration(value, default);
        if poll < default::FASTEST_POLL {
            let problem = Problem::PollTooFast {
                field,
                value: poll,
                suggested: default,
            };
            return Err(self.invalid(span_of(value), problem));
        }
        Ok(poll)
    }

    fn connection_use(&self, value: Option<Spanned<f64>>) -> Result<f64, JobError> {
        let Some(value) = value else {
            return Ok(default::MAX_CONNECTION_USE);
        };
        let fraction = *value.get_ref();
        if fraction > 0.0 && fraction <= 1.0 {
            return Ok(fraction);
        }
        let problem = Problem::ConnectionUseOutOfRange(fraction.to_string());
        Err(self.invalid(Some(value.span()), problem))
    }

    /// A whole-number threshold of `limit` (0 turns its signal off), or its default.
    fn limit(&self, value: Option<Spanned<i64>>, limit: &Limit) -> Result<u64, JobError> {
        let Some(value) = value else {
            return Ok(limit.default);
        };
        u64::try_from(*value.get_ref()).map_err(|_| {
            let problem = Problem::NegativeLimit {
                key: limit.key,
                value: *value.get_ref(),
                what: limit.what,
                example: limit.example,
            };
            self.invalid(Some(value.span()), problem)
        })
    }

    /// `ignore_slots`, each a name a replication slot can have: a typo would otherwise leave
    /// the slot watched, or an abandoned slot pausing the run, without a word.
    fn slot_names(&self, value: Option<Vec<RawText>>) -> Result<Vec<String>, JobError> {
        let names = value.unwrap_or_default();
        for name in &names {
            if !is_slot_name(name.get_ref()) {
                let problem = Problem::BadSlotName(name.get_ref().clone());
                return Err(self.invalid(Some(name.span()), problem));
            }
        }
        Ok(names.into_iter().map(Spanned::into_inner).collect())
    }

    /// The query trimmed of blanks and trailing semicolons: it is run as a subquery.
    fn throttle_query(&self, value: Option<RawText>) -> Result<Option<String>, JobError> {
        let Some(value) = value else { return Ok(None) };
        let query = value
            .get_ref()
            .trim()
            .trim_end_matches([';', ' ', '\n', '\t', '\r']);
        let span = Some(value.span());
        if query.is_empty() {
            let problem = Problem::BlankThrottleSetting {
                key: "throttle_query",
                hint: "write a query whose result > 0 throttles, e.g. \
                       \"SELECT count(*) FROM pg_stat_activity WHERE state = 'active'\", or \
                       leave it out",
            };
            return Err(self.invalid(span, problem));
        }
        if query.contains('\0') {
            let what = "throttle.throttle_query".to_owned();
            return Err(self.invalid(span, Problem::NulInExpression { what }));
        }
        Ok(Some(query.to_owned()))
    }

    fn throttle_file(&self, value: Option<RawText>) -> Result<Option<PathBuf>, JobError> {
        let Some(value) = value else { return Ok(None) };
        if value.get_ref().trim().is_empty() || value.get_ref().contains('\0') {
            let problem = Problem::BlankThrottleSetting {
                key: "throttle_file",
                hint: "write the path of a file whose existence pauses the run, e.g. \
                       \"/tmp/backfill.pause\", or leave it out",
            };
            return Err(self.invalid(Some(value.span()), problem));
        }
        Ok(Some(PathBuf::from(value.get_ref())))
    }
}

fn span_of<T>(value: Option<&Spanned<T>>) -> Option<Range<usize>> {
    value.map(Spanned::span)
}

/// A whole-number `[throttle]` key: its name, default, and how to explain a bad value.
struct Limit {
    key: &'static str,
    default: u64,
    what: &'static str,
    example: &'static str,
}

const REPLICA_LAG_BYTES: Limit = Limit {
    key: "max_replica_lag_bytes",
    default: default::MAX_REPLICA_LAG_BYTES,
    what: "a number of bytes",
    example: "134217728 for 128 MiB",
};

const SLOT_LAG_BYTES: Limit = Limit {
    key: "max_slot_lag_bytes",
    default: default::MAX_SLOT_LAG_BYTES,
    what: "a number of bytes",
    example: "1073741824 for 1 GiB",
};

const ARCHIVE_LAG: Limit = Limit {
    key: "max_archive_lag",
    default: default::MAX_ARCHIVE_LAG,
    what: "a number of WAL segments",
    example: "64 (1 GiB of 16 MiB segments)",
};

const ACTIVE_SESSIONS: Limit = Limit {
    key: "max_active_sessions",
    default: default::MAX_ACTIVE_SESSIONS,
    what: "a number of sessions",
    example: "16 (about twice the server's CPU cores)",
};

const HISTORY_LENGTH: Limit = Limit {
    key: "max_history_length",
    default: default::MAX_HISTORY_LENGTH,
    what: "a number of InnoDB history list entries",
    example: "1000000",
};

/// What PostgreSQL accepts as a replication slot's name (`ReplicationSlotValidateName`):
/// lower-case letters, digits and underscores, at most 63 bytes.
fn is_slot_name(name: &str) -> bool {
    (1..=super::MAX_IDENTIFIER_BYTES).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::job::ThrottlePolicy;
    use crate::job::tests::{assert_has, err, ok, with};

    fn policy(section: &str) -> ThrottlePolicy {
        ok(&with(&format!("[throttle]\n{section}"))).throttle
    }

    fn problem(section: &str) -> String {
        err(&with(&format!("[throttle]\n{section}")))
    }

    #[test]
    fn absent_section_gives_the_defaults() {
        assert_eq!(ok(&with("")).throttle, ThrottlePolicy::default());
        assert_eq!(policy(""), ThrottlePolicy::default());
    }

    #[test]
    fn every_key_is_read() {
        let p = policy(
            "enabled = false\npoll = \"100ms\"\nbatch_poll = \"20ms\"\ncooldown = \"0s\"\n\
             yield = false\npause_on_table_locks = false\nmax_connection_use = 1\n\
             max_idle_in_transaction = \"0s\"\nmax_replica_lag = \"1s\"\n\
             max_replica_lag_bytes = 1024\nmax_slot_lag_bytes = 0\n\
             ignore_slots = [\"debezium_2\", \"old_standby\"]\nmax_archive_lag = 8\n\
             max_active_sessions = 16\nmax_history_length = 5000\nwatch_autovacuum = false\n\
             throttle_query = \" SELECT 1 ; \"\n\
             throttle_file = \"/tmp/brake\"\nfail_closed_after = \"1s\"\nmax_pause = \"5s\"\n\
             max_wal_rate = \"32MiB/s\"\n",
        );
        let ms = Duration::from_millis;
        assert_eq!(
            p,
            ThrottlePolicy {
                enabled: false,
                poll: ms(100),
                batch_poll: ms(20),
                cooldown: ms(0),
                yield_to_waiters: false,
                pause_on_table_locks: false,
                max_connection_use: 1.0,
                max_idle_in_transaction: ms(0),
                max_replica_lag: ms(1000),
                max_replica_lag_bytes: 1024,
                max_slot_lag_bytes: 0,
                ignore_slots: vec!["debezium_2".into(), "old_standby".into()],
                max_archive_lag: 8,
                max_active_sessions: 16,
                max_history_length: 5000,
                watch_autovacuum: false,
                throttle_query: Some("SELECT 1".into()),
                throttle_file: Some(Path::new("/tmp/brake").to_path_buf()),
                fail_closed_after: ms(1000),
                max_pause: ms(5000),
                max_wal_rate: Some(32 * 1024 * 1024),
            }
        );
    }

    #[test]
    fn a_wal_rate_needs_a_unit_per_second() {
        assert_has(
            &problem("max_wal_rate = \"32MiB\"\n"),
            &[
                "jobs/x.toml:6:16: ",
                "throttle.max_wal_rate (\"32MiB\") is not a rate: it does not end in /s; write \
                 bytes per second with a unit, e.g. \"32MiB/s\"",
            ],
        );
        assert_has(
            &problem("max_wal_rate = 33554432\n"),
            &[
                "jobs/x.toml:6:16: ",
                "throttle.max_wal_rate (33554432) is not a rate: a number alone has no unit",
            ],
        );
        assert_eq!(
            policy("max_wal_rate = \"512 kB/s\"").max_wal_rate,
            Some(512 * 1024)
        );
    }

    #[test]
    fn poll_under_10ms_is_refused() {
        assert_has(
            &problem("poll = \"5ms\"\n"),
            &[
                "jobs/x.toml:6:8: ",
                "throttle.poll (5ms)",
                "shorter than 10ms",
            ],
        );
    }

    #[test]
    fn batch_poll_above_poll_is_refused() {
        assert_has(
            &problem("poll = \"100ms\"\nbatch_poll = \"200ms\"\n"),
            &["jobs/x.toml:7:14: ", "batch_poll (200ms) is longer than"],
        );
    }

    #[test]
    fn fail_closed_after_must_exceed_poll() {
        assert_has(
            &problem("fail_closed_after = \"250ms\"\n"),
            &["jobs/x.toml:6:21: ", "must be longer than throttle.poll"],
        );
    }

    #[test]
    fn connection_use_must_be_a_fraction() {
        for bad in ["0", "1.5", "-0.2", "nan"] {
            assert_has(
                &problem(&format!("max_connection_use = {bad}\n")),
                &["jobs/x.toml:6:22: ", "above 0 and at most 1"],
            );
        }
    }

    #[test]
    fn negative_limits_are_refused_with_an_example() {
        assert_has(
            &problem("max_replica_lag_bytes = -1\n"),
            &[
                "jobs/x.toml:6:25: ",
                "throttle.max_replica_lag_bytes (-1) is negative; write a number of bytes, \
                 e.g. 134217728 for 128 MiB, or 0 to turn the check off",
            ],
        );
        for (key, what) in [
            (
                "max_slot_lag_bytes",
                "a number of bytes, e.g. 1073741824 for 1 GiB",
            ),
            ("max_archive_lag", "a number of WAL segments, e.g. 64"),
            ("max_active_sessions", "a number of sessions, e.g. 16"),
            (
                "max_history_length",
                "a number of InnoDB history list entries, e.g. 1000000",
            ),
        ] {
            assert_has(
                &problem(&format!("{key} = -3\n")),
                &[
                    &format!("jobs/x.toml:6:{}: ", key.len() + 4),
                    &format!("throttle.{key} (-3) is negative; write {what}"),
                ],
            );
        }
    }

    #[test]
    fn ignore_slots_must_be_slot_names() {
        assert_has(
            &problem("ignore_slots = [\"cdc\", \"Debezium\"]\n"),
            &[
                "jobs/x.toml:6:24: ",
                "throttle.ignore_slots lists `Debezium`, which no replication slot can be named",
            ],
        );
        for bad in ["", "a-b", "é", &"x".repeat(64)] {
            assert_has(
                &problem(&format!("ignore_slots = [\"{bad}\"]\n")),
                &[
                    "jobs/x.toml:6:17: ",
                    "which no replication slot can be named",
                ],
            );
        }
        assert_eq!(
            policy(&format!("ignore_slots = [\"{}\"]\n", "x".repeat(63))).ignore_slots,
            ["x".repeat(63)]
        );
    }

    #[test]
    fn blank_throttle_query_and_file_are_refused() {
        assert_has(
            &problem("throttle_query = \" ; \"\n"),
            &["jobs/x.toml:6:18: ", "throttle.throttle_query is empty"],
        );
        assert_has(
            &problem("throttle_file = \"\"\n"),
            &["jobs/x.toml:6:17: ", "throttle.throttle_file is empty"],
        );
    }

    #[test]
    fn unknown_throttle_key_lists_the_valid_ones() {
        assert_has(
            &problem("max_lag = \"1s\"\n"),
            &[
                "jobs/x.toml:6:1: ",
                "unknown key `max_lag`",
                "`max_replica_lag`",
            ],
        );
    }
}
