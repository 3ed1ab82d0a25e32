//! The built-in WeChat API simulator (DESIGN §6).
//!
//! A faithful, deterministic stand-in for `api.weixin.qq.com` on loopback, written from the
//! API reference rather than from wxcube's client, so the client is tested against
//! something that behaves like WeChat:
//! - `POST /cgi-bin/stable_token`, `GET /cgi-bin/token` with WeChat's token rules
//!   (see `tokens`), and `POST /datacube/{api}` for every report of the catalogue, validated
//!   in WeChat's order (§8.1) with its errcodes in HTTP 200 bodies.
//! - Rows are pure functions of (seed, app_id, report, date) (see `data`): the same query
//!   gives the same rows whatever the window or call order. Only the cumulative article
//!   reports (stat days stop at yesterday) and `is_delay` also depend on "today".
//! - Faults are a pure function of (seed, request counter): same seed, same fault sequence.
//!   Gateway-level ones (`http_5xx`, `reset`, `slow`) strike before any validation; errcode
//!   ones (`busy`, `token_expired`, `minute_limit`) after the token check; `truncated` cuts
//!   whatever body the request earned. A faulted call does not use the daily quota, except
//!   `slow` and `truncated`, which WeChat would have served.
//! - An unknown path answers HTTP 404 with `{"errcode":40066,"errmsg":"invalid url ..."}`
//!   (WeChat's behaviour there is undocumented); a non-POST data call gets 43002.
//! - Misbehaviour on request: publisher paging that ignores `page` or pages not at all, a
//!   lying `total_num`, superseded component tokens, 45009 / 45011 at token endpoints.
//! - `GET /_sim/stats` and `GET /_sim/tokens` expose the call log and issued tokens.
//! - Token lifetimes run on tokio's clock: a test under `tokio::time::pause()` can
//!   `advance` past expiry. "Today" is the pinned `--today`, else the China date.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::Serialize;

mod data;
mod publisher;
mod rng;
mod server;
mod tokens;

#[cfg(test)]
mod tests;

pub use crate::pipeline::simulator::{FaultKind, Faults, PublisherPaging, SimConfig};
pub use data::respond as respond_datacube;
pub use server::{serve, start, SimHandle};

/// The success body of a data endpoint for this request, without validation or faults (for
/// publisher reports: the whole unpaged answer).
pub fn respond(
    cfg: &SimConfig,
    today: chrono::NaiveDate,
    report: &'static crate::catalog::Report,
    app_id: &str,
    begin: chrono::NaiveDate,
    end: chrono::NaiveDate,
) -> serde_json::Value {
    if report.protocol() != crate::catalog::Protocol::Datacube {
        publisher::respond(cfg, today, report, app_id, begin, end)
    } else {
        data::respond(cfg, today, report, app_id, begin, end)
    }
}

impl SimConfig {
    /// Whether this account's data calls for `report` get 48001.
    pub fn denies(&self, app_id: &str, report: &crate::catalog::Report) -> bool {
        self.unauthorized.iter().any(|a| a == app_id)
            || self.unauthorized_reports.get(app_id).is_some_and(|l| {
                let family = report.permission().name();
                l.iter().any(|x| x == report.id || x == family)
            })
    }

    /// Whether the rows of the period ending on `period_end` are published by `today`.
    pub fn published(&self, period_end: NaiveDate, today: NaiveDate) -> bool {
        period_end < today - chrono::Duration::days(i64::from(self.unpublished_days))
    }
}

/// The fault the `n`-th request (0-based, token and data requests counted together in
/// arrival order) gets. Token endpoints only ever get `busy` or `http_5xx`.
pub fn fault_at(cfg: &SimConfig, n: u64, token_endpoint: bool) -> Option<FaultKind> {
    let f = &cfg.faults;
    if f.rate <= 0.0 || f.kinds.is_empty() {
        return None;
    }
    let mut r = rng::Rng::new(&[cfg.seed, rng::hs("fault"), n]);
    if !r.chance(f.rate) {
        return None;
    }
    let kind = f.kinds[(r.next_u64() % f.kinds.len() as u64) as usize];
    if token_endpoint && !matches!(kind, FaultKind::Busy | FaultKind::Http5xx) {
        return None;
    }
    Some(kind)
}

/// errcode of a call whose answer was not a WeChat body (503, reset, truncated JSON).
pub const HTTP_FAULT: i64 = -2;
/// errcode of a call not answered (yet): in flight, or the client gave up.
pub const NO_ANSWER: i64 = -3;

/// Every request the simulator served (except `/_sim/*`), in arrival order.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SimStats {
    pub calls: Vec<CallRecord>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CallRecord {
    pub path: String,
    pub app_id: Option<String>,
    /// Catalogue id of a data call.
    pub report: Option<&'static str>,
    pub begin: Option<NaiveDate>,
    pub end: Option<NaiveDate>,
    /// 0 ok; WeChat's errcode; `HTTP_FAULT` (-2) or `NO_ANSWER` (-3).
    pub errcode: i64,
    /// Injected fault, if any.
    pub fault: Option<FaultKind>,
    /// Milliseconds since the simulator started.
    pub at_ms: u64,
}

impl SimStats {
    pub fn data_calls(&self) -> impl Iterator<Item = &CallRecord> {
        self.calls.iter().filter(|c| c.report.is_some())
    }

    /// Data calls per (app_id, report id); `ok_only` counts only errcode 0.
    pub fn per_report(&self, ok_only: bool) -> BTreeMap<(String, &'static str), usize> {
        let mut out = BTreeMap::new();
        for c in self.data_calls() {
            if ok_only && c.errcode != 0 {
                continue;
            }
            if let (Some(app), Some(rep)) = (&c.app_id, c.report) {
                *out.entry((app.clone(), rep)).or_insert(0) += 1;
            }
        }
        out
    }
}
