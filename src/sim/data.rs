//! The data a WeChat account "has": followers, published articles and their reading,
//! upstream messages and server callbacks, all pure functions of (seed, app_id, date).
//!
//! One model feeds every report so the tables agree with each other: the articles of a
//! day are the same in article_read, article_share, article_total_detail, biz_summary and
//! the legacy reports (which see only the mass-sent ones); user_summary's net growth is
//! user_cumulate's day-to-day difference.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use chrono::{Datelike, Duration, NaiveDate, Weekday};
use serde_json::{json, Map, Value};

use super::rng::{count, day, hs, key, split, Rng};
use super::SimConfig;
use crate::catalog::{Cadence, Dataset, Report};
use crate::dates::{fmt, month_end};

/// Days an article is read after publishing (day 0 = the publish day).
const READ_LIFE: i64 = 30;
/// Stat days in getarticletotal `details` (send day + 6).
const TOTAL_DAYS: i64 = 7;
/// Stat days in getarticletotaldetail `detail_list` (publish day + 29).
const TOTAL_DETAIL_DAYS: i64 = 30;

/// Reading scenes of the new family, in the order of `Daily::scenes`. The last one is not
/// in WeChat's documented list: it appears rarely, as unknown scenes do.
const SCENES: [&str; 8] = [
    "公众号消息",
    "聊天会话",
    "朋友圈",
    "公众号主页",
    "推荐",
    "搜一搜",
    "其他",
    "视频号",
];

/// Relative activity per China hour (reading and messaging peak at commute, lunch, night).
const HOUR_CURVE: [f64; 24] = [
    0.8, 0.4, 0.2, 0.15, 0.15, 0.3, 0.9, 2.2, 3.0, 2.4, 2.0, 2.1, 2.8, 2.2, 1.8, 1.7, 1.8, 2.0,
    2.5, 2.8, 3.2, 3.4, 2.9, 1.8,
];

const TITLE_HEADS: [&str; 10] = [
    "独家", "深度", "快讯", "干货", "图解", "盘点", "专访", "周末", "早报", "观察",
];
const TITLE_TOPICS: [&str; 16] = [
    "城市夜跑路线全攻略",
    "新品发布会现场回顾",
    "十个提升效率的小技巧",
    "这家老店开了三十年",
    "春季出行安全提醒",
    "一文读懂新政策变化",
    "年度用户调研结果出炉",
    "会员日福利限时开启",
    "工程师的一天",
    "如何挑选一台好咖啡机",
    "本周活动报名开始",
    "读者来信精选",
    "数据告诉你的消费趋势",
    "门店营业时间调整通知",
    "幕后故事第一次公开",
    "给新手的入门指南",
];

// Domain tags keep the random streams of different quantities apart.
const T_PROFILE: u64 = 1;
const T_CUM: u64 = 2;
const T_SUMMARY: u64 = 3;
const T_CUMROW: u64 = 4;
const T_ARTICLES: u64 = 5;
const T_ARTICLE: u64 = 6;
const T_DAILY: u64 = 7;
const T_STAT: u64 = 8;
const T_READ: u64 = 9;
const T_HOURS: u64 = 10;
const T_SHARE: u64 = 11;
const T_MSG: u64 = 12;
const T_DIST: u64 = 13;
const T_IFACE: u64 = 14;
const T_DELAY: u64 = 15;
const T_ORDER: u64 = 16;

fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap_or(NaiveDate::MIN)
}

fn round7(x: f64) -> f64 {
    (x * 1e7).round() / 1e7
}

fn days(d: i64) -> Duration {
    Duration::days(d)
}

/// The success body of a data endpoint for this request, without validation or faults.
pub fn respond(
    cfg: &SimConfig,
    today: NaiveDate,
    report: &'static Report,
    app_id: &str,
    begin: NaiveDate,
    end: NaiveDate,
) -> Value {
    let g = Gen::new(cfg, app_id);
    let from = begin.max(report.first_day());
    let mut list = Vec::new();
    let mut d = from;
    while d <= end {
        // A period shows once it has completely ended before today (and WeChat has
        // published it).
        let label = match report.cadence {
            Cadence::Daily => cfg.published(d, today),
            Cadence::Weekly => d.weekday() == Weekday::Mon && cfg.published(d + days(6), today),
            Cadence::Monthly => d.day() == 1 && cfg.published(month_end(d), today),
        };
        if label {
            // Cumulative series stop at the last published stat day.
            let published_to = today - days(i64::from(cfg.unpublished_days));
            g.rows(report, d, published_to, &mut list);
        }
        d += days(1);
    }
    Rng::new(&[g.seed, g.app, hs(report.api), day(begin), day(end), T_ORDER]).shuffle(&mut list);
    let mut body = Map::new();
    body.insert("list".into(), Value::Array(list));
    if report.has_is_delay() {
        body.insert(
            "is_delay".into(),
            Value::Bool(g.is_delay(report, from, end, today)),
        );
    }
    Value::Object(body)
}

/// Per-account constants.
struct Profile {
    followers0: f64,
    growth: f64,
    open_rate: f64,
    msg_rate: f64,
    avg_ms: f64,
    msg_id_base: u64,
}

#[derive(Clone)]
struct Article {
    msgid: String,
    key: u64,
    publish_type: i64,
    title: String,
    content_url: String,
    target: i64,
    reach: f64,
    first_share: f64,
    decay: f64,
    has_ori: bool,
    tips: bool,
    video_scene: bool,
    share_rate: f64,
    fav_rate: f64,
    zaikan_rate: f64,
    like_rate: f64,
    comment_rate: f64,
    subscribe_rate: f64,
    finish: f64,
    activetime: f64,
    jump: [f64; 5],
    // Which optional fields WeChat sends for this article.
    total_user_source: bool,
    total_url: bool,
    kanyikan: bool,
    detail_title: bool,
    detail_url: bool,
}

/// (ref_hour or none for a daily row, (read users, reads), (share users, shares)).
type HourCell = (Option<i64>, (i64, i64), (i64, i64));

/// One article's activity on one day (day `k` after publishing).
#[derive(Clone, Copy, Default)]
struct Daily {
    read: i64,
    read_count: i64,
    scenes: [i64; 8],
    scene_counts: [i64; 8],
    ori: i64,
    ori_count: i64,
    share: i64,
    share_count: i64,
    fav: i64,
    fav_count: i64,
    zaikan: i64,
    like: i64,
    comment: i64,
    praise_money: i64,
    subscribe: i64,
    /// Shares to Moments from the conversation, from Moments, from elsewhere: (users, count).
    feed_share: [(i64, i64); 3],
}

impl Daily {
    fn add(&mut self, o: &Daily) {
        self.read += o.read;
        self.read_count += o.read_count;
        for i in 0..8 {
            self.scenes[i] += o.scenes[i];
            self.scene_counts[i] += o.scene_counts[i];
        }
        self.ori += o.ori;
        self.ori_count += o.ori_count;
        self.share += o.share;
        self.share_count += o.share_count;
        self.fav += o.fav;
        self.fav_count += o.fav_count;
        self.zaikan += o.zaikan;
        self.like += o.like;
        self.comment += o.comment;
        self.praise_money += o.praise_money;
        self.subscribe += o.subscribe;
        for i in 0..3 {
            self.feed_share[i].0 += o.feed_share[i].0;
            self.feed_share[i].1 += o.feed_share[i].1;
        }
    }

    fn read_user_source(&self) -> Value {
        let mut v = vec![json!({"user_count": self.read, "scene_desc": "全部"})];
        for (i, n) in self.scenes.iter().enumerate() {
            if *n > 0 {
                v.push(json!({"user_count": n, "scene_desc": SCENES[i]}));
            }
        }
        Value::Array(v)
    }
}

pub(crate) struct Gen {
    seed: u64,
    app: u64,
    articles_per_day: f64,
    profile: Profile,
    articles: RefCell<HashMap<NaiveDate, Rc<Vec<Article>>>>,
}

impl Gen {
    pub(crate) fn new(cfg: &SimConfig, app_id: &str) -> Self {
        let seed = cfg.seed;
        let app = hs(app_id);
        let mut r = Rng::new(&[seed, app, T_PROFILE]);
        let followers0 = r.log_range(2_000.0, 300_000.0);
        let profile = Profile {
            followers0,
            growth: followers0 * r.range(0.0002, 0.002),
            open_rate: r.range(0.03, 0.2),
            msg_rate: r.range(0.0005, 0.005),
            avg_ms: r.range(80.0, 600.0),
            msg_id_base: 2_000_000_000 + r.next_u64() % 200_000_000,
        };
        Gen {
            seed,
            app,
            // Bounded so a typo cannot make every request generate millions of articles.
            articles_per_day: f64::from(cfg.articles_per_day.min(64)),
            profile,
            articles: RefCell::new(HashMap::new()),
        }
    }

    fn rows(&self, report: &Report, d: NaiveDate, today: NaiveDate, out: &mut Vec<Value>) {
        use Dataset as D;
        match report.dataset {
            D::UserSummary => self.user_summary(d, out),
            D::UserCumulate => self.user_cumulate(d, out),
            D::ArticleRead => self.article_read(d, out),
            D::ArticleShare => self.article_share(d, out),
            D::BizSummary => self.biz_summary(d, out),
            D::ArticleTotalDetail => self.article_total_detail(d, today, out),
            D::UpstreamMsg => self.upstream_msg(d, out),
            D::UpstreamMsgHour => self.upstream_msg_hour(d, out),
            D::UpstreamMsgWeek => self.upstream_msg_period(d, d + days(6), 0.8, out),
            D::UpstreamMsgMonth => self.upstream_msg_period(d, month_end(d), 0.65, out),
            D::UpstreamMsgDist => self.upstream_dist(d, d, out),
            D::UpstreamMsgDistWeek => self.upstream_dist(d, d + days(6), out),
            D::UpstreamMsgDistMonth => self.upstream_dist(d, month_end(d), out),
            D::InterfaceSummary => self.interface(d, false, out),
            D::InterfaceSummaryHour => self.interface(d, true, out),
            D::ArticleSummary => self.article_summary(d, out),
            D::ArticleTotal => self.article_total(d, today, out),
            D::UserRead => self.user_read(d, false, out),
            D::UserReadHour => self.user_read(d, true, out),
            D::UserShare => self.user_share(d, false, out),
            D::UserShareHour => self.user_share(d, true, out),
            // Answered by `sim::publisher`: no datacube rows.
            D::AdPosition | D::AdCps | D::AdSettlement => {}
        }
    }

    /// Whether WeChat flags the response provisional: on some days (per account and
    /// `today`) yesterday's statistics are still being computed.
    fn is_delay(&self, report: &Report, from: NaiveDate, end: NaiveDate, today: NaiveDate) -> bool {
        let yesterday = today - days(1);
        if from > end || !Rng::new(&[self.seed, self.app, T_DELAY, day(today)]).chance(0.3) {
            return false;
        }
        if report.dataset == Dataset::ArticleTotalDetail {
            // Articles published in the window have a stat day for yesterday.
            from <= yesterday && end + days(TOTAL_DETAIL_DAYS - 1) >= yesterday
        } else {
            from <= yesterday && yesterday <= end
        }
    }

    // ---- followers ----

    fn cumulate(&self, d: NaiveDate) -> i64 {
        let p = &self.profile;
        let t = (d - ymd(2014, 12, 1)).num_days().max(0) as f64;
        let base = p.followers0 + p.growth * t;
        let noise = Rng::new(&[self.seed, self.app, T_CUM, day(d)]).range(-1.0, 1.0)
            * (base * 0.0008 + 2.0);
        count(base + noise)
    }

    fn user_summary(&self, d: NaiveDate, out: &mut Vec<Value>) {
        let mut r = Rng::new(&[self.seed, self.app, T_SUMMARY, day(d)]);
        let now = self.cumulate(d);
        let delta = now - self.cumulate(d - days(1));
        let cancel = count(now as f64 * r.range(0.0002, 0.0012)).max(-delta);
        let new = delta + cancel;
        // (code, weight, available from, available until)
        let before = |y, m| d < ymd(y, m, 1);
        let mut channels: Vec<(i64, f64)> = vec![(0, 0.15)];
        let candidates: [(i64, f64, bool); 15] = [
            (1, 0.2, true),
            (17, 0.05, true),
            (30, 0.25, true),
            (57, 0.12, true),
            (149, 0.03, !before(2017, 1)),
            (161, 0.04, !before(2020, 4)),
            (100, 0.06, !before(2020, 6)),
            (200, 0.05, !before(2020, 10)),
            (201, 0.02, !before(2021, 1)),
            (43, 0.04, before(2020, 1)),
            (75, 0.03, before(2020, 1) && !before(2017, 1)),
            (78, 0.03, before(2020, 1) && !before(2017, 1)),
            (51, 0.03, before(2023, 6)),
            (35, 0.03, before(2016, 1)),
            (39, 0.03, before(2016, 1)),
        ];
        for (code, w, available) in candidates {
            if available && r.chance(0.65) {
                channels.push((code, w * r.range(0.5, 1.5)));
            }
        }
        if r.chance(0.03) {
            channels.push((999, 0.02));
        }
        let new_w: Vec<f64> = channels.iter().map(|c| c.1).collect();
        let cancel_w: Vec<f64> = channels
            .iter()
            .map(|c| if c.0 == 0 { 4.0 } else { c.1 })
            .collect();
        let news = split(new, &new_w);
        let cancels = split(cancel, &cancel_w);
        for (i, (code, _)) in channels.iter().enumerate() {
            if *code == 0 || news[i] > 0 || cancels[i] > 0 {
                out.push(json!({
                    "ref_date": fmt(d), "user_source": code,
                    "new_user": news[i], "cancel_user": cancels[i],
                }));
            }
        }
    }

    fn user_cumulate(&self, d: NaiveDate, out: &mut Vec<Value>) {
        let mut row = Map::new();
        row.insert("ref_date".into(), fmt(d).into());
        if Rng::new(&[self.seed, self.app, T_CUMROW, day(d)]).chance(0.5) {
            row.insert("user_source".into(), 0.into());
        }
        row.insert("cumulate_user".into(), self.cumulate(d).into());
        out.push(Value::Object(row));
    }

    // ---- articles ----

    /// The articles published on `d`, in message order.
    fn articles(&self, d: NaiveDate) -> Rc<Vec<Article>> {
        if let Some(a) = self.articles.borrow().get(&d) {
            return a.clone();
        }
        let list = Rc::new(self.make_articles(d));
        self.articles.borrow_mut().insert(d, list.clone());
        list
    }

    fn make_articles(&self, d: NaiveDate) -> Vec<Article> {
        let mut r = Rng::new(&[self.seed, self.app, T_ARTICLES, day(d)]);
        let n = r.poisson(self.articles_per_day);
        let mut out = Vec::new();
        if n == 0 {
            return out;
        }
        let halves = n > 1 && r.chance(0.3);
        let target = count(self.cumulate(d) as f64 * r.range(0.9, 0.98));
        let day_index = (d - ymd(2014, 1, 1)).num_days().max(0) as u64;
        let mut left = n;
        let mut message = 0u64;
        while left > 0 {
            let size = if halves && message == 0 {
                n.div_ceil(2)
            } else {
                left
            }
            .min(8)
            .min(left);
            let publish_type = if message == 0 && r.chance(0.85) {
                0
            } else if r.chance(0.03) {
                2
            } else {
                1
            };
            let msg_data_id = self.profile.msg_id_base + day_index * 8 + message.min(7);
            for index in 1..=size {
                out.push(self.make_article(d, msg_data_id, index, publish_type, target));
            }
            left -= size;
            message += 1;
        }
        out
    }

    fn make_article(
        &self,
        d: NaiveDate,
        msg_data_id: u64,
        index: u64,
        publish_type: i64,
        target: i64,
    ) -> Article {
        let k = key(&[self.seed, self.app, T_ARTICLE, msg_data_id, index]);
        let mut r = Rng::new(&[k]);
        let notified = publish_type == 0;
        let position = match index {
            1 => 1.0,
            2 => 0.4,
            _ => 0.22,
        };
        let reach = if notified {
            target as f64 * self.profile.open_rate * position * r.log_range(0.5, 2.0)
        } else {
            target as f64 * 0.01 * r.log_range(0.3, 3.0)
        };
        let head = TITLE_HEADS[(r.next_u64() % TITLE_HEADS.len() as u64) as usize];
        let topic = TITLE_TOPICS[(r.next_u64() % TITLE_TOPICS.len() as u64) as usize];
        let title = if r.chance(0.5) {
            format!("{head}｜{topic}")
        } else {
            topic.to_string()
        };
        const URL_CHARS: &[u8] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let slug: String = (0..22)
            .map(|_| URL_CHARS[(r.next_u64() % 64) as usize] as char)
            .collect();
        let finish = r.range(0.3, 0.85);
        let mut jump = [0.0; 5];
        let leave = 1.0 - finish;
        let jw: Vec<f64> = (0..5)
            .map(|i| r.range(0.5, 1.5) / (i as f64 + 1.0))
            .collect();
        let jsum: f64 = jw.iter().sum();
        for i in 0..5 {
            jump[i] = leave * jw[i] / jsum;
        }
        Article {
            msgid: format!("{msg_data_id}_{index}"),
            key: k,
            publish_type,
            title,
            content_url: format!("https://mp.weixin.qq.com/s/{slug}"),
            target,
            reach,
            first_share: if notified {
                r.range(0.45, 0.7)
            } else {
                r.range(0.2, 0.4)
            },
            decay: if notified {
                r.range(0.35, 0.6)
            } else {
                r.range(0.6, 0.8)
            },
            has_ori: r.chance(0.25),
            tips: r.chance(0.15),
            video_scene: r.chance(0.03),
            share_rate: r.range(0.01, 0.05),
            fav_rate: r.range(0.002, 0.01),
            zaikan_rate: r.range(0.005, 0.02),
            like_rate: r.range(0.005, 0.03),
            comment_rate: r.range(0.0005, 0.004),
            subscribe_rate: if notified {
                r.range(0.0005, 0.002)
            } else {
                r.range(0.002, 0.008)
            },
            finish,
            activetime: r.range(0.5, 4.0),
            jump,
            total_user_source: r.chance(0.5),
            total_url: r.chance(0.1),
            kanyikan: d >= ymd(2017, 6, 1) && r.chance(0.6),
            detail_title: r.chance(0.8),
            detail_url: r.chance(0.75),
        }
    }

    /// Activity of `a` on day `k` after publishing.
    fn daily(&self, a: &Article, k: i64) -> Daily {
        if !(0..READ_LIFE).contains(&k) {
            return Daily::default();
        }
        let mut r = Rng::new(&[a.key, T_DAILY, k as u64]);
        let w = if k == 0 {
            a.first_share
        } else {
            (1.0 - a.first_share) * (1.0 - a.decay) * a.decay.powi(k as i32 - 1)
        };
        let read = count(a.reach * w * r.range(0.8, 1.2));
        let kk = k.min(5) as f64;
        let mut weights = if a.publish_type == 0 {
            [
                0.6 * 0.5f64.powi(k as i32) + 0.02,
                0.15,
                0.12,
                0.04,
                0.04 + 0.02 * kk,
                0.02 + 0.01 * kk,
                0.03,
                0.0,
            ]
        } else {
            [0.0, 0.2, 0.15, 0.2, 0.25, 0.15, 0.05, 0.0]
        };
        if a.video_scene {
            weights[7] = 0.02;
        }
        for w in weights.iter_mut() {
            *w *= r.range(0.7, 1.3);
        }
        let scenes = split(read, &weights);
        let extra = count(read as f64 * r.range(0.05, 0.35));
        let extras = split(extra, &weights);
        let mut scene_counts = [0; 8];
        let mut sc = [0; 8];
        for i in 0..8 {
            sc[i] = scenes[i];
            scene_counts[i] = scenes[i] + extras[i];
        }
        let ori = if a.has_ori {
            count(read as f64 * r.range(0.005, 0.03))
        } else {
            0
        };
        let share = count(read as f64 * a.share_rate * r.range(0.7, 1.3));
        let fav = count(read as f64 * a.fav_rate * r.range(0.7, 1.3));
        let to_feed = split(
            count(share as f64 * r.range(0.3, 0.6)),
            &[0.5, 0.35 * r.range(0.7, 1.3), 0.15],
        );
        let mut feed_share = [(0, 0); 3];
        for i in 0..3 {
            feed_share[i] = (
                to_feed[i],
                to_feed[i] + count(to_feed[i] as f64 * r.range(0.0, 0.15)),
            );
        }
        Daily {
            read,
            read_count: read + extra,
            scenes: sc,
            scene_counts,
            ori,
            ori_count: ori + count(ori as f64 * r.range(0.0, 0.3)),
            share,
            share_count: share + count(share as f64 * r.range(0.0, 0.6)),
            fav,
            fav_count: fav + count(fav as f64 * r.range(0.0, 0.2)),
            zaikan: count(read as f64 * a.zaikan_rate * r.range(0.7, 1.3)),
            like: count(read as f64 * a.like_rate * r.range(0.7, 1.3)),
            comment: count(read as f64 * a.comment_rate * r.range(0.5, 1.5)),
            praise_money: if a.tips {
                count(read as f64 * 0.0008 * r.range(0.3, 1.7)) * r.int(200, 2000) as i64
            } else {
                0
            },
            subscribe: count(read as f64 * a.subscribe_rate * r.range(0.6, 1.4)),
            feed_share,
        }
    }

    /// Every article read on `d`, with that day's activity.
    fn read_on(&self, d: NaiveDate) -> Vec<(Article, Daily)> {
        let mut out = Vec::new();
        for back in 0..READ_LIFE {
            let p = d - days(back);
            for a in self.articles(p).iter() {
                let daily = self.daily(a, back);
                out.push((a.clone(), daily));
            }
        }
        out
    }

    /// Account-level totals of a day over all articles.
    fn day_total(&self, d: NaiveDate, mass_sent_only: bool) -> Daily {
        let mut t = Daily::default();
        for (a, daily) in self.read_on(d) {
            if !mass_sent_only || a.publish_type == 0 {
                t.add(&daily);
            }
        }
        t
    }

    fn article_read(&self, d: NaiveDate, out: &mut Vec<Value>) {
        for (a, x) in self.read_on(d) {
            if x.read > 0 {
                out.push(json!({
                    "ref_date": fmt(d), "msgid": a.msgid,
                    "detail": {"read_user": x.read, "read_user_source": x.read_user_source()},
                }));
            }
        }
    }

    fn article_share(&self, d: NaiveDate, out: &mut Vec<Value>) {
        for (a, x) in self.read_on(d) {
            if x.share > 0 {
                out.push(json!({
                    "ref_date": fmt(d), "msgid": a.msgid, "detail": {"share_user": x.share},
                }));
            }
        }
    }

    fn biz_summary(&self, d: NaiveDate, out: &mut Vec<Value>) {
        let t = self.day_total(d, false);
        out.push(json!({
            "ref_date": fmt(d),
            "detail": {
                "read_user": t.read, "read_user_source": t.read_user_source(),
                "share_user": t.share, "zaikan_user": t.zaikan, "like_user": t.like,
                "comment_count": t.comment, "collection_user": t.fav,
                "redirect_ori_page_user": t.ori,
                "send_page_count": self.articles(d).len(),
            },
        }));
    }

    fn article_total_detail(&self, d: NaiveDate, today: NaiveDate, out: &mut Vec<Value>) {
        let last = (today - days(1) - d).num_days().min(TOTAL_DETAIL_DAYS - 1);
        if last < 0 {
            return;
        }
        for a in self.articles(d).iter() {
            let mut cum = Daily::default();
            let mut list = Vec::new();
            for k in 0..=last {
                cum.add(&self.daily(a, k));
                let mut r = Rng::new(&[a.key, T_STAT, k as u64]);
                let mut jump = Vec::new();
                for (i, rate) in a.jump.iter().enumerate() {
                    // Positions without data are omitted.
                    if r.chance(0.85) {
                        jump.push(
                            json!({"position": i + 1, "rate": round7(rate * r.range(0.9, 1.1))}),
                        );
                    }
                }
                let delivery = if a.target > 0 {
                    cum.read as f64 / a.target as f64
                } else {
                    0.0
                };
                list.push(json!({
                    "stat_date": fmt(d + days(k)),
                    "read_user": cum.read, "read_user_source": cum.read_user_source(),
                    "share_user": cum.share, "zaikan_user": cum.zaikan, "like_user": cum.like,
                    "comment_count": cum.comment, "collection_user": cum.fav,
                    "praise_money": cum.praise_money, "read_subscribe_user": cum.subscribe,
                    "read_delivery_rate": round7(delivery),
                    "read_finish_rate": round7((a.finish * r.range(0.97, 1.03)).min(1.0)),
                    "read_avg_activetime": round7(a.activetime * r.range(0.95, 1.05)),
                    "read_jump_position": jump,
                }));
            }
            let mut item = Map::new();
            item.insert("ref_date".into(), fmt(d).into());
            item.insert("msgid".into(), a.msgid.clone().into());
            item.insert("publish_type".into(), a.publish_type.into());
            if a.detail_title {
                item.insert("title".into(), a.title.clone().into());
            }
            if a.detail_url {
                item.insert("content_url".into(), a.content_url.clone().into());
            }
            item.insert("detail_list".into(), Value::Array(list));
            out.push(Value::Object(item));
        }
    }

    // ---- legacy article reports (mass-sent articles only) ----

    fn article_summary(&self, d: NaiveDate, out: &mut Vec<Value>) {
        for (a, x) in self.read_on(d) {
            if a.publish_type != 0 {
                continue;
            }
            // WeChat's inclusion threshold (it mixes users and counts).
            if x.read + x.ori + x.share + x.share_count + x.fav_count < 3 {
                continue;
            }
            out.push(json!({
                "ref_date": fmt(d), "msgid": a.msgid, "title": a.title,
                "int_page_read_user": x.read, "int_page_read_count": x.read_count,
                "ori_page_read_user": x.ori, "ori_page_read_count": x.ori_count,
                "share_user": x.share, "share_count": x.share_count,
                "add_to_fav_user": x.fav, "add_to_fav_count": x.fav_count,
            }));
        }
    }

    fn article_total(&self, d: NaiveDate, today: NaiveDate, out: &mut Vec<Value>) {
        let last = (today - days(1) - d).num_days().min(TOTAL_DAYS - 1);
        if last < 0 {
            return;
        }
        for a in self.articles(d).iter().filter(|a| a.publish_type == 0) {
            let mut cum = Daily::default();
            let mut details = Vec::new();
            for k in 0..=last {
                cum.add(&self.daily(a, k));
                let c = &cum;
                let mut s = json!({
                    "stat_date": fmt(d + days(k)), "target_user": a.target,
                    "int_page_read_user": c.read, "int_page_read_count": c.read_count,
                    "ori_page_read_user": c.ori, "ori_page_read_count": c.ori_count,
                    "share_user": c.share, "share_count": c.share_count,
                    "add_to_fav_user": c.fav, "add_to_fav_count": c.fav_count,
                    "int_page_from_session_read_user": c.scenes[0],
                    "int_page_from_session_read_count": c.scene_counts[0],
                    "int_page_from_hist_msg_read_user": c.scenes[3],
                    "int_page_from_hist_msg_read_count": c.scene_counts[3],
                    "int_page_from_feed_read_user": c.scenes[2],
                    "int_page_from_feed_read_count": c.scene_counts[2],
                    "int_page_from_friends_read_user": c.scenes[1],
                    "int_page_from_friends_read_count": c.scene_counts[1],
                    "feed_share_from_session_user": c.feed_share[0].0,
                    "feed_share_from_session_cnt": c.feed_share[0].1,
                    "feed_share_from_feed_user": c.feed_share[1].0,
                    "feed_share_from_feed_cnt": c.feed_share[1].1,
                    "feed_share_from_other_user": c.feed_share[2].0,
                    "feed_share_from_other_cnt": c.feed_share[2].1,
                });
                let (mut other, mut other_count) = (
                    c.scenes[6] + c.scenes[7],
                    c.scene_counts[6] + c.scene_counts[7],
                );
                if a.kanyikan {
                    s["int_page_from_kanyikan_read_user"] = c.scenes[4].into();
                    s["int_page_from_kanyikan_read_count"] = c.scene_counts[4].into();
                    s["int_page_from_souyisou_read_user"] = c.scenes[5].into();
                    s["int_page_from_souyisou_read_count"] = c.scene_counts[5].into();
                } else {
                    // Before WeChat split them out, these reads counted as "other".
                    other += c.scenes[4] + c.scenes[5];
                    other_count += c.scene_counts[4] + c.scene_counts[5];
                }
                s["int_page_from_other_read_user"] = other.into();
                s["int_page_from_other_read_count"] = other_count.into();
                details.push(s);
            }
            let mut item = Map::new();
            item.insert("ref_date".into(), fmt(d).into());
            item.insert("msgid".into(), a.msgid.clone().into());
            item.insert("title".into(), a.title.clone().into());
            if a.total_user_source {
                item.insert("user_source".into(), 0.into());
            }
            if a.total_url {
                let (mid, idx) = a.msgid.split_once('_').unwrap_or((&a.msgid, "1"));
                item.insert(
                    "url".into(),
                    format!(
                        "http://mp.weixin.qq.com/s?__biz=MzA{:08X}==&mid={mid}&idx={idx}&sn={:016x}",
                        self.app as u32, a.key
                    )
                    .into(),
                );
            }
            item.insert("details".into(), Value::Array(details));
            out.push(Value::Object(item));
        }
    }

    /// Hour weights of a day for one stream: the daily curve with jitter; some night hours
    /// are silent.
    fn hour_weights(&self, d: NaiveDate, stream: u64) -> [f64; 24] {
        let mut r = Rng::new(&[self.seed, self.app, T_HOURS, day(d), stream]);
        let mut w = HOUR_CURVE;
        for (h, x) in w.iter_mut().enumerate() {
            *x *= r.range(0.6, 1.4);
            if (1..=5).contains(&h) && r.chance(0.3) {
                *x = 0.0;
            }
        }
        w
    }

    /// Splits a (users, count) pair over hours keeping count >= users in every hour.
    fn by_hour(users: i64, total: i64, w: &[f64; 24]) -> Vec<(i64, i64)> {
        let u = split(users, w);
        let extra = split((total - users).max(0), w);
        u.iter().zip(extra).map(|(u, e)| (*u, u + e)).collect()
    }

    fn user_read(&self, d: NaiveDate, hourly: bool, out: &mut Vec<Value>) {
        let t = self.day_total(d, false);
        let mut r = Rng::new(&[self.seed, self.app, T_READ, day(d), u64::from(hourly)]);
        // Reading channel -> scenes of the article model.
        let channels: [(i64, &[usize]); 7] = [
            (0, &[0]),
            (1, &[1]),
            (2, &[2]),
            (4, &[3]),
            (6, &[4]),
            (7, &[5]),
            (5, &[6, 7]),
        ];
        let sum = |idx: &[usize], v: &[i64; 8]| idx.iter().map(|i| v[*i]).sum::<i64>();
        let chan_users: Vec<i64> = channels.iter().map(|c| sum(c.1, &t.scenes)).collect();
        let chan_counts: Vec<i64> = channels.iter().map(|c| sum(c.1, &t.scene_counts)).collect();
        let w: Vec<f64> = chan_users.iter().map(|u| *u as f64).collect();
        let chan_share = split(t.share, &w);
        let chan_share_count = split(t.share_count, &w);
        // Users reading through two channels count once in the all-channel row.
        let all_users = count(t.read as f64 * r.range(0.9, 0.97));
        let all_share = count(t.share as f64 * r.range(0.93, 0.99));
        // Per-channel rows exist since 2020-02-28; before, one all-channel row per day.
        let split_era = d >= ymd(2020, 2, 28);
        // (user_source, read user, read count, share user, share count, ori/fav absent?, share absent?)
        let mut rows: Vec<(i64, i64, i64, i64, i64, u64, bool)> = vec![(
            99_999_999,
            all_users,
            t.read_count,
            all_share,
            t.share_count,
            0,
            false,
        )];
        if split_era {
            for (i, (code, _)) in channels.iter().enumerate() {
                if chan_users[i] > 0 {
                    let mode = r.int(0, 3);
                    let share_absent = r.chance(0.1);
                    rows.push((
                        *code,
                        chan_users[i],
                        chan_counts[i],
                        chan_share[i],
                        chan_share_count[i],
                        mode,
                        share_absent,
                    ));
                }
            }
        }
        for (code, users, reads, shares, share_count, mode, share_absent) in rows {
            let all = code == 99_999_999;
            // ori/fav: real in the daily all row, 0 in hourly all rows, 0 or absent elsewhere.
            let ori_fav = |row: &mut Map<String, Value>| {
                let (ori, ori_c, fav, fav_c) = if all && !hourly {
                    (t.ori, t.ori_count, t.fav, t.fav_count)
                } else {
                    (0, 0, 0, 0)
                };
                if mode != 1 && mode != 3 {
                    row.insert("ori_page_read_user".into(), ori.into());
                    row.insert("ori_page_read_count".into(), ori_c.into());
                }
                if mode != 1 && mode != 2 {
                    row.insert("add_to_fav_user".into(), fav.into());
                    row.insert("add_to_fav_count".into(), fav_c.into());
                }
            };
            let hours: Vec<HourCell> = if hourly {
                let w = self.hour_weights(d, 100 + code as u64);
                let read_h = Self::by_hour(users, reads, &w);
                let share_h = Self::by_hour(shares, share_count, &w);
                (0..24)
                    .filter(|h| read_h[*h].0 > 0 || share_h[*h].0 > 0)
                    .map(|h| (Some(h as i64 * 100), read_h[h], share_h[h]))
                    .collect()
            } else {
                vec![(None, (users, reads), (shares, share_count))]
            };
            for (ref_hour, (u, c), (su, sc)) in hours {
                let mut row = Map::new();
                row.insert("ref_date".into(), fmt(d).into());
                if let Some(h) = ref_hour {
                    row.insert("ref_hour".into(), h.into());
                }
                row.insert("user_source".into(), code.into());
                row.insert("int_page_read_user".into(), u.into());
                row.insert("int_page_read_count".into(), c.into());
                if !share_absent {
                    row.insert("share_user".into(), su.into());
                    row.insert("share_count".into(), sc.into());
                }
                ori_fav(&mut row);
                out.push(Value::Object(row));
            }
        }
    }

    fn user_share(&self, d: NaiveDate, hourly: bool, out: &mut Vec<Value>) {
        let t = self.day_total(d, false);
        let mut r = Rng::new(&[self.seed, self.app, T_SHARE, day(d)]);
        let mut scenes: Vec<(i64, f64)> = vec![
            (1, 0.55 * r.range(0.8, 1.2)),
            (2, 0.35 * r.range(0.8, 1.2)),
            (255, 0.1 * r.range(0.5, 1.5)),
        ];
        // Scene 5 is undocumented but appears in real data; 3 (Tencent Weibo) in early years.
        if r.chance(0.25) {
            scenes.push((5, 0.05));
        }
        if d < ymd(2016, 1, 1) && r.chance(0.3) {
            scenes.push((3, 0.03));
        }
        let w: Vec<f64> = scenes.iter().map(|s| s.1).collect();
        let users = split(t.share, &w);
        let extra = split(t.share_count - t.share, &w);
        for (i, (scene, _)) in scenes.iter().enumerate() {
            let (u, c) = (users[i], users[i] + extra[i]);
            if hourly {
                let w = self.hour_weights(d, 200 + *scene as u64);
                for (h, (hu, hc)) in Self::by_hour(u, c, &w).into_iter().enumerate() {
                    if hu > 0 {
                        out.push(json!({
                            "ref_date": fmt(d), "ref_hour": h * 100, "share_scene": scene,
                            "share_count": hc, "share_user": hu,
                        }));
                    }
                }
            } else if u > 0 {
                out.push(json!({
                    "ref_date": fmt(d), "share_scene": scene, "share_count": c, "share_user": u,
                }));
            }
        }
    }

    // ---- messages and interface ----

    /// (msg_type, users, messages) of a day; type 5 is an undocumented code seen rarely.
    fn messages(&self, d: NaiveDate) -> Vec<(i64, i64, i64)> {
        let mut r = Rng::new(&[self.seed, self.app, T_MSG, day(d)]);
        let weekend = matches!(d.weekday(), Weekday::Sat | Weekday::Sun);
        let users = count(
            self.cumulate(d) as f64
                * self.profile.msg_rate
                * if weekend { 0.8 } else { 1.0 }
                * r.range(0.7, 1.3),
        );
        let mut types: Vec<(i64, f64)> = [(1, 0.7), (2, 0.14), (3, 0.08), (4, 0.03), (6, 0.05)]
            .iter()
            .map(|(t, w)| (*t, w * r.range(0.6, 1.4)))
            .collect();
        if r.chance(0.03) {
            types.push((5, 0.01));
        }
        let w: Vec<f64> = types.iter().map(|t| t.1).collect();
        let per = split(users, &w);
        types
            .iter()
            .zip(per)
            .filter(|(_, u)| *u > 0)
            .map(|((t, _), u)| (*t, u, u + count(u as f64 * r.range(0.2, 1.5))))
            .collect()
    }

    fn upstream_msg(&self, d: NaiveDate, out: &mut Vec<Value>) {
        for (t, u, c) in self.messages(d) {
            out.push(json!({"ref_date": fmt(d), "msg_type": t, "msg_user": u, "msg_count": c}));
        }
    }

    fn upstream_msg_hour(&self, d: NaiveDate, out: &mut Vec<Value>) {
        for (t, u, c) in self.messages(d) {
            let w = self.hour_weights(d, 300 + t as u64);
            for (h, (hu, hc)) in Self::by_hour(u, c, &w).into_iter().enumerate() {
                if hu > 0 {
                    out.push(json!({
                        "ref_date": fmt(d), "ref_hour": h * 100, "msg_type": t,
                        "msg_user": hu, "msg_count": hc,
                    }));
                }
            }
        }
    }

    /// Week or month rows labelled `label`, covering `label..=last`.
    fn upstream_msg_period(
        &self,
        label: NaiveDate,
        last: NaiveDate,
        dedupe: f64,
        out: &mut Vec<Value>,
    ) {
        let mut sums: Vec<(i64, i64, i64)> = Vec::new();
        let mut d = label;
        while d <= last {
            for (t, u, c) in self.messages(d) {
                match sums.iter_mut().find(|s| s.0 == t) {
                    Some(s) => {
                        s.1 += u;
                        s.2 += c;
                    }
                    None => sums.push((t, u, c)),
                }
            }
            d += days(1);
        }
        for (t, u, c) in sums {
            out.push(json!({
                "ref_date": fmt(label), "msg_type": t,
                "msg_user": count(u as f64 * dedupe).max(1), "msg_count": c,
            }));
        }
    }

    fn upstream_dist(&self, label: NaiveDate, last: NaiveDate, out: &mut Vec<Value>) {
        let mut users = 0;
        let mut d = label;
        while d <= last {
            users += self.messages(d).iter().map(|m| m.1).sum::<i64>();
            d += days(1);
        }
        let long = (last - label).num_days() as f64;
        // Longer periods: fewer distinct users than the daily sum, more heavy senders.
        let distinct = count(users as f64 * (0.9 - 0.012 * long).max(0.5));
        let mut r = Rng::new(&[self.seed, self.app, T_DIST, day(label), day(last)]);
        let shift = (long / 30.0).min(1.0);
        let mut w = [
            0.0,
            0.86 - 0.26 * shift,
            0.09 + 0.13 * shift,
            0.04 + 0.14 * shift,
        ];
        if r.chance(0.15) {
            w[0] = 0.01;
        }
        for x in w.iter_mut() {
            *x *= r.range(0.8, 1.2);
        }
        for (interval, u) in split(distinct, &w).into_iter().enumerate() {
            if u > 0 {
                out.push(
                    json!({"ref_date": fmt(label), "count_interval": interval, "msg_user": u}),
                );
            }
        }
    }

    fn interface(&self, d: NaiveDate, hourly: bool, out: &mut Vec<Value>) {
        let mut r = Rng::new(&[self.seed, self.app, T_IFACE, day(d)]);
        let messages: i64 = self.messages(d).iter().map(|m| m.2).sum();
        let callbacks = count(
            messages as f64 * r.range(1.0, 1.4) + self.cumulate(d) as f64 * 0.0005 * r.unit(),
        );
        if callbacks == 0 {
            return;
        }
        let fails = count(callbacks as f64 * r.range(0.0, 0.01));
        let avg = self.profile.avg_ms * r.range(0.8, 1.25);
        let max = count(r.range(avg * 3.0, 5050.0)).min(5050);
        if !hourly {
            out.push(json!({
                "ref_date": fmt(d), "callback_count": callbacks, "fail_count": fails,
                "total_time_cost": count(callbacks as f64 * avg), "max_time_cost": max,
            }));
            return;
        }
        let w = self.hour_weights(d, 400);
        let cb = split(callbacks, &w);
        let fw: Vec<f64> = cb.iter().map(|c| *c as f64).collect();
        let fh = split(fails, &fw);
        let busiest = (0..24).max_by_key(|h| (cb[*h], 24 - h)).unwrap_or(0);
        for h in 0..24 {
            if cb[h] == 0 {
                continue;
            }
            let hour_avg = avg * r.range(0.85, 1.15);
            let hour_max = if h == busiest {
                max
            } else {
                count(hour_avg * r.range(1.5, 4.0)).min(max)
            };
            out.push(json!({
                "ref_date": fmt(d), "ref_hour": h * 100, "callback_count": cb[h],
                "fail_count": fh[h], "total_time_cost": count(cb[h] as f64 * hour_avg),
                "max_time_cost": hour_max,
            }));
        }
    }
}
