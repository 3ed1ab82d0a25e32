use std::fs;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;

use super::output::{check_bucket, check_uri};
use super::*;
use crate::catalog;
use crate::config::{load, load_str};
use crate::pipeline::{Api, Auth, Compression, DateRef, DateSpec, Limits, Partition, Region};

const SECRET: &str = "sk-live-9f8e7d6c5b4a";

fn minimal(out: &Path) -> String {
    format!(
        "version: 1\nname: t\naccounts:\n  - name: a\n    app_id: wx1\n    app_secret: {SECRET}\nreports: all\ndates:\n  days_back: 3\noutput:\n  uri: {}\n",
        out.display()
    )
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn errors(text: &str, env: &dyn Fn(&str) -> Option<String>) -> ConfigError {
    match load_str(Path::new("p.yaml"), text, env) {
        Ok(p) => panic!("expected errors, loaded {p:?}"),
        Err(e) => e,
    }
}

#[test]
fn defaults_fill_what_is_left_out() {
    let dir = tempfile::tempdir().expect("temp dir");
    let p = load_str(Path::new("p.yaml"), &minimal(dir.path()), &no_env)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(&p.api, Api::Region(Region::Default)));
    assert_eq!(p.output.partition, Partition::Month);
    assert_eq!(p.output.compression, Compression::Zstd);
    assert_eq!(p.limits, Limits::default());
    assert_eq!(p.dates, DateSpec::DaysBack(3));
    let active: Vec<_> = catalog::active().map(|r| r.id).collect();
    let got: Vec<_> = p.reports.iter().map(|r| r.id).collect();
    assert_eq!(got, active);
    assert_eq!(got.len(), 15);
    assert_eq!(p.accounts[0].app_secret.expose(), SECRET);
}

#[test]
fn null_sections_mean_defaults() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = format!("{}api:\nlimits:\n", minimal(dir.path()));
    let p = load_str(Path::new("p.yaml"), &text, &no_env).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(&p.api, Api::Region(Region::Default)));
    assert_eq!(p.limits, Limits::default());

    let text = format!("{}api:\n  simulator:\n", minimal(dir.path()));
    let p = load_str(Path::new("p.yaml"), &text, &no_env).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(&p.api, Api::Simulator(s) if s.seed == 0));
}

#[test]
fn values_are_normalized() {
    let dir = tempfile::tempdir().expect("temp dir");
    let base = minimal(dir.path());
    let with = |extra: &str, uri: &str| {
        let text = base.replace(&dir.path().display().to_string(), uri) + extra;
        load_str(Path::new("p.yaml"), &text, &no_env).unwrap_or_else(|e| panic!("{e}"))
    };
    let p = with(
        "api:\n  base_url: http://127.0.0.1:9000/\n",
        "s3://my-bucket/wechat/raw/",
    );
    assert!(matches!(&p.api, Api::BaseUrl(u) if u == "http://127.0.0.1:9000"));
    assert_eq!(p.output.uri, "s3://my-bucket/wechat/raw");
    let p = with("", "s3://my.bucket-1");
    assert_eq!(p.output.uri, "s3://my.bucket-1");
    let p = with("api: { simulator: { seed: 7 } }\n", "s3://abc/x");
    assert!(matches!(&p.api, Api::Simulator(s) if s.seed == 7));
}

/// Plain http:// only to loopback, unless the pipeline says so; and the command
/// timeout reaches the `Auth`.
#[test]
fn plain_http_needs_loopback_or_an_explicit_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let load = |api: &str| {
        let text = format!("{}{api}", minimal(dir.path()));
        load_str(Path::new("p.yaml"), &text, &no_env)
    };
    for host in [
        "127.0.0.1:9",
        "127.8.9.10",
        "[::1]:80",
        "localhost:8080",
        "LOCALHOST",
    ] {
        let r = load(&format!("api:\n  base_url: http://{host}/x\n"));
        assert!(r.is_ok(), "{host}: {:?}", r.err().map(|e| e.to_string()));
    }
    for host in [
        "10.0.0.1",
        "wx-proxy.internal",
        "[::2]",
        "127.0.0.1.example.com",
        "localhost.evil",
    ] {
        let e = load(&format!("api:\n  base_url: http://{host}\n")).expect_err(host);
        assert!(
            e.to_string().contains("allow_plain_http: true"),
            "{host}: {e}"
        );
    }
    let p = load("api:\n  base_url: http://10.0.0.1:8080\n  allow_plain_http: true\n")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(&p.api, Api::BaseUrl(u) if u == "http://10.0.0.1:8080"));
    let e = load("api:\n  simulator: {}\n  allow_plain_http: true\n").expect_err("misused");
    assert!(
        e.to_string().contains("only used with an http:// base_url"),
        "{e}"
    );

    let text = minimal(dir.path()).replace(
        "    app_secret: {SECRET}\n"
            .replace("{SECRET}", SECRET)
            .as_str(),
        "    auth: { type: command, command: get-token, timeout_seconds: 5 }\n",
    );
    let p = load_str(Path::new("p.yaml"), &text, &no_env).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        &p.accounts[0].auth,
        Auth::Command { timeout, .. } if timeout.as_secs() == 5
    ));
}

#[test]
fn reports_accept_api_names_and_explicit_legacy_ones() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = minimal(dir.path()).replace(
        "reports: all",
        "reports: [getuserread, user_summary, getarticlesummary]",
    );
    let p = load_str(Path::new("p.yaml"), &text, &no_env).unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<_> = p.reports.iter().map(|r| r.id).collect();
    assert_eq!(ids, ["user_read", "user_summary", "article_summary"]);
}

#[test]
fn interpolation_reaches_every_string_and_numbers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = "version: 1\nname: ${NAME}-$${literal}\naccounts:\n  - name: ${ACCOUNT:-brand}\n    app_id: ${APP_ID}\n    app_secret: ${SECRET}\nreports:\n  - ${REPORT}\ndates:\n  start: ${START}\noutput:\n  uri: ${OUT}/x\n  partition: ${PART:-year}\nlimits:\n  max_in_flight: ${INFLIGHT}\n";
    let out = dir.path().display().to_string();
    let env = |k: &str| {
        Some(match k {
            "NAME" => "n".to_owned(),
            "APP_ID" => "wx9".to_owned(),
            "SECRET" => SECRET.to_owned(),
            "REPORT" => "user_cumulate".to_owned(),
            "START" => "2025-01-31".to_owned(),
            "OUT" => out.clone(),
            "INFLIGHT" => "3".to_owned(),
            _ => return None,
        })
    };
    let p = load_str(Path::new("p.yaml"), text, &env).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.name, "n-${literal}");
    assert_eq!(p.accounts[0].name, "brand");
    assert_eq!(p.accounts[0].app_id, "wx9");
    assert_eq!(p.accounts[0].app_secret.expose(), SECRET);
    assert_eq!(p.reports[0].id, "user_cumulate");
    assert_eq!(
        p.dates,
        DateSpec::Range {
            start: DateRef::Abs(NaiveDate::from_ymd_opt(2025, 1, 31).expect("date")),
            end: None
        }
    );
    assert_eq!(p.output.uri, format!("{out}/x"));
    assert_eq!(p.output.partition, Partition::Year);
    assert_eq!(p.limits.max_in_flight, 3);
}

#[test]
fn secrets_never_show_in_debug_display_or_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let p = load_str(Path::new("p.yaml"), &minimal(dir.path()), &no_env)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!format!("{p:?}").contains(SECRET));

    // A secret from the environment reused where values are echoed.
    let env = |k: &str| (k == "S").then(|| SECRET.to_owned());
    let text = format!(
        "version: 1\nname: ${{S}}${{S}}${{S}}${{S}}${{S}}${{S}}${{S}}\naccounts:\n  - name: ${{S}}\n    app_id: x\n    app_secret: ${{S}}\n  - name: b\n    app_id: x\n    app_secret: {SECRET}\n    extra: 1\nreports:\n  - ${{S}}\ndates:\n  start: ${{S}}\noutput:\n  uri: s3://${{S}}/x\n  partition: ${{S}}\n  compression: {SECRET}\n"
    );
    let e = errors(&text, &env);
    assert_eq!(e.diagnostics.len(), 6, "{e}");
    for shown in [e.to_string(), format!("{e:?}")] {
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(!shown.contains("sk-live"), "{shown}");
    }
    // The literal secret in compression is echoed as a value, then scrubbed.
    assert!(
        e.to_string()
            .contains("output.compression: \"***\" is not a compression"),
        "{e}"
    );
}

#[test]
fn diagnostics_display_file_line_column_key_message() {
    let d = Diagnostic {
        file: PathBuf::from("p.yaml"),
        line: Some(3),
        column: Some(7),
        key: "accounts[1].app_secret".into(),
        message: "must not be empty".into(),
    };
    assert_eq!(
        d.to_string(),
        "p.yaml:3:7: accounts[1].app_secret: must not be empty"
    );
    let d = Diagnostic {
        line: None,
        column: None,
        key: String::new(),
        message: "the file is empty".into(),
        ..d
    };
    assert_eq!(d.to_string(), "p.yaml: the file is empty");
    let e = ConfigError {
        diagnostics: vec![d.clone(), d],
    };
    assert_eq!(
        e.to_string(),
        "p.yaml: the file is empty\np.yaml: the file is empty"
    );
}

#[test]
fn every_error_is_collected_in_file_order() {
    let text = "limits: {max_in_flight: 0}\nversion: 3\nname: ''\noutput: {uri: s3://A}\n";
    let e = errors(text, &no_env);
    let got: Vec<_> = e
        .diagnostics
        .iter()
        .map(|d| (d.line, d.key.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (None, "accounts"),
            (None, "reports"),
            (None, "dates"),
            (Some(1), "limits.max_in_flight"),
            (Some(2), "version"),
            (Some(3), "name"),
            (Some(4), "output.uri"),
        ]
    );
}

#[test]
fn relative_dates_are_ordered_and_mixed_forms_pass() {
    let dir = tempfile::tempdir().expect("temp dir");
    let with = |dates: &str| {
        let text = minimal(dir.path()).replace("dates:\n  days_back: 3\n", dates);
        load_str(Path::new("p.yaml"), &text, &no_env)
    };
    let p = with("dates:\n  start: { days_back: 30 }\n  end: { days_back: 2 }\n")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        p.dates,
        DateSpec::Range {
            start: DateRef::DaysBack(30),
            end: Some(DateRef::DaysBack(2))
        }
    );
    assert!(with("dates:\n  start: 2015-01-01\n  end: { days_back: 2 }\n").is_ok());
    assert!(with("dates:\n  start: 2014-12-01\n  end: 2014-12-01\n").is_ok());
    let e = with("dates:\n  start: 2014-12-02\n  end: 2014-12-01\n").unwrap_err();
    assert_eq!(e.diagnostics.len(), 1, "{e}");
    assert_eq!(e.diagnostics[0].key, "dates.end");
}

#[test]
fn output_checks_touch_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("file");
    fs::write(&file, "x").expect("write");
    assert_eq!(
        check_uri(&file.join("a/b").display().to_string(), false),
        Err(format!(
            "{} is a file, so {} cannot be created",
            file.display(),
            file.join("a/b").display()
        ))
    );
    let deep = dir.path().join("a/b/c");
    assert_eq!(
        check_uri(&deep.display().to_string(), false),
        Ok(deep.display().to_string())
    );
    assert!(!dir.path().join("a").exists());
    let left: Vec<_> = fs::read_dir(dir.path())
        .expect("read dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(left, [std::ffi::OsString::from("file")]);
    assert!(check_uri("relative/dir", false).is_ok());
}

#[test]
fn bucket_names_follow_s3_rules() {
    for ok in ["abc", "my-bucket", "my.bucket.1", &"a".repeat(63)] {
        assert_eq!(check_bucket(ok, false), Ok(()), "{ok}");
    }
    for bad in [
        "ab",
        "My",
        "a_b",
        "-ab",
        "ab-",
        "a..b",
        "192.168.1.1",
        &"a".repeat(64),
    ] {
        assert!(check_bucket(bad, false).is_err(), "{bad}");
    }
}

#[test]
fn load_reads_files_and_names_missing_ones() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("p.yaml");
    fs::write(&path, minimal(&dir.path().join("out"))).expect("write");
    let p = load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.source, path);
    let missing = dir.path().join("nope.yaml");
    let e = load(&missing).expect_err("missing file");
    assert_eq!(
        e.to_string(),
        format!(
            "{0}: cannot read pipeline file {0}: no such file",
            missing.display()
        )
    );
}
