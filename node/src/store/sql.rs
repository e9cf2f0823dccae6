//! SQL plumbing shared by both backends: bind arguments, row decoding, multi-row statements.
//!
//! Both backends use the same SQL text with `$n` placeholders (SQLite accepts them too), except
//! the writer's multi-row statements, which use anonymous `?` on SQLite (see [`placeholders`]);
//! the few differences are chosen by [`Dialect`]. Code that runs a statement is written
//! once inside the [`with_conn!`]-style macros of the parent module and type-checked per backend.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use sqlx::Row;

use super::types::{ChangeType, Current, OutboxEvent, Provenance, RefKey, VersionRow};

/// Which SQL dialect a statement is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// One bind argument.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Int(i64),
    Text(String),
    /// Text shared by several statements (a serialised value or diff), bound without a copy.
    Shared(Arc<str>),
    OptText(Option<String>),
    Bool(bool),
}

/// A query of `$sql` with every argument of `$args` bound into one `$ty` (the backend's
/// arguments type) sized up front: a batch binds thousands of arguments, and growing the
/// buffer one push at a time reallocates and copies it a dozen times.
macro_rules! query_args {
    ($ty:ty, $sql:expr, $args:expr) => {{
        let args = $args.into_iter();
        let mut buf = <$ty>::default();
        sqlx::Arguments::reserve(&mut buf, args.size_hint().0, 0);
        for a in args {
            match a {
                $crate::store::sql::Arg::Int(v) => sqlx::Arguments::add(&mut buf, v),
                $crate::store::sql::Arg::Text(v) => sqlx::Arguments::add(&mut buf, v),
                $crate::store::sql::Arg::Shared(v) => sqlx::Arguments::add(&mut buf, v),
                $crate::store::sql::Arg::OptText(v) => sqlx::Arguments::add(&mut buf, v),
                $crate::store::sql::Arg::Bool(v) => sqlx::Arguments::add(&mut buf, v),
            }
            .map_err(sqlx::Error::Encode)?;
        }
        sqlx::query_with($sql, buf)
    }};
}
pub(crate) use query_args;

/// SQLite: undo whatever a failed script of `what` left open on `conn`. Nothing open is an
/// error that is fine; any other failure leaves the connection in doubt, so it is logged.
pub(crate) async fn rollback_after_failure(conn: &mut sqlx::SqliteConnection, what: &str) {
    if let Err(rollback) = sqlx::query("ROLLBACK").execute(&mut *conn).await
        && !rollback.to_string().contains("no transaction is active")
    {
        tracing::warn!(error = %rollback, "rollback after a failed {what} failed");
    }
}

/// Placeholders for `rows` rows of `cols` columns: `($1, $2, $3), ($4, $5, $6)` on
/// PostgreSQL, `(?, ?, ?), (?, ?, ?)` on SQLite.
///
/// SQLite gets anonymous placeholders because sqlx binds a numbered one by asking SQLite for
/// each parameter's name, which scans the statement's parameter list: quadratic in the number
/// of parameters, and the largest cost of a 64-row insert. Anonymous ones bind in order.
pub(crate) fn placeholders(dialect: Dialect, rows: usize, cols: usize) -> String {
    let mut s = String::with_capacity(rows * cols * 5);
    let mut n = 0;
    for r in 0..rows {
        if r > 0 {
            s.push_str(", ");
        }
        s.push('(');
        for c in 0..cols {
            if c > 0 {
                s.push_str(", ");
            }
            n += 1;
            match dialect {
                Dialect::Sqlite => s.push('?'),
                Dialect::Postgres => {
                    s.push('$');
                    s.push_str(&n.to_string());
                }
            }
        }
        s.push(')');
    }
    s
}

/// The row counts multi-row statements come in: few shapes, so that they stay in each
/// connection's prepared-statement cache, and few statements per batch (one per set bit).
pub(crate) const CHUNK_SIZES: [usize; 8] = [128, 64, 32, 16, 8, 4, 2, 1];

/// The row counts of SQLite's padded statements (rows of NULLs that match or insert nothing
/// fill the rest), so that a batch takes one statement per step and the shapes stay few.
pub(crate) const PADDED_SIZES: [usize; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 256];

/// Split `n` rows into padded chunks: `(rows, padded size)`, at most 256 rows each.
pub(crate) fn padded_chunks(mut n: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    while n > 0 {
        let rows = n.min(256);
        let size = PADDED_SIZES.into_iter().find(|s| *s >= rows).unwrap_or(256);
        out.push((rows, size));
        n -= rows;
    }
    out
}

/// Split `n` rows into chunks of the sizes in [`CHUNK_SIZES`], largest first.
pub(crate) fn chunks(mut n: usize) -> Vec<usize> {
    let mut out = Vec::new();
    for size in CHUNK_SIZES {
        while n >= size {
            out.push(size);
            n -= size;
        }
    }
    out
}

/// The writer's multi-row statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Stmt {
    /// Stored idempotency records of `(principal, key)` pairs.
    ReadIdempotency,
    /// Current rows of `(namespace, repo, id)` keys.
    ReadCurrent,
    /// PostgreSQL only: lock the reference rows of `(namespace, repo, id)` keys.
    LockRefs,
    /// SQLite only: the outbox counter and the versions of `(namespace, repo, id, position)`
    /// keys, as one JSON text of `[position, version]` pairs (keys that do not exist are absent).
    ReadVersions,
    /// Upsert of reference rows ([`REF_COLUMNS`]), for the references whose lifecycle changed.
    UpsertCurrent,
    /// Insert of version snapshots ([`VERSION_COLUMNS`]).
    InsertVersions,
    /// Insert of outbox events ([`EVENT_COLUMNS`]).
    InsertEvents,
    /// Insert of idempotency records.
    InsertIdempotency,
    /// SQLite only: a whole batch's writes in one round trip, padded (see `padded_chunks`):
    /// upsert of reference rows, insert of versions, insert of events (each `WHERE column1 IS
    /// NOT NULL`, which drops the padding rows), and the outbox counter set to its new value.
    SqliteWrite,
}

impl Stmt {
    const ALL: [Self; 9] = [
        Self::ReadIdempotency,
        Self::ReadCurrent,
        Self::LockRefs,
        Self::ReadVersions,
        Self::UpsertCurrent,
        Self::InsertVersions,
        Self::InsertEvents,
        Self::InsertIdempotency,
        Self::SqliteWrite,
    ];

    /// Bind parameters per row.
    pub(crate) fn columns(self) -> usize {
        match self {
            Self::ReadIdempotency => 2,
            Self::ReadCurrent | Self::LockRefs => 3,
            Self::ReadVersions => 4,
            Self::UpsertCurrent => REF_COLUMN_COUNT,
            Self::InsertVersions | Self::InsertEvents => 14,
            Self::InsertIdempotency => 5,
            Self::SqliteWrite => REF_COLUMN_COUNT + 14 + 14,
        }
    }

    fn text(self, dialect: Dialect, rows: usize) -> String {
        let values = match self {
            Self::SqliteWrite => String::new(),
            _ => placeholders(dialect, rows, self.columns()),
        };
        match self {
            Self::ReadIdempotency => format!(
                "SELECT principal, key, fingerprint, response FROM bver_idempotency \
                 WHERE (principal, key) IN (VALUES {values})"
            ),
            // The outbox counter and one JSON text holding every current row (see
            // `CurrentJson`): sqlx hands each result row from SQLite's thread to the caller
            // separately, which costs more than the lookups. CROSS JOIN keeps the keys as the
            // outer loop (primary-key lookups); NULL keys (padding) match nothing.
            Self::ReadCurrent if dialect == Dialect::Sqlite => format!(
                "SELECT (SELECT value FROM bver_outbox_seq WHERE id = 1), \
                 json_group_array(json_array(r.namespace, r.repo, r.id, r.kind, json(r.value), \
                 r.version, r.deleted, r.created_at, r.updated_at)) \
                 FROM (VALUES {values}) AS k CROSS JOIN bver_current AS r \
                 ON r.namespace = k.column1 AND r.repo = k.column2 AND r.id = k.column3"
            ),
            Self::ReadCurrent => format!(
                "SELECT {CURRENT_COLUMNS} FROM bver_current WHERE (namespace, repo, id) IN (VALUES {values})"
            ),
            // PostgreSQL: lock the references' rows (every writer of a reference locks its row
            // first), in a statement of its own so that the read after it, with a snapshot of
            // its own, sees what a writer that held the lock committed. In key order (the
            // rows are locked as the sort emits them): two batches that share keys then wait
            // for each other instead of deadlocking (which costs a second of
            // `deadlock_timeout` and a retry).
            Self::LockRefs => format!(
                "SELECT 1 FROM bver_refs WHERE (namespace, repo, id) IN (VALUES {values}) \
                 ORDER BY namespace, repo, id FOR UPDATE"
            ),
            Self::ReadVersions => format!(
                "SELECT (SELECT value FROM bver_outbox_seq WHERE id = 1), \
                 json_group_array(json_array(k.column4, r.version)) \
                 FROM (VALUES {values}) AS k CROSS JOIN bver_current AS r \
                 ON r.namespace = k.column1 AND r.repo = k.column2 AND r.id = k.column3"
            ),
            Self::UpsertCurrent => format!(
                "INSERT INTO bver_refs ({REF_COLUMNS}) VALUES {values} \
                 ON CONFLICT (namespace, repo, id) DO UPDATE SET \
                 kind = excluded.kind, deleted = excluded.deleted"
            ),
            Self::InsertVersions => {
                format!("INSERT INTO bver_versions ({VERSION_COLUMNS}) VALUES {values}")
            }
            Self::InsertEvents => {
                format!("INSERT INTO bver_events ({EVENT_COLUMNS}) VALUES {values}")
            }
            Self::InsertIdempotency => format!(
                "INSERT INTO bver_idempotency (principal, key, fingerprint, response, created_at) \
                 VALUES {values}"
            ),
            Self::SqliteWrite => {
                let refs = placeholders(dialect, rows, REF_COLUMN_COUNT);
                let versions = placeholders(dialect, rows, 14);
                format!(
                    "INSERT INTO bver_refs ({REF_COLUMNS}) SELECT * FROM (VALUES {refs}) \
                     WHERE column1 IS NOT NULL ON CONFLICT (namespace, repo, id) DO UPDATE SET \
                     kind = excluded.kind, deleted = excluded.deleted; \
                     INSERT INTO bver_versions ({VERSION_COLUMNS}) SELECT * FROM (VALUES {versions}) \
                     WHERE column1 IS NOT NULL; \
                     INSERT INTO bver_events ({EVENT_COLUMNS}) SELECT * FROM (VALUES {versions}) \
                     WHERE column1 IS NOT NULL; \
                     UPDATE bver_outbox_seq SET value = ? WHERE id = 1"
                )
            }
        }
    }
}

/// The text of every writer statement in every shape, built once per store rather than once
/// per batch.
pub(crate) struct Statements {
    dialect: Dialect,
    texts: HashMap<(Stmt, usize), Arc<str>>,
}

impl Statements {
    pub(crate) fn new(dialect: Dialect) -> Self {
        let mut texts = HashMap::new();
        for stmt in Stmt::ALL {
            let sqlite_only = matches!(stmt, Stmt::SqliteWrite | Stmt::ReadVersions);
            if (sqlite_only && dialect != Dialect::Sqlite)
                || (stmt == Stmt::LockRefs && dialect != Dialect::Postgres)
            {
                continue;
            }
            for rows in CHUNK_SIZES.into_iter().chain(PADDED_SIZES) {
                texts
                    .entry((stmt, rows))
                    .or_insert_with(|| stmt.text(dialect, rows).into());
            }
        }
        Self { dialect, texts }
    }

    /// The dialect the statements are written in.
    pub(crate) fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The statement for `rows` rows (one of [`CHUNK_SIZES`]; any other count is built anew).
    pub(crate) fn get(&self, stmt: Stmt, rows: usize) -> sqlx::AssertSqlSafe<Arc<str>> {
        let text = match self.texts.get(&(stmt, rows)) {
            Some(t) => t.clone(),
            None => stmt.text(self.dialect, rows).into(),
        };
        sqlx::AssertSqlSafe(text)
    }
}

pub(crate) fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(crate) fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn json_of(text: &str) -> Result<Value, sqlx::Error> {
    serde_json::from_str(text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

/// The columns of the `bver_current` view (a reference's row joined with its newest version).
pub(crate) const CURRENT_COLUMNS: &str =
    "namespace, repo, id, kind, value, version, deleted, created_at, updated_at";

/// The columns of `bver_refs`: what changes only with a reference's lifecycle (created,
/// deleted, restored, kind changed), not with a patch or a replace.
pub(crate) const REF_COLUMNS: &str = "namespace, repo, id, kind, deleted, created_at";
pub(crate) const REF_COLUMN_COUNT: usize = 6;

pub(crate) fn current_of<R: Row>(row: &R) -> Result<Current, sqlx::Error>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> bool: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(Current {
        key: RefKey {
            namespace: row.try_get("namespace")?,
            repo: row.try_get("repo")?,
            id: row.try_get("id")?,
        },
        kind: row.try_get("kind")?,
        value: json_of(row.try_get::<String, _>("value")?.as_str())?,
        version: u64_of(row.try_get("version")?),
        deleted: row.try_get("deleted")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// A current row as SQLite's `ReadCurrent` statement renders it: a JSON array of
/// [`CURRENT_COLUMNS`], the value embedded as JSON.
#[derive(serde::Deserialize)]
pub(crate) struct CurrentJson(
    String,
    String,
    String,
    Option<String>,
    Value,
    i64,
    i64,
    i64,
    i64,
);

/// Decode the single text column of SQLite's `ReadCurrent` statement.
pub(crate) fn currents_of_json(text: &str) -> Result<Vec<Current>, sqlx::Error> {
    let rows: Vec<CurrentJson> =
        serde_json::from_str(text).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    Ok(rows
        .into_iter()
        .map(
            |CurrentJson(
                namespace,
                repo,
                id,
                kind,
                value,
                version,
                deleted,
                created_at,
                updated_at,
            )| {
                Current {
                    key: RefKey {
                        namespace,
                        repo,
                        id,
                    },
                    kind,
                    value,
                    version: u64_of(version),
                    deleted: deleted != 0,
                    created_at,
                    updated_at,
                }
            },
        )
        .collect())
}

pub(crate) const VERSION_COLUMNS: &str = "namespace, repo, id, version, kind, value, deleted, change, diff, principal, operation, request_id, idempotency_key, at";

pub(crate) fn version_of<R: Row>(row: &R) -> Result<VersionRow, sqlx::Error>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> bool: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let change: String = row.try_get("change")?;
    Ok(VersionRow {
        key: RefKey {
            namespace: row.try_get("namespace")?,
            repo: row.try_get("repo")?,
            id: row.try_get("id")?,
        },
        version: u64_of(row.try_get("version")?),
        kind: row.try_get("kind")?,
        value: json_of(row.try_get::<String, _>("value")?.as_str())?,
        deleted: row.try_get("deleted")?,
        change: ChangeType::parse(&change)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown change type {change:?}").into()))?,
        diff: json_of(row.try_get::<String, _>("diff")?.as_str())?,
        provenance: Provenance {
            principal: row.try_get("principal")?,
            operation: row.try_get("operation")?,
            request_id: row.try_get("request_id")?,
        },
        idempotency_key: row.try_get("idempotency_key")?,
        at: row.try_get("at")?,
    })
}

pub(crate) const EVENT_COLUMNS: &str = "seq, epoch, trigger, namespace, repo, id, version, kind, change, diff, principal, operation, request_id, at";

pub(crate) fn event_of<R: Row>(row: &R) -> Result<OutboxEvent, sqlx::Error>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let change: String = row.try_get("change")?;
    Ok(OutboxEvent {
        epoch: row.try_get("epoch")?,
        seq: u64_of(row.try_get("seq")?),
        trigger: row.try_get("trigger")?,
        key: RefKey {
            namespace: row.try_get("namespace")?,
            repo: row.try_get("repo")?,
            id: row.try_get("id")?,
        },
        version: u64_of(row.try_get("version")?),
        kind: row.try_get("kind")?,
        change: ChangeType::parse(&change)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown change type {change:?}").into()))?,
        diff: json_of(row.try_get::<String, _>("diff")?.as_str())?,
        provenance: Provenance {
            principal: row.try_get("principal")?,
            operation: row.try_get("operation")?,
            request_id: row.try_get("request_id")?,
        },
        at: row.try_get("at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_number_rows_and_columns() {
        assert_eq!(
            placeholders(Dialect::Postgres, 2, 3),
            "($1, $2, $3), ($4, $5, $6)"
        );
        assert_eq!(placeholders(Dialect::Sqlite, 2, 2), "(?, ?), (?, ?)");
    }

    #[test]
    fn chunks_cover_every_row_in_few_shapes() {
        for n in 0..300 {
            let c = chunks(n);
            assert_eq!(c.iter().sum::<usize>(), n);
            assert!(c.iter().all(|s| CHUNK_SIZES.contains(s)));
            assert!(
                c.len() <= n / 128 + 7,
                "{n} rows took {} statements",
                c.len()
            );
        }
        assert_eq!(chunks(86), vec![64, 16, 4, 2]);
        assert_eq!(chunks(300), vec![128, 128, 32, 8, 4]);
    }
}
