//! Hostile input: SQL in a table name, identifiers full of quotes, semicolons, comments and
//! unicode (up to PostgreSQL's 63 bytes, and one byte over), and a deterministic fuzz of the
//! job file's parsers and of the identifier quoting that every statement relies on.
//!
//! The database tests run the real binary, each in a database of its own. The fuzz test is
//! pure: a fixed-seed xorshift generator feeds `TableName::parse`, `Job::parse` and `Ident`.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use backfill::job::{Job, MAX_IDENTIFIER_BYTES, TableName, is_valid_job_name};
use backfill::mysql;
use backfill::postgres::sql::Ident;
use common::{
    Finished, TestDb, XorShift, fresh_database, number, run_backfill, schema_exists, write_job,
};
use sqlx::{AssertSqlSafe, Executor as _};
use tempfile::TempDir;

/// An identifier as SQL writes it, quoted by the test itself (not by the code under test).
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A TOML basic string holding exactly `text`.
fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `prefix` padded with `pad` to exactly `bytes` bytes.
fn exactly(prefix: &str, pad: char, bytes: usize) -> String {
    let mut name = prefix.to_owned();
    while name.len() < bytes {
        name.push(pad);
    }
    assert_eq!(name.len(), bytes, "{name:?}");
    name
}

/// `backfill --database-url URL ARGS…` to completion: exit code, stdout, stderr.
fn run(db: &TestDb, args: &[&str]) -> (Option<i32>, String, String) {
    let Finished {
        status,
        stdout,
        stderr,
    } = run_backfill(&db.url, args);
    (status.code(), stdout, stderr)
}

// ---------------------------------------------------------------------------------------------
// Against the database
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn sql_smuggled_into_names_is_refused_and_touches_nothing() {
    let db = fresh_database().await;
    db.pool
        .execute(
            "CREATE TABLE users (id bigint PRIMARY KEY, total int);
             INSERT INTO users SELECT g FROM generate_series(1, 10) g;",
        )
        .await
        .unwrap();
    let dir = TempDir::new().unwrap();
    // Each with the reason it must be refused for.
    let jobs = [
        (
            "in_table",
            "is not a table name",
            "table = \"users; DROP TABLE users\"\nwhere = \"total IS NULL\"\n[set]\ntotal = \"1\"\n",
        ),
        (
            "in_set_column",
            "does not exist",
            "table = \"users\"\nwhere = \"total IS NULL\"\n[set]\n\
             \"total\\\" = 1; DROP TABLE users; --\" = \"1\"\n",
        ),
        (
            "in_key",
            "does not exist",
            "table = \"users\"\nkey = [\"id\\\"; DROP TABLE users; --\"]\n\
             where = \"total IS NULL\"\n[set]\ntotal = \"1\"\n",
        ),
    ];
    for (name, reason, toml) in jobs {
        let job = write_job(&dir, name, toml);
        let (code, stdout, stderr) = run(&db, &["run", job.to_str().unwrap()]);
        assert!(
            code == Some(2) && stderr.contains(reason),
            "{name}: expected exit 2 and {reason:?}, got {code:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        assert_eq!(
            number(&db.pool, "SELECT count(*) FROM users").await,
            10,
            "{name}: users lost rows"
        );
        assert_eq!(
            number(&db.pool, "SELECT count(*) FROM users WHERE total IS NULL").await,
            10,
            "{name}: users changed"
        );
        assert!(
            !schema_exists(&db.pool, "backfill").await,
            "{name}: a refused job created the state schema"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn quotes_semicolons_comments_unicode_and_63_byte_names_work_exactly() {
    let db = fresh_database().await;
    let schema = "Sch\"ema; DROP SCHEMA public CASCADE --";
    let table = exactly("Ünïcødé 表 \"t\"; --x /* ", 'x', MAX_IDENTIFIER_BYTES);
    let key = "K\"ey; --";
    let source = "Src \"col\"; DROP TABLE x --";
    let target = exactly("Tgt 表 \"c\"; -- ", 'y', MAX_IDENTIFIER_BYTES);
    let qualified = format!("{}.{}", quote(schema), quote(&table));
    let (qk, qs, qt) = (quote(key), quote(source), quote(&target));
    db.pool
        .execute(AssertSqlSafe(format!(
            "CREATE SCHEMA {qschema};
             CREATE TABLE {qualified} ({qk} bigint PRIMARY KEY, {qs} int NOT NULL, {qt} bigint);
             INSERT INTO {qualified} ({qk}, {qs}) SELECT g, g % 1000 FROM generate_series(1, 5000) g;",
            qschema = quote(schema)
        )))
        .await
        .expect("create the hostile table");
    let toml = format!(
        "table = {}\nkey = [{}]\nwhere = {}\n\n[set]\n{} = {}\n\n[batch]\nsize = 1000\n",
        toml_string(&qualified),
        toml_string(key),
        toml_string(&format!("{qt} IS NULL")),
        toml_string(&target),
        toml_string(&format!("{qs}::bigint * 2 + 1")),
    );
    let dir = TempDir::new().unwrap();
    let job = write_job(&dir, "hostile", &toml);
    let job = job.to_str().unwrap();

    for command in ["plan", "run", "verify"] {
        let (code, stdout, stderr) = run(&db, &[command, job]);
        assert_eq!(
            code,
            Some(0),
            "{command}: expected exit 0\njob:\n{toml}\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
    }
    let wrong = number(
        &db.pool,
        &format!(
            "SELECT count(*) FROM {qualified} WHERE {qt} IS DISTINCT FROM {qs}::bigint * 2 + 1"
        ),
    )
    .await;
    assert_eq!(wrong, 0);
    assert_eq!(
        number(
            &db.pool,
            "SELECT rows_done FROM backfill.jobs WHERE name = 'hostile'"
        )
        .await,
        5000
    );
    assert_eq!(
        number(
            &db.pool,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'public'"
        )
        .await,
        1,
        "the public schema survived"
    );
    // The names PostgreSQL stored are the ones written, not truncated.
    assert_eq!(
        number(
            &db.pool,
            &format!(
                "SELECT count(*) FROM pg_attribute WHERE attrelid = '{}'::regclass \
                 AND attname IN ('{}', '{}', '{}')",
                qualified.replace('\'', "''"),
                key.replace('\'', "''"),
                source.replace('\'', "''"),
                target.replace('\'', "''")
            )
        )
        .await,
        3
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_64_byte_identifier_is_refused_before_the_database_is_touched() {
    let db = fresh_database().await;
    db.pool
        .execute("CREATE TABLE users (id bigint PRIMARY KEY, total int)")
        .await
        .unwrap();
    let long = exactly("表 \"x\"; --", 'z', MAX_IDENTIFIER_BYTES + 1);
    let dir = TempDir::new().unwrap();
    let jobs = [
        (
            "long_table",
            format!(
                "table = {}\nwhere = \"total IS NULL\"\n[set]\ntotal = \"1\"\n",
                toml_string(&quote(&long))
            ),
        ),
        (
            "long_schema",
            format!(
                "table = {}\nwhere = \"total IS NULL\"\n[set]\ntotal = \"1\"\n",
                toml_string(&format!("{}.users", quote(&long)))
            ),
        ),
        (
            "long_column",
            format!(
                "table = \"users\"\nwhere = \"total IS NULL\"\n[set]\n{} = \"1\"\n",
                toml_string(&long)
            ),
        ),
        (
            "long_key",
            format!(
                "table = \"users\"\nkey = [{}]\nwhere = \"total IS NULL\"\n[set]\ntotal = \"1\"\n",
                toml_string(&long)
            ),
        ),
    ];
    for (name, toml) in jobs {
        let job = write_job(&dir, name, &toml);
        let (code, stdout, stderr) = run(&db, &["run", job.to_str().unwrap()]);
        assert_eq!(
            code,
            Some(2),
            "{name}: expected exit 2\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        assert!(
            stderr.contains("64 bytes") && stderr.contains("63"),
            "{name}: no word of the 63-byte limit:\n{stderr}"
        );
        assert!(
            !schema_exists(&db.pool, "backfill").await,
            "{name}: a refused job created the state schema"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Fuzz (pure)
// ---------------------------------------------------------------------------------------------

/// Pieces that mean something to SQL, to the table-name reader or to TOML.
const PIECES: &[&str] = &[
    "\"",
    "\"\"",
    "'",
    "''",
    "'''",
    "\"\"\"",
    ".",
    "..",
    ";",
    "--",
    "/*",
    "*/",
    "$",
    "$$",
    "_",
    " ",
    "\t",
    "\n",
    "\r\n",
    "\r",
    "\u{a0}",
    "\u{3000}",
    "\u{feff}",
    "\u{200b}",
    "\\",
    "\\\"",
    "\\u0000",
    "\\n",
    "[",
    "]",
    "[[",
    "]]",
    "{",
    "}",
    "=",
    ",",
    "#",
    ":",
    "+",
    "-",
    "0",
    "7",
    "1e9",
    "a",
    "Z",
    "users",
    "Public",
    "表",
    "é",
    "İ",
    "ß",
    "😀",
    "\u{0}",
    "\u{7f}",
    "\u{85}",
    "\u{10ffff}",
    "table",
    "key",
    "where",
    "set",
    "batch",
    "size",
    "min",
    "max",
    "target",
    "pause",
    "timeouts",
    "statement",
    "lock",
    "name",
    "true",
    "2s",
    "250ms",
    "0ms",
    "5m",
];

/// A random string of pieces, random characters and random bytes made valid UTF-8.
fn random_text(rng: &mut XorShift) -> String {
    let mut text = String::new();
    for _ in 0..rng.below(12) {
        match rng.below(6) {
            0..=2 => text.push_str(rng.pick(PIECES)),
            3 => text.extend(char::from_u32(rng.next() as u32 % 0x11_0000)),
            4 => text.extend(char::from_u32(rng.next() as u32 % 0x250)),
            _ => {
                let bytes: Vec<u8> = (0..rng.below(6)).map(|_| rng.next() as u8).collect();
                text.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
    }
    if rng.below(40) == 0 {
        // Around the 63-byte limit.
        let unit = rng.pick(&["a", "é", "表", "\"\"", "😀"]);
        text = unit.repeat(60 / unit.len() + rng.below(8));
        if rng.below(2) == 0 {
            text = format!("\"{text}\"");
        }
    }
    text
}

/// A random TOML value: a correctly escaped string, a literal string, raw text, a number or an
/// array.
fn random_value(rng: &mut XorShift) -> String {
    match rng.below(6) {
        0 | 1 => toml_string(&random_text(rng)),
        2 => format!("'{}'", random_text(rng)),
        3 => random_text(rng),
        4 => format!("{}", rng.next() as i64 >> rng.below(64)),
        _ => format!(
            "[{}, {}]",
            toml_string(&random_text(rng)),
            toml_string(&random_text(rng))
        ),
    }
}

/// A whole random document: keys of the job file and random keys, sections, and junk lines.
fn random_document(rng: &mut XorShift) -> String {
    const KEYS: &[&str] = &[
        "name",
        "table",
        "key",
        "where",
        "size",
        "min",
        "max",
        "target",
        "pause",
        "statement",
        "lock",
        "col",
        "\"quoted key\"",
        "a.b",
    ];
    const SECTIONS: &[&str] = &["[set]", "[batch]", "[timeouts]", "[other]", "[[set]]"];
    let mut doc = String::new();
    for _ in 0..rng.below(9) {
        match rng.below(5) {
            0 => doc.push_str(rng.pick(SECTIONS)),
            1 => doc.push_str(&random_text(rng)),
            _ => {
                let key = match rng.below(4) {
                    0 => toml_string(&random_text(rng)),
                    _ => rng.pick(KEYS).to_owned(),
                };
                doc.push_str(&format!("{key} = {}", random_value(rng)));
            }
        }
        doc.push('\n');
    }
    doc
}

/// The slots of a valid job file that the fuzz fills with random values.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Slot {
    Name,
    Table,
    Key,
    Where,
    Column,
    Expr,
    Size,
    Target,
    Statement,
}

const SLOTS: [Slot; 9] = [
    Slot::Name,
    Slot::Table,
    Slot::Key,
    Slot::Where,
    Slot::Column,
    Slot::Expr,
    Slot::Size,
    Slot::Target,
    Slot::Statement,
];

/// The template with `slot` filled by `value` (TOML text) and every other slot valid.
fn spliced(slot: Slot, value: &str) -> String {
    let fill = |mine: Slot, valid: &str| {
        if mine == slot {
            value.to_owned()
        } else {
            valid.to_owned()
        }
    };
    format!(
        "name = {}\ntable = {}\nkey = [{}]\nwhere = {}\n[set]\n{} = {}\n\
         [batch]\nsize = {}\nmin = 1\nmax = 100000\ntarget = {}\n[timeouts]\nstatement = {}\nlock = \"1s\"\n",
        fill(Slot::Name, "\"fuzz\""),
        fill(Slot::Table, "'\"Sales Data\".\"Order\"\"Lines\"'"),
        fill(Slot::Key, "\"id\""),
        fill(Slot::Where, "\"total IS NULL\""),
        fill(Slot::Column, "total"),
        fill(Slot::Expr, "\"qty * price\""),
        fill(Slot::Size, "500"),
        fill(Slot::Target, "\"200ms\""),
        fill(Slot::Statement, "\"30s\""),
    )
}

/// No panic for `input`; the panic message names the input so that it can be replayed.
fn no_panic<T>(what: &str, input: &str, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| panic!("{what} panicked on {input:?}"))
}

/// Checks `Ident(s)`: quoted at both ends, inner quotes doubled, and nothing else changed.
fn check_ident(s: &str) {
    let quoted = no_panic("Ident", s, || Ident(s).to_string());
    assert!(
        quoted.len() >= 2 && quoted.starts_with('"') && quoted.ends_with('"'),
        "Ident({s:?}) = {quoted:?}"
    );
    let inner = &quoted[1..quoted.len() - 1];
    let mut run = 0;
    for c in inner.chars().chain(std::iter::once('x')) {
        if c == '"' {
            run += 1;
        } else {
            assert!(run % 2 == 0, "a lone quote in Ident({s:?}) = {quoted:?}");
            run = 0;
        }
    }
    assert_eq!(inner.replace("\"\"", "\""), s, "Ident({s:?}) = {quoted:?}");
}

/// Checks `TableName::parse(s)`: no panic; a name that parses is made of whole PostgreSQL
/// identifiers and reads back the same from its quoted form, and its parts as written (what
/// MySQL reads) from their backquoted form.
fn check_table_name(s: &str) -> Option<TableName> {
    let parsed = no_panic("TableName::parse", s, || TableName::parse(s));
    let name = parsed.ok()?;
    for part in name.schema.iter().chain(std::iter::once(&name.name)) {
        assert!(
            !part.is_empty() && part.len() <= MAX_IDENTIFIER_BYTES && !part.contains('\0'),
            "TableName::parse({s:?}) accepted the part {part:?}"
        );
        check_ident(part);
    }
    let shown = name.to_string();
    let back = TableName::parse(&shown).expect("the quoted form parses");
    assert_eq!(
        (&back.schema, &back.name),
        (&name.schema, &name.name),
        "TableName::parse({s:?}) = {name:?}, shown as {shown:?}, does not read back"
    );
    // As MySQL reads it: the parts as written, backquoted, read back the same.
    let (schema, table) = name.exact();
    let backquoted = match schema {
        Some(schema) => format!("{}.{}", mysql::sql::Ident(schema), mysql::sql::Ident(table)),
        None => mysql::sql::Ident(table).to_string(),
    };
    let back = TableName::parse(&backquoted).expect("the backquoted form parses");
    assert_eq!(
        back.exact(),
        name.exact(),
        "{s:?} backquoted as {backquoted:?}"
    );
    Some(name)
}

/// Checks `Job::parse(doc)`: no panic (also in the error's message), and a job that parses
/// satisfies every documented invariant.
fn check_job(doc: &str) -> Result<Job, String> {
    let parsed = no_panic("Job::parse", doc, || {
        Job::parse(doc, Path::new("jobs/fuzz.toml")).map_err(|e| e.to_string())
    });
    let Ok(job) = &parsed else { return parsed };
    assert!(is_valid_job_name(&job.name), "{doc:?}: name {:?}", job.name);
    let back = TableName::parse(&job.table.to_string()).expect("the quoted table parses");
    assert_eq!(
        (&back.schema, &back.name),
        (&job.table.schema, &job.table.name),
        "{doc:?}"
    );
    let columns = job
        .set
        .iter()
        .map(|a| &a.column)
        .chain(job.key.iter().flatten());
    for column in columns {
        assert!(
            !column.is_empty() && column.len() <= MAX_IDENTIFIER_BYTES && !column.contains('\0'),
            "{doc:?}: column {column:?}"
        );
    }
    assert!(!job.set.is_empty(), "{doc:?}");
    assert!(
        job.set.windows(2).all(|w| w[0].column < w[1].column),
        "{doc:?}: [set] not sorted and unique"
    );
    for text in job.set.iter().map(|a| &a.expr).chain([&job.filter]) {
        assert!(
            !text.is_empty() && text.trim() == text && !text.contains('\0'),
            "{doc:?}: expression {text:?}"
        );
    }
    let b = job.batch;
    assert!(
        1 <= b.min && b.min <= b.size && b.size <= b.max && b.max <= 100_000,
        "{doc:?}: {b:?}"
    );
    assert!(!b.target.is_zero(), "{doc:?}");
    let t = job.timeouts;
    assert!(
        t.lock.as_millis() >= 1 && t.statement > t.lock && t.statement > b.target,
        "{doc:?}: {t:?}"
    );
    let hash = job.definition_hash();
    assert!(
        hash.len() == 16 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
        "{doc:?}: hash {hash:?}"
    );
    parsed
}

#[test]
fn fuzzed_names_and_job_files_never_panic_and_keep_their_invariants() {
    let mut rng = XorShift(0x5EED_BAC4_F111_0001);
    let (mut tables_ok, mut jobs_ok, mut spliced_ok) = (0, 0, 0);
    for _ in 0..20_000 {
        let text = random_text(&mut rng);
        check_ident(&text);
        tables_ok += usize::from(check_table_name(&text).is_some());

        jobs_ok += usize::from(check_job(&random_document(&mut rng)).is_ok());

        let slot = SLOTS[rng.below(SLOTS.len())];
        let value = random_text(&mut rng);
        let escaped = rng.below(3) != 0;
        let doc = spliced(
            slot,
            &if escaped {
                toml_string(&value)
            } else {
                value.clone()
            },
        );
        let job = check_job(&doc);
        spliced_ok += usize::from(job.is_ok());
        if !escaped {
            continue;
        }
        // A correctly escaped value in an otherwise valid file: the job is valid exactly when
        // the value is, and carries it unchanged.
        match slot {
            Slot::Table => assert_eq!(
                job.as_ref().map(|j| &j.table).ok(),
                TableName::parse(&value).ok().as_ref(),
                "{doc:?}: {job:?}"
            ),
            Slot::Name => assert_eq!(
                job.as_ref().map(|j| j.name.as_str()).ok(),
                is_valid_job_name(&value).then_some(value.as_str()),
                "{doc:?}: {job:?}"
            ),
            Slot::Key => {
                let valid = !value.is_empty()
                    && value.len() <= MAX_IDENTIFIER_BYTES
                    && !value.contains('\0')
                    && value != "total";
                assert_eq!(
                    job.as_ref().ok().and_then(|j| j.key.clone()),
                    valid.then(|| vec![value.clone()]),
                    "{doc:?}: {job:?}"
                );
            }
            Slot::Column => {
                let valid = !value.is_empty()
                    && value.len() <= MAX_IDENTIFIER_BYTES
                    && !value.contains('\0')
                    && value != "id";
                assert_eq!(
                    job.as_ref().ok().map(|j| j.set[0].column.clone()),
                    valid.then(|| value.clone()),
                    "{doc:?}: {job:?}"
                );
            }
            Slot::Where => assert_eq!(
                job.as_ref().map(|j| j.filter.as_str()).ok(),
                (!value.trim().is_empty() && !value.contains('\0')).then_some(value.trim()),
                "{doc:?}: {job:?}"
            ),
            _ => {}
        }
    }
    println!(
        "20000 rounds: {tables_ok} table names, {jobs_ok} random documents and {spliced_ok} \
         spliced documents were valid"
    );
    assert!(
        tables_ok > 1000 && spliced_ok > 1000,
        "the fuzz hardly reaches valid input: {tables_ok} table names, {spliced_ok} jobs"
    );
}
