//! WeChat's faults, quotas, retirements and bad credentials (DESIGN §5): no row lost or
//! duplicated, the right exit code, and a message that says what to do.

use serde_json::Value;

use crate::harness::*;

const TODAY: &str = "2026-01-20";
/// Short waits so a fault-heavy run takes seconds, not minutes.
const FAST: [(&str, &str); 3] = [
    ("--retry-base-ms", "20"),
    ("--minute-ms", "400"),
    ("--timeout-ms", "1500"),
];

const REPORTS: &[&str] = &[
    "user_summary",
    "user_cumulate",
    "article_read",
    "article_share",
    "biz_summary",
    "article_total_detail",
    "upstream_msg",
    "upstream_msg_hour",
    "upstream_msg_week",
    "upstream_msg_month",
    "upstream_msg_dist",
    "upstream_msg_dist_week",
    "upstream_msg_dist_month",
    "interface_summary",
    "interface_summary_hour",
    "article_total",
    "user_read",
];

fn list() -> String {
    format!("[{}]", REPORTS.join(", "))
}

fn run(
    dir: &std::path::Path,
    sim: &Sim,
    dates: &str,
    out: &str,
    today: &str,
) -> (Option<i32>, Value, String) {
    let p = write(
        dir,
        "p.yaml",
        &pipeline_at(&sim.base_url(), &list(), dates, out, FAST_LIMITS),
    );
    let o = wxcube_env(
        &["run", p.to_str().expect("utf8"), "--today", today, "--json"],
        dir,
        &FAST,
    );
    let v = serde_json::from_str(&stdout(&o)).unwrap_or(Value::Null);
    (o.status.code(), v, stderr(&o))
}

#[test]
fn every_fault_at_20_percent_still_gives_exactly_the_fault_free_rows() {
    let dates = "  start: 2025-12-01\n  end: 2026-01-19";
    let clean = Sim::start(r#"{"seed":11}"#, TODAY);
    let dir_a = tempfile::tempdir().expect("tempdir");
    let (code, a, err) = run(dir_a.path(), &clean, dates, "./out", TODAY);
    assert_eq!(code, Some(0), "{err}");

    let faulty = Sim::start(r#"{"seed":11,"faults":{"rate":0.2,"slow_ms":2500}}"#, TODAY);
    let dir_b = tempfile::tempdir().expect("tempdir");
    let (code, b, err) = run(dir_b.path(), &faulty, dates, "./out", TODAY);
    assert_eq!(code, Some(0), "{err}\n{b}");
    assert!(
        b["retries"].as_u64().unwrap_or(0) > 20,
        "faults were injected and retried: {}",
        b["retries"]
    );
    assert_eq!(
        snapshot(&dir_a.path().join("out"), REPORTS),
        snapshot(&dir_b.path().join("out"), REPORTS)
    );
    assert_eq!(a["rows"], b["rows"]);
    let log = faulty.get("/_sim/stats");
    let kinds: std::collections::BTreeSet<String> = log["calls"]
        .as_array()
        .expect("calls")
        .iter()
        .filter_map(|c| c["fault"].as_str().map(String::from))
        .collect();
    assert!(kinds.len() >= 6, "most fault kinds happened: {kinds:?}");
}

#[test]
fn quota_defers_to_the_next_day_and_the_next_run_resumes_without_refetching() {
    let dates = "  start: 2025-12-01\n  end: 2026-01-09";
    let reports = [
        "upstream_msg_hour",
        "interface_summary_hour",
        "user_summary",
    ];
    let list = format!("[{}]", reports.join(", "));
    let dir = tempfile::tempdir().expect("tempdir");
    // 15 calls a day per account and report: the hourly reports (40 windows) run out.
    let sim = Sim::start(r#"{"seed":3,"daily_quota":15}"#, TODAY);
    let p = write(
        dir.path(),
        "p.yaml",
        &pipeline_at(&sim.base_url(), &list, dates, "./out", FAST_LIMITS),
    );
    let ps = p.to_str().expect("utf8");
    let o = wxcube_env(&["run", ps, "--today", TODAY], dir.path(), &FAST);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let text = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        text.contains("45009") && text.contains("upstream_msg_hour"),
        "{text}"
    );
    let calls_day1 = sim.data_calls();
    // Same day: nothing is called for the exhausted reports.
    let o = wxcube_env(&["run", ps, "--today", TODAY, "--json"], dir.path(), &FAST);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(
        sim.data_calls(),
        calls_day1,
        "a re-run the same day does not hit the exhausted quota again"
    );

    // Next days (a new simulator each day: WeChat's quota resets at China midnight): each
    // run resumes, and no loaded window is fetched twice.
    let mut ok: std::collections::BTreeMap<(String, String), u64> =
        std::collections::BTreeMap::new();
    let mut add = |sim: &Sim| {
        let v = sim.get("/_sim/stats")["data_calls_ok"].clone();
        for (app, reps) in v.as_object().into_iter().flatten() {
            for (r, n) in reps.as_object().into_iter().flatten() {
                *ok.entry((app.clone(), r.clone())).or_default() += n.as_u64().unwrap_or(0);
            }
        }
    };
    add(&sim);
    drop(sim);
    let mut day = wxcube::dates::parse(TODAY).expect("date");
    let mut code = Some(3);
    for _ in 0..4 {
        day = day.succ_opt().expect("date");
        let today = wxcube::dates::fmt(day);
        let sim = Sim::start(r#"{"seed":3,"daily_quota":15}"#, &today);
        let p = write(
            dir.path(),
            "p.yaml",
            &pipeline_at(&sim.base_url(), &list, dates, "./out", FAST_LIMITS),
        );
        let o = wxcube_env(
            &["run", p.to_str().expect("utf8"), "--today", &today],
            dir.path(),
            &FAST,
        );
        add(&sim);
        code = o.status.code();
        if code == Some(0) {
            break;
        }
    }
    assert_eq!(code, Some(0), "finished within a few days");
    for a in &ACCOUNTS {
        for r in ["upstream_msg_hour", "interface_summary_hour"] {
            assert_eq!(
                ok.get(&(a.app_id.to_string(), r.to_string())),
                Some(&40),
                "{} {r}: each of the 40 days fetched once",
                a.name
            );
        }
    }
    // The rows equal a quota-free run.
    let free = Sim::start(r#"{"seed":3}"#, TODAY);
    let dir2 = tempfile::tempdir().expect("tempdir");
    let p2 = write(
        dir2.path(),
        "p.yaml",
        &pipeline_at(&free.base_url(), &list, dates, "./out", FAST_LIMITS),
    );
    let o = wxcube_env(
        &["run", p2.to_str().expect("utf8"), "--today", TODAY],
        dir2.path(),
        &FAST,
    );
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        snapshot(&dir.path().join("out"), &reports),
        snapshot(&dir2.path().join("out"), &reports)
    );
}

#[test]
fn retired_reports_name_their_replacement_and_the_rest_is_committed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = Sim::start(r#"{"seed":5,"legacy_retired":true}"#, TODAY);
    let p = write(
        dir.path(),
        "p.yaml",
        &pipeline_at(
            &sim.base_url(),
            "[article_total, user_summary]",
            "  days_back: 5",
            "./out",
            FAST_LIMITS,
        ),
    );
    let o = wxcube_env(
        &["run", p.to_str().expect("utf8"), "--today", TODAY],
        dir.path(),
        &FAST,
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let text = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        text.contains("47009") && text.contains("article_total_detail"),
        "{text}"
    );
    assert!(!read_rows(&dir.path().join("out"), "user_summary", "brand_cn").is_empty());
}

#[test]
fn bad_credentials_fail_that_account_fast_and_the_others_go_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    // shop_sh's secret in the pipeline is not the one WeChat knows.
    let cfg = format!(
        r#"{{"seed":5,"accounts":{{"{}":"test-secret-brand_cn","{}":"another-secret"}}}}"#,
        ACCOUNTS[0].app_id, ACCOUNTS[1].app_id
    );
    let sim = Sim::start(&cfg, TODAY);
    let p = write(
        dir.path(),
        "p.yaml",
        &pipeline_at(
            &sim.base_url(),
            "all",
            "  days_back: 5",
            "./out",
            FAST_LIMITS,
        ),
    );
    let o = wxcube_env(
        &["run", p.to_str().expect("utf8"), "--today", TODAY],
        dir.path(),
        &FAST,
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let text = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        text.contains("shop_sh") && text.contains("40125") && text.contains("app_secret"),
        "{text}"
    );
    assert!(!read_rows(&dir.path().join("out"), "user_summary", "brand_cn").is_empty());
    assert!(read_rows(&dir.path().join("out"), "user_summary", "shop_sh").is_empty());
    // Failing fast: shop_sh made no data call at all.
    let calls = sim.get("/_sim/stats")["data_calls"].clone();
    assert!(
        calls
            .get(ACCOUNTS[1].app_id)
            .is_none_or(|c| c.as_object().is_none_or(|o| o.is_empty())),
        "{calls}"
    );
}

#[test]
fn secrets_never_reach_logs_state_reports_or_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = Sim::start(r#"{"seed":9,"faults":{"rate":0.2,"slow_ms":2500}}"#, TODAY);
    let p = write(
        dir.path(),
        "p.yaml",
        &pipeline_at(
            &sim.base_url(),
            &list(),
            "  days_back: 10",
            "./out",
            FAST_LIMITS,
        ),
    );
    let mut env = FAST.to_vec();
    env.push(("WXCUBE_LOG", "trace"));
    let mut written = Vec::new();
    for args in [
        vec!["run", "-vvv"],
        vec!["run", "-vvv", "--log-format", "json", "--full-refresh"],
        vec!["plan", "-vvv"],
    ] {
        let mut a = args.clone();
        a.push(p.to_str().expect("utf8"));
        a.extend(["--today", TODAY]);
        let o = wxcube_env(&a, dir.path(), &env);
        assert!(o.status.code() == Some(0), "{}", stderr(&o));
        written.push(o.stdout);
        written.push(o.stderr);
    }
    assert!(
        written.iter().map(|b| b.len()).sum::<usize>() > 10_000,
        "trace logging produced output"
    );
    let mut files = Vec::new();
    all_files(&dir.path().join("out"), &mut files);
    for f in &files {
        written.push(std::fs::read(f).expect("read output"));
    }
    let mut secrets: Vec<String> = ACCOUNTS
        .iter()
        .map(|a| format!("test-secret-{}", a.name))
        .collect();
    let tokens = sim.tokens();
    assert!(!tokens.is_empty());
    secrets.extend(tokens);
    for s in &secrets {
        for (i, w) in written.iter().enumerate() {
            assert!(
                !contains(w, s.as_bytes()),
                "secret {}… found in written item {i}",
                &s[..6.min(s.len())]
            );
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn all_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            all_files(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn a_stricter_span_answered_with_61501_halves_the_window() {
    let dates = "  start: 2025-09-01\n  end: 2026-01-19";
    let reports = ["upstream_msg_dist_week", "interface_summary", "biz_summary"];
    let list = format!("[{}]", reports.join(", "));
    // The newer docs say 15 days for distweek; some say 1 day for getbizsummary.
    let strict = Sim::start(
        r#"{"seed":4,"spans":{"upstream_msg_dist_week":15,"interface_summary":10,"biz_summary":1}}"#,
        TODAY,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(
        dir.path(),
        "p.yaml",
        &pipeline_at(&strict.base_url(), &list, dates, "./out", FAST_LIMITS),
    );
    let o = wxcube_env(
        &["run", p.to_str().expect("utf8"), "--today", TODAY],
        dir.path(),
        &FAST,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let plain = Sim::start(r#"{"seed":4}"#, TODAY);
    let dir2 = tempfile::tempdir().expect("tempdir");
    let p2 = write(
        dir2.path(),
        "p.yaml",
        &pipeline_at(&plain.base_url(), &list, dates, "./out", FAST_LIMITS),
    );
    let o = wxcube_env(
        &["run", p2.to_str().expect("utf8"), "--today", TODAY],
        dir2.path(),
        &FAST,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // is_delay is the flag of the response a row came in, so it differs with the window.
    assert_same(
        &without(snapshot(&dir.path().join("out"), &reports), &["is_delay"]),
        &without(snapshot(&dir2.path().join("out"), &reports), &["is_delay"]),
        "halved windows",
    );
    let codes: Vec<i64> = strict.get("/_sim/stats")["calls"]
        .as_array()
        .expect("calls")
        .iter()
        .filter_map(|c| c["errcode"].as_i64())
        .collect();
    assert!(
        codes.contains(&61501),
        "the strict simulator did reject some windows"
    );
}

/// 45009 and 45011 from a token endpoint are about tokens: 45011 waits for the next
/// minute and tries again; 45009 fails the account's token source for the run, never the
/// report's daily quota, so a re-run the same day fetches everything.
#[test]
fn token_endpoint_quota_and_minute_limit_are_not_a_reports_quota() {
    let reports = "[user_summary, interface_summary]";
    let dates = "  days_back: 10";
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = Sim::start(
        &format!(
            r#"{{"seed":5,"token_minute_limit":2,"token_quota_exhausted":["{}"]}}"#,
            ACCOUNTS[1].app_id
        ),
        TODAY,
    );
    let p = write(
        dir.path(),
        "p.yaml",
        &pipeline_at(&sim.base_url(), reports, dates, "./out", FAST_LIMITS),
    );
    let ps = p.to_str().expect("utf8");
    let o = wxcube_env(&["run", ps, "--today", TODAY], dir.path(), &FAST);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let text = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        text.contains("account shop_sh: its token source (stable_token) failed")
            && text.contains("token endpoint's daily quota is exhausted (errcode 45009)"),
        "{text}"
    );
    assert!(
        !text.contains("deferred to the next China midnight"),
        "{text}"
    );
    let stats = sim.get("/_sim/stats");
    let codes: Vec<i64> = stats["calls"]
        .as_array()
        .expect("calls")
        .iter()
        .filter_map(|c| c["errcode"].as_i64())
        .collect();
    assert_eq!(codes.iter().filter(|&&c| c == 45011).count(), 2);
    assert!(
        stats["data_calls"].get(ACCOUNTS[1].app_id).is_none(),
        "{stats}"
    );
    let brand = read_rows(&dir.path().join("out"), "user_summary", "brand_cn");
    assert!(!brand.is_empty());

    // Same day, the token source mended: shop_sh is fetched in full (no quota stop).
    let sim = Sim::start(r#"{"seed":5}"#, TODAY);
    let p = write(
        dir.path(),
        "p.yaml",
        &pipeline_at(&sim.base_url(), reports, dates, "./out", FAST_LIMITS),
    );
    let o = wxcube_env(
        &["run", p.to_str().expect("utf8"), "--today", TODAY],
        dir.path(),
        &FAST,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(sim.get("/_sim/stats")["data_calls"]
        .get(ACCOUNTS[1].app_id)
        .is_some());
    let fresh = tempfile::tempdir().expect("tempdir");
    let p = write(
        fresh.path(),
        "p.yaml",
        &pipeline_at(&sim.base_url(), reports, dates, "./out", FAST_LIMITS),
    );
    let o = wxcube_env(
        &["run", p.to_str().expect("utf8"), "--today", TODAY],
        fresh.path(),
        &FAST,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let list = ["user_summary", "interface_summary"];
    assert_same(
        &snapshot(&dir.path().join("out"), &list),
        &snapshot(&fresh.path().join("out"), &list),
        "after the token source mended",
    );
}

/// Publisher paging against servers that page wrongly: a `total_num` that lies low or
/// high, a server that sends everything on every page, one that ignores `page`. The rows
/// equal the simulator's unpaged answer exactly, or the window fails; never a row twice.
#[test]
fn publisher_paging_survives_lying_totals_and_ignored_pages() {
    use wxcube::catalog;
    use wxcube::sim::{self, SimConfig};
    let (start, end, today) = ("2024-05-01", "2024-12-31", "2025-01-20");
    let reports = ["ad_position", "ad_cps", "ad_settlement"];
    let want = |id: &str, app: &str| {
        let cfg: SimConfig = serde_json::from_str(r#"{"seed":7}"#).expect("sim config");
        let d = |s| wxcube::dates::parse(s).expect("date");
        let r = catalog::find(id).expect("report");
        let text = sim::respond(&cfg, d(today), r, app, d(start), d(end)).to_string();
        let mut body: Value = serde_json::from_str(&text).expect("json");
        if let Some(list) = body.get("settlement_list").cloned() {
            body["list"] = list;
        }
        canon(&expected_rows(r, &body))
    };
    let run = |mode: &str| {
        let sim = Sim::start(&format!(r#"{{"seed":7,{mode}}}"#), today);
        let dir = tempfile::tempdir().expect("tempdir");
        let p = write(
            dir.path(),
            "p.yaml",
            &pipeline_at(
                &sim.base_url(),
                &format!("[{}]", reports.join(", ")),
                &format!("  start: {start}\n  end: {end}"),
                "./out",
                FAST_LIMITS,
            ),
        );
        let o = wxcube_env(
            &["run", p.to_str().expect("utf8"), "--today", today],
            dir.path(),
            &FAST,
        );
        (dir, o)
    };
    for mode in [
        r#""publisher_total_num":5"#,
        r#""publisher_total_num":10000000"#,
        r#""publisher_paging":"unpaged","publisher_total_num":0"#,
    ] {
        let (dir, o) = run(mode);
        assert_eq!(o.status.code(), Some(0), "{mode}: {}", stderr(&o));
        for id in reports {
            for a in &ACCOUNTS {
                let got = canon(&read_rows(&dir.path().join("out"), id, a.name));
                assert_same(
                    &[(id.into(), got)],
                    &[(id.into(), want(id, a.app_id))],
                    mode,
                );
            }
        }
    }
    // Ignoring `page`: windows of more than a page fail (2024 has 3 ad rows a day until
    // mid-August); what is stored is the API's rows, each once.
    let (dir, o) = run(r#""publisher_paging":"ignores_page""#);
    let text = format!("{}{}", stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(3), "{text}");
    assert!(
        text.contains("ignores `page`") && text.contains("ad_position"),
        "{text}"
    );
    for a in &ACCOUNTS {
        let rows = read_rows(&dir.path().join("out"), "ad_position", a.name);
        let r = catalog::find("ad_position").expect("report");
        assert_eq!(duplicate_keys(r, &rows), 0);
        let all = want("ad_position", a.app_id);
        let got = canon(&rows);
        assert!(got.iter().all(|g| all.contains(g)), "{}", a.name);
        assert!(
            got.len() < all.len(),
            "the windows that could not be paged are missing"
        );
        // ad_cps windows fit one page: complete.
        let cps = canon(&read_rows(&dir.path().join("out"), "ad_cps", a.name));
        assert_same(
            &[("ad_cps".into(), cps)],
            &[("ad_cps".into(), want("ad_cps", a.app_id))],
            a.name,
        );
    }
}
