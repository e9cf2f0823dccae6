//! SQLite: the commit's fsync, taken off the write connection and shared by every commit made
//! before it starts.
//!
//! The write connection runs with `synchronous=NORMAL`: its `COMMIT` appends the
//! transaction's frames to the WAL (into the OS page cache) and returns without an fsync.
//! Nobody is told a commit is done until [`WalSync`] has called `fdatasync` on the WAL file
//! after that commit returned. Meanwhile the connection is free for the next transaction, so
//! batch N's fsync overlaps batch N+1's work, and one fsync covers every commit queued before
//! it started (group sync).
//!
//! Why this is as durable as `synchronous=FULL`: in WAL mode a commit is durable once its
//! frames, ending with the commit frame, are on disk; `fdatasync` on the WAL file after the
//! `COMMIT` returned puts them there (and the file's size with them). SQLite itself still
//! syncs the WAL before each checkpoint, the database after it, and the WAL header when it
//! starts the WAL over, which is what `NORMAL` keeps from `FULL`.
//!
//! The one difference is visibility: another connection can read a commit up to one fsync
//! (about a millisecond here) before it is durable against power loss. A process crash loses
//! nothing either way (the frames are in the OS page cache). BVER's own followers of the
//! outbox (the sequence watch, the read cache, EAGER publishers) learn of a commit only after
//! its fsync; `docs/storage.md` says so.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use std::sync::mpsc;

use tokio::sync::oneshot;

/// What runs once the commits made before it are durable: `Ok` or the fsync's error.
type Job = Box<dyn FnOnce(Result<(), Arc<io::Error>>) + Send>;

/// A handle to the thread that fsyncs a SQLite database's WAL. Cheap to clone.
///
/// A thread of its own rather than a task that calls `spawn_blocking` for each fsync: each
/// sync is then one wake-up, not three hand-offs between threads, which matters when commits
/// are small and frequent.
#[derive(Clone)]
pub(crate) struct WalSync {
    jobs: mpsc::Sender<Job>,
}

impl WalSync {
    /// Start the sync thread for the database file at `db` (its WAL is `db` + `-wal`). It
    /// ends when the last handle is dropped.
    pub(crate) fn start(db: &std::path::Path) -> Self {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        let (jobs, rx) = mpsc::channel();
        let wal = PathBuf::from(wal);
        let spawned = std::thread::Builder::new()
            .name("bver-wal-sync".into())
            .spawn(move || run(&wal, &rx));
        if let Err(e) = spawned {
            // The receiver is gone with the closure: every job runs at once with an error.
            tracing::error!(error = %e, "cannot start the SQLite WAL sync thread");
        }
        Self { jobs }
    }

    /// Run `job` once everything committed before this call is durable. Jobs run in the order
    /// they were queued. If the sync thread is gone, the job runs
    /// now with an error: a caller is never answered "durable" without an fsync.
    pub(crate) fn after_sync(&self, job: impl FnOnce(Result<(), Arc<io::Error>>) + Send + 'static) {
        if let Err(mpsc::SendError(job)) = self.jobs.send(Box::new(job)) {
            job(Err(Arc::new(io::Error::other(
                "the WAL sync thread has stopped",
            ))));
        }
    }

    /// Wait until everything committed before this call is durable.
    pub(crate) async fn sync(&self) -> Result<(), Arc<io::Error>> {
        let (tx, rx) = oneshot::channel();
        self.after_sync(move |r| {
            let _ = tx.send(r);
        });
        rx.await.unwrap_or_else(|_| {
            Err(Arc::new(io::Error::other(
                "the WAL sync thread has stopped",
            )))
        })
    }
}

fn run(wal: &std::path::Path, rx: &mpsc::Receiver<Job>) {
    let mut jobs: Vec<Job> = Vec::new();
    while let Ok(first) = rx.recv() {
        jobs.push(first);
        // Everything queued now was committed before the fsync below starts: one fsync for all.
        jobs.extend(rx.try_iter());
        let result = fdatasync(wal).map_err(Arc::new);
        if let Err(e) = &result {
            tracing::error!(error = %e, wal = %wal.display(), "fsync of the SQLite WAL failed; the commits waiting for it are answered with an error");
        }
        for job in jobs.drain(..) {
            job(result.clone());
        }
    }
}

/// `fdatasync` the file at `path` (the WAL, the database), opened afresh each time so that the
/// handle always names the current file. A file that does not exist holds nothing to sync.
pub(crate) fn fdatasync(path: &std::path::Path) -> io::Result<()> {
    match std::fs::File::open(path) {
        Ok(file) => file.sync_data(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_in_order_once_the_wal_is_synced() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        std::fs::write(dir.path().join("x.db-wal"), b"frames").unwrap();
        let wal = WalSync::start(&db);
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        for i in 0..100 {
            let order = Arc::clone(&order);
            wal.after_sync(move |r| {
                assert!(r.is_ok(), "{r:?}");
                order.lock().unwrap().push(i);
            });
        }
        wal.sync().await.unwrap();
        assert_eq!(*order.lock().unwrap(), (0..100).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_failed_fsync_reaches_the_waiters() {
        let dir = tempfile::tempdir().unwrap();
        // A WAL path that is a directory's child of a regular file cannot be opened.
        let file = dir.path().join("plain");
        std::fs::write(&file, b"").unwrap();
        let wal = WalSync::start(&file.join("x.db"));
        let err = wal.sync().await.unwrap_err();
        assert_ne!(err.kind(), io::ErrorKind::NotFound, "{err}");
    }
}
