//! The report catalogue: the one place that knows about a report.
//!
//! Each entry names the API path, span, first data day, cadence (which dates can carry a
//! row), response shape, columns (with their Arrow kind, JSON source and meaning) and
//! natural key. The planner, extractor, transformer, loader, simulator and the `reports` /
//! `schema` commands all read it; adding a report is adding an entry here.
//!
//! Choices where the contract leaves room (written down here on purpose):
//! - `ref_hour` and `hour` are Int32 (they are codes of an hour, not counts).
//! - Label columns inside a `List<Struct>` (`scene_desc_label` of `read_user_source`) are
//!   plain Utf8: dictionary arrays nested in lists are read inconsistently by readers.
//! - `user_source` of `user_cumulate` and `article_total` is undocumented (always 0 when
//!   seen), so it is kept nullable and gets no label.
//! - Every metric of `user_read`/`user_read_hour` other than the page reads is nullable:
//!   WeChat omits different fields for different channels.

mod arrow;
mod entries;
mod labels;

pub(crate) use arrow::{
    catalogue_index, jump_fields, key_int, key_str, read_sources_fields, slot_fields,
};
pub use arrow::{data_type, date32, from_date32, label_values, schema};
pub use entries::{PUBLISHER, REPORTS};
pub use labels::*;

use chrono::NaiveDate;

/// The Arrow type of a column, as wxcube writes it.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Date,
    Int64,
    Int32,
    Float64,
    Utf8,
    Bool,
    /// Dictionary-encoded Utf8 label of the code in `Col::src`.
    Label(&'static Labels),
    /// `ref_hour / 100`.
    Hour,
    /// `read_user_source`: List<Struct<user_count Int64, scene_desc Utf8, scene_desc_label Utf8>>.
    ReadSources,
    /// `read_jump_position`: List<Struct<position Int32, rate Float64>>.
    JumpPositions,
    /// `slot_revenue`: List<Struct<slot_id Utf8, slot_settled_revenue Int64>>.
    SlotRevenue,
}

/// Where a column's value comes from in a response.
#[derive(Debug, Clone, Copy)]
pub enum Src {
    /// A field of the `list[]` item.
    Item(&'static str),
    /// A field of the item's `detail` object.
    Detail(&'static str),
    /// A field of the element of the flattened array (`details` / `detail_list`).
    Nested(&'static str),
    /// A field of the response object itself (`is_delay`).
    Response(&'static str),
}

impl Src {
    pub fn field(&self) -> &'static str {
        match self {
            Src::Item(f) | Src::Detail(f) | Src::Nested(f) | Src::Response(f) => f,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Col {
    pub name: &'static str,
    pub kind: Kind,
    pub src: Src,
    pub nullable: bool,
    pub doc: &'static str,
}

/// How rows come out of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One row per `list[]` item (fields at item level, or inside its `detail` object).
    List,
    /// One row per element of the named array inside each `list[]` item.
    Flatten(&'static str),
}

/// Which dates can carry a row: every day, or the label (Monday / 1st) of an ended period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cadence {
    Daily,
    Weekly,
    Monthly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Active,
    Legacy,
    Publisher,
}

impl Status {
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Legacy => "legacy",
            Status::Publisher => "publisher",
        }
    }
}

/// Which report an entry is, for code that must treat reports apart (the simulator's row
/// generators): a match on it is exhaustive, where a match on names needs a silent `_`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dataset {
    UserSummary,
    UserCumulate,
    ArticleRead,
    ArticleShare,
    BizSummary,
    ArticleTotalDetail,
    UpstreamMsg,
    UpstreamMsgHour,
    UpstreamMsgWeek,
    UpstreamMsgMonth,
    UpstreamMsgDist,
    UpstreamMsgDistWeek,
    UpstreamMsgDistMonth,
    InterfaceSummary,
    InterfaceSummaryHour,
    ArticleSummary,
    ArticleTotal,
    UserRead,
    UserReadHour,
    UserShare,
    UserShareHour,
    AdPosition,
    AdCps,
    AdSettlement,
}

#[derive(Debug)]
pub struct Report {
    pub id: &'static str,
    pub dataset: Dataset,
    /// WeChat's name, e.g. `getusersummary` (accepted as an alias of `id`).
    pub api: &'static str,
    pub path: &'static str,
    /// Most calendar days one request may cover, both ends included.
    pub span: u32,
    pub first_day: (i32, u32, u32),
    pub status: Status,
    pub cadence: Cadence,
    pub hourly: bool,
    pub shape: Shape,
    /// Human description of a row.
    pub grain: &'static str,
    pub doc: &'static str,
    pub columns: &'static [Col],
    pub key: &'static [&'static str],
    /// Days after `ref_date` during which WeChat still revises the rows (re-fetched).
    pub revise_days: u32,
    /// What to use instead once WeChat retires it (47009).
    pub replacement: Option<&'static str>,
}

/// WeChat's API permission sets (reference §1.1): 48001/50001 withhold one of them, never
/// an account's whole API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    User,
    Article,
    Message,
    Interface,
    Publisher,
}

impl Permission {
    pub fn name(&self) -> &'static str {
        match self {
            Permission::User => "user",
            Permission::Article => "article",
            Permission::Message => "message",
            Permission::Interface => "interface",
            Permission::Publisher => "publisher",
        }
    }

    /// What the account's owner (or the third-party platform) must grant.
    pub fn grant(&self) -> &'static str {
        match self {
            Permission::User => "user analysis (用户分析; third-party platforms: permission set 2, user management)",
            Permission::Article => "article analysis (图文分析; third-party platforms: permission set 7, mass-send and notification)",
            Permission::Message => "message analysis (消息分析; third-party platforms: permission set 1, message management)",
            Permission::Interface => "interface analysis (接口分析; third-party platforms: permission set 3, account service)",
            Permission::Publisher => "publisher (流量主) data: the account must be an ad publisher",
        }
    }
}

impl Report {
    /// The permission set WeChat checks for this report.
    pub fn permission(&self) -> Permission {
        if self.status == Status::Publisher {
            return Permission::Publisher;
        }
        match self.path.trim_start_matches("/datacube/get") {
            p if p.starts_with("usersummary") || p.starts_with("usercumulate") => Permission::User,
            p if p.starts_with("upstreammsg") => Permission::Message,
            p if p.starts_with("interfacesummary") => Permission::Interface,
            _ => Permission::Article,
        }
    }

    pub fn first_day(&self) -> NaiveDate {
        let (y, m, d) = self.first_day;
        NaiveDate::from_ymd_opt(y, m, d).expect("catalogue first day is a valid date")
    }
    pub fn column(&self, name: &str) -> Option<&'static Col> {
        self.columns.iter().find(|c| c.name == name)
    }
    /// Whether the response carries a top-level `is_delay`.
    pub fn has_is_delay(&self) -> bool {
        self.columns
            .iter()
            .any(|c| matches!(c.src, Src::Response("is_delay")))
    }

    /// How a window of this report is requested.
    pub fn protocol(&self) -> Protocol {
        match (self.status, self.dataset) {
            (Status::Publisher, Dataset::AdSettlement) => Protocol::Publisher {
                list: "settlement_list",
            },
            (Status::Publisher, _) => Protocol::Publisher { list: "list" },
            _ => Protocol::Datacube,
        }
    }
}

/// How a report's window is requested (extract dispatches on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// One POST of `{begin_date, end_date}` to `path`; the answer is decoded whole.
    Datacube,
    /// GET pages (`action=<api>`, `page`, `page_size`) until a short one; the rows of a
    /// page are under `list`.
    Publisher { list: &'static str },
}

/// The Hive keys of the output layout. No column may carry one of these names: DuckDB, Polars
/// and pyarrow replace such a column with the partition value.
pub const HIVE_KEYS: [&str; 4] = ["account", "date", "month", "year"];

/// Columns renamed since an earlier release, per report: (name in older files, name now).
/// Files written before the rename merge: their column is read under its new name.
pub fn former_names(r: &Report) -> &'static [(&'static str, &'static str)] {
    match r.id {
        "ad_settlement" => &[("month", "settlement_month")],
        _ => &[],
    }
}

/// Every report: the datacube catalogue, then the publisher reports.
pub fn all() -> impl Iterator<Item = &'static Report> {
    REPORTS.iter().chain(PUBLISHER.iter())
}

/// How a load replaces the stored rows of a report when it fetches a window again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// Every stored row dated in the window gives way to the fetched ones.
    ByDate,
    /// Rows are dated by their last update (ad_settlement), so a row's `ref_date` may lie
    /// outside the window requested: a fetched row replaces the stored row with its natural
    /// key, wherever that lies, and the window's rows are committed together.
    ByKey,
}

impl Report {
    pub fn replace(&self) -> Replace {
        if self.dataset == Dataset::AdSettlement {
            Replace::ByKey
        } else {
            Replace::ByDate
        }
    }
}

/// Finds a report by id or by its WeChat API name.
pub fn find(name: &str) -> Option<&'static Report> {
    all().find(|r| r.id == name || r.api == name)
}

/// The reports `reports: all` means: every active one.
pub fn active() -> impl Iterator<Item = &'static Report> {
    REPORTS.iter().filter(|r| r.status == Status::Active)
}

/// All names a user may type (ids and API aliases), for suggestions.
pub fn all_names() -> impl Iterator<Item = &'static str> {
    all().flat_map(|r| [r.id, r.api])
}

/// The closest known report name to a misspelt one, if it is close enough to be a typo.
pub fn suggest(name: &str) -> Option<&'static str> {
    crate::suggest::closest(name, all_names())
}

#[cfg(test)]
mod tests;
