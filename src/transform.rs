//! Transform: a WeChat JSON response → one typed Arrow `RecordBatch` per the catalogue.
//!
//! The schema of a report is built from its catalogue columns only, so every file of a
//! table has the same schema forever. Column descriptions travel as Parquet/Arrow field
//! metadata (`description`). Unknown extra fields in a response are ignored; a missing
//! non-nullable field or a value of the wrong type is a decode error naming the report,
//! row and field (the window is then retried or reported, never half-loaded).
//!
//! Two decoders share the builders: a streaming one (`fast`) that walks the JSON once and
//! appends straight into Arrow builders, and the reference one over a parsed
//! `serde_json::Value` (`decode_value`). The streaming one gives up on anything unusual
//! (an error answer, a wrong type, a missing field, a duplicate key) and the reference one
//! then decides, so both accept the same bodies and every error reads the same.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, DictionaryArray, Float64Builder, Int32Builder,
    Int64Builder, ListBuilder, StringArray, StringBuilder, StructBuilder,
};
use arrow::datatypes::{DataType, Field, Fields, Int32Type, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use chrono::NaiveDate;
use serde_json::Value;

use crate::catalog::{Col, Kind, Labels, Report, Shape, Src, REPORTS, SCENE_DESC};

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("response is not JSON: {0}")]
    Json(String),
    #[error("response has no `list` array")]
    NoList,
    #[error("row {row}: field `{field}` is missing")]
    Missing { row: usize, field: &'static str },
    #[error("row {row}: field `{field}` should be {expected}, got {got}")]
    Type {
        row: usize,
        field: &'static str,
        expected: &'static str,
        got: String,
    },
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

/// An `errcode` answer (HTTP 200 with a non-zero errcode, or `base_resp.ret`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub errcode: i64,
    pub errmsg: String,
}

const UNIX_EPOCH_CE_DAYS: i32 = 719_163;

pub fn date32(d: NaiveDate) -> i32 {
    use chrono::Datelike;
    d.num_days_from_ce() - UNIX_EPOCH_CE_DAYS
}

pub fn from_date32(v: i32) -> NaiveDate {
    NaiveDate::from_num_days_from_ce_opt(v + UNIX_EPOCH_CE_DAYS).unwrap_or(NaiveDate::MIN)
}

fn read_sources_fields() -> Fields {
    Fields::from(vec![
        Field::new("user_count", DataType::Int64, false),
        Field::new("scene_desc", DataType::Utf8, false),
        Field::new("scene_desc_label", DataType::Utf8, false),
    ])
}

fn slot_fields() -> Fields {
    Fields::from(vec![
        Field::new("slot_id", DataType::Utf8, false),
        Field::new("slot_settled_revenue", DataType::Int64, false),
    ])
}

fn jump_fields() -> Fields {
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
fn catalogue_index(report: &Report) -> Option<usize> {
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

/// Checks a response for an API error: a non-zero `errcode`, or `base_resp.ret`.
pub fn api_error(v: &Value) -> Option<ApiError> {
    let code = v.get("errcode").and_then(Value::as_i64).unwrap_or(0);
    if code != 0 {
        let msg = v
            .get("errmsg")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        return Some(ApiError {
            errcode: code,
            errmsg: msg,
        });
    }
    if let Some(b) = v.get("base_resp") {
        let ret = b.get("ret").and_then(Value::as_i64).unwrap_or(0);
        if ret != 0 {
            let msg = b
                .get("err_msg")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            return Some(ApiError {
                errcode: ret,
                errmsg: msg,
            });
        }
    }
    None
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
fn key_int(l: &Labels, code: i64) -> i32 {
    match l.ints.iter().position(|(c, _)| *c == code) {
        Some(i) => i as i32,
        None => (l.ints.len() + l.strs.len()) as i32,
    }
}

/// The dictionary key of a string code's label (`Labels::str`).
fn key_str(l: &Labels, code: &str) -> i32 {
    match l.strs.iter().position(|(c, _)| *c == code) {
        Some(i) => (l.ints.len() + i) as i32,
        None => (l.ints.len() + l.strs.len()) as i32,
    }
}

enum Builder {
    Date(Date32Builder),
    I64(Int64Builder),
    I32(Int32Builder),
    F64(Float64Builder),
    Str(StringBuilder),
    Bool(BooleanBuilder),
    /// Keys into the label table's fixed dictionary (see `label_values`).
    Label(Int32Builder, &'static Labels),
    List(ListBuilder<StructBuilder>),
}

impl Builder {
    fn new(kind: Kind, cap: usize) -> Self {
        match kind {
            Kind::Date => Builder::Date(Date32Builder::with_capacity(cap)),
            Kind::Int64 => Builder::I64(Int64Builder::with_capacity(cap)),
            Kind::Int32 | Kind::Hour => Builder::I32(Int32Builder::with_capacity(cap)),
            Kind::Float64 => Builder::F64(Float64Builder::with_capacity(cap)),
            Kind::Utf8 => Builder::Str(StringBuilder::with_capacity(cap, cap * 16)),
            Kind::Bool => Builder::Bool(BooleanBuilder::with_capacity(cap)),
            Kind::Label(l) => Builder::Label(Int32Builder::with_capacity(cap), l),
            Kind::ReadSources => {
                let sb = StructBuilder::from_fields(read_sources_fields(), cap * 4);
                Builder::List(
                    ListBuilder::with_capacity(sb, cap).with_field(Arc::new(Field::new(
                        "item",
                        DataType::Struct(read_sources_fields()),
                        true,
                    ))),
                )
            }
            Kind::JumpPositions => {
                let sb = StructBuilder::from_fields(jump_fields(), cap * 5);
                Builder::List(
                    ListBuilder::with_capacity(sb, cap).with_field(Arc::new(Field::new(
                        "item",
                        DataType::Struct(jump_fields()),
                        true,
                    ))),
                )
            }
            Kind::SlotRevenue => {
                let sb = StructBuilder::from_fields(slot_fields(), cap * 2);
                Builder::List(
                    ListBuilder::with_capacity(sb, cap).with_field(Arc::new(Field::new(
                        "item",
                        DataType::Struct(slot_fields()),
                        true,
                    ))),
                )
            }
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Date(b) => Arc::new(b.finish()),
            Builder::I64(b) => Arc::new(b.finish()),
            Builder::I32(b) => Arc::new(b.finish()),
            Builder::F64(b) => Arc::new(b.finish()),
            Builder::Str(b) => Arc::new(b.finish()),
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Label(b, l) => Arc::new(DictionaryArray::<Int32Type>::new(
                b.finish(),
                label_values(l),
            )),
            Builder::List(b) => Arc::new(b.finish()),
        }
    }
}

fn kind_name(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{:?}", s.chars().take(40).collect::<String>()),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// Integers: JSON integers, integral floats, or strings of digits (WeChat is not consistent).
fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

struct Ctx<'a> {
    resp: &'a Value,
    item: &'a Value,
    nested: Option<&'a Value>,
    row: usize,
}

impl<'a> Ctx<'a> {
    fn get(&self, src: Src) -> Option<&'a Value> {
        let v = match src {
            Src::Item(f) => self.item.get(f),
            Src::Detail(f) => self.item.get("detail").and_then(|d| d.get(f)),
            Src::Nested(f) => self.nested.and_then(|n| n.get(f)),
            Src::Response(f) => self.resp.get(f),
        };
        v.filter(|v| !v.is_null())
    }
}

fn type_err(row: usize, col: &Col, expected: &'static str, got: &Value) -> DecodeError {
    DecodeError::Type {
        row,
        field: col.src.field(),
        expected,
        got: kind_name(got),
    }
}

fn push(b: &mut Builder, col: &Col, ctx: &Ctx) -> Result<(), DecodeError> {
    let v = ctx.get(col.src);
    let row = ctx.row;
    let Some(v) = v else {
        if col.nullable {
            match b {
                Builder::Date(b) => b.append_null(),
                Builder::I64(b) => b.append_null(),
                Builder::I32(b) => b.append_null(),
                Builder::F64(b) => b.append_null(),
                Builder::Str(b) => b.append_null(),
                Builder::Bool(b) => b.append_null(),
                Builder::Label(b, _) => b.append_null(),
                Builder::List(b) => b.append_null(),
            }
            return Ok(());
        }
        return match (b, col.kind) {
            // Read sources / drop-off positions absent: an empty list, not an error.
            (Builder::List(b), _) => {
                b.append(true);
                Ok(())
            }
            // `is_delay` absent means WeChat did not flag the data.
            (Builder::Bool(b), Kind::Bool) if matches!(col.src, Src::Response(_)) => {
                b.append_value(false);
                Ok(())
            }
            _ => Err(DecodeError::Missing {
                row,
                field: col.src.field(),
            }),
        };
    };
    match (b, col.kind) {
        (Builder::Date(b), _) => {
            let d = v
                .as_str()
                .and_then(crate::dates::parse)
                .ok_or_else(|| type_err(row, col, "a YYYY-MM-DD date", v))?;
            b.append_value(date32(d));
        }
        (Builder::I64(b), _) => {
            b.append_value(as_i64(v).ok_or_else(|| type_err(row, col, "an integer", v))?)
        }
        (Builder::I32(b), Kind::Hour) => {
            let h = as_i64(v).ok_or_else(|| type_err(row, col, "an integer", v))?;
            b.append_value((h / 100) as i32);
        }
        (Builder::I32(b), _) => {
            let x = as_i64(v)
                .and_then(|x| i32::try_from(x).ok())
                .ok_or_else(|| type_err(row, col, "a 32-bit integer", v))?;
            b.append_value(x);
        }
        (Builder::F64(b), _) => {
            b.append_value(as_f64(v).ok_or_else(|| type_err(row, col, "a number", v))?)
        }
        (Builder::Str(b), _) => match v {
            Value::String(s) => b.append_value(s),
            Value::Number(n) => b.append_value(n.to_string()),
            _ => return Err(type_err(row, col, "a string", v)),
        },
        (Builder::Bool(b), _) => match v {
            Value::Bool(x) => b.append_value(*x),
            Value::Number(n) if n.as_i64() == Some(0) || n.as_i64() == Some(1) => {
                b.append_value(n.as_i64() == Some(1))
            }
            _ => return Err(type_err(row, col, "a boolean", v)),
        },
        (Builder::Label(b, labels), _) => {
            let key = match v {
                Value::String(s) => key_str(labels, s),
                _ => key_int(
                    labels,
                    as_i64(v).ok_or_else(|| type_err(row, col, "an integer code", v))?,
                ),
            };
            b.append_value(key);
        }
        (Builder::List(b), Kind::ReadSources) => {
            let arr = v
                .as_array()
                .ok_or_else(|| type_err(row, col, "an array", v))?;
            for e in arr {
                let count = e
                    .get("user_count")
                    .and_then(as_i64)
                    .ok_or_else(|| type_err(row, col, "{user_count, scene_desc}", e))?;
                let scene = e
                    .get("scene_desc")
                    .and_then(Value::as_str)
                    .ok_or_else(|| type_err(row, col, "{user_count, scene_desc}", e))?;
                let sb = b.values();
                field_i64(sb, 0).append_value(count);
                field_str(sb, 1).append_value(scene);
                field_str(sb, 2).append_value(SCENE_DESC.str(scene));
                sb.append(true);
            }
            b.append(true);
        }
        (Builder::List(b), Kind::JumpPositions) => {
            let arr = v
                .as_array()
                .ok_or_else(|| type_err(row, col, "an array", v))?;
            for e in arr {
                let pos = e
                    .get("position")
                    .and_then(as_i64)
                    .and_then(|x| i32::try_from(x).ok())
                    .ok_or_else(|| type_err(row, col, "{position, rate}", e))?;
                let rate = e
                    .get("rate")
                    .and_then(as_f64)
                    .ok_or_else(|| type_err(row, col, "{position, rate}", e))?;
                let sb = b.values();
                if let Some(f) = sb.field_builder::<Int32Builder>(0) {
                    f.append_value(pos);
                }
                if let Some(f) = sb.field_builder::<Float64Builder>(1) {
                    f.append_value(rate);
                }
                sb.append(true);
            }
            b.append(true);
        }
        (Builder::List(b), Kind::SlotRevenue) => {
            let arr = v
                .as_array()
                .ok_or_else(|| type_err(row, col, "an array", v))?;
            for e in arr {
                let slot = match e.get("slot_id") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    _ => return Err(type_err(row, col, "{slot_id, slot_settled_revenue}", e)),
                };
                let rev = e
                    .get("slot_settled_revenue")
                    .and_then(as_i64)
                    .ok_or_else(|| type_err(row, col, "{slot_id, slot_settled_revenue}", e))?;
                let sb = b.values();
                if let Some(f) = sb.field_builder::<StringBuilder>(0) {
                    f.append_value(&slot);
                }
                if let Some(f) = sb.field_builder::<Int64Builder>(1) {
                    f.append_value(rev);
                }
                sb.append(true);
            }
            b.append(true);
        }
        _ => unreachable!("builder made from the same kind"),
    }
    Ok(())
}

fn field_i64(sb: &mut StructBuilder, i: usize) -> &mut Int64Builder {
    sb.field_builder::<Int64Builder>(i)
        .expect("read_user_source field 0 is Int64")
}

fn field_str(sb: &mut StructBuilder, i: usize) -> &mut StringBuilder {
    sb.field_builder::<StringBuilder>(i)
        .expect("read_user_source fields 1, 2 are Utf8")
}

/// The outcome of decoding one successful response.
#[derive(Debug)]
pub struct Decoded {
    pub batch: RecordBatch,
    /// The response's `is_delay` (false where the report has none).
    pub is_delay: bool,
}

/// Decodes a response body. `Err(Ok(api))` is WeChat's error answer, `Err(Err(e))` a body
/// that is not a valid response.
pub fn decode(report: &Report, body: &[u8]) -> Result<Decoded, Result<ApiError, DecodeError>> {
    if let Some(d) = fast::decode(report, body) {
        return Ok(d);
    }
    decode_reference(report, body)
}

/// The reference decoder: parse into a `Value` tree, then build the columns. Slower; it
/// defines what `decode` accepts and the errors it gives.
pub fn decode_reference(
    report: &Report,
    body: &[u8],
) -> Result<Decoded, Result<ApiError, DecodeError>> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| Err(DecodeError::Json(e.to_string())))?;
    if let Some(api) = api_error(&v) {
        return Err(Ok(api));
    }
    decode_value(report, &v).map_err(Err)
}

pub fn decode_value(report: &Report, v: &Value) -> Result<Decoded, DecodeError> {
    let list = match v.get("list") {
        Some(Value::Array(a)) => a.as_slice(),
        Some(Value::Null) => &[],
        _ if v.as_object().is_some_and(|o| o.is_empty()) => &[],
        _ => return Err(DecodeError::NoList),
    };
    let cap = match report.shape {
        Shape::List => list.len(),
        Shape::Flatten(_) => list.len() * 8,
    };
    let mut builders: Vec<Builder> = report
        .columns
        .iter()
        .map(|c| Builder::new(c.kind, cap))
        .collect();
    let mut row = 0usize;
    for item in list {
        match report.shape {
            Shape::List => {
                let ctx = Ctx {
                    resp: v,
                    item,
                    nested: None,
                    row,
                };
                for (b, c) in builders.iter_mut().zip(report.columns) {
                    push(b, c, &ctx)?;
                }
                row += 1;
            }
            Shape::Flatten(key) => {
                let nested = match item.get(key) {
                    Some(Value::Array(a)) => a.as_slice(),
                    None | Some(Value::Null) => &[],
                    Some(other) => {
                        return Err(DecodeError::Type {
                            row,
                            field: key,
                            expected: "an array",
                            got: kind_name(other),
                        })
                    }
                };
                for n in nested {
                    let ctx = Ctx {
                        resp: v,
                        item,
                        nested: Some(n),
                        row,
                    };
                    for (b, c) in builders.iter_mut().zip(report.columns) {
                        push(b, c, &ctx)?;
                    }
                    row += 1;
                }
            }
        }
    }
    let arrays: Vec<ArrayRef> = builders.iter_mut().map(Builder::finish).collect();
    let batch = RecordBatch::try_new(schema(report), arrays)?;
    let is_delay = v.get("is_delay").and_then(Value::as_bool).unwrap_or(false);
    Ok(Decoded { batch, is_delay })
}

/// The streaming decoder: one pass over the body, values appended as they are read.
///
/// It returns `None` whenever the reference decoder might answer differently (error
/// answers, wrong types, missing fields, duplicate keys, escaped keys): the reference
/// decoder then runs on the same bytes. On the bodies it accepts, it builds the same
/// arrays as the reference decoder (tested below against it on every report).
mod fast {
    use std::borrow::Cow;
    use std::fmt;
    use std::sync::OnceLock;

    use arrow::array::{ArrayRef, Float64Builder, Int32Builder, Int64Builder, StringBuilder};
    use arrow::array::{ListBuilder, StructBuilder};
    use arrow::record_batch::RecordBatch;
    use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

    use super::{catalogue_index, date32, key_int, key_str, schema, Builder, Decoded, SCENE_DESC};
    use crate::catalog::{Col, Kind, Report, Shape, Src, REPORTS};

    /// Most columns (and fields per level) the bit masks can track.
    const MAX_COLS: usize = 64;

    /// The catalogue columns a JSON field feeds (e.g. `ref_hour` feeds `ref_hour` and
    /// `hour`; a code feeds its column and its label).
    struct FieldMap {
        name: &'static str,
        cols: Vec<usize>,
        /// Feeds one List<Struct> column, streamed element by element.
        list: bool,
        /// Feeds date columns only: read as bytes, no UTF-8 check.
        date: bool,
    }

    /// Where each column's value sits in a response, per JSON level.
    struct Layout {
        item: Vec<FieldMap>,
        detail: Vec<FieldMap>,
        nested: Vec<FieldMap>,
        response: Vec<FieldMap>,
        flatten: Option<&'static str>,
        /// Columns filled once per row from the item / nested level.
        item_cols: u64,
        nested_cols: u64,
        /// False: a layout this decoder does not handle; always use the reference one.
        usable: bool,
    }

    fn add(level: &mut Vec<FieldMap>, name: &'static str, col: usize, kind: Kind) {
        let list = matches!(kind, Kind::ReadSources | Kind::JumpPositions);
        let date = matches!(kind, Kind::Date);
        match level.iter_mut().find(|f| f.name == name) {
            Some(f) => {
                f.cols.push(col);
                f.list |= list;
                f.date &= date;
            }
            None => level.push(FieldMap {
                name,
                cols: vec![col],
                list,
                date,
            }),
        }
    }

    fn build_layout(report: &Report) -> Layout {
        let mut l = Layout {
            item: Vec::new(),
            detail: Vec::new(),
            nested: Vec::new(),
            response: Vec::new(),
            flatten: match report.shape {
                Shape::List => None,
                Shape::Flatten(k) => Some(k),
            },
            item_cols: 0,
            nested_cols: 0,
            usable: report.columns.len() <= MAX_COLS,
        };
        if !l.usable {
            return l;
        }
        for (i, c) in report.columns.iter().enumerate() {
            match c.src {
                Src::Item(f) => {
                    add(&mut l.item, f, i, c.kind);
                    l.item_cols |= 1 << i;
                }
                Src::Detail(f) => {
                    add(&mut l.detail, f, i, c.kind);
                    l.item_cols |= 1 << i;
                }
                Src::Nested(f) => {
                    add(&mut l.nested, f, i, c.kind);
                    l.nested_cols |= 1 << i;
                }
                Src::Response(f) => add(&mut l.response, f, i, c.kind),
            }
        }
        let flatten_items_with_lists =
            l.flatten.is_some() && l.item.iter().chain(&l.detail).any(|f| f.list);
        // Top-level keys the decoder reads itself.
        let reserved = ["list", "errcode", "base_resp"];
        l.usable = !flatten_items_with_lists
            && (l.flatten.is_some() || l.nested.is_empty())
            && l.response
                .iter()
                .all(|f| !f.list && !reserved.contains(&f.name))
            && l.item
                .iter()
                .all(|f| f.name != "detail" && Some(f.name) != l.flatten)
            && [&l.item, &l.detail, &l.nested, &l.response]
                .iter()
                .all(|lv| lv.len() <= MAX_COLS && lv.iter().all(|f| !f.list || f.cols.len() == 1));
        l
    }

    fn layout(report: &Report) -> Option<&'static Layout> {
        static CACHE: OnceLock<Vec<Layout>> = OnceLock::new();
        let cache = CACHE.get_or_init(|| REPORTS.iter().map(build_layout).collect());
        // A report outside the catalogue goes the reference way.
        let l = &cache[catalogue_index(report)?];
        l.usable.then_some(l)
    }

    /// Which field follows which in a level's objects, as last seen. The objects of a
    /// response repeat one key order (whatever order the server uses), also when rows leave
    /// fields out, so the guess is nearly always right.
    #[derive(Clone, Copy)]
    struct Hint {
        prev: usize,
        follow: [u8; MAX_COLS + 1],
    }

    /// `prev` before an object's first key.
    const START: usize = MAX_COLS;

    impl Hint {
        fn new() -> Hint {
            let mut follow = [0u8; MAX_COLS + 1];
            for (i, f) in follow.iter_mut().enumerate().take(MAX_COLS) {
                *f = (i + 1) as u8;
            }
            follow[START] = 0;
            Hint {
                prev: START,
                follow,
            }
        }
    }

    /// Equal keys, without a `memcmp` call: field names are short.
    fn same(a: &[u8], b: &[u8]) -> bool {
        let n = a.len();
        if n != b.len() {
            return false;
        }
        let word = |s: &[u8], at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&s[at..at + 8]);
            u64::from_ne_bytes(w)
        };
        if n < 8 {
            return a.iter().zip(b).all(|(x, y)| x == y);
        }
        let mut at = 0;
        while at + 8 < n {
            if word(a, at) != word(b, at) {
                return false;
            }
            at += 8;
        }
        // The last 8 bytes, overlapping what was compared already.
        word(a, n - 8) == word(b, n - 8)
    }

    /// The field `key` names: the one that followed the previous key last time, else a scan.
    fn find(level: &[FieldMap], key: &[u8], hint: &mut Hint) -> Option<usize> {
        let guess = usize::from(hint.follow[hint.prev]);
        let i = match level.get(guess) {
            Some(f) if same(f.name.as_bytes(), key) => guess,
            _ => {
                let i = level.iter().position(|f| same(f.name.as_bytes(), key))?;
                hint.follow[hint.prev] = i as u8;
                i
            }
        };
        hint.prev = i;
        Some(i)
    }

    /// An object key as raw bytes: serde_json then skips the UTF-8 check a `&str` costs.
    /// A key with escapes cannot be borrowed: the reference decoder takes the body.
    struct KeySeed;

    impl<'de> DeserializeSeed<'de> for KeySeed {
        type Value = &'de [u8];
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<&'de [u8], D::Error> {
            d.deserialize_bytes(self)
        }
    }

    impl<'de> Visitor<'de> for KeySeed {
        type Value = &'de [u8];
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object key")
        }
        fn visit_borrowed_bytes<E>(self, v: &'de [u8]) -> Result<&'de [u8], E> {
            Ok(v)
        }
        fn visit_borrowed_str<E>(self, v: &'de str) -> Result<&'de [u8], E> {
            Ok(v.as_bytes())
        }
    }

    fn next_key<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Option<&'de [u8]>, A::Error> {
        map.next_key_seed(KeySeed)
    }

    /// Skips the value of a key no column reads. The key is checked as the reference
    /// decoder would (known keys are ASCII), so both reject the same bodies.
    fn skip<'de, A: MapAccess<'de>>(map: &mut A, key: &[u8]) -> Result<(), A::Error> {
        std::str::from_utf8(key).map_err(|_| bail(Bail))?;
        map.next_value::<IgnoredAny>().map(|_| ())
    }

    /// A JSON scalar as read; arrays and objects are never scalars here.
    #[derive(Clone)]
    enum Scalar<'de> {
        Null,
        Bool(bool),
        U64(u64),
        I64(i64),
        F64(f64),
        Str(Cow<'de, str>),
        /// A string for a date column, not checked for UTF-8 (a date is ASCII or invalid).
        Raw(&'de [u8]),
    }

    /// Same rules as the reference `as_i64` on the `Value` the scalar would parse into.
    fn sc_i64(v: &Scalar) -> Option<i64> {
        match v {
            Scalar::U64(u) => i64::try_from(*u).ok(),
            Scalar::I64(i) => Some(*i),
            Scalar::F64(f) => Some(*f)
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64),
            Scalar::Str(s) => s.trim().parse().ok(),
            Scalar::Null | Scalar::Bool(_) | Scalar::Raw(_) => None,
        }
    }

    fn sc_f64(v: &Scalar) -> Option<f64> {
        match v {
            Scalar::U64(u) => Some(*u as f64),
            Scalar::I64(i) => Some(*i as f64),
            Scalar::F64(f) => Some(*f),
            Scalar::Str(s) => s.trim().parse().ok(),
            Scalar::Null | Scalar::Bool(_) | Scalar::Raw(_) => None,
        }
    }

    /// Any failure: the reference decoder takes over.
    struct Bail;

    fn bail<E: de::Error>(_: Bail) -> E {
        E::custom("fall back to the reference decoder")
    }

    struct ScalarSeed;

    impl<'de> DeserializeSeed<'de> for ScalarSeed {
        type Value = Scalar<'de>;
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Scalar<'de>, D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for ScalarSeed {
        type Value = Scalar<'de>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON scalar")
        }
        fn visit_bool<E>(self, v: bool) -> Result<Scalar<'de>, E> {
            Ok(Scalar::Bool(v))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Scalar<'de>, E> {
            Ok(Scalar::I64(v))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Scalar<'de>, E> {
            Ok(Scalar::U64(v))
        }
        fn visit_f64<E>(self, v: f64) -> Result<Scalar<'de>, E> {
            Ok(Scalar::F64(v))
        }
        fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Scalar<'de>, E> {
            Ok(Scalar::Str(Cow::Borrowed(v)))
        }
        fn visit_str<E>(self, v: &str) -> Result<Scalar<'de>, E> {
            Ok(Scalar::Str(Cow::Owned(v.to_owned())))
        }
        fn visit_string<E>(self, v: String) -> Result<Scalar<'de>, E> {
            Ok(Scalar::Str(Cow::Owned(v)))
        }
        fn visit_unit<E>(self) -> Result<Scalar<'de>, E> {
            Ok(Scalar::Null)
        }
        fn visit_none<E>(self) -> Result<Scalar<'de>, E> {
            Ok(Scalar::Null)
        }
    }

    /// The value of a field that feeds one column, appended as it is read: an integer into
    /// an integer column directly, anything else through `push` (the same conversions).
    /// True if a value was appended, false for null.
    struct ColSeed<'a> {
        b: &'a mut Builder,
        col: &'static Col,
        memo: &'a mut DateMemo,
    }

    impl ColSeed<'_> {
        fn put<E: de::Error>(self, v: Scalar) -> Result<bool, E> {
            push(self.b, self.col, &v, self.memo).map_err(bail)?;
            Ok(true)
        }
    }

    impl<'de> DeserializeSeed<'de> for ColSeed<'_> {
        type Value = bool;
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for ColSeed<'_> {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON scalar")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
            match (&mut *self.b, i64::try_from(v)) {
                (Builder::I64(b), Ok(x)) => {
                    b.append_value(x);
                    Ok(true)
                }
                _ => self.put(Scalar::U64(v)),
            }
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
            match &mut *self.b {
                Builder::I64(b) => {
                    b.append_value(v);
                    Ok(true)
                }
                _ => self.put(Scalar::I64(v)),
            }
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
            self.put(Scalar::Bool(v))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<bool, E> {
            self.put(Scalar::F64(v))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
            self.put(Scalar::Str(Cow::Borrowed(v)))
        }
        fn visit_unit<E>(self) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_none<E>(self) -> Result<bool, E> {
            Ok(false)
        }
    }

    /// A date column's value: a string as raw bytes, or null.
    struct DateSeed;

    impl<'de> DeserializeSeed<'de> for DateSeed {
        type Value = Scalar<'de>;
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Scalar<'de>, D::Error> {
            d.deserialize_option(self)
        }
    }

    impl<'de> Visitor<'de> for DateSeed {
        type Value = Scalar<'de>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a date string or null")
        }
        fn visit_none<E>(self) -> Result<Scalar<'de>, E> {
            Ok(Scalar::Null)
        }
        fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Scalar<'de>, D::Error> {
            // Escaped (not borrowable) or not a string: the reference decoder decides.
            KeySeed.deserialize(d).map(Scalar::Raw)
        }
    }

    /// The last date string parsed for a column: rows of a response share few dates.
    #[derive(Default)]
    struct DateMemo {
        text: [u8; 10],
        value: Option<i32>,
    }

    impl DateMemo {
        fn get(&mut self, s: &[u8]) -> Result<i32, Bail> {
            // A date is 10 bytes; a fixed-size compare is inline, unlike a slice's memcmp.
            let text = <[u8; 10]>::try_from(s).map_err(|_| Bail)?;
            if let Some(v) = self.value {
                if text == self.text {
                    return Ok(v);
                }
            }
            let v = date32(crate::dates::parse_bytes(s).ok_or(Bail)?);
            self.text = text;
            self.value = Some(v);
            Ok(v)
        }
    }

    fn number_text(v: &Scalar) -> Option<String> {
        match v {
            Scalar::U64(u) => Some(u.to_string()),
            Scalar::I64(i) => Some(i.to_string()),
            // serde_json's own formatting, as the reference's `Number::to_string`.
            Scalar::F64(f) => serde_json::Number::from_f64(*f).map(|n| n.to_string()),
            _ => None,
        }
    }

    /// Appends a present, non-null value; the same conversions as the reference `push`.
    fn push(b: &mut Builder, col: &Col, v: &Scalar, memo: &mut DateMemo) -> Result<(), Bail> {
        match (b, col.kind) {
            (Builder::Date(b), _) => match v {
                Scalar::Str(s) => b.append_value(memo.get(s.as_bytes())?),
                Scalar::Raw(s) => b.append_value(memo.get(s)?),
                _ => return Err(Bail),
            },
            (Builder::I64(b), _) => b.append_value(sc_i64(v).ok_or(Bail)?),
            (Builder::I32(b), Kind::Hour) => b.append_value((sc_i64(v).ok_or(Bail)? / 100) as i32),
            (Builder::I32(b), _) => {
                b.append_value(sc_i64(v).and_then(|x| i32::try_from(x).ok()).ok_or(Bail)?)
            }
            (Builder::F64(b), _) => b.append_value(sc_f64(v).ok_or(Bail)?),
            (Builder::Str(b), _) => match v {
                Scalar::Str(s) => b.append_value(s),
                other => b.append_value(number_text(other).ok_or(Bail)?),
            },
            (Builder::Bool(b), _) => match v {
                Scalar::Bool(x) => b.append_value(*x),
                Scalar::U64(x @ (0 | 1)) => b.append_value(*x == 1),
                Scalar::I64(x @ (0 | 1)) => b.append_value(*x == 1),
                _ => return Err(Bail),
            },
            (Builder::Label(b, labels), _) => {
                let key = match v {
                    Scalar::Str(s) => key_str(labels, s),
                    other => key_int(labels, sc_i64(other).ok_or(Bail)?),
                };
                b.append_value(key);
            }
            (Builder::List(_), _) => return Err(Bail),
        }
        Ok(())
    }

    /// A value absent or null: the same rules as the reference decoder.
    fn missing(b: &mut Builder, col: &Col) -> Result<(), Bail> {
        if col.nullable {
            match b {
                Builder::Date(b) => b.append_null(),
                Builder::I64(b) => b.append_null(),
                Builder::I32(b) => b.append_null(),
                Builder::F64(b) => b.append_null(),
                Builder::Str(b) => b.append_null(),
                Builder::Bool(b) => b.append_null(),
                Builder::Label(b, _) => b.append_null(),
                Builder::List(b) => b.append_null(),
            }
            return Ok(());
        }
        match (b, col.kind) {
            (Builder::List(b), _) => b.append(true),
            (Builder::Bool(b), Kind::Bool) if matches!(col.src, Src::Response(_)) => {
                b.append_value(false)
            }
            _ => return Err(Bail),
        }
        Ok(())
    }

    struct State<'de> {
        layout: &'static Layout,
        cols: &'static [Col],
        builders: Vec<Builder>,
        memos: Vec<DateMemo>,
        rows: usize,
        /// Flatten: the item's own values, repeated on each of its nested rows.
        item_vals: Vec<Option<Scalar<'de>>>,
        detail_vals: Vec<Option<Scalar<'de>>>,
        response_vals: Vec<Option<Scalar<'de>>>,
        is_delay: Option<Scalar<'de>>,
        /// `find` hints, one per level: item, detail, nested, response.
        hints: [Hint; 4],
    }

    impl<'de> State<'de> {
        /// A field of the current row: appended now (`item_vals` is None) or kept.
        fn field<A: MapAccess<'de>>(
            &mut self,
            map: &mut A,
            fm: &'static FieldMap,
            seen: &mut u64,
            keep: Option<&mut Option<Scalar<'de>>>,
        ) -> Result<(), A::Error> {
            if fm.list {
                let c = fm.cols[0];
                let Builder::List(b) = &mut self.builders[c] else {
                    return Err(bail(Bail));
                };
                let kind = self.cols[c].kind;
                if map.next_value_seed(ListSeed { b, kind })? {
                    *seen |= 1 << c;
                }
                return Ok(());
            }
            if let ([c], None, false) = (fm.cols.as_slice(), &keep, fm.date) {
                let c = *c;
                let seed = ColSeed {
                    b: &mut self.builders[c],
                    col: &self.cols[c],
                    memo: &mut self.memos[c],
                };
                if map.next_value_seed(seed)? {
                    *seen |= 1 << c;
                }
                return Ok(());
            }
            let v = if fm.date {
                map.next_value_seed(DateSeed)?
            } else {
                map.next_value_seed(ScalarSeed)?
            };
            if matches!(v, Scalar::Null) {
                return Ok(());
            }
            match keep {
                Some(slot) => *slot = Some(v),
                None => {
                    for &c in &fm.cols {
                        push(&mut self.builders[c], &self.cols[c], &v, &mut self.memos[c])
                            .map_err(bail)?;
                        *seen |= 1 << c;
                    }
                }
            }
            Ok(())
        }

        /// Fills every column of `mask` not in `seen`.
        fn fill_missing(&mut self, mask: u64, seen: u64) -> Result<(), Bail> {
            let mut left = mask & !seen;
            while left != 0 {
                let c = left.trailing_zeros() as usize;
                left &= left - 1;
                missing(&mut self.builders[c], &self.cols[c])?;
            }
            Ok(())
        }

        /// Flatten: appends the kept item values once per nested row.
        fn repeat_item(&mut self, n: usize) -> Result<(), Bail> {
            if n == 0 {
                return Ok(());
            }
            let l = self.layout;
            for (level, vals) in [(&l.item, &self.item_vals), (&l.detail, &self.detail_vals)] {
                for (fm, v) in level.iter().zip(vals) {
                    for &c in &fm.cols {
                        for _ in 0..n {
                            match v {
                                Some(v) => push(
                                    &mut self.builders[c],
                                    &self.cols[c],
                                    v,
                                    &mut self.memos[c],
                                )?,
                                None => missing(&mut self.builders[c], &self.cols[c])?,
                            }
                        }
                    }
                }
            }
            Ok(())
        }
    }

    /// The response object.
    struct Top<'s, 'de>(&'s mut State<'de>);

    impl<'de> Visitor<'de> for Top<'_, 'de> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a response object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let st = self.0;
            let mut keys = 0usize;
            let mut have_list = false;
            let mut seen_resp = 0u64;
            while let Some(key) = next_key(&mut map)? {
                keys += 1;
                match key {
                    b"list" => {
                        if have_list {
                            return Err(bail(Bail));
                        }
                        have_list = true;
                        map.next_value_seed(ListItems(&mut *st))?;
                    }
                    b"errcode" => {
                        // Anything but a plain 0 is for the reference decoder to judge.
                        match map.next_value_seed(ScalarSeed)? {
                            Scalar::U64(0) | Scalar::I64(0) => {}
                            _ => return Err(bail(Bail)),
                        }
                    }
                    b"base_resp" => {
                        let v: serde_json::Value = map.next_value()?;
                        let ret = v.get("ret").map(|r| r.as_i64() == Some(0));
                        if ret != Some(true) && !v.is_null() {
                            return Err(bail(Bail));
                        }
                    }
                    _ => {
                        let resp = find(&st.layout.response, key, &mut st.hints[3]);
                        if key == b"is_delay" || resp.is_some() {
                            let v = map.next_value_seed(ScalarSeed)?;
                            if let Some(i) = resp {
                                if seen_resp & (1 << i) != 0 {
                                    return Err(bail(Bail));
                                }
                                seen_resp |= 1 << i;
                                st.response_vals[i] = Some(v.clone());
                            }
                            if key == b"is_delay" {
                                if st.is_delay.is_some() {
                                    return Err(bail(Bail));
                                }
                                st.is_delay = Some(v);
                            }
                        } else {
                            skip(&mut map, key)?;
                        }
                    }
                }
            }
            // No `list`: only `{}` is an (empty) answer.
            if !have_list && keys > 0 {
                return Err(bail(Bail));
            }
            Ok(())
        }
    }

    /// `list`: null or an array of items.
    struct ListItems<'s, 'de>(&'s mut State<'de>);

    impl<'de> DeserializeSeed<'de> for ListItems<'_, 'de> {
        type Value = ();
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for ListItems<'_, 'de> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list")
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq.next_element_seed(Item(&mut *self.0))?.is_some() {}
            Ok(())
        }
    }

    /// One `list[]` item: one row, or (flatten) one row per nested element.
    struct Item<'s, 'de>(&'s mut State<'de>);

    impl<'de> DeserializeSeed<'de> for Item<'_, 'de> {
        type Value = ();
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for Item<'_, 'de> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an item object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let st = self.0;
            let l = st.layout;
            let flat = l.flatten.is_some();
            let mut seen = 0u64;
            let mut fields = 0u64;
            let mut have_detail = false;
            let mut nested: Option<usize> = None;
            if flat {
                st.item_vals.iter_mut().for_each(|v| *v = None);
                st.detail_vals.iter_mut().for_each(|v| *v = None);
            }
            st.hints[0].prev = START;
            while let Some(key) = next_key(&mut map)? {
                if let Some(i) = find(&l.item, key, &mut st.hints[0]) {
                    if fields & (1 << i) != 0 {
                        return Err(bail(Bail));
                    }
                    fields |= 1 << i;
                    if flat {
                        let mut vals = std::mem::take(&mut st.item_vals);
                        let r = st.field(&mut map, &l.item[i], &mut seen, Some(&mut vals[i]));
                        st.item_vals = vals;
                        r?;
                    } else {
                        st.field(&mut map, &l.item[i], &mut seen, None)?;
                    }
                } else if key == b"detail" && !l.detail.is_empty() {
                    if have_detail {
                        return Err(bail(Bail));
                    }
                    have_detail = true;
                    map.next_value_seed(Detail {
                        st: &mut *st,
                        seen: &mut seen,
                    })?;
                } else if Some(key) == l.flatten.map(str::as_bytes) {
                    if nested.is_some() {
                        return Err(bail(Bail));
                    }
                    nested = Some(map.next_value_seed(Nested(&mut *st))?);
                } else {
                    skip(&mut map, key)?;
                }
            }
            if flat {
                let n = nested.unwrap_or(0);
                st.repeat_item(n).map_err(bail)?;
                st.rows += n;
            } else {
                st.fill_missing(l.item_cols, seen).map_err(bail)?;
                st.rows += 1;
            }
            Ok(())
        }
    }

    /// An item's `detail` object (null or absent: its fields are missing).
    struct Detail<'s, 'de> {
        st: &'s mut State<'de>,
        seen: &'s mut u64,
    }

    impl<'de> DeserializeSeed<'de> for Detail<'_, 'de> {
        type Value = ();
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Detail<'_, 'de> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a detail object")
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let st = self.st;
            let l = st.layout;
            let flat = l.flatten.is_some();
            let mut fields = 0u64;
            st.hints[1].prev = START;
            while let Some(key) = next_key(&mut map)? {
                match find(&l.detail, key, &mut st.hints[1]) {
                    Some(i) => {
                        if fields & (1 << i) != 0 {
                            return Err(bail(Bail));
                        }
                        fields |= 1 << i;
                        let mut vals = std::mem::take(&mut st.detail_vals);
                        let keep = if flat { Some(&mut vals[i]) } else { None };
                        let r = st.field(&mut map, &l.detail[i], self.seen, keep);
                        st.detail_vals = vals;
                        r?;
                    }
                    None => skip(&mut map, key)?,
                }
            }
            Ok(())
        }
    }

    /// The flattened array: one row per element; returns how many.
    struct Nested<'s, 'de>(&'s mut State<'de>);

    impl<'de> DeserializeSeed<'de> for Nested<'_, 'de> {
        type Value = usize;
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Nested<'_, 'de> {
        type Value = usize;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an array")
        }
        fn visit_unit<E>(self) -> Result<usize, E> {
            Ok(0)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
            let mut n = 0;
            while seq.next_element_seed(NestedRow(&mut *self.0))?.is_some() {
                n += 1;
            }
            Ok(n)
        }
    }

    struct NestedRow<'s, 'de>(&'s mut State<'de>);

    impl<'de> DeserializeSeed<'de> for NestedRow<'_, 'de> {
        type Value = ();
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for NestedRow<'_, 'de> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a nested object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let st = self.0;
            let l = st.layout;
            let mut seen = 0u64;
            let mut fields = 0u64;
            st.hints[2].prev = START;
            while let Some(key) = next_key(&mut map)? {
                match find(&l.nested, key, &mut st.hints[2]) {
                    Some(i) => {
                        if fields & (1 << i) != 0 {
                            return Err(bail(Bail));
                        }
                        fields |= 1 << i;
                        st.field(&mut map, &l.nested[i], &mut seen, None)?;
                    }
                    None => skip(&mut map, key)?,
                }
            }
            st.fill_missing(l.nested_cols, seen).map_err(bail)
        }
    }

    /// A List<Struct> column's array (`read_user_source`, `read_jump_position`). Returns
    /// whether it was present (null counts as absent).
    struct ListSeed<'b> {
        b: &'b mut ListBuilder<StructBuilder>,
        kind: Kind,
    }

    impl<'de> DeserializeSeed<'de> for ListSeed<'_> {
        type Value = bool;
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for ListSeed<'_> {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an array")
        }
        fn visit_unit<E>(self) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
            while let Some((a, b)) = seq.next_element_seed(Pair(self.kind))? {
                let sb = self.b.values();
                match self.kind {
                    Kind::ReadSources => {
                        let count = sc_i64(&a).ok_or_else(|| bail(Bail))?;
                        let Scalar::Str(scene) = &b else {
                            return Err(bail(Bail));
                        };
                        let ok = append_read_source(sb, count, scene);
                        ok.ok_or_else(|| bail(Bail))?;
                    }
                    _ => {
                        let pos = sc_i64(&a)
                            .and_then(|x| i32::try_from(x).ok())
                            .ok_or_else(|| bail(Bail))?;
                        let rate = sc_f64(&b).ok_or_else(|| bail(Bail))?;
                        append_jump(sb, pos, rate).ok_or_else(|| bail(Bail))?;
                    }
                }
            }
            self.b.append(true);
            Ok(true)
        }
    }

    fn append_read_source(sb: &mut StructBuilder, count: i64, scene: &str) -> Option<()> {
        sb.field_builder::<Int64Builder>(0)?.append_value(count);
        sb.field_builder::<StringBuilder>(1)?.append_value(scene);
        sb.field_builder::<StringBuilder>(2)?
            .append_value(SCENE_DESC.str(scene));
        sb.append(true);
        Some(())
    }

    fn append_jump(sb: &mut StructBuilder, pos: i32, rate: f64) -> Option<()> {
        sb.field_builder::<Int32Builder>(0)?.append_value(pos);
        sb.field_builder::<Float64Builder>(1)?.append_value(rate);
        sb.append(true);
        Some(())
    }

    /// One element of a List<Struct> array: its two fields, both required.
    struct Pair(Kind);

    impl<'de> DeserializeSeed<'de> for Pair {
        type Value = (Scalar<'de>, Scalar<'de>);
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for Pair {
        type Value = (Scalar<'de>, Scalar<'de>);
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let (ka, kb): (&[u8], &[u8]) = match self.0 {
                Kind::ReadSources => (b"user_count", b"scene_desc"),
                _ => (b"position", b"rate"),
            };
            let (mut a, mut b) = (None, None);
            while let Some(key) = next_key(&mut map)? {
                let slot = if key == ka {
                    &mut a
                } else if key == kb {
                    &mut b
                } else {
                    skip(&mut map, key)?;
                    continue;
                };
                if slot.is_some() {
                    return Err(bail(Bail));
                }
                *slot = Some(map.next_value_seed(ScalarSeed)?);
            }
            match (a, b) {
                (Some(a), Some(b)) => Ok((a, b)),
                _ => Err(bail(Bail)),
            }
        }
    }

    /// Rows a body of this size probably holds, to size the builders once. Rather too many
    /// than too few: growing a builder copies it and doubles its room anyway.
    fn capacity(report: &Report, body: &[u8]) -> usize {
        let per_row = 12 * report.columns.len().max(1);
        (body.len() / per_row).clamp(8, 1 << 20)
    }

    /// Decodes a body the common way, or `None` for the reference decoder to handle.
    pub(super) fn decode(report: &Report, body: &[u8]) -> Option<Decoded> {
        // Publisher pages are merged by the extractor and decoded the reference way.
        if report.status == crate::catalog::Status::Publisher {
            return None;
        }
        let layout = layout(report)?;
        let cap = capacity(report, body);
        let mut st = State {
            layout,
            cols: report_cols(report)?,
            builders: report
                .columns
                .iter()
                .map(|c| Builder::new(c.kind, cap))
                .collect(),
            memos: report.columns.iter().map(|_| DateMemo::default()).collect(),
            rows: 0,
            item_vals: vec![None; layout.item.len()],
            detail_vals: vec![None; layout.detail.len()],
            response_vals: vec![None; layout.response.len()],
            is_delay: None,
            hints: [Hint::new(); 4],
        };
        let mut de = serde_json::Deserializer::from_slice(body);
        de::Deserializer::deserialize_map(&mut de, Top(&mut st)).ok()?;
        de.end().ok()?;
        // Response-level values go on every row.
        let rows = st.rows;
        for (fm, v) in layout.response.iter().zip(&st.response_vals) {
            for &c in &fm.cols {
                for _ in 0..rows {
                    match v {
                        Some(Scalar::Null) | None => {
                            missing(&mut st.builders[c], &st.cols[c]).ok()?
                        }
                        Some(v) => {
                            push(&mut st.builders[c], &st.cols[c], v, &mut st.memos[c]).ok()?
                        }
                    }
                }
            }
        }
        let arrays: Vec<ArrayRef> = st.builders.iter_mut().map(Builder::finish).collect();
        let batch = RecordBatch::try_new(schema(report), arrays).ok()?;
        let is_delay = matches!(st.is_delay, Some(Scalar::Bool(true)));
        Some(Decoded { batch, is_delay })
    }

    fn report_cols(report: &Report) -> Option<&'static [Col]> {
        REPORTS.get(catalogue_index(report)?).map(|r| r.columns)
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn same_is_slice_equality() {
            let words: Vec<Vec<u8>> = (0..=24)
                .flat_map(|n| {
                    let base: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
                    let mut v = vec![base.clone()];
                    for at in 0..n {
                        let mut w = base.clone();
                        w[at] ^= 1;
                        v.push(w);
                    }
                    v
                })
                .collect();
            let mut equal = 0;
            for a in &words {
                for b in &words {
                    assert_eq!(super::same(a, b), a == b, "{a:?} {b:?}");
                    equal += usize::from(a == b);
                }
            }
            assert!(equal >= words.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Date32Type, Int64Type};

    #[test]
    fn decodes_user_summary_with_labels_and_unknown_codes() {
        let r = catalog::find("user_summary").unwrap();
        let body =
            br#"{"list":[{"ref_date":"2024-05-20","user_source":30,"new_user":58,"cancel_user":0},
            {"ref_date":"2024-05-21","user_source":999,"new_user":"7","cancel_user":1}]}"#;
        let d = decode(r, body).unwrap();
        let b = &d.batch;
        assert_eq!(b.num_rows(), 2);
        assert_eq!(
            from_date32(b.column(0).as_primitive::<Date32Type>().value(1)),
            crate::dates::parse("2024-05-21").unwrap()
        );
        let labels = arrow::compute::cast(b.column(2), &DataType::Utf8).unwrap();
        assert_eq!(labels.as_string::<i32>().value(0), "qr_code");
        assert_eq!(labels.as_string::<i32>().value(1), "unknown");
        assert_eq!(b.column(3).as_primitive::<Int64Type>().value(1), 7);
    }

    #[test]
    fn errcode_and_missing_fields() {
        let r = catalog::find("user_summary").unwrap();
        let e = decode(
            r,
            br#"{"errcode":61501,"errmsg":"date range error rid: 1"}"#,
        )
        .unwrap_err();
        assert_eq!(e.unwrap().errcode, 61501);
        let e = decode(
            r,
            br#"{"list":[{"ref_date":"2024-05-20","user_source":1,"new_user":1}]}"#,
        )
        .unwrap_err();
        assert!(e.unwrap_err().to_string().contains("cancel_user"));
        assert!(matches!(
            decode(r, br#"{"list":[{"ref_date":"#),
            Err(Err(DecodeError::Json(_)))
        ));
    }

    #[test]
    fn flattens_article_total_detail_and_keeps_is_delay() {
        let r = catalog::find("article_total_detail").unwrap();
        let body = r#"{"list":[{"ref_date":"2025-11-01","msgid":"2247490098_1","publish_type":0,
          "detail_list":[{"stat_date":"2025-11-01","read_user":4123,
            "read_user_source":[{"user_count":4123,"scene_desc":"全部"},{"user_count":5,"scene_desc":"视频号"}],
            "share_user":366,"zaikan_user":191,"like_user":386,"comment_count":33,"collection_user":233,
            "praise_money":361,"read_subscribe_user":327,"read_delivery_rate":0.0271002,
            "read_finish_rate":0.6304348,"read_avg_activetime":1.0588236,
            "read_jump_position":[{"position":1,"rate":0.5304147}]},
            {"stat_date":"2025-11-02","read_user":5000,"read_user_source":[],
            "share_user":400,"zaikan_user":200,"like_user":400,"comment_count":40,"collection_user":240,
            "praise_money":361,"read_subscribe_user":330,"read_delivery_rate":0.03,
            "read_finish_rate":0.6,"read_avg_activetime":1,"read_jump_position":[]}]}],"is_delay":true}"#;
        let d = decode(r, body.as_bytes()).unwrap();
        assert!(d.is_delay);
        let b = &d.batch;
        assert_eq!(b.num_rows(), 2);
        assert!(b.column_by_name("title").unwrap().is_null(0));
        let src = b
            .column_by_name("read_user_source")
            .unwrap()
            .as_list::<i32>();
        let first = src.value(0);
        let s = first.as_struct();
        assert_eq!(s.column(2).as_string::<i32>().value(0), "all");
        assert_eq!(s.column(2).as_string::<i32>().value(1), "unknown");
        assert_eq!(src.value(1).len(), 0);
        let delay = b.column_by_name("is_delay").unwrap().as_boolean();
        assert!(delay.value(0) && delay.value(1));
    }

    #[test]
    fn hour_is_ref_hour_over_100() {
        let r = catalog::find("interface_summary_hour").unwrap();
        let body = br#"{"list":[{"ref_date":"2014-12-01","ref_hour":1300,"callback_count":331,"fail_count":18,"total_time_cost":167870,"max_time_cost":5042}]}"#;
        let b = decode(r, body).unwrap().batch;
        assert_eq!(
            b.column_by_name("hour")
                .unwrap()
                .as_primitive::<arrow::datatypes::Int32Type>()
                .value(0),
            13
        );
    }

    /// Columns equal value by value (dictionaries compared through their values).
    fn assert_same(a: &RecordBatch, b: &RecordBatch, what: &str) {
        assert_eq!(a.schema(), b.schema(), "{what}: schema");
        assert_eq!(a.num_rows(), b.num_rows(), "{what}: rows");
        for (i, f) in a.schema().fields().iter().enumerate() {
            assert_eq!(
                a.column(i).to_data(),
                b.column(i).to_data(),
                "{what}: column {}",
                f.name()
            );
        }
    }

    /// `decode` and the reference decoder agree: the same batch, or the same error.
    fn agree(r: &Report, body: &str) {
        let got = decode(r, body.as_bytes());
        let want = decode_reference(r, body.as_bytes());
        match (got, want) {
            (Ok(g), Ok(w)) => {
                assert_same(&g.batch, &w.batch, body);
                assert_eq!(g.is_delay, w.is_delay, "{body}");
            }
            (Err(Ok(g)), Err(Ok(w))) => assert_eq!(g, w, "{body}"),
            (Err(Err(g)), Err(Err(w))) => assert_eq!(g.to_string(), w.to_string(), "{body}"),
            (g, w) => panic!("{body}: decode gave {g:?}, the reference {w:?}"),
        }
    }

    #[test]
    fn fast_path_takes_every_simulator_body_and_matches_the_reference() {
        let cfg: crate::sim::SimConfig =
            serde_json::from_str(r#"{"seed":3,"articles_per_day":6}"#).unwrap();
        let mut delayed = 0;
        for (today, app) in [
            ("2026-01-20", "wxfast0000000001"),
            ("2026-01-23", "wxfast0000000002"),
        ] {
            let today = crate::dates::parse(today).unwrap();
            let yesterday = today.pred_opt().unwrap();
            for r in catalog::REPORTS {
                let mut rows = 0;
                let span = chrono::Duration::days(i64::from(r.span) - 1);
                let early = crate::dates::parse("2025-11-24").unwrap();
                // An early window, and the one ending yesterday (where `is_delay` shows).
                for (begin, end) in [(early, early + span), (yesterday - span, yesterday)] {
                    let body = crate::sim::respond(&cfg, today, r, app, begin, end).to_string();
                    let fast = fast::decode(r, body.as_bytes()).unwrap_or_else(|| {
                        panic!("{}: the fast path gave up on a simulator body", r.id)
                    });
                    let slow = decode_reference(r, body.as_bytes()).unwrap();
                    assert_same(&fast.batch, &slow.batch, r.id);
                    assert_eq!(fast.is_delay, slow.is_delay, "{}", r.id);
                    delayed += usize::from(fast.is_delay);
                    rows += fast.batch.num_rows();
                }
                if r.cadence == catalog::Cadence::Daily {
                    assert!(rows > 0, "{}: no rows to compare", r.id);
                }
            }
        }
        assert!(delayed > 0, "no is_delay response was compared");
    }

    /// Items whose keys come in a different order each (reversed, as sent, shuffled), in
    /// every level, on bodies where some rows leave fields out: the key-order guess must
    /// only ever save time.
    #[test]
    fn key_order_changing_between_rows_decodes_as_the_reference() {
        use serde_json::Value;
        let cfg: crate::sim::SimConfig =
            serde_json::from_str(r#"{"seed":5,"articles_per_day":4}"#).unwrap();
        let today = crate::dates::parse("2026-01-20").unwrap();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n.max(1) as u64) as usize
        };
        // Written out by hand: `serde_json::Map` keeps its keys sorted.
        fn reorder(v: &Value, row: usize, rnd: &mut dyn FnMut(usize) -> usize) -> String {
            match v {
                Value::Object(m) => {
                    let mut keys: Vec<&String> = m.keys().collect();
                    match row % 3 {
                        0 => keys.reverse(),
                        1 => {}
                        _ => {
                            for i in (1..keys.len()).rev() {
                                keys.swap(i, rnd(i + 1));
                            }
                        }
                    }
                    let fields: Vec<String> = keys
                        .into_iter()
                        .map(|k| {
                            format!("{}:{}", Value::from(k.as_str()), reorder(&m[k], row, rnd))
                        })
                        .collect();
                    format!("{{{}}}", fields.join(","))
                }
                Value::Array(a) => {
                    let items: Vec<String> = a
                        .iter()
                        .enumerate()
                        .map(|(i, x)| reorder(x, row / 4 + i, rnd))
                        .collect();
                    format!("[{}]", items.join(","))
                }
                other => other.to_string(),
            }
        }
        let mut compared = 0;
        for id in [
            "user_read_hour",
            "article_total_detail",
            "article_read",
            "user_summary",
        ] {
            let r = catalog::find(id).unwrap();
            let span = chrono::Duration::days(i64::from(r.span) - 1);
            let end = today.pred_opt().unwrap();
            let v = crate::sim::respond(&cfg, today, r, "wxfast0000000003", end - span, end);
            let body = reorder(&v, 0, &mut rnd);
            let fast = fast::decode(r, body.as_bytes())
                .unwrap_or_else(|| panic!("{id}: the fast path gave up on reordered keys"));
            let slow = decode_reference(r, body.as_bytes()).unwrap();
            assert_same(&fast.batch, &slow.batch, id);
            assert!(fast.batch.num_rows() > 0, "{id}: no rows");
            compared += 1;
        }
        assert_eq!(compared, 4);
    }

    #[test]
    fn odd_bodies_decode_as_the_reference_decodes_them() {
        let us = catalog::find("user_summary").unwrap();
        let atd = catalog::find("article_total_detail").unwrap();
        let hour = catalog::find("upstream_msg_hour").unwrap();
        let ar = catalog::find("article_read").unwrap();
        // (report, body, whether the fast path keeps it)
        let cases: &[(&Report, &str, bool)] = &[
            // Numbers as strings and integral floats, extra fields, errcode 0.
            (
                us,
                r#"{"errcode":0,"errmsg":"ok","list":[{"ref_date":"2024-05-20","user_source":"30","new_user":5.0,"cancel_user":"7","extra":[1,{"a":null}]}]}"#,
                true,
            ),
            // Escaped strings and keys in unknown places.
            (
                ar,
                r#"{"list":[{"ref_date":"2025-11-02","msgid":"a\"b\u00e9","detail":{"read_user":3,"read_user_source":[{"user_count":3,"scene_desc":"\u5168\u90e8"}]}}],"is_delay":1}"#,
                true,
            ),
            (us, r#"{}"#, true),
            (us, r#"{"list":null}"#, true),
            (
                hour,
                r#"{"list":[{"ref_date":"2024-05-20","ref_hour":"1300","msg_type":9,"msg_user":1,"msg_count":2}]}"#,
                true,
            ),
            // Flattened: item fields after the nested array, a null title, no content_url.
            (
                atd,
                r#"{"list":[{"detail_list":[{"stat_date":"2025-11-01","read_user":1,"share_user":0,"zaikan_user":0,"like_user":0,"comment_count":0,"collection_user":0,"praise_money":0,"read_subscribe_user":0,"read_delivery_rate":0,"read_finish_rate":"0.5","read_avg_activetime":1},{"stat_date":"2025-11-02","read_user":2,"read_user_source":null,"share_user":0,"zaikan_user":0,"like_user":0,"comment_count":0,"collection_user":0,"praise_money":0,"read_subscribe_user":0,"read_delivery_rate":0.1,"read_finish_rate":0.5,"read_avg_activetime":1,"read_jump_position":[{"position":"2","rate":0.25}]}],"title":null,"ref_date":"2025-11-01","msgid":77,"publish_type":1},{"ref_date":"2025-11-01","msgid":"x","publish_type":0}],"is_delay":false}"#,
                true,
            ),
            // The reference decoder decides these.
            (
                us,
                r#"{"list":[{"ref_date":"2024-05-20","user_source":1,"new_user":1,"new_user":2,"cancel_user":0}]}"#,
                false,
            ),
            (
                us,
                r#"{"errcode":45009,"errmsg":"reach max api daily quota limit"}"#,
                false,
            ),
            (
                us,
                r#"{"base_resp":{"ret":1,"err_msg":"no"},"list":[]}"#,
                false,
            ),
            (us, r#"{"is_delay":true}"#, false),
            (
                us,
                r#"{"list":[{"ref_date":"2024-05-20","user_source":1,"new_user":"abc","cancel_user":0}]}"#,
                false,
            ),
            (
                us,
                r#"{"list":[{"ref_date":"2024-05-20","user_source":1,"new_user":null,"cancel_user":0}]}"#,
                false,
            ),
            (
                us,
                r#"{"list":[{"ref_date":"2024-5-20","user_source":1,"new_user":1,"cancel_user":0}]}"#,
                false,
            ),
            (us, r#"{"list":[3]}"#, false),
            (us, r#"{"list":[]} x"#, false),
            (
                hour,
                r#"{"list":[{"ref_date":"2024-05-20","ref_hour":100,"msg_type":99999999999,"msg_user":1,"msg_count":2}]}"#,
                false,
            ),
            (
                ar,
                r#"{"list":[{"ref_date":"2025-11-02","msgid":"m","detail":[1]}]}"#,
                false,
            ),
            (
                atd,
                r#"{"list":[{"ref_date":"2025-11-01","msgid":"m","publish_type":0,"detail_list":{}}]}"#,
                false,
            ),
        ];
        for (r, body, fast_keeps) in cases {
            assert_eq!(
                fast::decode(r, body.as_bytes()).is_some(),
                *fast_keeps,
                "fast path on {body}"
            );
            agree(r, body);
        }
        // Keys are matched as bytes: one with escapes, or an unknown one that is not
        // UTF-8, is still judged as the reference judges it.
        let bad_key: &[u8] = b"{\"list\":[{\"ref_date\":\"2024-05-20\",\"user_source\":1,\"new_user\":1,\"cancel_user\":0,\"\xff\":1}]}";
        let escaped = br#"{"list":[{"ref_\u0064ate":"2024-05-20","user_source":1,"new_user":1,"cancel_user":0}]}"#;
        // Dates are read as bytes too.
        let bad_date: &[u8] = b"{\"list\":[{\"ref_date\":\"2024-05-2\xff\",\"user_source\":1,\"new_user\":1,\"cancel_user\":0}]}";
        let escaped_date = br#"{"list":[{"ref_date":"2024\u002d05-20","user_source":1,"new_user":1,"cancel_user":0}]}"#;
        for body in [bad_key, escaped, bad_date, escaped_date] {
            assert!(fast::decode(us, body).is_none(), "fast path on {body:?}");
            let (got, want) = (decode(us, body), decode_reference(us, body));
            match (&got, &want) {
                (Ok(g), Ok(w)) => assert_same(&g.batch, &w.batch, "escaped key"),
                (Err(Err(g)), Err(Err(w))) => assert_eq!(g.to_string(), w.to_string()),
                _ => panic!("{body:?}: decode gave {got:?}, the reference {want:?}"),
            }
        }
        for body in [escaped, escaped_date] {
            assert_eq!(decode(us, body).map(|d| d.batch.num_rows()).ok(), Some(1));
        }
    }
}
