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
    Migration {
        version: 4,
        name: "the current state of a reference is its newest version",
        // A patch used to rewrite the reference's row in `bver_refs` (value, version, updated
        // time) and insert a version row: two keyed structures, two scattered pages per patch.
        // Now `bver_refs` keeps only what changes with a reference's lifecycle (kind, deleted,
        // created time) and the current value, version and update time are those of the newest
        // row in `bver_versions`, which a patch inserts beside the previous one. The dropped
        // columns always equalled the newest version's, so nothing is lost.
        sqlite: r#"
ALTER TABLE bver_refs DROP COLUMN value;
ALTER TABLE bver_refs DROP COLUMN version;
ALTER TABLE bver_refs DROP COLUMN updated_at;
CREATE VIEW bver_current AS
SELECT r.namespace, r.repo, r.id, r.kind, v.value, v.version, r.deleted, r.created_at,
       v.at AS updated_at
FROM bver_refs AS r JOIN bver_versions AS v
  ON v.namespace = r.namespace AND v.repo = r.repo AND v.id = r.id
 AND v.version = (SELECT max(m.version) FROM bver_versions AS m
                  WHERE m.namespace = r.namespace AND m.repo = r.repo AND m.id = r.id);
"#,
        postgres: r#"
ALTER TABLE bver_refs DROP COLUMN value, DROP COLUMN version, DROP COLUMN updated_at;
CREATE VIEW bver_current AS
SELECT r.namespace, r.repo, r.id, r.kind, v.value, v.version, r.deleted, r.created_at,
       v.at AS updated_at
FROM bver_refs AS r JOIN bver_versions AS v
  ON v.namespace = r.namespace AND v.repo = r.repo AND v.id = r.id
 AND v.version = (SELECT max(m.version) FROM bver_versions AS m
                  WHERE m.namespace = r.namespace AND m.repo = r.repo AND m.id = r.id);
"#,
    },
    Migration {
        version: 5,
        name: "PostgreSQL: the current version of a reference by one backward index step",
        // PostgreSQL planned migration 4's view (a join on `version = (SELECT max(...))`) by
        // scanning every version of a reference, or worse, once tables grow between two
        // ANALYZEs. A LATERAL subquery ordered by version with LIMIT 1 is one backward step in
        // the primary key per reference, whatever the statistics say. SQLite plans the original
        // view that way already (its min/max optimisation), so it keeps it.
        sqlite: "SELECT 1;",
        postgres: r#"
CREATE OR REPLACE VIEW bver_current AS
SELECT r.namespace, r.repo, r.id, r.kind, v.value, v.version, r.deleted, r.created_at,
       v.at AS updated_at
FROM bver_refs AS r CROSS JOIN LATERAL (
    SELECT m.value, m.version, m.at FROM bver_versions AS m
    WHERE m.namespace = r.namespace AND m.repo = r.repo AND m.id = r.id
    ORDER BY m.version DESC LIMIT 1
) AS v;
"#,
    },
];

/// The advisory lock key PostgreSQL processes take while migrating (`"bver-mig"` as bytes).
pub(crate) const PG_MIGRATION_LOCK: i64 = 0x6276_6572_2d6d_6967;
