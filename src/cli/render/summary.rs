//! The run summary: per report over its accounts, what is not done, totals, the exit code.

use std::io::Write;

use super::{exit_meaning, human_bytes, Table};
use crate::dates;
use crate::run::RunReport;

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

pub(in crate::cli) fn print_summary(out: &mut impl Write, r: &RunReport, saved: Option<&str>) {
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
    use crate::cli::EXIT_PARTIAL;
    use crate::run::TaskReport;
    use crate::window::Window;

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
}
