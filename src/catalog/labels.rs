//! The code → label tables of the label columns (`Kind::Label`).

/// A code → label table. Codes are integers, or strings for `scene_desc`.
#[derive(Debug)]
pub struct Labels {
    pub name: &'static str,
    pub ints: &'static [(i64, &'static str)],
    pub strs: &'static [(&'static str, &'static str)],
}

impl Labels {
    pub fn int(&self, code: i64) -> &'static str {
        self.ints
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, l)| *l)
            .unwrap_or("unknown")
    }
    pub fn str(&self, code: &str) -> &'static str {
        self.entry(code.as_bytes())
            .map(|(_, l)| l)
            .unwrap_or("unknown")
    }
    /// The table's own code and its label for a string code given as bytes: the code is
    /// then known to be text without a UTF-8 check of the bytes.
    pub fn entry(&self, code: &[u8]) -> Option<(&'static str, &'static str)> {
        self.strs
            .iter()
            .find(|(c, _)| c.as_bytes() == code)
            .copied()
    }
}

pub static MSG_TYPE: Labels = Labels {
    name: "msg_type",
    ints: &[
        (1, "text"),
        (2, "image"),
        (3, "voice"),
        (4, "video"),
        (6, "app_message"),
    ],
    strs: &[],
};
pub static COUNT_INTERVAL: Labels = Labels {
    name: "count_interval",
    ints: &[(0, "0"), (1, "1-5"), (2, "6-10"), (3, ">10")],
    strs: &[],
};
pub static FOLLOW_SOURCE: Labels = Labels {
    name: "user_source (follow channel)",
    ints: &[
        (0, "other"),
        (1, "search"),
        (17, "card_share"),
        (30, "qr_code"),
        (35, "search_number"),
        (39, "search_account"),
        (43, "article_menu"),
        (51, "after_payment"),
        (57, "article_account_name"),
        (75, "article_ads"),
        (78, "moments_ads"),
        (100, "wechat_ads"),
        (149, "mini_program"),
        (161, "others_repost"),
        (200, "channels"),
        (201, "live"),
    ],
    strs: &[],
};
pub static READ_SOURCE: Labels = Labels {
    name: "user_source (reading channel)",
    ints: &[
        (99_999_999, "all"),
        (0, "conversation"),
        (1, "friends"),
        (2, "moments"),
        (3, "tencent_weibo"),
        (4, "history"),
        (5, "other"),
        (6, "top_stories"),
        (7, "search"),
    ],
    strs: &[],
};
pub static SHARE_SCENE: Labels = Labels {
    name: "share_scene",
    ints: &[
        (1, "friends"),
        (2, "moments"),
        (3, "tencent_weibo"),
        (255, "other"),
    ],
    strs: &[],
};
pub static SCENE_DESC: Labels = Labels {
    name: "scene_desc",
    ints: &[],
    strs: &[
        ("全部", "all"),
        ("公众号消息", "account_message"),
        ("聊天会话", "chat"),
        ("朋友圈", "moments"),
        ("公众号主页", "profile"),
        ("其他", "other"),
        ("推荐", "recommendation"),
        ("搜一搜", "search"),
    ],
};
pub static PUBLISH_TYPE: Labels = Labels {
    name: "publish_type",
    ints: &[(0, "notified"), (1, "not_notified")],
    strs: &[],
};
