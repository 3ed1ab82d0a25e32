//! The change log: every committed partition, for warehouse loaders (`wxcube changes`).
//!
//! One small JSON object per commit batch (the partitions one account's tasks of a run may
//! commit, or those of one keyed pass), under
//! `_wxcube/changes/date=YYYY-MM-DD/HHMMSS.ffffffZ-<run id>-<seq>.json` (UTC; keys sort in
//! log order). It is written twice: *before* the batch's first commit, as `pending` with the
//! partitions that may change, and after its last, as `committed` with each partition's
//! rows, bytes and ETag/version. A run killed between the two (or a commit of the batch that
//! failed) leaves the pending record, which means "re-read these partitions" (their commit
//! may or may not have happened): so the log is at-least-once, a loader never misses a
//! commit, and one that re-applies a partition it already has loses nothing (a partition is
//! replaced as a whole). One record per account rather than per partition or per task: two
//! durable writes per account and run instead of two per commit (workload R, 3 accounts of
//! 21 reports: 468 record writes per partition, 126 per task, 6 per account). The record
//! stays pending until the account's last commit of the run (at the latest until the run
//! ends), which only means loaders re-read those partitions a little longer.
//!
//! `changes --since` answers with `next_since`, the watermark to pass next time: the listing
//! time less [`SKEW_MARGIN`] (records in flight, clocks that disagree), or earlier if a
//! pending record is older.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, Utc};
use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};

use crate::hive;
use crate::store::{Store, StoreError};

/// What one commit wrote, as the change log records it.
#[derive(Debug, Default, Clone)]
pub struct Committed {
    pub rows: usize,
    pub bytes: usize,
    /// The new object's ETag or version id, where the store gives one.
    pub etag: Option<String>,
}

pub const DIR: &str = "_wxcube/changes";
/// How far back `next_since` reaches before the listing time.
pub const SKEW_MARGIN: Duration = Duration::minutes(5);
/// Beyond this many days `changes` lists the whole log instead of one folder per day.
const MAX_DAY_FOLDERS: i64 = 400;
const IN_FLIGHT: usize = 32;

/// One partition in a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub table: String,
    pub account: String,
    /// `month=2026-01`, `date=...`, `year=...`.
    pub partition: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub version: u32,
    pub run_id: String,
    pub seq: u64,
    /// `pending` (written before the commit: re-read these) or `committed`.
    pub status: String,
    pub recorded_at: DateTime<Utc>,
    #[serde(default)]
    pub committed_at: Option<DateTime<Utc>>,
    pub partitions: Vec<Entry>,
}

/// One changed partition, as listed and as kept in the run report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub table: String,
    pub account: String,
    pub partition: String,
    /// The data file, relative to the output uri.
    pub path: String,
    pub rows: Option<u64>,
    pub bytes: Option<u64>,
    pub etag: Option<String>,
    pub run_id: String,
    pub status: String,
    pub recorded_at: DateTime<Utc>,
    pub committed_at: Option<DateTime<Utc>>,
}

impl Record {
    fn changes(&self) -> impl Iterator<Item = Change> + '_ {
        self.partitions.iter().map(|e| Change {
            table: e.table.clone(),
            account: e.account.clone(),
            partition: e.partition.clone(),
            path: hive::file_rel(&e.table, &e.account, &e.partition),
            rows: e.rows,
            bytes: e.bytes,
            etag: e.etag.clone(),
            run_id: self.run_id.clone(),
            status: self.status.clone(),
            recorded_at: self.recorded_at,
            committed_at: self.committed_at,
        })
    }
}

fn record_rel(at: DateTime<Utc>, run_id: &str, seq: u64) -> String {
    format!(
        "{DIR}/date={}/{}Z-{run_id}-{seq:06}.json",
        at.format("%Y-%m-%d"),
        at.format("%H%M%S%.6f")
    )
}

/// The log of one run: writes its records, keeps the committed ones for the run report.
pub struct Log {
    store: Arc<Store>,
    run_id: String,
    seq: AtomicU64,
    done: Mutex<Vec<Change>>,
    /// The open shared records of each account, see [`Log::begin_part`].
    open: Mutex<OpenRecords>,
    /// Per account: the partitions its tasks may still commit and none has begun to.
    planned: Mutex<BTreeMap<String, std::collections::BTreeSet<TablePart>>>,
}

/// A partition of a table (of the account whose record lists it).
type TablePart = (&'static str, String);

/// Per account: its open shared records.
type OpenRecords = BTreeMap<String, Vec<Arc<Shared>>>;

/// A pending record shared by the commits of one account's tasks.
struct Shared {
    rel: String,
    record: Record,
    /// Set once the pending record is durable; a failed write is tried again by the next.
    written: tokio::sync::OnceCell<()>,
    inner: Mutex<SharedState>,
}

#[derive(Default)]
struct SharedState {
    /// Listed partitions not committed yet.
    left: std::collections::BTreeSet<TablePart>,
    /// Commits begun and not yet finished.
    in_flight: usize,
    committed: Vec<Entry>,
    /// A commit of the batch failed: it may have happened, so the record stays pending.
    uncertain: bool,
}

/// One commit within a shared record; dropped without [`Log::finish_part`], the record stays
/// pending (the commit may have happened).
pub struct PartBatch {
    shared: Arc<Shared>,
    part: TablePart,
    finished: bool,
}

impl Drop for PartBatch {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let Ok(mut st) = self.shared.inner.lock() {
            st.in_flight -= 1;
            st.left.remove(&self.part);
            st.uncertain = true;
        }
    }
}

/// A commit batch whose pending record is written.
pub struct Batch {
    /// None: no partition could change, nothing was written.
    rel: Option<String>,
    record: Record,
    table: String,
    account: String,
}

impl Log {
    pub fn new(store: Arc<Store>, run_id: &str) -> Arc<Log> {
        Arc::new(Log {
            store,
            run_id: run_id.into(),
            seq: AtomicU64::new(0),
            done: Mutex::new(Vec::new()),
            open: Mutex::new(BTreeMap::new()),
            planned: Mutex::new(BTreeMap::new()),
        })
    }

    /// Notes partitions of `table` that `account`'s tasks may commit in this run: the
    /// account's shared record lists them from its first commit on.
    pub fn plan(
        &self,
        table: &'static str,
        account: &str,
        parts: impl IntoIterator<Item = String>,
    ) {
        if let Ok(mut planned) = self.planned.lock() {
            let list = planned.entry(account.to_string()).or_default();
            list.extend(parts.into_iter().map(|p| (table, p)));
        }
    }

    /// A pending record of `account`'s (table, partition) pairs.
    fn pending_record<'a>(
        &self,
        account: &str,
        partitions: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Record {
        Record {
            version: 1,
            run_id: self.run_id.clone(),
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
            status: "pending".into(),
            recorded_at: crate::clock::utc(),
            committed_at: None,
            partitions: partitions
                .into_iter()
                .map(|(table, p)| Entry {
                    table: table.into(),
                    account: account.into(),
                    partition: p.into(),
                    rows: None,
                    bytes: None,
                    etag: None,
                })
                .collect(),
        }
    }

    /// Writes a record, with a short retry (no commit happens without its pending record):
    /// 4 attempts, 0.5, 1 and 2 s apart (no jitter).
    async fn write_record(&self, rel: &str, record: &Record) -> Result<(), StoreError> {
        let bytes = encode(record)?;
        let policy = crate::retry::RetryPolicy {
            base: std::time::Duration::from_millis(500),
            ..Default::default()
        };
        let none = crate::retry::Jitter::none();
        let store = &self.store;
        crate::retry::retry_fn(
            policy.schedule(4, 0, &none),
            |_| store.overwrite(rel, bytes.clone()),
            |e, attempt| tracing::warn!(error = %e, attempt, "change record write failed, retrying"),
        )
        .await
    }

    /// Records that `part` of `table` may change, in the account's shared record: the
    /// account's first commit writes one pending record for `part` and every partition
    /// [`Log::plan`] named that no commit has begun on; the following ones find theirs
    /// listed and write nothing. The record is rewritten as committed once each listed
    /// partition is finished (or at [`Log::close`]).
    pub async fn begin_part(
        &self,
        table: &'static str,
        account: &str,
        part: &str,
    ) -> Result<PartBatch, StoreError> {
        let key: TablePart = (table, part.to_string());
        let shared = {
            let mut open = self.open.lock().map_err(|_| poisoned())?;
            let mut planned = self.planned.lock().map_err(|_| poisoned())?;
            if let Some(l) = planned.get_mut(account) {
                // Begun: a new record (after a failed commit) lists it no more.
                l.remove(&key);
            }
            let records = open.entry(account.to_string()).or_default();
            let listed = records.iter().find(|sh| {
                sh.inner
                    .lock()
                    .is_ok_and(|st| !st.uncertain && st.left.contains(&key))
            });
            let shared = match listed {
                Some(sh) => Arc::clone(sh),
                None => {
                    let mut parts = vec![key.clone()];
                    if let Some(l) = planned.get(account) {
                        parts.extend(l.iter().cloned());
                    }
                    let record =
                        self.pending_record(account, parts.iter().map(|(t, p)| (*t, p.as_str())));
                    let sh = Arc::new(Shared {
                        rel: record_rel(record.recorded_at, &self.run_id, record.seq),
                        record,
                        written: tokio::sync::OnceCell::new(),
                        inner: Mutex::new(SharedState {
                            left: parts.into_iter().collect(),
                            ..Default::default()
                        }),
                    });
                    records.push(Arc::clone(&sh));
                    sh
                }
            };
            if let Ok(mut st) = shared.inner.lock() {
                st.in_flight += 1;
            }
            shared
        };
        let batch = PartBatch {
            shared,
            part: key,
            finished: false,
        };
        let sh = &batch.shared;
        // On failure the batch drops: the record stays pending (written or not).
        sh.written
            .get_or_try_init(|| self.write_record(&sh.rel, &sh.record))
            .await?;
        Ok(batch)
    }

    /// Notes one commit of a shared record; the last one rewrites it as committed.
    pub async fn finish_part(&self, mut batch: PartBatch, c: &Committed) {
        batch.finished = true;
        let sh = Arc::clone(&batch.shared);
        let entry = Entry {
            table: batch.part.0.into(),
            account: sh.record.partitions[0].account.clone(),
            partition: batch.part.1.clone(),
            rows: Some(c.rows as u64),
            bytes: Some(c.bytes as u64),
            etag: c.etag.clone(),
        };
        let mut record = sh.record.clone();
        record.partitions = vec![entry.clone()];
        if let Ok(mut d) = self.done.lock() {
            d.extend(committed_at_now(record).changes());
        }
        let complete = match sh.inner.lock() {
            Ok(mut st) => {
                st.in_flight -= 1;
                st.left.remove(&batch.part);
                st.committed.push(entry);
                st.left.is_empty() && st.in_flight == 0 && !st.uncertain
            }
            Err(_) => false,
        };
        drop(batch);
        if complete {
            self.complete(&sh).await;
        }
    }

    /// Rewrites a shared record as committed with what its commits did (once, by the last).
    async fn complete(&self, sh: &Arc<Shared>) {
        if let Ok(mut open) = self.open.lock() {
            for records in open.values_mut() {
                records.retain(|o| !Arc::ptr_eq(o, sh));
            }
        }
        let committed = match sh.inner.lock() {
            Ok(mut st) if !st.uncertain && st.in_flight == 0 => std::mem::take(&mut st.committed),
            _ => return,
        };
        if sh.written.get().is_none() {
            return;
        }
        let mut record = sh.record.clone();
        record.partitions = committed;
        let record = committed_at_now(record);
        if let Err(e) = self.write_record(&sh.rel, &record).await {
            tracing::warn!(error = %e, "could not complete the change record; it stays pending (loaders re-read those partitions)");
        }
    }

    /// Completes every shared record still open (partitions listed but not committed did
    /// not change); call once all commits are done. Records of failed commits stay pending.
    pub async fn close(&self) {
        let open: Vec<Arc<Shared>> = match self.open.lock() {
            Ok(mut o) => std::mem::take(&mut *o).into_values().flatten().collect(),
            Err(_) => return,
        };
        for sh in open {
            self.complete(&sh).await;
        }
    }

    /// Records that these partitions may change; call before committing any of them.
    pub async fn begin(
        &self,
        table: &str,
        account: &str,
        partitions: &[String],
    ) -> Result<Batch, StoreError> {
        let record = self.pending_record(account, partitions.iter().map(|p| (table, p.as_str())));
        let (now, seq) = (record.recorded_at, record.seq);
        let (table, account) = (table.to_string(), account.to_string());
        if record.partitions.is_empty() {
            return Ok(Batch {
                rel: None,
                record,
                table,
                account,
            });
        }
        let rel = record_rel(now, &self.run_id, seq);
        // No commit happens without its record: a short retry, then the commit fails.
        self.write_record(&rel, &record).await?;
        Ok(Batch {
            rel: Some(rel),
            record,
            table,
            account,
        })
    }

    /// Completes a batch with what was committed (partitions not listed did not change).
    /// A failure only warns: the pending record still tells loaders to re-read.
    pub async fn finish(&self, batch: Batch, committed: &[(String, Committed)]) {
        let Batch {
            rel,
            mut record,
            table,
            account,
        } = batch;
        let Some(rel) = rel else {
            return;
        };
        record.status = "committed".into();
        record.committed_at = Some(crate::clock::utc());
        record.partitions = committed
            .iter()
            .map(|(p, c)| Entry {
                table: table.clone(),
                account: account.clone(),
                partition: p.clone(),
                rows: Some(c.rows as u64),
                bytes: Some(c.bytes as u64),
                etag: c.etag.clone(),
            })
            .collect();
        match encode(&record) {
            Ok(b) => {
                if let Err(e) = self.store.overwrite(&rel, b).await {
                    tracing::warn!(error = %e, "could not complete the change record; it stays pending (loaders re-read those partitions)");
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not encode the change record"),
        }
        if let Ok(mut d) = self.done.lock() {
            d.extend(record.changes());
        }
    }

    /// The committed changes so far, in commit order.
    pub fn take(&self) -> Vec<Change> {
        self.done
            .lock()
            .map(|mut d| std::mem::take(&mut *d))
            .unwrap_or_default()
    }
}

fn committed_at_now(mut r: Record) -> Record {
    r.status = "committed".into();
    r.committed_at = Some(crate::clock::utc());
    r
}

fn poisoned() -> StoreError {
    StoreError::Io {
        op: "change log",
        path: String::new(),
        source: std::io::Error::other("a commit panicked"),
    }
}

fn encode(r: &Record) -> Result<Bytes, StoreError> {
    serde_json::to_vec_pretty(r)
        .map(Bytes::from)
        .map_err(|e| StoreError::Remote {
            op: "encode change record",
            path: r.run_id.clone(),
            message: e.to_string(),
        })
}

/// `--since`: a run id or a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Since {
    Run(String),
    Time(DateTime<Utc>),
}

impl std::str::FromStr for Since {
    type Err = String;
    fn from_str(s: &str) -> Result<Since, String> {
        let s = s.trim();
        if let Ok(t) = DateTime::parse_from_rfc3339(s) {
            return Ok(Since::Time(t.with_timezone(&Utc)));
        }
        if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S") {
            return Ok(Since::Time(t.and_utc()));
        }
        if let Some(d) = crate::dates::parse(s) {
            return Ok(Since::Time(
                d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc(),
            ));
        }
        if run_start(s).is_some() {
            return Ok(Since::Run(s.into()));
        }
        Err(format!(
            "--since {s:?}: neither a run id (like 20260110T080000Z-0000abcd, from `wxcube run` or _wxcube/runs/) nor a time (2026-01-10T08:00:00Z or 2026-01-10, UTC)"
        ))
    }
}

/// A run id's start time (run ids begin with it).
pub fn run_start(run_id: &str) -> Option<DateTime<Utc>> {
    let (t, rest) = run_id.split_once('-')?;
    if rest.is_empty() || !rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return None;
    }
    NaiveDateTime::parse_from_str(t, "%Y%m%dT%H%M%SZ")
        .ok()
        .map(|t| t.and_utc())
}

/// A record's place in the log, from its name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    at: DateTime<Utc>,
    run_id: String,
    seq: u64,
}

fn parse_key(rel: &str) -> Option<Key> {
    let rest = rel.strip_prefix(DIR)?.strip_prefix("/date=")?;
    let (day, name) = rest.split_once('/')?;
    let name = name.strip_suffix(".json")?;
    let (time, tail) = name.split_once("Z-")?;
    let (run_id, seq) = tail.rsplit_once('-')?;
    let at = NaiveDateTime::parse_from_str(&format!("{day} {time}"), "%Y-%m-%d %H%M%S%.f").ok()?;
    Some(Key {
        at: at.and_utc(),
        run_id: run_id.into(),
        seq: seq.parse().ok()?,
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    pub since: String,
    pub listed_at: DateTime<Utc>,
    /// Pass this as `--since` next time (at-least-once: overlaps a little, misses nothing).
    pub next_since: DateTime<Utc>,
    pub changes: Vec<Change>,
}

#[derive(Debug, thiserror::Error)]
pub enum ChangesError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Usage(String),
}

async fn keys_from(
    store: &Store,
    from: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Vec<(Key, String)>, StoreError> {
    let first: NaiveDate = from.date_naive();
    let last: NaiveDate = now.date_naive() + Duration::days(1);
    let rels = if (last - first).num_days() > MAX_DAY_FOLDERS {
        store.list(DIR).await?
    } else {
        let days: Vec<NaiveDate> = first.iter_days().take_while(|d| *d <= last).collect();
        let lists: Vec<Result<Vec<String>, StoreError>> = stream::iter(days)
            .map(|d| async move {
                store
                    .list(&format!("{DIR}/date={}", d.format("%Y-%m-%d")))
                    .await
            })
            .buffered(IN_FLIGHT)
            .collect()
            .await;
        let mut all = Vec::new();
        for l in lists {
            all.extend(l?);
        }
        all
    };
    let mut out: Vec<(Key, String)> = rels
        .into_iter()
        .filter_map(|r| parse_key(&r).map(|k| (k, r)))
        .collect();
    out.sort();
    Ok(out)
}

/// What changed since a run or a time, in log order.
pub async fn list(store: &Store, since: &Since) -> Result<Listing, ChangesError> {
    let now = crate::clock::utc();
    let keys = match since {
        Since::Time(t) => keys_from(store, *t, now)
            .await?
            .into_iter()
            .filter(|(k, _)| k.at >= *t)
            .collect::<Vec<_>>(),
        Since::Run(id) => {
            let start = run_start(id).unwrap_or(now);
            // Records of a run begin at its start (a minute's slack for clocks).
            let all = keys_from(store, start - Duration::minutes(1), now).await?;
            let cut = match all.iter().rev().find(|(k, _)| k.run_id == *id) {
                Some((k, _)) => k.clone(),
                None => {
                    let report = format!("_wxcube/runs/{id}.json");
                    if store.read(&report).await?.is_none() {
                        return Err(ChangesError::Usage(format!(
                            "--since {id}: no run of that id under {} (no run report, no change record)",
                            store.describe("")
                        )));
                    }
                    Key {
                        at: start,
                        run_id: String::new(),
                        seq: 0,
                    }
                }
            };
            all.into_iter()
                .filter(|(k, _)| *k > cut && k.run_id != *id)
                .collect()
        }
    };
    let records: Vec<Result<Option<Record>, StoreError>> = stream::iter(keys)
        .map(|(_, rel)| async move {
            Ok(match store.read(&rel).await? {
                None => None,
                Some((b, _)) => match serde_json::from_slice::<Record>(&b) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        return Err(StoreError::Refused {
                            op: "parse change record",
                            path: store.describe(&rel),
                            message: e.to_string(),
                        })
                    }
                },
            })
        })
        .buffered(IN_FLIGHT)
        .collect()
        .await;
    let mut changes = Vec::new();
    let mut next = now - SKEW_MARGIN;
    for r in records {
        let Some(r) = r? else { continue };
        if r.status != "committed" {
            next = next.min(r.recorded_at);
        }
        changes.extend(r.changes());
    }
    Ok(Listing {
        since: match since {
            Since::Run(id) => id.clone(),
            Since::Time(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        },
        listed_at: now,
        next_since: next,
        changes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_names_parse_back_and_sort_in_log_order() {
        let at = DateTime::parse_from_rfc3339("2026-01-10T08:00:01.5Z")
            .unwrap()
            .with_timezone(&Utc);
        let rel = record_rel(at, "20260110T080000Z-0000abcd", 7);
        assert_eq!(
            rel,
            "_wxcube/changes/date=2026-01-10/080001.500000Z-20260110T080000Z-0000abcd-000007.json"
        );
        let k = parse_key(&rel).unwrap();
        assert_eq!(
            (k.at, k.run_id.as_str(), k.seq),
            (at, "20260110T080000Z-0000abcd", 7)
        );
        let later = record_rel(at + Duration::milliseconds(1), "20260109T000000Z-1", 0);
        assert!(later > rel && parse_key(&later).unwrap() > k);
    }

    #[test]
    fn since_takes_run_ids_and_times() {
        assert_eq!(
            "20260110T080000Z-0000abcd".parse::<Since>(),
            Ok(Since::Run("20260110T080000Z-0000abcd".into()))
        );
        let t = |s: &str| match s.parse::<Since>() {
            Ok(Since::Time(t)) => t.to_rfc3339(),
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(t("2026-01-10"), "2026-01-10T00:00:00+00:00");
        assert_eq!(t("2026-01-10T08:00:00Z"), "2026-01-10T08:00:00+00:00");
        assert_eq!(t("2026-01-10T16:00:00+08:00"), "2026-01-10T08:00:00+00:00");
        assert!("yesterday".parse::<Since>().is_err());
    }

    #[tokio::test]
    async fn pending_records_list_and_hold_back_the_watermark() {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(Store::open(dir.path().to_str().unwrap()).unwrap());
        let log = Log::new(Arc::clone(&s), "20260110T080000Z-00000001");
        let b = log
            .begin("user_summary", "a", &["month=2026-01".into()])
            .await
            .unwrap();
        let pending = log
            .begin("user_summary", "b", &["month=2026-01".into()])
            .await
            .unwrap();
        let c = Committed {
            rows: 3,
            bytes: 100,
            etag: Some("e1".into()),
        };
        log.finish(b, &[("month=2026-01".into(), c)]).await;
        let since = Since::Time(Utc::now() - Duration::hours(1));
        let l = list(&s, &since).await.unwrap();
        let got: Vec<(&str, &str, Option<u64>)> = l
            .changes
            .iter()
            .map(|c| (c.account.as_str(), c.status.as_str(), c.rows))
            .collect();
        assert_eq!(
            got,
            vec![("a", "committed", Some(3)), ("b", "pending", None)]
        );
        // The pending record is newer than the skew margin reaches: the margin decides.
        assert_eq!(l.next_since, l.listed_at - SKEW_MARGIN);
        assert!(l.next_since <= pending.record.recorded_at);
        assert_eq!(
            log.take().len(),
            1,
            "the run report keeps only committed ones"
        );
        let e = list(&s, &Since::Run("20260101T000000Z-ffffffff".into())).await;
        assert!(matches!(e, Err(ChangesError::Usage(_))), "{e:?}");
    }

    #[tokio::test]
    async fn an_account_shares_one_record_committed_after_its_last_commit() {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(Store::open(dir.path().to_str().unwrap()).unwrap());
        let log = Log::new(Arc::clone(&s), "20260110T080000Z-00000002");
        let c = |rows| Committed {
            rows,
            bytes: 10,
            etag: None,
        };
        let statuses = || async {
            let l = list(&s, &Since::Time(Utc::now() - Duration::hours(1)))
                .await
                .unwrap();
            l.changes
                .iter()
                .map(|c| format!("{} {} {} {}", c.table, c.account, c.partition, c.status))
                .collect::<Vec<_>>()
        };
        let months = |ms: &[&str]| {
            ms.iter()
                .map(|m| format!("month=2026-{m}"))
                .collect::<Vec<_>>()
        };
        // Two tables of account a, one each of b and c.
        log.plan("t", "a", months(&["01", "02"]));
        log.plan("u", "a", months(&["03"]));
        log.plan("t", "b", months(&["01", "02"]));
        log.plan("t", "c", months(&["01", "02"]));
        let jan = log.begin_part("t", "a", "month=2026-01").await.unwrap();
        let feb = log.begin_part("t", "a", "month=2026-02").await.unwrap();
        log.finish_part(jan, &c(1)).await;
        // One record, still pending: February and u's March may follow.
        assert_eq!(
            statuses().await,
            [
                "t a month=2026-01 pending",
                "t a month=2026-02 pending",
                "u a month=2026-03 pending"
            ]
        );
        log.finish_part(feb, &c(2)).await;
        let mar = log.begin_part("u", "a", "month=2026-03").await.unwrap();
        log.finish_part(mar, &c(3)).await;
        assert_eq!(
            statuses().await,
            [
                "t a month=2026-01 committed",
                "t a month=2026-02 committed",
                "u a month=2026-03 committed"
            ]
        );
        // A commit that failed keeps its record pending, even after close; the next commit
        // gets a record of its own, which no longer lists the one that failed.
        let b1 = log.begin_part("t", "b", "month=2026-01").await.unwrap();
        drop(b1);
        let b2 = log.begin_part("t", "b", "month=2026-02").await.unwrap();
        log.finish_part(b2, &c(5)).await;
        assert!(
            statuses()
                .await
                .contains(&"t b month=2026-02 committed".to_string()),
            "complete at its one commit, before close"
        );
        // One that never came: close completes the record with what was committed.
        let c1 = log.begin_part("t", "c", "month=2026-01").await.unwrap();
        log.finish_part(c1, &c(4)).await;
        log.close().await;
        let got = statuses().await;
        assert_eq!(
            got[3..].to_vec(),
            [
                "t b month=2026-01 pending",
                "t b month=2026-02 pending",
                "t b month=2026-02 committed",
                "t c month=2026-01 committed"
            ]
        );
        assert_eq!(log.take().len(), 5, "the run report has each commit");
        let files = s.list(DIR).await.unwrap();
        assert_eq!(
            files.len(),
            4,
            "one record per account, and one after a failure: {files:?}"
        );
    }
}
