//! The client: `Extractor` (HTTP, global limit, retry policy, counters) and
//! `AccountClient` (one account's host, failover, token cache, limits); sending a request
//! and fetching a window.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::catalog::{Protocol, Report};
use crate::dates;
use crate::pipeline::{Account, Auth};
use crate::retry::{self, Attempt, Jitter, RetryPolicy, Wait};
use crate::secret::{redact, Secret};
use crate::transform::{self, ApiError, DecodeError, Decoded};
use crate::window::Window;

use super::auth::{Broken, CachedToken, ForcedLog};
use super::errors::{transport, FetchError};
use super::limit::{Cap, InFlight, RateLimiter, Reservation};
use super::paging::{self, PAGE_SIZE as PUBLISHER_PAGE_SIZE};

/// The most a response body may hold: a data window (a publisher page, a day of articles)
/// is far below it; past it the body is refused, not read into memory.
pub const DATA_BODY_CAP: usize = 64 << 20;
/// A token endpoint's answer is a few hundred bytes.
pub const TOKEN_BODY_CAP: usize = 64 << 10;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One request as wxcube sends them: a URL (its query included), a JSON body for a POST,
/// and a timeout of its own (else the policy's).
pub(super) struct Call {
    pub method: reqwest::Method,
    pub url: reqwest::Url,
    pub json: Option<Vec<u8>>,
    pub timeout: Option<Duration>,
}

/// A URL from configuration text (the base URL is checked when the pipeline loads).
pub(super) fn parse_url(text: &str) -> Result<reqwest::Url, FetchError> {
    reqwest::Url::parse(text)
        .map_err(|e| FetchError::Transient(format!("invalid URL {}: {e}", redact(text))))
}

impl Call {
    pub(super) fn get(url: reqwest::Url) -> Self {
        Call {
            method: reqwest::Method::GET,
            url,
            json: None,
            timeout: None,
        }
    }

    pub(super) fn post(url: reqwest::Url, body: &Value) -> Self {
        Call {
            method: reqwest::Method::POST,
            url,
            json: Some(serde_json::to_vec(body).unwrap_or_default()),
            timeout: None,
        }
    }

    pub(super) fn with_query(mut self, query: &[(&str, &str)]) -> Self {
        self.url.query_pairs_mut().extend_pairs(query);
        self
    }

    pub(super) fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }

    /// Through reqwest's builder, which also turns a user name and password in the URL
    /// into Basic auth.
    pub(super) fn into_builder(self, http: &reqwest::Client) -> reqwest::RequestBuilder {
        let mut b = http.request(self.method, self.url);
        if let Some(body) = self.json {
            b = b
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        match self.timeout {
            Some(t) => b.timeout(t),
            None => b,
        }
    }
}

/// One account's connection to WeChat: its token source, host, limiter and in-flight cap.
pub struct AccountClient {
    pub name: String,
    pub(super) app_id: String,
    pub(super) secret: Secret,
    pub(super) auth: Auth,
    /// The host in use, and the one to fail over to when it cannot be reached.
    base: std::sync::Mutex<String>,
    failover: std::sync::Mutex<Option<String>>,
    /// Each endpoint's URL, parsed once per host (a parse per call was 2.5% of workload
    /// R's CPU), with the host it was parsed for.
    urls: std::sync::Mutex<std::collections::HashMap<&'static str, (String, reqwest::Url)>>,
    pub(super) token: Mutex<Option<CachedToken>>,
    /// The token source failed (configuration, or retries spent): every later request
    /// fails fast with it.
    pub(super) broken: std::sync::Mutex<Option<Broken>>,
    /// A component flow may rotate the authorizer refresh token.
    pub(super) refresh_token: std::sync::Mutex<Option<Secret>>,
    pub(super) forced: Mutex<ForcedLog>,
    pub(super) limiter: RateLimiter,
    pub(super) inflight: Cap,
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
            urls: Default::default(),
            token: Mutex::new(None),
            broken: std::sync::Mutex::new(None),
            refresh_token: std::sync::Mutex::new(None),
            forced: Mutex::new(ForcedLog::default()),
            limiter: RateLimiter::per_second(rps),
            inflight: Cap::new(max_in_flight),
        }
    }

    pub(super) fn base(&self) -> String {
        self.base.lock().map(|b| b.clone()).unwrap_or_default()
    }

    /// `path` on the host in use, with these query pairs.
    fn url(&self, path: &'static str, query: &[(&str, &str)]) -> Result<reqwest::Url, FetchError> {
        let base = self.base();
        let cached = self.urls.lock().ok().and_then(|urls| {
            urls.get(path)
                .filter(|(b, _)| *b == base)
                .map(|(_, u)| u.clone())
        });
        let mut url = match cached {
            Some(u) => u,
            None => {
                let u = parse_url(&format!("{base}{path}"))?;
                if let Ok(mut urls) = self.urls.lock() {
                    urls.insert(path, (base, u.clone()));
                }
                u
            }
        };
        url.query_pairs_mut().extend_pairs(query);
        Ok(url)
    }

    /// Records a token-source failure for the rest of the run; returns the error every
    /// later request of the account gets.
    pub(super) fn break_with(&self, e: FetchError) -> FetchError {
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
    pub(super) fn fail_over(&self) -> bool {
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
    /// Built when a request first needs it (https, a proxy): building it sets up TLS,
    /// ~9 ms of CPU a run that plain-HTTP runs need not spend.
    http: std::sync::OnceLock<Result<reqwest::Client, String>>,
    h1: super::h1::H1,
    pub(super) global: RateLimiter,
    pub retry: RetryPolicy,
    pub(super) jitter: Jitter,
    pub counters: Arc<Counters>,
    /// Memory for windows fetched but not yet loaded, shared by all accounts.
    pub budget: InFlight,
    /// component_access_token per component_appid, shared by its authorised accounts.
    pub(super) component_tokens: Mutex<std::collections::HashMap<String, CachedToken>>,
}

/// A successful window.
pub struct Fetched {
    pub decoded: Decoded,
    pub attempts: u32,
}

impl Extractor {
    pub fn new(global_rps: u32, retry: RetryPolicy, seed: u64) -> Self {
        Extractor {
            http: std::sync::OnceLock::new(),
            h1: super::h1::H1::new(CONNECT_TIMEOUT),
            global: RateLimiter::per_second(global_rps),
            retry,
            jitter: Jitter::new(seed),
            counters: Arc::new(Counters::default()),
            budget: InFlight::default(),
            component_tokens: Mutex::new(std::collections::HashMap::new()),
        }
    }

    fn http(&self) -> Result<&reqwest::Client, FetchError> {
        let built = self.http.get_or_init(|| {
            reqwest::Client::builder()
                // A redirect would re-send the query (the access token) or the body (the
                // app secret) to wherever it points: a 3xx is an error instead.
                .redirect(reqwest::redirect::Policy::none())
                .timeout(self.retry.timeout)
                .connect_timeout(CONNECT_TIMEOUT)
                .pool_max_idle_per_host(64)
                .build()
                .map_err(|e| redact(&e.to_string()))
        });
        built
            .as_ref()
            .map_err(|e| FetchError::Transient(format!("HTTP client: {e}")))
    }

    /// Sends a request; its body, read in chunks up to `cap` bytes.
    pub(super) async fn send(&self, req: Call, cap: usize) -> Result<bytes::Bytes, FetchError> {
        let what = if cap == TOKEN_BODY_CAP {
            "a token response"
        } else {
            "a response body"
        };
        let too_large = || FetchError::TooLarge { what, limit: cap };
        if self.h1.serves(&req.url) {
            let timeout = req.timeout.unwrap_or(self.retry.timeout);
            let a = self.h1.send(&req, cap, timeout, too_large).await?;
            refuse(a.status, a.location.as_deref())?;
            return Ok(a.body.unwrap_or_default());
        }
        let http = self.http()?;
        let mut resp = req
            .into_builder(http)
            .send()
            .await
            .map_err(|e| transport(&e))?;
        refuse(
            resp.status().as_u16(),
            resp.headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok()),
        )?;
        if resp.content_length().is_some_and(|n| n > cap as u64) {
            return Err(too_large());
        }
        let mut chunks: Vec<bytes::Bytes> = Vec::new();
        let mut len = 0usize;
        while let Some(c) = resp.chunk().await.map_err(|e| transport(&e))? {
            len += c.len();
            if len > cap {
                return Err(too_large());
            }
            chunks.push(c);
        }
        // One chunk (the common case) is handed on without a copy.
        Ok(match chunks.len() {
            1 => chunks.pop().unwrap_or_default(),
            _ => chunks.concat().into(),
        })
    }
}

/// The error an answer's status is, if it is not a success: 5xx and 429 are worth
/// another try, a redirect is refused (naming only the host it points to: the rest of
/// the location may repeat the token), any other status is the API's error.
fn refuse(status: u16, location: Option<&str>) -> Result<(), FetchError> {
    let text = || {
        reqwest::StatusCode::from_u16(status)
            .map(|s| s.to_string())
            .unwrap_or_else(|_| status.to_string())
    };
    if (500..600).contains(&status) || status == 429 {
        return Err(FetchError::Transient(format!("HTTP {}", text())));
    }
    if (300..400).contains(&status) {
        let to = location
            .and_then(|l| reqwest::Url::parse(l).ok())
            .and_then(|u| u.host_str().map(|h| format!(" to {h}")))
            .unwrap_or_default();
        return Err(FetchError::Redirect { status, to });
    }
    if !(200..300).contains(&status) {
        return Err(FetchError::Api {
            errcode: -(i64::from(status)),
            errmsg: format!("HTTP {}", text()),
        });
    }
    Ok(())
}

impl Extractor {
    /// One window of one report for one account, with every retry rule applied. Publisher
    /// reports are paged (`page_size` 90) until a short page (see `paging`). The window's
    /// share of the in-flight budget is held in `held` (kept until the loader has the rows;
    /// `&mut None` to release it on return).
    pub async fn fetch_held(
        &self,
        acct: &AccountClient,
        report: &'static Report,
        w: Window,
        today: chrono::NaiveDate,
        calls: &mut u32,
        held: &mut Option<Reservation>,
    ) -> Result<Fetched, FetchError> {
        let list_key = match report.protocol() {
            Protocol::Datacube => {
                let (decoded, attempts) = self
                    .call(acct, report, w, None, today, calls, held, |b| {
                        transform::decode(report, b)
                    })
                    .await?;
                return Ok(Fetched { decoded, attempts });
            }
            Protocol::Publisher { list } => list,
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
        let body = serde_json::to_vec(
            &json!({ "begin_date": dates::fmt(w.begin), "end_date": dates::fmt(w.end) }),
        )
        .unwrap_or_default();
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
    /// The JSON body of a datacube POST.
    body: Vec<u8>,
    /// The token the last attempt sent: the one a rejection is about.
    pub(super) token: Option<Secret>,
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
        // The limits in order: the account's cap, its rate, the global rate, the budget.
        let _slot = acct
            .inflight
            .acquire()
            .await
            .ok_or_else(|| FetchError::Transient("shutting down".into()))?;
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
            None => Call {
                method: reqwest::Method::POST,
                url: acct.url(report.path, &[("access_token", token.expose())])?,
                json: Some(self.body.clone()),
                timeout: None,
            },
            Some(page) => Call::get(acct.url(
                report.path,
                &[
                    ("action", report.api),
                    ("access_token", token.expose()),
                    ("page", &page.to_string()),
                    ("page_size", &PUBLISHER_PAGE_SIZE.to_string()),
                    ("start_date", &dates::fmt(self.w.begin)),
                    ("end_date", &dates::fmt(self.w.end)),
                ],
            )?),
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
