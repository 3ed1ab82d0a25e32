//! Run state, kept with the data under `{uri}/_wxcube/state/` so that a run on any machine
//! resumes where the last one stopped.
//!
//! One JSON document per account and report: the row dates loaded (as ranges), the latest
//! ready day when each was loaded, whether WeChat flagged it provisional (`is_delay`), the
//! calls made today against the daily budget, and a quota or retirement stop. State is
//! written after the partitions it describes are committed, so it never claims rows the
//! data does not have; a crash in between only costs a re-fetch, never a duplicate.

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::catalog::Report;
use crate::plan::Loaded;
use crate::store::{update_cas, Cas, Store, StoreError, Tag};
use crate::window::Window;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// Latest ready day when loaded: revisable reports are final only once far enough past it.
    pub ready: NaiveDate,
    pub provisional: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    pub begin: NaiveDate,
    pub end: NaiveDate,
    pub ready: NaiveDate,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub provisional: bool,
    pub loaded_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Calls {
    pub day: Option<NaiveDate>,
    pub count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stop {
    /// `quota` (45009), `retired` (47009) or `permission` (48001 / 50001).
    pub reason: String,
    /// China date from which calls may resume (quota), absent when permanent.
    #[serde(default)]
    pub until: Option<NaiveDate>,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportState {
    pub version: u32,
    pub report: String,
    pub account: String,
    pub loaded: Vec<Range>,
    #[serde(default)]
    pub calls: Calls,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    /// Hive folders (`month=2025-01`) this report's commits wrote for the account: one that
    /// is gone (an operator deleted it, a lifecycle rule, a restore) has its dates fetched
    /// again. None in state from a release that did not keep it: then the folders present
    /// when it is first upgraded count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<std::collections::BTreeSet<String>>,
    /// Found by checking against the store (never saved as such): loaded dates whose
    /// folder is gone, and whether `parts` came from the listing rather than the file.
    #[serde(skip)]
    pub lost: std::collections::BTreeSet<NaiveDate>,
    #[serde(skip)]
    pub parts_listed: bool,
}

/// The newest state format this binary reads and writes.
pub const VERSION: u32 = 1;

/// One window as loaded: the dates of it WeChat may still change (`is_delay`, or no rows
/// yet for one of the latest ready days).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedWindow {
    pub window: Window,
    pub provisional: std::collections::BTreeSet<NaiveDate>,
}

impl LoadedWindow {
    pub fn new(window: Window, provisional: bool) -> Self {
        let mut set = std::collections::BTreeSet::new();
        if provisional {
            let mut d = window.begin;
            while d <= window.end {
                set.insert(d);
                d += Duration::days(1);
            }
        }
        LoadedWindow {
            window,
            provisional: set,
        }
    }
}

/// The stop reason of a withheld permission set.
pub const PERMISSION: &str = "permission";

pub fn rel(report: &str, account: &str) -> String {
    format!("_wxcube/state/{report}/account={account}.json")
}

impl ReportState {
    pub fn new(report: &str, account: &str) -> Self {
        ReportState {
            version: VERSION,
            report: report.into(),
            account: account.into(),
            ..Default::default()
        }
    }

    fn marks(&self) -> BTreeMap<NaiveDate, (Mark, DateTime<Utc>)> {
        let mut m = BTreeMap::new();
        for r in &self.loaded {
            let mut d = r.begin;
            while d <= r.end {
                m.insert(
                    d,
                    (
                        Mark {
                            ready: r.ready,
                            provisional: r.provisional,
                        },
                        r.loaded_at,
                    ),
                );
                d += Duration::days(1);
            }
        }
        m
    }

    fn set_marks(&mut self, m: BTreeMap<NaiveDate, (Mark, DateTime<Utc>)>) {
        let mut out: Vec<Range> = Vec::new();
        for (d, (mark, at)) in m {
            if let Some(last) = out.last_mut() {
                if last.end + Duration::days(1) == d
                    && last.ready == mark.ready
                    && last.provisional == mark.provisional
                {
                    last.end = d;
                    last.loaded_at = last.loaded_at.max(at);
                    continue;
                }
            }
            out.push(Range {
                begin: d,
                end: d,
                ready: mark.ready,
                provisional: mark.provisional,
                loaded_at: at,
            });
        }
        self.loaded = out;
    }

    /// Records windows as loaded, each with the dates still provisional (later loads
    /// replace earlier marks of the same dates).
    pub fn record(&mut self, windows: &[LoadedWindow], ready: NaiveDate, at: DateTime<Utc>) {
        let mut m = self.marks();
        for l in windows {
            let mut d = l.window.begin;
            while d <= l.window.end {
                m.insert(
                    d,
                    (
                        Mark {
                            ready,
                            provisional: l.provisional.contains(&d),
                        },
                        at,
                    ),
                );
                d += Duration::days(1);
            }
        }
        self.set_marks(m);
    }

    /// Notes folders just committed (`present`: the folders found when state predates
    /// `parts`).
    pub fn add_parts(
        &mut self,
        parts: &[String],
        present: Option<&std::collections::BTreeSet<String>>,
    ) {
        let set = self
            .parts
            .get_or_insert_with(|| present.cloned().unwrap_or_default());
        set.extend(parts.iter().cloned());
    }

    /// Loaded dates whose folder a commit wrote and that is no longer `present`; with
    /// `widen`, also the loaded dates that many days before the folder (rows dated by
    /// update, as settlements are, land in a later folder than the window that fetched them).
    pub fn lost_dates(
        &self,
        present: &std::collections::BTreeSet<String>,
        p: crate::pipeline::Partition,
        widen: i64,
    ) -> std::collections::BTreeSet<NaiveDate> {
        let mut out = std::collections::BTreeSet::new();
        let Some(parts) = &self.parts else {
            return out;
        };
        for r in &self.loaded {
            let mut d = r.begin;
            while d <= r.end {
                let gone = |x: NaiveDate| {
                    let pv = crate::hive::partition_value(p, x);
                    parts.contains(&pv) && !present.contains(&pv)
                };
                if gone(d) || (widen > 0 && gone(d + Duration::days(widen))) {
                    out.insert(d);
                }
                d += Duration::days(1);
            }
        }
        out
    }

    /// Marks these loaded dates provisional (see `reopen`).
    pub fn reopen_dates(&mut self, dates: &std::collections::BTreeSet<NaiveDate>) {
        self.reopen_where(|d| dates.contains(&d));
    }

    /// Marks the loaded dates `begin..=end` provisional (their rows are gone): the next run
    /// fetches them again, wherever they lie relative to its range.
    pub fn reopen(&mut self, begin: NaiveDate, end: NaiveDate) {
        self.reopen_where(|d| begin <= d && d <= end);
    }

    fn reopen_where(&mut self, gone: impl Fn(NaiveDate) -> bool) {
        let mut m = self.marks();
        for (d, (mark, _)) in m.iter_mut() {
            if gone(*d) {
                mark.provisional = true;
            }
        }
        self.set_marks(m);
    }

    pub fn count_calls(&mut self, today: NaiveDate, n: u32) {
        if self.calls.day != Some(today) {
            self.calls = Calls {
                day: Some(today),
                count: 0,
            };
        }
        self.calls.count += n;
    }

    /// What the planner needs: dates final for this report as of now.
    pub fn loaded(&self, report: &Report, today: NaiveDate) -> Loaded {
        let mut finals = std::collections::BTreeSet::new();
        let mut revisable = std::collections::BTreeSet::new();
        for r in &self.loaded {
            let mut d = r.begin;
            while d <= r.end {
                // Revisable rows are final once the revision period had passed when loaded.
                let settled = report.revise_days == 0
                    || d + Duration::days(i64::from(report.revise_days)) <= r.ready;
                if settled && !r.provisional {
                    finals.insert(d);
                } else {
                    revisable.insert(d);
                }
                d += Duration::days(1);
            }
        }
        let calls_today = if self.calls.day == Some(today) {
            self.calls.count
        } else {
            0
        };
        Loaded {
            finals,
            revisable,
            calls_today,
            ..Default::default()
        }
    }

    /// An active stop for `today`, if any: one that defers the whole report. A permission
    /// stop does not: each run asks again with the report's first window.
    pub fn active_stop(&self, today: NaiveDate) -> Option<&Stop> {
        self.stop
            .as_ref()
            .filter(|s| s.reason != PERMISSION && s.until.is_none_or(|u| today < u))
    }

    /// WeChat withheld this report's permission set last time (48001 / 50001).
    pub fn permission_stop(&self) -> Option<&Stop> {
        self.stop.as_ref().filter(|s| s.reason == PERMISSION)
    }
}

pub async fn read(
    store: &Store,
    report: &str,
    account: &str,
) -> Result<(ReportState, Tag), StoreError> {
    let path = rel(report, account);
    let read = store.read(&path).await?;
    let tag = read.as_ref().map(|(_, t)| t.clone()).unwrap_or_default();
    Ok((parse(store, &path, report, account, read)?, tag))
}

/// A state document as read (`None`: not there yet, a fresh state).
fn parse(
    store: &Store,
    path: &str,
    report: &str,
    account: &str,
    read: Option<(Bytes, Tag)>,
) -> Result<ReportState, StoreError> {
    let Some((bytes, _)) = read else {
        return Ok(ReportState::new(report, account));
    };
    let st: ReportState = serde_json::from_slice(&bytes).map_err(|e| StoreError::Refused {
        op: "parse state",
        path: store.describe(path),
        message: format!("{e}; the state file is damaged: delete it (the next run refetches that report) or restore it"),
    })?;
    // Rewriting it would drop what a newer release keeps there.
    if st.version > VERSION {
        return Err(StoreError::Refused {
            op: "read state",
            path: store.describe(path),
            message: format!(
                "state version {} was written by a newer wxcube (this one knows version {VERSION}): upgrade wxcube to run this pipeline",
                st.version
            ),
        });
    }
    Ok(st)
}

/// Read-modify-write of one state document, safe against a concurrent run.
pub async fn update(
    store: &Store,
    report: &str,
    account: &str,
    f: impl Fn(&mut ReportState),
) -> Result<ReportState, StoreError> {
    let path = rel(report, account);
    let f = &f;
    let path_ref = path.as_str();
    let (st, _) = update_cas(store, &path, |read| async move {
        let mut st = parse(store, path_ref, report, account, read)?;
        f(&mut st);
        let bytes = serde_json::to_vec_pretty(&st).map_err(|e| StoreError::Remote {
            op: "encode state",
            path: store.describe(path_ref),
            message: e.to_string(),
        })?;
        Ok::<_, StoreError>(Cas::Write(Bytes::from(bytes), st))
    })
    .await?;
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog;
    use crate::dates::parse;

    fn d(s: &str) -> NaiveDate {
        parse(s).unwrap()
    }

    #[test]
    fn ranges_compact_and_revisions_stay_open() {
        let mut st = ReportState::new("article_total", "a");
        let now = Utc::now();
        st.record(
            &[LoadedWindow::new(
                Window {
                    begin: d("2025-01-01"),
                    end: d("2025-01-10"),
                },
                false,
            )],
            d("2025-01-10"),
            now,
        );
        st.record(
            &[LoadedWindow::new(
                Window {
                    begin: d("2025-01-11"),
                    end: d("2025-01-11"),
                },
                true,
            )],
            d("2025-01-10"),
            now,
        );
        assert_eq!(st.loaded.len(), 2);
        let r = catalog::find("article_total").unwrap();
        let l = st.loaded(r, d("2025-01-11"));
        assert!(l.finals.contains(&d("2025-01-03")));
        assert!(
            !l.finals.contains(&d("2025-01-04")),
            "within 7 days of the ready day when loaded"
        );
        assert!(!l.finals.contains(&d("2025-01-11")), "provisional");
        let u = catalog::find("user_summary").unwrap();
        assert_eq!(st.loaded(u, d("2025-01-11")).finals.len(), 10);
    }

    #[test]
    fn reopen_makes_only_those_dates_revisable() {
        let mut st = ReportState::new("user_summary", "a");
        let w = |a: &str, b: &str| Window {
            begin: d(a),
            end: d(b),
        };
        st.record(
            &[LoadedWindow::new(w("2025-01-20", "2025-03-10"), false)],
            d("2025-03-10"),
            Utc::now(),
        );
        st.reopen(d("2025-02-01"), d("2025-02-28"));
        let r = catalog::find("user_summary").unwrap();
        let l = st.loaded(r, d("2025-03-11"));
        assert_eq!(l.finals.len(), 12 + 10);
        assert_eq!(l.revisable.len(), 28);
        assert!(l.revisable.contains(&d("2025-02-01")) && l.revisable.contains(&d("2025-02-28")));
        st.reopen(d("2024-01-01"), d("2024-12-31"));
        assert_eq!(
            st.loaded(r, d("2025-03-11")).revisable.len(),
            28,
            "dates never loaded: nothing changes"
        );
    }
}
