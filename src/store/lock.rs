//! Local locks that stay open: the same files under `_wxcube/locks/` as ever (one per
//! object, and `commit.lock`), but each opened once per store and then only flocked and
//! unlocked, so an update pays two flock calls instead of an open (or create), a flock and
//! a close. flock does not exclude users of one open file from each other, so inside the
//! process a mutex per file does that; across processes the flock does, as before (and
//! against older wxcube releases, which lock the same files).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{in_folder, io, StoreError};

type Slot = Arc<tokio::sync::Mutex<Option<Arc<File>>>>;

/// The open lock files of one store.
#[derive(Default)]
pub struct Locks {
    objects: Mutex<HashMap<PathBuf, Slot>>,
    commit: Mutex<Option<File>>,
}

/// Holds one object's lock (in the process and across processes) until dropped.
pub struct LockGuard {
    _flock: Flocked,
    _held: tokio::sync::OwnedMutexGuard<Option<Arc<File>>>,
}

/// A flock held on a cached file; dropping it unlocks (also when the blocking call that
/// took it finishes after its caller gave up).
struct Flocked(Arc<File>);

impl Drop for Flocked {
    fn drop(&mut self) {
        // LOCK_UN on an open file has no failure to act on.
        let _ = self.0.unlock();
    }
}

/// Holds `commit.lock` until dropped.
pub(super) struct CommitGuard<'a>(MutexGuard<'a, Option<File>>);

impl Drop for CommitGuard<'_> {
    fn drop(&mut self) {
        if let Some(f) = self.0.as_ref() {
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
        let slot = {
            let mut objects = self.objects.lock().unwrap_or_else(|p| p.into_inner());
            objects.entry(path.clone()).or_default().clone()
        };
        let mut held = slot.lock_owned().await;
        let cached = held.clone();
        let what = path.display().to_string();
        let (file, out) = tokio::task::spawn_blocking(move || {
            let file = match cached {
                Some(f) => f,
                None => Arc::new(open(&path)?),
            };
            file.lock().map_err(io("lock", &path))?;
            let flock = Flocked(file);
            then().map(|out| (flock, out))
        })
        .await
        .map_err(|e| StoreError::Io {
            op: "lock",
            path: what,
            source: std::io::Error::other(e),
        })??;
        *held = Some(file.0.clone());
        Ok((
            LockGuard {
                _flock: file,
                _held: held,
            },
            out,
        ))
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
    async fn a_cached_lock_excludes_this_process_and_others_until_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(dir.path().to_str().expect("utf8")).expect("store");
        let file = dir.path().join("_wxcube/locks/t~p~data.parquet.lock");
        for _ in 0..2 {
            // The second round reuses the open file: it must lock just the same.
            let held = s.lock("t/p/data.parquet").await.expect("lock");
            assert!(held.is_some());
            assert!(!free_for_another_process(&file));
            drop(held);
            assert!(free_for_another_process(&file));
        }
        // A second writer in this process shares the open file, so only the in-process
        // lock keeps it out: it gets the lock after the first lets go, never before.
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
