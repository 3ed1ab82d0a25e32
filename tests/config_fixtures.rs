//! Every invalid pipeline fixture fails with the messages its `.expected` file lists, and
//! valid pipelines load.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use wxcube::config;
use wxcube::pipeline::{Api, Compression, DateRef, DateSpec, Partition};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `# env: NAME=value` lines at the top of a fixture.
fn fixture_env(text: &str) -> HashMap<String, String> {
    text.lines()
        .map_while(|l| l.strip_prefix('#'))
        .filter_map(|l| l.trim().strip_prefix("env:"))
        .filter_map(|kv| kv.trim().split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

#[test]
fn invalid_fixtures_report_what_they_expect() {
    let dir = root().join("tests/fixtures/pipelines/invalid");
    let mut cases: Vec<PathBuf> = fs::read_dir(&dir)
        .expect("fixture directory")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 40, "only {} fixtures", cases.len());

    let mut failures = Vec::new();
    for yaml in &cases {
        let expected_path = yaml.with_extension("expected");
        let expected = fs::read_to_string(&expected_path)
            .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
        let text = fs::read_to_string(yaml).expect("fixture text");
        let env = fixture_env(&text);
        let result = if env.is_empty() {
            config::load(yaml)
        } else {
            config::load_str(yaml, &text, &|k| env.get(k).cloned())
        };
        let name = yaml.file_name().unwrap_or_default().to_string_lossy();
        let err = match result {
            Ok(_) => {
                failures.push(format!("{name}: loaded, but it is invalid"));
                continue;
            }
            Err(e) => e,
        };
        let shown = err.to_string();
        for want in expected.lines().filter(|l| !l.trim().is_empty()) {
            if !shown.contains(want) {
                failures.push(format!("{name}: missing {want:?} in:\n{shown}"));
            }
        }
        for d in &err.diagnostics {
            assert_eq!(&d.file, yaml, "{name}: diagnostic names another file");
            assert!(
                !d.message.ends_with('.'),
                "{name}: trailing period: {}",
                d.message
            );
            assert!(
                !d.message.starts_with(char::is_uppercase),
                "{name}: capitalised: {}",
                d.message
            );
        }
        // The fixtures' literal secrets must never be echoed.
        assert!(
            !shown.contains("secret-value"),
            "{name} leaks a secret:\n{shown}"
        );
        // Each line of the Display starts with the file.
        for line in shown.lines() {
            assert!(
                line.starts_with(&yaml.display().to_string()),
                "{name}: {line}"
            );
        }
    }
    for yaml in fs::read_dir(&dir).expect("fixture directory") {
        let p = yaml.expect("directory entry").path();
        if p.extension().is_some_and(|e| e == "expected") {
            assert!(
                p.with_extension("yaml").exists(),
                "{} has no .yaml",
                p.display()
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_missing_file_is_a_diagnostic_naming_it() {
    let path = root().join("tests/fixtures/pipelines/does-not-exist.yaml");
    let err = config::load(&path).expect_err("no such file");
    assert_eq!(err.diagnostics.len(), 1);
    let shown = err.to_string();
    assert!(
        shown.contains(&format!("cannot read pipeline file {}", path.display())),
        "{shown}"
    );
    assert!(shown.contains("no such file"), "{shown}");
}

#[test]
fn a_full_pipeline_loads_with_every_value() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("data/brand");
    let text = format!(
        "version: 1
name: brand-analytics
api:
  base_url: https://api.example.com/
accounts:
  - name: brand_cn
    app_id: ${{APP_ID}}
    app_secret: ${{APP_SECRET}}
  - name: brand-hk
    app_id: wx0002
    app_secret: ${{HK_SECRET:-fallback-secret}}
reports: [user_summary, getarticletotal, upstream_msg_hour]
dates:
  start: 2025-01-01
  end: {{ days_back: 1 }}
output:
  uri: {}
  partition: day
  compression: snappy
limits:
  requests_per_second: ${{RPS:-3}}
  max_in_flight: 2
",
        out.display()
    );
    let env = |k: &str| match k {
        "APP_ID" => Some("wx0001".to_owned()),
        "APP_SECRET" => Some("the-real-secret".to_owned()),
        _ => None,
    };
    let path = Path::new("inline.yaml");
    let p = config::load_str(path, &text, &env).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.name, "brand-analytics");
    assert_eq!(p.source, path);
    assert!(matches!(&p.api, Api::BaseUrl(u) if u == "https://api.example.com"));
    assert_eq!(p.accounts.len(), 2);
    assert_eq!(p.accounts[0].name, "brand_cn");
    assert_eq!(p.accounts[0].app_id, "wx0001");
    assert_eq!(p.accounts[0].app_secret.expose(), "the-real-secret");
    assert_eq!(p.accounts[1].app_secret.expose(), "fallback-secret");
    let ids: Vec<_> = p.reports.iter().map(|r| r.id).collect();
    assert_eq!(ids, ["user_summary", "article_total", "upstream_msg_hour"]);
    assert_eq!(
        p.dates,
        DateSpec::Range {
            start: DateRef::Abs(chrono::NaiveDate::from_ymd_opt(2025, 1, 1).expect("date")),
            end: Some(DateRef::DaysBack(1)),
        }
    );
    assert_eq!(p.output.uri, out.display().to_string());
    assert_eq!(p.output.partition, Partition::Day);
    assert_eq!(p.output.compression, Compression::Snappy);
    assert_eq!(p.limits.requests_per_second, 3);
    assert_eq!(p.limits.max_in_flight, 2);
    assert_eq!(p.limits.global_requests_per_second, 50);
    assert_eq!(p.limits.daily_calls_per_report, 1000);
    assert!(
        !out.exists(),
        "validation must not create the output directory"
    );
    let debug = format!("{p:?}");
    assert!(!debug.contains("the-real-secret"), "{debug}");
    assert!(!debug.contains("fallback-secret"), "{debug}");
}

#[test]
fn the_design_example_loads() {
    // DESIGN §2, with the simulator instead of the network and a temp output.
    let dir = tempfile::tempdir().expect("temp dir");
    let text = format!(
        "version: 1
name: brand-analytics
api:
  simulator: {{ seed: 42 }}
accounts:
  - name: brand_cn
    app_id: ${{WECHAT_APP_ID}}
    app_secret: ${{WECHAT_APP_SECRET}}
reports: all
dates:
  days_back: 7
output:
  uri: {}/data/brand
  partition: month
  compression: zstd
limits:
  requests_per_second: 5
  max_in_flight: 8
  global_requests_per_second: 50
  daily_calls_per_report: 1000
",
        dir.path().display()
    );
    let env = |k: &str| Some(format!("{k}-value"));
    let p =
        config::load_str(Path::new("design.yaml"), &text, &env).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(&p.api, Api::Simulator(s) if s.seed == 42));
    assert_eq!(p.reports.len(), wxcube::catalog::active().count());
    assert_eq!(p.dates, DateSpec::DaysBack(7));
    assert_eq!(p.limits, wxcube::pipeline::Limits::default());
}

#[test]
fn every_pipeline_in_the_repository_loads() {
    let Ok(entries) = fs::read_dir(root().join("pipelines")) else {
        return; // no pipelines/ yet
    };
    let mut failures = Vec::new();
    for e in entries {
        let p = e.expect("directory entry").path();
        if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            if let Err(err) = config::load(&p) {
                failures.push(err.to_string());
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
