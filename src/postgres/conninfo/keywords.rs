//! libpq's connection keywords, each with its environment variable and what backfill does
//! with it: read it, leave it to sqlx or to backfill, or refuse a value that asks for what
//! the driver cannot do.

/// What backfill does with one of libpq's keywords.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// Read into the connection's settings.
    Apply,
    /// Accepted and left alone: it tunes what sqlx does its own way, or backfill sets it
    /// itself (`application_name` names each session).
    Ignore,
    /// Accepted with one of these values (those that ask for nothing sqlx cannot do);
    /// refused with another, rather than connecting with less than was asked for.
    Only(&'static [&'static str], &'static str),
}

/// One of libpq's connection keywords: its name, its environment variable, and its use here.
pub struct Keyword {
    pub name: &'static str,
    pub variable: Option<&'static str>,
    pub is: Use,
}

const fn kw(name: &'static str, variable: Option<&'static str>, is: Use) -> Keyword {
    Keyword { name, variable, is }
}

/// libpq's keywords (PostgreSQL 13 to 18), in its order, with their variables.
pub const KEYWORDS: &[Keyword] = &[
    kw("service", Some("PGSERVICE"), Use::Apply),
    kw("servicefile", Some("PGSERVICEFILE"), Use::Apply),
    kw("user", Some("PGUSER"), Use::Apply),
    kw("password", Some("PGPASSWORD"), Use::Apply),
    kw("passfile", Some("PGPASSFILE"), Use::Apply),
    kw(
        "channel_binding",
        Some("PGCHANNELBINDING"),
        Use::Only(
            &["disable", "prefer"],
            "sqlx cannot require channel binding",
        ),
    ),
    kw("connect_timeout", Some("PGCONNECT_TIMEOUT"), Use::Ignore),
    kw("dbname", Some("PGDATABASE"), Use::Apply),
    kw("host", Some("PGHOST"), Use::Apply),
    kw("hostaddr", Some("PGHOSTADDR"), Use::Apply),
    kw("port", Some("PGPORT"), Use::Apply),
    kw(
        "client_encoding",
        Some("PGCLIENTENCODING"),
        Use::Only(
            &["UTF8", "utf8", "UTF-8", "utf-8", "auto"],
            "backfill's sessions speak UTF8",
        ),
    ),
    kw("options", Some("PGOPTIONS"), Use::Apply),
    kw("application_name", Some("PGAPPNAME"), Use::Ignore),
    kw("fallback_application_name", None, Use::Ignore),
    kw("keepalives", None, Use::Ignore),
    kw("keepalives_idle", None, Use::Ignore),
    kw("keepalives_interval", None, Use::Ignore),
    kw("keepalives_count", None, Use::Ignore),
    kw("tcp_user_timeout", None, Use::Ignore),
    kw("sslmode", Some("PGSSLMODE"), Use::Apply),
    kw(
        "sslnegotiation",
        Some("PGSSLNEGOTIATION"),
        Use::Only(&["postgres"], "sqlx negotiates TLS the PostgreSQL way only"),
    ),
    kw("sslcompression", Some("PGSSLCOMPRESSION"), Use::Ignore),
    kw("sslcert", Some("PGSSLCERT"), Use::Apply),
    kw("sslkey", Some("PGSSLKEY"), Use::Apply),
    kw(
        "sslcertmode",
        Some("PGSSLCERTMODE"),
        Use::Only(
            &["disable", "allow"],
            "sqlx cannot require that a client certificate be sent",
        ),
    ),
    kw(
        "sslpassword",
        None,
        Use::Only(&[], "sqlx reads no encrypted client keys; decrypt the key"),
    ),
    kw("sslrootcert", Some("PGSSLROOTCERT"), Use::Apply),
    kw(
        "sslcrl",
        Some("PGSSLCRL"),
        Use::Only(&[], "sqlx checks no certificate revocation lists"),
    ),
    kw(
        "sslcrldir",
        Some("PGSSLCRLDIR"),
        Use::Only(&[], "sqlx checks no certificate revocation lists"),
    ),
    kw("sslsni", Some("PGSSLSNI"), Use::Ignore),
    kw("sslkeylogfile", None, Use::Ignore),
    kw(
        "requirepeer",
        Some("PGREQUIREPEER"),
        Use::Only(&[], "sqlx cannot check the server process's user"),
    ),
    kw(
        "require_auth",
        Some("PGREQUIREAUTH"),
        Use::Only(&[], "sqlx cannot restrict the authentication methods"),
    ),
    kw(
        "ssl_min_protocol_version",
        Some("PGSSLMINPROTOCOLVERSION"),
        Use::Ignore,
    ),
    kw(
        "ssl_max_protocol_version",
        Some("PGSSLMAXPROTOCOLVERSION"),
        Use::Ignore,
    ),
    kw(
        "min_protocol_version",
        Some("PGMINPROTOCOLVERSION"),
        Use::Ignore,
    ),
    kw(
        "max_protocol_version",
        Some("PGMAXPROTOCOLVERSION"),
        Use::Ignore,
    ),
    kw(
        "gssencmode",
        Some("PGGSSENCMODE"),
        Use::Only(&["disable", "prefer"], "sqlx has no GSSAPI encryption"),
    ),
    kw("krbsrvname", Some("PGKRBSRVNAME"), Use::Ignore),
    kw("gsslib", Some("PGGSSLIB"), Use::Ignore),
    kw("gssdelegation", Some("PGGSSDELEGATION"), Use::Ignore),
    kw(
        "replication",
        None,
        Use::Only(
            &["false", "off", "no", "0"],
            "backfill's sessions are ordinary ones",
        ),
    ),
    kw(
        "target_session_attrs",
        Some("PGTARGETSESSIONATTRS"),
        Use::Only(
            &["any"],
            "backfill connects to one server and checks nothing of it before it starts",
        ),
    ),
    kw(
        "load_balance_hosts",
        Some("PGLOADBALANCEHOSTS"),
        Use::Ignore,
    ),
    kw(
        "scram_client_key",
        None,
        Use::Only(&[], "sqlx takes no SCRAM keys"),
    ),
    kw(
        "scram_server_key",
        None,
        Use::Only(&[], "sqlx takes no SCRAM keys"),
    ),
];

/// The keyword named `name`, spelled as libpq spells it.
pub fn keyword(name: &str) -> Option<&'static Keyword> {
    KEYWORDS.iter().find(|k| k.name == name)
}
