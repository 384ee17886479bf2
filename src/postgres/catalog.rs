//! Facts about the target table, read from the system catalog once per run: where the table
//! is, which columns make its key and their types, whether an index serves the key walk, and
//! which triggers will fire; and the server's version, which must be a supported one, for the
//! statements that differ between versions. Checks the job against the live catalog (so a run
//! before the expand migration stops here, before anything is written). Builds no statement
//! about the table itself; that is `plan`'s job.

use std::time::Duration;

use sqlx::{PgConnection, Row as _};
use thiserror::Error;

use crate::job::Job;
use crate::plan::START_LOCK_TIMEOUT;
use crate::postgres::{
    NEWEST_TESTED_MAJOR, OLDEST_SERVER, begin_bounded, server_version, statement, version_name,
};

/// What the catalog says about the job's table.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalog {
    /// The server's `server_version_num` (`160004` for 16.4), at least [`OLDEST_SERVER`]: what
    /// a statement or a signal that differs between major versions goes by.
    pub server_version: u32,
    /// The schema the table was found in (as stored, unquoted).
    pub schema: String,
    /// The table's name (as stored, unquoted).
    pub name: String,
    /// The key columns, in key order.
    pub key: Vec<Column>,
    /// Where the key came from.
    pub key_source: KeySource,
    /// A btree index whose leading columns are the key, if there is one; without it every
    /// batch scans the table.
    pub key_index: Option<String>,
    /// Enabled user triggers on the table; they fire for every row a batch changes.
    pub triggers: Vec<String>,
    /// The `[set]` columns with their types, in the job's order: `verify --values` casts each
    /// expression to its column's type, as the batch's assignment does.
    pub set: Vec<Column>,
    /// The table is partitioned: batches update its leaf partitions directly.
    pub partitioned: bool,
    /// The leaf partitions of a partitioned table, in name order (empty for a plain table).
    pub leaves: Vec<Relation>,
}

/// A table by schema and name, as stored (unquoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub schema: String,
    pub name: String,
}

/// A key column and its type as SQL (`format_type`), used to cast key text back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub type_sql: String,
    /// The column's own collation as SQL (`"pg_catalog"."und-x-icu"`) when it is not its
    /// type's default: keys read back from text must compare in the column's order.
    pub collation: Option<String>,
}

/// How the key columns were chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The table's primary key (index name).
    PrimaryKey(String),
    /// A unique index on NOT NULL columns (index name), used when there is no primary key.
    UniqueIndex(String),
    /// `key = [...]` in the job file.
    JobFile,
}

/// Why the catalog does not fit the job, or could not be read.
#[derive(Debug, Error)]
pub enum CatalogError {
    #[error(
        "the server runs PostgreSQL {version}, and backfill needs PostgreSQL {oldest} or newer \
         (it is tested on {oldest} to {NEWEST_TESTED_MAJOR}); upgrade the server",
        oldest = OLDEST_SERVER / 10000
    )]
    UnsupportedServer { version: String },
    #[error(
        "table {table} does not exist; check the schema name, or the search_path of the connecting user if the name is not schema-qualified"
    )]
    TableNotFound { table: String },
    #[error("{table} is a {kind}, not a table; backfill updates ordinary or partitioned tables")]
    NotATable { table: String, kind: String },
    #[error(
        "column {column:?} of table {table} does not exist — has the expand migration been applied?"
    )]
    ColumnMissing { column: String, table: String },
    #[error("key column {column:?} of table {table} does not exist; fix `key` in the job file")]
    KeyColumnMissing { column: String, table: String },
    #[error(
        "key column {column:?} of table {table} allows NULL, and rows with a NULL key would be skipped; choose NOT NULL columns for `key`"
    )]
    NullableKey { column: String, table: String },
    #[error(
        "table {table} has no primary key and no unique index on NOT NULL columns; set key = [\"column\", …] in the job file"
    )]
    NoKey { table: String },
    #[error(
        "[set] writes key column {column:?}; changing the key while walking it would skip or repeat rows"
    )]
    SetsKeyColumn { column: String },
    #[error(
        "partition {partition} of {table} is a foreign table; backfill updates only local partitions — fill it on its own server"
    )]
    ForeignPartition { partition: String, table: String },
    #[error("[set] writes {column:?}, a generated column of table {table}; PostgreSQL computes it")]
    GeneratedColumn { column: String, table: String },
    #[error("cannot read the catalog for table {table}")]
    Database {
        table: String,
        #[source]
        source: sqlx::Error,
    },
}

impl CatalogError {
    /// True when the job does not fit the database, or the server is older than supported (exit
    /// code 2: nothing was touched), false when the database could not be read (exit code 1).
    pub fn is_invalid_job(&self) -> bool {
        !matches!(self, CatalogError::Database { .. })
    }
}

/// One column as the catalog lists it.
struct ColumnFacts {
    name: String,
    type_sql: String,
    collation: Option<String>,
    not_null: bool,
    generated: bool,
}

/// One usable btree index: plain columns, no predicate, no expressions.
struct IndexFacts {
    name: String,
    primary: bool,
    unique: bool,
    columns: Vec<String>,
}

const RESOLVE: &str = "SELECT c.oid::int8, n.nspname::text, c.relname::text, c.relkind::text \
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)";

const COLUMNS: &str = "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull, \
    a.attgenerated <> '', CASE WHEN a.attcollation <> t.typcollation \
        THEN quote_ident(cn.nspname) || '.' || quote_ident(co.collname) END \
    FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
    LEFT JOIN pg_collation co ON co.oid = a.attcollation \
    LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace \
    WHERE a.attrelid = $1::int8::oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum";

const INDEXES: &str = "SELECT i.indexrelid::regclass::text, i.indisprimary, i.indisunique, \
    ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
          WHERE k.ord <= i.indnkeyatts ORDER BY k.ord) \
    FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam \
    WHERE i.indrelid = $1::int8::oid AND i.indisvalid AND i.indisready AND am.amname = 'btree' \
      AND i.indpred IS NULL AND i.indexprs IS NULL \
    ORDER BY i.indisprimary DESC, i.indnkeyatts, 1";

/// The leaf partitions of a partitioned table (`pg_partition_tree`, PostgreSQL 12+).
const LEAVES: &str = "SELECT n.nspname::text, c.relname::text, c.relkind::text \
    FROM pg_partition_tree($1::int8::oid) t JOIN pg_class c ON c.oid = t.relid \
    JOIN pg_namespace n ON n.oid = c.relnamespace WHERE t.isleaf ORDER BY 1, 2";

const TRIGGERS: &str = "SELECT tgname::text FROM pg_trigger \
    WHERE tgrelid = $1::int8::oid AND NOT tgisinternal AND tgenabled <> 'D' ORDER BY 1";

impl Catalog {
    /// Reads the table's facts in one read-only transaction and checks the job against them.
    /// Only `pg_partition_tree` locks anything (the partitions, `ACCESS SHARE`), and never for
    /// longer than [`START_LOCK_TIMEOUT`]: the caller waits for DDL before, not in, the read.
    pub async fn read(conn: &mut PgConnection, job: &Job) -> Result<Catalog, CatalogError> {
        let table = job.table.to_string();
        let db = |source| CatalogError::Database {
            table: table.clone(),
            source,
        };
        let server_version = server_version(conn).await.map_err(db)?;
        if server_version < OLDEST_SERVER {
            return Err(CatalogError::UnsupportedServer {
                version: version_name(server_version),
            });
        }
        // No statement_timeout (0): catalog reads are short; only their lock wait is bounded.
        let (mut tx, _) = begin_bounded(conn, Duration::ZERO, START_LOCK_TIMEOUT, true)
            .await
            .map_err(db)?;
        let resolved = statement(RESOLVE)
            .bind(&table)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .ok_or_else(|| CatalogError::TableNotFound {
                table: table.clone(),
            })?;
        let oid: i64 = resolved.get(0);
        let schema: String = resolved.get(1);
        let name: String = resolved.get(2);
        let kind: String = resolved.get(3);
        if kind != "r" && kind != "p" {
            return Err(CatalogError::NotATable {
                table,
                kind: relkind_name(&kind).into(),
            });
        }
        let columns = statement(COLUMNS)
            .bind(oid)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?
            .into_iter()
            .map(|r| ColumnFacts {
                name: r.get(0),
                type_sql: r.get(1),
                not_null: r.get(2),
                collation: r.get(4),
                generated: r.get(3),
            })
            .collect::<Vec<_>>();
        let indexes = statement(INDEXES)
            .bind(oid)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?
            .into_iter()
            .map(|r| IndexFacts {
                name: r.get(0),
                primary: r.get(1),
                unique: r.get(2),
                columns: r.get(3),
            })
            .collect::<Vec<_>>();
        let triggers = statement(TRIGGERS)
            .bind(oid)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?
            .into_iter()
            .map(|r| r.get(0))
            .collect();
        let partitioned = kind == "p";
        let leaves = if partitioned {
            statement(LEAVES)
                .bind(oid)
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?
                .into_iter()
                .map(|r| (r.get::<String, _>(0), r.get::<String, _>(1), r.get(2)))
                .collect()
        } else {
            vec![]
        };
        tx.commit().await.map_err(db)?;

        let display = crate::postgres::sql::Qualified {
            schema: &schema,
            name: &name,
        }
        .to_string();
        let leaves = local_leaves(leaves, &display)?;
        let (key, key_source) = choose_key(job, &display, &columns, &indexes)?;
        check_set_columns(job, &display, &columns, &key)?;
        let set = job
            .set
            .iter()
            .filter_map(|a| columns.iter().find(|c| c.name == a.column))
            .map(|c| Column {
                name: c.name.clone(),
                type_sql: c.type_sql.clone(),
                collation: c.collation.clone(),
            })
            .collect();
        let key_index = indexes
            .iter()
            .find(|i| {
                i.columns.len() >= key.len()
                    && key.iter().zip(&i.columns).all(|(k, c)| &k.name == c)
            })
            .map(|i| i.name.clone());
        Ok(Catalog {
            server_version,
            schema,
            name,
            key,
            key_source,
            key_index,
            triggers,
            set,
            partitioned,
            leaves,
        })
    }
}

/// The leaves as relations, refusing foreign ones (`relkind` `f`).
fn local_leaves(
    leaves: Vec<(String, String, String)>,
    table: &str,
) -> Result<Vec<Relation>, CatalogError> {
    leaves
        .into_iter()
        .map(|(schema, name, kind)| {
            if kind == "f" {
                return Err(CatalogError::ForeignPartition {
                    partition: crate::postgres::sql::Qualified {
                        schema: &schema,
                        name: &name,
                    }
                    .to_string(),
                    table: table.into(),
                });
            }
            Ok(Relation { schema, name })
        })
        .collect()
}

/// The job's key, or the primary key, or the first unique index on NOT NULL columns.
fn choose_key(
    job: &Job,
    table: &str,
    columns: &[ColumnFacts],
    indexes: &[IndexFacts],
) -> Result<(Vec<Column>, KeySource), CatalogError> {
    let find = |name: &str| columns.iter().find(|c| c.name == name);
    let key_columns = |names: &[String]| -> Result<Vec<Column>, CatalogError> {
        names
            .iter()
            .map(|n| {
                let c = find(n).ok_or_else(|| CatalogError::KeyColumnMissing {
                    column: n.clone(),
                    table: table.into(),
                })?;
                if !c.not_null {
                    return Err(CatalogError::NullableKey {
                        column: n.clone(),
                        table: table.into(),
                    });
                }
                Ok(Column {
                    name: c.name.clone(),
                    type_sql: c.type_sql.clone(),
                    collation: c.collation.clone(),
                })
            })
            .collect()
    };
    if let Some(names) = &job.key {
        return Ok((key_columns(names)?, KeySource::JobFile));
    }
    let all_not_null = |i: &&IndexFacts| {
        i.columns
            .iter()
            .all(|n| find(n).is_some_and(|c| c.not_null))
    };
    if let Some(pk) = indexes.iter().find(|i| i.primary) {
        return Ok((
            key_columns(&pk.columns)?,
            KeySource::PrimaryKey(pk.name.clone()),
        ));
    }
    match indexes.iter().filter(|i| i.unique).find(all_not_null) {
        Some(u) => Ok((
            key_columns(&u.columns)?,
            KeySource::UniqueIndex(u.name.clone()),
        )),
        None => Err(CatalogError::NoKey {
            table: table.into(),
        }),
    }
}

/// Every `[set]` column exists, is not generated and is not part of the key.
fn check_set_columns(
    job: &Job,
    table: &str,
    columns: &[ColumnFacts],
    key: &[Column],
) -> Result<(), CatalogError> {
    for a in &job.set {
        let column = columns.iter().find(|c| c.name == a.column).ok_or_else(|| {
            CatalogError::ColumnMissing {
                column: a.column.clone(),
                table: table.into(),
            }
        })?;
        if column.generated {
            return Err(CatalogError::GeneratedColumn {
                column: a.column.clone(),
                table: table.into(),
            });
        }
        if key.iter().any(|k| k.name == a.column) {
            return Err(CatalogError::SetsKeyColumn {
                column: a.column.clone(),
            });
        }
    }
    Ok(())
}

/// `pg_class.relkind` in words.
fn relkind_name(kind: &str) -> &'static str {
    match kind {
        "v" => "view",
        "m" => "materialized view",
        "i" | "I" => "index",
        "S" => "sequence",
        "f" => "foreign table",
        "c" => "composite type",
        "t" => "TOAST table",
        _ => "relation of another kind",
    }
}
