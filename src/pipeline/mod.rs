//! The validated pipeline: what `config` compiles a YAML file into. Every value here is
//! already checked, so later stages never re-validate.

use std::path::PathBuf;

use chrono::{Duration, NaiveDate};

use crate::catalog::Report;
use crate::clock::Clock;
use crate::secret::Secret;

pub mod simulator;

pub use simulator::SimConfig;

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
// One per pipeline: the simulator's settings need no box.
#[allow(clippy::large_enum_variant)]
pub enum Api {
    /// WeChat (or a compatible server) at this base URL, without a trailing slash.
    BaseUrl(String),
    /// One of WeChat's hosts, with failover to the backup host on connection errors.
    Region(Region),
    /// The built-in simulator, started on loopback for the run.
    Simulator(Box<SimConfig>),
}

pub const DEFAULT_BASE_URL: &str = "https://api.weixin.qq.com";

/// WeChat's API hosts (the choice Domo's connector calls China / International).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    /// api.weixin.qq.com, the general host.
    Default,
    /// api2.weixin.qq.com, WeChat's backup host.
    Backup,
    /// sh.api.weixin.qq.com
    Shanghai,
    /// sz.api.weixin.qq.com
    Shenzhen,
    /// hk.api.weixin.qq.com
    HongKong,
}

impl Region {
    pub const NAMES: &'static [&'static str] =
        &["default", "backup", "shanghai", "shenzhen", "hongkong"];

    pub fn parse(s: &str) -> Option<Region> {
        Some(match s {
            "default" => Region::Default,
            "backup" => Region::Backup,
            "shanghai" => Region::Shanghai,
            "shenzhen" => Region::Shenzhen,
            "hongkong" => Region::HongKong,
            _ => return None,
        })
    }

    pub fn base_url(self) -> &'static str {
        match self {
            Region::Default => DEFAULT_BASE_URL,
            Region::Backup => "https://api2.weixin.qq.com",
            Region::Shanghai => "https://sh.api.weixin.qq.com",
            Region::Shenzhen => "https://sz.api.weixin.qq.com",
            Region::HongKong => "https://hk.api.weixin.qq.com",
        }
    }

    /// Where to go when this host cannot be reached.
    pub fn failover(self) -> Option<&'static str> {
        match self {
            Region::Backup => Some(DEFAULT_BASE_URL),
            _ => Some(Region::Backup.base_url()),
        }
    }
}

/// How an account gets its access token.
#[derive(Debug, Clone)]
pub enum Auth {
    /// `/cgi-bin/stable_token` with the app secret (the default): does not invalidate the
    /// account's other integrations.
    StableToken,
    /// `/cgi-bin/token`: every fetch invalidates the account's other tokens after 5 minutes.
    Classic,
    /// A token handed in (e.g. `${WECHAT_ACCESS_TOKEN}`); it cannot be refreshed.
    Static { access_token: Secret },
    /// A command that prints a token (a central token server's client), run with
    /// WXCUBE_ACCOUNT and WXCUBE_APP_ID set; re-run when WeChat rejects the token. A run
    /// longer than `timeout` is killed with its whole process group.
    Command {
        command: Secret,
        timeout: std::time::Duration,
    },
    /// A third-party platform acting for an authorised account.
    Component {
        component_appid: String,
        component_appsecret: Secret,
        component_verify_ticket: Secret,
        authorizer_refresh_token: Secret,
    },
}

impl Auth {
    pub fn kind(&self) -> &'static str {
        match self {
            Auth::StableToken => "stable_token",
            Auth::Classic => "classic",
            Auth::Static { .. } => "static",
            Auth::Command { .. } => "command",
            Auth::Component { .. } => "component",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Account {
    /// `[a-z0-9_-]{1,64}`: the `account=` partition value.
    pub name: String,
    /// The official account's AppID (the authorizer AppID for `component`).
    pub app_id: String,
    /// Empty unless the auth type uses it (stable_token, classic).
    pub app_secret: Secret,
    pub auth: Auth,
    /// A host for this account only (overrides `api`).
    pub region: Option<Region>,
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
