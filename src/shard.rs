//! `--shard K/N`: the accounts whose name hashes into shard K of N.
//!
//! The hash is FNV-1a 64 of the account name's UTF-8 bytes, taken modulo N: shard K holds
//! the names with `fnv1a64(name) % N == K - 1`. It is implemented here (no crate, no seed)
//! and must never change between releases: an orchestrator's shard K must name the same
//! accounts after an upgrade, or two shards would fetch one account (the leases would keep
//! them apart, but the fan-out would be uneven). The unit test pins values.

use std::fmt;
use std::str::FromStr;

/// The most shards a pipeline may be cut into (more shards than accounts leaves some empty).
pub const MAX_SHARDS: u32 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 1-based.
    pub k: u32,
    pub n: u32,
}

/// FNV-1a, 64 bits (offset basis 0xcbf29ce484222325, prime 0x100000001b3).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl Shard {
    /// The shard (1-based) of N that holds `account`.
    pub fn of(account: &str, n: u32) -> u32 {
        (fnv1a64(account.as_bytes()) % u64::from(n.max(1))) as u32 + 1
    }

    pub fn holds(&self, account: &str) -> bool {
        Shard::of(account, self.n) == self.k
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.k, self.n)
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!("{s:?} is not a shard: {why} (K/N, 1 <= K <= N <= {MAX_SHARDS}, e.g. 2/8)")
        };
        let (k, n) = s.trim().split_once('/').ok_or_else(|| bad("no '/'"))?;
        let k: u32 = k
            .trim()
            .parse()
            .map_err(|_| bad("K is not a whole number"))?;
        let n: u32 = n
            .trim()
            .parse()
            .map_err(|_| bad("N is not a whole number"))?;
        if n == 0 || n > MAX_SHARDS {
            return Err(bad("N out of range"));
        }
        if k == 0 || k > n {
            return Err(bad("K out of range (shards count from 1)"));
        }
        Ok(Shard { k, n })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_is_pinned() {
        // Published FNV-1a 64 test vectors, and account names: these must never change.
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
        assert_eq!(fnv1a64(b"brand_cn"), 0x0932d29faa560ba2);
        assert_eq!(Shard::of("brand_cn", 4), 3);
        assert_eq!(Shard::of("shop_sh", 4), 2);
        assert_eq!(Shard::of("anything", 1), 1);
    }

    #[test]
    fn shards_partition_the_accounts() {
        let names: Vec<String> = (0..1000).map(|i| format!("acct_{i}")).collect();
        let n = 7;
        let mut sizes = vec![0; n as usize];
        for name in &names {
            let owners: Vec<u32> = (1..=n).filter(|&k| Shard { k, n }.holds(name)).collect();
            assert_eq!(owners.len(), 1, "{name} in exactly one shard");
            sizes[owners[0] as usize - 1] += 1;
        }
        // Even enough: each shard within ±30% of 1000/7.
        assert!(sizes.iter().all(|&s| (100..186).contains(&s)), "{sizes:?}");
    }

    #[test]
    fn parse_checks_the_range() {
        assert_eq!("2/8".parse::<Shard>(), Ok(Shard { k: 2, n: 8 }));
        assert_eq!("1/1".parse::<Shard>(), Ok(Shard { k: 1, n: 1 }));
        for bad in ["0/4", "5/4", "4", "a/4", "1/0", "1/10001", "-1/4", ""] {
            let e = bad.parse::<Shard>().unwrap_err();
            assert!(e.contains("is not a shard"), "{bad}: {e}");
        }
    }
}
