//! Simulator tests: the data model through `respond()`, the server over HTTP.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Datelike, Duration, Weekday};
use serde_json::{json, Value};

use super::*;
use crate::catalog::{self, Cadence, Report, Status, REPORTS};
use crate::clock::Clock;
use crate::dates::fmt;

fn d(s: &str) -> NaiveDate {
    crate::dates::parse(s).unwrap()
}

fn report(api: &str) -> &'static Report {
    catalog::find(api).unwrap()
}

fn cfg(seed: u64) -> SimConfig {
    SimConfig {
        seed,
        ..SimConfig::default()
    }
}

const APP: &str = "wxdemo0001";
const TODAY: &str = "2026-03-10";

fn list(v: &Value) -> &Vec<Value> {
    v["list"].as_array().unwrap()
}

/// Rows as canonical strings (serde_json maps are sorted), sorted.
fn rows(v: &Value) -> Vec<String> {
    let mut r: Vec<String> = list(v).iter().map(Value::to_string).collect();
    r.sort();
    r
}

/// Rows of `api` for every day of [from, to], each asked as a one-day window.
fn days(c: &SimConfig, api: &str, from: &str, to: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut x = d(from);
    while x <= d(to) {
        let v = respond(c, d(TODAY), report(api), APP, x, x);
        out.extend(list(&v).iter().cloned());
        x += Duration::days(1);
    }
    out
}

#[test]
fn config_defaults_reject_unknown_keys_and_hide_secrets() {
    let c: SimConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(c, SimConfig::default());
    assert_eq!(c.articles_per_day, 3);
    assert_eq!(c.faults.slow_ms, 3000);
    assert_eq!(c.faults.kinds.len(), 7);
    assert!(serde_json::from_str::<SimConfig>(r#"{"sed": 1}"#).is_err());
    let c: SimConfig = serde_json::from_str(
        r#"{"seed": 5, "accounts": {"wxa1": "topsecretvalue"},
            "faults": {"rate": 0.1, "kinds": ["http_5xx", "minute_limit"]}}"#,
    )
    .unwrap();
    assert_eq!(
        c.faults.kinds,
        vec![FaultKind::Http5xx, FaultKind::MinuteLimit]
    );
    let dbg = format!("{c:?}");
    assert!(
        dbg.contains("wxa1") && !dbg.contains("topsecretvalue"),
        "{dbg}"
    );
}

#[test]
fn same_seed_same_rows_and_a_window_is_the_union_of_its_days() {
    let (a, b, other) = (cfg(7), cfg(7), cfg(8));
    for r in REPORTS.iter().filter(|r| r.cadence == Cadence::Daily) {
        // One window inside the new family's range, one straddling its first day.
        for (from, to) in [("2026-02-20", "2026-02-26"), ("2025-10-29", "2025-11-04")] {
            let whole = respond(&a, d(TODAY), r, APP, d(from), d(to));
            assert_eq!(
                whole,
                respond(&b, d(TODAY), r, APP, d(from), d(to)),
                "{}",
                r.id
            );
            let mut union: Vec<String> = days(&a, r.api, from, to)
                .iter()
                .map(Value::to_string)
                .collect();
            union.sort();
            assert_eq!(rows(&whole), union, "{} {from}..{to}", r.id);
            if from == "2026-02-20" {
                assert!(!union.is_empty(), "{} has no rows", r.id);
                let o = respond(&other, d(TODAY), r, APP, d(from), d(to));
                assert_ne!(rows(&o), union, "{}: seed changes nothing", r.id);
            }
        }
        // Nothing before the report's first day.
        let first = r.first_day();
        let before = respond(
            &a,
            d(TODAY),
            r,
            APP,
            first - Duration::days(5),
            first - Duration::days(1),
        );
        assert!(list(&before).is_empty(), "{}", r.id);
    }
    // Another account, other rows.
    let r = report("getusersummary");
    let x = respond(&a, d(TODAY), r, APP, d("2026-02-20"), d("2026-02-26"));
    let y = respond(
        &a,
        d(TODAY),
        r,
        "wxother002",
        d("2026-02-20"),
        d("2026-02-26"),
    );
    assert_ne!(rows(&x), rows(&y));
}

#[test]
fn week_and_month_rows_only_for_ended_periods() {
    let c = cfg(1);
    let labels = |api: &str, from: &str, to: &str| -> BTreeSet<String> {
        list(&respond(&c, d(TODAY), report(api), APP, d(from), d(to)))
            .iter()
            .map(|r| r["ref_date"].as_str().unwrap().to_string())
            .collect()
    };
    // TODAY is Tuesday 2026-03-10: the week of Monday 03-09 has not ended.
    let weeks: BTreeSet<String> = ["2026-02-09", "2026-02-16", "2026-02-23", "2026-03-02"]
        .map(String::from)
        .into();
    for api in ["getupstreammsgweek", "getupstreammsgdistweek"] {
        assert_eq!(labels(api, "2026-02-08", "2026-03-09"), weeks, "{api}");
        assert!(labels(api, "2026-03-03", "2026-03-08").is_empty(), "{api}");
    }
    let months: BTreeSet<String> = ["2026-01-01", "2026-02-01"].map(String::from).into();
    for api in ["getupstreammsgmonth", "getupstreammsgdistmonth"] {
        assert_eq!(labels(api, "2026-01-01", "2026-03-09"), months, "{api}");
        assert!(labels(api, "2026-03-01", "2026-03-09").is_empty(), "{api}");
        assert!(labels(api, "2026-01-02", "2026-01-31").is_empty(), "{api}");
    }
    // The period must end before today, not on it.
    let at = |api: &str, today: &str, label: &str| {
        let v = respond(&c, d(today), report(api), APP, d(label), d(label));
        !list(&v).is_empty()
    };
    assert!(!at("getupstreammsgweek", "2026-03-08", "2026-03-02"));
    assert!(at("getupstreammsgweek", "2026-03-09", "2026-03-02"));
    assert!(!at("getupstreammsgmonth", "2026-02-28", "2026-02-01"));
    assert!(at("getupstreammsgmonth", "2026-03-01", "2026-02-01"));
    // A month row sums its days' messages.
    let month = respond(
        &c,
        d(TODAY),
        report("getupstreammsgmonth"),
        APP,
        d("2026-02-01"),
        d("2026-02-01"),
    );
    let total: i64 = list(&month)
        .iter()
        .map(|r| r["msg_count"].as_i64().unwrap())
        .sum();
    let daily: i64 = days(&c, "getupstreammsg", "2026-02-01", "2026-02-28")
        .iter()
        .map(|r| r["msg_count"].as_i64().unwrap())
        .sum();
    assert_eq!(total, daily);
}

fn int(v: &Value, k: &str) -> i64 {
    v[k].as_i64()
        .unwrap_or_else(|| panic!("{k} missing in {v}"))
}

#[test]
fn cumulative_series_are_non_decreasing_and_capped() {
    let c = cfg(3);
    let today = d(TODAY);
    let yesterday = today - Duration::days(1);
    let cases: [(&str, &str, i64, &[&str]); 2] = [
        (
            "getarticletotaldetail",
            "detail_list",
            30,
            &[
                "read_user",
                "share_user",
                "zaikan_user",
                "like_user",
                "comment_count",
                "collection_user",
                "praise_money",
                "read_subscribe_user",
            ],
        ),
        (
            "getarticletotal",
            "details",
            7,
            &[
                "int_page_read_user",
                "int_page_read_count",
                "share_user",
                "share_count",
                "add_to_fav_count",
                "int_page_from_session_read_user",
                "feed_share_from_feed_cnt",
            ],
        ),
    ];
    for (api, nested, cap, fields) in cases {
        let mut seen = 0;
        for back in [1, 2, 4, 6, 7, 8, 20, 29, 30, 31, 45] {
            let p = today - Duration::days(back);
            let v = respond(&c, today, report(api), APP, p, p);
            let expect_len = (yesterday - p).num_days().min(cap - 1) + 1;
            for item in list(&v) {
                seen += 1;
                let series = item[nested].as_array().unwrap();
                assert_eq!(series.len() as i64, expect_len, "{api} published {p}");
                for (i, s) in series.iter().enumerate() {
                    assert_eq!(s["stat_date"], json!(fmt(p + Duration::days(i as i64))));
                }
                for w in series.windows(2) {
                    for f in fields {
                        assert!(int(&w[0], f) <= int(&w[1], f), "{api} {f} decreases");
                    }
                }
                if api == "getarticletotaldetail" {
                    for s in series {
                        let all = &s["read_user_source"][0];
                        assert_eq!(all["scene_desc"], "全部");
                        assert_eq!(all["user_count"], s["read_user"]);
                    }
                }
            }
            // A later "today" only adds stat days; the ones already there stay.
            let later = respond(&c, today + Duration::days(3), report(api), APP, p, p);
            for (a, b) in list(&v).iter().zip(list(&later)) {
                let (a, b) = (a[nested].as_array().unwrap(), b[nested].as_array().unwrap());
                assert_eq!(a[..], b[..a.len()], "{api}");
            }
        }
        assert!(seen > 10, "{api}: too few articles to test");
    }
}

#[test]
fn articles_are_the_same_across_reports() {
    let c = cfg(11);
    let today = d(TODAY);
    let p = d("2026-02-01");
    let detail = respond(&c, today, report("getarticletotaldetail"), APP, p, p);
    let reads = days(&c, "getarticleread", "2026-02-01", "2026-03-02");
    let shares = days(&c, "getarticleshare", "2026-02-01", "2026-03-02");
    assert!(!list(&detail).is_empty());
    for item in list(&detail) {
        let msgid = item["msgid"].as_str().unwrap();
        let (mut read, mut share) = (0, 0);
        for (i, s) in item["detail_list"].as_array().unwrap().iter().enumerate() {
            let day = fmt(p + Duration::days(i as i64));
            let of = |rows: &[Value], f: &str| -> i64 {
                rows.iter()
                    .filter(|r| r["msgid"] == msgid && r["ref_date"] == json!(day))
                    .map(|r| int(&r["detail"], f))
                    .sum()
            };
            read += of(&reads, "read_user");
            share += of(&shares, "share_user");
            assert_eq!(int(s, "read_user"), read, "{msgid} {day}");
            assert_eq!(int(s, "share_user"), share, "{msgid} {day}");
        }
    }
    // getbizsummary counts the day's articles and reads.
    let biz = respond(&c, today, report("getbizsummary"), APP, p, p);
    let day_reads: i64 = reads
        .iter()
        .filter(|r| r["ref_date"] == "2026-02-01")
        .map(|r| int(&r["detail"], "read_user"))
        .sum();
    assert_eq!(int(&list(&biz)[0]["detail"], "read_user"), day_reads);
    assert_eq!(
        int(&list(&biz)[0]["detail"], "send_page_count"),
        list(&detail).len() as i64
    );
    // The legacy reports see only mass-sent articles (publish_type 0).
    let mass: BTreeSet<&str> = list(&detail)
        .iter()
        .filter(|i| i["publish_type"] == 0)
        .map(|i| i["msgid"].as_str().unwrap())
        .collect();
    let total = respond(&c, today, report("getarticletotal"), APP, p, p);
    let legacy: BTreeSet<&str> = list(&total)
        .iter()
        .map(|i| i["msgid"].as_str().unwrap())
        .collect();
    assert_eq!(legacy, mass);
    // user_summary's net growth is user_cumulate's difference.
    let sum = days(&c, "getusersummary", "2026-02-02", "2026-02-02");
    let net: i64 = sum
        .iter()
        .map(|r| int(r, "new_user") - int(r, "cancel_user"))
        .sum();
    let cum = days(&c, "getusercumulate", "2026-02-01", "2026-02-02");
    assert_eq!(
        int(&cum[1], "cumulate_user") - int(&cum[0], "cumulate_user"),
        net
    );
}

#[test]
fn article_summary_applies_the_threshold() {
    let c = cfg(5);
    let mut filtered = 0;
    for day in ["2026-02-10", "2026-02-11", "2026-02-12", "2026-02-13"] {
        let summary = days(&c, "getarticlesummary", day, day);
        let total_of = |r: &Value| {
            int(r, "int_page_read_user")
                + int(r, "ori_page_read_user")
                + int(r, "share_user")
                + int(r, "share_count")
                + int(r, "add_to_fav_count")
        };
        assert!(!summary.is_empty());
        assert!(summary.iter().all(|r| total_of(r) >= 3));
        // Mass-sent articles read that day but absent from the summary: below threshold.
        let listed: BTreeSet<&str> = summary
            .iter()
            .map(|r| r["msgid"].as_str().unwrap())
            .collect();
        let reads = days(&c, "getarticleread", day, day);
        for r in reads {
            let msgid = r["msgid"].as_str().unwrap();
            if !listed.contains(msgid) && int(&r["detail"], "read_user") < 3 {
                filtered += 1;
            }
        }
    }
    assert!(filtered > 0, "the threshold never applied");
}

#[test]
fn responses_have_the_variety_of_real_data() {
    let c = cfg(7);
    let (from, to) = ("2025-11-01", "2026-03-08");
    let summary = days(&c, "getusersummary", from, to);
    assert!(summary
        .iter()
        .any(|r| catalog::FOLLOW_SOURCE.int(int(r, "user_source")) == "unknown"));
    let cum = days(&c, "getusercumulate", from, to);
    assert!(cum.iter().any(|r| r.get("user_source").is_some()));
    assert!(cum.iter().any(|r| r.get("user_source").is_none()));

    let read = days(&c, "getuserread", from, to);
    let all: Vec<&Value> = read
        .iter()
        .filter(|r| r["user_source"] == 99_999_999)
        .collect();
    assert_eq!(all.len() as i64, (d(to) - d(from)).num_days() + 1);
    assert!(all.iter().all(|r| r.get("add_to_fav_user").is_some()));
    let channels: Vec<&Value> = read
        .iter()
        .filter(|r| r["user_source"] != 99_999_999)
        .collect();
    assert!(channels
        .iter()
        .any(|r| r.get("ori_page_read_user").is_none()));
    assert!(channels
        .iter()
        .all(|r| r.get("add_to_fav_user").is_none_or(|v| v == 0)));
    assert!(channels
        .iter()
        .any(|r| r.get("add_to_fav_user") == Some(&json!(0))));

    let hours = days(&c, "getupstreammsghour", "2026-02-01", "2026-02-07");
    let distinct: BTreeSet<i64> = hours.iter().map(|r| int(r, "ref_hour")).collect();
    assert!(distinct
        .iter()
        .all(|h| h % 100 == 0 && (0..=2300).contains(h)));
    let per_day_type: BTreeMap<(String, i64), usize> =
        hours.iter().fold(BTreeMap::new(), |mut m, r| {
            *m.entry((r["ref_date"].to_string(), int(r, "msg_type")))
                .or_default() += 1;
            m
        });
    assert!(per_day_type.values().any(|n| *n < 24), "no hour omitted");

    let share = days(&c, "getusershare", from, to);
    assert!(share.iter().any(|r| r["share_scene"] == 5));
    let msgs = days(&c, "getupstreammsg", from, to);
    assert!(msgs.iter().any(|r| r["msg_type"] == 5));
    let dist = days(&c, "getupstreammsgdist", from, to);
    let intervals: BTreeSet<i64> = dist.iter().map(|r| int(r, "count_interval")).collect();
    assert_eq!(intervals, (0..=3).collect());

    let reads = days(&c, "getarticleread", from, to);
    assert!(reads.iter().any(|r| r["detail"]["read_user_source"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| catalog::SCENE_DESC.str(s["scene_desc"].as_str().unwrap()) == "unknown")));
    let detail = days(&c, "getarticletotaldetail", from, "2026-02-01");
    let types: BTreeSet<i64> = detail.iter().map(|r| int(r, "publish_type")).collect();
    assert_eq!(types, [0, 1, 2].into());
    assert!(detail.iter().any(|r| r.get("title").is_none()));
    assert!(detail.iter().any(|r| r.get("content_url").is_some()));
    assert!(detail
        .iter()
        .any(|r| r["detail_list"][0]["read_jump_position"]
            .as_array()
            .unwrap()
            .len()
            < 5));
    let total = days(&c, "getarticletotal", "2026-01-01", "2026-02-01");
    assert!(total.iter().any(|r| r["details"][0]
        .get("int_page_from_kanyikan_read_user")
        .is_none()));
    assert!(total.iter().any(|r| r["details"][0]
        .get("int_page_from_kanyikan_read_user")
        .is_some()));
    assert!(total
        .iter()
        .any(|r| r.get("user_source") == Some(&json!(0))));
    // Rates are JSON floats, counts integers.
    let s = &detail[0]["detail_list"][0];
    assert!(s["read_finish_rate"].is_f64() && s["read_user"].is_i64());
}

#[test]
fn is_delay_only_when_yesterday_is_in_the_window() {
    let c = cfg(2);
    let r = report("getarticleread");
    let mut delayed = 0;
    for t in 0..40 {
        let today = d("2026-01-10") + Duration::days(t);
        let y = today - Duration::days(1);
        let old = respond(
            &c,
            today,
            r,
            APP,
            y - Duration::days(3),
            y - Duration::days(3),
        );
        assert_eq!(old["is_delay"], false);
        if respond(&c, today, r, APP, y, y)["is_delay"] == true {
            delayed += 1;
        }
    }
    assert!((3..37).contains(&delayed), "{delayed}");
    assert!(respond(
        &c,
        d(TODAY),
        report("getusersummary"),
        APP,
        d("2026-03-01"),
        d("2026-03-01")
    )
    .get("is_delay")
    .is_none());
}

// ---- over HTTP ----

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn pinned() -> Clock {
    Clock::pinned(d(TODAY))
}

async fn post_json(c: &reqwest::Client, url: &str, body: Value) -> Value {
    c.post(url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn stable(c: &reqwest::Client, base: &str, app: &str, secret: &str, force: bool) -> Value {
    let body = json!({"grant_type": "client_credential", "appid": app, "secret": secret,
        "force_refresh": force});
    post_json(c, &format!("{base}/cgi-bin/stable_token"), body).await
}

async fn get_json(c: &reqwest::Client, url: &str) -> Value {
    c.get(url).send().await.unwrap().json().await.unwrap()
}

async fn classic(c: &reqwest::Client, base: &str, query: &str) -> Value {
    get_json(c, &format!("{base}/cgi-bin/token?{query}")).await
}

fn token(v: &Value) -> String {
    v["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {v}"))
        .to_string()
}

async fn data(c: &reqwest::Client, base: &str, api: &str, tok: &str, b: &str, e: &str) -> Value {
    let url = format!("{base}/datacube/{api}?access_token={tok}");
    post_json(c, &url, json!({"begin_date": b, "end_date": e})).await
}

fn errcode(v: &Value) -> i64 {
    v["errcode"].as_i64().unwrap_or(0)
}

#[tokio::test]
async fn data_calls_are_validated_in_wechats_order() {
    let accounts: BTreeMap<String, String> = [("wxgood0001", "s3cret"), ("wxdenied01", "pw")]
        .map(|(a, s)| (a.to_string(), s.to_string()))
        .into();
    let cfg = SimConfig {
        seed: 9,
        accounts: Some(accounts),
        unauthorized: vec!["wxdenied01".into()],
        legacy_retired: true,
        daily_quota: Some(2),
        ..SimConfig::default()
    };
    let sim = start(cfg.clone(), pinned()).await.unwrap();
    let (base, c) = (sim.base_url(), client());
    let b = base.as_str();

    // Token endpoint errors.
    assert_eq!(
        errcode(&stable(&c, b, "wxgood0001", "wrong", false).await),
        40125
    );
    assert_eq!(
        errcode(&stable(&c, b, "wxnobody01", "s3cret", false).await),
        40013
    );
    assert_eq!(
        errcode(&classic(&c, b, "grant_type=client_credential&secret=x").await),
        41002
    );
    assert_eq!(
        errcode(&classic(&c, b, "grant_type=client_credential&appid=wxgood0001").await),
        41004
    );
    assert_eq!(
        errcode(&classic(&c, b, "grant_type=password&appid=wxgood0001&secret=s3cret").await),
        40002
    );
    let tok = token(&stable(&c, b, "wxgood0001", "s3cret", false).await);
    let denied = token(&stable(&c, b, "wxdenied01", "pw", false).await);

    let url = |api: &str, t: &str| format!("{b}/datacube/{api}?access_token={t}");
    let raw = |u: String, body: &'static str| {
        let c = c.clone();
        async move {
            c.post(u)
                .body(body)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let ok_body = r#"{"begin_date":"2026-03-01","end_date":"2026-03-01"}"#;
    assert_eq!(
        errcode(&raw(format!("{b}/datacube/getusersummary"), ok_body).await),
        41001
    );
    assert_eq!(
        errcode(&raw(url("getusersummary", "bogus"), ok_body).await),
        40001
    );
    assert_eq!(errcode(&raw(url("getusersummary", &tok), "").await), 44002);
    assert_eq!(
        errcode(&raw(url("getusersummary", &tok), "begin_date=2026").await),
        47001
    );
    for (bd, ed, code) in [
        ("20260301", "2026-03-01", 61500),
        ("2026-3-01", "2026-03-01", 61500),
        ("2026-02-30", "2026-03-01", 61500),
        ("2026-03-02", "2026-03-01", 61501),
        ("2026-02-20", "2026-02-27", 61501), // 8 days, span 7
        ("2026-03-04", "2026-03-10", 61501), // end = today
        ("2026-03-11", "2026-03-11", 61501),
    ] {
        let v = data(&c, b, "getusersummary", &tok, bd, ed).await;
        assert_eq!(errcode(&v), code, "{bd}..{ed}: {v}");
        let msg = v["errmsg"].as_str().unwrap();
        let rid = msg.rsplit_once(" rid: ").unwrap().1;
        let parts: Vec<&str> = rid.split('-').collect();
        assert_eq!(parts.len(), 3, "{msg}");
        assert!(parts
            .iter()
            .all(|p| p.len() == 8 && p.bytes().all(|c| c.is_ascii_hexdigit())));
    }
    let missing = post_json(
        &c,
        &url("getusersummary", &tok),
        json!({"begin_date": "2026-03-01"}),
    )
    .await;
    assert_eq!(errcode(&missing), 61500);

    // A full 7-day window succeeds and equals respond().
    let ok = data(&c, b, "getusersummary", &tok, "2026-03-03", "2026-03-09").await;
    let expect = respond(
        &cfg,
        d(TODAY),
        report("getusersummary"),
        "wxgood0001",
        d("2026-03-03"),
        d("2026-03-09"),
    );
    assert_eq!(ok, expect);
    assert_eq!(
        errcode(&data(&c, b, "getarticlesummary", &tok, "2026-03-01", "2026-03-01").await),
        47009
    );
    assert_eq!(
        errcode(&data(&c, b, "getusersummary", &denied, "2026-03-01", "2026-03-01").await),
        48001
    );
    // Quota 2 per report per day: the span-7 call was the first.
    assert_eq!(
        errcode(&data(&c, b, "getusersummary", &tok, "2026-03-01", "2026-03-01").await),
        0
    );
    assert_eq!(
        errcode(&data(&c, b, "getusersummary", &tok, "2026-03-01", "2026-03-01").await),
        45009
    );
    assert_eq!(
        errcode(&data(&c, b, "getusercumulate", &tok, "2026-03-01", "2026-03-01").await),
        0
    );

    // Wrong method, unknown path.
    let get = c
        .get(url("getusersummary", &tok))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(errcode(&get), 43002);
    let nf = c
        .post(url("getnothing", &tok))
        .body(ok_body)
        .send()
        .await
        .unwrap();
    assert_eq!(nf.status(), 404);

    let stats = sim.stats();
    let per = stats.per_report(true);
    assert_eq!(per[&("wxgood0001".to_string(), "user_summary")], 2);
    assert_eq!(per[&("wxgood0001".to_string(), "user_cumulate")], 1);
    let denied_call = stats.calls.iter().find(|r| r.errcode == 48001).unwrap();
    assert_eq!(denied_call.app_id.as_deref(), Some("wxdenied01"));
    assert_eq!(denied_call.begin, Some(d("2026-03-01")));
    assert!(stats.calls.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
    let remote = get_json(&c, &format!("{b}/_sim/stats")).await;
    assert_eq!(remote["data_calls_ok"]["wxgood0001"]["user_summary"], 2);
    assert_eq!(remote["calls"].as_array().unwrap().len(), stats.calls.len());
    sim.shutdown().await;
}

#[tokio::test]
async fn tokens_follow_the_stable_and_classic_rules() {
    let sim = start(cfg(4), pinned()).await.unwrap();
    let (base, c) = (sim.base_url(), client());
    let b = base.as_str();
    let first = stable(&c, b, "wxtok00001", "any", false).await;
    let t1 = token(&first);
    assert_eq!(first["expires_in"], 7200);
    assert!(t1.len() >= 64 && !t1.contains("any"));
    assert_eq!(token(&stable(&c, b, "wxtok00001", "any", false).await), t1);
    // Force refresh: a new token, the old one is dead at once.
    let t2 = token(&stable(&c, b, "wxtok00001", "any", true).await);
    assert_ne!(t2, t1);
    assert_eq!(
        errcode(&data(&c, b, "getusercumulate", &t1, "2026-03-01", "2026-03-01").await),
        40001
    );
    // A second force within 30 s: unchanged.
    assert_eq!(token(&stable(&c, b, "wxtok00001", "any", true).await), t2);
    // Classic tokens: new each time, both live (5-minute grace), isolated from stable.
    let q = "grant_type=client_credential&appid=wxtok00001&secret=any";
    let k1 = token(&classic(&c, b, q).await);
    let k2 = token(&classic(&c, b, q).await);
    assert_ne!(k1, k2);
    for t in [&t2, &k1, &k2] {
        assert_eq!(
            errcode(&data(&c, b, "getusercumulate", t, "2026-03-01", "2026-03-01").await),
            0
        );
    }
    let issued = sim.issued_tokens();
    assert_eq!(issued, vec![t1.clone(), t2.clone(), k1, k2]);
    let remote = get_json(&c, &format!("{b}/_sim/tokens")).await;
    assert_eq!(remote["tokens"].as_array().unwrap().len(), 4);
    // A non-wx app_id is unknown when no accounts are configured.
    assert_eq!(errcode(&stable(&c, b, "app1", "any", false).await), 40013);
    sim.shutdown().await;
}

/// What a client saw: errcode, HTTP status, or a transport / JSON failure.
#[derive(Debug, PartialEq)]
enum Seen {
    Ok(Value),
    Code(i64),
    Status(u16),
    Broken,
}

async fn try_data(c: &reqwest::Client, url: &str, body: &Value) -> Seen {
    let Ok(resp) = c.post(url).json(body).send().await else {
        return Seen::Broken;
    };
    if !resp.status().is_success() {
        return Seen::Status(resp.status().as_u16());
    }
    let Ok(bytes) = resp.bytes().await else {
        return Seen::Broken;
    };
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(v) if errcode(&v) != 0 => Seen::Code(errcode(&v)),
        Ok(v) => Seen::Ok(v),
        Err(_) => Seen::Broken,
    }
}

async fn fault_run(cfg: &SimConfig) -> (Vec<Seen>, Vec<(i64, Option<FaultKind>)>) {
    let sim = start(cfg.clone(), pinned()).await.unwrap();
    let (base, c) = (sim.base_url(), client());
    let mut tok = None;
    for _ in 0..20 {
        let v = stable(&c, &base, APP, "s", false).await;
        if let Some(t) = v["access_token"].as_str() {
            tok = Some(t.to_string());
            break;
        }
    }
    let tok = tok.unwrap();
    let mut seen = Vec::new();
    for i in 0..40 {
        let day = fmt(d("2026-02-01") + Duration::days(i % 20));
        let body = json!({"begin_date": day, "end_date": day});
        let url = format!("{base}/datacube/getusersummary?access_token={tok}");
        let s = try_data(&c, &url, &body).await;
        if let Seen::Ok(v) = &s {
            let x = d(&day);
            assert_eq!(
                *v,
                respond(cfg, d(TODAY), report("getusersummary"), APP, x, x)
            );
        }
        seen.push(s);
    }
    let log = sim
        .stats()
        .calls
        .iter()
        .map(|c| (c.errcode, c.fault))
        .collect();
    sim.shutdown().await;
    (seen, log)
}

#[tokio::test]
async fn faults_are_deterministic_and_never_change_the_data() {
    let mut cfg = cfg(3);
    cfg.faults = Faults {
        rate: 0.5,
        slow_ms: 5,
        ..Faults::default()
    };
    let (seen, log) = fault_run(&cfg).await;
    let (seen2, log2) = fault_run(&cfg).await;
    assert_eq!(seen, seen2);
    assert_eq!(log, log2);
    let kinds: BTreeSet<&str> = log
        .iter()
        .filter_map(|(_, f)| f.map(FaultKind::as_str))
        .collect();
    assert!(kinds.len() >= 5, "{kinds:?}");
    assert!(seen.iter().any(|s| matches!(s, Seen::Ok(_))));
    assert!(seen.contains(&Seen::Status(503)));
    assert!(seen.contains(&Seen::Broken));
    for code in [-1, 42001, 45011] {
        assert!(seen.contains(&Seen::Code(code)), "{code}");
    }
    // The log agrees with what the client saw.
    for (s, (code, fault)) in seen.iter().zip(log.iter().skip(log.len() - 40)) {
        match s {
            Seen::Ok(_) => assert_eq!(*code, 0),
            Seen::Code(c) => assert_eq!(code, c),
            Seen::Status(_) | Seen::Broken => {
                assert_eq!(*code, HTTP_FAULT, "{fault:?}")
            }
        }
    }
    // Another seed, another sequence; token endpoints only get busy or 5xx.
    let other: Vec<_> = (0..200)
        .map(|n| {
            fault_at(
                &SimConfig {
                    seed: 4,
                    ..cfg.clone()
                },
                n,
                false,
            )
        })
        .collect();
    let mine: Vec<_> = (0..200).map(|n| fault_at(&cfg, n, false)).collect();
    assert_ne!(other, mine);
    assert!((0..500)
        .filter_map(|n| fault_at(&cfg, n, true))
        .all(|k| matches!(k, FaultKind::Busy | FaultKind::Http5xx)));
    let rate = mine.iter().filter(|f| f.is_some()).count();
    assert!((70..130).contains(&rate), "{rate}");
}

#[tokio::test]
async fn latency_is_added_to_every_response() {
    let cfg = SimConfig {
        latency_ms: 60,
        ..SimConfig::default()
    };
    let sim = start(cfg, pinned()).await.unwrap();
    let c = client();
    let t0 = std::time::Instant::now();
    let v = stable(&c, &sim.base_url(), APP, "s", false).await;
    assert!(v.get("access_token").is_some());
    assert!(t0.elapsed() >= std::time::Duration::from_millis(60));
    sim.shutdown().await;
}

#[test]
fn legacy_reports_are_the_six_retired_ones() {
    // The 47009 toggle keys on the catalogue status; the reference names six.
    let legacy: BTreeSet<&str> = REPORTS
        .iter()
        .filter(|r| r.status == Status::Legacy)
        .map(|r| r.api)
        .collect();
    assert_eq!(
        legacy,
        [
            "getarticlesummary",
            "getarticletotal",
            "getuserread",
            "getuserreadhour",
            "getusershare",
            "getusersharehour"
        ]
        .into()
    );
    assert_eq!(d("2026-03-09").weekday(), Weekday::Mon);
}

/// Every data call faulted with one kind: what the client sees.
async fn only(kind: FaultKind) -> (Seen, std::time::Duration, i64) {
    let cfg = SimConfig {
        faults: Faults {
            rate: 1.0,
            kinds: vec![kind],
            slow_ms: 80,
        },
        ..SimConfig::default()
    };
    let sim = start(cfg, pinned()).await.unwrap();
    let (base, c) = (sim.base_url(), client());
    // Token endpoints get only busy and 5xx; then data calls go with an unknown token.
    let tok = match kind {
        FaultKind::Busy | FaultKind::Http5xx => {
            let r = c
                .post(format!("{base}/cgi-bin/stable_token"))
                .json(&json!({"grant_type": "client_credential", "appid": APP, "secret": "s"}))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body = r.text().await.unwrap();
            if kind == FaultKind::Busy {
                assert!(status == 200 && body.contains("\"errcode\":-1"), "{body}");
            } else {
                assert_eq!(status, 503);
            }
            "unknown".to_string()
        }
        _ => token(&stable(&c, &base, APP, "s", false).await),
    };
    let url = format!("{base}/datacube/getusercumulate?access_token={tok}");
    let t0 = std::time::Instant::now();
    let seen = try_data(
        &c,
        &url,
        &json!({"begin_date": "2026-03-01", "end_date": "2026-03-01"}),
    )
    .await;
    let took = t0.elapsed();
    let code = sim.stats().calls.last().unwrap().errcode;
    sim.shutdown().await;
    (seen, took, code)
}

#[tokio::test]
async fn each_fault_kind_looks_like_the_real_failure() {
    let (seen, _, code) = only(FaultKind::Reset).await;
    assert_eq!((seen, code), (Seen::Broken, HTTP_FAULT));
    let (seen, took, code) = only(FaultKind::Slow).await;
    assert!(matches!(seen, Seen::Ok(_)) && code == 0);
    assert!(took >= std::time::Duration::from_millis(80));
    assert_eq!(only(FaultKind::Http5xx).await.0, Seen::Status(503));
    // Busy comes after the token check (mixed-fault test: -1 for a valid token).
    assert_eq!(only(FaultKind::Busy).await.0, Seen::Code(40001));
    assert_eq!(only(FaultKind::TokenExpired).await.0, Seen::Code(42001));
    assert_eq!(only(FaultKind::MinuteLimit).await.0, Seen::Code(45011));
    // Truncated: a complete HTTP response whose JSON is cut.
    let (seen, _, code) = only(FaultKind::Truncated).await;
    assert_eq!((seen, code), (Seen::Broken, HTTP_FAULT));
}

/// Every field the simulator sends is a catalogue column, and every non-nullable column is
/// always sent: the transform can decode what the simulator serves.
#[test]
fn responses_match_the_catalogue_columns() {
    use crate::catalog::{Shape, Src};
    let c = cfg(13);
    for r in REPORTS {
        let wanted = |pick: fn(&Src) -> Option<&'static str>, required: bool| -> BTreeSet<&str> {
            r.columns
                .iter()
                .filter(|col| !required || !col.nullable)
                .filter_map(|col| pick(&col.src))
                .collect()
        };
        let item_f = |s: &Src| if let Src::Item(f) = s { Some(*f) } else { None };
        let detail_f = |s: &Src| {
            if let Src::Detail(f) = s {
                Some(*f)
            } else {
                None
            }
        };
        let nested_f = |s: &Src| {
            if let Src::Nested(f) = s {
                Some(*f)
            } else {
                None
            }
        };
        let resp_f = |s: &Src| {
            if let Src::Response(f) = s {
                Some(*f)
            } else {
                None
            }
        };
        let keys =
            |v: &Value| -> BTreeSet<String> { v.as_object().unwrap().keys().cloned().collect() };
        let check =
            |got: BTreeSet<String>, all: BTreeSet<&str>, req: BTreeSet<&str>, what: &str| {
                for k in &got {
                    assert!(
                        all.contains(k.as_str()),
                        "{}: {what} field {k} is no column",
                        r.id
                    );
                }
                for k in req {
                    assert!(got.contains(k), "{}: {what} lacks required {k}", r.id);
                }
            };
        let (from, to) = match r.cadence {
            Cadence::Daily => ("2026-01-01", "2026-01-20"),
            _ => ("2025-10-01", "2026-02-01"),
        };
        let mut x = d(from);
        let mut n = 0;
        while x <= d(to) {
            let body = respond(&c, d(TODAY), r, APP, x, x);
            let mut top = wanted(resp_f, false);
            top.insert("list");
            check(keys(&body), top.clone(), top, "response");
            for item in list(&body) {
                n += 1;
                let mut all = wanted(item_f, false);
                let mut req = wanted(item_f, true);
                if !wanted(detail_f, false).is_empty() {
                    all.insert("detail");
                    req.insert("detail");
                    check(
                        keys(&item["detail"]),
                        wanted(detail_f, false),
                        wanted(detail_f, true),
                        "detail",
                    );
                }
                if let Shape::Flatten(arr) = r.shape {
                    all.insert(arr);
                    req.insert(arr);
                    for e in item[arr].as_array().unwrap() {
                        check(
                            keys(e),
                            wanted(nested_f, false),
                            wanted(nested_f, true),
                            arr,
                        );
                    }
                }
                check(keys(item), all, req, "item");
            }
            x += Duration::days(1);
        }
        assert!(n > 0, "{}", r.id);
    }
}
