//! BVER's own tables and the migrator that creates them on start, for both backends.
//!
//! Migrations are plain SQL embedded in the binary, applied in order inside a transaction and
//! recorded in `bver_schema_migrations`. On PostgreSQL an advisory lock serialises several
//! processes starting at once.

/// One migration: a version, a name and the SQL per backend.
pub(crate) struct Migration {
    pub(crate) version: i64,
    pub(crate) name: &'static str,
    pub(crate) sqlite: &'static str,
    pub(crate) postgres: &'static str,
}

/// Every migration, oldest first. Append only: never edit a released migration.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "refs, versions, outbox, idempotency",
        sqlite: r#"
CREATE TABLE bver_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE bver_refs (
    namespace  TEXT NOT NULL,
    repo       TEXT NOT NULL,
    id         TEXT NOT NULL,
    kind       TEXT,
    value      TEXT NOT NULL,
    version    INTEGER NOT NULL,
    deleted    INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, repo, id)
) WITHOUT ROWID;
CREATE TABLE bver_versions (
    namespace       TEXT NOT NULL,
    repo            TEXT NOT NULL,
    id              TEXT NOT NULL,
    version         INTEGER NOT NULL,
    kind            TEXT,
    value           TEXT NOT NULL,
    deleted         INTEGER NOT NULL,
    change          TEXT NOT NULL,
    diff            TEXT NOT NULL,
    principal       TEXT NOT NULL,
    operation       TEXT NOT NULL,
    request_id      TEXT NOT NULL,
    idempotency_key TEXT,
    at              INTEGER NOT NULL,
    PRIMARY KEY (namespace, repo, id, version)
) WITHOUT ROWID;
CREATE TABLE bver_outbox_seq (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
INSERT INTO bver_outbox_seq (id, value) VALUES (1, 0);
CREATE TABLE bver_events (
    seq        INTEGER PRIMARY KEY,
    epoch      TEXT NOT NULL,
    trigger    TEXT NOT NULL,
    namespace  TEXT NOT NULL,
    repo       TEXT NOT NULL,
    id         TEXT NOT NULL,
    version    INTEGER NOT NULL,
    kind       TEXT,
    change     TEXT NOT NULL,
    diff       TEXT NOT NULL,
    principal  TEXT NOT NULL,
    operation  TEXT NOT NULL,
    request_id TEXT NOT NULL,
    at         INTEGER NOT NULL
);
CREATE TABLE bver_idempotency (
    principal   TEXT NOT NULL,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    response    TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (principal, key)
) WITHOUT ROWID;
"#,
        postgres: r#"
CREATE TABLE bver_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE bver_refs (
    namespace  TEXT NOT NULL,
    repo       TEXT NOT NULL,
    id         TEXT NOT NULL,
    kind       TEXT,
    value      TEXT NOT NULL,
    version    BIGINT NOT NULL,
    deleted    BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (namespace, repo, id)
);
CREATE TABLE bver_versions (
    namespace       TEXT NOT NULL,
    repo            TEXT NOT NULL,
    id              TEXT NOT NULL,
    version         BIGINT NOT NULL,
    kind            TEXT,
    value           TEXT NOT NULL,
    deleted         BOOLEAN NOT NULL,
    change          TEXT NOT NULL,
    diff            TEXT NOT NULL,
    principal       TEXT NOT NULL,
    operation       TEXT NOT NULL,
    request_id      TEXT NOT NULL,
    idempotency_key TEXT,
    at              BIGINT NOT NULL,
    PRIMARY KEY (namespace, repo, id, version)
);
CREATE TABLE bver_outbox_seq (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value BIGINT NOT NULL
);
INSERT INTO bver_outbox_seq (id, value) VALUES (1, 0);
CREATE TABLE bver_events (
    seq        BIGINT PRIMARY KEY,
    epoch      TEXT NOT NULL,
    trigger    TEXT NOT NULL,
    namespace  TEXT NOT NULL,
    repo       TEXT NOT NULL,
    id         TEXT NOT NULL,
    version    BIGINT NOT NULL,
    kind       TEXT,
    change     TEXT NOT NULL,
    diff       TEXT NOT NULL,
    principal  TEXT NOT NULL,
    operation  TEXT NOT NULL,
    request_id TEXT NOT NULL,
    at         BIGINT NOT NULL
);
CREATE TABLE bver_idempotency (
    principal   TEXT NOT NULL,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    response    TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (principal, key)
);
"#,
    },
    Migration {
        version: 2,
        name: "EAGER subscription cursors and remote resolution cache",
        sqlite: r#"
CREATE TABLE bver_subscriptions (
    name       TEXT PRIMARY KEY,
    peer       TEXT NOT NULL,
    channel    TEXT NOT NULL,
    epoch      TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    applied    INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE bver_remote_cache (
    namespace  TEXT NOT NULL,
    repo       TEXT NOT NULL,
    id         TEXT NOT NULL,
    kind       TEXT,
    value      TEXT NOT NULL,
    version    INTEGER NOT NULL,
    deleted    INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    fetched_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, repo, id)
) WITHOUT ROWID;
"#,
        postgres: r#"
CREATE TABLE bver_subscriptions (
    name       TEXT PRIMARY KEY,
    peer       TEXT NOT NULL,
    channel    TEXT NOT NULL,
    epoch      TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    applied    BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE bver_remote_cache (
    namespace  TEXT NOT NULL,
    repo       TEXT NOT NULL,
    id         TEXT NOT NULL,
    kind       TEXT,
    value      TEXT NOT NULL,
    version    BIGINT NOT NULL,
    deleted    BOOLEAN NOT NULL,
    updated_at BIGINT NOT NULL,
    fetched_at BIGINT NOT NULL,
    PRIMARY KEY (namespace, repo, id)
);
"#,
    },
    Migration {
        version: 3,
        name: "leases: work one process of a platform runs at a time",
        sqlite: r#"
CREATE TABLE bver_leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    generation  INTEGER NOT NULL,
    acquired_at INTEGER NOT NULL,
    renewed_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) WITHOUT ROWID;
"#,
        postgres: r#"
CREATE TABLE bver_leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    generation  BIGINT NOT NULL,
    acquired_at BIGINT NOT NULL,
    renewed_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
"#,
    },
];

/// The advisory lock key PostgreSQL processes take while migrating (`"bver-mig"` as bytes).
pub(crate) const PG_MIGRATION_LOCK: i64 = 0x6276_6572_2d6d_6967;
