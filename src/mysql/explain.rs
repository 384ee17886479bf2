//! What MySQL's and MariaDB's `EXPLAIN FORMAT=JSON` says a statement reads: the table's access
//! (`access_type`: `range`, `ref`, `index`, `ALL` for a scan), the index it reads (`key` in the
//! first JSON format, which MariaDB and MySQL up to 8.2 write; `index_name` in MySQL's second,
//! its default from 9). Pure: for `plan` to say which index the key walk uses.

use serde_json::Value;

/// How a statement reads its table, as its `EXPLAIN` says.
#[derive(Debug, Clone, PartialEq)]
pub struct Access {
    /// The index read, if any.
    pub index: Option<String>,
    /// `range`, `ref`, `index`, `ALL` …, as the server names it.
    pub access_type: Option<String>,
}

/// The first table access of `explain` (the JSON of `EXPLAIN FORMAT=JSON`), depth first;
/// `None` when it is not JSON or names no table.
pub fn access(explain: &str) -> Option<Access> {
    let value: Value = serde_json::from_str(explain).ok()?;
    find(&value)
}

fn find(value: &Value) -> Option<Access> {
    match value {
        Value::Object(map) if map.contains_key("table_name") => {
            let text = |key: &str| map.get(key).and_then(Value::as_str).map(str::to_owned);
            Some(Access {
                index: text("key").or_else(|| text("index_name")),
                access_type: text("access_type"),
            })
        }
        Value::Object(map) => map.values().find_map(find),
        Value::Array(items) => items.iter().find_map(find),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mariadb_and_the_first_format_name_the_key() {
        let mariadb = r#"{"query_block": {"select_id": 1, "nested_loop": [{"table": {
            "table_name": "items", "access_type": "range", "possible_keys": ["PRIMARY"],
            "key": "PRIMARY", "rows": 990, "filtered": 100}}]}}"#;
        assert_eq!(
            access(mariadb),
            Some(Access {
                index: Some("PRIMARY".into()),
                access_type: Some("range".into()),
            })
        );
        let mysql = r#"{"query_block": {"select_id": 1, "table": {"update": true,
            "table_name": "items", "access_type": "range", "key": "PRIMARY",
            "rows_examined_per_scan": 90}}}"#;
        assert_eq!(access(mysql).unwrap().index.as_deref(), Some("PRIMARY"));
    }

    #[test]
    fn mysql_9_names_the_index_of_an_inner_operation() {
        let v2 = r#"{"query": "…", "query_plan": {"limit": 200, "inputs": [{"inputs": [{
            "operation": "Covering index range scan on items using PRIMARY",
            "index_name": "PRIMARY", "table_name": "items", "access_type": "index",
            "estimated_rows": 990.0}], "access_type": "filter"}], "access_type": "limit"},
            "json_schema_version": "2.0"}"#;
        let found = access(v2).unwrap();
        assert_eq!(found.index.as_deref(), Some("PRIMARY"));
        assert_eq!(found.access_type.as_deref(), Some("index"));
    }

    #[test]
    fn a_scan_names_no_index() {
        let scan = r#"{"query_block": {"table": {"table_name": "items", "access_type": "ALL",
            "rows": 1000}}}"#;
        assert_eq!(access(scan).unwrap().index, None);
        assert_eq!(access("not json"), None);
    }
}
