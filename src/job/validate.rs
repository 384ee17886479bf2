//! `RawJob` → `Job`: every check that needs nothing but the file's text.
//!
//! Owns the job file's rules: required keys, identifier limits, batch bounds and
//! defaults, timeout relations. Each failure becomes a [`Problem`] located at the offending
//! value's span. It does not parse TOML (serde does, into [`RawJob`]) and does not look at the
//! database: whether the table, key and columns exist is the catalog's business.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::error::{JobError, Location, Problem, show};
use super::ratio::Ratio;
use super::raw::{RawBatch, RawDuration, RawJob, RawText, RawTimeouts};
use super::table::{MAX_IDENTIFIER_BYTES, TableName};
use super::{Assignment, BatchSettings, Job, OnError, Timeouts, defaults};

/// A deserialized job file together with what is needed to locate its errors.
pub struct Draft<'a> {
    /// The file as serde read it.
    pub raw: RawJob,
    /// The file's text, to turn spans into line and column.
    pub text: &'a str,
    /// The file's path: for messages, and for the job name when `name` is absent.
    pub source: &'a Path,
}

impl TryFrom<Draft<'_>> for Job {
    type Error = JobError;

    fn try_from(draft: Draft<'_>) -> Result<Job, JobError> {
        let cx = Checker {
            text: draft.text,
            source: draft.source,
        };
        let raw = draft.raw;
        let name = cx.name(raw.name)?;
        let table = cx.table(raw.table)?;
        let key = cx.key(raw.key)?;
        let filter = cx.filter(raw.filter)?;
        let set = cx.set(raw.set, key.as_deref())?;
        let target_span = raw.batch.target.as_ref().map(Spanned::span);
        let batch = cx.batch(raw.batch)?;
        let timeouts = cx.timeouts(raw.timeouts, &batch, target_span)?;
        let throttle = cx.throttle(raw.throttle)?;
        let vacuum = cx.vacuum(raw.vacuum)?;
        let guard = cx.guard(raw.guard)?;
        Ok(Job {
            name,
            table,
            key,
            filter,
            set,
            batch,
            timeouts,
            throttle,
            vacuum,
            guard,
            source: draft.source.to_path_buf(),
        })
    }
}

/// True if `name` can name a job: 1 to 63 bytes from `A-Z a-z 0-9 _ . -`.
///
/// The same rule applies to a file stem and to `name = "…"`, so that a job name is always safe
/// in a file name, a log line and the state table.
pub fn is_valid_job_name(name: &str) -> bool {
    (1..=MAX_IDENTIFIER_BYTES).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Checks values of one file and locates their problems.
pub(super) struct Checker<'a> {
    text: &'a str,
    source: &'a Path,
}

impl Checker<'_> {
    pub(super) fn invalid(&self, span: Option<Range<usize>>, problem: Problem) -> JobError {
        JobError::Invalid {
            at: Location::new(self.source, self.text, span),
            problem,
        }
    }

    fn name(&self, name: Option<RawText>) -> Result<String, JobError> {
        let (name, span, from_file_stem) = match name {
            Some(name) => (name.get_ref().clone(), Some(name.span()), false),
            None => {
                let stem = self.source.file_stem().unwrap_or_default();
                (stem.to_string_lossy().into_owned(), None, true)
            }
        };
        if !is_valid_job_name(&name) {
            return Err(self.invalid(
                span,
                Problem::BadName {
                    name,
                    from_file_stem,
                },
            ));
        }
        Ok(name)
    }

    fn table(&self, table: Option<RawText>) -> Result<TableName, JobError> {
        let table = table.ok_or_else(|| self.invalid(None, Problem::MissingTable))?;
        TableName::parse(table.get_ref())
            .map_err(|why| self.invalid(Some(table.span()), Problem::BadTable(why)))
    }

    fn key(&self, key: Option<Spanned<Vec<RawText>>>) -> Result<Option<Vec<String>>, JobError> {
        let Some(key) = key else { return Ok(None) };
        if key.get_ref().is_empty() {
            return Err(self.invalid(Some(key.span()), Problem::EmptyKey));
        }
        let mut columns = Vec::with_capacity(key.get_ref().len());
        for entry in key.into_inner() {
            let span = entry.span();
            let column = self.column("key entry", entry)?;
            if columns.contains(&column) {
                return Err(self.invalid(Some(span), Problem::DuplicateKey(column)));
            }
            columns.push(column);
        }
        Ok(Some(columns))
    }

    /// An exact column name: non-empty, no NUL, short enough that PostgreSQL keeps it whole.
    fn column(&self, what: &str, name: RawText) -> Result<String, JobError> {
        let span = Some(name.span());
        let name = name.into_inner();
        let what = what.to_owned();
        let problem = if name.is_empty() {
            Problem::EmptyIdentifier { what }
        } else if name.contains('\0') {
            Problem::NulInIdentifier { what, name }
        } else if name.len() > MAX_IDENTIFIER_BYTES {
            let len = name.len();
            Problem::LongIdentifier { what, name, len }
        } else {
            return Ok(name);
        };
        Err(self.invalid(span, problem))
    }

    fn filter(&self, filter: Option<RawText>) -> Result<String, JobError> {
        let filter = filter.ok_or_else(|| self.invalid(None, Problem::MissingWhere))?;
        let span = Some(filter.span());
        let text = filter.get_ref().trim();
        if text.is_empty() {
            return Err(self.invalid(span, Problem::BlankWhere));
        }
        if text.contains('\0') {
            let what = "`where`".to_owned();
            return Err(self.invalid(span, Problem::NulInExpression { what }));
        }
        Ok(text.to_owned())
    }

    fn set(
        &self,
        set: Option<Spanned<BTreeMap<RawText, RawText>>>,
        key: Option<&[String]>,
    ) -> Result<Vec<Assignment>, JobError> {
        let set = set.ok_or_else(|| self.invalid(None, Problem::MissingSet))?;
        if set.get_ref().is_empty() {
            return Err(self.invalid(Some(set.span()), Problem::EmptySet));
        }
        let key: BTreeSet<&str> = key.unwrap_or_default().iter().map(String::as_str).collect();
        let mut assignments = Vec::with_capacity(set.get_ref().len());
        for (column, expr) in set.into_inner() {
            let column_span = Some(column.span());
            let column = self.column("[set] column", column)?;
            if key.contains(column.as_str()) {
                return Err(self.invalid(column_span, Problem::SetsKeyColumn(column)));
            }
            let expr = self.expression(&column, expr)?;
            assignments.push(Assignment { column, expr });
        }
        Ok(assignments)
    }

    fn expression(&self, column: &str, expr: RawText) -> Result<String, JobError> {
        let span = Some(expr.span());
        let text = expr.get_ref().trim();
        if text.is_empty() {
            return Err(self.invalid(span, Problem::BlankExpression(column.to_owned())));
        }
        if text.contains('\0') {
            let what = format!("set.{}", show(column));
            return Err(self.invalid(span, Problem::NulInExpression { what }));
        }
        Ok(text.to_owned())
    }

    fn batch(&self, batch: RawBatch) -> Result<BatchSettings, JobError> {
        let (min, min_span) = self.batch_bound("min", batch.min, defaults::MIN)?;
        let (max, max_span) = self.batch_bound("max", batch.max, defaults::MAX)?;
        if min > max {
            return Err(self.invalid(min_span.or(max_span), Problem::MinAboveMax { min, max }));
        }
        let size = match self.batch_bound("size", batch.size, defaults::SIZE)? {
            (size, Some(span)) if !(min..=max).contains(&size) => {
                let problem = Problem::SizeOutsideRange { size, min, max };
                return Err(self.invalid(Some(span), problem));
            }
            (size, Some(_)) => size,
            (_, None) => defaults::SIZE.clamp(min, max),
        };
        let target = duration(batch.target.as_ref(), defaults::TARGET);
        if target.is_zero() {
            let span = batch.target.as_ref().map(Spanned::span);
            return Err(self.invalid(span, Problem::ZeroTarget));
        }
        let pause = duration(batch.pause.as_ref(), defaults::PAUSE);
        let pause_ratio = self.ratio(batch.pause_ratio, Ratio::Pause)?;
        let workers = match batch.workers {
            None => defaults::WORKERS,
            Some(value) => match u32::try_from(*value.get_ref()) {
                Ok(n) if (1..=defaults::MAX_WORKERS).contains(&n) => n,
                _ => {
                    let problem = Problem::WorkersOutOfBounds(*value.get_ref());
                    return Err(self.invalid(Some(value.span()), problem));
                }
            },
        };
        let on_error = match batch.on_error {
            None => OnError::default(),
            Some(value) => match value.get_ref().as_str() {
                "stop" => OnError::Stop,
                "skip" => OnError::Skip,
                other => {
                    let problem = Problem::BadOnError(other.to_owned());
                    return Err(self.invalid(Some(value.span()), problem));
                }
            },
        };
        Ok(BatchSettings {
            size,
            min,
            max,
            target,
            pause,
            pause_ratio,
            workers,
            on_error,
        })
    }

    /// The value of the ratio key `ratio`, within its bounds, or its default when absent.
    pub(super) fn ratio(&self, value: Option<Spanned<f64>>, ratio: Ratio) -> Result<f64, JobError> {
        let Some(value) = value else {
            return Ok(ratio.default());
        };
        let n = *value.get_ref();
        if ratio.fits(n) {
            return Ok(n);
        }
        let problem = Problem::RatioOutOfRange {
            ratio,
            value: n.to_string(),
        };
        Err(self.invalid(Some(value.span()), problem))
    }

    /// A batch size in 1..=100000, or `default` when absent; with its span when present.
    fn batch_bound(
        &self,
        field: &'static str,
        value: Option<Spanned<i64>>,
        default: u32,
    ) -> Result<(u32, Option<Range<usize>>), JobError> {
        let Some(value) = value else {
            return Ok((default, None));
        };
        let raw = *value.get_ref();
        match u32::try_from(raw) {
            Ok(n) if (1..=defaults::LIMIT).contains(&n) => Ok((n, Some(value.span()))),
            _ => Err(self.invalid(
                Some(value.span()),
                Problem::BatchOutOfBounds { field, value: raw },
            )),
        }
    }

    fn timeouts(
        &self,
        timeouts: RawTimeouts,
        batch: &BatchSettings,
        target_span: Option<Range<usize>>,
    ) -> Result<Timeouts, JobError> {
        let statement_span = timeouts.statement.as_ref().map(Spanned::span);
        let lock_span = timeouts.lock.as_ref().map(Spanned::span);
        let statement = duration(timeouts.statement.as_ref(), defaults::STATEMENT);
        let lock = duration(timeouts.lock.as_ref(), defaults::LOCK);
        let one_ms = Duration::from_millis(1);
        let problem = if lock < one_ms {
            (lock_span, Problem::LockTooShort(lock))
        } else if statement < one_ms {
            (statement_span, Problem::StatementTooShort(statement))
        } else if statement <= lock {
            let problem = Problem::StatementNotAboveLock { statement, lock };
            (statement_span.or(lock_span), problem)
        } else if statement <= batch.target {
            let target = batch.target;
            let problem = Problem::StatementNotAboveTarget { statement, target };
            (statement_span.or(target_span), problem)
        } else if statement > MAX_TIMEOUT {
            // lock < statement, so lock fits too.
            (statement_span, Problem::StatementTooLong(statement))
        } else {
            return Ok(Timeouts { statement, lock });
        };
        Err(self.invalid(problem.0, problem.1))
    }
}

/// PostgreSQL's largest timeout: `statement_timeout` is an int of milliseconds.
const MAX_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);

/// The duration written in the file, or `default` when absent.
pub(super) fn duration(value: Option<&Spanned<RawDuration>>, default: Duration) -> Duration {
    value.map_or(default, |value| value.get_ref().0)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::job::Job;
    use crate::job::tests::{MINIMAL, assert_has, err, with};

    #[test]
    fn empty_key_is_refused() {
        assert_has(
            &err(&format!("key = []\n{MINIMAL}")),
            &["jobs/x.toml:1:7: ", "key is empty"],
        );
    }

    #[test]
    fn duplicate_key_column_is_located_at_the_second() {
        let message = err(&format!("key = [\"id\", \"id\"]\n{MINIMAL}"));
        assert_has(
            &message,
            &["jobs/x.toml:1:14: ", "key lists column `id` twice"],
        );
    }

    #[test]
    fn set_column_that_is_a_key_column_is_refused() {
        let message = err(&format!("key = [\"flag\"]\n{MINIMAL}"));
        assert_has(
            &message,
            &[
                "jobs/x.toml:5:1: ",
                "[set] assigns `flag`",
                "skip or repeat rows",
            ],
        );
    }

    #[test]
    fn empty_key_entry_is_refused() {
        assert_has(
            &err(&format!("key = [\"\"]\n{MINIMAL}")),
            &["jobs/x.toml:1:8: ", "key entry is empty"],
        );
    }

    #[test]
    fn nul_in_key_entry_is_refused() {
        let message = err(&format!("key = [\"i\\u0000d\"]\n{MINIMAL}"));
        assert_has(
            &message,
            &[
                "jobs/x.toml:1:8: ",
                "key entry `i\\u{0}d` contains a NUL byte",
            ],
        );
    }

    #[test]
    fn long_key_entry_says_postgres_would_truncate() {
        let message = err(&format!("key = [\"{}\"]\n{MINIMAL}", "k".repeat(64)));
        assert_has(
            &message,
            &["jobs/x.toml:1:8: ", "64 bytes long", "silently truncate"],
        );
    }

    #[test]
    fn empty_set_column_is_refused() {
        assert_has(
            &err(&with("\"\" = 'x'\n")),
            &["jobs/x.toml:5:1: ", "[set] column is empty"],
        );
    }

    #[test]
    fn nul_in_set_column_is_refused() {
        assert_has(
            &err(&with("\"a\\u0000\" = 'x'\n")),
            &["jobs/x.toml:5:1: ", "NUL byte"],
        );
    }

    #[test]
    fn long_set_column_says_postgres_would_truncate() {
        let message = err(&with(&format!("{} = 'x'\n", "c".repeat(64))));
        assert_has(
            &message,
            &["jobs/x.toml:5:1: ", "[set] column", "silently truncate"],
        );
    }

    #[test]
    fn long_table_part_says_postgres_would_truncate() {
        let message = err(&MINIMAL.replace("\"users\"", &format!("\"public.{}\"", "t".repeat(64))));
        assert_has(
            &message,
            &[
                "jobs/x.toml:1:9: ",
                "invalid table",
                "64 bytes long",
                "truncate",
            ],
        );
    }

    #[test]
    fn explicit_bad_name_is_located() {
        let message = err(&format!("name = \"my job\"\n{MINIMAL}"));
        assert_has(
            &message,
            &[
                "jobs/x.toml:1:8: ",
                "job name `my job` is not valid",
                "A-Z a-z 0-9 _ . -",
            ],
        );
    }

    #[test]
    fn bad_file_stem_suggests_setting_a_name() {
        let message = Job::parse(MINIMAL, Path::new("jobs/my job.toml"))
            .unwrap_err()
            .to_string();
        assert_has(
            &message,
            &[
                "jobs/my job.toml: job name `my job` (taken from the file name)",
                "name = ",
            ],
        );
    }

    #[test]
    fn name_longer_than_63_bytes_is_refused() {
        let message = err(&format!("name = \"{}\"\n{MINIMAL}", "n".repeat(64)));
        assert_has(&message, &["jobs/x.toml:1:8: ", "is not valid"]);
    }

    #[test]
    fn hostile_table_is_quoted_with_valid_forms() {
        let message = err(&MINIMAL.replace("\"users\"", "\"users; DROP TABLE users\""));
        assert_has(
            &message,
            &[
                "jobs/x.toml:1:9: invalid table: `users; DROP TABLE users`",
                "public.users",
            ],
        );
    }
}
