//! access_token lifecycle (reference §5.1, §5.2) as a pure state machine over a
//! millisecond clock, so the rules are testable without waiting.

use std::collections::HashMap;

use chrono::NaiveDate;

use super::rng::{hs, Rng};

pub const LIFETIME_MS: u64 = 7_200_000;
/// Stable tokens rotate this long before expiry; classic ones stay valid this long after
/// being superseded.
pub const OVERLAP_MS: u64 = 300_000;
pub const FORCE_PER_DAY: u32 = 20;
pub const FORCE_SPACING_MS: u64 = 30_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flavor {
    Classic,
    Stable,
    /// A third-party platform's component_access_token (owner `component:<appid>`).
    Component,
    /// An authorizer_access_token, acting for an authorised account.
    Authorizer,
}

#[derive(Debug, Clone)]
struct Issued {
    app_id: String,
    expires_ms: u64,
    /// From this instant the token is no longer the latest: 40001.
    invalid_from: Option<u64>,
}

/// A token request's outcome: (token, expires_in seconds) or an errcode.
pub type Grant = Result<(String, u64), i64>;

/// Why a token does not authorise a data call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// 40001: unknown, superseded or revoked.
    Invalid,
    /// 42001: past its lifetime.
    Expired,
}

impl Rejection {
    pub fn errcode(self) -> i64 {
        match self {
            Rejection::Invalid => 40001,
            Rejection::Expired => 42001,
        }
    }
}

#[derive(Debug, Default)]
pub struct Tokens {
    seed: u64,
    counter: u64,
    issued: HashMap<String, Issued>,
    /// Every token in issue order.
    log: Vec<String>,
    current: HashMap<(Flavor, String), String>,
    /// (app_id, China day) -> (force refreshes done, last one at).
    forced: HashMap<(String, NaiveDate), (u32, u64)>,
}

impl Tokens {
    pub fn new(seed: u64) -> Self {
        Tokens {
            seed,
            ..Tokens::default()
        }
    }

    pub fn issued(&self) -> &[String] {
        &self.log
    }

    /// The app a token was issued to (whatever its state).
    pub fn owner(&self, token: &str) -> Option<&str> {
        self.issued.get(token).map(|i| i.app_id.as_str())
    }

    pub fn check(&self, token: &str, now: u64) -> Result<&str, Rejection> {
        let Some(t) = self.issued.get(token) else {
            return Err(Rejection::Invalid);
        };
        match t.invalid_from {
            Some(at) if at <= now && at < t.expires_ms => Err(Rejection::Invalid),
            _ if t.expires_ms <= now => Err(Rejection::Expired),
            _ => Ok(&t.app_id),
        }
    }

    /// A fresh token: long, URL-safe, from the seed and a counter only (never the secret).
    fn mint(&mut self, app_id: &str, now: u64, flavor: Flavor) -> String {
        self.counter += 1;
        let mut r = Rng::new(&[self.seed, hs(app_id), self.counter, hs("access_token")]);
        const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let body: String = (0..128)
            .map(|_| CHARS[(r.next_u64() % 64) as usize] as char)
            .collect();
        let token = format!("{}_{body}", 80 + self.counter % 20);
        self.issued.insert(
            token.clone(),
            Issued {
                app_id: app_id.to_string(),
                expires_ms: now + LIFETIME_MS,
                invalid_from: None,
            },
        );
        self.log.push(token.clone());
        self.current
            .insert((flavor, app_id.to_string()), token.clone());
        token
    }

    /// `GET /cgi-bin/token`: a new token each call; the previous one stays valid for five
    /// minutes.
    pub fn classic(&mut self, app_id: &str, now: u64) -> Grant {
        self.rotating(app_id, now, Flavor::Classic)
    }

    /// Classic-style issuing (new each call, previous valid five more minutes) for any
    /// flavour: component and authorizer tokens behave so too.
    pub fn rotating(&mut self, app_id: &str, now: u64, flavor: Flavor) -> Grant {
        if let Some(prev) = self.current.get(&(flavor, app_id.to_string())) {
            if let Some(p) = self.issued.get_mut(prev) {
                let grace = now + OVERLAP_MS;
                p.invalid_from = Some(p.invalid_from.map_or(grace, |at| at.min(grace)));
            }
        }
        let token = self.mint(app_id, now, flavor);
        Ok((token, LIFETIME_MS / 1000))
    }

    /// `POST /cgi-bin/stable_token`.
    pub fn stable(&mut self, app_id: &str, force: bool, now: u64, today: NaiveDate) -> Grant {
        let key = (Flavor::Stable, app_id.to_string());
        let live = self
            .current
            .get(&key)
            .filter(|t| self.check(t, now).is_ok())
            .cloned();
        if force {
            let (done, last) = self
                .forced
                .get(&(app_id.to_string(), today))
                .copied()
                .unwrap_or((0, 0));
            if done >= FORCE_PER_DAY {
                return Err(45009);
            }
            let too_soon = done > 0 && now < last + FORCE_SPACING_MS;
            if let (true, Some(t)) = (too_soon, &live) {
                return Ok((t.clone(), self.remaining(t, now)));
            }
            if let Some(t) = &live {
                if let Some(p) = self.issued.get_mut(t) {
                    p.invalid_from = Some(now);
                }
            }
            self.forced
                .insert((app_id.to_string(), today), (done + 1, now));
            let token = self.mint(app_id, now, Flavor::Stable);
            return Ok((token, LIFETIME_MS / 1000));
        }
        if let Some(t) = live {
            let left = self.remaining(&t, now);
            if left * 1000 > OVERLAP_MS {
                return Ok((t, left));
            }
        }
        // None yet, or in its last five minutes: rotate; the old one lives out its term.
        let token = self.mint(app_id, now, Flavor::Stable);
        Ok((token, LIFETIME_MS / 1000))
    }

    /// Marks a token no longer the latest from `now` (a newer one exists elsewhere).
    pub fn supersede(&mut self, token: &str, now: u64) {
        if let Some(t) = self.issued.get_mut(token) {
            t.invalid_from = Some(now);
        }
    }

    fn remaining(&self, token: &str, now: u64) -> u64 {
        self.issued
            .get(token)
            .map_or(0, |t| t.expires_ms.saturating_sub(now) / 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, 10).unwrap()
    }

    fn ok(g: Grant) -> (String, u64) {
        g.unwrap()
    }

    #[test]
    fn stable_token_is_reused_until_five_minutes_before_expiry() {
        let mut t = Tokens::new(1);
        let (a, e) = ok(t.stable("wxapp", false, 0, day()));
        assert_eq!(e, 7200);
        assert!(a.len() >= 64);
        let (b, e) = ok(t.stable("wxapp", false, 60 * MIN, day()));
        assert_eq!(b, a);
        assert_eq!(e, 3600);
        // 114 minutes in: 6 minutes left, still the same.
        let (c, e) = ok(t.stable("wxapp", false, 114 * MIN, day()));
        assert_eq!((c.as_str(), e), (a.as_str(), 360));
        // 116 minutes in: inside the last five minutes, a new one; the old still works.
        let (d, e) = ok(t.stable("wxapp", false, 116 * MIN, day()));
        assert_ne!(d, a);
        assert_eq!(e, 7200);
        assert_eq!(t.check(&a, 117 * MIN), Ok("wxapp"));
        assert_eq!(t.check(&a, 120 * MIN), Err(Rejection::Expired));
        assert_eq!(t.check(&d, 120 * MIN), Ok("wxapp"));
        // Later calls return the new one.
        let (e2, _) = ok(t.stable("wxapp", false, 118 * MIN, day()));
        assert_eq!(e2, d);
    }

    #[test]
    fn force_refresh_invalidates_is_spaced_and_capped() {
        let mut t = Tokens::new(1);
        let (a, _) = ok(t.stable("wxapp", false, 0, day()));
        let (b, _) = ok(t.stable("wxapp", true, 1_000, day()));
        assert_ne!(a, b);
        assert_eq!(t.check(&a, 1_001), Err(Rejection::Invalid));
        // Within 30 s: the current token, unchanged.
        let (c, e) = ok(t.stable("wxapp", true, 20_000, day()));
        assert_eq!(c, b);
        assert_eq!(e, 7181);
        let mut now = 1_000;
        let mut last = b;
        for _ in 1..FORCE_PER_DAY {
            now += FORCE_SPACING_MS;
            let (n, _) = ok(t.stable("wxapp", true, now, day()));
            assert_ne!(n, last);
            last = n;
        }
        assert_eq!(t.stable("wxapp", true, now + MIN, day()), Err(45009));
        // The cap is per China day; normal calls are unaffected.
        assert_eq!(ok(t.stable("wxapp", false, now + MIN, day())).0, last);
        assert!(t
            .stable("wxapp", true, now + MIN, day().succ_opt().unwrap())
            .is_ok());
    }

    #[test]
    fn classic_token_is_new_each_call_with_five_minute_grace() {
        let mut t = Tokens::new(1);
        let (a, _) = ok(t.classic("wxapp", 0));
        let (b, _) = ok(t.classic("wxapp", 10 * MIN));
        assert_ne!(a, b);
        assert_eq!(t.check(&a, 14 * MIN), Ok("wxapp"));
        assert_eq!(t.check(&a, 15 * MIN), Err(Rejection::Invalid));
        assert_eq!(t.check(&b, 15 * MIN), Ok("wxapp"));
        // Classic and stable tokens are isolated.
        let (s, _) = ok(t.stable("wxapp", false, 15 * MIN, day()));
        let (c, _) = ok(t.classic("wxapp", 16 * MIN));
        assert_eq!(t.check(&s, 30 * MIN), Ok("wxapp"));
        assert_eq!(t.check(&b, 30 * MIN), Err(Rejection::Invalid));
        assert_eq!(t.check(&c, 30 * MIN), Ok("wxapp"));
        assert_eq!(t.check("nope", 0), Err(Rejection::Invalid));
        assert_eq!(t.check(&c, 16 * MIN + LIFETIME_MS), Err(Rejection::Expired));
    }
}
