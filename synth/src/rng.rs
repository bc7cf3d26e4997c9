//! Deterministic randomness: every (unit, day) gets its own generator derived from the
//! seed, so the output is the same for a seed whatever the thread count or scheduling.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub type SimRng = ChaCha8Rng;

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A generator for one stream of decisions, keyed by the seed and the stream's parts.
pub fn stream(seed: u64, parts: &[u64]) -> SimRng {
    let mut h = splitmix(seed);
    for p in parts {
        h = splitmix(h ^ *p);
    }
    SimRng::seed_from_u64(h)
}

/// Poisson-distributed count with mean `lambda` (Knuth for small means, a rounded
/// normal beyond that; both fine for synthetic counts).
pub fn poisson(rng: &mut SimRng, lambda: f64) -> u32 {
    if lambda <= 0.0 {
        return 0;
    }
    if lambda < 30.0 {
        let l = (-lambda).exp();
        let mut k = 0u32;
        let mut p = 1.0;
        loop {
            p *= rng.random::<f64>();
            if p <= l {
                return k;
            }
            k += 1;
        }
    }
    (lambda + lambda.sqrt() * normal(rng)).round().max(0.0) as u32
}

/// Standard normal (Box–Muller).
pub fn normal(rng: &mut SimRng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(1e-12);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

pub fn lognormal(rng: &mut SimRng, median: f64, sigma: f64) -> f64 {
    median * (sigma * normal(rng)).exp()
}

pub fn chance(rng: &mut SimRng, p: f64) -> bool {
    rng.random::<f64>() < p
}

/// Picks an index with probability proportional to its weight, given the running sums.
pub fn pick_weighted(rng: &mut SimRng, cumulative: &[f64]) -> Option<usize> {
    let total = *cumulative.last()?;
    if total <= 0.0 {
        return None;
    }
    let x = rng.random::<f64>() * total;
    Some(
        cumulative
            .partition_point(|c| *c <= x)
            .min(cumulative.len() - 1),
    )
}

/// Picks an entry of a table of (value, weight), in proportion to the weights. The table
/// must not be empty and its weights must not all be 0.
pub fn pick_from<T: Copy>(rng: &mut SimRng, table: &[(T, u32)]) -> T {
    let total: u32 = table.iter().map(|(_, w)| w).sum();
    let mut x = rng.random_range(0..total);
    for (value, w) in table {
        if x < *w {
            return *value;
        }
        x -= w;
    }
    table[table.len() - 1].0
}
