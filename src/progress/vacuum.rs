//! What a run's vacuums read as on the progress display.

use std::time::Duration;

use super::duration_text;
use crate::event::VacuumState;

/// What a vacuum event says: `final VACUUM (ANALYZE) of "public"."items" done in 1.2s`,
/// `vacuum of "public"."items" yielded: …; it runs again when clear`.
pub(super) fn vacuum_text(
    relation: &str,
    final_vacuum: bool,
    state: VacuumState,
    elapsed_ms: u64,
    reason: Option<&str>,
) -> String {
    let what = if final_vacuum {
        format!("final VACUUM (ANALYZE) of {relation}")
    } else {
        format!("vacuum of {relation}")
    };
    let why = reason.map_or(String::new(), |r| format!(": {r}"));
    let took = duration_text(Duration::from_millis(elapsed_ms));
    match state {
        VacuumState::Started => format!("{what}…"),
        VacuumState::Done => format!("{what} done in {took}"),
        VacuumState::Skipped => format!("{what} skipped{why}"),
        VacuumState::Yielded => format!("{what} yielded{why}; it runs again when clear"),
        VacuumState::Cancelled if final_vacuum => {
            format!("{what} cancelled; the job is done, run it yourself when convenient")
        }
        VacuumState::Cancelled => format!("{what} cancelled"),
        VacuumState::Failed => format!("{what} failed{why}; the run goes on without it"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "\"public\".\"items\"";

    #[test]
    fn the_final_vacuum_says_when_it_starts_and_how_long_it_took() {
        assert_eq!(
            vacuum_text(T, true, VacuumState::Started, 0, None),
            "final VACUUM (ANALYZE) of \"public\".\"items\"…"
        );
        assert_eq!(
            vacuum_text(T, true, VacuumState::Done, 1200, None),
            "final VACUUM (ANALYZE) of \"public\".\"items\" done in 1.2s"
        );
        assert!(
            vacuum_text(T, true, VacuumState::Cancelled, 0, None)
                .ends_with("run it yourself when convenient")
        );
    }

    #[test]
    fn a_pacing_vacuum_that_gave_way_or_failed_says_why() {
        assert_eq!(
            vacuum_text(T, false, VacuumState::Yielded, 30, Some("pid 7 waits")),
            "vacuum of \"public\".\"items\" yielded: pid 7 waits; it runs again when clear"
        );
        assert_eq!(
            vacuum_text(T, false, VacuumState::Failed, 30, Some("boom")),
            "vacuum of \"public\".\"items\" failed: boom; the run goes on without it"
        );
        assert_eq!(
            vacuum_text(
                T,
                false,
                VacuumState::Skipped,
                0,
                Some("pid 9 holds ShareUpdateExclusiveLock")
            ),
            "vacuum of \"public\".\"items\" skipped: pid 9 holds ShareUpdateExclusiveLock"
        );
    }
}
