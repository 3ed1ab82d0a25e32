//! Shared helpers: run the binary, write pipelines, read tables back as JSON rows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Date32Type, Float64Type, Int32Type, Int64Type};
use serde_json::{json, Value};
use wxcube::catalog::{Kind, Report, Shape, Src};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_wxcube"))
}

pub fn wxcube(args: &[&str], dir: &Path) -> Output {
    Command::new(bin())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run wxcube")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub struct Acct {
    pub name: &'static str,
    pub app_id: &'static str,
}

pub const ACCOUNTS: [Acct; 2] = [
    Acct {
        name: "brand_cn",
        app_id: "wxtest0000000001",
    },
    Acct {
        name: "shop_sh",
        app_id: "wxtest0000000002",
    },
];

/// A pipeline against the embedded simulator.
pub fn pipeline(reports: &str, dates: &str, out: &str, extra: &str) -> String {
    let mut accts = String::new();
    for a in &ACCOUNTS {
        accts.push_str(&format!(
            "  - name: {}\n    app_id: {}\n    app_secret: test-secret-{}\n",
            a.name, a.app_id, a.name
        ));
    }
    format!(
        "version: 1\nname: it\napi:\n  simulator: {{ seed: 7 }}\naccounts:\n{accts}reports: {reports}\ndates:\n{dates}\noutput:\n  uri: {out}\n  partition: month\nlimits:\n  requests_per_second: 200\n  max_in_flight: 8\n  global_requests_per_second: 1000\n{extra}"
    )
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write file");
    p
}

/// Every row of a report's table for one account, as JSON objects keyed by column name.
pub fn read_rows(root: &Path, report: &str, account: &str) -> Vec<Value> {
    let dir = root.join(report).join(format!("account={account}"));
    let mut files = Vec::new();
    collect(&dir, &mut files);
    let mut rows = Vec::new();
    for f in files {
        let bytes = bytes::Bytes::from(std::fs::read(&f).expect("read parquet"));
        for b in wxcube::load::decode_file(bytes).expect("decode parquet") {
            rows.extend(batch_rows(&b));
        }
    }
    rows
}

pub fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|x| x == "parquet") {
            out.push(p);
        }
    }
    out.sort();
}

pub fn batch_rows(b: &RecordBatch) -> Vec<Value> {
    (0..b.num_rows())
        .map(|i| {
            let mut m = serde_json::Map::new();
            for (f, c) in b.schema().fields().iter().zip(b.columns()) {
                m.insert(f.name().clone(), cell(c, i));
            }
            Value::Object(m)
        })
        .collect()
}

fn cell(c: &ArrayRef, i: usize) -> Value {
    if c.is_null(i) {
        return Value::Null;
    }
    match c.data_type() {
        DataType::Date32 => {
            json!(
                wxcube::catalog::from_date32(c.as_primitive::<Date32Type>().value(i))
                    .format("%Y-%m-%d")
                    .to_string()
            )
        }
        DataType::Int64 => json!(c.as_primitive::<Int64Type>().value(i)),
        DataType::Int32 => json!(c.as_primitive::<Int32Type>().value(i)),
        DataType::Float64 => json!(c.as_primitive::<Float64Type>().value(i)),
        DataType::Boolean => json!(c.as_boolean().value(i)),
        DataType::Utf8 => json!(c.as_string::<i32>().value(i)),
        DataType::Dictionary(_, _) => {
            let d = c.as_dictionary::<Int32Type>();
            let k = d.keys().value(i) as usize;
            json!(d.values().as_string::<i32>().value(k))
        }
        DataType::List(_) => {
            let l = c.as_list::<i32>();
            let v = l.value(i);
            let s = v.as_struct();
            let rows: Vec<Value> = (0..s.len())
                .map(|j| {
                    let mut m = serde_json::Map::new();
                    for (f, col) in s.fields().iter().zip(s.columns()) {
                        m.insert(f.name().clone(), cell(col, j));
                    }
                    Value::Object(m)
                })
                .collect();
            Value::Array(rows)
        }
        other => panic!("unexpected type {other}"),
    }
}

/// The rows a response should become, computed from the JSON independently of `transform`:
/// every field by its API name, `detail` fields lifted, arrays flattened, labels looked up.
pub fn expected_rows(report: &Report, resp: &Value) -> Vec<Value> {
    let empty = vec![];
    let list = resp.get("list").and_then(Value::as_array).unwrap_or(&empty);
    let mut out = Vec::new();
    for item in list {
        let nested: Vec<Option<&Value>> = match report.shape {
            Shape::List => vec![None],
            Shape::Flatten(k) => item
                .get(k)
                .and_then(Value::as_array)
                .map(|a| a.iter().map(Some).collect())
                .unwrap_or_default(),
        };
        for n in nested {
            let mut m = serde_json::Map::new();
            for c in report.columns {
                let v = match c.src {
                    Src::Item(f) => item.get(f),
                    Src::Detail(f) => item.get("detail").and_then(|d| d.get(f)),
                    Src::Nested(f) => n.and_then(|n| n.get(f)),
                    Src::Response(f) => resp.get(f),
                }
                .cloned()
                .unwrap_or(Value::Null);
                let v = match c.kind {
                    Kind::Label(l) => match &v {
                        Value::String(s) => json!(l.str(s)),
                        Value::Null => Value::Null,
                        other => json!(l.int(other.as_i64().expect("integer code"))),
                    },
                    Kind::Hour => json!(v.as_i64().expect("ref_hour") / 100),
                    Kind::Float64 => json!(v.as_f64().expect("number")),
                    Kind::Int64 | Kind::Int32 => match &v {
                        Value::String(s) => json!(s.parse::<i64>().expect("numeric string")),
                        _ => v,
                    },
                    Kind::ReadSources => Value::Array(
                        v.as_array()
                            .cloned()
                            .unwrap_or_default()
                            .into_iter()
                            .map(|e| {
                                let sd = e["scene_desc"].as_str().expect("scene_desc").to_string();
                                json!({"user_count": e["user_count"], "scene_desc": sd,
                                       "scene_desc_label": wxcube::catalog::SCENE_DESC.str(&sd)})
                            })
                            .collect(),
                    ),
                    Kind::JumpPositions => Value::Array(
                        v.as_array()
                            .cloned()
                            .unwrap_or_default()
                            .into_iter()
                            .map(|e| json!({"position": e["position"], "rate": e["rate"].as_f64()}))
                            .collect(),
                    ),
                    Kind::Bool if v.is_null() => json!(false),
                    _ => v,
                };
                m.insert(c.name.to_string(), v);
            }
            out.push(Value::Object(m));
        }
    }
    out
}

/// Rows as a sorted multiset of canonical strings, for order-free comparison.
pub fn canon(rows: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = rows
        .iter()
        .map(|r| serde_json::to_string(&sorted(r)).expect("json"))
        .collect();
    v.sort();
    v
}

fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let b: BTreeMap<_, _> = m.iter().map(|(k, v)| (k.clone(), sorted(v))).collect();
            json!(b)
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        Value::Number(n) if n.is_f64() => json!(n.as_f64()),
        other => other.clone(),
    }
}

/// Duplicate natural keys in a table's rows.
pub fn duplicate_keys(report: &Report, rows: &[Value]) -> usize {
    let mut keys: Vec<String> = rows
        .iter()
        .map(|r| {
            report
                .key
                .iter()
                .map(|k| r[*k].to_string())
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    n - keys.len()
}

/// A `wxcube simulate` process on a free loopback port, killed on drop.
pub struct Sim {
    child: std::process::Child,
    pub port: u16,
}

impl Sim {
    pub fn start(config: &str, today: &str) -> Sim {
        use std::io::BufRead;
        let mut child = Command::new(bin())
            .args([
                "simulate", "--port", "0", "--config", config, "--today", today,
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start simulator");
        let out = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufReader::new(out)
            .read_line(&mut line)
            .expect("simulator address");
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        Sim { child, port }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn get(&self, path: &str) -> Value {
        self.request(
            &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
            path,
        )
    }

    /// Sends a raw HTTP/1.1 request; returns the JSON body of the answer.
    fn request(&self, raw: &str, path: &str) -> Value {
        use std::io::{Read, Write};
        let mut s =
            std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("connect simulator");
        s.write_all(raw.as_bytes()).expect("request");
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).expect("response");
        let text = String::from_utf8_lossy(&buf);
        let (head, body) = text.split_once("\r\n\r\n").expect("http response");
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_string()
        };
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
    }

    /// Data calls per app_id (all reports), as the simulator counted them.
    pub fn data_calls(&self) -> u64 {
        let s = self.get("/_sim/stats");
        s["data_calls"]
            .as_object()
            .map(|m| {
                m.values()
                    .flat_map(|r| r.as_object().into_iter().flat_map(|o| o.values()))
                    .filter_map(Value::as_u64)
                    .sum()
            })
            .unwrap_or(0)
    }

    pub fn tokens(&self) -> Vec<String> {
        self.get("/_sim/tokens")["tokens"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&tail[..n.min(tail.len())]);
        rest = tail.get(n + 2..).unwrap_or("");
    }
    out
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A pipeline against an out-of-process simulator.
pub fn pipeline_at(base_url: &str, reports: &str, dates: &str, out: &str, limits: &str) -> String {
    let mut accts = String::new();
    for a in &ACCOUNTS {
        accts.push_str(&format!(
            "  - name: {}\n    app_id: {}\n    app_secret: test-secret-{}\n",
            a.name, a.app_id, a.name
        ));
    }
    format!(
        "version: 1\nname: it\napi:\n  base_url: {base_url}\naccounts:\n{accts}reports: {reports}\ndates:\n{dates}\noutput:\n  uri: {out}\n  partition: month\nlimits:\n{limits}"
    )
}

pub const FAST_LIMITS: &str =
    "  requests_per_second: 200\n  max_in_flight: 8\n  global_requests_per_second: 1000\n";

/// All rows of every report in `reports` for every test account, canonicalised.
pub fn snapshot(root: &Path, reports: &[&str]) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for r in reports {
        for a in &ACCOUNTS {
            out.push((
                format!("{r}/{}", a.name),
                canon(&read_rows(root, r, a.name)),
            ));
        }
    }
    out
}

/// Runs wxcube with extra environment.
/// `env`: variables to set; a pair whose name starts with `--` is a flag instead (the
/// hidden timing flags, e.g. `--retry-base-ms`), added after `args`.
pub fn wxcube_env(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(bin());
    c.args(args).current_dir(dir);
    for (k, v) in env {
        if k.starts_with("--") {
            c.args([k, v]);
        } else {
            c.env(k, v);
        }
    }
    c.output().expect("run wxcube")
}

/// Compares two snapshots, reporting only the first difference (tables can be large).
pub fn assert_same(got: &[(String, Vec<String>)], want: &[(String, Vec<String>)], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: table count");
    for ((gk, g), (wk, w)) in got.iter().zip(want) {
        assert_eq!(gk, wk, "{what}");
        if g != w {
            let first = g.iter().zip(w).find(|(a, b)| a != b);
            panic!(
                "{what}: {gk}: {} rows vs {} expected; first difference: {first:?}",
                g.len(),
                w.len()
            );
        }
    }
}

/// A snapshot without the named columns.
pub fn without(snap: Vec<(String, Vec<String>)>, cols: &[&str]) -> Vec<(String, Vec<String>)> {
    snap.into_iter()
        .map(|(k, rows)| {
            let mut rows: Vec<String> = rows
                .into_iter()
                .map(|r| {
                    let mut v: Value = serde_json::from_str(&r).expect("json");
                    if let Some(o) = v.as_object_mut() {
                        for c in cols {
                            o.remove(*c);
                        }
                    }
                    v.to_string()
                })
                .collect();
            rows.sort();
            (k, rows)
        })
        .collect()
}

impl Sim {
    /// POSTs a JSON body; returns the JSON answer.
    pub fn post(&self, path: &str, body: &Value) -> Value {
        let text = body.to_string();
        self.request(
            &format!(
                "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            ),
            path,
        )
    }

    /// Requests per path, from the call log.
    pub fn calls_to(&self, path: &str) -> usize {
        self.get("/_sim/stats")["calls"]
            .as_array()
            .map_or(0, |a| a.iter().filter(|c| c["path"] == path).count())
    }
}

/// The rows the simulator (`{"seed":7}`) answers for every window of a plan (`plan --json`),
/// per `report/account`: what running that plan leaves in a table that was empty. Computed
/// per window, as the run asks (a response-level `is_delay` depends on the window); rows
/// replaced by key (settlements, returned by every window they overlap) count once.
pub fn planned_rows(plan: &Value) -> BTreeMap<String, Vec<Value>> {
    let cfg: wxcube::sim::SimConfig = serde_json::from_str(r#"{"seed":7}"#).expect("sim config");
    let today = wxcube::dates::parse(plan["today"].as_str().expect("today")).expect("date");
    let date = |v: &Value| wxcube::dates::parse(v.as_str().expect("date")).expect("date");
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for t in plan["tasks"].as_array().expect("tasks") {
        let r = wxcube::catalog::find(t["report"].as_str().expect("report")).expect("report");
        let name = t["account_name"].as_str().expect("account");
        let app_id = ACCOUNTS
            .iter()
            .find(|a| a.name == name)
            .expect("test account")
            .app_id;
        let rows = out.entry(format!("{}/{name}", r.id)).or_default();
        for w in t["windows"].as_array().expect("windows") {
            // Through JSON text, as the client sees it (floats parse to the nearest double).
            let text =
                wxcube::sim::respond(&cfg, today, r, app_id, date(&w["begin"]), date(&w["end"]))
                    .to_string();
            let mut body: Value = serde_json::from_str(&text).expect("json");
            if let Some(list) = body.get("settlement_list").cloned() {
                body["list"] = list;
            }
            rows.extend(expected_rows(r, &body));
        }
        if r.replace() == wxcube::catalog::Replace::ByKey {
            let mut seen = std::collections::HashSet::new();
            rows.retain(|row| {
                seen.insert(
                    r.key
                        .iter()
                        .map(|k| row[*k].to_string())
                        .collect::<Vec<_>>(),
                )
            });
        }
    }
    out
}
