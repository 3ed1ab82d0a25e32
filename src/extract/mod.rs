//! Extract: one decoded response per window, fetched under the account's token, limits
//! and retry rules.
//!
//! - `client`: `Extractor` and `AccountClient` (one account's host, failover, token cache):
//!   sending a request, reading its body under a cap, fetching a window (publisher reports
//!   page by page, see `paging`).
//! - `h1`: requests to `http://` hosts (no proxy), written and read in the calling task;
//!   reqwest sends the rest.
//! - `auth`: the token sources (stable_token, classic token, static, command, component)
//!   and the refresh after a rejected token.
//! - `limit`: the rate limiters, the per-account in-flight cap and the shared memory
//!   budget, each a piece of its own that `Extractor::call` composes.
//! - `errors`: `FetchError`, its `Retryable::class`, and the hints for configuration
//!   errors. Every retry goes through `crate::retry::retry`.
//!
//! What fails what:
//! - Tokens: one per account, shared by all its requests, refreshed before expiry; on
//!   40001/40014/42001 refreshed (forced when allowed: at most 20 a day, 30 s apart) and
//!   the request replayed, at most 3 times per request.
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

mod auth;
mod client;
mod command;
mod errors;
mod h1;
pub mod limit;
mod paging;
#[cfg(test)]
mod tests;

pub use crate::retry::{Jitter, RetryPolicy};
pub use client::{AccountClient, Counters, Extractor, Fetched, DATA_BODY_CAP, TOKEN_BODY_CAP};
pub use errors::{config_hint, FetchError};
pub use limit::{InFlight, Reservation};
pub use paging::PAGE_SIZE as PUBLISHER_PAGE_SIZE;
