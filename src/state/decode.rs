//! Reading the state tables' rows, whichever the database. PostgreSQL's and MySQL's statements
//! select the same columns in the same order, of the same types: text, counts and sums as
//! `bigint`, ids, workers, batch sizes and attempts as `int`, ages, lease timeouts and rates as
//! `double`, keys as the JSON text of [`stored`](super::stored). So one decoder per row serves
//! both, generic over sqlx's rows ([`Fields`]): a column added to a row is read in one place.
//!
//! Owns no SQL and names no driver type: each database's folder selects the columns (its own
//! SQL says in which order) and hands its own rows to these.

use crate::rows::Fields;

use super::stored::{from_json, unsigned};
use super::{FailedRow, JobRow, Lease, Owner, Pending, Progress, RangeRow};

/// A `bigint` that is a size, when there is one: a negative one is none.
fn size(v: Option<i64>) -> Option<u64> {
    v.and_then(|b| u64::try_from(b).ok())
}

/// A count of ranges, workers, processes or hosts; one that does not fit a `u32` reads as 0.
fn small(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

/// A [`JobRow`] from the job's 33 columns, in the order each database's `jobs` select writes
/// them (the counts of ranges, workers, processes and hosts as `bigint`).
pub fn job_row(row: &impl Fields) -> Result<JobRow, sqlx::Error> {
    let batch_size: Option<i32> = row.field(7)?;
    Ok(JobRow {
        name: row.field(0)?,
        table_name: row.field(1)?,
        definition_hash: row.field(2)?,
        status: row.field(3)?,
        range_end: from_json(row.field(4)?)?,
        rows_done: unsigned(row.field(5)?),
        batches_done: unsigned(row.field(6)?),
        batch_size: batch_size.and_then(|b| u32::try_from(b).ok()),
        owner: row.field::<Option<String>>(8)?.map(Owner),
        heartbeat_age: row.field(9)?,
        lease_s: row.field(10)?,
        updated_age: row.field(11)?,
        control: row.field(12)?,
        last_error: row.field(13)?,
        heap_bytes_start: size(row.field(14)?),
        cursor: from_json(row.field(15)?)?,
        rate: row.field(16)?,
        note: row.field(17)?,
        ranges: small(row.field(18)?),
        ranges_done: small(row.field(19)?),
        workers: small(row.field(20)?),
        processes: small(row.field(21)?),
        hosts: small(row.field(22)?),
        keys_walked: unsigned(row.field(23)?),
        keys_left: row.field::<Option<i64>>(24)?.map(unsigned),
        failures: unsigned(row.field(25)?),
        heap_bytes_end: size(row.field(26)?),
        pending: match (
            row.field::<Option<i64>>(27)?,
            row.field::<Option<i64>>(28)?,
            row.field::<Option<bool>>(29)?,
        ) {
            (Some(rows), Some(rows_done), Some(exact)) => Some(Pending {
                rows: unsigned(rows),
                rows_done: unsigned(rows_done),
                exact,
                table_rows: row.field::<Option<i64>>(30)?.map(unsigned),
            }),
            _ => None,
        },
        settings: row.field(31)?,
        rows_walked: unsigned(row.field(32)?),
    })
}

/// A [`RangeRow`] from a range's 17 columns starting at column `at` (a listing of every job's
/// ranges puts the job's name first): id, relation, lower, upper, cursor, status, owner, the
/// heartbeat's age, the lease timeout, worker, rows and batches done, the keys estimated and
/// walked, batch size, rate and note.
pub fn range_row(row: &impl Fields, at: usize) -> Result<RangeRow, sqlx::Error> {
    let get = |i: usize| i + at;
    let id: i32 = row.field(get(0))?;
    let owner: Option<String> = row.field(get(6))?;
    Ok(RangeRow {
        id: u32::try_from(id).unwrap_or_default(),
        relation: row.field(get(1))?,
        lower: from_json(row.field(get(2))?)?,
        upper: from_json(row.field(get(3))?)?.unwrap_or_default(),
        cursor: from_json(row.field(get(4))?)?,
        status: row.field(get(5))?,
        lease: owner
            .map(|owner| -> Result<Lease, sqlx::Error> {
                Ok(Lease {
                    owner: Owner(owner),
                    heartbeat_age: row.field(get(7))?,
                    timeout_s: row.field(get(8))?,
                })
            })
            .transpose()?,
        worker: row
            .field::<Option<i32>>(get(9))?
            .and_then(|w| u32::try_from(w).ok()),
        rows_done: unsigned(row.field(get(10))?),
        batches_done: unsigned(row.field(get(11))?),
        keys_estimate: row.field::<Option<i64>>(get(12))?.map(unsigned),
        keys_walked: unsigned(row.field(get(13))?),
        batch_size: row
            .field::<Option<i32>>(get(14))?
            .and_then(|b| u32::try_from(b).ok()),
        rate: row.field(get(15))?,
        note: row.field(get(16))?,
    })
}

/// A lease held on a job's ranges, from its owner, its freshest heartbeat's age and its
/// timeout.
pub fn lease(row: &impl Fields) -> Result<Lease, sqlx::Error> {
    Ok(Lease {
        owner: Owner(row.field(0)?),
        heartbeat_age: row.field(1)?,
        timeout_s: row.field(2)?,
    })
}

/// A [`FailedRow`] with its `seq`, from `seq`, the columns' and the key's JSON, relation,
/// SQLSTATE, message, notes, attempts and the age of its last failure.
pub fn failed_row(row: &impl Fields) -> Result<(i64, FailedRow), sqlx::Error> {
    let attempts: i32 = row.field(7)?;
    Ok((
        row.field(0)?,
        FailedRow {
            columns: from_json(row.field(1)?)?.unwrap_or_default(),
            key: from_json(row.field(2)?)?.unwrap_or_default(),
            relation: row.field(3)?,
            sqlstate: row.field(4)?,
            message: row.field(5)?,
            notes: row.field(6)?,
            attempts: u32::try_from(attempts).unwrap_or_default(),
            age: row.field(8)?,
        },
    ))
}

/// Where the job stands after a checkpoint: its rows and batches done, then its ranges' keys
/// and rows walked and keys left.
pub fn progress(row: &impl Fields) -> Result<Progress, sqlx::Error> {
    Ok(Progress {
        rows_done: unsigned(row.field(0)?),
        batches_done: unsigned(row.field(1)?),
        keys_walked: unsigned(row.field(2)?),
        rows_walked: unsigned(row.field(3)?),
        keys_left: row.field::<Option<i64>>(4)?.map(unsigned),
    })
}
