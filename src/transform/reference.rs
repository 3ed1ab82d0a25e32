//! The reference decoder: parse into a `serde_json::Value` tree, then build the columns.
//! It defines what `decode` accepts and the errors it gives.

use arrow::array::{
    ArrayRef, Float64Builder, Int32Builder, Int64Builder, ListBuilder, StringBuilder, StructBuilder,
};
use arrow::record_batch::RecordBatch;
use serde_json::Value;

use super::{api_error, kind_name, ApiError, Builder, DecodeError, Decoded};
use crate::catalog::{date32, key_int, key_str, schema, Col, Kind, Report, Shape, Src, SCENE_DESC};

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

/// Appends one row's value of `col`, read from `ctx`.
fn push(b: &mut Builder, col: &Col, ctx: &Ctx) -> Result<(), DecodeError> {
    let row = ctx.row;
    let Some(v) = ctx.get(col.src) else {
        return push_missing(b, col, row);
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
        (Builder::List(b), kind) => push_list(b, kind, col, v, row)?,
    }
    Ok(())
}

/// A value absent from the response: null, an empty list, `false` for `is_delay`, or an error.
fn push_missing(b: &mut Builder, col: &Col, row: usize) -> Result<(), DecodeError> {
    if b.push_missing(col) {
        Ok(())
    } else {
        Err(DecodeError::Missing {
            row,
            field: col.src.field(),
        })
    }
}

/// Appends one list value (read sources, drop-off positions, slot revenue).
fn push_list(
    b: &mut ListBuilder<StructBuilder>,
    kind: Kind,
    col: &Col,
    v: &Value,
    row: usize,
) -> Result<(), DecodeError> {
    let arr = v
        .as_array()
        .ok_or_else(|| type_err(row, col, "an array", v))?;
    for e in arr {
        let sb = b.values();
        match kind {
            Kind::ReadSources => {
                let count = e
                    .get("user_count")
                    .and_then(as_i64)
                    .ok_or_else(|| type_err(row, col, "{user_count, scene_desc}", e))?;
                let scene = e
                    .get("scene_desc")
                    .and_then(Value::as_str)
                    .ok_or_else(|| type_err(row, col, "{user_count, scene_desc}", e))?;
                field_i64(sb, 0).append_value(count);
                field_str(sb, 1).append_value(scene);
                field_str(sb, 2).append_value(SCENE_DESC.str(scene));
            }
            Kind::JumpPositions => {
                let pos = e
                    .get("position")
                    .and_then(as_i64)
                    .and_then(|x| i32::try_from(x).ok())
                    .ok_or_else(|| type_err(row, col, "{position, rate}", e))?;
                let rate = e
                    .get("rate")
                    .and_then(as_f64)
                    .ok_or_else(|| type_err(row, col, "{position, rate}", e))?;
                if let Some(f) = sb.field_builder::<Int32Builder>(0) {
                    f.append_value(pos);
                }
                if let Some(f) = sb.field_builder::<Float64Builder>(1) {
                    f.append_value(rate);
                }
            }
            Kind::SlotRevenue => {
                let slot = match e.get("slot_id") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    _ => return Err(type_err(row, col, "{slot_id, slot_settled_revenue}", e)),
                };
                let rev = e
                    .get("slot_settled_revenue")
                    .and_then(as_i64)
                    .ok_or_else(|| type_err(row, col, "{slot_id, slot_settled_revenue}", e))?;
                if let Some(f) = sb.field_builder::<StringBuilder>(0) {
                    f.append_value(&slot);
                }
                if let Some(f) = sb.field_builder::<Int64Builder>(1) {
                    f.append_value(rev);
                }
            }
            _ => unreachable!("a list builder is made from a list kind"),
        }
        sb.append(true);
    }
    b.append(true);
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
