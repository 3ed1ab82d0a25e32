//! The layout each table was written with (`output.partition`), recorded with the data at
//! `{uri}/_wxcube/layout/<report>.json`.
//!
//! A table holds one Hive layout forever: `date=` files beside `month=` ones would show
//! readers every re-fetched row twice, and DuckDB refuses mixed keys. A pipeline whose
//! `output.partition` disagrees with the record is refused before anything is written
//! (exit 2). A table written before layouts were recorded has its layout read off its
//! files (one listing) and recorded by the first run.

use serde::{Deserialize, Serialize};

use crate::catalog::Report;
use crate::pipeline::Partition;
use crate::store::{Store, StoreError, Tag};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    version: u32,
    report: String,
    partition: String,
}

pub fn name(p: Partition) -> &'static str {
    match p {
        Partition::Day => "day",
        Partition::Month => "month",
        Partition::Year => "year",
    }
}

/// The Hive key of a layout's folders.
fn key(p: Partition) -> &'static str {
    match p {
        Partition::Day => "date",
        Partition::Month => "month",
        Partition::Year => "year",
    }
}

fn rel(report: &str) -> String {
    format!("_wxcube/layout/{report}.json")
}

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error(
        "{table} was written with `partition: {recorded}`, but the pipeline says `partition: {wanted}`: \
         mixing layouts in one table would show readers rows twice. Keep `output.partition: {recorded}`, \
         or re-layout explicitly: run the pipeline with `partition: {wanted}` into a new `output.uri` \
         (`wxcube run --full-refresh`), switch readers to it, then delete the old one"
    )]
    Mismatch {
        table: String,
        recorded: String,
        wanted: &'static str,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the store says of one table's layout.
async fn recorded(store: &Store, report: &str) -> Result<(Option<String>, Tag), StoreError> {
    let path = rel(report);
    if let Some((bytes, tag)) = store.read(&path).await? {
        let r: Record = serde_json::from_slice(&bytes).map_err(|e| StoreError::Refused {
            op: "parse layout",
            path: store.describe(&path),
            message: format!(
                "{e}; restore it, or write {{\"version\":1,\"report\":\"{report}\",\"partition\":\"month\"}} with the layout the table's folders show"
            ),
        })?;
        return Ok((Some(r.partition), tag));
    }
    // Written before layouts were recorded: the folders tell.
    let files = store.list(&format!("{report}/")).await?;
    let found = files.iter().find_map(|f| {
        let seg = f.split('/').nth(2)?;
        let (k, _) = seg.split_once('=')?;
        [Partition::Day, Partition::Month, Partition::Year]
            .into_iter()
            .find(|p| key(*p) == k)
            .map(|p| name(p).to_string())
    });
    Ok((found, Tag::default()))
}

/// Refuses a layout that disagrees with what a table was written with; with `record`,
/// writes the layout of tables that have none recorded yet. Every table is checked before
/// any is written (the first disagreement in the pipeline's order is the one refused), and
/// the records are written side by side, so they share their syncs.
pub async fn check(
    store: &Store,
    reports: &[&'static Report],
    partition: Partition,
    record: bool,
) -> Result<(), LayoutError> {
    let wanted = name(partition);
    let mut writes = Vec::new();
    for r in reports {
        let (found, tag) = recorded(store, r.id).await?;
        let mut rewrite = false;
        if let Some(rec) = &found {
            if rec != wanted {
                // A record without data (a first run that failed before any commit) binds
                // nothing: the table takes the layout it is first written with.
                let files = store.list(&format!("{}/", r.id)).await?;
                if files.iter().any(|f| f.ends_with("/data.parquet")) {
                    return Err(LayoutError::Mismatch {
                        table: store.describe(r.id),
                        recorded: rec.clone(),
                        wanted,
                    });
                }
                rewrite = true;
            }
        }
        if record && (tag == Tag::default() || rewrite) {
            writes.push((r.id, tag));
        }
    }
    let written = futures::future::join_all(writes.iter().map(|(id, tag)| {
        let body = serde_json::to_vec_pretty(&Record {
            version: 1,
            report: id.to_string(),
            partition: wanted.to_string(),
        })
        .unwrap_or_default();
        async move { store.write(&rel(id), body.into(), tag).await }
    }))
    .await;
    for ((id, _), result) in writes.iter().zip(written) {
        match result {
            Ok(()) => {}
            // Another run recorded it first: it must agree with us.
            Err(StoreError::Conflict { .. }) => {
                if let (Some(rec), _) = recorded(store, id).await? {
                    if rec != wanted {
                        return Err(LayoutError::Mismatch {
                            table: store.describe(id),
                            recorded: rec,
                            wanted,
                        });
                    }
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
