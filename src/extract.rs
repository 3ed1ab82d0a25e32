//! Extract: tokens, rate limits, retries; one decoded response per window.
//!
//! Three separate wrappers around a call, each testable alone: the limiters (a governor
//! limiter per account, one global), the in-flight cap (a semaphore per account), and the
//! retry loop (classification is `FetchError::class`, separate from the backoff).
//! Tokens: `/cgi-bin/stable_token` once per account, shared by all its requests, refreshed
//! before expiry; on 40001/40014/42001 refreshed once (forced when allowed: at most 20 a
//! day, 30 s apart) and the request replayed.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::{json, Value};
use tokio::sync::{Mutex, Semaphore};

use crate::catalog::Report;
use crate::dates;
use crate::plan::Window;
use crate::secret::{redact, Secret};
use crate::transform::{self, ApiError, DecodeError, Decoded};

/// Configuration errors: retrying cannot help; the account fails fast with this hint.
pub fn config_hint(errcode: i64) -> Option<&'static str> {
    Some(match errcode {
        40013 => "invalid app_id: check accounts[].app_id",
        40125 | 40001 => "invalid app secret: check accounts[].app_secret (reset it in the MP console if it leaked)",
        40164 => "this machine's IP is not in the account's IP whitelist (MP console → Development → Basic configuration)",
        40243 => "the AppSecret is frozen by the account owner",
        41002 => "app_id is missing",
        41004 => "app_secret is missing",
        48001 => "the account is not authorised for this API (datacube needs a verified account; third-party platforms need the permission set)",
        48004 => "the API is banned for this account",
        50001 => "the account has not granted this API to the caller",
        50002 => "the account is restricted",
        61023 => "the authorizer refresh token is invalid: re-authorise the account",
        89501 | 89503 | 89506 | 89507 => "WeChat asks the account admin to confirm this caller's IP",
        _ => return None,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    Transient(String),
    #[error("token rejected (errcode {errcode})")]
    Token { errcode: i64 },
    #[error("minute limit reached (errcode 45011)")]
    MinuteLimit,
    #[error("daily quota exhausted (errcode 45009)")]
    Quota,
    #[error("WeChat retired this API (errcode 47009)")]
    Retired,
    #[error("date range rejected (errcode 61501): {errmsg}")]
    Range { errmsg: String },
    #[error("errcode {errcode}: {hint}")]
    Config { errcode: i64, hint: &'static str },
    #[error("errcode {errcode}: {errmsg}")]
    Api { errcode: i64, errmsg: String },
    #[error("unexpected response: {0}")]
    Decode(DecodeError),
    #[error("gave up after {attempts} attempts; last error: {last}")]
    Exhausted { attempts: u32, last: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Retry,
    RefreshToken,
    WaitMinute,
    Fatal,
}

impl FetchError {
    pub fn class(&self) -> Class {
        match self {
            FetchError::Transient(_) => Class::Retry,
            FetchError::Token { .. } => Class::RefreshToken,
            FetchError::MinuteLimit => Class::WaitMinute,
            _ => Class::Fatal,
        }
    }

    fn from_api(e: ApiError) -> FetchError {
        match e.errcode {
            -1 => FetchError::Transient(format!("WeChat busy (errcode -1): {}", e.errmsg)),
            40001 | 40014 | 42001 => FetchError::Token { errcode: e.errcode },
            45011 => FetchError::MinuteLimit,
            45009 => FetchError::Quota,
            47009 => FetchError::Retired,
            61501 => FetchError::Range { errmsg: e.errmsg },
            code => match config_hint(code) {
                Some(hint) => FetchError::Config {
                    errcode: code,
                    hint,
                },
                None => FetchError::Api {
                    errcode: code,
                    errmsg: redact(&e.errmsg),
                },
            },
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts per call, first included.
    pub attempts: u32,
    pub base: Duration,
    pub max: Duration,
    /// Wait on 45011; WeChat's limit is per minute.
    pub minute_wait: Duration,
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 8,
            base: Duration::from_millis(500),
            max: Duration::from_secs(30),
            minute_wait: Duration::from_secs(60),
            timeout: Duration::from_secs(30),
        }
    }
}

/// Small xorshift for backoff jitter; the seed is injected so tests are repeatable.
#[derive(Debug)]
pub struct Jitter(std::sync::Mutex<u64>);

impl Jitter {
    pub fn new(seed: u64) -> Self {
        Jitter(std::sync::Mutex::new(seed | 1))
    }
    /// A fraction in [0.5, 1.0).
    fn fraction(&self) -> f64 {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut x = *g;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *g = x;
        0.5 + (x >> 11) as f64 / (1u64 << 53) as f64 * 0.5
    }
}

impl RetryPolicy {
    /// Exponential backoff with jitter for the n-th retry (1-based).
    pub fn backoff(&self, n: u32, jitter: &Jitter) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << n.saturating_sub(1).min(16));
        exp.min(self.max).mul_f64(jitter.fraction())
    }
}

struct CachedToken {
    value: Secret,
    expires_at: Instant,
}

#[derive(Default)]
struct ForcedLog {
    day: Option<chrono::NaiveDate>,
    count: u32,
    last: Option<Instant>,
}

/// One account's connection to WeChat: its token, its limiter, its in-flight cap.
pub struct AccountClient {
    pub name: String,
    app_id: String,
    secret: Secret,
    token: Mutex<Option<CachedToken>>,
    forced: Mutex<ForcedLog>,
    limiter: DefaultDirectRateLimiter,
    inflight: Semaphore,
}

impl AccountClient {
    pub fn new(name: &str, app_id: &str, secret: Secret, rps: u32, max_in_flight: u32) -> Self {
        let rps = NonZeroU32::new(rps.max(1)).unwrap_or(NonZeroU32::MIN);
        AccountClient {
            name: name.into(),
            app_id: app_id.into(),
            secret,
            token: Mutex::new(None),
            forced: Mutex::new(ForcedLog::default()),
            limiter: RateLimiter::direct(Quota::per_second(rps).allow_burst(NonZeroU32::MIN)),
            inflight: Semaphore::new(max_in_flight.max(1) as usize),
        }
    }
}

/// Counters a run reports.
#[derive(Debug, Default)]
pub struct Counters {
    pub data_calls: AtomicU64,
    pub token_calls: AtomicU64,
    pub retries: AtomicU64,
}

pub struct Extractor {
    http: reqwest::Client,
    base: String,
    global: DefaultDirectRateLimiter,
    pub retry: RetryPolicy,
    jitter: Jitter,
    pub counters: Arc<Counters>,
}

/// A successful window.
pub struct Fetched {
    pub decoded: Decoded,
    pub attempts: u32,
}

impl Extractor {
    pub fn new(
        base: &str,
        global_rps: u32,
        retry: RetryPolicy,
        seed: u64,
    ) -> Result<Self, FetchError> {
        let http = reqwest::Client::builder()
            .timeout(retry.timeout)
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| FetchError::Transient(redact(&e.to_string())))?;
        let g = NonZeroU32::new(global_rps.max(1)).unwrap_or(NonZeroU32::MIN);
        Ok(Extractor {
            http,
            base: base.trim_end_matches('/').to_string(),
            global: RateLimiter::direct(Quota::per_second(g).allow_burst(NonZeroU32::MIN)),
            retry,
            jitter: Jitter::new(seed),
            counters: Arc::new(Counters::default()),
        })
    }

    async fn post_json(&self, url: &str, body: &Value) -> Result<bytes::Bytes, FetchError> {
        let resp = self
            .http
            .post(url)
            .json(body)
            .send()
            .await
            .map_err(|e| transport(&e))?;
        let status = resp.status();
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(FetchError::Transient(format!("HTTP {status}")));
        }
        if !status.is_success() {
            return Err(FetchError::Api {
                errcode: -(i64::from(status.as_u16())),
                errmsg: format!("HTTP {status}"),
            });
        }
        resp.bytes().await.map_err(|e| transport(&e))
    }

    /// Fetches a token from stable_token (counted, never logged).
    async fn fetch_token(
        &self,
        acct: &AccountClient,
        force: bool,
    ) -> Result<CachedToken, FetchError> {
        let url = format!("{}/cgi-bin/stable_token", self.base);
        let body = json!({
            "grant_type": "client_credential",
            "appid": acct.app_id,
            "secret": acct.secret.expose(),
            "force_refresh": force,
        });
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.global.until_ready().await;
            self.counters.token_calls.fetch_add(1, Ordering::Relaxed);
            let r = self.post_json(&url, &body).await.and_then(|b| {
                let v: Value = serde_json::from_slice(&b)
                    .map_err(|_| FetchError::Transient("truncated token response".into()))?;
                if let Some(e) = transform::api_error(&v) {
                    return Err(match e.errcode {
                        // At the token endpoint 40001 means a wrong secret.
                        40001 => FetchError::Config {
                            errcode: 40001,
                            hint: config_hint(40125).unwrap_or(""),
                        },
                        _ => FetchError::from_api(e),
                    });
                }
                let tok = v
                    .get("access_token")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty());
                let exp = v
                    .get("expires_in")
                    .and_then(Value::as_i64)
                    .unwrap_or(7200)
                    .clamp(60, 86_400);
                match tok {
                    Some(t) => Ok(CachedToken {
                        value: Secret::new(t),
                        expires_at: Instant::now() + Duration::from_secs(exp as u64),
                    }),
                    None => Err(FetchError::Transient(
                        "token response without access_token".into(),
                    )),
                }
            });
            match r {
                Ok(t) => return Ok(t),
                Err(e) if e.class() == Class::Retry && attempt < self.retry.attempts => {
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(account = %acct.name, attempt, error = %e, "token request failed, retrying");
                    tokio::time::sleep(self.retry.backoff(attempt, &self.jitter)).await;
                }
                Err(e) if e.class() == Class::Retry => {
                    return Err(FetchError::Exhausted {
                        attempts: attempt,
                        last: e.to_string(),
                    })
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The account's current token, fetched or refreshed as needed.
    async fn token(&self, acct: &AccountClient) -> Result<Secret, FetchError> {
        let mut g = acct.token.lock().await;
        // Stable tokens rotate in their last 5 minutes: refreshing inside that window gets
        // the next token while the old one still works.
        let fresh = g
            .as_ref()
            .filter(|t| t.expires_at > Instant::now() + Duration::from_secs(270));
        if let Some(t) = fresh {
            return Ok(t.value.clone());
        }
        let t = self.fetch_token(acct, false).await?;
        let v = t.value.clone();
        *g = Some(t);
        Ok(v)
    }

    /// WeChat rejected `bad`: refresh once unless another request already did.
    async fn refresh_after_reject(
        &self,
        acct: &AccountClient,
        bad: &Secret,
        today: chrono::NaiveDate,
    ) -> Result<(), FetchError> {
        let mut g = acct.token.lock().await;
        if g.as_ref().is_some_and(|t| t.value != *bad) {
            return Ok(());
        }
        let force = {
            let mut f = acct.forced.lock().await;
            if f.day != Some(today) {
                f.day = Some(today);
                f.count = 0;
            }
            let spaced = f
                .last
                .is_none_or(|l| l.elapsed() >= Duration::from_secs(30));
            if spaced && f.count < 20 {
                f.count += 1;
                f.last = Some(Instant::now());
                true
            } else {
                false
            }
        };
        let t = match self.fetch_token(acct, force).await {
            // Over the forced-refresh allowance: fall back to the current stable token.
            Err(FetchError::Quota) if force => self.fetch_token(acct, false).await?,
            r => r?,
        };
        *g = Some(t);
        Ok(())
    }

    /// One window of one report for one account, with every retry rule applied.
    pub async fn fetch(
        &self,
        acct: &AccountClient,
        report: &'static Report,
        w: Window,
        today: chrono::NaiveDate,
    ) -> Result<Fetched, FetchError> {
        let url = format!("{}{}", self.base, report.path);
        let body = json!({ "begin_date": dates::fmt(w.begin), "end_date": dates::fmt(w.end) });
        let mut attempt = 0u32;
        let mut token_refreshes = 0u32;
        loop {
            attempt += 1;
            let token = self.token(acct).await?;
            let result: Result<std::convert::Infallible, FetchError> = {
                let _permit = acct
                    .inflight
                    .acquire()
                    .await
                    .map_err(|_| FetchError::Transient("shutting down".into()))?;
                acct.limiter.until_ready().await;
                self.global.until_ready().await;
                self.counters.data_calls.fetch_add(1, Ordering::Relaxed);
                let full = format!("{url}?access_token={}", token.expose());
                match self.post_json(&full, &body).await {
                    Ok(bytes) => match transform::decode(report, &bytes) {
                        Ok(decoded) => {
                            return Ok(Fetched {
                                decoded,
                                attempts: attempt,
                            })
                        }
                        Err(Ok(api)) => Err(FetchError::from_api(api)),
                        // Invalid JSON is a truncated or garbled body: worth another try.
                        Err(Err(DecodeError::Json(m))) => {
                            Err(FetchError::Transient(format!("invalid JSON body ({m})")))
                        }
                        Err(Err(e)) => Err(FetchError::Decode(e)),
                    },
                    Err(e) => Err(e),
                }
            };
            let Err(e) = result;
            let give_up = attempt >= self.retry.attempts;
            match e.class() {
                Class::Fatal => return Err(e),
                _ if give_up => {
                    return Err(FetchError::Exhausted {
                        attempts: attempt,
                        last: e.to_string(),
                    })
                }
                Class::Retry => {
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    let wait = self.retry.backoff(attempt, &self.jitter);
                    tracing::debug!(account = %acct.name, report = report.id, window = %w, attempt, error = %e, wait_ms = wait.as_millis() as u64, "retrying");
                    tokio::time::sleep(wait).await;
                }
                Class::RefreshToken => {
                    token_refreshes += 1;
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(account = %acct.name, report = report.id, window = %w, attempt, error = %e, "token rejected, refreshing");
                    if token_refreshes > 3 {
                        return Err(FetchError::Exhausted {
                            attempts: attempt,
                            last: e.to_string(),
                        });
                    }
                    self.refresh_after_reject(acct, &token, today).await?;
                }
                Class::WaitMinute => {
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    let wait = until_next_minute(self.retry.minute_wait);
                    tracing::info!(account = %acct.name, report = report.id, window = %w, errcode = 45011, wait_ms = wait.as_millis() as u64, "minute limit, waiting for the next minute");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

/// Time to the next minute boundary (scaled down when `minute` is shorter, for tests).
fn until_next_minute(minute: Duration) -> Duration {
    let ms = minute.as_millis().max(1) as u64;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Duration::from_millis(ms - now % ms + 50)
}

fn transport(e: &reqwest::Error) -> FetchError {
    // reqwest's Display includes the URL with the token: redact before it goes anywhere.
    let mut msg = redact(&e.to_string());
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&redact(&s.to_string()));
        src = s.source();
    }
    if e.is_timeout() {
        FetchError::Transient(format!("timeout: {msg}"))
    } else {
        FetchError::Transient(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let c = |code| {
            FetchError::from_api(ApiError {
                errcode: code,
                errmsg: "x".into(),
            })
            .class()
        };
        assert_eq!(c(-1), Class::Retry);
        assert_eq!(c(42001), Class::RefreshToken);
        assert_eq!(c(40014), Class::RefreshToken);
        assert_eq!(c(45011), Class::WaitMinute);
        assert_eq!(c(45009), Class::Fatal);
        assert_eq!(c(40164), Class::Fatal);
        assert!(matches!(
            FetchError::from_api(ApiError {
                errcode: 48001,
                errmsg: String::new()
            }),
            FetchError::Config { .. }
        ));
    }

    #[test]
    fn backoff_grows_and_is_bounded() {
        let p = RetryPolicy::default();
        let j = Jitter::new(7);
        let b1 = p.backoff(1, &j);
        let b5 = p.backoff(5, &j);
        assert!(b1 <= Duration::from_millis(500) && b1 >= Duration::from_millis(250));
        assert!(b5 >= Duration::from_secs(4) && b5 <= Duration::from_secs(8));
        assert!(p.backoff(30, &j) <= p.max);
    }
}
