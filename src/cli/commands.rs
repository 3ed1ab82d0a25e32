//! One function per subcommand: resolve its options, do the work, render the result.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::args::Common;
use super::render;
use super::resolve::{clock, lease_config, load_pipeline, options, resolve_reports};
use super::{EXIT_OK, EXIT_USAGE};
use crate::changes::Since;
use crate::error::Failure;
use crate::progress::{self, Progress};
use crate::run;

/// `validate`: every file checked, every problem printed.
pub(super) fn validate(out: &mut impl Write, pipelines: &[PathBuf], common: &Common) -> i32 {
    let mut bad = 0;
    for p in pipelines {
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
    if bad > 0 {
        EXIT_USAGE
    } else {
        EXIT_OK
    }
}

/// `schema`: one report's Arrow schema.
pub(super) fn schema(out: &mut impl Write, report: &str, common: &Common) -> Result<(), Failure> {
    let r = resolve_reports(&[report.to_owned()])?[0];
    render::print_schema(out, r, common.json);
    Ok(())
}

/// `status`: what is loaded, from state only.
pub(super) async fn status(
    out: &mut impl Write,
    pipeline: &Path,
    common: &Common,
) -> Result<(), Failure> {
    let p = load_pipeline(pipeline)?;
    let opts = options(common, false)?;
    let store =
        crate::store::Store::open(&p.output.uri).map_err(|e| Failure::usage(e.to_string()))?;
    let st = crate::status::status(&p, &clock(common), &opts, &store)
        .await
        .map_err(Failure::from)?;
    render::print_either(out, common.json, &st, |o, v| render::print_status(o, v));
    Ok(())
}

/// `changes`: the partitions committed since a run or a time.
pub(super) async fn changes(
    out: &mut impl Write,
    uri: &str,
    since: &Since,
    common: &Common,
) -> Result<(), Failure> {
    let store = crate::store::Store::open(uri).map_err(|e| Failure::usage(e.to_string()))?;
    let l = crate::changes::list(&store, since)
        .await
        .map_err(|e| match e {
            crate::changes::ChangesError::Usage(m) => Failure::usage(m),
            other => Failure::runtime(other.to_string()),
        })?;
    render::print_either(out, common.json, &l, |o, v| render::print_changes(o, v));
    Ok(())
}

/// `plan`: the calls a run would make.
pub(super) async fn plan(
    out: &mut impl Write,
    pipeline: &Path,
    full_refresh: bool,
    shards: Option<u32>,
    common: &Common,
) -> Result<(), Failure> {
    let p = load_pipeline(pipeline)?;
    if let Some(n) = shards.filter(|n| !(1..=crate::shard::MAX_SHARDS).contains(n)) {
        return Err(Failure::usage(format!(
            "--shards {n}: between 1 and {}",
            crate::shard::MAX_SHARDS
        )));
    }
    let opts = options(common, full_refresh)?;
    let clock = clock(common);
    let store =
        crate::store::Store::open(&p.output.uri).map_err(|e| Failure::usage(e.to_string()))?;
    let (plan, _) = run::make_plan(&p, &clock, &opts, &store)
        .await
        .map_err(Failure::from)?;
    if common.json {
        let shards = shards.or(common.shard.map(|s| s.n));
        render::print_json(out, &render::plan_json(&p, &plan, shards));
    } else {
        render::print_plan(out, &p, &plan);
    }
    Ok(())
}

/// `run`: the pipeline, with progress bars and a summary; the run's exit code.
pub(super) async fn run(
    out: &mut impl Write,
    pipeline: &Path,
    full_refresh: bool,
    (lease_wait, lease_seconds): (f64, f64),
    common: &Common,
) -> Result<i32, Failure> {
    let p = load_pipeline(pipeline)?;
    let mut opts = options(common, full_refresh)?;
    opts.lease = lease_config(lease_wait, lease_seconds)?;
    let clock = clock(common);
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
    let outcome = run::run(&p, clock, &opts).await;
    let report = outcome.map_err(|e| {
        if let Some(b) = &bars {
            b.clear();
        }
        Failure::from(e)
    })?;
    if common.json {
        render::print_json(out, &report);
    } else if !common.quiet {
        let store = crate::store::Store::open(&p.output.uri).ok();
        let saved = store.map(|s| s.describe(&format!("_wxcube/runs/{}.json", report.run_id)));
        render::print_summary(out, &report, saved.as_deref());
    }
    if let Some(e) = &report.error {
        eprintln!("error: {e}");
    }
    Ok(report.exit_code)
}

/// `simulate`: the built-in API on loopback until stopped.
pub(super) async fn simulate(
    mut out: impl Write,
    port: u16,
    config: &str,
    seed: Option<u64>,
    common: &Common,
) -> Result<(), Failure> {
    let mut cfg: crate::pipeline::SimConfig =
        serde_json::from_str(config).map_err(|e| Failure::usage(format!("--config: {e}")))?;
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
    crate::sim::serve(cfg, clock(common), listener)
        .await
        .map_err(|e| Failure::runtime(e.to_string()))?;
    Ok(())
}
