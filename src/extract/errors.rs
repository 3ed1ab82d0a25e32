//! Extract's errors: `FetchError`, what each asks of the retry loop (`Retryable`), the
//! WeChat errcodes mapped to it, and the hints for configuration errors.

use std::time::Duration;

use crate::retry::{Class, Retryable};
use crate::secret::redact;
use crate::transform::{ApiError, DecodeError};

use super::auth::COMMAND_ATTEMPTS;
use super::command;

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
    pub(super) fn from_api(e: ApiError) -> FetchError {
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

/// A token command's failure, as the account's error.
pub(super) fn command_error(e: command::Error, timeout: Duration) -> FetchError {
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
pub(super) fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

pub(super) fn transport(e: &reqwest::Error) -> FetchError {
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
