//! `[guard]` → [`GuardPolicy`]: defaults and the checks that need only the file.
//!
//! Whether a custom `probe` runs is the server's business (`preflight` runs it once before
//! anything is written); here it is only trimmed and checked for being there at all.

use toml::Spanned;

use super::error::{JobError, Problem};
use super::ratio::Ratio;
use super::raw::{RawGuard, RawText};
use super::validate::{Checker, duration};
use super::{GuardPolicy, defaults::guard as default};

/// The fewest probes a window must hold for its p90 to mean something.
const MIN_PROBES_PER_WINDOW: u32 = 5;

impl Checker<'_> {
    pub(super) fn guard(&self, raw: RawGuard) -> Result<GuardPolicy, JobError> {
        let poll = self.poll("guard.poll", raw.poll.as_ref(), default::POLL)?;
        let window = duration(raw.window.as_ref(), default::WINDOW);
        if window < poll * MIN_PROBES_PER_WINDOW {
            let span = raw.window.as_ref().or(raw.poll.as_ref()).map(Spanned::span);
            return Err(self.invalid(span, Problem::GuardWindowTooShort { window, poll }));
        }
        let max_latency = match raw.max_latency {
            Some(value) if value.get_ref().0.is_zero() => {
                return Err(self.invalid(Some(value.span()), Problem::ZeroMaxLatency));
            }
            value => value.map(|v| v.get_ref().0),
        };
        Ok(GuardPolicy {
            enabled: raw.enabled.unwrap_or(false),
            probe: self.probe(raw.probe)?,
            poll,
            window,
            max_latency_ratio: self.ratio(raw.max_latency_ratio, Ratio::Latency)?,
            max_latency,
            min_latency: duration(raw.min_latency.as_ref(), default::MIN_LATENCY),
            max_pause_ratio: self.ratio(raw.max_pause_ratio, Ratio::GuardPause)?,
        })
    }

    /// The probe trimmed of blanks and trailing semicolons.
    fn probe(&self, value: Option<RawText>) -> Result<Option<String>, JobError> {
        let Some(value) = value else { return Ok(None) };
        let probe = value
            .get_ref()
            .trim()
            .trim_end_matches([';', ' ', '\n', '\t', '\r']);
        let span = Some(value.span());
        if probe.is_empty() {
            return Err(self.invalid(span, Problem::BlankProbe));
        }
        if probe.contains('\0') {
            let what = "guard.probe".to_owned();
            return Err(self.invalid(span, Problem::NulInExpression { what }));
        }
        Ok(Some(probe.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::job::GuardPolicy;
    use crate::job::tests::{assert_has, err, ok, with};

    fn policy(section: &str) -> GuardPolicy {
        ok(&with(&format!("[guard]\n{section}"))).guard
    }

    fn problem(section: &str) -> String {
        err(&with(&format!("[guard]\n{section}")))
    }

    #[test]
    fn absent_section_is_off_with_the_defaults() {
        assert_eq!(ok(&with("")).guard, GuardPolicy::default());
        assert!(!policy("").enabled);
    }

    #[test]
    fn every_key_is_read() {
        let ms = Duration::from_millis;
        assert_eq!(
            policy(
                "enabled = true\nprobe = \" SELECT 1 ;\"\npoll = \"50ms\"\nwindow = \"1s\"\n\
                 max_latency_ratio = 2.5\nmax_latency = \"20ms\"\nmin_latency = \"1ms\"\n\
                 max_pause_ratio = 8\n"
            ),
            GuardPolicy {
                enabled: true,
                probe: Some("SELECT 1".into()),
                poll: ms(50),
                window: ms(1000),
                max_latency_ratio: 2.5,
                max_latency: Some(ms(20)),
                min_latency: ms(1),
                max_pause_ratio: 8.0,
            }
        );
    }

    #[test]
    fn a_window_needs_five_probes() {
        assert_has(
            &problem("poll = \"500ms\"\n"),
            &[
                "jobs/x.toml:6:8: ",
                "guard.window (2s) holds fewer than 5 probes of guard.poll (500ms)",
            ],
        );
        assert_has(
            &problem("window = \"400ms\"\n"),
            &["jobs/x.toml:6:10: ", "make window at least 5 times poll"],
        );
        assert_has(
            &problem("poll = \"5ms\"\n"),
            &[
                "jobs/x.toml:6:8: ",
                "guard.poll (5ms) is shorter than 10ms",
                "poll = \"100ms\"",
            ],
        );
    }

    #[test]
    fn ratios_and_latency_are_bounded() {
        for bad in ["1", "0.5", "-2", "nan", "inf"] {
            assert_has(
                &problem(&format!("max_latency_ratio = {bad}\n")),
                &[
                    "jobs/x.toml:6:21: ",
                    "guard.max_latency_ratio (",
                    "must be above 1 and at most 1000",
                ],
            );
        }
        assert_has(
            &problem("max_pause_ratio = 0.5\n"),
            &[
                "jobs/x.toml:6:19: ",
                "guard.max_pause_ratio (0.5) must be at least 1",
            ],
        );
        assert_has(
            &problem("max_latency = \"0s\"\n"),
            &[
                "jobs/x.toml:6:15: ",
                "guard.max_latency (0s) must be longer than zero",
            ],
        );
    }

    #[test]
    fn a_blank_probe_is_refused() {
        assert_has(
            &problem("probe = \" ; \"\n"),
            &["jobs/x.toml:6:9: ", "guard.probe is empty", "leave it out"],
        );
    }
}
