//! Load: split rows by partition, merge with what is there, and commit each partition as a
//! whole, atomically (DESIGN §4).
//!
//! A commit reads the partition's file, drops the rows whose `ref_date` lies in the windows
//! just fetched, adds the fetched rows, sorts by the natural key, encodes one Parquet file
//! and makes it visible in one step (see `store`). It is safe to repeat: the same windows
//! give the same file.

use std::sync::Arc;

use arrow::array::{AsArray, BooleanArray, RecordBatch};
use arrow::compute::{
    concat_batches, filter_record_batch, lexsort_to_indices, take_record_batch, SortColumn,
};
use arrow::datatypes::Date32Type;
use bytes::Bytes;
use chrono::{Datelike, NaiveDate};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as PqCompression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::catalog::Report;
use crate::pipeline::{Compression, Partition};
use crate::plan::Window;
use crate::store::{Store, StoreError};
use crate::transform::{from_date32, schema};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("parquet {path}: {source}")]
    Parquet {
        path: String,
        source: parquet::errors::ParquetError,
    },
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("{path} has a different schema than table {report}; refusing to mix them")]
    Schema { path: String, report: &'static str },
}

impl LoadError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, LoadError::Store(e) if e.is_retryable())
    }
}

/// The Hive folder of a row date, e.g. `month=2025-01`.
pub fn partition_value(p: Partition, d: NaiveDate) -> String {
    match p {
        Partition::Day => format!("date={}", d.format("%Y-%m-%d")),
        Partition::Month => format!("month={:04}-{:02}", d.year(), d.month()),
        Partition::Year => format!("year={:04}", d.year()),
    }
}

pub fn file_rel(report: &str, account: &str, part: &str) -> String {
    format!("{report}/account={account}/{part}/data.parquet")
}

/// Partitions a window's dates fall in (a window may straddle two).
pub fn partitions_of(p: Partition, w: &Window) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut d = w.begin;
    while d <= w.end {
        let v = partition_value(p, d);
        if out.last() != Some(&v) {
            out.push(v);
        }
        d = d.succ_opt().unwrap_or(NaiveDate::MAX);
    }
    out
}

fn ref_dates(batch: &RecordBatch) -> &arrow::array::PrimitiveArray<Date32Type> {
    batch.column(0).as_primitive::<Date32Type>()
}

/// Splits a batch into one batch per partition (by each row's own `ref_date`).
pub fn split(batch: &RecordBatch, p: Partition) -> Result<Vec<(String, RecordBatch)>, LoadError> {
    let dates = ref_dates(batch);
    let mut keys: Vec<String> = Vec::new();
    let mut idx: Vec<Vec<u32>> = Vec::new();
    for i in 0..batch.num_rows() {
        let v = partition_value(p, from_date32(dates.value(i)));
        let k = match keys.iter().position(|k| *k == v) {
            Some(k) => k,
            None => {
                keys.push(v);
                idx.push(Vec::new());
                keys.len() - 1
            }
        };
        idx[k].push(i as u32);
    }
    if keys.len() == 1 {
        return Ok(vec![(keys.remove(0), batch.clone())]);
    }
    let mut out = Vec::with_capacity(keys.len());
    for (k, ix) in keys.into_iter().zip(idx) {
        let ix = arrow::array::UInt32Array::from(ix);
        out.push((k, take_record_batch(batch, &ix)?));
    }
    Ok(out)
}

pub fn writer_props(c: Compression) -> WriterProperties {
    let comp = match c {
        Compression::Zstd => PqCompression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()),
        Compression::Snappy => PqCompression::SNAPPY,
        Compression::None => PqCompression::UNCOMPRESSED,
    };
    WriterProperties::builder()
        .set_compression(comp)
        .set_created_by(format!("wxcube {}", env!("CARGO_PKG_VERSION")))
        .build()
}

pub fn encode(batch: &RecordBatch, c: Compression) -> Result<Bytes, parquet::errors::ParquetError> {
    let mut buf = Vec::with_capacity(batch.get_array_memory_size() / 4 + 1024);
    let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), Some(writer_props(c)))?;
    w.write(batch)?;
    w.close()?;
    Ok(Bytes::from(buf))
}

pub fn decode_file(bytes: Bytes) -> Result<Vec<RecordBatch>, parquet::errors::ParquetError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?
        .with_batch_size(64 * 1024)
        .build()?;
    reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))
}

/// Sorts rows by the report's natural key.
pub fn sort(report: &Report, batch: &RecordBatch) -> Result<RecordBatch, LoadError> {
    if batch.num_rows() < 2 {
        return Ok(batch.clone());
    }
    let cols: Vec<SortColumn> = report
        .key
        .iter()
        .filter_map(|k| batch.column_by_name(k))
        .map(|c| SortColumn {
            values: Arc::clone(c),
            options: None,
        })
        .collect();
    let ix = lexsort_to_indices(&cols, None)?;
    Ok(take_record_batch(batch, &ix)?)
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Committed {
    pub rows: usize,
    pub bytes: usize,
}

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
    let _guard = store.lock(&rel).await?;
    let by_key = crate::catalog::replaced_by_key(report);
    // Rows replaced by key: the fresh rows, each key once (overlapping windows may both
    // return the same half-month), and the set of keys they replace.
    let (fresh_keyed, fresh_keys) = if by_key {
        let mut batches = Vec::with_capacity(fresh.len());
        for f in fresh {
            batches.push(f.sorted(report).map_err(|e| match e {
                MergeError::Parquet(source) => LoadError::Parquet {
                    path: store.describe(&rel),
                    source,
                },
                MergeError::Arrow(a) => LoadError::Arrow(a),
            })?);
        }
        let all = concat_batches(&target, &batches)?;
        let (rows, keys) = dedupe_by_key(report, &all)?;
        (vec![rows], keys)
    } else {
        (Vec::new(), std::collections::HashSet::new())
    };
    // A conflict means another run committed between our read and write: merge again.
    for _ in 0..16 {
        let mut parts: Vec<RecordBatch> = Vec::new();
        let existing = store.read(&rel).await?;
        let tag = existing
            .as_ref()
            .map(|(_, t)| t.clone())
            .unwrap_or_default();
        if let Some((bytes, _)) = existing {
            let old = decode_file(bytes).map_err(|source| LoadError::Parquet {
                path: store.describe(&rel),
                source,
            })?;
            for b in old {
                if b.schema().fields() != target.fields() {
                    return Err(LoadError::Schema {
                        path: store.describe(&rel),
                        report: report.id,
                    });
                }
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
                    parts.push(kept.with_schema(Arc::clone(&target))?);
                }
            }
        }
        if by_key {
            // Keyed rows can interleave with kept ones at any date: the plain merge.
            parts.extend(fresh_keyed.iter().cloned());
            let merged = concat_batches(&target, &parts)?;
            let sorted = sort(report, &merged)?;
            parts = vec![sorted];
        }
        let fresh_for_merge: &[Fresh] = if by_key { &[] } else { fresh };
        let (bytes, rows) = merge_encode(report, &target, parts, fresh_for_merge, compression)
            .map_err(|e| match e {
                MergeError::Parquet(source) => LoadError::Parquet {
                    path: store.describe(&rel),
                    source,
                },
                MergeError::Arrow(a) => LoadError::Arrow(a),
            })?;
        let n = bytes.len();
        match store.write(&rel, bytes, &tag).await {
            Ok(()) => return Ok(Committed { rows, bytes: n }),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::Conflict {
        path: store.describe(&rel),
    }
    .into())
}

/// The natural key of every row, in arrow's row format (comparable bytes).
fn key_rows(report: &Report, b: &RecordBatch) -> Result<arrow::row::Rows, LoadError> {
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
pub fn keys_of(
    report: &Report,
    batches: &[RecordBatch],
) -> Result<std::collections::HashSet<Vec<u8>>, LoadError> {
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
/// partition). Rewrites the file only if it held such a row.
pub async fn drop_keys(
    store: &Store,
    report: &'static Report,
    account: &str,
    part: &str,
    keys: &std::collections::HashSet<Vec<u8>>,
    compression: Compression,
) -> Result<usize, LoadError> {
    let rel = file_rel(report.id, account, part);
    let target = schema(report);
    let _guard = store.lock(&rel).await?;
    for _ in 0..16 {
        let Some((bytes, tag)) = store.read(&rel).await? else {
            return Ok(0);
        };
        let old = decode_file(bytes).map_err(|source| LoadError::Parquet {
            path: store.describe(&rel),
            source,
        })?;
        let mut kept = Vec::new();
        let mut dropped = 0;
        for b in old {
            let k = key_rows(report, &b)?;
            let keep: BooleanArray = (0..b.num_rows())
                .map(|i| Some(!keys.contains(k.row(i).as_ref())))
                .collect();
            dropped += b.num_rows() - keep.true_count();
            kept.push(filter_record_batch(&b, &keep)?.with_schema(Arc::clone(&target))?);
        }
        if dropped == 0 {
            return Ok(0);
        }
        let (bytes, _) =
            merge_encode(report, &target, kept, &[], compression).map_err(|e| match e {
                MergeError::Parquet(source) => LoadError::Parquet {
                    path: store.describe(&rel),
                    source,
                },
                MergeError::Arrow(a) => LoadError::Arrow(a),
            })?;
        match store.write(&rel, bytes, &tag).await {
            Ok(()) => return Ok(dropped),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::Conflict {
        path: store.describe(&rel),
    }
    .into())
}

/// Keeps the first row of each natural key; returns the rows and the set of keys.
fn dedupe_by_key(
    report: &Report,
    b: &RecordBatch,
) -> Result<(RecordBatch, std::collections::HashSet<Vec<u8>>), LoadError> {
    let keys = key_rows(report, b)?;
    let mut seen = std::collections::HashSet::new();
    let keep: BooleanArray = (0..b.num_rows())
        .map(|i| Some(seen.insert(keys.row(i).as_ref().to_vec())))
        .collect();
    Ok((filter_record_batch(b, &keep)?, seen))
}

enum MergeError {
    Parquet(parquet::errors::ParquetError),
    Arrow(arrow::error::ArrowError),
}

impl From<arrow::error::ArrowError> for MergeError {
    fn from(e: arrow::error::ArrowError) -> Self {
        MergeError::Arrow(e)
    }
}

impl From<parquet::errors::ParquetError> for MergeError {
    fn from(e: parquet::errors::ParquetError) -> Self {
        MergeError::Parquet(e)
    }
}

fn date_span(b: &RecordBatch) -> (i32, i32) {
    let d = ref_dates(b);
    let vals = d.values();
    let lo = vals.iter().copied().min().unwrap_or(i32::MAX);
    let hi = vals.iter().copied().max().unwrap_or(i32::MIN);
    (lo, hi)
}

/// A window's fresh rows waiting for their partition: as decoded, or packed (sorted and
/// encoded as Parquet) once the run buffers more than its memory budget.
#[derive(Debug, Clone)]
pub enum Fresh {
    Batch(RecordBatch),
    Packed {
        bytes: Bytes,
        first: i32,
        last: i32,
        rows: usize,
    },
}

impl Fresh {
    pub fn rows(&self) -> usize {
        match self {
            Fresh::Batch(b) => b.num_rows(),
            Fresh::Packed { rows, .. } => *rows,
        }
    }

    /// Bytes held in memory.
    pub fn size(&self) -> usize {
        match self {
            Fresh::Batch(b) => b.get_array_memory_size(),
            Fresh::Packed { bytes, .. } => bytes.len(),
        }
    }

    fn span(&self) -> (i32, i32) {
        match self {
            Fresh::Batch(b) => date_span(b),
            Fresh::Packed { first, last, .. } => (*first, *last),
        }
    }

    /// The rows sorted by the natural key.
    fn sorted(&self, report: &'static Report) -> Result<RecordBatch, MergeError> {
        match self {
            Fresh::Batch(b) => sort(report, b).map_err(|e| match e {
                LoadError::Arrow(a) => MergeError::Arrow(a),
                other => {
                    MergeError::Arrow(arrow::error::ArrowError::ComputeError(other.to_string()))
                }
            }),
            Fresh::Packed { bytes, .. } => {
                let parts = decode_file(bytes.clone())?;
                let schema = schema(report);
                let parts = parts
                    .into_iter()
                    .map(|b| b.with_schema(Arc::clone(&schema)))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(concat_batches(&schema, &parts)?)
            }
        }
    }

    /// Packs a decoded window: sorted, Parquet with fast compression.
    pub fn pack(report: &'static Report, b: RecordBatch) -> Result<Fresh, LoadError> {
        if b.num_rows() == 0 {
            return Ok(Fresh::Batch(b));
        }
        let (first, last) = date_span(&b);
        let sorted = sort(report, &b)?;
        let mut buf = Vec::new();
        let props = WriterProperties::builder()
            .set_compression(PqCompression::SNAPPY)
            .build();
        let mut w =
            ArrowWriter::try_new(&mut buf, sorted.schema(), Some(props)).map_err(|source| {
                LoadError::Parquet {
                    path: "(buffer)".into(),
                    source,
                }
            })?;
        w.write(&sorted).map_err(|source| LoadError::Parquet {
            path: "(buffer)".into(),
            source,
        })?;
        w.close().map_err(|source| LoadError::Parquet {
            path: "(buffer)".into(),
            source,
        })?;
        Ok(Fresh::Packed {
            bytes: Bytes::from(buf),
            first,
            last,
            rows: sorted.num_rows(),
        })
    }
}

/// Writes `old` (the kept rows of the file, in its sorted order) and `fresh` (one entry per
/// window, disjoint date ranges) as one sorted Parquet file, without concatenating and
/// re-sorting the whole partition: every natural key starts with `ref_date`, so sorting
/// each window (one at a time) and interleaving by date gives the same order.
fn merge_encode(
    report: &'static Report,
    target: &arrow::datatypes::SchemaRef,
    old: Vec<RecordBatch>,
    fresh: &[Fresh],
    compression: Compression,
) -> Result<(Bytes, usize), MergeError> {
    let mut windows: Vec<&Fresh> = fresh.iter().filter(|f| f.rows() > 0).collect();
    windows.sort_by_key(|f| f.span().0);
    let disjoint = windows.windows(2).all(|w| w[0].span().1 < w[1].span().0);
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(
        &mut buf,
        Arc::clone(target),
        Some(writer_props(compression)),
    )?;
    let mut rows = 0usize;
    if !disjoint {
        // Not expected (windows never overlap); the plain way is always correct.
        let mut all = old;
        for f in &windows {
            all.push(f.sorted(report)?);
        }
        let merged = concat_batches(target, &all)?;
        let sorted = sort(report, &merged).map_err(|e| {
            MergeError::Arrow(arrow::error::ArrowError::ComputeError(e.to_string()))
        })?;
        rows = sorted.num_rows();
        w.write(&sorted)?;
    } else {
        let mut old = old.into_iter().filter(|b| b.num_rows() > 0).peekable();
        let mut cur: Option<(RecordBatch, usize)> = None;
        for f in &windows {
            let first = f.span().0;
            // Old rows dated before this window go first.
            loop {
                if cur.is_none() {
                    cur = old.next().map(|b| (b, 0));
                }
                let Some((b, at)) = cur.as_mut() else { break };
                let dates = ref_dates(b);
                let end = (*at..b.num_rows())
                    .find(|&i| dates.value(i) >= first)
                    .unwrap_or(b.num_rows());
                if end > *at {
                    w.write(&b.slice(*at, end - *at))?;
                    rows += end - *at;
                }
                if end < b.num_rows() {
                    *at = end;
                    break;
                }
                cur = None;
            }
            let fb = f.sorted(report)?;
            w.write(&fb)?;
            rows += fb.num_rows();
        }
        if let Some((b, at)) = cur {
            w.write(&b.slice(at, b.num_rows() - at))?;
            rows += b.num_rows() - at;
        }
        for b in old {
            rows += b.num_rows();
            w.write(&b)?;
        }
    }
    w.close()?;
    Ok((Bytes::from(buf), rows))
}

/// Reads every row of a report for an account back (tests, `plan` bookkeeping).
pub async fn read_table(
    store: &Store,
    report: &'static Report,
    account: &str,
) -> Result<Option<RecordBatch>, LoadError> {
    let prefix = format!("{}/account={account}/", report.id);
    let files = store.list(&prefix).await?;
    let mut parts = Vec::new();
    for f in files.iter().filter(|f| f.ends_with(".parquet")) {
        if let Some((bytes, _)) = store.read(f).await? {
            parts.extend(decode_file(bytes).map_err(|source| LoadError::Parquet {
                path: f.clone(),
                source,
            })?);
        }
    }
    if parts.is_empty() {
        return Ok(None);
    }
    let target = schema(report);
    let parts = parts
        .into_iter()
        .map(|b| b.with_schema(Arc::clone(&target)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(concat_batches(&target, &parts)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog;
    use crate::dates::parse;
    use crate::transform::decode;

    fn w(a: &str, b: &str) -> Window {
        Window {
            begin: parse(a).unwrap(),
            end: parse(b).unwrap(),
        }
    }

    #[test]
    fn partition_values() {
        let d = parse("2025-03-07").unwrap();
        assert_eq!(partition_value(Partition::Day, d), "date=2025-03-07");
        assert_eq!(partition_value(Partition::Month, d), "month=2025-03");
        assert_eq!(partition_value(Partition::Year, d), "year=2025");
        assert_eq!(
            partitions_of(Partition::Month, &w("2025-01-28", "2025-02-03")),
            vec!["month=2025-01", "month=2025-02"]
        );
    }

    #[tokio::test]
    async fn merge_replaces_fetched_windows_only_and_sorts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        let r = catalog::find("upstream_msg").unwrap();
        let b1 = decode(
            r,
            br#"{"list":[{"ref_date":"2025-01-02","msg_type":2,"msg_user":1,"msg_count":1},
            {"ref_date":"2025-01-01","msg_type":1,"msg_user":5,"msg_count":9}]}"#,
        )
        .unwrap()
        .batch;
        commit_partition(
            &store,
            r,
            "a",
            "month=2025-01",
            &[w("2025-01-01", "2025-01-02")],
            &[b1],
            Compression::Zstd,
        )
        .await
        .unwrap();
        // Re-fetch of 01-02 only: 01-01 stays, 01-02 replaced, no duplicates.
        let b2 = decode(
            r,
            br#"{"list":[{"ref_date":"2025-01-02","msg_type":2,"msg_user":7,"msg_count":7}]}"#,
        )
        .unwrap()
        .batch;
        let c = commit_partition(
            &store,
            r,
            "a",
            "month=2025-01",
            &[w("2025-01-02", "2025-01-02")],
            &[b2],
            Compression::Zstd,
        )
        .await
        .unwrap();
        assert_eq!(c.rows, 2);
        let t = read_table(&store, r, "a").await.unwrap().unwrap();
        let users = t
            .column_by_name("msg_user")
            .unwrap()
            .as_primitive::<arrow::datatypes::Int64Type>();
        assert_eq!(users.values().to_vec(), vec![5, 7]);
    }

    #[tokio::test]
    async fn merged_writes_equal_a_full_sort_on_random_windows() {
        let r = catalog::find("upstream_msg").unwrap();
        let mut x: u64 = 0x1234_5678_9abc_def1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let body = |days: &[u32], salt: u64| {
            let mut items = Vec::new();
            for d in days {
                for t in [3, 1, 2] {
                    items.push(format!(
                        r#"{{"ref_date":"2025-03-{d:02}","msg_type":{t},"msg_user":{},"msg_count":1}}"#,
                        salt + u64::from(*d)
                    ));
                }
            }
            decode(r, format!(r#"{{"list":[{}]}}"#, items.join(",")).as_bytes())
                .unwrap()
                .batch
        };
        for round in 0..40 {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path().to_str().unwrap()).unwrap();
            let all: Vec<u32> = (1..=31).collect();
            let month = w("2025-03-01", "2025-03-31");
            commit_partition(
                &store,
                r,
                "a",
                "month=2025-03",
                &[month],
                &[body(&all, 0)],
                Compression::None,
            )
            .await
            .unwrap();
            // Random disjoint windows, given out of order.
            let mut windows = Vec::new();
            let mut d = 1 + (next() % 3) as u32;
            while d <= 31 {
                let len = 1 + (next() % 5) as u32;
                let end = (d + len - 1).min(31);
                if next() % 2 == 0 {
                    windows.push((d, end));
                }
                d = end + 1 + (next() % 4) as u32;
            }
            windows.reverse();
            let ws: Vec<Window> = windows
                .iter()
                .map(|(a, b)| w(&format!("2025-03-{a:02}"), &format!("2025-03-{b:02}")))
                .collect();
            // Every other window waits packed, as past the run's memory budget.
            let fresh: Vec<Fresh> = windows
                .iter()
                .enumerate()
                .map(|(i, (a, b))| {
                    let batch = body(&(*a..=*b).collect::<Vec<_>>(), 1000 * (round + 1));
                    if i % 2 == 0 {
                        Fresh::pack(r, batch).unwrap()
                    } else {
                        Fresh::Batch(batch)
                    }
                })
                .collect();
            assert!(fresh.len() < 2 || matches!(fresh[0], Fresh::Packed { .. }));
            commit_fresh(
                &store,
                r,
                "a",
                "month=2025-03",
                &ws,
                &fresh,
                Compression::None,
            )
            .await
            .unwrap();
            let got = read_table(&store, r, "a").await.unwrap().unwrap();
            // Expected: the plain way, computed independently.
            let mut want_rows: Vec<(i32, i32, i64)> = Vec::new();
            for day in 1..=31u32 {
                let fetched = windows.iter().any(|(a, b)| (*a..=*b).contains(&day));
                let user = if fetched {
                    1000 * (round + 1) + u64::from(day)
                } else {
                    u64::from(day)
                };
                for t in [1, 2, 3] {
                    want_rows.push((day as i32, t, user as i64));
                }
            }
            let dates = got.column(0).as_primitive::<arrow::datatypes::Date32Type>();
            let types = got
                .column_by_name("msg_type")
                .unwrap()
                .as_primitive::<arrow::datatypes::Int32Type>();
            let users = got
                .column_by_name("msg_user")
                .unwrap()
                .as_primitive::<arrow::datatypes::Int64Type>();
            let base = crate::transform::date32(parse("2025-02-28").unwrap());
            let got_rows: Vec<(i32, i32, i64)> = (0..got.num_rows())
                .map(|i| (dates.value(i) - base, types.value(i), users.value(i)))
                .collect();
            assert_eq!(got_rows, want_rows, "round {round}: {windows:?}");
        }
    }

    #[tokio::test]
    async fn drop_keys_removes_only_those_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        let r = catalog::find("ad_settlement").unwrap();
        let row = |date: &str, month: &str, order: i32| {
            format!(
                r#"{{"date":"{date}","zone":"z","month":"{month}","order":{order},"sett_status":5,"settled_revenue":1,"slot_revenue":[]}}"#
            )
        };
        let body = format!(
            r#"{{"list":[{},{}]}}"#,
            row("2024-03-25", "202403", 1),
            row("2024-03-10", "202402", 2)
        );
        let b = crate::transform::decode_value(r, &serde_json::from_str(&body).unwrap())
            .unwrap()
            .batch;
        commit_partition(
            &store,
            r,
            "a",
            "month=2024-03",
            &[],
            &[b],
            Compression::Zstd,
        )
        .await
        .unwrap();
        let moved = format!(r#"{{"list":[{}]}}"#, row("2024-04-10", "202403", 1));
        let m = crate::transform::decode_value(r, &serde_json::from_str(&moved).unwrap())
            .unwrap()
            .batch;
        let keys = keys_of(r, &[m]).unwrap();
        assert_eq!(
            drop_keys(&store, r, "a", "month=2024-03", &keys, Compression::Zstd)
                .await
                .unwrap(),
            1
        );
        let t = read_table(&store, r, "a").await.unwrap().unwrap();
        assert_eq!(t.num_rows(), 1);
        let months = t.column_by_name("month").unwrap().as_string::<i32>();
        assert_eq!(months.value(0), "202402");
        assert_eq!(
            drop_keys(&store, r, "a", "month=2024-03", &keys, Compression::Zstd)
                .await
                .unwrap(),
            0
        );
    }
}
