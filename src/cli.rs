//! The command line (DESIGN §1). `main` is thin: parse, dispatch, map to an exit code.
//!
//! Exit codes: 0 all done; 1 runtime failure; 2 invalid pipeline or usage; 3 partial (some
//! work deferred or failed for a stated reason; the rest is committed, a re-run resumes).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::catalog::{self, Report};
use crate::dates::{self, Clock};
use crate::pipeline::Pipeline;
use crate::progress::{self, Progress};
use crate::run::{self, Options, RunReport};
use crate::transform;

pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILURE: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_PARTIAL: i32 = 3;

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
pub enum ProgressMode {
    Auto,
    Always,
    Never,
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

/// Exit-coded error for `main`.
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    fn usage(m: impl Into<String>) -> Self {
        Failure {
            code: EXIT_USAGE,
            message: m.into(),
        }
    }
    fn runtime(m: impl Into<String>) -> Self {
        Failure {
            code: EXIT_FAILURE,
            message: m.into(),
        }
    }
}

fn init_logging(c: &Common) {
    let level = if c.quiet {
        "error"
    } else {
        match c.verbose {
            0 => "warn",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("WXCUBE_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "{level},hyper=warn,reqwest=warn,h2=warn,rustls=warn"
        ))
    });
    // Colour only on a terminal: logs in a file or a collector must be plain text.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_writer(progress::LogLine::default)
        .with_ansi(ansi)
        .with_env_filter(filter)
        .with_target(false);
    let _ = match c.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

fn common(cmd: &Command) -> &Common {
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

pub fn clock(c: &Common) -> Clock {
    c.today.map(Clock::pinned).unwrap_or_else(Clock::system)
}

/// Resolves `--reports` names (ids or API names), with a suggestion for a misspelling.
pub fn resolve_reports(names: &[String]) -> Result<Vec<&'static Report>, Failure> {
    let mut out = Vec::new();
    for n in names {
        let n = n.trim();
        match catalog::find(n) {
            Some(r) if !out.iter().any(|x: &&Report| x.id == r.id) => out.push(r),
            Some(_) => {}
            None => {
                let hint = catalog::suggest(n)
                    .map(|s| format!("; did you mean {s:?}?"))
                    .unwrap_or_default();
                return Err(Failure::usage(format!(
                    "--reports: unknown report {n:?}{hint} (see `wxcube reports`)"
                )));
            }
        }
    }
    Ok(out)
}

fn load_pipeline(path: &std::path::Path) -> Result<Pipeline, Failure> {
    crate::config::load(path).map_err(|e| Failure::usage(e.to_string()))
}

/// Retry timing: the defaults, or the hidden test flags' shorter ones.
pub fn retry_policy(c: &Common) -> crate::retry::RetryPolicy {
    let ms = |v: Option<u64>| v.map(std::time::Duration::from_millis);
    let mut p = crate::retry::RetryPolicy::default();
    if let Some(d) = ms(c.retry_base_ms) {
        p.base = d;
        p.max = p.max.min(d * 64);
    }
    if let Some(d) = ms(c.minute_ms) {
        p.minute_wait = d;
    }
    if let Some(d) = ms(c.timeout_ms) {
        p.timeout = d;
    }
    p
}

fn options(c: &Common, full_refresh: bool) -> Result<Options, Failure> {
    Ok(Options {
        accounts: c.accounts.clone(),
        reports: c.reports.as_deref().map(resolve_reports).transpose()?,
        full_refresh,
        shard: c.shard,
        lease: crate::lease::Config::default(),
        retry: Some(retry_policy(c)),
        observer: None,
    })
}

pub fn main_with(cli: Cli) -> i32 {
    init_logging(common(&cli.command));
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return EXIT_FAILURE;
        }
    };
    match rt.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(f) => {
            eprintln!("error: {}", f.message);
            f.code
        }
    }
}

async fn dispatch(cli: Cli) -> Result<i32, Failure> {
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Validate { pipelines, common } => {
            let mut bad = 0;
            for p in &pipelines {
                match crate::config::load(p) {
                    Ok(pl) => {
                        if !common.quiet {
                            let _ = writeln!(
                                out,
                                "{}: ok ({} accounts, {} reports)",
                                p.display(),
                                pl.accounts.len(),
                                pl.reports.len()
                            );
                        }
                    }
                    Err(e) => {
                        bad += 1;
                        eprintln!("{e}");
                    }
                }
            }
            Ok(if bad > 0 { EXIT_USAGE } else { EXIT_OK })
        }
        Command::Reports { common } => {
            if common.json {
                let v: Vec<_> = catalog::all().map(report_json).collect();
                let _ = writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&v).unwrap_or_default()
                );
            } else {
                let _ = writeln!(
                    out,
                    "{:<24} {:<24} {:>4}  {:<9} {:<10} grain",
                    "id", "api", "span", "status", "first_day"
                );
                for r in catalog::all() {
                    let _ = writeln!(
                        out,
                        "{:<24} {:<24} {:>4}  {:<9} {:<10} {}",
                        r.id,
                        r.api,
                        r.span,
                        r.status.as_str(),
                        dates::fmt(r.first_day()),
                        r.grain
                    );
                }
            }
            Ok(EXIT_OK)
        }
        Command::Schema { report, common } => {
            let r = resolve_reports(std::slice::from_ref(&report))?[0];
            let schema = transform::schema(r);
            if common.json {
                let cols: Vec<_> = r
                    .columns
                    .iter()
                    .zip(schema.fields())
                    .map(|(c, f)| {
                        serde_json::json!({"name": c.name, "type": type_name(f.data_type()), "nullable": f.is_nullable(), "description": c.doc})
                    })
                    .collect();
                let v = serde_json::json!({"report": r.id, "api": r.api, "key": r.key, "columns": cols});
                let _ = writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&v).unwrap_or_default()
                );
            } else {
                let _ = writeln!(
                    out,
                    "{} ({}): {}; one row per {}; key ({})",
                    r.id,
                    r.api,
                    r.doc,
                    r.grain,
                    r.key.join(", ")
                );
                let _ = writeln!(out);
                for (c, f) in r.columns.iter().zip(schema.fields()) {
                    let null = if f.is_nullable() { "null" } else { "" };
                    let _ = writeln!(
                        out,
                        "  {:<34} {:<46} {:<4}  {}",
                        c.name,
                        type_name(f.data_type()),
                        null,
                        c.doc
                    );
                }
            }
            Ok(EXIT_OK)
        }
        Command::Status { pipeline, common } => {
            let p = load_pipeline(&pipeline)?;
            let opts = options(&common, false)?;
            let store = crate::store::Store::open(&p.output.uri)
                .map_err(|e| Failure::usage(e.to_string()))?;
            let st = crate::status::status(&p, &clock(&common), &opts, &store)
                .await
                .map_err(run_failure)?;
            if common.json {
                let _ = writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&st).unwrap_or_default()
                );
            } else {
                crate::status::print(&mut out, &st);
            }
            Ok(EXIT_OK)
        }
        Command::Changes { uri, since, common } => {
            let store =
                crate::store::Store::open(&uri).map_err(|e| Failure::usage(e.to_string()))?;
            let l = crate::changes::list(&store, &since)
                .await
                .map_err(|e| match e {
                    crate::changes::ChangesError::Usage(m) => Failure::usage(m),
                    other => Failure::runtime(other.to_string()),
                })?;
            if common.json {
                let _ = writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&l).unwrap_or_default()
                );
            } else {
                print_changes(&mut out, &l);
            }
            Ok(EXIT_OK)
        }
        Command::Plan {
            pipeline,
            full_refresh,
            shards,
            common,
        } => {
            let p = load_pipeline(&pipeline)?;
            if let Some(n) = shards.filter(|n| !(1..=crate::shard::MAX_SHARDS).contains(n)) {
                return Err(Failure::usage(format!(
                    "--shards {n}: between 1 and {}",
                    crate::shard::MAX_SHARDS
                )));
            }
            let opts = options(&common, full_refresh)?;
            let clock = clock(&common);
            let store = crate::store::Store::open(&p.output.uri)
                .map_err(|e| Failure::usage(e.to_string()))?;
            let (plan, _) = run::make_plan(&p, &clock, &opts, &store)
                .await
                .map_err(run_failure)?;
            if common.json {
                let _ = writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&plan_json(
                        &p,
                        &plan,
                        shards.or(common.shard.map(|s| s.n))
                    ))
                    .unwrap_or_default()
                );
            } else {
                print_plan(&mut out, &p, &plan);
            }
            Ok(EXIT_OK)
        }
        Command::Run {
            pipeline,
            full_refresh,
            lease_wait,
            lease_seconds,
            common,
        } => {
            let p = load_pipeline(&pipeline)?;
            let mut opts = options(&common, full_refresh)?;
            opts.lease = lease_config(lease_wait, lease_seconds)?;
            let clock = clock(&common);
            let bars = progress::wanted(
                common.progress,
                common.quiet,
                std::io::stderr().is_terminal(),
                progress::term_is_dumb(),
            )
            .then(|| {
                let accounts = opts.accounts.as_ref().map_or(p.accounts.len(), Vec::len);
                Arc::new(Progress::new(
                    progress::stderr_target(),
                    progress::call_limit(&p.limits, accounts),
                ))
            });
            if let Some(b) = &bars {
                opts.observer = Some(Arc::clone(b) as Arc<dyn run::Observer>);
            }
            // On a runtime worker, not this thread: the loader then wakes where the fetch
            // tasks run instead of crossing threads for every window.
            let (pipeline, run_opts) = (p.clone(), opts.clone());
            let handle = tokio::spawn(async move { run::run(&pipeline, clock, &run_opts).await });
            let outcome = match handle.await {
                Ok(r) => r,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => return Err(Failure::runtime(format!("the run stopped: {e}"))),
            };
            let report = outcome.map_err(|e| {
                if let Some(b) = &bars {
                    b.clear();
                }
                run_failure(e)
            })?;
            if common.json {
                let _ = writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else if !common.quiet {
                let store = crate::store::Store::open(&p.output.uri).ok();
                let saved =
                    store.map(|s| s.describe(&format!("_wxcube/runs/{}.json", report.run_id)));
                print_summary(&mut out, &report, saved.as_deref());
            }
            if let Some(e) = &report.error {
                eprintln!("error: {e}");
            }
            Ok(report.exit_code)
        }
        Command::Simulate {
            port,
            config,
            seed,
            common,
        } => {
            let mut cfg: crate::sim::SimConfig = serde_json::from_str(&config)
                .map_err(|e| Failure::usage(format!("--config: {e}")))?;
            if let Some(s) = seed {
                cfg.seed = s;
            }
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .map_err(|e| Failure::runtime(format!("cannot listen on 127.0.0.1:{port}: {e}")))?;
            let addr = listener
                .local_addr()
                .map_err(|e| Failure::runtime(e.to_string()))?;
            let _ = writeln!(out, "wxcube simulator listening on http://{addr}");
            drop(out);
            crate::sim::serve(cfg, clock(&common), listener)
                .await
                .map_err(|e| Failure::runtime(e.to_string()))?;
            Ok(EXIT_OK)
        }
    }
}

fn run_failure(e: run::RunError) -> Failure {
    match e {
        run::RunError::Usage(m) => Failure::usage(m),
        e @ run::RunError::Layout(crate::layout::LayoutError::Mismatch { .. }) => {
            Failure::usage(e.to_string())
        }
        other => Failure::runtime(other.to_string()),
    }
}

fn report_json(r: &'static Report) -> serde_json::Value {
    serde_json::json!({
        "id": r.id, "api": r.api, "path": r.path, "span": r.span, "status": r.status.as_str(),
        "grain": r.grain, "first_day": dates::fmt(r.first_day()), "key": r.key, "description": r.doc,
        "replacement": r.replacement,
    })
}

pub fn type_name(t: &arrow::datatypes::DataType) -> String {
    use arrow::datatypes::DataType as T;
    match t {
        T::Dictionary(_, v) => format!("Dictionary<{}>", type_name(v)),
        T::List(f) => format!("List<{}>", type_name(f.data_type())),
        T::Struct(fs) => format!(
            "Struct<{}>",
            fs.iter()
                .map(|f| format!("{} {}", f.name(), type_name(f.data_type())))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => format!("{other}"),
    }
}

fn human_bytes(b: u64) -> String {
    match b {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// What an exit code means, for the last line of a run summary.
pub fn exit_meaning(code: i32) -> &'static str {
    match code {
        EXIT_OK => "all done",
        EXIT_PARTIAL => {
            "partial: some work was deferred or failed (reasons above); the rest is committed, a re-run resumes"
        }
        EXIT_USAGE => "invalid pipeline or usage",
        _ => "runtime failure (error below); committed partitions stay, a re-run resumes",
    }
}

/// A plain text table: columns as wide as their widest cell, two spaces apart.
struct Table {
    head: Vec<&'static str>,
    /// Right-aligned columns (numbers).
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(cols: &[(&'static str, bool)]) -> Self {
        Table {
            head: cols.iter().map(|c| c.0).collect(),
            right: cols.iter().map(|c| c.1).collect(),
            rows: Vec::new(),
        }
    }

    fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    fn render(&self, out: &mut impl Write) {
        let n = self.head.len();
        let mut width: Vec<usize> = self.head.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(n) {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let line = |cells: Vec<&str>| {
            let mut s = String::new();
            for (i, c) in cells.iter().enumerate() {
                let pad = width[i].saturating_sub(c.chars().count());
                if i > 0 {
                    s.push_str("  ");
                }
                if self.right[i] {
                    s.push_str(&" ".repeat(pad));
                    s.push_str(c);
                } else {
                    s.push_str(c);
                    if i + 1 < cells.len() {
                        s.push_str(&" ".repeat(pad));
                    }
                }
            }
            s.trim_end().to_string()
        };
        let _ = writeln!(out, "{}", line(self.head.clone()));
        for r in &self.rows {
            let _ = writeln!(out, "{}", line(r.iter().map(String::as_str).collect()));
        }
    }
}

fn percent(calls: usize, budget: u32) -> String {
    format!("{:.1}%", 100.0 * calls as f64 / f64::from(budget.max(1)))
}

fn lease_config(wait: f64, length: f64) -> Result<crate::lease::Config, Failure> {
    let secs = |flag: &str, v: f64, min: f64| {
        if v.is_finite() && (min..=86_400.0).contains(&v) {
            Ok(std::time::Duration::from_secs_f64(v))
        } else {
            Err(Failure::usage(format!(
                "{flag} {v}: seconds between {min} and 86400"
            )))
        }
    };
    Ok(crate::lease::Config {
        wait: secs("--lease-wait", wait, 0.0)?,
        length: secs("--lease-seconds", length, 0.3)?,
    })
}

fn print_changes(out: &mut impl Write, l: &crate::changes::Listing) {
    let mut t = Table::new(&[
        ("committed_at", false),
        ("run", false),
        ("table", false),
        ("account", false),
        ("partition", false),
        ("rows", true),
        ("bytes", true),
        ("status", false),
    ]);
    for c in &l.changes {
        t.push(vec![
            c.committed_at
                .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_else(|| "-".into()),
            c.run_id.clone(),
            c.table.clone(),
            c.account.clone(),
            c.partition.clone(),
            c.rows.map_or("-".into(), |r| r.to_string()),
            c.bytes.map_or("-".into(), human_bytes),
            c.status.clone(),
        ]);
    }
    t.render(out);
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{} partitions changed since {} (pending: re-read them, their commit may not have happened); next time: --since {}",
        l.changes.len(),
        l.since,
        l.next_since.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    );
}

/// The work units of `n` shards: per shard, its accounts, calls and share of the budget.
fn work_units(p: &Pipeline, plan: &plan_mod::Plan, n: u32) -> Vec<serde_json::Value> {
    (1..=n.max(1))
        .map(|k| {
            let shard = crate::shard::Shard { k, n: n.max(1) };
            let tasks: Vec<&plan_mod::Task> = plan
                .tasks
                .iter()
                .filter(|t| shard.holds(&t.account_name))
                .collect();
            let mut accounts: Vec<&str> = tasks.iter().map(|t| t.account_name.as_str()).collect();
            accounts.dedup();
            let calls: usize = tasks.iter().map(|t| t.windows.len()).sum();
            let mut per_account: std::collections::BTreeMap<&str, usize> = Default::default();
            for t in &tasks {
                *per_account.entry(t.account_name.as_str()).or_default() += t.windows.len();
            }
            let busiest = per_account.values().copied().max().unwrap_or(0);
            // Per account and report: the largest share of limits.daily_calls_per_report.
            let share = tasks
                .iter()
                .map(|t| t.windows.len() as f64 / f64::from(plan.daily_calls_per_report.max(1)))
                .fold(0.0, f64::max);
            let global = (p.limits.global_requests_per_second / shard.n).max(1);
            let secs = (busiest as f64 / f64::from(p.limits.requests_per_second.max(1)))
                .max(calls as f64 / f64::from(global));
            serde_json::json!({
                "shard": shard.to_string(),
                "index": k,
                "accounts": accounts,
                "calls": calls,
                "deferred_calls": tasks.iter().map(|t| t.deferred.len()).sum::<usize>(),
                "budget_share": share,
                "busiest_account_calls": busiest,
                "min_seconds": secs.ceil(),
            })
        })
        .collect()
}

/// `plan --json`: the `Plan` with derived numbers beside its own fields.
fn plan_json(p: &Pipeline, plan: &plan_mod::Plan, shards: Option<u32>) -> serde_json::Value {
    let mut v = serde_json::to_value(plan).unwrap_or_default();
    if let Some(tasks) = v.get_mut("tasks").and_then(|t| t.as_array_mut()) {
        for (t, task) in tasks.iter_mut().zip(&plan.tasks) {
            if let Some(o) = t.as_object_mut() {
                o.insert("calls".into(), task.windows.len().into());
                o.insert(
                    "budget_share".into(),
                    (task.windows.len() as f64 / f64::from(plan.daily_calls_per_report.max(1)))
                        .into(),
                );
            }
        }
    }
    if let Some(o) = v.as_object_mut() {
        o.insert("pipeline".into(), p.name.clone().into());
        o.insert("calls".into(), plan.calls().into());
        o.insert("deferred_calls".into(), plan.deferred().into());
        let n = shards.unwrap_or(1);
        o.insert("shards".into(), n.into());
        o.insert("work_units".into(), work_units(p, plan, n).into());
    }
    v
}

/// Seconds the planned calls take at least at the pipeline's rate limits.
fn min_seconds(p: &Pipeline, plan: &plan_mod::Plan) -> f64 {
    let mut per_account: Vec<(usize, usize)> = Vec::new();
    for t in &plan.tasks {
        match per_account.iter_mut().find(|(a, _)| *a == t.account) {
            Some(e) => e.1 += t.windows.len(),
            None => per_account.push((t.account, t.windows.len())),
        }
    }
    let slowest = per_account.iter().map(|e| e.1).max().unwrap_or(0) as f64
        / f64::from(p.limits.requests_per_second.max(1));
    let overall = plan.calls() as f64 / f64::from(p.limits.global_requests_per_second.max(1));
    slowest.max(overall)
}

fn print_plan(out: &mut impl Write, p: &Pipeline, plan: &plan_mod::Plan) {
    let _ = writeln!(out, "plan for {} ({})", p.name, p.source.display());
    let _ = writeln!(
        out,
        "dates {} .. {} (China); today {}, latest ready day {}; budget {} calls per account and report a day",
        dates::fmt(plan.start),
        dates::fmt(plan.end),
        dates::fmt(plan.today),
        dates::fmt(plan.latest_ready),
        plan.daily_calls_per_report
    );
    let _ = writeln!(out);
    let mut t = Table::new(&[
        ("account", false),
        ("report", false),
        ("span", true),
        ("calls", true),
        ("budget", true),
        ("windows cover", false),
        ("loaded", true),
        ("revise", true),
        ("reload", true),
        ("deferred", true),
    ]);
    for task in &plan.tasks {
        let span = catalog::find(task.report).map_or(0, |r| r.span);
        let cover = match (task.windows.first(), task.windows.last()) {
            (Some(a), Some(b)) => plan_mod::Window {
                begin: a.begin,
                end: b.end,
            }
            .to_string(),
            _ => "-".to_string(),
        };
        t.push(vec![
            task.account_name.clone(),
            task.report.to_string(),
            span.to_string(),
            task.windows.len().to_string(),
            percent(task.windows.len(), plan.daily_calls_per_report),
            cover,
            task.loaded_dates.to_string(),
            task.revise_dates.to_string(),
            task.reload_dates.to_string(),
            task.deferred.len().to_string(),
        ]);
    }
    t.push(vec![
        "total".to_string(),
        format!("{} tasks", plan.tasks.len()),
        String::new(),
        plan.calls().to_string(),
        String::new(),
        String::new(),
        plan.tasks
            .iter()
            .map(|t| t.loaded_dates)
            .sum::<usize>()
            .to_string(),
        plan.tasks
            .iter()
            .map(|t| t.revise_dates)
            .sum::<usize>()
            .to_string(),
        plan.tasks
            .iter()
            .map(|t| t.reload_dates)
            .sum::<usize>()
            .to_string(),
        plan.deferred().to_string(),
    ]);
    t.render(out);
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "span: days one call covers at most; calls: data calls, one per window; budget: share of limits.daily_calls_per_report;"
    );
    let _ = writeln!(
        out,
        "loaded: dates already loaded and final (skipped); revise: loaded dates fetched again because WeChat may still revise them,"
    );
    let _ = writeln!(
        out,
        "or has not published them yet; reload: loaded dates whose partition is gone from the output, fetched again;"
    );
    let _ = writeln!(
        out,
        "deferred: windows left for a later run (daily budget reached, quota exhausted or report retired)."
    );
    let _ = writeln!(
        out,
        "{} calls ({} deferred); at {} calls/s per account and {} calls/s overall that is at least {:.0} s.",
        plan.calls(),
        plan.deferred(),
        p.limits.requests_per_second,
        p.limits.global_requests_per_second,
        min_seconds(p, plan).ceil()
    );
}

use crate::plan as plan_mod;

fn windows(n: usize) -> String {
    if n == 1 {
        "1 window".into()
    } else {
        format!("{n} windows")
    }
}

/// Per report, over its accounts.
#[derive(Default)]
struct ReportLine {
    accounts: usize,
    calls: u64,
    planned: usize,
    rows: u64,
    files: usize,
    bytes: u64,
    deferred: usize,
    failed: usize,
}

fn print_summary(out: &mut impl Write, r: &RunReport, saved: Option<&str>) {
    let _ = writeln!(
        out,
        "run {} of {}: {} .. {} (today {}), {:.1} s",
        r.run_id,
        r.pipeline,
        dates::fmt(r.start),
        dates::fmt(r.end),
        dates::fmt(r.today),
        r.seconds
    );
    let _ = writeln!(out);
    let mut lines: Vec<(&str, ReportLine)> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    for t in &r.tasks {
        let i = match lines.iter().position(|x| x.0 == t.report) {
            Some(i) => i,
            None => {
                lines.push((t.report, ReportLine::default()));
                lines.len() - 1
            }
        };
        let e = &mut lines[i].1;
        e.accounts += 1;
        e.calls += t.calls;
        e.planned += t.planned_calls;
        e.rows += t.rows;
        e.files += t.files;
        e.bytes += t.bytes;
        e.deferred += t.deferred.len();
        e.failed += t.failed.len();
        if let Some(reason) = &t.reason {
            let mut what = Vec::new();
            if !t.failed.is_empty() {
                what.push(format!("{} failed", windows(t.failed.len())));
            }
            if !t.deferred.is_empty() {
                what.push(format!("{} deferred", windows(t.deferred.len())));
            }
            notes.push(format!(
                "  {} / {}: {}: {reason}",
                t.report,
                t.account,
                what.join(", ")
            ));
        }
    }
    let mut table = Table::new(&[
        ("report", false),
        ("accounts", true),
        ("calls", true),
        ("planned", true),
        ("rows", true),
        ("files", true),
        ("bytes", true),
        ("status", false),
    ]);
    for (rep, e) in &lines {
        let status = match (e.deferred, e.failed) {
            (0, 0) if e.planned == 0 => "ok (nothing to fetch)".to_string(),
            (0, 0) => "ok".to_string(),
            (d, 0) => format!("deferred {d}"),
            (0, f) => format!("failed {f}"),
            (d, f) => format!("failed {f}, deferred {d}"),
        };
        table.push(vec![
            rep.to_string(),
            e.accounts.to_string(),
            e.calls.to_string(),
            e.planned.to_string(),
            e.rows.to_string(),
            e.files.to_string(),
            human_bytes(e.bytes),
            status,
        ]);
    }
    table.push(vec![
        "total".into(),
        String::new(),
        r.data_calls.to_string(),
        r.planned_calls.to_string(),
        r.rows.to_string(),
        r.files.to_string(),
        human_bytes(r.bytes),
        String::new(),
    ]);
    table.render(out);
    if !notes.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "not done:");
        for n in &notes {
            let _ = writeln!(out, "{n}");
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{} data calls ({} planned, {} retries), {} token calls; {} rows in {} files, {}",
        r.data_calls,
        r.planned_calls,
        r.retries,
        r.token_calls,
        r.rows,
        r.files,
        human_bytes(r.bytes)
    );
    let provisional: usize = r.tasks.iter().map(|t| t.provisional_dates).sum();
    if provisional > 0 {
        let _ = writeln!(
            out,
            "{provisional} dates provisional (WeChat flagged them is_delay, or has not published them yet): the next run fetches them again"
        );
    }
    if let Some(path) = saved {
        let _ = writeln!(out, "run report: {path}");
    }
    let _ = writeln!(out, "exit {}: {}", r.exit_code, exit_meaning(r.exit_code));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Window;
    use crate::run::TaskReport;

    fn d(s: &str) -> chrono::NaiveDate {
        dates::parse(s).unwrap()
    }

    fn task(account: &str, report: &'static str, calls: u64, rows: u64) -> TaskReport {
        TaskReport {
            account: account.into(),
            report,
            planned_calls: calls as usize,
            calls,
            windows_done: calls as usize,
            rows,
            files: 1,
            bytes: 2048,
            ..Default::default()
        }
    }

    fn report(tasks: Vec<TaskReport>, exit_code: i32) -> RunReport {
        RunReport {
            run_id: "20260120T000000Z-00000001".into(),
            pipeline: "demo".into(),
            today: d("2026-01-20"),
            start: d("2026-01-01"),
            end: d("2026-01-19"),
            planned_calls: tasks.iter().map(|t| t.planned_calls).sum(),
            data_calls: tasks.iter().map(|t| t.calls).sum(),
            token_calls: 2,
            retries: 1,
            rows: tasks.iter().map(|t| t.rows).sum(),
            files: tasks.iter().map(|t| t.files).sum(),
            bytes: tasks.iter().map(|t| t.bytes).sum(),
            seconds: 1.5,
            exit_code,
            error: None,
            tasks,
            changes: Vec::new(),
        }
    }

    #[test]
    fn summary_sums_reports_over_accounts_and_explains_what_is_not_done() {
        let mut quota = task("shop_sh", "user_summary", 2, 10);
        quota.deferred = vec![Window {
            begin: d("2026-01-15"),
            end: d("2026-01-19"),
        }];
        quota.reason = Some("daily quota exhausted (45009)".into());
        let r = report(
            vec![
                task("brand_cn", "user_summary", 3, 21),
                quota,
                task("brand_cn", "article_read", 4, 7),
            ],
            EXIT_PARTIAL,
        );
        let mut out = Vec::new();
        print_summary(&mut out, &r, Some("/tmp/x/_wxcube/runs/r.json"));
        let text = String::from_utf8(out).unwrap();
        let row = |name: &str| -> Vec<String> {
            text.lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("no {name} in\n{text}"))
                .split_whitespace()
                .map(String::from)
                .collect()
        };
        // report accounts calls planned rows files bytes status...
        assert_eq!(
            row("user_summary")[..8],
            ["user_summary", "2", "5", "5", "31", "2", "4.0", "KiB"]
        );
        assert_eq!(row("user_summary")[8..], ["deferred", "1"]);
        assert_eq!(row("article_read")[8..], ["ok"]);
        assert_eq!(row("total")[..5], ["total", "9", "9", "38", "3"]);
        assert!(text
            .contains("user_summary / shop_sh: 1 window deferred: daily quota exhausted (45009)"));
        assert!(text.contains("9 data calls (9 planned, 1 retries), 2 token calls"));
        assert!(text.contains("run report: /tmp/x/_wxcube/runs/r.json"));
        assert!(text
            .trim_end()
            .ends_with(&format!("exit 3: {}", exit_meaning(3))));
    }

    #[test]
    fn table_aligns_columns_to_their_widest_cell() {
        let mut t = Table::new(&[("name", false), ("n", true), ("note", false)]);
        t.push(vec!["a".into(), "1234".into(), "x".into()]);
        t.push(vec!["longer".into(), "5".into(), String::new()]);
        let mut out = Vec::new();
        t.render(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "name       n  note\na       1234  x\nlonger     5\n"
        );
    }

    #[test]
    fn every_exit_code_has_a_meaning() {
        let all: Vec<_> = [EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_PARTIAL]
            .iter()
            .map(|c| exit_meaning(*c))
            .collect();
        let mut distinct = all.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 4, "{all:?}");
    }
}
