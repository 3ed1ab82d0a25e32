//! `wxcube status`: what is loaded per account and report, from state and run reports only
//! (no API call, no data file read).

use std::collections::{BTreeSet, HashMap};

use chrono::{Duration, NaiveDate};
use futures::stream::{self, StreamExt};
use serde::Serialize;

use crate::clock::Clock;
use crate::pipeline::Pipeline;
use crate::plan::row_dates;
use crate::run::{self, Options, RunError};
use crate::store::Store;

/// How many of the newest run reports are searched for each task's last run.
const RUN_REPORTS: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Span {
    pub begin: NaiveDate,
    pub end: NaiveDate,
}

#[derive(Debug, Clone, Serialize)]
pub struct StopStatus {
    /// `quota`, `retired`, `permission` (or any reason a newer release records).
    pub reason: String,
    pub until: Option<NaiveDate>,
    /// Whether it still holds the report back today.
    pub active: bool,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct LastRun {
    pub run_id: String,
    pub exit_code: i32,
    pub calls: u64,
    pub rows: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskStatus {
    pub account: String,
    pub report: &'static str,
    /// Dates loaded (any run, any range), as contiguous spans.
    pub loaded: Vec<Span>,
    pub loaded_dates: usize,
    /// Row dates inside the pipeline's range not loaded yet.
    pub gaps: Vec<Span>,
    pub missing_dates: usize,
    /// Loaded dates WeChat flagged provisional (or empty while among the latest ready days).
    pub provisional: Vec<NaiveDate>,
    /// Loaded dates the next run fetches again (provisional, or still in WeChat's revision period).
    pub revise: Vec<NaiveDate>,
    pub calls_today: u32,
    pub stop: Option<StopStatus>,
    pub last_run: Option<LastRun>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub pipeline: String,
    pub uri: String,
    pub today: NaiveDate,
    pub latest_ready: NaiveDate,
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub tasks: Vec<TaskStatus>,
}

/// Consecutive runs of `dates` (in the order of `all`, the dates that can carry a row).
fn spans(all: &[NaiveDate], keep: impl Fn(&NaiveDate) -> bool) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::new();
    let mut open = false;
    for d in all {
        if keep(d) {
            match out.last_mut() {
                Some(s) if open => s.end = *d,
                _ => out.push(Span { begin: *d, end: *d }),
            }
            open = true;
        } else {
            open = false;
        }
    }
    out
}

fn day_spans(dates: &BTreeSet<NaiveDate>) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::new();
    for &d in dates {
        match out.last_mut() {
            Some(s) if s.end + Duration::days(1) == d => s.end = d,
            _ => out.push(Span { begin: d, end: d }),
        }
    }
    out
}

/// The fields of a run report status needs (tolerant: other fields may come and go).
#[derive(serde::Deserialize)]
struct RunRead {
    run_id: String,
    pipeline: String,
    exit_code: i32,
    #[serde(default)]
    tasks: Vec<TaskRead>,
}

#[derive(serde::Deserialize)]
struct TaskRead {
    account: String,
    report: String,
    #[serde(default)]
    calls: u64,
    #[serde(default)]
    rows: u64,
    #[serde(default)]
    reason: Option<String>,
}

/// The newest run reports of this pipeline, newest first.
async fn run_reports(store: &Store, pipeline: &str) -> Result<Vec<RunRead>, RunError> {
    let mut names = store.list("_wxcube/runs").await?;
    names.retain(|n| n.ends_with(".json"));
    names.sort();
    names.reverse();
    names.truncate(RUN_REPORTS);
    let read: Vec<_> = stream::iter(names)
        .map(|n| async move { (store.read(&n).await, n) })
        .buffered(16)
        .collect()
        .await;
    let mut out = Vec::new();
    for (r, name) in read {
        // A damaged or foreign report is skipped, not fatal: status is a read-only view.
        if let Some((bytes, _)) = r? {
            match serde_json::from_slice::<RunRead>(&bytes) {
                Ok(rep) if rep.pipeline == pipeline => out.push(rep),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(report = %name, error = %e, "unreadable run report skipped")
                }
            }
        }
    }
    Ok(out)
}

pub async fn status(
    p: &Pipeline,
    clock: &Clock,
    opts: &Options,
    store: &Store,
) -> Result<Status, RunError> {
    let (accounts, reports) = run::select(p, opts)?;
    let states = run::read_states(store, p, &accounts, &reports).await?;
    let runs = run_reports(store, &p.name).await?;
    let mut last: HashMap<(String, String), LastRun> = HashMap::new();
    for r in &runs {
        for t in &r.tasks {
            last.entry((t.account.clone(), t.report.clone()))
                .or_insert_with(|| LastRun {
                    run_id: r.run_id.clone(),
                    exit_code: r.exit_code,
                    calls: t.calls,
                    rows: t.rows,
                    reason: t.reason.clone(),
                });
        }
    }
    let today = clock.today();
    let ready = clock.latest_ready();
    let (start, end) = p.dates.resolve(clock);
    let mut tasks = Vec::new();
    for &ai in &accounts {
        let name = &p.accounts[ai].name;
        for &r in &reports {
            let Some(st) = states.get(&(name.clone(), r.id)) else {
                continue;
            };
            let mut loaded = BTreeSet::new();
            let mut provisional = BTreeSet::new();
            for range in &st.loaded {
                for d in range.begin.iter_days().take_while(|d| *d <= range.end) {
                    loaded.insert(d);
                    if range.provisional {
                        provisional.insert(d);
                    }
                }
            }
            let l = st.loaded(r, today);
            let all = row_dates(r, start, end, ready);
            let gaps = spans(&all, |d| !loaded.contains(d));
            tasks.push(TaskStatus {
                account: name.clone(),
                report: r.id,
                loaded_dates: loaded.len(),
                loaded: day_spans(&loaded),
                missing_dates: gaps
                    .iter()
                    .map(|g| {
                        all.iter()
                            .filter(|d| g.begin <= **d && **d <= g.end)
                            .count()
                    })
                    .sum(),
                gaps,
                provisional: provisional.into_iter().collect(),
                revise: l.revisable.into_iter().collect(),
                calls_today: l.calls_today,
                stop: st.stop.as_ref().map(|s| StopStatus {
                    reason: s.reason.clone(),
                    until: s.until,
                    // A permission stop defers nothing, but holds until WeChat grants it.
                    active: st.active_stop(today).is_some() || st.permission_stop().is_some(),
                    message: s.message.clone(),
                }),
                last_run: last.remove(&(name.clone(), r.id.to_string())),
            });
        }
    }
    Ok(Status {
        pipeline: p.name.clone(),
        uri: store.describe(""),
        today,
        latest_ready: ready,
        start,
        end,
        tasks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        crate::dates::parse(s).unwrap()
    }

    #[test]
    fn gaps_follow_the_dates_that_can_carry_a_row() {
        let all: Vec<NaiveDate> = ["2026-01-05", "2026-01-12", "2026-01-19", "2026-01-26"]
            .iter()
            .map(|s| d(s))
            .collect();
        let have: BTreeSet<NaiveDate> = [d("2026-01-12")].into();
        // Weekly labels: 01-19 and 01-26 are one gap, not two.
        assert_eq!(
            spans(&all, |x| !have.contains(x)),
            vec![
                Span {
                    begin: d("2026-01-05"),
                    end: d("2026-01-05")
                },
                Span {
                    begin: d("2026-01-19"),
                    end: d("2026-01-26")
                }
            ]
        );
        let days: BTreeSet<NaiveDate> = [d("2026-01-01"), d("2026-01-02"), d("2026-01-04")].into();
        assert_eq!(day_spans(&days).len(), 2);
    }
}
