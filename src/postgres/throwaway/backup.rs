//! A base backup of a running scratch cluster, taken over SQL, for [`super::Cluster::replica`].
//!
//! The primary enters non-exclusive backup mode (`pg_backup_start`; before PostgreSQL 15
//! `pg_start_backup(…, exclusive => false)`), the data directory is copied file by file, backup
//! mode ends (`pg_backup_stop`; before 15 `pg_stop_backup`) on the same session and hands back
//! the `backup_label` for the copy, and the WAL written meanwhile is copied last. While a backup
//! runs the server writes full-page images whatever `full_page_writes` says, so the pages torn
//! by copying a live file are repaired by replaying that WAL. This is what `pg_basebackup -X
//! fetch` does through the replication protocol, without `pg_basebackup`: the npm registry's
//! server packages do not ship it, and Debian's refuses a server newer than itself.
//!
//! Owns the copy only; making it a standby and starting it is `Cluster::replica`'s.

use std::fs;
use std::io;
use std::path::Path;

use sqlx::{Connection as _, PgConnection, Row as _};

use super::{Runner, ScratchError};
use crate::postgres::server_version;
use crate::throwaway::{self, on_own_runtime};

/// Enters and leaves non-exclusive backup mode on a server of `version` (`server_version_num`);
/// leaving returns the `backup_label` text. The functions were renamed in PostgreSQL 15, which
/// also dropped exclusive backups.
fn backup_mode_sql(version: u32) -> (&'static str, &'static str) {
    if version >= 150000 {
        (
            "SELECT pg_backup_start('backfill scratch replica', fast => true)",
            "SELECT labelfile FROM pg_backup_stop(wait_for_archive => false)",
        )
    } else {
        (
            "SELECT pg_start_backup('backfill scratch replica', fast => true, exclusive => false)",
            "SELECT labelfile FROM pg_stop_backup(exclusive => false, wait_for_archive => false)",
        )
    }
}

/// Copies the data directory of the server on `port` (reached at `url`) from `from` into the
/// empty directory `to`, as a consistent base backup, owned by the server's user.
pub(super) fn take(
    port: u16,
    url: &str,
    from: &Path,
    to: &Path,
    runner: Runner,
) -> Result<(), ScratchError> {
    let failed = |source| ScratchError::Backup { port, source };
    on_own_runtime(|runtime| {
        let (mut session, stop) = runtime.block_on(start(url)).map_err(failed)?;
        copy_tree(from, to, runner, &backed_up)?;
        let label = runtime.block_on(finish(&mut session, stop));
        let _ = runtime.block_on(session.close());
        write_owned(&to.join("backup_label"), &label.map_err(failed)?, runner)?;
        // The archiver's status files belong to the primary's archive, not the copy's.
        copy_tree(
            &from.join("pg_wal"),
            &to.join("pg_wal"),
            runner,
            &|relative| !inside(relative, "archive_status"),
        )
    })
}

/// Connects and enters backup mode; returns the session, which must stay open until the backup
/// ends, and the statement that ends it.
async fn start(url: &str) -> Result<(PgConnection, &'static str), sqlx::Error> {
    let mut session = PgConnection::connect(url).await?;
    let (enter, leave) = backup_mode_sql(server_version(&mut session).await?);
    sqlx::raw_sql(enter).execute(&mut session).await?;
    Ok((session, leave))
}

/// Leaves backup mode and returns the `backup_label` text.
async fn finish(session: &mut PgConnection, stop: &'static str) -> Result<String, sqlx::Error> {
    sqlx::raw_sql(stop).fetch_one(session).await?.try_get(0)
}

/// Whether `relative` (a path inside the data directory) belongs in the backup. Left out, as
/// pg_basebackup leaves them out: the running server's lock file and options (a copied
/// `postmaster.pid` names a live process, and the copy would refuse to start), the WAL (copied
/// once backup mode has ended), replication slots, temporary statistics and files, and the
/// relation cache's init files. Their directories are kept, empty.
fn backed_up(relative: &Path) -> bool {
    let name = relative.file_name().and_then(|n| n.to_str()).unwrap_or("");
    !(matches!(
        name,
        "postmaster.pid" | "postmaster.opts" | "pg_internal.init"
    ) || name.starts_with("pgsql_tmp")
        || ["pg_wal", "pg_replslot", "pg_stat_tmp"]
            .into_iter()
            .any(|dir| inside(relative, dir)))
}

/// Whether `relative` is below the directory `dir` (not `dir` itself).
fn inside(relative: &Path, dir: &str) -> bool {
    relative.starts_with(dir) && relative != Path::new(dir)
}

/// Copies the directory tree `from` into the existing directory `to`, entries for which `keep`
/// (given the path relative to `from`) is true, giving each to the server's user. A file that
/// vanishes while being copied (a temporary file, a dropped table) is skipped: the WAL replay
/// accounts for it.
fn copy_tree(
    from: &Path,
    to: &Path,
    runner: Runner,
    keep: &dyn Fn(&Path) -> bool,
) -> Result<(), ScratchError> {
    copy_below(from, Path::new(""), to, runner, keep)
}

fn copy_below(
    root: &Path,
    relative: &Path,
    to: &Path,
    runner: Runner,
    keep: &dyn Fn(&Path) -> bool,
) -> Result<(), ScratchError> {
    let dir = root.join(relative);
    let entries =
        fs::read_dir(&dir).map_err(throwaway::Error::io(format!("list {}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(throwaway::Error::io(format!("list {}", dir.display())))?;
        let relative = relative.join(entry.file_name());
        if !keep(&relative) {
            continue;
        }
        let (source, target) = (root.join(&relative), to.join(&relative));
        let copied = match entry.file_type() {
            Ok(kind) if kind.is_dir() => fs::create_dir(&target),
            _ => fs::copy(&source, &target).map(drop),
        };
        match copied {
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            result => result.map_err(throwaway::Error::io(format!(
                "copy {} to {}",
                source.display(),
                target.display()
            )))?,
        }
        runner.give_to_server(&target)?;
        if target.is_dir() {
            copy_below(root, &relative, to, runner, keep)?;
        }
    }
    Ok(())
}

/// Writes `text` to `path` and gives the file to the server's user.
pub(super) fn write_owned(path: &Path, text: &str, runner: Runner) -> Result<(), ScratchError> {
    throwaway::write(path, text)?;
    runner.give_to_server(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_mode_functions_follow_the_server_version() {
        assert!(backup_mode_sql(150000).0.contains("pg_backup_start("));
        assert!(backup_mode_sql(180004).1.contains("pg_backup_stop("));
        assert!(backup_mode_sql(140023).0.contains("pg_start_backup("));
        assert!(
            backup_mode_sql(130023)
                .1
                .contains("pg_stop_backup(exclusive => false")
        );
    }

    #[test]
    fn the_live_server_s_files_and_the_wal_stay_out_of_the_copy() {
        for left_out in [
            "postmaster.pid",
            "postmaster.opts",
            "pg_wal/000000010000000000000001",
            "pg_replslot/slot",
            "pg_stat_tmp/global.stat",
            "base/5/pg_internal.init",
            "base/pgsql_tmp",
        ] {
            assert!(!backed_up(Path::new(left_out)), "{left_out}");
        }
        for kept in ["pg_wal", "pg_replslot", "base/5/16384", "global/pg_control"] {
            assert!(backed_up(Path::new(kept)), "{kept}");
        }
    }
}
