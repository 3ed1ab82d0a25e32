//! wxcube: WeChat Official Account analytics (the datacube API) into Hive-partitioned
//! Parquet. Stages: `config` → `plan` → `extract` → `transform` → `load`, with the
//! `catalog` as the single source of truth about reports and `sim` as the built-in API.

pub mod catalog;
pub mod changes;
pub mod cli;
pub mod clock;
pub mod compat;
pub mod config;
pub mod dates;
pub mod error;
pub mod extract;
pub mod hive;
pub mod layout;
pub mod lease;
pub mod load;
pub mod pipeline;
pub mod plan;
pub mod progress;
pub mod report;
pub mod retry;
pub mod run;
pub mod secret;
pub mod shard;
pub mod sim;
pub mod state;
pub mod status;
pub mod store;
pub mod suggest;
pub mod transform;
pub mod window;
