//! HTTP front of the simulator: routing, WeChat's validation order, faults, call log.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::routing::{any, get};
use axum::Router;
use chrono::NaiveDate;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::rng::{hs, Rng};
use super::tokens::{Flavor, Tokens};
use super::{fault_at, respond, CallRecord, FaultKind, SimConfig, SimStats, HTTP_FAULT, NO_ANSWER};
use crate::catalog::{self, Report, Status};
use crate::clock::Clock;
use crate::dates;

struct Shared {
    cfg: SimConfig,
    clock: Clock,
    start: tokio::time::Instant,
    requests: AtomicU64,
    state: Mutex<St>,
}

struct St {
    tokens: Tokens,
    /// (app_id, report id, China day) -> data calls that reached the quota check.
    quota: HashMap<(String, &'static str, NaiveDate), u32>,
    calls: Vec<CallRecord>,
    /// Token-endpoint requests and component tokens issued so far.
    token_requests: u32,
    component_grants: u32,
}

impl Shared {
    fn new(cfg: SimConfig, clock: Clock) -> Self {
        let tokens = Tokens::new(cfg.seed);
        Shared {
            cfg,
            clock,
            start: tokio::time::Instant::now(),
            requests: AtomicU64::new(0),
            state: Mutex::new(St {
                tokens,
                quota: HashMap::new(),
                calls: Vec::new(),
                token_requests: 0,
                component_grants: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, St> {
        // A panic elsewhere must not take the simulator down with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The China date now (the pinned one when the run pins `--today`).
    fn today(&self) -> NaiveDate {
        if self.clock.is_pinned() {
            self.clock.today()
        } else {
            Clock::system().today()
        }
    }

    /// Logs the arrival of a request; returns its log index and request number.
    fn arrive(&self, path: &str) -> (usize, u64) {
        let n = self.requests.fetch_add(1, Ordering::SeqCst);
        let at_ms = self.now_ms();
        let mut st = self.lock();
        st.calls.push(CallRecord {
            path: path.to_string(),
            app_id: None,
            report: None,
            begin: None,
            end: None,
            errcode: NO_ANSWER,
            fault: None,
            at_ms,
        });
        (st.calls.len() - 1, n)
    }

    fn update(&self, idx: usize, f: impl FnOnce(&mut CallRecord)) {
        if let Some(c) = self.lock().calls.get_mut(idx) {
            f(c);
        }
    }

    /// Records the outcome of a call.
    fn done(&self, idx: usize, errcode: i64) {
        if let Some(c) = self.lock().calls.get_mut(idx) {
            c.errcode = errcode;
            tracing::debug!(
                path = %c.path,
                app_id = c.app_id.as_deref().unwrap_or("-"),
                report = c.report.unwrap_or("-"),
                errcode,
                fault = c.fault.map_or("-", FaultKind::as_str),
                "simulator call"
            );
        }
    }

    fn rid(&self, n: u64) -> String {
        let mut r = Rng::new(&[self.cfg.seed, hs("rid"), n]);
        format!(
            "{:08x}-{:08x}-{:08x}",
            r.next_u64() as u32,
            r.next_u64() as u32,
            r.next_u64() as u32
        )
    }

    fn error_bytes(&self, n: u64, errcode: i64) -> Vec<u8> {
        json!({
            "errcode": errcode,
            "errmsg": format!("{} rid: {}", errmsg(errcode), self.rid(n)),
        })
        .to_string()
        .into_bytes()
    }

    /// A WeChat error body (HTTP 200), logged under `idx`.
    fn error(&self, idx: usize, n: u64, errcode: i64) -> Response {
        self.done(idx, errcode);
        json_response(StatusCode::OK, self.error_bytes(n, errcode))
    }

    async fn delay(&self, fault: Option<FaultKind>) {
        let mut ms = self.cfg.latency_ms;
        if fault == Some(FaultKind::Slow) {
            ms += self.cfg.faults.slow_ms;
        }
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }

    /// The faults decided before any validation: gateway-level ones.
    /// A data call's arrival: recorded with its report, its fault drawn and its delay
    /// served; an HTTP-level fault is the whole answer (`Err`).
    async fn arrive_data(
        &self,
        path: &str,
        report: Option<&'static str>,
    ) -> Result<(usize, u64, Option<FaultKind>), Response> {
        let (idx, n) = self.arrive(path);
        self.update(idx, |c| c.report = report);
        let fault = fault_at(&self.cfg, n, false);
        self.update(idx, |c| c.fault = fault);
        self.delay(fault).await;
        match self.http_fault(idx, fault) {
            Some(r) => Err(r),
            None => Ok((idx, n, fault)),
        }
    }

    /// A data call's answer (the body or the errcode), cut in half under `Truncated`,
    /// recorded as done.
    fn answer_data(
        &self,
        idx: usize,
        n: u64,
        fault: Option<FaultKind>,
        result: Result<Vec<u8>, i64>,
    ) -> Response {
        let (mut bytes, code) = match result {
            Ok(bytes) => (bytes, 0),
            Err(code) => (self.error_bytes(n, code), code),
        };
        let code = if fault == Some(FaultKind::Truncated) {
            // Content-Length follows the cut body: valid HTTP, invalid JSON.
            bytes.truncate(bytes.len() / 2);
            HTTP_FAULT
        } else {
            code
        };
        self.done(idx, code);
        json_response(StatusCode::OK, bytes)
    }

    fn http_fault(&self, idx: usize, fault: Option<FaultKind>) -> Option<Response> {
        match fault {
            Some(FaultKind::Http5xx) => {
                self.done(idx, HTTP_FAULT);
                let mut r = Response::new(Body::from(
                    "<html><body>503 Service Unavailable</body></html>",
                ));
                *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
                Some(r)
            }
            Some(FaultKind::Reset) => {
                self.done(idx, HTTP_FAULT);
                let chunks: Vec<Result<Bytes, io::Error>> = vec![
                    Ok(Bytes::from_static(b"{\"list\":[{\"ref_date\":\"")),
                    Err(io::Error::new(
                        io::ErrorKind::ConnectionReset,
                        "simulated reset",
                    )),
                ];
                let mut r = Response::new(Body::from_stream(futures::stream::iter(chunks)));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json; encoding=utf-8"),
                );
                Some(r)
            }
            _ => None,
        }
    }
}

fn errmsg(errcode: i64) -> &'static str {
    match errcode {
        -1 => "system error",
        40001 => "invalid credential, access_token is invalid or not latest, could get access_token by getStableAccessToken, more details at https://mmbizurl.cn/s/JtxxFh33r",
        40002 => "invalid grant_type",
        40013 => "invalid appid",
        40066 => "invalid url",
        40125 => "invalid appsecret",
        41001 => "access_token missing",
        41002 => "appid missing",
        41004 => "appsecret missing",
        42001 => "access_token expired",
        43002 => "require POST method",
        44002 => "empty post data",
        45009 => "reach max api daily quota limit",
        45011 => "api minute-quota reach limit must slower retry next minute",
        47001 => "data format error",
        47009 => "this api is offline, please use the new api",
        48001 => "api unauthorized",
        61500 => "date format error",
        61501 => "date range error",
        _ => "unknown error",
    }
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; encoding=utf-8"),
    );
    r
}

/// Decodes a query string (`a=1&b=x%20y`); the first occurrence of a key wins.
fn query(raw: Option<&str>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.entry(percent_decode(k))
            .or_insert_with(|| percent_decode(v));
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn valid_app_id(app_id: &str) -> bool {
    let rest = match app_id.strip_prefix("wx") {
        Some(r) => r,
        None => return false,
    };
    (2..=30).contains(&rest.len()) && rest.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

fn check_account(cfg: &SimConfig, app_id: &str, secret: &str) -> Result<(), i64> {
    match &cfg.accounts {
        Some(map) => match map.get(app_id) {
            None => Err(40013),
            Some(s) if s != secret => Err(40125),
            Some(_) => Ok(()),
        },
        None if valid_app_id(app_id) => Ok(()),
        None => Err(40013),
    }
}

/// `YYYY-MM-DD` exactly: digits and hyphens in place, and a real date.
fn strict_date(v: Option<&Value>) -> Option<NaiveDate> {
    let s = v?.as_str()?;
    let shape = s.len() == 10
        && s.bytes().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                c == b'-'
            } else {
                c.is_ascii_digit()
            }
        });
    if shape {
        dates::parse(s)
    } else {
        None
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/cgi-bin/stable_token", any(stable_token))
        .route("/cgi-bin/token", any(classic_token))
        .route(
            "/cgi-bin/component/api_component_token",
            any(component_token),
        )
        .route(
            "/cgi-bin/component/api_authorizer_token",
            any(authorizer_token),
        )
        .route("/datacube/{api}", any(datacube))
        .route("/publisher/stat", any(publisher_stat))
        .route("/_sim/stats", get(stats))
        .route("/_sim/tokens", get(tokens))
        .fallback(not_found)
        .with_state(shared)
}

type Sh = State<Arc<Shared>>;

async fn not_found(State(sh): Sh, uri: axum::http::Uri) -> Response {
    let (idx, n) = sh.arrive(uri.path());
    let mut r = sh.error(idx, n, 40066);
    *r.status_mut() = StatusCode::NOT_FOUND;
    r
}

/// Token-endpoint checks shared by both flavours; returns the app_id.
fn token_params(
    cfg: &SimConfig,
    grant_type: Option<&str>,
    app_id: Option<&str>,
    secret: Option<&str>,
) -> Result<String, i64> {
    if grant_type != Some("client_credential") {
        return Err(40002);
    }
    let app_id = app_id.filter(|a| !a.is_empty()).ok_or(41002)?;
    let secret = secret.filter(|s| !s.is_empty()).ok_or(41004)?;
    check_account(cfg, app_id, secret)?;
    Ok(app_id.to_string())
}

fn grant_response(token: String, expires_in: u64) -> Response {
    let body = json!({"access_token": token, "expires_in": expires_in});
    json_response(StatusCode::OK, body.to_string().into_bytes())
}

async fn classic_token(State(sh): Sh, RawQuery(raw): RawQuery) -> Response {
    let (idx, n) = sh.arrive("/cgi-bin/token");
    let q = query(raw.as_deref());
    let app = q.get("appid").cloned();
    sh.update(idx, |c| c.app_id = app.clone());
    if let Some(r) = token_fault(&sh, idx, n).await {
        return r;
    }
    let app_id = match token_params(
        &sh.cfg,
        q.get("grant_type").map(String::as_str),
        q.get("appid").map(String::as_str),
        q.get("secret").map(String::as_str),
    ) {
        Ok(a) => a,
        Err(code) => return sh.error(idx, n, code),
    };
    if sh.cfg.token_quota_exhausted.contains(&app_id) {
        return sh.error(idx, n, 45009);
    }
    let now = sh.now_ms();
    let grant = sh.lock().tokens.classic(&app_id, now);
    match grant {
        Ok((token, expires_in)) => {
            sh.done(idx, 0);
            grant_response(token, expires_in)
        }
        Err(code) => sh.error(idx, n, code),
    }
}

/// A token endpoint's injected fault, if this request gets one: token endpoints only ever
/// see gateway faults and "busy".
async fn token_fault(sh: &Shared, idx: usize, n: u64) -> Option<Response> {
    let fault = fault_at(&sh.cfg, n, true);
    sh.update(idx, |c| c.fault = fault);
    sh.delay(fault).await;
    if let Some(r) = sh.http_fault(idx, fault) {
        return Some(r);
    }
    if fault == Some(FaultKind::Busy) {
        return Some(sh.error(idx, n, -1));
    }
    let limited = {
        let mut st = sh.lock();
        st.token_requests += 1;
        st.token_requests <= sh.cfg.token_minute_limit
    };
    limited.then(|| sh.error(idx, n, 45011))
}

fn body_field(parsed: &Option<Value>, k: &str) -> Option<String> {
    parsed
        .as_ref()
        .and_then(|v| v.get(k))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// A POST token call's arrival: recorded with the app id from `app_key` of its JSON body,
/// its token-endpoint fault served, then POST required (43002). Returns the call's index
/// and number, the parsed body and the app id.
async fn arrive_post_token(
    sh: &Shared,
    path: &str,
    method: &Method,
    body: &[u8],
    app_key: &str,
) -> Result<(usize, u64, Option<Value>, Option<String>), Response> {
    let (idx, n) = sh.arrive(path);
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let app = body_field(&parsed, app_key);
    sh.update(idx, |c| c.app_id = app.clone());
    if let Some(r) = token_fault(sh, idx, n).await {
        return Err(r);
    }
    if *method != Method::POST {
        return Err(sh.error(idx, n, 43002));
    }
    Ok((idx, n, parsed, app))
}

/// `POST /cgi-bin/component/api_component_token` (reference §5.3).
async fn component_token(State(sh): Sh, method: Method, body: Bytes) -> Response {
    let path = "/cgi-bin/component/api_component_token";
    let (idx, n, parsed, appid) =
        match arrive_post_token(&sh, path, &method, &body, "component_appid").await {
            Ok(a) => a,
            Err(r) => return r,
        };
    let Some(appid) = appid else {
        return sh.error(idx, n, 41002);
    };
    let Some(secret) = body_field(&parsed, "component_appsecret") else {
        return sh.error(idx, n, 41004);
    };
    if body_field(&parsed, "component_verify_ticket").is_none() {
        return sh.error(idx, n, 61006);
    }
    if let Some(map) = &sh.cfg.components {
        match map.get(&appid) {
            None => return sh.error(idx, n, 40013),
            Some(s) if *s != secret => return sh.error(idx, n, 40125),
            Some(_) => {}
        }
    }
    let now = sh.now_ms();
    let grant = {
        let mut st = sh.lock();
        let grant = st
            .tokens
            .rotating(&format!("component:{appid}"), now, Flavor::Component);
        st.component_grants += 1;
        if st.component_grants <= sh.cfg.stale_component_tokens {
            if let Ok((t, _)) = &grant {
                st.tokens.supersede(t, now);
            }
        }
        grant
    };
    match grant {
        Ok((token, expires_in)) => {
            sh.done(idx, 0);
            let body = json!({"component_access_token": token, "expires_in": expires_in});
            json_response(StatusCode::OK, body.to_string().into_bytes())
        }
        Err(code) => sh.error(idx, n, code),
    }
}

/// `POST /cgi-bin/component/api_authorizer_token?component_access_token=...`.
async fn authorizer_token(
    State(sh): Sh,
    method: Method,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    let path = "/cgi-bin/component/api_authorizer_token";
    let (idx, n, parsed, authorizer) =
        match arrive_post_token(&sh, path, &method, &body, "authorizer_appid").await {
            Ok(a) => a,
            Err(r) => return r,
        };
    let q = query(raw.as_deref());
    let Some(ctoken) = q.get("component_access_token").filter(|t| !t.is_empty()) else {
        return sh.error(idx, n, 41001);
    };
    let now = sh.now_ms();
    let owner = sh.lock().tokens.check(ctoken, now).map(str::to_string);
    let component = match owner {
        Ok(o) if o.starts_with("component:") => o,
        Ok(_) => return sh.error(idx, n, 40001),
        Err(rej) => return sh.error(idx, n, rej.errcode()),
    };
    if body_field(&parsed, "component_appid").map(|a| format!("component:{a}")) != Some(component) {
        return sh.error(idx, n, 40013);
    }
    let Some(authorizer) = authorizer.filter(|a| valid_app_id(a)) else {
        return sh.error(idx, n, 40013);
    };
    let refresh = body_field(&parsed, "authorizer_refresh_token");
    let Some(refresh) = refresh.filter(|r| !sh.cfg.revoked_refresh_tokens.contains(r)) else {
        return sh.error(idx, n, 61023);
    };
    let grant = sh
        .lock()
        .tokens
        .rotating(&authorizer, now, Flavor::Authorizer);
    match grant {
        Ok((token, expires_in)) => {
            sh.done(idx, 0);
            let body = json!({"authorizer_access_token": token, "expires_in": expires_in, "authorizer_refresh_token": refresh});
            json_response(StatusCode::OK, body.to_string().into_bytes())
        }
        Err(code) => sh.error(idx, n, code),
    }
}

async fn stable_token(State(sh): Sh, method: Method, body: Bytes) -> Response {
    let (idx, n, parsed, _) =
        match arrive_post_token(&sh, "/cgi-bin/stable_token", &method, &body, "appid").await {
            Ok(a) => a,
            Err(r) => return r,
        };
    let field = |k: &str| body_field(&parsed, k);
    if body.iter().all(u8::is_ascii_whitespace) {
        return sh.error(idx, n, 44002);
    }
    let Some(Value::Object(obj)) = &parsed else {
        return sh.error(idx, n, 47001);
    };
    let app_id = match token_params(
        &sh.cfg,
        field("grant_type").as_deref(),
        field("appid").as_deref(),
        field("secret").as_deref(),
    ) {
        Ok(a) => a,
        Err(code) => return sh.error(idx, n, code),
    };
    if sh.cfg.token_quota_exhausted.contains(&app_id) {
        return sh.error(idx, n, 45009);
    }
    let force = match obj.get("force_refresh") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        _ => false,
    };
    let now = sh.now_ms();
    let today = sh.today();
    let grant = sh.lock().tokens.stable(&app_id, force, now, today);
    match grant {
        Ok((token, expires_in)) => {
            sh.done(idx, 0);
            grant_response(token, expires_in)
        }
        Err(code) => sh.error(idx, n, code),
    }
}

async fn datacube(
    State(sh): Sh,
    method: Method,
    Path(api): Path<String>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    let path = format!("/datacube/{api}");
    let Some(report) = catalog::find(&api).filter(|r| r.api == api) else {
        let (idx, n) = sh.arrive(&path);
        let mut r = sh.error(idx, n, 40066);
        *r.status_mut() = StatusCode::NOT_FOUND;
        return r;
    };
    let (idx, n, fault) = match sh.arrive_data(&path, Some(report.id)).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let result = answer(&sh, idx, report, method, raw.as_deref(), &body, fault);
    sh.answer_data(idx, n, fault, result)
}

/// `GET /publisher/stat?action=...` (reference §2.6): paged with page/page_size (at most
/// 90), dates in the query; parameter errors in `base_resp`, token and quota errors as
/// errcode. (WeChat's own `ret` codes are undocumented; -202 is used for bad parameters.)
async fn publisher_stat(State(sh): Sh, method: Method, RawQuery(raw): RawQuery) -> Response {
    let q = query(raw.as_deref());
    let action = q.get("action").cloned().unwrap_or_default();
    let report = catalog::PUBLISHER.iter().find(|r| r.api == action);
    let (idx, n, fault) = match sh
        .arrive_data("/publisher/stat", report.map(|r| r.id))
        .await
    {
        Ok(a) => a,
        Err(r) => return r,
    };
    let bad = |msg: &str| {
        json!({"base_resp": {"ret": -202, "err_msg": msg}})
            .to_string()
            .into_bytes()
    };
    let result: Result<Vec<u8>, i64> = (|| {
        if method != Method::GET {
            return Err(43002);
        }
        let app_id = authorize(&sh, idx, &q, fault)?;
        let Some(report) = report else {
            return Ok(bad("invalid action"));
        };
        let page: usize = match q.get("page").and_then(|p| p.parse().ok()) {
            Some(p) if p >= 1 => p,
            _ => return Ok(bad("invalid page")),
        };
        let size: usize = match q.get("page_size").and_then(|p| p.parse().ok()) {
            Some(s) if (1..=90).contains(&s) => s,
            _ => return Ok(bad("invalid page_size")),
        };
        let begin = strict_date(
            q.get("start_date")
                .map(|s| Value::String(s.clone()))
                .as_ref(),
        );
        let end = strict_date(q.get("end_date").map(|s| Value::String(s.clone())).as_ref());
        let (begin, end, today) = admit(&sh, idx, report, &app_id, begin, end)?;
        let whole = respond(&sh.cfg, today, report, &app_id, begin, end);
        let key = match report.protocol() {
            catalog::Protocol::Publisher { list } => list,
            catalog::Protocol::Datacube => "list",
        };
        Ok(super::publisher::page(&sh.cfg, whole, key, page, size)
            .to_string()
            .into_bytes())
    })();
    sh.answer_data(idx, n, fault, result)
}

/// The data call's token (41001 / 40001 / 42001), then the errcode faults that strike after
/// the token check; returns the account the token acts for.
fn authorize(
    sh: &Shared,
    idx: usize,
    q: &HashMap<String, String>,
    fault: Option<FaultKind>,
) -> Result<String, i64> {
    let token = q
        .get("access_token")
        .filter(|t| !t.is_empty())
        .ok_or(41001)?;
    let now = sh.now_ms();
    let app_id = {
        let st = sh.lock();
        let owner = st.tokens.owner(token).map(str::to_string);
        let checked = st.tokens.check(token, now).map(str::to_string);
        drop(st);
        sh.update(idx, |c| c.app_id = owner);
        match checked.map_err(|r| r.errcode())? {
            // A platform's own token does not act for any account.
            a if a.starts_with("component:") => return Err(40001),
            a => a,
        }
    };
    match fault {
        Some(FaultKind::Busy) => Err(-1),
        Some(FaultKind::TokenExpired) => Err(42001),
        Some(FaultKind::MinuteLimit) => Err(45011),
        _ => Ok(app_id),
    }
}

/// The checks both data endpoints make once the dates are read, in WeChat's order: dates
/// present (61500), within the span and before today (61501), a retired legacy report
/// (47009; publisher reports are never legacy), access (48001), the daily quota (45009;
/// the call is counted). Returns the window and today.
fn admit(
    sh: &Shared,
    idx: usize,
    report: &'static Report,
    app_id: &str,
    begin: Option<NaiveDate>,
    end: Option<NaiveDate>,
) -> Result<(NaiveDate, NaiveDate, NaiveDate), i64> {
    sh.update(idx, |c| {
        c.begin = begin;
        c.end = end;
    });
    let (Some(begin), Some(end)) = (begin, end) else {
        return Err(61500);
    };
    let today = sh.today();
    let span = sh.cfg.spans.get(report.id).copied().unwrap_or(report.span);
    if begin > end || (end - begin).num_days() >= i64::from(span) || end >= today {
        return Err(61501);
    }
    if sh.cfg.legacy_retired && report.status == Status::Legacy {
        return Err(47009);
    }
    if sh.cfg.denies(app_id, report) {
        return Err(48001);
    }
    if let Some(limit) = sh.cfg.daily_quota {
        let mut st = sh.lock();
        let used = st
            .quota
            .entry((app_id.to_owned(), report.id, today))
            .or_insert(0);
        if *used >= limit {
            return Err(45009);
        }
        *used += 1;
    }
    Ok((begin, end, today))
}

/// WeChat's validation order (reference §8.1), then the rows: the success body or the
/// errcode.
fn answer(
    sh: &Shared,
    idx: usize,
    report: &'static Report,
    method: Method,
    raw_query: Option<&str>,
    body: &[u8],
    fault: Option<FaultKind>,
) -> Result<Vec<u8>, i64> {
    if method != Method::POST {
        return Err(43002);
    }
    let q = query(raw_query);
    let app_id = authorize(sh, idx, &q, fault)?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(44002);
    }
    let v: Value = serde_json::from_slice(body).map_err(|_| 47001)?;
    if !v.is_object() {
        return Err(47001);
    }
    let begin = strict_date(v.get("begin_date"));
    let end = strict_date(v.get("end_date"));
    let (begin, end, today) = admit(sh, idx, report, &app_id, begin, end)?;
    Ok(respond(&sh.cfg, today, report, &app_id, begin, end)
        .to_string()
        .into_bytes())
}

fn stats_json(s: &SimStats) -> Value {
    let group = |ok_only: bool| {
        let mut m: BTreeMap<String, BTreeMap<&'static str, usize>> = BTreeMap::new();
        for ((app, rep), n) in s.per_report(ok_only) {
            m.entry(app).or_default().insert(rep, n);
        }
        m
    };
    json!({
        "requests": s.calls.len(),
        "data_calls": group(false),
        "data_calls_ok": group(true),
        "calls": s.calls,
    })
}

async fn stats(State(sh): Sh) -> Response {
    let s = SimStats {
        calls: sh.lock().calls.clone(),
    };
    json_response(StatusCode::OK, stats_json(&s).to_string().into_bytes())
}

async fn tokens(State(sh): Sh) -> Response {
    let t = sh.lock().tokens.issued().to_vec();
    json_response(
        StatusCode::OK,
        json!({ "tokens": t }).to_string().into_bytes(),
    )
}

/// A running simulator on loopback.
pub struct SimHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl SimHandle {
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stats(&self) -> SimStats {
        SimStats {
            calls: self.shared.lock().calls.clone(),
        }
    }

    pub fn issued_tokens(&self) -> Vec<String> {
        self.shared.lock().tokens.issued().to_vec()
    }

    /// Stops accepting, lets in-flight requests finish (at most 5 s), then returns.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Serves on 127.0.0.1, on a port the OS picks.
pub async fn start(cfg: SimConfig, clock: Clock) -> io::Result<SimHandle> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared::new(cfg, clock));
    let app = router(shared.clone());
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
    });
    Ok(SimHandle {
        addr,
        shared,
        stop: Some(tx),
        task: Some(task),
    })
}

/// Serves on `listener` until the process ends (`wxcube simulate`).
pub async fn serve(cfg: SimConfig, clock: Clock, listener: TcpListener) -> io::Result<()> {
    let shared = Arc::new(Shared::new(cfg, clock));
    axum::serve(listener, router(shared)).await
}
