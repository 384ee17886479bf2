//! Facts about the target table, read from the system catalog once per run: where the table
//! is, which columns make its key and their types, whether an index serves the key walk, and
//! which triggers will fire; and the server's version, which must be a supported one, for the
//! statements that differ between versions. Checks the job against the live catalog (so a run
//! before the expand migration stops here, before anything is written). Builds no statement
//! about the table itself; that is `plan`'s job.

use std::time::Duration;

use sqlx::{PgConnection, Row as _};

use crate::catalog::{Catalog, CatalogError, ColumnFacts, Facts, IndexFacts, Relation};
use crate::job::Job;
use crate::plan::START_LOCK_TIMEOUT;
use crate::postgres::{
    NEWEST_TESTED_MAJOR, OLDEST_SERVER, begin_bounded, server_version, statement, version_name,
};

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
                version: format!("PostgreSQL {}", version_name(server_version)),
                needs: format!(
                    "PostgreSQL {oldest} or newer (it is tested on {oldest} to \
                     {NEWEST_TESTED_MAJOR})",
                    oldest = OLDEST_SERVER / 10000
                ),
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
                hint: CatalogError::POSTGRES_NOT_FOUND,
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
        Catalog::assemble(
            job,
            Facts {
                server_version,
                schema,
                name,
                display,
                columns,
                indexes,
                triggers,
                partitioned,
                leaves,
            },
        )
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
