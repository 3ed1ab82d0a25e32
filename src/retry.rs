//! Retry: the one loop every retried operation goes through (its policy, backoff with a
//! seeded jitter, and what each error's `Retryable::class` asks for).
//!
//! The loop knows nothing of HTTP or storage: an operation (`Attempt`) makes one try,
//! may switch to another host at once (`switch`), renew a rejected credential (`refresh`)
//! and log each wait (`note`); the error type says whether another try can help.

use std::future::Future;
use std::time::Duration;

/// What another attempt needs, according to the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Transient: back off and try again.
    Retry,
    /// A credential was rejected: renew it (`Attempt::refresh`) and try again.
    RefreshToken,
    /// A per-minute limit: wait for the next minute boundary.
    WaitMinute,
    /// Another attempt cannot help.
    Fatal,
}

/// An error that knows whether another attempt can help.
pub trait Retryable {
    fn class(&self) -> Class;
}

/// Retry timing for the run (calls, tokens and storage share it).
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts per call, first included.
    pub attempts: u32,
    pub base: Duration,
    pub max: Duration,
    /// Wait on 45011; WeChat's limit is per minute.
    pub minute_wait: Duration,
    pub timeout: Duration,
    /// Attempts per token fetch (stable_token, token, component): after them the account's
    /// token source is failed for the run.
    pub token_attempts: u32,
    /// A token endpoint's time to answer (at most `timeout`).
    pub token_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 8,
            base: Duration::from_millis(500),
            max: Duration::from_secs(30),
            minute_wait: Duration::from_secs(60),
            timeout: Duration::from_secs(30),
            token_attempts: 4,
            token_timeout: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// A token endpoint's time to answer.
    pub fn token_timeout(&self) -> Duration {
        self.token_timeout.min(self.timeout)
    }

    /// Exponential backoff with jitter for the n-th retry (1-based).
    pub fn backoff(&self, n: u32, jitter: &Jitter) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << n.saturating_sub(1).min(16));
        exp.min(self.max).mul_f64(jitter.fraction())
    }

    /// `attempts` tries with this policy's timing, `refreshes` renewals of a credential.
    pub fn schedule<'a>(
        &'a self,
        attempts: u32,
        refreshes: u32,
        jitter: &'a Jitter,
    ) -> Schedule<'a> {
        Schedule {
            attempts: attempts.max(1),
            refreshes,
            policy: Some(self),
            jitter,
        }
    }
}

/// Small xorshift for backoff jitter; the seed is injected so tests are repeatable.
#[derive(Debug)]
pub struct Jitter(std::sync::Mutex<u64>);

impl Jitter {
    pub fn new(seed: u64) -> Self {
        Jitter(std::sync::Mutex::new(seed | 1))
    }
    /// No jitter: every backoff is the full exponential step.
    pub fn none() -> Self {
        Jitter(std::sync::Mutex::new(0))
    }
    /// A fraction in [0.5, 1.0) (1.0 for `none`).
    fn fraction(&self) -> f64 {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if *g == 0 {
            return 1.0;
        }
        let mut x = *g;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *g = x;
        0.5 + (x >> 11) as f64 / (1u64 << 53) as f64 * 0.5
    }
}

/// How often and how long apart one operation is tried.
#[derive(Clone, Copy)]
pub struct Schedule<'a> {
    /// Attempts, the first included.
    pub attempts: u32,
    /// Renewals of a rejected credential before giving up.
    pub refreshes: u32,
    /// Backoff timing; none: tried again at once.
    pub policy: Option<&'a RetryPolicy>,
    pub jitter: &'a Jitter,
}

impl<'a> Schedule<'a> {
    /// `attempts` tries, each right after the one before.
    pub fn immediate(attempts: u32, jitter: &'a Jitter) -> Self {
        Schedule {
            attempts: attempts.max(1),
            refreshes: 0,
            policy: None,
            jitter,
        }
    }
}

/// Why the loop waits before the next attempt (for `Attempt::note`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Backing off after a transient error.
    Backoff(Duration),
    /// Waiting for the next minute (45011).
    Minute(Duration),
    /// Renewing a rejected credential.
    Refresh,
}

/// One retried operation.
pub trait Attempt {
    type Ok: Send;
    type Err: Retryable + Send;
    /// The n-th try (1-based).
    fn attempt(&mut self, n: u32) -> impl Future<Output = Result<Self::Ok, Self::Err>> + Send;
    /// Whether the next try can go elsewhere at once (a failover host), without a wait.
    fn switch(&mut self, _e: &Self::Err) -> bool {
        false
    }
    /// Renews what `e` says was rejected; an error here ends the operation with it.
    fn refresh(&mut self, e: &Self::Err) -> impl Future<Output = Result<(), Self::Err>> + Send {
        let _ = e;
        async { Ok(()) }
    }
    /// Called before each wait or renewal, with the error and the attempt that failed.
    fn note(&mut self, _e: &Self::Err, _attempt: u32, _wait: Wait) {}
}

/// The error that ended an operation.
#[derive(Debug)]
pub struct Failure<E> {
    pub error: E,
    pub attempts: u32,
    /// The error was retryable but the attempts (or renewals) were spent.
    pub spent: bool,
}

/// Runs `op` until it succeeds, its error is fatal, or the schedule is spent. Returns the
/// value and the attempts it took.
pub async fn retry<A: Attempt>(
    s: Schedule<'_>,
    op: &mut A,
) -> Result<(A::Ok, u32), Failure<A::Err>> {
    let mut n = 0u32;
    let mut refreshes = 0u32;
    loop {
        n += 1;
        let e = match op.attempt(n).await {
            Ok(v) => return Ok((v, n)),
            Err(e) => e,
        };
        // A switch happens once per host: it needs no wait (it still counts as an attempt).
        if op.switch(&e) {
            continue;
        }
        let fail = |error, spent| Failure {
            error,
            attempts: n,
            spent,
        };
        let class = e.class();
        if class == Class::Fatal {
            return Err(fail(e, false));
        }
        if n >= s.attempts {
            return Err(fail(e, true));
        }
        match class {
            Class::Retry => {
                let wait = s.policy.map_or(Duration::ZERO, |p| p.backoff(n, s.jitter));
                op.note(&e, n, Wait::Backoff(wait));
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
            }
            Class::WaitMinute => {
                let minute = s.policy.map_or(Duration::from_secs(60), |p| p.minute_wait);
                let wait = crate::clock::until_next_minute(minute);
                op.note(&e, n, Wait::Minute(wait));
                tokio::time::sleep(wait).await;
            }
            Class::RefreshToken => {
                refreshes += 1;
                if refreshes > s.refreshes {
                    return Err(fail(e, true));
                }
                op.note(&e, n, Wait::Refresh);
                if let Err(e) = op.refresh(&e).await {
                    return Err(fail(e, false));
                }
            }
            Class::Fatal => unreachable!("returned above"),
        }
    }
}

/// A retried operation made of a closure, for the ones that need no switch or renewal;
/// `note` is told of each retry.
pub struct Simple<F, N>(pub F, pub N);

impl<F, Fut, T, E, N> Attempt for Simple<F, N>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>> + Send,
    T: Send,
    E: Retryable + Send,
    N: FnMut(&E, u32),
{
    type Ok = T;
    type Err = E;
    fn attempt(&mut self, n: u32) -> impl Future<Output = Result<T, E>> + Send {
        (self.0)(n)
    }
    fn note(&mut self, e: &E, attempt: u32, _wait: Wait) {
        (self.1)(e, attempt)
    }
}

/// `retry` of a closure: its last error when it gives up.
pub async fn retry_fn<T, E, Fut>(
    s: Schedule<'_>,
    op: impl FnMut(u32) -> Fut,
    note: impl FnMut(&E, u32),
) -> Result<T, E>
where
    Fut: Future<Output = Result<T, E>> + Send,
    T: Send,
    E: Retryable + Send,
{
    retry(s, &mut Simple(op, note))
        .await
        .map(|(v, _)| v)
        .map_err(|f| f.error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct E(Class);

    impl Retryable for E {
        fn class(&self) -> Class {
            self.0
        }
    }

    /// Fails with the given classes in turn, then succeeds; records what the loop did.
    struct Script {
        fails: Vec<Class>,
        seen: Vec<String>,
        switch_once: bool,
    }

    impl Attempt for Script {
        type Ok = &'static str;
        type Err = E;
        fn attempt(&mut self, n: u32) -> impl Future<Output = Result<&'static str, E>> + Send {
            self.seen.push(format!("try {n}"));
            let r = match self.fails.get(n as usize - 1) {
                Some(c) => Err(E(*c)),
                None => Ok("done"),
            };
            async move { r }
        }
        fn switch(&mut self, _e: &E) -> bool {
            std::mem::take(&mut self.switch_once)
        }
        fn refresh(&mut self, _e: &E) -> impl Future<Output = Result<(), E>> + Send {
            self.seen.push("refresh".into());
            async { Ok(()) }
        }
        fn note(&mut self, _e: &E, n: u32, wait: Wait) {
            let w = match wait {
                Wait::Backoff(d) => format!("backoff {}ms", d.as_millis()),
                Wait::Minute(_) => "minute".into(),
                Wait::Refresh => "refresh".into(),
            };
            self.seen.push(format!("{n}: {w}"));
        }
    }

    fn script(fails: &[Class]) -> Script {
        Script {
            fails: fails.to_vec(),
            seen: Vec::new(),
            switch_once: false,
        }
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_millis(100),
            max: Duration::from_millis(150),
            minute_wait: Duration::from_millis(1000),
            ..RetryPolicy::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn each_class_gets_its_own_step_and_success_reports_the_attempts() {
        use Class::*;
        let p = policy();
        let j = Jitter::new(3);
        let mut op = script(&[Retry, RefreshToken, WaitMinute, Retry]);
        let (v, n) = retry(p.schedule(8, 3, &j), &mut op).await.expect("ok");
        assert_eq!((v, n), ("done", 5));
        let steps: Vec<&str> = op.seen.iter().map(String::as_str).collect();
        assert_eq!(steps[0], "try 1");
        assert!(steps[1].starts_with("1: backoff "), "{steps:?}");
        assert_eq!(&steps[2..6], ["try 2", "2: refresh", "refresh", "try 3"]);
        assert_eq!(&steps[6..8], ["3: minute", "try 4"]);
        // The second backoff is capped by `max`, halved at most by the jitter.
        let ms: u64 = steps[8]
            .trim_start_matches("4: backoff ")
            .trim_end_matches("ms")
            .parse()
            .expect("ms");
        assert!((75..=150).contains(&ms), "{ms}");
    }

    #[tokio::test(start_paused = true)]
    async fn fatal_stops_at_once_and_a_spent_schedule_says_so() {
        let p = policy();
        let j = Jitter::new(3);
        let mut op = script(&[Class::Retry, Class::Fatal]);
        let f = retry(p.schedule(8, 0, &j), &mut op)
            .await
            .expect_err("fatal");
        assert_eq!((f.error, f.attempts, f.spent), (E(Class::Fatal), 2, false));

        let mut op = script(&[Class::Retry; 5]);
        let f = retry(p.schedule(3, 0, &j), &mut op)
            .await
            .expect_err("spent");
        assert_eq!((f.attempts, f.spent), (3, true));

        // Renewals have a cap of their own.
        let mut op = script(&[Class::RefreshToken; 5]);
        let f = retry(p.schedule(8, 1, &j), &mut op)
            .await
            .expect_err("spent");
        assert_eq!((f.attempts, f.spent), (2, true));
        assert_eq!(op.seen.iter().filter(|s| *s == "refresh").count(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_switch_retries_at_once_without_a_wait() {
        let p = policy();
        let j = Jitter::new(3);
        let mut op = script(&[Class::Retry]);
        op.switch_once = true;
        let t0 = tokio::time::Instant::now();
        let (_, n) = retry(p.schedule(8, 0, &j), &mut op).await.expect("ok");
        assert_eq!(n, 2);
        assert_eq!(
            t0.elapsed(),
            Duration::ZERO,
            "no backoff before the switched try"
        );
        assert!(
            !op.seen.iter().any(|s| s.contains("backoff")),
            "{:?}",
            op.seen
        );
    }

    #[test]
    fn without_jitter_the_backoff_doubles_exactly() {
        let p = policy();
        let none = Jitter::none();
        let ms: Vec<u128> = (1..=3).map(|n| p.backoff(n, &none).as_millis()).collect();
        assert_eq!(ms, vec![100, 150, 150], "doubling, capped at max");
    }

    #[tokio::test(start_paused = true)]
    async fn retry_fn_gives_the_last_error() {
        let j = Jitter::new(3);
        let mut notes = 0;
        let r: Result<(), E> = retry_fn(
            Schedule::immediate(4, &j),
            |_| async { Err(E(Class::Retry)) },
            |_, _| notes += 1,
        )
        .await;
        assert_eq!(r, Err(E(Class::Retry)));
        assert_eq!(notes, 3);
    }
}
