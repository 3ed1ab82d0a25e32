//! kill -9 at any point leaves every partition old or new and state consistent; the next
//! run completes the same dataset an uninterrupted run makes. Two runs at once never lose
//! each other's rows.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

const TODAY: &str = "2026-01-20";
const REPORTS: &[&str] = &[
    "upstream_msg_hour",
    "interface_summary_hour",
    "user_summary",
    "article_total_detail",
    "biz_summary",
    // Replaced by key, across partitions: committed and cleaned up in one step.
    "ad_settlement",
];
const DATES: &str = "  start: 2025-11-20\n  end: 2026-01-19";
const LIMITS: &str =
    "  requests_per_second: 100\n  max_in_flight: 4\n  global_requests_per_second: 1000\n";

fn list() -> String {
    format!("[{}]", REPORTS.join(", "))
}

/// Every data file must be a complete Parquet file.
fn assert_all_readable(root: &std::path::Path) {
    let mut files = Vec::new();
    collect(root, &mut files);
    for f in files {
        let bytes = bytes::Bytes::from(std::fs::read(&f).expect("read"));
        wxcube::load::decode_file(bytes)
            .unwrap_or_else(|e| panic!("{} is not a whole Parquet file: {e}", f.display()));
    }
}

#[test]
fn kill_9_at_ten_points_then_rerun_gives_the_uninterrupted_dataset() {
    let sim = Sim::start(r#"{"seed":21,"latency_ms":15}"#, TODAY);
    let reference = tempfile::tempdir().expect("tempdir");
    let p = write(
        reference.path(),
        "p.yaml",
        &pipeline_at(&sim.base_url(), &list(), DATES, "./out", LIMITS),
    );
    let t0 = Instant::now();
    let o = wxcube(
        &["run", p.to_str().expect("utf8"), "--today", TODAY],
        reference.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let full = t0.elapsed();
    let want = snapshot(&reference.path().join("out"), REPORTS);

    let mut interrupted = Vec::new();
    for i in 1..=10u32 {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = write(
            dir.path(),
            "p.yaml",
            &pipeline_at(&sim.base_url(), &list(), DATES, "./out", LIMITS),
        );
        let mut child = Command::new(bin())
            // A short lease: the re-run takes over the killed run's leases within a second.
            .args([
                "run",
                p.to_str().expect("utf8"),
                "--today",
                TODAY,
                "--lease-seconds",
                "1",
            ])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(full.mul_f64(f64::from(i) / 11.0));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let out = dir.path().join("out");
        assert_all_readable(&out);
        let before = wxcube(
            &[
                "plan",
                p.to_str().expect("utf8"),
                "--today",
                TODAY,
                "--json",
            ],
            dir.path(),
        );
        let v: serde_json::Value = serde_json::from_str(&stdout(&before)).expect("plan json");
        let remaining: usize = v["tasks"]
            .as_array()
            .expect("tasks")
            .iter()
            .map(|t| t["windows"].as_array().map_or(0, Vec::len))
            .sum();
        interrupted.push(remaining);
        let o = wxcube(
            &[
                "run",
                p.to_str().expect("utf8"),
                "--today",
                TODAY,
                "--lease-seconds",
                "1",
            ],
            dir.path(),
        );
        assert_eq!(o.status.code(), Some(0), "kill point {i}: {}", stderr(&o));
        assert_eq!(
            snapshot(&out, REPORTS),
            want,
            "kill point {i}: the re-run did not rebuild the dataset"
        );
        // State agrees with the data: nothing left to fetch but provisional windows.
        let plan = wxcube(
            &[
                "plan",
                p.to_str().expect("utf8"),
                "--today",
                TODAY,
                "--json",
            ],
            dir.path(),
        );
        let v: serde_json::Value = serde_json::from_str(&stdout(&plan)).expect("plan json");
        let left: usize = v["tasks"]
            .as_array()
            .expect("tasks")
            .iter()
            .filter(|t| {
                // Still revised by WeChat: fetched again by every run.
                !["article_total_detail", "biz_summary", "ad_settlement"]
                    .contains(&t["report"].as_str().unwrap_or(""))
            })
            .map(|t| t["windows"].as_array().map_or(0, Vec::len))
            .sum();
        assert_eq!(
            left, 0,
            "kill point {i}: state does not record what was loaded"
        );
    }
    // The kills really landed mid-run: work was left, less of it the later the kill.
    assert!(
        interrupted.iter().filter(|&&n| n > 0).count() >= 8,
        "remaining calls after each kill: {interrupted:?}"
    );
    assert!(interrupted[0] > interrupted[8], "{interrupted:?}");
}

#[test]
fn two_runs_at_once_keep_each_others_rows() {
    let sim = Sim::start(r#"{"seed":22,"latency_ms":5}"#, TODAY);
    let reference = tempfile::tempdir().expect("tempdir");
    let p = write(
        reference.path(),
        "p.yaml",
        &pipeline_at(&sim.base_url(), &list(), DATES, "./out", LIMITS),
    );
    let o = wxcube(
        &["run", p.to_str().expect("utf8"), "--today", TODAY],
        reference.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let want = snapshot(&reference.path().join("out"), REPORTS);

    // Same output, overlapping work: one run per account plus one for everything.
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(
        dir.path(),
        "p.yaml",
        &pipeline_at(&sim.base_url(), &list(), DATES, "./out", LIMITS),
    );
    let ps = p.to_str().expect("utf8");
    let spawn = |extra: &[&str]| {
        let mut args = vec!["run", ps, "--today", TODAY, "--full-refresh"];
        args.extend_from_slice(extra);
        Command::new(bin())
            .args(&args)
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let children = vec![
        spawn(&["--accounts", "brand_cn"]),
        spawn(&["--accounts", "shop_sh"]),
        spawn(&[]),
    ];
    let deadline = Instant::now() + Duration::from_secs(300);
    for c in children {
        let o = c.wait_with_output().expect("wait");
        assert!(Instant::now() < deadline);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    assert_same(
        &snapshot(&dir.path().join("out"), REPORTS),
        &want,
        "concurrent runs",
    );
}
