//! SQLite: the writer's pipelined path. While one batch executes on the write connection's
//! thread, the writer plans the next one, request by request as they arrive; each batch is
//! then one round trip to that thread instead of four.
//!
//! How a batch can be planned before its transaction begins: the writer knows the outbox
//! counter after its own last commit, and every change to references and versions, by any
//! connection or process, appends outbox events and moves that counter. So the plan assumes
//! the counter it knows and the states it knows (the batch in flight, its unsynced commits,
//! the read cache), and the batch's statement checks the assumption inside its own exclusive
//! transaction:
//!
//! ```text
//! BEGIN IMMEDIATE;
//! INSERT INTO bver_refs     ... WHERE (SELECT value FROM bver_outbox_seq) = <assumed>;
//! INSERT INTO bver_versions ... WHERE (SELECT value FROM bver_outbox_seq) = <assumed>;
//! INSERT INTO bver_events   ... WHERE (SELECT value FROM bver_outbox_seq) = <assumed>;
//! UPDATE bver_outbox_seq SET value = <new> WHERE id = 1 AND value = <assumed>;
//! SELECT changes();   -- 1: everything above was written; 0: nothing was
//! COMMIT
//! ```
//!
//! If the counter moved (another process, or federation's `apply_remote` on this connection,
//! wrote meanwhile), nothing is written and the batch, with every request planned after it,
//! goes through the full path of [`Writer::commit_batch`], which reads what it needs inside
//! its transaction. A statement that fails is rolled back and takes the same way, after the
//! writer has stopped trusting what it knows (see `Writer::data_version`).
//!
//! A request takes this path only if its outcome can be planned from memory: SQLite with the
//! read cache, the counter known, the reference's state known, no idempotency key (its record
//! must be looked up) and not a restore (its snapshot must be read). Everything else, and
//! everything that arrives after such a request while it waits, takes the full path, so that
//! requests are applied in the order the writer received them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bver_contracts::{BverError, ErrorCode, Phase};
use sqlx::Row;

use super::Backend;
use super::sql::{self, Arg, query_args};
use super::types::{Change, Committed, Current};
use super::writer::{
    Known, Planned, Replies, WriteReq, Writer, event_args, firing_args, lifecycle_rows, now_ms,
    nulls, plan, ref_args, version_args,
};

/// The most requests one pipelined batch holds (one padded statement).
const MAX_ROWS: usize = 256;

/// Below this many waiting callers a pipelined batch takes them all (see
/// `Writer::batch_cap`).
const MIN_SPLIT: u64 = 16;

/// What waits for the writer, in the order received: the next pipelined batch (planned), the
/// requests for the full path, and the requests that arrived when the next batch was full
/// (not planned yet; admitted before anything received after them).
#[derive(Default)]
pub(crate) struct Queues {
    pub(crate) next: Pending,
    pub(crate) slow: Vec<WriteReq>,
    pub(crate) held: VecDeque<WriteReq>,
}

impl Queues {
    pub(crate) fn len(&self) -> usize {
        self.next.len() + self.slow.len() + self.held.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The next batch, planned as its requests arrive.
#[derive(Default)]
pub(crate) struct Pending {
    reqs: Vec<WriteReq>,
    /// One per request: its error, or `None` when it is planned.
    results: Vec<Option<Result<Committed, BverError>>>,
    planned: Vec<Planned>,
}

impl Pending {
    pub(crate) fn len(&self) -> usize {
        self.reqs.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }
}

/// How the statement of a submitted batch ended.
pub(crate) enum Outcome {
    /// Everything was written and committed.
    Committed,
    /// The counter had moved: nothing was written.
    NotWritten,
    /// The statement failed and was rolled back.
    Failed(sqlx::Error),
    /// The statement ran to its end (its `COMMIT` included) but did not answer as it must:
    /// whether the batch is in the database is unknown, so it must not be applied again.
    Unknown,
}

type Execution = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// A batch whose statement runs on the write connection's thread.
pub(crate) struct InFlight {
    pub(crate) execution: Execution,
    reqs: Vec<WriteReq>,
    results: Vec<Result<Committed, BverError>>,
    /// The states it leaves, for the read cache.
    states: Vec<Arc<Current>>,
    last_seq: Option<u64>,
    counter: i64,
}

impl Writer {
    /// Whether `req` can be planned from memory (see the module docs for the rules), given
    /// the requests already waiting for the full path.
    fn can_pipeline(&self, req: &WriteReq, slow: &[WriteReq]) -> bool {
        let m = &req.mutation;
        slow.is_empty()
            && matches!(self.backend, Backend::Sqlite { .. })
            && self.cache.is_some()
            && self.counter.is_some()
            && m.idempotency.is_none()
            && !matches!(m.change, Change::Restore { .. })
    }

    /// How many requests the next pipelined batch takes: half of the callers waiting on the
    /// writer (at least [`MIN_SPLIT`]). Callers come back with their next write only after
    /// their batch's fsync; if one batch took them all, nobody would arrive while it runs and
    /// the pipeline would idle between batches. Two halves alternate instead: one runs while
    /// the other's callers are answered and come back.
    fn batch_cap(&self) -> usize {
        let waiting = self
            .received
            .saturating_sub(self.answered.load(Ordering::Relaxed));
        usize::try_from(waiting.div_ceil(2).max(MIN_SPLIT))
            .unwrap_or(MAX_ROWS)
            .min(MAX_ROWS)
    }

    /// Take a request the writer received, in order after those it holds.
    pub(crate) fn admit(&mut self, req: WriteReq, q: &mut Queues) {
        self.received += 1;
        if !q.held.is_empty() {
            q.held.push_back(req);
        } else if let Err(req) = self.place(req, q) {
            q.held.push_back(req);
        }
    }

    /// Admit held requests while the next batch has room.
    pub(crate) fn release_held(&mut self, q: &mut Queues) {
        while let Some(req) = q.held.pop_front() {
            if let Err(req) = self.place(req, q) {
                q.held.push_front(req);
                break;
            }
        }
    }

    /// Plan `req` into the next batch when it can be, else queue it for the full path; gives
    /// it back when the next batch is full.
    fn place(&mut self, req: WriteReq, q: &mut Queues) -> Result<(), WriteReq> {
        if !self.can_pipeline(&req, &q.slow) {
            q.slow.push(req);
            return Ok(());
        }
        if q.next.len() >= self.batch_cap() {
            return Err(req);
        }
        let key = &req.mutation.key;
        if !self.overlay.contains_key(key) {
            let known = self.cache.as_deref().and_then(|cache| {
                Known {
                    writer: self,
                    cache,
                }
                .get(key)
            });
            match known {
                Some(state) => {
                    self.overlay.insert(key.clone(), state);
                }
                // Not known (new, or evicted from the cache): read inside a transaction.
                None => {
                    q.slow.push(req);
                    return Ok(());
                }
            }
        }
        let (mut results, planned) = plan(
            &[&req.mutation],
            &mut self.overlay,
            &HashMap::new(),
            &mut HashMap::new(),
            now_ms(),
        );
        let next = &mut q.next;
        let index = next.reqs.len();
        next.planned.extend(planned.into_iter().map(|mut p| {
            p.index = index;
            p
        }));
        next.results.push(results.pop().flatten());
        next.reqs.push(req);
        Ok(())
    }

    /// Start the statement of `next`, planned on the counter and states the writer holds now
    /// (its predecessor has committed). A batch whose requests all failed in planning needs
    /// no statement: its answers wait for the sync of the commits before it.
    pub(crate) fn submit(&mut self, next: Pending, q: &mut Queues) -> Option<InFlight> {
        let Pending {
            reqs,
            mut results,
            mut planned,
        } = next;
        let (Some(counter), Backend::Sqlite { write, .. }) = (self.counter, &self.backend) else {
            // Its requests precede everything still queued.
            q.slow.splice(0..0, reqs);
            return None;
        };
        let pool = write.clone();
        self.prune_recent();
        if planned.is_empty() {
            let replies: Replies = reqs
                .into_iter()
                .map(|r| r.reply)
                .zip(results.into_iter().map(answer))
                .collect();
            self.committed(replies, Vec::new(), None);
            return None;
        }
        let n = planned.len() as i64;
        for (i, p) in planned.iter_mut().enumerate() {
            p.committed.seq = (counter + 1 + i as i64) as u64;
        }
        let fired = planned.iter().map(|p| p.fired.len()).sum::<usize>();
        let new_counter = counter + n + fired as i64;

        let size = sql::padded_chunks(planned.len())
            .first()
            .map_or(1, |(_, size)| *size);
        let firing_sizes: Vec<usize> = sql::padded_chunks(fired)
            .into_iter()
            .map(|(_, s)| s)
            .collect();
        let text = self.pipelined_text(size, &firing_sizes);
        // The final state of each key the batch changes (the newest plan of it is in the
        // overlay), for the read cache, and the reference rows it changes.
        let mut seen = HashSet::with_capacity(planned.len());
        let states: Vec<Arc<Current>> = planned
            .iter()
            .filter(|p| seen.insert(&p.committed.key))
            .filter_map(|p| self.overlay.get(&p.committed.key).cloned())
            .collect();
        let changed = lifecycle_rows(&planned, &self.overlay);
        let epoch: Arc<str> = Arc::from(self.epoch.as_str());
        let guard = || Arg::Int(counter);
        let rows = planned.len();
        let mut args: Vec<Arg> = Vec::with_capacity(size * 34 + fired * 14 + 8);
        args.extend(changed.iter().flat_map(|(c, t)| ref_args(c, t)));
        args.extend(nulls((size - changed.len()) * sql::REF_COLUMN_COUNT));
        args.push(guard());
        args.extend(planned.iter().flat_map(version_args));
        args.extend(nulls((size - rows) * 14));
        args.push(guard());
        args.extend(planned.iter().flat_map(|p| event_args(p, &epoch)));
        args.extend(nulls((size - rows) * 14));
        args.push(guard());
        if fired > 0 {
            let firings = firing_args(&planned, &epoch, counter + 1 + n);
            let mut done = 0;
            for (chunk, padded) in sql::padded_chunks(fired) {
                args.extend(firings[done * 14..(done + chunk) * 14].iter().cloned());
                args.extend(nulls((padded - chunk) * 14));
                args.push(guard());
                done += chunk;
            }
        }
        args.extend([Arg::Int(new_counter), guard()]);

        let query = match (|| {
            Ok::<_, sqlx::Error>(query_args!(sqlx::sqlite::SqliteArguments, text, args))
        })() {
            Ok(query) => query,
            Err(e) => {
                // An argument that does not encode: nothing ran; the full path reports it.
                tracing::warn!(error = %e, "a pipelined batch could not be bound; retrying it on the full path");
                q.slow.splice(0..0, reqs);
                self.counter = None;
                return None;
            }
        };
        let execution: Execution = Box::pin(async move {
            let mut conn = match pool.acquire().await {
                Ok(conn) => conn,
                Err(e) => return Outcome::Failed(e),
            };
            match query.fetch_all(&mut *conn).await {
                // `SELECT changes()`: 1 if the counter's update, and so every guarded write
                // before it, happened.
                Ok(rows) => match rows.first().map(|r| r.try_get::<i64, _>(0)) {
                    Some(Ok(1)) => Outcome::Committed,
                    Some(Ok(0)) => Outcome::NotWritten,
                    _ => Outcome::Unknown,
                },
                Err(e) => {
                    sql::rollback_after_failure(&mut conn, "a pipelined batch").await;
                    Outcome::Failed(e)
                }
            }
        });
        for p in planned {
            results[p.index] = Some(Ok(p.committed));
        }
        Some(InFlight {
            execution,
            reqs,
            results: results.into_iter().map(answer).collect(),
            states,
            last_seq: Some(new_counter as u64),
            counter: new_counter,
        })
    }

    /// The statement of `done` finished with `outcome`. On success its callers are answered
    /// after the sync; otherwise its requests, then those of `next` (planned on top of it),
    /// go to the full path.
    pub(crate) fn complete(&mut self, done: InFlight, outcome: Outcome, q: &mut Queues) {
        match outcome {
            Outcome::Committed => {
                self.counter = Some(done.counter);
                self.counters
                    .pipelined_batches
                    .fetch_add(1, Ordering::Relaxed);
                // These states are now the writer's unsynced commits (`recent`); the overlay
                // keeps only what the next batch planned on top of them.
                for state in &done.states {
                    if self
                        .overlay
                        .get(&state.key)
                        .is_some_and(|c| Arc::ptr_eq(c, state))
                    {
                        self.overlay.remove(&state.key);
                    }
                }
                let replies: Replies = done
                    .reqs
                    .into_iter()
                    .map(|r| r.reply)
                    .zip(done.results)
                    .collect();
                self.committed(replies, done.states, done.last_seq);
            }
            Outcome::Unknown => {
                // Neither retried (it may be in the database) nor reported as done.
                tracing::error!(
                    size = done.reqs.len(),
                    "a pipelined batch ended without its check row; its outcome is unknown"
                );
                self.distrust();
                self.counter = None;
                self.overlay.clear();
                let err = BverError::new(
                    ErrorCode::StorageError,
                    Phase::Storage,
                    "the outcome of the write is unknown; read the reference before repeating it",
                );
                let replies: Replies = done
                    .reqs
                    .into_iter()
                    .map(|r| (r.reply, Err(err.clone())))
                    .collect();
                self.committed(replies, Vec::new(), None);
                let next = std::mem::take(&mut q.next).reqs;
                q.slow.splice(0..0, next);
            }
            outcome => {
                match outcome {
                    Outcome::Failed(e) => {
                        tracing::warn!(error = %e, "pipelined batch failed; retrying it on the full path");
                        self.distrust();
                    }
                    _ => tracing::debug!(
                        "the outbox counter moved since the batch was planned; retrying it on the full path"
                    ),
                }
                self.counters
                    .pipeline_fallbacks
                    .fetch_add(1, Ordering::Relaxed);
                self.counter = None;
                self.overlay.clear();
                // In the order received: this batch, the next one, the full path's, the held.
                let next = std::mem::take(&mut q.next).reqs;
                let later = std::mem::take(&mut q.slow);
                q.slow = done.reqs.into_iter().chain(next).chain(later).collect();
                q.slow.extend(q.held.drain(..));
            }
        }
    }

    /// The text of a pipelined batch of `size` padded rows with named-trigger events in
    /// chunks of `firings` padded rows, built once per shape.
    fn pipelined_text(&mut self, size: usize, firings: &[usize]) -> sqlx::AssertSqlSafe<Arc<str>> {
        let text = self
            .shapes
            .entry((size, firings.to_vec()))
            .or_insert_with(|| pipelined_sql(size, firings).into());
        sqlx::AssertSqlSafe(Arc::clone(text))
    }
}

/// A planned request's answer (every request of a submitted batch has one).
fn answer(r: Option<Result<Committed, BverError>>) -> Result<Committed, BverError> {
    r.unwrap_or_else(|| Err(BverError::internal("write planned but not answered")))
}

/// See the module docs. Each guard is one anonymous parameter after its statement's rows.
pub(crate) fn pipelined_sql(size: usize, firings: &[usize]) -> String {
    use sql::{Dialect, EVENT_COLUMNS, REF_COLUMN_COUNT, REF_COLUMNS, VERSION_COLUMNS};
    const GUARD: &str = "(SELECT value FROM bver_outbox_seq WHERE id = 1) = ?";
    let refs = sql::placeholders(Dialect::Sqlite, size, REF_COLUMN_COUNT);
    let rows = sql::placeholders(Dialect::Sqlite, size, 14);
    let mut s = format!(
        "BEGIN IMMEDIATE; \
         INSERT INTO bver_refs ({REF_COLUMNS}) SELECT * FROM (VALUES {refs}) \
         WHERE column1 IS NOT NULL AND {GUARD} ON CONFLICT (namespace, repo, id) DO UPDATE SET \
         kind = excluded.kind, deleted = excluded.deleted; \
         INSERT INTO bver_versions ({VERSION_COLUMNS}) SELECT * FROM (VALUES {rows}) \
         WHERE column1 IS NOT NULL AND {GUARD}; \
         INSERT INTO bver_events ({EVENT_COLUMNS}) SELECT * FROM (VALUES {rows}) \
         WHERE column1 IS NOT NULL AND {GUARD}; "
    );
    for &n in firings {
        let rows = sql::placeholders(Dialect::Sqlite, n, 14);
        s.push_str(&format!(
            "INSERT INTO bver_events ({EVENT_COLUMNS}) SELECT * FROM (VALUES {rows}) \
             WHERE column1 IS NOT NULL AND {GUARD}; "
        ));
    }
    s.push_str(
        "UPDATE bver_outbox_seq SET value = ? WHERE id = 1 AND value = ?; \
         SELECT changes(); COMMIT",
    );
    s
}
