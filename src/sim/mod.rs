//! The built-in WeChat API simulator (DESIGN §6).
//!
//! Interface used by the rest of wxcube (the body is being built):
//! - `SimConfig`: the `api: { simulator: {...} }` block and `wxcube simulate` flags.
//! - `start(cfg, clock)` serves on 127.0.0.1 on an ephemeral port and returns a handle.
//! - `respond(...)`: the deterministic body a data endpoint returns, for tests.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    /// Same seed, same rows.
    #[serde(default)]
    pub seed: u64,
}

// TEMPORARY stub until the simulator lands.
pub struct SimHandle;
impl SimHandle {
    pub fn base_url(&self) -> String {
        String::new()
    }
    pub async fn shutdown(self) {}
}
pub async fn start(_cfg: SimConfig, _clock: crate::dates::Clock) -> std::io::Result<SimHandle> {
    Err(std::io::Error::other("simulator not built yet"))
}
pub async fn serve(
    _cfg: SimConfig,
    _clock: crate::dates::Clock,
    _l: tokio::net::TcpListener,
) -> std::io::Result<()> {
    Err(std::io::Error::other("simulator not built yet"))
}
