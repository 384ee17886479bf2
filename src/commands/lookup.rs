//! Finding the job a command names: `NAME` is `<jobs-dir>/NAME.toml` for the commands that read
//! the job file, or the job's row in the state table for those that act on the row; anything
//! that looks like a path is taken as a job file. A name that finds nothing is answered with
//! the names that would have (ARCHITECTURE.md).

use std::path::{Path, PathBuf};

use sqlx::PgConnection;
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
        let known = known(
            &job_names(jobs_dir),
            &format!("jobs in {}", jobs_dir.display()),
            &format!(
                "{} has no job files (--jobs-dir names another directory)",
                jobs_dir.display()
            ),
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

/// `jobs there: a, b`, or `none_text` when there are none.
fn known(names: &[String], what: &str, none_text: &str) -> String {
    if names.is_empty() {
        none_text.to_owned()
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
    conn: &mut PgConnection,
    store: &Store,
) -> Result<T, anyhow::Error> {
    match result {
        Err(source @ StateError::UnknownJob { .. }) => {
            // Without the list, the plain error is still the truth.
            let Ok(rows) = store.list(conn).await else {
                return Err(source.into());
            };
            let names: Vec<String> = rows.into_iter().map(|row: JobRow| row.name).collect();
            let known = known(
                &names,
                "jobs there",
                "no job has run against this database yet",
            );
            Err(LookupError::NoStateRow { source, known }.into())
        }
        other => Ok(other?),
    }
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
}
