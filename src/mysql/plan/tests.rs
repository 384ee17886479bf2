//! The MySQL planner's SQL text, exactly, and where each key value is bound.

use super::*;
use crate::catalog::Column;

fn catalog(name: &str, key: &[(&str, &str, Option<&str>)]) -> Catalog {
    let key = key.iter().map(|(n, t, c)| Column::example(n, t, *c));
    Catalog::example(80404, "shop", name, key.collect(), "PRIMARY")
}

const USERS: &str = r#"
table = "users"
where = "status_flag IS NULL"
[set]
status_flag = "legacy_status"
"#;

fn users() -> Plan {
    plan(
        &Job::example(USERS),
        &catalog("users", &[("id", "bigint", None)]),
    )
}

/// A key of `(tenant varchar, id int unsigned)` on a table with an odd name.
fn orders() -> Plan {
    let key = [
        ("tenant", "varchar(64)", Some("utf8mb4_0900_ai_ci")),
        ("id", "int unsigned", None),
    ];
    plan(&Job::example(USERS), &catalog("Order`s", &key))
}

const TENANT: &str = "CONVERT(? USING utf8mb4) COLLATE utf8mb4_0900_ai_ci";
const ID: &str = "CAST(CAST(? AS CHAR) AS UNSIGNED)";

#[test]
fn bigint_key_updates_its_range() {
    let p = users();
    assert_eq!(
        p.walk.update.after_cursor,
        "UPDATE `shop`.`users` SET `status_flag` = (legacy_status) \
         WHERE (`id` > CAST(? AS SIGNED)) AND (`id` <= CAST(? AS SIGNED)) AND (status_flag IS NULL)"
    );
    assert_eq!(
        p.walk.update.from_start,
        "UPDATE `shop`.`users` SET `status_flag` = (legacy_status) \
         WHERE (`id` <= CAST(? AS SIGNED)) AND (status_flag IS NULL)"
    );
}

#[test]
fn bigint_key_upper_bound_walks_the_key_up_to_the_range_end() {
    let p = users();
    assert_eq!(
        p.walk.upper_bound.after_cursor,
        "SELECT CAST(`id` AS CHAR) FROM `shop`.`users` \
         WHERE (`id` > CAST(? AS SIGNED)) AND (`id` <= CAST(? AS SIGNED)) \
         ORDER BY `shop`.`users`.`id` LIMIT 1 OFFSET ?"
    );
    assert_eq!(
        p.walk.upper_bound.from_start,
        "SELECT CAST(`id` AS CHAR) FROM `shop`.`users` WHERE (`id` <= CAST(? AS SIGNED)) \
         ORDER BY `shop`.`users`.`id` LIMIT 1 OFFSET ?"
    );
    assert_eq!(
        p.walk.range_end,
        "SELECT CAST(`id` AS CHAR) FROM `shop`.`users` ORDER BY `shop`.`users`.`id` DESC LIMIT 1"
    );
}

#[test]
fn bigint_key_plan_keeps_the_key_and_its_cast() {
    let p = users();
    assert_eq!(p.table, "`shop`.`users`");
    assert_eq!(p.key_len, 1);
    assert_eq!(p.key_columns, ["id"]);
    assert_eq!(p.key_types, ["CAST({} AS SIGNED)"]);
    assert_eq!(p.walks(), std::slice::from_ref(&p.walk));
    assert_eq!(p.relations(), ["`shop`.`users`"]);
}

#[test]
fn composite_key_range_expands_for_the_range_optimizer() {
    let p = orders();
    assert_eq!(
        p.walk.update.after_cursor,
        format!(
            "UPDATE `shop`.`Order``s` SET `status_flag` = (legacy_status) WHERE \
             (`tenant` > {TENANT} OR (`tenant` = {TENANT} AND (`id` > {ID}))) AND \
             (`tenant` < {TENANT} OR (`tenant` = {TENANT} AND (`id` <= {ID}))) \
             AND (status_flag IS NULL)"
        )
    );
    // Bound as cursor [0, 0, 1], then upper [0, 0, 1]: six `?`s.
    assert_eq!(p.walk.update.after_cursor.matches('?').count(), 6);
    assert_eq!(Compare::AFTER.over(2).order(), [0, 0, 1]);
}

#[test]
fn composite_key_upper_bound_reads_each_column_as_text() {
    let p = orders();
    assert_eq!(
        p.walk.upper_bound.from_start,
        format!(
            "SELECT CAST(`tenant` AS CHAR), CAST(`id` AS CHAR) FROM `shop`.`Order``s` WHERE \
             (`tenant` < {TENANT} OR (`tenant` = {TENANT} AND (`id` <= {ID}))) \
             ORDER BY `shop`.`Order``s`.`tenant`, `shop`.`Order``s`.`id` LIMIT 1 OFFSET ?"
        )
    );
    assert_eq!(
        p.walk.range_end,
        "SELECT CAST(`tenant` AS CHAR), CAST(`id` AS CHAR) FROM `shop`.`Order``s` \
         ORDER BY `shop`.`Order``s`.`tenant` DESC, `shop`.`Order``s`.`id` DESC LIMIT 1"
    );
}

#[test]
fn composite_key_equality_binds_each_column_once() {
    let p = orders();
    let equal = format!("(`tenant` = {TENANT} AND `id` = {ID})");
    assert_eq!(
        p.walk.update_key,
        format!(
            "UPDATE `shop`.`Order``s` SET `status_flag` = (legacy_status) WHERE {equal} \
             AND (status_flag IS NULL)"
        )
    );
    assert_eq!(
        p.probe,
        format!("SELECT COUNT(*) FROM `shop`.`Order``s` WHERE {equal}")
    );
    assert_eq!(
        p.key_types,
        [
            "CONVERT({} USING utf8mb4) COLLATE utf8mb4_0900_ai_ci",
            "CAST(CAST({} AS CHAR) AS UNSIGNED)"
        ]
    );
}

#[test]
fn keys_and_sample_read_the_range_in_key_order() {
    let p = users();
    assert_eq!(
        p.walk.keys.from_start,
        "SELECT CAST(`id` AS CHAR) FROM `shop`.`users` WHERE (`id` <= CAST(? AS SIGNED)) \
         ORDER BY `shop`.`users`.`id`"
    );
    assert_eq!(
        p.walk.sample.after_cursor,
        "SELECT CAST(`id` AS CHAR), (status_flag IS NULL) IS TRUE FROM `shop`.`users` \
         WHERE (`id` > CAST(? AS SIGNED)) AND (`id` <= CAST(? AS SIGNED)) AND RAND(0) < ? / 100 \
         ORDER BY `shop`.`users`.`id`"
    );
}

#[test]
fn binary_keys_travel_as_hexadecimal() {
    let p = plan(
        &Job::example(USERS),
        &catalog("users", &[("uid", "binary(16)", None)]),
    );
    assert_eq!(
        p.walk.keys.after_cursor,
        "SELECT HEX(`uid`) FROM `shop`.`users` WHERE (`uid` > UNHEX(?)) AND (`uid` <= UNHEX(?)) \
         ORDER BY `shop`.`users`.`uid`"
    );
}

#[test]
fn datetime_keys_cast_with_their_fraction() {
    let p = plan(
        &Job::example(USERS),
        &catalog("users", &[("at", "datetime(6)", None), ("n", "date", None)]),
    );
    assert_eq!(
        p.walk.update_key,
        "UPDATE `shop`.`users` SET `status_flag` = (legacy_status) \
         WHERE (`at` = CAST(? AS DATETIME(6)) AND `n` = CAST(? AS DATE)) AND (status_flag IS NULL)"
    );
}

#[test]
fn pending_statements_count_and_sample_the_table() {
    let p = users();
    assert_eq!(
        p.pending_count,
        "SELECT COUNT(*) FROM `shop`.`users` WHERE (status_flag IS NULL)"
    );
    assert_eq!(
        p.pending_estimate,
        "EXPLAIN FORMAT=JSON SELECT 1 FROM `shop`.`users` WHERE (status_flag IS NULL)"
    );
    assert_eq!(
        p.pending_sample,
        "SELECT COUNT(CASE WHEN (status_flag IS NULL) THEN 1 END), COUNT(*) FROM `shop`.`users` \
         WHERE RAND(0) < ? / 100"
    );
    assert_eq!(p.filter_columns, ["status_flag", "is", "null"]);
}

#[test]
fn pending_after_counts_past_the_range_end() {
    let key = [
        ("tenant", "char(8)", Some("latin1_bin")),
        ("id", "bigint", None),
    ];
    assert_eq!(
        pending_after(&Job::example(USERS), &catalog("users", &key)),
        "SELECT COUNT(*) FROM `shop`.`users` WHERE (status_flag IS NULL) AND \
         (`tenant` > CONVERT(? USING latin1) COLLATE latin1_bin OR \
         (`tenant` = CONVERT(? USING latin1) COLLATE latin1_bin AND (`id` > CAST(? AS SIGNED))))"
    );
}

#[test]
fn set_columns_are_quoted_and_expressions_parenthesised() {
    let job = Job::example(
        "table = \"users\"\nwhere = \"a IS NULL\"\n[set]\na = \"b + 1\"\n'we`ird' = \"'x'\"\n",
    );
    let p = plan(&job, &catalog("users", &[("id", "bigint", None)]));
    assert_eq!(
        p.walk.update.from_start,
        "UPDATE `shop`.`users` SET `a` = (b + 1), `we``ird` = ('x') \
         WHERE (`id` <= CAST(? AS SIGNED)) AND (a IS NULL)"
    );
}
