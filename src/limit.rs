//! A rate limiter on tokio's own timer.
//!
//! GCRA with a burst of one: the n-th call may start no earlier than one interval after the
//! (n-1)-th. Each caller reserves its slot under a short lock and then sleeps on tokio's
//! timer until it, so waiters never race for a freed slot and a wait is one timer entry
//! in the runtime's own driver. (governor's `until_ready` sleeps on `futures_timer`'s
//! separate thread: every wait was a cross-thread wake-up, and after it all waiters
//! re-checked at once.) A caller dropped while it waits gives its slot away unused, which
//! can only slow the rate, never exceed it.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

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
}
