//! The server's programs run to completion (`initdb`, `pg_ctl`, `mariadb-install-db`,
//! `mysqld --initialize`), and the end of their output or of the server's log, which is what
//! an error message quotes to say why a server did not come up.

use std::ffi::OsString;
use std::fs;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use super::Error;

/// How much of a log or of a command's output goes into an error message.
const TAIL_LINES: usize = 20;

/// A command for `argv`, quiet (no stdin) and run from a directory every user can enter (a
/// server run as another user must be able to stand in it).
pub(crate) fn quiet_command(argv: &[OsString]) -> Command {
    let mut command = Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null());
    command
}

/// Runs a command to completion, capturing its output, and turns failure into an error.
pub(crate) fn run(mut command: Command) -> Result<(), Error> {
    let output = command
        .output()
        .map_err(Error::io(format!("run {}", describe(&command))))?;
    if output.status.success() {
        return Ok(());
    }
    Err(Error::Command {
        command: describe(&command),
        status: output.status,
        output: tail_of_output(&output),
    })
}

/// `program arg arg …` for messages.
fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

fn tail_of_output(output: &Output) -> String {
    let text = [&output.stdout[..], &output.stderr[..]].concat();
    last_lines(&String::from_utf8_lossy(&text))
}

/// Where the next line of the log at `path` will start (0 for a log not yet written), for
/// [`tail_of_file`] to quote only what one start wrote.
pub(crate) fn end_of_file(path: &Path) -> u64 {
    fs::metadata(path).map_or(0, |meta| meta.len())
}

/// The last lines of `path` written after byte `from` (this attempt's part of the log).
pub(crate) fn tail_of_file(path: &Path, from: u64) -> String {
    let mut bytes = Vec::new();
    let read = fs::File::open(path)
        .and_then(|mut file| file.seek(SeekFrom::Start(from)).map(|_| file))
        .and_then(|mut file| file.read_to_end(&mut bytes));
    match read {
        Ok(_) => last_lines(&String::from_utf8_lossy(&bytes)),
        Err(error) => format!("(could not read the log: {error})"),
    }
}

fn last_lines(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
}
