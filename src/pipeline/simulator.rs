//! The `api: { simulator: {...} }` block: the built-in simulator's settings as the pipeline
//! (or `wxcube simulate --config`) gives them. The simulator (`sim`) reads them; its
//! behaviour lives there.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The `api: { simulator: {...} }` block and `wxcube simulate` flags.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    /// Same seed, same rows.
    #[serde(default)]
    pub seed: u64,
    /// Average articles an account publishes per day (at most 64 are honoured).
    #[serde(default = "default_articles_per_day")]
    pub articles_per_day: u32,
    /// Added to every token and data response.
    #[serde(default)]
    pub latency_ms: u64,
    /// The six legacy article reports answer 47009, as WeChat now does.
    #[serde(default)]
    pub legacy_retired: bool,
    /// app_id -> secret. None: any app_id like `wx[0-9a-zA-Z_]{2,30}` with any non-empty
    /// secret.
    #[serde(default)]
    pub accounts: Option<BTreeMap<String, String>>,
    /// app_ids whose data calls get 48001.
    #[serde(default)]
    pub unauthorized: Vec<String>,
    /// app_id -> the reports (ids) or permission sets (`user`, `article`, `message`,
    /// `interface`, `publisher`) whose data calls get 48001: WeChat grants API permission
    /// sets one by one (reference §1.1).
    #[serde(default)]
    pub unauthorized_reports: BTreeMap<String, Vec<String>>,
    /// WeChat publishing late (reference §4.2): rows of periods that ended in the latest
    /// this many days before today are not there yet (the answer is as if nothing
    /// happened: no rows, and `is_delay` still as usual).
    #[serde(default)]
    pub unpublished_days: u32,
    #[serde(default)]
    pub faults: Faults,
    /// Data calls per account per report per China day; beyond it, 45009.
    #[serde(default)]
    pub daily_quota: Option<u32>,
    /// Third-party platform: component_appid -> component_appsecret. None: any non-empty
    /// pair is accepted (with any non-empty verify ticket).
    #[serde(default)]
    pub components: Option<BTreeMap<String, String>>,
    /// Authorizer refresh tokens WeChat no longer accepts (61023).
    #[serde(default)]
    pub revoked_refresh_tokens: Vec<String>,
    /// Stricter spans than the catalogue's, by report id: the newer docs give some
    /// reports shorter spans (reference §10), and a client must cope with 61501.
    #[serde(default)]
    pub spans: BTreeMap<String, u32>,
    /// How `/publisher/stat` pages: as documented, or like a server that ignores `page`
    /// (the first page every time) or pages not at all (every row every time).
    #[serde(default)]
    pub publisher_paging: PublisherPaging,
    /// `total_num` in every publisher answer instead of the row count (it may lie).
    #[serde(default)]
    pub publisher_total_num: Option<u64>,
    /// The first N component_access_tokens are superseded as soon as issued (40001 at
    /// api_authorizer_token), as when the platform's own server fetched a newer one.
    #[serde(default)]
    pub stale_component_tokens: u32,
    /// app_ids whose stable_token and token calls answer 45009.
    #[serde(default)]
    pub token_quota_exhausted: Vec<String>,
    /// The first N token-endpoint requests answer 45011.
    #[serde(default)]
    pub token_minute_limit: u32,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PublisherPaging {
    #[default]
    Documented,
    IgnoresPage,
    Unpaged,
}

fn default_articles_per_day() -> u32 {
    3
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 0,
            articles_per_day: default_articles_per_day(),
            latency_ms: 0,
            legacy_retired: false,
            accounts: None,
            unauthorized: Vec::new(),
            unauthorized_reports: BTreeMap::new(),
            unpublished_days: 0,
            faults: Faults::default(),
            daily_quota: None,
            spans: BTreeMap::new(),
            components: None,
            revoked_refresh_tokens: Vec::new(),
            publisher_paging: PublisherPaging::default(),
            publisher_total_num: None,
            stale_component_tokens: 0,
            token_quota_exhausted: Vec::new(),
            token_minute_limit: 0,
        }
    }
}

// By hand: the account secrets must not print.
impl fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let accounts = self.accounts.as_ref().map(|a| {
            a.keys()
                .map(|k| (k.as_str(), "***"))
                .collect::<BTreeMap<_, _>>()
        });
        f.debug_struct("SimConfig")
            .field("seed", &self.seed)
            .field("articles_per_day", &self.articles_per_day)
            .field("latency_ms", &self.latency_ms)
            .field("legacy_retired", &self.legacy_retired)
            .field("accounts", &accounts)
            .field("unauthorized", &self.unauthorized)
            .field("unauthorized_reports", &self.unauthorized_reports)
            .field("unpublished_days", &self.unpublished_days)
            .field("faults", &self.faults)
            .field("daily_quota", &self.daily_quota)
            .field("spans", &self.spans)
            .field(
                "components",
                &self
                    .components
                    .as_ref()
                    .map(|c| c.keys().collect::<Vec<_>>()),
            )
            .field("revoked_refresh_tokens", &self.revoked_refresh_tokens.len())
            .field("publisher_paging", &self.publisher_paging)
            .field("publisher_total_num", &self.publisher_total_num)
            .field("stale_component_tokens", &self.stale_component_tokens)
            .field("token_quota_exhausted", &self.token_quota_exhausted)
            .field("token_minute_limit", &self.token_minute_limit)
            .finish()
    }
}

/// Injected failures (DESIGN §6). They never change the rows a successful response carries.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Probability that a request gets a fault (all kinds together).
    #[serde(default)]
    pub rate: f64,
    /// Which faults may happen; default all.
    #[serde(default = "FaultKind::all")]
    pub kinds: Vec<FaultKind>,
    /// How long a `slow` response waits before answering.
    #[serde(default = "default_slow_ms")]
    pub slow_ms: u64,
}

fn default_slow_ms() -> u64 {
    3000
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            rate: 0.0,
            kinds: FaultKind::all(),
            slow_ms: default_slow_ms(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// errcode -1 "system error".
    Busy,
    /// HTTP 503.
    #[serde(rename = "http_5xx")]
    Http5xx,
    /// Waits `slow_ms`, then answers normally.
    Slow,
    /// Sends the headers and part of the body, then drops the connection.
    Reset,
    /// HTTP 200 with the body cut in half (Content-Length matches the cut body).
    Truncated,
    /// errcode 42001 for a valid token.
    TokenExpired,
    /// errcode 45011.
    MinuteLimit,
}

impl FaultKind {
    pub fn all() -> Vec<FaultKind> {
        use FaultKind::*;
        vec![
            Busy,
            Http5xx,
            Slow,
            Reset,
            Truncated,
            TokenExpired,
            MinuteLimit,
        ]
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Busy => "busy",
            FaultKind::Http5xx => "http_5xx",
            FaultKind::Slow => "slow",
            FaultKind::Reset => "reset",
            FaultKind::Truncated => "truncated",
            FaultKind::TokenExpired => "token_expired",
            FaultKind::MinuteLimit => "minute_limit",
        }
    }
}
