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
use arrow::datatypes::{DataType, Field, Int32Type};
use arrow::record_batch::RecordBatch;
use serde_json::Value;

use crate::catalog::{
    jump_fields, label_values, read_sources_fields, slot_fields, Kind, Labels, Report,
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
