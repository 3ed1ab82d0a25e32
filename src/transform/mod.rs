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

mod fast;
mod reference;

pub use reference::{decode_reference, decode_value};

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, DictionaryArray, Float64Builder, Int32Builder,
    Int64Builder, ListBuilder, StringBuilder, StructBuilder,
};
use arrow::datatypes::{DataType, Field, Fields, Int32Type};
use arrow::record_batch::RecordBatch;
use serde_json::Value;

use crate::catalog::{
    jump_fields, label_values, read_sources_fields, slot_fields, Col, Kind, Labels, Report, Src,
};

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

/// Checks a response for an API error: a non-zero `errcode`, or `base_resp.ret`.
pub fn api_error(v: &Value) -> Option<ApiError> {
    // A non-zero code in `obj[code]`, with its message from `obj[msg]`.
    let check = |obj: &Value, code: &str, msg: &str| {
        let errcode = obj.get(code).and_then(Value::as_i64).unwrap_or(0);
        (errcode != 0).then(|| ApiError {
            errcode,
            errmsg: obj
                .get(msg)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        })
    };
    check(v, "errcode", "errmsg")
        .or_else(|| v.get("base_resp").and_then(|b| check(b, "ret", "err_msg")))
}

pub(crate) enum Builder {
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
    pub(crate) fn new(kind: Kind, cap: usize) -> Self {
        match kind {
            Kind::Date => Builder::Date(Date32Builder::with_capacity(cap)),
            Kind::Int64 => Builder::I64(Int64Builder::with_capacity(cap)),
            Kind::Int32 | Kind::Hour => Builder::I32(Int32Builder::with_capacity(cap)),
            Kind::Float64 => Builder::F64(Float64Builder::with_capacity(cap)),
            Kind::Utf8 => Builder::Str(StringBuilder::with_capacity(cap, cap * 16)),
            Kind::Bool => Builder::Bool(BooleanBuilder::with_capacity(cap)),
            Kind::Label(l) => Builder::Label(Int32Builder::with_capacity(cap), l),
            Kind::ReadSources => list_builder(read_sources_fields(), cap, 4),
            Kind::JumpPositions => list_builder(jump_fields(), cap, 5),
            Kind::SlotRevenue => list_builder(slot_fields(), cap, 2),
        }
    }

    /// A value absent or null, by the rules both decoders share: null where the column is
    /// nullable, an empty list, `false` for a response's `is_delay` (WeChat did not flag the
    /// data). `false` where no rule applies: the caller's error.
    pub(crate) fn push_missing(&mut self, col: &Col) -> bool {
        if col.nullable {
            match self {
                Builder::Date(b) => b.append_null(),
                Builder::I64(b) => b.append_null(),
                Builder::I32(b) => b.append_null(),
                Builder::F64(b) => b.append_null(),
                Builder::Str(b) => b.append_null(),
                Builder::Bool(b) => b.append_null(),
                Builder::Label(b, _) => b.append_null(),
                Builder::List(b) => b.append_null(),
            }
            return true;
        }
        match (self, col.kind) {
            (Builder::List(b), _) => b.append(true),
            (Builder::Bool(b), Kind::Bool) if matches!(col.src, Src::Response(_)) => {
                b.append_value(false)
            }
            _ => return false,
        }
        true
    }

    pub(crate) fn finish(&mut self) -> ArrayRef {
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

/// A list-of-struct column builder; `per_row` sizes the struct buffer (items a row, guessed).
/// Text fields get room for their bytes too (arrow's default is 1 KiB, grown by doubling:
/// ~1% of a large run was copying scene names to ever larger buffers).
fn list_builder(fields: Fields, cap: usize, per_row: usize) -> Builder {
    let item = Field::new("item", DataType::Struct(fields.clone()), true);
    let items = cap * per_row;
    let children = fields
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 => Box::new(StringBuilder::with_capacity(items, items * 12))
                as Box<dyn arrow::array::ArrayBuilder>,
            t => arrow::array::make_builder(t, items),
        })
        .collect();
    let sb = StructBuilder::new(fields, children);
    Builder::List(ListBuilder::with_capacity(sb, cap).with_field(Arc::new(item)))
}

pub(crate) fn kind_name(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{:?}", s.chars().take(40).collect::<String>()),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
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

#[cfg(test)]
mod tests;
