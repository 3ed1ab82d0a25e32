//! wxcube: WeChat Official Account analytics (the datacube API) into Hive-partitioned
//! Parquet. Stages: `config` → `plan` → `extract` → `transform` → `load`, with the
//! `catalog` as the single source of truth about reports and `sim` as the built-in API.

pub mod catalog;
pub(crate) mod changes;
pub mod cli;
pub(crate) mod clock;
pub(crate) mod compat;
pub mod config;
pub mod dates;
pub(crate) mod error;
pub mod extract;
pub(crate) mod hive;
pub(crate) mod layout;
pub(crate) mod lease;
pub mod load;
pub mod pipeline;
pub(crate) mod plan;
pub(crate) mod progress;
pub(crate) mod report;
pub(crate) mod retry;
pub(crate) mod run;
pub mod secret;
pub(crate) mod shard;
pub mod sim;
pub(crate) mod state;
pub(crate) mod status;
pub mod store;
pub(crate) mod suggest;
pub mod transform;
pub mod window;
