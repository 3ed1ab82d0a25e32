//! Every report through the whole pipeline: the rows in the Parquet files equal the
//! simulator's responses for the range, field by field; re-runs never duplicate.

use chrono::NaiveDate;
use serde_json::Value;
use wxcube::catalog::{self, REPORTS};
use wxcube::sim::{self, SimConfig};

use crate::harness::*;

const TODAY: &str = "2026-01-20";

fn all_reports() -> String {
    format!(
        "[{}]",
        REPORTS.iter().map(|r| r.id).collect::<Vec<_>>().join(", ")
    )
}

fn expected(report: &'static catalog::Report, app_id: &str, start: NaiveDate) -> Vec<Value> {
    let cfg: SimConfig = serde_json::from_str(r#"{"seed":7}"#).expect("sim config");
    let today = wxcube::dates::parse(TODAY).expect("date");
    let ready = today.pred_opt().expect("date");
    let begin = start.max(report.first_day());
    if begin > ready {
        return Vec::new();
    }
    let body = sim::respond(&cfg, today, report, app_id, begin, ready);
    expected_rows(report, &body)
}

fn run_json(dir: &std::path::Path, args: &[&str]) -> Value {
    let o = wxcube(args, dir);
    assert_eq!(
        o.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        stdout(&o),
        stderr(&o)
    );
    serde_json::from_str(&stdout(&o)).expect("run --json prints JSON")
}

#[test]
fn every_report_equals_the_api_and_reruns_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let start = "2025-10-25";
    let p = write(
        dir.path(),
        "p.yaml",
        &pipeline(&all_reports(), &format!("  start: {start}"), "./out", ""),
    );
    let ps = p.to_str().expect("utf8");
    let report = run_json(
        dir.path(),
        &["run", ps, "--today", TODAY, "--json", "--progress", "never"],
    );
    assert_eq!(
        report["data_calls"], report["planned_calls"],
        "one call per planned window, no more"
    );
    assert!(report["planned_calls"].as_u64().unwrap_or(0) > 100);

    let root = dir.path().join("out");
    let start = wxcube::dates::parse(start).expect("date");
    let mut first = Vec::new();
    for r in REPORTS {
        for a in &ACCOUNTS {
            let got = read_rows(&root, r.id, a.name);
            let want = expected(r, a.app_id, start);
            assert!(
                !want.is_empty(),
                "{}: the simulator returned no rows for the range",
                r.id
            );
            let (g, w) = (canon(&got), canon(&want));
            assert_eq!(g.len(), w.len(), "{} {}: row count", r.id, a.name);
            for (x, y) in g.iter().zip(&w) {
                assert_eq!(x, y, "{} {}: first differing row", r.id, a.name);
            }
            assert_eq!(duplicate_keys(r, &got), 0, "{} {}", r.id, a.name);
            first.push(g);
        }
    }

    // The same pipeline again, ignoring state: the same rows, no duplicates.
    let again = run_json(
        dir.path(),
        &["run", ps, "--today", TODAY, "--json", "--full-refresh"],
    );
    assert_eq!(again["data_calls"], report["data_calls"]);
    // An overlapping, shorter range merges into the same table.
    let p2 = write(
        dir.path(),
        "p2.yaml",
        &pipeline(&all_reports(), "  days_back: 12", "./out", ""),
    );
    run_json(
        dir.path(),
        &[
            "run",
            p2.to_str().expect("utf8"),
            "--today",
            TODAY,
            "--json",
            "--full-refresh",
        ],
    );
    let mut i = 0;
    for r in REPORTS {
        for a in &ACCOUNTS {
            assert_eq!(
                canon(&read_rows(&root, r.id, a.name)),
                first[i],
                "{} {} after re-runs",
                r.id,
                a.name
            );
            i += 1;
        }
    }
}

#[test]
fn a_second_run_fetches_only_what_is_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(
        dir.path(),
        "p.yaml",
        &pipeline("all", "  days_back: 20", "./out", ""),
    );
    let ps = p.to_str().expect("utf8");
    let first = run_json(dir.path(), &["run", ps, "--today", TODAY, "--json"]);
    assert!(first["data_calls"].as_u64().unwrap_or(0) > 0);
    // Same day: only provisional windows (is_delay) may be fetched again.
    let plan: Value = serde_json::from_str(&stdout(&wxcube(
        &["plan", ps, "--today", TODAY, "--json"],
        dir.path(),
    )))
    .expect("plan --json");
    let second = run_json(dir.path(), &["run", ps, "--today", TODAY, "--json"]);
    let planned: u64 = plan["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["windows"].as_array().map_or(0, |w| w.len() as u64))
        .sum();
    assert_eq!(
        second["data_calls"].as_u64(),
        Some(planned),
        "plan predicts the calls"
    );
    assert!(
        planned < first["data_calls"].as_u64().unwrap_or(0) / 4,
        "second run refetches little: {planned}"
    );
    // A day later: one new day per daily report (plus revisions), far fewer than the first run.
    let next = run_json(dir.path(), &["run", ps, "--today", "2026-01-21", "--json"]);
    let n = next["data_calls"].as_u64().unwrap_or(0);
    assert!(
        n >= 15 && n < first["data_calls"].as_u64().unwrap_or(0) / 2,
        "next day calls: {n}"
    );
}

#[test]
fn publisher_reports_equal_the_api_across_pages() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 2024 has per-slot ad rows until mid-August: 3 rows a day, so 90-day windows span pages.
    let p = write(
        dir.path(),
        "p.yaml",
        &pipeline(
            "[ad_position, ad_cps, ad_settlement]",
            "  start: 2024-05-01\n  end: 2024-12-31",
            "./out",
            "",
        ),
    );
    let report = run_json(
        dir.path(),
        &[
            "run",
            p.to_str().expect("utf8"),
            "--today",
            "2025-01-20",
            "--json",
        ],
    );
    assert!(
        report["data_calls"].as_u64() > report["planned_calls"].as_u64(),
        "paging made extra calls"
    );
    let cfg: SimConfig = serde_json::from_str(r#"{"seed":7}"#).expect("sim config");
    let today = wxcube::dates::parse("2025-01-20").expect("date");
    let (b, e) = (
        wxcube::dates::parse("2024-05-01").expect("date"),
        wxcube::dates::parse("2024-12-31").expect("date"),
    );
    for id in ["ad_position", "ad_cps", "ad_settlement"] {
        let r = catalog::find(id).expect("report");
        for a in &ACCOUNTS {
            // Through JSON text, as the client sees it (floats parse to the nearest double).
            let text = sim::respond(&cfg, today, r, a.app_id, b, e).to_string();
            let mut body: Value = serde_json::from_str(&text).expect("json");
            if let Some(list) = body.get("settlement_list").cloned() {
                body["list"] = list;
            }
            let want = canon(&expected_rows(r, &body));
            let got = canon(&read_rows(&dir.path().join("out"), id, a.name));
            assert!(!want.is_empty(), "{id}");
            assert_same(&[(id.to_string(), got)], &[(id.to_string(), want)], a.name);
        }
    }
}

#[test]
fn revisions_are_fetched_after_the_range_has_moved_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(
        dir.path(),
        "p.yaml",
        &pipeline("[article_total_detail]", "  days_back: 7", "./out", ""),
    );
    let ps = p.to_str().expect("utf8");
    run_json(dir.path(), &["run", ps, "--today", "2026-01-10", "--json"]);
    // Three days later the range is 01-06..01-12, but 01-02..01-05 are still within their
    // 30 days of revisions: the plan fetches them again, and the table matches the API.
    let plan: Value = serde_json::from_str(&stdout(&wxcube(
        &["plan", ps, "--today", "2026-01-13", "--json"],
        dir.path(),
    )))
    .expect("plan");
    let revise: u64 = plan["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["revise_dates"].as_u64().unwrap_or(0))
        .sum();
    assert!(revise >= 2 * 7, "revise dates counted: {revise}");
    let covered: Vec<String> = plan["tasks"][0]["windows"]
        .as_array()
        .expect("windows")
        .iter()
        .map(|w| w["begin"].to_string())
        .collect();
    assert!(
        covered.iter().any(|d| d.contains("2026-01-03")),
        "{covered:?}"
    );
    run_json(dir.path(), &["run", ps, "--today", "2026-01-13", "--json"]);
    let cfg: SimConfig = serde_json::from_str(r#"{"seed":7}"#).expect("sim config");
    let r = catalog::find("article_total_detail").expect("report");
    let today = wxcube::dates::parse("2026-01-13").expect("date");
    for a in &ACCOUNTS {
        let got = read_rows(&dir.path().join("out"), r.id, a.name);
        let text = sim::respond(
            &cfg,
            today,
            r,
            a.app_id,
            wxcube::dates::parse("2026-01-03").expect("date"),
            wxcube::dates::parse("2026-01-12").expect("date"),
        )
        .to_string();
        let want = expected_rows(r, &serde_json::from_str(&text).expect("json"));
        // is_delay is the flag of the response a row came in: compare without it.
        assert_same(
            &without(vec![(a.name.to_string(), canon(&got))], &["is_delay"]),
            &without(vec![(a.name.to_string(), canon(&want))], &["is_delay"]),
            "after revisions",
        );
    }
}

/// Orders two cells the way the loader sorts keys (nulls first).
fn cmp_cell(a: &Value, b: &Value) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x.partial_cmp(&y).unwrap_or(Ordering::Equal)
        }
        (Value::String(x), Value::String(y)) => x.cmp(y),
        _ => a.to_string().cmp(&b.to_string()),
    }
}

#[test]
fn windows_arriving_out_of_order_are_written_in_key_order() {
    // Slow answers make windows finish out of order; each partition is written as its
    // windows arrive, so order must come from the loader, not from arrival.
    let reports: Vec<&str> = catalog::active().map(|r| r.id).collect();
    let mut snaps = Vec::new();
    for (sim, in_flight) in [
        ("{ seed: 7 }", 1),
        (
            "{ seed: 7, faults: { rate: 0.3, kinds: [slow], slow_ms: 150 } }",
            16,
        ),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = pipeline("all", "  start: 2025-12-20", "./out", "")
            .replace("simulator: { seed: 7 }", &format!("simulator: {sim}"))
            .replace("max_in_flight: 8", &format!("max_in_flight: {in_flight}"));
        let p = write(dir.path(), "p.yaml", &text);
        let o = wxcube(
            &["run", p.to_str().expect("utf8"), "--today", TODAY],
            dir.path(),
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let root = dir.path().join("out");
        for r in &reports {
            let key = catalog::find(r).expect("report").key;
            for a in &ACCOUNTS {
                let mut files = Vec::new();
                collect(
                    &root.join(r).join(format!("account={}", a.name)),
                    &mut files,
                );
                for f in files {
                    let bytes = bytes::Bytes::from(std::fs::read(&f).expect("read"));
                    let rows: Vec<Value> = wxcube::load::decode_file(bytes)
                        .expect("decode")
                        .iter()
                        .flat_map(batch_rows)
                        .collect();
                    for (i, w) in rows.windows(2).enumerate() {
                        let ord = key
                            .iter()
                            .map(|k| cmp_cell(&w[0][*k], &w[1][*k]))
                            .find(|o| o.is_ne())
                            .unwrap_or(std::cmp::Ordering::Equal);
                        assert!(
                            ord.is_lt(),
                            "{}: rows {i} and {} not in key order {key:?}",
                            f.display(),
                            i + 1
                        );
                    }
                }
            }
        }
        snaps.push(snapshot(&root, &reports));
    }
    assert_same(&snaps[1], &snaps[0], "out of order vs in order");
}
