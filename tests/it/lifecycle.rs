//! A year in production (issue "never lose a row, part II"): WeChat publishing late,
//! permissions granted one set at a time, operators deleting partitions and changing the
//! layout. Each test sets the situation up in the simulator, then checks the tables
//! against the simulator's answers field by field, with the calls counted.

use std::path::Path;

use serde_json::Value;
use wxcube::catalog;
use wxcube::sim::{self, SimConfig};

use crate::harness::*;

const TODAY: &str = "2026-01-20";

fn pipe(sim_cfg: &str, reports: &[&str], dates: &str, partition: &str) -> String {
    pipeline(&format!("[{}]", reports.join(", ")), dates, "./out", "")
        .replace("simulator: { seed: 7 }", &format!("simulator: {sim_cfg}"))
        .replace("partition: month", &format!("partition: {partition}"))
}

fn run(dir: &Path, yaml: &str, extra: &[&str]) -> (Option<i32>, Value, String, String) {
    let p = write(dir, "p.yaml", yaml);
    let mut args = vec![
        "run",
        p.to_str().expect("utf8"),
        "--today",
        TODAY,
        "--progress",
        "never",
    ];
    args.extend_from_slice(extra);
    let o = wxcube(&args, dir);
    let v = serde_json::from_str(&stdout(&o)).unwrap_or(Value::Null);
    (o.status.code(), v, stdout(&o), stderr(&o))
}

fn plan_json(dir: &Path, yaml: &str) -> Value {
    let p = write(dir, "p.yaml", yaml);
    let o = wxcube(
        &[
            "plan",
            p.to_str().expect("utf8"),
            "--today",
            TODAY,
            "--json",
        ],
        dir,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    serde_json::from_str(&stdout(&o)).expect("plan --json")
}

/// What the simulator (fully published, all permissions) answers for the range.
fn expected(report: &str, app_id: &str, begin: &str) -> Vec<String> {
    let cfg: SimConfig = serde_json::from_str(r#"{"seed":7}"#).expect("sim config");
    let r = catalog::find(report).expect("report");
    let today = wxcube::dates::parse(TODAY).expect("date");
    let begin = wxcube::dates::parse(begin)
        .expect("date")
        .max(r.first_day());
    let body = sim::respond(
        &cfg,
        today,
        r,
        app_id,
        begin,
        today.pred_opt().expect("date"),
    );
    canon(&expected_rows(r, &body))
}

fn assert_tables(root: &Path, reports: &[&str], begin: &str, what: &str) {
    for r in reports {
        for a in &ACCOUNTS {
            let got = read_rows(root, r, a.name);
            let want = expected(r, a.app_id, begin);
            assert!(!want.is_empty(), "{r}: the simulator has rows");
            assert_eq!(
                duplicate_keys(catalog::find(r).expect("report"), &got),
                0,
                "{what}: {r}/{}",
                a.name
            );
            let got = canon(&got);
            assert_eq!(got.len(), want.len(), "{what}: {r}/{}: row count", a.name);
            assert_eq!(got, want, "{what}: {r}/{}", a.name);
        }
    }
}

fn task<'a>(v: &'a Value, account: &str, report: &str) -> &'a Value {
    v["tasks"]
        .as_array()
        .and_then(|t| {
            t.iter().find(|t| {
                (t["account"] == account || t["account_name"] == account) && t["report"] == report
            })
        })
        .unwrap_or_else(|| panic!("no task {account}/{report} in {v}"))
}

/// Every report whose span is more than a day, plus a daily and a weekly one.
const LATE: &[&str] = &[
    "user_summary",
    "user_cumulate",
    "user_read",
    "user_share",
    "upstream_msg",
    "upstream_msg_dist",
    "interface_summary",
    "article_read",
    "upstream_msg_week",
];

#[test]
fn a_day_wechat_has_not_published_yet_is_fetched_again_and_loaded_in_full() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dates = "  start: 2025-12-20";
    // A late morning after a late one: the two latest days are not there yet, nor the
    // week that ended on the first of them.
    let late = pipe("{ seed: 7, unpublished_days: 2 }", LATE, dates, "month");
    let (code, first, out, err) = run(dir.path(), &late, &["--json"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    for r in LATE {
        for a in &ACCOUNTS {
            let t = task(&first, a.name, r);
            assert!(
                t["provisional_dates"].as_u64().unwrap_or(0) >= 1,
                "{r}/{}: the latest day had no rows and stays provisional: {t}",
                a.name
            );
        }
    }
    // The same morning, later: the plan lists the day under revise, and asks for it once.
    let full = pipe("{ seed: 7 }", LATE, dates, "month");
    let plan = plan_json(dir.path(), &full);
    for r in LATE {
        for a in &ACCOUNTS {
            let t = task(&plan, a.name, r);
            assert!(t["revise_dates"].as_u64().unwrap_or(0) >= 1, "{r}: {t}");
            let span = catalog::find(r).map_or(1, |r| r.span);
            let want = if span == 1 { 2 } else { 1 };
            assert_eq!(t["calls"], want, "{r}/{}: the late days again: {t}", a.name);
        }
    }
    let (code, second, out, err) = run(dir.path(), &full, &["--json"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert_eq!(second["data_calls"], plan["calls"], "calls equal the plan");
    assert_tables(
        &dir.path().join("out"),
        LATE,
        "2025-12-20",
        "after WeChat published",
    );
    // Now final: another run the same day makes no call.
    let (code, third, _, err) = run(dir.path(), &full, &["--json"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(third["data_calls"], 0, "{third}");
}

#[test]
fn a_withheld_permission_set_fails_only_its_reports_and_is_asked_again_once_per_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reports = [
        "user_summary",
        "upstream_msg",
        "upstream_msg_hour",
        "interface_summary",
        "interface_summary_hour",
    ];
    let dates = "  start: 2025-12-20";
    let denied = format!(
        "{{ seed: 7, unauthorized_reports: {{ {}: [message] }} }}",
        ACCOUNTS[0].app_id
    );
    let yaml = pipe(&denied, &reports, dates, "month");
    let (code, first, _, err) = run(dir.path(), &yaml, &["--json"]);
    assert_eq!(code, Some(3), "partial: {err}");
    let (code, _, text, _) = run(dir.path(), &yaml, &[]);
    assert_eq!(code, Some(3));
    for r in ["upstream_msg", "upstream_msg_hour"] {
        let t = task(&first, ACCOUNTS[0].name, r);
        assert_eq!(t["rows"], 0, "{t}");
        assert!(t["failed"].as_array().is_some_and(|f| !f.is_empty()), "{t}");
        assert!(
            t["calls"].as_u64().unwrap_or(99) <= 8,
            "at most the windows in flight when 48001 came: {t}"
        );
        assert!(
            text.contains(&format!("{r} / {}", ACCOUNTS[0].name))
                && text.contains("message analysis"),
            "the summary names the report and what to grant:\n{text}"
        );
    }
    let root = dir.path().join("out");
    // The account's other reports, and the other account, load in full.
    let fine = [
        "user_summary",
        "interface_summary",
        "interface_summary_hour",
    ];
    assert_tables(&root, &fine, "2025-12-20", "other permission sets");
    for r in ["upstream_msg", "upstream_msg_hour"] {
        let got = canon(&read_rows(&root, r, ACCOUNTS[1].name));
        assert_eq!(
            got,
            expected(r, ACCOUNTS[1].app_id, "2025-12-20"),
            "{r} of the other account"
        );
        assert!(read_rows(&root, r, ACCOUNTS[0].name).is_empty());
    }
    // Still not granted: one call per report per run, not one per window.
    let (code, again, _, err) = run(dir.path(), &yaml, &["--json"]);
    assert_eq!(code, Some(3), "{err}");
    for r in ["upstream_msg", "upstream_msg_hour"] {
        let t = task(&again, ACCOUNTS[0].name, r);
        assert_eq!(t["calls"], 1, "probe only: {t}");
    }
    // Granted: everything loads, and the stop is gone.
    let yaml = pipe("{ seed: 7 }", &reports, dates, "month");
    let (code, last, out, err) = run(dir.path(), &yaml, &["--json"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(last["data_calls"].as_u64().unwrap_or(0) > 0);
    assert_tables(&root, &reports, "2025-12-20", "after the grant");
    let st: Value = serde_json::from_slice(
        &std::fs::read(root.join(format!(
            "_wxcube/state/upstream_msg/account={}.json",
            ACCOUNTS[0].name
        )))
        .expect("state"),
    )
    .expect("json");
    assert!(st.get("stop").is_none(), "{st}");
}

#[test]
fn a_deleted_partition_is_fetched_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reports = ["user_summary", "article_read", "upstream_msg_hour"];
    let yaml = pipe("{ seed: 7 }", &reports, "  start: 2025-11-10", "month");
    let (code, _, _, err) = run(dir.path(), &yaml, &["--json"]);
    assert_eq!(code, Some(0), "{err}");
    let root = dir.path().join("out");
    // An operator deletes a month to reload it; a lifecycle rule loses another.
    for (r, a) in [
        ("user_summary", 0),
        ("article_read", 1),
        ("upstream_msg_hour", 0),
    ] {
        let part = root
            .join(r)
            .join(format!("account={}", ACCOUNTS[a].name))
            .join("month=2025-12");
        std::fs::remove_dir_all(&part).expect("delete partition");
    }
    let plan = plan_json(dir.path(), &yaml);
    assert_eq!(
        task(&plan, ACCOUNTS[0].name, "user_summary")["reload_dates"],
        31,
        "{plan}"
    );
    assert_eq!(
        task(&plan, ACCOUNTS[1].name, "article_read")["reload_dates"],
        31
    );
    assert_eq!(
        task(&plan, ACCOUNTS[0].name, "upstream_msg_hour")["reload_dates"],
        31
    );
    assert_eq!(
        task(&plan, ACCOUNTS[1].name, "user_summary")["calls"],
        0,
        "untouched"
    );
    // user_summary: 31 days in 7-day windows; article_read and the hourly: a call a day.
    assert_eq!(plan["calls"], 5 + 31 + 31, "{plan}");
    let (code, again, _, err) = run(dir.path(), &yaml, &["--json"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(again["data_calls"], plan["calls"]);
    assert_tables(&root, &reports, "2025-11-10", "after the reload");
    let (_, last, _, _) = run(dir.path(), &yaml, &["--json"]);
    assert_eq!(last["data_calls"], 0, "nothing left to reload: {last}");
}

#[test]
fn a_pipeline_that_changes_the_layout_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reports = ["user_summary"];
    let yaml = pipe("{ seed: 7 }", &reports, "  days_back: 20", "month");
    let (code, _, _, err) = run(dir.path(), &yaml, &[]);
    assert_eq!(code, Some(0), "{err}");
    let root = dir.path().join("out");
    let before = snapshot_files(&root);
    for cmd in ["run", "plan"] {
        let day = pipe("{ seed: 7 }", &reports, "  days_back: 20", "day");
        let p = write(dir.path(), "day.yaml", &day);
        // `run --full-refresh` would rewrite every partition if it were let through.
        let o = wxcube(
            &[
                cmd,
                p.to_str().expect("utf8"),
                "--today",
                TODAY,
                "--full-refresh",
            ],
            dir.path(),
        );
        assert_eq!(o.status.code(), Some(2), "{cmd}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(
            e.contains("partition: month")
                && e.contains("partition: day")
                && e.contains("output.uri"),
            "{cmd}: names the recorded layout and the ways out: {e}"
        );
        assert_eq!(snapshot_files(&root), before, "{cmd}: nothing written");
    }
    // A table written before layouts were recorded: its folders tell.
    std::fs::remove_file(root.join("_wxcube/layout/user_summary.json")).expect("layout record");
    let day = pipe("{ seed: 7 }", &reports, "  days_back: 20", "day");
    let p = write(dir.path(), "day.yaml", &day);
    let o = wxcube(
        &["run", p.to_str().expect("utf8"), "--today", TODAY],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // Keeping the layout works (and a run that writes records the layout).
    let (code, _, _, err) = run(dir.path(), &yaml, &["--full-refresh"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(root.join("_wxcube/layout/user_summary.json").exists());
}

/// Every file under `root` with its bytes.
fn snapshot_files(root: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    fn walk(d: &Path, out: &mut Vec<(std::path::PathBuf, Vec<u8>)>) {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else {
                    out.push((p.clone(), std::fs::read(&p).unwrap_or_default()));
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(root, &mut out);
    out.sort();
    out
}

#[test]
fn a_future_today_is_refused_against_wechat_but_not_the_simulator() {
    let dir = tempfile::tempdir().expect("tempdir");
    let future = (chrono::Utc::now() + chrono::Duration::days(3))
        .format("%Y-%m-%d")
        .to_string();
    let prod = pipe("{ seed: 7 }", &["user_summary"], "  days_back: 3", "month")
        .replace("api:\n  simulator: { seed: 7 }\n", "");
    assert!(!prod.contains("simulator"), "{prod}");
    let p = write(dir.path(), "prod.yaml", &prod);
    let o = wxcube(
        &["run", p.to_str().expect("utf8"), "--today", &future],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("after today's date in China"),
        "{}",
        stderr(&o)
    );
    assert!(!dir.path().join("out").exists(), "nothing written");
    let sim = pipe("{ seed: 7 }", &["user_summary"], "  days_back: 3", "month");
    let p = write(dir.path(), "sim.yaml", &sim);
    let o = wxcube(
        &["run", p.to_str().expect("utf8"), "--today", &future],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn state_from_a_newer_release_is_not_rewritten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = pipe("{ seed: 7 }", &["user_summary"], "  days_back: 10", "month");
    let (code, _, _, err) = run(dir.path(), &yaml, &[]);
    assert_eq!(code, Some(0), "{err}");
    let path = dir.path().join(format!(
        "out/_wxcube/state/user_summary/account={}.json",
        ACCOUNTS[0].name
    ));
    let mut st: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("state")).expect("json");
    st["version"] = 2.into();
    st["kept_by_a_newer_release"] = "x".into();
    let text = serde_json::to_vec(&st).expect("json");
    std::fs::write(&path, &text).expect("write state");
    let (code, _, out, err) = run(dir.path(), &yaml, &["--full-refresh"]);
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(err.contains("newer wxcube"), "{err}");
    assert_eq!(std::fs::read(&path).expect("state"), text, "left as it was");
}

#[test]
fn a_reload_cut_short_by_the_budget_resumes_on_the_next_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let reports = ["upstream_msg_hour"];
    let yaml = pipe("{ seed: 7 }", &reports, "  start: 2025-11-10", "month");
    let (code, _, _, err) = run(dir.path(), &yaml, &[]);
    assert_eq!(code, Some(0), "{err}");
    let root = dir.path().join("out");
    let part = root
        .join("upstream_msg_hour")
        .join(format!("account={}", ACCOUNTS[0].name))
        .join("month=2025-12");
    std::fs::remove_dir_all(&part).expect("delete partition");
    // Ten calls left today (71 made): a third of the month comes back, and the folder
    // exists again.
    let tight = yaml.replace(
        "global_requests_per_second: 1000\n",
        "global_requests_per_second: 1000\n  daily_calls_per_report: 81\n",
    );
    let (code, cut, _, err) = run(dir.path(), &tight, &["--json"]);
    assert_eq!(code, Some(3), "{err}");
    assert_eq!(
        task(&cut, ACCOUNTS[0].name, "upstream_msg_hour")["calls"],
        10
    );
    assert!(part.exists());
    // The budget back: the rest of the month is fetched, nothing else.
    let (code, rest, _, err) = run(dir.path(), &yaml, &["--json"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        task(&rest, ACCOUNTS[0].name, "upstream_msg_hour")["calls"],
        21,
        "{rest}"
    );
    assert_tables(&root, &reports, "2025-11-10", "after the resumed reload");
}

/// How often a task's state is written: a short task (a daily run's, a few partitions) once,
/// when it ends; a long one (a backfill) at its first commit too, so a failure early in it
/// keeps what it committed. Either way state then records every window loaded.
#[test]
fn a_short_task_records_its_state_once_a_long_one_at_its_first_commit_too() {
    for (dates, short) in [("  days_back: 40", true), ("  start: 2025-03-01", false)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = pipe("{ seed: 3 }", &["user_summary"], dates, "month");
        let p = write(dir.path(), "p.yaml", &yaml);
        let ps = p.to_str().expect("utf8");
        let args = [
            "run",
            ps,
            "--today",
            TODAY,
            "--progress",
            "never",
            "--log-format",
            "json",
        ];
        let o = wxcube_env(&args, dir.path(), &[("WXCUBE_LOG", "wxcube=debug")]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let log: Vec<Value> = stderr(&o)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        // The log's events of one account: their times, by message.
        let times = |name: &str, message: &str| -> Vec<chrono::DateTime<chrono::FixedOffset>> {
            log.iter()
                .filter(|e| e["fields"]["message"] == message && e["fields"]["account"] == name)
                .filter_map(|e| chrono::DateTime::parse_from_rfc3339(e["timestamp"].as_str()?).ok())
                .collect()
        };
        for a in &ACCOUNTS {
            let writes = times(a.name, "state recorded").len();
            let commits = times(a.name, "committed");
            assert!(
                commits.len() >= 2,
                "{dates}: {} committed {commits:?}",
                a.name
            );
            // The first commit waits at most 2 s (STATE_EVERY) for the task's last: on a
            // machine slow enough to take longer, the timer's write comes first.
            let within =
                commits[commits.len() - 1] - commits[0] < chrono::Duration::milliseconds(1900);
            match (short, within) {
                (true, true) => assert_eq!(
                    writes, 1,
                    "{dates}: {} wrote its state {writes} times",
                    a.name
                ),
                (true, false) => assert!(
                    (1..=2).contains(&writes),
                    "{dates}: {} wrote {writes}",
                    a.name
                ),
                (false, _) => assert!(
                    writes >= 2,
                    "{dates}: {} wrote its state {writes} times",
                    a.name
                ),
            }
        }
        let left = plan_json(dir.path(), &yaml)["calls"].as_u64();
        assert_eq!(left, Some(0), "{dates}: state records every window loaded");
    }
}
