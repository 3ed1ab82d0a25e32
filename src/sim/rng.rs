//! Tiny hash-based randomness: every value is a pure function of its key, so rows do not
//! depend on the window they were asked for nor on call order.

use chrono::{Datelike, NaiveDate};

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The splitmix64 finaliser.
pub fn mix(z: u64) -> u64 {
    let z = z.wrapping_add(GOLDEN);
    let z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a of a string, then mixed.
pub fn hs(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

pub fn day(d: NaiveDate) -> u64 {
    // Days from the common era are positive for every date WeChat knows.
    u64::try_from(d.num_days_from_ce()).unwrap_or(0)
}

/// Hash of an ordered list of parts.
pub fn key(parts: &[u64]) -> u64 {
    parts
        .iter()
        .fold(0x5eed_5eed_5eed_5eed, |acc, p| mix(acc ^ mix(*p)))
}

/// splitmix64 stream.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(parts: &[u64]) -> Self {
        Rng(key(parts))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix(self.0)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform integer in [lo, hi] (hi >= lo).
    pub fn int(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Log-uniform in [lo, hi): magnitudes spread over orders.
    pub fn log_range(&mut self, lo: f64, hi: f64) -> f64 {
        (lo.ln() + (hi.ln() - lo.ln()) * self.unit()).exp()
    }

    /// A Poisson draw (Knuth for small means, normal approximation above).
    pub fn poisson(&mut self, mean: f64) -> u64 {
        if mean <= 0.0 {
            return 0;
        }
        if mean > 30.0 {
            // Box-Muller.
            let u1 = self.unit().max(1e-12);
            let u2 = self.unit();
            let n = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            return (mean + n * mean.sqrt()).round().max(0.0) as u64;
        }
        let limit = (-mean).exp();
        let mut k = 0;
        let mut p = self.unit();
        while p > limit {
            k += 1;
            p *= self.unit();
        }
        k
    }

    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

/// Splits `total` into parts proportional to `weights`, summing exactly to `total`
/// (largest remainder, ties to the lower index).
pub fn split(total: i64, weights: &[f64]) -> Vec<i64> {
    let sum: f64 = weights.iter().filter(|w| **w > 0.0).sum();
    if total <= 0 || sum <= 0.0 {
        return vec![0; weights.len()];
    }
    let mut parts = Vec::with_capacity(weights.len());
    let mut rems = Vec::with_capacity(weights.len());
    let mut given = 0;
    for (i, w) in weights.iter().enumerate() {
        let exact = total as f64 * w.max(0.0) / sum;
        let floor = exact.floor() as i64;
        parts.push(floor);
        rems.push((exact - floor as f64, i));
        given += floor;
    }
    rems.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut left = total - given;
    for (_, i) in rems {
        if left <= 0 {
            break;
        }
        if weights[i] > 0.0 {
            parts[i] += 1;
            left -= 1;
        }
    }
    parts
}

/// Rounds a non-negative expectation to an integer count.
pub fn count(x: f64) -> i64 {
    if x.is_finite() && x > 0.0 {
        x.round() as i64
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_the_total_and_proportions() {
        assert_eq!(split(10, &[1.0, 1.0]), vec![5, 5]);
        assert_eq!(split(7, &[3.0, 0.0, 1.0]).iter().sum::<i64>(), 7);
        assert_eq!(split(7, &[3.0, 0.0, 1.0])[1], 0);
        assert_eq!(split(0, &[1.0]), vec![0]);
        assert_eq!(split(5, &[0.0, 0.0]), vec![0, 0]);
    }

    #[test]
    fn streams_are_keyed() {
        let a: Vec<u64> = (0..4).map(|_| Rng::new(&[1, 2]).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(Rng::new(&[1, 2]).next_u64(), Rng::new(&[2, 1]).next_u64());
        let mut r = Rng::new(&[9]);
        let mean = (0..4000).map(|_| r.poisson(3.0) as f64).sum::<f64>() / 4000.0;
        assert!((mean - 3.0).abs() < 0.15, "{mean}");
    }
}
