//! The benchmark's own command line (after `cargo bench --bench backfill --`).
//!
//! Owns: the options, their defaults and parsing. Unknown arguments are ignored, because cargo
//! passes `--bench` to every `harness = false` target. Nothing here touches a database.

use std::path::PathBuf;

/// What one benchmark run measures and how big it is.
#[derive(Debug, Clone)]
pub struct Options {
    /// Rows of the table for throughput, profile, DDL wait, bloat and latency.
    pub rows: u64,
    /// Table sizes of the scaling scenario, in rows.
    pub scaling: Vec<u64>,
    /// The guides' loop is quadratic: it is skipped above this many rows.
    pub skip_loop_above: u64,
    /// Extra `backfill run` rows in the throughput table, as `[batch]` `(min, max)` pairs.
    pub batch_variants: Vec<(u32, u32)>,
    /// Extra `backfill run --workers N` rows in the throughput table.
    pub workers: Vec<u32>,
    /// Worker counts the scaling scenario runs each size with.
    pub scaling_workers: Vec<u32>,
    /// Where the JSON report goes (a Markdown copy goes beside it).
    pub json: PathBuf,
    /// Which scenarios run.
    pub only: Vec<Section>,
    /// `pgbench -R`: foreground transactions per second.
    pub latency_rate: u32,
    /// Length of the idle latency window, in seconds.
    pub latency_seconds: u32,
    /// How many times the latency scenario runs each of its modes (interleaved).
    pub latency_rounds: u32,
    /// The job text that turns the monitor's yield off (appended to the DDL job).
    pub yield_off_toml: String,
    /// The job text of the latency scenario's guarded run (appended to the default job).
    pub guard_toml: String,
    /// Server settings that replace or add to the benchmark's own (`--set fsync=off`).
    pub settings: Vec<(String, String)>,
    /// Job text appended to the default job wherever it runs (throughput's "defaults" row,
    /// profile, latency, scaling), to try a change without editing code.
    pub job_extra: String,
    /// The MySQL section's own options (`--mysql-…`).
    pub mysql: crate::mysql::Options,
}

/// One scenario of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Throughput,
    Scaling,
    Ddl,
    Bloat,
    Latency,
    Profile,
    /// MySQL and MariaDB (issue 18): not in the default set, as it needs both servers' programs
    /// and a quarter of an hour; `--only mysql`, or `mysql` alone.
    Mysql,
}

impl Section {
    const ALL: [Section; 6] = [
        Section::Throughput,
        Section::Scaling,
        Section::Ddl,
        Section::Bloat,
        Section::Latency,
        Section::Profile,
    ];

    /// Every section `--only` takes: the default set and the MySQL section.
    const KNOWN: [Section; 7] = [
        Section::Throughput,
        Section::Scaling,
        Section::Ddl,
        Section::Bloat,
        Section::Latency,
        Section::Profile,
        Section::Mysql,
    ];

    fn name(self) -> &'static str {
        match self {
            Section::Throughput => "throughput",
            Section::Scaling => "scaling",
            Section::Ddl => "ddl",
            Section::Bloat => "bloat",
            Section::Latency => "latency",
            Section::Profile => "profile",
            Section::Mysql => "mysql",
        }
    }

    fn parse(text: &str) -> Result<Section, String> {
        Section::KNOWN
            .into_iter()
            .find(|section| section.name() == text)
            .ok_or_else(|| {
                let names: Vec<_> = Section::KNOWN.iter().map(|s| s.name()).collect();
                format!(
                    "unknown section {text:?}; expected one of {}",
                    names.join(",")
                )
            })
    }
}

/// The job text that turns the monitor's yield off, on both databases.
pub const YIELD_OFF_TOML: &str = "[throttle]\nenabled = false\n";

impl Default for Options {
    fn default() -> Options {
        Options {
            rows: 2_000_000,
            scaling: vec![1_000_000, 2_000_000, 4_000_000, 8_000_000],
            skip_loop_above: 2_000_000,
            batch_variants: vec![(5_000, 20_000), (20_000, 100_000)],
            workers: vec![2, 4],
            scaling_workers: vec![1, 2],
            json: PathBuf::from("target/bench/backfill.json"),
            only: Section::ALL.to_vec(),
            latency_rate: 200,
            latency_seconds: 10,
            latency_rounds: 3,
            yield_off_toml: YIELD_OFF_TOML.into(),
            guard_toml: "[guard]\nenabled = true\n".into(),
            settings: Vec::new(),
            job_extra: String::new(),
            mysql: crate::mysql::Options::default(),
        }
    }
}

pub const USAGE: &str = "\
cargo bench --bench backfill -- [options]
  --rows N                 table rows for throughput/ddl/bloat/latency/profile (default 2000000)
  --scaling A,B,…          scaling sizes in millions of rows (default 1,2,4,8)
  --skip-loop-above N      skip the guides' loop above N rows (default 2000000)
  --batch-variants A-B,…   extra runs with [batch] min=A max=B (default 5000-20000,20000-100000; '' for none)
  --workers A,B,…          extra runs with run --workers N (default 2,4; '' for none)
  --scaling-workers A,B,…  worker counts of the scaling runs (default 1,2)
  --json PATH              JSON report (default target/bench/backfill.json; .md beside it)
  --only S,…               throughput,scaling,ddl,bloat,latency,profile,mysql (default all but mysql)
  mysql                    the MySQL/MariaDB section alone (same as --only mysql)
  --latency-rate N         pgbench -R (default 200)
  --latency-seconds N      idle latency window (default 10)
  --latency-rounds N       rounds of the interleaved latency windows (default 3)
  --yield-off-toml TEXT    job text that turns the yield off, on both databases (default \"[throttle]\\nenabled = false\\n\")
  --guard-toml TEXT        job text of the latency scenario's guarded run (default \"[guard]\\nenabled = true\\n\")
  --set NAME=VALUE,…       server settings over the benchmark's own (e.g. fsync=off)
  --job-extra TEXT         appended to the default job (e.g. \"[batch]\\npause = \\\"10ms\\\"\")
  --mysql-rounds N         rounds of the MySQL section's interleaved windows, in each part (default 3)
  --mysql-flavors F,…      mariadb,mysql (default both)
  --mysql-only P,…         throughput,ddl: the MySQL section's parts (default both)
  --mysql-loop-batches N   guides' loop statements timed at each of 4 depths (default 10; 0: the whole loop)
  --mysql-set NAME=VALUE,… global variables over the MySQL section's own
  --mysql-job-extra TEXT   appended to the MySQL section's job";

impl Options {
    /// Reads `--name value` and `--name=value` pairs; ignores what it does not know.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
        let mut options = Options::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == "mysql" {
                options.only = vec![Section::Mysql];
                continue;
            }
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) => (name.to_string(), Some(value.to_string())),
                None => (arg, None),
            };
            if !options.knows(&name) {
                continue; // `--bench` from cargo, and anything else not ours
            }
            let value = inline
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))?;
            options.set(&name, &value)?;
        }
        Ok(options)
    }

    fn knows(&self, name: &str) -> bool {
        let names = [
            "--rows",
            "--scaling",
            "--skip-loop-above",
            "--batch-variants",
            "--workers",
            "--scaling-workers",
            "--json",
            "--only",
            "--latency-rate",
            "--latency-seconds",
            "--latency-rounds",
            "--yield-off-toml",
            "--guard-toml",
            "--set",
            "--job-extra",
            "--mysql-rounds",
            "--mysql-flavors",
            "--mysql-only",
            "--mysql-loop-batches",
            "--mysql-set",
            "--mysql-job-extra",
        ];
        names.contains(&name)
    }

    fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        match name {
            "--rows" => self.rows = number(name, value)?,
            "--scaling" => self.scaling = list(value, millions)?,
            "--skip-loop-above" => self.skip_loop_above = number(name, value)?,
            "--batch-variants" => self.batch_variants = list(value, variant)?,
            "--workers" => self.workers = list(value, |v| number(name, v))?,
            "--scaling-workers" => self.scaling_workers = list(value, |v| number(name, v))?,
            "--json" => self.json = PathBuf::from(value),
            "--only" => self.only = list(value, Section::parse)?,
            "--latency-rate" => self.latency_rate = number(name, value)?,
            "--latency-seconds" => self.latency_seconds = number(name, value)?,
            "--latency-rounds" => {
                self.latency_rounds = number(name, value)?;
                if self.latency_rounds == 0 {
                    return Err(format!("{name} takes at least 1, not {value:?}"));
                }
            }
            "--yield-off-toml" => {
                self.yield_off_toml = value.replace("\\n", "\n");
                self.mysql.yield_off_toml = self.yield_off_toml.clone();
            }
            "--guard-toml" => self.guard_toml = value.replace("\\n", "\n"),
            "--set" => self.settings.extend(list(value, setting)?),
            "--job-extra" => self.job_extra = value.replace("\\n", "\n"),
            "--mysql-rounds" => {
                self.mysql.rounds = number(name, value)?;
                if self.mysql.rounds == 0 {
                    return Err(format!("{name} takes at least 1, not {value:?}"));
                }
            }
            "--mysql-flavors" => self.mysql.flavors = list(value, flavor)?,
            "--mysql-only" => self.mysql.parts = list(value, crate::mysql::Part::parse)?,
            "--mysql-loop-batches" => self.mysql.loop_batches = number(name, value)?,
            "--mysql-set" => self.mysql.settings.extend(list(value, setting)?),
            "--mysql-job-extra" => self.mysql.job_extra = value.replace("\\n", "\n"),
            _ => unreachable!("`knows` lists every name"),
        }
        Ok(())
    }

    /// The job of every "defaults" run: the demo's job plus `--job-extra`.
    pub fn job(&self) -> String {
        format!("{}{}", crate::runner::ORDERS_JOB, self.job_extra)
    }

    /// Whether `section` is to run.
    pub fn runs(&self, section: Section) -> bool {
        self.only.contains(&section)
    }
}

fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, String> {
    value
        .replace('_', "")
        .parse()
        .map_err(|_| format!("{name} takes a whole number, not {value:?}"))
}

/// Comma-separated items; an empty text is an empty list.
fn list<T>(value: &str, item: impl Fn(&str) -> Result<T, String>) -> Result<Vec<T>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(item)
        .collect()
}

/// `"0.5"` → 500 000 rows.
fn millions(value: &str) -> Result<u64, String> {
    match value.parse::<f64>() {
        Ok(m) if m > 0.0 => Ok((m * 1e6).round() as u64),
        _ => Err(format!(
            "--scaling takes millions of rows like 1,2,4,8, not {value:?}"
        )),
    }
}

/// `"fsync=off"` → `("fsync", "off")`.
fn setting(value: &str) -> Result<(String, String), String> {
    value
        .split_once('=')
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .ok_or_else(|| format!("--set takes NAME=VALUE pairs, not {value:?}"))
}

/// `"mariadb"` → MariaDB.
fn flavor(value: &str) -> Result<backfill::mysql::throwaway::Flavor, String> {
    use backfill::mysql::throwaway::Flavor;
    match value {
        "mariadb" => Ok(Flavor::MariaDb),
        "mysql" => Ok(Flavor::MySql),
        _ => Err(format!(
            "--mysql-flavors takes mariadb,mysql, not {value:?}"
        )),
    }
}

/// `"5000-20000"` → `(5000, 20000)`.
fn variant(value: &str) -> Result<(u32, u32), String> {
    let parsed = value
        .split_once('-')
        .and_then(|(min, max)| Some((min.parse().ok()?, max.parse().ok()?)));
    parsed.ok_or_else(|| format!("--batch-variants takes MIN-MAX pairs, not {value:?}"))
}
