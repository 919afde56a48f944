//! Seeded randomness: the one RNG of a run and the duration distributions of scenarios.
//!
//! The generator is ChaCha8 (`rand_chacha`), whose output is fixed by its specification, and
//! every draw goes through the few functions here (no `rand_distr`, no floating-point tricks
//! that depend on the platform beyond IEEE 754 `ln`, `exp`, `sqrt`, `cos`), so that a seed gives
//! the same run byte for byte.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

/// The RNG of a run.
#[derive(Debug, Clone)]
pub struct SimRng(ChaCha8Rng);

impl SimRng {
    /// The generator for `seed` and a stream (independent streams for keys and events).
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut r = ChaCha8Rng::seed_from_u64(seed);
        r.set_stream(stream);
        Self(r)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        self.0.r#gen::<f64>()
    }

    /// Uniform in `[0, n)`; 0 when `n` is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.0.gen_range(0..n) }
    }

    /// Uniform integer in `[0, max]`.
    pub fn upto(&mut self, max: u64) -> u64 {
        self.0.gen_range(0..=max)
    }

    /// 32 random bytes (key seeds).
    pub fn bytes32(&mut self) -> [u8; 32] {
        let mut b = [0u8; 32];
        self.0.fill(&mut b);
        b
    }

    /// Exponential with the given mean, in ms (Poisson inter-arrival times).
    pub fn exp_ms(&mut self, mean_ms: f64) -> u64 {
        let u = 1.0 - self.unit(); // (0, 1]
        to_ms(-u.ln() * mean_ms)
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit();
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// A duration distribution, in seconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "dist", rename_all = "snake_case", deny_unknown_fields)]
pub enum Dist {
    /// Always the same.
    Fixed {
        /// Seconds.
        seconds: f64,
    },
    /// Uniform between two bounds.
    Uniform {
        /// Lower bound, s.
        min_s: f64,
        /// Upper bound, s.
        max_s: f64,
    },
    /// Exponential (memoryless).
    Exponential {
        /// Mean, s.
        mean_s: f64,
    },
    /// Log-normal: most short, a long tail (power cuts, ISP outages).
    Lognormal {
        /// Median, s.
        median_s: f64,
        /// Standard deviation of the logarithm.
        sigma: f64,
        /// Cap, s (0: none).
        #[serde(default)]
        max_s: f64,
    },
}

impl Dist {
    /// Checks the parameters.
    pub fn check(&self) -> Result<(), String> {
        let ok = match *self {
            Self::Fixed { seconds } => seconds >= 0.0,
            Self::Uniform { min_s, max_s } => min_s >= 0.0 && max_s >= min_s,
            Self::Exponential { mean_s } => mean_s > 0.0,
            Self::Lognormal {
                median_s,
                sigma,
                max_s,
            } => median_s > 0.0 && sigma >= 0.0 && max_s >= 0.0,
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "duration {self:?} has a negative or inconsistent parameter"
            ))
        }
    }

    /// A draw, in ms.
    pub fn sample_ms(&self, rng: &mut SimRng) -> u64 {
        let s = match *self {
            Self::Fixed { seconds } => seconds,
            Self::Uniform { min_s, max_s } => min_s + (max_s - min_s) * rng.unit(),
            Self::Exponential { mean_s } => return rng.exp_ms(mean_s * 1000.0),
            Self::Lognormal {
                median_s,
                sigma,
                max_s,
            } => {
                let v = median_s * (sigma * rng.normal()).exp();
                if max_s > 0.0 { v.min(max_s) } else { v }
            }
        };
        to_ms(s * 1000.0)
    }
}

/// Milliseconds from a float, saturating, at least 1 (an event never lasts zero time).
pub fn to_ms(ms: f64) -> u64 {
    if ms.is_nan() || ms < 1.0 {
        1
    } else if ms > 1e15 {
        1_000_000_000_000_000
    } else {
        // In range: checked above.
        ms as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_draws_and_streams_differ() {
        let mut a = SimRng::new(7, 1);
        let mut b = SimRng::new(7, 1);
        let mut c = SimRng::new(7, 2);
        let xa: Vec<u64> = (0..8).map(|_| a.below(1000)).collect();
        let xb: Vec<u64> = (0..8).map(|_| b.below(1000)).collect();
        let xc: Vec<u64> = (0..8).map(|_| c.below(1000)).collect();
        assert_eq!(xa, xb);
        assert_ne!(xa, xc);
    }

    #[test]
    fn lognormal_median_is_about_right() {
        let d = Dist::Lognormal {
            median_s: 100.0,
            sigma: 1.0,
            max_s: 0.0,
        };
        let mut r = SimRng::new(1, 0);
        let mut v: Vec<u64> = (0..2001).map(|_| d.sample_ms(&mut r)).collect();
        v.sort_unstable();
        let median = v.get(1000).copied().unwrap_or(0);
        assert!((80_000..120_000).contains(&median), "{median}");
    }
}
