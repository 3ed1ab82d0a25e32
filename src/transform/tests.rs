use super::*;
use crate::catalog::{self, from_date32};
use arrow::array::{Array, AsArray};
use arrow::datatypes::{Date32Type, Int64Type};

#[test]
fn decodes_user_summary_with_labels_and_unknown_codes() {
    let r = catalog::find("user_summary").unwrap();
    let body =
        br#"{"list":[{"ref_date":"2024-05-20","user_source":30,"new_user":58,"cancel_user":0},
        {"ref_date":"2024-05-21","user_source":999,"new_user":"7","cancel_user":1}]}"#;
    let d = decode(r, body).unwrap();
    let b = &d.batch;
    assert_eq!(b.num_rows(), 2);
    assert_eq!(
        from_date32(b.column(0).as_primitive::<Date32Type>().value(1)),
        crate::dates::parse("2024-05-21").unwrap()
    );
    let labels = arrow::compute::cast(b.column(2), &DataType::Utf8).unwrap();
    assert_eq!(labels.as_string::<i32>().value(0), "qr_code");
    assert_eq!(labels.as_string::<i32>().value(1), "unknown");
    assert_eq!(b.column(3).as_primitive::<Int64Type>().value(1), 7);
}

#[test]
fn errcode_and_missing_fields() {
    let r = catalog::find("user_summary").unwrap();
    let e = decode(
        r,
        br#"{"errcode":61501,"errmsg":"date range error rid: 1"}"#,
    )
    .unwrap_err();
    assert_eq!(e.unwrap().errcode, 61501);
    let e = decode(
        r,
        br#"{"list":[{"ref_date":"2024-05-20","user_source":1,"new_user":1}]}"#,
    )
    .unwrap_err();
    assert!(e.unwrap_err().to_string().contains("cancel_user"));
    assert!(matches!(
        decode(r, br#"{"list":[{"ref_date":"#),
        Err(Err(DecodeError::Json(_)))
    ));
}

#[test]
fn flattens_article_total_detail_and_keeps_is_delay() {
    let r = catalog::find("article_total_detail").unwrap();
    let body = r#"{"list":[{"ref_date":"2025-11-01","msgid":"2247490098_1","publish_type":0,
      "detail_list":[{"stat_date":"2025-11-01","read_user":4123,
        "read_user_source":[{"user_count":4123,"scene_desc":"全部"},{"user_count":5,"scene_desc":"视频号"}],
        "share_user":366,"zaikan_user":191,"like_user":386,"comment_count":33,"collection_user":233,
        "praise_money":361,"read_subscribe_user":327,"read_delivery_rate":0.0271002,
        "read_finish_rate":0.6304348,"read_avg_activetime":1.0588236,
        "read_jump_position":[{"position":1,"rate":0.5304147}]},
        {"stat_date":"2025-11-02","read_user":5000,"read_user_source":[],
        "share_user":400,"zaikan_user":200,"like_user":400,"comment_count":40,"collection_user":240,
        "praise_money":361,"read_subscribe_user":330,"read_delivery_rate":0.03,
        "read_finish_rate":0.6,"read_avg_activetime":1,"read_jump_position":[]}]}],"is_delay":true}"#;
    let d = decode(r, body.as_bytes()).unwrap();
    assert!(d.is_delay);
    let b = &d.batch;
    assert_eq!(b.num_rows(), 2);
    assert!(b.column_by_name("title").unwrap().is_null(0));
    let src = b
        .column_by_name("read_user_source")
        .unwrap()
        .as_list::<i32>();
    let first = src.value(0);
    let s = first.as_struct();
    assert_eq!(s.column(2).as_string::<i32>().value(0), "all");
    assert_eq!(s.column(2).as_string::<i32>().value(1), "unknown");
    assert_eq!(src.value(1).len(), 0);
    let delay = b.column_by_name("is_delay").unwrap().as_boolean();
    assert!(delay.value(0) && delay.value(1));
}

#[test]
fn hour_is_ref_hour_over_100() {
    let r = catalog::find("interface_summary_hour").unwrap();
    let body = br#"{"list":[{"ref_date":"2014-12-01","ref_hour":1300,"callback_count":331,"fail_count":18,"total_time_cost":167870,"max_time_cost":5042}]}"#;
    let b = decode(r, body).unwrap().batch;
    assert_eq!(
        b.column_by_name("hour")
            .unwrap()
            .as_primitive::<arrow::datatypes::Int32Type>()
            .value(0),
        13
    );
}

/// Columns equal value by value (dictionaries compared through their values).
fn assert_same(a: &RecordBatch, b: &RecordBatch, what: &str) {
    assert_eq!(a.schema(), b.schema(), "{what}: schema");
    assert_eq!(a.num_rows(), b.num_rows(), "{what}: rows");
    for (i, f) in a.schema().fields().iter().enumerate() {
        assert_eq!(
            a.column(i).to_data(),
            b.column(i).to_data(),
            "{what}: column {}",
            f.name()
        );
    }
}

/// `decode` and the reference decoder agree: the same batch, or the same error.
fn agree(r: &Report, body: &str) {
    let got = decode(r, body.as_bytes());
    let want = decode_reference(r, body.as_bytes());
    match (got, want) {
        (Ok(g), Ok(w)) => {
            assert_same(&g.batch, &w.batch, body);
            assert_eq!(g.is_delay, w.is_delay, "{body}");
        }
        (Err(Ok(g)), Err(Ok(w))) => assert_eq!(g, w, "{body}"),
        (Err(Err(g)), Err(Err(w))) => assert_eq!(g.to_string(), w.to_string(), "{body}"),
        (g, w) => panic!("{body}: decode gave {g:?}, the reference {w:?}"),
    }
}

#[test]
fn fast_path_takes_every_simulator_body_and_matches_the_reference() {
    let cfg: crate::sim::SimConfig =
        serde_json::from_str(r#"{"seed":3,"articles_per_day":6}"#).unwrap();
    let mut delayed = 0;
    for (today, app) in [
        ("2026-01-20", "wxfast0000000001"),
        ("2026-01-23", "wxfast0000000002"),
    ] {
        let today = crate::dates::parse(today).unwrap();
        let yesterday = today.pred_opt().unwrap();
        for r in catalog::REPORTS {
            let mut rows = 0;
            let span = chrono::Duration::days(i64::from(r.span) - 1);
            let early = crate::dates::parse("2025-11-24").unwrap();
            // An early window, and the one ending yesterday (where `is_delay` shows).
            for (begin, end) in [(early, early + span), (yesterday - span, yesterday)] {
                let body = crate::sim::respond(&cfg, today, r, app, begin, end).to_string();
                let fast = fast::decode(r, body.as_bytes()).unwrap_or_else(|| {
                    panic!("{}: the fast path gave up on a simulator body", r.id)
                });
                let slow = decode_reference(r, body.as_bytes()).unwrap();
                assert_same(&fast.batch, &slow.batch, r.id);
                assert_eq!(fast.is_delay, slow.is_delay, "{}", r.id);
                delayed += usize::from(fast.is_delay);
                rows += fast.batch.num_rows();
            }
            if r.cadence == catalog::Cadence::Daily {
                assert!(rows > 0, "{}: no rows to compare", r.id);
            }
        }
    }
    assert!(delayed > 0, "no is_delay response was compared");
}

/// A small deterministic generator: `rnd(n)` is in `0..n`.
fn xorshift(mut seed: u64) -> impl FnMut(usize) -> usize {
    move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n.max(1) as u64) as usize
    }
}

/// The simulator's answer for the window of `r` that ends the day before `today`.
fn last_window(
    cfg: &crate::sim::SimConfig,
    today: chrono::NaiveDate,
    r: &'static Report,
    app: &str,
) -> serde_json::Value {
    let span = chrono::Duration::days(i64::from(r.span) - 1);
    let end = today.pred_opt().unwrap();
    crate::sim::respond(cfg, today, r, app, end - span, end)
}

/// Items whose keys come in a different order each (reversed, as sent, shuffled), in
/// every level, on bodies where some rows leave fields out: the key-order guess must
/// only ever save time.
#[test]
fn key_order_changing_between_rows_decodes_as_the_reference() {
    use serde_json::Value;
    let cfg: crate::sim::SimConfig =
        serde_json::from_str(r#"{"seed":5,"articles_per_day":4}"#).unwrap();
    let today = crate::dates::parse("2026-01-20").unwrap();
    let mut rnd = xorshift(0x9e37_79b9_7f4a_7c15);
    // Written out by hand: `serde_json::Map` keeps its keys sorted.
    fn reorder(v: &Value, row: usize, rnd: &mut dyn FnMut(usize) -> usize) -> String {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                match row % 3 {
                    0 => keys.reverse(),
                    1 => {}
                    _ => {
                        for i in (1..keys.len()).rev() {
                            keys.swap(i, rnd(i + 1));
                        }
                    }
                }
                let fields: Vec<String> = keys
                    .into_iter()
                    .map(|k| format!("{}:{}", Value::from(k.as_str()), reorder(&m[k], row, rnd)))
                    .collect();
                format!("{{{}}}", fields.join(","))
            }
            Value::Array(a) => {
                let items: Vec<String> = a
                    .iter()
                    .enumerate()
                    .map(|(i, x)| reorder(x, row / 4 + i, rnd))
                    .collect();
                format!("[{}]", items.join(","))
            }
            other => other.to_string(),
        }
    }
    let mut compared = 0;
    for id in [
        "user_read_hour",
        "article_total_detail",
        "article_read",
        "user_summary",
    ] {
        let r = catalog::find(id).unwrap();
        let v = last_window(&cfg, today, r, "wxfast0000000003");
        let body = reorder(&v, 0, &mut rnd);
        let fast = fast::decode(r, body.as_bytes())
            .unwrap_or_else(|| panic!("{id}: the fast path gave up on reordered keys"));
        let slow = decode_reference(r, body.as_bytes()).unwrap();
        assert_same(&fast.batch, &slow.batch, id);
        assert!(fast.batch.num_rows() > 0, "{id}: no rows");
        compared += 1;
    }
    assert_eq!(compared, 4);
}

#[test]
fn odd_bodies_decode_as_the_reference_decodes_them() {
    let us = catalog::find("user_summary").unwrap();
    let atd = catalog::find("article_total_detail").unwrap();
    let hour = catalog::find("upstream_msg_hour").unwrap();
    let ar = catalog::find("article_read").unwrap();
    // (report, body, whether the fast path keeps it)
    let cases: &[(&Report, &str, bool)] = &[
        // Numbers as strings and integral floats, extra fields, errcode 0.
        (
            us,
            r#"{"errcode":0,"errmsg":"ok","list":[{"ref_date":"2024-05-20","user_source":"30","new_user":5.0,"cancel_user":"7","extra":[1,{"a":null}]}]}"#,
            true,
        ),
        // Escaped strings and keys in unknown places.
        (
            ar,
            r#"{"list":[{"ref_date":"2025-11-02","msgid":"a\"b\u00e9","detail":{"read_user":3,"read_user_source":[{"user_count":3,"scene_desc":"\u5168\u90e8"}]}}],"is_delay":1}"#,
            true,
        ),
        (us, r#"{}"#, true),
        (us, r#"{"list":null}"#, true),
        (
            hour,
            r#"{"list":[{"ref_date":"2024-05-20","ref_hour":"1300","msg_type":9,"msg_user":1,"msg_count":2}]}"#,
            true,
        ),
        // Flattened: item fields after the nested array, a null title, no content_url.
        (
            atd,
            r#"{"list":[{"detail_list":[{"stat_date":"2025-11-01","read_user":1,"share_user":0,"zaikan_user":0,"like_user":0,"comment_count":0,"collection_user":0,"praise_money":0,"read_subscribe_user":0,"read_delivery_rate":0,"read_finish_rate":"0.5","read_avg_activetime":1},{"stat_date":"2025-11-02","read_user":2,"read_user_source":null,"share_user":0,"zaikan_user":0,"like_user":0,"comment_count":0,"collection_user":0,"praise_money":0,"read_subscribe_user":0,"read_delivery_rate":0.1,"read_finish_rate":0.5,"read_avg_activetime":1,"read_jump_position":[{"position":"2","rate":0.25}]}],"title":null,"ref_date":"2025-11-01","msgid":77,"publish_type":1},{"ref_date":"2025-11-01","msgid":"x","publish_type":0}],"is_delay":false}"#,
            true,
        ),
        // The reference decoder decides these.
        (
            us,
            r#"{"list":[{"ref_date":"2024-05-20","user_source":1,"new_user":1,"new_user":2,"cancel_user":0}]}"#,
            false,
        ),
        (
            us,
            r#"{"errcode":45009,"errmsg":"reach max api daily quota limit"}"#,
            false,
        ),
        (
            us,
            r#"{"base_resp":{"ret":1,"err_msg":"no"},"list":[]}"#,
            false,
        ),
        (us, r#"{"is_delay":true}"#, false),
        (
            us,
            r#"{"list":[{"ref_date":"2024-05-20","user_source":1,"new_user":"abc","cancel_user":0}]}"#,
            false,
        ),
        (
            us,
            r#"{"list":[{"ref_date":"2024-05-20","user_source":1,"new_user":null,"cancel_user":0}]}"#,
            false,
        ),
        (
            us,
            r#"{"list":[{"ref_date":"2024-5-20","user_source":1,"new_user":1,"cancel_user":0}]}"#,
            false,
        ),
        (us, r#"{"list":[3]}"#, false),
        (us, r#"{"list":[]} x"#, false),
        (
            hour,
            r#"{"list":[{"ref_date":"2024-05-20","ref_hour":100,"msg_type":99999999999,"msg_user":1,"msg_count":2}]}"#,
            false,
        ),
        (
            ar,
            r#"{"list":[{"ref_date":"2025-11-02","msgid":"m","detail":[1]}]}"#,
            false,
        ),
        (
            atd,
            r#"{"list":[{"ref_date":"2025-11-01","msgid":"m","publish_type":0,"detail_list":{}}]}"#,
            false,
        ),
    ];
    for (r, body, fast_keeps) in cases {
        assert_eq!(
            fast::decode(r, body.as_bytes()).is_some(),
            *fast_keeps,
            "fast path on {body}"
        );
        agree(r, body);
    }
    // Keys are matched as bytes: one with escapes, or an unknown one that is not
    // UTF-8, is still judged as the reference judges it.
    let bad_key: &[u8] = b"{\"list\":[{\"ref_date\":\"2024-05-20\",\"user_source\":1,\"new_user\":1,\"cancel_user\":0,\"\xff\":1}]}";
    let escaped = br#"{"list":[{"ref_\u0064ate":"2024-05-20","user_source":1,"new_user":1,"cancel_user":0}]}"#;
    // Dates are read as bytes too.
    let bad_date: &[u8] = b"{\"list\":[{\"ref_date\":\"2024-05-2\xff\",\"user_source\":1,\"new_user\":1,\"cancel_user\":0}]}";
    let escaped_date = br#"{"list":[{"ref_date":"2024\u002d05-20","user_source":1,"new_user":1,"cancel_user":0}]}"#;
    for body in [bad_key, escaped, bad_date, escaped_date] {
        assert!(fast::decode(us, body).is_none(), "fast path on {body:?}");
        let (got, want) = (decode(us, body), decode_reference(us, body));
        match (&got, &want) {
            (Ok(g), Ok(w)) => assert_same(&g.batch, &w.batch, "escaped key"),
            (Err(Err(g)), Err(Err(w))) => assert_eq!(g.to_string(), w.to_string()),
            _ => panic!("{body:?}: decode gave {got:?}, the reference {want:?}"),
        }
    }
    for body in [escaped, escaped_date] {
        assert_eq!(decode(us, body).map(|d| d.batch.num_rows()).ok(), Some(1));
    }
}

/// Read-source and jump-position elements in the usual shape and in every other the general
/// path must take (keys reordered, extra or missing keys, numbers that are not plain,
/// escaped or unknown scenes): the fast path reads each as the reference decoder does.
#[test]
fn list_elements_in_any_shape_decode_as_the_reference() {
    let ar = catalog::find("article_read").unwrap();
    let elements: &[(&str, bool)] = &[
        (r#"{"user_count":3,"scene_desc":"全部"}"#, true),
        (r#"{ "user_count" : 0 , "scene_desc" : "搜一搜" }"#, true),
        (r#"{"scene_desc":"全部","user_count":3}"#, true),
        (
            r#"{"user_count":3,"scene_desc":"全部","extra":[1,{"a":2}]}"#,
            true,
        ),
        (r#"{"extra":null,"user_count":3,"scene_desc":"全部"}"#, true),
        (r#"{"user_count":3.0,"scene_desc":"全部"}"#, true),
        (r#"{"user_count":"7","scene_desc":"全部"}"#, true),
        (r#"{"user_count":-2,"scene_desc":"全部"}"#, true),
        (r#"{"user_count":3,"scene_desc":"全部"}"#, true),
        (r#"{"user_count":3,"scene_desc":"新场景"}"#, true),
        (r#"{"user_count":3,"scene_desc":"全部x"}"#, true),
        (r#"{"user_count":3,"scene_desc":""}"#, true),
        (r#"{"user_count":3}"#, false),
        (r#"{"user_count":3,"scene_desc":null}"#, false),
        (r#"{"user_count":3,"scene_desc":5}"#, false),
        (
            r#"{"user_count":3,"user_count":4,"scene_desc":"全部"}"#,
            false,
        ),
        (r#"{"user_count":3.5,"scene_desc":"全部"}"#, false),
        (r#"{"user_count":3,"scene_desc":"全部",}"#, false),
        (r#"{"user_count":3 "scene_desc":"全部"}"#, false),
    ];
    for (el, fast_keeps) in elements {
        for list in [
            format!("[{el}]"),
            format!(r#"[{el},{{"user_count":1,"scene_desc":"全部"}}]"#),
        ] {
            let body = format!(
                r#"{{"list":[{{"ref_date":"2025-11-02","msgid":"m","detail":{{"read_user":3,"read_user_source":{list}}}}}]}}"#
            );
            assert_eq!(
                fast::decode(ar, body.as_bytes()).is_some(),
                *fast_keeps,
                "fast path on {body}"
            );
            agree(ar, &body);
        }
    }
    let atd = catalog::find("article_total_detail").unwrap();
    let jumps: &[(&str, bool)] = &[
        (r#"{"position":2,"rate":0.25}"#, true),
        (r#"{"position":2,"rate":1}"#, true),
        (r#"{"position":2,"rate":-0.5e-3}"#, true),
        (r#"{"rate":0.25,"position":2}"#, true),
        (r#"{"position":"2","rate":"0.25"}"#, true),
        (r#"{"position":2,"rate":0.25,"x":1}"#, true),
        (r#"{"position":99999999999,"rate":0.25}"#, false),
        (r#"{"position":2}"#, false),
        (r#"{"position":2,"rate":null}"#, false),
        (r#"{"position":2,"rate":01}"#, false),
        (r#"{"position":2,"position":3,"rate":0.25}"#, false),
    ];
    for (el, fast_keeps) in jumps {
        let body = format!(
            r#"{{"list":[{{"ref_date":"2025-11-01","msgid":"m","publish_type":0,"detail_list":[{{"stat_date":"2025-11-01","read_user":2,"share_user":0,"zaikan_user":0,"like_user":0,"comment_count":0,"collection_user":0,"praise_money":0,"read_subscribe_user":0,"read_delivery_rate":0.1,"read_finish_rate":0.5,"read_avg_activetime":1,"read_jump_position":[{el},{{"position":1,"rate":0.5}}]}}]}}]}}"#
        );
        assert_eq!(
            fast::decode(atd, body.as_bytes()).is_some(),
            *fast_keeps,
            "fast path on {body}"
        );
        agree(atd, &body);
    }
    // The usual shape gives the scene as sent and its label.
    let body = r#"{"list":[{"ref_date":"2025-11-02","msgid":"m","detail":{"read_user":3,"read_user_source":[{"user_count":3,"scene_desc":"搜一搜"},{"user_count":1,"scene_desc":"新场景"}]}}]}"#;
    let b = fast::decode(ar, body.as_bytes()).unwrap().batch;
    let list = b
        .column_by_name("read_user_source")
        .unwrap()
        .as_any()
        .downcast_ref::<arrow::array::ListArray>()
        .unwrap()
        .value(0);
    let st = list
        .as_any()
        .downcast_ref::<arrow::array::StructArray>()
        .unwrap();
    let text = |i: usize| {
        st.column(i)
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap()
            .iter()
            .map(|v| v.unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(text(1), ["搜一搜", "新场景"]);
    assert_eq!(text(2), ["search", "unknown"]);
}

/// Simulator bodies with one random edit each (a byte dropped, doubled or replaced by
/// JSON punctuation, a byte put before a closing bracket, a number rewritten): whatever
/// the scanner accepts, the reference decoder accepts too, with the same batch; the rest
/// the reference decoder judges alone.
#[test]
fn mangled_bodies_decode_as_the_reference_decodes_them() {
    let cfg: crate::sim::SimConfig =
        serde_json::from_str(r#"{"seed":7,"articles_per_day":2}"#).unwrap();
    let today = crate::dates::parse("2026-01-20").unwrap();
    let mut rnd = xorshift(0x2545_f491_4f6c_dd1d);
    const BYTES: &[u8] = b"{}[],:\" \\0123456789-+.eEtrufalsn\xc3\xff\x01";
    const NUMBERS: &[&str] = &[
        "-0",
        "01",
        "1.0",
        "1e2",
        "-5",
        "1.",
        "18446744073709551616",
        "9999999999999999999",
        "1e400",
        "-9223372036854775809",
        "0.1e-2",
        "2E+1",
    ];
    let (mut kept, mut refused, mut tried) = (0, 0, 0);
    for id in [
        "user_summary",
        "article_total_detail",
        "article_read",
        "user_read_hour",
    ] {
        let r = catalog::find(id).unwrap();
        let body = last_window(&cfg, today, r, "wxfast0000000004")
            .to_string()
            .into_bytes();
        for _ in 0..500 {
            let mut b = body.clone();
            let at = rnd(b.len());
            match rnd(5) {
                0 => {
                    b.remove(at);
                }
                1 => b.insert(at, b[at]),
                2 => b[at] = BYTES[rnd(BYTES.len())],
                3 => {
                    // Something before the end of an object or array (a trailing comma...).
                    let Some(close) = b[at..].iter().position(|&c| c == b'}' || c == b']') else {
                        continue;
                    };
                    b.insert(at + close, BYTES[rnd(BYTES.len())]);
                }
                _ => {
                    // A number (the digits after the `at`-th colon) rewritten.
                    let Some(colon) = b[at..].iter().position(|&c| c == b':') else {
                        continue;
                    };
                    let from = at + colon + 1;
                    let len = b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
                    if len == 0 {
                        continue;
                    }
                    let n = NUMBERS[rnd(NUMBERS.len())].as_bytes();
                    b.splice(from..from + len, n.iter().copied());
                }
            }
            tried += 1;
            let got = decode(r, &b);
            let want = decode_reference(r, &b);
            let what = String::from_utf8_lossy(&b).into_owned();
            match (got, want) {
                (Ok(g), Ok(w)) => {
                    assert_same(&g.batch, &w.batch, &what);
                    assert_eq!(g.is_delay, w.is_delay, "{what}");
                    kept += usize::from(fast::decode(r, &b).is_some());
                }
                (Err(Ok(g)), Err(Ok(w))) => assert_eq!(g, w, "{what}"),
                (Err(Err(g)), Err(Err(w))) => {
                    assert_eq!(g.to_string(), w.to_string(), "{what}");
                    refused += 1;
                }
                (g, w) => panic!("{what}: decode gave {g:?}, the reference {w:?}"),
            }
        }
    }
    // Both kinds were exercised: edits the scanner took and edits nobody takes.
    assert!(tried > 1000, "{tried} edits");
    assert!(
        kept > 100 && refused > 100,
        "kept {kept}, refused {refused}"
    );
}

/// Bytes that are not UTF-8 inside a string the fast path reads, skips, or unescapes: it
/// leaves the body to the reference decoder, which refuses it; valid multi-byte text is
/// read as is.
#[test]
fn strings_that_are_not_utf8_leave_the_body_to_the_reference() {
    let r = catalog::find("article_summary").unwrap();
    let cfg: crate::sim::SimConfig =
        serde_json::from_str(r#"{"seed":3,"articles_per_day":1}"#).unwrap();
    let today = crate::dates::parse("2026-01-20").unwrap();
    let sim = last_window(&cfg, today, r, "wxfast0000000004").to_string();
    // The first title's text replaced, and something put after it.
    let at = sim.find("\"title\":\"").expect("a title") + 9;
    let end = at + sim[at..].find('"').unwrap();
    let body = |title: &[u8], extra: &[u8]| -> Vec<u8> {
        let mut b = sim.as_bytes()[..at].to_vec();
        b.extend_from_slice(title);
        b.push(b'"');
        b.extend_from_slice(extra);
        b.extend_from_slice(&sim.as_bytes()[end + 1..]);
        b
    };
    let good = body("阅读 ok".as_bytes(), ",\"other\":\"文\"".as_bytes());
    let d = fast::decode(r, &good).expect("fast path takes valid UTF-8");
    let title = d.batch.column_by_name("title").unwrap().as_string::<i32>();
    assert_eq!(title.value(0), "阅读 ok");
    for bad in [
        body(b"\xe9\x98", b""),
        body(b"ok\xff", b""),
        body(b"ok", b",\"other\":\"\xff\""),
        body(b"\\n\xc3", b""),
        body(b"ok", b",\"other\":[\"x\\t\xfe\"]"),
    ] {
        assert!(fast::decode(r, &bad).is_none(), "fast path on {bad:?}");
        assert!(decode(r, &bad).is_err(), "{bad:?}");
        assert!(decode_reference(r, &bad).is_err(), "{bad:?}");
    }
    // A flattened item's date is kept for its nested rows; with none it is never parsed.
    let atd = catalog::find("article_total_detail").unwrap();
    let bad: &[u8] = b"{\"list\":[{\"ref_date\":\"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\",\"msgid\":\"1_1\",\"title\":\"t\",\"detail_list\":[]}]}";
    assert!(fast::decode(atd, bad).is_none());
    assert!(decode_reference(atd, bad).is_err());
}

/// A report's answers are alike: once one is decoded, the next one's builders are sized
/// for about its rows, not from its length (which left 2-4.5 times the rows' room).
#[test]
fn a_decoded_window_holds_about_its_rows_once_its_report_has_answered() {
    let r = catalog::find("user_read").unwrap();
    let body = |n: u32| {
        let items: Vec<String> = (0..n)
            .map(|i| {
                format!(
                    r#"{{"ref_date":"2025-03-{:02}","user_source":{},"int_page_read_user":{i},"int_page_read_count":{i},"ori_page_read_user":{i},"ori_page_read_count":{i},"share_user":{i},"share_count":{i},"add_to_fav_user":{i},"add_to_fav_count":{i}}}"#,
                    1 + i % 28,
                    i % 7
                )
            })
            .collect();
        format!(r#"{{"list":[{}]}}"#, items.join(","))
    };
    let room = |b: &RecordBatch| {
        let exact = arrow::compute::concat_batches(&b.schema(), [b, &b.slice(0, 0)]).unwrap();
        b.get_array_memory_size() as f64 / exact.get_array_memory_size() as f64
    };
    decode(r, body(300).as_bytes()).unwrap();
    let next = decode(r, body(400).as_bytes()).unwrap().batch;
    assert_eq!(next.num_rows(), 400);
    let held = room(&next);
    assert!(held < 1.4, "{held:.2} times the rows' bytes");
}
