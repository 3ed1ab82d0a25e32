//! The output's Hive layout: the partition folder a date falls in, the dates a folder
//! holds, and a partition's file path. State, the change log and the load stage share it.

use chrono::{Datelike, NaiveDate};

use crate::pipeline::Partition;
use crate::window::Window;

/// The Hive folder of a row date, e.g. `month=2025-01`.
pub fn partition_value(p: Partition, d: NaiveDate) -> String {
    match p {
        Partition::Day => format!("date={}", crate::dates::fmt(d)),
        Partition::Month => format!("month={:04}-{:02}", d.year(), d.month()),
        Partition::Year => format!("year={:04}", d.year()),
    }
}

/// The dates a Hive folder (`month=2025-01`, `date=...`, `year=...`) holds.
pub fn partition_dates(part: &str) -> Option<(NaiveDate, NaiveDate)> {
    let (key, v) = part.split_once('=')?;
    let (begin, end) = match key {
        "date" => {
            let d = crate::dates::parse(v)?;
            (d, d)
        }
        "month" => {
            let b = NaiveDate::parse_from_str(&format!("{v}-01"), "%Y-%m-%d").ok()?;
            (b, b.checked_add_months(chrono::Months::new(1))?.pred_opt()?)
        }
        "year" => {
            let y: i32 = v.parse().ok()?;
            (
                NaiveDate::from_ymd_opt(y, 1, 1)?,
                NaiveDate::from_ymd_opt(y, 12, 31)?,
            )
        }
        _ => return None,
    };
    Some((begin, end))
}

pub fn file_rel(report: &str, account: &str, part: &str) -> String {
    format!("{report}/account={account}/{part}/data.parquet")
}

/// Partitions a window's dates fall in (a window may straddle two).
pub fn partitions_of(p: Partition, w: &Window) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut d = w.begin;
    while d <= w.end {
        let v = partition_value(p, d);
        if out.last() != Some(&v) {
            out.push(v);
        }
        d = d.succ_opt().unwrap_or(NaiveDate::MAX);
    }
    out
}
