//! Reports replaced by natural key (`catalog::Replace::ByKey`, ad_settlement): rows dated
//! by update, each committed into the partition of its own date, and every fetched key
//! dropped from the partitions that no longer hold it.

use std::collections::{BTreeMap, HashSet};

use arrow::array::{BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;

use super::commit::{commit_with_retry, stored_rows};
use super::file::{merge_encode, Fresh};
use super::partition::split;
use super::LoadError;
use crate::catalog::schema;
use crate::catalog::Report;
use crate::changes;
use crate::changes::Committed;
use crate::extract::RetryPolicy;
use crate::hive::file_rel;
use crate::pipeline::{Compression, Partition};
use crate::store::{update_cas, Cas, Store};

/// The natural key of every row, in arrow's row format (comparable bytes).
pub(crate) fn key_rows(report: &Report, b: &RecordBatch) -> Result<arrow::row::Rows, LoadError> {
    let cols: Vec<_> = report
        .key
        .iter()
        .filter_map(|k| b.column_by_name(k))
        .cloned()
        .collect();
    let fields = cols
        .iter()
        .map(|c| arrow::row::SortField::new(c.data_type().clone()))
        .collect();
    let conv = arrow::row::RowConverter::new(fields)?;
    Ok(conv.convert_columns(&cols)?)
}

/// The natural keys of a set of batches (arrow row format bytes).
pub fn keys_of(report: &Report, batches: &[RecordBatch]) -> Result<HashSet<Vec<u8>>, LoadError> {
    let mut out = std::collections::HashSet::new();
    for b in batches {
        let rows = key_rows(report, b)?;
        for i in 0..b.num_rows() {
            out.insert(rows.row(i).as_ref().to_vec());
        }
    }
    Ok(out)
}

/// Removes rows with these keys from one partition (a keyed row that moved to another
/// partition). Rewrites the file only if it held such a row; returns the rows removed and,
/// when it was rewritten, the new file's rows, bytes and tag.
pub async fn drop_keys_committed(
    store: &Store,
    report: &'static Report,
    account: &str,
    part: &str,
    keys: &HashSet<Vec<u8>>,
    compression: Compression,
) -> Result<(usize, Option<Committed>), LoadError> {
    let rel = file_rel(report.id, account, part);
    let target = schema(report);
    let (target, rel_ref) = (&target, &rel);
    let ((dropped, rows, n), tag) =
        update_cas::<_, LoadError, _, _>(store, &rel, move |read| async move {
            let Some((bytes, tag)) = read else {
                return Ok(Cas::Keep((0, 0, 0)));
            };
            let Some(old) =
                stored_rows(store, report, (account, part), target, bytes, &tag).await?
            else {
                return Ok(Cas::Again);
            };
            let mut kept = Vec::new();
            let mut dropped = 0;
            for b in old {
                let k = key_rows(report, &b)?;
                let keep: BooleanArray = (0..b.num_rows())
                    .map(|i| Some(!keys.contains(k.row(i).as_ref())))
                    .collect();
                dropped += b.num_rows() - keep.true_count();
                kept.push(filter_record_batch(&b, &keep)?);
            }
            if dropped == 0 {
                return Ok(Cas::Keep((0, 0, 0)));
            }
            let (bytes, rows) = merge_encode(report, target, kept, &[], compression)
                .map_err(|e| e.at(store.describe(rel_ref)))?;
            let n = bytes.len();
            Ok(Cas::Write(bytes, (dropped, rows, n)))
        })
        .await?;
    let committed = tag.map(|t| Committed {
        rows,
        bytes: n,
        etag: t.etag(),
    });
    Ok((dropped, committed))
}

/// Keeps the first row of each natural key; returns the rows and the set of keys.
pub(crate) fn dedupe_by_key(
    report: &Report,
    b: &RecordBatch,
) -> Result<(RecordBatch, HashSet<Vec<u8>>), LoadError> {
    let keys = key_rows(report, b)?;
    let mut seen = std::collections::HashSet::new();
    let keep: BooleanArray = (0..b.num_rows())
        .map(|i| Some(seen.insert(keys.row(i).as_ref().to_vec())))
        .collect();
    Ok((filter_record_batch(b, &keep)?, seen))
}

/// Commits the rows of a report replaced by key (ad_settlement), each into the partition
/// of its own date, then removes every fetched key from the partitions that no longer
/// hold it: a settlement whose date moved must not stay where it was, even in a partition
/// this commit also wrote. State is recorded only after all of it, so a crash in between
/// leaves the windows unrecorded and the next run does it again.
/// Returns the folders written, how many, and the outcome.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn commit_keyed(
    store: &Store,
    report: &'static Report,
    account: &str,
    rows: &[RecordBatch],
    partition: Partition,
    compression: Compression,
    retry: &RetryPolicy,
    log: &changes::Log,
) -> (Vec<String>, usize, Result<Committed, LoadError>) {
    let mut by_part: BTreeMap<String, Vec<RecordBatch>> = BTreeMap::new();
    for b in rows {
        match split(b, partition) {
            Ok(parts) => {
                for (pv, pb) in parts {
                    by_part.entry(pv).or_default().push(pb);
                }
            }
            Err(e) => return (Vec::new(), 0, Err(e)),
        }
    }
    let files = by_part.len();
    let prefix = format!("{}/account={account}/", report.id);
    let existing: Vec<String> = match store.list(&prefix).await {
        Ok(l) => l
            .iter()
            .filter(|f| f.ends_with("/data.parquet"))
            .map(|f| {
                f.trim_start_matches(&prefix)
                    .trim_end_matches("/data.parquet")
                    .to_string()
            })
            .collect(),
        Err(e) => return (Vec::new(), files, Err(e.into())),
    };
    // Every partition the pass may rewrite goes in the change log before the first write.
    let mut touched: Vec<String> = by_part.keys().cloned().collect();
    touched.extend(
        existing
            .iter()
            .filter(|p| !by_part.contains_key(*p))
            .cloned(),
    );
    let batch = match log.begin(report.id, account, &touched).await {
        Ok(b) => b,
        Err(e) => return (Vec::new(), files, Err(e.into())),
    };
    let mut changed: BTreeMap<String, Committed> = BTreeMap::new();
    let mut total = Committed::default();
    let mut kept: BTreeMap<String, HashSet<Vec<u8>>> = BTreeMap::new();
    for (pv, batches) in &by_part {
        let fresh: Vec<Fresh> = batches.iter().cloned().map(Fresh::Batch).collect();
        match commit_with_retry(store, report, account, pv, &[], &fresh, compression, retry).await {
            Ok(c) => {
                total.rows += c.rows;
                total.bytes += c.bytes;
                changed.insert(pv.clone(), c);
            }
            Err(e) => return (Vec::new(), files, Err(e)),
        }
        match keys_of(report, batches) {
            Ok(k) => kept.insert(pv.clone(), k),
            Err(e) => return (Vec::new(), files, Err(e)),
        };
    }
    let all = match keys_of(report, rows) {
        Ok(k) => k,
        Err(e) => return (Vec::new(), files, Err(e)),
    };
    for pv in &existing {
        // The keys this partition must not hold: every fetched key but its own.
        let drop: HashSet<Vec<u8>> = match kept.get(pv) {
            Some(own) => all.difference(own).cloned().collect(),
            None => all.clone(),
        };
        if drop.is_empty() {
            continue;
        }
        match drop_keys_committed(store, report, account, pv, &drop, compression).await {
            Ok((_, Some(c))) => {
                changed.insert(pv.clone(), c);
            }
            Ok((_, None)) => {}
            Err(e) => return (Vec::new(), files, Err(e)),
        }
    }
    let changed: Vec<(String, Committed)> = changed.into_iter().collect();
    log.finish(batch, &changed).await;
    (by_part.into_keys().collect(), files, Ok(total))
}
