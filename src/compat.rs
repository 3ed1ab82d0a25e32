//! Files written by other releases or rewritten by other tools: whether their columns agree
//! with the table, and their rows in the table's current schema.
//!
//! A file agrees when every column of the table is there (by name, in any order; a column the
//! catalogue renamed may carry its former name) with the same type and nullability. What does
//! not count: field and schema metadata (descriptions change between releases), the names of
//! nested list fields (`item` or `element`), the physical form of text (Utf8, LargeUtf8,
//! Utf8View and dictionaries of them are one type for text and label columns), and a column
//! marked nullable where ours is not, as long as it holds no null. Columns named like a Hive
//! key are dropped: a tool that read the table with Hive partitioning (DuckDB's auto-detect)
//! wrote the folder's value back into the file. Any other extra column means the file holds
//! something this release would lose by rewriting it, so it does not agree either.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, LargeListArray, ListArray, RecordBatch, StructArray};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, FieldRef, Fields, SchemaRef};

use crate::catalog::{former_names, Report, HIVE_KEYS};

/// The rows of `batch` (read from an existing file) in the table's schema, or why they
/// cannot be (a sentence naming the column).
pub fn conform(
    report: &Report,
    target: &SchemaRef,
    batch: &RecordBatch,
) -> Result<RecordBatch, String> {
    let src = batch.schema();
    // Our own files: same names, types and nullability; only metadata may differ.
    let same = src.fields().len() == target.fields().len()
        && src.fields().iter().zip(target.fields()).all(|(a, b)| {
            a.name() == b.name()
                && a.is_nullable() == b.is_nullable()
                && a.data_type() == b.data_type()
        });
    if same {
        return RecordBatch::try_new(Arc::clone(target), batch.columns().to_vec())
            .map_err(|e| e.to_string());
    }
    let mut used = vec![false; src.fields().len()];
    let mut columns = Vec::with_capacity(target.fields().len());
    for f in target.fields() {
        let i = match src.index_of(f.name()) {
            Ok(i) => i,
            Err(_) => former_names(report)
                .iter()
                .filter(|(_, now)| now == f.name())
                .find_map(|(old, _)| src.index_of(old).ok())
                .ok_or_else(|| format!("column {} is missing", f.name()))?,
        };
        used[i] = true;
        let col = conform_array(batch.column(i), f.data_type(), f.name())?;
        if !f.is_nullable() && col.null_count() > 0 {
            return Err(format!(
                "column {} holds {} nulls, where the table has none",
                f.name(),
                col.null_count()
            ));
        }
        columns.push(col);
    }
    if let Some(extra) = src
        .fields()
        .iter()
        .zip(&used)
        .find(|(f, used)| !**used && !HIVE_KEYS.contains(&f.name().as_str()))
    {
        return Err(format!(
            "column {} is not a column of table {} (a newer release or another tool wrote it; rewriting would lose it)",
            extra.0.name(),
            report.id
        ));
    }
    RecordBatch::try_new(Arc::clone(target), columns).map_err(|e| e.to_string())
}

fn is_text(t: &DataType) -> bool {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, v) => is_text(v),
        _ => false,
    }
}

fn retyped(name: &str, got: &DataType, want: &DataType) -> String {
    format!("column {name} is {got}, the table has {want}")
}

/// One column (or nested value) as `want`, if it is the same type in another form.
fn conform_array(a: &ArrayRef, want: &DataType, name: &str) -> Result<ArrayRef, String> {
    let got = a.data_type();
    if got == want {
        return Ok(Arc::clone(a));
    }
    let cast = |a: &ArrayRef, t: &DataType| {
        arrow::compute::cast(a, t).map_err(|e| format!("column {name}: {e}"))
    };
    match want {
        t if is_text(t) && is_text(got) => {
            // Through plain Utf8: every text form casts to it, and it casts to every form.
            let plain = if *got == DataType::Utf8 {
                Arc::clone(a)
            } else {
                cast(a, &DataType::Utf8)?
            };
            if *want == DataType::Utf8 {
                Ok(plain)
            } else {
                cast(&plain, want)
            }
        }
        DataType::List(item) => match got {
            DataType::List(_) => {
                let l = a.as_list::<i32>();
                let values = conform_item(l.values(), item, name)?;
                ListArray::try_new(
                    Arc::clone(item),
                    l.offsets().clone(),
                    values,
                    l.nulls().cloned(),
                )
                .map(|l| Arc::new(l) as ArrayRef)
                .map_err(|e| format!("column {name}: {e}"))
            }
            DataType::LargeList(_) => {
                let l: &LargeListArray = a.as_list::<i64>();
                let offsets = l
                    .offsets()
                    .iter()
                    .map(|&o| i32::try_from(o))
                    .collect::<Result<Vec<i32>, _>>()
                    .map_err(|_| {
                        format!("column {name}: more list values than a file of ours holds")
                    })?;
                let values = conform_item(l.values(), item, name)?;
                ListArray::try_new(
                    Arc::clone(item),
                    OffsetBuffer::new(offsets.into()),
                    values,
                    l.nulls().cloned(),
                )
                .map(|l| Arc::new(l) as ArrayRef)
                .map_err(|e| format!("column {name}: {e}"))
            }
            _ => Err(retyped(name, got, want)),
        },
        DataType::Struct(fields) => match got {
            DataType::Struct(_) => conform_struct(a.as_struct(), fields, name),
            _ => Err(retyped(name, got, want)),
        },
        _ => Err(retyped(name, got, want)),
    }
}

fn conform_item(values: &ArrayRef, item: &FieldRef, name: &str) -> Result<ArrayRef, String> {
    let v = conform_array(values, item.data_type(), name)?;
    if !item.is_nullable() && v.null_count() > 0 {
        return Err(format!(
            "column {name}: list holds nulls, where the table has none"
        ));
    }
    Ok(v)
}

fn conform_struct(s: &StructArray, fields: &Fields, name: &str) -> Result<ArrayRef, String> {
    let DataType::Struct(got) = s.data_type() else {
        return Err(format!("column {name} is not a struct"));
    };
    if got.len() != fields.len() {
        let names = |f: &Fields| {
            f.iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(format!(
            "column {name} has fields ({}), the table has ({})",
            names(got),
            names(fields)
        ));
    }
    let mut children = Vec::with_capacity(fields.len());
    for f in fields {
        let (i, _) = got
            .find(f.name())
            .ok_or_else(|| format!("column {name} has no field {}", f.name()))?;
        let path = format!("{name}.{}", f.name());
        let c = conform_array(s.column(i), f.data_type(), &path)?;
        children.push(c);
    }
    // try_new refuses a null in a non-nullable field that its struct does not mask.
    StructArray::try_new(fields.clone(), children, s.nulls().cloned())
        .map(|s| Arc::new(s) as ArrayRef)
        .map_err(|e| format!("column {name}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog;
    use crate::catalog::schema;
    use crate::transform::decode;
    use arrow::datatypes::{Field, Schema};
    use std::collections::HashMap;

    fn sample(id: &str, body: &str) -> (&'static Report, RecordBatch) {
        let r = catalog::find(id).unwrap();
        (r, decode(r, body.as_bytes()).unwrap().batch)
    }

    /// The batch as another writer would give it back: every field through `f`.
    fn rewrite(b: &RecordBatch, f: impl Fn(&Field, &ArrayRef) -> (Field, ArrayRef)) -> RecordBatch {
        let (fields, cols): (Vec<Field>, Vec<ArrayRef>) = b
            .schema()
            .fields()
            .iter()
            .zip(b.columns())
            .map(|(fl, c)| f(fl, c))
            .unzip();
        RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap()
    }

    const UPSTREAM: &str = r#"{"list":[{"ref_date":"2025-01-02","msg_type":2,"msg_user":1,"msg_count":1},
        {"ref_date":"2025-01-01","msg_type":1,"msg_user":5,"msg_count":9}]}"#;

    #[test]
    fn metadata_order_text_forms_and_nullability_do_not_count() {
        let (r, b) = sample("upstream_msg", UPSTREAM);
        let target = schema(r);
        // Another description, everything nullable, labels as LargeUtf8, columns reversed.
        let other = rewrite(&b, |f, c| {
            let c = if is_text(c.data_type()) {
                arrow::compute::cast(c, &DataType::LargeUtf8).unwrap()
            } else {
                Arc::clone(c)
            };
            let f = Field::new(f.name(), c.data_type().clone(), true)
                .with_metadata(HashMap::from([("description".into(), "old words".into())]));
            (f, c)
        });
        let n = other.num_columns();
        let reversed = other.project(&(0..n).rev().collect::<Vec<_>>()).unwrap();
        for x in [&other, &reversed] {
            let got = conform(r, &target, x).unwrap();
            assert_eq!(got, b.clone().with_schema(Arc::clone(&target)).unwrap());
            assert_eq!(got.schema(), target, "current metadata");
        }
        // A Hive key written back into the file is dropped; any other extra column is not.
        let mut cols = b.columns().to_vec();
        let mut fields: Vec<Field> = b
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let acct: ArrayRef = Arc::new(arrow::array::StringArray::from(vec!["a"; b.num_rows()]));
        cols.push(Arc::clone(&acct));
        fields.push(Field::new("account", DataType::Utf8, true));
        let with_key =
            RecordBatch::try_new(Arc::new(Schema::new(fields.clone())), cols.clone()).unwrap();
        assert_eq!(
            conform(r, &target, &with_key).unwrap().num_columns(),
            b.num_columns()
        );
        cols.push(acct);
        fields.push(Field::new("note", DataType::Utf8, true));
        let extra = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap();
        let e = conform(r, &target, &extra).unwrap_err();
        assert!(e.contains("column note is not a column"), "{e}");
    }

    #[test]
    fn missing_retyped_and_null_columns_do_not_agree() {
        let (r, b) = sample("upstream_msg", UPSTREAM);
        let target = schema(r);
        let missing = b.project(&[0, 1, 2]).unwrap();
        let e = conform(r, &target, &missing).unwrap_err();
        assert!(e.contains("is missing"), "{e}");
        let retyped = rewrite(&b, |f, c| {
            if f.name() == "msg_user" {
                let c = arrow::compute::cast(c, &DataType::Float64).unwrap();
                (Field::new(f.name(), DataType::Float64, false), c)
            } else {
                (f.clone(), Arc::clone(c))
            }
        });
        let e = conform(r, &target, &retyped).unwrap_err();
        assert_eq!(e, "column msg_user is Float64, the table has Int64");
        let nulls = rewrite(&b, |f, c| {
            if f.name() == "msg_count" {
                let c: ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![None, Some(1)]));
                (Field::new(f.name(), DataType::Int64, true), c)
            } else {
                (f.clone(), Arc::clone(c))
            }
        });
        let e = conform(r, &target, &nulls).unwrap_err();
        assert!(e.contains("msg_count holds 1 nulls"), "{e}");
    }

    #[test]
    fn nested_lists_merge_under_other_item_names_and_former_names_are_read() {
        let r = catalog::find("ad_settlement").unwrap();
        let body = r#"{"list":[{"date":"2024-03-25","zone":"z","month":"202403","order":1,"sett_status":5,
            "settled_revenue":1,"slot_revenue":[{"slot_id":"a","slot_settled_revenue":3}]}]}"#;
        let b = crate::transform::decode_value(r, &serde_json::from_str(body).unwrap())
            .unwrap()
            .batch;
        let target = schema(r);
        // An older release: `month`; a tool's list: LargeList<element: struct> with its
        // fields in another order.
        let old = rewrite(&b, |f, c| {
            let name = if f.name() == "settlement_month" {
                "month"
            } else {
                f.name()
            };
            if let DataType::List(_) = c.data_type() {
                let l = c.as_list::<i32>();
                let s = l.values().as_struct();
                let (sf, sc): (Vec<FieldRef>, Vec<ArrayRef>) = s
                    .fields()
                    .iter()
                    .cloned()
                    .zip(s.columns().iter().cloned())
                    .rev()
                    .unzip();
                let s = StructArray::new(Fields::from(sf), sc, None);
                let item = Arc::new(Field::new("element", s.data_type().clone(), true));
                let offsets = l
                    .offsets()
                    .iter()
                    .map(|&o| i64::from(o))
                    .collect::<Vec<_>>();
                let ll = LargeListArray::new(
                    Arc::clone(&item),
                    OffsetBuffer::new(offsets.into()),
                    Arc::new(s),
                    None,
                );
                let c: ArrayRef = Arc::new(ll);
                return (Field::new(name, c.data_type().clone(), true), c);
            }
            (
                Field::new(name, f.data_type().clone(), f.is_nullable()),
                Arc::clone(c),
            )
        });
        assert_eq!(
            conform(r, &target, &old).unwrap(),
            b.with_schema(target).unwrap()
        );
    }
}
