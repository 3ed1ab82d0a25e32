//! `plan`: the table of calls per account and report, and `plan --json` with work units.

use std::io::Write;

use super::{percent, Table};
use crate::catalog;
use crate::dates;
use crate::pipeline::Pipeline;
use crate::plan as plan_mod;
use crate::window::Window;

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
pub(in crate::cli) fn plan_json(
    p: &Pipeline,
    plan: &plan_mod::Plan,
    shards: Option<u32>,
) -> serde_json::Value {
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

pub(in crate::cli) fn print_plan(out: &mut impl Write, p: &Pipeline, plan: &plan_mod::Plan) {
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
            (Some(a), Some(b)) => Window {
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
