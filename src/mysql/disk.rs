//! The table's size on MySQL and MariaDB, as `information_schema.TABLES` keeps it: InnoDB's
//! clustered index (`DATA_LENGTH`) is the heap, and `TABLE_ROWS` the rows as last estimated.
//! InnoDB purges old row versions itself, so there is nothing for a job to vacuum.

use sqlx::{MySqlConnection, Row as _};

use super::session::statement;
use crate::disk::Upkeep;

/// `DATA_LENGTH` and `TABLE_ROWS` of the table that `table`, written as our SQL names it
/// (`` `shop`.`orders` ``), is; `None` when there is no such table.
async fn stats(
    conn: &mut MySqlConnection,
    table: &str,
) -> Result<Option<(u64, Option<u64>)>, sqlx::Error> {
    let Some((schema, name)) = unquote(table) else {
        return Ok(None);
    };
    let row = statement(
        "SELECT CAST(DATA_LENGTH AS UNSIGNED), CAST(TABLE_ROWS AS UNSIGNED) \
         FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
    )
    .bind(schema)
    .bind(name)
    .fetch_optional(conn)
    .await?;
    row.map(|r| Ok((r.try_get::<Option<u64>, _>(0)?.unwrap_or(0), r.try_get(1)?)))
        .transpose()
}

/// The database and name of `` `a`.`b` ``, unquoted.
fn unquote(table: &str) -> Option<(String, String)> {
    let part = |s: &str| -> Option<String> {
        Some(s.strip_prefix('`')?.strip_suffix('`')?.replace("``", "`"))
    };
    let split = table.find("`.`")?;
    Some((part(&table[..=split])?, part(&table[split + 2..])?))
}

/// The heap of `table` in bytes now.
pub async fn heap_bytes(conn: &mut MySqlConnection, table: &str) -> Result<u64, sqlx::Error> {
    Ok(stats(conn, table).await?.map_or(0, |(bytes, _)| bytes))
}

/// The heap of each of `tables`; `None` for one that no longer exists.
pub async fn heaps(
    conn: &mut MySqlConnection,
    tables: &[String],
) -> Result<Vec<Option<u64>>, sqlx::Error> {
    let mut heaps = Vec::with_capacity(tables.len());
    for table in tables {
        heaps.push(stats(conn, table).await?.map(|(bytes, _)| bytes));
    }
    Ok(heaps)
}

/// The rows of `table` as InnoDB last estimated them.
pub async fn counted_rows(
    conn: &mut MySqlConnection,
    table: &str,
) -> Result<Option<u64>, sqlx::Error> {
    Ok(stats(conn, table).await?.and_then(|(_, rows)| rows))
}

/// Nothing to vacuum: InnoDB's purge reclaims old row versions.
pub async fn upkeep(conn: &mut MySqlConnection) -> Result<Upkeep, sqlx::Error> {
    Ok(Upkeep {
        role: super::monitor::role(conn).await?,
        denied: vec![],
        maintain: false,
        purges: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_names_unquote() {
        assert_eq!(
            unquote("`shop`.`Order``Items`"),
            Some(("shop".into(), "Order`Items".into()))
        );
        assert_eq!(unquote("orders"), None);
    }
}
