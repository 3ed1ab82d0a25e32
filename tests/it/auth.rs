//! Every token source against the simulator, including refresh when WeChat rejects a token,
//! and a 500-account pipeline read from a CSV file.

use serde_json::json;

use crate::harness::*;

const TODAY: &str = "2026-01-20";
const FAST: [(&str, &str); 2] = [("--retry-base-ms", "20"), ("--minute-ms", "300")];
const REPORTS: &[&str] = &["user_summary", "upstream_msg_hour", "interface_summary"];

fn list() -> String {
    format!("[{}]", REPORTS.join(", "))
}

/// A pipeline whose accounts carry `extra` YAML (indented under each account) and a
/// pipeline-level `top` block.
fn pipeline_with(base: &str, top: &str, extra: &[&str]) -> String {
    let mut accts = String::new();
    for (a, x) in ACCOUNTS.iter().zip(extra) {
        accts.push_str(&format!(
            "  - name: {}\n    app_id: {}\n{x}",
            a.name, a.app_id
        ));
    }
    format!(
        "version: 1\nname: auth\napi:\n  base_url: {base}\n{top}accounts:\n{accts}reports: {}\ndates:\n  days_back: 6\noutput:\n  uri: ./out\nlimits:\n{FAST_LIMITS}",
        list()
    )
}

fn reference() -> Vec<(String, Vec<String>)> {
    let sim = Sim::start(r#"{"seed":31}"#, TODAY);
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(
        dir.path(),
        "p.yaml",
        &pipeline_at(
            &sim.base_url(),
            &list(),
            "  days_back: 6",
            "./out",
            FAST_LIMITS,
        ),
    );
    let o = wxcube(
        &["run", p.to_str().expect("utf8"), "--today", TODAY],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    without(snapshot(&dir.path().join("out"), REPORTS), &[])
}

fn run_ok(sim: &Sim, yaml: &str, env: &[(&str, &str)]) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let _ = sim;
    let p = write(dir.path(), "p.yaml", yaml);
    let mut e = FAST.to_vec();
    e.extend_from_slice(env);
    let o = wxcube_env(
        &["run", p.to_str().expect("utf8"), "--today", TODAY],
        dir.path(),
        &e,
    );
    let text = format!("{}{}", stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(0), "{text}");
    (dir, text)
}

/// Faults that reject valid tokens, so every source must refresh.
const EXPIRING: &str = r#"{"seed":31,"faults":{"rate":0.25,"kinds":["token_expired"]}}"#;

#[test]
fn classic_tokens_work_refresh_and_warn() {
    let want = reference();
    let sim = Sim::start(EXPIRING, TODAY);
    let x = "    app_secret: s1\n    auth: { type: classic }\n";
    let (dir, text) = run_ok(&sim, &pipeline_with(&sim.base_url(), "", &[x, x]), &[]);
    assert!(
        text.contains("invalidates"),
        "classic warns about invalidating other tokens: {text}"
    );
    assert_same(
        &without(snapshot(&dir.path().join("out"), REPORTS), &[]),
        &want,
        "classic",
    );
    assert_eq!(sim.calls_to("/cgi-bin/stable_token"), 0);
    assert!(sim.calls_to("/cgi-bin/token") > 2, "refreshed after 42001");
}

#[test]
fn static_tokens_work_and_a_rejected_one_fails_its_account_only() {
    let want = reference();
    let sim = Sim::start(r#"{"seed":31}"#, TODAY);
    let tok = |app: &str| {
        sim.post(
            "/cgi-bin/stable_token",
            &json!({"grant_type":"client_credential","appid":app,"secret":"x"}),
        )["access_token"]
            .as_str()
            .expect("token")
            .to_string()
    };
    let (t1, t2) = (tok(ACCOUNTS[0].app_id), tok(ACCOUNTS[1].app_id));
    let x = "    auth: { type: static, access_token: \"${WX_TOKEN_1}\" }\n";
    let y = "    auth: { type: static, access_token: \"${WX_TOKEN_2}\" }\n";
    let (dir, _) = run_ok(
        &sim,
        &pipeline_with(&sim.base_url(), "", &[x, y]),
        &[("WX_TOKEN_1", &t1), ("WX_TOKEN_2", &t2)],
    );
    assert_same(
        &without(snapshot(&dir.path().join("out"), REPORTS), &[]),
        &want,
        "static",
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(
        dir.path(),
        "p.yaml",
        &pipeline_with(&sim.base_url(), "", &[x, y]),
    );
    let o = wxcube_env(
        &["run", p.to_str().expect("utf8"), "--today", TODAY],
        dir.path(),
        &[("WX_TOKEN_1", &t1), ("WX_TOKEN_2", "not-a-token")],
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let text = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        text.contains("shop_sh") && text.contains("static access_token"),
        "{text}"
    );
    assert!(!text.contains("not-a-token"), "the token is never echoed");
}

#[test]
fn command_tokens_are_rerun_when_rejected() {
    let want = reference();
    let sim = Sim::start(EXPIRING, TODAY);
    let dir = tempfile::tempdir().expect("tempdir");
    // A stand-in for a company's central token server client: fetches a stable token
    // for $WXCUBE_APP_ID and counts its runs.
    let script = write(
        dir.path(),
        "token.py",
        &format!(
            "import json, os, urllib.request\nopen(os.path.join(os.path.dirname(__file__), 'runs'), 'a').write('x')\nreq = urllib.request.Request('{}/cgi-bin/stable_token', data=json.dumps({{'grant_type': 'client_credential', 'appid': os.environ['WXCUBE_APP_ID'], 'secret': 's'}}).encode())\nprint(json.load(urllib.request.urlopen(req))['access_token'])\n",
            sim.base_url()
        ),
    );
    let top = format!(
        "auth:\n  type: command\n  command: python3 {}\n",
        script.display()
    );
    let p = write(
        dir.path(),
        "p.yaml",
        &pipeline_with(&sim.base_url(), &top, &["", ""]),
    );
    let o = wxcube_env(
        &["run", p.to_str().expect("utf8"), "--today", TODAY],
        dir.path(),
        &FAST,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_same(
        &without(snapshot(&dir.path().join("out"), REPORTS), &[]),
        &want,
        "command",
    );
    let runs = std::fs::read_to_string(dir.path().join("runs"))
        .unwrap_or_default()
        .len();
    assert!(
        runs > 2,
        "the command ran once per account and again after rejections: {runs}"
    );
}

#[test]
fn component_platform_tokens_for_authorised_accounts() {
    let want = reference();
    let sim = Sim::start(
        r#"{"seed":31,"components":{"wxcomponent0001":"platform-secret"},"revoked_refresh_tokens":["refreshtoken@@@revoked"],"faults":{"rate":0.25,"kinds":["token_expired"]}}"#,
        TODAY,
    );
    let top = "auth:\n  type: component\n  component_appid: wxcomponent0001\n  component_appsecret: platform-secret\n  component_verify_ticket: ticket@@@abc\n";
    let a = "    authorizer_refresh_token: refreshtoken@@@one\n";
    let b = "    authorizer_refresh_token: refreshtoken@@@two\n";
    let (dir, _) = run_ok(&sim, &pipeline_with(&sim.base_url(), top, &[a, b]), &[]);
    assert_same(
        &without(snapshot(&dir.path().join("out"), REPORTS), &[]),
        &want,
        "component",
    );
    assert_eq!(sim.calls_to("/cgi-bin/stable_token"), 0);
    assert!(sim.calls_to("/cgi-bin/component/api_component_token") >= 1);
    assert!(
        sim.calls_to("/cgi-bin/component/api_authorizer_token") > 2,
        "refreshed after 42001"
    );

    // A revoked authorizer: that account fails with what to do, the other goes on.
    let dir = tempfile::tempdir().expect("tempdir");
    let revoked = "    authorizer_refresh_token: refreshtoken@@@revoked\n";
    let p = write(
        dir.path(),
        "p.yaml",
        &pipeline_with(&sim.base_url(), top, &[a, revoked]),
    );
    let o = wxcube_env(
        &["run", p.to_str().expect("utf8"), "--today", TODAY],
        dir.path(),
        &FAST,
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let text = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        text.contains("61023") && text.contains("re-authorise"),
        "{text}"
    );
}

#[test]
fn five_hundred_accounts_from_a_csv_file_within_per_account_limits() {
    let sim = Sim::start(r#"{"seed":32}"#, TODAY);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut csv = String::from("name,app_id,app_secret\n");
    for i in 0..500 {
        csv.push_str(&format!("acct_{i:03},wxmany{i:010},secret-{i}\n"));
    }
    write(dir.path(), "accounts.csv", &csv);
    let yaml = format!(
        "version: 1\nname: many\napi:\n  base_url: {}\naccounts:\n  file: accounts.csv\nreports: [user_summary, upstream_msg_dist]\ndates:\n  days_back: 9\noutput:\n  uri: ./out\nlimits:\n  requests_per_second: 2\n  max_in_flight: 2\n  global_requests_per_second: 1000\n",
        sim.base_url()
    );
    let p = write(dir.path(), "p.yaml", &yaml);
    // Output to files: a pipe nobody reads while we poll would fill and stall the run.
    let out_file = std::fs::File::create(dir.path().join("stdout")).expect("file");
    let err_file = std::fs::File::create(dir.path().join("stderr")).expect("file");
    let mut child = std::process::Command::new(bin())
        .args(["run", p.to_str().expect("utf8"), "--today", TODAY, "--json"])
        .current_dir(dir.path())
        .stdout(out_file)
        .stderr(err_file)
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let mut peak_kb = 0u64;
    while child.try_wait().expect("wait").is_none() {
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            if let Some(v) = s.lines().find(|l| l.starts_with("VmHWM:")) {
                peak_kb = peak_kb.max(
                    v.split_whitespace()
                        .nth(1)
                        .and_then(|x| x.parse().ok())
                        .unwrap_or(0),
                );
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let status = child.wait().expect("wait");
    let err = std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default();
    assert_eq!(status.code(), Some(0), "{err}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("stdout")).expect("stdout"))
            .expect("json");
    // 9 days: two 7-day windows of user_summary, one 15-day window of upstream_msg_dist.
    assert_eq!(report["data_calls"].as_u64(), Some(500 * 3));
    assert!(peak_kb > 0 && peak_kb < 150_000, "peak RSS {peak_kb} kB");
    // Per-account limit from the simulator's log: at most 2 requests per account in any
    // one-second window (plus one for the boundary).
    let calls = sim.get("/_sim/stats")["calls"].clone();
    let mut per: std::collections::HashMap<String, Vec<u64>> = std::collections::HashMap::new();
    for c in calls.as_array().expect("calls") {
        if c["path"]
            .as_str()
            .is_some_and(|p| p.starts_with("/datacube/"))
        {
            per.entry(c["app_id"].as_str().unwrap_or("").to_string())
                .or_default()
                .push(c["at_ms"].as_u64().unwrap_or(0));
        }
    }
    assert_eq!(per.len(), 500);
    for (app, mut ts) in per {
        ts.sort();
        for w in ts.windows(4) {
            assert!(
                w[3] - w[0] >= 1000,
                "{app}: 4 calls within {} ms at 2 per second",
                w[3] - w[0]
            );
        }
    }
    assert!(!read_rows(&dir.path().join("out"), "user_summary", "acct_499").is_empty());
}

#[tokio::test]
async fn an_unreachable_host_fails_over_to_the_backup_host() {
    use wxcube::extract::{AccountClient, Extractor, RetryPolicy};
    use wxcube::pipeline::{Account, Auth};
    let sim = Sim::start(r#"{"seed":31}"#, TODAY);
    // A port nobody listens on stands for a WeChat host that cannot be reached.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let acct = Account {
        name: "brand_cn".into(),
        app_id: ACCOUNTS[0].app_id.into(),
        app_secret: wxcube::secret::Secret::new("s"),
        auth: Auth::StableToken,
        region: None,
    };
    let client = AccountClient::new(
        &acct,
        &format!("http://127.0.0.1:{dead}"),
        Some(&sim.base_url()),
        50,
        2,
    );
    let ex = Extractor::new(100, RetryPolicy::default(), 1);
    let r = wxcube::catalog::find("user_summary").expect("report");
    let d = |s: &str| wxcube::dates::parse(s).expect("date");
    let w = wxcube::window::Window {
        begin: d("2026-01-10"),
        end: d("2026-01-16"),
    };
    let mut calls = 0;
    let f = ex
        .fetch_held(&client, r, w, d(TODAY), &mut calls, &mut None)
        .await
        .expect("fetched through the backup host");
    assert!(f.decoded.batch.num_rows() > 0);
    assert_eq!(sim.calls_to("/cgi-bin/stable_token"), 1);
    assert_eq!(sim.calls_to("/datacube/getusersummary"), 1);
}

/// The rows the simulator gives `app_id` for `report` over `begin..=end`, as the tables
/// should hold them.
fn api_rows(cfg: &str, report: &str, app_id: &str, begin: &str, end: &str) -> Vec<String> {
    let cfg: wxcube::sim::SimConfig = serde_json::from_str(cfg).expect("sim config");
    let r = wxcube::catalog::find(report).expect("report");
    let d = |s| wxcube::dates::parse(s).expect("date");
    // Through JSON text, as the client sees it.
    let text = wxcube::sim::respond(&cfg, d(TODAY), r, app_id, d(begin), d(end)).to_string();
    let body: serde_json::Value = serde_json::from_str(&text).expect("json");
    canon(&expected_rows(r, &body))
}

/// Data calls the simulator logged for an app_id.
fn data_calls_of(sim: &Sim, app_id: &str) -> u64 {
    sim.get("/_sim/stats")["data_calls"][app_id]
        .as_object()
        .map_or(0, |m| m.values().filter_map(|v| v.as_u64()).sum())
}

/// Issue 13 §6: 3 accounts × 30 days, one of which gets its token from a command that
/// never answers (and leaves a child behind holding its output). The run ends: that
/// account fails with the cause after two attempts, each killing the whole process
/// group; the other accounts load every row.
#[test]
fn a_hanging_token_command_fails_its_account_only_and_dies_with_its_children() {
    let cfg = r#"{"seed":31}"#;
    let sim = Sim::start(cfg, TODAY);
    let dir = tempfile::tempdir().expect("tempdir");
    let pids = dir.path().join("pids");
    let script = write(
        dir.path(),
        "hang.sh",
        &format!("sleep 600 &\necho $! >> {}\nwait\n", pids.display()),
    );
    let yaml = format!(
        "version: 1\nname: hang\napi:\n  base_url: {}\naccounts:\n  - name: brand_cn\n    app_id: {}\n    app_secret: s1\n  - name: shop_sh\n    app_id: {}\n    app_secret: s2\n  - name: hung_acct\n    app_id: wxtest0000000003\n    auth: {{ type: command, command: sh {}, timeout_seconds: 1 }}\nreports: {}\ndates:\n  days_back: 30\noutput:\n  uri: ./out\nlimits:\n{FAST_LIMITS}",
        sim.base_url(),
        ACCOUNTS[0].app_id,
        ACCOUNTS[1].app_id,
        script.display(),
        list()
    );
    let p = write(dir.path(), "p.yaml", &yaml);
    let o = wxcube_env(
        &["run", p.to_str().expect("utf8"), "--today", TODAY, "--json"],
        dir.path(),
        &FAST,
    );
    let text = format!("{}{}", stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(3), "{text}");
    assert!(
        text.contains("account hung_acct")
            && text.contains("token command did not finish within 1 s")
            && text.contains("timeout_seconds"),
        "{text}"
    );
    // Two attempts for the whole run (not one per window), each group killed.
    let started = std::fs::read_to_string(&pids).expect("pids");
    let started: Vec<&str> = started.lines().collect();
    assert_eq!(started.len(), 2, "{started:?}");
    for pid in started {
        assert!(gone(pid), "the token command's child {pid} was killed");
    }
    assert_eq!(data_calls_of(&sim, "wxtest0000000003"), 0);
    let out = dir.path().join("out");
    assert!(read_rows(&out, "user_summary", "hung_acct").is_empty());
    // The others: every row, as the API gives it, with one call per planned window.
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    for a in &ACCOUNTS {
        for r in REPORTS {
            let got = canon(&read_rows(&out, r, a.name));
            let want = api_rows(cfg, r, a.app_id, "2025-12-21", "2026-01-19");
            assert!(!want.is_empty(), "{r}");
            assert_same(&[(r.to_string(), got)], &[(r.to_string(), want)], a.name);
        }
        let planned: u64 = report["tasks"]
            .as_array()
            .expect("tasks")
            .iter()
            .filter(|t| t["account"] == a.name)
            .filter_map(|t| t["planned_calls"].as_u64())
            .sum();
        assert_eq!(data_calls_of(&sim, a.app_id), planned, "{}", a.name);
    }
}

/// Whether a process has exited (no /proc entry, or only a zombie's).
fn gone(pid: &str) -> bool {
    for _ in 0..100 {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(s) => {
                let state = s
                    .rsplit(')')
                    .next()
                    .and_then(|r| r.split_whitespace().next());
                if matches!(state, Some("Z" | "X")) {
                    return true;
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    false
}

/// Issue 13 §6: a stable_token host that accepts connections and never answers, then one
/// nobody listens on. Each account makes its bounded token attempts once, then fails for
/// the run, with the cause; the run ends.
#[test]
fn a_hanging_or_dead_token_host_fails_each_account_after_bounded_attempts() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = std::sync::Arc::clone(&accepted);
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in listener.incoming().flatten() {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(c);
        }
    });
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let mut env = FAST.to_vec();
    env.push(("--timeout-ms", "300"));
    for (port, cause) in [(port, "timeout"), (dead, "onnect")] {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = write(
            dir.path(),
            "p.yaml",
            &pipeline_at(
                &format!("http://127.0.0.1:{port}"),
                &list(),
                "  days_back: 30",
                "./out",
                FAST_LIMITS,
            ),
        );
        let o = wxcube_env(
            &["run", p.to_str().expect("utf8"), "--today", TODAY, "--json"],
            dir.path(),
            &env,
        );
        let text = format!("{}{}", stdout(&o), stderr(&o));
        assert_eq!(o.status.code(), Some(3), "{text}");
        for a in &ACCOUNTS {
            assert!(
                text.contains(&format!(
                    "account {}: its token source (stable_token) failed",
                    a.name
                )),
                "{text}"
            );
        }
        assert!(
            text.contains(cause) && text.contains("4 attempts"),
            "{text}"
        );
        let report: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
        assert_eq!(report["data_calls"], 0);
        assert_eq!(
            report["token_calls"], 8,
            "4 attempts per account, once per run"
        );
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 8);
}

/// A component_access_token superseded by the platform's own server (40001 at
/// api_authorizer_token) is renewed once; it is not an invalid app secret.
#[test]
fn a_superseded_component_token_is_renewed() {
    let want = reference();
    let sim = Sim::start(
        r#"{"seed":31,"components":{"wxcomponent0001":"platform-secret"},"stale_component_tokens":1}"#,
        TODAY,
    );
    let top = "auth:\n  type: component\n  component_appid: wxcomponent0001\n  component_appsecret: platform-secret\n  component_verify_ticket: ticket@@@abc\n";
    let a = "    authorizer_refresh_token: refreshtoken@@@one\n";
    let b = "    authorizer_refresh_token: refreshtoken@@@two\n";
    let (dir, text) = run_ok(&sim, &pipeline_with(&sim.base_url(), top, &[a, b]), &[]);
    assert!(!text.contains("app secret"), "{text}");
    assert_same(
        &without(snapshot(&dir.path().join("out"), REPORTS), &[]),
        &want,
        "component",
    );
    assert_eq!(sim.calls_to("/cgi-bin/component/api_component_token"), 2);
}
