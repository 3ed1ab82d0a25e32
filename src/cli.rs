//! The command line (DESIGN §1). `main` is thin: parse, dispatch, map to an exit code.
//!
//! Exit codes: 0 all done; 1 runtime failure; 2 invalid pipeline or usage; 3 partial (some
//! work deferred or failed for a stated reason; the rest is committed, a re-run resumes).

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::catalog::{self, Report};
use crate::dates::{self, Clock};
use crate::pipeline::Pipeline;
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
        pipeline: PathBuf,
        /// Ignore state: fetch the whole range again (rows are replaced, never duplicated).
        #[arg(long)]
        full_refresh: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Print the calls a run would make, per account and report; makes no data call.
    Plan {
        pipeline: PathBuf,
        #[arg(long)]
        full_refresh: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Check pipelines without touching the network; reports every error.
    Validate {
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
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
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

/// Retry timing, with test-only overrides from the environment (WXCUBE_RETRY_BASE_MS,
/// WXCUBE_MINUTE_MS, WXCUBE_TIMEOUT_MS) so fault tests need not wait real minutes.
pub fn retry_policy() -> crate::extract::RetryPolicy {
    let ms = |k: &str| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(std::time::Duration::from_millis)
    };
    let mut p = crate::extract::RetryPolicy::default();
    if let Some(d) = ms("WXCUBE_RETRY_BASE_MS") {
        p.base = d;
        p.max = p.max.min(d * 64);
    }
    if let Some(d) = ms("WXCUBE_MINUTE_MS") {
        p.minute_wait = d;
    }
    if let Some(d) = ms("WXCUBE_TIMEOUT_MS") {
        p.timeout = d;
    }
    p
}

fn options(c: &Common, full_refresh: bool) -> Result<Options, Failure> {
    Ok(Options {
        accounts: c.accounts.clone(),
        reports: c.reports.as_deref().map(resolve_reports).transpose()?,
        full_refresh,
        retry: Some(retry_policy()),
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
                let v: Vec<_> = catalog::REPORTS.iter().map(report_json).collect();
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
                for r in catalog::REPORTS {
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
        Command::Plan {
            pipeline,
            full_refresh,
            common,
        } => {
            let p = load_pipeline(&pipeline)?;
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
                    serde_json::to_string_pretty(&plan).unwrap_or_default()
                );
            } else {
                print_plan(&mut out, &p, &plan);
            }
            Ok(EXIT_OK)
        }
        Command::Run {
            pipeline,
            full_refresh,
            common,
        } => {
            let p = load_pipeline(&pipeline)?;
            let opts = options(&common, full_refresh)?;
            let clock = clock(&common);
            let report = run::run(&p, clock, &opts).await.map_err(run_failure)?;
            if common.json {
                let _ = writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else if !common.quiet {
                print_summary(&mut out, &report);
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

fn print_plan(out: &mut impl Write, p: &Pipeline, plan: &plan_mod::Plan) {
    let _ = writeln!(
        out,
        "plan for {} ({}): {} .. {}, today {} (latest ready day {})",
        p.name,
        p.source.display(),
        dates::fmt(plan.start),
        dates::fmt(plan.end),
        dates::fmt(plan.today),
        dates::fmt(plan.latest_ready)
    );
    let _ = writeln!(
        out,
        "{:<20} {:<24} {:>7} {:>7} {:>8} {:>7} {:>7} {:>8}",
        "account", "report", "windows", "calls", "budget%", "loaded", "revise", "deferred"
    );
    for t in &plan.tasks {
        let calls = t.windows.len();
        let share = 100.0 * calls as f64 / f64::from(plan.daily_calls_per_report.max(1));
        let _ = writeln!(
            out,
            "{:<20} {:<24} {:>7} {:>7} {:>7.1}% {:>7} {:>7} {:>8}",
            t.account_name,
            t.report,
            t.windows.len(),
            calls,
            share,
            t.loaded_dates,
            t.revise_dates,
            t.deferred.len()
        );
    }
    let _ = writeln!(
        out,
        "{:<20} {:<24} {:>7} {:>7} {:>8} {:>7} {:>7} {:>8}",
        "total",
        "",
        plan.calls(),
        plan.calls(),
        "",
        plan.tasks.iter().map(|t| t.loaded_dates).sum::<usize>(),
        plan.tasks.iter().map(|t| t.revise_dates).sum::<usize>(),
        plan.deferred()
    );
}

use crate::plan as plan_mod;

fn print_summary(out: &mut impl Write, r: &RunReport) {
    let _ = writeln!(
        out,
        "run {} of {}: {} .. {} (today {})",
        r.run_id,
        r.pipeline,
        dates::fmt(r.start),
        dates::fmt(r.end),
        dates::fmt(r.today)
    );
    let _ = writeln!(
        out,
        "{:<24} {:>8} {:>8} {:>10} {:>6} {:>10}  status",
        "report", "calls", "planned", "rows", "files", "bytes"
    );
    type Line<'a> = (&'a str, u64, usize, u64, usize, u64, Vec<String>);
    let mut by_report: Vec<Line> = Vec::new();
    for t in &r.tasks {
        let i = match by_report.iter().position(|x| x.0 == t.report) {
            Some(i) => i,
            None => {
                by_report.push((t.report, 0, 0, 0, 0, 0, Vec::new()));
                by_report.len() - 1
            }
        };
        let e = &mut by_report[i];
        e.1 += t.calls;
        e.2 += t.planned_calls;
        e.3 += t.rows;
        e.4 += t.files;
        e.5 += t.bytes;
        if let Some(reason) = &t.reason {
            let what = if !t.failed.is_empty() {
                "failed"
            } else {
                "deferred"
            };
            e.6.push(format!(
                "{} {what} {}: {reason}",
                t.account,
                t.failed.len() + t.deferred.len()
            ));
        }
    }
    for (rep, calls, planned, rows, files, bytes, notes) in &by_report {
        let status = if notes.is_empty() {
            "ok".to_string()
        } else {
            notes.join("; ")
        };
        let _ = writeln!(
            out,
            "{rep:<24} {calls:>8} {planned:>8} {rows:>10} {files:>6} {:>10}  {status}",
            human_bytes(*bytes)
        );
    }
    let _ = writeln!(
        out,
        "total: {} data calls ({} planned, {} retries, {} token calls), {} rows, {} files, {} in {:.1}s; exit {}",
        r.data_calls,
        r.planned_calls,
        r.retries,
        r.token_calls,
        r.rows,
        r.files,
        human_bytes(r.bytes),
        r.seconds,
        r.exit_code
    );
}
