//! `dates:`: `days_back`, or a start with an optional end.

use chrono::NaiveDate;

use super::{shown, Compiler};
use crate::catalog::{self, Report};
use crate::config::node::{Kind, Node};
use crate::dates;
use crate::pipeline::{DateRef, DateSpec};

const DATES_KEYS: &[&str] = &["days_back", "start", "end"];
const DATE_REF_KEYS: &[&str] = &["days_back"];
const MAX_DAYS_BACK: u32 = 3650;
const DATE_FORMS: &str = "a date as YYYY-MM-DD or { days_back: N }";

impl Compiler<'_> {
    pub(super) fn dates(&mut self, n: &Node, anchor: Option<&Node>) -> Option<DateSpec> {
        let f = self.fields(n, "dates", anchor, DATES_KEYS)?;
        let days_back = f.get("days_back");
        let start = f.get("start");
        let end = f.get("end");
        let days_back = days_back.map(|d| self.bounded(d, "dates.days_back", 1, MAX_DAYS_BACK));
        let start_ref = start.map(|s| (s, self.date_ref(s, "dates.start")));
        let end_ref = end.map(|e| (e, self.date_ref(e, "dates.end")));
        match (days_back, start_ref, end_ref) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                self.error(
                    anchor.or(Some(n)),
                    "dates",
                    "use either days_back or start (with an optional end), not both",
                );
                None
            }
            (Some(d), None, None) => d.map(DateSpec::DaysBack),
            (None, Some((_, s)), e) => {
                let (end_node, end) = match e {
                    Some((node, r)) => (Some(node), Some(r?)),
                    None => (None, None),
                };
                let start = s?;
                if let (Some(end), Some(node)) = (end, end_node) {
                    self.check_order(start, end, node)?;
                }
                Some(DateSpec::Range { start, end })
            }
            (None, None, Some((node, _))) => {
                self.error(
                    Some(node),
                    "dates.end",
                    "end needs a start; or use days_back",
                );
                None
            }
            (None, None, None) => {
                self.error(
                    anchor.or(Some(n)),
                    "dates",
                    "expected days_back, or start with an optional end",
                );
                None
            }
        }
    }

    pub(super) fn check_order(
        &mut self,
        start: DateRef,
        end: DateRef,
        end_node: &Node,
    ) -> Option<()> {
        let message = match (start, end) {
            (DateRef::Abs(s), DateRef::Abs(e)) if e < s => {
                format!("end {} is before start {}", dates::fmt(e), dates::fmt(s))
            }
            (DateRef::DaysBack(s), DateRef::DaysBack(e)) if e > s => {
                format!("end {{ days_back: {e} }} is before start {{ days_back: {s} }}")
            }
            _ => return Some(()),
        };
        self.error(Some(end_node), "dates.end", message);
        None
    }

    pub(super) fn date_ref(&mut self, n: &Node, key: &str) -> Option<DateRef> {
        match &n.kind {
            Kind::Str(s) => {
                let Some(d) = dates::parse(s.trim()) else {
                    let looks_like_date = s.len() == 10
                        && s.char_indices().all(|(i, c)| {
                            if i == 4 || i == 7 {
                                c == '-'
                            } else {
                                c.is_ascii_digit()
                            }
                        });
                    let message = if looks_like_date {
                        format!("{} is not a calendar date", shown(n, s))
                    } else {
                        format!("expected {DATE_FORMS}, found {}", shown(n, s))
                    };
                    self.error(Some(n), key, message);
                    return None;
                };
                let first = first_data_day();
                if d < first {
                    self.error(
                        Some(n),
                        key,
                        format!(
                            "{} is before {}, the first day WeChat has data for",
                            dates::fmt(d),
                            dates::fmt(first)
                        ),
                    );
                    return None;
                }
                Some(DateRef::Abs(d))
            }
            Kind::Map(_) => {
                let f = self.fields(n, key, Some(n), DATE_REF_KEYS)?;
                let d = self.require(&f, "days_back")?;
                self.bounded(d, &f.child("days_back"), 1, MAX_DAYS_BACK)
                    .map(DateRef::DaysBack)
            }
            _ => {
                self.type_error(n, key, DATE_FORMS);
                None
            }
        }
    }
}

/// The earliest first data day in the catalogue (2014-12-01): nothing exists before it.
fn first_data_day() -> NaiveDate {
    catalog::REPORTS
        .iter()
        .map(Report::first_day)
        .min()
        .unwrap_or(NaiveDate::MIN)
}
