//! Choosing the next token from logits: greedy, or seeded sampling with temperature and top-p.
//!
//! The random generator is our own xoshiro256** seeded through splitmix64, so that a seed gives the
//! same tokens on every machine and with every version of every dependency: a seeded answer can be
//! re-run and checked by someone else.

use super::error::GenerationError;

/// xoshiro256**: small, fast, and fully specified, so reproducible across platforms.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator whose whole sequence is fixed by `seed` (expanded with splitmix64, as the
    /// xoshiro authors recommend, so that nearby seeds give unrelated streams).
    pub fn new(seed: u64) -> Self {
        let mut state = seed;
        let mut next = || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        Self {
            s: [next(), next(), next(), next()],
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// A uniform float in `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// How the next token is chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy (always the most likely token); otherwise logits are divided by it.
    pub temperature: f32,
    /// Nucleus sampling: keep the most likely tokens whose probabilities sum to at least this (1 keeps
    /// all).
    pub top_p: f32,
    /// Seed of the random generator (ignored when greedy).
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding.
    pub fn greedy() -> Self {
        Self::default()
    }

    /// Checks the ranges: temperature finite and not negative, top-p in (0, 1].
    pub fn validate(&self) -> Result<(), GenerationError> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(GenerationError::InvalidSampling(format!(
                "temperature {} must be finite and >= 0",
                self.temperature
            )));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(GenerationError::InvalidSampling(format!(
                "top_p {} must be in (0, 1]",
                self.top_p
            )));
        }
        Ok(())
    }
}

/// Index of the largest logit; the first one on ties (as `torch.argmax`), NaN never wins.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0usize;
    let mut best_value = f32::NEG_INFINITY;
    for (i, v) in logits.iter().enumerate() {
        if *v > best_value {
            best = i;
            best_value = *v;
        }
    }
    u32::try_from(best).unwrap_or(0)
}

/// Picks tokens according to [`SamplingParams`], holding the random state across steps.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: Rng,
}

impl Sampler {
    /// A sampler; fails on out-of-range parameters.
    pub fn new(params: SamplingParams) -> Result<Self, GenerationError> {
        params.validate()?;
        let rng = Rng::new(params.seed);
        Ok(Self { params, rng })
    }

    /// The next token id for these logits.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        if self.params.temperature == 0.0 || logits.is_empty() {
            return argmax(logits);
        }
        let inv_t = 1.0 / f64::from(self.params.temperature);
        let max = logits
            .iter()
            .copied()
            .filter(|v| !v.is_nan())
            .fold(f32::NEG_INFINITY, f32::max);
        if !max.is_finite() {
            return argmax(logits);
        }
        // Unnormalised probabilities, in f64 so tiny ones do not all round to the same value.
        let weights: Vec<f64> = logits
            .iter()
            .map(|v| {
                if v.is_nan() {
                    0.0
                } else {
                    ((f64::from(*v) - f64::from(max)) * inv_t).exp()
                }
            })
            .collect();
        let total: f64 = weights.iter().sum();

        let mut order: Vec<usize> = (0..weights.len()).collect();
        if self.params.top_p < 1.0 {
            // Most likely first; ties by index, so the order (and the result) is deterministic.
            order.sort_by(|a, b| {
                let (wa, wb) = (weights.get(*a), weights.get(*b));
                wb.partial_cmp(&wa)
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then(a.cmp(b))
            });
            let threshold = f64::from(self.params.top_p) * total;
            let mut cumulative = 0.0;
            let mut keep = 0;
            for i in &order {
                cumulative += weights.get(*i).copied().unwrap_or(0.0);
                keep += 1;
                if cumulative >= threshold {
                    break;
                }
            }
            order.truncate(keep.max(1));
        }
        let kept_total: f64 = order
            .iter()
            .map(|i| weights.get(*i).copied().unwrap_or(0.0))
            .sum();
        let mut target = self.rng.next_f64() * kept_total;
        for i in &order {
            let w = weights.get(*i).copied().unwrap_or(0.0);
            if target < w {
                return u32::try_from(*i).unwrap_or(0);
            }
            target -= w;
        }
        // Rounding left a sliver past the last weight: the last kept token with any weight.
        let fallback = order
            .iter()
            .rev()
            .find(|i| weights.get(**i).is_some_and(|w| *w > 0.0))
            .or(order.first())
            .copied()
            .unwrap_or(0);
        u32::try_from(fallback).unwrap_or(0)
    }
}
