//! The group-commit writer: many callers, one transaction, every caller answered after the
//! durable commit.
//!
//! Callers send [`Mutation`]s over a channel. The writer task takes whatever is queued (up to
//! `max_batch`; it yields to the scheduler a few times while more callers keep arriving, but
//! never sleeps to fill a batch), and commits the batch with a constant number of statements:
//! a read of the idempotency records and of the current rows (locked on PostgreSQL), then
//! multi-row writes of the new current rows, the version snapshots, the outbox sequence
//! counter, the outbox events and the idempotency records. Validation, conflict checks and
//! diffs run in memory between the read and the writes, so a mutation that fails (conflict,
//! schema violation) never touches the database and does not fail its neighbours.
//!
//! On SQLite each statement is a round trip to the connection's thread, so the statements are
//! merged: one read (current rows and the outbox counter, or only versions when the read
//! cache holds the rows) and one write (a padded multi-statement text) per 256 mutations.
//!
//! **Outbox order invariant:** on PostgreSQL the sequence counter row is updated as the last
//! step before commit; its row lock is held until commit, so the next transaction gets its
//! numbers only after this one is visible: sequence order is commit order, and a reader that
//! follows `seq > cursor` can never skip an event that commits late. On SQLite `BEGIN
//! IMMEDIATE` makes every write transaction exclusive from its first statement, so the counter
//! read at the start of the batch cannot change before it commits.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bver_contracts::{BverError, ErrorCode, Phase};
use serde_json::Value;
use sqlx::Row;
use tokio::sync::{mpsc, oneshot, watch};

use super::cache::ReadCache;
use super::pipeline::{InFlight, Queues};
use super::sql::{self, Arg, Dialect, Statements, Stmt, chunks, i64_of, query_args};
use super::types::{Change, ChangeType, Committed, Current, Mutation, RefKey, TriggerEvent};
use super::{Backend, WriteCounters, storage_error};

/// A mutation waiting for the writer, with the channel its answer goes back on.
pub(crate) struct WriteReq {
    pub(crate) mutation: Mutation,
    pub(crate) reply: oneshot::Sender<Result<Committed, BverError>>,
}

pub(crate) struct Writer {
    pub(crate) backend: Backend,
    pub(crate) epoch: String,
    pub(crate) cache: Option<Arc<ReadCache>>,
    pub(crate) max_batch: usize,
    pub(crate) last_seq: watch::Sender<u64>,
    /// The multi-row statements for this backend, built once.
    pub(crate) statements: Statements,
    /// SQLite: the states of this writer's commits that still wait for their fsync (with the
    /// batch number), which the read cache learns only after it. Newer than the cache.
    pub(crate) recent: HashMap<RefKey, (u64, Arc<Current>)>,
    /// The number of the last batch committed, and of the last one made durable.
    pub(crate) batch_no: u64,
    pub(crate) synced: Arc<AtomicU64>,
    /// SQLite's `data_version` of the write connection when its last batch began
    /// ([`UNKNOWN_DATA_VERSION`] after a failed batch). If a batch finds it unchanged, no
    /// other connection has committed since, so what the writer knows is the database's
    /// state (see [`Known::check_data_version`]).
    pub(crate) data_version: AtomicI64,
    /// Entries of `recent` from batches numbered below this are not trusted: another
    /// connection committed after them.
    pub(crate) trusted_from: AtomicU64,
    /// SQLite: the outbox counter after the writer's last commit, when it knows it (the
    /// assumption a pipelined batch is planned on, see [`super::pipeline`]).
    pub(crate) counter: Option<i64>,
    /// SQLite: the states planned by the batch in flight and the next one, newer than
    /// anything the writer has committed.
    pub(crate) overlay: HashMap<RefKey, Arc<Current>>,
    /// The texts of pipelined statements by shape.
    pub(crate) shapes: HashMap<(usize, Vec<usize>), Arc<str>>,
    pub(crate) counters: Arc<WriteCounters>,
    /// Requests the writer has received, and those answered: the difference is how many
    /// callers wait on the writer (see `Writer::batch_cap`).
    pub(crate) received: u64,
    pub(crate) answered: Arc<AtomicU64>,
}

/// The writer's view of current states: its own commits still waiting for their fsync
/// (`Writer::recent`, those it still trusts), then the read cache.
pub(crate) struct Known<'a> {
    pub(crate) writer: &'a Writer,
    pub(crate) cache: &'a ReadCache,
}

impl Known<'_> {
    pub(crate) fn get(&self, key: &RefKey) -> Option<Arc<Current>> {
        match self.writer.recent.get(key) {
            Some((no, c)) if *no >= self.writer.trusted_from.load(Ordering::Relaxed) => {
                Some(Arc::clone(c))
            }
            _ => self.cache.get(key),
        }
    }

    /// Record the write connection's `data_version` for this batch; returns whether it is
    /// the one the previous batch saw. If not, another connection committed in between:
    /// nothing known so far can be trusted, so the cache is emptied and `recent` distrusted.
    fn check_data_version(&self, data_version: i64) -> bool {
        let unchanged = self
            .writer
            .data_version
            .swap(data_version, Ordering::Relaxed)
            == data_version;
        if !unchanged {
            self.writer
                .trusted_from
                .store(self.writer.batch_no + 1, Ordering::Relaxed);
            self.cache.clear();
        }
        unchanged
    }
}

/// No batch has read `data_version` yet, or the last one failed.
pub(crate) const UNKNOWN_DATA_VERSION: i64 = i64::MIN;

/// SQLite: the outbox counter, and whether another connection (another process) committed
/// since this connection's last transaction.
const READ_HEAD: &str = "SELECT (SELECT value FROM bver_outbox_seq WHERE id = 1), \
     (SELECT data_version FROM pragma_data_version())";

/// Move the outbox head watch up to `seq` (never back), waking its followers if it moved.
pub(crate) fn advance_head(head: &watch::Sender<u64>, seq: u64) {
    head.send_if_modified(|v| {
        let moved = seq > *v;
        *v = (*v).max(seq);
        moved
    });
}

/// Callers waiting for the answer of one batch.
pub(crate) type Replies = Vec<(
    oneshot::Sender<Result<Committed, BverError>>,
    Result<Committed, BverError>,
)>;

/// After a commit is durable: the read cache learns the new states, the outbox head moves, and
/// the callers are answered, in that order (a caller that reads right after its answer sees
/// its own write).
fn finish(
    cache: Option<(&ReadCache, u64)>,
    head: &watch::Sender<u64>,
    states: Vec<Arc<Current>>,
    last_seq: Option<u64>,
    replies: Replies,
    answered: &AtomicU64,
) {
    answered.fetch_add(replies.len() as u64, Ordering::Relaxed);
    if let Some((cache, clears)) = cache {
        cache.committed(clears, states);
    }
    if let Some(seq) = last_seq {
        // Federation appends events too (`Store::apply_remote`): never move back.
        advance_head(head, seq);
    }
    for (reply, result) in replies {
        let _ = reply.send(result);
    }
}

/// How many scheduler yields the writer waits for more callers while each one brings more.
const LINGER_YIELDS: usize = 4;

/// How many times a batch is retried after a transient database failure (deadlock,
/// serialisation failure, a concurrent process inserting the same version).
const MAX_ATTEMPTS: usize = 8;

impl Writer {
    /// The writer's loop. Requests that can be planned from memory (SQLite, see
    /// [`super::pipeline`]) are planned as they arrive, into the batch after the one whose
    /// statement is running; the others wait for the full path ([`Self::commit_batch`]),
    /// which runs when nothing is in flight.
    pub(crate) async fn run(mut self, mut rx: mpsc::Receiver<WriteReq>) {
        let mut q = Queues::default();
        let mut in_flight: Option<InFlight> = None;
        let mut open = true;
        loop {
            if let Some(running) = in_flight.as_mut() {
                let room = q.len() < self.max_batch;
                tokio::select! {
                    biased;
                    outcome = &mut running.execution => {
                        if let Some(done) = in_flight.take() {
                            self.complete(done, outcome, &mut q);
                        }
                    }
                    req = rx.recv(), if open && room => match req {
                        Some(req) => self.admit(req, &mut q),
                        None => open = false,
                    },
                }
                continue;
            }
            // Nothing in flight: take what is queued, then run the next batch.
            self.release_held(&mut q);
            self.drain(&mut rx, &mut q);
            if q.is_empty() {
                if !open {
                    break;
                }
                // Idle: everything planned is committed and known to `recent` or the cache.
                self.overlay.clear();
                match rx.recv().await {
                    Some(req) => self.admit(req, &mut q),
                    None => {
                        open = false;
                        continue;
                    }
                }
                self.drain(&mut rx, &mut q);
            }
            // Full path: callers answered by the previous commit are typically still on their
            // way back with their next write: yield to the scheduler (no timer, microseconds)
            // while each pass brings more, so that one wave of callers is one batch rather
            // than two (each batch pays a commit; on PostgreSQL its fsync). A pipelined batch
            // goes at once: whoever arrives while it runs is planned into the next one.
            for _ in 0..LINGER_YIELDS {
                if q.len() >= self.max_batch || !q.next.is_empty() {
                    break;
                }
                tokio::task::yield_now().await;
                if self.drain(&mut rx, &mut q) == 0 {
                    break;
                }
            }
            // Between two transactions: start the WAL over if the checkpointer asked.
            if let Backend::Sqlite {
                write, wal_restart, ..
            } = &self.backend
            {
                wal_restart.run_if_requested(write).await;
            }
            if !q.next.is_empty() {
                let next = std::mem::take(&mut q.next);
                in_flight = self.submit(next, &mut q);
                // Plan what waited for room while this batch runs.
                self.release_held(&mut q);
            } else if !q.slow.is_empty() {
                self.overlay.clear();
                let mut batch = std::mem::take(&mut q.slow);
                self.commit_batch(&mut batch).await;
            }
        }
    }

    /// Admit queued requests (up to `max_batch` waiting); returns how many.
    fn drain(&mut self, rx: &mut mpsc::Receiver<WriteReq>, q: &mut Queues) -> usize {
        let mut n = 0;
        while q.len() < self.max_batch {
            match rx.try_recv() {
                Ok(req) => {
                    self.admit(req, q);
                    n += 1;
                }
                Err(_) => break,
            }
        }
        n
    }

    /// Forget the unsynced states of batches that have become durable (the cache has them).
    pub(crate) fn prune_recent(&mut self) {
        if !self.recent.is_empty() {
            let synced = self.synced.load(Ordering::Acquire);
            self.recent.retain(|_, (no, _)| *no > synced);
        }
    }

    /// Stop trusting what the writer knows of the database: the next full batch reads it again
    /// and empties the read cache.
    pub(crate) fn distrust(&self) {
        self.data_version
            .store(UNKNOWN_DATA_VERSION, Ordering::Relaxed);
    }

    /// A batch committed: answer its callers with `replies` once the commit is durable (on
    /// SQLite after the WAL's fsync, shared with the batches committed meanwhile, while the
    /// next batch runs), after the read cache has learnt `states`.
    pub(crate) fn committed(
        &mut self,
        replies: Replies,
        states: Vec<Arc<Current>>,
        last_seq: Option<u64>,
    ) {
        match &self.backend {
            Backend::Sqlite { wal, .. } => {
                self.batch_no += 1;
                let no = self.batch_no;
                for state in &states {
                    self.recent
                        .insert(state.key.clone(), (no, Arc::clone(state)));
                }
                let cache = self.cache.clone();
                // If the cache is emptied before this batch is durable (another connection
                // wrote after it), its states must not go back in (see `ReadCache::committed`).
                let clears = cache.as_deref().map_or(0, ReadCache::clears);
                let head = self.last_seq.clone();
                let synced = Arc::clone(&self.synced);
                let answered = Arc::clone(&self.answered);
                wal.after_sync(move |synced_ok| {
                    let replies = match synced_ok {
                        Ok(()) => replies,
                        Err(e) => {
                            let err = unsynced_error(&e);
                            replies
                                .into_iter()
                                .map(|(r, _)| (r, Err(err.clone())))
                                .collect()
                        }
                    };
                    finish(
                        cache.as_deref().map(|c| (c, clears)),
                        &head,
                        states,
                        last_seq,
                        replies,
                        &answered,
                    );
                    synced.store(no, Ordering::Release);
                });
            }
            Backend::Postgres { .. } => finish(
                self.cache.as_deref().map(|c| (c, c.clears())),
                &self.last_seq,
                states,
                last_seq,
                replies,
                &self.answered,
            ),
        }
    }

    async fn commit_batch(&mut self, batch: &mut Vec<WriteReq>) {
        self.prune_recent();
        let mutations: Vec<&Mutation> = batch.iter().map(|r| &r.mutation).collect();
        let mut attempt = 0;
        let outcome = loop {
            attempt += 1;
            match self.try_commit(&mutations).await {
                Ok(outcome) => break Ok(outcome),
                Err(e) if attempt < MAX_ATTEMPTS && is_transient(&e) => {
                    tracing::debug!(attempt, error = %e, "retrying write batch after a transient failure");
                    let backoff = 2u64.pow(attempt as u32).min(200);
                    tokio::time::sleep(std::time::Duration::from_millis(rand::random_range(
                        0..=backoff,
                    )))
                    .await;
                }
                Err(e) => break Err(e),
            }
        };
        match outcome {
            Ok(BatchOutcome {
                results,
                states,
                last_seq,
                counter,
            }) => {
                self.counter = counter;
                self.counters.full_batches.fetch_add(1, Ordering::Relaxed);
                let replies: Replies = batch.drain(..).map(|r| r.reply).zip(results).collect();
                self.committed(replies, states, last_seq);
            }
            Err(e) => {
                self.counter = None;
                tracing::error!(error = %e, size = batch.len(), "write batch failed");
                let err = storage_error(&e);
                self.answered
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                for req in batch.drain(..) {
                    let _ = req.reply.send(Err(err.clone()));
                }
            }
        }
    }

    async fn try_commit(&self, mutations: &[&Mutation]) -> Result<BatchOutcome, sqlx::Error> {
        let known = self.cache.as_deref().map(|cache| Known {
            writer: self,
            cache,
        });
        let known = known.as_ref();
        let result = match &self.backend {
            Backend::Sqlite { write, .. } => {
                async {
                    let mut tx = write.begin_with("BEGIN IMMEDIATE").await?;
                    let out = commit_in!(
                        tx,
                        sqlx::sqlite::SqliteArguments,
                        &self.statements,
                        known,
                        &self.epoch,
                        mutations
                    );
                    tx.commit().await?;
                    Ok(out)
                }
                .await
            }
            Backend::Postgres { pool } => {
                async {
                    let mut tx = pool.begin().await?;
                    let out = commit_in!(
                        tx,
                        sqlx::postgres::PgArguments,
                        &self.statements,
                        known,
                        &self.epoch,
                        mutations
                    );
                    tx.commit().await?;
                    Ok(out)
                }
                .await
            }
        };
        if result.is_err() {
            // Whatever this batch did is rolled back or unknown: check versions again.
            self.distrust();
        }
        result
    }
}

struct BatchOutcome {
    results: Vec<Result<Committed, BverError>>,
    states: Vec<Arc<Current>>,
    last_seq: Option<u64>,
    /// SQLite: the outbox counter when the batch committed.
    counter: Option<i64>,
}

/// The answer to callers whose commit is in the database but whose fsync failed: the write
/// may or may not survive a power loss, and repeating it would apply it twice.
pub(crate) fn unsynced_error(e: &std::io::Error) -> BverError {
    BverError::new(
        ErrorCode::StorageError,
        Phase::Storage,
        "the write was committed but the fsync that makes it durable failed; check the storage before repeating it",
    )
    .with_details(serde_json::json!({ "reason": e.to_string() }))
}

pub(crate) fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // PostgreSQL: deadlock, serialisation failure, unique violation (a concurrent process
            // inserted the same version: re-reading shows the conflict properly).
            // SQLite: SQLITE_BUSY (5), SQLITE_LOCKED (6) and their extended codes, and a
            // version that exists already (PRIMARY KEY 1555, UNIQUE 2067): the writer planned
            // on a state another connection had replaced; the retry reads it again.
            matches!(code.as_ref(), "40P01" | "40001" | "23505" | "1555" | "2067")
                || code
                    .parse::<i32>()
                    .map(|c| c & 0xff == 5 || c & 0xff == 6)
                    .unwrap_or(false)
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) => true,
        _ => false,
    }
}

/// A JSON value as text (a `Value` always serialises).
fn json_text(v: &Value) -> Arc<str> {
    serde_json::to_string(v).unwrap_or_default().into()
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A version planned in memory, not yet written.
pub(crate) struct Planned {
    pub(crate) index: usize,
    pub(crate) committed: Committed,
    /// `committed.value` and `committed.diff` as JSON text, serialised once for every
    /// statement that stores them.
    value_text: Arc<str>,
    diff_text: Arc<str>,
    /// The texts of its rows, shared with the other rows of the batch.
    pub(crate) texts: RowTexts,
    idempotency: Option<(String, String)>,
    /// Named triggers the mutation fires (each one more outbox event after the built-in one).
    pub(crate) fired: Vec<String>,
}

/// The text columns of one mutation's rows. Each distinct text is allocated once per batch
/// and bound by reference count (SQLite binds an `Arc<str>` without a copy), instead of one
/// `String` per column per row.
#[derive(Clone)]
pub(crate) struct RowTexts {
    namespace: Arc<str>,
    repo: Arc<str>,
    id: Arc<str>,
    change: Arc<str>,
    trigger: Arc<str>,
    principal: Arc<str>,
    operation: Arc<str>,
    request_id: Arc<str>,
}

/// The distinct texts of one batch.
#[derive(Default)]
struct Texts(HashSet<Arc<str>>);

impl Texts {
    fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(t) = self.0.get(s) {
            return Arc::clone(t);
        }
        let t: Arc<str> = Arc::from(s);
        self.0.insert(Arc::clone(&t));
        t
    }

    fn row(&mut self, m: &Mutation, change: ChangeType) -> RowTexts {
        let trigger = format!("refs.{}.{}", m.key.repo, change.as_str());
        RowTexts {
            namespace: self.get(&m.key.namespace),
            repo: self.get(&m.key.repo),
            // Unique per key: not worth a lookup.
            id: Arc::from(m.key.id.as_str()),
            change: self.get(change.as_str()),
            trigger: self.get(&trigger),
            principal: self.get(&m.provenance.principal),
            operation: self.get(&m.provenance.operation),
            request_id: Arc::from(m.provenance.request_id.as_str()),
        }
    }
}

/// Compute the batch in memory: for each mutation, its new state or its error.
/// `current` holds the state of every key touched (updated as the batch proceeds).
pub(crate) fn plan(
    mutations: &[&Mutation],
    current: &mut HashMap<RefKey, Arc<Current>>,
    snapshots: &HashMap<(RefKey, u64), (Option<String>, Value, bool)>,
    idem: &mut HashMap<(String, String), (String, Committed)>,
    now: i64,
) -> (Vec<Option<Result<Committed, BverError>>>, Vec<Planned>) {
    let mut results: Vec<Option<Result<Committed, BverError>>> =
        Vec::with_capacity(mutations.len());
    let mut planned = Vec::with_capacity(mutations.len());
    // Versions planned in this batch, for a restore of a version made earlier in the batch
    // (kept only when the batch has a restore: it costs a copy of every value).
    let restores = mutations
        .iter()
        .any(|m| matches!(m.change, Change::Restore { .. }));
    let mut fresh: HashMap<(RefKey, u64), (Option<String>, Value, bool)> = HashMap::new();
    let mut texts = Texts::default();
    for (index, m) in mutations.iter().enumerate() {
        if let Some(i) = &m.idempotency {
            let k = (m.provenance.principal.clone(), i.key.clone());
            if let Some((fingerprint, stored)) = idem.get(&k) {
                results.push(Some(if *fingerprint == i.fingerprint {
                    let mut replay = stored.clone();
                    replay.replayed = true;
                    Ok(replay)
                } else {
                    Err(BverError::new(
                        ErrorCode::IdempotencyMismatch,
                        Phase::InputValidation,
                        format!(
                            "idempotency key {:?} was already used with a different request",
                            i.key
                        ),
                    )
                    .with_details(serde_json::json!({ "idempotency_key": i.key }))
                    .with_ref(m.key.to_string()))
                }));
                continue;
            }
        }
        let cur = current.get(&m.key).map(|c| &**c);
        match apply(m, cur, snapshots, &fresh, now) {
            Err(e) => results.push(Some(Err(e))),
            Ok(next) => {
                let old_value = cur.map(|c| &c.value).unwrap_or(&Value::Null);
                let diff = serde_json::to_value(json_patch::diff(old_value, &next.value))
                    .unwrap_or(Value::Array(Vec::new()));
                let value_text: Arc<str> = json_text(&next.value);
                let diff_text: Arc<str> = json_text(&diff);
                let committed_change = next.change;
                let committed = Committed {
                    key: m.key.clone(),
                    version: next.version,
                    kind: next.kind.clone(),
                    value: next.value.clone(),
                    deleted: next.deleted,
                    change: next.change,
                    diff,
                    seq: 0,
                    at: now,
                    replayed: false,
                };
                if restores {
                    fresh.insert(
                        (m.key.clone(), next.version),
                        (next.kind.clone(), next.value.clone(), next.deleted),
                    );
                }
                let fired = m.triggers.as_ref().map_or_else(Vec::new, |hook| {
                    hook(&TriggerEvent {
                        key: &m.key,
                        change: next.change,
                        old_kind: cur.and_then(|c| c.kind.as_deref()),
                        old: old_value,
                        kind: committed.kind.as_deref(),
                        new: &committed.value,
                        diff: &committed.diff,
                        principal: &m.provenance.principal,
                    })
                });
                let created_at = cur.map(|c| c.created_at).unwrap_or(now);
                current.insert(
                    m.key.clone(),
                    Arc::new(Current {
                        key: m.key.clone(),
                        kind: next.kind,
                        value: next.value,
                        version: next.version,
                        deleted: next.deleted,
                        created_at,
                        updated_at: now,
                    }),
                );
                let idempotency = m
                    .idempotency
                    .as_ref()
                    .map(|i| (i.key.clone(), i.fingerprint.clone()));
                if let Some((key, fingerprint)) = &idempotency {
                    idem.insert(
                        (m.provenance.principal.clone(), key.clone()),
                        (fingerprint.clone(), committed.clone()),
                    );
                }
                results.push(None);
                planned.push(Planned {
                    index,
                    committed,
                    value_text,
                    diff_text,
                    texts: texts.row(m, committed_change),
                    idempotency,
                    fired,
                });
            }
        }
    }
    (results, planned)
}

struct Next {
    kind: Option<String>,
    value: Value,
    deleted: bool,
    version: u64,
    change: ChangeType,
}

fn conflict(m: &Mutation, code: ErrorCode, message: String, details: Value) -> BverError {
    BverError::new(code, Phase::Execution, message)
        .with_details(details)
        .with_ref(m.key.to_string())
}

/// Apply one mutation to the current state, in memory.
fn apply(
    m: &Mutation,
    cur: Option<&Current>,
    snapshots: &HashMap<(RefKey, u64), (Option<String>, Value, bool)>,
    fresh: &HashMap<(RefKey, u64), (Option<String>, Value, bool)>,
    _now: i64,
) -> Result<Next, BverError> {
    let current_version = cur.map(|c| c.version).unwrap_or(0);
    if let Some(expected) = m.expected_version
        && expected != current_version
    {
        return Err(conflict(
            m,
            ErrorCode::VersionConflict,
            format!(
                "expected version {expected} of {}, but the current version is {current_version}",
                m.key
            ),
            serde_json::json!({ "expected_version": expected, "current_version": current_version }),
        ));
    }
    let live = cur.filter(|c| !c.deleted);
    let not_found = || {
        let mut e = BverError::new(
            ErrorCode::NotFound,
            Phase::Execution,
            format!("{} does not exist", m.key),
        )
        .with_ref(m.key.to_string());
        if let Some(c) = cur {
            e = e.with_details(serde_json::json!({ "deleted": true, "version": c.version,
                "hint": "the reference was deleted; restore an earlier version to bring it back" }));
        }
        e
    };
    let version = current_version + 1;
    let (kind, value, deleted, change) = match &m.change {
        Change::Create { kind, value } => {
            if let Some(c) = cur {
                let hint = if c.deleted {
                    "the reference was deleted; restore an earlier version instead of creating it again"
                } else {
                    "use patch or replace to change an existing reference"
                };
                return Err(conflict(
                    m,
                    ErrorCode::AlreadyExists,
                    format!("{} already exists", m.key),
                    serde_json::json!({ "current_version": c.version, "deleted": c.deleted, "hint": hint }),
                ));
            }
            (kind.clone(), value.clone(), false, ChangeType::Created)
        }
        Change::Replace { value } => {
            let c = live.ok_or_else(not_found)?;
            (c.kind.clone(), value.clone(), false, ChangeType::Updated)
        }
        Change::MergePatch(patch) => {
            let c = live.ok_or_else(not_found)?;
            let mut value = c.value.clone();
            json_patch::merge(&mut value, patch);
            (c.kind.clone(), value, false, ChangeType::Updated)
        }
        Change::JsonPatch(patch) => {
            let c = live.ok_or_else(not_found)?;
            let mut value = c.value.clone();
            json_patch::patch(&mut value, patch).map_err(|e| {
                BverError::new(
                    ErrorCode::MalformedRequest,
                    Phase::InputValidation,
                    format!("the JSON Patch does not apply to {}: {e}", m.key),
                )
                .with_details(serde_json::json!({ "reason": e.to_string() }))
                .with_ref(m.key.to_string())
            })?;
            (c.kind.clone(), value, false, ChangeType::Updated)
        }
        Change::ChangeKind { kind, value } => {
            let c = live.ok_or_else(not_found)?;
            let value = value.clone().unwrap_or_else(|| c.value.clone());
            (kind.clone(), value, false, ChangeType::KindChanged)
        }
        Change::Delete => {
            live.ok_or_else(not_found)?;
            (
                cur.and_then(|c| c.kind.clone()),
                Value::Null,
                true,
                ChangeType::Deleted,
            )
        }
        Change::Restore { version: target } => {
            if cur.is_none() {
                return Err(not_found());
            }
            let k = (m.key.clone(), *target);
            let (kind, value, was_deleted) = fresh
                .get(&k)
                .or_else(|| snapshots.get(&k))
                .cloned()
                .ok_or_else(|| {
                BverError::new(
                    ErrorCode::NotFound,
                    Phase::Execution,
                    format!(
                        "{} has no version {target} (latest is {current_version})",
                        m.key
                    ),
                )
                .with_details(
                    serde_json::json!({ "version": target, "current_version": current_version }),
                )
                .with_ref(m.key.to_string())
            })?;
            if was_deleted {
                return Err(conflict(
                    m,
                    ErrorCode::NotFound,
                    format!(
                        "version {target} of {} is a deletion and cannot be restored",
                        m.key
                    ),
                    serde_json::json!({ "version": target }),
                ));
            }
            (kind, value, false, ChangeType::Restored)
        }
    };
    if !deleted && let Some(validate) = &m.validator {
        validate(kind.as_deref(), &value).map_err(|e| e.with_ref(m.key.to_string()))?;
    }
    Ok(Next {
        kind,
        value,
        deleted,
        version,
        change,
    })
}

/// The reference rows a batch changes: for each key created, deleted, restored or given
/// another kind in `planned`, its final state in `current` and the row texts of its last
/// version. A patch or a replace only adds a version (the current value is the newest
/// version's).
pub(crate) fn lifecycle_rows<'c>(
    planned: &[Planned],
    current: &'c HashMap<RefKey, Arc<Current>>,
) -> Vec<(&'c Current, RowTexts)> {
    let lifecycle: HashSet<&RefKey> = planned
        .iter()
        .filter(|p| p.committed.change != ChangeType::Updated)
        .map(|p| &p.committed.key)
        .collect();
    let mut seen = HashSet::with_capacity(lifecycle.len());
    planned
        .iter()
        .rev()
        .filter(|p| lifecycle.contains(&p.committed.key) && seen.insert(&p.committed.key))
        .filter_map(|p| {
            current
                .get(&p.committed.key)
                .map(|c| (&**c, p.texts.clone()))
        })
        .collect()
}

/// The bind arguments of one reference row ([`sql::REF_COLUMNS`]).
pub(crate) fn ref_args(c: &Current, t: &RowTexts) -> [Arg; sql::REF_COLUMN_COUNT] {
    [
        Arg::Shared(Arc::clone(&t.namespace)),
        Arg::Shared(Arc::clone(&t.repo)),
        Arg::Shared(Arc::clone(&t.id)),
        Arg::OptText(c.kind.clone()),
        Arg::Bool(c.deleted),
        Arg::Int(c.created_at),
    ]
}

/// The bind arguments of one version row ([`sql::VERSION_COLUMNS`]).
pub(crate) fn version_args(p: &Planned) -> [Arg; 14] {
    let (c, t) = (&p.committed, &p.texts);
    [
        Arg::Shared(Arc::clone(&t.namespace)),
        Arg::Shared(Arc::clone(&t.repo)),
        Arg::Shared(Arc::clone(&t.id)),
        Arg::Int(i64_of(c.version)),
        Arg::OptText(c.kind.clone()),
        Arg::Shared(Arc::clone(&p.value_text)),
        Arg::Bool(c.deleted),
        Arg::Shared(Arc::clone(&t.change)),
        Arg::Shared(Arc::clone(&p.diff_text)),
        Arg::Shared(Arc::clone(&t.principal)),
        Arg::Shared(Arc::clone(&t.operation)),
        Arg::Shared(Arc::clone(&t.request_id)),
        Arg::OptText(p.idempotency.as_ref().map(|(k, _)| k.clone())),
        Arg::Int(c.at),
    ]
}

/// The bind arguments of one outbox event ([`sql::EVENT_COLUMNS`]).
pub(crate) fn event_args(p: &Planned, epoch: &Arc<str>) -> [Arg; 14] {
    let (c, t) = (&p.committed, &p.texts);
    [
        Arg::Int(i64_of(c.seq)),
        Arg::Shared(Arc::clone(epoch)),
        Arg::Shared(Arc::clone(&t.trigger)),
        Arg::Shared(Arc::clone(&t.namespace)),
        Arg::Shared(Arc::clone(&t.repo)),
        Arg::Shared(Arc::clone(&t.id)),
        Arg::Int(i64_of(c.version)),
        Arg::OptText(c.kind.clone()),
        Arg::Shared(Arc::clone(&t.change)),
        Arg::Shared(Arc::clone(&p.diff_text)),
        Arg::Shared(Arc::clone(&t.principal)),
        Arg::Shared(Arc::clone(&t.operation)),
        Arg::Shared(Arc::clone(&t.request_id)),
        Arg::Int(c.at),
    ]
}

/// The outbox events of the named triggers the batch fires, numbered from `first`, in the
/// order of their mutations.
pub(crate) fn firing_args(planned: &[Planned], epoch: &Arc<str>, first: i64) -> Vec<Arg> {
    let mut seq = first;
    let fired = planned.iter().map(|p| p.fired.len()).sum::<usize>();
    let mut out = Vec::with_capacity(fired * 14);
    for p in planned {
        for name in &p.fired {
            let mut args = event_args(p, epoch);
            args[0] = Arg::Int(seq);
            // Shared, so that the chunks bound from this list are copied by reference count.
            args[2] = Arg::Shared(Arc::from(name.as_str()));
            out.extend(args);
            seq += 1;
        }
    }
    out
}

/// `n` NULL arguments: the padding rows of a padded statement.
pub(crate) fn nulls(n: usize) -> impl Iterator<Item = Arg> {
    std::iter::repeat_n(Arg::OptText(None), n)
}

/// Run one batch inside the open transaction `$tx`. Written once as a macro so that the same
/// code is type-checked against each backend's connection type.
///
/// The statements differ by backend. On SQLite every statement is a round trip to the
/// connection's own thread, so a batch takes four whatever its size (`BEGIN IMMEDIATE`, one
/// read, one write, `COMMIT`), with statements padded to a few shapes (see [`Stmt`]). On
/// PostgreSQL it takes one statement per table and chunk, and the outbox counter is taken last.
macro_rules! commit_in {
    ($tx:ident, $args_ty:ty, $stmts:expr, $cache:expr, $epoch:expr, $mutations:expr) => {{
        let stmts: &Statements = $stmts;
        let cache: Option<&Known<'_>> = $cache;
        let sqlite = stmts.dialect() == Dialect::Sqlite;
        let mutations: &[&Mutation] = $mutations;
        let now = now_ms();

        // 1. Idempotency records already stored for the keys in this batch.
        let mut idem: HashMap<(String, String), (String, Committed)> = HashMap::new();
        let idem_keys: Vec<(String, String)> = mutations
            .iter()
            .filter_map(|m| m.idempotency.as_ref().map(|i| (m.provenance.principal.clone(), i.key.clone())))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let mut offset = 0;
        for size in chunks(idem_keys.len()) {
            let part = &idem_keys[offset..offset + size];
            offset += size;
            let args = part.iter().flat_map(|(p, k)| [Arg::Text(p.clone()), Arg::Text(k.clone())]);
            let rows = query_args!($args_ty, stmts.get(Stmt::ReadIdempotency, size), args).fetch_all(&mut *$tx).await?;
            for row in rows {
                let response: String = row.try_get("response")?;
                let committed: Committed =
                    serde_json::from_str(&response).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
                idem.insert((row.try_get("principal")?, row.try_get("key")?), (row.try_get("fingerprint")?, committed));
            }
        }

        // 2. The current rows of every key touched (locked on PostgreSQL; on SQLite the whole
        // database is, by BEGIN IMMEDIATE, so the same read also takes the outbox counter).
        let keys: Vec<&RefKey> = {
            let mut seen = HashSet::with_capacity(mutations.len());
            mutations.iter().map(|m| &m.key).filter(|k| seen.insert(*k)).collect()
        };
        let mut current: HashMap<RefKey, Arc<Current>> = HashMap::with_capacity(keys.len());
        // Keys whose state was taken from the cache, with its version: unless the batch changes
        // them, the cache need not learn them again. (By version, not by address: an address
        // may be reused once the cache has dropped its copy.)
        let mut from_cache: HashMap<RefKey, u64> = HashMap::new();
        let mut sqlite_counter: Option<i64> = None;
        let key_args = |k: &RefKey| [Arg::Text(k.namespace.clone()), Arg::Text(k.repo.clone()), Arg::Text(k.id.clone())];
        if sqlite {
            // With a cache, read only the versions: a cached state of the same version is the
            // stored one (a version is never rewritten), so only misses need the whole row.
            let mut misses: Vec<&RefKey> = Vec::new();
            let to_read: &[&RefKey] = match cache {
                None => &keys,
                Some(cache) => {
                    let head = sqlx::query(READ_HEAD).fetch_one(&mut *$tx).await?;
                    sqlite_counter = Some(head.try_get(0)?);
                    let data_version: i64 = head.try_get(1)?;
                    let unchanged = cache.check_data_version(data_version);
                    // No other connection committed since this writer's last batch: what this
                    // writer knows is what the database holds; only keys it does not know (new,
                    // or evicted from the cache) are read.
                    let keys_to_check: &[&RefKey] = if unchanged { &[] } else { &keys };
                    if unchanged {
                        for key in &keys {
                            match cache.get(key) {
                                Some(c) => {
                                    from_cache.insert((*key).clone(), c.version);
                                    current.insert((*key).clone(), c);
                                }
                                None => misses.push(*key),
                            }
                        }
                    }
                    let keys = keys_to_check;
                    let mut offset = 0;
                    for (rows, size) in sql::padded_chunks(keys.len()) {
                        let start = offset;
                        let part = &keys[start..start + rows];
                        offset += rows;
                        let args = part
                            .iter()
                            .enumerate()
                            .flat_map(|(i, k)| key_args(k).into_iter().chain([Arg::Int((start + i) as i64)]))
                            .chain(nulls((size - rows) * 4));
                        let row = query_args!($args_ty, stmts.get(Stmt::ReadVersions, size), args)
                            .fetch_one(&mut *$tx)
                            .await?;
                        sqlite_counter = Some(row.try_get(0)?);
                        let text: String = row.try_get(1)?;
                        let found: Vec<(usize, i64)> =
                            serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
                        for (i, version) in found {
                            let key = keys.get(i).ok_or_else(|| sqlx::Error::Decode("version row out of range".into()))?;
                            match cache.get(key) {
                                Some(c) if i64_of(c.version) == version => {
                                    from_cache.insert((*key).clone(), c.version);
                                    current.insert((*key).clone(), c);
                                }
                                _ => misses.push(key),
                            }
                        }
                    }
                    &misses
                }
            };
            let mut offset = 0;
            for (rows, size) in sql::padded_chunks(to_read.len()) {
                let part = &to_read[offset..offset + rows];
                offset += rows;
                let args = part.iter().flat_map(|k| key_args(k)).chain(nulls((size - rows) * 3));
                let row = query_args!($args_ty, stmts.get(Stmt::ReadCurrent, size), args)
                    .fetch_one(&mut *$tx)
                    .await?;
                sqlite_counter = Some(row.try_get(0)?);
                let text: String = row.try_get(1)?;
                for c in sql::currents_of_json(&text)? {
                    current.insert(c.key.clone(), Arc::new(c));
                }
            }
        } else {
            let mut offset = 0;
            for size in chunks(keys.len()) {
                let part = &keys[offset..offset + size];
                offset += size;
                let args = part.iter().flat_map(|k| key_args(k));
                query_args!($args_ty, stmts.get(Stmt::LockRefs, size), part.iter().flat_map(|k| key_args(k))).execute(&mut *$tx).await?;
                for row in query_args!($args_ty, stmts.get(Stmt::ReadCurrent, size), args).fetch_all(&mut *$tx).await? {
                    let c = sql::current_of(&row)?;
                    current.insert(c.key.clone(), Arc::new(c));
                }
            }
        }

        // 3. Snapshots that restores ask for.
        let mut snapshots = HashMap::new();
        for m in mutations {
            if let Change::Restore { version } = m.change {
                let row = sqlx::query(
                    "SELECT kind, value, deleted FROM bver_versions WHERE namespace = $1 AND repo = $2 AND id = $3 AND version = $4",
                )
                .bind(&m.key.namespace)
                .bind(&m.key.repo)
                .bind(&m.key.id)
                .bind(i64_of(version))
                .fetch_optional(&mut *$tx)
                .await?;
                if let Some(row) = row {
                    let value: String = row.try_get("value")?;
                    let value: Value = serde_json::from_str(&value).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
                    snapshots.insert((m.key.clone(), version), (row.try_get("kind")?, value, row.try_get("deleted")?));
                }
            }
        }

        // 4. Plan in memory.
        let (mut results, mut planned) = plan(mutations, &mut current, &snapshots, &mut idem, now);

        let mut last_seq = None;
        if !planned.is_empty() {
            // The final state of each key whose row in `bver_refs` changes: created, deleted,
            // restored or given another kind in this batch. A patch or a replace only adds a
            // version (the current value is the newest version's).
            let changed = lifecycle_rows(&planned, &current);
            let epoch: Arc<str> = Arc::from($epoch.as_str());
            let n = planned.len() as i64;
            // Named trigger firings: one more event each, numbered after the built-in ones.
            let fired = planned.iter().map(|p| p.fired.len()).sum::<usize>();

            if sqlite {
                // 5. Sequence numbers from the counter read in step 2, then one statement per
                // 256 versions writes the current rows, the versions, the events and the
                // counter (the changed keys are never more than the versions, chunk by chunk).
                let first = sqlite_counter.ok_or(sqlx::Error::RowNotFound)? + 1;
                for (i, p) in planned.iter_mut().enumerate() {
                    p.committed.seq = (first + i as i64) as u64;
                }
                let (mut done, mut done_changed) = (0, 0);
                for (rows, size) in sql::padded_chunks(planned.len()) {
                    let part = &planned[done..done + rows];
                    done += rows;
                    let changed_rows = rows.min(changed.len() - done_changed);
                    let changed_part = &changed[done_changed..done_changed + changed_rows];
                    done_changed += changed_rows;
                    let args = changed_part
                        .iter()
                        .flat_map(|(c, t)| ref_args(c, t))
                        .chain(nulls((size - changed_rows) * sql::REF_COLUMN_COUNT))
                        .chain(part.iter().flat_map(version_args))
                        .chain(nulls((size - rows) * 14))
                        .chain(part.iter().flat_map(|p| event_args(p, &epoch)))
                        .chain(nulls((size - rows) * 14))
                        .chain([Arg::Int(first - 1 + done as i64)]);
                    query_args!($args_ty, stmts.get(Stmt::SqliteWrite, size), args).execute(&mut *$tx).await?;
                }
                last_seq = Some((first - 1 + n) as u64);
                if fired > 0 {
                    let args = firing_args(&planned, &epoch, first + n);
                    let mut offset = 0;
                    for size in chunks(fired) {
                        let part = &args[offset * 14..(offset + size) * 14];
                        offset += size;
                        query_args!($args_ty, stmts.get(Stmt::InsertEvents, size), part.iter().cloned())
                            .execute(&mut *$tx)
                            .await?;
                    }
                    let last = first - 1 + n + fired as i64;
                    sqlx::query("UPDATE bver_outbox_seq SET value = $1 WHERE id = 1").bind(last).execute(&mut *$tx).await?;
                    last_seq = Some(last as u64);
                }
            } else {
                // 5. Reference rows whose lifecycle changed.
                let mut offset = 0;
                for size in chunks(changed.len()) {
                    let part = &changed[offset..offset + size];
                    offset += size;
                    let args = part.iter().flat_map(|(c, t)| ref_args(c, t));
                    query_args!($args_ty, stmts.get(Stmt::UpsertCurrent, size), args).execute(&mut *$tx).await?;
                }

                // 6. Version snapshots with provenance.
                let mut offset = 0;
                for size in chunks(planned.len()) {
                    let part = &planned[offset..offset + size];
                    offset += size;
                    let args = part.iter().flat_map(version_args);
                    query_args!($args_ty, stmts.get(Stmt::InsertVersions, size), args).execute(&mut *$tx).await?;
                }

                // 7. Outbox sequence numbers: the counter row is taken last (see the module docs).
                let last: i64 = sqlx::query("UPDATE bver_outbox_seq SET value = value + $1 WHERE id = 1 RETURNING value")
                    .bind(n + fired as i64)
                    .fetch_one(&mut *$tx)
                    .await?
                    .try_get(0)?;
                let first = last - n - fired as i64 + 1;
                for (i, p) in planned.iter_mut().enumerate() {
                    p.committed.seq = (first + i as i64) as u64;
                }
                last_seq = Some(last as u64);

                // 8. Outbox events.
                let mut offset = 0;
                for size in chunks(planned.len()) {
                    let part = &planned[offset..offset + size];
                    offset += size;
                    let args = part.iter().flat_map(|p| event_args(p, &epoch));
                    query_args!($args_ty, stmts.get(Stmt::InsertEvents, size), args).execute(&mut *$tx).await?;
                }
                if fired > 0 {
                    let args = firing_args(&planned, &epoch, first + n);
                    let mut offset = 0;
                    for size in chunks(fired) {
                        let part = &args[offset * 14..(offset + size) * 14];
                        offset += size;
                        query_args!($args_ty, stmts.get(Stmt::InsertEvents, size), part.iter().cloned())
                            .execute(&mut *$tx)
                            .await?;
                    }
                }
            }

            // 9. Idempotency records (the stored answer includes the sequence number).
            let with_key: Vec<&Planned> = planned.iter().filter(|p| p.idempotency.is_some()).collect();
            let mut offset = 0;
            for size in chunks(with_key.len()) {
                let part = &with_key[offset..offset + size];
                offset += size;
                let mut args = Vec::with_capacity(size * 5);
                for p in part {
                    let (key, fingerprint) = p.idempotency.clone().unwrap_or_default();
                    let response = serde_json::to_string(&p.committed).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
                    args.extend([Arg::Shared(Arc::clone(&p.texts.principal)), Arg::Text(key), Arg::Text(fingerprint), Arg::Text(response), Arg::Int(now)]);
                }
                query_args!($args_ty, stmts.get(Stmt::InsertIdempotency, size), args).execute(&mut *$tx).await?;
            }
            // A key reused within the batch was answered before sequence numbers existed.
            if results.iter().flatten().flatten().any(|r| r.replayed && r.seq == 0) {
                let seqs: HashMap<(&RefKey, u64), u64> =
                    planned.iter().map(|p| ((&p.committed.key, p.committed.version), p.committed.seq)).collect();
                for r in results.iter_mut().flatten().flatten() {
                    if r.replayed && r.seq == 0 {
                        r.seq = seqs.get(&(&r.key, r.version)).copied().unwrap_or(0);
                    }
                }
            }
            for p in planned {
                results[p.index] = Some(Ok(p.committed));
            }
        }
        BatchOutcome {
            results: results.into_iter().map(|r| r.unwrap_or_else(|| Err(BverError::internal("write planned but not answered")))).collect(),
            // The cache learns the state of every key the batch read from the database or
            // changed: a conflict caused by another process's write also refreshes a stale entry.
            states: current
                .into_values()
                .filter(|c| from_cache.get(&c.key) != Some(&c.version))
                .collect(),
            counter: if sqlite { last_seq.map(|s| s as i64).or(sqlite_counter) } else { None },
            last_seq,
        }
    }};
}
use commit_in;
