//! The one compare-and-swap loop: read an object, decide its new bytes, write them only if
//! it is still the version read, else read again (every read-modify-write of a table
//! partition or a state document goes through [`update_cas`]).

use std::future::Future;

use bytes::Bytes;

use super::{Store, StoreError, Tag};

/// Reads of one object a compare-and-swap update makes before it gives up with `Conflict`:
/// each retry means another writer committed in between, so this many in a row is a
/// writer that never lets go, not bad luck.
pub const CAS_ATTEMPTS: usize = 16;

/// What one attempt decided from the object as read.
pub enum Cas<T> {
    /// Replace it with these bytes (if it is still the version read), then return `T`.
    Write(Bytes, T),
    /// Leave it as it is and return `T`.
    Keep(T),
    /// It changed while deciding (a conditional step of the decision lost): read again.
    Again,
}

/// Read-modify-write of `rel`, safe against a concurrent writer on either backend. `decide`
/// gets the object as read (`None`: absent); the new version's tag comes back with `T` when
/// it wrote. The first attempt takes no lock: the version check at the write is what makes
/// it safe, and writers of one object rarely meet (accounts are leased), while a lock file
/// per object cost an inode, an open and a flock per commit (workload R: 361 a run). Once
/// an attempt has lost, local writers of `rel` are serialised by the store's lock for the
/// rest of the update, so a contended object is not re-merged over and over.
pub async fn update_cas<T, E, F, Fut>(
    store: &Store,
    rel: &str,
    mut decide: F,
) -> Result<(T, Option<Tag>), E>
where
    F: FnMut(Option<(Bytes, Tag)>) -> Fut,
    Fut: Future<Output = Result<Cas<T>, E>>,
    E: From<StoreError>,
{
    let mut first = Some(store.read(rel).await?);
    let mut guard = None;
    for _ in 0..CAS_ATTEMPTS {
        let read = match first.take() {
            Some(read) => read,
            // The lock and the read after it come in one blocking call on disk.
            None if guard.is_none() => {
                let (g, read) = store.lock_read(rel).await?;
                guard = Some(g);
                read
            }
            None => store.read(rel).await?,
        };
        let tag = read.as_ref().map(|(_, t)| t.clone()).unwrap_or_default();
        match decide(read).await? {
            Cas::Keep(v) => return Ok((v, None)),
            Cas::Again => continue,
            Cas::Write(bytes, v) => match store.write_tagged(rel, bytes, &tag).await {
                Ok(t) => return Ok((v, Some(t))),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            },
        }
    }
    Err(StoreError::Conflict {
        path: store.describe(rel),
    }
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Another writer commits between our read and write: the update reads again and
    /// applies its change on top, so neither write is lost.
    #[tokio::test]
    async fn a_write_that_lost_the_race_is_redone_on_the_new_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path().to_str().expect("utf8")).expect("store");
        let other = Store::open(dir.path().to_str().expect("utf8")).expect("store");
        let lock_file = dir.path().join("_wxcube/locks/x.lock");
        let mut reads = Vec::new();
        let mut locked = Vec::new();
        let (n, tag) = update_cas::<_, StoreError, _, _>(&store, "x", |read| {
            let seen = read.map(|(b, _)| b);
            reads.push(seen.clone());
            let other = &other;
            let first = reads.len() == 1;
            // Optimistic first, then under the object's lock once it has lost.
            locked.push(!lock_free(&lock_file));
            async move {
                if first {
                    // The rival writes after our read.
                    other.overwrite("x", Bytes::from_static(b"a")).await?;
                }
                let mut v = seen.map(|b| b.to_vec()).unwrap_or_default();
                v.push(b'b');
                Ok(Cas::Write(Bytes::from(v), 7))
            }
        })
        .await
        .expect("update");
        assert_eq!(n, 7);
        assert!(tag.is_some());
        assert_eq!(reads, [None, Some(Bytes::from_static(b"a"))]);
        assert_eq!(locked, [false, true]);
        assert!(lock_free(&lock_file), "released with the update");
        let (bytes, _) = store.read("x").await.expect("read").expect("file");
        assert_eq!(bytes, Bytes::from_static(b"ab"));
    }

    /// Whether another process could take the lock file now (absent: nobody holds it).
    fn lock_free(path: &std::path::Path) -> bool {
        match std::fs::File::open(path) {
            Ok(f) => f.try_lock().is_ok(),
            Err(_) => true,
        }
    }

    #[tokio::test]
    async fn keep_writes_nothing_and_again_gives_up_after_the_attempts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path().to_str().expect("utf8")).expect("store");
        let (v, tag) =
            update_cas::<_, StoreError, _, _>(&store, "y", |_| async { Ok(Cas::Keep(1)) })
                .await
                .expect("keep");
        assert_eq!((v, tag), (1, None));
        assert!(store.read("y").await.expect("read").is_none());
        let mut tries = 0;
        let e = update_cas::<(), StoreError, _, _>(&store, "y", |_| {
            tries += 1;
            async { Ok(Cas::Again) }
        })
        .await;
        assert!(matches!(e, Err(StoreError::Conflict { .. })), "{e:?}");
        assert_eq!(tries, CAS_ATTEMPTS);
    }
}
