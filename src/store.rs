//! Where tables live: a local directory or an S3 bucket (AWS or any S3-compatible server),
//! behind one small API whose write is atomic and conditional on the version read.
//!
//! The write is a compare-and-swap: `read` returns a [`Tag`], and `write` replaces the object
//! only if it is still at that tag (still absent, for the empty tag); otherwise it returns
//! `Conflict` and leaves the object alone, and the caller merges again from a fresh read. So
//! two runs racing on one partition never lose each other's rows, on either backend.
//!
//! - S3: one PUT with `If-Match: <etag>`, or `If-None-Match: *` to create
//!   (`S3ConditionalPut::ETagMatch`). AWS S3 has honoured both since 2024; so do moto 5.2 (the
//!   loopback server of the tests, checked by the conformance suite in `tests/it/s3.rs`),
//!   Cloudflare R2 and current MinIO. A PUT is all-or-nothing, so a reader sees the old object
//!   or the new one, never a part. A server that ignored the headers would let a stale write
//!   through: use a store that supports conditional writes. (moto checks and stores in two
//!   steps without a lock, so only sequential conflicts are meaningful against it; AWS is
//!   atomic.) Settings come from the usual AWS_* variables (`AmazonS3Builder::from_env`); the
//!   bucket must exist. object_store retries each request a few times (connect errors, 5xx,
//!   429) for at most [`S3_RETRY_TIMEOUT`]; longer outages surface as retryable `Remote`
//!   errors for the caller's own backoff, so the two loops do not multiply into minutes.
//! - Local: object_store's LocalFileSystem neither fsyncs nor supports conditional updates,
//!   so a write is temp file in the same folder → fsync → rename → fsync of the folder, where
//!   both syncs are a `syncfs` shared by every write waiting for one on filesystems known to
//!   honour it, and a table file's rename waits for the next sync of a `_wxcube/` record
//!   (`store/sync.rs`). Where `syncfs` serves, a write runs on the runtime's thread and
//!   awaits its syncs; elsewhere it runs on a blocking thread. The
//!   version check and the rename happen under one short lock for the whole store
//!   (`commit.lock`, held for a stat and a rename: one lock file per object cost an inode
//!   per partition, which ext4 without a journal allocates slowly); the
//!   tag is the file's identity (device, inode, size, mtime), new on every rename. Writers of
//!   one object may also serialise a whole read-modify-write with `lock()`, so on disk a
//!   conflict is the exception, not the rule. Locks live under `_wxcube/locks/`; a store
//!   opens each once and then only flocks it (`store/lock.rs`).

mod cas;
mod lock;
mod sync;
pub use cas::{update_cas, Cas, CAS_ATTEMPTS};
pub use lock::LockGuard;

use std::io::{Read, Write};
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, UpdateVersion};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        source: std::io::Error,
    },
    /// A failure another attempt may fix (network, server errors).
    #[error("{op} {path}: {message}")]
    Remote {
        op: &'static str,
        path: String,
        message: String,
    },
    /// The store refused for a reason a retry will not fix (credentials, missing bucket).
    #[error("{op} {path}: {message}")]
    Refused {
        op: &'static str,
        path: String,
        message: String,
    },
    #[error("{path} was changed by another writer")]
    Conflict { path: String },
    #[error("invalid output uri {uri}: {message}")]
    Uri { uri: String, message: String },
}

impl crate::retry::Retryable for StoreError {
    fn class(&self) -> crate::retry::Class {
        match self.is_retryable() {
            true => crate::retry::Class::Retry,
            false => crate::retry::Class::Fatal,
        }
    }
}

impl StoreError {
    /// Network-ish failures worth another attempt.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Remote { .. })
    }
}

/// How long object_store keeps retrying one S3 request before giving up to the caller.
pub const S3_RETRY_TIMEOUT: Duration = Duration::from_secs(20);
const S3_MAX_RETRIES: usize = 4;

/// The version of an object as read, for a conditional write. The default: it did not exist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tag(Version);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum Version {
    #[default]
    Absent,
    Local(FileId),
    Remote(UpdateVersion),
}

impl Tag {
    /// The store's name for this version: S3's ETag (or version id); none on local disk.
    pub fn etag(&self) -> Option<String> {
        match &self.0 {
            Version::Remote(v) => v.e_tag.clone().or_else(|| v.version.clone()),
            _ => None,
        }
    }
}

/// Identity of one version of a local file: every write renames a new file into place.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct FileId {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

impl FileId {
    fn of(m: &std::fs::Metadata) -> FileId {
        #[cfg(unix)]
        let (dev, ino) = {
            use std::os::unix::fs::MetadataExt;
            (m.dev(), m.ino())
        };
        #[cfg(not(unix))]
        let (dev, ino) = (0, 0);
        let mtime_ns = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(-1);
        FileId {
            dev,
            ino,
            len: m.len(),
            mtime_ns,
        }
    }
}

pub enum Store {
    Local {
        root: PathBuf,
        locks: Arc<lock::Locks>,
        sync: Arc<sync::Syncer>,
    },
    Remote {
        store: Arc<dyn ObjectStore>,
        prefix: ObjPath,
        uri: String,
    },
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn io<'a>(op: &'static str, path: &'a FsPath) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.display().to_string(),
        source,
    }
}

fn joined(op: &'static str, rel: &str) -> impl FnOnce(tokio::task::JoinError) -> StoreError {
    let path = rel.to_string();
    move |e| StoreError::Io {
        op,
        path,
        source: std::io::Error::other(e),
    }
}

/// An object_store error as a `StoreError`, with the hint a user needs and the whole cause
/// chain (object_store's own message stops at "error sending request").
fn remote(op: &'static str, path: String, e: &object_store::Error) -> StoreError {
    use object_store::Error as E;
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let s = c.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cause = c.source();
    }
    // Error bodies are XML documents: one line is enough for a log.
    let text = crate::secret::redact(&text).replace(['\r', '\n'], " ");
    let refused = |message: String| StoreError::Refused {
        op,
        path: path.clone(),
        message,
    };
    match e {
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => refused(format!(
            "S3 refused the credentials: check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN and AWS_REGION ({text})"
        )),
        _ if text.contains("NoSuchBucket") => {
            let bucket = path
                .strip_prefix("s3://")
                .and_then(|p| p.split('/').next())
                .unwrap_or("?");
            refused(format!(
                "bucket {bucket} does not exist: create it first (wxcube does not create buckets)"
            ))
        }
        E::NotSupported { .. }
        | E::NotImplemented { .. }
        | E::InvalidPath { .. }
        | E::UnknownConfigurationKey { .. } => refused(format!("S3 cannot do this ({text})")),
        _ => {
            let hint = if text.contains("error sending request")
                || text.contains("Connect")
                || text.contains("onnection refused")
                || text.contains("timed out")
            {
                "S3 endpoint unreachable"
            } else {
                "S3 request failed"
            };
            StoreError::Remote {
                op,
                path,
                message: format!("{hint}: {text}"),
            }
        }
    }
}

impl Store {
    /// Opens `uri`: `s3://bucket/prefix` (AWS_* environment) or a local path.
    pub fn open(uri: &str) -> Result<Store, StoreError> {
        if let Some(rest) = uri.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let bad = |message: String| StoreError::Uri {
                uri: uri.into(),
                message,
            };
            if bucket.is_empty() {
                return Err(bad("no bucket name (s3://bucket/prefix)".into()));
            }
            let retry = object_store::RetryConfig {
                max_retries: S3_MAX_RETRIES,
                retry_timeout: S3_RETRY_TIMEOUT,
                ..Default::default()
            };
            // After from_env: a conditional PUT is not optional for us (see the module doc).
            let s3 = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_conditional_put(object_store::aws::S3ConditionalPut::ETagMatch)
                .with_retry(retry)
                .build()
                .map_err(|e| bad(crate::secret::redact(&e.to_string())))?;
            let prefix = prefix.trim_matches('/');
            let prefix = ObjPath::parse(prefix).map_err(|e| bad(e.to_string()))?;
            return Ok(Store::Remote {
                store: Arc::new(s3),
                prefix,
                uri: uri.trim_end_matches('/').into(),
            });
        }
        let local = uri.strip_prefix("file://").unwrap_or(uri);
        Ok(Store::Local {
            root: PathBuf::from(local),
            locks: Arc::default(),
            sync: Arc::new(sync::Syncer::new(PathBuf::from(local))),
        })
    }

    pub fn describe(&self, rel: &str) -> String {
        match self {
            Store::Local { root, .. } => root.join(rel).display().to_string(),
            Store::Remote { uri, .. } => format!("{uri}/{rel}"),
        }
    }

    fn obj(prefix: &ObjPath, rel: &str) -> ObjPath {
        let mut p = prefix.clone();
        for part in rel.split('/').filter(|s| !s.is_empty()) {
            p = p.join(part);
        }
        p
    }

    /// Reads an object; `None` if it does not exist.
    pub async fn read(&self, rel: &str) -> Result<Option<(Bytes, Tag)>, StoreError> {
        match self {
            // On a local filesystem, on the runtime's thread: reading a state file or a
            // partition of a few MB costs less than handing it to a blocking thread and
            // waking back (R: ~550 hand-offs a run, −3 % CPU). Larger files, and any file on
            // NFS, FUSE and the like, are read on a blocking thread (writes too, see
            // `write_inline`). The yield keeps a loop of reads from starving the
            // futures it is joined with.
            Store::Local { root, sync, .. } => {
                let path = root.join(rel);
                if !sync.reads_inline() {
                    return tokio::task::spawn_blocking(move || read_whole(&path))
                        .await
                        .map_err(joined("read", rel))?;
                }
                let read = match read_local(&path, INLINE_MAX)? {
                    Opened::Done(r) => r,
                    Opened::Large(f, meta) => {
                        tokio::task::spawn_blocking(move || read_rest(f, &meta, &path))
                            .await
                            .map_err(joined("read", rel))??
                    }
                };
                tokio::task::yield_now().await;
                Ok(read)
            }
            Store::Remote { store, prefix, .. } => {
                let p = Self::obj(prefix, rel);
                let fail = |e: object_store::Error| remote("read", self.describe(rel), &e);
                match store.get(&p).await {
                    Ok(r) => {
                        let tag = UpdateVersion {
                            e_tag: r.meta.e_tag.clone(),
                            version: r.meta.version.clone(),
                        };
                        let bytes = r.bytes().await.map_err(fail)?;
                        Ok(Some((bytes, Tag(Version::Remote(tag)))))
                    }
                    // A missing bucket is also a 404, but not an empty table.
                    Err(e @ object_store::Error::NotFound { .. }) => match fail(e) {
                        refused @ StoreError::Refused { .. } => Err(refused),
                        _ => Ok(None),
                    },
                    Err(e) => Err(fail(e)),
                }
            }
        }
    }

    /// Replaces an object atomically, only if it is still at `tag` (absent, for the default
    /// tag); otherwise `Conflict`, and the object is left as it is.
    pub async fn write(&self, rel: &str, bytes: Bytes, tag: &Tag) -> Result<(), StoreError> {
        self.put(rel, bytes, Some(tag)).await.map(|_| ())
    }

    /// `write`, returning the new version's tag (for change records and lease renewals).
    pub async fn write_tagged(
        &self,
        rel: &str,
        bytes: Bytes,
        tag: &Tag,
    ) -> Result<Tag, StoreError> {
        self.put(rel, bytes, Some(tag)).await
    }

    /// Replaces an object atomically, whatever is there (run reports: each has its own name).
    pub async fn overwrite(&self, rel: &str, bytes: Bytes) -> Result<(), StoreError> {
        self.put(rel, bytes, None).await.map(|_| ())
    }

    /// Makes every rename still left to the next sync durable (local stores; see
    /// `deferrable`): the end of a run, whichever of its writes came last or failed.
    pub async fn settle(&self) -> Result<(), StoreError> {
        match self {
            Store::Local { root, sync, .. } => {
                let (root, sync) = (root.clone(), sync.clone());
                let at = root.display().to_string();
                tokio::task::spawn_blocking(move || sync.settle().map_err(io("fsync", &root)))
                    .await
                    .map_err(joined("fsync", &at))?
            }
            Store::Remote { .. } => Ok(()),
        }
    }

    async fn put(&self, rel: &str, bytes: Bytes, tag: Option<&Tag>) -> Result<Tag, StoreError> {
        match self {
            Store::Local { root, locks, sync } => {
                if sync.served() && bytes.len() as u64 <= INLINE_MAX {
                    return write_inline(root, locks, sync, rel, &bytes, tag.cloned()).await;
                }
                let (root, rel_s, want) = (root.clone(), rel.to_string(), tag.cloned());
                let (locks, sync) = (locks.clone(), sync.clone());
                tokio::task::spawn_blocking(move || {
                    write_local(&root, &locks, &sync, &rel_s, &bytes, want)
                })
                .await
                .map_err(joined("write", rel))?
            }
            Store::Remote { store, prefix, .. } => {
                let p = Self::obj(prefix, rel);
                let mode = match tag.map(|t| &t.0) {
                    None => PutMode::Overwrite,
                    Some(Version::Absent) => PutMode::Create,
                    Some(Version::Remote(v)) => PutMode::Update(v.clone()),
                    Some(Version::Local(_)) => {
                        return Err(StoreError::Conflict {
                            path: self.describe(rel),
                        })
                    }
                };
                let opts = PutOptions {
                    mode,
                    ..Default::default()
                };
                match store.put_opts(&p, bytes.into(), opts).await {
                    Ok(r) => Ok(Tag(Version::Remote(UpdateVersion {
                        e_tag: r.e_tag,
                        version: r.version,
                    }))),
                    // object_store reports If-Match on a vanished object as Precondition too.
                    Err(e @ object_store::Error::Precondition { .. })
                    | Err(e @ object_store::Error::AlreadyExists { .. }) => {
                        match remote("write", self.describe(rel), &e) {
                            refused @ StoreError::Refused { .. } => Err(refused),
                            _ => Err(StoreError::Conflict {
                                path: self.describe(rel),
                            }),
                        }
                    }
                    Err(e) => Err(remote("write", self.describe(rel), &e)),
                }
            }
        }
    }

    /// Deletes an object only if it is still at `tag`; otherwise `Conflict`, and the object
    /// is left as it is. An object already gone is not an error.
    ///
    /// Local: the check and the unlink happen under the commit lock, so no commit of ours
    /// slips between them. S3 has no conditional DELETE that object_store can send: the
    /// version is checked with a HEAD just before an unconditional DELETE, which leaves a
    /// window of one round trip in which another writer's new version would be deleted.
    /// Only quarantine uses this (a file nobody can read, so no other run commits a merge of
    /// it), and the dates are reopened in state before, so even then they are fetched again.
    pub async fn delete_if(&self, rel: &str, tag: &Tag) -> Result<(), StoreError> {
        match self {
            Store::Local { root, locks, sync } => {
                let (root, rel_s, want) = (root.clone(), rel.to_string(), tag.clone());
                let (locks, sync) = (locks.clone(), sync.clone());
                tokio::task::spawn_blocking(move || {
                    delete_local(&root, &locks, &sync, &rel_s, &want)
                })
                .await
                .map_err(joined("delete", rel))?
            }
            Store::Remote { store, prefix, .. } => {
                let p = Self::obj(prefix, rel);
                let conflict = || StoreError::Conflict {
                    path: self.describe(rel),
                };
                let Version::Remote(want) = &tag.0 else {
                    return Err(conflict());
                };
                match store.head(&p).await {
                    Ok(m) if m.e_tag == want.e_tag && m.version == want.version => {}
                    Ok(_) => return Err(conflict()),
                    Err(object_store::Error::NotFound { .. }) => return Ok(()),
                    Err(e) => return Err(remote("delete", self.describe(rel), &e)),
                }
                match store.delete(&p).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(remote("delete", self.describe(rel), &e)),
                }
            }
        }
    }

    /// Relative paths of the objects under `rel_prefix` (whole path segments: `a` lists
    /// `a/x`, not `ab/x`), sorted.
    pub async fn list(&self, rel_prefix: &str) -> Result<Vec<String>, StoreError> {
        match self {
            Store::Local { root, sync, .. } => {
                let base = root.join(rel_prefix);
                let list = |base: &FsPath, root: &FsPath| {
                    let mut out = Vec::new();
                    walk(base, root, &mut out).map_err(io("list", base))?;
                    out.sort();
                    Ok(out)
                };
                if !sync.reads_inline() {
                    let root = root.clone();
                    return tokio::task::spawn_blocking(move || list(&base, &root))
                        .await
                        .map_err(joined("list", rel_prefix))?;
                }
                let out = list(&base, root);
                tokio::task::yield_now().await;
                out
            }
            Store::Remote { store, prefix, .. } => {
                use futures::TryStreamExt;
                let p = Self::obj(prefix, rel_prefix);
                let metas: Vec<_> = store
                    .list(Some(&p))
                    .try_collect()
                    .await
                    .map_err(|e| remote("list", self.describe(rel_prefix), &e))?;
                let strip = format!("{}/", prefix.as_ref());
                let mut out: Vec<String> = metas
                    .into_iter()
                    .map(|m| {
                        let s = m.location.as_ref();
                        s.strip_prefix(&strip).unwrap_or(s).to_string()
                    })
                    .collect();
                out.sort();
                Ok(out)
            }
        }
    }

    /// Serialises local writers of `rel` (across processes and within this one) for a
    /// whole read-modify-write. Remote stores rely on the conditional write alone and get
    /// no lock. (Writers go through `lock_read`; this serves the tests.)
    #[cfg(test)]
    pub async fn lock(&self, rel: &str) -> Result<Option<LockGuard>, StoreError> {
        let Store::Local { root, locks, .. } = self else {
            return Ok(None);
        };
        let (guard, ()) = locks.lock_then(lock_path(root, rel), || Ok(())).await?;
        Ok(Some(guard))
    }

    /// `lock`, then `read`: on disk both in one blocking call.
    pub async fn lock_read(
        &self,
        rel: &str,
    ) -> Result<(Option<LockGuard>, Option<(Bytes, Tag)>), StoreError> {
        let Store::Local { root, locks, .. } = self else {
            return Ok((None, self.read(rel).await?));
        };
        let path = root.join(rel);
        let (guard, read) = locks
            .lock_then(lock_path(root, rel), move || read_whole(&path))
            .await?;
        Ok((Some(guard), read))
    }
}

/// Serialises every local commit's version check and rename, across processes.
const COMMIT_LOCK: &str = "_wxcube/locks/commit.lock";

fn lock_path(root: &FsPath, rel: &str) -> PathBuf {
    root.join("_wxcube/locks")
        .join(format!("{}.lock", rel.replace('/', "~")))
}

/// Creates a file with `create`, making its folder only if it is missing: folders exist
/// on every write but the first, and a `create_dir_all` each time cost a failed mkdir per
/// level (workload R: ~2,000 a run).
fn in_folder<T>(
    path: &FsPath,
    create: impl Fn(&FsPath) -> std::io::Result<T>,
) -> std::io::Result<T> {
    match create(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            create(path)
        }
        r => r,
    }
}

fn is_temp(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
}

fn walk(dir: &FsPath, root: &FsPath, out: &mut Vec<String>) -> std::io::Result<()> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for e in rd {
        let e = e?;
        let p = e.path();
        if e.file_type()?.is_dir() {
            walk(&p, root, out)?;
        } else if is_temp(&e.file_name().to_string_lossy()) {
            // A write in progress (or one a crash left behind) is not an object.
        } else if let Ok(rel) = p.strip_prefix(root) {
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}

/// Largest file read or written on the runtime's thread (see `Store::read`, `write_inline`).
const INLINE_MAX: u64 = 8 << 20;

enum Opened {
    Done(Option<(Bytes, Tag)>),
    /// Opened, over the size given: to be read elsewhere.
    Large(std::fs::File, std::fs::Metadata),
}

fn read_local(path: &FsPath, max: u64) -> Result<Opened, StoreError> {
    // One open file: the bytes and the tag describe the same version even if a writer
    // renames a new one into place meanwhile.
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Opened::Done(None)),
        Err(e) => return Err(io("read", path)(e)),
    };
    let meta = f.metadata().map_err(io("read", path))?;
    if meta.len() > max {
        return Ok(Opened::Large(f, meta));
    }
    read_rest(f, &meta, path).map(Opened::Done)
}

fn read_whole(path: &FsPath) -> Result<Option<(Bytes, Tag)>, StoreError> {
    match read_local(path, u64::MAX)? {
        Opened::Done(r) => Ok(r),
        Opened::Large(f, meta) => read_rest(f, &meta, path),
    }
}

fn read_rest(
    mut f: std::fs::File,
    meta: &std::fs::Metadata,
    path: &FsPath,
) -> Result<Option<(Bytes, Tag)>, StoreError> {
    let mut buf = Vec::with_capacity(meta.len() as usize);
    f.read_to_end(&mut buf).map_err(io("read", path))?;
    Ok(Some((
        Bytes::from(buf),
        Tag(Version::Local(FileId::of(meta))),
    )))
}

fn current_version(path: &FsPath) -> Result<Version, StoreError> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Version::Local(FileId::of(&m))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Version::Absent),
        Err(e) => Err(io("stat", path)(e)),
    }
}

/// Records under `_wxcube/` whose rename may wait for the next sync (see
/// [`sync::Durable::ByNextSync`]). A layout record: every table file written after it is
/// synced before its rename, which makes the record durable first. A state record: its own
/// bytes are synced after the renames it records, and if a crash loses its rename the
/// windows it adds are fetched again (a refetch replaces, never duplicates); a run's last
/// writes (its report, its leases released) are synced at once and so cover it, and a run
/// ends with [`Store::settle`] for whatever is still left. Workload R wrote 21 layouts and
/// 126 states a run, a sync each for the rename alone.
fn deferrable(rel: &str) -> bool {
    rel.starts_with("_wxcube/state/") || rel.starts_with("_wxcube/layout/")
}

/// A local write's temp file, removed when dropped unless renamed into place (a write
/// given up or failed half-way leaves nothing behind).
struct Staged {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<std::fs::File>,
    ours: FileId,
    renamed: bool,
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.renamed {
            drop(self.file.take());
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

impl Staged {
    /// Writes `bytes` to a temp file beside `rel`'s (not yet synced).
    fn new(root: &FsPath, rel: &str, bytes: &[u8]) -> Result<Staged, StoreError> {
        let path = root.join(rel);
        let dir = path.parent().unwrap_or(FsPath::new("."));
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
        let mut f = in_folder(&tmp, |p| std::fs::File::create(p)).map_err(io("create", &tmp))?;
        let mut staged = Staged {
            path,
            tmp,
            file: None,
            ours: FileId::default(),
            renamed: false,
        };
        f.write_all(bytes).map_err(io("write", &staged.tmp))?;
        // The new version is this file (a rename keeps its identity); a stat of the path
        // after the rename could see a later writer's file.
        staged.ours = FileId::of(&f.metadata().map_err(io("stat", &staged.tmp))?);
        staged.file = Some(f);
        Ok(staged)
    }

    fn dir(&self) -> &FsPath {
        self.path.parent().unwrap_or(FsPath::new("."))
    }

    /// Renames the temp file into place if the object is still at `want`; the caller holds
    /// the commit lock.
    fn swap(&mut self, want: &Option<Tag>) -> Result<(), StoreError> {
        if let Some(want) = want {
            if current_version(&self.path)? != want.0 {
                return Err(StoreError::Conflict {
                    path: self.path.display().to_string(),
                });
            }
        }
        std::fs::rename(&self.tmp, &self.path).map_err(io("rename", &self.path))?;
        self.renamed = true;
        Ok(())
    }
}

/// How durable a write's rename must be before the write returns (see `deferrable`).
fn rename_durable(rel: &str) -> sync::Durable {
    if rel.starts_with("_wxcube/") && !deferrable(rel) {
        sync::Durable::Now
    } else {
        sync::Durable::ByNextSync
    }
}

/// A local write on a blocking thread: temp file, its sync, the checked rename, the
/// folder's sync.
fn write_local(
    root: &FsPath,
    locks: &lock::Locks,
    sync: &sync::Syncer,
    rel: &str,
    bytes: &[u8],
    want: Option<Tag>,
) -> Result<Tag, StoreError> {
    let staged = Staged::new(root, rel, bytes)?;
    finish_local(root, locks, sync, rel, staged, want)
}

/// The rest of `write_local` once the temp file is written.
fn finish_local(
    root: &FsPath,
    locks: &lock::Locks,
    sync: &sync::Syncer,
    rel: &str,
    mut staged: Staged,
    want: Option<Tag>,
) -> Result<Tag, StoreError> {
    let dev = staged.ours.dev;
    if let Some(f) = staged.file.take() {
        sync.file(&f, dev).map_err(io("fsync", &staged.tmp))?;
    }
    {
        // Check and swap under one lock; held only for a stat and a rename.
        let _guard = locks.commit(&root.join(COMMIT_LOCK))?;
        staged.swap(&want)?;
    }
    // The rename is durable only once the folder is synced. It is visible already, so a
    // failure here is not the write's: the next sync retries it.
    let _ = sync.folder(staged.dir(), dev, rename_durable(rel));
    Ok(Tag(Version::Local(staged.ours.clone())))
}

/// A local write where `syncfs` serves the store, on the runtime's thread: the temp file is
/// written in the page cache, the syncs are awaited (`Syncer::wait_async`), and the rename
/// takes the commit lock at once when it is free. Only a contended lock, or a file on
/// another device (fsynced on its own), goes to a blocking thread; a file larger than
/// `INLINE_MAX` is written on one from the start (`Store::put`). Workload R: ~300
/// writes a run, each a hand-off to a blocking thread and back, and a thread parked while
/// it waited for its sync.
async fn write_inline(
    root: &FsPath,
    locks: &Arc<lock::Locks>,
    sync: &Arc<sync::Syncer>,
    rel: &str,
    bytes: &[u8],
    want: Option<Tag>,
) -> Result<Tag, StoreError> {
    let mut staged = Staged::new(root, rel, bytes)?;
    let dev = staged.ours.dev;
    if !sync.shares(dev) {
        let (root, locks, sync, rel_s) = (
            root.to_path_buf(),
            locks.clone(),
            sync.clone(),
            rel.to_string(),
        );
        return tokio::task::spawn_blocking(move || {
            finish_local(&root, &locks, &sync, &rel_s, staged, want)
        })
        .await
        .map_err(joined("write", rel))?;
    }
    drop(staged.file.take());
    sync.wait_async().await.map_err(io("fsync", &staged.tmp))?;
    let lock = root.join(COMMIT_LOCK);
    // The guard lives only inside the match: a lock held across an await would make the
    // write's future not `Send`.
    let swapped = match locks.try_commit(&lock)? {
        Some(_guard) => {
            staged.swap(&want)?;
            true
        }
        None => false,
    };
    if !swapped {
        // Another writer holds the lock (a commit of another process): wait off the runtime.
        let locks = locks.clone();
        staged = tokio::task::spawn_blocking(move || {
            let _guard = locks.commit(&lock)?;
            staged.swap(&want).map(|()| staged)
        })
        .await
        .map_err(joined("write", rel))??;
    }
    // As in `finish_local`: a failure to make the rename durable is not the write's.
    match rename_durable(rel) {
        sync::Durable::Now => {
            let _ = sync.wait_async().await;
        }
        deferred => {
            let _ = sync.folder(staged.dir(), dev, deferred);
        }
    }
    Ok(Tag(Version::Local(staged.ours.clone())))
}

fn delete_local(
    root: &FsPath,
    locks: &lock::Locks,
    sync: &sync::Syncer,
    rel: &str,
    want: &Tag,
) -> Result<(), StoreError> {
    let path = root.join(rel);
    {
        let _guard = locks.commit(&root.join(COMMIT_LOCK))?;
        match current_version(&path)? {
            Version::Absent => return Ok(()),
            v if v != want.0 => {
                return Err(StoreError::Conflict {
                    path: path.display().to_string(),
                })
            }
            _ => {}
        }
        std::fs::remove_file(&path).map_err(io("delete", &path))?;
    }
    if let Some(dir) = path.parent() {
        // The folder's device: the path may have been a link to another.
        if let Ok(m) = std::fs::metadata(dir) {
            let _ = sync.folder(dir, FileId::of(&m).dev, sync::Durable::Now);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_reads_small_and_large_files_whole_with_their_tag() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path().to_str().unwrap()).unwrap();
        for (rel, len) in [("t/small", 1000), ("t/large", INLINE_MAX as usize + 1)] {
            let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let tag = s
                .write_tagged(rel, Bytes::from(bytes.clone()), &Tag::default())
                .await
                .unwrap();
            let (b, t) = s.read(rel).await.unwrap().unwrap();
            assert_eq!(b.len(), len, "{rel}");
            assert!(b[..] == bytes[..], "{rel}: bytes as written");
            assert_eq!(t, tag, "{rel}: the tag of the version written");
        }
    }

    #[tokio::test]
    async fn local_roundtrip_list_and_no_temp_left() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path().to_str().unwrap()).unwrap();
        assert!(s.read("a/b/data.parquet").await.unwrap().is_none());
        overwrite(&s, "a/b/data.parquet").await;
        let (b, _) = s.read("a/b/data.parquet").await.unwrap().unwrap();
        assert_eq!(&b[..], b"two");
        assert_eq!(
            s.list("a").await.unwrap(),
            vec!["a/b/data.parquet".to_string()]
        );
        let _g = s.lock("a/b/data.parquet").await.unwrap();
        assert_eq!(
            s.list("a").await.unwrap().len(),
            1,
            "locks live under _wxcube, not in tables"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path().join("a/b"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec!["data.parquet"], "no temp file left behind");
    }

    /// A write on the runtime's thread finds the commit lock held by another process: it
    /// waits for it off the runtime (other futures go on), renames once it is free, and
    /// leaves no temp file.
    #[tokio::test(flavor = "current_thread")]
    async fn a_local_write_waits_off_the_runtime_for_a_commit_lock_held_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(Store::open(dir.path().to_str().unwrap()).unwrap());
        s.overwrite("t/a", Bytes::from_static(b"first"))
            .await
            .unwrap();
        let Store::Local { sync, .. } = &*s else {
            unreachable!("a local store")
        };
        if !sync.served() {
            eprintln!("syncfs does not serve the temp folder: writes take the blocking path");
            return;
        }
        // Another open file of the lock: flock excludes it like another process's.
        let other = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join(COMMIT_LOCK))
            .unwrap();
        other.lock().unwrap();
        let write = tokio::spawn({
            let s = s.clone();
            async move { s.overwrite("t/b", Bytes::from_static(b"second")).await }
        });
        // The runtime's one thread is free while the write waits (not a timed assertion:
        // the write cannot finish before the lock is released, however long this takes).
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(!write.is_finished(), "the write waited for the lock");
        assert!(
            s.read("t/b").await.unwrap().is_none(),
            "nothing renamed yet"
        );
        other.unlock().unwrap();
        write.await.unwrap().unwrap();
        let (b, _) = s.read("t/b").await.unwrap().unwrap();
        assert_eq!(&b[..], b"second");
        let mut left: Vec<_> = std::fs::read_dir(dir.path().join("t"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["a", "b"], "no temp file left behind");
    }

    /// A write given up before its rename (its future dropped while it waits for its
    /// sync) leaves neither the object nor its temp file.
    #[tokio::test(flavor = "current_thread")]
    async fn a_local_write_given_up_before_its_rename_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path().to_str().unwrap()).unwrap();
        s.overwrite("t/a", Bytes::from_static(b"first"))
            .await
            .unwrap();
        let Store::Local { sync, .. } = &s else {
            unreachable!("a local store")
        };
        if !sync.served() {
            eprintln!("syncfs does not serve the temp folder: writes take the blocking path");
            return;
        }
        let names = || {
            let mut n: Vec<_> = std::fs::read_dir(dir.path().join("t"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            n.sort();
            n
        };
        let mut write = Box::pin(s.overwrite("t/b", Bytes::from_static(b"second")));
        assert!(
            futures::poll!(write.as_mut()).is_pending(),
            "waits for its sync"
        );
        assert_eq!(names().len(), 2, "the temp file is written: {:?}", names());
        drop(write);
        assert_eq!(names(), ["a"], "no object and no temp file");
    }

    /// Writes `key` as "one", then as "two" at the tag read: returns the tag of "one".
    async fn overwrite(s: &Store, key: &str) -> Tag {
        s.write(key, Bytes::from_static(b"one"), &Tag::default())
            .await
            .unwrap();
        let (_, stale) = s.read(key).await.unwrap().unwrap();
        s.write(key, Bytes::from_static(b"two"), &stale)
            .await
            .unwrap();
        stale
    }

    #[tokio::test]
    async fn local_stale_tag_conflicts_and_keeps_the_newer_file() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path().to_str().unwrap()).unwrap();
        let stale = overwrite(&s, "k").await;
        let e = s.write("k", Bytes::from_static(b"three"), &stale).await;
        assert!(matches!(e, Err(StoreError::Conflict { .. })), "{e:?}");
        let e = s
            .write("k", Bytes::from_static(b"four"), &Tag::default())
            .await;
        assert!(matches!(e, Err(StoreError::Conflict { .. })), "{e:?}");
        assert_eq!(&s.read("k").await.unwrap().unwrap().0[..], b"two");
        // The tag a write returns is the version a read then sees, and writes on from it.
        let (_, now) = s.read("k").await.unwrap().unwrap();
        let t = s
            .write_tagged("k", Bytes::from_static(b"five"), &now)
            .await
            .unwrap();
        assert_eq!(s.read("k").await.unwrap().unwrap().1 .0, t.0);
        s.write("k", Bytes::from_static(b"six"), &t).await.unwrap();
    }

    #[tokio::test]
    async fn local_delete_if_only_at_the_version_read() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path().to_str().unwrap()).unwrap();
        let stale = overwrite(&s, "k").await;
        let e = s.delete_if("k", &stale).await;
        assert!(matches!(e, Err(StoreError::Conflict { .. })), "{e:?}");
        let (_, now) = s.read("k").await.unwrap().unwrap();
        s.delete_if("k", &now).await.unwrap();
        assert!(s.read("k").await.unwrap().is_none());
        s.delete_if("k", &now).await.unwrap();
    }

    #[test]
    fn s3_uri_needs_a_bucket() {
        assert!(matches!(
            Store::open("s3:///prefix"),
            Err(StoreError::Uri { .. })
        ));
    }
}
