//! Time, from one source: the China date and the 08:00 readiness rule (`Clock`), and the
//! wall time (`utc`), instants (`Instant`) and jitter seeds every other module reads.
//!
//! WeChat computes everything in Asia/Shanghai (UTC+8, no DST), so a fixed offset is exact.
//! A day's data is ready from 08:00 China time the next morning. `--today` pins the China
//! date and takes the time to be past 08:00, so a pinned run's latest ready day is
//! `today - 1`: runs and tests are then reproducible whatever the wall clock says.
//!
//! Wall time is read once and then advanced by tokio's clock, so a test under
//! `tokio::time::pause` moves token expiry, the 45011 minute, leases and the simulator
//! together. Outside a paused runtime it is the system's time at the first read, advanced
//! by the monotonic clock: a clock step or a suspend during a run is not followed (a run
//! lasts minutes to hours; NTP's slewing moves the two apart by under 2 s an hour).

use std::sync::OnceLock;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, NaiveTime, Timelike, Utc};

/// The instant type every timer and expiry uses (tokio's, so tests can pause it).
pub use tokio::time::Instant;

/// Wall time now: the system's time when first read, advanced by tokio's clock since.
pub fn utc() -> DateTime<Utc> {
    static ANCHOR: OnceLock<(DateTime<Utc>, Instant)> = OnceLock::new();
    let (wall, at) = *ANCHOR.get_or_init(|| (Utc::now(), Instant::now()));
    let since = Instant::now().saturating_duration_since(at);
    wall + Duration::from_std(since).unwrap_or_else(|_| Duration::zero())
}

/// Time to the next boundary of `minute` in wall time, plus 50 ms (scaled down when
/// `minute` is shorter, for tests): WeChat's 45011 limit resets each minute.
pub fn until_next_minute(minute: StdDuration) -> StdDuration {
    let ms = minute.as_millis().max(1) as u64;
    let now = u64::try_from(utc().timestamp_millis()).unwrap_or(0);
    StdDuration::from_millis(ms - now % ms + 50)
}

/// A seed for jitter that differs between runs and processes.
pub fn seed() -> u64 {
    let nanos = utc().timestamp_nanos_opt().unwrap_or(0) as u64;
    nanos ^ u64::from(std::process::id()).rotate_left(32)
}

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
            now: utc().with_timezone(&china()),
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

    #[tokio::test(start_paused = true)]
    async fn wall_time_and_the_minute_follow_tokios_clock() {
        let t0 = utc();
        tokio::time::advance(StdDuration::from_secs(90)).await;
        assert_eq!((utc() - t0).num_seconds(), 90);
        let wait = until_next_minute(StdDuration::from_secs(60));
        assert!(wait > StdDuration::from_millis(50) && wait <= StdDuration::from_millis(60_050));
        tokio::time::advance(wait).await;
        assert_eq!(
            utc().timestamp_millis() % 60_000,
            50,
            "50 ms past the minute"
        );
    }
}
