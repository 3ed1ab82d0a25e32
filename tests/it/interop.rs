//! DuckDB, Polars and pyarrow read every table, from disk and (Polars, pyarrow) from S3.
//! Needs the venv `make test` creates (WXCUBE_TEST_PYTHON) and, for S3, the moto server it
//! starts (WXCUBE_TEST_S3, AWS_* variables).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use wxcube::catalog::REPORTS;

use crate::harness::*;

pub fn python() -> Option<PathBuf> {
    std::env::var_os("WXCUBE_TEST_PYTHON")
        .map(PathBuf::from)
        .filter(|p| p.exists())
}

pub fn s3_enabled() -> bool {
    std::env::var_os("WXCUBE_TEST_S3").is_some() && python().is_some()
}

/// Creates a bucket on the loopback S3 server of `make test` (object_store cannot).
pub fn create_bucket(bucket: &str) {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL");
    create_bucket_at(&endpoint, bucket);
}

/// Creates a bucket on the S3 server at `endpoint`; one that exists already is fine.
pub fn create_bucket_at(endpoint: &str, bucket: &str) {
    let py = python().expect("python");
    let code = "import sys, boto3\n\
c = boto3.client('s3', endpoint_url=sys.argv[1], aws_access_key_id='test', aws_secret_access_key='test', region_name='us-east-1')\n\
try:\n    c.create_bucket(Bucket=sys.argv[2])\n\
except c.exceptions.BucketAlreadyOwnedByYou:\n    pass\n";
    let o = Command::new(py)
        .args(["-c", code, endpoint, bucket])
        .output()
        .expect("python");
    assert!(
        o.status.success(),
        "create bucket {bucket} at {endpoint}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn all_reports() -> String {
    format!(
        "[{}]",
        REPORTS.iter().map(|r| r.id).collect::<Vec<_>>().join(", ")
    )
}

fn run(dir: &Path, out: &str) -> Value {
    let p = write(
        dir,
        "p.yaml",
        &pipeline(&all_reports(), "  start: 2025-10-20", out, ""),
    );
    let o = wxcube(
        &[
            "run",
            p.to_str().expect("utf8"),
            "--today",
            "2026-01-10",
            "--json",
        ],
        dir,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    serde_json::from_str(&stdout(&o)).expect("json")
}

fn spec(dir: &Path, report: &Value, root: &Path, s3: Option<Value>) -> PathBuf {
    let mut reports = serde_json::Map::new();
    for r in REPORTS {
        let rows: u64 = report["tasks"]
            .as_array()
            .expect("tasks")
            .iter()
            .filter(|t| t["report"] == r.id)
            .map(|t| t["rows"].as_u64().unwrap_or(0))
            .sum();
        let o = wxcube(&["schema", r.id, "--json"], dir);
        let schema: Value = serde_json::from_str(&stdout(&o)).expect("schema json");
        reports.insert(
            r.id.to_string(),
            json!({"rows": rows, "partition": "month", "columns": schema["columns"]}),
        );
    }
    let mut s = json!({"root": root.to_str().expect("utf8"), "reports": reports});
    if let Some(s3) = s3 {
        s["s3"] = s3;
    }
    let path = dir.join("spec.json");
    std::fs::write(&path, serde_json::to_vec(&s).expect("json")).expect("write spec");
    path
}

/// Runs the readers; returns the `reader:place` pairs that read every table.
fn check(spec: &Path) -> String {
    let py = python().expect("python");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/check_tables.py");
    let o = Command::new(py)
        .arg(script)
        .arg(spec)
        .output()
        .expect("python");
    assert!(
        o.status.success(),
        "readers disagree with wxcube:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("read: "))
        .unwrap_or_default()
        .to_string()
}

/// A fresh prefix per test run: the loopback server may outlive one run.
pub fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{tag}-{}-{nanos}", std::process::id())
}

#[test]
fn duckdb_polars_pyarrow_read_every_table() {
    let Some(_) = python() else {
        eprintln!("SKIPPED: WXCUBE_TEST_PYTHON is not set (make test sets it)");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let report = run(dir.path(), "./out");
    let root = dir.path().join("out");
    let s3_uri = format!("s3://interop/{}", unique("tables"));
    let s3 = if s3_enabled() {
        create_bucket("interop");
        let s3report = run(dir.path(), &s3_uri);
        assert_eq!(
            s3report["rows"], report["rows"],
            "S3 run writes the same rows as the local run"
        );
        Some(json!({
            "uri": s3_uri,
            "endpoint": std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL"),
            "key": std::env::var("AWS_ACCESS_KEY_ID").expect("key"),
            "secret": std::env::var("AWS_SECRET_ACCESS_KEY").expect("secret"),
            "region": std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()),
        }))
    } else {
        None
    };
    let with_s3 = s3.is_some();
    let read = check(&spec(dir.path(), &report, &root, s3));
    let mut want = vec!["duckdb:disk", "polars:disk", "pyarrow:disk"];
    if with_s3 {
        want.extend(["polars:s3", "pyarrow:s3"]);
    } else {
        eprintln!("SKIPPED: reading from S3 (WXCUBE_TEST_S3 is not set)");
    }
    want.sort_unstable();
    assert_eq!(read, want.join(" "), "every reader read every table");
}
