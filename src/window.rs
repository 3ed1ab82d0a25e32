//! `Window`: an inclusive range of China dates, the unit one data call covers. A core type
//! shared by plan, extract, load, state and progress.

use chrono::NaiveDate;
use serde::Serialize;

use crate::dates;

/// An inclusive range of dates, `begin..=end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Window {
    pub begin: NaiveDate,
    pub end: NaiveDate,
}

impl Window {
    pub fn contains(&self, d: NaiveDate) -> bool {
        self.begin <= d && d <= self.end
    }
    pub fn days(&self) -> i64 {
        (self.end - self.begin).num_days() + 1
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.begin == self.end {
            write!(f, "{}", dates::fmt(self.begin))
        } else {
            write!(f, "{}..{}", dates::fmt(self.begin), dates::fmt(self.end))
        }
    }
}
