//! The streaming decoder: one pass over the body by a small JSON scanner, values appended
//! to the Arrow builders as they are read (no serde visitor, no `Value` tree).
//!
//! It returns `None` whenever the reference decoder might answer differently (error
//! answers, wrong types, missing fields, duplicate keys, escaped keys): the reference
//! decoder then runs on the same bytes. On the bodies it accepts, it builds the same
//! arrays as the reference decoder (tested in `transform::tests` against it on every report).

use std::borrow::Cow;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use arrow::array::{ArrayRef, Float64Builder, Int32Builder, Int64Builder, StringBuilder};
use arrow::array::{ListBuilder, StructBuilder};
use arrow::record_batch::RecordBatch;

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

/// A cursor over a body's bytes. Only strings may hold bytes past ASCII (anywhere else
/// the grammar refuses them), so each string is checked for UTF-8 when it is read, not
/// the whole body first (~3% of a large run: most bytes are numbers, keys and
/// punctuation); a date string need only be ASCII. Only the JSON grammar is checked here;
/// numbers other than plain non-negative integers, and strings with escapes, are read by
/// serde_json from their own token, so both decoders read every value alike.
struct Lex<'de> {
    s: &'de [u8],
    i: usize,
}

/// Whether any byte of `w` is a quote, a backslash or below 0x20 (SWAR: a byte is zero
/// in `w ^ pattern` where it matches). Exact for the word as a whole; the byte itself is
/// then found one at a time.
#[inline]
fn stops_string(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let below_0x20 = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    (zero(w ^ (ONES * b'"' as u64)) | zero(w ^ (ONES * b'\\' as u64)) | below_0x20) != 0
}

/// The exact powers of ten a double holds.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Nesting beyond this inside a value no column reads: the reference decoder decides
/// (serde_json's limit is 128 levels, counted from the top).
const MAX_DEPTH: u32 = 100;

impl<'de> Lex<'de> {
    #[inline]
    fn bytes(&self) -> &'de [u8] {
        self.s
    }

    /// The next byte after whitespace, not consumed.
    #[inline]
    fn peek(&mut self) -> Option<u8> {
        while let Some(&c) = self.bytes().get(self.i) {
            match c {
                b' ' | b'\n' | b'\r' | b'\t' => self.i += 1,
                _ => return Some(c),
            }
        }
        None
    }

    #[inline]
    fn expect(&mut self, c: u8) -> Result<(), Bail> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(Bail)
        }
    }

    /// A string, `i` on its opening quote: the text between the quotes, and the whole
    /// token if it has escapes, both checked for UTF-8.
    #[inline]
    fn string(&mut self) -> Result<(&'de str, Option<&'de str>), Bail> {
        let (text, token) = self.raw_string()?;
        let utf8 = |b: &'de [u8]| std::str::from_utf8(b).map_err(|_| Bail);
        match token {
            // The token holds the text: one check covers both.
            Some(t) => {
                let t = utf8(t)?;
                Ok((t.get(1..t.len() - 1).ok_or(Bail)?, Some(t)))
            }
            None => Ok((utf8(text)?, None)),
        }
    }

    /// `string`, unchecked: for text that is parsed as ASCII or refused.
    #[inline]
    fn raw_string(&mut self) -> Result<(&'de [u8], Option<&'de [u8]>), Bail> {
        let start = self.i + 1;
        let mut j = start;
        let mut escaped = false;
        let b = self.bytes();
        // Eight bytes at a time up to the first quote, backslash or control byte: titles,
        // URLs and scene names are most of a body's string bytes.
        while let Some(w) = b.get(j..j + 8) {
            let w = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
            if stops_string(w) {
                break;
            }
            j += 8;
        }
        loop {
            match *b.get(j).ok_or(Bail)? {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    j += 2;
                }
                0..=0x1f => return Err(Bail),
                _ => j += 1,
            }
        }
        self.i = j + 1;
        let text = self.s.get(start..j).ok_or(Bail)?;
        let token = if escaped {
            Some(self.s.get(start - 1..j + 1).ok_or(Bail)?)
        } else {
            None
        };
        Ok((text, token))
    }

    /// A string value, unescaped by serde_json if it has escapes.
    #[inline]
    fn text(&mut self) -> Result<Cow<'de, str>, Bail> {
        match self.string()? {
            (text, None) => Ok(Cow::Borrowed(text)),
            (_, Some(token)) => unescape(token).map(Cow::Owned),
        }
    }

    /// Moves to the next member of an object or array (true: a comma read if one was
    /// due), or past its `close` (false). `first`: no member read yet.
    #[inline]
    fn next(&mut self, first: &mut bool, close: u8) -> Result<bool, Bail> {
        let c = self.peek().ok_or(Bail)?;
        if c == close {
            self.i += 1;
            return Ok(false);
        }
        if !*first {
            if c != b',' {
                return Err(Bail);
            }
            self.i += 1;
        }
        *first = false;
        Ok(true)
    }

    /// Moves to the next key of an object (true), or past the object's end (false).
    #[inline]
    fn next_key(&mut self, first: &mut bool) -> Result<bool, Bail> {
        // After a comma, a `}` is no key: the quote check refuses it.
        if !self.next(first, b'}')? {
            return Ok(false);
        }
        if self.peek() != Some(b'"') {
            return Err(Bail);
        }
        Ok(true)
    }

    /// The key `next_key` moved to, and its colon. A key with escapes is for the reference
    /// decoder (it matches no field as written).
    #[inline]
    fn key_text(&mut self) -> Result<&'de [u8], Bail> {
        let (key, None) = self.string()? else {
            return Err(Bail);
        };
        self.expect(b':')?;
        Ok(key.as_bytes())
    }

    /// Whether the key `next_key` moved to is `name`; if so it is read, with its colon.
    /// One comparison, no scan: a name has no quote or escape in it.
    #[inline]
    fn key_is(&mut self, name: &[u8]) -> Result<bool, Bail> {
        let at = self.i + 1;
        let end = at + name.len();
        match self.bytes().get(at..=end) {
            Some(k) if k[name.len()] == b'"' && same(&k[..name.len()], name) => {
                self.i = end + 1;
                self.expect(b':')?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// The next key of an object, or `None` past its end.
    #[inline]
    fn key(&mut self, first: &mut bool) -> Result<Option<&'de [u8]>, Bail> {
        if !self.next_key(first)? {
            return Ok(None);
        }
        self.key_text().map(Some)
    }

    /// The next key of a level's object: `Ok` the field it names, `Err` a key no field
    /// has; `None` past the object's end. The field the hint guesses is tried first, at
    /// the cost of one comparison.
    #[inline]
    fn field_key(
        &mut self,
        first: &mut bool,
        level: &[FieldMap],
        hint: &mut Hint,
    ) -> Result<Option<Result<usize, &'de [u8]>>, Bail> {
        if !self.next_key(first)? {
            return Ok(None);
        }
        let guess = usize::from(hint.follow[hint.prev]);
        if let Some(f) = level.get(guess) {
            if self.key_is(f.name.as_bytes())? {
                hint.prev = guess;
                return Ok(Some(Ok(guess)));
            }
        }
        let key = self.key_text()?;
        Ok(Some(find(level, key, hint).ok_or(key)))
    }

    /// Whether another element of an array follows, or `]` ended it.
    #[inline]
    fn element(&mut self, first: &mut bool) -> Result<bool, Bail> {
        self.next(first, b']')
    }

    fn word(&mut self, w: &[u8]) -> Result<(), Bail> {
        if self.bytes().get(self.i..self.i + w.len()) == Some(w) {
            self.i += w.len();
            Ok(())
        } else {
            Err(Bail)
        }
    }

    /// A number, `i` on its first byte.
    #[inline]
    fn number(&mut self) -> Result<Scalar<'de>, Bail> {
        let b = self.bytes();
        let start = self.i;
        let mut j = start;
        let negative = b.get(j) == Some(&b'-');
        j += usize::from(negative);
        let digits_at = j;
        let digits = |j: &mut usize| {
            let at = *j;
            while matches!(b.get(*j), Some(b'0'..=b'9')) {
                *j += 1;
            }
            *j - at
        };
        match b.get(j) {
            Some(b'0') => j += 1,
            Some(b'1'..=b'9') => {
                digits(&mut j);
            }
            _ => return Err(Bail),
        }
        let int_end = j;
        let mut frac = 0;
        if b.get(j) == Some(&b'.') {
            j += 1;
            frac = digits(&mut j);
            if frac == 0 {
                return Err(Bail);
            }
        }
        let frac_end = j;
        if matches!(b.get(j), Some(b'e' | b'E')) {
            j += 1;
            if matches!(b.get(j), Some(b'+' | b'-')) {
                j += 1;
            }
            if digits(&mut j) == 0 {
                return Err(Bail);
            }
        }
        self.i = j;
        // 19 digits always fit a u64.
        if !negative && j == int_end && int_end - digits_at <= 19 {
            let v = b[digits_at..int_end]
                .iter()
                .fold(0u64, |v, d| v * 10 + u64::from(d - b'0'));
            return Ok(Scalar::U64(v));
        }
        // A short decimal: its digits and the power of ten are exact doubles, so one
        // division is the correctly rounded value, which serde_json computes the same way.
        if frac > 0 && j == frac_end && frac <= 22 && int_end - digits_at + frac <= 15 {
            let sig = b[digits_at..frac_end]
                .iter()
                .filter(|d| d.is_ascii_digit())
                .fold(0u64, |v, d| v * 10 + u64::from(d - b'0'));
            let f = sig as f64 / POW10[frac];
            return Ok(Scalar::F64(if negative { -f } else { f }));
        }
        let n: serde_json::Number =
            serde_json::from_slice(self.s.get(start..j).ok_or(Bail)?).map_err(|_| Bail)?;
        Ok(match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Scalar::U64(u),
            (None, Some(i), _) => Scalar::I64(i),
            (None, None, Some(f)) => Scalar::F64(f),
            (None, None, None) => return Err(Bail),
        })
    }

    /// A non-negative integer of at most 18 digits, read; anything else is left unread.
    #[inline]
    fn plain_int(&mut self) -> Option<i64> {
        let c = self.peek()?;
        let b = self.bytes();
        let start = self.i;
        let mut j = start;
        let mut v = 0i64;
        match c {
            b'0' => j += 1,
            b'1'..=b'9' => {
                while let Some(&d @ b'0'..=b'9') = b.get(j) {
                    if j - start == 18 {
                        return None;
                    }
                    v = v * 10 + i64::from(d - b'0');
                    j += 1;
                }
            }
            _ => return None,
        }
        if matches!(b.get(j), Some(b'.' | b'e' | b'E' | b'0'..=b'9')) {
            return None;
        }
        self.i = j;
        Some(v)
    }

    /// A number read as a float column reads it (see `sc_f64`); anything else is left
    /// unread.
    #[inline]
    fn plain_f64(&mut self) -> Option<f64> {
        if !matches!(self.peek()?, b'-' | b'0'..=b'9') {
            return None;
        }
        let at = self.i;
        let v = self.number().ok().and_then(|v| sc_f64(&v));
        if v.is_none() {
            self.i = at;
        }
        v
    }

    /// A string without escapes, as bytes (not checked for UTF-8); anything else is left
    /// unread.
    #[inline]
    fn plain_text(&mut self) -> Option<&'de [u8]> {
        if self.peek()? != b'"' {
            return None;
        }
        let at = self.i;
        match self.raw_string() {
            Ok((t, None)) => Some(t),
            _ => {
                self.i = at;
                None
            }
        }
    }

    /// A scalar; an array or object is not one.
    #[inline]
    fn scalar(&mut self) -> Result<Scalar<'de>, Bail> {
        match self.peek().ok_or(Bail)? {
            b'"' => self.text().map(Scalar::Str),
            b'-' | b'0'..=b'9' => self.number(),
            b'n' => self.word(b"null").map(|_| Scalar::Null),
            b't' => self.word(b"true").map(|_| Scalar::Bool(true)),
            b'f' => self.word(b"false").map(|_| Scalar::Bool(false)),
            _ => Err(Bail),
        }
    }

    /// A date column's value: a string without escapes (as bytes), or null.
    #[inline]
    fn date(&mut self) -> Result<Scalar<'de>, Bail> {
        match self.peek().ok_or(Bail)? {
            // ASCII checked here: a flattened item's date may be kept and never parsed.
            b'"' => match self.raw_string()? {
                (text, None) if text.is_ascii() => Ok(Scalar::Raw(text)),
                _ => Err(Bail),
            },
            b'n' => self.word(b"null").map(|_| Scalar::Null),
            _ => Err(Bail),
        }
    }

    /// `null` (true) or the opening bracket of `open` (false).
    #[inline]
    fn null_or(&mut self, open: u8) -> Result<bool, Bail> {
        match self.peek().ok_or(Bail)? {
            b'n' => self.word(b"null").map(|_| true),
            c if c == open => {
                self.i += 1;
                Ok(false)
            }
            _ => Err(Bail),
        }
    }

    /// Skips a value no column reads, checking it as the reference decoder would.
    fn skip(&mut self, depth: u32) -> Result<(), Bail> {
        if depth > MAX_DEPTH {
            return Err(Bail);
        }
        match self.peek().ok_or(Bail)? {
            b'"' => self.skip_string(),
            b'{' => {
                self.i += 1;
                let mut first = true;
                while self.next_key(&mut first)? {
                    self.skip_string()?;
                    self.expect(b':')?;
                    self.skip(depth + 1)?;
                }
                Ok(())
            }
            b'[' => {
                self.i += 1;
                let mut first = true;
                while self.element(&mut first)? {
                    self.skip(depth + 1)?;
                }
                Ok(())
            }
            _ => self.scalar().map(|_| ()),
        }
    }

    fn skip_string(&mut self) -> Result<(), Bail> {
        match self.string()? {
            (_, Some(token)) => unescape(token).map(|_| ()),
            (_, None) => Ok(()),
        }
    }
}

/// A string token with escapes, read by serde_json: the same unescaping and the same
/// refusals (bad escapes, lone surrogates) as the reference decoder's.
#[cold]
fn unescape(token: &str) -> Result<String, Bail> {
    serde_json::from_str(token).map_err(|_| Bail)
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
    /// A field of the current row: appended now (`keep` is None) or kept.
    #[inline]
    fn field(
        &mut self,
        lx: &mut Lex<'de>,
        fm: &'static FieldMap,
        seen: &mut u64,
        keep: Option<&mut Option<Scalar<'de>>>,
    ) -> Result<(), Bail> {
        if fm.list {
            let c = fm.cols[0];
            let Builder::List(b) = &mut self.builders[c] else {
                return Err(Bail);
            };
            if list_column(lx, b, self.cols[c].kind)? {
                *seen |= 1 << c;
            }
            return Ok(());
        }
        if let ([c], None, false) = (fm.cols.as_slice(), &keep, fm.date) {
            // The common cases, a number for a number column, without `scalar` and `push`.
            match &mut self.builders[*c] {
                Builder::I64(b) => {
                    if let Some(v) = lx.plain_int() {
                        b.append_value(v);
                        *seen |= 1 << c;
                        return Ok(());
                    }
                }
                Builder::F64(b) => {
                    if let Some(v) = lx.plain_f64() {
                        b.append_value(v);
                        *seen |= 1 << c;
                        return Ok(());
                    }
                }
                _ => {}
            }
        }
        let v = if fm.date { lx.date()? } else { lx.scalar()? };
        if matches!(v, Scalar::Null) {
            return Ok(());
        }
        match keep {
            Some(slot) => *slot = Some(v),
            None => {
                for &c in &fm.cols {
                    push(&mut self.builders[c], &self.cols[c], &v, &mut self.memos[c])?;
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

/// Marks field `i` of an object as read; a second time, the reference decoder decides
/// (it keeps the last of duplicate keys).
#[inline]
fn first_time(fields: &mut u64, i: usize) -> Result<(), Bail> {
    if *fields & (1 << i) != 0 {
        return Err(Bail);
    }
    *fields |= 1 << i;
    Ok(())
}

/// The response object.
fn response<'de>(lx: &mut Lex<'de>, st: &mut State<'de>) -> Result<(), Bail> {
    lx.expect(b'{')?;
    let mut first = true;
    let mut keys = 0usize;
    let mut have_list = false;
    let mut seen_resp = 0u64;
    while let Some(key) = lx.key(&mut first)? {
        keys += 1;
        match key {
            b"list" => {
                if have_list {
                    return Err(Bail);
                }
                have_list = true;
                if !lx.null_or(b'[')? {
                    let mut first = true;
                    while lx.element(&mut first)? {
                        item(lx, st)?;
                    }
                }
            }
            b"errcode" => {
                // Anything but a plain 0 is for the reference decoder to judge.
                if !matches!(lx.scalar()?, Scalar::U64(0)) {
                    return Err(Bail);
                }
            }
            b"base_resp" => {
                lx.peek();
                let at = lx.i;
                lx.skip(1)?;
                let v: serde_json::Value =
                    serde_json::from_slice(lx.s.get(at..lx.i).ok_or(Bail)?).map_err(|_| Bail)?;
                let ret = v.get("ret").map(|r| r.as_i64() == Some(0));
                if ret != Some(true) && !v.is_null() {
                    return Err(Bail);
                }
            }
            _ => {
                let resp = find(&st.layout.response, key, &mut st.hints[3]);
                if key == b"is_delay" || resp.is_some() {
                    let v = lx.scalar()?;
                    if let Some(i) = resp {
                        first_time(&mut seen_resp, i)?;
                        st.response_vals[i] = Some(v.clone());
                    }
                    if key == b"is_delay" {
                        if st.is_delay.is_some() {
                            return Err(Bail);
                        }
                        st.is_delay = Some(v);
                    }
                } else {
                    lx.skip(1)?;
                }
            }
        }
    }
    // No `list`: only `{}` is an (empty) answer.
    if !have_list && keys > 0 {
        return Err(Bail);
    }
    Ok(())
}

/// One `list[]` item: one row, or (flatten) one row per nested element.
fn item<'de>(lx: &mut Lex<'de>, st: &mut State<'de>) -> Result<(), Bail> {
    lx.expect(b'{')?;
    let l = st.layout;
    let flat = l.flatten.is_some();
    let mut seen = 0u64;
    let mut fields = 0u64;
    let mut have_detail = false;
    let mut nested_rows: Option<usize> = None;
    if flat {
        st.item_vals.iter_mut().for_each(|v| *v = None);
        st.detail_vals.iter_mut().for_each(|v| *v = None);
    }
    st.hints[0].prev = START;
    let mut first = true;
    while let Some(key) = lx.field_key(&mut first, &l.item, &mut st.hints[0])? {
        if let Ok(i) = key {
            first_time(&mut fields, i)?;
            if flat {
                let mut vals = std::mem::take(&mut st.item_vals);
                let r = st.field(lx, &l.item[i], &mut seen, Some(&mut vals[i]));
                st.item_vals = vals;
                r?;
            } else {
                st.field(lx, &l.item[i], &mut seen, None)?;
            }
        } else if key == Err(b"detail") && !l.detail.is_empty() {
            if have_detail {
                return Err(Bail);
            }
            have_detail = true;
            detail(lx, st, &mut seen)?;
        } else if key.err() == l.flatten.map(str::as_bytes) {
            if nested_rows.is_some() {
                return Err(Bail);
            }
            nested_rows = Some(nested(lx, st)?);
        } else {
            lx.skip(3)?;
        }
    }
    if flat {
        let n = nested_rows.unwrap_or(0);
        st.repeat_item(n)?;
        st.rows += n;
    } else {
        st.fill_missing(l.item_cols, seen)?;
        st.rows += 1;
    }
    Ok(())
}

/// An item's `detail` object (null or absent: its fields are missing).
fn detail<'de>(lx: &mut Lex<'de>, st: &mut State<'de>, seen: &mut u64) -> Result<(), Bail> {
    if lx.null_or(b'{')? {
        return Ok(());
    }
    let l = st.layout;
    let flat = l.flatten.is_some();
    let mut fields = 0u64;
    st.hints[1].prev = START;
    let mut first = true;
    while let Some(key) = lx.field_key(&mut first, &l.detail, &mut st.hints[1])? {
        match key {
            Ok(i) => {
                first_time(&mut fields, i)?;
                let mut vals = std::mem::take(&mut st.detail_vals);
                let keep = if flat { Some(&mut vals[i]) } else { None };
                let r = st.field(lx, &l.detail[i], seen, keep);
                st.detail_vals = vals;
                r?;
            }
            Err(_) => lx.skip(4)?,
        }
    }
    Ok(())
}

/// The flattened array: one row per element; returns how many.
fn nested<'de>(lx: &mut Lex<'de>, st: &mut State<'de>) -> Result<usize, Bail> {
    if lx.null_or(b'[')? {
        return Ok(0);
    }
    let l = st.layout;
    let mut n = 0;
    let mut first = true;
    while lx.element(&mut first)? {
        lx.expect(b'{')?;
        let mut seen = 0u64;
        let mut fields = 0u64;
        st.hints[2].prev = START;
        let mut first_key = true;
        while let Some(key) = lx.field_key(&mut first_key, &l.nested, &mut st.hints[2])? {
            match key {
                Ok(i) => {
                    first_time(&mut fields, i)?;
                    st.field(lx, &l.nested[i], &mut seen, None)?;
                }
                Err(_) => lx.skip(5)?,
            }
        }
        st.fill_missing(l.nested_cols, seen)?;
        n += 1;
    }
    Ok(n)
}

/// A List<Struct> column's array (`read_user_source`, `read_jump_position`). Returns
/// whether it was present (null counts as absent). The struct's field builders are looked
/// up once per list, not per element (three downcasts an element were ~1% of a large run).
fn list_column(
    lx: &mut Lex<'_>,
    b: &mut ListBuilder<StructBuilder>,
    kind: Kind,
) -> Result<bool, Bail> {
    if lx.null_or(b'[')? {
        return Ok(false);
    }
    let sb = b.values();
    let mut n = 0;
    let mut first = true;
    match (kind, sb.field_builders_mut()) {
        (Kind::ReadSources, [count, scene, label]) => {
            let count = typed::<Int64Builder>(count)?;
            let scene = typed::<StringBuilder>(scene)?;
            let label = typed::<StringBuilder>(label)?;
            while lx.element(&mut first)? {
                let (c, s, l) = read_source(lx)?;
                count.append_value(c);
                scene.append_value(s);
                label.append_value(l);
                n += 1;
            }
        }
        (Kind::JumpPositions, [pos, rate]) => {
            let pos = typed::<Int32Builder>(pos)?;
            let rate = typed::<Float64Builder>(rate)?;
            while lx.element(&mut first)? {
                let (p, r) = jump(lx)?;
                pos.append_value(p);
                rate.append_value(r);
                n += 1;
            }
        }
        _ => return Err(Bail),
    }
    sb.append_non_nulls(n);
    b.append(true);
    Ok(true)
}

fn typed<T: arrow::array::ArrayBuilder>(
    b: &mut Box<dyn arrow::array::ArrayBuilder>,
) -> Result<&mut T, Bail> {
    b.as_any_mut().downcast_mut::<T>().ok_or(Bail)
}

/// One read-source element: its count, scene and the scene's label.
#[inline]
fn read_source<'de>(lx: &mut Lex<'de>) -> Result<(i64, Cow<'de, str>, &'static str), Bail> {
    let at = lx.i;
    if let Some((count, scene, label)) = plain_read_source(lx) {
        return Ok((count, Cow::Borrowed(scene), label));
    }
    lx.i = at;
    let (a, v) = pair(lx, Kind::ReadSources)?;
    let count = sc_i64(&a).ok_or(Bail)?;
    let Scalar::Str(scene) = v else {
        return Err(Bail);
    };
    let label = SCENE_DESC.str(&scene);
    Ok((count, scene, label))
}

/// The usual element: `user_count` a plain integer and `scene_desc` a string without
/// escapes, and nothing else, read without going through `Scalar`s (a 32-byte value moved
/// through memory twice a field); a known scene needs no UTF-8 check: its bytes are the
/// table's own. `None` for any other element (the caller reads it again the general way).
#[inline]
fn plain_read_source<'de>(lx: &mut Lex<'de>) -> Option<(i64, &'de str, &'static str)> {
    let (count, text) = plain_pair(
        lx,
        (b"user_count", Lex::plain_int),
        (b"scene_desc", Lex::plain_text),
    )?;
    match SCENE_DESC.entry(text) {
        Some((scene, label)) => Some((count, scene, label)),
        None => {
            let scene = std::str::from_utf8(text).ok()?;
            Some((count, scene, SCENE_DESC.str(scene)))
        }
    }
}

/// An object of exactly two fields, in either order (WeChat's examples put `user_count`
/// first, a serializer that sorts keys puts it last), each read by its reader; `None` for
/// any other object, or a value its reader refuses.
#[inline]
fn plain_pair<'de, A, B>(
    lx: &mut Lex<'de>,
    (ka, mut ra): (&[u8], impl FnMut(&mut Lex<'de>) -> Option<A>),
    (kb, mut rb): (&[u8], impl FnMut(&mut Lex<'de>) -> Option<B>),
) -> Option<(A, B)> {
    lx.expect(b'{').ok()?;
    let mut first = true;
    let (mut a, mut b) = (None, None);
    for _ in 0..2 {
        if !lx.next_key(&mut first).ok()? {
            return None;
        }
        if a.is_none() && lx.key_is(ka).ok()? {
            a = Some(ra(lx)?);
        } else if b.is_none() && lx.key_is(kb).ok()? {
            b = Some(rb(lx)?);
        } else {
            return None;
        }
    }
    if lx.next_key(&mut first).ok()? {
        return None;
    }
    Some((a?, b?))
}

/// One jump-position element: its position and rate.
#[inline]
fn jump(lx: &mut Lex<'_>) -> Result<(i32, f64), Bail> {
    let at = lx.i;
    if let Some(r) = plain_jump(lx) {
        return Ok(r);
    }
    lx.i = at;
    let (a, v) = pair(lx, Kind::JumpPositions)?;
    let pos = sc_i64(&a).and_then(|x| i32::try_from(x).ok()).ok_or(Bail)?;
    Ok((pos, sc_f64(&v).ok_or(Bail)?))
}

/// The usual element: `position` a plain integer and `rate` a number, and nothing else;
/// `None` for any other (see `plain_read_source`).
#[inline]
fn plain_jump(lx: &mut Lex<'_>) -> Option<(i32, f64)> {
    let (pos, rate) = plain_pair(lx, (b"position", Lex::plain_int), (b"rate", Lex::plain_f64))?;
    Some((i32::try_from(pos).ok()?, rate))
}

/// One element of a List<Struct> array: its two fields, both required.
fn pair<'de>(lx: &mut Lex<'de>, kind: Kind) -> Result<(Scalar<'de>, Scalar<'de>), Bail> {
    let (ka, kb): (&[u8], &[u8]) = match kind {
        Kind::ReadSources => (b"user_count", b"scene_desc"),
        _ => (b"position", b"rate"),
    };
    lx.expect(b'{')?;
    let (mut a, mut b) = (None, None);
    let mut first = true;
    while lx.next_key(&mut first)? {
        let slot = if lx.key_is(ka)? {
            &mut a
        } else if lx.key_is(kb)? {
            &mut b
        } else {
            lx.key_text()?;
            lx.skip(6)?;
            continue;
        };
        if slot.is_some() {
            return Err(Bail);
        }
        *slot = Some(lx.scalar()?);
    }
    match (a, b) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => Err(Bail),
    }
}

/// Per catalogue entry, the body bytes a row took in its last decoded answer, in 16ths
/// (0: none yet). Answers of one report are alike, so the next one's builders are sized from
/// it: sized from the body's length alone, a decoded window held 2-4.5 times its rows'
/// bytes, and the loader copied windows together to keep a row group's memory honest.
static BYTES_PER_ROW: [AtomicU32; 64] = [const { AtomicU32::new(0) }; 64];

/// Rows a body of this size probably holds, to size the builders once. Rather a few too
/// many than too few: growing a builder copies it and doubles its room.
fn capacity(entry: usize, report: &Report, body: &[u8]) -> usize {
    let learned = BYTES_PER_ROW
        .get(entry)
        .map_or(0, |a| a.load(Ordering::Relaxed));
    rows_for(learned, report.columns.len(), body.len())
}

fn rows_for(learned: u32, columns: usize, body: usize) -> usize {
    let rows = match learned {
        // A fifth more and a few rows: an answer a little denser than the last fits.
        0 => body / (12 * columns.max(1)),
        per_row => (body * 16 / per_row as usize) * 6 / 5 + 4,
    };
    rows.clamp(8, 1 << 20)
}

/// Notes what a decoded answer's rows took (a handful of rows says little: the envelope
/// weighs as much).
fn learn(entry: usize, body: usize, rows: usize) {
    if rows < 8 {
        return;
    }
    if let Some(a) = BYTES_PER_ROW.get(entry) {
        let per_row = (body * 16 / rows).clamp(1, u32::MAX as usize) as u32;
        a.store(per_row, Ordering::Relaxed);
    }
}

/// Decodes a body the common way, or `None` for the reference decoder to handle.
pub(super) fn decode(report: &Report, body: &[u8]) -> Option<Decoded> {
    // Publisher pages are merged by the extractor and decoded the reference way.
    if report.protocol() != crate::catalog::Protocol::Datacube {
        return None;
    }
    let layout = layout(report)?;
    // The report's place in the catalogue, found once per body.
    let entry = catalogue_index(report)?;
    let cap = capacity(entry, report, body);
    let mut st = State {
        layout,
        cols: REPORTS.get(entry)?.columns,
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
    let mut lx = Lex { s: body, i: 0 };
    response(&mut lx, &mut st).ok()?;
    if lx.peek().is_some() {
        return None;
    }
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
    learn(entry, body.len(), rows);
    let arrays: Vec<ArrayRef> = st.builders.iter_mut().map(Builder::finish).collect();
    let batch = RecordBatch::try_new(schema(report), arrays).ok()?;
    let is_delay = matches!(st.is_delay, Some(Scalar::Bool(true)));
    Some(Decoded { batch, is_delay })
}

#[cfg(test)]
mod tests {
    #[test]
    fn builders_are_sized_from_the_last_answer_of_the_report() {
        // None decoded yet: from the body's length (12 bytes a field).
        assert_eq!(super::rows_for(0, 6, 7200), 100);
        // The last answer took 70 bytes a row: one of 7,000 bytes gets room for its 100
        // rows and a fifth more, not the 2-4x a guess from the length gave.
        let learned = 70 * 16;
        let rows = super::rows_for(learned, 6, 7000);
        assert!((100..=130).contains(&rows), "{rows}");
        assert_eq!(super::rows_for(learned, 6, 10), 8, "a few rows at least");
        assert_eq!(
            super::rows_for(1, 6, usize::MAX >> 8),
            1 << 20,
            "and at most 1M"
        );
    }

    /// The eight-byte test stops exactly where a byte-by-byte scan would.
    #[test]
    fn a_word_stops_a_string_scan_exactly_when_one_of_its_bytes_does() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let stops = |b: u8| b == b'"' || b == b'\\' || b < 0x20;
        let interesting = [
            0u8, 0x1f, 0x20, 0x21, b'"', 0x23, 0x5b, b'\\', 0x5d, 0x7f, 0x80, 0xe9, 0xff,
        ];
        for round in 0..200_000u32 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut w = seed.to_le_bytes();
            if round % 2 == 0 {
                // Mostly bytes next to the stop bytes.
                for (k, b) in w.iter_mut().enumerate() {
                    *b = interesting[((seed >> (k * 4)) % interesting.len() as u64) as usize];
                }
            }
            let want = w.iter().any(|&b| stops(b));
            assert_eq!(super::stops_string(u64::from_le_bytes(w)), want, "{w:x?}");
        }
    }

    /// Numbers read as serde_json reads them into a `Value`, bit for bit.
    #[test]
    fn numbers_read_as_serde_json_reads_them() {
        let mut seed = 0x1234_5678_9abc_def1u64;
        let mut rnd = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut texts: Vec<String> = [
            "0",
            "-0",
            "0.0",
            "-0.0",
            "1e2",
            "2E-3",
            "0.1",
            "-5",
            "18446744073709551615",
            "18446744073709551616",
            "9223372036854775808",
            "-9223372036854775808",
            "0.0271002",
            "1.0588236",
            "999999999999999.9",
            "0.30000000000000004",
        ]
        .iter()
        .map(|t| t.to_string())
        .collect();
        for _ in 0..20_000 {
            let int: String = (0..rnd(12))
                .map(|_| char::from(b'0' + rnd(10) as u8))
                .collect();
            let int = int.trim_start_matches('0');
            let int = if int.is_empty() { "0" } else { int };
            let frac: String = (0..1 + rnd(20))
                .map(|_| char::from(b'0' + rnd(10) as u8))
                .collect();
            let sign = if rnd(4) == 0 { "-" } else { "" };
            texts.push(format!("{sign}{int}.{frac}"));
        }
        let mut floats = 0;
        for t in &texts {
            let mut lx = super::Lex {
                s: t.as_bytes(),
                i: 0,
            };
            let got = lx.number().ok().unwrap_or_else(|| panic!("{t}"));
            assert_eq!(lx.i, t.len(), "{t}");
            let want: serde_json::Value = serde_json::from_str(t).unwrap();
            match got {
                super::Scalar::U64(u) => assert_eq!(want.as_u64(), Some(u), "{t}"),
                super::Scalar::I64(i) => {
                    assert!(want.is_i64() && !want.is_u64(), "{t}");
                    assert_eq!(want.as_i64(), Some(i), "{t}");
                }
                super::Scalar::F64(f) => {
                    assert!(want.is_f64(), "{t}");
                    assert_eq!(want.as_f64().map(f64::to_bits), Some(f.to_bits()), "{t}");
                    floats += 1;
                }
                _ => panic!("{t}: not a number"),
            }
        }
        assert!(floats > 19_000);
    }

    /// The usual list elements, in either key order, take the direct path; the rest are
    /// left to the general one (the caller reads them again from their start).
    #[test]
    fn usual_list_elements_are_read_directly_in_either_key_order() {
        use super::{plain_jump, plain_read_source, Lex};
        let lex = |s: &'static str| Lex {
            s: s.as_bytes(),
            i: 0,
        };
        for s in [
            r#"{"user_count":3,"scene_desc":"搜一搜"}"#,
            r#"{ "scene_desc" : "搜一搜" , "user_count" : 3 }"#,
        ] {
            let mut lx = lex(s);
            assert_eq!(
                plain_read_source(&mut lx),
                Some((3, "搜一搜", "search")),
                "{s}"
            );
            assert_eq!(lx.i, s.len(), "{s}");
        }
        let mut lx = lex(r#"{"user_count":0,"scene_desc":"新"}"#);
        assert_eq!(plain_read_source(&mut lx), Some((0, "新", "unknown")));
        for s in [
            r#"{"user_count":3}"#,
            r#"{"user_count":3,"user_count":3}"#,
            r#"{"user_count":3,"scene_desc":"a","x":1}"#,
            r#"{"user_count":-3,"scene_desc":"a"}"#,
            r#"{"user_count":3,"scene_desc":"\u5168"}"#,
        ] {
            assert_eq!(plain_read_source(&mut lex(s)), None, "{s}");
        }
        for s in [
            r#"{"position":2,"rate":0.5}"#,
            r#"{"rate":0.5,"position":2}"#,
        ] {
            assert_eq!(plain_jump(&mut lex(s)), Some((2, 0.5)), "{s}");
        }
        for s in [r#"{"position":2}"#, r#"{"position":2,"rate":"0.5"}"#] {
            assert_eq!(plain_jump(&mut lex(s)), None, "{s}");
        }
    }

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
