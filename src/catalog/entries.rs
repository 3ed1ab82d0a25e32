//! The catalogue entries: every report's columns, span, cadence and key.

use super::labels::*;
use super::{Cadence, Col, Dataset, Kind, Report, Shape, Src, Status};

macro_rules! col {
    ($name:literal, $kind:expr, $src:expr, $doc:literal) => {
        Col {
            name: $name,
            kind: $kind,
            src: $src,
            nullable: false,
            doc: $doc,
        }
    };
    ($name:literal, $kind:expr, $src:expr, nullable, $doc:literal) => {
        Col {
            name: $name,
            kind: $kind,
            src: $src,
            nullable: true,
            doc: $doc,
        }
    };
}

use Kind::*;
use Src::*;

const REF_DATE: Col = col!(
    "ref_date",
    Date,
    Item("ref_date"),
    "the China day the numbers belong to"
);
const REF_DATE_WEEK: Col = col!(
    "ref_date",
    Date,
    Item("ref_date"),
    "the Monday that labels the week"
);
const REF_DATE_MONTH: Col = col!(
    "ref_date",
    Date,
    Item("ref_date"),
    "the 1st that labels the month"
);
const REF_HOUR: Col = col!(
    "ref_hour",
    Int32,
    Item("ref_hour"),
    "hour x 100 as WeChat sends it (0, 100, ..., 2300)"
);
const HOUR: Col = col!(
    "hour",
    Hour,
    Item("ref_hour"),
    "hour of the day 0..23 (ref_hour / 100), China time"
);
const IS_DELAY: Col = col!(
    "is_delay",
    Bool,
    Response("is_delay"),
    "WeChat flagged the response as provisional (still being computed)"
);
const MSGID: Col = col!(
    "msgid",
    Utf8,
    Item("msgid"),
    "<msg_data_id>_<index>: the message id and the article's 1-based position in it"
);

const MSG_TYPE_COL: Col = col!("msg_type", Int32, Item("msg_type"), "message type code");
const MSG_TYPE_LABEL: Col = col!(
    "msg_type_label",
    Label(&MSG_TYPE),
    Item("msg_type"),
    "message type: text, image, voice, video, app_message, unknown"
);
const MSG_USER: Col = col!(
    "msg_user",
    Int64,
    Item("msg_user"),
    "users who sent messages to the account"
);
const MSG_COUNT: Col = col!(
    "msg_count",
    Int64,
    Item("msg_count"),
    "messages sent to the account"
);
const COUNT_INTERVAL_COL: Col = col!(
    "count_interval",
    Int32,
    Item("count_interval"),
    "bucket of messages per user in the period"
);
const COUNT_INTERVAL_LABEL: Col = col!(
    "count_interval_label",
    Label(&COUNT_INTERVAL),
    Item("count_interval"),
    "bucket: 0, 1-5, 6-10, >10, unknown"
);
const DIST_USER: Col = col!(
    "msg_user",
    Int64,
    Item("msg_user"),
    "users whose message count falls in the bucket"
);

const CALLBACK_COUNT: Col = col!(
    "callback_count",
    Int64,
    Item("callback_count"),
    "user messages pushed to the developer server and passively replied"
);
const FAIL_COUNT: Col = col!(
    "fail_count",
    Int64,
    Item("fail_count"),
    "failed passive replies"
);
const TOTAL_TIME_COST: Col = col!(
    "total_time_cost",
    Int64,
    Item("total_time_cost"),
    "sum of reply latencies (ms)"
);
const MAX_TIME_COST: Col = col!(
    "max_time_cost",
    Int64,
    Item("max_time_cost"),
    "slowest reply (ms)"
);

const READ_SOURCES: Col = col!(
    "read_user_source",
    ReadSources,
    Detail("read_user_source"),
    "readers per scene: list of {user_count, scene_desc, scene_desc_label}"
);

const LEGACY_READ: [Col; 8] = [
    col!(
        "int_page_read_user",
        Int64,
        Item("int_page_read_user"),
        "readers of the article page"
    ),
    col!(
        "int_page_read_count",
        Int64,
        Item("int_page_read_count"),
        "reads of the article page"
    ),
    col!(
        "ori_page_read_user",
        Int64,
        Item("ori_page_read_user"),
        "readers of the original-link page"
    ),
    col!(
        "ori_page_read_count",
        Int64,
        Item("ori_page_read_count"),
        "reads of the original-link page"
    ),
    col!("share_user", Int64, Item("share_user"), "users who shared"),
    col!("share_count", Int64, Item("share_count"), "share actions"),
    col!(
        "add_to_fav_user",
        Int64,
        Item("add_to_fav_user"),
        "users who added to favourites"
    ),
    col!(
        "add_to_fav_count",
        Int64,
        Item("add_to_fav_count"),
        "favourite actions"
    ),
];

const USER_READ_METRICS: [Col; 8] = [
    col!(
        "int_page_read_user",
        Int64,
        Item("int_page_read_user"),
        nullable,
        "readers of the article pages"
    ),
    col!(
        "int_page_read_count",
        Int64,
        Item("int_page_read_count"),
        nullable,
        "reads of the article pages"
    ),
    col!(
        "ori_page_read_user",
        Int64,
        Item("ori_page_read_user"),
        nullable,
        "readers of original-link pages (all-channel row only)"
    ),
    col!(
        "ori_page_read_count",
        Int64,
        Item("ori_page_read_count"),
        nullable,
        "reads of original-link pages (all-channel row only)"
    ),
    col!(
        "share_user",
        Int64,
        Item("share_user"),
        nullable,
        "users who shared"
    ),
    col!(
        "share_count",
        Int64,
        Item("share_count"),
        nullable,
        "share actions"
    ),
    col!(
        "add_to_fav_user",
        Int64,
        Item("add_to_fav_user"),
        nullable,
        "users who added to favourites (all-channel row only)"
    ),
    col!(
        "add_to_fav_count",
        Int64,
        Item("add_to_fav_count"),
        nullable,
        "favourite actions (all-channel row only)"
    ),
];
const READ_SOURCE_COL: Col = col!(
    "user_source",
    Int32,
    Item("user_source"),
    "reading channel code (99999999 = all channels)"
);
const READ_SOURCE_LABEL: Col = col!("user_source_label", Label(&READ_SOURCE), Item("user_source"), "reading channel: all, conversation, friends, moments, tencent_weibo, history, other, top_stories, search, unknown");
const SHARE_SCENE_COL: Col = col!(
    "share_scene",
    Int32,
    Item("share_scene"),
    "share destination code"
);
const SHARE_SCENE_LABEL: Col = col!(
    "share_scene_label",
    Label(&SHARE_SCENE),
    Item("share_scene"),
    "share destination: friends, moments, tencent_weibo, other, unknown"
);
const SHARE_COUNT: Col = col!("share_count", Int64, Item("share_count"), "share actions");
const SHARE_USER: Col = col!("share_user", Int64, Item("share_user"), "users who shared");

macro_rules! cols {
    ($($c:expr),* $(,)?) => { &[$($c),*] };
}

const D: (i32, u32, u32) = (2014, 12, 1);
const NEW: (i32, u32, u32) = (2025, 11, 1);

pub static REPORTS: &[Report] = &[
    Report {
        id: "user_summary", dataset: Dataset::UserSummary, api: "getusersummary", path: "/datacube/getusersummary", span: 7, first_day: D,
        status: Status::Active, cadence: Cadence::Daily, hourly: false, shape: Shape::List,
        grain: "day x follow channel", doc: "followers gained and lost per day and follow channel",
        columns: cols![
            REF_DATE,
            col!("user_source", Int32, Item("user_source"), "follow channel code"),
            col!("user_source_label", Label(&FOLLOW_SOURCE), Item("user_source"), "follow channel: other, search, card_share, qr_code, ..., unknown"),
            col!("new_user", Int64, Item("new_user"), "users who followed that day via the channel"),
            col!("cancel_user", Int64, Item("cancel_user"), "users who unfollowed that day attributed to the channel"),
        ],
        key: &["ref_date", "user_source"], revise_days: 0, replacement: None,
    },
    Report {
        id: "user_cumulate", dataset: Dataset::UserCumulate, api: "getusercumulate", path: "/datacube/getusercumulate", span: 7, first_day: D,
        status: Status::Active, cadence: Cadence::Daily, hourly: false, shape: Shape::List,
        grain: "day", doc: "total followers at the end of each day",
        columns: cols![
            REF_DATE,
            col!("user_source", Int32, Item("user_source"), nullable, "undocumented channel code WeChat sometimes sends (0)"),
            col!("cumulate_user", Int64, Item("cumulate_user"), "followers at the end of the day"),
        ],
        key: &["ref_date"], revise_days: 0, replacement: None,
    },
    Report {
        id: "article_read", dataset: Dataset::ArticleRead, api: "getarticleread", path: "/datacube/getarticleread", span: 1, first_day: NEW,
        status: Status::Active, cadence: Cadence::Daily, hourly: false, shape: Shape::List,
        grain: "day x article", doc: "readers per published article per day, by scene",
        columns: cols![
            REF_DATE, MSGID,
            col!("read_user", Int64, Detail("read_user"), "readers that day (the 全部 scene)"),
            READ_SOURCES, IS_DELAY,
        ],
        key: &["ref_date", "msgid"], revise_days: 0, replacement: None,
    },
    Report {
        id: "article_share", dataset: Dataset::ArticleShare, api: "getarticleshare", path: "/datacube/getarticleshare", span: 1, first_day: NEW,
        status: Status::Active, cadence: Cadence::Daily, hourly: false, shape: Shape::List,
        grain: "day x article", doc: "sharers per published article per day",
        columns: cols![
            REF_DATE, MSGID,
            col!("share_user", Int64, Detail("share_user"), "users who shared that day"),
            IS_DELAY,
        ],
        key: &["ref_date", "msgid"], revise_days: 0, replacement: None,
    },
    Report {
        id: "biz_summary", dataset: Dataset::BizSummary, api: "getbizsummary", path: "/datacube/getbizsummary", span: 30, first_day: NEW,
        status: Status::Active, cadence: Cadence::Daily, hourly: false, shape: Shape::List,
        grain: "day", doc: "account-level daily content overview",
        columns: cols![
            REF_DATE,
            col!("read_user", Int64, Detail("read_user"), "readers across all content"),
            READ_SOURCES,
            col!("share_user", Int64, Detail("share_user"), "users who shared"),
            col!("zaikan_user", Int64, Detail("zaikan_user"), "users who gave the heart (在看) reaction"),
            col!("like_user", Int64, Detail("like_user"), "users who gave a thumbs-up"),
            col!("comment_count", Int64, Detail("comment_count"), "comments"),
            col!("collection_user", Int64, Detail("collection_user"), "users who added to favourites"),
            col!("redirect_ori_page_user", Int64, Detail("redirect_ori_page_user"), "users who jumped to the original link"),
            col!("send_page_count", Int64, Detail("send_page_count"), "articles published"),
            IS_DELAY,
        ],
        key: &["ref_date"], revise_days: 0, replacement: None,
    },
    Report {
        id: "article_total_detail", dataset: Dataset::ArticleTotalDetail, api: "getarticletotaldetail", path: "/datacube/getarticletotaldetail", span: 1, first_day: NEW,
        status: Status::Active, cadence: Cadence::Daily, hourly: false, shape: Shape::Flatten("detail_list"),
        grain: "publish day x article x stat day", doc: "running totals per published article for 30 days after publishing",
        columns: cols![
            col!("ref_date", Date, Item("ref_date"), "publish date"),
            MSGID,
            col!("publish_type", Int32, Item("publish_type"), "0 published with notification, 1 without"),
            col!("publish_type_label", Label(&PUBLISH_TYPE), Item("publish_type"), "notified, not_notified, unknown"),
            col!("title", Utf8, Item("title"), nullable, "article title"),
            col!("content_url", Utf8, Item("content_url"), nullable, "article URL"),
            col!("stat_date", Date, Nested("stat_date"), "day the running total is taken"),
            col!("read_user", Int64, Nested("read_user"), "readers so far"),
            col!("read_user_source", ReadSources, Nested("read_user_source"), "readers so far per scene: list of {user_count, scene_desc, scene_desc_label}"),
            col!("share_user", Int64, Nested("share_user"), "sharers so far"),
            col!("zaikan_user", Int64, Nested("zaikan_user"), "heart (在看) users so far"),
            col!("like_user", Int64, Nested("like_user"), "thumbs-up users so far"),
            col!("comment_count", Int64, Nested("comment_count"), "comments so far"),
            col!("collection_user", Int64, Nested("collection_user"), "favouriters so far"),
            col!("praise_money", Int64, Nested("praise_money"), "tips so far, fen (1/100 CNY)"),
            col!("read_subscribe_user", Int64, Nested("read_subscribe_user"), "users who followed after reading"),
            col!("read_delivery_rate", Float64, Nested("read_delivery_rate"), "reads / delivered users (fraction)"),
            col!("read_finish_rate", Float64, Nested("read_finish_rate"), "share of readers who finished (fraction)"),
            col!("read_avg_activetime", Float64, Nested("read_avg_activetime"), "average reading time, minutes"),
            col!("read_jump_position", JumpPositions, Nested("read_jump_position"), "drop-off: list of {position 1..5 (fifths of the article), rate}"),
            IS_DELAY,
        ],
        key: &["ref_date", "msgid", "stat_date"], revise_days: 30, replacement: None,
    },
    Report {
        id: "upstream_msg", dataset: Dataset::UpstreamMsg, api: "getupstreammsg", path: "/datacube/getupstreammsg", span: 7, first_day: D,
        status: Status::Active, cadence: Cadence::Daily, hourly: false, shape: Shape::List,
        grain: "day x message type", doc: "messages users sent to the account per day",
        columns: cols![REF_DATE, MSG_TYPE_COL, MSG_TYPE_LABEL, MSG_USER, MSG_COUNT],
        key: &["ref_date", "msg_type"], revise_days: 0, replacement: None,
    },
    Report {
        id: "upstream_msg_hour", dataset: Dataset::UpstreamMsgHour, api: "getupstreammsghour", path: "/datacube/getupstreammsghour", span: 1, first_day: D,
        status: Status::Active, cadence: Cadence::Daily, hourly: true, shape: Shape::List,
        grain: "hour x message type", doc: "messages users sent to the account per hour",
        columns: cols![REF_DATE, REF_HOUR, HOUR, MSG_TYPE_COL, MSG_TYPE_LABEL, MSG_USER, MSG_COUNT],
        key: &["ref_date", "ref_hour", "msg_type"], revise_days: 0, replacement: None,
    },
    Report {
        id: "upstream_msg_week", dataset: Dataset::UpstreamMsgWeek, api: "getupstreammsgweek", path: "/datacube/getupstreammsgweek", span: 30, first_day: D,
        status: Status::Active, cadence: Cadence::Weekly, hourly: false, shape: Shape::List,
        grain: "week x message type", doc: "messages users sent to the account per ended week",
        columns: cols![REF_DATE_WEEK, MSG_TYPE_COL, MSG_TYPE_LABEL, MSG_USER, MSG_COUNT],
        key: &["ref_date", "msg_type"], revise_days: 0, replacement: None,
    },
    Report {
        id: "upstream_msg_month", dataset: Dataset::UpstreamMsgMonth, api: "getupstreammsgmonth", path: "/datacube/getupstreammsgmonth", span: 30, first_day: D,
        status: Status::Active, cadence: Cadence::Monthly, hourly: false, shape: Shape::List,
        grain: "month x message type", doc: "messages users sent to the account per ended month",
        columns: cols![REF_DATE_MONTH, MSG_TYPE_COL, MSG_TYPE_LABEL, MSG_USER, MSG_COUNT],
        key: &["ref_date", "msg_type"], revise_days: 0, replacement: None,
    },
    Report {
        id: "upstream_msg_dist", dataset: Dataset::UpstreamMsgDist, api: "getupstreammsgdist", path: "/datacube/getupstreammsgdist", span: 15, first_day: D,
        status: Status::Active, cadence: Cadence::Daily, hourly: false, shape: Shape::List,
        grain: "day x count bucket", doc: "distribution of users by messages sent per day",
        columns: cols![REF_DATE, COUNT_INTERVAL_COL, COUNT_INTERVAL_LABEL, DIST_USER],
        key: &["ref_date", "count_interval"], revise_days: 0, replacement: None,
    },
    Report {
        id: "upstream_msg_dist_week", dataset: Dataset::UpstreamMsgDistWeek, api: "getupstreammsgdistweek", path: "/datacube/getupstreammsgdistweek", span: 30, first_day: D,
        status: Status::Active, cadence: Cadence::Weekly, hourly: false, shape: Shape::List,
        grain: "week x count bucket", doc: "distribution of users by messages sent per ended week",
        columns: cols![REF_DATE_WEEK, COUNT_INTERVAL_COL, COUNT_INTERVAL_LABEL, DIST_USER],
        key: &["ref_date", "count_interval"], revise_days: 0, replacement: None,
    },
    Report {
        id: "upstream_msg_dist_month", dataset: Dataset::UpstreamMsgDistMonth, api: "getupstreammsgdistmonth", path: "/datacube/getupstreammsgdistmonth", span: 30, first_day: D,
        status: Status::Active, cadence: Cadence::Monthly, hourly: false, shape: Shape::List,
        grain: "month x count bucket", doc: "distribution of users by messages sent per ended month",
        columns: cols![REF_DATE_MONTH, COUNT_INTERVAL_COL, COUNT_INTERVAL_LABEL, DIST_USER],
        key: &["ref_date", "count_interval"], revise_days: 0, replacement: None,
    },
    Report {
        id: "interface_summary", dataset: Dataset::InterfaceSummary, api: "getinterfacesummary", path: "/datacube/getinterfacesummary", span: 30, first_day: D,
        status: Status::Active, cadence: Cadence::Daily, hourly: false, shape: Shape::List,
        grain: "day", doc: "passive-reply health of the developer server per day",
        columns: cols![REF_DATE, CALLBACK_COUNT, FAIL_COUNT, TOTAL_TIME_COST, MAX_TIME_COST],
        key: &["ref_date"], revise_days: 0, replacement: None,
    },
    Report {
        id: "interface_summary_hour", dataset: Dataset::InterfaceSummaryHour, api: "getinterfacesummaryhour", path: "/datacube/getinterfacesummaryhour", span: 1, first_day: D,
        status: Status::Active, cadence: Cadence::Daily, hourly: true, shape: Shape::List,
        grain: "hour", doc: "passive-reply health of the developer server per hour",
        columns: cols![REF_DATE, REF_HOUR, HOUR, CALLBACK_COUNT, FAIL_COUNT, TOTAL_TIME_COST, MAX_TIME_COST],
        key: &["ref_date", "ref_hour"], revise_days: 0, replacement: None,
    },
    // Legacy: retired by WeChat (47009 "this api is offline"); kept for older accounts and backfills.
    Report {
        id: "article_summary", dataset: Dataset::ArticleSummary, api: "getarticlesummary", path: "/datacube/getarticlesummary", span: 1, first_day: D,
        status: Status::Legacy, cadence: Cadence::Daily, hourly: false, shape: Shape::List,
        grain: "day x article", doc: "daily reading of mass-sent articles (rows below WeChat's activity threshold are absent)",
        columns: cols![
            REF_DATE, MSGID,
            col!("title", Utf8, Item("title"), "article title"),
            LEGACY_READ[0], LEGACY_READ[1], LEGACY_READ[2], LEGACY_READ[3],
            LEGACY_READ[4], LEGACY_READ[5], LEGACY_READ[6], LEGACY_READ[7],
        ],
        key: &["ref_date", "msgid"], revise_days: 0,
        replacement: Some("article_read and article_share"),
    },
    Report {
        id: "article_total", dataset: Dataset::ArticleTotal, api: "getarticletotal", path: "/datacube/getarticletotal", span: 1, first_day: D,
        status: Status::Legacy, cadence: Cadence::Daily, hourly: false, shape: Shape::Flatten("details"),
        grain: "send day x article x stat day", doc: "running totals per mass-sent article for 7 days after sending",
        columns: cols![
            col!("ref_date", Date, Item("ref_date"), "send date"),
            MSGID,
            col!("title", Utf8, Item("title"), "article title"),
            col!("user_source", Int32, Item("user_source"), nullable, "undocumented channel code WeChat sometimes sends (0)"),
            col!("url", Utf8, Item("url"), nullable, "article URL (rarely sent)"),
            col!("stat_date", Date, Nested("stat_date"), "day the running total is taken"),
            col!("target_user", Int64, Nested("target_user"), "users the article was delivered to"),
            col!("int_page_read_user", Int64, Nested("int_page_read_user"), "article-page readers so far"),
            col!("int_page_read_count", Int64, Nested("int_page_read_count"), "article-page reads so far"),
            col!("ori_page_read_user", Int64, Nested("ori_page_read_user"), "original-page readers so far"),
            col!("ori_page_read_count", Int64, Nested("ori_page_read_count"), "original-page reads so far"),
            col!("share_user", Int64, Nested("share_user"), "sharers so far"),
            col!("share_count", Int64, Nested("share_count"), "shares so far"),
            col!("add_to_fav_user", Int64, Nested("add_to_fav_user"), "favouriters so far"),
            col!("add_to_fav_count", Int64, Nested("add_to_fav_count"), "favourites so far"),
            col!("int_page_from_session_read_user", Int64, Nested("int_page_from_session_read_user"), "readers from the account conversation"),
            col!("int_page_from_session_read_count", Int64, Nested("int_page_from_session_read_count"), "reads from the account conversation"),
            col!("int_page_from_hist_msg_read_user", Int64, Nested("int_page_from_hist_msg_read_user"), "readers from the history page"),
            col!("int_page_from_hist_msg_read_count", Int64, Nested("int_page_from_hist_msg_read_count"), "reads from the history page"),
            col!("int_page_from_feed_read_user", Int64, Nested("int_page_from_feed_read_user"), "readers from Moments"),
            col!("int_page_from_feed_read_count", Int64, Nested("int_page_from_feed_read_count"), "reads from Moments"),
            col!("int_page_from_friends_read_user", Int64, Nested("int_page_from_friends_read_user"), "readers from friend forwards"),
            col!("int_page_from_friends_read_count", Int64, Nested("int_page_from_friends_read_count"), "reads from friend forwards"),
            col!("int_page_from_other_read_user", Int64, Nested("int_page_from_other_read_user"), "readers from other scenes"),
            col!("int_page_from_other_read_count", Int64, Nested("int_page_from_other_read_count"), "reads from other scenes"),
            col!("feed_share_from_session_user", Int64, Nested("feed_share_from_session_user"), "users sharing to Moments from the conversation"),
            col!("feed_share_from_session_cnt", Int64, Nested("feed_share_from_session_cnt"), "shares to Moments from the conversation"),
            col!("feed_share_from_feed_user", Int64, Nested("feed_share_from_feed_user"), "users sharing to Moments from Moments"),
            col!("feed_share_from_feed_cnt", Int64, Nested("feed_share_from_feed_cnt"), "shares to Moments from Moments"),
            col!("feed_share_from_other_user", Int64, Nested("feed_share_from_other_user"), "users sharing to Moments from other scenes"),
            col!("feed_share_from_other_cnt", Int64, Nested("feed_share_from_other_cnt"), "shares to Moments from other scenes"),
            col!("int_page_from_kanyikan_read_user", Int64, Nested("int_page_from_kanyikan_read_user"), nullable, "readers from Top Stories (看一看)"),
            col!("int_page_from_kanyikan_read_count", Int64, Nested("int_page_from_kanyikan_read_count"), nullable, "reads from Top Stories (看一看)"),
            col!("int_page_from_souyisou_read_user", Int64, Nested("int_page_from_souyisou_read_user"), nullable, "readers from WeChat Search (搜一搜)"),
            col!("int_page_from_souyisou_read_count", Int64, Nested("int_page_from_souyisou_read_count"), nullable, "reads from WeChat Search (搜一搜)"),
        ],
        key: &["ref_date", "msgid", "stat_date"], revise_days: 7,
        replacement: Some("article_total_detail"),
    },
    Report {
        id: "user_read", dataset: Dataset::UserRead, api: "getuserread", path: "/datacube/getuserread", span: 3, first_day: D,
        status: Status::Legacy, cadence: Cadence::Daily, hourly: false, shape: Shape::List,
        grain: "day x reading channel", doc: "account-level reading per day and reading channel",
        columns: cols![
            REF_DATE, READ_SOURCE_COL, READ_SOURCE_LABEL,
            USER_READ_METRICS[0], USER_READ_METRICS[1], USER_READ_METRICS[2], USER_READ_METRICS[3],
            USER_READ_METRICS[4], USER_READ_METRICS[5], USER_READ_METRICS[6], USER_READ_METRICS[7],
        ],
        key: &["ref_date", "user_source"], revise_days: 0,
        replacement: Some("biz_summary"),
    },
    Report {
        id: "user_read_hour", dataset: Dataset::UserReadHour, api: "getuserreadhour", path: "/datacube/getuserreadhour", span: 1, first_day: D,
        status: Status::Legacy, cadence: Cadence::Daily, hourly: true, shape: Shape::List,
        grain: "hour x reading channel", doc: "account-level reading per hour and reading channel",
        columns: cols![
            REF_DATE, REF_HOUR, HOUR, READ_SOURCE_COL, READ_SOURCE_LABEL,
            USER_READ_METRICS[0], USER_READ_METRICS[1], USER_READ_METRICS[2], USER_READ_METRICS[3],
            USER_READ_METRICS[4], USER_READ_METRICS[5], USER_READ_METRICS[6], USER_READ_METRICS[7],
        ],
        key: &["ref_date", "ref_hour", "user_source"], revise_days: 0,
        replacement: Some("article_read and biz_summary"),
    },
    Report {
        id: "user_share", dataset: Dataset::UserShare, api: "getusershare", path: "/datacube/getusershare", span: 7, first_day: D,
        status: Status::Legacy, cadence: Cadence::Daily, hourly: false, shape: Shape::List,
        grain: "day x share scene", doc: "sharing per day and share scene",
        columns: cols![REF_DATE, SHARE_SCENE_COL, SHARE_SCENE_LABEL, SHARE_COUNT, SHARE_USER],
        key: &["ref_date", "share_scene"], revise_days: 0,
        replacement: Some("article_share and biz_summary"),
    },
    Report {
        id: "user_share_hour", dataset: Dataset::UserShareHour, api: "getusersharehour", path: "/datacube/getusersharehour", span: 1, first_day: D,
        status: Status::Legacy, cadence: Cadence::Daily, hourly: true, shape: Shape::List,
        grain: "hour x share scene", doc: "sharing per hour and share scene",
        columns: cols![REF_DATE, REF_HOUR, HOUR, SHARE_SCENE_COL, SHARE_SCENE_LABEL, SHARE_COUNT, SHARE_USER],
        key: &["ref_date", "ref_hour", "share_scene"], revise_days: 0,
        replacement: Some("article_share and biz_summary"),
    },
];

const P: (i32, u32, u32) = (2016, 1, 1);

/// Publisher (流量主) reports: `GET /publisher/stat?action=...`, paged, errors also in
/// `base_resp`. Not in `reports: all`; list them by name. `publisher_settlement` has no
/// documented span: 90 days is used, and its rows (half-months, dated by the data update)
/// are replaced by their key rather than by window.
pub static PUBLISHER: &[Report] = &[
    Report {
        id: "ad_position",
        dataset: Dataset::AdPosition,
        api: "publisher_adpos_general",
        path: "/publisher/stat",
        span: 90,
        first_day: P,
        status: Status::Publisher,
        cadence: Cadence::Daily,
        hourly: false,
        shape: Shape::List,
        grain: "day (x ad slot before 2024-08-16)",
        doc: "ad revenue and traffic per day (and ad slot where WeChat still sends it)",
        columns: cols![
            col!("ref_date", Date, Item("date"), "the day (WeChat's `date`)"),
            col!(
                "slot_id",
                Int64,
                Item("slot_id"),
                nullable,
                "numeric ad slot type id (absent since 2024-08-16)"
            ),
            col!(
                "ad_slot",
                Utf8,
                Item("ad_slot"),
                nullable,
                "ad slot type name, e.g. SLOT_ID_BIZ_BOTTOM (absent since 2024-08-16)"
            ),
            col!(
                "req_succ_count",
                Int64,
                Item("req_succ_count"),
                "successful ad pulls"
            ),
            col!(
                "exposure_count",
                Int64,
                Item("exposure_count"),
                "impressions"
            ),
            col!(
                "exposure_rate",
                Float64,
                Item("exposure_rate"),
                "impressions / pulls"
            ),
            col!("click_count", Int64, Item("click_count"), "clicks"),
            col!(
                "click_rate",
                Float64,
                Item("click_rate"),
                "clicks / impressions"
            ),
            col!("income", Int64, Item("income"), "revenue, fen (1/100 CNY)"),
            col!(
                "ecpm",
                Float64,
                Item("ecpm"),
                "revenue per 1000 impressions, fen"
            ),
        ],
        key: &["ref_date", "ad_slot", "slot_id"],
        revise_days: 0,
        replacement: None,
    },
    Report {
        id: "ad_cps",
        dataset: Dataset::AdCps,
        api: "publisher_cps_general",
        path: "/publisher/stat",
        span: 60,
        first_day: P,
        status: Status::Publisher,
        cadence: Cadence::Daily,
        hourly: false,
        shape: Shape::List,
        grain: "day",
        doc: "commission-product (返佣商品) traffic, orders and commission per day",
        columns: cols![
            col!("ref_date", Date, Item("date"), "the day (WeChat's `date`)"),
            col!(
                "exposure_count",
                Int64,
                Item("exposure_count"),
                "product impressions"
            ),
            col!("click_count", Int64, Item("click_count"), "clicks"),
            col!("click_rate", Float64, Item("click_rate"), "click rate"),
            col!("order_count", Int64, Item("order_count"), "orders"),
            col!("order_rate", Float64, Item("order_rate"), "order rate"),
            col!("total_fee", Int64, Item("total_fee"), "order amount, fen"),
            col!(
                "total_commission",
                Int64,
                Item("total_commission"),
                "estimated commission, fen"
            ),
        ],
        key: &["ref_date"],
        revise_days: 0,
        replacement: None,
    },
    Report {
        id: "ad_settlement",
        dataset: Dataset::AdSettlement,
        api: "publisher_settlement",
        path: "/publisher/stat",
        span: 90,
        first_day: P,
        status: Status::Publisher,
        cadence: Cadence::Daily,
        hourly: false,
        shape: Shape::List,
        grain: "half-month settlement",
        doc: "settlements per half month, with the settling entity's totals",
        columns: cols![
            col!(
                "ref_date",
                Date,
                Item("date"),
                "data update date (WeChat's `date`)"
            ),
            col!(
                "zone",
                Utf8,
                Item("zone"),
                "the period in words, e.g. 2020年3月1日至15日"
            ),
            col!(
                "settlement_month",
                Utf8,
                Item("month"),
                "revenue month, YYYYMM (WeChat's `month`; renamed: `month` is a partition key)"
            ),
            col!(
                "order",
                Int32,
                Item("order"),
                "1 first half of the month, 2 second half"
            ),
            col!(
                "sett_status",
                Int32,
                Item("sett_status"),
                "1 settling, 2/3 settled, 4 paying, 5 paid"
            ),
            col!(
                "settled_revenue",
                Int64,
                Item("settled_revenue"),
                "revenue settled for the half month, fen"
            ),
            col!(
                "sett_no",
                Utf8,
                Item("sett_no"),
                nullable,
                "settlement document number"
            ),
            col!(
                "mail_send_cnt",
                Int64,
                Item("mail_send_cnt"),
                nullable,
                "times a re-send of the document was requested"
            ),
            col!(
                "slot_revenue",
                SlotRevenue,
                Item("slot_revenue"),
                "revenue per ad slot type: list of {slot_id, slot_settled_revenue (fen)}"
            ),
            col!(
                "body",
                Utf8,
                Response("body"),
                nullable,
                "legal entity receiving payment"
            ),
            col!(
                "revenue_all",
                Int64,
                Response("revenue_all"),
                nullable,
                "cumulative revenue, fen"
            ),
            col!(
                "penalty_all",
                Int64,
                Response("penalty_all"),
                nullable,
                "deductions, fen"
            ),
            col!(
                "settled_revenue_all",
                Int64,
                Response("settled_revenue_all"),
                nullable,
                "settled amount, fen"
            ),
        ],
        // Settlement status moves (settling → paid) for weeks after a half-month ends.
        key: &["settlement_month", "order"],
        revise_days: 45,
        replacement: None,
    },
];
