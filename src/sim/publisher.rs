//! Publisher (流量主) data for `GET /publisher/stat` (reference §2.6): ad-slot and
//! commission-product stats per day, and half-month settlements. Pure functions of (seed,
//! app_id, report, date), like the datacube data.

use chrono::{Datelike, Duration, NaiveDate};
use serde_json::{json, Value};

use super::rng::{day, hs, Rng};
use super::{PublisherPaging, SimConfig};
use crate::catalog::{Dataset, Report};

const SLOTS: &[(i64, &str)] = &[
    (3_030_046_789_020_061, "SLOT_ID_BIZ_BOTTOM"),
    (3_030_046_789_020_062, "SLOT_ID_BIZ_MID_CONTEXT"),
    (3_030_046_789_020_063, "SLOT_ID_BIZ_VIDEO_END"),
];

/// Since 2024-08-16, calls without `ad_slot` get one row per day without slot fields.
fn slot_rows_until() -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 8, 15).unwrap_or(NaiveDate::MIN)
}

fn adpos_row(r: &mut Rng, d: NaiveDate, slot: Option<(i64, &str)>) -> Value {
    let req = r.int(20_000, 500_000) as i64;
    let exp = (req as f64 * r.range(0.3, 0.6)) as i64;
    let clicks = (exp as f64 * r.range(0.01, 0.08)) as i64;
    let income = (exp as f64 * r.range(0.1, 0.5)) as i64;
    let mut v = json!({
        "date": d.format("%Y-%m-%d").to_string(),
        "req_succ_count": req, "exposure_count": exp,
        "exposure_rate": if req > 0 { exp as f64 / req as f64 } else { 0.0 },
        "click_count": clicks,
        "click_rate": if exp > 0 { clicks as f64 / exp as f64 } else { 0.0 },
        "income": income,
        "ecpm": if exp > 0 { income as f64 * 1000.0 / exp as f64 } else { 0.0 },
    });
    if let (Some((id, name)), Some(o)) = (slot, v.as_object_mut()) {
        o.insert("slot_id".into(), json!(id));
        o.insert("ad_slot".into(), json!(name));
    }
    v
}

fn half_months(begin: NaiveDate, end: NaiveDate) -> Vec<(NaiveDate, NaiveDate, u32)> {
    let mut out = Vec::new();
    let mut d = NaiveDate::from_ymd_opt(begin.year(), begin.month(), 1).unwrap_or(begin);
    while d <= end {
        let mid = d + Duration::days(14);
        let last = crate::dates::month_end(d);
        for (a, b, order) in [(d, mid, 1), (mid + Duration::days(1), last, 2)] {
            if a <= end && b >= begin {
                out.push((a, b, order));
            }
        }
        d = last + Duration::days(1);
    }
    out
}

/// The whole (unpaged) answer for a range, in the API's shape.
pub fn respond(
    cfg: &SimConfig,
    today: NaiveDate,
    report: &Report,
    app_id: &str,
    begin: NaiveDate,
    end: NaiveDate,
) -> Value {
    let app = hs(app_id);
    let from = begin.max(report.first_day());
    let mut list = Vec::new();
    match report.dataset {
        Dataset::AdSettlement => {
            // The entity's totals are all-time figures, whatever the range asked.
            let (mut all_rev, mut settled_all) = (0i64, 0i64);
            let mut rows = Vec::new();
            for (a, b, order) in half_months(report.first_day(), today) {
                // A half-month is settled from the 10th after it ends; not before it exists.
                if b >= today {
                    continue;
                }
                let date = b + Duration::days(10);
                let mut r = Rng::new(&[cfg.seed, app, hs("settlement"), day(a)]);
                let mut slots = Vec::new();
                let mut total = 0i64;
                for (_, name) in SLOTS.iter().take(1 + (r.next_u64() % 3) as usize) {
                    let rev = r.int(10_000, 5_000_000) as i64;
                    total += rev;
                    slots.push(json!({"slot_id": name, "slot_settled_revenue": rev}));
                }
                let status = if date + Duration::days(20) < today {
                    5
                } else if date < today {
                    4
                } else {
                    1
                };
                all_rev += total;
                if status >= 2 {
                    settled_all += total;
                }
                if b < from || a > end {
                    continue;
                }
                rows.push(json!({
                    "date": date.format("%Y-%m-%d").to_string(),
                    "zone": format!("{}年{}月{}日至{}日", a.year(), a.month(), a.day(), b.day()),
                    "month": format!("{:04}{:02}", a.year(), a.month()),
                    "order": order,
                    "sett_status": status,
                    "settled_revenue": total,
                    "sett_no": format!("ST{:04}{:02}{}{:06}", a.year(), a.month(), order, r.next_u64() % 1_000_000),
                    "mail_send_cnt": (r.next_u64() % 3).to_string(),
                    "slot_revenue": slots,
                }));
            }
            // Newest first, as WeChat sorts it.
            rows.reverse();
            list = rows;
            json!({
                "base_resp": {"err_msg": "ok", "ret": 0},
                "body": "深圳市腾讯计算机系统有限公司",
                "revenue_all": all_rev,
                "penalty_all": 0,
                "settled_revenue_all": settled_all,
                "settlement_list": list,
                "total_num": 0,
            })
        }
        // The daily ones: ad positions and CPS (datacube reports are answered by `data`).
        _ => {
            let api = report.api;
            let mut d = from;
            while d <= end {
                let mut r = Rng::new(&[cfg.seed, app, hs(api), day(d)]);
                if report.dataset == Dataset::AdPosition {
                    if d <= slot_rows_until() {
                        for &(id, name) in SLOTS {
                            list.push(adpos_row(&mut r, d, Some((id, name))));
                        }
                    } else {
                        list.push(adpos_row(&mut r, d, None));
                    }
                } else if !r.chance(0.1) {
                    let exp = r.int(1_000, 30_000) as i64;
                    let clicks = (exp as f64 * r.range(0.01, 0.05)) as i64;
                    let orders = (clicks as f64 * r.range(0.0, 0.05)) as i64;
                    let fee = orders * r.int(1_000, 50_000) as i64;
                    list.push(json!({
                        "date": d.format("%Y-%m-%d").to_string(),
                        "exposure_count": exp, "click_count": clicks,
                        "click_rate": if exp > 0 { clicks as f64 / exp as f64 } else { 0.0 },
                        "order_count": orders,
                        "order_rate": if clicks > 0 { orders as f64 / clicks as f64 } else { 0.0 },
                        "total_fee": fee, "total_commission": fee / 8,
                    }));
                }
                d += Duration::days(1);
            }
            json!({"base_resp": {"err_msg": "ok", "ret": 0}, "list": list, "total_num": 0})
        }
    }
}

/// One page of the answer, with `total_num` set, paged as `cfg` says.
pub fn page(cfg: &SimConfig, mut whole: Value, list_key: &str, page: usize, size: usize) -> Value {
    let items = whole
        .get(list_key)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let total = cfg.publisher_total_num.unwrap_or(items.len() as u64);
    let (page, size) = match cfg.publisher_paging {
        PublisherPaging::Documented => (page, size),
        PublisherPaging::IgnoresPage => (1, size),
        PublisherPaging::Unpaged => (1, usize::MAX),
    };
    let start = (page.saturating_sub(1)).saturating_mul(size);
    let slice: Vec<Value> = items.into_iter().skip(start).take(size).collect();
    if let Some(o) = whole.as_object_mut() {
        o.insert(list_key.into(), Value::Array(slice));
        o.insert("total_num".into(), json!(total));
    }
    whole
}
