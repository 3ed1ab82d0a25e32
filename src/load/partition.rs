//! Where rows go: a batch split by partition (folders named by `crate::hive`), rows sorted by the
//! report's natural key.

use std::cmp::Ordering;
use std::sync::Arc;

use arrow::array::{make_array, AsArray, MutableArrayData, RecordBatch};
use arrow::compute::{
    lexsort_to_indices, take_record_batch, LexicographicalComparator, SortColumn,
};
use arrow::datatypes::Date32Type;

use super::LoadError;
use crate::catalog::from_date32;
use crate::catalog::Report;
use crate::hive::partition_value;
use crate::pipeline::Partition;

pub(crate) fn ref_dates(batch: &RecordBatch) -> &arrow::array::PrimitiveArray<Date32Type> {
    batch.column(0).as_primitive::<Date32Type>()
}

/// Splits a batch into one batch per partition (by each row's own `ref_date`).
pub fn split(batch: &RecordBatch, p: Partition) -> Result<Vec<(String, RecordBatch)>, LoadError> {
    let dates = ref_dates(batch);
    let mut keys: Vec<String> = Vec::new();
    let mut idx: Vec<Vec<u32>> = Vec::new();
    // Rows come grouped by date: name a partition once per run of equal dates.
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
