//! Extract: tokens, rate limits, retries; one decoded response per window.
//!
//! Three separate wrappers around a call, each testable alone: the limiters (a
//! `limit::RateLimiter` per account, one global), the in-flight cap (a semaphore per account), and the
//! retry loop (classification is `FetchError::class`, separate from the backoff).
//! Tokens: `/cgi-bin/stable_token` once per account, shared by all its requests, refreshed
//! before expiry; on 40001/40014/42001 refreshed once (forced when allowed: at most 20 a
//! day, 30 s apart) and the request replayed.
//!
//! What fails what:
//! - A token source that fails fails its *account* for the rest of the run (`broken`):
//!   configuration errors at once; transient ones after `token_attempts` (4) of at most
//!   `token_timeout` (10 s) each; 45011 waits for the next minute within those attempts;
//!   45009 at a token endpoint is `TokenQuota` (the token source's quota, never a report's:
//!   nothing is deferred to midnight). Later windows of the account fail without a call.
//! - A token command runs in its own process group; past its timeout (auth
//!   `timeout_seconds`, default 60 s) the whole group is killed, and it is tried once more.
//!   It may print at most 64 KiB.
//! - 40001 from api_authorizer_token means the component token was superseded: renewed
//!   once, unless another account of the platform already did.
//! - Bodies are read in chunks up to a cap (64 KiB for tokens, 64 MiB for data) and
//!   refused past it: the window fails (a *report* window, not the account).
//! - No redirect is followed (it would re-send the token in the query or the secret in
//!   the body to wherever it points): a 3xx fails the call.
//! - Publisher paging guards are in `paging`: `total_num` is not trusted to end paging.

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
use crate::retry::{self, Attempt, Class, Failure, Retryable, Schedule, Wait};
pub use crate::retry::{Jitter, RetryPolicy};
use crate::secret::{redact, Secret};
use crate::transform::{self, ApiError, DecodeError, Decoded};

mod command;
mod paging;

pub use paging::PAGE_SIZE as PUBLISHER_PAGE_SIZE;

/// The most a response body may hold: a data window (a publisher page, a day of articles)
/// is far below it; past it the body is refused, not read into memory.
pub const DATA_BODY_CAP: usize = 64 << 20;
/// A token endpoint's answer is a few hundred bytes.
pub const TOKEN_BODY_CAP: usize = 64 << 10;
/// A token command that times out is tried once more.
const COMMAND_ATTEMPTS: u32 = 2;

/// Configuration errors: retrying cannot help; the account fails fast with this hint.
pub fn config_hint(errcode: i64) -> Option<&'static str> {
    Some(match errcode {
        40013 => "invalid app_id: check accounts[].app_id",
        40125 | 40001 => "invalid app secret: check accounts[].app_secret (reset it in the MP console if it leaked)",
        40164 => "this machine's IP is not in the account's IP whitelist (MP console → Development → Basic configuration)",
        40243 => "the AppSecret is frozen by the account owner",
        41002 => "app_id is missing",
        41004 => "app_secret is missing",
        48004 => "the API is banned for this account",
        50002 => "the account is restricted",
        61023 => "the authorizer refresh token is invalid: re-authorise the account",
        89501 | 89503 | 89506 | 89507 => "WeChat asks the account admin to confirm this caller's IP",
        _ => return None,
    })
}

fn permission_hint(errcode: i64) -> &'static str {
    if errcode == 50001 {
        "the account has not granted this API to the caller"
    } else {
        "the account is not authorised for this API (datacube needs a verified account; third-party platforms need the permission set)"
    }
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
    /// 48001 / 50001: a permission set is not granted; other reports of the account go on.
    #[error("errcode {errcode}: {}", permission_hint(*.errcode))]
    Permission { errcode: i64 },
    #[error("errcode {errcode}: {errmsg}")]
    Api { errcode: i64, errmsg: String },
    #[error("unexpected response: {0}")]
    Decode(DecodeError),
    #[error("gave up after {attempts} attempts; last error: {last}")]
    Exhausted { attempts: u32, last: String },
    /// The account's token source failed after its own retries; remembered for the run,
    /// so the account's remaining windows fail at once, without calls.
    #[error(
        "its token source ({kind}) failed: {cause}; its remaining windows are not tried this run"
    )]
    TokenSource { kind: &'static str, cause: String },
    /// 45009 from a token endpoint: the token source's quota, not the report's.
    #[error("the token endpoint's daily quota is exhausted (errcode 45009): something else fetches tokens for this app too often; it resets at China midnight")]
    TokenQuota,
    #[error("{what} is larger than {limit} bytes: refused")]
    TooLarge { what: &'static str, limit: usize },
    #[error("HTTP {status}: the server redirects{to}; wxcube follows no redirect, which could carry the app secret or access token elsewhere: point api.base_url at the host that answers")]
    Redirect { status: u16, to: String },
    #[error("publisher paging: {0}")]
    Paging(String),
}

impl Retryable for FetchError {
    fn class(&self) -> Class {
        match self {
            FetchError::Transient(_) | FetchError::Unreachable(_) => Class::Retry,
            FetchError::Token { .. } => Class::RefreshToken,
            FetchError::MinuteLimit => Class::WaitMinute,
            _ => Class::Fatal,
        }
    }
}

impl FetchError {
    fn from_api(e: ApiError) -> FetchError {
        match e.errcode {
            -1 => FetchError::Transient(format!("WeChat busy (errcode -1): {}", e.errmsg)),
            40001 | 40014 | 42001 => FetchError::Token { errcode: e.errcode },
            45011 => FetchError::MinuteLimit,
            45009 => FetchError::Quota,
            47009 => FetchError::Retired,
            61501 => FetchError::Range { errmsg: e.errmsg },
            48001 | 50001 => FetchError::Permission { errcode: e.errcode },
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

#[derive(Clone)]
enum Broken {
    Config(i64, &'static str),
    Source(&'static str, String),
}

impl Broken {
    fn error(&self) -> FetchError {
        match self {
            Broken::Config(errcode, hint) => FetchError::Config {
                errcode: *errcode,
                hint,
            },
            Broken::Source(kind, cause) => FetchError::TokenSource {
                kind,
                cause: cause.clone(),
            },
        }
    }
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
    /// The token source failed (configuration, or retries spent): every later request
    /// fails fast with it.
    broken: std::sync::Mutex<Option<Broken>>,
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

    /// Records a token-source failure for the rest of the run; returns the error every
    /// later request of the account gets.
    fn break_with(&self, e: FetchError) -> FetchError {
        let b = match e {
            FetchError::Config { errcode, hint } => Broken::Config(errcode, hint),
            // Already recorded (by a refresh that failed).
            e @ FetchError::TokenSource { .. } => return e,
            other => Broken::Source(self.auth.kind(), other.to_string()),
        };
        let err = b.error();
        if let Ok(mut g) = self.broken.lock() {
            if g.is_none() {
                tracing::error!(account = %self.name, error = %err, "token source failed");
                *g = Some(b);
            }
        }
        err
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

/// Parses a token answer: `(token, expires_in)` from the given field. `authorizer`: the
/// answer of api_authorizer_token, whose 40001 is about the component token, not a secret.
fn token_answer(b: &[u8], field: &str, authorizer: bool) -> Result<CachedToken, FetchError> {
    let v: Value = serde_json::from_slice(b)
        .map_err(|_| FetchError::Transient("truncated token response".into()))?;
    if let Some(e) = transform::api_error(&v) {
        return Err(match e.errcode {
            // The component_access_token was superseded (the platform fetched a newer one).
            40001 if authorizer => FetchError::Token { errcode: 40001 },
            // At a secret's token endpoint 40001 means a wrong secret.
            40001 => FetchError::Config {
                errcode: 40001,
                hint: config_hint(40125).unwrap_or(""),
            },
            // About the token source, never the report being fetched.
            45009 => FetchError::TokenQuota,
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
            // A redirect would re-send the query (the access token) or the body (the app
            // secret) to wherever it points: a 3xx is an error instead.
            .redirect(reqwest::redirect::Policy::none())
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

    /// Sends a request; its body, read in chunks up to `cap` bytes.
    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        cap: usize,
    ) -> Result<bytes::Bytes, FetchError> {
        let mut resp = req.send().await.map_err(|e| transport(&e))?;
        let status = resp.status();
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(FetchError::Transient(format!("HTTP {status}")));
        }
        if status.is_redirection() {
            // The host only: the rest of the location may repeat the token.
            let to = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| reqwest::Url::parse(l).ok())
                .and_then(|u| u.host_str().map(|h| format!(" to {h}")))
                .unwrap_or_default();
            return Err(FetchError::Redirect {
                status: status.as_u16(),
                to,
            });
        }
        if !status.is_success() {
            return Err(FetchError::Api {
                errcode: -(i64::from(status.as_u16())),
                errmsg: format!("HTTP {status}"),
            });
        }
        let what = if cap == TOKEN_BODY_CAP {
            "a token response"
        } else {
            "a response body"
        };
        let too_large = FetchError::TooLarge { what, limit: cap };
        if resp.content_length().is_some_and(|n| n > cap as u64) {
            return Err(too_large);
        }
        let mut chunks: Vec<bytes::Bytes> = Vec::new();
        let mut len = 0usize;
        while let Some(c) = resp.chunk().await.map_err(|e| transport(&e))? {
            len += c.len();
            if len > cap {
                return Err(too_large);
            }
            chunks.push(c);
        }
        // One chunk (the common case) is handed on without a copy.
        Ok(match chunks.len() {
            1 => chunks.pop().unwrap_or_default(),
            _ => chunks.concat().into(),
        })
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
        F: Fn(&str) -> reqwest::RequestBuilder + Send + Sync,
    {
        let mut op = TokenCall {
            ex: self,
            acct,
            what,
            make,
            field,
        };
        let s = self
            .retry
            .schedule(self.retry.token_attempts, 0, &self.jitter);
        retry::retry(s, &mut op)
            .await
            .map(|(t, _)| t)
            .map_err(|f| token_failure(f, what))
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
            Auth::Command { command, timeout } => self.command_token(acct, command, *timeout).await,
            Auth::Component {
                component_appid,
                component_appsecret,
                component_verify_ticket,
                authorizer_refresh_token,
            } => {
                let ctoken = self
                    .component_token(
                        acct,
                        component_appid,
                        component_appsecret,
                        component_verify_ticket,
                    )
                    .await?;
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
                let mut op = AuthorizerCall {
                    ex: self,
                    acct,
                    component: (
                        component_appid,
                        component_appsecret,
                        component_verify_ticket,
                    ),
                    ctoken,
                    body,
                };
                // The component token is renewed once, unless another account of the
                // platform already did.
                let s = self
                    .retry
                    .schedule(self.retry.token_attempts, 1, &self.jitter);
                retry::retry(s, &mut op)
                    .await
                    .map(|(t, _)| t)
                    .map_err(|f| token_failure(f, "api_authorizer_token"))
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
        timeout: Duration,
    ) -> Result<CachedToken, FetchError> {
        let env = [
            ("WXCUBE_ACCOUNT", acct.name.as_str()),
            ("WXCUBE_APP_ID", acct.app_id.as_str()),
        ];
        let counters = &self.counters;
        let (cmd, env) = (command.expose(), &env);
        let jitter = Jitter::new(1);
        let out = retry::retry_fn(
            Schedule::immediate(COMMAND_ATTEMPTS, &jitter),
            move |_| {
                counters.token_calls.fetch_add(1, Ordering::Relaxed);
                command::run(cmd, env, timeout)
            },
            |_, attempt| {
                counters.retries.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(account = %acct.name, attempt, timeout_s = timeout.as_secs_f64(), "the token command did not finish in time; killed, trying again");
            },
        )
        .await
        .map_err(|e| command_error(e, timeout))?;
        let token = String::from_utf8_lossy(&out).trim().to_string();
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
        if let Some(b) = acct.broken.lock().ok().and_then(|b| b.clone()) {
            return Err(b.error());
        }
        // Stable tokens rotate in their last 5 minutes: refreshing inside that window gets
        // the next token while the old one still works.
        let fresh = g
            .as_ref()
            .filter(|t| t.expires_at > Instant::now() + Duration::from_secs(270));
        if let Some(t) = fresh {
            return Ok(t.value.clone());
        }
        // Its own retries are spent: every failure is remembered for the run (windows
        // waiting on the lock then fail at once instead of trying again).
        let t = self
            .fetch_token(acct, false)
            .await
            .map_err(|e| acct.break_with(e))?;
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
        if let Some(b) = acct.broken.lock().ok().and_then(|b| b.clone()) {
            return Err(b.error());
        }
        let t = match self.fetch_token(acct, force).await {
            // Over the forced-refresh allowance: fall back to the current stable token.
            Err(FetchError::TokenQuota) if force => self.fetch_token(acct, false).await,
            r => r,
        }
        .map_err(|e| acct.break_with(e))?;
        *g = Some(t);
        Ok(())
    }

    /// One window of one report for one account, with every retry rule applied. Publisher
    /// reports are paged (`page_size` 90) until a short page (see `paging`).
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
        let mut pager = paging::Pager::default();
        let mut first: Option<Value> = None;
        let mut attempts = 0;
        for page in 1u32.. {
            let (mut v, a) = self
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
            let items = match v.get_mut(list_key).map(Value::take) {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            };
            let total = v.get("total_num").and_then(Value::as_u64);
            if first.is_none() {
                first = Some(v);
            }
            match pager.take(items, total) {
                Ok(paging::Step::Next) => {}
                Ok(paging::Step::Done) => break,
                Err(m) => {
                    tracing::warn!(account = %acct.name, report = report.id, window = %w, page, "{m}");
                    return Err(FetchError::Paging(m));
                }
            }
        }
        let rows = pager.rows;
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
    async fn call<T: Send>(
        &self,
        acct: &AccountClient,
        report: &'static Report,
        w: Window,
        page: Option<u32>,
        today: chrono::NaiveDate,
        calls: &mut u32,
        held: &mut Option<Reservation>,
        check: impl Fn(&[u8]) -> Result<T, Result<ApiError, DecodeError>> + Send + Sync,
    ) -> Result<(T, u32), FetchError> {
        let body = json!({ "begin_date": dates::fmt(w.begin), "end_date": dates::fmt(w.end) });
        let mut op = DataCall {
            ex: self,
            acct,
            report,
            w,
            page,
            today,
            calls,
            held,
            check,
            body,
            token: None,
        };
        // A rejected token is renewed up to three times per request.
        let s = self.retry.schedule(self.retry.attempts, 3, &self.jitter);
        retry::retry(s, &mut op).await.map_err(|f| match f.spent {
            true => FetchError::Exhausted {
                attempts: f.attempts,
                last: f.error.to_string(),
            },
            false => f.error,
        })
    }
}

/// One data request (a window, or a page of one) as a retried operation.
struct DataCall<'a, C> {
    ex: &'a Extractor,
    acct: &'a AccountClient,
    report: &'static Report,
    w: Window,
    page: Option<u32>,
    today: chrono::NaiveDate,
    calls: &'a mut u32,
    held: &'a mut Option<Reservation>,
    check: C,
    body: Value,
    /// The token the last attempt sent: the one a rejection is about.
    token: Option<Secret>,
}

impl<T, C> Attempt for DataCall<'_, C>
where
    T: Send,
    C: Fn(&[u8]) -> Result<T, Result<ApiError, DecodeError>> + Send + Sync,
{
    type Ok = T;
    type Err = FetchError;

    async fn attempt(&mut self, _n: u32) -> Result<T, FetchError> {
        let (ex, acct, report) = (self.ex, self.acct, self.report);
        let token = ex.token(acct).await?;
        self.token = Some(token.clone());
        let _permit = acct
            .inflight
            .acquire()
            .await
            .map_err(|_| FetchError::Transient("shutting down".into()))?;
        acct.limiter.until_ready().await;
        ex.global.until_ready().await;
        // After the limiters, so windows waiting their turn hold none of it; once per
        // window (its 61501 halves and pages share it), so no window waits for budget
        // while holding some.
        if self.held.is_none() {
            *self.held = ex.budget.reserve(report).await;
        }
        ex.counters.data_calls.fetch_add(1, Ordering::Relaxed);
        *self.calls += 1;
        let req = match self.page {
            None => ex
                .http
                .post(format!("{}{}", acct.base(), report.path))
                .query(&[("access_token", token.expose())])
                .json(&self.body),
            Some(page) => ex
                .http
                .get(format!("{}{}", acct.base(), report.path))
                .query(&[
                    ("action", report.api),
                    ("access_token", token.expose()),
                    ("page", &page.to_string()),
                    ("page_size", &PUBLISHER_PAGE_SIZE.to_string()),
                    ("start_date", &dates::fmt(self.w.begin)),
                    ("end_date", &dates::fmt(self.w.end)),
                ]),
        };
        let bytes = ex.send(req, DATA_BODY_CAP).await?;
        match (self.check)(&bytes) {
            Ok(v) => Ok(v),
            Err(Ok(api)) => Err(FetchError::from_api(api)),
            // Invalid JSON is a truncated or garbled body: worth another try.
            Err(Err(DecodeError::Json(m))) => {
                Err(FetchError::Transient(format!("invalid JSON body ({m})")))
            }
            Err(Err(e)) => Err(FetchError::Decode(e)),
        }
    }

    fn switch(&mut self, e: &FetchError) -> bool {
        matches!(e, FetchError::Unreachable(_)) && self.acct.fail_over()
    }

    async fn refresh(&mut self, _e: &FetchError) -> Result<(), FetchError> {
        let bad = self.token.clone().unwrap_or_else(|| Secret::new(""));
        self.ex
            .refresh_after_reject(self.acct, &bad, self.today)
            .await
    }

    fn note(&mut self, e: &FetchError, attempt: u32, wait: Wait) {
        self.ex.counters.retries.fetch_add(1, Ordering::Relaxed);
        let (account, report, window) = (&self.acct.name, self.report.id, &self.w);
        match wait {
            Wait::Backoff(wait) => {
                tracing::debug!(%account, report, %window, attempt, error = %e, wait_ms = wait.as_millis() as u64, "retrying")
            }
            Wait::Refresh => {
                tracing::debug!(%account, report, %window, attempt, error = %e, "token rejected, refreshing")
            }
            Wait::Minute(wait) => {
                tracing::info!(%account, report, %window, errcode = 45011, wait_ms = wait.as_millis() as u64, "minute limit, waiting for the next minute")
            }
        }
    }
}

/// One request to a token endpoint (stable_token, token, api_component_token).
struct TokenCall<'a, F> {
    ex: &'a Extractor,
    acct: &'a AccountClient,
    what: &'a str,
    make: F,
    field: &'a str,
}

impl<F> Attempt for TokenCall<'_, F>
where
    F: Fn(&str) -> reqwest::RequestBuilder + Send + Sync,
{
    type Ok = CachedToken;
    type Err = FetchError;

    async fn attempt(&mut self, _n: u32) -> Result<CachedToken, FetchError> {
        let ex = self.ex;
        ex.global.until_ready().await;
        ex.counters.token_calls.fetch_add(1, Ordering::Relaxed);
        let req = (self.make)(&self.acct.base()).timeout(ex.retry.token_timeout());
        let b = ex.send(req, TOKEN_BODY_CAP).await?;
        token_answer(&b, self.field, false)
    }

    fn switch(&mut self, e: &FetchError) -> bool {
        matches!(e, FetchError::Unreachable(_)) && self.acct.fail_over()
    }

    fn note(&mut self, e: &FetchError, attempt: u32, wait: Wait) {
        note_token_retry(self.ex, &self.acct.name, self.what, e, attempt, wait);
    }
}

fn note_token_retry(
    ex: &Extractor,
    account: &str,
    what: &str,
    e: &FetchError,
    attempt: u32,
    wait: Wait,
) {
    ex.counters.retries.fetch_add(1, Ordering::Relaxed);
    let wait = match wait {
        Wait::Backoff(d) | Wait::Minute(d) => d,
        Wait::Refresh => Duration::ZERO,
    };
    tracing::debug!(account, attempt, error = %e, wait_ms = wait.as_millis() as u64, "{what} failed, retrying");
}

/// After a token endpoint's retries: `Exhausted` once those of a retryable error are
/// spent, else the error itself.
fn token_failure(f: Failure<FetchError>, what: &str) -> FetchError {
    if f.spent && matches!(f.error.class(), Class::Retry | Class::WaitMinute) {
        FetchError::Exhausted {
            attempts: f.attempts,
            last: format!("{what}: {}", f.error),
        }
    } else {
        f.error
    }
}

/// api_authorizer_token: an account's token from its platform's component token, which
/// is renewed when rejected or superseded.
struct AuthorizerCall<'a> {
    ex: &'a Extractor,
    acct: &'a AccountClient,
    /// component_appid, its secret and verify ticket.
    component: (&'a str, &'a Secret, &'a Secret),
    ctoken: Secret,
    body: Value,
}

impl Attempt for AuthorizerCall<'_> {
    type Ok = CachedToken;
    type Err = FetchError;

    async fn attempt(&mut self, _n: u32) -> Result<CachedToken, FetchError> {
        let (ex, acct) = (self.ex, self.acct);
        ex.global.until_ready().await;
        ex.counters.token_calls.fetch_add(1, Ordering::Relaxed);
        let req = ex
            .http
            .post(format!(
                "{}/cgi-bin/component/api_authorizer_token",
                acct.base()
            ))
            .query(&[("component_access_token", self.ctoken.expose())])
            .json(&self.body)
            .timeout(ex.retry.token_timeout());
        let b = ex.send(req, TOKEN_BODY_CAP).await?;
        let v: Value = serde_json::from_slice(&b)
            .map_err(|_| FetchError::Transient("truncated token response".into()))?;
        if let Some(next) = v
            .get("authorizer_refresh_token")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            if let Ok(mut r) = acct.refresh_token.lock() {
                *r = Some(Secret::new(next));
            }
        }
        token_answer(&b, "authorizer_access_token", true)
    }

    fn switch(&mut self, e: &FetchError) -> bool {
        matches!(e, FetchError::Unreachable(_)) && self.acct.fail_over()
    }

    async fn refresh(&mut self, _e: &FetchError) -> Result<(), FetchError> {
        let (appid, secret, ticket) = self.component;
        {
            let mut cache = self.ex.component_tokens.lock().await;
            if cache.get(appid).is_some_and(|t| t.value == self.ctoken) {
                cache.remove(appid);
            }
        }
        self.ctoken = self
            .ex
            .component_token(self.acct, appid, secret, ticket)
            .await?;
        Ok(())
    }

    fn note(&mut self, e: &FetchError, attempt: u32, wait: Wait) {
        if let (Wait::Refresh, FetchError::Token { errcode }) = (wait, e) {
            self.ex.counters.retries.fetch_add(1, Ordering::Relaxed);
            tracing::info!(account = %self.acct.name, errcode, "component_access_token rejected, renewing it");
            return;
        }
        note_token_retry(
            self.ex,
            &self.acct.name,
            "api_authorizer_token",
            e,
            attempt,
            wait,
        );
    }
}

/// A token command's failure, as the account's error.
fn command_error(e: command::Error, timeout: Duration) -> FetchError {
    let hint = match e {
        command::Error::Timeout => {
            return FetchError::Transient(format!(
                "the token command did not finish within {} s ({COMMAND_ATTEMPTS} attempts, each killed with its process group); raise auth.timeout_seconds if it is just slow",
                timeout.as_secs_f64()
            ))
        }
        // Its output and diagnostics may hold secrets: report the status only.
        command::Error::Failed(status) => {
            format!("the token command failed ({status}); run it by hand to see why")
        }
        command::Error::TooLarge => format!(
            "the token command printed more than {} KiB; it must print just the access token",
            command::OUTPUT_CAP >> 10
        ),
        command::Error::Spawn(e) | command::Error::Io(e) => {
            format!("the token command could not run: {e}")
        }
    };
    FetchError::Config {
        errcode: 0,
        hint: leak(hint),
    }
}

impl Retryable for command::Error {
    fn class(&self) -> Class {
        match self {
            command::Error::Timeout => Class::Retry,
            _ => Class::Fatal,
        }
    }
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
            FetchError::Permission { errcode: 48001 }
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

    /// A loopback HTTP/1.1 server: `answer(request line, body)` gives (status, extra
    /// headers, body); every request (line and body) is recorded.
    struct Fake {
        port: u16,
        seen: Arc<std::sync::Mutex<Vec<String>>>,
    }

    type Answer = (u16, String, Vec<u8>);

    impl Fake {
        fn start(answer: impl Fn(&str, &str) -> Answer + Send + 'static) -> Fake {
            use std::io::{BufRead, BufReader, Read, Write};
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let port = l.local_addr().expect("addr").port();
            let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
            let log = Arc::clone(&seen);
            std::thread::spawn(move || {
                for conn in l.incoming() {
                    let Ok(mut c) = conn else { return };
                    let mut r = BufReader::new(c.try_clone().expect("clone"));
                    let mut line = String::new();
                    if r.read_line(&mut line).is_err() {
                        continue;
                    }
                    let mut len = 0;
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).is_err() || h.trim().is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            if k.eq_ignore_ascii_case("content-length") {
                                len = v.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    let mut body = vec![0; len];
                    let _ = r.read_exact(&mut body);
                    let body = String::from_utf8_lossy(&body).into_owned();
                    log.lock()
                        .expect("log")
                        .push(format!("{}\n{body}", line.trim()));
                    let (status, headers, out) = answer(line.trim(), &body);
                    // Chunked when asked: no length to refuse the body by up front.
                    if headers.contains("chunked") {
                        let head =
                            format!("HTTP/1.1 {status} X\r\nConnection: close\r\n{headers}\r\n");
                        let _ = c.write_all(head.as_bytes());
                        for part in out.chunks(4096) {
                            let _ = c.write_all(format!("{:x}\r\n", part.len()).as_bytes());
                            let _ = c.write_all(part);
                            let _ = c.write_all(b"\r\n");
                        }
                        let _ = c.write_all(b"0\r\n\r\n");
                        continue;
                    }
                    let head = format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n",
                        out.len()
                    );
                    let _ = c.write_all(head.as_bytes());
                    let _ = c.write_all(&out);
                }
            });
            Fake { port, seen }
        }

        fn url(&self) -> String {
            format!("http://127.0.0.1:{}", self.port)
        }

        fn seen(&self) -> Vec<String> {
            self.seen.lock().expect("log").clone()
        }
    }

    fn ok(body: &str) -> Answer {
        (200, String::new(), body.as_bytes().to_vec())
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_millis(5),
            minute_wait: Duration::from_millis(50),
            timeout: Duration::from_secs(5),
            ..RetryPolicy::default()
        }
    }

    fn account(auth: Auth) -> Account {
        Account {
            name: "brand_cn".into(),
            app_id: "wxtest0000000001".into(),
            app_secret: Secret::new("the-app-secret"),
            auth,
            region: None,
        }
    }

    fn window() -> (&'static Report, Window, chrono::NaiveDate) {
        let d = |s| dates::parse(s).expect("date");
        let w = Window {
            begin: d("2026-01-10"),
            end: d("2026-01-16"),
        };
        (
            crate::catalog::find("user_summary").expect("report"),
            w,
            d("2026-01-20"),
        )
    }

    const TOKEN: &str = r#"{"access_token":"tok-123","expires_in":7200}"#;

    /// A redirect to another host would re-send the secret: it is not followed, and the
    /// error says so.
    #[tokio::test]
    async fn redirects_are_not_followed() {
        let elsewhere = Fake::start(|_, _| ok(TOKEN));
        let to = format!("{}/cgi-bin/stable_token", elsewhere.url());
        let front = Fake::start(move |_, _| (302, format!("Location: {to}\r\n"), Vec::new()));
        let ex = Extractor::new(100, fast(), 1).expect("extractor");
        let client = AccountClient::new(&account(Auth::StableToken), &front.url(), None, 50, 2);
        let (r, w, today) = window();
        let e = ex
            .fetch(&client, r, w, today, &mut 0)
            .await
            .err()
            .expect("refused");
        let msg = e.to_string();
        assert!(
            msg.contains("302") && msg.contains("redirect") && msg.contains("127.0.0.1"),
            "{msg}"
        );
        assert!(!msg.contains("the-app-secret"), "{msg}");
        assert_eq!(front.seen().len(), 1, "a redirect is not retried");
        assert!(elsewhere.seen().is_empty(), "the other host got nothing");
    }

    /// A body past its cap is refused (here a token answer of 100 KiB), and the token
    /// failure is remembered: the next window makes no call at all.
    #[tokio::test]
    async fn oversized_bodies_are_refused_and_a_failed_token_source_is_remembered() {
        let big = format!(
            r#"{{"access_token":"{}","expires_in":7200}}"#,
            "a".repeat(100 << 10)
        );
        let fake = Fake::start(move |_, _| ok(&big));
        let ex = Extractor::new(100, fast(), 1).expect("extractor");
        let client = AccountClient::new(&account(Auth::StableToken), &fake.url(), None, 50, 2);
        let (r, w, today) = window();
        let e = ex
            .fetch(&client, r, w, today, &mut 0)
            .await
            .err()
            .expect("refused");
        assert!(
            matches!(&e, FetchError::TokenSource { kind: "stable_token", cause } if cause.contains("larger than 65536 bytes")),
            "{e}"
        );
        let calls = fake.seen().len();
        assert_eq!(calls, 1, "a body past its cap is not retried");
        let again = ex
            .fetch(&client, r, w, today, &mut 0)
            .await
            .err()
            .expect("remembered");
        assert!(matches!(again, FetchError::TokenSource { .. }), "{again}");
        assert_eq!(fake.seen().len(), calls, "no more token attempts");
    }

    /// The same without a Content-Length: the body is read in chunks and refused at the
    /// cap.
    #[tokio::test]
    async fn an_oversized_chunked_body_is_refused_at_the_cap() {
        let big = format!(
            r#"{{"access_token":"{}","expires_in":7200}}"#,
            "a".repeat(100 << 10)
        );
        let fake = Fake::start(move |_, _| {
            (
                200,
                "Transfer-Encoding: chunked\r\n".into(),
                big.as_bytes().to_vec(),
            )
        });
        let ex = Extractor::new(100, fast(), 1).expect("extractor");
        let client = AccountClient::new(&account(Auth::StableToken), &fake.url(), None, 50, 2);
        let (r, w, today) = window();
        let e = ex
            .fetch(&client, r, w, today, &mut 0)
            .await
            .err()
            .expect("refused");
        assert!(e.to_string().contains("larger than 65536 bytes"), "{e}");
        // A small chunked answer still works.
        let fake = Fake::start(|line, _| {
            let body = if line.contains("stable_token") {
                TOKEN.to_string()
            } else {
                json!({"list": []}).to_string()
            };
            (
                200,
                "Transfer-Encoding: chunked\r\n".into(),
                body.into_bytes(),
            )
        });
        let client = AccountClient::new(&account(Auth::StableToken), &fake.url(), None, 50, 2);
        let f = ex
            .fetch(&client, r, w, today, &mut 0)
            .await
            .expect("fetched");
        assert_eq!(f.decoded.batch.num_rows(), 0);
    }

    /// A rejected token is force-refreshed; over the forced-refresh allowance (45009 on
    /// force_refresh) the current stable token is fetched instead, and the account goes on.
    #[tokio::test]
    async fn forced_refresh_over_its_allowance_falls_back_to_the_current_token() {
        let n = Arc::new(AtomicU64::new(0));
        let m = Arc::clone(&n);
        let fake = Fake::start(move |line, body| {
            if line.contains("stable_token") {
                if body.contains(r#""force_refresh":true"#) {
                    return ok(r#"{"errcode":45009,"errmsg":"reach max api daily quota limit"}"#);
                }
                let k = m.fetch_add(1, Ordering::SeqCst);
                return ok(&format!(
                    r#"{{"access_token":"tok-{k}","expires_in":7200}}"#
                ));
            }
            if line.contains("access_token=tok-0") {
                return ok(r#"{"errcode":40001,"errmsg":"invalid credential"}"#);
            }
            ok(r#"{"list":[]}"#)
        });
        let ex = Extractor::new(100, fast(), 1).expect("extractor");
        let client = AccountClient::new(&account(Auth::StableToken), &fake.url(), None, 50, 2);
        let (r, w, today) = window();
        ex.fetch(&client, r, w, today, &mut 0)
            .await
            .expect("fetched with the fallback token");
        let seen = fake.seen();
        assert_eq!(
            seen.iter()
                .filter(|s| s.contains(r#""force_refresh":true"#))
                .count(),
            1
        );
        assert_eq!(n.load(Ordering::SeqCst), 2, "{seen:?}");
    }

    /// 45011 at a token endpoint waits for the next minute and tries again; 45009 there
    /// fails the token source, never the report's quota.
    #[tokio::test]
    async fn token_endpoint_minute_limit_and_quota() {
        let n = Arc::new(AtomicU64::new(0));
        let m = Arc::clone(&n);
        let body =
            json!({"ref_date": "2026-01-10", "user_source": 0, "new_user": 1, "cancel_user": 0});
        let data = json!({ "list": [body] }).to_string();
        let fake = Fake::start(move |line, _| {
            if line.contains("stable_token") {
                if m.fetch_add(1, Ordering::SeqCst) < 2 {
                    return ok(r#"{"errcode":45011,"errmsg":"api minute-quota reach limit"}"#);
                }
                return ok(TOKEN);
            }
            ok(&data)
        });
        let ex = Extractor::new(100, fast(), 1).expect("extractor");
        let client = AccountClient::new(&account(Auth::StableToken), &fake.url(), None, 50, 2);
        let (r, w, today) = window();
        let f = ex
            .fetch(&client, r, w, today, &mut 0)
            .await
            .expect("fetched after 45011");
        assert_eq!(f.decoded.batch.num_rows(), 1);
        assert_eq!(n.load(Ordering::SeqCst), 3);

        let fake = Fake::start(|_, _| {
            ok(r#"{"errcode":45009,"errmsg":"reach max api daily quota limit"}"#)
        });
        let client = AccountClient::new(&account(Auth::StableToken), &fake.url(), None, 50, 2);
        let e = ex
            .fetch(&client, r, w, today, &mut 0)
            .await
            .err()
            .expect("failed");
        assert!(
            matches!(&e, FetchError::TokenSource { cause, .. } if cause.contains("45009")),
            "{e:?}"
        );
        assert_eq!(fake.seen().len(), 1, "45009 is not retried");
    }
}
