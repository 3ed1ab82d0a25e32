//! Arguments → resolved options: the clock, the pipeline, the report filter, run options.

use super::args::Common;
use crate::catalog::{self, Report};
use crate::clock::Clock;
use crate::error::{ExitCode, Failure};
use crate::pipeline::Pipeline;
use crate::run::Options;

pub fn clock(c: &Common) -> Clock {
    c.today.map(Clock::pinned).unwrap_or_else(Clock::system)
}

/// Resolves `--reports` names (ids or API names), with a suggestion for a misspelling.
pub fn resolve_reports(names: &[String]) -> Result<Vec<&'static Report>, Failure> {
    let mut out = Vec::new();
    for n in names {
        let n = n.trim();
        match catalog::find(n) {
            Some(r) if !out.iter().any(|x: &&Report| x.id == r.id) => out.push(r),
            Some(_) => {}
            None => {
                let hint = catalog::suggest(n)
                    .map(|s| format!("; did you mean {s:?}?"))
                    .unwrap_or_default();
                return Err(Failure::usage(format!(
                    "--reports: unknown report {n:?}{hint} (see `wxcube reports`)"
                )));
            }
        }
    }
    Ok(out)
}

pub(super) fn load_pipeline(path: &std::path::Path) -> Result<Pipeline, Failure> {
    crate::config::load(path).map_err(|e| Failure::new(ExitCode::Usage, e))
}

/// Retry timing: the defaults, or the hidden test flags' shorter ones.
pub fn retry_policy(c: &Common) -> crate::retry::RetryPolicy {
    let ms = |v: Option<u64>| v.map(std::time::Duration::from_millis);
    let mut p = crate::retry::RetryPolicy::default();
    if let Some(d) = ms(c.retry_base_ms) {
        p.base = d;
        p.max = p.max.min(d * 64);
    }
    if let Some(d) = ms(c.minute_ms) {
        p.minute_wait = d;
    }
    if let Some(d) = ms(c.timeout_ms) {
        p.timeout = d;
    }
    p
}

pub(super) fn options(c: &Common, full_refresh: bool) -> Result<Options, Failure> {
    Ok(Options {
        accounts: c.accounts.clone(),
        reports: c.reports.as_deref().map(resolve_reports).transpose()?,
        full_refresh,
        shard: c.shard,
        lease: crate::lease::Config::default(),
        retry: Some(retry_policy(c)),
        observer: None,
    })
}

pub(super) fn lease_config(wait: f64, length: f64) -> Result<crate::lease::Config, Failure> {
    let secs = |flag: &str, v: f64, min: f64| {
        if v.is_finite() && (min..=86_400.0).contains(&v) {
            Ok(std::time::Duration::from_secs_f64(v))
        } else {
            Err(Failure::usage(format!(
                "{flag} {v}: seconds between {min} and 86400"
            )))
        }
    };
    Ok(crate::lease::Config {
        wait: secs("--lease-wait", wait, 0.0)?,
        length: secs("--lease-seconds", length, 0.3)?,
    })
}
