//! Redaction of passwords in connection strings, and which form a string is read as.

use super::*;

#[test]
fn a_url_password_is_redacted() {
    assert_eq!(
        redact("postgres://app:s3cret@db:5432/prod"),
        "postgres://app:***@db:5432/prod"
    );
}

#[test]
fn a_url_without_password_is_unchanged() {
    assert_eq!(redact("postgres://app@db/prod"), "postgres://app@db/prod");
}

#[test]
fn a_password_query_parameter_is_redacted() {
    assert_eq!(
        redact("postgresql://h:5499/shop?user=postgres&password=s3cret&sslmode=disable"),
        "postgresql://h:5499/shop?user=postgres&password=***&sslmode=disable"
    );
}

#[test]
fn a_password_pair_is_redacted_quoted_or_not() {
    assert_eq!(
        redact("host=db password = s3cret user=app"),
        "host=db password = *** user=app"
    );
    assert_eq!(
        redact(r"password='s3 c\'ret' user=app"),
        "password=*** user=app"
    );
    assert_eq!(redact("password='s3cret"), "password=***");
}

#[test]
fn a_url_or_pairs_or_another_scheme() {
    assert_eq!(parse("postgres://h/db").unwrap().1, Origin::Url);
    assert_eq!(parse("PostgreS://h/db").unwrap().1, Origin::Url);
    assert_eq!(parse("host=h").unwrap().1, Origin::Pairs);
    let err = parse("mysql://u:pw@host/db").unwrap_err();
    assert!(matches!(err, ConninfoError::Scheme { .. }), "{err}");
    assert!(!err.to_string().contains("pw"), "{err}");
}

#[test]
fn text_that_is_neither_form_says_what_would_do() {
    let err = parse("not a url").unwrap_err().to_string();
    assert!(
        err.starts_with("invalid database URL \"not a url\": it is neither"),
        "{err}"
    );
    assert!(
        err.contains("host=/var/run/postgresql dbname=shop"),
        "{err}"
    );
}
