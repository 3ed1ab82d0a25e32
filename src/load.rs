//! Load: split rows by partition, merge with what is there, and commit each partition as a
//! whole, atomically (DESIGN §4).
//!
//! A commit reads the partition's file, drops the rows whose `ref_date` lies in the windows
//! just fetched, adds the fetched rows, sorts by the natural key, encodes one Parquet file
//! and makes it visible in one step (see `store`). It is safe to repeat: the same windows
//! give the same file. A partition that does not exist yet skips all of that: the run
//! streamed its windows, in date order, into the very file to commit ([`PartStream`]).
//!
//! Files written by other releases or rewritten by other tools merge when their columns
//! agree in name, type and nullability (see `compat`); the rewrite gives them the current
//! schema and metadata. A file that does not agree (a column missing, retyped or added; not
//! readable as Parquet, e.g. truncated) is quarantined: copied to
//! `_wxcube/quarantine/<time>-<pid>/<report>/account=<a>/<part>/data.parquet`, the dates of
//! its partition reopened in state (provisional: fetched again by the next run, wherever
//! they lie), then deleted from the table only if it is still the version read. The commit
//! then fails with [`LoadError::Quarantined`], which stops that table and account's
//! partition only (exit 3, the message names both files). Decision: the run does *not*
//! commit its fresh rows into a new file there. The partition stays empty until the next
//! run fetches all its loaded dates again and writes it whole, so state never holds a date
//! of it as final while the table lacks it, and no fetched window is recorded for a
//! partition a person may be looking into; the cost is the calls of the fresh windows, made
//! again. A store error while reading (network, permissions) is not a bad file: it fails or
//! retries as any store error and nothing is moved.

use std::cmp::Ordering;
use std::sync::Arc;

use arrow::array::{make_array, AsArray, BooleanArray, MutableArrayData, RecordBatch};
use arrow::compute::{
    concat_batches, filter_record_batch, lexsort_to_indices, take_record_batch,
    LexicographicalComparator, SortColumn,
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
use crate::store::{update_cas, Cas, Store, StoreError};
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
    #[error("{path} cannot be read into table {report}: {reason}")]
    Schema {
        path: String,
        report: &'static str,
        reason: String,
    },
    /// An existing file that cannot merge, moved aside; its dates are fetched again.
    #[error("{path} cannot merge into table {report}: {reason}. Moved to {moved_to} (nothing deleted); its dates {begin}..{end} are reopened, so the next run fetches them again, whatever its range. Inspect the moved file, then delete it")]
    Quarantined {
        path: String,
        moved_to: String,
        reason: String,
        report: &'static str,
        begin: NaiveDate,
        end: NaiveDate,
    },
}

impl crate::retry::Retryable for LoadError {
    fn class(&self) -> crate::retry::Class {
        match self.is_retryable() {
            true => crate::retry::Class::Retry,
            false => crate::retry::Class::Fatal,
        }
    }
}

impl LoadError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, LoadError::Store(e) if e.is_retryable())
    }
}

/// The Hive folder of a row date, e.g. `month=2025-01`.
pub fn partition_value(p: Partition, d: NaiveDate) -> String {
    match p {
        Partition::Day => format!("date={}", crate::dates::fmt(d)),
        Partition::Month => format!("month={:04}-{:02}", d.year(), d.month()),
        Partition::Year => format!("year={:04}", d.year()),
    }
}

/// The dates a Hive folder (`month=2025-01`, `date=...`, `year=...`) holds.
pub fn partition_dates(part: &str) -> Option<(NaiveDate, NaiveDate)> {
    let (key, v) = part.split_once('=')?;
    let (begin, end) = match key {
        "date" => {
            let d = crate::dates::parse(v)?;
            (d, d)
        }
        "month" => {
            let b = NaiveDate::parse_from_str(&format!("{v}-01"), "%Y-%m-%d").ok()?;
            (b, b.checked_add_months(chrono::Months::new(1))?.pred_opt()?)
        }
        "year" => {
            let y: i32 = v.parse().ok()?;
            (
                NaiveDate::from_ymd_opt(y, 1, 1)?,
                NaiveDate::from_ymd_opt(y, 12, 31)?,
            )
        }
        _ => return None,
    };
    Some((begin, end))
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
    // Rows come sorted by date: name a partition once per run of equal dates.
    let mut last: Option<(i32, usize)> = None;
    for i in 0..batch.num_rows() {
        let d = dates.value(i);
        let k = match last {
            Some((ld, k)) if ld == d => k,
            _ => {
                let v = partition_value(p, from_date32(d));
                match keys.iter().position(|k| *k == v) {
                    Some(k) => k,
                    None => {
                        keys.push(v);
                        idx.push(Vec::new());
                        keys.len() - 1
                    }
                }
            }
        };
        last = Some((d, k));
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

/// How wxcube writes Parquet: dictionaries for text columns only (labels, titles and ids
/// repeat; numbers rarely do, and their dictionaries cost CPU and stay in memory until the
/// row group closes), integers and dates delta-encoded (sorted dates and small counts pack
/// to a few bits, leaving zstd less to do: encode 3-27% faster, files within ±6%), 64 KB
/// pages, zstd level 1, min/max statistics per column chunk but no page index (a partition
/// is one or a few row groups of a few pages: readers prune by row group; encode 3-10%
/// faster). Row groups are sized by [`PartStream`].
pub fn writer_props(schema: &arrow::datatypes::Schema, c: Compression) -> WriterProperties {
    let comp = match c {
        Compression::Zstd => PqCompression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default()),
        Compression::Snappy => PqCompression::SNAPPY,
        Compression::None => PqCompression::UNCOMPRESSED,
    };
    let mut b = WriterProperties::builder()
        .set_compression(comp)
        .set_data_page_size_limit(64 * 1024)
        .set_dictionary_enabled(false)
        .set_statistics_enabled(parquet::file::properties::EnabledStatistics::Chunk)
        .set_created_by(format!("wxcube {}", env!("CARGO_PKG_VERSION")));
    if let Ok(desc) = parquet::arrow::ArrowSchemaConverter::new().convert(schema) {
        for col in desc.columns() {
            match col.physical_type() {
                parquet::basic::Type::BYTE_ARRAY => {
                    b = b.set_column_dictionary_enabled(col.path().clone(), true);
                }
                parquet::basic::Type::INT32 | parquet::basic::Type::INT64 => {
                    b = b.set_column_encoding(
                        col.path().clone(),
                        parquet::basic::Encoding::DELTA_BINARY_PACKED,
                    );
                }
                _ => {}
            }
        }
    }
    b.build()
}

/// Decoded rows a partition being written gathers before it encodes them as a row group.
/// Every open partition may hold this much (and the window that crossed it), and a long run
/// keeps its partitions open until they are full months: 1 MiB made the 365-day run peak
/// 4-5 MB (7%) above 512 KiB, for files 2.6% smaller (`make bench` full_365, median of 3).
pub const ROW_GROUP_BYTES: usize = 512 << 10;

pub fn encode(batch: &RecordBatch, c: Compression) -> Result<Bytes, parquet::errors::ParquetError> {
    let mut buf = Vec::with_capacity(batch.get_array_memory_size() / 4 + 1024);
    let mut w = ArrowWriter::try_new(
        &mut buf,
        batch.schema(),
        Some(writer_props(&batch.schema(), c)),
    )?;
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
    let n = batch.num_rows();
    if n < 2 {
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
    let cmp = LexicographicalComparator::try_new(&cols)?;
    // Rows often come in a few stretches already in key order (an article's days are
    // one): merge the stretches and copy whole segments, instead of sorting and moving
    // every row. Rows in no useful order get the full sort.
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut start = 0;
    for i in 1..n {
        if cmp.compare(i - 1, i) == Ordering::Greater {
            runs.push((start, i));
            start = i;
            if runs.len() > MAX_RUNS || runs.len() * 8 > n {
                let ix = lexsort_to_indices(&cols, None)?;
                return Ok(take_record_batch(batch, &ix)?);
            }
        }
    }
    runs.push((start, n));
    if runs.len() == 1 {
        return Ok(batch.clone());
    }
    let segments = merge_runs(&cmp, &mut runs);
    let columns = batch
        .columns()
        .iter()
        .map(|c| {
            let data = c.to_data();
            let mut out = MutableArrayData::new(vec![&data], false, n);
            for &(a, b) in &segments {
                out.try_extend(0, a, b)?;
            }
            Ok(make_array(out.freeze()))
        })
        .collect::<Result<Vec<_>, arrow::error::ArrowError>>()?;
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// Most ascending stretches `sort` merges rather than sorting rows.
const MAX_RUNS: usize = 64;

/// Merges ascending runs into the segments (row ranges of the input) that, copied in
/// order, are the rows in key order. Each segment is as long as its run stays at or below
/// every other run's next row.
fn merge_runs(cmp: &LexicographicalComparator, runs: &mut [(usize, usize)]) -> Vec<(usize, usize)> {
    let mut segments = Vec::new();
    loop {
        let mut first: Option<usize> = None;
        let mut second: Option<usize> = None;
        for r in 0..runs.len() {
            if runs[r].0 == runs[r].1 {
                continue;
            }
            match first {
                Some(f) if cmp.compare(runs[r].0, runs[f].0) != Ordering::Less => {
                    if second.is_none_or(|s| cmp.compare(runs[r].0, runs[s].0) == Ordering::Less) {
                        second = Some(r);
                    }
                }
                _ => {
                    second = first;
                    first = Some(r);
                }
            }
        }
        let Some(f) = first else {
            return segments;
        };
        let (a, b) = runs[f];
        let mut end = a + 1;
        while end < b && second.is_none_or(|s| cmp.compare(end, runs[s].0) != Ordering::Greater) {
            end += 1;
        }
        runs[f].0 = end;
        segments.push((a, end));
    }
}

#[derive(Debug, Default, Clone)]
pub struct Committed {
    pub rows: usize,
    pub bytes: usize,
    /// The new object's ETag or version id, where the store gives one.
    pub etag: Option<String>,
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
    let by_key = crate::catalog::replaced_by_key(report);
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
    let ((rows, n), tag) = update_cas(store, &rel, move |existing| async move {
        // A new partition written as it streamed in is already the file.
        if let (None, false, [Fresh::File { bytes, rows, .. }]) = (&existing, by_key, fresh) {
            return Ok(Cas::Write(bytes.clone(), (*rows, bytes.len())));
        }
        let mut parts: Vec<RecordBatch> = Vec::new();
        if let Some((bytes, tag)) = existing {
            let old = match existing_rows(report, target, bytes.clone()) {
                Ok(old) => old,
                Err(reason) => {
                    return match quarantine(store, report, account, part, &bytes, &tag, reason)
                        .await
                    {
                        Err(LoadError::Store(StoreError::Conflict { .. })) => Ok(Cas::Again),
                        Ok(e) | Err(e) => Err(e),
                    };
                }
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
    drop_keys_committed(store, report, account, part, keys, compression)
        .await
        .map(|(n, _)| n)
}

/// `drop_keys`, with the new file's rows, bytes and tag when it was rewritten.
pub async fn drop_keys_committed(
    store: &Store,
    report: &'static Report,
    account: &str,
    part: &str,
    keys: &std::collections::HashSet<Vec<u8>>,
    compression: Compression,
) -> Result<(usize, Option<Committed>), LoadError> {
    let rel = file_rel(report.id, account, part);
    let target = schema(report);
    let (target, rel_ref) = (&target, &rel);
    let ((dropped, rows, n), tag) = update_cas(store, &rel, move |read| async move {
        let Some((bytes, tag)) = read else {
            return Ok(Cas::Keep((0, 0, 0)));
        };
        let old = match existing_rows(report, target, bytes.clone()) {
            Ok(old) => old,
            Err(reason) => {
                return match quarantine(store, report, account, part, &bytes, &tag, reason).await {
                    Err(LoadError::Store(StoreError::Conflict { .. })) => Ok(Cas::Again),
                    Ok(e) | Err(e) => Err(e),
                };
            }
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

/// Moves a file that cannot merge out of the table (see the module doc) and returns the
/// error that says so. `Err(Conflict)`: the file changed since it was read; read it again.
async fn quarantine(
    store: &Store,
    report: &'static Report,
    account: &str,
    part: &str,
    bytes: &Bytes,
    tag: &crate::store::Tag,
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
    if crate::catalog::replaced_by_key(report) {
        // Rows dated by update: a half-month settles ~10-25 days before its row's date.
        begin -= chrono::Duration::days(31);
    }
    let stamp = format!(
        "{}-{:08x}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
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

enum MergeError {
    Parquet(parquet::errors::ParquetError),
    Arrow(arrow::error::ArrowError),
}

impl MergeError {
    /// The error of writing the file at `path`.
    fn at(self, path: String) -> LoadError {
        match self {
            MergeError::Parquet(source) => LoadError::Parquet { path, source },
            MergeError::Arrow(a) => LoadError::Arrow(a),
        }
    }
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

/// Fresh rows for a partition: decoded, or already written as a sorted Parquet file by a
/// [`PartStream`] (`spans`: the date span of each window in it, in order).
#[derive(Debug, Clone)]
pub enum Fresh {
    Batch(RecordBatch),
    File {
        bytes: Bytes,
        spans: Vec<(i32, i32)>,
        rows: usize,
    },
}

impl Fresh {
    pub fn rows(&self) -> usize {
        match self {
            Fresh::Batch(b) => b.num_rows(),
            Fresh::File { rows, .. } => *rows,
        }
    }

    /// Sorted runs of rows with their date spans: one per window.
    fn runs(&self, report: &'static Report) -> Result<Vec<Run>, MergeError> {
        match self {
            Fresh::Batch(b) if b.num_rows() == 0 => Ok(Vec::new()),
            Fresh::Batch(b) => Ok(vec![(date_span(b), sort(report, b).map_err(merge_error)?)]),
            Fresh::File { bytes, spans, .. } => {
                let schema = schema(report);
                let parts = decode_file(bytes.clone())?
                    .into_iter()
                    .map(|b| b.with_schema(Arc::clone(&schema)))
                    .collect::<Result<Vec<_>, _>>()?;
                let all = concat_batches(&schema, &parts)?;
                // Sorted by date, so each window's rows are one slice.
                let dates = ref_dates(&all).values();
                let mut out = Vec::with_capacity(spans.len());
                for &(lo, hi) in spans {
                    let a = dates.partition_point(|&d| d < lo);
                    let b = dates.partition_point(|&d| d <= hi);
                    if b > a {
                        out.push(((lo, hi), all.slice(a, b - a)));
                    }
                }
                Ok(out)
            }
        }
    }
}

/// Sorted rows of one window and the span of their dates.
type Run = ((i32, i32), RecordBatch);

fn merge_error(e: LoadError) -> MergeError {
    match e {
        LoadError::Arrow(a) => MergeError::Arrow(a),
        other => MergeError::Arrow(arrow::error::ArrowError::ComputeError(other.to_string())),
    }
}

/// A partition's fresh rows encoded as they arrive. Windows come in date order and each is
/// sorted, so the file grows already sorted by the natural key, and for a partition that
/// does not exist yet it is the file to commit. Rows wait decoded until they fill a row
/// group ([`ROW_GROUP_BYTES`]), which is then encoded in one go: memory holds compressed
/// row groups, and the per-column encoders and compressors (a zstd context is ~0.25 MB per
/// column) live only while a row group is being written, not as long as the partition.
pub struct PartStream {
    writer: ArrowWriter<Spool>,
    pending: Vec<RecordBatch>,
    pending_bytes: usize,
    spans: Vec<(i32, i32)>,
    rows: usize,
}

impl PartStream {
    pub fn new(report: &Report, c: Compression) -> Result<Self, LoadError> {
        let schema = schema(report);
        let props = writer_props(&schema, c);
        let writer = ArrowWriter::try_new(Spool::Memory(Vec::new()), schema, Some(props))
            .map_err(stream_error)?;
        Ok(PartStream {
            writer,
            pending: Vec::new(),
            pending_bytes: 0,
            spans: Vec::new(),
            rows: 0,
        })
    }

    /// Appends one window's rows, sorted by the key; its dates must follow the last window's.
    pub fn push(&mut self, sorted: RecordBatch) -> Result<(), LoadError> {
        if sorted.num_rows() == 0 {
            return Ok(());
        }
        let span = date_span(&sorted);
        if self.spans.last().is_some_and(|l| l.1 >= span.0) {
            return Err(LoadError::Arrow(arrow::error::ArrowError::ComputeError(
                "windows reached a partition out of date order".into(),
            )));
        }
        self.spans.push(span);
        self.rows += sorted.num_rows();
        self.pending_bytes += sorted.get_array_memory_size();
        self.pending.push(sorted);
        if self.pending_bytes >= ROW_GROUP_BYTES {
            self.write_pending()?;
            self.writer.flush().map_err(stream_error)?;
        }
        Ok(())
    }

    fn write_pending(&mut self) -> Result<(), LoadError> {
        for b in std::mem::take(&mut self.pending) {
            self.writer.write(&b).map_err(stream_error)?;
        }
        self.pending_bytes = 0;
        Ok(())
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn finish(mut self) -> Result<Fresh, LoadError> {
        self.write_pending()?;
        let bytes = self.writer.into_inner().map_err(stream_error)?;
        let bytes = bytes.into_bytes().map_err(|e| stream_error(e.into()))?;
        Ok(Fresh::File {
            bytes,
            spans: self.spans,
            rows: self.rows,
        })
    }
}

/// Encoded row groups past which a partition being written moves them from memory to an
/// anonymous temporary file (`TMPDIR`), read back once at commit: the months of large
/// reports of every account fetched at once would otherwise all sit in memory.
const SPOOL_BYTES: usize = 256 << 10;

enum Spool {
    Memory(Vec<u8>),
    File(std::fs::File),
}

impl std::io::Write for Spool {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use std::sync::atomic::{AtomicBool, Ordering};
        // No usable temp folder only costs memory (and is not tried again).
        static NO_TEMP: AtomicBool = AtomicBool::new(false);
        if let Spool::Memory(v) = self {
            if v.len() + buf.len() > SPOOL_BYTES && !NO_TEMP.load(Ordering::Relaxed) {
                match tempfile::tempfile() {
                    Ok(mut f) => {
                        f.write_all(v)?;
                        *self = Spool::File(f);
                    }
                    Err(e) => {
                        NO_TEMP.store(true, Ordering::Relaxed);
                        tracing::warn!(error = %e, "no temporary file for partitions being written; keeping them in memory");
                    }
                }
            }
        }
        match self {
            Spool::Memory(v) => v.write(buf),
            Spool::File(f) => f.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Spool::Memory(_) => Ok(()),
            Spool::File(f) => f.flush(),
        }
    }
}

impl Spool {
    fn into_bytes(self) -> std::io::Result<Bytes> {
        use std::io::{Read, Seek};
        match self {
            Spool::Memory(v) => Ok(Bytes::from(v)),
            Spool::File(mut f) => {
                let mut v = Vec::with_capacity(f.stream_position()? as usize);
                f.rewind()?;
                f.read_to_end(&mut v)?;
                Ok(Bytes::from(v))
            }
        }
    }
}

fn stream_error(source: parquet::errors::ParquetError) -> LoadError {
    LoadError::Parquet {
        path: "(partition being written)".into(),
        source,
    }
}

/// Writes `old` (the kept rows of the file, in its sorted order) and `fresh` as one sorted
/// Parquet file, without concatenating and re-sorting the whole partition: every natural
/// key starts with `ref_date` and fetched windows are disjoint, so sorting each window (one
/// at a time) and interleaving by date gives the same order.
fn merge_encode(
    report: &'static Report,
    target: &arrow::datatypes::SchemaRef,
    old: Vec<RecordBatch>,
    fresh: &[Fresh],
    compression: Compression,
) -> Result<(Bytes, usize), MergeError> {
    let mut windows = Vec::new();
    for f in fresh {
        windows.extend(f.runs(report)?);
    }
    windows.sort_by_key(|(span, _)| span.0);
    let disjoint = windows.windows(2).all(|w| w[0].0 .1 < w[1].0 .0);
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(
        &mut buf,
        Arc::clone(target),
        Some(writer_props(target, compression)),
    )?;
    let mut rows = 0usize;
    if !disjoint {
        // Not expected (windows never overlap); the plain way is always correct.
        let mut all = old;
        all.extend(windows.into_iter().map(|(_, b)| b));
        let merged = concat_batches(target, &all)?;
        let sorted = sort(report, &merged).map_err(merge_error)?;
        rows = sorted.num_rows();
        w.write(&sorted)?;
    } else {
        let mut old = old.into_iter().filter(|b| b.num_rows() > 0).peekable();
        let mut cur: Option<(RecordBatch, usize)> = None;
        for ((first, _), fb) in &windows {
            // Old rows dated before this window go first.
            loop {
                if cur.is_none() {
                    cur = old.next().map(|b| (b, 0));
                }
                let Some((b, at)) = cur.as_mut() else { break };
                let dates = ref_dates(b);
                let end = (*at..b.num_rows())
                    .find(|&i| dates.value(i) >= *first)
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
            w.write(fb)?;
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
        .iter()
        .map(|b| crate::compat::conform(report, &target, b))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|reason| LoadError::Schema {
            path: store.describe(&prefix),
            report: report.id,
            reason,
        })?;
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

    /// `sort` on rows in many orders (already sorted, reversed, shuffled, stretches of
    /// sorted rows shuffled as blocks) gives what the full sort gives, nested columns too.
    #[test]
    fn sort_merges_sorted_stretches_like_a_full_sort() {
        let r = catalog::find("article_total_detail").unwrap();
        let cfg = crate::sim::SimConfig {
            articles_per_day: 20,
            ..Default::default()
        };
        let today = parse("2026-03-02").unwrap();
        let mut parts = Vec::new();
        for day in ["2026-02-01", "2026-02-02", "2026-02-20"] {
            let d = parse(day).unwrap();
            let body = crate::sim::respond(&cfg, today, r, "wx0123456789abcdef", d, d);
            parts.push(decode(r, body.to_string().as_bytes()).unwrap().batch);
        }
        let all = concat_batches(&parts[0].schema(), &parts).unwrap();
        let key = |b: &RecordBatch| -> Vec<SortColumn> {
            r.key
                .iter()
                .map(|k| SortColumn {
                    values: Arc::clone(b.column_by_name(k).unwrap()),
                    options: None,
                })
                .collect()
        };
        let want = take_record_batch(&all, &lexsort_to_indices(&key(&all), None).unwrap()).unwrap();
        let n = want.num_rows() as u32;
        assert!(n > 500, "{n} rows");
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move |m: u32| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % u64::from(m)) as u32
        };
        let mut orders: Vec<Vec<u32>> = vec![(0..n).collect(), (0..n).rev().collect()];
        for blocks in [2, 5, 40, 300, n] {
            // Cut the sorted rows into `blocks` stretches and shuffle the stretches.
            let mut cuts: Vec<u32> = (0..blocks - 1).map(|_| 1 + next(n - 1)).collect();
            cuts.extend([0, n]);
            cuts.sort_unstable();
            cuts.dedup();
            let mut stretches: Vec<(u32, u32)> = cuts.windows(2).map(|c| (c[0], c[1])).collect();
            for i in (1..stretches.len()).rev() {
                stretches.swap(i, next(i as u32 + 1) as usize);
            }
            orders.push(stretches.iter().flat_map(|&(a, b)| a..b).collect());
        }
        for order in orders {
            let shuffled =
                take_record_batch(&want, &arrow::array::UInt32Array::from(order)).unwrap();
            assert_eq!(sort(r, &shuffled).unwrap(), want);
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
            // Half the windows come streamed into one file (in date order, as the run
            // writes them), the others decoded.
            let mut stream = PartStream::new(r, Compression::None).unwrap();
            let mut fresh = Vec::new();
            for (i, (a, b)) in windows.iter().enumerate().rev() {
                let batch = body(&(*a..=*b).collect::<Vec<_>>(), 1000 * (round + 1));
                if i % 2 == 0 {
                    stream.push(sort(r, &batch).unwrap()).unwrap();
                } else {
                    fresh.push(Fresh::Batch(batch));
                }
            }
            if stream.rows() > 0 {
                fresh.push(stream.finish().unwrap());
            }
            assert!(
                windows.len() < 3
                    || matches!(fresh.last(), Some(Fresh::File { spans, .. }) if spans.len() > 1)
            );
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

    #[test]
    fn a_streamed_partition_spans_row_groups_and_keeps_every_row_in_order() {
        let r = catalog::find("upstream_msg").unwrap();
        let mut stream = PartStream::new(r, Compression::Zstd).unwrap();
        let mut want = Vec::new();
        for day in 1..=28u32 {
            let items: Vec<String> = (0..4000u32)
                .rev()
                .map(|t| {
                    want.push((day, t));
                    format!(r#"{{"ref_date":"2025-02-{day:02}","msg_type":{t},"msg_user":{t},"msg_count":{day}}}"#)
                })
                .collect();
            let body = format!(r#"{{"list":[{}]}}"#, items.join(","));
            let batch = decode(r, body.as_bytes()).unwrap().batch;
            stream.push(sort(r, &batch).unwrap()).unwrap();
        }
        want.sort();
        let Fresh::File { bytes, spans, rows } = stream.finish().unwrap() else {
            panic!("a stream finishes as a file");
        };
        assert_eq!((rows, spans.len()), (want.len(), 28));
        let meta = ParquetRecordBatchReaderBuilder::try_new(bytes.clone()).unwrap();
        assert!(
            meta.metadata().num_row_groups() > 1,
            "past ROW_GROUP_BYTES a row group closes"
        );
        let base = crate::transform::date32(parse("2025-01-31").unwrap());
        let mut got = Vec::new();
        for b in decode_file(bytes).unwrap() {
            let d = b.column(0).as_primitive::<arrow::datatypes::Date32Type>();
            let t = b
                .column_by_name("msg_type")
                .unwrap()
                .as_primitive::<arrow::datatypes::Int32Type>();
            got.extend((0..b.num_rows()).map(|i| ((d.value(i) - base) as u32, t.value(i) as u32)));
        }
        assert_eq!(got, want);
        // A window dated before the last one is refused, not written out of order.
        let mut s = PartStream::new(r, Compression::Zstd).unwrap();
        let one = |d: u32| {
            decode(r, format!(r#"{{"list":[{{"ref_date":"2025-02-{d:02}","msg_type":1,"msg_user":1,"msg_count":1}}]}}"#).as_bytes()).unwrap().batch
        };
        s.push(one(5)).unwrap();
        assert!(s.push(one(3)).is_err());
    }

    /// A partition nobody can read is moved aside, never deleted, by both the merge and the
    /// key replacement; its dates (settlements: a month earlier too) are reopened.
    #[tokio::test]
    async fn a_file_that_cannot_merge_is_moved_aside_and_its_dates_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        for (id, part) in [
            ("upstream_msg", "month=2025-01"),
            ("ad_settlement", "month=2024-03"),
        ] {
            let r = catalog::find(id).unwrap();
            let rel = file_rel(id, "a", part);
            let junk = Bytes::from_static(b"PAR1 not really");
            store
                .write(&rel, junk.clone(), &Default::default())
                .await
                .unwrap();
            crate::state::update(&store, id, "a", |st| {
                st.record(
                    &[crate::state::LoadedWindow::new(
                        w("2023-12-01", "2025-02-10"),
                        false,
                    )],
                    parse("2025-02-10").unwrap(),
                    chrono::Utc::now(),
                )
            })
            .await
            .unwrap();
            let e = if catalog::replaced_by_key(r) {
                drop_keys(&store, r, "a", part, &Default::default(), Compression::Zstd).await
            } else {
                commit_partition(
                    &store,
                    r,
                    "a",
                    part,
                    &[w("2025-01-02", "2025-01-02")],
                    &[],
                    Compression::Zstd,
                )
                .await
                .map(|c| c.rows)
            };
            let Err(LoadError::Quarantined {
                moved_to,
                begin,
                end,
                ..
            }) = e
            else {
                panic!("{id}: {e:?}");
            };
            assert!(
                store.read(&rel).await.unwrap().is_none(),
                "{id}: out of the table"
            );
            let moved = moved_to.strip_prefix(dir.path().to_str().unwrap()).unwrap();
            assert!(
                moved.starts_with("/_wxcube/quarantine/") && moved.ends_with(&rel),
                "{moved}"
            );
            assert_eq!(
                store
                    .read(moved.trim_start_matches('/'))
                    .await
                    .unwrap()
                    .unwrap()
                    .0,
                junk
            );
            let (st, _) = crate::state::read(&store, id, "a").await.unwrap();
            // Reopened: still loaded, but provisional, so the next run fetches them.
            let open = |d: &str| {
                let d = parse(d).unwrap();
                st.loaded
                    .iter()
                    .find(|x| x.begin <= d && d <= x.end)
                    .map(|x| x.provisional)
            };
            let (first, last) = partition_dates(part).unwrap();
            assert_eq!(end, last);
            for d in [first, last] {
                assert_eq!(open(&crate::dates::fmt(d)), Some(true), "{id} {d}");
            }
            let next = crate::dates::fmt(last.succ_opt().unwrap());
            assert_eq!(open(&next), Some(false), "{id}: the next month stays final");
            if catalog::replaced_by_key(r) {
                assert_eq!(begin, parse("2024-01-30").unwrap(), "31 days before");
                assert_eq!(
                    open("2024-02-15"),
                    Some(true),
                    "settled before the rows' dates"
                );
            } else {
                assert_eq!(begin, first);
                assert_eq!(open("2024-12-31"), Some(false));
            }
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
        let months = t
            .column_by_name("settlement_month")
            .unwrap()
            .as_string::<i32>();
        assert_eq!(months.value(0), "202402");
        assert_eq!(
            drop_keys(&store, r, "a", "month=2024-03", &keys, Compression::Zstd)
                .await
                .unwrap(),
            0
        );
    }
}
