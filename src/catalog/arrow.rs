//! The Arrow form of the catalogue: each report's schema, the column types, the fixed
//! dictionaries of label columns and the Date32 day numbers.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use chrono::NaiveDate;

use super::{Kind, Labels, Report, REPORTS};

const UNIX_EPOCH_CE_DAYS: i32 = 719_163;

pub fn date32(d: NaiveDate) -> i32 {
    use chrono::Datelike;
    d.num_days_from_ce() - UNIX_EPOCH_CE_DAYS
}

pub fn from_date32(v: i32) -> NaiveDate {
    NaiveDate::from_num_days_from_ce_opt(v + UNIX_EPOCH_CE_DAYS).unwrap_or(NaiveDate::MIN)
}

pub(crate) fn read_sources_fields() -> Fields {
    Fields::from(vec![
        Field::new("user_count", DataType::Int64, false),
        Field::new("scene_desc", DataType::Utf8, false),
        Field::new("scene_desc_label", DataType::Utf8, false),
    ])
}

pub(crate) fn slot_fields() -> Fields {
    Fields::from(vec![
        Field::new("slot_id", DataType::Utf8, false),
        Field::new("slot_settled_revenue", DataType::Int64, false),
    ])
}

pub(crate) fn jump_fields() -> Fields {
    Fields::from(vec![
        Field::new("position", DataType::Int32, false),
        Field::new("rate", DataType::Float64, false),
    ])
}

pub fn data_type(kind: Kind) -> DataType {
    match kind {
        Kind::Date => DataType::Date32,
        Kind::Int64 => DataType::Int64,
        Kind::Int32 | Kind::Hour => DataType::Int32,
        Kind::Float64 => DataType::Float64,
        Kind::Utf8 => DataType::Utf8,
        Kind::Bool => DataType::Boolean,
        Kind::Label(_) => DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
        Kind::ReadSources => DataType::List(Arc::new(Field::new(
            "item",
            DataType::Struct(read_sources_fields()),
            true,
        ))),
        Kind::JumpPositions => DataType::List(Arc::new(Field::new(
            "item",
            DataType::Struct(jump_fields()),
            true,
        ))),
        Kind::SlotRevenue => DataType::List(Arc::new(Field::new(
            "item",
            DataType::Struct(slot_fields()),
            true,
        ))),
    }
}

/// The Arrow schema of a report's table, with each column's meaning as field metadata.
/// Built once per catalogue report: every batch of a table shares the same `Arc`.
pub fn schema(report: &Report) -> SchemaRef {
    static CACHE: OnceLock<Vec<SchemaRef>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| REPORTS.iter().map(build_schema).collect());
    match catalogue_index(report) {
        Some(i) => Arc::clone(&cache[i]),
        None => build_schema(report),
    }
}

/// Position of a report in the catalogue (by identity: a caller may build its own `Report`).
pub(crate) fn catalogue_index(report: &Report) -> Option<usize> {
    REPORTS.iter().position(|r| std::ptr::eq(r, report))
}

fn build_schema(report: &Report) -> SchemaRef {
    let fields: Vec<Field> = report
        .columns
        .iter()
        .map(|c| {
            Field::new(c.name, data_type(c.kind), c.nullable).with_metadata(HashMap::from([(
                "description".to_string(),
                c.doc.to_string(),
            )]))
        })
        .collect();
    let meta = HashMap::from([
        ("wxcube.report".to_string(), report.id.to_string()),
        ("wxcube.api".to_string(), report.api.to_string()),
    ]);
    Arc::new(Schema::new_with_metadata(fields, meta))
}

/// The dictionary of a label column: every label of the table, then `unknown`. Fixed per
/// table, so every batch shares one dictionary (concatenation does not merge them).
pub fn label_values(labels: &'static Labels) -> ArrayRef {
    static CACHE: OnceLock<Vec<(usize, ArrayRef)>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| {
        let mut out: Vec<(usize, ArrayRef)> = Vec::new();
        for c in REPORTS.iter().flat_map(|r| r.columns) {
            if let Kind::Label(l) = c.kind {
                let id = l as *const Labels as usize;
                if !out.iter().any(|(k, _)| *k == id) {
                    out.push((id, build_label_values(l)));
                }
            }
        }
        out
    });
    let id = labels as *const Labels as usize;
    match cache.iter().find(|(k, _)| *k == id) {
        Some((_, a)) => Arc::clone(a),
        None => build_label_values(labels),
    }
}

fn build_label_values(l: &Labels) -> ArrayRef {
    let all = l
        .ints
        .iter()
        .map(|(_, s)| *s)
        .chain(l.strs.iter().map(|(_, s)| *s))
        .chain(["unknown"]);
    Arc::new(StringArray::from_iter_values(all))
}

/// The dictionary key of an integer code's label (`Labels::int`).
pub(crate) fn key_int(l: &Labels, code: i64) -> i32 {
    match l.ints.iter().position(|(c, _)| *c == code) {
        Some(i) => i as i32,
        None => (l.ints.len() + l.strs.len()) as i32,
    }
}

/// The dictionary key of a string code's label (`Labels::str`).
pub(crate) fn key_str(l: &Labels, code: &str) -> i32 {
    match l.strs.iter().position(|(c, _)| *c == code) {
        Some(i) => (l.ints.len() + i) as i32,
        None => (l.ints.len() + l.strs.len()) as i32,
    }
}
