//! Finding the job a command names: `NAME` is `<jobs-dir>/NAME.toml` for the commands that read
//! the job file, or the job's row in the state table for those that act on the row; anything
//! that looks like a path is taken as a job file. A name that finds nothing is answered with
//! the names that would have (ARCHITECTURE.md).

use std::path::{Path, PathBuf};

use crate::db::Session;
use thiserror::Error;

use crate::job::{Job, JobError};
use crate::state::{JobRow, StateError, Store};

/// A job name that finds nothing.
#[derive(Debug, Error)]
pub enum LookupError {
    #[error("no job file {path} for job {name:?}; {known}")]
    NoJobFile {
        name: String,
        path: String,
        known: String,
    },
    #[error("{source}; {known}")]
    NoStateRow {
        #[source]
        source: StateError,
        known: String,
    },
}

/// Where a job argument points: `NAME` is `<jobs-dir>/NAME.toml`; anything that looks like a
/// path (has a `/` or ends in `.toml`) is taken as one.
pub fn job_path(arg: &str, jobs_dir: &Path) -> PathBuf {
    if is_path(arg) {
        PathBuf::from(arg)
    } else {
        jobs_dir.join(format!("{arg}.toml"))
    }
}

/// True when a job argument names a file rather than a job.
fn is_path(arg: &str) -> bool {
    arg.contains('/') || arg.ends_with(".toml")
}

/// Reads the job file `arg` names. A bare name without a file lists the jobs in `jobs_dir`.
pub fn load(arg: &str, jobs_dir: &Path) -> Result<Job, anyhow::Error> {
    let path = job_path(arg, jobs_dir);
    if !is_path(arg) && !path.exists() {
        let dir = dir_text(jobs_dir);
        let known = known(
            &job_names(jobs_dir),
            &format!("the jobs with a file in {dir} are"),
            &format!("{dir} has no job files (--jobs-dir names another directory)"),
        );
        return Err(LookupError::NoJobFile {
            name: arg.to_owned(),
            path: path.display().to_string(),
            known,
        }
        .into());
    }
    Ok(Job::load(&path)?)
}

/// `jobs/`: a directory as a message names it, so that it reads as one (`jobs in jobs` did not).
fn dir_text(dir: &Path) -> String {
    let text = dir.display().to_string();
    if text.ends_with('/') {
        text
    } else {
        format!("{text}/")
    }
}

/// The stems of the `*.toml` files in `dir`, sorted.
fn job_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .filter_map(|p| Some(p.file_stem()?.to_str()?.to_owned()))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// `jobs there: a, b`, or `none_text` when there are none. A `what` that ends in a verb
/// (`… are`) takes the names without a colon.
fn known(names: &[String], what: &str, none_text: &str) -> String {
    if names.is_empty() {
        none_text.to_owned()
    } else if what.ends_with(" are") {
        format!("{what} {}", names.join(", "))
    } else {
        format!("{what}: {}", names.join(", "))
    }
}

/// The job's name for commands that need only the state row: a bare name is used as is, a
/// path is read for the name inside the file.
pub fn job_name(arg: &str) -> Result<String, JobError> {
    if is_path(arg) {
        Ok(Job::load(Path::new(arg))?.name)
    } else {
        Ok(arg.to_owned())
    }
}

/// Turns "no job named X" from the state table into the same error listing the jobs there.
pub async fn or_known_jobs<T>(
    result: Result<T, StateError>,
    conn: &mut Session,
    store: &Store,
) -> Result<T, anyhow::Error> {
    match result {
        Err(source @ StateError::UnknownJob { .. }) => {
            // Without the list, the plain error is still the truth.
            let Ok(rows) = store.list(conn.conn()).await else {
                return Err(source.into());
            };
            Err(unknown(source, &rows).into())
        }
        other => Ok(other?),
    }
}

/// The rows of the jobs `names` names, in that order, or every row when it names none; a
/// name without a row is the error [`or_known_jobs`] gives, listing the jobs in `rows`.
pub fn named(
    rows: Vec<JobRow>,
    names: &[String],
    store: &Store,
) -> Result<Vec<JobRow>, LookupError> {
    if names.is_empty() {
        return Ok(rows);
    }
    names
        .iter()
        .map(|name| match rows.iter().find(|row| &row.name == name) {
            Some(row) => Ok(row.clone()),
            None => {
                let source = StateError::UnknownJob {
                    name: name.clone(),
                    table: store.table().to_owned(),
                };
                Err(unknown(source, &rows))
            }
        })
        .collect()
}

/// `source` ("no job named X") with the names of the jobs `rows` has.
fn unknown(source: StateError, rows: &[JobRow]) -> LookupError {
    let names: Vec<String> = rows.iter().map(|row| row.name.clone()).collect();
    let known = known(
        &names,
        "jobs there",
        "no job has run against this database yet",
    );
    LookupError::NoStateRow { source, known }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_name_is_looked_up_in_the_jobs_dir() {
        assert_eq!(
            job_path("users", Path::new("jobs")),
            PathBuf::from("jobs/users.toml")
        );
    }

    #[test]
    fn path_is_taken_as_is() {
        assert_eq!(
            job_path("x/users.toml", Path::new("jobs")),
            PathBuf::from("x/users.toml")
        );
        assert_eq!(
            job_path("users.toml", Path::new("jobs")),
            PathBuf::from("users.toml")
        );
    }

    #[test]
    fn known_names_are_listed_or_their_absence_said() {
        let names = ["a".to_owned(), "b".to_owned()];
        assert_eq!(known(&names, "jobs there", "none"), "jobs there: a, b");
        assert_eq!(known(&[], "jobs there", "none"), "none");
    }

    #[test]
    fn the_jobs_dir_is_named_as_a_directory() {
        assert_eq!(dir_text(Path::new("jobs")), "jobs/");
        assert_eq!(dir_text(Path::new("x/jobs/")), "x/jobs/");
        let names = ["double".to_owned(), "fill".to_owned()];
        assert_eq!(
            known(&names, "the jobs with a file in jobs/ are", "none"),
            "the jobs with a file in jobs/ are double, fill"
        );
    }
}
