//! SQL plumbing shared by both backends: bind arguments, row decoding, multi-row statements.
//!
//! Both backends use the same SQL text with `$n` placeholders (SQLite accepts them too); the
//! few differences (row locks) are chosen by [`Dialect`]. Code that runs a statement is written
//! once inside the [`with_conn!`]-style macros of the parent module and type-checked per backend.

use serde_json::Value;
use sqlx::Row;

use super::types::{ChangeType, Current, OutboxEvent, Provenance, RefKey, VersionRow};

/// Which SQL dialect a statement is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The row-lock suffix for a `SELECT` whose rows the transaction will update.
    pub(crate) fn for_update(self) -> &'static str {
        match self {
            Self::Sqlite => "",
            Self::Postgres => " FOR UPDATE",
        }
    }
}

/// One bind argument.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Int(i64),
    Text(String),
    OptText(Option<String>),
    Bool(bool),
}

/// Bind every argument of `$args` to the query `$q`.
macro_rules! bind_all {
    ($q:expr, $args:expr) => {{
        let mut q = $q;
        for a in $args {
            q = match a {
                $crate::store::sql::Arg::Int(v) => q.bind(v),
                $crate::store::sql::Arg::Text(v) => q.bind(v),
                $crate::store::sql::Arg::OptText(v) => q.bind(v),
                $crate::store::sql::Arg::Bool(v) => q.bind(v),
            };
        }
        q
    }};
}
pub(crate) use bind_all;

/// `($1, $2, $3), ($4, $5, $6)`: placeholders for `rows` rows of `cols` columns, numbered
/// from `start + 1`.
pub(crate) fn placeholders(rows: usize, cols: usize, start: usize) -> String {
    let mut s = String::with_capacity(rows * cols * 5);
    let mut n = start;
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
            s.push('$');
            s.push_str(&n.to_string());
        }
        s.push(')');
    }
    s
}

/// Split `n` rows into chunks of 64, 16, 4 and 1, so that multi-row statements come in few
/// shapes and stay in each connection's prepared-statement cache.
pub(crate) fn chunks(mut n: usize) -> Vec<usize> {
    let mut out = Vec::new();
    for size in [64, 16, 4, 1] {
        while n >= size {
            out.push(size);
            n -= size;
        }
    }
    out
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

pub(crate) const CURRENT_COLUMNS: &str =
    "namespace, repo, id, kind, value, version, deleted, created_at, updated_at";

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
        assert_eq!(placeholders(2, 3, 0), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(placeholders(1, 2, 4), "($5, $6)");
    }

    #[test]
    fn chunks_cover_every_row_in_few_shapes() {
        for n in 0..300 {
            let c = chunks(n);
            assert_eq!(c.iter().sum::<usize>(), n);
            assert!(c.iter().all(|s| [64, 16, 4, 1].contains(s)));
        }
        assert_eq!(chunks(86), vec![64, 16, 4, 1, 1]);
    }
}
