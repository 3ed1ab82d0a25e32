//! A run: plan → extract → transform → load, streaming.
//!
//! Each account has a worker that fetches its windows (rate-limited, capped in flight, and
//! within a memory budget shared by all accounts), decodes and sorts them, and sends them
//! down a bounded channel. Windows are worked report by report in date order; the loader
//! appends each to its partition's [`load::PartStream`] in date order (a window that
//! overtook an earlier one waits for it). Once every window touching a partition has
//! arrived (or failed), the partition is committed once, and state is recorded for the
//! windows whose partitions are all committed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{AsArray, BooleanArray, RecordBatch};
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::datatypes::Date32Type;
use chrono::{Duration, NaiveDate, Utc};
use futures::stream::{FuturesUnordered, StreamExt};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::catalog::{self, Report};
use crate::changes;
use crate::dates::Clock;
use crate::extract::{AccountClient, Counters, Extractor, FetchError, RetryPolicy};
use crate::lease::{self, Leases};
use crate::load::{self, partitions_of, split};
use crate::pipeline::{Api, Pipeline};
use crate::plan::{self, Plan, Window};
use crate::state::{self, LoadedWindow, ReportState, Stop};
use crate::store::{Store, StoreError};
use crate::transform::from_date32;

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

/// Hooks into a run's progress. Called from the loader, one event at a time, so an
/// implementation needs no ordering of its own. Live call/retry counts are in `counters`.
pub trait Observer: Send + Sync {
    fn started(&self, _plan: &Plan, _counters: Arc<Counters>) {}
    /// A window arrived: its rows and the calls it took (retries included).
    fn window_done(
        &self,
        _account: &str,
        _report: &'static str,
        _window: Window,
        _rows: usize,
        _calls: u32,
    ) {
    }
    fn window_deferred(
        &self,
        _account: &str,
        _report: &'static str,
        _window: Window,
        _reason: &str,
    ) {
    }
    fn window_failed(&self, _account: &str, _report: &'static str, _window: Window, _reason: &str) {
    }
    fn committed(
        &self,
        _account: &str,
        _report: &'static str,
        _partition: &str,
        _rows: usize,
        _bytes: usize,
    ) {
    }
    fn finished(&self, _report: &RunReport) {}
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

/// Per account and report: what happened.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TaskReport {
    pub account: String,
    pub report: &'static str,
    pub planned_calls: usize,
    pub calls: u64,
    pub windows_done: usize,
    pub rows: u64,
    pub files: usize,
    pub bytes: u64,
    pub deferred: Vec<Window>,
    pub failed: Vec<Window>,
    /// Dates loaded but not final: `is_delay`, or no rows yet for one of the latest ready
    /// days (WeChat publishes late some mornings); the next run fetches them again.
    pub provisional_dates: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run_id: String,
    pub pipeline: String,
    pub today: NaiveDate,
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub planned_calls: usize,
    pub data_calls: u64,
    pub token_calls: u64,
    pub retries: u64,
    pub rows: u64,
    pub files: usize,
    pub bytes: u64,
    pub seconds: f64,
    pub exit_code: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub tasks: Vec<TaskReport>,
    /// Every partition the run committed (also in the change log, `_wxcube/changes/`).
    #[serde(default)]
    pub changes: Vec<changes::Change>,
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
            .filter(|r| catalog::replaced_by_key(r))
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

enum Outcome {
    Done {
        batch: RecordBatch,
        is_delay: bool,
        calls: u32,
    },
    /// Deferred or failed, with the calls it made before.
    Deferred(String, u32),
    Failed(String, u32),
}

struct Msg {
    task: usize,
    window: Window,
    outcome: Outcome,
    /// WeChat stopped this report for this account (typed, never read from message text).
    stop: Option<StopKind>,
    /// Its share of the in-flight memory budget, released once the loader has the rows.
    _permit: Option<crate::extract::Reservation>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopKind {
    /// 45009: the daily quota; resumes after China midnight.
    Quota,
    /// 47009: the API is offline for this account.
    Retired,
    /// 48001 / 50001: the report's permission set is not granted; the account's other
    /// reports go on, and later runs try again.
    Permission,
}

/// Per task (account × report) bookkeeping in the loader.
struct Tracker {
    report: &'static Report,
    account: String,
    /// Windows not yet arrived, per partition.
    pending: BTreeMap<String, usize>,
    /// Fresh rows per partition, written as the windows arrive.
    fills: BTreeMap<String, Fill>,
    /// Reports replaced by key: every window's rows, committed together.
    keyed: Vec<RecordBatch>,
    /// Windows fetched, per partition.
    fetched: BTreeMap<String, Vec<Window>>,
    /// Per window: partitions not yet committed, and its provisional dates.
    open: BTreeMap<Window, (usize, BTreeSet<NaiveDate>)>,
}

pub async fn run(p: &Pipeline, clock: Clock, opts: &Options) -> Result<RunReport, RunError> {
    let started = Instant::now();
    let run_id = format!(
        "{}-{:08x}",
        Utc::now().format("%Y%m%dT%H%M%SZ"),
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
    let result = run_leased(p, clock, opts, (started, run_id), store, &leases).await;
    leases.release_all().await;
    result
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
    let today = plan.today;
    let mut writing: Vec<&'static Report> = Vec::new();
    for t in plan.tasks.iter().filter(|t| !t.windows.is_empty()) {
        if let Some(r) = catalog::find(t.report).filter(|r| !writing.iter().any(|w| w.id == r.id)) {
            writing.push(r);
        }
    }
    crate::layout::check(&store, &writing, p.output.partition, true).await?;

    let mut sim = None;
    let (base, failover) = match &p.api {
        Api::BaseUrl(u) => (u.clone(), None),
        Api::Region(r) => (r.base_url().to_string(), r.failover().map(String::from)),
        Api::Simulator(cfg) => {
            let h = crate::sim::start((**cfg).clone(), clock)
                .await
                .map_err(RunError::Sim)?;
            let u = h.base_url();
            sim = Some(h);
            (u, None)
        }
    };
    let retry = opts.retry.unwrap_or_default();
    let seed = started.elapsed().as_nanos() as u64 ^ u64::from(std::process::id());
    // A per-process limit: N shards share it out (README "Running many accounts").
    let global_rps = match opts.shard {
        Some(s) => (p.limits.global_requests_per_second / s.n).max(1),
        None => p.limits.global_requests_per_second,
    };
    let ex = Arc::new(
        Extractor::new(global_rps, retry, seed).map_err(|e| RunError::Setup(e.to_string()))?,
    );
    if let Some(o) = &opts.observer {
        o.started(&plan, Arc::clone(&ex.counters));
    }
    let mut reports: Vec<TaskReport> = plan
        .tasks
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
                Some(match st.and_then(|s| s.active_stop(today)) {
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
        .collect();

    let mut trackers: Vec<Tracker> = Vec::new();
    for t in &plan.tasks {
        let report = catalog::find(t.report)
            .ok_or_else(|| RunError::Setup(format!("unknown report {}", t.report)))?;
        let mut tr = Tracker {
            report,
            account: t.account_name.clone(),
            pending: BTreeMap::new(),
            fills: BTreeMap::new(),
            keyed: Vec::new(),
            fetched: BTreeMap::new(),
            open: BTreeMap::new(),
        };
        let mut windows = t.windows.clone();
        windows.sort();
        for w in &windows {
            let parts = task_parts(tr.report, p.output.partition, w);
            for part in &parts {
                *tr.pending.entry(part.clone()).or_default() += 1;
                tr.fills
                    .entry(part.clone())
                    .or_default()
                    .order
                    .push_back(*w);
            }
            tr.open.insert(*w, (parts.len(), BTreeSet::new()));
        }
        trackers.push(tr);
    }

    // One worker per account.
    let (tx, mut rx) = mpsc::channel::<Msg>(16);
    let mut workers = Vec::new();
    for &ai in plan
        .tasks
        .iter()
        .map(|t| t.account)
        .collect::<std::collections::BTreeSet<_>>()
        .iter()
    {
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
            .flat_map(|(ti, t)| {
                let r = trackers[ti].report;
                t.windows.iter().map(move |w| (ti, r, *w))
            })
            .collect();
        let ntasks = plan.tasks.len();
        workers.push(tokio::spawn(account_worker(
            Arc::clone(&ex),
            client,
            jobs,
            ntasks,
            p.limits.max_in_flight as usize,
            today,
            probe_tasks(&plan, &states, ai),
            (tx.clone(), leases.watch(&acct.name)),
        )));
    }
    drop(tx);

    let mut fatal: Option<String> = None;
    let ready = plan.latest_ready;
    let store_ref = &store;
    // Commits and state writes run concurrently (bounded), so a slow disk or S3 never
    // stalls the fetching; the loader only does bookkeeping.
    let slots = Arc::new(tokio::sync::Semaphore::new(COMMITS_IN_FLIGHT));
    let mut jobs: tokio::task::JoinSet<Done> = tokio::task::JoinSet::new();
    let mut states_pending: Vec<Vec<LoadedWindow>> = vec![Vec::new(); plan.tasks.len()];
    // Folders committed since the task's last state write.
    let mut parts_pending: Vec<Vec<String>> = vec![Vec::new(); plan.tasks.len()];
    let mut state_busy = vec![false; plan.tasks.len()];
    // State is written once a task has nothing more to commit, or every STATE_EVERY while
    // it does: a crash refetches at most that much (a refetch replaces, never duplicates).
    let mut commits_running = vec![0usize; plan.tasks.len()];
    let mut state_written = vec![Instant::now(); plan.tasks.len()];
    // Calls already counted against the daily budget by the state writes: the last write of
    // a task usually counts them all, so the closing bookkeeping needs no write of its own.
    let mut calls_recorded = vec![0u64; plan.tasks.len()];
    let mut fetching = true;
    let mut stops: Vec<Option<(StopKind, String)>> = vec![None; plan.tasks.len()];
    while fetching || !jobs.is_empty() {
        tokio::select! {
            msg = rx.recv(), if fetching => {
                let Some(msg) = msg else {
                    fetching = false;
                    continue;
                };
                if let (Some(k), Outcome::Deferred(reason, _) | Outcome::Failed(reason, _)) = (msg.stop, &msg.outcome) {
                    stops[msg.task].get_or_insert((k, reason.clone()));
                }
                let tr = &mut trackers[msg.task];
                let rep = &mut reports[msg.task];
                let parts = task_parts(tr.report, p.output.partition, &msg.window);
                let keyed = catalog::replaced_by_key(tr.report);
                let compression = p.output.compression;
                match msg.outcome {
                    Outcome::Done { batch, is_delay, calls } => {
                        if let Some(o) = &opts.observer {
                            o.window_done(&tr.account, tr.report.id, msg.window, batch.num_rows(), calls);
                        }
                        rep.calls += u64::from(calls);
                        rep.windows_done += 1;
                        let provisional = provisional_dates(tr.report, msg.window, &batch, is_delay, ready);
                        if keyed {
                            tr.keyed.push(batch);
                        } else {
                            // The worker sent the rows sorted and within the window.
                            let mut by_part: BTreeMap<String, RecordBatch> = match split(&batch, p.output.partition) {
                                Ok(v) => v.into_iter().collect(),
                                Err(e) => {
                                    fatal.get_or_insert(format!("splitting {} rows by partition: {e}", tr.report.id));
                                    BTreeMap::new()
                                }
                            };
                            for part in &parts {
                                if let Err(e) = tr.arrive(part, msg.window, by_part.remove(part), compression, store_ref) {
                                    fatal.get_or_insert(e);
                                }
                            }
                        }
                        for part in &parts {
                            tr.fetched.entry(part.clone()).or_default().push(msg.window);
                        }
                        rep.provisional_dates += provisional.len();
                        if let Some(o) = tr.open.get_mut(&msg.window) {
                            o.1 = provisional;
                        }
                    }
                    Outcome::Deferred(reason, calls) => {
                        rep.calls += u64::from(calls);
                        if let Some(o) = &opts.observer {
                            o.window_deferred(&tr.account, tr.report.id, msg.window, &reason);
                        }
                        rep.deferred.push(msg.window);
                        rep.reason.get_or_insert(reason);
                        tr.open.remove(&msg.window);
                        for part in &parts {
                            if let Err(e) = tr.arrive(part, msg.window, None, compression, store_ref) {
                                fatal.get_or_insert(e);
                            }
                        }
                    }
                    Outcome::Failed(reason, calls) => {
                        rep.calls += u64::from(calls);
                        if let Some(o) = &opts.observer {
                            o.window_failed(&tr.account, tr.report.id, msg.window, &reason);
                        }
                        rep.failed.push(msg.window);
                        rep.reason.get_or_insert(reason);
                        tr.open.remove(&msg.window);
                        for part in &parts {
                            if let Err(e) = tr.arrive(part, msg.window, None, compression, store_ref) {
                                fatal.get_or_insert(e);
                            }
                        }
                    }
                }
                // Commit every partition that has all its windows.
                for part in parts {
                    let left = tr.pending.get_mut(&part).map(|n| {
                        *n -= 1;
                        *n
                    });
                    if left != Some(0) || fatal.is_some() {
                        continue;
                    }
                    tr.pending.remove(&part);
                    let stream = tr.fills.remove(&part).and_then(|f| f.stream);
                    let keyed_rows = std::mem::take(&mut tr.keyed);
                    let windows = tr.fetched.remove(&part).unwrap_or_default();
                    if windows.is_empty() {
                        continue;
                    }
                    let rows: Vec<load::Fresh> = match stream.map(load::PartStream::finish).transpose() {
                        Ok(f) => f.into_iter().collect(),
                        Err(e) => {
                            fatal.get_or_insert(format!(
                                "writing {}: {e}",
                                store.describe(&load::file_rel(tr.report.id, &tr.account, &part))
                            ));
                            continue;
                        }
                    };
                    let (store, slots, retry, log) = (Arc::clone(store_ref), Arc::clone(&slots), ex.retry, Arc::clone(&log));
                    let (report, account, compression, task) = (tr.report, tr.account.clone(), p.output.compression, msg.task);
                    let partition = p.output.partition;
                    // What the task may still commit: listed in its change record up front.
                    let later: Vec<String> = tr.pending.keys().filter(|k| k.as_str() != ALL_PARTS).cloned().collect();
                    // Waiting for a slot here (not inside the task) is the backpressure that
                    // keeps buffered partitions bounded when commits are slower than fetching.
                    let slot = slots.acquire_owned().await;
                    commits_running[task] += 1;
                    jobs.spawn(async move {
                        let _slot = slot;
                        let n: u64 = rows.iter().map(|b| b.rows() as u64).sum::<u64>()
                            + keyed_rows.iter().map(|b| b.num_rows() as u64).sum::<u64>();
                        if part != ALL_PARTS {
                            // The change record first: a crash after the commit still leaves it.
                            let batch = match log.begin_part(report.id, &account, &part, || later).await {
                                Ok(b) => b,
                                Err(e) => return Done::Commit { task, part, parts: Vec::new(), windows, rows: n, files: 1, result: Err(e.into()) },
                            };
                            let result = commit_with_retry(&store, report, &account, &part, &windows, &rows, compression, &retry).await;
                            if let Ok(c) = &result {
                                log.finish_part(batch, c).await;
                            }
                            let parts = vec![part.clone()];
                            return Done::Commit { task, part, parts, windows, rows: n, files: 1, result };
                        }
                        let (parts, files, result) = commit_keyed(&store, report, &account, &keyed_rows, partition, compression, &retry, &log).await;
                        Done::Commit { task, part, parts, windows, rows: n, files, result }
                    });
                }
            }
            Some(done) = jobs.join_next(), if !jobs.is_empty() => {
                let done = match done {
                    Ok(d) => d,
                    Err(e) => {
                        fatal.get_or_insert(format!("internal error in a commit: {e}"));
                        continue;
                    }
                };
                // The task whose state may need a write now (none after a failed one).
                let next_state = match done {
                    Done::Commit { task, part, parts, windows, rows, files, result } => {
                        commits_running[task] -= 1;
                        let tr = &mut trackers[task];
                        let rep = &mut reports[task];
                        match result {
                            Ok(c) => {
                                parts_pending[task].extend(parts);
                                rep.files += files;
                                rep.bytes += c.bytes as u64;
                                rep.rows += rows;
                                tracing::info!(account = %tr.account, report = tr.report.id, partition = %part, rows = c.rows, bytes = c.bytes, "committed");
                                if let Some(o) = &opts.observer {
                                    o.committed(&tr.account, tr.report.id, &part, c.rows, c.bytes);
                                }
                                // Windows whose partitions are now all committed go into state.
                                for w in &windows {
                                    if let Some(o) = tr.open.get_mut(w) {
                                        o.0 -= 1;
                                        if o.0 == 0 {
                                            states_pending[task].push(LoadedWindow { window: *w, provisional: std::mem::take(&mut o.1) });
                                        }
                                    }
                                }
                                for l in &states_pending[task] {
                                    tr.open.remove(&l.window);
                                }
                            }
                            // A file that cannot merge was moved aside: that task fails, not the run.
                            Err(e @ load::LoadError::Quarantined { .. }) => {
                                // Each file named: another reason may already be there.
                                let r = rep.reason.get_or_insert_with(String::new);
                                if !r.is_empty() {
                                    r.push_str("; ");
                                }
                                r.push_str(&e.to_string());
                                rep.failed.extend(windows.iter().copied());
                            }
                            Err(e) => {
                                tracing::error!(account = %tr.account, report = tr.report.id, partition = %part, error = %e, "commit failed");
                                fatal.get_or_insert(format!(
                                    "committing {}: {e}",
                                    store.describe(&load::file_rel(tr.report.id, &tr.account, &part))
                                ));
                                rep.failed.extend(windows.iter().copied());
                            }
                        }
                        Some(task)
                    }
                    Done::Flush => None,
                    Done::State { task, calls, result } => {
                        state_busy[task] = false;
                        match result {
                            Ok(()) => Some(task),
                            Err(e) => {
                                calls_recorded[task] -= calls;
                                fatal.get_or_insert(format!("writing state: {e}"));
                                None
                            }
                        }
                    }
                };
                // One state write per task at a time, carrying every window committed since.
                let last = !fetching && jobs.is_empty();
                let due = |t: usize| {
                    !state_busy[t]
                        && !states_pending[t].is_empty()
                        && (last || (trackers[t].pending.is_empty() && commits_running[t] == 0) || state_written[t].elapsed() >= STATE_EVERY)
                };
                let due: Vec<usize> = if last { (0..trackers.len()).filter(|&t| due(t)).collect() } else { next_state.filter(|&t| due(t)).into_iter().collect() };
                for task in due {
                    state_written[task] = Instant::now();
                    state_busy[task] = true;
                    let calls = reports[task].calls - calls_recorded[task];
                    calls_recorded[task] += calls;
                    let tr = &trackers[task];
                    let present = states.get(&(tr.account.clone(), tr.report.id)).and_then(|s| s.parts.clone());
                    let done = Recorded { windows: std::mem::take(&mut states_pending[task]), parts: std::mem::take(&mut parts_pending[task]), present };
                    jobs.spawn(write_state(Arc::clone(store_ref), task, tr.report.id, tr.account.clone(), done, ready, ex.retry, (today, calls, clock.now().with_timezone(&Utc))));
                }
            }
        }
        if fatal.is_some() {
            for w in &workers {
                w.abort();
            }
            fetching = false;
        }
        if !fetching
            && jobs.is_empty()
            && (0..trackers.len()).any(|t| !state_busy[t] && !states_pending[t].is_empty())
        {
            jobs.spawn(async { Done::Flush });
        }
    }
    if let Some(e) = join_workers(workers).await {
        fatal.get_or_insert(e);
    }
    log.close().await;
    // Every planned window must have been accounted for; one that was not would be lost.
    if fatal.is_none() {
        if let Some(tr) = trackers.iter().find(|t| !t.pending.is_empty()) {
            fatal = Some(format!(
                "internal error: {} windows of {} for account {} never arrived; nothing of them was recorded, a re-run fetches them",
                tr.pending.values().sum::<usize>(),
                tr.report.id,
                tr.account
            ));
        }
    }

    // Budget, quota and retirement bookkeeping, all tasks at once; calls count against the
    // daily budget even when the run failed.
    {
        let mut set = tokio::task::JoinSet::new();
        for (i, t) in plan.tasks.iter().enumerate() {
            let rep = &reports[i];
            let stop = match &stops[i] {
                Some((StopKind::Quota, m)) => Some(Stop {
                    reason: "quota".into(),
                    until: Some(today + Duration::days(1)),
                    message: m.clone(),
                }),
                Some((StopKind::Retired, m)) => Some(Stop {
                    reason: "retired".into(),
                    until: None,
                    message: m.clone(),
                }),
                Some((StopKind::Permission, m)) => Some(Stop {
                    reason: state::PERMISSION.into(),
                    until: None,
                    message: m.clone(),
                }),
                None => None,
            };
            // Calls not yet counted by a state write of the run.
            let calls = (rep.calls - calls_recorded[i]) as u32;
            if calls == 0 && stop.is_none() {
                continue;
            }
            let (store, report, account, slots) = (
                Arc::clone(&store),
                t.report,
                t.account_name.clone(),
                Arc::clone(&slots),
            );
            set.spawn(async move {
                let _slot = slots.acquire_owned().await;
                state::update(&store, report, &account, |st| {
                    st.count_calls(today, calls);
                    if stop.is_some() {
                        st.stop = stop.clone();
                    }
                })
                .await
            });
        }
        while let Some(r) = set.join_next().await {
            if let Ok(Err(e)) = r {
                fatal.get_or_insert(format!("writing state: {e}"));
            }
        }
    }

    if let Some(h) = sim {
        h.shutdown().await;
    }
    let c = &ex.counters;
    let partial = reports
        .iter()
        .any(|r| !r.deferred.is_empty() || !r.failed.is_empty());
    let exit_code = if fatal.is_some() {
        1
    } else if partial {
        3
    } else {
        0
    };
    let report = RunReport {
        run_id,
        pipeline: p.name.clone(),
        today,
        start: plan.start,
        end: plan.end,
        planned_calls: plan.calls(),
        data_calls: c.data_calls.load(Ordering::Relaxed),
        token_calls: c.token_calls.load(Ordering::Relaxed),
        retries: c.retries.load(Ordering::Relaxed),
        rows: reports.iter().map(|r| r.rows).sum(),
        files: reports.iter().map(|r| r.files).sum(),
        bytes: reports.iter().map(|r| r.bytes).sum(),
        seconds: started.elapsed().as_secs_f64(),
        exit_code,
        error: fatal,
        tasks: reports,
        changes: log.take(),
    };
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
impl Tracker {
    /// A window's rows for one partition (none: empty, failed or deferred).
    fn arrive(
        &mut self,
        part: &str,
        w: Window,
        rows: Option<RecordBatch>,
        compression: crate::pipeline::Compression,
        store: &Store,
    ) -> Result<(), String> {
        let Some(fill) = self.fills.get_mut(part) else {
            return Ok(());
        };
        fill.arrive(w, rows, self.report, compression).map_err(|e| {
            let rel = load::file_rel(self.report.id, &self.account, part);
            format!("writing {}: {e}", store.describe(&rel))
        })
    }
}

/// One partition's fresh rows: windows are written to its stream in date order; one that
/// arrives before an earlier one (fetches overlap) waits for it.
#[derive(Default)]
struct Fill {
    /// The partition's windows not yet written or given up, in date order.
    order: std::collections::VecDeque<Window>,
    /// Arrived out of order: rows to write, or none (empty, failed or deferred).
    waiting: BTreeMap<Window, Option<RecordBatch>>,
    stream: Option<load::PartStream>,
}

impl Fill {
    fn arrive(
        &mut self,
        w: Window,
        rows: Option<RecordBatch>,
        report: &'static Report,
        compression: crate::pipeline::Compression,
    ) -> Result<(), load::LoadError> {
        self.waiting.insert(w, rows);
        while let Some(next) = self.order.front() {
            let Some(rows) = self.waiting.remove(next) else {
                break;
            };
            self.order.pop_front();
            if let Some(b) = rows.filter(|b| b.num_rows() > 0) {
                let stream = match &mut self.stream {
                    Some(s) => s,
                    None => self
                        .stream
                        .insert(load::PartStream::new(report, compression)?),
                };
                stream.push(b)?;
            }
        }
        Ok(())
    }
}

fn within(batch: &RecordBatch, w: &Window, report: &Report, account: &str) -> RecordBatch {
    let dates = batch.column(0).as_primitive::<Date32Type>();
    let keep: BooleanArray = (0..batch.num_rows())
        .map(|i| Some(w.contains(from_date32(dates.value(i)))))
        .collect();
    if keep.true_count() == batch.num_rows() {
        return batch.clone();
    }
    tracing::warn!(account, report = report.id, window = %w, dropped = batch.num_rows() - keep.true_count(), "rows outside the requested window ignored");
    // Filtering a batch by a mask of its own length cannot fail; keep the rows if it did.
    filter_record_batch(batch, &keep).unwrap_or_else(|_| batch.clone())
}

/// The dates of a window that stay provisional: all of them when WeChat says `is_delay`,
/// else those that may be published late (`plan::may_be_late`) and have no row in `batch`.
fn provisional_dates(
    r: &Report,
    w: Window,
    batch: &RecordBatch,
    is_delay: bool,
    ready: NaiveDate,
) -> BTreeSet<NaiveDate> {
    if is_delay {
        return LoadedWindow::new(w, true).provisional;
    }
    let mut late: BTreeSet<NaiveDate> = plan::row_dates(r, w.begin, w.end, ready)
        .into_iter()
        .filter(|&d| plan::may_be_late(r, d, ready))
        .collect();
    if late.is_empty() || batch.num_columns() == 0 {
        return late;
    }
    if let Some(dates) = batch.column(0).as_primitive_opt::<Date32Type>() {
        let wanted: Vec<i32> = late.iter().map(|&d| crate::transform::date32(d)).collect();
        for v in dates.values().iter().filter(|v| wanted.contains(v)) {
            late.remove(&from_date32(*v));
        }
    }
    late
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

/// The one pseudo-partition of a report replaced by key: all its windows are committed
/// together once they have all arrived, each row into the partition of its own date.
const ALL_PARTS: &str = "*";

fn task_parts(r: &Report, p: crate::pipeline::Partition, w: &Window) -> Vec<String> {
    if catalog::replaced_by_key(r) {
        vec![ALL_PARTS.to_string()]
    } else {
        partitions_of(p, w)
    }
}

/// Partition commits (and state writes) in flight at once.
const COMMITS_IN_FLIGHT: usize = 4;
/// The longest a task's committed windows wait for their state write (see `run_leased`).
const STATE_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

enum Done {
    Commit {
        task: usize,
        part: String,
        /// The Hive folders written.
        parts: Vec<String>,
        windows: Vec<Window>,
        rows: u64,
        files: usize,
        result: Result<load::Committed, load::LoadError>,
    },
    State {
        task: usize,
        /// Calls counted against the daily budget by this write.
        calls: u64,
        result: Result<(), StoreError>,
    },
    /// Nothing done: wakes the loop to write the state still held back.
    Flush,
}

/// What one state write records.
struct Recorded {
    windows: Vec<LoadedWindow>,
    parts: Vec<String>,
    /// The folders found at the start, for state that did not note its folders yet.
    present: Option<BTreeSet<String>>,
}

#[allow(clippy::too_many_arguments)]
async fn write_state(
    store: Arc<Store>,
    task: usize,
    report: &'static str,
    account: String,
    done: Recorded,
    ready: NaiveDate,
    retry: RetryPolicy,
    (today, calls, now): (NaiveDate, u64, chrono::DateTime<Utc>),
) -> Done {
    let jitter = crate::extract::Jitter::new(0x57a7e);
    let mut attempt = 0;
    let result = loop {
        attempt += 1;
        let f = |st: &mut ReportState| {
            st.record(&done.windows, ready, now);
            st.add_parts(&done.parts, done.present.as_ref());
            // A window loaded: the permission WeChat withheld has been granted.
            if st
                .stop
                .as_ref()
                .is_some_and(|s| s.reason == state::PERMISSION)
            {
                st.stop = None;
            }
            st.count_calls(today, calls as u32);
        };
        match state::update(&store, report, &account, f).await {
            Err(e) if e.is_retryable() && attempt < retry.attempts => {
                tracing::warn!(account = %account, report, attempt, error = %e, "state write failed, retrying");
                tokio::time::sleep(retry.backoff(attempt, &jitter)).await;
            }
            r => break r.map(|_| ()),
        }
    };
    Done::State {
        task,
        calls,
        result,
    }
}

#[allow(clippy::too_many_arguments)]
async fn commit_with_retry(
    store: &Store,
    report: &'static Report,
    account: &str,
    part: &str,
    windows: &[Window],
    rows: &[load::Fresh],
    compression: crate::pipeline::Compression,
    retry: &RetryPolicy,
) -> Result<load::Committed, load::LoadError> {
    let jitter = crate::extract::Jitter::new(0x5eed);
    let mut attempt = 0;
    loop {
        attempt += 1;
        match load::commit_fresh(store, report, account, part, windows, rows, compression).await {
            Err(e) if e.is_retryable() && attempt < retry.attempts => {
                tracing::warn!(account, report = report.id, partition = part, attempt, error = %e, "commit failed, retrying");
                tokio::time::sleep(retry.backoff(attempt, &jitter)).await;
            }
            r => return r,
        }
    }
}

/// Commits the rows of a report replaced by key (ad_settlement), each into the partition
/// of its own date, then removes every fetched key from the partitions that no longer
/// hold it: a settlement whose date moved must not stay where it was, even in a partition
/// this commit also wrote. State is recorded only after all of it, so a crash in between
/// leaves the windows unrecorded and the next run does it again.
/// Returns the folders written, how many, and the outcome.
#[allow(clippy::too_many_arguments)]
async fn commit_keyed(
    store: &Store,
    report: &'static Report,
    account: &str,
    rows: &[RecordBatch],
    partition: crate::pipeline::Partition,
    compression: crate::pipeline::Compression,
    retry: &RetryPolicy,
    log: &changes::Log,
) -> (Vec<String>, usize, Result<load::Committed, load::LoadError>) {
    let mut by_part: BTreeMap<String, Vec<RecordBatch>> = BTreeMap::new();
    for b in rows {
        match split(b, partition) {
            Ok(parts) => {
                for (pv, pb) in parts {
                    by_part.entry(pv).or_default().push(pb);
                }
            }
            Err(e) => return (Vec::new(), 0, Err(e)),
        }
    }
    let files = by_part.len();
    let prefix = format!("{}/account={account}/", report.id);
    let existing: Vec<String> = match store.list(&prefix).await {
        Ok(l) => l
            .iter()
            .filter(|f| f.ends_with("/data.parquet"))
            .map(|f| {
                f.trim_start_matches(&prefix)
                    .trim_end_matches("/data.parquet")
                    .to_string()
            })
            .collect(),
        Err(e) => return (Vec::new(), files, Err(e.into())),
    };
    // Every partition the pass may rewrite goes in the change log before the first write.
    let mut touched: Vec<String> = by_part.keys().cloned().collect();
    touched.extend(
        existing
            .iter()
            .filter(|p| !by_part.contains_key(*p))
            .cloned(),
    );
    let batch = match log.begin(report.id, account, &touched).await {
        Ok(b) => b,
        Err(e) => return (Vec::new(), files, Err(e.into())),
    };
    let mut changed: BTreeMap<String, load::Committed> = BTreeMap::new();
    let mut total = load::Committed::default();
    let mut kept: BTreeMap<String, std::collections::HashSet<Vec<u8>>> = BTreeMap::new();
    for (pv, batches) in &by_part {
        let fresh: Vec<load::Fresh> = batches.iter().cloned().map(load::Fresh::Batch).collect();
        match commit_with_retry(store, report, account, pv, &[], &fresh, compression, retry).await {
            Ok(c) => {
                total.rows += c.rows;
                total.bytes += c.bytes;
                changed.insert(pv.clone(), c);
            }
            Err(e) => return (Vec::new(), files, Err(e)),
        }
        match load::keys_of(report, batches) {
            Ok(k) => kept.insert(pv.clone(), k),
            Err(e) => return (Vec::new(), files, Err(e)),
        };
    }
    let all = match load::keys_of(report, rows) {
        Ok(k) => k,
        Err(e) => return (Vec::new(), files, Err(e)),
    };
    for pv in &existing {
        // The keys this partition must not hold: every fetched key but its own.
        let drop: std::collections::HashSet<Vec<u8>> = match kept.get(pv) {
            Some(own) => all.difference(own).cloned().collect(),
            None => all.clone(),
        };
        if drop.is_empty() {
            continue;
        }
        match load::drop_keys_committed(store, report, account, pv, &drop, compression).await {
            Ok((_, Some(c))) => {
                changed.insert(pv.clone(), c);
            }
            Ok((_, None)) => {}
            Err(e) => return (Vec::new(), files, Err(e)),
        }
    }
    let changed: Vec<(String, load::Committed)> = changed.into_iter().collect();
    log.finish(batch, &changed).await;
    (by_part.into_keys().collect(), files, Ok(total))
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
    // Stops shared by the in-flight fetches: per task (quota, retired) and account-wide.
    // A stop's message, and whether the task's other windows are deferred (quota) rather
    // than failed (retired, permission).
    let stopped: Arc<Vec<std::sync::Mutex<Option<TaskStop>>>> =
        Arc::new((0..ntasks).map(|_| std::sync::Mutex::new(None)).collect());
    let account_stop: Arc<std::sync::Mutex<Option<String>>> = Arc::new(std::sync::Mutex::new(None));
    let any_stop = Arc::new(AtomicBool::new(false));
    let mut queue = jobs.into_iter().enumerate().peekable();
    let mut running = FuturesUnordered::new();
    // Windows started and not yet handed on. None starts more than LOOKAHEAD windows after
    // the oldest: a window stuck in retries cannot make the loader hold the rest of its
    // partition (everything after it waits for it there).
    let mut unfinished = std::collections::BTreeSet::new();
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
            let Some((idx, (ti, r, w))) = queue.next() else {
                break;
            };
            if let Some(in_flight) = probe.get_mut(&ti) {
                *in_flight = true;
            }
            let (ex, client, stopped, account_stop, any_stop, lease) = (
                Arc::clone(&ex),
                Arc::clone(&client),
                Arc::clone(&stopped),
                Arc::clone(&account_stop),
                Arc::clone(&any_stop),
                lease.clone(),
            );
            let job = async move {
                let stop_now = || -> Option<Outcome> {
                    // Another run took the account over: call WeChat no more for it.
                    if let Some(m) = lease.lost() {
                        return Some(Outcome::Failed(m, 0));
                    }
                    if !any_stop.load(Ordering::Relaxed) {
                        return None;
                    }
                    if let Some(m) = account_stop.lock().ok().and_then(|g| g.clone()) {
                        return Some(Outcome::Failed(m, 0));
                    }
                    stopped[ti]
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
                };
                if let Some(o) = stop_now() {
                    return Msg {
                        task: ti,
                        window: w,
                        outcome: o,
                        stop: None,
                        _permit: None,
                    };
                }
                let mut calls = 0u32;
                let mut stop = None;
                let mut held = None;
                let outcome = match fetch_adaptive(&ex, &client, r, w, today, &mut calls, &mut held)
                    .await
                {
                    Ok((batch, is_delay)) => {
                        // Twice the decoded size: the body and the rows coexist while decoding.
                        ex.budget.observe(r, batch.get_array_memory_size() >> 9);
                        // Sorted here, in parallel, so the loader only appends.
                        let batch = if catalog::replaced_by_key(r) {
                            Ok(batch)
                        } else {
                            load::sort(r, &within(&batch, &w, r, &client.name))
                        };
                        match batch {
                            Ok(batch) => Outcome::Done {
                                batch,
                                is_delay,
                                calls,
                            },
                            Err(e) => Outcome::Failed(
                                format!(
                                    "{} for account {}: sorting the rows: {e}",
                                    r.id, client.name
                                ),
                                calls,
                            ),
                        }
                    }
                    Err(e) => {
                        let msg = describe(&e, r, &client.name);
                        match &e {
                            FetchError::Quota
                            | FetchError::Retired
                            | FetchError::Permission { .. } => {
                                let kind = match e {
                                    FetchError::Quota => StopKind::Quota,
                                    FetchError::Retired => StopKind::Retired,
                                    _ => StopKind::Permission,
                                };
                                stop = Some(kind);
                                if let Ok(mut g) = stopped[ti].lock() {
                                    g.get_or_insert((msg.clone(), kind == StopKind::Quota));
                                }
                                any_stop.store(true, Ordering::Relaxed);
                                tracing::warn!(account = %client.name, report = r.id, window = %w, "{msg}");
                                if matches!(e, FetchError::Quota) {
                                    Outcome::Deferred(msg, calls)
                                } else {
                                    Outcome::Failed(msg, calls)
                                }
                            }
                            // A failed token source is remembered by the client too:
                            // the account's other windows fail at once, without calls.
                            FetchError::Config { .. } | FetchError::TokenSource { .. } => {
                                if let Ok(mut g) = account_stop.lock() {
                                    g.get_or_insert(msg.clone());
                                }
                                any_stop.store(true, Ordering::Relaxed);
                                tracing::error!(account = %client.name, report = r.id, "{msg}");
                                Outcome::Failed(msg, calls)
                            }
                            _ => {
                                tracing::error!(account = %client.name, report = r.id, window = %w, "{msg}");
                                Outcome::Failed(msg, calls)
                            }
                        }
                    }
                };
                // Calls made by a window that failed still count against the daily budget.
                Msg {
                    task: ti,
                    window: w,
                    outcome,
                    stop,
                    _permit: held,
                }
            };
            unfinished.insert(idx);
            running.push(async move { (idx, job.await) });
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
    let schema = crate::transform::schema(r);
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
    use crate::pipeline::{Compression, Partition};

    fn settlements(rows: &[(&str, &str, i32)]) -> RecordBatch {
        let r = catalog::find("ad_settlement").expect("catalogue");
        let items: Vec<String> = rows
            .iter()
            .map(|(date, month, order)| {
                format!(
                    r#"{{"date":"{date}","zone":"z","month":"{month}","order":{order},"sett_status":5,"settled_revenue":1,"slot_revenue":[]}}"#
                )
            })
            .collect();
        let body = format!(r#"{{"list":[{}]}}"#, items.join(","));
        crate::transform::decode_value(r, &serde_json::from_str(&body).expect("json"))
            .expect("decode")
            .batch
    }

    /// (partition, settlement order) of every row stored.
    async fn stored(store: &Store) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for f in store.list("ad_settlement/").await.expect("list") {
            let (bytes, _) = store.read(&f).await.expect("read").expect("file");
            for b in load::decode_file(bytes).expect("parquet") {
                let dates = b.column(0).as_primitive::<Date32Type>();
                for i in 0..b.num_rows() {
                    out.push((
                        f.split('/').nth(2).unwrap_or("").to_string(),
                        crate::dates::fmt(from_date32(dates.value(i))),
                    ));
                }
            }
        }
        out.sort();
        out
    }

    #[tokio::test]
    async fn a_settlement_whose_date_moved_leaves_its_old_partition_even_one_also_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path().to_str().expect("utf8")).expect("store");
        let r = catalog::find("ad_settlement").expect("catalogue");
        let retry = RetryPolicy::default();
        let log = changes::Log::new(
            Arc::new(Store::open(dir.path().to_str().expect("utf8")).expect("store")),
            "20240101T000000Z-00000001",
        );
        let first = settlements(&[("2024-03-25", "202403", 2), ("2024-03-10", "202403", 1)]);
        let (parts, _, res) = commit_keyed(
            &store,
            r,
            "a",
            &[first],
            Partition::Month,
            Compression::Zstd,
            &retry,
            &log,
        )
        .await;
        res.expect("commit");
        assert_eq!(parts, vec!["month=2024-03".to_string()]);
        // The second half of March now settles in April; the first half stays in March.
        let again = settlements(&[("2024-04-02", "202403", 2), ("2024-03-10", "202403", 1)]);
        let (parts, files, res) = commit_keyed(
            &store,
            r,
            "a",
            &[again],
            Partition::Month,
            Compression::Zstd,
            &retry,
            &log,
        )
        .await;
        res.expect("commit");
        assert_eq!(files, 2);
        // Both partitions were rewritten by the second pass: both are in the change log.
        let logged: Vec<String> = log.take().into_iter().map(|c| c.partition).collect();
        assert_eq!(logged, ["month=2024-03", "month=2024-03", "month=2024-04"]);
        assert_eq!(
            parts,
            vec!["month=2024-03".to_string(), "month=2024-04".to_string()]
        );
        assert_eq!(
            stored(&store).await,
            vec![
                ("month=2024-03".to_string(), "2024-03-10".to_string()),
                ("month=2024-04".to_string(), "2024-04-02".to_string()),
            ],
            "each settlement once, in the partition of its current date"
        );
    }

    #[tokio::test]
    async fn a_panicking_worker_is_a_failure_not_a_silent_loss() {
        let ok = tokio::spawn(async {});
        let bad = tokio::spawn(async { panic!("boom") });
        assert_eq!(join_workers(vec![ok]).await, None);
        let msg = join_workers(vec![bad]).await.expect("reported");
        assert!(msg.contains("panicked"), "{msg}");
    }
}
