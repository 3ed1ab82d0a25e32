//! Files written by other releases or rewritten by other tools (pyarrow, DuckDB, Polars)
//! merge; a file that cannot merge is moved aside, stops only its own table and account, and
//! its dates are fetched again by the next run. Local disk, and S3 where `make test` runs it.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use bytes::Bytes;
use chrono::NaiveDate;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;
use wxcube::catalog;
use wxcube::sim::{self, SimConfig};
use wxcube::store::Store;

use crate::harness::*;
use crate::interop::{create_bucket, python, s3_enabled, unique};

const TODAY: &str = "2026-01-10";

fn date(s: &str) -> NaiveDate {
    wxcube::dates::parse(s).expect("date")
}

/// The API's rows for `start..` the latest ready day (reports without `is_delay`: one
/// answer for the whole range equals the answers of any windows covering it).
fn expected(report: &str, app_id: &str, start: &str) -> Vec<String> {
    let r = catalog::find(report).expect("report");
    assert!(
        !r.has_is_delay(),
        "{report}: the whole-range answer differs per window"
    );
    let cfg: SimConfig = serde_json::from_str(r#"{"seed":7}"#).expect("sim config");
    let today = date(TODAY);
    let ready = today.pred_opt().expect("date");
    let text = sim::respond(&cfg, today, r, app_id, date(start), ready).to_string();
    let mut body: Value = serde_json::from_str(&text).expect("json");
    if let Some(list) = body.get("settlement_list").cloned() {
        body["list"] = list;
    }
    canon(&expected_rows(r, &body))
}

/// Every row of a table for one account, through the store (disk or S3).
async fn rows(store: &Store, report: &str, account: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let prefix = format!("{report}/account={account}/");
    for f in store.list(&prefix).await.expect("list") {
        let (bytes, _) = store.read(&f).await.expect("read").expect("listed");
        for b in wxcube::load::decode_file(bytes).expect("decode") {
            out.extend(batch_rows(&b));
        }
    }
    out
}

/// Each table and account equals the API's answer from `start`, with no key twice.
async fn assert_tables(store: &Store, reports: &[&str], start: &str, what: &str) {
    for id in reports {
        let r = catalog::find(id).expect("report");
        for a in &ACCOUNTS {
            let got = rows(store, id, a.name).await;
            assert_eq!(duplicate_keys(r, &got), 0, "{what}: {id}/{}", a.name);
            let want = expected(id, a.app_id, start);
            assert!(!want.is_empty(), "{id}");
            assert_same(
                &[(format!("{id}/{}", a.name), canon(&got))],
                &[(format!("{id}/{}", a.name), want)],
                what,
            );
        }
    }
}

fn part(report: &str, account: &str, month: &str) -> String {
    format!("{report}/account={account}/month={month}/data.parquet")
}

fn run(dir: &Path, yaml: &str, args: &[&str]) -> (Option<i32>, Value, String) {
    let p = write(dir, "p.yaml", yaml);
    let mut a = vec!["run", p.to_str().expect("utf8"), "--today", TODAY, "--json"];
    a.extend_from_slice(args);
    let o = wxcube(&a, dir);
    let v = serde_json::from_str(&stdout(&o)).unwrap_or(Value::Null);
    (o.status.code(), v, stderr(&o))
}

/// The file carries the table's current schema metadata and field descriptions, and was
/// written by wxcube.
fn assert_current(bytes: Bytes, report: &str, what: &str) {
    let r = catalog::find(report).expect("report");
    let b = ParquetRecordBatchReaderBuilder::try_new(bytes).expect("parquet");
    let want = wxcube::catalog::schema(r);
    assert_eq!(b.schema().metadata(), want.metadata(), "{what}");
    for (g, w) in b.schema().fields().iter().zip(want.fields()) {
        assert_eq!(g.metadata(), w.metadata(), "{what}: {}", g.name());
    }
    let created = b
        .metadata()
        .file_metadata()
        .created_by()
        .unwrap_or_default();
    assert!(
        created.starts_with("wxcube"),
        "{what}: written by {created}"
    );
}

/// Rewrites one column of a Parquet file: `f` gives its new field and values.
fn rewrite(bytes: Bytes, f: impl Fn(&Field, &ArrayRef) -> Option<(Field, ArrayRef)>) -> Bytes {
    let batches = wxcube::load::decode_file(bytes).expect("decode");
    let schema = batches[0].schema();
    let new: Vec<(Field, ArrayRef)> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, fl)| {
            let col = arrow::compute::concat(
                &batches
                    .iter()
                    .map(|b| b.column(i).as_ref())
                    .collect::<Vec<_>>(),
            )
            .expect("concat");
            f(fl, &col).unwrap_or_else(|| (fl.as_ref().clone(), col))
        })
        .collect();
    let (fields, cols): (Vec<Field>, Vec<ArrayRef>) = new.into_iter().unzip();
    let schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    let batch = RecordBatch::try_new(Arc::clone(&schema), cols).expect("batch");
    let mut buf = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, schema, None).expect("writer");
    w.write(&batch).expect("write");
    w.close().expect("close");
    Bytes::from(buf)
}

#[test]
fn files_rewritten_by_pyarrow_duckdb_and_polars_merge_and_get_current_metadata() {
    let Some(py) = python() else {
        eprintln!("SKIPPED: WXCUBE_TEST_PYTHON is not set (make test sets it)");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let reports = ["upstream_msg", "ad_settlement"];
    let yaml = |start: &str| {
        pipeline(
            "[upstream_msg, ad_settlement]",
            &format!("  start: {start}"),
            "./out",
            "",
        )
    };
    let (code, _, err) = run(dir.path(), &yaml("2025-11-01"), &[]);
    assert_eq!(code, Some(0), "{err}");
    let root = dir.path().join("out");
    let rewrites = [
        ("pyarrow", part("upstream_msg", "brand_cn", "2025-12")),
        ("duckdb", part("upstream_msg", "shop_sh", "2025-12")),
        ("polars", part("ad_settlement", "brand_cn", "2025-12")),
        ("duckdb", part("ad_settlement", "shop_sh", "2025-12")),
    ];
    // The tools as a user runs them on one file (DuckDB reads the path's Hive keys into
    // columns; pyarrow drops our descriptions and compresses with snappy).
    let code = r#"import os, sys
import duckdb, polars as pl, pyarrow as pa, pyarrow.parquet as pq
tool, f, tmp = sys.argv[1:4]
if tool == "pyarrow":
    t = pq.read_table(f)
    s = pa.schema([pa.field(x.name, x.type, x.nullable, metadata={"description": "another release"}) for x in t.schema], metadata={"tool": "pyarrow"})
    pq.write_table(t.cast(s), tmp, compression="snappy")
elif tool == "duckdb":
    duckdb.sql(f"COPY (SELECT * FROM read_parquet('{f}')) TO '{tmp}' (FORMAT parquet)")
else:
    pl.read_parquet(f).write_parquet(tmp)
os.replace(tmp, f)
"#;
    for (tool, rel) in &rewrites {
        let before = std::fs::read(root.join(rel)).expect("partition");
        let o = std::process::Command::new(&py)
            .args(["-c", code, tool])
            .arg(root.join(rel))
            .arg(dir.path().join("rewrite.tmp"))
            .output()
            .expect("python");
        assert!(
            o.status.success(),
            "{tool}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let after = std::fs::read(root.join(rel)).expect("partition");
        assert_ne!(before, after, "{tool} rewrote {rel}");
        let b = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(after)).expect("parquet");
        assert!(
            b.schema().fields()
                != wxcube::catalog::schema(
                    catalog::find(rel.split('/').next().expect("report")).expect("report")
                )
                .fields(),
            "{tool}: {rel} has another schema now"
        );
    }
    // Re-fetch the second half of December: every rewritten partition merges.
    let (code, report, err) = run(dir.path(), &yaml("2025-12-15"), &["--full-refresh"]);
    assert_eq!(code, Some(0), "{err}\n{report}");
    let store = Store::open(root.to_str().expect("utf8")).expect("store");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(assert_tables(
        &store,
        &reports,
        "2025-11-01",
        "after merging the rewritten files",
    ));
    for (tool, rel) in &rewrites {
        let bytes = Bytes::from(std::fs::read(root.join(rel)).expect("partition"));
        assert_current(
            bytes,
            rel.split('/').next().expect("report"),
            &format!("{tool} {rel}"),
        );
    }
    assert!(
        !root.join("_wxcube/quarantine").exists(),
        "nothing quarantined"
    );
}

#[test]
fn a_file_from_a_release_with_other_descriptions_merges() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = |start: &str| pipeline("[user_summary]", &format!("  start: {start}"), "./out", "");
    let (code, _, err) = run(dir.path(), &yaml("2025-12-01"), &[]);
    assert_eq!(code, Some(0), "{err}");
    let path = dir
        .path()
        .join("out")
        .join(part("user_summary", "brand_cn", "2025-12"));
    // An older release described new_user in other words.
    let old = rewrite(Bytes::from(std::fs::read(&path).expect("file")), |f, c| {
        (f.name() == "new_user").then(|| {
            let mut m = f.metadata().clone();
            m.insert(
                "description".to_string(),
                "users who followed (older words)".to_string(),
            );
            (f.clone().with_metadata(m), Arc::clone(c))
        })
    });
    std::fs::write(&path, &old).expect("write");
    let (code, report, err) = run(dir.path(), &yaml("2025-12-28"), &["--full-refresh"]);
    assert_eq!(code, Some(0), "{err}\n{report}");
    let store = Store::open(dir.path().join("out").to_str().expect("utf8")).expect("store");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(assert_tables(
        &store,
        &["user_summary"],
        "2025-12-01",
        "after the merge",
    ));
    assert_current(
        Bytes::from(std::fs::read(&path).expect("file")),
        "user_summary",
        "merged file",
    );
}

/// A truncated file and a file with a retyped column: exit 3 naming each file, each moved
/// under `_wxcube/quarantine/` (not deleted), everything else loaded in full; the next run
/// fetches the quarantined dates again and the tables equal the API's, nothing doubled.
async fn quarantine_and_refetch(dir: &Path, uri: &str) {
    let store = Store::open(uri).expect("store");
    let reports = ["upstream_msg", "user_summary"];
    let yaml = |start: &str| {
        pipeline(
            "[upstream_msg, user_summary]",
            &format!("  start: {start}"),
            uri,
            "",
        )
    };
    let (code, _, err) = run(dir, &yaml("2025-11-01"), &[]);
    assert_eq!(code, Some(0), "{err}");
    let truncated = part("upstream_msg", "brand_cn", "2025-12");
    let retyped = part("user_summary", "shop_sh", "2025-11");
    let (bytes, _) = store.read(&truncated).await.expect("read").expect("exists");
    let cut = bytes.slice(..bytes.len() / 2);
    store
        .overwrite(&truncated, cut.clone())
        .await
        .expect("truncate");
    let (bytes, _) = store.read(&retyped).await.expect("read").expect("exists");
    let float = rewrite(bytes, |f, c| {
        (f.name() == "new_user").then(|| {
            let c = arrow::compute::cast(c, &DataType::Float64).expect("cast");
            (Field::new("new_user", DataType::Float64, false), c)
        })
    });
    store
        .overwrite(&retyped, float.clone())
        .await
        .expect("retype");

    // Touches both partitions: exit 3, the run goes on for everything else.
    let (code, report, err) = run(dir, &yaml("2025-11-25"), &["--full-refresh"]);
    assert_eq!(code, Some(3), "{err}\n{report}");
    let text = format!("{err}\n{report}");
    for (rel, why) in [
        (&truncated, "not a readable Parquet file"),
        (&retyped, "column new_user is Float64, the table has Int64"),
    ] {
        let name = store.describe(rel);
        assert!(
            text.contains(&format!("{name} cannot merge into table")),
            "names {name}: {text}"
        );
        assert!(text.contains(why), "says why ({why}): {text}");
        assert!(
            text.contains("the next run fetches them again, whatever its range"),
            "says what to do: {text}"
        );
        assert!(
            store.read(rel).await.expect("read").is_none(),
            "{rel} left the table"
        );
    }
    assert_eq!(report["exit_code"], 3);
    let moved: Vec<String> = store.list("_wxcube/quarantine").await.expect("list");
    assert_eq!(moved.len(), 2, "{moved:?}");
    for (rel, want) in [(&truncated, &cut), (&retyped, &float)] {
        let m = moved
            .iter()
            .find(|m| m.ends_with(rel.as_str()))
            .unwrap_or_else(|| panic!("{rel} in {moved:?}"));
        let (b, _) = store.read(m).await.expect("read").expect("moved");
        assert_eq!(&b, want, "{m} holds the file as it was");
    }
    // The other account of each table loaded in full, from 2025-11-01 (first run) on.
    let untouched = [
        ("upstream_msg", &ACCOUNTS[1]),
        ("user_summary", &ACCOUNTS[0]),
    ];
    for (id, a) in untouched {
        let got = canon(&rows(&store, id, a.name).await);
        assert_eq!(
            got,
            expected(id, a.app_id, "2025-11-01"),
            "{id}/{} in full",
            a.name
        );
    }

    // The next run (no --full-refresh), even one whose range is the last days only, plans
    // the quarantined months and only them.
    let p = write(dir, "p.yaml", &yaml("2026-01-07"));
    let plan = wxcube(
        &[
            "plan",
            p.to_str().expect("utf8"),
            "--today",
            TODAY,
            "--json",
        ],
        dir,
    );
    let plan: Value = serde_json::from_str(&stdout(&plan)).expect("plan json");
    let covered = |report: &str, account: &str, d: &str| {
        plan["tasks"].as_array().expect("tasks").iter().any(|t| {
            t["report"] == report
                && t["account_name"] == account
                && t["windows"]
                    .as_array()
                    .expect("windows")
                    .iter()
                    .any(|w| w["begin"].as_str() <= Some(d) && Some(d) <= w["end"].as_str())
        })
    };
    for d in ["2025-12-01", "2025-12-15", "2025-12-31"] {
        assert!(
            covered("upstream_msg", "brand_cn", d),
            "{d} fetched again: {plan}"
        );
        assert!(
            !covered("upstream_msg", "shop_sh", d),
            "{d} not fetched again"
        );
    }
    for d in ["2025-11-01", "2025-11-30"] {
        assert!(
            covered("user_summary", "shop_sh", d),
            "{d} fetched again: {plan}"
        );
        assert!(
            !covered("user_summary", "brand_cn", d),
            "{d} not fetched again"
        );
    }
    let (code, report, err) = run(dir, &yaml("2026-01-07"), &[]);
    assert_eq!(code, Some(0), "{err}\n{report}");
    assert_eq!(
        report["data_calls"], plan["calls"],
        "the calls planned, no more"
    );
    assert_tables(&store, &reports, "2025-11-01", "after the refetch").await;
    assert_eq!(
        store.list("_wxcube/quarantine").await.expect("list").len(),
        2,
        "kept"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_and_retyped_files_are_quarantined_and_refetched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    quarantine_and_refetch(dir.path(), out.to_str().expect("utf8")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_and_retyped_files_are_quarantined_and_refetched_on_s3() {
    if !s3_enabled() {
        eprintln!("SKIPPED: WXCUBE_TEST_S3 is not set (make test sets it)");
        return;
    }
    create_bucket("foreign");
    let dir = tempfile::tempdir().expect("tempdir");
    quarantine_and_refetch(
        dir.path(),
        &format!("s3://foreign/{}", unique("quarantine")),
    )
    .await;
}
