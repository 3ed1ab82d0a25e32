//! Where tables live: a local directory or an object store (S3), behind one small API with
//! an atomic, conditional whole-object write.
//!
//! Local writes do not go through object_store's LocalFileSystem: it neither fsyncs nor
//! supports conditional updates. Here a local write is temp file in the same folder → fsync →
//! rename → fsync of the folder, and writers of the same object serialise on an advisory
//! lock kept under `_wxcube/locks/`, so two runs never lose each other's rows. On S3 the
//! write is one PUT conditional on the ETag read (or on absence), and a conflict is retried
//! by the caller from a fresh read.

use std::io::Write;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

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
    #[error("{op} {path}: {message}")]
    Remote {
        op: &'static str,
        path: String,
        message: String,
    },
    #[error("{path} was changed by another writer")]
    Conflict { path: String },
    #[error("invalid output uri {uri}: {message}")]
    Uri { uri: String, message: String },
}

impl StoreError {
    /// Network-ish failures worth another attempt.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Remote { .. })
    }
}

/// The version of an object as read, for a conditional write. `None`: it did not exist.
#[derive(Debug, Clone, Default)]
pub struct Tag(Option<UpdateVersion>);

pub enum Store {
    Local {
        root: PathBuf,
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

impl Store {
    /// Opens `uri`: `s3://bucket/prefix` (AWS_* environment) or a local path.
    pub fn open(uri: &str) -> Result<Store, StoreError> {
        if let Some(rest) = uri.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let s3 = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_conditional_put(object_store::aws::S3ConditionalPut::ETagMatch)
                .build()
                .map_err(|e| StoreError::Uri {
                    uri: uri.into(),
                    message: e.to_string(),
                })?;
            return Ok(Store::Remote {
                store: Arc::new(s3),
                prefix: ObjPath::from(prefix.trim_end_matches('/')),
                uri: uri.trim_end_matches('/').into(),
            });
        }
        let local = uri.strip_prefix("file://").unwrap_or(uri);
        Ok(Store::Local {
            root: PathBuf::from(local),
        })
    }

    pub fn describe(&self, rel: &str) -> String {
        match self {
            Store::Local { root } => root.join(rel).display().to_string(),
            Store::Remote { uri, .. } => format!("{uri}/{rel}"),
        }
    }

    fn obj(&self, prefix: &ObjPath, rel: &str) -> ObjPath {
        let mut p = prefix.clone();
        for part in rel.split('/').filter(|s| !s.is_empty()) {
            p = p.clone().join(part);
        }
        p
    }

    /// Reads an object; `None` if it does not exist.
    pub async fn read(&self, rel: &str) -> Result<Option<(Bytes, Tag)>, StoreError> {
        match self {
            Store::Local { root } => {
                let path = root.join(rel);
                match tokio::fs::read(&path).await {
                    Ok(b) => Ok(Some((Bytes::from(b), Tag(None)))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(io("read", &path)(e)),
                }
            }
            Store::Remote { store, prefix, .. } => {
                let p = self.obj(prefix, rel);
                let remote = |e: object_store::Error| StoreError::Remote {
                    op: "read",
                    path: self.describe(rel),
                    message: crate::secret::redact(&e.to_string()),
                };
                match store.get(&p).await {
                    Ok(r) => {
                        let tag = UpdateVersion {
                            e_tag: r.meta.e_tag.clone(),
                            version: r.meta.version.clone(),
                        };
                        let bytes = r.bytes().await.map_err(remote)?;
                        Ok(Some((bytes, Tag(Some(tag)))))
                    }
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(remote(e)),
                }
            }
        }
    }

    /// Writes an object atomically. Remote: only if it is still at `tag` (absent if the tag is
    /// empty), else `Conflict`. Local: callers hold `lock()` for the read-modify-write.
    pub async fn write(&self, rel: &str, bytes: Bytes, tag: &Tag) -> Result<(), StoreError> {
        match self {
            Store::Local { root } => {
                let path = root.join(rel);
                tokio::task::spawn_blocking(move || write_local(&path, &bytes))
                    .await
                    .map_err(|e| StoreError::Io {
                        op: "write",
                        path: rel.into(),
                        source: std::io::Error::other(e),
                    })?
            }
            Store::Remote { store, prefix, .. } => {
                let p = self.obj(prefix, rel);
                let mode = match &tag.0 {
                    Some(v) => PutMode::Update(v.clone()),
                    None => PutMode::Create,
                };
                let opts = PutOptions {
                    mode,
                    ..Default::default()
                };
                match store.put_opts(&p, bytes.into(), opts).await {
                    Ok(_) => Ok(()),
                    Err(object_store::Error::Precondition { .. })
                    | Err(object_store::Error::AlreadyExists { .. }) => Err(StoreError::Conflict {
                        path: self.describe(rel),
                    }),
                    Err(e) => Err(StoreError::Remote {
                        op: "write",
                        path: self.describe(rel),
                        message: crate::secret::redact(&e.to_string()),
                    }),
                }
            }
        }
    }

    /// Writes unconditionally (run reports: each has its own name).
    pub async fn overwrite(&self, rel: &str, bytes: Bytes) -> Result<(), StoreError> {
        match self {
            Store::Local { .. } => self.write(rel, bytes, &Tag(None)).await,
            Store::Remote { store, prefix, .. } => {
                let p = self.obj(prefix, rel);
                store
                    .put(&p, bytes.into())
                    .await
                    .map(|_| ())
                    .map_err(|e| StoreError::Remote {
                        op: "write",
                        path: self.describe(rel),
                        message: crate::secret::redact(&e.to_string()),
                    })
            }
        }
    }

    /// Relative paths of the objects under `rel_prefix`.
    pub async fn list(&self, rel_prefix: &str) -> Result<Vec<String>, StoreError> {
        match self {
            Store::Local { root } => {
                let base = root.join(rel_prefix);
                let root = root.clone();
                tokio::task::spawn_blocking(move || {
                    let mut out = Vec::new();
                    walk(&base, &root, &mut out).map_err(io("list", &base))?;
                    out.sort();
                    Ok(out)
                })
                .await
                .map_err(|e| StoreError::Io {
                    op: "list",
                    path: rel_prefix.into(),
                    source: std::io::Error::other(e),
                })?
            }
            Store::Remote { store, prefix, .. } => {
                use futures::TryStreamExt;
                let p = self.obj(prefix, rel_prefix);
                let metas: Vec<_> =
                    store
                        .list(Some(&p))
                        .try_collect()
                        .await
                        .map_err(|e| StoreError::Remote {
                            op: "list",
                            path: self.describe(rel_prefix),
                            message: crate::secret::redact(&e.to_string()),
                        })?;
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

    /// Serialises local writers of `rel` (across processes). Remote stores rely on the
    /// conditional write instead and get no lock.
    pub async fn lock(&self, rel: &str) -> Result<Option<std::fs::File>, StoreError> {
        let Store::Local { root } = self else {
            return Ok(None);
        };
        let path = root
            .join("_wxcube/locks")
            .join(format!("{}.lock", rel.replace('/', "~")));
        tokio::task::spawn_blocking(move || {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io("create", dir))?;
            }
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(io("open", &path))?;
            f.lock().map_err(io("lock", &path))?;
            Ok(Some(f))
        })
        .await
        .map_err(|e| StoreError::Io {
            op: "lock",
            path: rel.into(),
            source: std::io::Error::other(e),
        })?
    }
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
        } else if let Ok(rel) = p.strip_prefix(root) {
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}

fn write_local(path: &FsPath, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(FsPath::new("."));
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(io("create", &tmp))?;
        f.write_all(bytes).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("fsync", &tmp))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(io("rename", path))?;
        // The rename is durable only once the folder is synced.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_roundtrip_list_and_no_temp_left() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path().to_str().unwrap()).unwrap();
        assert!(s.read("a/b/data.parquet").await.unwrap().is_none());
        s.write(
            "a/b/data.parquet",
            Bytes::from_static(b"one"),
            &Tag::default(),
        )
        .await
        .unwrap();
        s.write(
            "a/b/data.parquet",
            Bytes::from_static(b"two"),
            &Tag::default(),
        )
        .await
        .unwrap();
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
    }
}
