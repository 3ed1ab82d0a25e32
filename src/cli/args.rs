//! The command-line arguments (clap): subcommands and the options every one shares.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::dates;
use crate::progress::ProgressMode;

#[derive(Parser, Debug)]
#[command(
    name = "wxcube",
    version,
    about = "WeChat Official Account analytics (datacube) to Hive-partitioned Parquet"
)]
#[command(
    after_help = "Exit codes: 0 all done, 1 runtime failure, 2 invalid pipeline or usage, 3 partial (deferred or failed work, the rest committed; re-run to resume)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Pin "today" (China date, YYYY-MM-DD), taken as past 08:00: the latest ready day is the day before.
    #[arg(long, value_parser = parse_date, global = true)]
    pub today: Option<chrono::NaiveDate>,
    /// Only these accounts (comma-separated names from the pipeline).
    #[arg(long, value_delimiter = ',', global = true)]
    pub accounts: Option<Vec<String>>,
    /// Only the accounts of shard K of N (1-based), by a stable hash of their names (FNV-1a 64).
    #[arg(long, value_name = "K/N", global = true)]
    pub shard: Option<crate::shard::Shard>,
    /// Only these reports (comma-separated ids or WeChat API names).
    #[arg(long, value_delimiter = ',', global = true)]
    pub reports: Option<Vec<String>>,
    /// Print data as JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Progress bars: auto (on a terminal), always, never.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto, global = true)]
    pub progress: ProgressMode,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// More logging (-v info, -vv debug, -vvv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Less output: errors only, no summary.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Retry timing for tests (ms): the first backoff, the 45011 "minute", the HTTP
    /// timeout, so fault tests need not wait real minutes.
    #[arg(long, global = true, hide = true)]
    pub retry_base_ms: Option<u64>,
    #[arg(long, global = true, hide = true)]
    pub minute_ms: Option<u64>,
    #[arg(long, global = true, hide = true)]
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Plan, extract, transform, load; print a run summary.
    Run {
        /// The pipeline YAML file.
        pipeline: PathBuf,
        /// Ignore state: fetch the whole range again (rows are replaced, never duplicated).
        #[arg(long)]
        full_refresh: bool,
        /// Seconds to wait for an account leased by another run before skipping it (exit 3).
        #[arg(long, value_name = "SECONDS", default_value_t = crate::lease::DEFAULT_WAIT.as_secs_f64())]
        lease_wait: f64,
        /// Lease length in seconds (tests shorten it; renewed every third of it).
        #[arg(long, hide = true, default_value_t = crate::lease::DEFAULT_LENGTH.as_secs_f64())]
        lease_seconds: f64,
        #[command(flatten)]
        common: Common,
    },
    /// Print the calls a run would make, per account and report; makes no data call.
    Plan {
        /// The pipeline YAML file.
        pipeline: PathBuf,
        /// Plan as if nothing were loaded yet.
        #[arg(long)]
        full_refresh: bool,
        /// With --json: the work units of N shards (default: the N of --shard, else 1).
        #[arg(long, value_name = "N")]
        shards: Option<u32>,
        #[command(flatten)]
        common: Common,
    },
    /// What is loaded per account and report: ranges, gaps, provisional dates, stops, last run; reads state only.
    Status {
        /// The pipeline YAML file.
        pipeline: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// The partitions committed since a run or a time (for warehouse loaders).
    Changes {
        /// The output uri (a local path or s3://bucket/prefix).
        uri: String,
        /// A run id (changes after that run's) or a UTC time (2026-01-10T08:00:00Z, 2026-01-10).
        #[arg(long, value_name = "RUN|TIME")]
        since: crate::changes::Since,
        #[command(flatten)]
        common: Common,
    },
    /// Check pipelines without touching the network; reports every error.
    Validate {
        /// Pipeline YAML files.
        #[arg(required = true)]
        pipelines: Vec<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
    /// The report catalogue: id, API name, span, status, grain.
    Reports {
        #[command(flatten)]
        common: Common,
    },
    /// The Arrow schema of a report's table, with each column's meaning.
    Schema {
        /// A report id or WeChat API name (see `wxcube reports`).
        report: String,
        #[command(flatten)]
        common: Common,
    },
    /// Serve the built-in WeChat API simulator on loopback.
    Simulate {
        /// Port on 127.0.0.1 (0 picks a free one, printed on stdout).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Simulator settings as JSON (the pipeline's `api.simulator` block), e.g. '{"seed":42}'.
        #[arg(long, default_value = "{}")]
        config: String,
        /// Seed (overrides the one in --config).
        #[arg(long)]
        seed: Option<u64>,
        #[command(flatten)]
        common: Common,
    },
}

fn parse_date(s: &str) -> Result<chrono::NaiveDate, String> {
    dates::parse(s).ok_or_else(|| format!("{s:?} is not a date in YYYY-MM-DD form"))
}

/// The options shared by every subcommand.
pub(super) fn common(cmd: &Command) -> &Common {
    match cmd {
        Command::Run { common, .. }
        | Command::Plan { common, .. }
        | Command::Status { common, .. }
        | Command::Changes { common, .. }
        | Command::Validate { common, .. }
        | Command::Reports { common }
        | Command::Schema { common, .. }
        | Command::Simulate { common, .. } => common,
    }
}
