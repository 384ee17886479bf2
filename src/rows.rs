//! Rows and binds of either database, generic over sqlx's traits: what PostgreSQL's and
//! MySQL's code share where only the driver's type differs. A row is read through [`Fields`]
//! (one bound for every column type `backfill` reads), a key is bound as text parameters
//! ([`bind_keys`]) and read back from a row of text columns ([`key`]).
//!
//! Names no driver type and runs nothing: each database's folder hands its own rows and
//! queries to these, and decoders of whole rows (`state::decode`, `verify`'s walk) build on
//! [`Fields`].

use sqlx::query::Query;
use sqlx::{ColumnIndex, Database, Decode, Encode, Row, Type};

use crate::plan::Key;

/// A row that can give column `i` as a `T`: any sqlx row whose database decodes `T`.
pub trait Field<T> {
    /// Column `i`, decoded as [`Row::try_get`] decodes it.
    fn decode_field(&self, i: usize) -> Result<T, sqlx::Error>;
}

impl<R, T> Field<T> for R
where
    R: Row,
    usize: ColumnIndex<R>,
    T: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    fn decode_field(&self, i: usize) -> Result<T, sqlx::Error> {
        self.try_get(i)
    }
}

/// A row of either database: one bound for every column type `backfill` reads (text, `int`,
/// `bigint`, `double`, `boolean`), so that a decoder's signature needs no list of sqlx's
/// bounds. Each database's folder says that its row is one (`impl Fields for PgRow {}`); the
/// compiler checks there that its database decodes every type.
pub trait Fields:
    Row
    + Field<String>
    + Field<Option<String>>
    + Field<i32>
    + Field<Option<i32>>
    + Field<i64>
    + Field<Option<i64>>
    + Field<Option<f64>>
    + Field<Option<bool>>
{
    /// Column `i` as a `T`.
    fn field<T>(&self, i: usize) -> Result<T, sqlx::Error>
    where
        Self: Field<T>,
    {
        self.decode_field(i)
    }
}

/// A row of text columns as a key.
pub fn key(row: &impl Fields) -> Result<Key, sqlx::Error> {
    leading_key(row, row.len())
}

/// The row's first `n` columns, text, as a key, allocated at its length: collecting an
/// iterator of `Result`s reserves room for four parts, and a layout's sample holds tens of
/// thousands of keys.
pub fn leading_key(row: &impl Fields, n: usize) -> Result<Key, sqlx::Error> {
    let mut key = Vec::with_capacity(n);
    for i in 0..n {
        key.push(row.field(i)?);
    }
    Ok(key)
}

/// Binds `values` (key parts as text, cast back by the statement; `None` as NULL) as the next
/// parameters of `query`.
pub fn bind_keys<'q, DB, I, S>(
    mut query: Query<'q, DB, DB::Arguments>,
    values: I,
) -> Query<'q, DB, DB::Arguments>
where
    DB: Database,
    Option<String>: for<'t> Encode<'t, DB> + Type<DB>,
    I: IntoIterator<Item = Option<S>>,
    S: AsRef<str>,
{
    for v in values {
        query = query.bind(v.map(|s| s.as_ref().to_owned()));
    }
    query
}
