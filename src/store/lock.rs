//! Local locks: the same files under `_wxcube/locks/` as ever (one per object, and
//! `commit.lock`). An update takes its object's lock only after losing a race (see
//! `update_cas`); the lock file is opened then and closed when its guard drops: every
//! holder has its own open file, so flock excludes writers in this process as well as in
//! others (and older wxcube releases, which lock the same files),
//! and nothing stays open however many partitions a run touches. Only `commit.lock`,
//! which every local write takes, stays open for the store's life.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use super::{in_folder, io, StoreError};

/// The open `commit.lock` of one store.
#[derive(Default)]
pub struct Locks {
    commit: Mutex<Option<File>>,
}

/// Holds one object's lock (in the process and across processes) until dropped: closing
/// the file releases the flock, also when the blocking call that took it finishes after
/// its caller gave up.
pub struct LockGuard(#[allow(dead_code)] File);

/// Holds `commit.lock` until dropped.
pub(super) struct CommitGuard<'a>(MutexGuard<'a, Option<File>>);

impl Drop for CommitGuard<'_> {
    fn drop(&mut self) {
        if let Some(f) = self.0.as_ref() {
            // LOCK_UN on an open file has no failure to act on.
            let _ = f.unlock();
        }
    }
}

fn open(path: &Path) -> Result<File, StoreError> {
    in_folder(path, |p| {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(p)
    })
    .map_err(io("open", path))
}

impl Locks {
    /// Locks `path` (a lock file), then runs `then` in the same blocking call while the
    /// lock is held: the lock and the read after it are one hand-off, not two.
    pub(super) async fn lock_then<T: Send + 'static>(
        &self,
        path: PathBuf,
        then: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
    ) -> Result<(LockGuard, T), StoreError> {
        let what = path.display().to_string();
        tokio::task::spawn_blocking(move || {
            let file = open(&path)?;
            file.lock().map_err(io("lock", &path))?;
            let guard = LockGuard(file);
            then().map(|out| (guard, out))
        })
        .await
        .map_err(|e| StoreError::Io {
            op: "lock",
            path: what,
            source: std::io::Error::other(e),
        })?
    }

    /// Locks `commit.lock` at `path` if no writer of this process or another holds it;
    /// `None` if one does (wait with `commit` on a blocking thread).
    pub(super) fn try_commit(&self, path: &Path) -> Result<Option<CommitGuard<'_>>, StoreError> {
        let mut held = match self.commit.try_lock() {
            Ok(held) => held,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Ok(None),
        };
        if held.is_none() {
            *held = Some(open(path)?);
        }
        if let Some(f) = held.as_ref() {
            match f.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
                Err(std::fs::TryLockError::Error(e)) => return Err(io("lock", path)(e)),
            }
        }
        Ok(Some(CommitGuard(held)))
    }

    /// Locks `commit.lock` at `path` (blocking: call from a blocking thread).
    pub(super) fn commit(&self, path: &Path) -> Result<CommitGuard<'_>, StoreError> {
        let mut held = self.commit.lock().unwrap_or_else(|p| p.into_inner());
        if held.is_none() {
            *held = Some(open(path)?);
        }
        if let Some(f) = held.as_ref() {
            f.lock().map_err(io("lock", path))?;
        }
        Ok(CommitGuard(held))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::super::Store;

    /// Another process opens the lock file itself: it must find it locked while we hold it.
    fn free_for_another_process(path: &std::path::Path) -> bool {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .expect("open lock file");
        f.try_lock().is_ok()
    }

    #[tokio::test]
    async fn a_lock_excludes_this_process_and_others_until_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(dir.path().to_str().expect("utf8")).expect("store");
        let file = dir.path().join("_wxcube/locks/t~p~data.parquet.lock");
        for _ in 0..2 {
            let held = s.lock("t/p/data.parquet").await.expect("lock");
            assert!(held.is_some());
            assert!(!free_for_another_process(&file));
            drop(held);
            assert!(free_for_another_process(&file));
        }
        // A second writer in this process gets the lock after the first lets go, never
        // before.
        let s = Arc::new(s);
        let order = Arc::new(Mutex::new(Vec::new()));
        let held = s.lock("t/p/data.parquet").await.expect("lock");
        let second = tokio::spawn({
            let (s, order) = (s.clone(), order.clone());
            async move {
                let g = s.lock("t/p/data.parquet").await.expect("lock");
                order.lock().expect("order").push("second locked");
                g
            }
        });
        // Time for the second writer to get as far as it can (not a timed assertion).
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        order.lock().expect("order").push("first releases");
        drop(held);
        let g = second.await.expect("join");
        assert_eq!(
            *order.lock().expect("order"),
            ["first releases", "second locked"]
        );
        assert!(!free_for_another_process(&file));
        drop(g);
        let (held, read) = s.lock_read("t/p/data.parquet").await.expect("lock_read");
        assert!(held.is_some() && read.is_none());
        assert!(!free_for_another_process(&file));
        drop(held);
        s.overwrite("t/p/data.parquet", bytes::Bytes::from_static(b"x"))
            .await
            .expect("write");
        assert!(
            free_for_another_process(&dir.path().join("_wxcube/locks/commit.lock")),
            "the commit lock is released after a write"
        );
    }
}
