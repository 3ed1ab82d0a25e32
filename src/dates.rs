//! China dates and the readiness rule.
//!
//! WeChat computes everything in Asia/Shanghai (UTC+8, no DST), so a fixed offset is exact.
//! A day's data is ready from 08:00 China time the next morning. `--today` pins the China
//! date and takes the time to be past 08:00, so a pinned run's latest ready day is
//! `today - 1`: runs and tests are then reproducible whatever the wall clock says.

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, NaiveTime, Timelike, Utc};

pub fn china() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset")
}

/// The injected notion of "now" in China time.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    now: DateTime<FixedOffset>,
    pinned: bool,
}

impl Clock {
    pub fn system() -> Self {
        Clock {
            now: Utc::now().with_timezone(&china()),
            pinned: false,
        }
    }

    /// "Today" pinned to a China date, at 12:00 (past the 08:00 readiness hour).
    pub fn pinned(today: NaiveDate) -> Self {
        let t = today.and_time(NaiveTime::from_hms_opt(12, 0, 0).expect("noon"));
        let now = t
            .and_local_timezone(china())
            .single()
            .expect("fixed offset is unambiguous");
        Clock { now, pinned: true }
    }

    pub fn is_pinned(&self) -> bool {
        self.pinned
    }

    pub fn now(&self) -> DateTime<FixedOffset> {
        self.now
    }

    pub fn today(&self) -> NaiveDate {
        self.now.date_naive()
    }

    /// The latest day whose data WeChat has published: yesterday, or the day before
    /// yesterday while it is not yet 08:00 in China.
    pub fn latest_ready(&self) -> NaiveDate {
        let back = if self.now.hour() < 8 { 2 } else { 1 };
        self.today() - Duration::days(back)
    }
}

pub fn fmt(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

pub fn parse(s: &str) -> Option<NaiveDate> {
    if s.len() != 10 {
        return None;
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

pub fn is_monday(d: NaiveDate) -> bool {
    d.weekday() == chrono::Weekday::Mon
}

/// Last day of the month `d` is in.
pub fn month_end(d: NaiveDate) -> NaiveDate {
    let (y, m) = if d.month() == 12 {
        (d.year() + 1, 1)
    } else {
        (d.year(), d.month() + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1).expect("first of a month") - Duration::days(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_switches_at_eight_china_time() {
        let at = |h: u32| {
            let t = NaiveDate::from_ymd_opt(2026, 3, 10)
                .unwrap()
                .and_hms_opt(h, 0, 0)
                .unwrap();
            Clock {
                now: t.and_local_timezone(china()).unwrap(),
                pinned: false,
            }
            .latest_ready()
        };
        assert_eq!(at(7), NaiveDate::from_ymd_opt(2026, 3, 8).unwrap());
        assert_eq!(at(8), NaiveDate::from_ymd_opt(2026, 3, 9).unwrap());
        let p = Clock::pinned(NaiveDate::from_ymd_opt(2026, 3, 10).unwrap());
        assert_eq!(
            p.latest_ready(),
            NaiveDate::from_ymd_opt(2026, 3, 9).unwrap()
        );
    }

    #[test]
    fn parse_is_strict() {
        assert!(parse("2025-01-01").is_some());
        assert!(parse("20250101").is_none());
        assert!(parse("2025-1-01").is_none());
        assert!(parse("2025-02-30").is_none());
        assert_eq!(
            month_end(NaiveDate::from_ymd_opt(2024, 2, 3).unwrap()).day(),
            29
        );
    }
}
