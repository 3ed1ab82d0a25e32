//! Token sources: stable_token, the classic token, a static token, a token command and a
//! third-party platform's component token; the account's token cache, its refresh after
//! a rejection, and the account failed for the run when its source fails.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{json, Value};

use crate::clock::Instant;
use crate::pipeline::Auth;
use crate::retry::{self, Attempt, Class, Failure, Jitter, Retryable, Schedule, Wait};
use crate::secret::Secret;
use crate::transform;

use super::client::{parse_url, AccountClient, Call, Extractor, TOKEN_BODY_CAP};
use super::command;
use super::errors::{command_error, config_hint, FetchError};

/// A token command that times out is tried once more.
pub(super) const COMMAND_ATTEMPTS: u32 = 2;

pub(super) struct CachedToken {
    pub(super) value: Secret,
    pub(super) expires_at: Instant,
}

#[derive(Default)]
pub(super) struct ForcedLog {
    day: Option<chrono::NaiveDate>,
    count: u32,
    last: Option<Instant>,
}

#[derive(Clone)]
pub(super) enum Broken {
    Config(i64, &'static str),
    Source(&'static str, String),
}

impl Broken {
    pub(super) fn error(&self) -> FetchError {
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
    /// A token request retried on the token schedule (`refreshes`: renewals of a rejected
    /// credential); `Exhausted` once a retryable error's attempts are spent.
    async fn token_retry<A>(
        &self,
        op: &mut A,
        refreshes: u32,
        what: &str,
    ) -> Result<CachedToken, FetchError>
    where
        A: Attempt<Ok = CachedToken, Err = FetchError>,
    {
        let s = self
            .retry
            .schedule(self.retry.token_attempts, refreshes, &self.jitter);
        retry::retry(s, &mut *op)
            .await
            .map(|(t, _)| t)
            .map_err(|f| token_failure(f, what))
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
        F: Fn(&str) -> Result<Call, FetchError> + Send + Sync,
    {
        let mut op = TokenCall {
            ex: self,
            acct,
            what,
            make,
            field,
        };
        self.token_retry(&mut op, 0, what).await
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
                        Ok(Call::post(
                            parse_url(&format!("{b}/cgi-bin/stable_token"))?,
                            &body,
                        ))
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
                        Ok(
                            Call::get(parse_url(&format!("{b}/cgi-bin/token"))?).with_query(&[
                                ("grant_type", "client_credential"),
                                ("appid", acct.app_id.as_str()),
                                ("secret", acct.secret.expose()),
                            ]),
                        )
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
                self.token_retry(&mut op, 1, "api_authorizer_token").await
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
                    Ok(Call::post(
                        parse_url(&format!("{b}/cgi-bin/component/api_component_token"))?,
                        &body,
                    ))
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
    pub(super) async fn token(&self, acct: &AccountClient) -> Result<Secret, FetchError> {
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
    pub(super) async fn refresh_after_reject(
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
    F: Fn(&str) -> Result<Call, FetchError> + Send + Sync,
{
    type Ok = CachedToken;
    type Err = FetchError;

    async fn attempt(&mut self, _n: u32) -> Result<CachedToken, FetchError> {
        let ex = self.ex;
        ex.global.until_ready().await;
        ex.counters.token_calls.fetch_add(1, Ordering::Relaxed);
        let req = (self.make)(&self.acct.base())?.timeout(ex.retry.token_timeout());
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
        let url = parse_url(&format!(
            "{}/cgi-bin/component/api_authorizer_token",
            acct.base()
        ))?;
        let req = Call::post(url, &self.body)
            .with_query(&[("component_access_token", self.ctoken.expose())])
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
