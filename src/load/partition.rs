//! Where rows go: a batch split by partition (folders named by `crate::hive`), rows sorted by the
//! report's natural key.

use std::cmp::Ordering;
use std::sync::Arc;

use arrow::array::{make_array, ArrayData, AsArray, Capacities, MutableArrayData, RecordBatch};
use arrow::compute::{
    lexsort_to_indices, take_record_batch, LexicographicalComparator, SortColumn,
};
use arrow::datatypes::{DataType, Date32Type};

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
                let ix = match int_key_order(&cols, n) {
                    Some(ix) => ix,
                    None => lexsort_to_indices(&cols, None)?,
                };
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
            let mut out = MutableArrayData::with_capacities(vec![&data], false, room(&data));
            for &(a, b) in &segments {
                out.try_extend(0, a, b)?;
            }
            Ok(make_array(out.freeze()))
        })
        .collect::<Result<Vec<_>, arrow::error::ArrowError>>()?;
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// The rows' order by these key columns, sorted as integer tuples: integers and dates as
/// themselves, text as its rank among the batch's distinct values (byte order, as arrow
/// compares it), ties in row order. A comparison through arrow's comparator goes through a
/// closure per column, and text compares bytes each time: sorting a month of
/// article_total_detail (ref_date, msgid, stat_date) that way was ~7% of a large run.
/// `None` for a key it does not map (more than 3 columns, nulls, other types).
fn int_key_order(cols: &[SortColumn], n: usize) -> Option<arrow::array::UInt32Array> {
    use arrow::array::Array;
    use arrow::datatypes::{DataType, Int16Type, Int32Type, Int64Type, Int8Type};
    if cols.is_empty() || cols.len() > 3 || u32::try_from(n).is_err() {
        return None;
    }
    let mut keys: Vec<([u64; 3], u32)> = (0..n as u32).map(|i| ([0; 3], i)).collect();
    // Signed values keep their order as unsigned once the sign bit is flipped.
    fn ints<T: arrow::datatypes::ArrowPrimitiveType>(
        a: &dyn Array,
        j: usize,
        keys: &mut [([u64; 3], u32)],
    ) where
        T::Native: Into<i64>,
    {
        let v = a.as_primitive::<T>().values();
        for (k, x) in keys.iter_mut().zip(v.iter()) {
            k.0[j] = (Into::<i64>::into(*x) as u64) ^ (1 << 63);
        }
    }
    for (j, c) in cols.iter().enumerate() {
        let a = c.values.as_ref();
        if a.null_count() > 0 || c.options.is_some() || a.len() != n {
            return None;
        }
        match a.data_type() {
            DataType::Date32 => ints::<Date32Type>(a, j, &mut keys),
            DataType::Int8 => ints::<Int8Type>(a, j, &mut keys),
            DataType::Int16 => ints::<Int16Type>(a, j, &mut keys),
            DataType::Int32 => ints::<Int32Type>(a, j, &mut keys),
            DataType::Int64 => ints::<Int64Type>(a, j, &mut keys),
            DataType::Utf8 => {
                let s = a.as_string::<i32>();
                let mut ids: std::collections::HashMap<&str, u32> = Default::default();
                let mut first: Vec<u32> = Vec::with_capacity(n);
                for i in 0..n {
                    let next = ids.len() as u32;
                    first.push(*ids.entry(s.value(i)).or_insert(next));
                }
                let mut distinct: Vec<(&str, u32)> = ids.into_iter().collect();
                distinct.sort_unstable();
                let mut rank = vec![0u64; distinct.len()];
                for (r, (_, id)) in distinct.iter().enumerate() {
                    rank[*id as usize] = r as u64;
                }
                for (k, id) in keys.iter_mut().zip(&first) {
                    k.0[j] = rank[*id as usize];
                }
            }
            _ => return None,
        }
    }
    keys.sort_unstable();
    Some(keys.into_iter().map(|(_, i)| i).collect())
}

/// Most ascending stretches `sort` merges rather than sorting rows.
const MAX_RUNS: usize = 64;

/// The room a reordering of `d`'s rows takes: its own sizes, text and nested values
/// included, so that no buffer grows (and is copied again) while segments are copied in
/// (~2% of a large run). Other types, and data whose sizes cannot be read, get rows only.
fn room(d: &ArrayData) -> Capacities {
    let n = d.len();
    let span = |o: &[i32]| match (o.first(), o.get(n)) {
        (Some(&a), Some(&b)) if b >= a => Some((a as usize, (b - a) as usize)),
        _ => None,
    };
    match d.data_type() {
        DataType::Utf8 | DataType::Binary if d.buffers().len() == 2 => {
            match span(d.buffer::<i32>(0)) {
                Some((_, bytes)) => Capacities::Binary(n, Some(bytes)),
                None => Capacities::Array(n),
            }
        }
        DataType::List(_) if d.buffers().len() == 1 && d.child_data().len() == 1 => {
            let child = &d.child_data()[0];
            match span(d.buffer::<i32>(0)) {
                Some((a, len)) if a + len <= child.len() => {
                    Capacities::List(n, Some(Box::new(room(&child.slice(a, len)))))
                }
                _ => Capacities::Array(n),
            }
        }
        DataType::Struct(_) => Capacities::Struct(
            n,
            Some(
                d.child_data()
                    .iter()
                    .map(|c| match c.len() {
                        l if l == n => room(c),
                        l if d.offset() + n <= l => room(&c.slice(d.offset(), n)),
                        _ => Capacities::Array(n),
                    })
                    .collect(),
            ),
        ),
        _ => Capacities::Array(n),
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Date32Array, Int32Array, Int64Array, StringArray};

    fn col(a: ArrayRef) -> SortColumn {
        SortColumn {
            values: a,
            options: None,
        }
    }

    /// `room` is what a copy of the rows holds: a slice's rows, its text bytes, and its
    /// lists' elements with theirs.
    #[test]
    fn room_is_the_rows_text_and_elements_of_a_slice() {
        use arrow::array::{Array, Int64Builder, ListBuilder, StringBuilder, StructBuilder};
        use arrow::datatypes::Field;
        let fields = vec![
            Field::new("n", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
        ];
        let mut b = ListBuilder::new(StructBuilder::from_fields(fields, 0));
        for row in [
            vec![(1, "ab"), (2, "cde")],
            vec![],
            vec![(3, "f")],
            vec![(4, "ghij"), (5, "")],
        ] {
            for (n, s) in &row {
                let sb = b.values();
                sb.field_builder::<Int64Builder>(0)
                    .unwrap()
                    .append_value(*n);
                sb.field_builder::<StringBuilder>(1)
                    .unwrap()
                    .append_value(s);
                sb.append(true);
            }
            b.append(true);
        }
        let list = b.finish().to_data().slice(1, 3);
        let want = Capacities::List(
            3,
            Some(Box::new(Capacities::Struct(
                3,
                Some(vec![Capacities::Array(3), Capacities::Binary(3, Some(5))]),
            ))),
        );
        assert_eq!(format!("{:?}", room(&list)), format!("{want:?}"));
        let text = StringArray::from(vec!["ab", "cde", "f"])
            .to_data()
            .slice(1, 2);
        assert_eq!(
            format!("{:?}", room(&text)),
            format!("{:?}", Capacities::Binary(2, Some(4)))
        );
        let ints = Int64Array::from(vec![1, 2, 3]).to_data();
        assert_eq!(
            format!("{:?}", room(&ints)),
            format!("{:?}", Capacities::Array(3))
        );
    }

    /// Integer keys order rows as arrow's comparator does: negative numbers, text with
    /// shared prefixes and multi-byte characters, ties (in row order), three columns.
    #[test]
    fn integer_keys_order_rows_as_the_comparator_does() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        let words = ["", "a", "ab", "b", "阅读", "阅", "Z", "a\u{0}", "~"];
        let n = 3000;
        let ints: Vec<i64> = (0..n)
            .map(|_| next(7) as i64 - 3 + i64::MIN / 2 * (next(3) as i64 - 1))
            .collect();
        let text: Vec<&str> = (0..n)
            .map(|_| words[next(words.len() as u64) as usize])
            .collect();
        let dates: Vec<i32> = (0..n).map(|_| 19_000 + next(5) as i32 - 2).collect();
        let small: Vec<i32> = (0..n).map(|_| next(4) as i32 - 2).collect();
        let cases: Vec<Vec<SortColumn>> = vec![
            vec![col(Arc::new(Date32Array::from(dates.clone())))],
            vec![
                col(Arc::new(Date32Array::from(dates.clone()))),
                col(Arc::new(StringArray::from(text.clone()))),
                col(Arc::new(Int64Array::from(ints.clone()))),
            ],
            vec![
                col(Arc::new(StringArray::from(text.clone()))),
                col(Arc::new(Int32Array::from(small))),
            ],
            vec![col(Arc::new(Int64Array::from(ints)))],
        ];
        for cols in cases {
            let ours = int_key_order(&cols, n).expect("mapped");
            let cmp = LexicographicalComparator::try_new(&cols).unwrap();
            let v = ours.values();
            for w in v.windows(2) {
                let (a, b) = (w[0] as usize, w[1] as usize);
                match cmp.compare(a, b) {
                    Ordering::Less => {}
                    Ordering::Equal => assert!(a < b, "ties keep row order"),
                    Ordering::Greater => panic!("rows {a} and {b} out of order"),
                }
            }
            let mut seen = v.to_vec();
            seen.sort_unstable();
            assert_eq!(seen, (0..n as u32).collect::<Vec<_>>());
        }
        // A null, or a type it does not map: the comparator's sort instead.
        let nulls = vec![col(Arc::new(Int64Array::from(vec![Some(1), None])))];
        assert!(int_key_order(&nulls, 2).is_none());
        let floats = vec![col(Arc::new(arrow::array::Float64Array::from(vec![
            1.0, 0.5,
        ])))];
        assert!(int_key_order(&floats, 2).is_none());
    }
}
