//! The planner: accounts × reports × windows, the fewest calls that cover what is needed.
//!
//! For each report the planner lists the dates that can carry a row (every day; or the
//! Monday / 1st labelling a week / month that has ended), clamped to the report's first data
//! day and to the latest ready day, drops what state says is loaded and final, and covers
//! the rest with the fewest windows of at most the report's span. Greedy covering from the
//! earliest uncovered date is optimal for points on a line, and each window is trimmed to end
//! on its last needed date, so no call covers a date where no needed row can fall.

use std::collections::BTreeSet;

use chrono::{Datelike, Duration, NaiveDate};
use serde::Serialize;

use crate::catalog::{Cadence, Report};
use crate::clock::Clock;
use crate::dates;
use crate::pipeline::Pipeline;
use crate::window::Window;

/// How many of the latest ready days WeChat may still publish late (reference §4.2: data
/// still missing at 09:00 some mornings). A date whose answer held no rows is not final
/// while its period ended in them: a run the same morning, or the next day's, asks again.
pub const LATE_DAYS: i64 = 2;

/// The last day of the period a row dated `d` describes (a week's Monday, a month's 1st).
pub fn period_end(report: &Report, d: NaiveDate) -> NaiveDate {
    match report.cadence {
        Cadence::Daily => d,
        Cadence::Weekly => d + Duration::days(6),
        Cadence::Monthly => dates::month_end(d),
    }
}

/// Whether an empty answer for `d` may only mean WeChat has not published it yet.
pub fn may_be_late(report: &Report, d: NaiveDate, ready: NaiveDate) -> bool {
    period_end(report, d) > ready - Duration::days(LATE_DAYS)
}

/// Dates in `[start, end]` that can carry a row of `report`, given the latest ready day.
pub fn row_dates(
    report: &Report,
    start: NaiveDate,
    end: NaiveDate,
    ready: NaiveDate,
) -> Vec<NaiveDate> {
    let lo = start.max(report.first_day());
    let hi = end.min(ready);
    let mut out = Vec::new();
    if lo > hi {
        return out;
    }
    match report.cadence {
        Cadence::Daily => {
            let mut d = lo;
            while d <= hi {
                out.push(d);
                d += Duration::days(1);
            }
        }
        Cadence::Weekly => {
            let back = i64::from(lo.weekday().num_days_from_monday());
            let mut d = if back == 0 {
                lo
            } else {
                lo + Duration::days(7 - back)
            };
            while d <= hi && d + Duration::days(6) <= ready {
                out.push(d);
                d += Duration::days(7);
            }
        }
        Cadence::Monthly => {
            let mut d = if lo.day() == 1 {
                lo
            } else {
                dates::month_end(lo) + Duration::days(1)
            };
            while d <= hi && dates::month_end(d) <= ready {
                out.push(d);
                d = dates::month_end(d) + Duration::days(1);
            }
        }
    }
    out
}

/// The fewest windows of at most `span` days covering every date in `needed` (sorted,
/// distinct), each trimmed to its last needed date.
pub fn cover(needed: &[NaiveDate], span: u32) -> Vec<Window> {
    let mut out: Vec<Window> = Vec::new();
    let reach = Duration::days(i64::from(span.max(1)) - 1);
    for &d in needed {
        match out.last_mut() {
            Some(w) if d <= w.begin + reach => w.end = d,
            _ => out.push(Window { begin: d, end: d }),
        }
    }
    out
}

/// What is already loaded for one account and report, as far as the planner cares.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// Row dates (ref_date values) loaded and final: not fetched again.
    pub finals: BTreeSet<NaiveDate>,
    /// Row dates loaded but not final (provisional, or WeChat may still revise them):
    /// fetched again even when they lie outside the pipeline's range.
    pub revisable: BTreeSet<NaiveDate>,
    /// Row dates loaded whose partition is gone from the store: fetched again wherever
    /// they lie.
    pub lost: BTreeSet<NaiveDate>,
    /// Calls already made today (China) for this account and report, counted against the
    /// daily budget.
    pub calls_today: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Task {
    pub account: usize,
    pub account_name: String,
    pub report: &'static str,
    pub windows: Vec<Window>,
    /// Windows beyond the daily budget, left for a later run.
    pub deferred: Vec<Window>,
    /// Row dates in range that state already holds as final.
    pub loaded_dates: usize,
    /// Row dates re-fetched because WeChat may still revise them.
    pub revise_dates: usize,
    /// Row dates re-fetched because the partition holding them is gone from the store.
    pub reload_dates: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub today: NaiveDate,
    pub latest_ready: NaiveDate,
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub daily_calls_per_report: u32,
    pub tasks: Vec<Task>,
}

impl Plan {
    pub fn calls(&self) -> usize {
        self.tasks.iter().map(|t| t.windows.len()).sum()
    }
    pub fn deferred(&self) -> usize {
        self.tasks.iter().map(|t| t.deferred.len()).sum()
    }
}

/// Plans a run. `loaded(account, report)` tells what state already holds.
pub fn build(
    p: &Pipeline,
    clock: &Clock,
    accounts: &[usize],
    reports: &[&'static Report],
    full_refresh: bool,
    loaded: &dyn Fn(&str, &Report) -> Loaded,
) -> Plan {
    let ready = clock.latest_ready();
    let (start, end) = p.dates.resolve(clock);
    let mut tasks = Vec::new();
    for &ai in accounts {
        let acct = &p.accounts[ai];
        for &r in reports {
            let all = row_dates(r, start, end, ready);
            let have = if full_refresh {
                Loaded::default()
            } else {
                loaded(&acct.name, r)
            };
            let mut needed = BTreeSet::new();
            let (mut loaded_dates, mut revise_dates, mut reload_dates) = (0, 0, 0);
            for &d in &have.lost {
                if !row_dates(r, d, d, ready).is_empty() {
                    reload_dates += 1;
                    needed.insert(d);
                }
            }
            for d in all {
                if needed.contains(&d) {
                    continue;
                }
                if have.finals.contains(&d) {
                    loaded_dates += 1;
                } else {
                    if have.revisable.contains(&d) {
                        revise_dates += 1;
                    }
                    needed.insert(d);
                }
            }
            // Dates an earlier run loaded that are still provisional or being revised are
            // fetched again even if this run's range has moved past them.
            for &d in &have.revisable {
                if !needed.contains(&d) && !row_dates(r, d, d, ready).is_empty() {
                    revise_dates += 1;
                    needed.insert(d);
                }
            }
            let needed: Vec<NaiveDate> = needed.into_iter().collect();
            let mut windows = cover(&needed, r.span);
            let budget = p
                .limits
                .daily_calls_per_report
                .saturating_sub(have.calls_today) as usize;
            let deferred = if windows.len() > budget {
                windows.split_off(budget)
            } else {
                Vec::new()
            };
            tasks.push(Task {
                account: ai,
                account_name: acct.name.clone(),
                report: r.id,
                windows,
                deferred,
                loaded_dates,
                revise_dates,
                reload_dates,
            });
        }
    }
    Plan {
        today: clock.today(),
        latest_ready: ready,
        start,
        end,
        daily_calls_per_report: p.limits.daily_calls_per_report,
        tasks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog;

    fn d(s: &str) -> NaiveDate {
        dates::parse(s).unwrap()
    }

    /// Independent minimum: the number of windows a brute-force DP needs.
    fn min_windows(needed: &[NaiveDate], span: u32) -> usize {
        let n = needed.len();
        let mut best = vec![usize::MAX; n + 1];
        best[0] = 0;
        for i in 0..n {
            if best[i] == usize::MAX {
                continue;
            }
            let mut j = i;
            while j < n && (needed[j] - needed[i]).num_days() < i64::from(span) {
                j += 1;
                best[j] = best[j].min(best[i] + 1);
            }
        }
        best[n]
    }

    #[test]
    fn cover_is_minimal_and_complete_on_random_sets() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..2000 {
            let span = (next() % 31 + 1) as u32;
            let base = d("2024-01-01");
            let len = next() % 200;
            let density = next() % 100;
            let needed: Vec<NaiveDate> = (0..len)
                .filter(|_| next() % 100 < density)
                .map(|i| base + Duration::days(i as i64))
                .collect();
            let ws = cover(&needed, span);
            assert_eq!(
                ws.len(),
                min_windows(&needed, span),
                "span {span} {needed:?}"
            );
            for w in &ws {
                assert!(w.days() <= i64::from(span));
                assert!(
                    needed.contains(&w.begin) && needed.contains(&w.end),
                    "trimmed to needed dates"
                );
            }
            for n in &needed {
                assert_eq!(
                    ws.iter().filter(|w| w.contains(*n)).count(),
                    1,
                    "covered exactly once"
                );
            }
        }
    }

    #[test]
    fn week_and_month_labels_only_for_ended_periods() {
        let week = catalog::find("upstream_msg_week").unwrap();
        let month = catalog::find("upstream_msg_month").unwrap();
        // 2026-03-09 is a Monday; ready day Sunday 2026-03-22 ends the week of 03-16.
        let w = row_dates(week, d("2026-03-04"), d("2026-03-22"), d("2026-03-22"));
        assert_eq!(w, vec![d("2026-03-09"), d("2026-03-16")]);
        let w = row_dates(week, d("2026-03-04"), d("2026-03-21"), d("2026-03-21"));
        assert_eq!(w, vec![d("2026-03-09")]);
        let m = row_dates(month, d("2026-01-15"), d("2026-03-30"), d("2026-03-30"));
        assert_eq!(m, vec![d("2026-02-01")]);
        let m = row_dates(month, d("2026-01-01"), d("2026-03-31"), d("2026-03-31"));
        assert_eq!(m, vec![d("2026-01-01"), d("2026-02-01"), d("2026-03-01")]);
        // span 30 covers Jan 1 and Jan 29-ish but not Feb 1 + Mar 1 together with Jan 1.
        assert_eq!(cover(&m, 30).len(), 2);
    }

    #[test]
    fn first_day_and_readiness_clamp() {
        let r = catalog::find("article_read").unwrap();
        let ds = row_dates(r, d("2025-10-30"), d("2025-11-05"), d("2025-11-03"));
        assert_eq!(ds.first(), Some(&d("2025-11-01")));
        assert_eq!(ds.last(), Some(&d("2025-11-03")));
        assert!(row_dates(r, d("2025-01-01"), d("2025-10-31"), d("2026-01-01")).is_empty());
    }

    #[test]
    fn row_dates_match_brute_force_on_random_ranges() {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..3000 {
            let r = &catalog::REPORTS[(next() % catalog::REPORTS.len() as u64) as usize];
            let start = d("2014-11-01") + Duration::days((next() % 4400) as i64);
            let end = start + Duration::days((next() % 120) as i64) - Duration::days(5);
            let ready = start + Duration::days((next() % 150) as i64) - Duration::days(10);
            let got = row_dates(r, start, end, ready);
            let mut want = Vec::new();
            let mut day = start;
            while day <= end {
                let ok = day >= r.first_day()
                    && day <= ready
                    && match r.cadence {
                        Cadence::Daily => true,
                        Cadence::Weekly => {
                            dates::is_monday(day) && day + Duration::days(6) <= ready
                        }
                        Cadence::Monthly => day.day() == 1 && dates::month_end(day) <= ready,
                    };
                if ok {
                    want.push(day);
                }
                day += Duration::days(1);
            }
            assert_eq!(got, want, "{} {start} {end} {ready}", r.id);
            let ws = cover(&got, r.span);
            assert_eq!(ws.len(), min_windows(&got, r.span));
            assert!(ws
                .iter()
                .all(|w| w.end <= ready && w.days() <= i64::from(r.span)));
        }
    }
}
