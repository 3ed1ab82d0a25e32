//! A run: wiring only. It builds the plan (state applied, leases taken), starts one fetch
//! worker per account (extract → transform → sort, streaming down a bounded channel) and
//! hands the windows to the [`Loader`], which commits and records them; it returns the
//! [`RunReport`].
//!
//! Each account's worker fetches its windows (rate-limited, capped in flight, and within a
//! memory budget shared by all accounts) report by report in date order, decodes and sorts
//! them, and applies the account's stops (quota, retirement, a withheld permission, a failed
//! token source, a lost lease) to the windows after them.

use crate::clock::Instant;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::{AsArray, BooleanArray, RecordBatch};
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::datatypes::Date32Type;
use chrono::{Duration, NaiveDate};
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc;

use crate::catalog::{self, Replace, Report};
use crate::changes;
use crate::clock::Clock;
use crate::error::ExitCode;
use crate::extract::{AccountClient, Counters, Extractor, FetchError, RetryPolicy};
use crate::lease::{self, Leases};
use crate::load::{FatalError, LoadContext, LoadReport, Loader, Msg, Outcome, StopKind};
use crate::pipeline::{Api, Pipeline};
use crate::plan::{self, Plan};
use crate::state::{self, ReportState};
use crate::store::{Store, StoreError};
use crate::window::Window;

pub use crate::report::{Observer, RunReport, TaskReport};

#[derive(Clone, Default)]
pub struct Options {
    pub accounts: Option<Vec<String>>,
    pub reports: Option<Vec<&'static Report>>,
    pub full_refresh: bool,
    /// `--shard K/N`: only the accounts of that shard.
    pub shard: Option<crate::shard::Shard>,
    /// Lease length and how long to wait for another run's lease.
    pub lease: lease::Config,
    pub retry: Option<RetryPolicy>,
    /// Told about progress as the run goes (progress bars, tests).
    pub observer: Option<Arc<dyn Observer>>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Usage(String),
    #[error("simulator: {0}")]
    Sim(std::io::Error),
    #[error("{0}")]
    Setup(String),
    /// The pipeline's layout disagrees with the table's (a usage error: exit 2).
    #[error(transparent)]
    Layout(#[from] crate::layout::LayoutError),
}

impl RunError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            RunError::Usage(_) | RunError::Layout(crate::layout::LayoutError::Mismatch { .. }) => {
                ExitCode::Usage
            }
            _ => ExitCode::Failure,
        }
    }
}

impl From<RunError> for crate::error::Failure {
    fn from(e: RunError) -> Self {
        crate::error::Failure::new(e.exit_code(), e)
    }
}

/// Resolves `--accounts` / `--reports` against the pipeline.
pub fn select(
    p: &Pipeline,
    opts: &Options,
) -> Result<(Vec<usize>, Vec<&'static Report>), RunError> {
    let mut accounts: Vec<usize> = match &opts.accounts {
        None => (0..p.accounts.len()).collect(),
        Some(names) => {
            let mut out = Vec::new();
            for n in names {
                match p.accounts.iter().position(|a| a.name == *n) {
                    Some(i) if out.contains(&i) => {}
                    Some(i) => out.push(i),
                    None => {
                        let known: Vec<&str> = p.accounts.iter().map(|a| a.name.as_str()).collect();
                        return Err(RunError::Usage(format!(
                            "--accounts: no account named {n:?} in {} (accounts: {})",
                            p.source.display(),
                            known.join(", ")
                        )));
                    }
                }
            }
            out
        }
    };
    if let Some(s) = opts.shard {
        accounts.retain(|&i| s.holds(&p.accounts[i].name));
    }
    let reports = opts.reports.clone().unwrap_or_else(|| p.reports.clone());
    Ok((accounts, reports))
}

/// Reads state for every selected (account, report).
pub async fn read_states(
    store: &Store,
    p: &Pipeline,
    accounts: &[usize],
    reports: &[&'static Report],
) -> Result<HashMap<(String, &'static str), ReportState>, RunError> {
    let mut out = HashMap::new();
    for &a in accounts {
        for r in reports {
            let name = &p.accounts[a].name;
            let (st, _) = state::read(store, r.id, name).await?;
            out.insert((name.clone(), r.id), st);
        }
    }
    Ok(out)
}

/// Checks state against what is stored: one listing per table and account. Returns the
/// loaded dates whose partition is gone; state from a release that did not note its
/// partitions gets the ones present now (in memory; the run's state writes keep them).
async fn reconcile(
    store: &Store,
    p: &Pipeline,
    states: &mut HashMap<(String, &'static str), ReportState>,
) -> Result<HashMap<(String, &'static str), BTreeSet<NaiveDate>>, RunError> {
    let mut lost = HashMap::new();
    for ((account, report), st) in states.iter_mut() {
        if st.loaded.is_empty() {
            continue;
        }
        let prefix = format!("{report}/account={account}/");
        let present: BTreeSet<String> = store
            .list(&prefix)
            .await?
            .iter()
            .filter(|f| f.ends_with("/data.parquet"))
            .filter_map(|f| f.strip_prefix(&prefix)?.split('/').next().map(String::from))
            .collect();
        if st.parts.is_none() {
            st.parts = Some(present);
            st.parts_listed = true;
            continue;
        }
        // Settlements are dated by update: a window's rows may sit a month later.
        let widen = catalog::find(report)
            .filter(|r| r.replace() == Replace::ByKey)
            .map_or(0, |_| 31);
        let gone = st.lost_dates(&present, p.output.partition, widen);
        if !gone.is_empty() {
            tracing::warn!(account = %account, report = *report, dates = gone.len(), "partitions recorded as loaded are gone from the store: their dates are fetched again");
            st.lost = gone.clone();
            lost.insert((account.clone(), *report), gone);
        }
    }
    Ok(lost)
}

/// Saves what checking state against the store found, before any call: dates whose folder
/// is gone are reopened (so a reload cut short by a budget or a failure resumes next run,
/// the folder being back by then), and state that predates `parts` gets the folders listed.
async fn save_reconciled(
    store: &Store,
    states: &HashMap<(String, &'static str), ReportState>,
) -> Result<(), RunError> {
    for ((account, report), st) in states {
        if st.lost.is_empty() && !st.parts_listed {
            continue;
        }
        let listed = st.parts.clone().filter(|_| st.parts_listed);
        state::update(store, report, account, |s| {
            s.reopen_dates(&st.lost);
            if s.parts.is_none() {
                s.parts = listed.clone();
            }
        })
        .await?;
    }
    Ok(())
}

/// A pinned "today" after the real China date would ask WeChat's production hosts for days
/// that do not exist yet and record them as loaded; the simulator and other base URLs
/// (tests, replays) may be driven to any date.
fn refuse_future_today(p: &Pipeline, clock: &Clock) -> Result<(), RunError> {
    let production = match p.api {
        Api::Region(_) => true,
        Api::BaseUrl(ref u) => {
            u.contains(".weixin.qq.com") || p.accounts.iter().any(|a| a.region.is_some())
        }
        Api::Simulator(_) => false,
    };
    let real = Clock::system().today();
    if production && clock.is_pinned() && clock.today() > real {
        return Err(RunError::Usage(format!(
            "--today {} is after today's date in China ({}): WeChat has no data for those days. Leave --today out, or pin a date up to {}",
            crate::dates::fmt(clock.today()),
            crate::dates::fmt(real),
            crate::dates::fmt(real)
        )));
    }
    Ok(())
}

/// The plan for a pipeline, with state applied.
pub async fn make_plan(
    p: &Pipeline,
    clock: &Clock,
    opts: &Options,
    store: &Store,
) -> Result<(Plan, HashMap<(String, &'static str), ReportState>), RunError> {
    let (accounts, reports) = select(p, opts)?;
    crate::layout::check(store, &reports, p.output.partition, false).await?;
    let mut states = read_states(store, p, &accounts, &reports).await?;
    let lost = reconcile(store, p, &mut states).await?;
    let today = clock.today();
    let mut plan = plan::build(
        p,
        clock,
        &accounts,
        &reports,
        opts.full_refresh,
        &|acct, r| {
            let key = (acct.to_string(), r.id);
            let mut l = states
                .get(&key)
                .map(|s| s.loaded(r, today))
                .unwrap_or_default();
            if let Some(gone) = lost.get(&key) {
                for d in gone {
                    l.finals.remove(d);
                    l.revisable.remove(d);
                }
                l.lost = gone.clone();
            }
            l
        },
    );
    // Stops (quota until tomorrow, retired) defer the whole task.
    for t in &mut plan.tasks {
        if let Some(st) = states.get(&(t.account_name.clone(), t.report)) {
            if st.active_stop(today).is_some() && !opts.full_refresh {
                let mut all = std::mem::take(&mut t.windows);
                all.append(&mut t.deferred);
                t.deferred = all;
            }
        }
    }
    Ok((plan, states))
}

pub async fn run(p: &Pipeline, clock: Clock, opts: &Options) -> Result<RunReport, RunError> {
    let started = Instant::now();
    let run_id = format!(
        "{}-{:08x}",
        crate::clock::utc().format("%Y%m%dT%H%M%SZ"),
        std::process::id()
    );
    refuse_future_today(p, &clock)?;
    let store = Arc::new(Store::open(&p.output.uri)?);
    // Leases before the plan: it then reads state that no other run is changing.
    let (accounts, reports) = select(p, opts)?;
    // A refused layout is a usage error, and those write nothing, leases included.
    crate::layout::check(&store, &reports, p.output.partition, false).await?;
    let names: Vec<String> = accounts
        .iter()
        .map(|&i| p.accounts[i].name.clone())
        .collect();
    let holder = lease::Holder::this_process(&run_id);
    let mut leases = Leases::acquire(Arc::clone(&store), &names, holder, opts.lease).await?;
    let result = run_leased(
        p,
        clock,
        opts,
        (started, run_id),
        Arc::clone(&store),
        &leases,
    )
    .await;
    leases.release_all().await;
    // Layout and state records are renamed without a sync of their own: a run that ended
    // early, or whose last write failed, may have left one to a sync nothing else will run.
    let settled = store.settle().await;
    match (result, settled) {
        (Ok(_), Err(e)) => Err(e.into()),
        (result, _) => result,
    }
}

async fn run_leased(
    p: &Pipeline,
    clock: Clock,
    opts: &Options,
    (started, run_id): (Instant, String),
    store: Arc<Store>,
    leases: &Leases,
) -> Result<RunReport, RunError> {
    let (mut plan, states) = make_plan(p, &clock, opts, &store).await?;
    skip_leased(&mut plan, leases).await;
    save_reconciled(&store, &states).await?;
    let log = changes::Log::new(Arc::clone(&store), &run_id);
    let reports = plan
        .tasks
        .iter()
        .map(|t| {
            catalog::find(t.report)
                .ok_or_else(|| RunError::Setup(format!("unknown report {}", t.report)))
        })
        .collect::<Result<Vec<&'static Report>, RunError>>()?;
    let mut writing: Vec<&'static Report> = Vec::new();
    for (t, r) in plan.tasks.iter().zip(&reports) {
        if !t.windows.is_empty() && !writing.iter().any(|w| w.id == r.id) {
            writing.push(r);
        }
    }
    crate::layout::check(&store, &writing, p.output.partition, true).await?;

    let (sim, hosts) = api_hosts(p, &clock).await?;
    let ex = extractor(p, opts)?;
    if let Some(o) = &opts.observer {
        o.started(&plan, Arc::clone(&ex.counters));
    }
    let cx = LoadContext {
        store: Arc::clone(&store),
        log: Arc::clone(&log),
        partition: p.output.partition,
        compression: p.output.compression,
        retry: ex.retry,
        clock,
        observer: opts.observer.clone(),
    };
    let tasks = task_reports(p, &plan, &states, leases);
    let mut loader = Loader::new(cx, &plan, &reports, tasks, &states);
    let (tx, rx) = mpsc::channel::<Msg>(16);
    let workers = start_workers(p, &plan, &reports, &states, (&ex, &hosts), leases, tx);
    let aborts: Vec<_> = workers.iter().map(|w| w.abort_handle()).collect();
    loader.receive(rx, &aborts).await;
    if let Some(e) = join_workers(workers).await {
        loader.fail(FatalError::Worker(e));
    }
    let load = loader.finish().await;
    if let Some(h) = sim {
        h.shutdown().await;
    }
    let report = run_report(p, &plan, (run_id, started), &ex.counters, load, &log);
    if let Some(o) = &opts.observer {
        o.finished(&report);
    }
    // Failed runs too: `wxcube status` shows each task's last run and its exit code.
    let rel = format!("_wxcube/runs/{}.json", report.run_id);
    if let Ok(json) = serde_json::to_vec_pretty(&report) {
        if let Err(e) = store.overwrite(&rel, bytes::Bytes::from(json)).await {
            tracing::warn!(error = %e, "could not write the run report");
        }
    }
    Ok(report)
}

/// The API's base URL and failover host (the simulator's, started here, if configured).
async fn api_hosts(
    p: &Pipeline,
    clock: &Clock,
) -> Result<(Option<crate::sim::SimHandle>, (String, Option<String>)), RunError> {
    Ok(match &p.api {
        Api::BaseUrl(u) => (None, (u.clone(), None)),
        Api::Region(r) => (
            None,
            (r.base_url().to_string(), r.failover().map(String::from)),
        ),
        Api::Simulator(cfg) => {
            let h = crate::sim::start((**cfg).clone(), *clock)
                .await
                .map_err(RunError::Sim)?;
            let u = h.base_url();
            (Some(h), (u, None))
        }
    })
}

fn extractor(p: &Pipeline, opts: &Options) -> Result<Arc<Extractor>, RunError> {
    let retry = opts.retry.unwrap_or_default();
    let seed = crate::clock::seed();
    // A per-process limit: N shards share it out (README "Running many accounts").
    let global_rps = match opts.shard {
        Some(s) => (p.limits.global_requests_per_second / s.n).max(1),
        None => p.limits.global_requests_per_second,
    };
    Ok(Arc::new(Extractor::new(global_rps, retry, seed)))
}

/// Each task's report before any call: what it plans, what it defers and why.
fn task_reports(
    p: &Pipeline,
    plan: &Plan,
    states: &HashMap<(String, &'static str), ReportState>,
    leases: &Leases,
) -> Vec<TaskReport> {
    plan.tasks
        .iter()
        .map(|t| TaskReport {
            account: t.account_name.clone(),
            report: t.report,
            planned_calls: t.windows.len(),
            deferred: t.deferred.clone(),
            reason: if t.deferred.is_empty() {
                None
            } else {
                let st = states.get(&(t.account_name.clone(), t.report));
                let leased = leases.busy.get(&t.account_name);
                Some(match st.and_then(|s| s.active_stop(plan.today)) {
                    _ if leased.is_some() => leased.map(|l| l.busy_message()).unwrap_or_default(),
                    Some(s) => s.message.clone(),
                    None => format!(
                        "daily budget of {} calls reached",
                        p.limits.daily_calls_per_report
                    ),
                })
            },
            ..Default::default()
        })
        .collect()
}

/// One fetch worker per account, sending its windows down `tx`.
fn start_workers(
    p: &Pipeline,
    plan: &Plan,
    reports: &[&'static Report],
    states: &HashMap<(String, &'static str), ReportState>,
    (ex, (base, failover)): (&Arc<Extractor>, &(String, Option<String>)),
    leases: &Leases,
    tx: mpsc::Sender<Msg>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let accounts: BTreeSet<usize> = plan.tasks.iter().map(|t| t.account).collect();
    let mut workers = Vec::new();
    for ai in accounts {
        let acct = &p.accounts[ai];
        // An account's own region beats the pipeline's host (not the simulator's).
        let (abase, afail) = match (acct.region, &p.api) {
            (Some(r), Api::BaseUrl(_) | Api::Region(_)) => {
                (r.base_url().to_string(), r.failover().map(String::from))
            }
            _ => (base.clone(), failover.clone()),
        };
        let client = Arc::new(AccountClient::new(
            acct,
            &abase,
            afail.as_deref(),
            p.limits.requests_per_second,
            p.limits.max_in_flight,
        ));
        let jobs: Vec<(usize, &'static Report, Window)> = plan
            .tasks
            .iter()
            .enumerate()
            .filter(|(_, t)| t.account == ai)
            .flat_map(|(ti, t)| t.windows.iter().map(move |w| (ti, reports[ti], *w)))
            .collect();
        workers.push(tokio::spawn(account_worker(
            Arc::clone(ex),
            client,
            jobs,
            plan.tasks.len(),
            p.limits.max_in_flight as usize,
            plan.today,
            probe_tasks(plan, states, ai),
            (tx.clone(), leases.watch(&acct.name)),
        )));
    }
    workers
}

/// The run's report: the plan, the extractor's counts and the loader's part.
fn run_report(
    p: &Pipeline,
    plan: &Plan,
    (run_id, started): (String, Instant),
    c: &Counters,
    load: LoadReport,
    log: &changes::Log,
) -> RunReport {
    let tasks = load.tasks;
    let partial = tasks
        .iter()
        .any(|r| !r.deferred.is_empty() || !r.failed.is_empty());
    RunReport {
        run_id,
        pipeline: p.name.clone(),
        today: plan.today,
        start: plan.start,
        end: plan.end,
        planned_calls: plan.calls(),
        data_calls: c.data_calls.load(Ordering::Relaxed),
        token_calls: c.token_calls.load(Ordering::Relaxed),
        retries: c.retries.load(Ordering::Relaxed),
        rows: tasks.iter().map(|r| r.rows).sum(),
        files: tasks.iter().map(|r| r.files).sum(),
        bytes: tasks.iter().map(|r| r.bytes).sum(),
        seconds: started.elapsed().as_secs_f64(),
        exit_code: ExitCode::of_run(load.fatal.is_some(), partial).code(),
        error: load.fatal.map(|e| e.to_string()),
        tasks,
        changes: log.take(),
    }
}

/// Accounts another run holds are deferred whole; those with nothing to fetch are let go.
async fn skip_leased(plan: &mut Plan, leases: &Leases) {
    let mut busy_or_idle: BTreeMap<String, bool> = BTreeMap::new();
    for t in &mut plan.tasks {
        if leases.busy.contains_key(&t.account_name) {
            let mut all = std::mem::take(&mut t.windows);
            all.append(&mut t.deferred);
            t.deferred = all;
        }
        let idle = busy_or_idle.entry(t.account_name.clone()).or_insert(true);
        *idle &= t.windows.is_empty();
    }
    let idle: Vec<String> = busy_or_idle
        .into_iter()
        .filter(|(_, idle)| *idle)
        .map(|(a, _)| a)
        .collect();
    leases.release(&idle).await;
}

/// Keeps only rows whose `ref_date` lies in the window fetched: a row outside it would
/// escape the next run's replacement and could be duplicated.
fn within(batch: &RecordBatch, w: &Window, report: &Report, account: &str) -> RecordBatch {
    let dates = batch.column(0).as_primitive::<Date32Type>();
    let span = catalog::date32(w.begin)..=catalog::date32(w.end);
    // Nearly always all inside: checked without building a mask.
    if dates.values().iter().all(|d| span.contains(d)) {
        return batch.clone();
    }
    let keep: BooleanArray = dates
        .values()
        .iter()
        .map(|d| Some(span.contains(d)))
        .collect();
    tracing::warn!(account, report = report.id, window = %w, dropped = batch.num_rows() - keep.true_count(), "rows outside the requested window ignored");
    // Filtering a batch by a mask of its own length cannot fail; keep the rows if it did.
    filter_record_batch(batch, &keep).unwrap_or_else(|_| batch.clone())
}

/// The account's tasks whose permission WeChat withheld in an earlier run.
fn probe_tasks(
    plan: &Plan,
    states: &HashMap<(String, &'static str), ReportState>,
    account: usize,
) -> BTreeSet<usize> {
    plan.tasks
        .iter()
        .enumerate()
        .filter(|(_, t)| t.account == account)
        .filter(|(_, t)| {
            states
                .get(&(t.account_name.clone(), t.report))
                .is_some_and(|s| s.permission_stop().is_some())
        })
        .map(|(i, _)| i)
        .collect()
}

/// Waits for the account workers; a panicked one is reported (its windows never arrived).
async fn join_workers(workers: Vec<tokio::task::JoinHandle<()>>) -> Option<String> {
    let mut err = None;
    for w in workers {
        if let Err(e) = w.await {
            if e.is_panic() {
                err.get_or_insert_with(|| format!("internal error: a fetch worker panicked ({e}); its windows were not committed, a re-run fetches them"));
            }
        }
    }
    err
}

/// How far (in windows, plan order) an account may run ahead of its oldest unfinished one.
const LOOKAHEAD: usize = 32;

/// A task's stop: its message, and whether its other windows are deferred (else failed).
type TaskStop = (String, bool);

/// Stops shared by one account's in-flight fetches.
#[derive(Clone)]
struct Stops {
    /// Per task (quota, retired, permission).
    task: Arc<Vec<Mutex<Option<TaskStop>>>>,
    /// Account-wide: its configuration or token source failed.
    account: Arc<Mutex<Option<String>>>,
    any: Arc<AtomicBool>,
    /// Another run took the account over.
    lease: lease::Watch,
}

impl Stops {
    fn new(ntasks: usize, lease: lease::Watch) -> Stops {
        Stops {
            task: Arc::new((0..ntasks).map(|_| Mutex::new(None)).collect()),
            account: Arc::new(Mutex::new(None)),
            any: Arc::new(AtomicBool::new(false)),
            lease,
        }
    }

    /// The outcome of a window of task `ti` not to fetch at all, if a stop applies.
    fn now(&self, ti: usize) -> Option<Outcome> {
        // Another run took the account over: call WeChat no more for it.
        if let Some(m) = self.lease.lost() {
            return Some(Outcome::Failed(m, 0));
        }
        if !self.any.load(Ordering::Relaxed) {
            return None;
        }
        if let Some(m) = self.account.lock().ok().and_then(|g| g.clone()) {
            return Some(Outcome::Failed(m, 0));
        }
        self.task[ti]
            .lock()
            .ok()
            .and_then(|g| g.clone())
            .map(|(m, deferred)| {
                if deferred {
                    Outcome::Deferred(m, 0)
                } else {
                    Outcome::Failed(m, 0)
                }
            })
    }

    /// A failed fetch: what it stops for the account's other windows, and its outcome.
    fn note(
        &self,
        ti: usize,
        e: FetchError,
        (r, w, account): (&Report, Window, &str),
        calls: u32,
    ) -> (Outcome, Option<StopKind>) {
        let msg = describe(&e, r, account);
        let kind = match e {
            FetchError::Quota => StopKind::Quota,
            FetchError::Retired => StopKind::Retired,
            FetchError::Permission { .. } => StopKind::Permission,
            // A failed token source is remembered by the client too: the account's other
            // windows fail at once, without calls.
            FetchError::Config { .. } | FetchError::TokenSource { .. } => {
                if let Ok(mut g) = self.account.lock() {
                    g.get_or_insert(msg.clone());
                }
                self.any.store(true, Ordering::Relaxed);
                tracing::error!(account, report = r.id, "{msg}");
                return (Outcome::Failed(msg, calls), None);
            }
            _ => {
                tracing::error!(account, report = r.id, window = %w, "{msg}");
                return (Outcome::Failed(msg, calls), None);
            }
        };
        if let Ok(mut g) = self.task[ti].lock() {
            g.get_or_insert((msg.clone(), kind == StopKind::Quota));
        }
        self.any.store(true, Ordering::Relaxed);
        tracing::warn!(account, report = r.id, window = %w, "{msg}");
        let outcome = if kind == StopKind::Quota {
            Outcome::Deferred(msg, calls)
        } else {
            Outcome::Failed(msg, calls)
        };
        (outcome, Some(kind))
    }
}

/// Fetches one window and readies its rows for the loader (sorted, within the window).
async fn fetch_window(
    (ex, client, stops): (Arc<Extractor>, Arc<AccountClient>, Stops),
    (ti, r, w): (usize, &'static Report, Window),
    today: NaiveDate,
) -> Msg {
    if let Some(outcome) = stops.now(ti) {
        return Msg {
            task: ti,
            window: w,
            outcome,
            stop: None,
            _permit: None,
        };
    }
    let mut calls = 0u32;
    let mut held = None;
    let (outcome, stop) =
        match fetch_adaptive(&ex, &client, r, w, today, &mut calls, &mut held).await {
            Ok((batch, is_delay)) => {
                // Twice the decoded size: the body and the rows coexist while decoding.
                ex.budget.observe(r, batch.get_array_memory_size() >> 9);
                // Sorted by the loader's partition streams, a row group at a time.
                let batch = match r.replace() {
                    Replace::ByKey => batch,
                    Replace::ByDate => within(&batch, &w, r, &client.name),
                };
                let outcome = Outcome::Done {
                    batch,
                    is_delay,
                    calls,
                };
                (outcome, None)
            }
            Err(e) => stops.note(ti, e, (r, w, &client.name), calls),
        };
    // Calls made by a window that failed still count against the daily budget.
    Msg {
        task: ti,
        window: w,
        outcome,
        stop,
        _permit: held,
    }
}

/// Fetches one account's windows, `max_in_flight` at a time, in plan order.
#[allow(clippy::too_many_arguments)]
async fn account_worker(
    ex: Arc<Extractor>,
    client: Arc<AccountClient>,
    jobs: Vec<(usize, &'static Report, Window)>,
    ntasks: usize,
    max_in_flight: usize,
    today: NaiveDate,
    probe: BTreeSet<usize>,
    (tx, lease): (mpsc::Sender<Msg>, lease::Watch),
) {
    // Tasks whose permission WeChat withheld last run: their first window goes alone, so
    // a still-missing permission costs one call, not one per window in flight.
    let mut probe: BTreeMap<usize, bool> = probe.into_iter().map(|t| (t, false)).collect();
    let stops = Stops::new(ntasks, lease);
    let mut queue = jobs.into_iter().enumerate().peekable();
    let mut running = FuturesUnordered::new();
    // Windows started and not yet handed on. None starts more than LOOKAHEAD windows after
    // the oldest: a window stuck in retries cannot make the loader hold the rest of its
    // partition (everything after it waits for it there).
    let mut unfinished = BTreeSet::new();
    let lookahead = LOOKAHEAD.max(max_in_flight);
    loop {
        while running.len() < max_in_flight.max(1) {
            let Some(&(idx, (ti, _, _))) = queue.peek() else {
                break;
            };
            if probe.get(&ti) == Some(&true) {
                break;
            }
            if unfinished
                .first()
                .is_some_and(|&oldest| idx >= oldest + lookahead)
            {
                break;
            }
            let Some((idx, job)) = queue.next() else {
                break;
            };
            if let Some(in_flight) = probe.get_mut(&ti) {
                *in_flight = true;
            }
            let shared = (Arc::clone(&ex), Arc::clone(&client), stops.clone());
            let fetch = fetch_window(shared, job, today);
            unfinished.insert(idx);
            running.push(async move { (idx, fetch.await) });
        }
        match running.next().await {
            Some((idx, msg)) => {
                unfinished.remove(&idx);
                probe.remove(&msg.task);
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
            None => return,
        }
    }
}

/// Fetches a window; on 61501 for a multi-day window, halves it and fetches both halves.
async fn fetch_adaptive(
    ex: &Extractor,
    client: &AccountClient,
    r: &'static Report,
    w: Window,
    today: NaiveDate,
    calls: &mut u32,
    held: &mut Option<crate::extract::Reservation>,
) -> Result<(RecordBatch, bool), FetchError> {
    let mut stack = vec![w];
    let mut parts = Vec::new();
    let mut delay = false;
    while let Some(w) = stack.pop() {
        match ex.fetch_held(client, r, w, today, calls, held).await {
            Ok(f) => {
                delay |= f.decoded.is_delay;
                parts.push(f.decoded.batch);
            }
            Err(FetchError::Range { errmsg }) if w.days() > 1 => {
                let half = Duration::days(w.days() / 2 - 1);
                let left = Window {
                    begin: w.begin,
                    end: w.begin + half,
                };
                let right = Window {
                    begin: left.end + Duration::days(1),
                    end: w.end,
                };
                tracing::warn!(account = %client.name, report = r.id, window = %w, %errmsg, "61501: halving the window");
                stack.push(right);
                stack.push(left);
            }
            Err(e) => return Err(e),
        }
    }
    // Nearly always one part: concatenating it would slice every column anew.
    if parts.len() == 1 {
        if let Some(batch) = parts.pop() {
            return Ok((batch, delay));
        }
    }
    let schema = crate::catalog::schema(r);
    let batch =
        concat_batches(&schema, &parts).map_err(|e| FetchError::Transient(e.to_string()))?;
    Ok((batch, delay))
}

fn describe(e: &FetchError, r: &Report, account: &str) -> String {
    match e {
        FetchError::Quota => format!(
            "daily quota exhausted (45009) for {} on account {account}: deferred to the next China midnight; re-run tomorrow to resume",
            r.id
        ),
        FetchError::Retired => format!(
            "WeChat retired {} (47009 \"this api is offline\") for account {account}: use {} instead",
            r.id,
            r.replacement.unwrap_or("the current reports")
        ),
        FetchError::Config { errcode, hint } => format!("account {account}: errcode {errcode}: {hint}"),
        FetchError::TokenSource { .. } => format!("account {account}: {e}"),
        FetchError::Permission { errcode } => format!(
            "{} for account {account}: WeChat answered {errcode} ({}): grant {} to this caller, then re-run; the account's other reports are not affected",
            r.id,
            if *errcode == 50001 { "user unauthorized" } else { "api unauthorized" },
            r.permission().grant()
        ),
        other => format!("{} for account {account}: {other}", r.id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_worker_is_a_failure_not_a_silent_loss() {
        let ok = tokio::spawn(async {});
        let bad = tokio::spawn(async { panic!("boom") });
        assert_eq!(join_workers(vec![ok]).await, None);
        let msg = join_workers(vec![bad]).await.expect("reported");
        assert!(msg.contains("panicked"), "{msg}");
    }
}
