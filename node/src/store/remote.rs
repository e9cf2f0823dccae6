//! The store's side of federation: channel reads for the EAGER publisher, and the
//! subscriber's effectively-once apply (local trigger events, the remote resolution cache and
//! the subscription cursor, in one transaction).
//!
//! **Invariant:** a subscription's cursor moves only in the transaction that writes the
//! effects of the events it covers; an event at or below the stored cursor (same epoch) is
//! dropped, so a batch delivered twice (a reconnect replays from the last cursor the
//! *endpoint* saw, which may be ahead of or behind the stored one) applies once.

use std::sync::Arc;

use futures_util::TryStreamExt;
use serde_json::Value;
use sqlx::Row;

use super::sql::{self, Arg, Stmt, i64_of, query_args, u64_of};
use super::types::{ChangeType, ChannelEvent, RefKey};
use super::{Backend, Store, store_err};
use bver_contracts::BverError;
use bver_contracts::version::Diff;

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
    pub diff: Diff,
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

/// Upsert of one row of the remote resolution cache (a newer version already cached wins).
const CACHE_UPSERT: &str = "INSERT INTO bver_remote_cache (namespace, repo, id, kind, value, version, deleted, updated_at, fetched_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
     ON CONFLICT (namespace, repo, id) DO UPDATE SET kind = excluded.kind, value = excluded.value, \
     version = excluded.version, deleted = excluded.deleted, updated_at = excluded.updated_at, \
     fetched_at = excluded.fetched_at WHERE bver_remote_cache.version <= excluded.version";

/// Upsert of a subscription's cursor after a batch ([`cursor_row`]'s seven values).
fn cursor_upsert(dialect: sql::Dialect) -> String {
    format!(
        "INSERT INTO bver_subscriptions ({SUB_COLUMNS}) VALUES {} ON CONFLICT (name) DO UPDATE SET \
         peer = excluded.peer, channel = excluded.channel, epoch = excluded.epoch, seq = excluded.seq, \
         applied = bver_subscriptions.applied + excluded.applied, updated_at = excluded.updated_at",
        sql::placeholders(dialect, 1, 7)
    )
}

/// The values of [`cursor_upsert`]: the cursor at `seq` after `applied` more events.
fn cursor_row(b: &Batch<'_>, seq: u64, applied: usize, now: i64) -> [Arg; 7] {
    [
        Arg::Text(b.name.to_owned()),
        Arg::Text(b.peer.to_owned()),
        Arg::Text(b.channel.to_owned()),
        Arg::Text(b.epoch.to_owned()),
        Arg::Int(i64_of(seq)),
        Arg::Int(applied as i64),
        Arg::Int(now),
    ]
}

/// The values of [`CACHE_UPSERT`] for `e`.
fn cache_row(e: &RemoteEffect, now: i64) -> [Arg; 9] {
    [
        Arg::Text(e.key.namespace.clone()),
        Arg::Text(e.key.repo.clone()),
        Arg::Text(e.key.id.clone()),
        Arg::OptText(e.kind.clone()),
        Arg::Text(e.value.as_ref().unwrap_or(&Value::Null).to_string()),
        Arg::Int(i64_of(e.version)),
        Arg::Bool(e.change == ChangeType::Deleted),
        Arg::Int(e.at),
        Arg::Int(now),
    ]
}

/// The stored text of a remote event's diff: its RFC 6902 JSON, written straight from the
/// wire form (no `serde_json::Value` in between).
fn diff_json(diff: &Diff) -> String {
    serde_json::to_string(diff).expect("a diff (string keys, JSON values) always serializes")
}

/// One apply's batch: whose events, from where.
struct Batch<'a> {
    name: &'a str,
    peer: &'a str,
    channel: &'a str,
    epoch: &'a str,
    effects: &'a [RemoteEffect],
}

/// A batch's events after the stored cursor, and how many it held at or below it.
struct Fresh<'a> {
    events: Vec<&'a RemoteEffect>,
    duplicates: u64,
}

impl Fresh<'_> {
    /// What the apply reports, with the local sequence number of its last local event.
    fn applied(&self, last_local_seq: Option<u64>) -> Applied {
        Applied {
            applied: self.events.len() as u64,
            duplicates: self.duplicates,
            last_local_seq,
        }
    }
}

impl<'a> Batch<'a> {
    /// The events after the stored cursor (`(epoch, seq)`, if any): the others were applied.
    fn fresh(&self, stored: Option<(&str, u64)>) -> Fresh<'a> {
        let after = match stored {
            Some((epoch, seq)) if epoch == self.epoch => seq,
            _ => 0,
        };
        let events: Vec<_> = self
            .effects
            .iter()
            .filter(|e| e.origin_seq > after)
            .collect();
        Fresh {
            duplicates: (self.effects.len() - events.len()) as u64,
            events,
        }
    }

    /// The fresh events that append a local trigger event, with their trigger.
    fn emitted(fresh: &[&'a RemoteEffect]) -> Vec<(&'a RemoteEffect, &'a str)> {
        fresh
            .iter()
            .filter_map(|e| e.trigger.as_deref().map(|t| (*e, t)))
            .collect()
    }
}

/// The local outbox rows ([`sql::EVENT_COLUMNS`]) of a batch's emitted events.
struct LocalEvents<'a> {
    batch: &'a Batch<'a>,
    epoch: Arg,
    principal: Arg,
    operation: Arg,
    now: i64,
}

impl<'a> LocalEvents<'a> {
    fn new(batch: &'a Batch<'a>, local_epoch: &str, now: i64) -> Self {
        let shared = |v: String| Arg::Shared(Arc::from(v));
        Self {
            batch,
            epoch: shared(local_epoch.to_owned()),
            principal: shared(format!("peer:{}", batch.peer)),
            operation: shared(format!("eager.{}", batch.channel)),
            now,
        }
    }

    /// The row of local sequence number `seq` for `e` with `trigger`.
    fn row(&self, seq: i64, (e, trigger): &(&RemoteEffect, &str)) -> [Arg; 14] {
        [
            Arg::Int(seq),
            self.epoch.clone(),
            Arg::Text((*trigger).to_owned()),
            Arg::Text(e.key.namespace.clone()),
            Arg::Text(e.key.repo.clone()),
            Arg::Text(e.key.id.clone()),
            Arg::Int(i64_of(e.version)),
            Arg::OptText(e.kind.clone()),
            Arg::Text(e.change.as_str().to_owned()),
            Arg::Text(diff_json(&e.diff)),
            self.principal.clone(),
            self.operation.clone(),
            Arg::Text(format!(
                "{}/{}/{}",
                self.batch.peer, self.batch.epoch, e.origin_seq
            )),
            Arg::Int(self.now),
        ]
    }
}

/// PostgreSQL: [`Store::apply_remote`]'s statements in the transaction on `tx`, one round trip
/// each.
async fn apply_postgres(
    tx: &mut sqlx::PgConnection,
    stmts: &sql::Statements,
    b: &Batch<'_>,
    local_epoch: &str,
) -> Result<Applied, sqlx::Error> {
    // Make sure the cursor row exists before it is read and locked: with no row there is
    // nothing to lock, and two processes applying a subscription's very first batch at once
    // would both apply it. The row is `(epoch, seq 0)`, "nothing applied yet in this epoch",
    // the same as no row for the filter below. A second transaction's insert waits for the
    // first one's uncommitted row and then does nothing, and its `FOR UPDATE` read (a new
    // snapshot under READ COMMITTED) sees the committed cursor; nobody else ever sees a row
    // of a transaction that rolled back.
    sqlx::query(
        "INSERT INTO bver_subscriptions (name, peer, channel, epoch, seq, applied, updated_at) \
         VALUES ($1, $2, $3, $4, 0, 0, $5) ON CONFLICT (name) DO NOTHING",
    )
    .bind(b.name)
    .bind(b.peer)
    .bind(b.channel)
    .bind(b.epoch)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    let stored = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {SUB_COLUMNS} FROM bver_subscriptions WHERE name = $1 FOR UPDATE"
    )))
    .bind(b.name)
    .fetch_optional(&mut *tx)
    .await?
    .map(|r| sub_of(&r))
    .transpose()?;
    let fresh = b.fresh(stored.as_ref().map(|s| (s.epoch.as_str(), s.seq)));
    let Some(last) = fresh.events.last() else {
        return Ok(fresh.applied(None));
    };
    let now = now_ms();
    for e in fresh.events.iter().filter(|e| e.cache) {
        query_args!(sqlx::postgres::PgArguments, CACHE_UPSERT, cache_row(e, now))
            .execute(&mut *tx)
            .await?;
    }
    query_args!(
        sqlx::postgres::PgArguments,
        sqlx::AssertSqlSafe(cursor_upsert(sql::Dialect::Postgres)),
        cursor_row(b, last.origin_seq, fresh.events.len(), now)
    )
    .execute(&mut *tx)
    .await?;
    let emitted = Batch::emitted(&fresh.events);
    let mut last_local_seq = None;
    if !emitted.is_empty() {
        let n = emitted.len() as i64;
        // The outbox counter: its row lock is held to commit, so sequence order stays commit
        // order (see the writer's module docs).
        let last: i64 = sqlx::query(
            "UPDATE bver_outbox_seq SET value = value + $1 WHERE id = 1 RETURNING value",
        )
        .bind(n)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        let first = last - n + 1;
        let rows = LocalEvents::new(b, local_epoch, now);
        // One multi-row statement per chunk, not one per event.
        let mut done = 0;
        for size in sql::chunks(emitted.len()) {
            let args = emitted[done..done + size]
                .iter()
                .enumerate()
                .flat_map(|(i, e)| rows.row(first + (done + i) as i64, e));
            query_args!(
                sqlx::postgres::PgArguments,
                stmts.get(Stmt::InsertEvents, size),
                args
            )
            .execute(&mut *tx)
            .await?;
            done += size;
        }
        last_local_seq = Some(u64_of(last));
    }
    Ok(fresh.applied(last_local_seq))
}

/// SQLite: [`Store::apply_remote`]'s transaction in as few round trips to the write
/// connection's thread as its size allows, since each one is a hand-off between threads:
/// `BEGIN IMMEDIATE` with the read of the cursor and the outbox counter (the whole database is
/// locked from there on, so both stay as read), then one per cache row (with `cache = true`),
/// then the local events in padded chunks of up to 256 rows, the last one in one script with
/// the cursor, the counter and the `COMMIT`. A batch of up to 256 events without cache rows
/// is two round trips instead of seven. Any failure rolls the transaction back; the caller
/// retries.
async fn apply_sqlite(
    write: &sqlx::SqlitePool,
    b: &Batch<'_>,
    local_epoch: &str,
) -> Result<Applied, sqlx::Error> {
    let mut guard = CloseIfCancelled(Some(write.acquire().await?));
    let conn = guard
        .0
        .as_mut()
        .expect("the guard holds the connection until the end");
    let r = apply_sqlite_on(conn, b, local_epoch).await;
    if r.is_err() {
        sql::rollback_after_failure(conn, "an apply of remote events").await;
    }
    // Finished (committed or rolled back): the connection goes back to the pool.
    drop(guard.0.take());
    r
}

/// The write connection of an apply in progress. If the apply is cancelled (its future
/// dropped, as when a subscription is stopped), the connection may be inside an open
/// transaction: it is closed rather than handed back to the pool, which rolls the transaction
/// back; the pool opens a new one. A statement already handed to the connection's thread runs
/// to its end first, so an apply cancelled after its last statement (the one with the
/// `COMMIT`) was sent still commits whole, a moment after its future is gone. Either way the
/// next write waits: the open transaction holds the database's write lock until it commits or
/// is rolled back.
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
    b: &Batch<'_>,
    local_epoch: &str,
) -> Result<Applied, sqlx::Error> {
    let texts = sqlite_apply_texts();
    let row = sqlx::query(sqlx::AssertSqlSafe(Arc::clone(&texts.begin)))
        .bind(b.name)
        .fetch_one(&mut *conn)
        .await?;
    let stored_epoch: Option<String> = row.try_get(0)?;
    let stored_seq: Option<i64> = row.try_get(1)?;
    let counter: i64 = row.try_get(2)?;
    let fresh = b.fresh(stored_epoch.as_deref().zip(stored_seq.map(u64_of)));
    let Some(last) = fresh.events.last() else {
        sqlx::query("COMMIT").execute(&mut *conn).await?;
        return Ok(fresh.applied(None));
    };
    let now = now_ms();
    for e in fresh.events.iter().filter(|e| e.cache) {
        query_args!(
            sqlx::sqlite::SqliteArguments,
            CACHE_UPSERT,
            cache_row(e, now)
        )
        .execute(&mut *conn)
        .await?;
    }
    let emitted = Batch::emitted(&fresh.events);
    let rows = LocalEvents::new(b, local_epoch, now);
    let counter_after = counter + emitted.len() as i64;
    // Every chunk but the last is a statement of its own; the last (of no rows when nothing
    // is emitted) carries the cursor, the counter and the COMMIT.
    let mut chunks = sql::padded_chunks(emitted.len());
    if chunks.is_empty() {
        chunks.push((0, 0));
    }
    let mut done = 0;
    for (k, &(count, size)) in chunks.iter().enumerate() {
        let is_last = k + 1 == chunks.len();
        let events = emitted[done..done + count]
            .iter()
            .enumerate()
            .flat_map(|(i, e)| rows.row(counter + 1 + (done + i) as i64, e))
            .chain(std::iter::repeat_n(Arg::OptText(None), (size - count) * 14));
        let tail = is_last.then(|| {
            cursor_row(b, last.origin_seq, fresh.events.len(), now)
                .into_iter()
                .chain([Arg::Int(counter_after)])
        });
        let text = match (is_last, size) {
            (false, _) => &texts.chunk,
            (true, 0) => &texts.finish,
            (true, size) => &texts.last_chunk[size.trailing_zeros() as usize],
        };
        query_args!(
            sqlx::sqlite::SqliteArguments,
            sqlx::AssertSqlSafe(Arc::clone(text)),
            events.chain(tail.into_iter().flatten())
        )
        .execute(&mut *conn)
        .await?;
        done += count;
    }
    Ok(fresh.applied((!emitted.is_empty()).then_some(u64_of(counter_after))))
}

/// The texts of [`apply_sqlite`], made once.
struct SqliteApplyTexts {
    /// `BEGIN IMMEDIATE` and the cursor (epoch, seq; NULLs without a row) with the counter.
    begin: Arc<str>,
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
        let finish = format!(
            "{}; UPDATE bver_outbox_seq SET value = ? WHERE id = 1; COMMIT",
            cursor_upsert(sql::Dialect::Sqlite)
        );
        SqliteApplyTexts {
            begin: Arc::from(
                "BEGIN IMMEDIATE; SELECT s.epoch, s.seq, c.value FROM bver_outbox_seq AS c \
                 LEFT JOIN bver_subscriptions AS s ON s.name = ? WHERE c.id = 1",
            ),
            chunk: Arc::from(events(256)),
            last_chunk: sql::PADDED_SIZES
                .iter()
                .map(|&size| Arc::from(format!("{}{finish}", events(size))))
                .collect(),
            finish: Arc::from(finish),
        }
    })
}

/// One row of [`Store::channel_events`]'s query, by column position.
fn channel_event_of<R: Row>(row: &R) -> Result<ChannelEvent, sqlx::Error>
where
    usize: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<bool>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let decode = |e: serde_json::Error| sqlx::Error::Decode(Box::new(e));
    let change: String = row.try_get(8)?;
    let diff: String = row.try_get(9)?;
    let value: Option<String> = row.try_get(11)?;
    let deleted: Option<bool> = row.try_get(12)?;
    Ok(ChannelEvent {
        seq: u64_of(row.try_get(0)?),
        epoch: row.try_get(1)?,
        trigger: row.try_get(2)?,
        key: RefKey {
            namespace: row.try_get(3)?,
            repo: row.try_get(4)?,
            id: row.try_get(5)?,
        },
        version: u64_of(row.try_get(6)?),
        kind: row.try_get(7)?,
        change: ChangeType::parse(&change)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown change type {change:?}").into()))?,
        // Every stored diff is an RFC 6902 operation list (BVER's own diffs and the wire
        // diffs of applied remote events): one that is not is a decode error, never an
        // event sent on with its diff emptied.
        diff: serde_json::from_str(&diff).map_err(decode)?,
        at: row.try_get(10)?,
        value: match (value, deleted) {
            (Some(_), Some(true)) => Some(Value::Null),
            (Some(v), _) => Some(serde_json::from_str(&v).map_err(decode)?),
            (None, _) => None,
        },
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
    ///
    /// This is the read behind every EAGER stream, bulk replay included, so it reads only the
    /// columns an envelope carries, by position, parses each diff straight into its wire
    /// form, and decodes each row as it arrives.
    pub async fn channel_events(
        &self,
        triggers: &[String],
        from: u64,
        to: u64,
        limit: u32,
    ) -> Result<Vec<ChannelEvent>, BverError> {
        if triggers.is_empty() || from > to {
            return Ok(Vec::new());
        }
        let list: Vec<String> = (0..triggers.len()).map(|i| format!("${}", i + 4)).collect();
        let text = format!(
            "SELECT e.seq, e.epoch, e.trigger, e.namespace, e.repo, e.id, e.version, e.kind, \
             e.change, e.diff, e.at, v.value, v.deleted \
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
            // Each row is decoded as it arrives, while the connection's thread produces the
            // next ones (see `READER_ROW_BUFFER`), rather than after the last one.
            q.fetch(conn)
                .and_then(|row| std::future::ready(channel_event_of(&row)))
                .try_collect::<Vec<_>>()
                .await
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
        let batch = Batch {
            name,
            peer,
            channel,
            epoch,
            effects,
        };
        let mut attempt = 0;
        let outcome = loop {
            attempt += 1;
            let r = match &self.inner.backend {
                Backend::Sqlite { write, .. } => apply_sqlite(write, &batch, &local_epoch).await,
                Backend::Postgres { pool } => {
                    async {
                        let mut tx = sqlx::Acquire::begin(pool).await?;
                        let out =
                            apply_postgres(&mut tx, &self.inner.statements, &batch, &local_epoch)
                                .await?;
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
        macro_rules! put {
            ($conn:expr) => {
                sqlx::query(CACHE_UPSERT)
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
