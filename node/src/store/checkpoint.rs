//! SQLite: WAL checkpoints that keep the WAL short without stalling the writer.
//!
//! A checkpoint copies committed frames from the WAL into the database file. Two parts do it:
//!
//! - **The background checkpointer** ([`run`]), on a connection and thread of its own, runs a
//!   passive checkpoint half a second after commits, then fsyncs the database file. Passive
//!   checkpoints never block the writer or readers, and they do nearly all the copying.
//! - **The writer** starts the WAL over. A passive checkpoint cannot: the WAL starts over only
//!   when a write transaction begins with every frame copied, and the writer keeps appending
//!   while the background connection copies. So once the WAL has grown past
//!   [`RESTART_PAGES`], the checkpointer copies what is left (a second, short passive pass) and
//!   asks the writer ([`WalRestart::request`]); the writer, between two batches, runs a passive
//!   checkpoint of its own ([`WalRestart::run_if_requested`]), which finds only the few frames
//!   appended since (a millisecond or two, its fsync of the database included), and its next
//!   transaction starts the WAL over.
//!
//! Before this hand-off the writer checkpointed only inside the commit that grew the WAL past
//! `wal_autocheckpoint`, at a moment unrelated to the background passes: it then copied the
//! frames of the last half second and wrote back every page the background passes had left
//! unsynced, while the callers of that batch, and every batch behind it, waited (20–40 ms
//! stalls about once a second at 5,000 patches/s, the tail of the commit latency).
//! `wal_autocheckpoint` stays as the bound for when the hand-off cannot keep up, and for
//! writes that do not go through the writer's loop (federation's remote applies take the
//! write connection directly and do not look at requests).
//!
//! A reader still inside a transaction on the old WAL content keeps the WAL from starting over
//! (SQLite then goes on appending); the next pass tries again. Nothing here changes
//! durability: a commit is durable once its WAL frames are fsynced ([`super::wal`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::sqlite::{SqliteConnection, SqlitePool};
use sqlx::{Row, SqliteExecutor};
use tokio::sync::watch;

/// How long the background checkpointer waits after a commit before it checkpoints.
///
/// A checkpoint copies each page once however many commits rewrote it since the last one, so
/// fewer, larger checkpoints copy (and write back and fsync) fewer pages: under scattered
/// patches, a checkpoint every half second cost about 15% less CPU per patch than one every
/// 20 ms (docs/PERFORMANCE.md).
pub(crate) const CHECKPOINT_DELAY: Duration = Duration::from_millis(500);

/// The WAL size (in pages: 32 MiB of 4 KiB pages) from which the background checkpointer asks
/// the writer to start the WAL over.
pub(crate) const RESTART_PAGES: i64 = 8_000;

/// The WAL size (in pages, 64 MiB) at which the writer checkpoints inside its commit, as
/// SQLite does by itself (`wal_autocheckpoint`): the bound for when the hand-off does not keep
/// up (a reader that holds the old WAL content for long, a burst faster than the passes).
pub(crate) const WRITER_AUTOCHECKPOINT_PAGES: u32 = 16_000;

/// The background checkpointer's request that the writer start the WAL over. Shared by the
/// checkpointer and the writer of one database.
#[derive(Debug, Default)]
pub(crate) struct WalRestart {
    requested: AtomicBool,
}

impl WalRestart {
    /// Ask the writer to checkpoint the last frames at its next batch boundary.
    pub(crate) fn request(&self) {
        self.requested.store(true, Ordering::Release);
    }

    /// Whether a request is waiting (and not yet taken by the writer).
    pub(crate) fn is_requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }

    /// On the writer, between two transactions: if the checkpointer asked, copy the frames
    /// left (a passive checkpoint on the write connection), so that the next write transaction
    /// starts the WAL over. A failure is logged and left to the next request or to
    /// `wal_autocheckpoint`: the commits themselves are unaffected.
    pub(crate) async fn run_if_requested(&self, write: &SqlitePool) {
        if !self.requested.swap(false, Ordering::AcqRel) {
            return;
        }
        if let Err(e) = passive(write).await {
            tracing::debug!(error = %e, "the writer's WAL checkpoint failed; the next one will do");
        }
    }
}

/// What a passive checkpoint reports: frames in the WAL and frames copied into the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pass {
    pub(crate) wal_pages: i64,
    pub(crate) copied: i64,
}

/// Run `PRAGMA wal_checkpoint(PASSIVE)` on `conn`.
pub(crate) async fn passive<'c>(conn: impl SqliteExecutor<'c>) -> Result<Pass, sqlx::Error> {
    let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(conn)
        .await?;
    // Columns: busy (1 if a writer or another checkpoint kept it from finishing), the WAL's
    // frames, the frames copied; -1 and -1 when the database is not in WAL mode.
    Ok(Pass {
        wal_pages: row.try_get(1)?,
        copied: row.try_get(2)?,
    })
}

/// The background checkpointer of one SQLite database (the file `db`): a passive checkpoint
/// [`CHECKPOINT_DELAY`] after commits (the `commits` watch moves), and the writer asked to
/// start the WAL over once it holds `restart_pages` ([`RESTART_PAGES`]). Ends when the watch's
/// sender (the writer) is gone.
pub(crate) async fn run(
    mut conn: SqliteConnection,
    mut commits: watch::Receiver<u64>,
    restart: Arc<WalRestart>,
    restart_pages: i64,
    db: PathBuf,
) {
    while commits.changed().await.is_ok() {
        tokio::time::sleep(CHECKPOINT_DELAY).await;
        commits.borrow_and_update();
        let Some(pass) = background_pass(&mut conn, &db).await else {
            continue;
        };
        if pass.wal_pages >= restart_pages && !restart.is_requested() {
            // The pass above took milliseconds of copying while the writer went on: copy
            // those frames too, so that the writer's own pass finds almost nothing.
            background_pass(&mut conn, &db).await;
            restart.request();
        }
    }
}

/// A passive checkpoint on the background connection, then the database file's fsync.
///
/// SQLite syncs the database file after a checkpoint only when that checkpoint copied every
/// frame up to the WAL's end, which a pass running while the writer appends seldom does. The
/// pages it copied would then wait in the OS page cache, tens of megabytes of them, until the
/// next checkpoint that does sync: the writer's, which would write them all back while its
/// callers wait (20–30 ms here). Syncing after such a pass, on a blocking thread, keeps that
/// work off the writer. A pass that reached the WAL's end (every frame copied: `copied` equals
/// the WAL's frames, an empty WAL included) was synced by SQLite itself, in this pass or the
/// one that copied the last frame, and gets no second fsync.
async fn background_pass(conn: &mut SqliteConnection, db: &Path) -> Option<Pass> {
    let pass = match passive(conn).await {
        Ok(pass) => pass,
        Err(e) => {
            tracing::debug!(error = %e, "background WAL checkpoint failed; the next one will do");
            return None;
        }
    };
    if pass.copied >= pass.wal_pages {
        return Some(pass);
    }
    let db = db.to_owned();
    match tokio::task::spawn_blocking(move || super::wal::fdatasync(&db)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "fsync of the SQLite database file after a checkpoint failed")
        }
        Err(e) => tracing::warn!(error = %e, "the database file's fsync did not run"),
    }
    Some(pass)
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use sqlx::Connection;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

    use super::*;

    /// A database whose write connection never checkpoints by itself, so that only what the
    /// test does moves the WAL.
    async fn database(dir: &std::path::Path) -> (SqliteConnectOptions, SqlitePool) {
        let connect =
            SqliteConnectOptions::from_str(&format!("sqlite://{}", dir.join("c.db").display()))
                .unwrap()
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal);
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(connect.clone().pragma("wal_autocheckpoint", "0"))
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
            .execute(&write)
            .await
            .unwrap();
        (connect, write)
    }

    /// `n` rows of 1 KiB in one transaction: about `n / 4` WAL frames.
    async fn write(write: &SqlitePool, n: usize) {
        let mut tx = write.begin().await.unwrap();
        for _ in 0..n {
            sqlx::query("INSERT INTO t (body) VALUES (?)")
                .bind("x".repeat(1024))
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
    }

    async fn wal_pages(conn: &mut SqliteConnection) -> i64 {
        passive(conn).await.unwrap().wal_pages
    }

    #[tokio::test]
    async fn the_writers_pass_starts_the_wal_over_when_writes_went_on_during_the_background_one() {
        let dir = tempfile::tempdir().unwrap();
        let (connect, pool) = database(dir.path()).await;
        for _ in 0..10 {
            write(&pool, 100).await;
        }
        let mut checkpointer = SqliteConnection::connect_with(&connect).await.unwrap();
        // A reader holds the current WAL content while the background pass copies all of it,
        // so the next write cannot start the WAL over and appends after it: the state a
        // writer that keeps writing during the background pass leaves.
        let mut reader = SqliteConnection::connect_with(&connect).await.unwrap();
        let mut snapshot = reader.begin().await.unwrap();
        sqlx::query("SELECT count(*) FROM t")
            .fetch_one(&mut *snapshot)
            .await
            .unwrap();
        let before = passive(&mut checkpointer).await.unwrap();
        assert!(before.wal_pages >= 200, "{before:?}");
        assert_eq!(before.copied, before.wal_pages, "{before:?}");
        write(&pool, 10).await;
        snapshot.rollback().await.unwrap();
        // The WAL file only grows while frames are appended after the copied ones; once the
        // WAL starts over, writes reuse its beginning. (Its frame count cannot be read without
        // a checkpoint, which would change what is measured.)
        let wal = dir.path().join("c.db-wal");
        let len = || std::fs::metadata(&wal).unwrap().len();
        let appended = len();
        // Writes alone do not start it over: some frames were never copied.
        write(&pool, 10).await;
        assert!(
            len() > appended,
            "the WAL started over without a checkpoint"
        );
        // Nothing asked: the writer does nothing.
        let restart = WalRestart::default();
        restart.run_if_requested(&pool).await;
        let grown = len();
        write(&pool, 1).await;
        assert!(len() > grown, "the writer checkpointed unasked");
        // Asked: the writer's pass copies the rest and its next transaction starts over.
        restart.request();
        assert!(restart.is_requested());
        restart.run_if_requested(&pool).await;
        assert!(!restart.is_requested(), "the request is taken");
        let full = len();
        write(&pool, 1).await;
        assert_eq!(len(), full, "the WAL did not start over");
        let after = wal_pages(&mut checkpointer).await;
        assert!(after < 10, "the WAL did not start over: {after} frames");
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(rows, 1022);
    }

    #[tokio::test]
    async fn the_background_checkpointer_asks_for_a_restart_once_the_wal_is_large() {
        let dir = tempfile::tempdir().unwrap();
        let (connect, pool) = database(dir.path()).await;
        let conn = SqliteConnection::connect_with(&connect).await.unwrap();
        let (commits, rx) = watch::channel(0u64);
        let restart = Arc::new(WalRestart::default());
        let task = tokio::spawn(run(
            conn,
            rx,
            Arc::clone(&restart),
            100,
            dir.path().join("c.db"),
        ));
        // A small WAL: copied, no request.
        write(&pool, 4).await;
        commits.send_replace(1);
        tokio::time::sleep(CHECKPOINT_DELAY * 2).await;
        assert!(!restart.is_requested(), "asked with a WAL of a few pages");
        // Past the threshold: asked.
        write(&pool, 1000).await;
        commits.send_replace(2);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !restart.is_requested() {
            assert!(tokio::time::Instant::now() < deadline, "never asked");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(commits);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the checkpointer ends with its writer")
            .unwrap();
    }
}
