//! Extract: tokens, rate limits, retries; one decoded response per window.
//!
//! Three separate wrappers around a call, each testable alone: the limiters (a
//! `limit::RateLimiter` per account, one global), the in-flight cap (a semaphore per account), and the
//! retry loop (classification is `FetchError::class`, separate from the backoff).
//! Tokens: `/cgi-bin/stable_token` once per account, shared by all its requests, refreshed
//! before expiry; on 40001/40014/42001 refreshed once (forced when allowed: at most 20 a
//! day, 30 s apart) and the request replayed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::{Mutex, Semaphore};

use crate::catalog::{Report, Status};
use crate::dates;
use crate::limit::RateLimiter;
use crate::pipeline::{Account, Auth};
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
    /// The host could not be reached at all (connect error): a failover candidate.
    #[error("{0}")]
    Unreachable(String),
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
            FetchError::Transient(_) | FetchError::Unreachable(_) => Class::Retry,
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

/// One account's connection to WeChat: its token source, host, limiter and in-flight cap.
pub struct AccountClient {
    pub name: String,
    app_id: String,
    secret: Secret,
    auth: Auth,
    /// The host in use, and the one to fail over to when it cannot be reached.
    base: std::sync::Mutex<String>,
    failover: std::sync::Mutex<Option<String>>,
    token: Mutex<Option<CachedToken>>,
    /// A configuration error from the token source: every later request fails fast with it.
    broken: std::sync::Mutex<Option<(i64, &'static str)>>,
    /// A component flow may rotate the authorizer refresh token.
    refresh_token: std::sync::Mutex<Option<Secret>>,
    forced: Mutex<ForcedLog>,
    limiter: RateLimiter,
    inflight: Semaphore,
}

impl AccountClient {
    pub fn new(
        acct: &Account,
        base: &str,
        failover: Option<&str>,
        rps: u32,
        max_in_flight: u32,
    ) -> Self {
        if matches!(acct.auth, Auth::Classic) {
            tracing::warn!(
                account = %acct.name,
                "auth type classic: each token fetched from /cgi-bin/token invalidates the account's other tokens after 5 minutes; prefer stable_token"
            );
        }
        AccountClient {
            name: acct.name.clone(),
            app_id: acct.app_id.clone(),
            secret: acct.app_secret.clone(),
            auth: acct.auth.clone(),
            base: std::sync::Mutex::new(base.trim_end_matches('/').to_string()),
            failover: std::sync::Mutex::new(failover.map(|f| f.trim_end_matches('/').to_string())),
            token: Mutex::new(None),
            broken: std::sync::Mutex::new(None),
            refresh_token: std::sync::Mutex::new(None),
            forced: Mutex::new(ForcedLog::default()),
            limiter: RateLimiter::per_second(rps),
            inflight: Semaphore::new(max_in_flight.max(1) as usize),
        }
    }

    fn base(&self) -> String {
        self.base.lock().map(|b| b.clone()).unwrap_or_default()
    }

    /// Switches to the failover host once; false if there is none left.
    fn fail_over(&self) -> bool {
        let next = self.failover.lock().ok().and_then(|mut f| f.take());
        match next {
            Some(host) => {
                tracing::warn!(account = %self.name, host = %host, "host unreachable, failing over");
                if let Ok(mut b) = self.base.lock() {
                    *b = host;
                }
                true
            }
            None => false,
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
    global: RateLimiter,
    pub retry: RetryPolicy,
    jitter: Jitter,
    pub counters: Arc<Counters>,
    /// Memory for windows fetched but not yet loaded, shared by all accounts.
    pub budget: InFlight,
    /// component_access_token per component_appid, shared by its authorised accounts.
    component_tokens: Mutex<std::collections::HashMap<String, CachedToken>>,
}

/// The memory that fetched windows may hold until the loader has their rows (response
/// bodies, decoded batches, the channel), shared by all accounts. Without it, memory would
/// grow with accounts × `max_in_flight` × the largest response.
const IN_FLIGHT_BYTES: usize = 8 << 20;

/// The in-flight budget, in KiB, and the size a window of each report is expected to take.
pub struct InFlight {
    permits: Arc<tokio::sync::Semaphore>,
    expected: std::sync::Mutex<std::collections::HashMap<&'static str, usize>>,
}

/// A window's share of the in-flight budget.
pub type Reservation = tokio::sync::OwnedSemaphorePermit;

impl Default for InFlight {
    fn default() -> Self {
        InFlight {
            permits: Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT_BYTES >> 10)),
            expected: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }
}

impl InFlight {
    /// KiB to reserve for a window of this report: the largest recently observed, decaying;
    /// at most a quarter of the budget, so one huge report cannot run alone.
    pub fn expected_kib(&self, r: &Report) -> u32 {
        let kib = self
            .expected
            .lock()
            .ok()
            .and_then(|m| m.get(r.id).copied())
            .unwrap_or(256);
        kib.clamp(1, IN_FLIGHT_BYTES >> 12) as u32
    }

    /// Waits for a window's share.
    async fn reserve(&self, r: &Report) -> Option<Reservation> {
        let kib = self.expected_kib(r);
        Arc::clone(&self.permits).acquire_many_owned(kib).await.ok()
    }

    pub fn observe(&self, r: &'static Report, kib: usize) {
        if let Ok(mut m) = self.expected.lock() {
            let e = m.entry(r.id).or_insert(kib);
            *e = if kib >= *e { kib } else { (*e * 7 + kib) / 8 };
        }
    }
}

/// A successful window.
pub struct Fetched {
    pub decoded: Decoded,
    pub attempts: u32,
}

/// Parses a token answer: `(token, expires_in)` from the given field.
fn token_answer(b: &[u8], field: &str) -> Result<CachedToken, FetchError> {
    let v: Value = serde_json::from_slice(b)
        .map_err(|_| FetchError::Transient("truncated token response".into()))?;
    if let Some(e) = transform::api_error(&v) {
        return Err(match e.errcode {
            // At a token endpoint 40001 means a wrong secret.
            40001 => FetchError::Config {
                errcode: 40001,
                hint: config_hint(40125).unwrap_or(""),
            },
            _ => FetchError::from_api(e),
        });
    }
    let tok = v
        .get(field)
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
        None => Err(FetchError::Transient(format!(
            "token response without {field}"
        ))),
    }
}

impl Extractor {
    pub fn new(global_rps: u32, retry: RetryPolicy, seed: u64) -> Result<Self, FetchError> {
        let http = reqwest::Client::builder()
            .timeout(retry.timeout)
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| FetchError::Transient(redact(&e.to_string())))?;
        Ok(Extractor {
            http,
            global: RateLimiter::per_second(global_rps),
            retry,
            jitter: Jitter::new(seed),
            counters: Arc::new(Counters::default()),
            budget: InFlight::default(),
            component_tokens: Mutex::new(std::collections::HashMap::new()),
        })
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<bytes::Bytes, FetchError> {
        let resp = req.send().await.map_err(|e| transport(&e))?;
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

    /// A token-endpoint call with the retry rules for transient failures and failover.
    async fn token_call<F>(
        &self,
        acct: &AccountClient,
        what: &str,
        make: F,
        field: &str,
    ) -> Result<CachedToken, FetchError>
    where
        F: Fn(&str) -> reqwest::RequestBuilder,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.global.until_ready().await;
            self.counters.token_calls.fetch_add(1, Ordering::Relaxed);
            let r = match self.send(make(&acct.base())).await {
                Ok(b) => token_answer(&b, field),
                Err(e) => Err(e),
            };
            match r {
                Ok(t) => return Ok(t),
                Err(FetchError::Unreachable(_)) if acct.fail_over() => continue,
                Err(e) if e.class() == Class::Retry && attempt < self.retry.attempts => {
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(account = %acct.name, attempt, error = %e, "{what} failed, retrying");
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

    /// A new token from the account's source (`force`: stable_token's force_refresh).
    async fn fetch_token(
        &self,
        acct: &AccountClient,
        force: bool,
    ) -> Result<CachedToken, FetchError> {
        match &acct.auth {
            Auth::StableToken => {
                let body = json!({
                    "grant_type": "client_credential",
                    "appid": acct.app_id,
                    "secret": acct.secret.expose(),
                    "force_refresh": force,
                });
                self.token_call(
                    acct,
                    "stable_token",
                    |b| {
                        self.http
                            .post(format!("{b}/cgi-bin/stable_token"))
                            .json(&body)
                    },
                    "access_token",
                )
                .await
            }
            Auth::Classic => {
                self.token_call(
                    acct,
                    "token",
                    |b| {
                        self.http.get(format!("{b}/cgi-bin/token")).query(&[
                            ("grant_type", "client_credential"),
                            ("appid", acct.app_id.as_str()),
                            ("secret", acct.secret.expose()),
                        ])
                    },
                    "access_token",
                )
                .await
            }
            Auth::Static { access_token } => Ok(CachedToken {
                value: access_token.clone(),
                expires_at: Instant::now() + Duration::from_secs(86_400 * 365),
            }),
            Auth::Command { command } => self.command_token(acct, command).await,
            Auth::Component {
                component_appid,
                component_appsecret,
                component_verify_ticket,
                authorizer_refresh_token,
            } => {
                let mut ctoken = self
                    .component_token(
                        acct,
                        component_appid,
                        component_appsecret,
                        component_verify_ticket,
                    )
                    .await?;
                let mut renewed = false;
                let refresh = acct
                    .refresh_token
                    .lock()
                    .ok()
                    .and_then(|r| r.clone())
                    .unwrap_or_else(|| authorizer_refresh_token.clone());
                let body = json!({
                    "component_appid": component_appid,
                    "authorizer_appid": acct.app_id,
                    "authorizer_refresh_token": refresh.expose(),
                });
                let url = |b: &str| format!("{b}/cgi-bin/component/api_authorizer_token");
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    self.global.until_ready().await;
                    self.counters.token_calls.fetch_add(1, Ordering::Relaxed);
                    let req = self
                        .http
                        .post(url(&acct.base()))
                        .query(&[("component_access_token", ctoken.expose())])
                        .json(&body);
                    let r = self.send(req).await.and_then(|b| {
                        let v: Value = serde_json::from_slice(&b).map_err(|_| {
                            FetchError::Transient("truncated token response".into())
                        })?;
                        if let Some(next) = v
                            .get("authorizer_refresh_token")
                            .and_then(Value::as_str)
                            .filter(|s| !s.is_empty())
                        {
                            if let Ok(mut r) = acct.refresh_token.lock() {
                                *r = Some(Secret::new(next));
                            }
                        }
                        token_answer(&b, "authorizer_access_token")
                    });
                    match r {
                        Ok(t) => return Ok(t),
                        Err(FetchError::Unreachable(_)) if acct.fail_over() => continue,
                        Err(e) if e.class() == Class::Retry && attempt < self.retry.attempts => {
                            self.counters.retries.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(self.retry.backoff(attempt, &self.jitter)).await;
                        }
                        // The component token itself was rejected: fetch a new one, once.
                        Err(FetchError::Token { .. }) if !renewed => {
                            renewed = true;
                            self.component_tokens
                                .lock()
                                .await
                                .remove(component_appid.as_str());
                            ctoken = self
                                .component_token(
                                    acct,
                                    component_appid,
                                    component_appsecret,
                                    component_verify_ticket,
                                )
                                .await?;
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
        }
    }

    /// The platform's component_access_token, fetched once per run and component.
    async fn component_token(
        &self,
        acct: &AccountClient,
        appid: &str,
        secret: &Secret,
        ticket: &Secret,
    ) -> Result<Secret, FetchError> {
        let mut cache = self.component_tokens.lock().await;
        if let Some(t) = cache
            .get(appid)
            .filter(|t| t.expires_at > Instant::now() + Duration::from_secs(300))
        {
            return Ok(t.value.clone());
        }
        let body = json!({
            "component_appid": appid,
            "component_appsecret": secret.expose(),
            "component_verify_ticket": ticket.expose(),
        });
        let t = self
            .token_call(
                acct,
                "api_component_token",
                |b| {
                    self.http
                        .post(format!("{b}/cgi-bin/component/api_component_token"))
                        .json(&body)
                },
                "component_access_token",
            )
            .await?;
        let v = t.value.clone();
        cache.insert(appid.to_string(), t);
        Ok(v)
    }

    /// Runs the account's token command (`sh -c`), with WXCUBE_ACCOUNT and WXCUBE_APP_ID.
    async fn command_token(
        &self,
        acct: &AccountClient,
        command: &Secret,
    ) -> Result<CachedToken, FetchError> {
        self.counters.token_calls.fetch_add(1, Ordering::Relaxed);
        let child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(command.expose())
            .env("WXCUBE_ACCOUNT", &acct.name)
            .env("WXCUBE_APP_ID", &acct.app_id)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = match tokio::time::timeout(Duration::from_secs(60), child).await {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => {
                return Err(FetchError::Config {
                    errcode: 0,
                    hint: leak(format!("the token command could not start: {e}")),
                })
            }
            Err(_) => {
                return Err(FetchError::Transient(
                    "the token command did not finish within 60 s".into(),
                ))
            }
        };
        if !out.status.success() {
            // Its output may hold secrets: report the status only.
            return Err(FetchError::Config {
                errcode: 0,
                hint: leak(format!(
                    "the token command failed ({}); run it by hand to see why",
                    out.status
                )),
            });
        }
        let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if token.is_empty() || token.contains(char::is_whitespace) {
            return Err(FetchError::Config {
                errcode: 0,
                hint: "the token command must print just the access token",
            });
        }
        // A central token server knows the expiry; re-run the command hourly or when rejected.
        Ok(CachedToken {
            value: Secret::new(token),
            expires_at: Instant::now() + Duration::from_secs(3600 + 270),
        })
    }

    /// The account's current token, fetched or refreshed as needed.
    async fn token(&self, acct: &AccountClient) -> Result<Secret, FetchError> {
        let mut g = acct.token.lock().await;
        if let Some((errcode, hint)) = acct.broken.lock().ok().and_then(|b| *b) {
            return Err(FetchError::Config { errcode, hint });
        }
        // Stable tokens rotate in their last 5 minutes: refreshing inside that window gets
        // the next token while the old one still works.
        let fresh = g
            .as_ref()
            .filter(|t| t.expires_at > Instant::now() + Duration::from_secs(270));
        if let Some(t) = fresh {
            return Ok(t.value.clone());
        }
        let t = match self.fetch_token(acct, false).await {
            Ok(t) => t,
            Err(FetchError::Config { errcode, hint }) => {
                if let Ok(mut b) = acct.broken.lock() {
                    *b = Some((errcode, hint));
                }
                return Err(FetchError::Config { errcode, hint });
            }
            Err(e) => return Err(e),
        };
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
        if let Auth::Static { .. } = acct.auth {
            return Err(FetchError::Config {
                errcode: 40001,
                hint: "WeChat rejected the static access_token: hand in a fresh one, or use another auth type",
            });
        }
        let force = matches!(acct.auth, Auth::StableToken) && {
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

    /// One window of one report for one account, with every retry rule applied. Publisher
    /// reports are paged (`page_size` 90) until `total_num` rows or a short page.
    pub async fn fetch(
        &self,
        acct: &AccountClient,
        report: &'static Report,
        w: Window,
        today: chrono::NaiveDate,
        calls: &mut u32,
    ) -> Result<Fetched, FetchError> {
        self.fetch_held(acct, report, w, today, calls, &mut None)
            .await
    }

    /// `fetch`, holding the window's share of the in-flight budget in `held` (kept until
    /// the loader has the rows).
    pub async fn fetch_held(
        &self,
        acct: &AccountClient,
        report: &'static Report,
        w: Window,
        today: chrono::NaiveDate,
        calls: &mut u32,
        held: &mut Option<Reservation>,
    ) -> Result<Fetched, FetchError> {
        if report.status != Status::Publisher {
            let (decoded, attempts) = self
                .call(acct, report, w, None, today, calls, held, |b| {
                    transform::decode(report, b)
                })
                .await?;
            return Ok(Fetched { decoded, attempts });
        }
        let list_key = if report.api == "publisher_settlement" {
            "settlement_list"
        } else {
            "list"
        };
        let mut rows: Vec<Value> = Vec::new();
        let mut first: Option<Value> = None;
        let mut attempts = 0;
        for page in 1u32.. {
            let (v, a) = self
                .call(acct, report, w, Some(page), today, calls, held, |b| {
                    let v: Value = serde_json::from_slice(b)
                        .map_err(|e| Err(DecodeError::Json(e.to_string())))?;
                    match transform::api_error(&v) {
                        Some(api) => Err(Ok(api)),
                        None => Ok(v),
                    }
                })
                .await?;
            attempts += a;
            let items = v
                .get(list_key)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let total = v.get("total_num").and_then(Value::as_u64);
            let n = items.len();
            rows.extend(items);
            if first.is_none() {
                first = Some(v);
            }
            // total_num is not always the row count (WeChat changed it in 2024): a short
            // page ends the paging too.
            if n < PUBLISHER_PAGE_SIZE as usize
                || total.is_some_and(|t| rows.len() as u64 >= t)
                || page >= 10_000
            {
                break;
            }
        }
        let mut whole = first.unwrap_or_else(|| json!({}));
        if let Some(o) = whole.as_object_mut() {
            o.remove(list_key);
            o.insert("list".into(), Value::Array(rows));
        }
        let decoded = transform::decode_value(report, &whole).map_err(FetchError::Decode)?;
        Ok(Fetched { decoded, attempts })
    }

    /// One request (retried as the rules say) whose body `check` turns into a value.
    #[allow(clippy::too_many_arguments)]
    async fn call<T>(
        &self,
        acct: &AccountClient,
        report: &'static Report,
        w: Window,
        page: Option<u32>,
        today: chrono::NaiveDate,
        calls: &mut u32,
        held: &mut Option<Reservation>,
        check: impl Fn(&[u8]) -> Result<T, Result<ApiError, DecodeError>>,
    ) -> Result<(T, u32), FetchError> {
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
                // After the limiters, so windows waiting their turn hold none of it; once
                // per window (its 61501 halves and pages share it), so no window waits for
                // budget while holding some.
                if held.is_none() {
                    *held = self.budget.reserve(report).await;
                }
                self.counters.data_calls.fetch_add(1, Ordering::Relaxed);
                *calls += 1;
                let req = match page {
                    None => self
                        .http
                        .post(format!("{}{}", acct.base(), report.path))
                        .query(&[("access_token", token.expose())])
                        .json(&body),
                    Some(page) => self
                        .http
                        .get(format!("{}{}", acct.base(), report.path))
                        .query(&[
                            ("action", report.api),
                            ("access_token", token.expose()),
                            ("page", &page.to_string()),
                            ("page_size", &PUBLISHER_PAGE_SIZE.to_string()),
                            ("start_date", &dates::fmt(w.begin)),
                            ("end_date", &dates::fmt(w.end)),
                        ]),
                };
                match self.send(req).await {
                    Ok(bytes) => match check(&bytes) {
                        Ok(v) => return Ok((v, attempt)),
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
            if matches!(e, FetchError::Unreachable(_)) && acct.fail_over() {
                continue;
            }
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

/// Rows per publisher page: WeChat's maximum.
pub const PUBLISHER_PAGE_SIZE: u32 = 90;

/// Time to the next minute boundary (scaled down when `minute` is shorter, for tests).
fn until_next_minute(minute: Duration) -> Duration {
    let ms = minute.as_millis().max(1) as u64;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Duration::from_millis(ms - now % ms + 50)
}

/// Hints are static text; the few built at run time live for the run.
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
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
    } else if e.is_connect() {
        FetchError::Unreachable(msg)
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
