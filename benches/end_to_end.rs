//! End-to-end benchmark: `wxcube run` (release build) against `wxcube simulate` in its own
//! process, so the simulator's CPU is not the client's.
//!
//! Scenarios:
//! - `full_365`: 10 accounts x 365 days x every active report, no latency, enough articles
//!   per day for millions of rows;
//! - `full_30`: the same for 30 days (peak memory must not grow with the range);
//! - `rate_bound`: 4 accounts, 50 ms simulator latency, 20 requests/s per account;
//! - `rate_bound_many`: 40 accounts at 2 requests/s with 26 articles a day (large answers);
//! - `daily_many_small` (workload R of issue 16): all 21 datacube reports, legacy included,
//!   3 accounts x 90 days at 3 articles a day: ~2,700 calls of a few dozen rows each, where
//!   the cost of a call (timers, wake-ups, hand-offs, fsyncs) dominates, not decode.
//!
//! Per run: rows, data calls (counted by the simulator) / planned calls, wall and client CPU
//! seconds and peak RSS (GNU time, `/usr/bin/time`), rows per CPU second, CPU seconds per
//! million rows, client CPU over the simulator's (a control for the machine's speed, which
//! moves by several percent between runs), context switches (getrusage via GNU time), and
//! where `perf stat` may count tracepoints, the client's syscalls (all, futex, fsync,
//! syncfs, rename, openat) in total and per data call. Syscalls are counted in one more
//! run of each scenario, not in the timed ones: a traced syscall is dearer (traced vs
//! untraced, one bench: R 0.79 / 0.78 s, full_30 1.43 / 1.35, rate_bound 0.84 / 0.69), so
//! that run's CPU is reported apart as `cpu_s_traced`. The criterion results of `hot_path`
//! (if run before) are folded in.
//! Everything goes to `target/bench-report.json` and is printed as a table.
//!
//! The unthrottled scenarios run `WXCUBE_BENCH_REPEAT` times (default 3) and report
//! the median of each figure; every run's figures are kept in the JSON under `samples`.
//!
//! Knobs (environment): `WXCUBE_BENCH_ACCOUNTS`, `WXCUBE_BENCH_DAYS`,
//! `WXCUBE_BENCH_ARTICLES`, `WXCUBE_BENCH_REPEAT`, `WXCUBE_BENCH_ONLY` (comma-separated
//! scenario names), `WXCUBE_BENCH_PERF=0` (no syscall counts).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

/// "Today" for the simulator and the client: the 365 days before it are all within the
/// new article family (first day 2025-11-01), so every active report has rows every day.
const TODAY: &str = "2026-11-02";

type Res<T> = Result<T, String>;

struct Scenario {
    name: &'static str,
    accounts: usize,
    days: u32,
    articles_per_day: u32,
    latency_ms: u64,
    requests_per_second: u32,
    max_in_flight: u32,
    /// The pipeline's `reports:` value.
    reports: &'static str,
}

/// All 21 datacube reports: the 15 active ones and the six legacy ones.
const DATACUBE_21: &str = "[user_summary, user_cumulate, article_read, article_share, \
    biz_summary, article_total_detail, upstream_msg, upstream_msg_hour, upstream_msg_week, \
    upstream_msg_month, upstream_msg_dist, upstream_msg_dist_week, upstream_msg_dist_month, \
    interface_summary, interface_summary_hour, article_summary, article_total, user_read, \
    user_read_hour, user_share, user_share_hour]";

fn env_num(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn scenarios() -> Vec<Scenario> {
    let accounts = env_num("WXCUBE_BENCH_ACCOUNTS", 10) as usize;
    let days = env_num("WXCUBE_BENCH_DAYS", 365) as u32;
    let articles = env_num("WXCUBE_BENCH_ARTICLES", 26) as u32;
    let full = |name, days| Scenario {
        name,
        accounts,
        days,
        articles_per_day: articles,
        latency_ms: 0,
        requests_per_second: 1000,
        max_in_flight: 8,
        reports: "all",
    };
    let all = vec![
        full("full_365", days),
        full("full_30", days.min(30)),
        Scenario {
            name: "rate_bound",
            accounts: 4,
            days: 60,
            articles_per_day: 3,
            latency_ms: 50,
            requests_per_second: 20,
            max_in_flight: 16,
            reports: "all",
        },
    ];
    // Many slow accounts with large answers: the shared memory budget must not hold the
    // run below its rate limits.
    let mut all = all;
    all.push(Scenario {
        name: "rate_bound_many",
        accounts: 40,
        days: 3,
        articles_per_day: 26,
        latency_ms: 50,
        requests_per_second: 2,
        max_in_flight: 8,
        reports: "all",
    });
    // A daily run's shape: many calls, a few dozen rows each.
    all.push(Scenario {
        name: "daily_many_small",
        accounts: 3,
        days: 90,
        articles_per_day: 3,
        latency_ms: 0,
        requests_per_second: 1000,
        max_in_flight: 8,
        reports: DATACUBE_21,
    });
    match std::env::var("WXCUBE_BENCH_ONLY") {
        Ok(only) => all
            .into_iter()
            .filter(|s| only.split(',').any(|o| o.trim() == s.name))
            .collect(),
        Err(_) => all,
    }
}

/// The simulator process; killed when dropped.
struct Sim {
    child: Child,
    port: u16,
}

impl Sim {
    fn start(bin: &Path, s: &Scenario) -> Res<Sim> {
        let cfg =
            json!({"seed": 1, "articles_per_day": s.articles_per_day, "latency_ms": s.latency_ms});
        let mut child = Command::new(bin)
            .args(["simulate", "--port", "0", "--today", TODAY, "--config"])
            .arg(cfg.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting the simulator: {e}"))?;
        let out = child.stdout.take().ok_or("simulator stdout")?;
        let mut line = String::new();
        BufReader::new(out)
            .read_line(&mut line)
            .map_err(|e| format!("reading the simulator's address: {e}"))?;
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("no address in the simulator's first line: {line:?}"))?;
        Ok(Sim { child, port })
    }

    fn get(&self, path: &str) -> Res<Value> {
        let mut c = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        write!(
            c,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        c.read_to_end(&mut raw).map_err(|e| e.to_string())?;
        let at = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or("no HTTP body")?;
        serde_json::from_slice(&raw[at + 4..]).map_err(|e| format!("{path}: {e}"))
    }

    /// CPU seconds the simulator used so far (utime + stime, 100 ticks per second).
    fn cpu_s(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        let rest = stat.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
        Some(ticks as f64 / 100.0)
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pipeline(s: &Scenario, port: u16, out: &Path) -> String {
    let mut accounts = String::new();
    for i in 0..s.accounts {
        accounts.push_str(&format!(
            "  - name: acct_{i:02}\n    app_id: wxbench{i:09}\n    app_secret: bench-secret-{i}\n"
        ));
    }
    format!(
        "version: 1\nname: bench_{name}\napi:\n  base_url: http://127.0.0.1:{port}\n\
         accounts:\n{accounts}reports: {reports}\ndates:\n  days_back: {days}\n\
         output:\n  uri: {out}\n  partition: month\n  compression: zstd\n\
         limits:\n  requests_per_second: {rps}\n  max_in_flight: {mif}\n  \
         global_requests_per_second: 10000\n  daily_calls_per_report: 100000\n",
        name = s.name,
        reports = s.reports,
        days = s.days,
        out = out.display(),
        rps = s.requests_per_second,
        mif = s.max_in_flight,
    )
}

/// One run of the client under GNU time, into a folder no earlier run used; `traced`:
/// under `perf stat` too, counting syscalls.
fn run(bin: &Path, work: &Path, s: &Scenario, sample: usize, traced: bool) -> Res<Value> {
    let dir = work.join(format!("{}-{sample}", s.name));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let sim = Sim::start(bin, s)?;
    let yaml = dir.join("pipeline.yaml");
    std::fs::write(&yaml, pipeline(s, sim.port, &dir.join("out"))).map_err(|e| e.to_string())?;
    let timing = dir.join("time.txt");
    let counts = dir.join("perf.txt");
    // GNU time measures the client alone; perf (outside it) only counts tracepoints.
    let mut cmd = match perf_events().filter(|_| traced) {
        Some(events) => {
            let mut c = Command::new("perf");
            c.args(["stat", "-x", ",", "-e", events, "-o"])
                .arg(&counts)
                .arg("--")
                .arg("/usr/bin/time");
            c
        }
        None => Command::new("/usr/bin/time"),
    };
    let o = cmd
        .args(["-f", "%e %U %S %M %w %c", "-o"])
        .arg(&timing)
        .arg(bin)
        .arg("run")
        .arg(&yaml)
        .args(["--today", TODAY, "--json", "--progress", "never", "-q"])
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("running /usr/bin/time (GNU time; apt-get install time): {e}"))?;
    let report: Value = serde_json::from_slice(&o.stdout).map_err(|e| {
        format!(
            "{}: no run report ({e}); stderr: {}",
            s.name,
            String::from_utf8_lossy(&o.stderr)
        )
    })?;
    let t = std::fs::read_to_string(&timing).map_err(|e| e.to_string())?;
    let t: Vec<f64> = t
        .lines()
        .last()
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let [wall, user, sys, rss_kb, vcsw, ivcsw] = t[..] else {
        return Err(format!("{}: unexpected GNU time output {t:?}", s.name));
    };
    let stats = sim.get("/_sim/stats")?;
    let sim_cpu = sim.cpu_s();
    drop(sim);

    let rows = report["rows"].as_f64().unwrap_or(0.0);
    let planned = report["planned_calls"].as_f64().unwrap_or(0.0);
    let calls = stats["calls"].as_array().cloned().unwrap_or_default();
    let data: Vec<&Value> = calls.iter().filter(|c| !c["report"].is_null()).collect();
    let cpu = user + sys;
    let mut out = json!({
        "scenario": s.name,
        "accounts": s.accounts,
        "days": s.days,
        "articles_per_day": s.articles_per_day,
        "sim_latency_ms": s.latency_ms,
        "requests_per_second": s.requests_per_second,
        "max_in_flight": s.max_in_flight,
        "exit_code": o.status.code(),
        "rows": rows,
        "files": report["files"],
        "parquet_bytes": report["bytes"],
        "planned_calls": planned,
        "data_calls_client": report["data_calls"],
        "data_calls_sim": data.len(),
        "calls_over_planned": data.len() as f64 / planned.max(1.0),
        "token_calls_sim": calls.len() - data.len(),
        "wall_s": wall,
        "cpu_user_s": user,
        "cpu_sys_s": sys,
        "cpu_s": cpu,
        "rows_per_cpu_s": rows / cpu.max(1e-9),
        "cpu_s_per_million_rows": cpu / (rows / 1e6).max(1e-9),
        "peak_rss_mb": rss_kb / 1024.0,
        "sim_cpu_s": sim_cpu,
        // The simulator's work is the same every run: the ratio compares runs on a
        // machine whose speed moves (full_365's simulator took 64-85 CPU s in one bench).
        "cpu_over_sim_cpu": sim_cpu.map(|c| cpu / c.max(1e-9)),
        "voluntary_switches": vcsw,
        "involuntary_switches": ivcsw,
        "cpu_us_per_call": cpu * 1e6 / (data.len() as f64).max(1.0),
    });
    if let Some(sc) = syscalls(&counts, data.len()) {
        out["syscalls"] = sc;
    }
    if s.latency_ms > 0 {
        out["rate"] = rate(&data, s.requests_per_second);
    }
    Ok(out)
}

/// The tracepoints counted around each run, if `perf stat` may count them here.
fn perf_events() -> Option<&'static str> {
    static EVENTS: std::sync::OnceLock<Option<&'static str>> = std::sync::OnceLock::new();
    *EVENTS.get_or_init(|| {
        const E: &str = "raw_syscalls:sys_enter,syscalls:sys_enter_futex,\
            syscalls:sys_enter_epoll_wait,syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync,\
            syscalls:sys_enter_syncfs,\
            syscalls:sys_enter_rename,syscalls:sys_enter_renameat,syscalls:sys_enter_renameat2,\
            syscalls:sys_enter_openat,syscalls:sys_enter_flock,context-switches";
        if std::env::var("WXCUBE_BENCH_PERF").is_ok_and(|v| v == "0") {
            return None;
        }
        let ok = Command::new("perf")
            .args(["stat", "-x", ",", "-e", E, "--", "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("end_to_end: perf cannot count syscalls here; no syscall figures");
        }
        ok.then_some(E)
    })
}

/// `perf stat -x,` output: syscall counts of the client (GNU time's few included), in
/// total and per data call.
fn syscalls(path: &Path, calls: usize) -> Option<Value> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut n = std::collections::BTreeMap::<String, f64>::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = line.split(',').collect();
        let (Some(v), Some(ev)) = (f.first().and_then(|v| v.parse::<f64>().ok()), f.get(2)) else {
            continue;
        };
        let name = ev
            .trim_start_matches("raw_syscalls:sys_enter")
            .trim_start_matches("syscalls:sys_enter_");
        let name = match name {
            "" => "all",
            "fdatasync" => "fsync",
            "renameat" | "renameat2" => "rename",
            other => other,
        };
        *n.entry(name.to_string()).or_default() += v;
    }
    let all = *n.get("all")?;
    let per_call = all / (calls as f64).max(1.0);
    let futex = n.get("futex").copied().unwrap_or(0.0) / (calls as f64).max(1.0);
    let mut out = json!({ "per_data_call": per_call, "futex_per_data_call": futex });
    for (k, v) in n {
        out[k] = json!(v);
    }
    Some(out)
}

/// Measured figures of one scenario's runs: the median of each (taken separately, so user +
/// sys need not add up to the median CPU), every sample kept under `samples`; calls over
/// planned and the exit code are the worst of them.
fn median_of(mut samples: Vec<Value>) -> Value {
    const MEDIAN: [&str; 12] = [
        "wall_s",
        "cpu_user_s",
        "cpu_sys_s",
        "cpu_s",
        "rows_per_cpu_s",
        "cpu_s_per_million_rows",
        "peak_rss_mb",
        "sim_cpu_s",
        "cpu_over_sim_cpu",
        "voluntary_switches",
        "involuntary_switches",
        "cpu_us_per_call",
    ];
    if samples.len() == 1 {
        return samples.remove(0);
    }
    let mut out = samples[0].clone();
    for k in MEDIAN {
        let mut v: Vec<f64> = samples.iter().filter_map(|r| r[k].as_f64()).collect();
        v.sort_by(f64::total_cmp);
        let m = v.len() / 2;
        match v.len() {
            0 => {}
            n if n % 2 == 1 => out[k] = json!(v[m]),
            _ => out[k] = json!((v[m - 1] + v[m]) / 2.0),
        }
    }
    if let Some(keys) = samples[0]["syscalls"]
        .as_object()
        .map(|o| o.keys().cloned().collect::<Vec<_>>())
    {
        for k in keys {
            let mut v: Vec<f64> = samples
                .iter()
                .filter_map(|r| r["syscalls"][&k].as_f64())
                .collect();
            v.sort_by(f64::total_cmp);
            if v.len() == samples.len() {
                let m = v.len() / 2;
                out["syscalls"][&k] = json!(if v.len() % 2 == 1 {
                    v[m]
                } else {
                    (v[m - 1] + v[m]) / 2.0
                });
            }
        }
    }
    let worst = samples
        .iter()
        .filter_map(|r| r["calls_over_planned"].as_f64())
        .fold(0.0, f64::max);
    out["calls_over_planned"] = json!(worst);
    if let Some(bad) = samples.iter().find(|r| r["exit_code"] != json!(0)) {
        out["exit_code"] = bad["exit_code"].clone();
    }
    out["samples"] = Value::Array(samples);
    out
}

/// Achieved request rate per account from the simulator's arrival times: overall, and
/// after the limiter's initial burst (one second's worth of calls).
fn rate(data: &[&Value], allowed: u32) -> Value {
    let mut per: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for c in data {
        if let (Some(app), Some(at)) = (c["app_id"].as_str(), c["at_ms"].as_u64()) {
            per.entry(app.to_string()).or_default().push(at);
        }
    }
    let mut accounts = Vec::new();
    for (app, mut at) in per {
        at.sort_unstable();
        let n = at.len();
        let span = |a: u64, b: u64| ((b - a) as f64 / 1000.0).max(1e-3);
        let overall = (n - 1) as f64 / span(at[0], at[n - 1]);
        let burst = (allowed as usize).min(n - 1);
        let steady = (n - 1 - burst) as f64 / span(at[burst], at[n - 1]);
        accounts.push(json!({
            "app_id": app, "calls": n, "seconds": span(at[0], at[n - 1]),
            "rps": overall, "rps_after_burst": steady,
            "ratio": overall / f64::from(allowed), "ratio_after_burst": steady / f64::from(allowed),
        }));
    }
    let min = |k: &str| {
        accounts
            .iter()
            .filter_map(|a| a[k].as_f64())
            .fold(f64::INFINITY, f64::min)
    };
    json!({
        "allowed_rps_per_account": allowed,
        "min_ratio": min("ratio"),
        "min_ratio_after_burst": min("ratio_after_burst"),
        "accounts": accounts,
    })
}

/// Criterion's saved results (`target/criterion/**/new/`), with rows/s and the ratios the
/// targets are stated in.
fn hot_path(target: &Path) -> Value {
    let mut found = Vec::new();
    collect(&target.join("criterion"), &mut found);
    let mut rows = Vec::new();
    for dir in found {
        let read = |f: &str| -> Option<Value> {
            serde_json::from_slice(&std::fs::read(dir.join(f)).ok()?).ok()
        };
        let (Some(b), Some(e)) = (read("benchmark.json"), read("estimates.json")) else {
            continue;
        };
        let ns = e["mean"]["point_estimate"].as_f64().unwrap_or(f64::NAN);
        let tp = &b["throughput"]["ElementsAndBytes"];
        let elements = tp["elements"].as_f64().unwrap_or(f64::NAN);
        let bytes = tp["bytes"].as_f64().unwrap_or(f64::NAN);
        rows.push(json!({
            "group": b["group_id"], "bench": b["function_id"], "mean_ns": ns,
            "rows": elements, "bytes": bytes,
            "rows_per_s": elements / (ns / 1e9), "mb_per_s": bytes / (ns / 1e9) / 1e6,
        }));
    }
    // Per report: decode + encode per row, and decode speed over the Value parse.
    let mut summary = Vec::new();
    let groups: std::collections::BTreeSet<String> = rows
        .iter()
        .filter_map(|r| r["group"].as_str().map(String::from))
        .collect();
    for g in groups {
        let per_row = |bench: &str| {
            rows.iter()
                .find(|r| r["group"] == g.as_str() && r["bench"] == bench)
                .and_then(|r| Some(r["mean_ns"].as_f64()? / r["rows"].as_f64()?))
        };
        let (Some(dec), Some(enc), Some(floor)) = (
            per_row("decode"),
            per_row("encode_zstd"),
            per_row("serde_json_value"),
        ) else {
            continue;
        };
        summary.push(json!({
            "group": g,
            "decode_rows_per_s": 1e9 / dec,
            "decode_reference_rows_per_s": per_row("decode_reference").map(|r| 1e9 / r),
            "encode_rows_per_s": 1e9 / enc,
            "decode_plus_encode_rows_per_s": 1e9 / (dec + enc),
            "decode_speed_over_value_parse": floor / dec,
        }));
    }
    json!({ "benches": rows, "per_report": summary })
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "new") {
                out.push(p);
            } else {
                collect(&p, out);
            }
        }
    }
}

fn f(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x.abs() >= 1e5 || (x.fract() == 0.0 && x.abs() >= 1.0) => format!("{x:.0}"),
        Some(x) if x.abs() >= 100.0 => format!("{x:.1}"),
        Some(x) => format!("{x:.3}"),
        None => "-".into(),
    }
}

fn print_table(report: &Value) {
    println!("\nhot path (criterion means; rows/s per core)");
    println!(
        "{:<46} {:>12} {:>12} {:>12} {:>12} {:>9}",
        "report", "decode", "reference", "encode", "dec+enc", "vs Value"
    );
    for r in report["hot_path"]["per_report"]
        .as_array()
        .into_iter()
        .flatten()
    {
        println!(
            "{:<46} {:>12} {:>12} {:>12} {:>12} {:>9}",
            r["group"].as_str().unwrap_or(""),
            f(&r["decode_rows_per_s"]),
            f(&r["decode_reference_rows_per_s"]),
            f(&r["encode_rows_per_s"]),
            f(&r["decode_plus_encode_rows_per_s"]),
            f(&r["decode_speed_over_value_parse"]),
        );
    }
    println!("\nend to end (client process only; simulator out of process)");
    let cols = [
        ("scenario", "scenario"),
        ("rows", "rows"),
        ("calls/plan", "calls_over_planned"),
        ("wall s", "wall_s"),
        ("cpu s", "cpu_s"),
        ("rows/cpu s", "rows_per_cpu_s"),
        ("cpu s/M rows", "cpu_s_per_million_rows"),
        ("peak MB", "peak_rss_mb"),
        ("sim cpu s", "sim_cpu_s"),
    ];
    for (h, _) in cols {
        print!("{h:>13} ");
    }
    println!();
    for r in report["end_to_end"].as_array().into_iter().flatten() {
        for (_, k) in cols {
            let v = &r[k];
            let s = v.as_str().map(String::from).unwrap_or_else(|| f(v));
            print!("{s:>13} ");
        }
        println!();
        if let Some(all) = r["samples"].as_array() {
            let list = |k: &str| all.iter().map(|x| f(&x[k])).collect::<Vec<_>>().join(" / ");
            println!(
                "{:>13} median of {} runs; cpu s {}; peak MB {}",
                "",
                all.len(),
                list("cpu_s"),
                list("peak_rss_mb")
            );
        }
        println!(
            "{:>13} per data call: {} CPU µs, {} syscalls ({} futex); run: {} fsync, {} syncfs, {} rename, {} openat, {} + {} context switches (voluntary + not); counting run {} cpu s",
            "",
            f(&r["cpu_us_per_call"]),
            f(&r["syscalls"]["per_data_call"]),
            f(&r["syscalls"]["futex_per_data_call"]),
            f(&r["syscalls"]["fsync"]),
            f(&r["syscalls"]["syncfs"]),
            f(&r["syscalls"]["rename"]),
            f(&r["syscalls"]["openat"]),
            f(&r["voluntary_switches"]),
            f(&r["involuntary_switches"]),
            f(&r["cpu_s_traced"]),
        );
        if let Some(rate) = r.get("rate") {
            println!(
                "{:>13} achieved / allowed request rate, worst account: {} overall, {} after the initial burst",
                "",
                f(&rate["min_ratio"]),
                f(&rate["min_ratio_after_burst"])
            );
        }
    }
    if let Some(m) = report.get("memory") {
        println!(
            "\npeak RSS 365 days / 30 days: {} ({} MB / {} MB)",
            f(&m["ratio"]),
            f(&m["rss_365_mb"]),
            f(&m["rss_30_mb"])
        );
    }
}

fn main() {
    // `cargo bench` passes `--bench` (and any filter); the scenarios come from the environment.
    // `cargo test --all-targets` runs this binary without it: nothing to measure then.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("end_to_end: skipped (run it with `make bench`)");
        return;
    }
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_wxcube"));
    let target = bin
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"));
    // Outputs are deleted only after every scenario is measured: on ext4 without a
    // journal (this machine's disk), creating a file skips every inode freed in the last
    // 1-6 minutes, one cache lookup each, so deleting the last run's ~4,000 files just
    // before a run doubled its kernel time. Leftovers of an interrupted invocation stay
    // until the next one ends.
    let all_work = target.join("bench-e2e");
    let work = all_work.join(format!("{}", std::process::id()));
    let repeats = env_num("WXCUBE_BENCH_REPEAT", 3).max(1) as usize;
    let mut runs = Vec::new();
    let mut failed = false;
    for s in scenarios() {
        eprintln!(
            "end_to_end: {} ({} accounts x {} days, {} articles/day, latency {} ms)...",
            s.name, s.accounts, s.days, s.articles_per_day, s.latency_ms
        );
        // Short runs' peak RSS varies by several MB with thread timing: the unthrottled
        // scenarios report the median of a few runs (every sample is kept in the JSON).
        let n = if s.latency_ms == 0 { repeats } else { 1 };
        let timed = (0..n)
            .map(|i| run(&bin, &work, &s, i, false))
            .collect::<Res<Vec<_>>>();
        // Syscalls from one more run, traced; its CPU is not one of the samples.
        let counted = perf_events().map(|_| run(&bin, &work, &s, n, true));
        match timed {
            Ok(samples) => {
                let mut m = median_of(samples);
                match counted {
                    Some(Ok(c)) => {
                        m["syscalls"] = c["syscalls"].clone();
                        m["cpu_s_traced"] = c["cpu_s"].clone();
                    }
                    Some(Err(e)) => {
                        eprintln!("end_to_end: {} (counting syscalls): {e}", s.name);
                        failed = true;
                    }
                    None => {}
                }
                runs.push(m);
            }
            Err(e) => {
                eprintln!("end_to_end: {}: {e}", s.name);
                failed = true;
            }
        }
    }
    let find = |n: &str| runs.iter().find(|r| r["scenario"] == n);
    let memory = match (find("full_365"), find("full_30")) {
        (Some(a), Some(b)) => {
            let (x, y) = (
                a["peak_rss_mb"].as_f64().unwrap_or(0.0),
                b["peak_rss_mb"].as_f64().unwrap_or(1.0),
            );
            Some(json!({"rss_365_mb": x, "rss_30_mb": y, "ratio": x / y}))
        }
        _ => None,
    };
    let mut report = json!({
        "today": TODAY,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "loadavg_at_end": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
        "binary": bin.display().to_string(),
        "end_to_end": runs,
        "hot_path": hot_path(&target),
    });
    if let Some(m) = memory {
        report["memory"] = m;
    }
    let path = target.join("bench-report.json");
    let text = serde_json::to_string_pretty(&report).unwrap_or_default();
    if let Err(e) = std::fs::write(&path, text) {
        eprintln!("end_to_end: writing {}: {e}", path.display());
        failed = true;
    }
    print_table(&report);
    println!("\nwritten: {}", path.display());
    if let Err(e) = std::fs::remove_dir_all(&all_work) {
        eprintln!("end_to_end: removing {}: {e}", all_work.display());
    }
    if failed {
        std::process::exit(1);
    }
}
