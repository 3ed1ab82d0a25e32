//! The limits a data call passes before it is sent, each a piece of its own: the rate
//! (`RateLimiter`, per account and global), the in-flight cap (`Cap`, per account) and the
//! memory budget of fetched windows (`InFlight`, shared). `Extractor::call` composes them.
//!
//! The rate limiter is GCRA with a burst of one: the n-th call may start no earlier than one interval after the
//! (n-1)-th. Each caller reserves its slot under a short lock and then sleeps on tokio's
//! timer until it, so waiters never race for a freed slot and a wait is one timer entry
//! in the runtime's own driver. (governor's `until_ready` sleeps on `futures_timer`'s
//! separate thread: every wait was a cross-thread wake-up, and after it all waiters
//! re-checked at once.) A caller dropped while it waits gives its slot away unused, which
//! can only slow the rate, never exceed it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, SemaphorePermit};
use tokio::time::Instant;

use crate::catalog::Report;

pub struct RateLimiter {
    interval: Duration,
    /// The earliest start of the next call ("theoretical arrival time").
    next: Mutex<Option<Instant>>,
}

impl RateLimiter {
    /// `per_second` calls a second (at least one).
    pub fn per_second(per_second: u32) -> Self {
        RateLimiter {
            interval: Duration::from_secs(1) / per_second.max(1),
            next: Mutex::new(None),
        }
    }

    /// Reserves the next slot; the caller may start at the returned instant.
    fn reserve(&self) -> Instant {
        let now = Instant::now();
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let at = next.map_or(now, |n| n.max(now));
        *next = Some(at + self.interval);
        at
    }

    /// Waits for this caller's turn.
    pub async fn until_ready(&self) {
        let at = self.reserve();
        if at > Instant::now() {
            tokio::time::sleep_until(at).await;
        }
    }
}

/// At most n requests of an account in flight at once.
pub struct Cap(Semaphore);

impl Cap {
    /// `n` at once (at least one).
    pub fn new(n: u32) -> Self {
        Cap(Semaphore::new(n.max(1) as usize))
    }

    /// Waits for a free slot; held until the permit drops. None once closed (never, today).
    pub async fn acquire(&self) -> Option<SemaphorePermit<'_>> {
        self.0.acquire().await.ok()
    }
}

/// The memory that fetched windows may hold until the loader has their rows (response
/// bodies, decoded batches, the channel), shared by all accounts. Without it, memory would
/// grow with accounts × `max_in_flight` × the largest response.
const IN_FLIGHT_BYTES: usize = 8 << 20;

/// The in-flight budget, in KiB, and the size a window of each report is expected to take.
pub struct InFlight {
    permits: Arc<Semaphore>,
    /// The budget's size, KiB.
    kib: usize,
    expected: Mutex<HashMap<&'static str, usize>>,
}

/// A window's share of the in-flight budget.
pub type Reservation = OwnedSemaphorePermit;

impl Default for InFlight {
    fn default() -> Self {
        InFlight::with_kib(IN_FLIGHT_BYTES >> 10)
    }
}

impl InFlight {
    /// A budget of `kib` KiB.
    pub fn with_kib(kib: usize) -> Self {
        InFlight {
            permits: Arc::new(Semaphore::new(kib)),
            kib,
            expected: Mutex::new(HashMap::new()),
        }
    }

    /// KiB to reserve for a window of this report: the largest recently observed, decaying;
    /// at most a quarter of the budget, so one huge report cannot run alone.
    pub fn expected_kib(&self, r: &Report) -> u32 {
        let kib = self
            .expected
            .lock()
            .ok()
            .and_then(|m| m.get(r.id).copied())
            .unwrap_or(256);
        kib.clamp(1, (self.kib >> 2).max(1)) as u32
    }

    /// Waits for a window's share.
    pub async fn reserve(&self, r: &Report) -> Option<Reservation> {
        let kib = self.expected_kib(r);
        Arc::clone(&self.permits).acquire_many_owned(kib).await.ok()
    }

    pub fn observe(&self, r: &'static Report, kib: usize) {
        if let Ok(mut m) = self.expected.lock() {
            let e = m.entry(r.id).or_insert(kib);
            *e = if kib >= *e { kib } else { (*e * 7 + kib) / 8 };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn calls_are_spaced_by_the_interval_and_the_first_is_free() {
        let l = RateLimiter::per_second(20);
        let t0 = Instant::now();
        let mut at = Vec::new();
        for _ in 0..5 {
            l.until_ready().await;
            at.push(t0.elapsed());
        }
        let ms: Vec<u128> = at.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, vec![0, 50, 100, 150, 200]);
        // Idle time is not banked: after a pause the next call is free, the one after waits.
        tokio::time::advance(Duration::from_secs(2)).await;
        let t1 = Instant::now();
        l.until_ready().await;
        assert_eq!(t1.elapsed(), Duration::ZERO);
        l.until_ready().await;
        assert_eq!(t1.elapsed(), Duration::from_millis(50));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_waiters_get_distinct_slots_at_the_allowed_rate() {
        let l = Arc::new(RateLimiter::per_second(100));
        let t0 = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let l = Arc::clone(&l);
            tasks.spawn(async move {
                l.until_ready().await;
                t0.elapsed()
            });
        }
        let mut at = Vec::new();
        while let Some(t) = tasks.join_next().await {
            at.push(t.expect("task").as_millis());
        }
        at.sort_unstable();
        let want: Vec<u128> = (0..50).map(|i| i * 10).collect();
        assert_eq!(at, want, "one start per 10 ms, none twice, none skipped");
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_waiter_never_lets_the_rate_be_exceeded() {
        let l = RateLimiter::per_second(10);
        l.until_ready().await;
        // Reserves the 100 ms slot, then gives up before it.
        let _ = tokio::time::timeout(Duration::from_millis(10), l.until_ready()).await;
        let t0 = Instant::now();
        l.until_ready().await;
        assert_eq!(t0.elapsed(), Duration::from_millis(190));
    }

    #[tokio::test(start_paused = true)]
    async fn the_cap_lets_n_in_and_the_next_one_when_a_slot_frees() {
        use futures::FutureExt;
        let cap = Cap::new(2);
        let a = cap.acquire().await.expect("first");
        let _b = cap.acquire().await.expect("second");
        assert!(cap.acquire().now_or_never().is_none(), "a third waits");
        drop(a);
        assert!(
            cap.acquire().now_or_never().flatten().is_some(),
            "a freed slot is taken"
        );
        assert!(
            Cap::new(0).acquire().now_or_never().flatten().is_some(),
            "at least one"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_reserves_the_expected_size_and_waits_when_spent() {
        use futures::FutureExt;
        let r = crate::catalog::find("user_summary").expect("report");
        let b = InFlight::with_kib(1024);
        // Unobserved: 256 KiB, at most a quarter of the budget.
        assert_eq!(b.expected_kib(r), 256);
        b.observe(r, 100);
        assert_eq!(b.expected_kib(r), 100);
        // A smaller window decays the expectation, a larger one raises it at once.
        b.observe(r, 20);
        assert_eq!(b.expected_kib(r), (100 * 7 + 20) / 8);
        b.observe(r, 5000);
        assert_eq!(b.expected_kib(r), 256, "capped at a quarter");
        let held: Vec<Reservation> = (0..4)
            .map(|_| b.reserve(r).now_or_never().flatten().expect("fits"))
            .collect();
        assert!(b.reserve(r).now_or_never().is_none(), "the budget is spent");
        drop(held);
        assert!(b.reserve(r).now_or_never().flatten().is_some());
    }
}
