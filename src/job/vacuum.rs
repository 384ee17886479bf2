//! `[vacuum]` → [`VacuumPolicy`]: defaults and the checks that need only the file. Whether the
//! job's role may vacuum the table is the server's business (`disk` reads it before anything
//! is written).

use toml::Spanned;

use super::error::{JobError, Problem};
use super::raw::{RawEvery, RawVacuum};
use super::validate::Checker;
use super::{Every, VacuumPolicy};

impl Checker<'_> {
    pub(super) fn vacuum(&self, raw: RawVacuum) -> Result<VacuumPolicy, JobError> {
        let defaults = VacuumPolicy::default();
        let every = match raw.every {
            None => defaults.every,
            Some(value) => {
                let span = value.span();
                parse_every(value.get_ref())
                    .ok_or_else(|| self.invalid(Some(span), Problem::BadEvery(text(&value))))?
            }
        };
        Ok(VacuumPolicy {
            enabled: raw.enabled.unwrap_or(defaults.enabled),
            every,
            index_cleanup: raw.index_cleanup.unwrap_or(defaults.index_cleanup),
            final_vacuum: raw.final_vacuum.unwrap_or(defaults.final_vacuum),
        })
    }
}

/// `every` as the file wrote it, for a message.
fn text(value: &Spanned<RawEvery>) -> String {
    match value.get_ref() {
        RawEvery::Rows(n) => n.to_string(),
        RawEvery::Text(t) => t.clone(),
    }
}

/// At least one row, or a share above 0 and at most 100 percent (`"5%"`, `"2.5 %"`).
fn parse_every(raw: &RawEvery) -> Option<Every> {
    match raw {
        RawEvery::Rows(n) => u64::try_from(*n).ok().filter(|n| *n > 0).map(Every::Rows),
        RawEvery::Text(text) => {
            let percent: f64 = text.trim().strip_suffix('%')?.trim().parse().ok()?;
            (percent > 0.0 && percent <= 100.0).then_some(Every::Percent(percent))
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::job::tests::{assert_has, err, ok, with};
    use crate::job::{Every, VacuumPolicy};

    #[test]
    fn vacuum_defaults_to_pacing_and_a_final_vacuum() {
        let job = ok(&with(""));
        assert_eq!(job.vacuum, VacuumPolicy::default());
        assert!(job.vacuum.enabled && job.vacuum.final_vacuum);
        assert_eq!(job.vacuum.every, Every::Percent(5.0));
    }

    #[test]
    fn every_is_rows_or_a_share() {
        let rows = ok(&with("[vacuum]\nevery = 20000\n"));
        assert_eq!(rows.vacuum.every, Every::Rows(20_000));
        let share = ok(&with(
            "[vacuum]\nevery = \"2.5 %\"\nfinal = false\nenabled = false\n",
        ));
        assert_eq!(share.vacuum.every, Every::Percent(2.5));
        assert!(!share.vacuum.enabled && !share.vacuum.final_vacuum);
        assert!(!share.vacuum.index_cleanup, "heap only by default");
        let cleaning = ok(&with("[vacuum]\nindex_cleanup = true\n"));
        assert!(cleaning.vacuum.index_cleanup);
        assert_has(
            &err(&with("[vacuum]\nindex_cleanup = \"yes\"\n")),
            &["jobs/x.toml:6:17", "boolean"],
        );
    }

    #[test]
    fn bad_every_is_located_with_examples() {
        for bad in ["0", "-5", "\"5\"", "\"0%\"", "\"120%\"", "\"lots\""] {
            let message = err(&with(&format!("[vacuum]\nevery = {bad}\n")));
            assert_has(
                &message,
                &["jobs/x.toml:6:9: ", "vacuum.every", "every = 50000"],
            );
        }
    }

    #[test]
    fn unknown_vacuum_key_is_refused() {
        assert_has(
            &err(&with("[vacuum]\nevry = 5\n")),
            &["jobs/x.toml:6:1", "unknown key `evry`"],
        );
    }

    #[test]
    fn every_share_is_bounded_below() {
        assert_eq!(Every::Percent(5.0).rows(1_000_000), 50_000);
        assert_eq!(Every::Percent(5.0).rows(100_000), 10_000);
        assert_eq!(Every::Percent(5.0).rows(0), 10_000);
        assert_eq!(Every::Rows(1234).rows(10), 1234);
        assert_eq!(Every::Percent(2.5).to_string(), "2.5%");
        assert_eq!(Every::Rows(7).to_string(), "7");
    }
}
