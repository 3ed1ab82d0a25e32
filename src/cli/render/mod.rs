//! What the commands print: tables and JSON of the catalogue, plan, status, changes and
//! run summary. Text output is a contract (DESIGN §1): change it only on purpose.

mod plan;
mod status;
mod summary;

use std::io::Write;

use crate::catalog::{self, Report};
use crate::dates;
use crate::error::ExitCode;

pub(super) use plan::{plan_json, print_plan};
pub(super) use status::print_status;
pub(super) use summary::print_summary;

/// A value as pretty JSON on one stdout document.
pub(in crate::cli) fn print_json(out: &mut impl Write, v: &impl serde::Serialize) {
    let _ = writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_default()
    );
}

/// `v` as JSON when `json`, else as `text` prints it.
pub(in crate::cli) fn print_either<W: Write, T: serde::Serialize>(
    out: &mut W,
    json: bool,
    v: &T,
    text: impl FnOnce(&mut W, &T),
) {
    if json {
        print_json(out, v);
    } else {
        text(out, v);
    }
}

/// `reports`: the catalogue, as a table or JSON.
pub(in crate::cli) fn print_reports(out: &mut impl Write, json: bool) {
    if json {
        let v: Vec<_> = catalog::all().map(report_json).collect();
        print_json(out, &v);
    } else {
        let _ = writeln!(
            out,
            "{:<24} {:<24} {:>4}  {:<9} {:<10} grain",
            "id", "api", "span", "status", "first_day"
        );
        for r in catalog::all() {
            let _ = writeln!(
                out,
                "{:<24} {:<24} {:>4}  {:<9} {:<10} {}",
                r.id,
                r.api,
                r.span,
                r.status.as_str(),
                dates::fmt(r.first_day()),
                r.grain
            );
        }
    }
}

/// `schema`: a report's columns with their Arrow types and meaning.
pub(in crate::cli) fn print_schema(out: &mut impl Write, r: &Report, json: bool) {
    let schema = catalog::schema(r);
    if json {
        let cols: Vec<_> = r
            .columns
            .iter()
            .zip(schema.fields())
            .map(|(c, f)| {
                serde_json::json!({"name": c.name, "type": type_name(f.data_type()), "nullable": f.is_nullable(), "description": c.doc})
            })
            .collect();
        let v = serde_json::json!({"report": r.id, "api": r.api, "key": r.key, "columns": cols});
        print_json(out, &v);
    } else {
        let _ = writeln!(
            out,
            "{} ({}): {}; one row per {}; key ({})",
            r.id,
            r.api,
            r.doc,
            r.grain,
            r.key.join(", ")
        );
        let _ = writeln!(out);
        for (c, f) in r.columns.iter().zip(schema.fields()) {
            let null = if f.is_nullable() { "null" } else { "" };
            let _ = writeln!(
                out,
                "  {:<34} {:<46} {:<4}  {}",
                c.name,
                type_name(f.data_type()),
                null,
                c.doc
            );
        }
    }
}

pub(super) fn report_json(r: &'static Report) -> serde_json::Value {
    serde_json::json!({
        "id": r.id, "api": r.api, "path": r.path, "span": r.span, "status": r.status.as_str(),
        "grain": r.grain, "first_day": dates::fmt(r.first_day()), "key": r.key, "description": r.doc,
        "replacement": r.replacement,
    })
}

pub(in crate::cli) fn type_name(t: &arrow::datatypes::DataType) -> String {
    use arrow::datatypes::DataType as T;
    match t {
        T::Dictionary(_, v) => format!("Dictionary<{}>", type_name(v)),
        T::List(f) => format!("List<{}>", type_name(f.data_type())),
        T::Struct(fs) => format!(
            "Struct<{}>",
            fs.iter()
                .map(|f| format!("{} {}", f.name(), type_name(f.data_type())))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => format!("{other}"),
    }
}

pub(super) fn human_bytes(b: u64) -> String {
    match b {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// What an exit code means, for the last line of a run summary.
pub(in crate::cli) fn exit_meaning(code: i32) -> &'static str {
    ExitCode::from_code(code).meaning()
}

/// A plain text table: columns as wide as their widest cell, two spaces apart.
pub(super) struct Table {
    head: Vec<&'static str>,
    /// Right-aligned columns (numbers).
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(super) fn new(cols: &[(&'static str, bool)]) -> Self {
        Table {
            head: cols.iter().map(|c| c.0).collect(),
            right: cols.iter().map(|c| c.1).collect(),
            rows: Vec::new(),
        }
    }

    pub(super) fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    pub(super) fn render(&self, out: &mut impl Write) {
        let n = self.head.len();
        let mut width: Vec<usize> = self.head.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(n) {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let line = |cells: Vec<&str>| {
            let mut s = String::new();
            for (i, c) in cells.iter().enumerate() {
                let pad = width[i].saturating_sub(c.chars().count());
                if i > 0 {
                    s.push_str("  ");
                }
                if self.right[i] {
                    s.push_str(&" ".repeat(pad));
                    s.push_str(c);
                } else {
                    s.push_str(c);
                    if i + 1 < cells.len() {
                        s.push_str(&" ".repeat(pad));
                    }
                }
            }
            s.trim_end().to_string()
        };
        let _ = writeln!(out, "{}", line(self.head.clone()));
        for r in &self.rows {
            let _ = writeln!(out, "{}", line(r.iter().map(String::as_str).collect()));
        }
    }
}

pub(super) fn percent(calls: usize, budget: u32) -> String {
    format!("{:.1}%", 100.0 * calls as f64 / f64::from(budget.max(1)))
}

pub(in crate::cli) fn print_changes(out: &mut impl Write, l: &crate::changes::Listing) {
    let mut t = Table::new(&[
        ("committed_at", false),
        ("run", false),
        ("table", false),
        ("account", false),
        ("partition", false),
        ("rows", true),
        ("bytes", true),
        ("status", false),
    ]);
    for c in &l.changes {
        t.push(vec![
            c.committed_at
                .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_else(|| "-".into()),
            c.run_id.clone(),
            c.table.clone(),
            c.account.clone(),
            c.partition.clone(),
            c.rows.map_or("-".into(), |r| r.to_string()),
            c.bytes.map_or("-".into(), human_bytes),
            c.status.clone(),
        ]);
    }
    t.render(out);
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{} partitions changed since {} (pending: re-read them, their commit may not have happened); next time: --since {}",
        l.changes.len(),
        l.since,
        l.next_since.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns_to_their_widest_cell() {
        let mut t = Table::new(&[("name", false), ("n", true), ("note", false)]);
        t.push(vec!["a".into(), "1234".into(), "x".into()]);
        t.push(vec!["longer".into(), "5".into(), String::new()]);
        let mut out = Vec::new();
        t.render(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "name       n  note\na       1234  x\nlonger     5\n"
        );
    }
}
