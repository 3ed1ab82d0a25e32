//! One partition's commit: read what is there, keep the rows outside the windows fetched (or
//! whose key was not fetched), add the fresh rows, write one sorted file if the partition is
//! still the version read; a file that cannot merge is quarantined (see the module `load`).

use arrow::array::{BooleanArray, RecordBatch};
use arrow::compute::{concat_batches, filter_record_batch};
use bytes::Bytes;

use super::file::{decode_file, merge_encode, Fresh};
use super::keyed::{dedupe_by_key, key_rows};
use super::partition::{ref_dates, sort};
use super::LoadError;
use crate::catalog::{from_date32, schema};
use crate::catalog::{Replace, Report};
use crate::changes::Committed;
use crate::extract::RetryPolicy;
use crate::hive::{file_rel, partition_dates};
use crate::pipeline::Compression;
use crate::store::{update_cas, Cas, Store, StoreError, Tag};
use crate::window::Window;

/// Rewrites one partition: old rows outside `windows` + `fresh`, sorted, atomically.
pub async fn commit_partition(
    store: &Store,
    report: &'static Report,
    account: &str,
    part: &str,
    windows: &[Window],
    fresh: &[RecordBatch],
    compression: Compression,
) -> Result<Committed, LoadError> {
    let fresh: Vec<Fresh> = fresh.iter().cloned().map(Fresh::Batch).collect();
    commit_fresh(store, report, account, part, windows, &fresh, compression).await
}

/// `commit_partition` for buffered windows, decoded or packed.
pub async fn commit_fresh(
    store: &Store,
    report: &'static Report,
    account: &str,
    part: &str,
    windows: &[Window],
    fresh: &[Fresh],
    compression: Compression,
) -> Result<Committed, LoadError> {
    let rel = file_rel(report.id, account, part);
    let target = schema(report);
    let by_key = report.replace() == Replace::ByKey;
    // Rows replaced by key: the fresh rows, each key once (overlapping windows may both
    // return the same half-month), and the set of keys they replace.
    let (fresh_keyed, fresh_keys) = if by_key {
        let mut batches = Vec::with_capacity(fresh.len());
        for f in fresh {
            let runs = f.runs(report).map_err(|e| e.at(store.describe(&rel)))?;
            batches.extend(runs.into_iter().map(|(_, b)| b));
        }
        let all = concat_batches(&target, &batches)?;
        let (rows, keys) = dedupe_by_key(report, &all)?;
        (vec![rows], keys)
    } else {
        (Vec::new(), std::collections::HashSet::new())
    };
    let (target, fresh_keyed, fresh_keys, rel_ref) = (&target, &fresh_keyed, &fresh_keys, &rel);
    // A conflict means another run committed between our read and write: merge again.
    let ((rows, n), tag) =
        update_cas::<_, LoadError, _, _>(store, &rel, move |existing| async move {
            // A new partition written as it streamed in is already the file.
            if let (None, false, [Fresh::File { bytes, rows, .. }]) = (&existing, by_key, fresh) {
                return Ok(Cas::Write(bytes.clone(), (*rows, bytes.len())));
            }
            let mut parts: Vec<RecordBatch> = Vec::new();
            if let Some((bytes, tag)) = existing {
                let Some(old) =
                    stored_rows(store, report, (account, part), target, bytes, &tag).await?
                else {
                    return Ok(Cas::Again);
                };
                for b in old {
                    let dates = ref_dates(&b);
                    let old_keys = if by_key {
                        Some(key_rows(report, &b)?)
                    } else {
                        None
                    };
                    let keep: BooleanArray = (0..b.num_rows())
                        .map(|i| {
                            let d = from_date32(dates.value(i));
                            let replaced = match &old_keys {
                                Some(k) => fresh_keys.contains(k.row(i).as_ref()),
                                None => false,
                            };
                            Some(!replaced && !windows.iter().any(|w| w.contains(d)))
                        })
                        .collect();
                    let kept = filter_record_batch(&b, &keep)?;
                    if kept.num_rows() > 0 {
                        parts.push(kept);
                    }
                }
            }
            if by_key {
                // Keyed rows can interleave with kept ones at any date: the plain merge.
                parts.extend(fresh_keyed.iter().cloned());
                let merged = concat_batches(target, &parts)?;
                let sorted = sort(report, &merged)?;
                parts = vec![sorted];
            }
            let fresh_for_merge: &[Fresh] = if by_key { &[] } else { fresh };
            let (bytes, rows) = merge_encode(report, target, parts, fresh_for_merge, compression)
                .map_err(|e| e.at(store.describe(rel_ref)))?;
            let n = bytes.len();
            Ok(Cas::Write(bytes, (rows, n)))
        })
        .await?;
    Ok(Committed {
        rows,
        bytes: n,
        etag: tag.and_then(|t| t.etag()),
    })
}

/// The rows of an existing file in the table's schema, or why the file cannot merge.
fn existing_rows(
    report: &Report,
    target: &arrow::datatypes::SchemaRef,
    bytes: Bytes,
) -> Result<Vec<RecordBatch>, String> {
    let old = decode_file(bytes).map_err(|e| format!("it is not a readable Parquet file ({e})"))?;
    old.iter()
        .map(|b| crate::compat::conform(report, target, b))
        .collect()
}

/// The rows of a partition's file as read; a file that cannot merge is quarantined and its
/// error returned. `None`: the file changed since it was read, read it again.
pub(crate) async fn stored_rows(
    store: &Store,
    report: &'static Report,
    (account, part): (&str, &str),
    target: &arrow::datatypes::SchemaRef,
    bytes: Bytes,
    tag: &Tag,
) -> Result<Option<Vec<RecordBatch>>, LoadError> {
    match existing_rows(report, target, bytes.clone()) {
        Ok(old) => Ok(Some(old)),
        Err(reason) => match quarantine(store, report, account, part, &bytes, tag, reason).await {
            Err(LoadError::Store(StoreError::Conflict { .. })) => Ok(None),
            Ok(e) | Err(e) => Err(e),
        },
    }
}

/// Moves a file that cannot merge out of the table (see the module doc) and returns the
/// error that says so. `Err(Conflict)`: the file changed since it was read; read it again.
async fn quarantine(
    store: &Store,
    report: &'static Report,
    account: &str,
    part: &str,
    bytes: &Bytes,
    tag: &Tag,
    reason: String,
) -> Result<LoadError, LoadError> {
    let rel = file_rel(report.id, account, part);
    let Some((mut begin, end)) = partition_dates(part) else {
        return Err(LoadError::Schema {
            path: store.describe(&rel),
            report: report.id,
            reason,
        });
    };
    match report.replace() {
        // Rows dated by update: a half-month settles ~10-25 days before its row's date.
        Replace::ByKey => begin -= chrono::Duration::days(31),
        Replace::ByDate => {}
    }
    let stamp = format!(
        "{}-{:08x}",
        crate::clock::utc().format("%Y%m%dT%H%M%S%.3fZ"),
        std::process::id()
    );
    let dest = format!("_wxcube/quarantine/{stamp}/{rel}");
    // Copy first: the original goes only once the copy is stored.
    match store.write(&dest, bytes.clone(), &Default::default()).await {
        Ok(()) => {}
        Err(StoreError::Conflict { .. }) => {
            let same = store.read(&dest).await?.is_some_and(|(b, _)| b == *bytes);
            if !same {
                return Err(StoreError::Conflict {
                    path: store.describe(&dest),
                }
                .into());
            }
        }
        Err(e) => return Err(e.into()),
    }
    // Reopen before deleting: a failure in between costs a re-fetch, never a lost date.
    crate::state::update(store, report.id, account, |st| st.reopen(begin, end)).await?;
    store.delete_if(&rel, tag).await?;
    tracing::error!(report = report.id, account, partition = part, moved_to = %store.describe(&dest), reason = %reason, "file cannot merge: quarantined");
    Ok(LoadError::Quarantined {
        path: store.describe(&rel),
        moved_to: store.describe(&dest),
        reason,
        report: report.id,
        begin,
        end,
    })
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn commit_with_retry(
    store: &Store,
    report: &'static Report,
    account: &str,
    part: &str,
    windows: &[Window],
    rows: &[Fresh],
    compression: Compression,
    retry: &RetryPolicy,
) -> Result<Committed, LoadError> {
    let jitter = crate::retry::Jitter::new(0x5eed);
    crate::retry::retry_fn(
        retry.schedule(retry.attempts, 0, &jitter),
        |_| commit_fresh(store, report, account, part, windows, rows, compression),
        |e, attempt| tracing::warn!(account, report = report.id, partition = part, attempt, error = %e, "commit failed, retrying"),
    )
    .await
}
