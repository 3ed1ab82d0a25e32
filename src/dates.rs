//! Dates as WeChat writes them (`YYYY-MM-DD`): formatting, parsing, month ends. The China
//! clock and the readiness rule are in `clock`.

use chrono::{Datelike, Duration, NaiveDate};

pub fn fmt(d: NaiveDate) -> String {
    // Without chrono's format interpreter: every request and partition name passes here.
    match d.year() {
        y @ 0..=9999 => format!("{y:04}-{:02}-{:02}", d.month(), d.day()),
        _ => d.format("%Y-%m-%d").to_string(),
    }
}

pub fn parse(s: &str) -> Option<NaiveDate> {
    parse_bytes(s.as_bytes())
}

/// `parse` on bytes not yet known to be UTF-8 (anything that is not cannot be a date).
pub fn parse_bytes(b: &[u8]) -> Option<NaiveDate> {
    if b.len() != 10 {
        return None;
    }
    // The form every answer uses, without chrono's format interpreter (a decoder hot
    // spot); anything else gets chrono's own rules.
    let digits = |r: std::ops::Range<usize>| {
        b[r].iter().try_fold(0u32, |n, c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    if b[4] == b'-' && b[7] == b'-' {
        if let (Some(y), Some(m), Some(d)) = (digits(0..4), digits(5..7), digits(8..10)) {
            return NaiveDate::from_ymd_opt(y as i32, m, d);
        }
    }
    NaiveDate::parse_from_str(std::str::from_utf8(b).ok()?, "%Y-%m-%d").ok()
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

    #[test]
    fn parse_agrees_with_chrono_on_every_shape() {
        let chrono = |s: &str| {
            (s.len() == 10)
                .then(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
                .flatten()
        };
        let mut cases: Vec<String> = Vec::new();
        let mut d = NaiveDate::from_ymd_opt(1999, 12, 1).unwrap();
        while d.year() < 2002 {
            cases.push(fmt(d));
            assert_eq!(fmt(d), d.format("%Y-%m-%d").to_string());
            d = d.succ_opt().unwrap();
        }
        for y in ["0000", "2024", "2025", "9999"] {
            for m in 0..=13 {
                for day in [0, 1, 28, 29, 30, 31, 32] {
                    cases.push(format!("{y}-{m:02}-{day:02}"));
                }
            }
        }
        // Odd shapes of the right length (signs, spaces, one-digit fields).
        let alphabet = b"0123456789-+ ";
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let mut b = *b"2025-06-15";
            for _ in 0..3 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b[(x % 10) as usize] = alphabet[((x >> 8) % 13) as usize];
            }
            cases.push(String::from_utf8(b.to_vec()).unwrap());
        }
        for s in &cases {
            assert_eq!(parse(s), chrono(s), "{s:?}");
        }
    }
}
