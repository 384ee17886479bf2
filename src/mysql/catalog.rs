//! Facts about the target table on MySQL and MariaDB, read from `information_schema` once per
//! run, as `crate::postgres::catalog` reads them from PostgreSQL's catalog: where the table is,
//! its columns (type, nullability, collation, whether generated), its primary key and unique
//! indexes, the triggers an `UPDATE` fires; and the server's version, which must be a supported
//! one. The rules that check the job against them are the shared `Catalog::assemble`; this
//! module adds only that each key column has a type whose order a text key can carry
//! (`plan::cast`). Builds no statement about the table itself; that is `plan`'s job.
//!
//! Every text column is read through `CAST(… AS CHAR)` and every number through
//! `CAST(… AS SIGNED)`: MySQL 9 returns several `information_schema` columns as `VARBINARY` or
//! `BLOB`, which sqlx does not decode into a `String` (launchbadge/sqlx#3387).

use sqlx::{AssertSqlSafe, Connection as _, MySqlConnection, Row as _};

use crate::catalog::{Catalog, CatalogError, ColumnFacts, Facts, IndexFacts};
use crate::job::Job;
use crate::mysql::Flavor;
use crate::mysql::plan::cast;
use crate::mysql::session::statement;
use crate::mysql::sql::{Ident, Qualified};
use crate::plan::START_LOCK_TIMEOUT;

/// The oldest MySQL that backfill runs on, as [`Catalog::server_version`] numbers it.
const OLDEST_MYSQL: u32 = 80022;
/// The oldest MariaDB that backfill runs on.
const OLDEST_MARIADB: u32 = 100600;
const NEEDS: &str = "MySQL 8.0.22 or newer, or MariaDB 10.6 or newer";

/// What the session says before anything is looked up: the server, the database it selected,
/// and its metadata lock wait, to put back after the read.
const SESSION: &str = "SELECT CAST(VERSION() AS CHAR), CAST(DATABASE() AS CHAR), \
    CAST(@@SESSION.lock_wait_timeout AS SIGNED)";

const TABLE: &str = "SELECT CAST(TABLE_SCHEMA AS CHAR), CAST(TABLE_NAME AS CHAR), \
    CAST(TABLE_TYPE AS CHAR), CAST(ENGINE AS CHAR) \
    FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?";

const COLUMNS: &str = "SELECT CAST(COLUMN_NAME AS CHAR), CAST(COLUMN_TYPE AS CHAR), \
    CAST(IS_NULLABLE AS CHAR), CAST(COLLATION_NAME AS CHAR), CAST(EXTRA AS CHAR) \
    FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
    ORDER BY ORDINAL_POSITION";

/// Unique indexes, one row per column in index order. A prefix (`SUB_PART`) or an expression
/// (no `COLUMN_NAME`, MySQL 8.0.13+) makes an index unusable for the key: see [`indexes`].
const INDEXES: &str = "SELECT CAST(INDEX_NAME AS CHAR), CAST(COLUMN_NAME AS CHAR), \
    CAST(SUB_PART AS SIGNED), CAST(INDEX_TYPE AS CHAR) \
    FROM information_schema.STATISTICS \
    WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND NON_UNIQUE = 0 \
    ORDER BY INDEX_NAME, SEQ_IN_INDEX";

/// Only `UPDATE` triggers: the only ones a batch fires.
const TRIGGERS: &str = "SELECT CAST(TRIGGER_NAME AS CHAR) FROM information_schema.TRIGGERS \
    WHERE EVENT_OBJECT_SCHEMA = ? AND EVENT_OBJECT_TABLE = ? AND EVENT_MANIPULATION = 'UPDATE' \
    ORDER BY 1";

/// Reads the table's facts in one read-only transaction and checks the job against them. The
/// table is looked up as the job file names it, case kept (`TableName::exact`), in the
/// session's database when the name has none. `information_schema` takes metadata locks on
/// what it reads, so the transaction waits no longer than [`START_LOCK_TIMEOUT`] (in whole
/// seconds, the server's unit) for one: the caller waits for DDL before, not in, the read.
pub async fn read(conn: &mut MySqlConnection, job: &Job) -> Result<Catalog, CatalogError> {
    if job.throttle.max_wal_rate.is_some() {
        return Err(CatalogError::WalRateOnMysql);
    }
    let (schema, name) = job.table.exact();
    let shown = match schema {
        Some(schema) => Qualified { schema, name }.to_string(),
        None => Ident(name).to_string(),
    };
    let db = |source| CatalogError::Database {
        table: shown.clone(),
        source,
    };
    // Not prepared: a prepared statement keeps the database selected when it was prepared,
    // and sqlx keeps prepared statements for the connection's life.
    let session = sqlx::raw_sql(AssertSqlSafe(SESSION))
        .fetch_one(&mut *conn)
        .await
        .map_err(db)?;
    let version: String = session.try_get(0).map_err(db)?;
    let selected: Option<String> = session.try_get(1).map_err(db)?;
    let lock_wait: i64 = session.try_get(2).map_err(db)?;
    let server_version = supported(&version)?;
    let schema = match schema {
        Some(schema) => schema.to_owned(),
        None => selected.ok_or_else(|| CatalogError::NoDatabase {
            table: shown.clone(),
        })?,
    };

    let seconds = START_LOCK_TIMEOUT.as_millis().div_ceil(1000).max(1);
    let facts = read_facts(conn, &schema, name, seconds, server_version).await;
    // Put the session's lock wait back, whether or not the read worked (a failed read's
    // transaction is rolled back first, as sqlx does before the next statement).
    let restore = format!("SET SESSION lock_wait_timeout = {lock_wait}");
    sqlx::raw_sql(AssertSqlSafe(restore))
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    let facts = facts.map_err(|e| match e {
        Read::Database(source) => db(source),
        Read::Catalog(e) => e,
    })?;

    let display = facts.display.clone();
    let catalog = Catalog::assemble(job, facts)?;
    if let Some(c) = catalog.key.iter().find(|c| cast::cast(c).is_none()) {
        return Err(CatalogError::UnsupportedKeyType {
            column: c.name.clone(),
            table: display,
            type_sql: c.type_sql.clone(),
        });
    }
    Ok(catalog)
}

/// Why [`read_facts`] stopped: the database, or a table that does not fit.
enum Read {
    Database(sqlx::Error),
    Catalog(CatalogError),
}

impl From<sqlx::Error> for Read {
    fn from(e: sqlx::Error) -> Read {
        Read::Database(e)
    }
}

/// The table's facts, in one read-only transaction whose metadata lock waits last at most
/// `seconds`.
async fn read_facts(
    conn: &mut MySqlConnection,
    schema: &str,
    name: &str,
    seconds: u128,
    server_version: u32,
) -> Result<Facts, Read> {
    let begin = format!("SET SESSION lock_wait_timeout = {seconds}; START TRANSACTION READ ONLY");
    let mut tx = conn.begin_with(AssertSqlSafe(begin)).await?;
    let shown = Qualified { schema, name }.to_string();
    let table = statement(TABLE)
        .bind(schema)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| {
            Read::Catalog(CatalogError::TableNotFound {
                table: shown.clone(),
                hint: CatalogError::MYSQL_NOT_FOUND,
            })
        })?;
    let schema: String = table.try_get(0)?;
    let name: String = table.try_get(1)?;
    let display = Qualified {
        schema: &schema,
        name: &name,
    }
    .to_string();
    let kind: String = table.try_get(2)?;
    if kind != "BASE TABLE" {
        return Err(Read::Catalog(CatalogError::NotATable {
            table: display,
            kind: kind_name(&kind),
        }));
    }
    let engine: Option<String> = table.try_get(3)?;
    let engine = engine.unwrap_or_default();
    if !engine.eq_ignore_ascii_case("InnoDB") {
        return Err(Read::Catalog(CatalogError::UnsupportedEngine {
            table: display,
            engine,
        }));
    }

    let columns = statement(COLUMNS)
        .bind(&schema)
        .bind(&name)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| {
            let extra: Option<String> = r.try_get(4)?;
            Ok(ColumnFacts {
                name: r.try_get(0)?,
                type_sql: r.try_get(1)?,
                not_null: r.try_get::<String, _>(2)? == "NO",
                collation: r.try_get(3)?,
                generated: is_generated(extra.as_deref().unwrap_or_default()),
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let parts = statement(INDEXES)
        .bind(&schema)
        .bind(&name)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| {
            Ok(IndexPart {
                index: r.try_get(0)?,
                column: r.try_get(1)?,
                prefix: r.try_get::<Option<i64>, _>(2)?.is_some(),
                btree: r.try_get::<String, _>(3)? == "BTREE",
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let triggers = statement(TRIGGERS)
        .bind(&schema)
        .bind(&name)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<Vec<String>, _>>()?;
    tx.commit().await?;

    Ok(Facts {
        server_version,
        schema,
        name,
        display,
        columns,
        indexes: indexes(parts),
        triggers,
        // InnoDB's partitioning is transparent: an UPDATE on the table prunes partitions itself.
        partitioned: false,
        leaves: vec![],
    })
}

/// One column of a unique index, as `information_schema.STATISTICS` lists it.
struct IndexPart {
    index: String,
    /// `None` for an expression (a functional key part).
    column: Option<String>,
    /// Only a prefix of the column is indexed (`SUB_PART`).
    prefix: bool,
    btree: bool,
}

/// The usable unique indexes, primary key first, then the narrower ones, then by name (as the
/// PostgreSQL catalog orders them): each a B-tree on whole columns.
fn indexes(parts: Vec<IndexPart>) -> Vec<IndexFacts> {
    let mut out: Vec<IndexFacts> = Vec::new();
    let mut unusable: Vec<String> = Vec::new();
    for part in parts {
        let usable = part.btree && !part.prefix && part.column.is_some();
        if !usable {
            unusable.push(part.index.clone());
        }
        match out.last_mut() {
            Some(last) if last.name == part.index => last.columns.extend(part.column),
            _ => out.push(IndexFacts {
                primary: part.index == "PRIMARY",
                unique: true,
                columns: part.column.into_iter().collect(),
                name: part.index,
            }),
        }
    }
    out.retain(|i| !unusable.contains(&i.name));
    out.sort_by(|a, b| {
        (!a.primary, a.columns.len(), &a.name).cmp(&(!b.primary, b.columns.len(), &b.name))
    });
    out
}

/// Whether `EXTRA` marks a column the server computes: `VIRTUAL GENERATED`, `STORED
/// GENERATED` (MariaDB also `PERSISTENT GENERATED`), or a MariaDB system-versioning column
/// (`ROW START`, `ROW END`). Not MySQL's `DEFAULT_GENERATED`, a column with an expression
/// default, which may be written.
fn is_generated(extra: &str) -> bool {
    let extra = extra.to_ascii_uppercase();
    [
        "VIRTUAL GENERATED",
        "STORED GENERATED",
        "PERSISTENT GENERATED",
        "ROW START",
        "ROW END",
    ]
    .iter()
    .any(|g| extra.contains(g))
}

/// `TABLE_TYPE` in words.
fn kind_name(kind: &str) -> String {
    match kind {
        "VIEW" => "view".into(),
        "SYSTEM VIEW" => "system view".into(),
        "SEQUENCE" => "sequence".into(),
        "SYSTEM VERSIONED" => "system-versioned table".into(),
        "TEMPORARY" => "temporary table".into(),
        other => other.to_ascii_lowercase(),
    }
}

/// The server's version as a number, when it is a supported one.
fn supported(version: &str) -> Result<u32, CatalogError> {
    let flavor = Flavor::of_version(version);
    let number = version_number(version);
    let oldest = match flavor {
        Flavor::MariaDb => OLDEST_MARIADB,
        Flavor::MySql => OLDEST_MYSQL,
    };
    match number {
        Some(n) if n >= oldest => Ok(n),
        _ => Err(CatalogError::UnsupportedServer {
            version: format!("{flavor} {}", numeric_part(version)),
            needs: NEEDS.into(),
        }),
    }
}

/// `8.0.20` of `8.0.20-log`, `10.5.9` of `10.5.9-MariaDB-1:10.5.9+maria~focal`.
fn numeric_part(version: &str) -> &str {
    let end = version
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(version.len());
    &version[..end]
}

/// `VERSION()` as `major * 10000 + minor * 100 + patch`: `8.4.4` → 80404, `9.7.4-2` → 90704,
/// `10.11.19-MariaDB-0+deb12u1` → 101119.
fn version_number(version: &str) -> Option<u32> {
    let mut parts = numeric_part(version).split('.').map(str::parse::<u32>);
    let major = parts.next()?.ok()?;
    let minor = parts.next()?.ok()?;
    let patch = parts.next().and_then(Result::ok).unwrap_or(0);
    (minor < 100 && patch < 100).then_some(major * 10000 + minor * 100 + patch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_become_numbers() {
        assert_eq!(version_number("8.4.4"), Some(80404));
        assert_eq!(version_number("9.7.4-2"), Some(90704));
        assert_eq!(version_number("8.0.22-log"), Some(80022));
        assert_eq!(version_number("10.11.19-MariaDB-0+deb12u1"), Some(101119));
        assert_eq!(version_number("11.4"), Some(110400));
        assert_eq!(version_number("devel"), None);
    }

    #[test]
    fn old_servers_are_refused_by_name() {
        assert_eq!(supported("8.0.22").ok(), Some(80022));
        assert_eq!(supported("10.6.0-MariaDB").ok(), Some(100600));
        for (version, named) in [
            ("8.0.20", "MySQL 8.0.20"),
            ("5.7.44-log", "MySQL 5.7.44"),
            ("10.5.9-MariaDB-1:10.5.9+maria~focal", "MariaDB 10.5.9"),
        ] {
            match supported(version) {
                Err(CatalogError::UnsupportedServer { version, needs }) => {
                    assert_eq!(version, named);
                    assert_eq!(needs, NEEDS);
                }
                other => panic!("{version}: {other:?}"),
            }
        }
    }

    fn part(index: &str, column: Option<&str>, prefix: bool) -> IndexPart {
        IndexPart {
            index: index.into(),
            column: column.map(Into::into),
            prefix,
            btree: true,
        }
    }

    #[test]
    fn indexes_on_prefixes_or_expressions_are_left_out() {
        let found = indexes(vec![
            part("by_email", Some("email"), true),
            part("by_expr", None, false),
            part("PRIMARY", Some("tenant"), false),
            part("PRIMARY", Some("id"), false),
            part("a_uuid", Some("uuid"), false),
            part("z_code", Some("code"), false),
            part("z_code", Some("region"), false),
        ]);
        let names: Vec<_> = found.iter().map(|i| (i.name.as_str(), i.primary)).collect();
        assert_eq!(
            names,
            [("PRIMARY", true), ("a_uuid", false), ("z_code", false)]
        );
        assert_eq!(found[0].columns, ["tenant", "id"]);
        assert_eq!(found[2].columns, ["code", "region"]);
    }

    #[test]
    fn generated_columns_are_told_from_expression_defaults() {
        assert!(is_generated("VIRTUAL GENERATED"));
        assert!(is_generated("STORED GENERATED"));
        assert!(is_generated("PERSISTENT GENERATED"));
        assert!(!is_generated("DEFAULT_GENERATED"));
        assert!(!is_generated(
            "DEFAULT_GENERATED on update CURRENT_TIMESTAMP"
        ));
        assert!(!is_generated("auto_increment"));
    }
}
