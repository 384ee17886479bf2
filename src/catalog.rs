//! What a database's catalog says about a job's table, whichever the database: the key and
//! where it came from, the index that serves the key walk, the triggers, the `[set]` columns'
//! types and the partitions; and the rules that check a job against those facts (the key's
//! choice, the `[set]` columns). Each database reads the facts its own way
//! (`crate::postgres::catalog`, `crate::mysql::catalog`) and hands them to [`Catalog::assemble`].

use thiserror::Error;

use crate::job::Job;

/// What the catalog says about the job's table.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalog {
    /// The server's version as a number (`160004` for PostgreSQL 16.4, `80404` for MySQL
    /// 8.4.4), at least the oldest supported: what a statement or a signal that differs
    /// between versions goes by.
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
    #[error("the server runs {version}, and backfill needs {needs}; upgrade the server")]
    UnsupportedServer { version: String, needs: String },
    #[error("table {table} does not exist; {hint}")]
    TableNotFound {
        table: String,
        /// Where the database looked for an unqualified name, and what to check: each
        /// database's own ([`CatalogError::POSTGRES_NOT_FOUND`],
        /// [`CatalogError::MYSQL_NOT_FOUND`]).
        hint: &'static str,
    },
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
    #[error(
        "[set] writes {column:?}, a generated column of table {table}; the server computes it from its expression, so a job cannot write it: fill the columns it is computed from instead"
    )]
    GeneratedColumn { column: String, table: String },
    #[error(
        "table {table} names no database, and the connection selected none; write the table as database.table, or name a database in the connection URL"
    )]
    NoDatabase { table: String },
    #[error(
        "{table} uses the {engine} storage engine; backfill needs InnoDB's transactions and row locks (ALTER TABLE … ENGINE = InnoDB)"
    )]
    UnsupportedEngine { table: String, engine: String },
    #[error(
        "key column {column:?} of table {table} is {type_sql}, whose order backfill cannot carry as text; choose key columns of an integer, decimal, string, binary, date or time type"
    )]
    UnsupportedKeyType {
        column: String,
        table: String,
        type_sql: String,
    },
    #[error(
        "throttle.max_wal_rate paces the run by PostgreSQL's write-ahead log, which MySQL and \
         MariaDB do not have; remove it from the job file (the binary log's rate is not \
         watched yet)"
    )]
    WalRateOnMysql,
    #[error("cannot read the catalog for table {table}")]
    Database {
        table: String,
        #[source]
        source: sqlx::Error,
    },
}

impl CatalogError {
    /// [`CatalogError::TableNotFound`]'s hint on PostgreSQL, which looks an unqualified name
    /// up along the `search_path`.
    pub const POSTGRES_NOT_FOUND: &'static str = "check the schema name, or the search_path of the connecting user if the name is not schema-qualified";

    /// [`CatalogError::TableNotFound`]'s hint on MySQL and MariaDB, which look an unqualified
    /// name up in the database the connection selected, and on Linux compare table names by
    /// case.
    pub const MYSQL_NOT_FOUND: &'static str = "check the database name (a name without one is looked up in the database the connection URL selects) and the name's case: table names are case-sensitive unless the server's lower_case_table_names says otherwise";

    /// True when the job does not fit the database, or the server is older than supported (exit
    /// code 2: nothing was touched), false when the database could not be read (exit code 1).
    pub fn is_invalid_job(&self) -> bool {
        !matches!(self, CatalogError::Database { .. })
    }
}

/// One column as the catalog lists it.
pub struct ColumnFacts {
    pub name: String,
    pub type_sql: String,
    pub collation: Option<String>,
    pub not_null: bool,
    pub generated: bool,
}

/// One usable btree index: plain columns, no predicate, no expressions.
pub struct IndexFacts {
    pub name: String,
    pub primary: bool,
    pub unique: bool,
    pub columns: Vec<String>,
}

/// The facts a database read, before the job is checked against them.
pub struct Facts {
    /// The server's version, as [`Catalog::server_version`].
    pub server_version: u32,
    pub schema: String,
    pub name: String,
    /// The table as messages name it, quoted as the database quotes it.
    pub display: String,
    pub columns: Vec<ColumnFacts>,
    /// Usable indexes, primary key first.
    pub indexes: Vec<IndexFacts>,
    pub triggers: Vec<String>,
    pub partitioned: bool,
    pub leaves: Vec<Relation>,
}

impl Catalog {
    /// Checks `job` against the facts read (its key, its `[set]` columns) and keeps what a plan
    /// needs.
    pub fn assemble(job: &Job, facts: Facts) -> Result<Catalog, CatalogError> {
        let Facts {
            server_version,
            schema,
            name,
            display,
            columns,
            indexes,
            triggers,
            partitioned,
            leaves,
        } = facts;
        let (key, key_source) = choose_key(job, &display, &columns, &indexes)?;
        check_set_columns(job, &display, &columns, &key)?;
        let set = job
            .set
            .iter()
            .filter_map(|a| columns.iter().find(|c| c.name == a.column))
            .map(ColumnFacts::column)
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

impl ColumnFacts {
    fn column(&self) -> Column {
        Column {
            name: self.name.clone(),
            type_sql: self.type_sql.clone(),
            collation: self.collation.clone(),
        }
    }
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

#[cfg(test)]
impl Column {
    /// A column for the unit tests.
    pub(crate) fn example(name: &str, type_sql: &str, collation: Option<&str>) -> Column {
        Column {
            name: name.into(),
            type_sql: type_sql.into(),
            collation: collation.map(Into::into),
        }
    }
}

#[cfg(test)]
impl Catalog {
    /// A plain table's catalog for the planners' unit tests: `key` is its primary key, through
    /// the index `index`; no triggers, no partitions, and no `[set]` columns' types.
    pub(crate) fn example(
        server_version: u32,
        schema: &str,
        name: &str,
        key: Vec<Column>,
        index: &str,
    ) -> Catalog {
        Catalog {
            server_version,
            schema: schema.into(),
            name: name.into(),
            key,
            key_source: KeySource::PrimaryKey(index.into()),
            key_index: Some(index.into()),
            triggers: vec![],
            set: vec![],
            partitioned: false,
            leaves: vec![],
        }
    }
}
