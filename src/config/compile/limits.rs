//! `limits:`: request rates, in-flight cap and daily call budget, each bounded.

use super::Compiler;
use crate::config::node::{Kind, Node};
use crate::pipeline::Limits;

/// Each limit and its cap: beyond these a value is a typo, not a wish (WeChat's own
/// limits are far lower).
const LIMIT_KEYS: &[(&str, u32)] = &[
    ("requests_per_second", 1_000),
    ("max_in_flight", 256),
    ("global_requests_per_second", 10_000),
    ("daily_calls_per_report", 100_000),
];

impl Compiler<'_> {
    pub(super) fn limits(&mut self, n: Option<&Node>, anchor: Option<&Node>) -> Option<Limits> {
        let mut limits = Limits::default();
        let n = match n {
            None => return Some(limits),
            Some(n) if n.kind == Kind::Null => return Some(limits),
            Some(n) => n,
        };
        let names: Vec<&str> = LIMIT_KEYS.iter().map(|(k, _)| *k).collect();
        let f = self.fields(n, "limits", anchor, &names)?;
        let mut ok = true;
        for &(name, cap) in LIMIT_KEYS {
            let Some(v) = f.get(name) else { continue };
            match self.bounded(v, &f.child(name), 1, cap) {
                Some(x) => match name {
                    "requests_per_second" => limits.requests_per_second = x,
                    "max_in_flight" => limits.max_in_flight = x,
                    "global_requests_per_second" => limits.global_requests_per_second = x,
                    _ => limits.daily_calls_per_report = x,
                },
                None => ok = false,
            }
        }
        ok.then_some(limits)
    }
}
