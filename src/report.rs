//! What a run reports: per task ([`TaskReport`]) and in all ([`RunReport`], saved as JSON
//! and printed as the summary), and the [`Observer`] hooks that follow it as it goes.

use std::sync::Arc;

use chrono::NaiveDate;
use serde::Serialize;

use crate::changes;
use crate::extract::Counters;
use crate::plan::Plan;
use crate::window::Window;

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
