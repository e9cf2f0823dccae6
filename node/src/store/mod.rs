//! Versioned storage of references, on SQLite (the embedded default) or PostgreSQL.
//!
//! Every mutation commits, in one transaction, the new current value, a full version
//! snapshot with provenance, an RFC 6902 diff from the previous version and an outbox event
//! with a dense per-platform sequence number. Writes go through one group-commit writer per
//! process ([`writer`]); reads go to a read pool, through an in-process cache ([`cache`]).
//!
//! Durability: SQLite runs in WAL mode, its commits made durable by an fsync of the WAL that
//! several commits share ([`wal`]); PostgreSQL with `synchronous_commit=on`. A caller is
//! answered only after its commit is durable.
//!
//! **Architecture Invariant:** the store applies changes, checks versions and keeps history;
//! it knows nothing of scopes or operations. Only the operation broker calls its write path.

mod cache;
mod checkpoint;
mod schema;
mod sql;
mod types;
mod wal;
mod writer;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bver_contracts::{BverError, ErrorCode, Phase};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Connection, Row};
use tokio::sync::{mpsc, oneshot, watch};

pub use types::{
    Change, ChangeType, ChannelEvent, Committed, Current, Idempotency, Mutation, OutboxEvent, Page,
    Provenance, RefKey, TriggerEvent, TriggerHook, Validator, VersionRow,
};

use cache::ReadCache;
use sql::{Dialect, i64_of};
use wal::WalSync;
use writer::{WriteReq, Writer};

/// Tuning of a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// How many current references the read cache holds (0 disables it).
    pub cache_capacity: u64,
    /// The most mutations one group commit takes.
    pub max_batch: usize,
    /// Connections for reads (SQLite) or for everything (PostgreSQL).
    pub pool_size: u32,
    /// How many mutations may wait for the writer before callers wait to enqueue.
    pub queue_depth: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            cache_capacity: 100_000,
            max_batch: 256,
            pool_size: 4,
            queue_depth: 4096,
        }
    }
}

#[derive(Clone)]
pub(crate) enum Backend {
    Sqlite {
        write: SqlitePool,
        read: SqlitePool,
        /// The write connection commits without an fsync; this makes its commits durable.
        wal: WalSync,
        /// The background checkpointer's requests that the writer start the WAL over.
        wal_restart: Arc<checkpoint::WalRestart>,
    },
    Postgres {
        pool: PgPool,
    },
}

impl Backend {
    /// Wait until every commit made on the write connection before this call is durable
    /// (SQLite: the WAL's fsync, shared with other commits; PostgreSQL: already, at commit).
    /// Every write outside the writer calls it after its commit, before it reports success.
    async fn durable(&self) -> Result<(), sqlx::Error> {
        match self {
            Self::Sqlite { wal, .. } => wal
                .sync()
                .await
                .map_err(|e| sqlx::Error::Io(std::io::Error::new(e.kind(), e.to_string()))),
            Self::Postgres { .. } => Ok(()),
        }
    }

    fn dialect(&self) -> Dialect {
        match self {
            Self::Sqlite { .. } => Dialect::Sqlite,
            Self::Postgres { .. } => Dialect::Postgres,
        }
    }
}

/// Run `$body` with `$conn` bound to a read executor of whichever backend the store uses.
macro_rules! with_reader {
    ($backend:expr, |$conn:ident| $body:expr) => {
        match $backend {
            Backend::Sqlite { read, .. } => {
                let $conn = read;
                $body
            }
            Backend::Postgres { pool } => {
                let $conn = pool;
                $body
            }
        }
    };
}

mod lease;
mod pipeline;
mod remote;

pub use lease::Lease;
pub use remote::{Applied, CachedRef, RemoteEffect, SubscriptionRow};

/// What the writer has done since the store opened (see [`Store::write_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriteStats {
    /// Batches committed on the full path (read inside the transaction, then write).
    pub full_batches: u64,
    /// SQLite: batches planned ahead and committed in one round trip (see `docs/storage.md`).
    pub pipelined_batches: u64,
    /// SQLite: pipelined batches that found the outbox counter moved (another process, or
    /// federation on this connection, wrote meanwhile) or failed, and went the full path.
    pub pipeline_fallbacks: u64,
}

/// The writer's counters, shared with the store handle.
#[derive(Debug, Default)]
pub(crate) struct WriteCounters {
    pub(crate) full_batches: std::sync::atomic::AtomicU64,
    pub(crate) pipelined_batches: std::sync::atomic::AtomicU64,
    pub(crate) pipeline_fallbacks: std::sync::atomic::AtomicU64,
}

/// A handle to a platform's store. Cheap to clone; all clones share one writer and one cache.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    epoch: String,
    cache: Option<Arc<ReadCache>>,
    writes: mpsc::Sender<WriteReq>,
    last_seq: watch::Receiver<u64>,
    /// Moves the head when something other than the writer appends events (federation).
    seq_tx: watch::Sender<u64>,
    /// Multi-row statement texts for writes outside the writer (federation's apply).
    statements: sql::Statements,
    counters: Arc<WriteCounters>,
}

/// Map a database failure to the shared error; the cause is logged, not returned.
pub(crate) fn storage_error(e: &sqlx::Error) -> BverError {
    tracing::warn!(error = %e, "storage failure");
    BverError::new(
        ErrorCode::StorageError,
        Phase::Storage,
        "the storage backend failed; the request may be retried",
    )
    .retryable(true)
}

fn store_err(e: sqlx::Error) -> BverError {
    storage_error(&e)
}

impl Store {
    /// Open (creating if needed) the SQLite store in `path`, run migrations, start the writer.
    pub async fn open_sqlite(path: &Path, options: StoreOptions) -> Result<Self, BverError> {
        let connect = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        // SQLite connections are local and do not go stale: no ping before each use (a ping
        // is a round trip to the connection's thread, as long as a small statement).
        // The writer checkpoints the WAL when the background checkpointer asks, or when it is
        // very large ([`checkpoint`]). Its page cache is larger
        // than the default 2 MiB, since a batch touches pages all over the version table; and
        // its statement journals (which let one multi-row statement roll back alone) stay in
        // memory rather than spill to a temporary file. Neither changes durability.
        let write_connect = connect
            .clone()
            .synchronous(SqliteSynchronous::Normal)
            .pragma(
                "wal_autocheckpoint",
                checkpoint::WRITER_AUTOCHECKPOINT_PAGES.to_string(),
            )
            .pragma("cache_size", format!("-{WRITER_CACHE_KIB}"))
            .pragma("temp_store", "memory");
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .test_before_acquire(false)
            .connect_with(write_connect)
            .await
            .map_err(|e| open_error(&e, &path.display().to_string()))?;
        let read = SqlitePoolOptions::new()
            .max_connections(options.pool_size.max(1))
            .test_before_acquire(false)
            .connect_with(
                connect
                    .clone()
                    .read_only(true)
                    .pragma("mmap_size", READER_MMAP_BYTES.to_string())
                    .row_buffer_size(READER_ROW_BUFFER),
            )
            .await
            .map_err(|e| open_error(&e, &path.display().to_string()))?;
        let checkpointer = SqliteConnection::connect_with(&connect)
            .await
            .map_err(|e| open_error(&e, &path.display().to_string()))?;
        migrate_sqlite(&write).await.map_err(store_err)?;
        let wal = WalSync::start(path);
        let wal_restart = Arc::new(checkpoint::WalRestart::default());
        let backend = Backend::Sqlite {
            write,
            read,
            wal,
            wal_restart: Arc::clone(&wal_restart),
        };
        let store = Self::start(backend, options).await?;
        tokio::spawn(checkpoint::run(
            checkpointer,
            store.subscribe_seq(),
            wal_restart,
            checkpoint::RESTART_PAGES,
            path.to_owned(),
        ));
        Ok(store)
    }

    /// Connect to PostgreSQL at `url`, run migrations, start the writer.
    ///
    /// The read cache is disabled: several processes may share the database.
    pub async fn open_postgres(url: &str, mut options: StoreOptions) -> Result<Self, BverError> {
        let connect = PgConnectOptions::from_str(url)
            .map_err(|e| {
                BverError::new(
                    ErrorCode::InvalidDefinition,
                    Phase::Configuration,
                    format!("bad PostgreSQL URL: {e}"),
                )
            })?
            .options([("synchronous_commit", "on")]);
        let pool = PgPoolOptions::new()
            .max_connections(options.pool_size.max(2))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(connect)
            .await
            .map_err(|e| open_error(&e, "PostgreSQL"))?;
        migrate_postgres(&pool).await.map_err(store_err)?;
        options.cache_capacity = 0;
        Self::start(Backend::Postgres { pool }, options).await
    }

    async fn start(backend: Backend, options: StoreOptions) -> Result<Self, BverError> {
        let epoch = ensure_epoch(&backend).await.map_err(store_err)?;
        // The migrations and the epoch, durable before anything depends on them.
        backend.durable().await.map_err(store_err)?;
        let last = with_reader!(&backend, |conn| {
            sqlx::query("SELECT value FROM bver_outbox_seq WHERE id = 1")
                .fetch_one(conn)
                .await
                .and_then(|r| r.try_get::<i64, _>(0))
        })
        .map_err(store_err)?;
        let cache =
            (options.cache_capacity > 0).then(|| Arc::new(ReadCache::new(options.cache_capacity)));
        let (tx, rx) = mpsc::channel(options.queue_depth.max(1));
        let (seq_tx, seq_rx) = watch::channel(sql::u64_of(last));
        let backend_dialect = backend.dialect();
        let counters = Arc::new(WriteCounters::default());
        let writer = Writer {
            backend: backend.clone(),
            epoch: epoch.clone(),
            cache: cache.clone(),
            max_batch: options.max_batch.max(1),
            last_seq: seq_tx.clone(),
            statements: sql::Statements::new(backend.dialect()),
            recent: Default::default(),
            batch_no: 0,
            synced: Default::default(),
            data_version: writer::UNKNOWN_DATA_VERSION.into(),
            trusted_from: Default::default(),
            counter: None,
            overlay: Default::default(),
            shapes: Default::default(),
            counters: Arc::clone(&counters),
            received: 0,
            answered: Default::default(),
        };
        tokio::spawn(writer.run(rx));
        Ok(Self {
            inner: Arc::new(Inner {
                backend,
                epoch,
                cache,
                writes: tx,
                last_seq: seq_rx,
                seq_tx,
                statements: sql::Statements::new(backend_dialect),
                counters,
            }),
        })
    }

    /// What the writer has done since the store opened: batches by path, and pipelined
    /// batches that had to be retried on the full path.
    pub fn write_stats(&self) -> WriteStats {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &self.inner.counters;
        WriteStats {
            full_batches: c.full_batches.load(Relaxed),
            pipelined_batches: c.pipelined_batches.load(Relaxed),
            pipeline_fallbacks: c.pipeline_fallbacks.load(Relaxed),
        }
    }

    /// The outbox epoch: a random id minted when this platform's outbox was created.
    pub fn epoch(&self) -> &str {
        &self.inner.epoch
    }

    /// Which backend this store runs on (`sqlite` or `postgres`).
    pub fn backend_name(&self) -> &'static str {
        match self.inner.backend.dialect() {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        }
    }

    /// Watch the highest outbox sequence number committed through this process.
    pub fn subscribe_seq(&self) -> watch::Receiver<u64> {
        self.inner.last_seq.clone()
    }

    /// The head [`Store::subscribe_seq`] holds now, without a query: every event up to it
    /// is committed (it moves only after a commit; [`Store::refresh_head`] moves it to
    /// other processes' commits).
    pub fn known_head(&self) -> u64 {
        *self.inner.last_seq.borrow()
    }

    /// Commit one mutation (group-committed with others) and return its new version.
    ///
    /// A create's value and kind do not depend on the stored state, so its validator (schema
    /// and rules) runs here, in the caller's task, in parallel with other callers; every
    /// other change is validated by the writer, against the state it changes.
    pub async fn mutate(&self, mut mutation: Mutation) -> Result<Committed, BverError> {
        if let Change::Create { kind, value } = &mutation.change
            && let Some(validate) = mutation.validator.take()
        {
            validate(kind.as_deref(), value).map_err(|e| e.with_ref(mutation.key.to_string()))?;
        }
        let (reply, answer) = oneshot::channel();
        self.inner
            .writes
            .send(WriteReq { mutation, reply })
            .await
            .map_err(|_| unavailable())?;
        answer.await.map_err(|_| unavailable())?
    }

    /// The current state of a reference, including a tombstone if it was deleted.
    pub async fn get(&self, key: &RefKey) -> Result<Option<Arc<Current>>, BverError> {
        if let Some(cache) = &self.inner.cache {
            if let Some(hit) = cache.get(key) {
                return Ok(Some(hit));
            }
            let generation = cache.generation();
            let found = self.get_uncached(key).await?.map(Arc::new);
            if let Some(c) = &found {
                cache.fill(generation, c.clone());
            }
            return Ok(found);
        }
        Ok(self.get_uncached(key).await?.map(Arc::new))
    }

    async fn get_uncached(&self, key: &RefKey) -> Result<Option<Current>, BverError> {
        let sql = const_format_current();
        let row = with_reader!(&self.inner.backend, |conn| {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&key.namespace)
                .bind(&key.repo)
                .bind(&key.id)
                .fetch_optional(conn)
                .await
                .and_then(|r| r.map(|r| sql::current_of(&r)).transpose())
        });
        row.map_err(store_err)
    }

    /// One stored version of a reference.
    pub async fn version(
        &self,
        key: &RefKey,
        version: u64,
    ) -> Result<Option<VersionRow>, BverError> {
        let sql = format!(
            "SELECT {} FROM bver_versions WHERE namespace = $1 AND repo = $2 AND id = $3 AND version = $4",
            sql::VERSION_COLUMNS
        );
        with_reader!(&self.inner.backend, |conn| {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&key.namespace)
                .bind(&key.repo)
                .bind(&key.id)
                .bind(i64_of(version))
                .fetch_optional(conn)
                .await
                .and_then(|r| r.map(|r| sql::version_of(&r)).transpose())
        })
        .map_err(store_err)
    }

    /// Versions of a reference in ascending order, `limit` at a time.
    pub async fn history(
        &self,
        key: &RefKey,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<VersionRow>, BverError> {
        let after = match cursor {
            None => 0,
            Some(c) => decode_cursor(c)?
                .parse::<i64>()
                .map_err(|_| bad_cursor(c))?,
        };
        let limit = limit.clamp(1, 1000);
        let sql = format!(
            "SELECT {} FROM bver_versions WHERE namespace = $1 AND repo = $2 AND id = $3 AND version > $4 \
             ORDER BY version LIMIT $5",
            sql::VERSION_COLUMNS
        );
        let mut items = with_reader!(&self.inner.backend, |conn| {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&key.namespace)
                .bind(&key.repo)
                .bind(&key.id)
                .bind(after)
                .bind(i64::from(limit) + 1)
                .fetch_all(conn)
                .await
                .and_then(|rows| {
                    rows.iter()
                        .map(sql::version_of)
                        .collect::<Result<Vec<_>, _>>()
                })
        })
        .map_err(store_err)?;
        let next = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|v| encode_cursor(&v.version.to_string()))
        } else {
            None
        };
        Ok(Page { items, next })
    }

    /// Live (not deleted) references of a repository, ordered by id; `kind` filters to a kind
    /// and its sub-kinds (`power` matches `power.substation`).
    pub async fn list(
        &self,
        namespace: &str,
        repo: &str,
        kind: Option<&str>,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<Current>, BverError> {
        let after = cursor.map(decode_cursor).transpose()?.unwrap_or_default();
        let limit = limit.clamp(1, 1000);
        let kind_clause = if kind.is_some() {
            " AND (kind = $5 OR substr(kind, 1, length($6)) = $6)"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {} FROM bver_current WHERE namespace = $1 AND repo = $2 AND deleted = $3 AND id > $4{kind_clause} \
             ORDER BY id LIMIT {}",
            sql::CURRENT_COLUMNS,
            limit + 1
        );
        let mut items = with_reader!(&self.inner.backend, |conn| {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(namespace)
                .bind(repo)
                .bind(false)
                .bind(&after);
            if let Some(k) = kind {
                q = q.bind(k).bind(format!("{k}."));
            }
            q.fetch_all(conn).await.and_then(|rows| {
                rows.iter()
                    .map(sql::current_of)
                    .collect::<Result<Vec<_>, _>>()
            })
        })
        .map_err(store_err)?;
        let next = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|c| encode_cursor(&c.key.id))
        } else {
            None
        };
        Ok(Page { items, next })
    }

    /// Live references of a namespace across its repositories, ordered by repo then id.
    pub async fn listrefs(
        &self,
        namespace: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<RefKey>, BverError> {
        let (after_repo, after_id) = match cursor {
            None => (String::new(), String::new()),
            Some(c) => {
                let raw = decode_cursor(c)?;
                let (r, i) = raw.split_once('\n').ok_or_else(|| bad_cursor(c))?;
                (r.to_owned(), i.to_owned())
            }
        };
        let limit = limit.clamp(1, 1000);
        let sql = format!(
            "SELECT namespace, repo, id FROM bver_refs WHERE namespace = $1 AND deleted = $2 \
             AND (repo > $3 OR (repo = $3 AND id > $4)) ORDER BY repo, id LIMIT {}",
            limit + 1
        );
        let mut items = with_reader!(&self.inner.backend, |conn| {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(namespace)
                .bind(false)
                .bind(&after_repo)
                .bind(&after_id)
                .fetch_all(conn)
                .await
                .and_then(|rows| {
                    rows.iter()
                        .map(|r| {
                            Ok(RefKey {
                                namespace: r.try_get(0)?,
                                repo: r.try_get(1)?,
                                id: r.try_get(2)?,
                            })
                        })
                        .collect::<Result<Vec<_>, sqlx::Error>>()
                })
        })
        .map_err(store_err)?;
        let next = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items
                .last()
                .map(|k| encode_cursor(&format!("{}\n{}", k.repo, k.id)))
        } else {
            None
        };
        Ok(Page { items, next })
    }

    /// Outbox events with a sequence number above `after`, in order, at most `limit`.
    pub async fn events_after(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<OutboxEvent>, BverError> {
        let sql = format!(
            "SELECT {} FROM bver_events WHERE seq > $1 ORDER BY seq LIMIT $2",
            sql::EVENT_COLUMNS
        );
        with_reader!(&self.inner.backend, |conn| {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(i64_of(after))
                .bind(i64::from(limit.max(1)))
                .fetch_all(conn)
                .await
                .and_then(|rows| {
                    rows.iter()
                        .map(sql::event_of)
                        .collect::<Result<Vec<_>, _>>()
                })
        })
        .map_err(store_err)
    }

    /// Whether the storage answers (for readiness checks).
    pub async fn ping(&self) -> Result<(), BverError> {
        with_reader!(&self.inner.backend, |conn| sqlx::query("SELECT 1")
            .execute(conn)
            .await
            .map(|_| ()))
        .map_err(store_err)
    }
}

/// The writer connection's page cache, in KiB. Larger is not faster: at the end of every
/// write transaction SQLite walks the cache's hash table, which grows with it.
const WRITER_CACHE_KIB: u32 = 16 * 1024;

/// How much of the database file each read connection maps into memory (`mmap_size`):
/// pages of the mapped part are read in place instead of copied into the connection's own
/// 2 MiB page cache by a `pread` each time (an EAGER replay looks up one version row per
/// event, all over the version table). The mapping is shared with the OS page cache, so it
/// costs address space, not memory. Pages still in the WAL are read from the WAL as before.
const READER_MMAP_BYTES: u64 = 256 * 1024 * 1024;

/// How many rows a read connection's thread may produce ahead of the reader (sqlx's
/// default is 50). With 50, a read of thousands of rows (an EAGER replay reads 2,048 at a
/// time) stalls the connection's thread every 50 rows until the async side takes one, and
/// the two threads hand the rows over one wake-up at a time. The cost is memory: up to this
/// many rows of one statement wait for the reader (a replay read asks for at most 2,048).
const READER_ROW_BUFFER: usize = 4096;

fn const_format_current() -> String {
    format!(
        "SELECT {} FROM bver_current WHERE namespace = $1 AND repo = $2 AND id = $3",
        sql::CURRENT_COLUMNS
    )
}

fn unavailable() -> BverError {
    BverError::new(
        ErrorCode::Unavailable,
        Phase::Storage,
        "the store is shutting down",
    )
    .retryable(true)
}

fn open_error(e: &sqlx::Error, what: &str) -> BverError {
    BverError::new(
        ErrorCode::Unavailable,
        Phase::Storage,
        format!("cannot open storage {what}: {e}"),
    )
    .retryable(true)
}

fn bad_cursor(c: &str) -> BverError {
    BverError::new(
        ErrorCode::MalformedRequest,
        Phase::InputValidation,
        "the paging cursor is not valid",
    )
    .with_details(serde_json::json!({ "cursor": c }))
}

fn encode_cursor(raw: &str) -> String {
    hex::encode(raw)
}

fn decode_cursor(c: &str) -> Result<String, BverError> {
    let bytes = hex::decode(c).map_err(|_| bad_cursor(c))?;
    String::from_utf8(bytes).map_err(|_| bad_cursor(c))
}

async fn ensure_epoch(backend: &Backend) -> Result<String, sqlx::Error> {
    let fresh = format!("{:016x}", rand::random::<u64>());
    match backend {
        Backend::Sqlite { write, .. } => {
            sqlx::query("INSERT INTO bver_meta (key, value) VALUES ('epoch', $1) ON CONFLICT (key) DO NOTHING")
                .bind(&fresh)
                .execute(write)
                .await?;
            sqlx::query("SELECT value FROM bver_meta WHERE key = 'epoch'")
                .fetch_one(write)
                .await?
                .try_get(0)
        }
        Backend::Postgres { pool } => {
            sqlx::query("INSERT INTO bver_meta (key, value) VALUES ('epoch', $1) ON CONFLICT (key) DO NOTHING")
                .bind(&fresh)
                .execute(pool)
                .await?;
            sqlx::query("SELECT value FROM bver_meta WHERE key = 'epoch'")
                .fetch_one(pool)
                .await?
                .try_get(0)
        }
    }
}

const MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS bver_schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)";

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

async fn migrate_sqlite(pool: &SqlitePool) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    sqlx::query(MIGRATIONS_TABLE).execute(&mut *conn).await?;
    for m in schema::MIGRATIONS {
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        let done = sqlx::query("SELECT 1 FROM bver_schema_migrations WHERE version = $1")
            .bind(m.version)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !done {
            tracing::info!(
                version = m.version,
                name = m.name,
                "applying storage migration"
            );
            sqlx::raw_sql(sqlx::AssertSqlSafe(m.sqlite))
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO bver_schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
                .bind(m.version)
                .bind(m.name)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
    }
    Ok(())
}

async fn migrate_postgres(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(schema::PG_MIGRATION_LOCK)
        .execute(&mut *conn)
        .await?;
    let result = async {
        sqlx::query(MIGRATIONS_TABLE).execute(&mut *conn).await?;
        for m in schema::MIGRATIONS {
            let mut tx = conn.begin().await?;
            let done = sqlx::query("SELECT 1 FROM bver_schema_migrations WHERE version = $1")
                .bind(m.version)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            if !done {
                tracing::info!(version = m.version, name = m.name, "applying storage migration");
                sqlx::raw_sql(sqlx::AssertSqlSafe(m.postgres)).execute(&mut *tx).await?;
                sqlx::query("INSERT INTO bver_schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
                    .bind(m.version)
                    .bind(m.name)
                    .bind(now_ms())
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        }
        Ok::<_, sqlx::Error>(())
    }
    .await;
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(schema::PG_MIGRATION_LOCK)
        .execute(&mut *conn)
        .await?;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database written before migration 4 (current value in `bver_refs`) opens with its
    /// references' current state intact: the newest version's.
    #[tokio::test]
    async fn a_database_from_before_migration_4_keeps_its_current_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        let mut conn = SqliteConnection::connect_with(&options).await.unwrap();
        sqlx::query(MIGRATIONS_TABLE)
            .execute(&mut conn)
            .await
            .unwrap();
        for m in schema::MIGRATIONS.iter().filter(|m| m.version <= 3) {
            sqlx::raw_sql(sqlx::AssertSqlSafe(m.sqlite))
                .execute(&mut conn)
                .await
                .unwrap();
            sqlx::query("INSERT INTO bver_schema_migrations VALUES ($1, $2, 0)")
                .bind(m.version)
                .bind(m.name)
                .execute(&mut conn)
                .await
                .unwrap();
        }
        sqlx::raw_sql(
            "INSERT INTO bver_refs VALUES ('grid', 'site', 'a', 'power', '{\"n\":2}', 2, 0, 10, 20);
             INSERT INTO bver_versions VALUES ('grid', 'site', 'a', 1, 'power', '{\"n\":1}', 0,
                 'created', '[]', 'p', 'op', 'r1', NULL, 10);
             INSERT INTO bver_versions VALUES ('grid', 'site', 'a', 2, 'power', '{\"n\":2}', 0,
                 'updated', '[]', 'p', 'op', 'r2', NULL, 20);",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();

        let store = Store::open_sqlite(&path, StoreOptions::default())
            .await
            .unwrap();
        let key = RefKey::new("grid", "site", "a");
        let c = store
            .get(&key)
            .await
            .unwrap()
            .expect("the reference survives");
        assert_eq!(
            (
                c.version,
                c.value.clone(),
                c.kind.as_deref(),
                c.created_at,
                c.updated_at
            ),
            (2, serde_json::json!({"n": 2}), Some("power"), 10, 20)
        );
        let mut m = Mutation::new(
            key.clone(),
            Change::MergePatch(serde_json::json!({"m": 1})),
            Provenance {
                principal: "p".into(),
                operation: "op".into(),
                request_id: "r3".into(),
            },
        );
        m.expected_version = Some(2);
        let next = store.mutate(m).await.unwrap();
        assert_eq!(
            (next.version, next.value),
            (3, serde_json::json!({"n": 2, "m": 1}))
        );
    }
}
