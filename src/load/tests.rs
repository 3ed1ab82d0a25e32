use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::compute::{concat_batches, lexsort_to_indices, take_record_batch, SortColumn};
use arrow::datatypes::Date32Type;
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::*;
use crate::catalog;
use crate::catalog::from_date32;
use crate::changes;
use crate::dates::parse;
use crate::extract::RetryPolicy;
use crate::pipeline::Compression;
use crate::pipeline::Partition;
use crate::store::Store;
use crate::transform::decode;
use crate::window::Window;

fn w(a: &str, b: &str) -> Window {
    Window {
        begin: parse(a).unwrap(),
        end: parse(b).unwrap(),
    }
}

/// One day of article_total_detail as the simulator answers it (on 2026-03-02), decoded.
fn detail_day(articles_per_day: u32, day: &str) -> RecordBatch {
    let r = catalog::find("article_total_detail").unwrap();
    let cfg = crate::sim::SimConfig {
        articles_per_day,
        ..Default::default()
    };
    let (today, d) = (parse("2026-03-02").unwrap(), parse(day).unwrap());
    let body = crate::sim::respond(&cfg, today, r, "wx0123456789abcdef", d, d);
    decode(r, body.to_string().as_bytes()).unwrap().batch
}

/// `sort` on rows in many orders (already sorted, reversed, shuffled, stretches of
/// sorted rows shuffled as blocks) gives what the full sort gives, nested columns too.
#[test]
fn sort_merges_sorted_stretches_like_a_full_sort() {
    let r = catalog::find("article_total_detail").unwrap();
    let parts: Vec<RecordBatch> = ["2026-02-01", "2026-02-02", "2026-02-20"]
        .into_iter()
        .map(|day| detail_day(20, day))
        .collect();
    let all = concat_batches(&parts[0].schema(), &parts).unwrap();
    let key = |b: &RecordBatch| -> Vec<SortColumn> {
        r.key
            .iter()
            .map(|k| SortColumn {
                values: Arc::clone(b.column_by_name(k).unwrap()),
                options: None,
            })
            .collect()
    };
    let want = take_record_batch(&all, &lexsort_to_indices(&key(&all), None).unwrap()).unwrap();
    let n = want.num_rows() as u32;
    assert!(n > 500, "{n} rows");
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move |m: u32| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % u64::from(m)) as u32
    };
    let mut orders: Vec<Vec<u32>> = vec![(0..n).collect(), (0..n).rev().collect()];
    for blocks in [2, 5, 40, 300, n] {
        // Cut the sorted rows into `blocks` stretches and shuffle the stretches.
        let mut cuts: Vec<u32> = (0..blocks - 1).map(|_| 1 + next(n - 1)).collect();
        cuts.extend([0, n]);
        cuts.sort_unstable();
        cuts.dedup();
        let mut stretches: Vec<(u32, u32)> = cuts.windows(2).map(|c| (c[0], c[1])).collect();
        for i in (1..stretches.len()).rev() {
            stretches.swap(i, next(i as u32 + 1) as usize);
        }
        orders.push(stretches.iter().flat_map(|&(a, b)| a..b).collect());
    }
    for order in orders {
        let shuffled = take_record_batch(&want, &arrow::array::UInt32Array::from(order)).unwrap();
        assert_eq!(sort(r, &shuffled).unwrap(), want);
        // A slice (offsets into its parents' buffers) sorts as a batch of its own rows.
        let part = shuffled.slice(7, shuffled.num_rows() - 20);
        let own =
            take_record_batch(&part, &lexsort_to_indices(&key(&part), None).unwrap()).unwrap();
        assert_eq!(sort(r, &part).unwrap(), own);
    }
}

#[test]
fn partition_values() {
    let d = parse("2025-03-07").unwrap();
    assert_eq!(partition_value(Partition::Day, d), "date=2025-03-07");
    assert_eq!(partition_value(Partition::Month, d), "month=2025-03");
    assert_eq!(partition_value(Partition::Year, d), "year=2025");
    assert_eq!(
        partitions_of(Partition::Month, &w("2025-01-28", "2025-02-03")),
        vec!["month=2025-01", "month=2025-02"]
    );
}

#[tokio::test]
async fn merge_replaces_fetched_windows_only_and_sorts() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().to_str().unwrap()).unwrap();
    let r = catalog::find("upstream_msg").unwrap();
    // One window's rows into account "a", January 2025.
    let st = &store;
    let commit = |window: Window, b: RecordBatch| async move {
        commit_partition(
            st,
            r,
            "a",
            "month=2025-01",
            &[window],
            &[b],
            Compression::Zstd,
        )
        .await
        .unwrap()
    };
    let rows = |body: &[u8]| decode(r, body).unwrap().batch;
    let users = || async {
        let t = read_table(&store, r, "a").await.unwrap().unwrap();
        let c = t.column_by_name("msg_user").unwrap().clone();
        c.as_primitive::<arrow::datatypes::Int64Type>()
            .values()
            .to_vec()
    };
    let b1 = rows(
        br#"{"list":[{"ref_date":"2025-01-02","msg_type":2,"msg_user":1,"msg_count":1},
        {"ref_date":"2025-01-01","msg_type":1,"msg_user":5,"msg_count":9}]}"#,
    );
    commit(w("2025-01-01", "2025-01-02"), b1).await;
    // Stored in date order, not as the answer listed them.
    assert_eq!(users().await, vec![5, 1]);
    // A re-fetch of 01-01 only: the fresh row must come before the kept 01-02.
    let b0 =
        rows(br#"{"list":[{"ref_date":"2025-01-01","msg_type":1,"msg_user":3,"msg_count":3}]}"#);
    commit(w("2025-01-01", "2025-01-01"), b0).await;
    assert_eq!(users().await, vec![3, 1]);
    // Re-fetch of 01-02 only: 01-01 stays, 01-02 replaced, no duplicates.
    let b2 =
        rows(br#"{"list":[{"ref_date":"2025-01-02","msg_type":2,"msg_user":7,"msg_count":7}]}"#);
    let c = commit(w("2025-01-02", "2025-01-02"), b2).await;
    assert_eq!(c.rows, 2);
    assert_eq!(users().await, vec![3, 7]);
}

#[tokio::test]
async fn merged_writes_equal_a_full_sort_on_random_windows() {
    let r = catalog::find("upstream_msg").unwrap();
    let mut x: u64 = 0x1234_5678_9abc_def1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let body = |days: &[u32], salt: u64| {
        let mut items = Vec::new();
        for d in days {
            for t in [3, 1, 2] {
                items.push(format!(
                    r#"{{"ref_date":"2025-03-{d:02}","msg_type":{t},"msg_user":{},"msg_count":1}}"#,
                    salt + u64::from(*d)
                ));
            }
        }
        decode(r, format!(r#"{{"list":[{}]}}"#, items.join(",")).as_bytes())
            .unwrap()
            .batch
    };
    for round in 0..40 {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        let all: Vec<u32> = (1..=31).collect();
        let month = w("2025-03-01", "2025-03-31");
        commit_partition(
            &store,
            r,
            "a",
            "month=2025-03",
            &[month],
            &[body(&all, 0)],
            Compression::None,
        )
        .await
        .unwrap();
        // Random disjoint windows, given out of order.
        let mut windows = Vec::new();
        let mut d = 1 + (next() % 3) as u32;
        while d <= 31 {
            let len = 1 + (next() % 5) as u32;
            let end = (d + len - 1).min(31);
            if next() % 2 == 0 {
                windows.push((d, end));
            }
            d = end + 1 + (next() % 4) as u32;
        }
        windows.reverse();
        let ws: Vec<Window> = windows
            .iter()
            .map(|(a, b)| w(&format!("2025-03-{a:02}"), &format!("2025-03-{b:02}")))
            .collect();
        // Half the windows come streamed into one file (in date order, as the run
        // writes them), the others decoded.
        let mut stream = PartStream::new(r, Compression::None).unwrap();
        let mut fresh = Vec::new();
        for (i, (a, b)) in windows.iter().enumerate().rev() {
            let batch = body(&(*a..=*b).collect::<Vec<_>>(), 1000 * (round + 1));
            if i % 2 == 0 {
                stream.push(sort(r, &batch).unwrap()).unwrap();
            } else {
                fresh.push(Fresh::Batch(batch));
            }
        }
        if stream.rows() > 0 {
            fresh.push(stream.finish().unwrap());
        }
        assert!(
            windows.len() < 3
                || matches!(fresh.last(), Some(Fresh::File { spans, .. }) if spans.len() > 1)
        );
        commit_fresh(
            &store,
            r,
            "a",
            "month=2025-03",
            &ws,
            &fresh,
            Compression::None,
        )
        .await
        .unwrap();
        let got = read_table(&store, r, "a").await.unwrap().unwrap();
        // Expected: the plain way, computed independently.
        let mut want_rows: Vec<(i32, i32, i64)> = Vec::new();
        for day in 1..=31u32 {
            let fetched = windows.iter().any(|(a, b)| (*a..=*b).contains(&day));
            let user = if fetched {
                1000 * (round + 1) + u64::from(day)
            } else {
                u64::from(day)
            };
            for t in [1, 2, 3] {
                want_rows.push((day as i32, t, user as i64));
            }
        }
        let dates = got.column(0).as_primitive::<arrow::datatypes::Date32Type>();
        let types = got
            .column_by_name("msg_type")
            .unwrap()
            .as_primitive::<arrow::datatypes::Int32Type>();
        let users = got
            .column_by_name("msg_user")
            .unwrap()
            .as_primitive::<arrow::datatypes::Int64Type>();
        let base = crate::catalog::date32(parse("2025-02-28").unwrap());
        let got_rows: Vec<(i32, i32, i64)> = (0..got.num_rows())
            .map(|i| (dates.value(i) - base, types.value(i), users.value(i)))
            .collect();
        assert_eq!(got_rows, want_rows, "round {round}: {windows:?}");
    }
}

/// One day of upstream_msg, a row per message type, decoded.
fn upstream_msg_day(day: u32, types: impl Iterator<Item = u32>) -> RecordBatch {
    let r = catalog::find("upstream_msg").unwrap();
    let items: Vec<String> = types
        .map(|t| format!(r#"{{"ref_date":"2025-02-{day:02}","msg_type":{t},"msg_user":{t},"msg_count":{day}}}"#))
        .collect();
    let body = format!(r#"{{"list":[{}]}}"#, items.join(","));
    decode(r, body.as_bytes()).unwrap().batch
}

#[test]
fn a_streamed_partition_spans_row_groups_and_sorts_every_row() {
    let r = catalog::find("upstream_msg").unwrap();
    let mut stream = PartStream::new(r, Compression::Zstd).unwrap();
    let mut want = Vec::new();
    for day in 1..=28u32 {
        want.extend((0..4000u32).map(|t| (day, t)));
        // Pushed as decoded (each day's types descending): the stream sorts.
        stream
            .push(upstream_msg_day(day, (0..4000u32).rev()))
            .unwrap();
    }
    want.sort();
    let Fresh::File { bytes, spans, rows } = stream.finish().unwrap() else {
        panic!("a stream finishes as a file");
    };
    assert_eq!((rows, spans.len()), (want.len(), 28));
    let meta = ParquetRecordBatchReaderBuilder::try_new(bytes.clone()).unwrap();
    assert!(
        meta.metadata().num_row_groups() > 1,
        "past ROW_GROUP_BYTES a row group closes"
    );
    let base = crate::catalog::date32(parse("2025-01-31").unwrap());
    let mut got = Vec::new();
    for b in decode_file(bytes).unwrap() {
        let d = b.column(0).as_primitive::<arrow::datatypes::Date32Type>();
        let t = b
            .column_by_name("msg_type")
            .unwrap()
            .as_primitive::<arrow::datatypes::Int32Type>();
        got.extend((0..b.num_rows()).map(|i| ((d.value(i) - base) as u32, t.value(i) as u32)));
    }
    assert_eq!(got, want);
    // A window dated before the last one is refused, not written out of order.
    let mut s = PartStream::new(r, Compression::Zstd).unwrap();
    let one = |d: u32| {
        decode(r, format!(r#"{{"list":[{{"ref_date":"2025-02-{d:02}","msg_type":1,"msg_user":1,"msg_count":1}}]}}"#).as_bytes()).unwrap().batch
    };
    s.push(one(5)).unwrap();
    assert!(s.push(one(3)).is_err());
}

/// The same rows in buffers with `factor` times their room, as a window decoded before its
/// report's first answer was learned holds them.
fn with_room(batch: &RecordBatch, factor: usize) -> RecordBatch {
    use arrow::array::{make_array, Capacities, MutableArrayData};
    let columns = batch
        .columns()
        .iter()
        .map(|c| {
            let data = c.to_data();
            let room = Capacities::Array(factor * data.len());
            let mut m = MutableArrayData::with_capacities(vec![&data], true, room);
            m.try_extend(0, 0, data.len()).unwrap();
            make_array(m.freeze())
        })
        .collect();
    RecordBatch::try_new(batch.schema(), columns).unwrap()
}

/// Windows that hold room beyond their rows: row groups are counted by the rows' own bytes.
#[test]
fn a_streamed_partition_fills_its_row_groups_with_rows_not_spare_room() {
    let r = catalog::find("upstream_msg").unwrap();
    let mut stream = PartStream::new(r, Compression::Zstd).unwrap();
    let mut windows = Vec::new();
    for day in 1..=28u32 {
        let batch = with_room(&upstream_msg_day(day, 0..2000u32), 4);
        windows.push(batch.clone());
        stream.push(batch).unwrap();
    }
    let held: usize = windows.iter().map(|b| b.get_array_memory_size()).sum();
    let rows = arrow::compute::concat_batches(&windows[0].schema(), &windows)
        .unwrap()
        .get_array_memory_size();
    assert!(
        held > 3 * rows,
        "the windows hold room: {held} bytes for {rows} of rows"
    );
    let Fresh::File { bytes, rows: n, .. } = stream.finish().unwrap() else {
        panic!("a stream finishes as a file");
    };
    assert_eq!(n, 28 * 2000);
    let groups = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .metadata()
        .num_row_groups();
    let most = rows.div_ceil(crate::load::ROW_GROUP_BYTES / 2);
    assert!(
        (2..=most).contains(&groups),
        "{groups} row groups for {rows} bytes of rows (at most {most})"
    );
}

/// A partition nobody can read is moved aside, never deleted, by both the merge and the
/// key replacement; its dates (settlements: a month earlier too) are reopened.
#[tokio::test]
async fn a_file_that_cannot_merge_is_moved_aside_and_its_dates_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().to_str().unwrap()).unwrap();
    for (id, part) in [
        ("upstream_msg", "month=2025-01"),
        ("ad_settlement", "month=2024-03"),
    ] {
        let r = catalog::find(id).unwrap();
        let rel = file_rel(id, "a", part);
        let junk = Bytes::from_static(b"PAR1 not really");
        store
            .write(&rel, junk.clone(), &Default::default())
            .await
            .unwrap();
        crate::state::update(&store, id, "a", |st| {
            st.record(
                &[crate::state::LoadedWindow::new(
                    w("2023-12-01", "2025-02-10"),
                    false,
                )],
                parse("2025-02-10").unwrap(),
                chrono::Utc::now(),
            )
        })
        .await
        .unwrap();
        let e = if r.replace() == catalog::Replace::ByKey {
            drop_keys_committed(&store, r, "a", part, &Default::default(), Compression::Zstd)
                .await
                .map(|(n, _)| n)
        } else {
            commit_partition(
                &store,
                r,
                "a",
                part,
                &[w("2025-01-02", "2025-01-02")],
                &[],
                Compression::Zstd,
            )
            .await
            .map(|c| c.rows)
        };
        let Err(LoadError::Quarantined {
            moved_to,
            begin,
            end,
            ..
        }) = e
        else {
            panic!("{id}: {e:?}");
        };
        assert!(
            store.read(&rel).await.unwrap().is_none(),
            "{id}: out of the table"
        );
        let moved = moved_to.strip_prefix(dir.path().to_str().unwrap()).unwrap();
        assert!(
            moved.starts_with("/_wxcube/quarantine/") && moved.ends_with(&rel),
            "{moved}"
        );
        assert_eq!(
            store
                .read(moved.trim_start_matches('/'))
                .await
                .unwrap()
                .unwrap()
                .0,
            junk
        );
        let (st, _) = crate::state::read(&store, id, "a").await.unwrap();
        // Reopened: still loaded, but provisional, so the next run fetches them.
        let open = |d: &str| {
            let d = parse(d).unwrap();
            st.loaded
                .iter()
                .find(|x| x.begin <= d && d <= x.end)
                .map(|x| x.provisional)
        };
        let (first, last) = partition_dates(part).unwrap();
        assert_eq!(end, last);
        for d in [first, last] {
            assert_eq!(open(&crate::dates::fmt(d)), Some(true), "{id} {d}");
        }
        let next = crate::dates::fmt(last.succ_opt().unwrap());
        assert_eq!(open(&next), Some(false), "{id}: the next month stays final");
        if r.replace() == catalog::Replace::ByKey {
            assert_eq!(begin, parse("2024-01-30").unwrap(), "31 days before");
            assert_eq!(
                open("2024-02-15"),
                Some(true),
                "settled before the rows' dates"
            );
        } else {
            assert_eq!(begin, first);
            assert_eq!(open("2024-12-31"), Some(false));
        }
    }
}

#[tokio::test]
async fn drop_keys_removes_only_those_keys() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().to_str().unwrap()).unwrap();
    let r = catalog::find("ad_settlement").unwrap();
    let row = |date: &str, month: &str, order: i32| {
        format!(
            r#"{{"date":"{date}","zone":"z","month":"{month}","order":{order},"sett_status":5,"settled_revenue":1,"slot_revenue":[]}}"#
        )
    };
    let body = format!(
        r#"{{"list":[{},{}]}}"#,
        row("2024-03-25", "202403", 1),
        row("2024-03-10", "202402", 2)
    );
    let b = crate::transform::decode_value(r, &serde_json::from_str(&body).unwrap())
        .unwrap()
        .batch;
    commit_partition(
        &store,
        r,
        "a",
        "month=2024-03",
        &[],
        &[b],
        Compression::Zstd,
    )
    .await
    .unwrap();
    let moved = format!(r#"{{"list":[{}]}}"#, row("2024-04-10", "202403", 1));
    let m = crate::transform::decode_value(r, &serde_json::from_str(&moved).unwrap())
        .unwrap()
        .batch;
    let keys = keys_of(r, &[m]).unwrap();
    assert_eq!(
        drop_keys_committed(&store, r, "a", "month=2024-03", &keys, Compression::Zstd)
            .await
            .unwrap()
            .0,
        1
    );
    let t = read_table(&store, r, "a").await.unwrap().unwrap();
    assert_eq!(t.num_rows(), 1);
    let months = t
        .column_by_name("settlement_month")
        .unwrap()
        .as_string::<i32>();
    assert_eq!(months.value(0), "202402");
    assert_eq!(
        drop_keys_committed(&store, r, "a", "month=2024-03", &keys, Compression::Zstd)
            .await
            .unwrap()
            .0,
        0
    );
}

fn settlements(rows: &[(&str, &str, i32)]) -> RecordBatch {
    let r = catalog::find("ad_settlement").expect("catalogue");
    let items: Vec<String> = rows
        .iter()
        .map(|(date, month, order)| {
            format!(
                r#"{{"date":"{date}","zone":"z","month":"{month}","order":{order},"sett_status":5,"settled_revenue":1,"slot_revenue":[]}}"#
            )
        })
        .collect();
    let body = format!(r#"{{"list":[{}]}}"#, items.join(","));
    crate::transform::decode_value(r, &serde_json::from_str(&body).expect("json"))
        .expect("decode")
        .batch
}

/// (partition, settlement order) of every row stored.
async fn stored(store: &Store) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for f in store.list("ad_settlement/").await.expect("list") {
        let (bytes, _) = store.read(&f).await.expect("read").expect("file");
        for b in decode_file(bytes).expect("parquet") {
            let dates = b.column(0).as_primitive::<Date32Type>();
            for i in 0..b.num_rows() {
                out.push((
                    f.split('/').nth(2).unwrap_or("").to_string(),
                    crate::dates::fmt(from_date32(dates.value(i))),
                ));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn a_settlement_whose_date_moved_leaves_its_old_partition_even_one_also_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path().to_str().expect("utf8")).expect("store");
    let r = catalog::find("ad_settlement").expect("catalogue");
    let retry = RetryPolicy::default();
    let log = changes::Log::new(
        Arc::new(Store::open(dir.path().to_str().expect("utf8")).expect("store")),
        "20240101T000000Z-00000001",
    );
    // Account "a", monthly, zstd.
    let (st, retry, log) = (&store, &retry, &log);
    let commit = |b: RecordBatch| async move {
        keyed::commit_keyed(
            st,
            r,
            "a",
            &[b],
            Partition::Month,
            Compression::Zstd,
            retry,
            log,
        )
        .await
    };
    let first = settlements(&[("2024-03-25", "202403", 2), ("2024-03-10", "202403", 1)]);
    let (parts, _, res) = commit(first).await;
    res.expect("commit");
    assert_eq!(parts, vec!["month=2024-03".to_string()]);
    // The second half of March now settles in April; the first half stays in March.
    let again = settlements(&[("2024-04-02", "202403", 2), ("2024-03-10", "202403", 1)]);
    let (parts, files, res) = commit(again).await;
    res.expect("commit");
    assert_eq!(files, 2);
    // Both partitions were rewritten by the second pass: both are in the change log.
    let logged: Vec<String> = log.take().into_iter().map(|c| c.partition).collect();
    assert_eq!(logged, ["month=2024-03", "month=2024-03", "month=2024-04"]);
    assert_eq!(
        parts,
        vec!["month=2024-03".to_string(), "month=2024-04".to_string()]
    );
    assert_eq!(
        stored(&store).await,
        vec![
            ("month=2024-03".to_string(), "2024-03-10".to_string()),
            ("month=2024-04".to_string(), "2024-04-02".to_string()),
        ],
        "each settlement once, in the partition of its current date"
    );
}

/// Top-level columns carry min/max statistics (readers prune row groups by them); the
/// leaves of list columns carry none.
#[test]
fn statistics_on_top_level_columns_only() {
    let batch = detail_day(3, "2026-02-01");
    let bytes = encode(&batch, Compression::Zstd).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
    let rg = reader.metadata().row_group(0);
    let (mut top, mut nested) = (0, 0);
    for c in rg.columns() {
        if c.column_path().parts().len() == 1 {
            assert!(c.statistics().is_some(), "{:?}", c.column_path());
            top += 1;
        } else {
            assert!(c.statistics().is_none(), "{:?}", c.column_path());
            nested += 1;
        }
    }
    assert!(top > 10 && nested >= 4, "{top} top-level, {nested} nested");
}
