//! Transform: a WeChat JSON response → one typed Arrow `RecordBatch` per the catalogue.
//!
//! The schema of a report is built from its catalogue columns only, so every file of a
//! table has the same schema forever. Column descriptions travel as Parquet/Arrow field
//! metadata (`description`). Unknown extra fields in a response are ignored; a missing
//! non-nullable field or a value of the wrong type is a decode error naming the report,
//! row and field (the window is then retried or reported, never half-loaded).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int32Builder, Int64Builder,
    ListBuilder, StringBuilder, StringDictionaryBuilder, StructBuilder,
};
use arrow::datatypes::{DataType, Field, Fields, Int32Type, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use chrono::NaiveDate;
use serde_json::Value;

use crate::catalog::{Col, Kind, Report, Shape, Src, SCENE_DESC};

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
    }
}

/// The Arrow schema of a report's table, with each column's meaning as field metadata.
pub fn schema(report: &Report) -> SchemaRef {
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

enum Builder {
    Date(Date32Builder),
    I64(Int64Builder),
    I32(Int32Builder),
    F64(Float64Builder),
    Str(StringBuilder),
    Bool(BooleanBuilder),
    Label(StringDictionaryBuilder<Int32Type>),
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
            Kind::Label(_) => Builder::Label(StringDictionaryBuilder::new()),
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
            Builder::Label(b) => Arc::new(b.finish()),
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
                Builder::Label(b) => b.append_null(),
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
        (Builder::Label(b), Kind::Label(labels)) => {
            let label = match v {
                Value::String(s) => labels.str(s),
                _ => labels.int(as_i64(v).ok_or_else(|| type_err(row, col, "an integer code", v))?),
            };
            b.append_value(label);
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
}
