//! Group commit for local writes. A write is made durable in two steps, the temp file's
//! bytes before its rename and the rename after it; on a filesystem known to honour
//! `syncfs`, each step waits for one `syncfs` shared by every write waiting at the time,
//! instead of an fsync of its own file and folder. Writes that arrive while a sync runs
//! share the next one. It also covers what the per-file path never did: the folders
//! `create_dir_all` made for a new partition, whose entries in their parents are durable
//! only once those parents are synced.
//!
//! `syncfs` flushes the whole filesystem, so it is used only where it is known to make the
//! data durable and to report writeback errors (Linux 5.8 and later; ext4, XFS, btrfs, tmpfs,
//! overlayfs), and only for files on the root folder's device; anywhere else (NFS, FUSE,
//! a table folder mounted from another disk, other systems) each file and folder is fsynced
//! as before. A failed sync fails every write that waited for it and every write that waited
//! for a later one: the failure may have been any of theirs.
//!
//! Workload R (`make bench`): 788 fsyncs a run became ~470 syncfs, client CPU −5 %.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};

/// When a rename must be durable.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Durable {
    /// Before the write returns.
    Now,
    /// By the next sync of any write. For a table's file, which only a later write under
    /// `_wxcube/` records (state, change record, run report): that write's first sync, of
    /// its own bytes, starts after this rename, so no record can be durable while the
    /// rename it records is not. Per-file fsync has no such reach: there the folder is
    /// synced at once.
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
    /// A rename waits for the next sync (`Durable::ByNextSync`).
    deferred: AtomicBool,
    gens: Mutex<Gens>,
    finished: Condvar,
}

#[derive(Default)]
struct Gens {
    /// Syncs started and finished so far. A sync covers every write that began waiting
    /// before it started; waiters that arrive while the leader is about to start still
    /// join it.
    started: u64,
    finished: u64,
    running: bool,
    /// The last sync that failed, and how.
    failed: Option<(u64, std::io::ErrorKind, String)>,
}

fn syncfs(fs: &File) -> std::io::Result<()> {
    nix::unistd::syncfs(fs).map_err(std::io::Error::from)
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
            deferred: AtomicBool::new(false),
            gens: Mutex::default(),
            finished: Condvar::new(),
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
            if self.deferred.load(Ordering::SeqCst) {
                self.wait(root)?;
            }
        }
        file.sync_all()
    }

    /// Makes a rename or unlink in `dir` (on device `dev`) durable (see [`Durable`]).
    pub fn folder(&self, dir: &Path, dev: u64, durable: Durable) -> std::io::Result<()> {
        match (self.shared(dev), durable) {
            (Some(_), Durable::ByNextSync) => {
                self.deferred.store(true, Ordering::SeqCst);
                Ok(())
            }
            (Some(fs), Durable::Now) => self.wait(fs),
            (None, _) => File::open(dir)?.sync_all(),
        }
    }

    /// The root folder to `syncfs`, if that makes a file on `dev` durable.
    fn shared(&self, dev: u64) -> Option<&File> {
        let (root, root_dev) = self.root()?;
        (root_dev == dev).then_some(root)
    }

    fn root(&self) -> Option<(&File, u64)> {
        // Opened at the first write, which has made the root folder by then.
        self.fs
            .get_or_init(|| {
                let root = File::open(&self.root).ok()?;
                let dev = std::os::unix::fs::MetadataExt::dev(&root.metadata().ok()?);
                syncfs_serves(&root).then_some((root, dev))
            })
            .as_ref()
            .map(|(f, d)| (f, *d))
    }

    /// Waits for a sync that starts after this call, running it if none is running.
    fn wait(&self, fs: &File) -> std::io::Result<()> {
        let mut g = self.gens.lock().unwrap_or_else(|p| p.into_inner());
        let need = g.started + 1;
        loop {
            if g.finished >= need {
                return match &g.failed {
                    Some((gen, kind, msg)) if *gen >= need => {
                        Err(std::io::Error::new(*kind, format!("syncfs: {msg}")))
                    }
                    _ => Ok(()),
                };
            }
            if g.running {
                g = self.finished.wait(g).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            g.running = true;
            g.started += 1;
            let gen = g.started;
            drop(g);
            // Every deferred rename so far is covered by this sync.
            self.deferred.store(false, Ordering::SeqCst);
            let result = (self.sync)(fs);
            g = self.gens.lock().unwrap_or_else(|p| p.into_inner());
            g.running = false;
            g.finished = gen;
            if let Err(e) = result {
                g.failed = Some((gen, e.kind(), e.to_string()));
            }
            self.finished.notify_all();
        }
    }
}

#[cfg(target_os = "linux")]
fn syncfs_serves(root: &File) -> bool {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    nix::sys::statfs::fstatfs(root).is_ok_and(|s| serves(&release, s.filesystem_type()))
}

#[cfg(not(target_os = "linux"))]
fn syncfs_serves(_: &File) -> bool {
    false
}

/// Whether `syncfs` on a filesystem of type `fs` under kernel `release` makes its data
/// durable and reports writeback errors (since 5.8; before, it returned 0 regardless).
#[cfg(target_os = "linux")]
fn serves(release: &str, fs: nix::sys::statfs::FsType) -> bool {
    use nix::sys::statfs::{
        BTRFS_SUPER_MAGIC, EXT4_SUPER_MAGIC, OVERLAYFS_SUPER_MAGIC, TMPFS_MAGIC, XFS_SUPER_MAGIC,
    };
    let mut v = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().ok());
    let recent = matches!((v.next(), v.next()), (Some(Some(major)), Some(Some(minor))) if (major, minor) >= (5, 8));
    recent
        && [
            EXT4_SUPER_MAGIC,
            XFS_SUPER_MAGIC,
            BTRFS_SUPER_MAGIC,
            TMPFS_MAGIC,
            OVERLAYFS_SUPER_MAGIC,
        ]
        .contains(&fs)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;

    #[test]
    fn syncfs_only_where_it_is_known_to_report_errors() {
        use nix::sys::statfs::{EXT4_SUPER_MAGIC, NFS_SUPER_MAGIC, XFS_SUPER_MAGIC};
        assert!(serves("6.18.44-fc-v1045", EXT4_SUPER_MAGIC));
        assert!(serves("5.8.0", XFS_SUPER_MAGIC));
        assert!(!serves("5.4.0-150-generic", EXT4_SUPER_MAGIC));
        assert!(!serves("4.19.0", EXT4_SUPER_MAGIC));
        assert!(!serves("6.1.0", NFS_SUPER_MAGIC));
        assert!(!serves("", EXT4_SUPER_MAGIC));
    }

    static SYNCS: AtomicU64 = AtomicU64::new(0);
    static FAIL_NEXT: AtomicU64 = AtomicU64::new(0);

    fn counted(_: &File) -> std::io::Result<()> {
        SYNCS.fetch_add(1, Ordering::SeqCst);
        // Long enough for the other writers to queue behind this sync.
        std::thread::sleep(std::time::Duration::from_millis(30));
        if FAIL_NEXT.swap(0, Ordering::SeqCst) == 1 {
            return Err(std::io::Error::other("writeback failed"));
        }
        Ok(())
    }

    /// One test for both: the counters are shared.
    #[test]
    fn waiters_share_syncs_and_a_failure_reaches_each_of_its_waiters() {
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

        // A failed sync fails its waiter; the next sync, once it succeeds, does not.
        FAIL_NEXT.store(1, Ordering::SeqCst);
        let e = s.wait(&fs).expect_err("the failed sync is reported");
        assert!(e.to_string().contains("writeback failed"), "{e}");
        s.wait(&fs).expect("a later sync succeeds");

        // A waiter that joined a sync started after the failed one is not failed by it,
        // but one whose sync is the failed one is, even if it wakes after later syncs.
        FAIL_NEXT.store(1, Ordering::SeqCst);
        let (s2, fs2) = (s.clone(), fs.try_clone().expect("dup"));
        let first = std::thread::spawn(move || s2.wait(&fs2));
        std::thread::sleep(std::time::Duration::from_millis(5));
        let second = s.wait(&fs);
        assert!(first.join().expect("first").is_err());
        assert!(second.is_ok(), "the sync after the failure succeeded");

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
        let syncs = || SYNCS.load(Ordering::SeqCst);
        let f = File::create(dir.path().join("a")).expect("create");
        let n = syncs();
        s.file(&f, root_dev).expect("sync");
        assert_eq!(
            syncs(),
            n + 1,
            "a file on the root's device waits for syncfs"
        );
        s.folder(dir.path(), root_dev, Durable::ByNextSync)
            .expect("deferred");
        assert_eq!(
            syncs(),
            n + 1,
            "a table file's rename waits for the next sync"
        );
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
        assert_eq!(syncs(), n + 2, "the deferred rename is synced first");
        s.file(&g, other_dev).expect("sync");
        assert_eq!(
            syncs(),
            n + 2,
            "nothing deferred: the file's own fsync only"
        );
        s.folder(other.path(), other_dev, Durable::ByNextSync)
            .expect("fsynced at once");
        s.file(&g, other_dev).expect("sync");
        assert_eq!(syncs(), n + 2, "a rename on another device is not deferred");
    }
}
