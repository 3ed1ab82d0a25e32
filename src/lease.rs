//! Leases: one account, one worker, across processes and machines.
//!
//! Before a run calls WeChat for an account it holds `_wxcube/leases/account=<name>.json`,
//! taken with the store's conditional write (create if absent; replace at the version read
//! if the lease there has expired or was released), the same compare-and-swap partition
//! commits use. So of two runs that try at once exactly one wins, on disk and on S3 (a store
//! whose conditional PUT is atomic: AWS S3, R2, MinIO; moto checks and stores in two steps).
//!
//! A lease lasts [`DEFAULT_LENGTH`] and is renewed every third of that while the run works;
//! it is released (marked released, expiry now) when the run ends, whatever its outcome. A
//! run killed outright leaves its lease to expire. A renewal that finds the lease taken
//! over (our renewals failed for a whole lease length) stops the account's fetching.
//! Expiry is compared on the taker's clock: hosts must agree on UTC within seconds.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError, Tag};

/// 120 s: long enough that a renewal every 40 s survives two failed attempts (an S3 blip,
/// a paused VM), short enough that a killed run's accounts are free again in two minutes.
pub const DEFAULT_LENGTH: Duration = Duration::from_secs(120);
/// 150 s: a retried orchestrator task outwaits the lease of the attempt that was killed.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(150);
/// Lease reads and writes in flight at once.
const IN_FLIGHT: usize = 32;

pub fn rel(account: &str) -> String {
    format!("_wxcube/leases/account={account}.json")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub run_id: String,
    pub host: String,
    pub pid: u32,
}

impl Holder {
    pub fn this_process(run_id: &str) -> Holder {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unknown".into());
        Holder {
            run_id: run_id.into(),
            host,
            pid: std::process::id(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseDoc {
    pub version: u32,
    pub account: String,
    pub holder: Holder,
    pub acquired_at: DateTime<Utc>,
    pub renewed_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    #[serde(default)]
    pub released: bool,
}

impl LeaseDoc {
    pub fn live(&self, now: DateTime<Utc>) -> bool {
        !self.released && self.expires_at > now
    }

    /// Why a run skips this account: who holds it and until when.
    pub fn busy_message(&self) -> String {
        format!(
            "account {} is leased by run {} (host {}, pid {}) until {}: skipped, that run is fetching it; re-run after it ends to resume",
            self.account,
            self.holder.run_id,
            self.holder.host,
            self.holder.pid,
            self.expires_at.format("%Y-%m-%dT%H:%M:%SZ")
        )
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Config {
    pub length: Duration,
    /// How long to wait for a live lease to end before skipping its account.
    pub wait: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            length: DEFAULT_LENGTH,
            wait: DEFAULT_WAIT,
        }
    }
}

fn chrono_len(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::seconds(120))
}

struct Held {
    doc: LeaseDoc,
    tag: Tag,
}

/// The leases a run holds, renewed in the background until released.
pub struct Leases {
    store: Arc<Store>,
    held: Arc<tokio::sync::Mutex<BTreeMap<String, Held>>>,
    /// Accounts whose lease was taken over, with the message to fail them with.
    lost: Arc<Mutex<BTreeMap<String, String>>>,
    keeper: Option<tokio::task::JoinHandle<()>>,
    /// Accounts skipped: the live lease found there.
    pub busy: BTreeMap<String, LeaseDoc>,
}

/// Whether an account's lease was lost, for its worker.
#[derive(Clone, Default)]
pub struct Watch {
    account: String,
    lost: Option<Arc<Mutex<BTreeMap<String, String>>>>,
}

impl Watch {
    pub fn lost(&self) -> Option<String> {
        let m = self.lost.as_ref()?.lock().ok()?;
        m.get(&self.account).cloned()
    }
}

enum Try {
    Held(Held),
    Busy(LeaseDoc),
}

fn encode(doc: &LeaseDoc) -> Bytes {
    Bytes::from(serde_json::to_vec_pretty(doc).unwrap_or_default())
}

async fn try_take(
    store: &Store,
    account: &str,
    holder: &Holder,
    len: Duration,
) -> Result<Try, StoreError> {
    let path = rel(account);
    // A conflict means another taker moved first: look again (bounded).
    for _ in 0..8 {
        let now = crate::clock::utc();
        let (tag, acquired_at) = match store.read(&path).await? {
            None => (Tag::default(), now),
            Some((bytes, tag)) => match serde_json::from_slice::<LeaseDoc>(&bytes) {
                Ok(doc) if doc.holder == *holder => (tag, doc.acquired_at),
                Ok(doc) if doc.live(now) => return Ok(Try::Busy(doc)),
                Ok(_) => (tag, now),
                Err(e) => {
                    tracing::warn!(account, error = %e, "damaged lease file: taking it over");
                    (tag, now)
                }
            },
        };
        let doc = LeaseDoc {
            version: 1,
            account: account.into(),
            holder: holder.clone(),
            acquired_at,
            renewed_at: now,
            expires_at: now + chrono_len(len),
            released: false,
        };
        match store.write_tagged(&path, encode(&doc), &tag).await {
            Ok(tag) => return Ok(Try::Held(Held { doc, tag })),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Conflict {
        path: store.describe(&path),
    })
}

impl Leases {
    /// Takes the leases of `accounts`, waiting up to `cfg.wait` (all accounts at once) for
    /// live ones to end; those still held elsewhere then are in `busy`. While it waits it
    /// holds none of them (see below), so two waiting runs cannot block each other.
    pub async fn acquire(
        store: Arc<Store>,
        accounts: &[String],
        holder: Holder,
        cfg: Config,
    ) -> Result<Leases, StoreError> {
        let deadline = tokio::time::Instant::now() + cfg.wait;
        let poll = (cfg.length / 10).clamp(Duration::from_millis(100), Duration::from_secs(5));
        let mut held = BTreeMap::new();
        let mut busy = BTreeMap::new();
        let mut failure = None;
        let mut jitter = u64::from(std::process::id()) | 1;
        loop {
            let tries: Vec<(String, Result<Try, StoreError>)> =
                stream::iter(accounts.iter().cloned())
                    .map(|a| {
                        let (store, holder) = (&store, &holder);
                        async move {
                            let r = try_take(store, &a, holder, cfg.length).await;
                            (a, r)
                        }
                    })
                    .buffer_unordered(IN_FLIGHT)
                    .collect()
                    .await;
            busy.clear();
            for (a, r) in tries {
                match r {
                    Ok(Try::Held(h)) => {
                        held.insert(a, h);
                    }
                    Ok(Try::Busy(doc)) => {
                        busy.insert(a, doc);
                    }
                    Err(e) => {
                        failure.get_or_insert(e);
                    }
                }
            }
            let now = tokio::time::Instant::now();
            if failure.is_some() || busy.is_empty() || now >= deadline {
                break;
            }
            // Never hold some while waiting for others: two runs that each took half would
            // wait for each other. Let go, and try them all again a little later (jittered,
            // so two such runs do not keep splitting the accounts).
            release_docs(&store, std::mem::take(&mut held).into_values().collect()).await;
            let utc = crate::clock::utc();
            let first_expiry = busy
                .values()
                .map(|d| (d.expires_at - utc).to_std().unwrap_or_default())
                .min()
                .unwrap_or(poll);
            jitter ^= jitter << 13;
            jitter ^= jitter >> 7;
            jitter ^= jitter << 17;
            let spread = poll.mul_f64(0.5 + (jitter % 1000) as f64 / 1000.0);
            let nap = spread
                .min(first_expiry + Duration::from_millis(50))
                .min(deadline.saturating_duration_since(now));
            tokio::time::sleep(nap).await;
        }
        let mut leases = Leases {
            store,
            held: Arc::new(tokio::sync::Mutex::new(held)),
            lost: Arc::new(Mutex::new(BTreeMap::new())),
            keeper: None,
            busy,
        };
        if let Some(e) = failure {
            leases.release_all().await;
            return Err(e);
        }
        leases.keeper = Some(tokio::spawn(keep(
            Arc::clone(&leases.store),
            Arc::clone(&leases.held),
            Arc::clone(&leases.lost),
            cfg.length,
        )));
        Ok(leases)
    }

    pub fn watch(&self, account: &str) -> Watch {
        Watch {
            account: account.into(),
            lost: Some(Arc::clone(&self.lost)),
        }
    }

    /// Releases these accounts' leases now (an account with nothing to fetch).
    pub async fn release(&self, accounts: &[String]) {
        let mut held = self.held.lock().await;
        let docs: Vec<Held> = accounts.iter().filter_map(|a| held.remove(a)).collect();
        drop(held);
        release_docs(&self.store, docs).await;
    }

    /// Releases every lease still held and stops renewing.
    pub async fn release_all(&mut self) {
        if let Some(k) = self.keeper.take() {
            k.abort();
            let _ = k.await;
        }
        let docs: Vec<Held> = std::mem::take(&mut *self.held.lock().await)
            .into_values()
            .collect();
        release_docs(&self.store, docs).await;
    }
}

impl Drop for Leases {
    fn drop(&mut self) {
        // Not released (the run was cancelled): stop renewing, let them expire.
        if let Some(k) = self.keeper.take() {
            k.abort();
        }
    }
}

async fn release_docs(store: &Store, docs: Vec<Held>) {
    stream::iter(docs)
        .for_each_concurrent(IN_FLIGHT, |h| async move {
            let now = crate::clock::utc();
            let doc = LeaseDoc {
                renewed_at: now,
                expires_at: now,
                released: true,
                ..h.doc
            };
            let path = rel(&doc.account);
            match store.write(&path, encode(&doc), &h.tag).await {
                Ok(()) | Err(StoreError::Conflict { .. }) => {}
                // It expires on its own: a later run waits at most the lease length.
                Err(e) => tracing::warn!(account = %doc.account, error = %e, "could not release the lease"),
            }
        })
        .await;
}

/// Renews every held lease each third of its length.
async fn keep(
    store: Arc<Store>,
    held: Arc<tokio::sync::Mutex<BTreeMap<String, Held>>>,
    lost: Arc<Mutex<BTreeMap<String, String>>>,
    len: Duration,
) {
    let every = len / 3;
    loop {
        tokio::time::sleep(every).await;
        let mut map = held.lock().await;
        let now = crate::clock::utc();
        let todo: Vec<(String, LeaseDoc, Tag)> = map
            .iter()
            .map(|(a, h)| {
                let doc = LeaseDoc {
                    renewed_at: now,
                    expires_at: now + chrono_len(len),
                    ..h.doc.clone()
                };
                (a.clone(), doc, h.tag.clone())
            })
            .collect();
        let results: Vec<(String, Result<Tag, StoreError>)> = stream::iter(todo)
            .map(|(a, doc, tag)| {
                let store = Arc::clone(&store);
                async move {
                    let r = store.write_tagged(&rel(&a), encode(&doc), &tag).await;
                    (a, r)
                }
            })
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        for (a, r) in results {
            match r {
                Ok(tag) => {
                    if let Some(h) = map.get_mut(&a) {
                        h.tag = tag;
                        h.doc.renewed_at = now;
                        h.doc.expires_at = now + chrono_len(len);
                    }
                }
                Err(StoreError::Conflict { .. }) => {
                    let by = match store.read(&rel(&a)).await {
                        Ok(Some((b, _))) => serde_json::from_slice::<LeaseDoc>(&b)
                            .map(|d| {
                                format!(
                                    "run {} (host {}, pid {})",
                                    d.holder.run_id, d.holder.host, d.holder.pid
                                )
                            })
                            .unwrap_or_else(|_| "another run".into()),
                        _ => "another run".into(),
                    };
                    let msg = format!("account {a}: lease taken over by {by} after renewals failed: stopped fetching it; re-run to resume");
                    tracing::error!(account = %a, "{msg}");
                    map.remove(&a);
                    if let Ok(mut l) = lost.lock() {
                        l.insert(a, msg);
                    }
                }
                Err(e) => {
                    tracing::warn!(account = %a, error = %e, "lease renewal failed; retrying at the next renewal")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(run: &str) -> Holder {
        Holder {
            run_id: run.into(),
            host: "h".into(),
            pid: 1,
        }
    }

    fn cfg(len_ms: u64, wait_ms: u64) -> Config {
        Config {
            length: Duration::from_millis(len_ms),
            wait: Duration::from_millis(wait_ms),
        }
    }

    async fn doc(s: &Store, a: &str) -> LeaseDoc {
        let (b, _) = s.read(&rel(a)).await.unwrap().unwrap();
        serde_json::from_slice(&b).unwrap()
    }

    #[tokio::test]
    async fn a_live_lease_keeps_a_second_run_out_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(Store::open(dir.path().to_str().unwrap()).unwrap());
        let names = vec!["a".to_string(), "b".to_string()];
        let mut one = Leases::acquire(Arc::clone(&s), &names, holder("r1"), cfg(60_000, 0))
            .await
            .unwrap();
        assert!(one.busy.is_empty());
        let two = Leases::acquire(Arc::clone(&s), &names, holder("r2"), cfg(60_000, 0))
            .await
            .unwrap();
        assert_eq!(two.busy.len(), 2);
        let m = two.busy["a"].busy_message();
        assert!(m.contains("leased by run r1 (host h, pid 1) until "), "{m}");
        one.release(&["a".to_string()]).await;
        assert!(doc(&s, "a").await.released);
        let mut three = Leases::acquire(Arc::clone(&s), &names, holder("r3"), cfg(60_000, 0))
            .await
            .unwrap();
        assert_eq!(three.busy.keys().collect::<Vec<_>>(), vec!["b"]);
        assert_eq!(doc(&s, "a").await.holder.run_id, "r3");
        one.release_all().await;
        three.release_all().await;
        assert!(doc(&s, "b").await.released && doc(&s, "a").await.released);
    }

    #[tokio::test]
    async fn an_expired_lease_is_taken_over_and_a_waiter_gets_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(Store::open(dir.path().to_str().unwrap()).unwrap());
        let names = vec!["a".to_string()];
        let one = Leases::acquire(Arc::clone(&s), &names, holder("r1"), cfg(300, 0))
            .await
            .unwrap();
        // Killed: no renewal, no release.
        drop(one);
        let mut two = Leases::acquire(Arc::clone(&s), &names, holder("r2"), cfg(300, 5_000))
            .await
            .unwrap();
        assert!(two.busy.is_empty(), "waited for the expiry and took it");
        assert_eq!(doc(&s, "a").await.holder.run_id, "r2");
        two.release_all().await;
    }

    #[tokio::test]
    async fn renewals_keep_a_lease_past_its_length() {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(Store::open(dir.path().to_str().unwrap()).unwrap());
        let names = vec!["a".to_string()];
        let mut one = Leases::acquire(Arc::clone(&s), &names, holder("r1"), cfg(300, 0))
            .await
            .unwrap();
        let first = doc(&s, "a").await.expires_at;
        tokio::time::sleep(Duration::from_millis(700)).await;
        let later = doc(&s, "a").await;
        assert!(later.expires_at > first, "renewed");
        assert_eq!(later.acquired_at, doc(&s, "a").await.acquired_at);
        assert!(one.watch("a").lost().is_none());
        one.release_all().await;
    }
}
