//! The HTML of `backfill serve`: what a job's card and its page show, and the templates
//! (`templates/`) that render them. Every value from the database goes into the templates as
//! text, which askama HTML-escapes: a table named `<img src=x onerror=alert(1)>` shows as
//! those characters. The pages update themselves from the JSON API (`serve.js`), writing
//! text, never HTML.

use askama::Template;

use crate::monitor::policy::Bytes;
use crate::report;
use crate::state::{JobRow, RangeRow};

use super::history;

/// One job as the list and its page show it.
pub struct Card {
    pub name: String,
    pub table: String,
    pub status: String,
    /// Percent done, 0 to 100, for the bar's width.
    pub bar: String,
    pub rows_done: u64,
    pub total: u64,
    pub rate: String,
    pub eta: String,
    pub crew: String,
    /// Paused, throttled, guarded or yielded with the monitor's words, a stale lease, or the
    /// last error.
    pub reason: String,
    pub heap: String,
    pub failures: u64,
    /// Done, failed or cancelled: no control is offered (a cancel would mark it cancelled).
    pub finished: bool,
}

impl Card {
    /// `row` and its table's heap now, in the page's words.
    pub fn of(row: &JobRow, heap_now: Option<u64>) -> Card {
        let total = row.total_estimate();
        let rate = row.rate.filter(|r| *r > 0.0);
        let left = total.saturating_sub(row.rows_done);
        Card {
            name: row.name.clone(),
            table: row.table_name.clone(),
            status: report::describe_status(row),
            bar: format!("{:.1}", percent(row.rows_done, total)),
            rows_done: row.rows_done,
            total,
            rate: rate.map_or("-".into(), |r| format!("{r:.0} rows/s")),
            eta: match rate {
                Some(r) if left > 0 && row.status == "running" => report::age_text(left as f64 / r),
                _ => "-".into(),
            },
            crew: match (row.workers, row.processes, row.hosts) {
                (0, _, _) => "no live worker".into(),
                (w, p, h) => format!(
                    "{w} {} in {p} {} on {h} {}",
                    plural(w, "worker", "workers"),
                    plural(p, "process", "processes"),
                    plural(h, "host", "hosts")
                ),
            },
            reason: report::lease_note(row)
                .or_else(|| row.note.clone())
                .or_else(|| row.last_error.clone())
                .unwrap_or_default(),
            heap: match (row.heap_bytes_start, heap_now) {
                (None, Some(now)) => format!("heap {} now", Bytes(now)),
                _ => report::heap_note(row, heap_now).unwrap_or_else(|| "-".into()),
            },
            failures: row.failures,
            finished: matches!(row.status.as_str(), "done" | "failed" | "cancelled"),
        }
    }
}

fn plural(n: u32, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}

/// `done` of `total` in percent, at most 100 (an empty job is done).
pub fn percent(done: u64, total: u64) -> f64 {
    if total == 0 {
        100.0
    } else {
        (done as f64 * 100.0 / total as f64).min(100.0)
    }
}

/// The rate chart: the points of an SVG polyline in a [`Chart::WIDTH`] × [`Chart::HEIGHT`]
/// box, and the highest rate, which is its top.
pub struct Chart {
    pub points: String,
    pub top: String,
}

impl Chart {
    /// The chart's box, in SVG units (the page stretches it to its width).
    pub const WIDTH: f64 = 600.0;
    pub const HEIGHT: f64 = 120.0;

    /// The chart of `rates`, `(seconds, rows per second)` oldest first.
    pub fn of(rates: &[(f64, f64)]) -> Chart {
        let top = rates.iter().map(|(_, r)| *r).fold(0.0, f64::max);
        Chart {
            points: history::polyline(rates, Chart::WIDTH, Chart::HEIGHT),
            top: format!("{top:.0} rows/s"),
        }
    }
}

/// A range on a job's page.
pub struct RangeLine {
    pub id: String,
    pub state: String,
    pub owner: String,
    pub heartbeat: String,
    pub cursor: String,
    pub upper: String,
    pub rows_done: String,
}

impl RangeLine {
    /// `r` in the page's words.
    pub fn of(r: &RangeRow) -> RangeLine {
        let lease = r.lease.as_ref();
        RangeLine {
            id: r.id.to_string(),
            state: report::range_state(r).to_owned(),
            owner: lease.map_or("-".into(), |l| {
                format!("{}/{}", l.owner.0, r.worker.unwrap_or(0))
            }),
            heartbeat: lease
                .and_then(|l| l.heartbeat_age)
                .map_or("-".into(), |age| format!("{} ago", report::age_text(age))),
            cursor: report::key_text_of(r.cursor.as_ref()),
            upper: report::key_text_of(Some(&r.upper)),
            rows_done: r.rows_done.to_string(),
        }
    }

    /// The table's cells, in its columns' order: what the page's script writes on refresh.
    pub fn cells(&self) -> [&str; 7] {
        [
            &self.id,
            &self.state,
            &self.owner,
            &self.heartbeat,
            &self.cursor,
            &self.upper,
            &self.rows_done,
        ]
    }
}

/// `GET /`: every job.
#[derive(Template)]
#[template(path = "index.html")]
pub struct Index {
    pub cards: Vec<Card>,
    /// Controls are shown (a token is set on the server).
    pub controls: bool,
    /// How often the page refreshes, in milliseconds.
    pub every_ms: u128,
}

/// `GET /jobs/{name}`: one job.
#[derive(Template)]
#[template(path = "job.html")]
pub struct JobPage {
    pub card: Card,
    pub ranges: Vec<RangeLine>,
    pub failed: Vec<String>,
    /// The job file's settings, a `key = value` line each.
    pub settings: Vec<(String, String)>,
    pub chart: Chart,
    pub controls: bool,
    /// How often the page refreshes, in milliseconds.
    pub every_ms: u128,
}

impl JobPage {
    /// `job`'s page, with its `rates` from the server's samples.
    pub fn of(job: &super::reader::OneJob, rates: &[(f64, f64)], controls: bool) -> JobPage {
        JobPage {
            card: Card::of(&job.row, job.heap),
            ranges: job.ranges.iter().map(RangeLine::of).collect(),
            failed: job.failed.iter().map(report::failure_line).collect(),
            settings: settings(job.row.settings.as_deref()),
            chart: Chart::of(rates),
            controls,
            every_ms: super::SAMPLE_EVERY.as_millis(),
        }
    }
}

/// The settings JSON a run kept, flattened to `key = value` lines (`set.total = qty * price`).
fn settings(json: Option<&str>) -> Vec<(String, String)> {
    let Some(value) = json.and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok()) else {
        return vec![];
    };
    let mut lines = Vec::new();
    flatten("", &value, &mut lines);
    lines
}

fn flatten(prefix: &str, value: &serde_json::Value, lines: &mut Vec<(String, String)>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, lines);
            }
        }
        serde_json::Value::String(s) => lines.push((prefix.to_owned(), s.clone())),
        other => lines.push((prefix.to_owned(), other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_read_as_lines() {
        let lines = settings(Some(
            r#"{"where":"total IS NULL","set":{"total":"qty * 2"},"batch":{"size":1000}}"#,
        ));
        assert_eq!(
            lines,
            vec![
                ("batch.size".to_owned(), "1000".to_owned()),
                ("set.total".to_owned(), "qty * 2".to_owned()),
                ("where".to_owned(), "total IS NULL".to_owned()),
            ]
        );
        assert!(settings(None).is_empty());
    }

    #[test]
    fn a_hostile_name_is_text_in_the_html() {
        let row = JobRow {
            table_name: "\"<img src=x onerror=alert(1)>\"".into(),
            ..JobRow::example("j", "running")
        };
        let html = Index {
            cards: vec![Card::of(&row, None)],
            controls: false,
            every_ms: 2000,
        }
        .render()
        .unwrap();
        assert!(!html.contains("<img"), "{html}");
        assert!(
            html.contains("&#60;img src=x onerror=alert(1)&#62;"),
            "{html}"
        );
    }
}
