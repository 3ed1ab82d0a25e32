//! What an operator sees: progress bars in a real terminal (tmux), clean output in a pipe,
//! plan and run report that agree with the calls the API received, column descriptions
//! in the Parquet files.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;
use crate::interop::python;

/// A slow-enough run for a terminal to show the bars: 2 accounts × 3 reports, ~90 calls at
/// 20 calls/s with 30 ms of simulated latency.
fn slow_pipeline(out: &str) -> String {
    let mut accts = String::new();
    for a in &ACCOUNTS {
        accts.push_str(&format!(
            "  - name: {}\n    app_id: {}\n    app_secret: test-secret-{}\n",
            a.name, a.app_id, a.name
        ));
    }
    format!(
        "version: 1\nname: tmux\napi:\n  simulator: {{ seed: 3, latency_ms: 30 }}\naccounts:\n{accts}reports: [user_summary, article_read, upstream_msg_hour]\ndates:\n  days_back: 20\noutput:\n  uri: {out}\nlimits:\n  requests_per_second: 10\n  global_requests_per_second: 20\n"
    )
}

/// `(done, planned)` from the overall bar's "] done/planned windows".
fn bar_position(line: &str) -> Option<(u64, u64)> {
    let rest = line.split("] ").nth(1)?;
    let (frac, tail) = rest.split_once(' ')?;
    if !tail.starts_with("windows · ETA") {
        return None;
    }
    let (a, b) = frac.split_once('/')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// A tmux server of our own (private socket), killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run tmux")
    }

    fn capture(&self) -> String {
        let o = self.cmd(&["capture-pane", "-p", "-S", "-200", "-t", "wx"]);
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

fn tmux_available() -> bool {
    Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn tmux_terminal_shows_the_bars_then_the_summary() {
    if !tmux_available() {
        eprintln!("SKIPPED: tmux is not installed (apt-get install tmux)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "p.yaml", &slow_pipeline("./out"));
    let t = Tmux {
        socket: format!("wxcube-it-{}", std::process::id()),
    };
    let o = t.cmd(&[
        "new-session",
        "-d",
        "-s",
        "wx",
        "-x",
        "160",
        "-y",
        "50",
        "-c",
        dir.path().to_str().expect("utf8"),
        "bash --norc --noprofile",
    ]);
    assert!(
        o.status.success(),
        "tmux: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let line = format!(
        "{} run p.yaml --today 2026-01-20 --progress always -v; echo WXCUBE_EXIT=$?",
        bin().display()
    );
    let o = t.cmd(&["send-keys", "-t", "wx", &line, "Enter"]);
    assert!(o.status.success());

    // While it runs: the overall bar and per-report rows.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut during = None;
    let mut after = String::new();
    while Instant::now() < deadline {
        let screen = t.capture();
        if during.is_none() && screen.contains("  article_read ") {
            if let Some((done, planned)) = screen.lines().find_map(bar_position) {
                if done > 0 && done < planned {
                    during = Some(screen.clone());
                }
            }
        }
        // The typed command shows "WXCUBE_EXIT=$?"; its output has a digit there.
        if screen
            .match_indices("WXCUBE_EXIT=")
            .any(|(i, m)| screen[i + m.len()..].starts_with(|c: char| c.is_ascii_digit()))
        {
            after = screen;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let during = during.unwrap_or_else(|| panic!("no bars seen; last screen:\n{after}"));
    println!("--- during the run\n{during}\n--- after\n{after}");
    let bar = during
        .lines()
        .find(|l| l.contains(" windows · ETA "))
        .expect("bar line");
    assert!(bar.contains("run ["), "{bar}");
    assert!(bar.contains("/s of 20/s"), "rate against the limit: {bar}");
    assert!(bar.contains("retries") || bar.contains("retry"), "{bar}");
    assert!(bar.contains("deferred"), "{bar}");

    // At the end: the finished bar, the summary table and the exit line, in that order.
    assert!(after.contains("WXCUBE_EXIT=0"), "{after}");
    let pos = |needle: &str| {
        after
            .find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not on screen:\n{after}"))
    };
    assert!(pos("done [") < pos("report "), "{after}");
    assert!(pos("report ") < pos("article_read "));
    assert!(pos("total ") < pos("exit 0: all done"));
    // Log lines (-v) print whole, above the bars, never torn by them.
    let logs: Vec<&str> = after.lines().filter(|l| l.contains("committed")).collect();
    assert!(logs.len() >= 12, "{after}");
    for l in &logs {
        assert!(l.starts_with("20") && l.contains(" INFO "), "{l:?}");
        assert!(!l.contains("windows") && !l.contains('['), "{l:?}");
    }
    assert!(pos("committed") < pos("done ["));
    // No per-report row is left over: each report name appears once after the bar.
    let tail = &after[pos("done [")..];
    assert_eq!(tail.matches("upstream_msg_hour").count(), 1, "{after}");
}

#[test]
fn a_piped_run_writes_no_control_characters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(
        dir.path(),
        "p.yaml",
        &pipeline(
            "[user_summary, article_read]",
            "  days_back: 5",
            "./out",
            "",
        ),
    );
    for extra in [&[][..], &["-v"][..], &["-v", "--log-format", "json"][..]] {
        let mut args = vec!["run", p.to_str().expect("utf8"), "--today", "2026-01-20"];
        args.extend_from_slice(extra);
        args.push("--full-refresh");
        let o = wxcube(&args, dir.path());
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        for (name, text) in [("stdout", stdout(&o)), ("stderr", stderr(&o))] {
            assert!(
                !text.contains("\x1b["),
                "{extra:?} {name} has ANSI:\n{text}"
            );
            assert!(!text.contains('\r'), "{extra:?} {name} has \\r:\n{text}");
        }
        assert!(stdout(&o).contains("exit 0: all done"), "{}", stdout(&o));
        if extra.contains(&"-v") {
            assert!(
                stderr(&o).contains("committed"),
                "logs are on: {}",
                stderr(&o)
            );
        }
        if extra.contains(&"json") {
            for line in stderr(&o).lines() {
                let v: Value = serde_json::from_str(line).expect("a JSON log line");
                assert!(v["fields"]["message"].is_string(), "{line}");
            }
        }
    }
}

#[test]
fn progress_always_draws_even_into_a_pipe_and_never_draws_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(
        dir.path(),
        "p.yaml",
        &pipeline("[user_summary]", "  days_back: 5", "./out", ""),
    );
    let ps = p.to_str().expect("utf8");
    let forced = wxcube(
        &["run", ps, "--today", "2026-01-20", "--progress", "always"],
        dir.path(),
    );
    assert_eq!(forced.status.code(), Some(0), "{}", stderr(&forced));
    assert!(stderr(&forced).contains("windows"), "{}", stderr(&forced));
    assert!(stderr(&forced).contains("\x1b["));
    let never = wxcube(
        &[
            "run",
            ps,
            "--today",
            "2026-01-20",
            "--progress",
            "never",
            "--full-refresh",
        ],
        dir.path(),
    );
    assert_eq!(never.status.code(), Some(0));
    assert_eq!(stderr(&never), "");
}

/// A process we started, ended when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Data calls the simulator received, per (app_id, report), from its debug log.
fn calls_received(log: &str) -> BTreeMap<(String, String), u64> {
    let mut out = BTreeMap::new();
    for line in log.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let f = &v["fields"];
        if f["message"] != "simulator call" {
            continue;
        }
        let path = f["path"].as_str().unwrap_or("");
        if !path.starts_with("/datacube/") {
            continue;
        }
        let key = (
            f["app_id"].as_str().unwrap_or("").to_string(),
            f["report"].as_str().unwrap_or("").to_string(),
        );
        *out.entry(key).or_default() += 1;
    }
    out
}

#[test]
fn plan_json_and_run_report_agree_with_the_calls_the_api_received() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sim = KillOnDrop(
        Command::new(bin())
            .args([
                "simulate",
                "--port",
                "0",
                "--seed",
                "5",
                "--today",
                "2026-01-20",
                "-vv",
                "--log-format",
                "json",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the simulator"),
    );
    // Drained as it comes: a full pipe would stall the simulator.
    let mut err = sim.0.stderr.take().expect("stderr");
    let log = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut first = String::new();
    BufReader::new(sim.0.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("read the address");
    let base = first
        .trim()
        .rsplit(' ')
        .next()
        .expect("address")
        .to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "{first}");

    let reports =
        "[user_summary, user_cumulate, article_read, upstream_msg_week, interface_summary_hour]";
    let mut text = pipeline(reports, "  start: 2025-12-10", "./out", "");
    text = text.replace(
        "api:\n  simulator: { seed: 7 }\n",
        &format!("api:\n  base_url: {base}\n"),
    );
    let p = write(dir.path(), "p.yaml", &text);
    let ps = p.to_str().expect("utf8");
    let today = ["--today", "2026-01-20"];

    let plan_out = wxcube(&[&["plan", ps, "--json"][..], &today].concat(), dir.path());
    assert_eq!(plan_out.status.code(), Some(0), "{}", stderr(&plan_out));
    let plan: Value = serde_json::from_str(&stdout(&plan_out)).expect("plan json");
    let run_out = wxcube(&[&["run", ps, "--json"][..], &today].concat(), dir.path());
    assert_eq!(run_out.status.code(), Some(0), "{}", stderr(&run_out));
    let report: Value = serde_json::from_str(&stdout(&run_out)).expect("run json");

    drop(sim);
    let log = log.join().expect("simulator log");
    let received = calls_received(&log);
    let total_received: u64 = received.values().sum();
    assert!(total_received > 20, "{received:?}");

    // Totals: planned = made = received.
    assert_eq!(plan["calls"].as_u64(), Some(total_received));
    assert_eq!(report["planned_calls"].as_u64(), Some(total_received));
    assert_eq!(report["data_calls"].as_u64(), Some(total_received));
    assert_eq!(report["retries"].as_u64(), Some(0));

    // Per account and report.
    let app_id = |name: &str| {
        ACCOUNTS
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.app_id.to_string())
            .expect("account")
    };
    let tasks = plan["tasks"].as_array().expect("tasks");
    assert_eq!(tasks.len(), 2 * 5);
    for t in tasks {
        let key = (
            app_id(t["account_name"].as_str().expect("name")),
            t["report"].as_str().expect("report").to_string(),
        );
        let got = received.get(&key).copied().unwrap_or(0);
        assert_eq!(t["calls"].as_u64(), Some(got), "{key:?}");
        assert_eq!(
            t["windows"].as_array().map(|w| w.len() as u64),
            Some(got),
            "{key:?}"
        );
        let r = report["tasks"]
            .as_array()
            .expect("tasks")
            .iter()
            .find(|r| r["account"] == t["account_name"] && r["report"] == t["report"])
            .expect("task in the run report");
        assert_eq!(r["calls"].as_u64(), Some(got), "{key:?}");
        assert_eq!(r["planned_calls"].as_u64(), Some(got), "{key:?}");
    }

    // The saved run report is the one printed.
    let saved = dir
        .path()
        .join("out/_wxcube/runs")
        .join(format!("{}.json", report["run_id"].as_str().expect("id")));
    let saved: Value =
        serde_json::from_slice(&std::fs::read(&saved).expect("saved report")).expect("json");
    assert_eq!(saved, report);
}

#[test]
fn parquet_files_carry_the_column_descriptions() {
    let Some(py) = python() else {
        eprintln!("SKIPPED: WXCUBE_TEST_PYTHON is not set (make test sets it)");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let ids: Vec<&str> = wxcube::catalog::REPORTS.iter().map(|r| r.id).collect();
    let p = write(
        dir.path(),
        "p.yaml",
        &pipeline(
            &format!("[{}]", ids.join(", ")),
            "  start: 2025-12-01",
            "./out",
            "",
        ),
    );
    let o = wxcube(
        &["run", p.to_str().expect("utf8"), "--today", "2026-01-20"],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // Expected: what `wxcube schema --json` says, report by report.
    let mut expected = serde_json::Map::new();
    for id in &ids {
        let o = wxcube(&["schema", id, "--json"], dir.path());
        let s: Value = serde_json::from_str(&stdout(&o)).expect("schema json");
        let cols: serde_json::Map<String, Value> = s["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().expect("name").to_string(),
                    c["description"].clone(),
                )
            })
            .collect();
        expected.insert(id.to_string(), Value::Object(cols));
    }
    let spec = dir.path().join("expected.json");
    std::fs::write(&spec, serde_json::to_vec(&expected).expect("json")).expect("write");
    let script = r#"
import glob, json, sys
import pyarrow.parquet as pq
expected = json.load(open(sys.argv[1]))
checked = 0
for report, cols in expected.items():
    files = sorted(glob.glob(f"out/{report}/**/*.parquet", recursive=True))
    if not files:
        continue
    for f in files:
        schema = pq.read_schema(f)
        got = {fld.name: (fld.metadata or {}).get(b"description", b"").decode() for fld in schema}
        assert got == cols, (f, got, cols)
        checked += 1
print(checked)
"#;
    let o = Command::new(py)
        .arg("-c")
        .arg(script)
        .arg(&spec)
        .current_dir(dir.path())
        .output()
        .expect("python");
    assert!(o.status.success(), "pyarrow: {}{}", stdout(&o), stderr(&o));
    let checked: usize = stdout(&o).trim().parse().expect("count");
    assert!(checked >= 15, "only {checked} files checked");
}

#[test]
fn a_partial_run_says_what_is_not_done_and_why_and_exits_3() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = pipeline(
        "[user_summary, article_read]",
        "  days_back: 7",
        "./out",
        "",
    )
    .replace(
        "simulator: { seed: 7 }",
        "simulator: { seed: 7, daily_quota: 3 }",
    );
    let p = write(dir.path(), "p.yaml", &text);
    let o = wxcube(
        &["run", p.to_str().expect("utf8"), "--today", "2026-01-20"],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let out = stdout(&o);
    let row: Vec<&str> = out
        .lines()
        .find(|l| l.starts_with("article_read "))
        .expect("article_read row")
        .split_whitespace()
        .collect();
    // 2 accounts × 7 one-day windows; the quota lets 3 per account through.
    // Every window was called: the 8 deferred ones got 45009 answers.
    assert_eq!(row[1..4], ["2", "14", "14"], "{out}");
    assert_eq!(row[row.len() - 2..], ["deferred", "8"], "{out}");
    for account in ["brand_cn", "shop_sh"] {
        let note = format!(
            "  article_read / {account}: 4 windows deferred: daily quota exhausted (45009)"
        );
        assert!(out.contains(&note), "{note:?} in\n{out}");
    }
    assert!(out.contains("exit 3: partial"), "{out}");
    let saved: Vec<_> = std::fs::read_dir(dir.path().join("out/_wxcube/runs"))
        .expect("runs")
        .flatten()
        .collect();
    assert_eq!(saved.len(), 1);
    let report: Value =
        serde_json::from_slice(&std::fs::read(saved[0].path()).expect("read")).expect("json");
    assert_eq!(report["exit_code"], 3);
}
