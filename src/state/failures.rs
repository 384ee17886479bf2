//! The `failures` table: the rows a job with `[batch] on_error = "skip"` could not backfill,
//! one per job and key, each with the server's SQLSTATE and message, how often it failed and
//! when. A row is recorded in the same transaction as the checkpoint that moves past it, so it
//! is never lost nor recorded twice; `run --retry-failures` removes it in the transaction that
//! fills it. The table goes with its job: a `reset` deletes the job row and so (`ON DELETE
//! CASCADE`) its failures, and a `run --restart` forgets them with the ranges.

use std::fmt;

use super::Key;

/// A row that cannot be backfilled, and why, in the server's words.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedRow {
    /// The key columns' names, in key order (stored with the row, so that `backfill
    /// failures` can name it without the job file).
    pub columns: Vec<String>,
    /// The row's key, as text.
    pub key: Key,
    /// The relation the row lives in (the table, or one leaf partition), as SQL.
    pub relation: String,
    /// The SQLSTATE, e.g. `22P02`.
    pub sqlstate: String,
    /// The server's message.
    pub message: String,
    /// The server's detail and hint (`detail: …; hint: …`), when it gave either; MySQL's
    /// error number (`error 1264`).
    pub notes: Option<String>,
    /// How many times the row has failed (1 when first recorded).
    pub attempts: u32,
    /// Seconds since it last failed, when read back from the table.
    pub age: Option<f64>,
}

/// A row's key as PostgreSQL writes one in its messages: `(id)=(77777)`,
/// `(tenant, id)=(acme, 42)`.
pub fn key_text(columns: &[String], values: &[String]) -> String {
    format!("({})=({})", columns.join(", "), values.join(", "))
}

impl FailedRow {
    /// The row as PostgreSQL names keys: `(id)=(77777)`.
    pub fn row(&self) -> String {
        key_text(&self.columns, &self.key)
    }

    /// Why it fails: `invalid input syntax for type bigint: "n/a" [SQLSTATE 22P02]`, with the
    /// server's detail and hint after it.
    pub fn reason(&self) -> String {
        let mut text = format!("{} [SQLSTATE {}]", self.message, self.sqlstate);
        if let Some(notes) = &self.notes {
            text.push_str("; ");
            text.push_str(notes);
        }
        text
    }
}

/// `row (id)=(77777) cannot be backfilled: invalid input syntax for type bigint: "n/a"
/// [SQLSTATE 22P02]`
impl fmt::Display for FailedRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "row {} cannot be backfilled: {}",
            self.row(),
            self.reason()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_as_postgres_writes_them() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            key_text(&names(&["id"]), &names(&["77777"])),
            "(id)=(77777)"
        );
        assert_eq!(
            key_text(&names(&["tenant", "id"]), &names(&["acme", "42"])),
            "(tenant, id)=(acme, 42)"
        );
    }

    fn failed(columns: &[&str], key: &[&str], notes: Option<&str>) -> FailedRow {
        let texts = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        FailedRow {
            columns: texts(columns),
            key: texts(key),
            relation: "\"public\".\"t\"".into(),
            sqlstate: "22P02".into(),
            message: "invalid input syntax for type bigint: \"n/a\"".into(),
            notes: notes.map(str::to_owned),
            attempts: 1,
            age: None,
        }
    }

    #[test]
    fn a_failed_row_is_named_by_its_key_with_the_servers_words() {
        assert_eq!(
            failed(&["id"], &["77777"], None).to_string(),
            "row (id)=(77777) cannot be backfilled: invalid input syntax for type bigint: \"n/a\" [SQLSTATE 22P02]"
        );
        let composite = failed(&["tenant", "id"], &["acme", "42"], Some("hint: fix it"));
        assert_eq!(composite.row(), "(tenant, id)=(acme, 42)");
        assert!(
            composite
                .reason()
                .ends_with("[SQLSTATE 22P02]; hint: fix it"),
            "{}",
            composite.reason()
        );
    }
}
