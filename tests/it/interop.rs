//! DuckDB, Polars and pyarrow read every table (publisher reports too) through their Hive
//! partitioning, from disk and (Polars, pyarrow) from S3, and every column of every row
//! equals the simulator's answer, the partition keys beside it. Needs the venv `make test`
//! creates (WXCUBE_TEST_PYTHON) and, for S3, the moto server it starts (WXCUBE_TEST_S3,
//! AWS_* variables).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use wxcube::catalog;

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

const START: &str = "2025-10-20";
const TODAY: &str = "2026-01-10";

/// Every report, the publisher ones (not in `reports: all`) included.
fn all_reports() -> String {
    format!(
        "[{}]",
        catalog::all().map(|r| r.id).collect::<Vec<_>>().join(", ")
    )
}

/// The rows the API answers for the plan's windows, with the Hive keys a reader adds
/// (`account`, `month`), computed from the simulator independently of the pipeline.
fn expected_tables(plan: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for (task, rows) in planned_rows(plan) {
        let (report, account) = task.split_once('/').expect("report/account");
        let table = out
            .entry(report.to_string())
            .or_insert_with(|| Value::Array(Vec::new()));
        for mut row in rows {
            let day = row["ref_date"].as_str().expect("ref_date").to_string();
            let o = row.as_object_mut().expect("row");
            // A column named like a key keeps the API's value: a reader that replaced it
            // with the folder's value then disagrees.
            o.entry("account").or_insert(json!(account));
            o.entry("month").or_insert(json!(day[..7]));
            table.as_array_mut().expect("rows").push(row);
        }
    }
    for r in catalog::all() {
        assert!(
            out.get(r.id)
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty()),
            "{}: the simulator returned no rows",
            r.id
        );
    }
    Value::Object(out)
}

/// Runs every report into `out`; returns the run report and the plan it ran.
fn run(dir: &Path, out: &str) -> (Value, Value) {
    let p = write(
        dir,
        "p.yaml",
        &pipeline(&all_reports(), &format!("  start: {START}"), out, ""),
    );
    let ps = p.to_str().expect("utf8");
    let plan = wxcube(&["plan", ps, "--today", TODAY, "--json"], dir);
    let plan: Value = serde_json::from_str(&stdout(&plan)).expect("plan json");
    let o = wxcube(&["run", ps, "--today", TODAY, "--json"], dir);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    (serde_json::from_str(&stdout(&o)).expect("json"), plan)
}

fn spec(dir: &Path, (report, plan): &(Value, Value), root: &Path, s3: Option<Value>) -> PathBuf {
    let mut reports = serde_json::Map::new();
    for r in catalog::all() {
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
    let expected = dir.join("expected.json");
    std::fs::write(
        &expected,
        serde_json::to_vec(&expected_tables(plan)).expect("json"),
    )
    .expect("write expected rows");
    let mut s = json!({"root": root.to_str().expect("utf8"), "reports": reports,
                       "expected": expected.to_str().expect("utf8")});
    if let Some(s3) = s3 {
        s["s3"] = s3;
    }
    let path = dir.join("spec.json");
    std::fs::write(&path, serde_json::to_vec(&s).expect("json")).expect("write spec");
    path
}

/// Runs the readers; returns the `reader:place` pairs that read every table, and those
/// whose rows equalled the API's in every table.
fn check(spec: &Path) -> (String, String) {
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
    let out = String::from_utf8_lossy(&o.stdout);
    let line = |tag: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(tag))
            .unwrap_or_default()
            .to_string()
    };
    (line("read: "), line("compared: "))
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
    let ran = run(dir.path(), "./out");
    let root = dir.path().join("out");
    let s3_uri = format!("s3://interop/{}", unique("tables"));
    let s3 = if s3_enabled() {
        create_bucket("interop");
        let (s3report, _) = run(dir.path(), &s3_uri);
        assert_eq!(
            s3report["rows"], ran.0["rows"],
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
    let (read, compared) = check(&spec(dir.path(), &ran, &root, s3));
    let mut want = vec!["duckdb:disk", "polars:disk", "pyarrow:disk"];
    if with_s3 {
        want.extend(["polars:s3", "pyarrow:s3"]);
    } else {
        eprintln!("SKIPPED: reading from S3 (WXCUBE_TEST_S3 is not set)");
    }
    want.sort_unstable();
    assert_eq!(read, want.join(" "), "every reader read every table");
    assert_eq!(
        compared,
        want.join(" "),
        "every reader's rows equal the API's, in every table"
    );
}
