use super::*;

#[test]
fn catalogue_is_complete_and_consistent() {
    assert_eq!(REPORTS.len(), 21);
    assert_eq!(active().count(), 15);
    assert_eq!(
        REPORTS
            .iter()
            .filter(|r| r.status == Status::Legacy)
            .count(),
        6
    );
    assert_eq!(PUBLISHER.len(), 3);
    for r in all() {
        assert!(r.span >= 1, "{}", r.id);
        assert_eq!(r.columns[0].name, "ref_date", "{}", r.id);
        for k in r.key {
            assert!(r.column(k).is_some(), "{} key {k} is not a column", r.id);
        }
        let mut names: Vec<_> = r.columns.iter().map(|c| c.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(
            names.len(),
            r.columns.len(),
            "{} has a duplicate column",
            r.id
        );
        if r.status == Status::Publisher {
            assert_eq!(r.path, "/publisher/stat");
        } else {
            assert_eq!(r.path, format!("/datacube/{}", r.api));
        }
        if r.status == Status::Legacy {
            assert!(r.replacement.is_some(), "{}", r.id);
        }
    }
}

/// Readers replace a column that shares a Hive key's name with the partition value.
#[test]
fn no_column_is_named_like_a_hive_key() {
    let mut seen = 0;
    for r in all() {
        for c in r.columns {
            seen += 1;
            assert!(
                !HIVE_KEYS.contains(&c.name),
                "{}.{} is named like a partition key",
                r.id,
                c.name
            );
        }
        for (old, new) in former_names(r) {
            assert!(r.column(new).is_some(), "{}: renamed to {new}", r.id);
            assert!(r.column(old).is_none(), "{}: {old} is still a column", r.id);
        }
    }
    assert!(seen > 200, "{seen} columns checked");
    assert_eq!(former_names(find("ad_settlement").unwrap()).len(), 1);
}

#[test]
fn unknown_codes_get_unknown_label() {
    assert_eq!(MSG_TYPE.int(5), "unknown");
    assert_eq!(MSG_TYPE.int(6), "app_message");
    assert_eq!(SCENE_DESC.str("搜一搜"), "search");
    assert_eq!(SCENE_DESC.str("新场景"), "unknown");
}

/// `Dataset` names each entry once: code matching on it reaches exactly one report.
#[test]
fn every_report_has_its_own_dataset() {
    let mut seen: Vec<Dataset> = all().map(|r| r.dataset).collect();
    let n = seen.len();
    seen.sort_by_key(|d| format!("{d:?}"));
    seen.dedup();
    assert_eq!(seen.len(), n);
    assert_eq!(n, 24);
    assert!(find("ad_settlement").unwrap().replace() == Replace::ByKey);
    assert!(!all().any(|r| r.id != "ad_settlement" && r.replace() == Replace::ByKey));
}

#[test]
fn the_protocol_follows_the_catalogue() {
    let p = |id: &str| find(id).expect("report").protocol();
    assert_eq!(p("user_summary"), Protocol::Datacube);
    assert_eq!(
        p("ad_settlement"),
        Protocol::Publisher {
            list: "settlement_list"
        }
    );
    for r in all() {
        let paged = matches!(r.protocol(), Protocol::Publisher { .. });
        assert_eq!(paged, r.status == Status::Publisher, "{}", r.id);
    }
}
