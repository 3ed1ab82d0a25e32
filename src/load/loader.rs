//! The loader: receives fetched windows and owns what follows, partition completion (a
//! partition is committed once every window touching it has arrived or failed), commit
//! scheduling, state recording for windows whose partitions are all committed, and the
//! closing stop/quota bookkeeping; it returns its part of the run report.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration as Elapsed;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Date32Type;
use chrono::{Duration, NaiveDate, Utc};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::{AbortHandle, JoinSet};

use super::{commit_keyed, commit_with_retry, file_rel, partitions_of, split};
use super::{Committed, Fresh, LoadError, PartStream};
use crate::catalog::from_date32;
use crate::catalog::{Replace, Report};
use crate::changes;
use crate::clock::Clock;
use crate::clock::Instant;
use crate::extract::RetryPolicy;
use crate::pipeline::{Compression, Partition};
use crate::plan::{self, Plan};
use crate::report::{Observer, TaskReport};
use crate::state::{self, LoadedWindow, ReportState, Stop};
use crate::store::{Store, StoreError};
use crate::window::Window;

/// One window as the extract stage hands it on.
pub(crate) struct Msg {
    pub task: usize,
    pub window: Window,
    pub outcome: Outcome,
    /// WeChat stopped this report for this account (typed, never read from message text).
    pub stop: Option<StopKind>,
    /// Its share of the in-flight memory budget, released once the loader has the rows.
    pub _permit: Option<crate::extract::Reservation>,
}

pub(crate) enum Outcome {
    Done {
        batch: RecordBatch,
        is_delay: bool,
        calls: u32,
    },
    /// Deferred or failed, with the calls it made before.
    Deferred(String, u32),
    Failed(String, u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopKind {
    /// 45009: the daily quota; resumes after China midnight.
    Quota,
    /// 47009: the API is offline for this account.
    Retired,
    /// 48001 / 50001: the report's permission set is not granted; the account's other
    /// reports go on, and later runs try again.
    Permission,
}

impl StopKind {
    /// The stop state records for the task.
    fn stop(self, today: NaiveDate, message: String) -> Stop {
        let (reason, until) = match self {
            StopKind::Quota => ("quota", Some(today + Duration::days(1))),
            StopKind::Retired => ("retired", None),
            StopKind::Permission => (state::PERMISSION, None),
        };
        Stop {
            reason: reason.into(),
            until,
            message,
        }
    }
}

/// What stops the load stage (the run then exits 1); what was committed stays.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FatalError {
    #[error("splitting {report} rows by partition: {source}")]
    Split {
        report: &'static str,
        source: LoadError,
    },
    #[error("writing {path}: {source}")]
    Write { path: String, source: LoadError },
    #[error("committing {path}: {source}")]
    Commit { path: String, source: LoadError },
    #[error("writing state: {0}")]
    State(#[source] StoreError),
    #[error("internal error in a commit: {0}")]
    Join(#[source] tokio::task::JoinError),
    /// A fetch worker panicked (the message says so).
    #[error("{0}")]
    Worker(String),
    #[error("internal error: {windows} windows of {report} for account {account} never arrived; nothing of them was recorded, a re-run fetches them")]
    NeverArrived {
        windows: usize,
        report: &'static str,
        account: String,
    },
}

/// What the loader needs from the run.
pub(crate) struct LoadContext {
    pub store: Arc<Store>,
    pub log: Arc<changes::Log>,
    pub partition: Partition,
    pub compression: Compression,
    pub retry: RetryPolicy,
    pub clock: Clock,
    pub observer: Option<Arc<dyn Observer>>,
}

/// The loader's part of the run report.
pub(crate) struct LoadReport {
    pub tasks: Vec<TaskReport>,
    pub fatal: Option<FatalError>,
}

/// Partition commits (and state writes) in flight at once.
const COMMITS_IN_FLIGHT: usize = 4;
/// The longest a task's committed windows wait for their state write (see `Loader::record`).
const STATE_EVERY: Elapsed = Elapsed::from_secs(2);
/// A task of at most this many partitions is short (see `Loader::record`).
const SHORT_TASK_PARTS: usize = 4;

pub(crate) struct Loader {
    cx: LoadContext,
    today: NaiveDate,
    /// The latest ready day: which dates may still be published late.
    ready: NaiveDate,
    tasks: Vec<Tracker>,
    /// Commits and state writes run concurrently (bounded), so a slow disk or S3 never
    /// stalls the fetching; the loader only does bookkeeping.
    slots: Arc<Semaphore>,
    jobs: JoinSet<Done>,
    /// Of `jobs`, the STATE_EVERY timers (they do not keep the loop alive).
    timers: usize,
    /// Windows may still arrive.
    fetching: bool,
    fatal: Option<FatalError>,
}

/// Per task (account × report) bookkeeping.
struct Tracker {
    report: &'static Report,
    account: String,
    rep: TaskReport,
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
    /// Windows whose partitions are all committed, for the next state write.
    to_record: Vec<LoadedWindow>,
    /// Folders committed since the task's last state write.
    parts_to_record: Vec<String>,
    /// The folders found at the start, for state that did not note its folders yet.
    present: Option<BTreeSet<String>>,
    /// One state write per task at a time.
    state_busy: bool,
    /// Commits of the task in flight.
    commits_running: usize,
    /// What its held state's STATE_EVERY counts from: its last state write's start, or
    /// for a short task before any, its first commit's.
    held_since: Option<Instant>,
    /// At most SHORT_TASK_PARTS partitions planned.
    short: bool,
    /// A timer job is due to write the state held back by STATE_EVERY.
    flush_armed: bool,
    /// Calls already counted against the daily budget by the state writes: the last write
    /// of a task usually counts them all, so the closing bookkeeping needs no write of its own.
    calls_recorded: u64,
    stop: Option<(StopKind, String)>,
}

impl Loader {
    /// A loader for the plan's tasks (`reports`: each task's catalogue entry); `tasks` holds each task's report so far (planned
    /// calls, what the plan deferred and why), in plan order.
    pub fn new(
        cx: LoadContext,
        plan: &Plan,
        reports: &[&'static Report],
        tasks: Vec<TaskReport>,
        states: &HashMap<(String, &'static str), ReportState>,
    ) -> Loader {
        let mut trackers = Vec::with_capacity(plan.tasks.len());
        for ((t, &report), rep) in plan.tasks.iter().zip(reports).zip(tasks) {
            let present = states
                .get(&(t.account_name.clone(), t.report))
                .and_then(|s| s.parts.clone());
            let mut tr = Tracker {
                report,
                account: t.account_name.clone(),
                rep,
                pending: BTreeMap::new(),
                fills: BTreeMap::new(),
                keyed: Vec::new(),
                fetched: BTreeMap::new(),
                open: BTreeMap::new(),
                to_record: Vec::new(),
                parts_to_record: Vec::new(),
                present,
                state_busy: false,
                commits_running: 0,
                held_since: None,
                short: false,
                flush_armed: false,
                calls_recorded: 0,
                stop: None,
            };
            let mut windows = t.windows.clone();
            windows.sort();
            for w in &windows {
                let parts = task_parts(report, cx.partition, w);
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
            tr.short = tr.pending.len() <= SHORT_TASK_PARTS;
            // What the account's tasks may commit: listed in its change record up front.
            if report.replace() == Replace::ByDate {
                cx.log
                    .plan(report.id, &tr.account, tr.pending.keys().cloned());
            }
            trackers.push(tr);
        }
        Loader {
            cx,
            today: plan.today,
            ready: plan.latest_ready,
            tasks: trackers,
            slots: Arc::new(Semaphore::new(COMMITS_IN_FLIGHT)),
            jobs: JoinSet::new(),
            timers: 0,
            fetching: true,
            fatal: None,
        }
    }

    /// Takes windows until the extract stage is done and every commit and state write has
    /// finished. On a fatal error the fetch workers are stopped (`workers`).
    pub async fn receive(&mut self, mut rx: mpsc::Receiver<Msg>, workers: &[AbortHandle]) {
        while self.fetching || !self.only_timers() {
            tokio::select! {
                msg = rx.recv(), if self.fetching => match msg {
                    Some(msg) => self.arrive(msg).await,
                    None => self.fetching = false,
                },
                Some(done) = self.jobs.join_next(), if !self.jobs.is_empty() => self.finished(done),
            }
            if self.fatal.is_some() {
                for w in workers {
                    w.abort();
                }
                self.fetching = false;
            }
            // State held back and nothing left to wake the loop: wake it to write that.
            if !self.fetching
                && self.only_timers()
                && self
                    .tasks
                    .iter()
                    .any(|t| !t.state_busy && !t.to_record.is_empty())
            {
                self.jobs.spawn(async { Done::Flush(None) });
            }
        }
        // Every state is written by now; what is left are timers for nothing.
        self.jobs.abort_all();
        self.timers = 0;
    }

    /// No job left but STATE_EVERY timers.
    fn only_timers(&self) -> bool {
        self.jobs.len() == self.timers
    }

    /// Stops the load with this error, unless an earlier one did.
    pub fn fail(&mut self, e: FatalError) {
        self.fatal.get_or_insert(e);
    }

    /// After the last window: checks that every planned window was accounted for, then
    /// records each task's calls and stop (calls count against the daily budget even when
    /// the run failed).
    pub async fn finish(mut self) -> LoadReport {
        self.cx.log.close().await;
        // A window that never arrived would be lost.
        if self.fatal.is_none() {
            if let Some(tr) = self.tasks.iter().find(|t| !t.pending.is_empty()) {
                self.fatal = Some(FatalError::NeverArrived {
                    windows: tr.pending.values().sum(),
                    report: tr.report.id,
                    account: tr.account.clone(),
                });
            }
        }
        let mut set = JoinSet::new();
        for tr in &self.tasks {
            let stop = tr.stop.clone().map(|(k, m)| k.stop(self.today, m));
            // Calls not yet counted by a state write of the run.
            let calls = (tr.rep.calls - tr.calls_recorded) as u32;
            if calls == 0 && stop.is_none() {
                continue;
            }
            let (store, report, account) =
                (Arc::clone(&self.cx.store), tr.report.id, tr.account.clone());
            let (slots, today) = (Arc::clone(&self.slots), self.today);
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
                self.fatal.get_or_insert(FatalError::State(e));
            }
        }
        LoadReport {
            tasks: self.tasks.into_iter().map(|t| t.rep).collect(),
            fatal: self.fatal,
        }
    }

    /// One window's outcome; then commits every partition that has all its windows.
    async fn arrive(&mut self, msg: Msg) {
        let Msg {
            task,
            window,
            outcome,
            stop,
            _permit,
        } = msg;
        let tr = &mut self.tasks[task];
        let parts = task_parts(tr.report, self.cx.partition, &window);
        let result = match outcome {
            Outcome::Done {
                batch,
                is_delay,
                calls,
            } => {
                let provisional =
                    provisional_dates(tr.report, window, &batch, is_delay, self.ready);
                tr.fetched(&self.cx, window, &parts, batch, provisional, calls)
            }
            Outcome::Deferred(reason, calls) => {
                tr.not_done(&self.cx, window, &parts, (reason, calls), true, stop)
            }
            Outcome::Failed(reason, calls) => {
                tr.not_done(&self.cx, window, &parts, (reason, calls), false, stop)
            }
        };
        if let Err(e) = result {
            self.fail(e);
        }
        for part in parts {
            self.complete(task, part).await;
        }
    }

    /// Counts a window off its partition; the last one starts the partition's commit.
    async fn complete(&mut self, task: usize, part: String) {
        let tr = &mut self.tasks[task];
        let left = tr.pending.get_mut(&part).map(|n| {
            *n -= 1;
            *n
        });
        if left != Some(0) || self.fatal.is_some() {
            return;
        }
        tr.pending.remove(&part);
        let stream = tr.fills.remove(&part).and_then(|f| f.stream);
        let keyed = std::mem::take(&mut tr.keyed);
        let windows = tr.fetched.remove(&part).unwrap_or_default();
        if windows.is_empty() {
            return;
        }
        let rows: Vec<Fresh> = match stream.map(PartStream::finish).transpose() {
            Ok(f) => f.into_iter().collect(),
            Err(source) => {
                let path = self.describe(task, &part);
                return self.fail(FatalError::Write { path, source });
            }
        };
        let tr = &self.tasks[task];
        let job = CommitJob {
            store: Arc::clone(&self.cx.store),
            log: Arc::clone(&self.cx.log),
            retry: self.cx.retry,
            report: tr.report,
            account: tr.account.clone(),
            partition: self.cx.partition,
            compression: self.cx.compression,
            task,
            part,
            windows,
            rows,
            keyed,
        };
        // Waiting for a slot here (not inside the task) is the backpressure that keeps
        // buffered partitions bounded when commits are slower than fetching.
        let slot = Arc::clone(&self.slots).acquire_owned().await;
        self.tasks[task].commits_running += 1;
        self.jobs.spawn(async move {
            let _slot = slot;
            job.run().await
        });
    }

    /// A commit or state write ended; then the task's state may need a write.
    fn finished(&mut self, done: Result<Done, tokio::task::JoinError>) {
        let next_state = match done {
            Err(e) => return self.fail(FatalError::Join(e)),
            Ok(Done::Commit(c)) => self.committed(c),
            Ok(Done::Flush(None)) => None,
            Ok(Done::Flush(Some(task))) => {
                self.tasks[task].flush_armed = false;
                self.timers -= 1;
                Some(task)
            }
            Ok(Done::State {
                task,
                calls,
                result,
            }) => {
                let tr = &mut self.tasks[task];
                tr.state_busy = false;
                match result {
                    Ok(()) => Some(task),
                    Err(e) => {
                        tr.calls_recorded -= calls;
                        self.fail(FatalError::State(e));
                        None
                    }
                }
            }
        };
        // The run's last job ended: every task's state still held back is written.
        if !self.fetching && self.only_timers() {
            for task in 0..self.tasks.len() {
                self.record(task, true);
            }
        } else if let Some(task) = next_state {
            self.record(task, false);
        }
    }

    /// A partition's commit ended: the windows whose partitions are now all committed are
    /// due for state; a quarantined file fails the task, any other error the run.
    fn committed(&mut self, c: CommitDone) -> Option<usize> {
        let task = c.task;
        let tr = &mut self.tasks[task];
        tr.commits_running -= 1;
        match c.result {
            Ok(done) => {
                tr.parts_to_record.extend(c.parts);
                tr.rep.files += c.files;
                tr.rep.bytes += done.bytes as u64;
                tr.rep.rows += c.rows;
                tracing::info!(account = %tr.account, report = tr.report.id, partition = %c.part, rows = done.rows, bytes = done.bytes, "committed");
                if let Some(o) = &self.cx.observer {
                    o.committed(&tr.account, tr.report.id, &c.part, done.rows, done.bytes);
                }
                for w in &c.windows {
                    if let Some(o) = tr.open.get_mut(w) {
                        o.0 -= 1;
                        if o.0 == 0 {
                            let provisional = std::mem::take(&mut o.1);
                            tr.to_record.push(LoadedWindow {
                                window: *w,
                                provisional,
                            });
                        }
                    }
                }
                for l in &tr.to_record {
                    tr.open.remove(&l.window);
                }
            }
            // A file that cannot merge was moved aside: that task fails, not the run.
            Err(e @ LoadError::Quarantined { .. }) => {
                // Each file named: another reason may already be there.
                let r = tr.rep.reason.get_or_insert_with(String::new);
                if !r.is_empty() {
                    r.push_str("; ");
                }
                r.push_str(&e.to_string());
                tr.rep.failed.extend(c.windows.iter().copied());
            }
            Err(source) => {
                tracing::error!(account = %tr.account, report = tr.report.id, partition = %c.part, error = %source, "commit failed");
                tr.rep.failed.extend(c.windows.iter().copied());
                let path = self.describe(task, &c.part);
                self.fail(FatalError::Commit { path, source });
            }
        }
        Some(task)
    }

    /// Starts the task's state write, carrying every window committed since the last one,
    /// unless one is in flight (it is started again when that one ends). State is written
    /// once a task has nothing more to commit (or at the `last` job), or every STATE_EVERY
    /// while it does (a timer job wakes the loader for a task with nothing else coming): a
    /// crash refetches at most that much (a refetch replaces, never duplicates). A long
    /// task (a backfill) also records its first commit at once, so a failure early in it
    /// (a store that goes away, whose later writes all fail) keeps what it committed; a
    /// short one (a daily run's: workload R's 63 tasks of 1-4 partitions) waits for its
    /// end or STATE_EVERY from its first commit, one state write instead of two.
    fn record(&mut self, task: usize, last: bool) {
        let tr = &mut self.tasks[task];
        let idle = tr.pending.is_empty() && tr.commits_running == 0;
        if tr.state_busy || tr.to_record.is_empty() {
            return;
        }
        if tr.short && tr.held_since.is_none() {
            tr.held_since = Some(Instant::now());
        }
        if let Some(at) = tr.held_since.map(|t| t + STATE_EVERY) {
            if !(last || idle || Instant::now() >= at) {
                if !tr.flush_armed {
                    tr.flush_armed = true;
                    self.timers += 1;
                    self.jobs.spawn(async move {
                        tokio::time::sleep_until(at).await;
                        Done::Flush(Some(task))
                    });
                }
                return;
            }
        }
        tr.held_since = Some(Instant::now());
        tr.state_busy = true;
        let calls = tr.rep.calls - tr.calls_recorded;
        tr.calls_recorded += calls;
        let rec = Recorded {
            windows: std::mem::take(&mut tr.to_record),
            parts: std::mem::take(&mut tr.parts_to_record),
            present: tr.present.clone(),
            ready: self.ready,
            today: self.today,
            calls,
            now: self.cx.clock.now().with_timezone(&Utc),
        };
        let (store, report, account) =
            (Arc::clone(&self.cx.store), tr.report.id, tr.account.clone());
        let retry = self.cx.retry;
        self.jobs
            .spawn(write_state(store, task, report, account, rec, retry));
    }

    fn describe(&self, task: usize, part: &str) -> String {
        let tr = &self.tasks[task];
        self.cx
            .store
            .describe(&file_rel(tr.report.id, &tr.account, part))
    }
}

impl Tracker {
    /// A fetched window: its rows go to their partitions' streams (or, replaced by key,
    /// wait for the task's one commit).
    fn fetched(
        &mut self,
        cx: &LoadContext,
        w: Window,
        parts: &[String],
        batch: RecordBatch,
        provisional: BTreeSet<NaiveDate>,
        calls: u32,
    ) -> Result<(), FatalError> {
        if let Some(o) = &cx.observer {
            o.window_done(&self.account, self.report.id, w, batch.num_rows(), calls);
        }
        self.rep.calls += u64::from(calls);
        self.rep.windows_done += 1;
        let mut result = Ok(());
        match self.report.replace() {
            Replace::ByKey => self.keyed.push(batch),
            Replace::ByDate => {
                // The worker sent the rows within the window (the partition streams sort them).
                let mut by_part: BTreeMap<String, RecordBatch> = match split(&batch, cx.partition) {
                    Ok(v) => v.into_iter().collect(),
                    Err(source) => {
                        result = Err(FatalError::Split {
                            report: self.report.id,
                            source,
                        });
                        BTreeMap::new()
                    }
                };
                for part in parts {
                    let r = self.fill(cx, part, w, by_part.remove(part));
                    result = result.and(r);
                }
            }
        }
        for part in parts {
            self.fetched.entry(part.clone()).or_default().push(w);
        }
        self.rep.provisional_dates += provisional.len();
        if let Some(o) = self.open.get_mut(&w) {
            o.1 = provisional;
        }
        result
    }

    /// A window deferred or failed: it is reported, and its partitions go on without it.
    fn not_done(
        &mut self,
        cx: &LoadContext,
        w: Window,
        parts: &[String],
        (reason, calls): (String, u32),
        deferred: bool,
        stop: Option<StopKind>,
    ) -> Result<(), FatalError> {
        if let Some(k) = stop {
            self.stop.get_or_insert((k, reason.clone()));
        }
        self.rep.calls += u64::from(calls);
        if let Some(o) = &cx.observer {
            if deferred {
                o.window_deferred(&self.account, self.report.id, w, &reason);
            } else {
                o.window_failed(&self.account, self.report.id, w, &reason);
            }
        }
        if deferred {
            self.rep.deferred.push(w);
        } else {
            self.rep.failed.push(w);
        }
        self.rep.reason.get_or_insert(reason);
        self.open.remove(&w);
        let mut result = Ok(());
        for part in parts {
            result = result.and(self.fill(cx, part, w, None));
        }
        result
    }

    /// A window's rows for one partition (none: empty, failed or deferred).
    fn fill(
        &mut self,
        cx: &LoadContext,
        part: &str,
        w: Window,
        rows: Option<RecordBatch>,
    ) -> Result<(), FatalError> {
        let Some(fill) = self.fills.get_mut(part) else {
            return Ok(());
        };
        fill.arrive(w, rows, self.report, cx.compression)
            .map_err(|source| FatalError::Write {
                path: cx
                    .store
                    .describe(&file_rel(self.report.id, &self.account, part)),
                source,
            })
    }
}

/// One partition's fresh rows: windows are written to its stream in date order; one that
/// arrives before an earlier one (fetches overlap) waits for it.
#[derive(Default)]
struct Fill {
    /// The partition's windows not yet written or given up, in date order.
    order: VecDeque<Window>,
    /// Arrived out of order: rows to write, or none (empty, failed or deferred).
    waiting: BTreeMap<Window, Option<RecordBatch>>,
    stream: Option<PartStream>,
}

impl Fill {
    fn arrive(
        &mut self,
        w: Window,
        rows: Option<RecordBatch>,
        report: &'static Report,
        compression: Compression,
    ) -> Result<(), LoadError> {
        self.waiting.insert(w, rows);
        while let Some(next) = self.order.front() {
            let Some(rows) = self.waiting.remove(next) else {
                break;
            };
            self.order.pop_front();
            if let Some(b) = rows.filter(|b| b.num_rows() > 0) {
                let stream = match &mut self.stream {
                    Some(s) => s,
                    None => self.stream.insert(PartStream::new(report, compression)?),
                };
                stream.push(b)?;
            }
        }
        Ok(())
    }
}

/// The one pseudo-partition of a report replaced by key: all its windows are committed
/// together once they have all arrived, each row into the partition of its own date.
const ALL_PARTS: &str = "*";

fn task_parts(r: &Report, p: Partition, w: &Window) -> Vec<String> {
    match r.replace() {
        Replace::ByKey => vec![ALL_PARTS.to_string()],
        Replace::ByDate => partitions_of(p, w),
    }
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
        let wanted: Vec<i32> = late.iter().map(|&d| crate::catalog::date32(d)).collect();
        for v in dates.values().iter().filter(|v| wanted.contains(v)) {
            late.remove(&from_date32(*v));
        }
    }
    late
}

enum Done {
    Commit(CommitDone),
    /// Nothing done: wakes the loop to write the state still held back (of one task,
    /// when its STATE_EVERY timer ends).
    Flush(Option<usize>),
    State {
        task: usize,
        /// Calls counted against the daily budget by this write.
        calls: u64,
        result: Result<(), StoreError>,
    },
}

struct CommitDone {
    task: usize,
    part: String,
    /// The Hive folders written.
    parts: Vec<String>,
    windows: Vec<Window>,
    rows: u64,
    files: usize,
    result: Result<Committed, LoadError>,
}

/// One partition's commit (or, replaced by key, the task's), run off the loader.
struct CommitJob {
    store: Arc<Store>,
    log: Arc<changes::Log>,
    retry: RetryPolicy,
    report: &'static Report,
    account: String,
    partition: Partition,
    compression: Compression,
    task: usize,
    part: String,
    windows: Vec<Window>,
    rows: Vec<Fresh>,
    keyed: Vec<RecordBatch>,
}

impl CommitJob {
    async fn run(self) -> Done {
        let j = &self;
        let rows = j.rows.iter().map(|b| b.rows() as u64).sum::<u64>()
            + j.keyed.iter().map(|b| b.num_rows() as u64).sum::<u64>();
        let (parts, files, result) = if j.part == ALL_PARTS {
            commit_keyed(
                &j.store,
                j.report,
                &j.account,
                &j.keyed,
                j.partition,
                j.compression,
                &j.retry,
                &j.log,
            )
            .await
        } else {
            (vec![j.part.clone()], 1, j.commit_one().await)
        };
        Done::Commit(CommitDone {
            task: self.task,
            part: self.part,
            parts,
            windows: self.windows,
            rows,
            files,
            result,
        })
    }

    async fn commit_one(&self) -> Result<Committed, LoadError> {
        // The change record first: a crash after the commit still leaves it.
        let batch = self
            .log
            .begin_part(self.report.id, &self.account, &self.part)
            .await?;
        let c = commit_with_retry(
            &self.store,
            self.report,
            &self.account,
            &self.part,
            &self.windows,
            &self.rows,
            self.compression,
            &self.retry,
        )
        .await?;
        self.log.finish_part(batch, &c).await;
        Ok(c)
    }
}

/// What one state write records.
struct Recorded {
    windows: Vec<LoadedWindow>,
    parts: Vec<String>,
    /// The folders found at the start, for state that did not note its folders yet.
    present: Option<BTreeSet<String>>,
    ready: NaiveDate,
    today: NaiveDate,
    calls: u64,
    now: chrono::DateTime<Utc>,
}

async fn write_state(
    store: Arc<Store>,
    task: usize,
    report: &'static str,
    account: String,
    done: Recorded,
    retry: RetryPolicy,
) -> Done {
    let jitter = crate::retry::Jitter::new(0x57a7e);
    let f = |st: &mut ReportState| {
        st.record(&done.windows, done.ready, done.now);
        st.add_parts(&done.parts, done.present.as_ref());
        // A window loaded: the permission WeChat withheld has been granted.
        if st
            .stop
            .as_ref()
            .is_some_and(|s| s.reason == state::PERMISSION)
        {
            st.stop = None;
        }
        st.count_calls(done.today, done.calls as u32);
    };
    let (store, account, f) = (&store, &account, &f);
    let result = crate::retry::retry_fn(
        retry.schedule(retry.attempts, 0, &jitter),
        |_| async move { state::update(store, report, account, f).await.map(|_| ()) },
        |e, attempt| tracing::warn!(account = %account, report, attempt, error = %e, "state write failed, retrying"),
    )
    .await;
    if result.is_ok() {
        tracing::debug!(account = %account, report, windows = done.windows.len(), "state recorded");
    }
    Done::State {
        task,
        calls: done.calls,
        result,
    }
}
