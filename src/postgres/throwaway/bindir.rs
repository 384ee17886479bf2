//! Where the PostgreSQL server binaries are: `$PG_BIN` — the one variable that chooses the
//! server the tests and `demo` run, and that CI sets to each supported major version in turn —
//! else `pg_config --bindir`, else the newest of Debian's `/usr/lib/postgresql/*/bin`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::ScratchError;

/// Finds the PostgreSQL server binaries: `$PG_BIN`, then `pg_config --bindir` when it holds
/// `initdb` (on Debian it may belong to a client-only package), then the newest
/// `/usr/lib/postgresql/*/bin` with `initdb`.
pub fn find_bindir() -> Result<PathBuf, ScratchError> {
    if let Some(dir) = std::env::var_os("PG_BIN").filter(|dir| !dir.is_empty()) {
        let dir = PathBuf::from(dir);
        return if has_initdb(&dir) {
            Ok(dir)
        } else {
            Err(ScratchError::PgBinWithoutInitdb(dir))
        };
    }
    let pg_config = pg_config_bindir();
    if let Some(dir) = pg_config.as_ref().filter(|dir| has_initdb(dir)) {
        return Ok(dir.clone());
    }
    let pg_config = pg_config.map_or("not found".into(), |dir| {
        format!("{}: no initdb", dir.display())
    });
    newest_bindir(Path::new("/usr/lib/postgresql")).ok_or_else(|| ScratchError::NotFound {
        searched: format!(
            "$PG_BIN (unset), `pg_config --bindir` ({pg_config}), /usr/lib/postgresql/*/bin"
        ),
    })
}

fn has_initdb(dir: &Path) -> bool {
    dir.join("initdb").is_file()
}

fn pg_config_bindir() -> Option<PathBuf> {
    let output = Command::new("pg_config").arg("--bindir").output().ok()?;
    let dir = String::from_utf8(output.stdout).ok()?;
    (output.status.success() && !dir.trim().is_empty()).then(|| PathBuf::from(dir.trim()))
}

/// The `bin` directory with `initdb` under the highest version directory of `root`
/// (Debian's layout: `/usr/lib/postgresql/15/bin`, `…/9.6/bin`).
fn newest_bindir(root: &Path) -> Option<PathBuf> {
    fs::read_dir(root)
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = version_key(entry.file_name().to_str()?)?;
            let bin = entry.path().join("bin");
            has_initdb(&bin).then_some((version, bin))
        })
        .max()
        .map(|(_, bin)| bin)
}

/// `"9.6"` → `[9, 6]`, so that 10 sorts above 9.6; `None` for names that are not versions.
fn version_key(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_key_orders_numerically() {
        assert!(version_key("10") > version_key("9.6"));
        assert_eq!(version_key("main"), None);
    }

    #[test]
    fn newest_bindir_skips_versions_without_initdb() {
        let root = crate::throwaway::create_private_dir().unwrap();
        for (version, with_initdb) in [("9.6", true), ("15", true), ("16", false)] {
            let bin = root.join(version).join("bin");
            fs::create_dir_all(&bin).unwrap();
            if with_initdb {
                fs::write(bin.join("initdb"), "").unwrap();
            }
        }
        assert_eq!(newest_bindir(&root), Some(root.join("15").join("bin")));
        fs::remove_dir_all(root).unwrap();
    }
}
