//! Every table's schema is pinned by a golden file (tests/golden/schema/<report>.txt).
//! Regenerate deliberately with `WXCUBE_UPDATE_GOLDEN=1 cargo test schema`.

use std::path::PathBuf;

use crate::harness::*;

#[test]
fn schemas_match_golden_files() {
    let golden = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/schema");
    let update = std::env::var_os("WXCUBE_UPDATE_GOLDEN").is_some();
    let mut mismatches = Vec::new();
    for r in wxcube::catalog::all() {
        let o = wxcube(&["schema", r.id], &golden);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let got = stdout(&o);
        let path = golden.join(format!("{}.txt", r.id));
        if update {
            std::fs::write(&path, &got).expect("write golden");
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        if got != want {
            mismatches.push(format!("{}:\n--- golden\n{want}\n--- now\n{got}", r.id));
        }
    }
    assert!(
        mismatches.is_empty(),
        "schema changed (tables must keep one schema forever):\n{}",
        mismatches.join("\n")
    );
}
