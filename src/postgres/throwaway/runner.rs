//! Who runs the server programs: `initdb` and `pg_ctl` refuse to run as root, so as root they
//! run as the `postgres` user through `runuser`, in directories given to that user.

use std::ffi::OsString;
use std::fs;
use std::path::Path;
use std::process::Command;

use super::ScratchError;
use crate::throwaway::{self, is_root};

/// How server programs are launched: `initdb` and `pg_ctl` refuse to run as root, so as root
/// they run as `postgres` through `runuser`, in directories owned by `postgres`.
#[derive(Debug, Clone, Copy)]
pub(super) enum Runner {
    Direct,
    AsPostgres { uid: u32, gid: u32 },
}

impl Runner {
    pub(super) fn detect() -> Result<Runner, ScratchError> {
        if !is_root() {
            return Ok(Runner::Direct);
        }
        let passwd =
            fs::read_to_string("/etc/passwd").map_err(throwaway::Error::io("read /etc/passwd"))?;
        let (uid, gid) = passwd_ids(&passwd, "postgres").ok_or(ScratchError::NoPostgresUser)?;
        Ok(Runner::AsPostgres { uid, gid })
    }

    /// The argv that runs `program` as the server's user.
    pub(super) fn argv(&self, program: &Path) -> Vec<OsString> {
        let mut argv = match self {
            Runner::Direct => Vec::new(),
            Runner::AsPostgres { .. } => ["runuser", "-u", "postgres", "--"]
                .map(OsString::from)
                .to_vec(),
        };
        argv.push(program.into());
        argv
    }

    /// A command for `program`, quiet (no stdin) and run from a directory every user can enter.
    pub(super) fn command(&self, program: &Path) -> Command {
        crate::throwaway::quiet_command(&self.argv(program))
    }

    /// Makes `path` the server user's (a no-op unless we are root).
    pub(super) fn give_to_server(&self, path: &Path) -> Result<(), ScratchError> {
        match *self {
            Runner::Direct => Ok(()),
            Runner::AsPostgres { uid, gid } => {
                let give = format!("give {} to the postgres user", path.display());
                Ok(std::os::unix::fs::chown(path, Some(uid), Some(gid))
                    .map_err(throwaway::Error::io(give))?)
            }
        }
    }
}

/// The uid and gid of `user` in the text of `/etc/passwd`.
fn passwd_ids(passwd: &str, user: &str) -> Option<(u32, u32)> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != user {
            return None;
        }
        let _password = fields.next()?;
        Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_ids_reads_uid_and_gid() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\npostgres:x:101:104:PG:/var/lib/postgresql:/bin/bash\n";
        assert_eq!(passwd_ids(passwd, "postgres"), Some((101, 104)));
        assert_eq!(passwd_ids(passwd, "nobody"), None);
    }
}
