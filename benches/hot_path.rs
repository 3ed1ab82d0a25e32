//! The hot path per report family: JSON body → RecordBatch (`decode`), RecordBatch →
//! Parquet bytes (`encode`), and the same bytes parsed into `serde_json::Value` as the
//! floor a tree-building decoder cannot beat.
//!
//! Bodies are the simulator's (`wxcube::sim::respond`) for one window of the report's span,
//! as one call returns them. Encode runs on a month of one report's rows (what the loader
//! writes per partition), sorted by the natural key as the loader sorts them.
//!
//! `cargo bench --bench hot_path`; `make bench` also collects the results into
//! target/bench-report.json.

use std::hint::black_box;
use std::time::Duration;

use arrow::compute::concat_batches;
use chrono::NaiveDate;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use wxcube::catalog::{self, Report};
use wxcube::load;
use wxcube::pipeline::Compression;
use wxcube::sim::{self, SimConfig};
use wxcube::transform;

/// (family, report): one report of each response shape.
const FAMILIES: [(&str, &str); 6] = [
    ("user", "user_summary"),
    ("article_new", "article_read"),
    ("article_new", "article_total_detail"),
    ("message_hour", "upstream_msg_hour"),
    ("interface_hour", "interface_summary_hour"),
    ("legacy_article_total", "article_total"),
];

const APP: &str = "wxbench000000001";

fn day(s: &str) -> NaiveDate {
    wxcube::dates::parse(s).expect("a valid date literal")
}

fn config() -> SimConfig {
    // Articles as a busy account publishes them, so article bodies are realistically long.
    serde_json::from_str(r#"{"seed":1,"articles_per_day":20}"#).expect("sim config")
}

/// The body of the call covering `span` days from `begin`.
fn body(cfg: &SimConfig, today: NaiveDate, r: &'static Report, begin: NaiveDate) -> Vec<u8> {
    let end = begin + chrono::Duration::days(i64::from(r.span) - 1);
    sim::respond(cfg, today, r, APP, begin, end)
        .to_string()
        .into_bytes()
}

fn hot_path(c: &mut Criterion) {
    let cfg = config();
    let today = day("2026-03-01");
    for (family, id) in FAMILIES {
        let r = catalog::find(id).expect("catalogue report");
        // A window in February 2026: every report, new family included, has data there.
        let one = body(&cfg, today, r, day("2026-02-02"));
        let rows = transform::decode(r, &one)
            .expect("decodes")
            .batch
            .num_rows() as u64;
        let mut g = c.benchmark_group(format!("{family}/{id}"));
        g.throughput(Throughput::ElementsAndBytes {
            elements: rows,
            bytes: one.len() as u64,
        });
        g.bench_function("decode", |b| {
            b.iter(|| transform::decode(r, black_box(&one)).map(|d| d.batch.num_rows()))
        });
        g.bench_function("decode_reference", |b| {
            b.iter(|| transform::decode_reference(r, black_box(&one)).map(|d| d.batch.num_rows()))
        });
        g.bench_function("serde_json_value", |b| {
            b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&one)).map(|_| ()))
        });

        // A month of rows, as one partition file.
        let mut parts = Vec::new();
        let mut d = day("2026-01-01");
        while d <= day("2026-01-31") {
            parts.push(
                transform::decode(r, &body(&cfg, today, r, d))
                    .expect("decodes")
                    .batch,
            );
            d += chrono::Duration::days(i64::from(r.span));
        }
        let month = concat_batches(&transform::schema(r), &parts).expect("same schema");
        let month = load::sort(r, &month).expect("sorts");
        let out = load::encode(&month, Compression::Zstd).expect("encodes");
        g.throughput(Throughput::ElementsAndBytes {
            elements: month.num_rows() as u64,
            bytes: out.len() as u64,
        });
        g.bench_function("encode_zstd", |b| {
            b.iter(|| load::encode(black_box(&month), Compression::Zstd).map(|b| b.len()))
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    // Short runs: `make bench` stays within a few minutes on two cores.
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = hot_path
}
criterion_main!(benches);
