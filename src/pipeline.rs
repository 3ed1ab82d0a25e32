//! The validated pipeline: what `config` compiles a YAML file into. Every value here is
//! already checked, so later stages never re-validate.

use std::path::PathBuf;

use chrono::{Duration, NaiveDate};

use crate::catalog::Report;
use crate::dates::Clock;
use crate::secret::Secret;
use crate::sim::SimConfig;

#[derive(Debug, Clone)]
pub struct Pipeline {
    pub name: String,
    /// The file it came from (for messages).
    pub source: PathBuf,
    pub api: Api,
    pub accounts: Vec<Account>,
    pub reports: Vec<&'static Report>,
    pub dates: DateSpec,
    pub output: Output,
    pub limits: Limits,
}

#[derive(Debug, Clone)]
pub enum Api {
    /// WeChat (or a compatible server) at this base URL, without a trailing slash.
    BaseUrl(String),
    /// The built-in simulator, started on loopback for the run.
    Simulator(SimConfig),
}

pub const DEFAULT_BASE_URL: &str = "https://api.weixin.qq.com";

#[derive(Debug, Clone)]
pub struct Account {
    /// `[a-z0-9_-]{1,64}`: the `account=` partition value.
    pub name: String,
    pub app_id: String,
    pub app_secret: Secret,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateRef {
    Abs(NaiveDate),
    /// `{ days_back: N }`: the N-th latest ready day (1 = the latest ready day).
    DaysBack(u32),
}

impl DateRef {
    pub fn resolve(&self, clock: &Clock) -> NaiveDate {
        match *self {
            DateRef::Abs(d) => d,
            DateRef::DaysBack(n) => clock.latest_ready() - Duration::days(i64::from(n.max(1)) - 1),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateSpec {
    /// The N latest ready days.
    DaysBack(u32),
    /// Both ends included; `end` defaults to the latest ready day.
    Range {
        start: DateRef,
        end: Option<DateRef>,
    },
}

impl DateSpec {
    /// The inclusive China-date range, before clamping to report first days and readiness.
    pub fn resolve(&self, clock: &Clock) -> (NaiveDate, NaiveDate) {
        match *self {
            DateSpec::DaysBack(n) => (DateRef::DaysBack(n).resolve(clock), clock.latest_ready()),
            DateSpec::Range { start, end } => (
                start.resolve(clock),
                end.map(|e| e.resolve(clock))
                    .unwrap_or_else(|| clock.latest_ready()),
            ),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partition {
    Day,
    Month,
    Year,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Zstd,
    Snappy,
    None,
}

#[derive(Debug, Clone)]
pub struct Output {
    /// A local path (relative paths are relative to the working directory) or `s3://bucket/prefix`.
    pub uri: String,
    pub partition: Partition,
    pub compression: Compression,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub requests_per_second: u32,
    pub max_in_flight: u32,
    pub global_requests_per_second: u32,
    pub daily_calls_per_report: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            requests_per_second: 5,
            max_in_flight: 8,
            global_requests_per_second: 50,
            daily_calls_per_report: 1000,
        }
    }
}
