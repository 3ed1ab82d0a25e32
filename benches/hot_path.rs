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

/// The allocator the `wxcube` binary runs with (src/main.rs), so the figures are its own.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use chrono::NaiveDate;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use wxcube::catalog::{self, Kind, Report, Shape, Src};
use wxcube::load;
use wxcube::pipeline::Compression;
use wxcube::sim::{self, SimConfig};
use wxcube::transform;

/// (family, report): one report of each response shape, and every hourly report.
const FAMILIES: [(&str, &str); 8] = [
    ("user", "user_summary"),
    ("article_new", "article_read"),
    ("article_new", "article_total_detail"),
    ("message_hour", "upstream_msg_hour"),
    ("interface_hour", "interface_summary_hour"),
    ("legacy_article_total", "article_total"),
    ("legacy_hour", "user_read_hour"),
    ("legacy_hour", "user_share_hour"),
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

/// For flat reports: `{"list": [raw item fields]}` as arrow-json would read it (codes as
/// integers, no labels, no `hour`): what arrow's decoder does before our catalogue logic.
fn raw_schema(r: &Report) -> Option<SchemaRef> {
    if r.shape != Shape::List {
        return None;
    }
    let mut fields: Vec<Field> = Vec::new();
    for c in r.columns {
        let Src::Item(name) = c.src else {
            return None;
        };
        let t = match c.kind {
            Kind::Date => DataType::Date32,
            Kind::Int64 => DataType::Int64,
            Kind::Int32 | Kind::Hour | Kind::Label(_) => DataType::Int32,
            Kind::Float64 => DataType::Float64,
            Kind::Utf8 => DataType::Utf8,
            Kind::Bool => DataType::Boolean,
            Kind::ReadSources | Kind::JumpPositions | Kind::SlotRevenue => return None,
        };
        if fields.iter().all(|f| f.name() != name) {
            fields.push(Field::new(name, t, c.nullable));
        }
    }
    let item = Field::new("item", DataType::Struct(Fields::from(fields)), true);
    Some(Arc::new(Schema::new(vec![Field::new(
        "list",
        DataType::List(Arc::new(item)),
        true,
    )])))
}

fn arrow_json(schema: &SchemaRef, body: &[u8]) -> Option<usize> {
    let mut d = arrow_json::ReaderBuilder::new(Arc::clone(schema))
        .build_decoder()
        .ok()?;
    d.decode(body).ok()?;
    let b = d.flush().ok()??;
    let list = b
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::ListArray>()?;
    Some(list.values().len())
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
        if let Some(raw) = raw_schema(r) {
            assert_eq!(
                arrow_json(&raw, &one),
                Some(rows as usize),
                "{id}: arrow-json rows"
            );
            g.bench_function("arrow_json_raw", |b| {
                b.iter(|| arrow_json(&raw, black_box(&one)))
            });
        }

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
        let month = concat_batches(&catalog::schema(r), &parts).expect("same schema");
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
