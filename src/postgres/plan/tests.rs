//! The planner's SQL text, exactly.

use super::*;
use crate::catalog::{Column, Relation};

fn catalog(schema: &str, name: &str, key: &[(&str, &str)]) -> Catalog {
    let key = key.iter().map(|(n, t)| Column::example(n, t, None));
    Catalog::example(180000, schema, name, key.collect(), "t_pkey")
}

const USERS: &str = r#"
table = "users"
where = "status_flag IS NULL"
[set]
status_flag = "legacy_status"
"#;

#[test]
fn bigint_key_update_after_cursor() {
    let plan = Plan::new(
        &Job::example(USERS),
        &catalog("public", "users", &[("id", "bigint")]),
    );
    assert_eq!(
        plan.walk.update.after_cursor,
        r#"UPDATE "public"."users" SET "status_flag" = (legacy_status) WHERE ("id") > ($1::bigint) AND ("id") <= ($2::bigint) AND (status_flag IS NULL)"#
    );
}

#[test]
fn bigint_key_update_from_start() {
    let plan = Plan::new(
        &Job::example(USERS),
        &catalog("public", "users", &[("id", "bigint")]),
    );
    assert_eq!(
        plan.walk.update.from_start,
        r#"UPDATE "public"."users" SET "status_flag" = (legacy_status) WHERE ("id") <= ($1::bigint) AND (status_flag IS NULL)"#
    );
}

#[test]
fn upper_bound_walks_the_key_and_stops_at_the_range_end() {
    let plan = Plan::new(
        &Job::example(USERS),
        &catalog("public", "users", &[("id", "bigint")]),
    );
    assert_eq!(
        plan.walk.upper_bound.after_cursor,
        r#"SELECT "id"::text FROM "public"."users" WHERE ("id") > ($1::bigint) AND ("id") <= ($2::bigint) ORDER BY "public"."users"."id" OFFSET $3::bigint LIMIT 1"#
    );
    assert_eq!(
        plan.walk.upper_bound.from_start,
        r#"SELECT "id"::text FROM "public"."users" WHERE ("id") <= ($1::bigint) ORDER BY "public"."users"."id" OFFSET $2::bigint LIMIT 1"#
    );
}

#[test]
fn composite_key_compares_rows_with_each_columns_type() {
    let plan = Plan::new(
        &Job::example(USERS),
        &catalog("public", "users", &[("tenant", "text"), ("id", "integer")]),
    );
    assert_eq!(
        plan.walk.upper_bound.after_cursor,
        r#"SELECT "tenant"::text, "id"::text FROM "public"."users" WHERE ("tenant", "id") > ($1::text, $2::integer) AND ("tenant", "id") <= ($3::text, $4::integer) ORDER BY "public"."users"."tenant", "public"."users"."id" OFFSET $5::bigint LIMIT 1"#
    );
}

#[test]
fn the_guards_probe_reads_one_row_by_its_whole_key() {
    let plan = Plan::new(
        &Job::example(USERS),
        &catalog("public", "users", &[("tenant", "text"), ("id", "integer")]),
    );
    assert_eq!(
        plan.probe,
        r#"SELECT length(r::text) FROM "public"."users" AS r WHERE ("tenant", "id") = ($1::text, $2::integer)"#
    );
}

#[test]
fn range_end_orders_every_key_column_descending() {
    let plan = Plan::new(
        &Job::example(USERS),
        &catalog("public", "users", &[("tenant", "text"), ("id", "integer")]),
    );
    assert_eq!(
        plan.walk.range_end,
        r#"SELECT "tenant"::text, "id"::text FROM "public"."users" ORDER BY "public"."users"."tenant" DESC, "public"."users"."id" DESC LIMIT 1"#
    );
}

#[test]
fn odd_names_in_a_non_public_schema_are_quoted() {
    let text = r#"
table = '"Sales Data"."Odd ""Name"""'
where = '"Total Cents" IS NULL'
[set]
"Total Cents" = "qty * price_cents"
"#;
    let plan = Plan::new(
        &Job::example(text),
        &catalog("Sales Data", r#"Odd "Name""#, &[(r#"we"ird id"#, "uuid")]),
    );
    assert_eq!(
        plan.walk.update.after_cursor,
        r#"UPDATE "Sales Data"."Odd ""Name""" SET "Total Cents" = (qty * price_cents) WHERE ("we""ird id") > ($1::uuid) AND ("we""ird id") <= ($2::uuid) AND ("Total Cents" IS NULL)"#
    );
    assert_eq!(
        plan.probe,
        r#"SELECT length(r::text) FROM "Sales Data"."Odd ""Name""" AS r WHERE ("we""ird id") = ($1::uuid)"#
    );
}

#[test]
fn several_set_columns_are_comma_separated() {
    let text = r#"
table = "orders"
where = "a IS NULL OR b IS NULL"
[set]
a = "1"
b = "x + 1"
"#;
    let plan = Plan::new(
        &Job::example(text),
        &catalog("public", "orders", &[("id", "bigint")]),
    );
    assert!(
        plan.walk
            .update
            .from_start
            .contains(r#"SET "a" = (1), "b" = (x + 1) WHERE"#)
    );
}

#[test]
fn pending_rows_are_counted_and_estimated_with_the_filter() {
    let plan = Plan::new(
        &Job::example(USERS),
        &catalog("public", "users", &[("id", "bigint")]),
    );
    assert_eq!(
        plan.pending_count,
        r#"SELECT count(*) FROM "public"."users" WHERE (status_flag IS NULL)"#
    );
    assert_eq!(
        plan.pending_estimate,
        r#"EXPLAIN (FORMAT JSON) SELECT 1 FROM "public"."users" WHERE (status_flag IS NULL)"#
    );
    assert_eq!(
        plan.pending_sample,
        r#"SELECT count(*) FILTER (WHERE (status_flag IS NULL)), count(*) FROM "public"."users" TABLESAMPLE SYSTEM ($1::float4) REPEATABLE (0)"#
    );
    assert_eq!(plan.filter_columns, ["status_flag", "is", "null"]);
}

#[test]
fn timestamptz_and_numeric_keys_cast_back_with_their_type() {
    let plan = Plan::new(
        &Job::example(USERS),
        &catalog(
            "public",
            "users",
            &[("at", "timestamp with time zone"), ("n", "numeric(10,2)")],
        ),
    );
    assert!(
        plan.walk
            .update
            .from_start
            .contains("($1::timestamp with time zone, $2::numeric(10,2))")
    );
}

#[test]
fn the_sample_reads_a_share_of_blocks_inside_the_range_in_key_order() {
    let plan = Plan::new(
        &Job::example(USERS),
        &catalog("public", "users", &[("tenant", "text"), ("id", "integer")]),
    );
    assert_eq!(
        plan.walk.sample.after_cursor,
        r#"SELECT "tenant"::text, "id"::text, (status_flag IS NULL) IS TRUE FROM "public"."users" TABLESAMPLE SYSTEM ($5::float8) WHERE ("tenant", "id") > ($1::text, $2::integer) AND ("tenant", "id") <= ($3::text, $4::integer) ORDER BY "public"."users"."tenant", "public"."users"."id""#
    );
    assert_eq!(plan.key_types, ["text", "integer"]);
}

#[test]
fn a_failed_batch_lists_its_keys_and_a_failed_row_is_retried_alone() {
    let plan = Plan::new(
        &Job::example(USERS),
        &catalog("public", "users", &[("tenant", "text"), ("id", "integer")]),
    );
    assert_eq!(
        plan.walk.keys.after_cursor,
        r#"SELECT "tenant"::text, "id"::text FROM "public"."users" WHERE ("tenant", "id") > ($1::text, $2::integer) AND ("tenant", "id") <= ($3::text, $4::integer) ORDER BY "public"."users"."tenant", "public"."users"."id""#
    );
    assert_eq!(
        plan.walk.update_key,
        r#"UPDATE "public"."users" SET "status_flag" = (legacy_status) WHERE ("tenant", "id") = ($1::text, $2::integer) AND (status_flag IS NULL)"#
    );
    assert_eq!(plan.key_columns, ["tenant", "id"]);
}

#[test]
fn a_key_column_with_its_own_collation_reads_back_in_its_order() {
    let mut icu = catalog("public", "orders", &[("tenant", "text"), ("id", "integer")]);
    icu.key[0].collation = Some(r#""pg_catalog"."und-x-icu""#.into());
    let plan = Plan::new(&Job::example(USERS), &icu);
    assert_eq!(
        plan.key_types,
        [r#"text COLLATE "pg_catalog"."und-x-icu""#, "integer"]
    );
}

#[test]
fn a_partitioned_table_is_walked_leaf_by_leaf() {
    let mut parent = catalog("public", "events", &[("id", "bigint")]);
    parent.partitioned = true;
    parent.leaves = vec![
        Relation {
            schema: "public".into(),
            name: "events_1".into(),
        },
        Relation {
            schema: "archive".into(),
            name: "events_0".into(),
        },
    ];
    let plan = Plan::new(&Job::example(USERS), &parent);
    let relations: Vec<&str> = plan.walks().iter().map(|w| w.relation.as_str()).collect();
    assert_eq!(
        relations,
        [r#""public"."events_1""#, r#""archive"."events_0""#]
    );
    let leaf = plan
        .walk_of(r#""archive"."events_0""#)
        .expect("a walk per leaf");
    assert_eq!(
        leaf.update.from_start,
        r#"UPDATE "archive"."events_0" SET "status_flag" = (legacy_status) WHERE ("id") <= ($1::bigint) AND (status_flag IS NULL)"#
    );
    assert_eq!(plan.walk.relation, r#""public"."events""#);
}

#[test]
fn a_plain_table_is_its_only_walk() {
    let plan = Plan::new(
        &Job::example(USERS),
        &catalog("public", "users", &[("id", "bigint")]),
    );
    assert_eq!(plan.walks(), std::slice::from_ref(&plan.walk));
    assert!(plan.walk_of(r#""public"."users""#).is_some());
}
