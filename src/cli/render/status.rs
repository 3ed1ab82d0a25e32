//! `status`: one line per account and report, from state only.

use std::io::Write;

use super::Table;
use crate::status::{Span, Status};
use crate::window::Window;

fn fmt_spans(s: &[Span]) -> String {
    if s.is_empty() {
        return "-".into();
    }
    let mut parts: Vec<String> = s
        .iter()
        .take(3)
        .map(|s| {
            Window {
                begin: s.begin,
                end: s.end,
            }
            .to_string()
        })
        .collect();
    if s.len() > 3 {
        parts.push(format!("+{} more", s.len() - 3));
    }
    parts.join(", ")
}

/// The text form: one line per account and report.
pub(in crate::cli) fn print_status(out: &mut impl Write, s: &Status) {
    let _ = writeln!(
        out,
        "status of {} at {}: range {} .. {} (today {}, latest ready day {})",
        s.pipeline, s.uri, s.start, s.end, s.today, s.latest_ready
    );
    let _ = writeln!(out);
    let mut table = Table::new(&[
        ("account", false),
        ("report", false),
        ("loaded", false),
        ("gaps", false),
        ("provisional", false),
        ("revise", false),
        ("stop", false),
        ("last run", false),
        ("exit", false),
    ]);
    for t in &s.tasks {
        let stop = match &t.stop {
            Some(st) if st.active => match st.until {
                Some(u) => format!("{} until {u}", st.reason),
                None => st.reason.clone(),
            },
            Some(st) => format!("({} ended)", st.reason),
            None => "-".into(),
        };
        table.push(vec![
            t.account.clone(),
            t.report.to_string(),
            fmt_spans(&t.loaded),
            fmt_spans(&t.gaps),
            t.provisional.len().to_string(),
            t.revise.len().to_string(),
            stop,
            t.last_run.as_ref().map_or("-".into(), |r| r.run_id.clone()),
            t.last_run
                .as_ref()
                .map_or("-".into(), |r| r.exit_code.to_string()),
        ]);
    }
    table.render(out);
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "loaded: dates in state; gaps: row dates of the pipeline's range not loaded; provisional: flagged by WeChat (is_delay) or empty among the latest days; revise: dates the next run fetches again."
    );
}
