//! Progress bars for `wxcube run` on a terminal, and the log writer that keeps log lines
//! from tearing them.
//!
//! One overall bar (windows resolved of those planned, live calls, call rate against the
//! rate limit, retries, deferred and failed work, ETA) and one row per report that still has
//! work; a row disappears when its report is done. Log lines go through
//! [`MultiProgress::suspend`] while bars are on screen, so a line is never drawn into a bar.

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};

use crate::extract::Counters;
use crate::pipeline::Limits;
use crate::plan::Plan;
use crate::run::{Observer, RunReport};
use crate::window::Window;

/// `--progress`: progress bars on a terminal (auto), always, or never.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    Auto,
    Always,
    Never,
}

/// Whether bars are drawn: `auto` only on a terminal (not `TERM=dumb`) and not with
/// `--quiet`; `always` even into a pipe; `never` not at all.
pub fn wanted(
    mode: ProgressMode,
    quiet: bool,
    stderr_is_terminal: bool,
    term_is_dumb: bool,
) -> bool {
    match mode {
        ProgressMode::Always => true,
        ProgressMode::Never => false,
        ProgressMode::Auto => stderr_is_terminal && !term_is_dumb && !quiet,
    }
}

/// The bars' draw target: the real terminal when stderr is one, else (forced) raw ANSI
/// on stderr.
pub fn stderr_target() -> ProgressDrawTarget {
    if std::io::stderr().is_terminal() && !term_is_dumb() {
        ProgressDrawTarget::stderr_with_hz(10)
    } else {
        ProgressDrawTarget::term_like_with_hz(Box::new(RawStderr), 10)
    }
}

pub fn term_is_dumb() -> bool {
    std::env::var("TERM").is_ok_and(|t| t == "dumb")
}

/// The fastest a run can call: the per-account limit times the accounts, capped by the
/// global limit.
pub fn call_limit(limits: &Limits, accounts: usize) -> f64 {
    let per_account = f64::from(limits.requests_per_second) * accounts.max(1) as f64;
    per_account.min(f64::from(limits.global_requests_per_second))
}

/// The overall bar's message.
pub fn overall_message(
    calls: u64,
    rate: f64,
    limit: f64,
    retries: u64,
    deferred: u64,
    failed: u64,
) -> String {
    let mut m = format!(
        "{calls} calls · {rate:.1}/s of {limit:.0}/s · {retries} retr{}",
        if retries == 1 { "y" } else { "ies" }
    );
    m.push_str(&format!(" · {deferred} deferred"));
    if failed > 0 {
        m.push_str(&format!(" · {failed} failed"));
    }
    m
}

/// Call rate over a sliding window of samples.
#[derive(Debug, Default)]
pub struct Rate {
    samples: VecDeque<(Instant, u64)>,
}

impl Rate {
    const WINDOW: Duration = Duration::from_secs(3);

    /// Adds a sample (a running total) and returns calls per second over the window.
    pub fn sample(&mut self, at: Instant, total: u64) -> f64 {
        self.samples.push_back((at, total));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| at.duration_since(*t) > Self::WINDOW)
        {
            self.samples.pop_front();
        }
        match (self.samples.front(), self.samples.back()) {
            (Some((t0, c0)), Some((t1, c1))) if t1 > t0 => {
                c1.saturating_sub(*c0) as f64 / t1.duration_since(*t0).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

struct Row {
    report: &'static str,
    bar: ProgressBar,
    planned: u64,
    resolved: u64,
    rows: u64,
    deferred: u64,
    failed: u64,
}

impl Row {
    fn message(&self) -> String {
        let mut m = format!("{} rows", self.rows);
        if self.deferred > 0 {
            m.push_str(&format!(" · {} deferred", self.deferred));
        }
        if self.failed > 0 {
            m.push_str(&format!(" · {} failed", self.failed));
        }
        m
    }
}

/// Counts the ticker thread reads.
#[derive(Default)]
struct Shared {
    deferred: AtomicU64,
    failed: AtomicU64,
    stop: AtomicBool,
}

/// The progress observer: hand it to `run::Options::observer`.
pub struct Progress {
    multi: MultiProgress,
    overall: ProgressBar,
    limit: f64,
    rows: Mutex<Vec<Row>>,
    shared: Arc<Shared>,
    ticker: Mutex<Option<JoinHandle<()>>>,
}

/// The bars currently on screen, for the log writer.
static ACTIVE: Mutex<Option<MultiProgress>> = Mutex::new(None);

fn set_active(m: Option<MultiProgress>) {
    if let Ok(mut g) = ACTIVE.lock() {
        *g = m;
    }
}

const OVERALL: &str =
    "{spinner} {prefix} [{bar:30}] {pos}/{len} windows · ETA {eta} · {elapsed} · {wide_msg}";
const DONE: &str = "  {prefix} [{bar:30}] {pos}/{len} windows in {elapsed} · {wide_msg}";
const ROW: &str = "  {prefix:<24} [{bar:20}] {pos:>4}/{len:<4} {wide_msg}";
const BAR_CHARS: &str = "=> ";

impl Progress {
    /// Bars on `target`, rate shown against `limit` calls per second.
    pub fn new(target: ProgressDrawTarget, limit: f64) -> Self {
        let multi = MultiProgress::with_draw_target(target);
        // Added to the screen in `started`, once its length is known.
        let overall = ProgressBar::hidden();
        overall.set_style(
            ProgressStyle::with_template(OVERALL)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars(BAR_CHARS),
        );
        overall.set_prefix("run");
        Progress {
            multi,
            overall,
            limit,
            rows: Mutex::new(Vec::new()),
            shared: Arc::new(Shared::default()),
            ticker: Mutex::new(None),
        }
    }

    fn resolved(&self, report: &'static str, rows: usize, deferred: bool, failed: bool) {
        if deferred {
            self.shared.deferred.fetch_add(1, Ordering::Relaxed);
        }
        if failed {
            self.shared.failed.fetch_add(1, Ordering::Relaxed);
        }
        self.overall.inc(1);
        let Ok(mut all) = self.rows.lock() else {
            return;
        };
        if let Some(r) = all.iter_mut().find(|r| r.report == report) {
            r.resolved += 1;
            r.rows += rows as u64;
            r.deferred += u64::from(deferred);
            r.failed += u64::from(failed);
            r.bar.set_message(r.message());
            r.bar.inc(1);
            if r.resolved >= r.planned {
                r.bar.finish_and_clear();
                self.multi.remove(&r.bar);
            }
        }
    }

    fn stop_ticker(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        let handle = self.ticker.lock().ok().and_then(|mut g| g.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    /// Removes every bar from the screen (a run that ended in an error).
    pub fn clear(&self) {
        self.stop_ticker();
        if let Ok(mut all) = self.rows.lock() {
            for r in all.drain(..) {
                r.bar.finish_and_clear();
            }
        }
        self.overall.finish_and_clear();
        let _ = self.multi.clear();
        set_active(None);
    }
}

impl Observer for Progress {
    fn started(&self, plan: &Plan, counters: Arc<Counters>) {
        self.overall.set_length(plan.calls() as u64);
        self.multi.add(self.overall.clone());
        self.shared
            .deferred
            .store(plan.deferred() as u64, Ordering::Relaxed);
        let style = ProgressStyle::with_template(ROW)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars(BAR_CHARS);
        if let Ok(mut rows) = self.rows.lock() {
            for t in &plan.tasks {
                let planned = t.windows.len() as u64;
                match rows.iter_mut().find(|r| r.report == t.report) {
                    Some(r) => {
                        r.planned += planned;
                        r.deferred += t.deferred.len() as u64;
                    }
                    None => rows.push(Row {
                        report: t.report,
                        bar: ProgressBar::hidden(),
                        planned,
                        resolved: 0,
                        rows: 0,
                        deferred: t.deferred.len() as u64,
                        failed: 0,
                    }),
                }
            }
            rows.retain(|r| r.planned > 0);
            for r in rows.iter_mut() {
                r.bar = self.multi.add(ProgressBar::new(r.planned));
                r.bar.set_style(style.clone());
                r.bar.set_prefix(r.report);
                r.bar.set_message(r.message());
            }
        }
        set_active(Some(self.multi.clone()));
        self.overall.set_message(overall_message(
            0,
            0.0,
            self.limit,
            0,
            plan.deferred() as u64,
            0,
        ));
        self.overall.enable_steady_tick(Duration::from_millis(120));

        let (overall, shared, limit) = (self.overall.clone(), Arc::clone(&self.shared), self.limit);
        let ticker = std::thread::Builder::new()
            .name("wxcube-progress".into())
            .spawn(move || {
                let mut rate = Rate::default();
                while !shared.stop.load(Ordering::Relaxed) {
                    let calls = counters.data_calls.load(Ordering::Relaxed);
                    let r = rate.sample(Instant::now(), calls);
                    overall.set_message(overall_message(
                        calls,
                        r,
                        limit,
                        counters.retries.load(Ordering::Relaxed),
                        shared.deferred.load(Ordering::Relaxed),
                        shared.failed.load(Ordering::Relaxed),
                    ));
                    std::thread::sleep(Duration::from_millis(250));
                }
            });
        if let (Ok(h), Ok(mut g)) = (ticker, self.ticker.lock()) {
            *g = Some(h);
        }
    }

    fn window_done(
        &self,
        _account: &str,
        report: &'static str,
        _window: Window,
        rows: usize,
        _calls: u32,
    ) {
        self.resolved(report, rows, false, false);
    }

    fn window_deferred(&self, _account: &str, report: &'static str, _window: Window, _: &str) {
        self.resolved(report, 0, true, false);
    }

    fn window_failed(&self, _account: &str, report: &'static str, _window: Window, _: &str) {
        self.resolved(report, 0, false, true);
    }

    fn finished(&self, report: &RunReport) {
        self.stop_ticker();
        if let Ok(mut all) = self.rows.lock() {
            for r in all.drain(..) {
                r.bar.finish_and_clear();
                self.multi.remove(&r.bar);
            }
        }
        let deferred: usize = report.tasks.iter().map(|t| t.deferred.len()).sum();
        let failed: usize = report.tasks.iter().map(|t| t.failed.len()).sum();
        let rate = report.data_calls as f64 / report.seconds.max(0.001);
        self.overall.set_style(
            ProgressStyle::with_template(DONE)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars(BAR_CHARS),
        );
        self.overall.set_prefix("done");
        self.overall.finish_with_message(overall_message(
            report.data_calls,
            rate,
            self.limit,
            report.retries,
            deferred as u64,
            failed as u64,
        ));
        set_active(None);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop_ticker();
        set_active(None);
    }
}

/// `tracing` writer for stderr: buffers one event and writes it whole, with the bars
/// lifted off the screen while it does.
#[derive(Default)]
pub struct LogLine(Vec<u8>);

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let bars = ACTIVE.lock().ok().and_then(|g| g.clone());
        let write = || {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(&self.0);
            let _ = err.flush();
        };
        match bars {
            Some(m) => m.suspend(write),
            None => write(),
        }
    }
}

/// A terminal on stderr that is not one (`--progress always` into a pipe): plain ANSI.
#[derive(Debug)]
struct RawStderr;

impl RawStderr {
    fn put(&self, s: &str) -> std::io::Result<()> {
        std::io::stderr().lock().write_all(s.as_bytes())
    }
    /// CSI `n` `dir` (A up, B down, C right, D left); a zero move writes nothing.
    fn move_cursor(&self, n: usize, dir: char) -> std::io::Result<()> {
        if n > 0 {
            self.put(&format!("\x1b[{n}{dir}"))?;
        }
        Ok(())
    }
}

impl TermLike for RawStderr {
    fn width(&self) -> u16 {
        std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(100)
    }
    fn height(&self) -> u16 {
        std::env::var("LINES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(40)
    }
    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        self.move_cursor(n, 'A')
    }
    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        self.move_cursor(n, 'B')
    }
    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        self.move_cursor(n, 'C')
    }
    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        self.move_cursor(n, 'D')
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.put(&format!("{s}\n"))
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.put(s)
    }
    fn clear_line(&self) -> std::io::Result<()> {
        self.put("\r\x1b[2K")
    }
    fn flush(&self) -> std::io::Result<()> {
        std::io::stderr().lock().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Task;
    use chrono::NaiveDate;

    /// A terminal that keeps the lines last drawn, as a screen would show them.
    #[derive(Debug, Clone, Default)]
    struct Screen {
        text: Arc<Mutex<String>>,
    }

    impl Screen {
        fn all(&self) -> String {
            self.text.lock().map(|t| t.clone()).unwrap_or_default()
        }
        fn push(&self, s: &str) {
            if let Ok(mut t) = self.text.lock() {
                t.push_str(s);
            }
        }
    }

    impl TermLike for Screen {
        fn width(&self) -> u16 {
            160
        }
        fn height(&self) -> u16 {
            50
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.push(s);
            self.push("\n");
            Ok(())
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            self.push(s);
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            self.push("<clear>");
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn d(s: &str) -> NaiveDate {
        crate::dates::parse(s).unwrap()
    }

    fn w(b: &str, e: &str) -> Window {
        Window {
            begin: d(b),
            end: d(e),
        }
    }

    fn task(account: usize, report: &'static str, windows: Vec<Window>) -> Task {
        Task {
            account,
            account_name: format!("acct{account}"),
            report,
            windows,
            deferred: Vec::new(),
            loaded_dates: 0,
            revise_dates: 0,
            reload_dates: 0,
        }
    }

    #[test]
    fn auto_shows_bars_only_on_a_real_terminal_and_not_quiet() {
        use ProgressMode::*;
        assert!(wanted(Auto, false, true, false));
        assert!(!wanted(Auto, false, false, false));
        assert!(!wanted(Auto, false, true, true), "TERM=dumb");
        assert!(!wanted(Auto, true, true, false), "--quiet");
        assert!(wanted(Always, true, false, true));
        assert!(!wanted(Never, false, true, false));
    }

    #[test]
    fn limit_is_per_account_times_accounts_capped_by_global() {
        let l = Limits {
            requests_per_second: 5,
            global_requests_per_second: 12,
            ..Limits::default()
        };
        assert_eq!(call_limit(&l, 1), 5.0);
        assert_eq!(call_limit(&l, 2), 10.0);
        assert_eq!(call_limit(&l, 3), 12.0);
    }

    #[test]
    fn rate_is_calls_per_second_over_the_last_seconds() {
        let mut r = Rate::default();
        let t0 = Instant::now();
        assert_eq!(r.sample(t0, 0), 0.0);
        let got = r.sample(t0 + Duration::from_secs(2), 20);
        assert!((got - 10.0).abs() < 1e-9, "{got}");
        // The first sample ages out: 20 → 50 over the last 2 s.
        let got = r.sample(t0 + Duration::from_secs(4), 50);
        assert!((got - 15.0).abs() < 1e-9, "{got}");
    }

    #[test]
    fn overall_message_names_calls_rate_limit_retries_and_deferred() {
        assert_eq!(
            overall_message(12, 3.25, 50.0, 1, 0, 0),
            "12 calls · 3.2/s of 50/s · 1 retry · 0 deferred"
        );
        assert_eq!(
            overall_message(7, 0.0, 5.0, 2, 3, 4),
            "7 calls · 0.0/s of 5/s · 2 retries · 3 deferred · 4 failed"
        );
    }

    #[test]
    fn bars_count_windows_per_report_and_vanish_when_done() {
        let screen = Screen::default();
        let p = Progress::new(
            ProgressDrawTarget::term_like(Box::new(screen.clone())),
            10.0,
        );
        let mut t2 = task(1, "user_summary", vec![w("2026-01-01", "2026-01-07")]);
        t2.deferred = vec![w("2026-01-08", "2026-01-14")];
        let plan = Plan {
            today: d("2026-01-20"),
            latest_ready: d("2026-01-19"),
            start: d("2026-01-01"),
            end: d("2026-01-19"),
            daily_calls_per_report: 1000,
            tasks: vec![
                task(
                    0,
                    "user_summary",
                    vec![w("2026-01-01", "2026-01-07"), w("2026-01-08", "2026-01-14")],
                ),
                task(0, "article_read", vec![w("2026-01-01", "2026-01-01")]),
                task(0, "upstream_msg_month", vec![]),
                t2,
            ],
        };
        p.started(&plan, Arc::new(Counters::default()));
        assert_eq!(p.overall.length(), Some(4));
        {
            let rows = p.rows.lock().unwrap();
            let got: Vec<_> = rows.iter().map(|r| (r.report, r.planned)).collect();
            assert_eq!(got, [("user_summary", 3), ("article_read", 1)]);
        }
        p.window_done("acct0", "user_summary", plan.tasks[0].windows[0], 70, 1);
        p.window_done("acct0", "article_read", plan.tasks[1].windows[0], 5, 2);
        p.window_failed("acct0", "user_summary", plan.tasks[0].windows[1], "boom");
        assert_eq!(p.overall.position(), 3);
        {
            let rows = p.rows.lock().unwrap();
            let us = rows.iter().find(|r| r.report == "user_summary").unwrap();
            assert_eq!((us.resolved, us.rows, us.failed), (2, 70, 1));
            assert_eq!(us.bar.message(), "70 rows · 1 deferred · 1 failed");
            let ar = rows.iter().find(|r| r.report == "article_read").unwrap();
            assert!(ar.bar.is_finished(), "a report with all windows in is done");
        }
        assert_eq!(p.shared.failed.load(Ordering::Relaxed), 1);
        assert_eq!(p.shared.deferred.load(Ordering::Relaxed), 1);
        let shown = screen.all();
        assert!(shown.contains("user_summary"), "{shown}");
        assert!(shown.contains("windows"), "{shown}");
        p.clear();
        assert!(p.overall.is_finished());
    }
}
