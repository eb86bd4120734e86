//! Per-sequence sampling on the CPU from a row of logits: temperature,
//! top-p, and a seeded RNG so that a seeded request is reproducible.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    pub top_p: f32,
    pub seed: Option<u64>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self { temperature: 0.0, top_p: 1.0, seed: None }
    }
}

impl SamplingParams {
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }
}

pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        let rng = match params.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        Self { params, rng }
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Picks the next token from one row of logits.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        if self.params.is_greedy() {
            return argmax(logits);
        }
        let inv_t = 1.0 / self.params.temperature as f64;
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let mut candidates: Vec<(u32, f64)> = logits
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_finite())
            .map(|(i, &l)| (i as u32, ((l as f64 - max) * inv_t).exp()))
            .collect();
        // Highest probability first; ties by id so the order is reproducible.
        candidates.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let total: f64 = candidates.iter().map(|c| c.1).sum();
        let mut kept = 0.0;
        let mut cut = candidates.len();
        for (i, c) in candidates.iter().enumerate() {
            kept += c.1;
            if kept >= self.params.top_p as f64 * total {
                cut = i + 1;
                break;
            }
        }
        candidates.truncate(cut.max(1));
        let mass: f64 = candidates.iter().map(|c| c.1).sum();
        let mut target = self.rng.random::<f64>() * mass;
        for &(id, weight) in &candidates {
            if target < weight {
                return id;
            }
            target -= weight;
        }
        candidates.last().map_or(0, |c| c.0)
    }
}

/// Index of the largest logit, the first on ties (as the GPU argmax).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}
