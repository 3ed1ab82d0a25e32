//! Parquet: how wxcube writes it, a partition encoded as its windows arrive
//! ([`PartStream`]), and the merge of kept and fresh rows into one sorted file.

use std::sync::{Arc, OnceLock};

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as PqCompression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::partition::{ref_dates, sort};
use super::LoadError;
use crate::catalog::{catalogue_index, schema};
use crate::catalog::{Report, REPORTS};
use crate::pipeline::Compression;
use crate::store::Store;

/// How wxcube writes Parquet: dictionaries for text columns only (labels, titles and ids
/// repeat; numbers rarely do, and their dictionaries cost CPU and stay in memory until the
/// row group closes), integers and dates delta-encoded (sorted dates and small counts pack
/// to a few bits, leaving zstd less to do: encode 3-27% faster, files within ±6%), 64 KB
/// pages, zstd level 1, min/max statistics per column chunk but no page index (a partition
/// is one or a few row groups of a few pages: readers prune by row group; encode 3-10%
/// faster), and none for the leaves of list columns. Row groups are sized by
/// [`PartStream`].
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
            // A leaf inside a list (read sources, jump positions, slot revenue): no reader
            // prunes by the min and max of list elements, and comparing each of them
            // (16 strings a row of article_total_detail) was ~2% of a large run.
            if col.path().parts().len() > 1 {
                b = b.set_column_statistics_enabled(
                    col.path().clone(),
                    parquet::file::properties::EnabledStatistics::None,
                );
            }
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

/// A Parquet writer for a report's table: its properties (with the Arrow schema already
/// encoded in them, as `ArrowWriter` would put it) are built once per report and codec, not
/// per file; the schema conversion and IPC encoding were ~1.5% of workload R's CPU.
fn table_writer<W: std::io::Write + Send>(
    report: &Report,
    sink: W,
    c: Compression,
) -> Result<ArrowWriter<W>, parquet::errors::ParquetError> {
    type Cached = [OnceLock<WriterProperties>; 3];
    static CACHE: OnceLock<Vec<Cached>> = OnceLock::new();
    let schema = schema(report);
    let build = || {
        let mut props = writer_props(&schema, c);
        parquet::arrow::add_encoded_arrow_schema_to_metadata(&schema, &mut props);
        props
    };
    let props = match catalogue_index(report) {
        Some(i) => {
            let cache = CACHE.get_or_init(|| REPORTS.iter().map(|_| Default::default()).collect());
            let slot = match c {
                Compression::Zstd => 0,
                Compression::Snappy => 1,
                Compression::None => 2,
            };
            cache[i][slot].get_or_init(build).clone()
        }
        None => build(),
    };
    let options = ArrowWriterOptions::new()
        .with_properties(props)
        .with_skip_arrow_metadata(true);
    ArrowWriter::try_new_with_options(sink, schema, options)
}

/// Memory a partition being written may hold in decoded rows (and the window that crossed
/// it); a row group is encoded once the rows' own bytes reach half of it. A long run
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

pub(crate) enum MergeError {
    Parquet(parquet::errors::ParquetError),
    Arrow(arrow::error::ArrowError),
}

impl MergeError {
    /// The error of writing the file at `path`.
    pub(crate) fn at(self, path: String) -> LoadError {
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
    pub(crate) fn runs(&self, report: &'static Report) -> Result<Vec<Run>, MergeError> {
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
    report: &'static Report,
    writer: ArrowWriter<Spool>,
    pending: Vec<RecordBatch>,
    pending_bytes: usize,
    /// Held memory at which the waiting windows are next copied together (see `push`).
    compact_at: usize,
    spans: Vec<(i32, i32)>,
    rows: usize,
}

impl PartStream {
    pub fn new(report: &'static Report, c: Compression) -> Result<Self, LoadError> {
        let writer = table_writer(report, Spool::Memory(Vec::new()), c).map_err(stream_error)?;
        Ok(PartStream {
            report,
            writer,
            pending: Vec::new(),
            pending_bytes: 0,
            compact_at: ROW_GROUP_BYTES / 2,
            spans: Vec::new(),
            rows: 0,
        })
    }

    /// Appends one window's rows (in any order: a row group is sorted as a whole when it is
    /// written); its dates must follow the last window's.
    pub fn push(&mut self, batch: RecordBatch) -> Result<(), LoadError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let span = date_span(&batch);
        if self.spans.last().is_some_and(|l| l.1 >= span.0) {
            return Err(LoadError::Arrow(arrow::error::ArrowError::ComputeError(
                "windows reached a partition out of date order".into(),
            )));
        }
        self.spans.push(span);
        self.rows += batch.num_rows();
        self.pending_bytes += batch.get_array_memory_size();
        self.pending.push(batch);
        if self.pending_bytes >= self.compact_at {
            // A row group closes once its rows' own bytes reach half the budget. A window
            // holds about its rows' bytes (the decoder sizes its builders from the report's
            // last answer), except one decoded before any answer of its report, which holds
            // 2-4.5 times more: the waiting windows are first copied into one batch of their
            // own size. Short of half the budget then, they are copied again only once the
            // held memory has doubled, so the memory held stays within ROW_GROUP_BYTES and
            // no row group is mostly spare room (workload R's once held ~450 rows, ~110 KB
            // of data counted as 512 KB, each with its own column writers, pages and zstd
            // frames).
            self.compact()?;
            if self.pending_bytes >= ROW_GROUP_BYTES / 2 {
                self.write_pending()?;
                self.writer.flush().map_err(stream_error)?;
                self.compact_at = ROW_GROUP_BYTES / 2;
            } else {
                self.compact_at = (2 * self.pending_bytes).max(ROW_GROUP_BYTES / 2);
            }
        }
        Ok(())
    }

    fn compact(&mut self) -> Result<(), LoadError> {
        if self.pending.len() > 1 {
            let all = concat_batches(&self.pending[0].schema(), &self.pending)?;
            self.pending = vec![all];
        }
        self.pending_bytes = self.pending.iter().map(|b| b.get_array_memory_size()).sum();
        Ok(())
    }

    fn write_pending(&mut self) -> Result<(), LoadError> {
        // One sort and one write of the row group's rows: the windows' dates are disjoint
        // and in order, so sorting them together is sorting each. Per window, the sort and
        // each column's leaf and level setup of a write were most of the encode of a daily
        // run's windows of a few dozen rows.
        let pending = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let all = match pending.as_slice() {
            [] => return Ok(()),
            [one] => one.clone(),
            many => concat_batches(&many[0].schema(), many)?,
        };
        let sorted = sort(self.report, &all)?;
        self.writer.write(&sorted).map_err(stream_error)
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
pub(crate) fn merge_encode(
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
    let mut w = table_writer(report, &mut buf, compression)?;
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

    /// The cached properties write the very file `ArrowWriter` writes with its own.
    #[test]
    fn a_table_writer_writes_what_arrow_writer_writes() {
        for report in REPORTS.iter() {
            for c in [Compression::Zstd, Compression::None] {
                let empty = RecordBatch::new_empty(schema(report));
                let plain = encode(&empty, c).expect("encode");
                for _ in 0..2 {
                    let mut buf = Vec::new();
                    let mut w = table_writer(report, &mut buf, c).expect("writer");
                    w.write(&empty).expect("write");
                    w.close().expect("close");
                    assert_eq!(buf, plain.as_ref(), "{}", report.id);
                }
            }
        }
    }
}
