//! How the state tables store counts and keys, whichever the database: counts as signed 64- and
//! 32-bit integers (what both servers' `bigint` and `int` are), keys as a JSON array of the
//! key columns' text. Each database's statements read and write rows through these, so that
//! a key written on one reads back the same on the other and in every process.

use super::Key;

/// A count as stored (`bigint`, never negative when we wrote it).
pub fn unsigned(v: i64) -> u64 {
    u64::try_from(v).unwrap_or_default()
}

/// A count as a `bigint`, saturating.
pub fn int8(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A count as an `int`, saturating.
pub fn int4(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// A key as stored: a JSON array of the key columns' text.
pub fn to_json(values: &[String]) -> String {
    serde_json::to_string(values).unwrap_or_else(|_| "[]".into())
}

/// A key as stored by [`to_json`]; anything else is corruption.
pub fn from_json(text: Option<String>) -> Result<Option<Key>, sqlx::Error> {
    text.map(|t| serde_json::from_str(&t).map_err(|e| sqlx::Error::Decode(Box::new(e))))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_as_json_arrays_of_text() {
        let key = vec!["acme".to_owned(), "4\"2".to_owned()];
        assert_eq!(to_json(&key), r#"["acme","4\"2"]"#);
        assert_eq!(from_json(Some(to_json(&key))).unwrap(), Some(key));
        assert_eq!(from_json(None).unwrap(), None);
        assert!(from_json(Some("{}".into())).is_err());
    }

    #[test]
    fn counts_saturate_rather_than_wrap() {
        assert_eq!(unsigned(-1), 0);
        assert_eq!(int8(u64::MAX), i64::MAX);
        assert_eq!(int4(u32::MAX), i32::MAX);
    }
}
