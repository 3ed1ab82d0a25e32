//! The streaming decoder: one pass over the body, values appended as they are read.
//!
//! It returns `None` whenever the reference decoder might answer differently (error
//! answers, wrong types, missing fields, duplicate keys, escaped keys): the reference
//! decoder then runs on the same bytes. On the bodies it accepts, it builds the same
//! arrays as the reference decoder (tested in `transform::tests` against it on every report).

use std::borrow::Cow;
use std::fmt;
use std::sync::OnceLock;

use arrow::array::{ArrayRef, Float64Builder, Int32Builder, Int64Builder, StringBuilder};
use arrow::array::{ListBuilder, StructBuilder};
use arrow::record_batch::RecordBatch;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{Builder, Decoded};
use crate::catalog::{
    catalogue_index, date32, key_int, key_str, schema, Col, Kind, Report, Shape, Src, REPORTS,
    SCENE_DESC,
};

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
    if b.push_missing(col) {
        Ok(())
    } else {
        Err(Bail)
    }
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
                            Some(v) => {
                                push(&mut self.builders[c], &self.cols[c], v, &mut self.memos[c])?
                            }
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
    if report.protocol() != crate::catalog::Protocol::Datacube {
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
                    Some(Scalar::Null) | None => missing(&mut st.builders[c], &st.cols[c]).ok()?,
                    Some(v) => push(&mut st.builders[c], &st.cols[c], v, &mut st.memos[c]).ok()?,
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
