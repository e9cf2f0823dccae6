//! The store's side of federation: channel reads for the EAGER publisher, and the
//! subscriber's effectively-once apply (local trigger events, the remote resolution cache and
//! the subscription cursor, in one transaction).
//!
//! **Invariant:** a subscription's cursor moves only in the transaction that writes the
//! effects of the events it covers; an event at or below the stored cursor (same epoch) is
//! dropped, so a batch delivered twice (a reconnect replays from the last cursor the
//! *endpoint* saw, which may be ahead of or behind the stored one) applies once.

use std::sync::Arc;

use serde_json::Value;
use sqlx::Row;

use super::sql::{self, Arg, Stmt, i64_of, query_args, u64_of};
use super::types::{ChangeType, OutboxEvent, RefKey};
use super::{Backend, Store, store_err};
use bver_contracts::BverError;

/// What one remote event does locally.
#[derive(Debug, Clone)]
pub struct RemoteEffect {
    /// The event's sequence number at its origin (its position in the publisher's epoch).
    pub origin_seq: u64,
    /// The local named trigger to append to this platform's outbox, if any.
    pub trigger: Option<String>,
    /// Whether to keep the remote resolution cache fresh with this event's value.
    pub cache: bool,
    /// The remote reference.
    pub key: RefKey,
    /// Its version after the change.
    pub version: u64,
    /// Its kind after the change.
    pub kind: Option<String>,
    /// The built-in change at the origin (`updated` for a named trigger without one).
    pub change: ChangeType,
    /// RFC 6902 diff at the origin.
    pub diff: Value,
    /// The value after the change, when the publisher sent it.
    pub value: Option<Value>,
    /// The origin's commit time, unix milliseconds.
    pub at: i64,
}

/// A subscription's persisted position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRow {
    /// The subscription's name.
    pub name: String,
    /// The publishing peer.
    pub peer: String,
    /// The channel.
    pub channel: String,
    /// The publisher's epoch.
    pub epoch: String,
    /// The last applied sequence number in that epoch.
    pub seq: u64,
    /// How many events were applied in total.
    pub applied: u64,
    /// When the cursor last moved, unix milliseconds.
    pub updated_at: i64,
}

/// A reference held by the remote resolution cache.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedRef {
    /// Which reference.
    pub key: RefKey,
    /// Its kind.
    pub kind: Option<String>,
    /// Its value (`null` when deleted).
    pub value: Value,
    /// Its version at the origin.
    pub version: u64,
    /// Whether the origin deleted it.
    pub deleted: bool,
    /// The origin's time of that version, unix milliseconds.
    pub updated_at: i64,
    /// When this platform last learned it (event or fetch), unix milliseconds.
    pub fetched_at: i64,
}

/// The outcome of [`Store::apply_remote`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Applied {
    /// Events applied now.
    pub applied: u64,
    /// Events dropped as already applied.
    pub duplicates: u64,
    /// The highest local outbox sequence number written, if any event was appended.
    pub last_local_seq: Option<u64>,
}

const SUB_COLUMNS: &str = "name, peer, channel, epoch, seq, applied, updated_at";
const CACHE_COLUMNS: &str =
    "namespace, repo, id, kind, value, version, deleted, updated_at, fetched_at";

fn now_ms() -> i64 {
    super::now_ms()
}

fn sub_of<R: Row>(r: &R) -> Result<SubscriptionRow, sqlx::Error>
where
    usize: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(SubscriptionRow {
        name: r.try_get(0)?,
        peer: r.try_get(1)?,
        channel: r.try_get(2)?,
        epoch: r.try_get(3)?,
        seq: u64_of(r.try_get(4)?),
        applied: u64_of(r.try_get(5)?),
        updated_at: r.try_get(6)?,
    })
}

fn cached_of<R: Row>(r: &R) -> Result<CachedRef, sqlx::Error>
where
    usize: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> bool: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let value: String = r.try_get(4)?;
    Ok(CachedRef {
        key: RefKey::new(
            r.try_get::<String, _>(0)?,
            r.try_get::<String, _>(1)?,
            r.try_get::<String, _>(2)?,
        ),
        kind: r.try_get(3)?,
        value: serde_json::from_str(&value).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        version: u64_of(r.try_get(5)?),
        deleted: r.try_get(6)?,
        updated_at: r.try_get(7)?,
        fetched_at: r.try_get(8)?,
    })
}

/// The statements of one apply on PostgreSQL, one round trip each (SQLite takes fewer round
/// trips: [`apply_sqlite`]). The `$pg` flag and the arguments type keep it backend-neutral.
macro_rules! apply_in {
    ($tx:ident, $args_ty:ty, $pg:expr, $stmts:expr, $name:expr, $peer:expr, $channel:expr, $epoch:expr, $effects:expr, $local_epoch:expr) => {{
        let stmts: &sql::Statements = $stmts;
        // Make sure the cursor row exists before it is read and locked: with no row there is
        // nothing to lock, and two processes applying a subscription's very first batch at
        // once would both apply it. The row is `(epoch, seq 0)`, "nothing applied yet in this
        // epoch", the same as no row for the filter below. On PostgreSQL a second
        // transaction's insert waits for the first one's uncommitted row and then does
        // nothing, and its `FOR UPDATE` read (a new snapshot under READ COMMITTED) sees the
        // committed cursor; nobody else ever sees a row of a transaction that rolled back.
        sqlx::query(
            "INSERT INTO bver_subscriptions (name, peer, channel, epoch, seq, applied, updated_at) \
             VALUES ($1, $2, $3, $4, 0, 0, $5) ON CONFLICT (name) DO NOTHING",
        )
        .bind($name)
        .bind($peer)
        .bind($channel)
        .bind($epoch)
        .bind(now_ms())
        .execute(&mut *$tx)
        .await?;
        let lock = if $pg { " FOR UPDATE" } else { "" };
        let stored = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SUB_COLUMNS} FROM bver_subscriptions WHERE name = $1{lock}"
        )))
        .bind($name)
        .fetch_optional(&mut *$tx)
        .await?
        .map(|r| sub_of(&r))
        .transpose()?;
        let after = match &stored {
            Some(s) if s.epoch == $epoch => s.seq,
            _ => 0,
        };
        let fresh: Vec<&RemoteEffect> = $effects.iter().filter(|e| e.origin_seq > after).collect();
        let duplicates = ($effects.len() - fresh.len()) as u64;
        let now = now_ms();
        let mut last_local_seq = None;
        if let Some(last) = fresh.last() {
            for e in fresh.iter().filter(|e| e.cache) {
                let deleted = e.change == ChangeType::Deleted;
                let value = e.value.clone().unwrap_or(Value::Null);
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO bver_remote_cache ({CACHE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                     ON CONFLICT (namespace, repo, id) DO UPDATE SET kind = excluded.kind, value = excluded.value, \
                     version = excluded.version, deleted = excluded.deleted, updated_at = excluded.updated_at, \
                     fetched_at = excluded.fetched_at WHERE bver_remote_cache.version <= excluded.version"
                )))
                .bind(&e.key.namespace)
                .bind(&e.key.repo)
                .bind(&e.key.id)
                .bind(&e.kind)
                .bind(value.to_string())
                .bind(i64_of(e.version))
                .bind(deleted)
                .bind(e.at)
                .bind(now)
                .execute(&mut *$tx)
                .await?;
            }
            sqlx::query(
                "INSERT INTO bver_subscriptions (name, peer, channel, epoch, seq, applied, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name) DO UPDATE SET peer = excluded.peer, \
                 channel = excluded.channel, epoch = excluded.epoch, seq = excluded.seq, \
                 applied = bver_subscriptions.applied + excluded.applied, updated_at = excluded.updated_at",
            )
            .bind($name)
            .bind($peer)
            .bind($channel)
            .bind($epoch)
            .bind(i64_of(last.origin_seq))
            .bind(fresh.len() as i64)
            .bind(now)
            .execute(&mut *$tx)
            .await?;
            let emitted: Vec<(&RemoteEffect, &str)> = fresh
                .iter()
                .filter_map(|e| e.trigger.as_deref().map(|t| (*e, t)))
                .collect();
            if !emitted.is_empty() {
                let n = emitted.len() as i64;
                // The outbox counter: on PostgreSQL its row lock is held to commit, so
                // sequence order stays commit order (see the writer's module docs); on SQLite
                // the transaction is exclusive.
                let last: i64 = sqlx::query(
                    "UPDATE bver_outbox_seq SET value = value + $1 WHERE id = 1 RETURNING value",
                )
                .bind(n)
                .fetch_one(&mut *$tx)
                .await?
                .try_get(0)?;
                let first = last - n + 1;
                // One multi-row statement per chunk (one round trip each on SQLite), not one
                // per event.
                let shared = |v: String| Arg::Shared(Arc::from(v));
                let (local_epoch, principal, operation) = (
                    shared($local_epoch.to_owned()),
                    shared(format!("peer:{}", $peer)),
                    shared(format!("eager.{}", $channel)),
                );
                let mut done = 0;
                for size in sql::chunks(emitted.len()) {
                    let part = &emitted[done..done + size];
                    let args = part.iter().enumerate().flat_map(|(i, (e, trigger))| {
                        [
                            Arg::Int(first + (done + i) as i64),
                            local_epoch.clone(),
                            Arg::Text((*trigger).to_owned()),
                            Arg::Text(e.key.namespace.clone()),
                            Arg::Text(e.key.repo.clone()),
                            Arg::Text(e.key.id.clone()),
                            Arg::Int(i64_of(e.version)),
                            Arg::OptText(e.kind.clone()),
                            Arg::Text(e.change.as_str().to_owned()),
                            Arg::Text(e.diff.to_string()),
                            principal.clone(),
                            operation.clone(),
                            Arg::Text(format!("{}/{}/{}", $peer, $epoch, e.origin_seq)),
                            Arg::Int(now),
                        ]
                    });
                    query_args!($args_ty, stmts.get(Stmt::InsertEvents, size), args)
                        .execute(&mut *$tx)
                        .await?;
                    done += size;
                }
                last_local_seq = Some(u64_of(last));
            }
        }
        Ok::<_, sqlx::Error>(Applied {
            applied: fresh.len() as u64,
            duplicates,
            last_local_seq,
        })
    }};
}

/// SQLite: [`Store::apply_remote`]'s transaction in as few round trips to the write
/// connection's thread as its size allows, since each one is a hand-off between threads:
/// `BEGIN IMMEDIATE` with the read of the cursor and the outbox counter (the whole database is
/// locked from there on, so both stay as read), then the cache rows, then the local events in
/// padded chunks of up to 256 rows, the last one in one script with the cursor, the counter
/// and the `COMMIT`. A small batch is two round trips instead of seven. Any failure rolls the
/// transaction back; the caller retries.
async fn apply_sqlite(
    write: &sqlx::SqlitePool,
    name: &str,
    peer: &str,
    channel: &str,
    epoch: &str,
    effects: &[RemoteEffect],
    local_epoch: &str,
) -> Result<Applied, sqlx::Error> {
    let mut guard = CloseIfCancelled(Some(write.acquire().await?));
    let Some(conn) = guard.0.as_mut() else {
        unreachable!("the guard holds the connection until the end")
    };
    let r = apply_sqlite_on(conn, name, peer, channel, epoch, effects, local_epoch).await;
    if r.is_err()
        && let Err(rollback) = sqlx::query("ROLLBACK").execute(&mut **conn).await
        && !rollback.to_string().contains("no transaction is active")
    {
        tracing::warn!(error = %rollback, "rollback after a failed apply of remote events failed");
    }
    // Finished (committed or rolled back): the connection goes back to the pool.
    drop(guard.0.take());
    r
}

/// The write connection of an apply in progress. If the apply is cancelled (its future
/// dropped, as when a subscription is stopped), the connection may be inside an open
/// transaction: it is closed rather than handed back to the pool, which rolls the transaction
/// back; the pool opens a new one.
struct CloseIfCancelled(Option<sqlx::pool::PoolConnection<sqlx::Sqlite>>);

impl Drop for CloseIfCancelled {
    fn drop(&mut self) {
        if let Some(conn) = self.0.as_mut() {
            conn.close_on_drop();
        }
    }
}

async fn apply_sqlite_on(
    conn: &mut sqlx::SqliteConnection,
    name: &str,
    peer: &str,
    channel: &str,
    epoch: &str,
    effects: &[RemoteEffect],
    local_epoch: &str,
) -> Result<Applied, sqlx::Error> {
    let texts = sqlite_apply_texts();
    let row = sqlx::query(sqlx::AssertSqlSafe(Arc::clone(&texts.begin)))
        .bind(name)
        .fetch_one(&mut *conn)
        .await?;
    let stored_epoch: Option<String> = row.try_get(0)?;
    let stored_seq: Option<i64> = row.try_get(1)?;
    let counter: i64 = row.try_get(2)?;
    let after = match (stored_epoch, stored_seq) {
        (Some(e), Some(seq)) if e == epoch => u64_of(seq),
        _ => 0,
    };
    let fresh: Vec<&RemoteEffect> = effects.iter().filter(|e| e.origin_seq > after).collect();
    let duplicates = (effects.len() - fresh.len()) as u64;
    let Some(last) = fresh.last() else {
        sqlx::query("COMMIT").execute(&mut *conn).await?;
        return Ok(Applied {
            applied: 0,
            duplicates,
            last_local_seq: None,
        });
    };
    let now = now_ms();
    for e in fresh.iter().filter(|e| e.cache) {
        let deleted = e.change == ChangeType::Deleted;
        let value = e.value.clone().unwrap_or(Value::Null);
        sqlx::query(sqlx::AssertSqlSafe(Arc::clone(&texts.cache_put)))
            .bind(&e.key.namespace)
            .bind(&e.key.repo)
            .bind(&e.key.id)
            .bind(&e.kind)
            .bind(value.to_string())
            .bind(i64_of(e.version))
            .bind(deleted)
            .bind(e.at)
            .bind(now)
            .execute(&mut *conn)
            .await?;
    }
    let emitted: Vec<(&RemoteEffect, &str)> = fresh
        .iter()
        .filter_map(|e| e.trigger.as_deref().map(|t| (*e, t)))
        .collect();
    let shared = |v: String| Arg::Shared(Arc::from(v));
    let (local_epoch, principal, operation) = (
        shared(local_epoch.to_owned()),
        shared(format!("peer:{peer}")),
        shared(format!("eager.{channel}")),
    );
    let row_args = |i: usize, (e, trigger): &(&RemoteEffect, &str)| {
        [
            Arg::Int(counter + 1 + i as i64),
            local_epoch.clone(),
            Arg::Text((*trigger).to_owned()),
            Arg::Text(e.key.namespace.clone()),
            Arg::Text(e.key.repo.clone()),
            Arg::Text(e.key.id.clone()),
            Arg::Int(i64_of(e.version)),
            Arg::OptText(e.kind.clone()),
            Arg::Text(e.change.as_str().to_owned()),
            Arg::Text(e.diff.to_string()),
            principal.clone(),
            operation.clone(),
            Arg::Text(format!("{peer}/{epoch}/{}", e.origin_seq)),
            Arg::Int(now),
        ]
    };
    let padding =
        |rows: usize, size: usize| std::iter::repeat_n(Arg::OptText(None), (size - rows) * 14);
    let cursor_args = |counter_after: i64| {
        [
            Arg::Text(name.to_owned()),
            Arg::Text(peer.to_owned()),
            Arg::Text(channel.to_owned()),
            Arg::Text(epoch.to_owned()),
            Arg::Int(i64_of(last.origin_seq)),
            Arg::Int(fresh.len() as i64),
            Arg::Int(now),
            Arg::Int(counter_after),
        ]
    };
    let chunks = sql::padded_chunks(emitted.len());
    let counter_after = counter + emitted.len() as i64;
    let mut done = 0;
    for (k, &(rows, size)) in chunks.iter().enumerate() {
        let part = &emitted[done..done + rows];
        let events = part
            .iter()
            .enumerate()
            .flat_map(|(i, e)| row_args(done + i, e))
            .chain(padding(rows, size));
        if k + 1 == chunks.len() {
            let text = &texts.last_chunk[size.trailing_zeros() as usize];
            query_args!(
                sqlx::sqlite::SqliteArguments,
                sqlx::AssertSqlSafe(Arc::clone(text)),
                events.chain(cursor_args(counter_after))
            )
            .execute(&mut *conn)
            .await?;
        } else {
            query_args!(
                sqlx::sqlite::SqliteArguments,
                sqlx::AssertSqlSafe(Arc::clone(&texts.chunk)),
                events
            )
            .execute(&mut *conn)
            .await?;
        }
        done += rows;
    }
    if chunks.is_empty() {
        query_args!(
            sqlx::sqlite::SqliteArguments,
            sqlx::AssertSqlSafe(Arc::clone(&texts.finish)),
            cursor_args(counter)
        )
        .execute(&mut *conn)
        .await?;
    }
    Ok(Applied {
        applied: fresh.len() as u64,
        duplicates,
        last_local_seq: (!emitted.is_empty()).then_some(u64_of(counter_after)),
    })
}

/// The texts of [`apply_sqlite`], made once.
struct SqliteApplyTexts {
    /// `BEGIN IMMEDIATE` and the cursor (epoch, seq; NULLs without a row) with the counter.
    begin: Arc<str>,
    /// One cache row.
    cache_put: Arc<str>,
    /// 256 padded event rows.
    chunk: Arc<str>,
    /// The cursor and the counter (anonymous parameters, after any event rows), then `COMMIT`.
    finish: Arc<str>,
    /// By `log2(padded size)`: that many event rows, then [`Self::finish`].
    last_chunk: Vec<Arc<str>>,
}

fn sqlite_apply_texts() -> &'static SqliteApplyTexts {
    static TEXTS: std::sync::OnceLock<SqliteApplyTexts> = std::sync::OnceLock::new();
    TEXTS.get_or_init(|| {
        let events = |size: usize| {
            format!(
                "INSERT INTO bver_events ({}) SELECT * FROM (VALUES {}) WHERE column1 IS NOT NULL; ",
                sql::EVENT_COLUMNS,
                sql::placeholders(sql::Dialect::Sqlite, size, 14)
            )
        };
        let finish = "INSERT INTO bver_subscriptions (name, peer, channel, epoch, seq, applied, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET peer = excluded.peer, \
             channel = excluded.channel, epoch = excluded.epoch, seq = excluded.seq, \
             applied = bver_subscriptions.applied + excluded.applied, updated_at = excluded.updated_at; \
             UPDATE bver_outbox_seq SET value = ? WHERE id = 1; COMMIT"
            .to_owned();
        SqliteApplyTexts {
            begin: Arc::from(
                "BEGIN IMMEDIATE; SELECT s.epoch, s.seq, c.value FROM bver_outbox_seq AS c \
                 LEFT JOIN bver_subscriptions AS s ON s.name = ? WHERE c.id = 1",
            ),
            cache_put: Arc::from(format!(
                "INSERT INTO bver_remote_cache ({CACHE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (namespace, repo, id) DO UPDATE SET kind = excluded.kind, value = excluded.value, \
                 version = excluded.version, deleted = excluded.deleted, updated_at = excluded.updated_at, \
                 fetched_at = excluded.fetched_at WHERE bver_remote_cache.version <= excluded.version"
            )),
            chunk: Arc::from(events(256)),
            last_chunk: sql::PADDED_SIZES
                .iter()
                .map(|&size| Arc::from(format!("{}{finish}", events(size))))
                .collect(),
            finish: Arc::from(finish),
        }
    })
}

impl Store {
    /// The highest committed outbox sequence number (read from the database).
    pub async fn outbox_head(&self) -> Result<u64, BverError> {
        with_reader!(&self.inner.backend, |conn| {
            sqlx::query("SELECT value FROM bver_outbox_seq WHERE id = 1")
                .fetch_one(conn)
                .await
                .and_then(|r| r.try_get::<i64, _>(0))
        })
        .map(u64_of)
        .map_err(store_err)
    }

    /// Read the outbox head from the database and move [`Store::subscribe_seq`] up to it:
    /// events committed by other processes (several processes of one platform on one
    /// PostgreSQL database) then reach live EAGER streams too. Returns the head.
    pub async fn refresh_head(&self) -> Result<u64, BverError> {
        let head = self.outbox_head().await?;
        super::writer::advance_head(&self.inner.seq_tx, head);
        Ok(head)
    }

    /// Outbox events with `from <= seq <= to` whose trigger is one of `triggers`, in order,
    /// at most `limit`, each with the value of the version it announces (when that version
    /// is stored here).
    pub async fn channel_events(
        &self,
        triggers: &[String],
        from: u64,
        to: u64,
        limit: u32,
    ) -> Result<Vec<(OutboxEvent, Option<Value>)>, BverError> {
        if triggers.is_empty() || from > to {
            return Ok(Vec::new());
        }
        let list: Vec<String> = (0..triggers.len()).map(|i| format!("${}", i + 4)).collect();
        let text = format!(
            "SELECT e.seq AS seq, e.epoch AS epoch, e.trigger AS trigger, e.namespace AS namespace, \
             e.repo AS repo, e.id AS id, e.version AS version, e.kind AS kind, e.change AS change, \
             e.diff AS diff, e.principal AS principal, e.operation AS operation, \
             e.request_id AS request_id, e.at AS at, v.value AS value, v.deleted AS deleted \
             FROM bver_events e LEFT JOIN bver_versions v ON v.namespace = e.namespace \
             AND v.repo = e.repo AND v.id = e.id AND v.version = e.version \
             WHERE e.seq >= $1 AND e.seq <= $2 AND e.trigger IN ({}) ORDER BY e.seq LIMIT $3",
            list.join(", ")
        );
        with_reader!(&self.inner.backend, |conn| {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(text))
                .bind(i64_of(from))
                .bind(i64_of(to))
                .bind(i64::from(limit.max(1)));
            for t in triggers {
                q = q.bind(t);
            }
            q.fetch_all(conn).await.and_then(|rows| {
                rows.iter()
                    .map(|r| {
                        let ev = sql::event_of(r)?;
                        let value: Option<String> = r.try_get("value")?;
                        let deleted: Option<bool> = r.try_get("deleted")?;
                        let value = match (value, deleted) {
                            (Some(_), Some(true)) => Some(Value::Null),
                            (Some(v), _) => Some(
                                serde_json::from_str(&v)
                                    .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                            ),
                            (None, _) => None,
                        };
                        Ok((ev, value))
                    })
                    .collect::<Result<Vec<_>, sqlx::Error>>()
            })
        })
        .map_err(store_err)
    }

    /// The persisted position of subscription `name`.
    pub async fn subscription(&self, name: &str) -> Result<Option<SubscriptionRow>, BverError> {
        let text = format!("SELECT {SUB_COLUMNS} FROM bver_subscriptions WHERE name = $1");
        with_reader!(&self.inner.backend, |conn| {
            sqlx::query(sqlx::AssertSqlSafe(text))
                .bind(name)
                .fetch_optional(conn)
                .await
                .and_then(|r| r.map(|r| sub_of(&r)).transpose())
        })
        .map_err(store_err)
    }

    /// Every persisted subscription position, by name.
    pub async fn subscriptions(&self) -> Result<Vec<SubscriptionRow>, BverError> {
        let text = format!("SELECT {SUB_COLUMNS} FROM bver_subscriptions ORDER BY name");
        with_reader!(&self.inner.backend, |conn| {
            sqlx::query(sqlx::AssertSqlSafe(text))
                .fetch_all(conn)
                .await
                .and_then(|rows| rows.iter().map(sub_of).collect::<Result<Vec<_>, _>>())
        })
        .map_err(store_err)
    }

    /// Apply a batch of remote events of subscription `name` (peer, channel, the publisher's
    /// `epoch`) effectively once: in one transaction, drop those at or below the stored
    /// cursor, append a local outbox event for each that emits a trigger, refresh the remote
    /// resolution cache, and move the cursor to the last one. `effects` are in increasing
    /// `origin_seq` order.
    pub async fn apply_remote(
        &self,
        name: &str,
        peer: &str,
        channel: &str,
        epoch: &str,
        effects: &[RemoteEffect],
    ) -> Result<Applied, BverError> {
        if effects.is_empty() {
            return Ok(Applied::default());
        }
        let local_epoch = self.inner.epoch.clone();
        let mut attempt = 0;
        let outcome = loop {
            attempt += 1;
            let r = match &self.inner.backend {
                Backend::Sqlite { write, .. } => {
                    apply_sqlite(write, name, peer, channel, epoch, effects, &local_epoch).await
                }
                Backend::Postgres { pool } => {
                    async {
                        let mut tx = sqlx::Acquire::begin(pool).await?;
                        let out = apply_in!(
                            tx,
                            sqlx::postgres::PgArguments,
                            true,
                            &self.inner.statements,
                            name,
                            peer,
                            channel,
                            epoch,
                            effects,
                            &local_epoch
                        )?;
                        tx.commit().await?;
                        Ok::<_, sqlx::Error>(out)
                    }
                    .await
                }
            };
            match r {
                Err(e) if attempt < 5 && super::writer::is_transient(&e) => {
                    tokio::time::sleep(std::time::Duration::from_millis(5 << attempt)).await;
                }
                other => break other,
            }
        };
        let applied = outcome.map_err(store_err)?;
        // Committed; durable before anyone is told (outside the retries: a failed fsync must
        // not apply the batch again).
        self.inner.backend.durable().await.map_err(store_err)?;
        if let Some(seq) = applied.last_local_seq {
            super::writer::advance_head(&self.inner.seq_tx, seq);
        }
        Ok(applied)
    }

    /// The cached state of a remote reference.
    pub async fn cached(&self, key: &RefKey) -> Result<Option<CachedRef>, BverError> {
        let text = format!(
            "SELECT {CACHE_COLUMNS} FROM bver_remote_cache WHERE namespace = $1 AND repo = $2 AND id = $3"
        );
        with_reader!(&self.inner.backend, |conn| {
            sqlx::query(sqlx::AssertSqlSafe(text))
                .bind(&key.namespace)
                .bind(&key.repo)
                .bind(&key.id)
                .fetch_optional(conn)
                .await
                .and_then(|r| r.map(|r| cached_of(&r)).transpose())
        })
        .map_err(store_err)
    }

    /// Store a reference fetched from its owner in the remote resolution cache (a newer
    /// version already cached wins).
    pub async fn cache_put(&self, entry: &CachedRef) -> Result<(), BverError> {
        let text = format!(
            "INSERT INTO bver_remote_cache ({CACHE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (namespace, repo, id) DO UPDATE SET kind = excluded.kind, value = excluded.value, \
             version = excluded.version, deleted = excluded.deleted, updated_at = excluded.updated_at, \
             fetched_at = excluded.fetched_at WHERE bver_remote_cache.version <= excluded.version"
        );
        macro_rules! put {
            ($conn:expr) => {
                sqlx::query(sqlx::AssertSqlSafe(text))
                    .bind(&entry.key.namespace)
                    .bind(&entry.key.repo)
                    .bind(&entry.key.id)
                    .bind(&entry.kind)
                    .bind(entry.value.to_string())
                    .bind(i64_of(entry.version))
                    .bind(entry.deleted)
                    .bind(entry.updated_at)
                    .bind(entry.fetched_at)
                    .execute($conn)
                    .await
                    .map(|_| ())
            };
        }
        match &self.inner.backend {
            Backend::Sqlite { write, .. } => put!(write),
            Backend::Postgres { pool } => put!(pool),
        }
        .map_err(store_err)?;
        self.inner.backend.durable().await.map_err(store_err)
    }
}
