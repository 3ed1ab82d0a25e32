//! Command-line behaviour: exit codes, validation fixtures, nothing written on bad input.

use std::path::PathBuf;

use crate::harness::*;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pipelines/invalid")
}

#[test]
fn every_example_pipeline_validates() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pipelines");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("pipelines/").flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "yaml") {
            let o = wxcube(&["validate", p.to_str().expect("utf8")], &dir);
            assert_eq!(o.status.code(), Some(0), "{}: {}", p.display(), stderr(&o));
            n += 1;
        }
    }
    assert!(n >= 1);
}

#[test]
fn invalid_pipelines_exit_2_with_their_message_and_write_nothing() {
    let mut n = 0;
    for e in std::fs::read_dir(fixtures()).expect("fixtures").flatten() {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "yaml") {
            continue;
        }
        let expected =
            std::fs::read_to_string(p.with_extension("expected")).expect("expected file");
        let text = std::fs::read_to_string(&p).expect("fixture");
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cmd = std::process::Command::new(bin());
        cmd.current_dir(dir.path());
        if let Some(env) = text.lines().next().and_then(|l| l.strip_prefix("# env: ")) {
            for kv in env.split_whitespace() {
                if let Some((k, v)) = kv.split_once('=') {
                    cmd.env(k, v);
                }
            }
        }
        for args in [
            vec!["validate"],
            vec!["run", "--today", "2026-01-20"],
            vec!["plan"],
        ] {
            let o = cmd.args(&args).arg(&p).output().expect("run");
            cmd = std::process::Command::new(bin());
            cmd.current_dir(dir.path());
            if let Some(env) = text.lines().next().and_then(|l| l.strip_prefix("# env: ")) {
                for kv in env.split_whitespace() {
                    if let Some((k, v)) = kv.split_once('=') {
                        cmd.env(k, v);
                    }
                }
            }
            assert_eq!(
                o.status.code(),
                Some(2),
                "{} ({args:?}): {}",
                p.display(),
                stderr(&o)
            );
            let err = stderr(&o);
            for line in expected.lines().filter(|l| !l.trim().is_empty()) {
                assert!(
                    err.contains(line.trim()),
                    "{} ({args:?}): expected {line:?} in:\n{err}",
                    p.display()
                );
            }
            let left: Vec<_> = std::fs::read_dir(dir.path()).expect("tempdir").collect();
            assert!(left.is_empty(), "{}: {args:?} wrote {left:?}", p.display());
        }
        n += 1;
    }
    assert!(n >= 40, "only {n} invalid fixtures");
}

#[test]
fn bad_command_lines_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(
        dir.path(),
        "p.yaml",
        &pipeline("all", "  days_back: 3", "./out", ""),
    );
    let ps = p.to_str().expect("utf8");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["run", ps, "--today", "2026-13-01"], "--today"),
        (vec!["run", ps, "--today", "20260101"], "--today"),
        (
            vec!["run", ps, "--reports", "user_sumary"],
            "did you mean \"user_summary\"",
        ),
        (vec!["run", ps, "--accounts", "nobody"], "nobody"),
        (vec!["run", ps, "--progress", "sometimes"], "--progress"),
        (vec!["run", ps, "--log-format", "xml"], "--log-format"),
        (vec!["schema", "nope"], "unknown report"),
        (vec!["frobnicate"], "frobnicate"),
        (vec!["run"], "PIPELINE"),
        (vec!["run", "missing.yaml"], "missing.yaml"),
    ];
    for (args, needle) in cases {
        let o = wxcube(&args, dir.path());
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(needle),
            "{args:?}: expected {needle:?} in {}",
            stderr(&o)
        );
        assert!(!dir.path().join("out").exists(), "{args:?} wrote output");
    }
}

#[test]
fn a_damaged_state_file_stops_the_run_with_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(
        dir.path(),
        "p.yaml",
        &pipeline("[user_summary]", "  days_back: 3", "./out", ""),
    );
    let ps = p.to_str().expect("utf8");
    let o = wxcube(
        &[
            "run",
            ps,
            "--today",
            "2026-01-20",
            "--accounts",
            "brand_cn,brand_cn",
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let state = dir
        .path()
        .join("out/_wxcube/state/user_summary/account=brand_cn.json");
    std::fs::write(&state, "{ not json").expect("damage state");
    let o = wxcube(&["run", ps, "--today", "2026-01-20"], dir.path());
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("damaged") && stderr(&o).contains("account=brand_cn.json"),
        "{}",
        stderr(&o)
    );
}
