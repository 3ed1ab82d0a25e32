//! Group commit for local writes. A write is made durable in two steps, the temp file's
//! bytes before its rename and the rename after it; on a filesystem known to honour
//! `syncfs`, each step waits for one `syncfs` shared by every write waiting at the time,
//! instead of an fsync of its own file and folder. Writes that arrive while a sync runs
//! share the next one. It also covers what the per-file path never did: the folders
//! `create_dir_all` made for a new partition, whose entries in their parents are durable
//! only once those parents are synced.
//!
//! `syncfs` flushes the whole filesystem, so it is used only where it is known to make the
//! data durable and to report writeback errors (Linux 5.8 and later; ext4, XFS, btrfs,
//! tmpfs), and only for files on the root folder's device; anywhere else (NFS, FUSE,
//! overlayfs, a table folder mounted from another disk, other systems) each file and folder
//! is fsynced as before. A failed sync fails every write that waits from then on: the filesystem
//! reports a writeback error once, to whichever sync ends first, and it may have been any
//! waiting write's (the run stops with what it committed before).
//!
//! A sync also writes out whatever else is dirty on that filesystem, other programs' files
//! and our own spool files if `TMPDIR` is there too: a commit's wait is then theirs as well.
//!
//! Workload R (`make bench`): 788 fsyncs a run became 409 syncfs, client CPU −5 %.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use tokio::sync::Notify;

/// When a rename must be durable.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Durable {
    /// Before the write returns.
    Now,
    /// By the next sync of any write. For a table's file, which only a later write under
    /// `_wxcube/` records (state, change record, run report): that write's first sync, of
    /// its own bytes, starts after this rename, so no record can be durable while the
    /// rename it records is not. Also for the records `store` names deferrable (layouts,
    /// states), which a later sync covers or a crash may lose at no cost. Per-file fsync has
    /// no such reach: there the folder is synced at once.
    ByNextSync,
}

type SyncFn = fn(&File) -> std::io::Result<()>;

/// One per local store.
pub struct Syncer {
    root: PathBuf,
    /// The store's root folder and its device when `syncfs` serves it; `None` for fsync
    /// per file. A file on another device (a table folder mounted or linked elsewhere) is
    /// fsynced on its own, folder included.
    fs: OnceLock<Option<(File, u64)>>,
    sync: SyncFn,
    gens: Mutex<Gens>,
    /// Wakes blocking waiters and `wait_async`'s, whoever ran the sync.
    finished: Condvar,
    synced: Notify,
}

#[derive(Default)]
struct Gens {
    /// Syncs started and finished so far. A sync covers every write that began waiting
    /// before it started; waiters that arrive while the leader is about to start still
    /// join it.
    started: u64,
    finished: u64,
    running: bool,
    /// The first sync that failed, and how. It stays failed: the filesystem reports a
    /// writeback error once, to whichever sync ends first after it, which need not be the
    /// one the failed file waited for.
    failed: Option<(std::io::ErrorKind, String)>,
    /// The sync that covers every rename left to the next sync (`Durable::ByNextSync`).
    deferred: u64,
}

#[cfg(target_os = "linux")]
fn syncfs(fs: &File) -> std::io::Result<()> {
    nix::unistd::syncfs(fs).map_err(std::io::Error::from)
}

/// Never called: `syncfs_serves` is false off Linux.
#[cfg(not(target_os = "linux"))]
fn syncfs(fs: &File) -> std::io::Result<()> {
    fs.sync_all()
}

impl Syncer {
    pub fn new(root: PathBuf) -> Syncer {
        Syncer::with(root, syncfs)
    }

    fn with(root: PathBuf, sync: SyncFn) -> Syncer {
        Syncer {
            root,
            fs: OnceLock::new(),
            sync,
            gens: Mutex::default(),
            finished: Condvar::new(),
            synced: Notify::new(),
        }
    }

    /// Makes the bytes of `file` (on device `dev`) durable, before it is renamed into place.
    pub fn file(&self, file: &File, dev: u64) -> std::io::Result<()> {
        if let Some(fs) = self.shared(dev) {
            return self.wait(fs);
        }
        // A record on another device (`_wxcube` linked elsewhere) must still not be durable
        // before a rename it may record.
        if let Some((root, _)) = self.root() {
            self.wait_for(root, |g| g.deferred)?;
        }
        file.sync_all()
    }

    /// Makes a rename or unlink in `dir` (on device `dev`) durable (see [`Durable`]).
    pub fn folder(&self, dir: &Path, dev: u64, durable: Durable) -> std::io::Result<()> {
        match (self.shared(dev), durable) {
            (Some(_), Durable::ByNextSync) => {
                let mut g = self.gens.lock().unwrap_or_else(|p| p.into_inner());
                // A sync running now may have started before the rename.
                g.deferred = g.started + 1;
                Ok(())
            }
            (Some(fs), Durable::Now) => self.wait(fs),
            (None, _) => {
                // A delete or rename on another device: what was left to the next sync
                // (a state record reopening the file's dates) must not come after it.
                if let Some((root, _)) = self.root() {
                    self.wait_for(root, |g| g.deferred)?;
                }
                File::open(dir)?.sync_all()
            }
        }
    }

    /// Waits until every rename left to the next sync is durable.
    pub fn settle(&self) -> std::io::Result<()> {
        match self.root() {
            Some((root, _)) => self.wait_for(root, |g| g.deferred),
            None => Ok(()),
        }
    }

    /// Whether a file on `dev` is made durable by the shared `syncfs` (and so by
    /// [`Syncer::wait_async`]); false until the root folder exists.
    pub fn shares(&self, dev: u64) -> bool {
        self.shared(dev).is_some()
    }

    /// Whether `syncfs` serves the root folder: local writes may then run on the runtime's
    /// thread, waiting for their syncs with [`Syncer::wait_async`].
    pub fn served(&self) -> bool {
        self.root().is_some()
    }

    /// [`Syncer::file`] and [`Durable::Now`] for a file or folder on a device that
    /// [`Syncer::shares`]: waits for a sync that starts after this call without holding a
    /// thread. Only the sync itself runs on a blocking thread, one for every write waiting
    /// then (workload R: a thread hand-off per sync instead of one per write, and no
    /// blocking thread parked per waiting write).
    pub async fn wait_async(self: &Arc<Self>) -> std::io::Result<()> {
        let need = self.gens.lock().unwrap_or_else(|p| p.into_inner()).started + 1;
        loop {
            let notified = {
                let mut g = self.gens.lock().unwrap_or_else(|p| p.into_inner());
                if let Some((kind, msg)) = &g.failed {
                    return Err(std::io::Error::new(*kind, format!("syncfs: {msg}")));
                }
                if g.finished >= need {
                    return Ok(());
                }
                if !g.running {
                    g.running = true;
                    g.started += 1;
                    let (gen, me) = (g.started, Arc::clone(self));
                    tokio::task::spawn_blocking(move || {
                        let result = match me.root() {
                            Some((fs, _)) => (me.sync)(fs),
                            None => Err(std::io::Error::other("the store's folder is gone")),
                        };
                        me.ended(gen, result);
                    });
                }
                // Made under the lock the sync's end takes: its wake-up cannot be missed.
                self.synced.notified()
            };
            notified.await;
        }
    }

    /// Records the end of sync `gen` and wakes every waiter.
    fn ended(&self, gen: u64, result: std::io::Result<()>) {
        let mut g = self.gens.lock().unwrap_or_else(|p| p.into_inner());
        g.running = false;
        g.finished = gen;
        if let Err(e) = result {
            g.failed.get_or_insert((e.kind(), e.to_string()));
        }
        self.finished.notify_all();
        self.synced.notify_waiters();
    }

    /// The root folder to `syncfs`, if that makes a file on `dev` durable.
    fn shared(&self, dev: u64) -> Option<&File> {
        let (root, root_dev) = self.root()?;
        (root_dev == dev).then_some(root)
    }

    fn root(&self) -> Option<(&File, u64)> {
        if self.fs.get().is_none() {
            let opened = File::open(&self.root);
            if opened
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
            {
                // Not made yet (a read before the first write): ask again later.
                return None;
            }
            let served = opened.ok().and_then(|root| {
                let dev = std::os::unix::fs::MetadataExt::dev(&root.metadata().ok()?);
                syncfs_serves(&root).then_some((root, dev))
            });
            // A racing first caller computed the same.
            let _ = self.fs.set(served);
        }
        self.fs.get()?.as_ref().map(|(f, d)| (f, *d))
    }

    /// Whether reads may run on the runtime's thread: the root is on a local filesystem
    /// this module trusts (its reads are page-cache copies or a local disk's), or not made
    /// yet (nothing to read). NFS, FUSE and the like are read on a blocking thread.
    pub fn reads_inline(&self) -> bool {
        self.root().is_some() || self.fs.get().is_none()
    }

    /// Waits for a sync that starts after this call, running it if none is running.
    fn wait(&self, fs: &File) -> std::io::Result<()> {
        self.wait_for(fs, |g| g.started + 1)
    }

    /// Waits until sync number `need` (of the state at the call) has finished, running
    /// syncs while none is running; a failed sync fails this and every later wait.
    fn wait_for(&self, fs: &File, need: impl Fn(&Gens) -> u64) -> std::io::Result<()> {
        let mut g = self.gens.lock().unwrap_or_else(|p| p.into_inner());
        let need = need(&g);
        loop {
            if let Some((kind, msg)) = &g.failed {
                return Err(std::io::Error::new(*kind, format!("syncfs: {msg}")));
            }
            if g.finished >= need {
                return Ok(());
            }
            if g.running {
                g = self.finished.wait(g).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            g.running = true;
            g.started += 1;
            let gen = g.started;
            drop(g);
            let result = (self.sync)(fs);
            self.ended(gen, result);
            g = self.gens.lock().unwrap_or_else(|p| p.into_inner());
        }
    }
}

#[cfg(target_os = "linux")]
fn syncfs_serves(root: &File) -> bool {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    nix::sys::statfs::fstatfs(root).is_ok_and(|s| serves(&release, s.filesystem_type().0 as u64))
}

#[cfg(not(target_os = "linux"))]
fn syncfs_serves(_: &File) -> bool {
    false
}

/// statfs magics (linux/magic.h): ext2/3/4, XFS, btrfs, tmpfs.
const EXT4: u64 = 0xEF53;
const XFS: u64 = 0x5846_5342;
const BTRFS: u64 = 0x9123_683E;
const TMPFS: u64 = 0x0102_1994;

/// Whether `syncfs` on a filesystem of type `fs` under kernel `release` makes its data
/// durable and reports writeback errors (since 5.8; before, it returned 0 regardless).
/// Overlayfs is left out: whether it passes its upper filesystem's errors up is not
/// settled for every kernel since.
fn serves(release: &str, fs: u64) -> bool {
    let mut v = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().ok());
    let recent = matches!(
        (v.next(), v.next()),
        (Some(Some(major)), Some(Some(minor))) if (major, minor) >= (5, 8)
    );
    recent && [EXT4, XFS, BTRFS, TMPFS].contains(&fs)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    #[test]
    fn syncfs_only_where_it_is_known_to_report_errors() {
        use nix::sys::statfs::{
            BTRFS_SUPER_MAGIC, EXT4_SUPER_MAGIC, NFS_SUPER_MAGIC, OVERLAYFS_SUPER_MAGIC,
            TMPFS_MAGIC, XFS_SUPER_MAGIC,
        };
        let m = |t: nix::sys::statfs::FsType| t.0 as u64;
        for t in [
            EXT4_SUPER_MAGIC,
            XFS_SUPER_MAGIC,
            BTRFS_SUPER_MAGIC,
            TMPFS_MAGIC,
        ] {
            assert!(serves("6.18.44-fc-v1045", m(t)));
            assert!(serves("5.8.0", m(t)));
            assert!(!serves("5.4.0-150-generic", m(t)));
            assert!(!serves("4.19.0", m(t)));
            assert!(!serves("", m(t)));
        }
        assert!(!serves("6.1.0", m(NFS_SUPER_MAGIC)));
        assert!(!serves("6.1.0", m(OVERLAYFS_SUPER_MAGIC)));
    }

    static SYNCS: AtomicU64 = AtomicU64::new(0);
    static FAILS: AtomicU64 = AtomicU64::new(0);

    fn counted(_: &File) -> std::io::Result<()> {
        SYNCS.fetch_add(1, Ordering::SeqCst);
        // Long enough for the other writers to queue behind this sync.
        std::thread::sleep(std::time::Duration::from_millis(30));
        Ok(())
    }

    fn failing(_: &File) -> std::io::Result<()> {
        FAILS.fetch_add(1, Ordering::SeqCst);
        Err(std::io::Error::other("writeback failed"))
    }

    #[test]
    fn waiters_share_syncs_and_deferred_renames_reach_other_devices() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fs = File::open(dir.path()).expect("open");
        let s = Arc::new(Syncer::with(dir.path().into(), counted));

        // 16 writers at once: the first runs a sync, the rest share the next (a slow spawn may
        // miss it; one sync each would be 16).
        let before = SYNCS.load(Ordering::SeqCst);
        let writers: Vec<_> = (0..16)
            .map(|_| {
                let (s, fs) = (s.clone(), fs.try_clone().expect("dup"));
                std::thread::spawn(move || s.wait(&fs))
            })
            .collect();
        for w in writers {
            w.join().expect("writer").expect("synced");
        }
        let runs = SYNCS.load(Ordering::SeqCst) - before;
        assert!((1..=4).contains(&runs), "16 writers took {runs} syncs");

        // Devices: only files on the root's device are served by its syncfs.
        use std::os::unix::fs::MetadataExt;
        let root_dev = fs.metadata().expect("stat").dev();
        if !syncfs_serves(&fs) {
            eprintln!(
                "syncfs does not serve {}: device checks skipped",
                dir.path().display()
            );
            return;
        }
        let f = File::create(dir.path().join("a")).expect("create");
        let n = SYNCS.load(Ordering::SeqCst);
        let syncs_since =
            |k: u64, why: &str| assert_eq!(SYNCS.load(Ordering::SeqCst), n + k, "{why}");
        s.file(&f, root_dev).expect("sync");
        syncs_since(1, "a file on the root's device waits for syncfs");
        s.folder(dir.path(), root_dev, Durable::ByNextSync)
            .expect("deferred");
        syncs_since(1, "a table file's rename waits for the next sync");
        let Ok(other) = tempfile::tempdir_in("/dev/shm") else {
            eprintln!("no /dev/shm: the other-device checks skipped");
            return;
        };
        let g = File::create(other.path().join("b")).expect("create");
        let other_dev = g.metadata().expect("stat").dev();
        if other_dev == root_dev {
            eprintln!("/dev/shm is on the root's device: the other-device checks skipped");
            return;
        }
        // A record on another device first syncs the deferred rename, then itself.
        s.file(&g, other_dev).expect("sync");
        syncs_since(2, "the deferred rename is synced first");
        s.file(&g, other_dev).expect("sync");
        syncs_since(2, "nothing deferred: the file's own fsync only");
        s.folder(other.path(), other_dev, Durable::ByNextSync)
            .expect("fsynced at once");
        s.file(&g, other_dev).expect("sync");
        syncs_since(2, "a rename on another device is not deferred");
        // A delete on another device (a state record reopened its dates just before): the
        // deferred rename first.
        s.folder(dir.path(), root_dev, Durable::ByNextSync)
            .expect("deferred");
        s.folder(other.path(), other_dev, Durable::Now)
            .expect("fsynced");
        syncs_since(
            3,
            "a folder on another device waits for the deferred rename",
        );
        // The end of a run: what was deferred is synced, once.
        s.folder(dir.path(), root_dev, Durable::ByNextSync)
            .expect("deferred");
        s.settle().expect("settled");
        syncs_since(4, "settle syncs what was deferred");
        s.settle().expect("settled");
        syncs_since(4, "nothing deferred: settle syncs nothing");
    }

    static ASYNC_SYNCS: AtomicU64 = AtomicU64::new(0);

    fn counted_async(_: &File) -> std::io::Result<()> {
        ASYNC_SYNCS.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(30));
        Ok(())
    }

    #[tokio::test(flavor = "current_thread")]
    async fn async_waiters_share_syncs_with_blocking_ones_and_see_failures() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fs = File::open(dir.path()).expect("open");
        let s = Arc::new(Syncer::with(dir.path().into(), counted_async));
        if !s.served() {
            eprintln!("syncfs does not serve {}: skipped", dir.path().display());
            return;
        }
        // 16 async writers and a blocking one: the first sync runs on a blocking thread, the
        // rest share the next (one sync each would be 17).
        let blocking = std::thread::spawn({
            let (s, fs) = (s.clone(), fs.try_clone().expect("dup"));
            move || s.wait(&fs)
        });
        let waits = (0..16).map(|_| s.wait_async());
        for r in futures::future::join_all(waits).await {
            r.expect("synced");
        }
        blocking.join().expect("writer").expect("synced");
        let runs = ASYNC_SYNCS.load(Ordering::SeqCst);
        assert!((1..=4).contains(&runs), "17 writers took {runs} syncs");
        // A wait that starts after a sync finished needs a sync of its own.
        s.wait_async().await.expect("synced");
        assert_eq!(ASYNC_SYNCS.load(Ordering::SeqCst), runs + 1);

        let f = Arc::new(Syncer::with(dir.path().into(), |_| {
            Err(std::io::Error::other("writeback failed"))
        }));
        let e = f
            .wait_async()
            .await
            .expect_err("the failed sync is reported");
        assert!(e.to_string().contains("writeback failed"), "{e}");
        let e = f.wait(&fs).expect_err("a blocking wait sees it too");
        assert!(e.to_string().contains("writeback failed"), "{e}");
    }

    #[test]
    fn a_failed_sync_fails_every_later_wait() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fs = File::open(dir.path()).expect("open");
        let s = Syncer::with(dir.path().into(), failing);
        // A failed sync fails its waiter and every wait after it: the error may have been
        // a file whose waiter joined another sync.
        let e = s.wait(&fs).expect_err("the failed sync is reported");
        assert!(e.to_string().contains("writeback failed"), "{e}");
        assert_eq!(FAILS.load(Ordering::SeqCst), 1);
        let e = s.wait(&fs).expect_err("a failure stays");
        assert!(e.to_string().contains("writeback failed"), "{e}");
        assert_eq!(FAILS.load(Ordering::SeqCst), 1, "no sync after a failure");
    }
}
