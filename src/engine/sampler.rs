//! Per-request sampling on the CPU from one row of logits.
//!
//! A `Sampler` belongs to one request: it owns that request's
//! `SamplingParams`, its own RNG (seeded from the request's seed, else from OS
//! entropy) and scratch buffers reused across steps. Nothing is shared between
//! sequences, so a seeded request draws the same tokens alone or in any batch.
//! It never sees the GPU: the runner hands it one `[vocab] f32` logits row.
//!
//! Processing order follows vLLM: logit bias, then penalties (repetition over
//! prompt + output, frequency and presence over the output), then either
//! argmax (greedy) or temperature -> top-k -> top-p -> min-p -> one weighted
//! draw. Stop strings are matched on decoded text by `super::stop`; stop token
//! ids and `max_tokens` are checked by whoever appends the token.

use std::collections::BTreeMap;

pub use super::sampling_params::{
    GREEDY_TEMPERATURE, MAX_STOP_STRING_BYTES, MAX_STOP_STRINGS, MAX_STOP_TOKEN_IDS, MAX_TOP_LOGPROBS,
    SamplingError, SamplingParams,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One sampled token. `logprob` and `top_logprobs` are the log-softmax of the
/// logits after logit bias and penalties but before temperature, top-k, top-p
/// and min-p: the model's distribution as the request reshaped it, independent
/// of how boldly it is sampled (vLLM, by default, reports the raw model's).
#[derive(Debug, Clone, PartialEq)]
pub struct SampledToken {
    pub id: u32,
    /// Set when the request asked for logprobs.
    pub logprob: Option<f32>,
    /// `top_logprobs` (id, logprob) pairs, most likely first, ties by lower id.
    pub top_logprobs: Vec<(u32, f32)>,
}

pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
    /// [vocab] f32: the logits after bias and penalties (used only when any is set).
    processed: Vec<f32>,
    /// [vocab] u32: occurrences in the output; all zero between calls.
    counts: Vec<u32>,
    /// [vocab] bool: token already given the repetition penalty; all false between calls.
    seen: Vec<bool>,
    /// [vocab] f32: exp((logit - max) / temperature) of one draw.
    weights: Vec<f32>,
    /// [<= vocab] (token id, weight) left after top-k, top-p and min-p.
    candidates: Vec<(u32, f32)>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        let rng = match params.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        Self {
            params,
            rng,
            processed: Vec::new(),
            counts: Vec::new(),
            seen: Vec::new(),
            weights: Vec::new(),
            candidates: Vec::new(),
        }
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Picks the next token from one `[vocab]` row of logits, given the
    /// sequence's prompt and the tokens it has generated so far. A draw uses
    /// exactly one number of this sampler's RNG; greedy uses none.
    pub fn sample(&mut self, logits: &[f32], prompt_tokens: &[u32], output_tokens: &[u32]) -> SampledToken {
        debug_assert!(!logits.is_empty(), "an empty logits row");
        let params = &self.params;
        let row: &[f32] = if params.logit_bias.is_empty() && !params.has_penalties() {
            logits
        } else {
            self.processed.clear();
            self.processed.extend_from_slice(logits);
            apply_logit_bias(&mut self.processed, &params.logit_bias);
            let tokens = PastTokens { prompt: prompt_tokens, output: output_tokens };
            apply_penalties(&mut self.processed, params, tokens, &mut self.counts, &mut self.seen);
            &self.processed
        };
        let id = if params.is_greedy() {
            argmax(row)
        } else {
            let uniform = self.rng.random::<f64>();
            draw_token(row, params, uniform, &mut self.weights, &mut self.candidates)
        };
        let (logprob, top_logprobs) = if params.logprobs {
            let log_norm = log_sum_exp(row);
            let top = top_n(row, params.top_logprobs).into_iter().map(|(i, l)| (i, l - log_norm)).collect();
            (row.get(id as usize).map(|&l| l - log_norm), top)
        } else {
            (None, Vec::new())
        };
        SampledToken { id, logprob, top_logprobs }
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

fn apply_logit_bias(logits: &mut [f32], logit_bias: &BTreeMap<u32, f32>) {
    for (&id, &bias) in logit_bias {
        // Validation keeps ids in range; one that is not is ignored, not a panic.
        if let Some(l) = logits.get_mut(id as usize) {
            *l += bias;
        }
    }
}

/// The tokens a sequence has seen, for the penalties.
#[derive(Clone, Copy)]
struct PastTokens<'a> {
    prompt: &'a [u32],
    output: &'a [u32],
}

/// vLLM's order: repetition (prompt + output), then frequency and presence
/// (output only). `counts` and `seen` are `[vocab]` scratch, left all zero;
/// they make this O(prompt + output) with no hashing or sorting.
fn apply_penalties(
    logits: &mut [f32],
    params: &SamplingParams,
    tokens: PastTokens,
    counts: &mut Vec<u32>,
    seen: &mut Vec<bool>,
) {
    let vocab = logits.len();
    // Ids past the vocabulary cannot come from this model; skip them rather than panic.
    let in_vocab = |&&id: &&u32| (id as usize) < vocab;
    let penalty = params.repetition_penalty;
    if penalty != 1.0 {
        seen.resize(seen.len().max(vocab), false);
        for &id in tokens.prompt.iter().chain(tokens.output).filter(in_vocab) {
            let id = id as usize;
            if !seen[id] {
                seen[id] = true;
                let l = &mut logits[id];
                *l = if *l > 0.0 { *l / penalty } else { *l * penalty };
            }
        }
        for &id in tokens.prompt.iter().chain(tokens.output).filter(in_vocab) {
            seen[id as usize] = false;
        }
    }
    let (frequency, presence) = (params.frequency_penalty, params.presence_penalty);
    if frequency != 0.0 || presence != 0.0 {
        counts.resize(counts.len().max(vocab), 0);
        for &id in tokens.output.iter().filter(in_vocab) {
            counts[id as usize] += 1;
        }
        for &id in tokens.output.iter().filter(in_vocab) {
            let count = std::mem::take(&mut counts[id as usize]);
            if count > 0 {
                logits[id as usize] -= frequency * count as f32 + presence;
            }
        }
    }
}

/// Order of candidates: the larger value (logit or weight) first, then the
/// lower id; a total order, so the kept set and the draw are the same on
/// every run.
fn by_rank(a: &(u32, f32), b: &(u32, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// Temperature -> top-k -> top-p -> min-p -> one weighted draw. `uniform` is
/// the draw's number in [0, 1). Without filters it walks the dense weights;
/// with them it draws from the few candidates they leave.
fn draw_token(
    row: &[f32],
    params: &SamplingParams,
    uniform: f64,
    weights: &mut Vec<f32>,
    candidates: &mut Vec<(u32, f32)>,
) -> u32 {
    let filtered =
        params.top_k.is_some_and(|k| k > 0 && k < row.len()) || params.top_p < 1.0 || params.min_p > 0.0;
    let picked = if filtered {
        select_candidates(row, params, weights, candidates);
        pick(candidates.iter().copied(), uniform)
    } else {
        weigh(row, params.temperature, weights);
        pick(weights.iter().enumerate().map(|(i, &w)| (i as u32, w)), uniform)
    };
    // Nothing to draw from (no finite logit) or a +inf logit: argmax decides.
    picked.unwrap_or_else(|| argmax(row))
}

/// `weights[i] = exp((row[i] - max) / temperature)`, so the most likely token
/// weighs 1 and -inf (or NaN) logits weigh 0. Empty when no logit is finite,
/// or when one is +inf (a point mass that weights cannot express).
fn weigh(row: &[f32], temperature: f32, weights: &mut Vec<f32>) {
    weights.clear();
    // f32::max skips NaN.
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max.is_finite() {
        let inv_t = 1.0 / temperature;
        weights.extend(row.iter().map(|&l| exp_nonpositive((l - max) * inv_t)));
    }
}

/// Fills `candidates` with (id, weight) of the tokens left after top-k, top-p
/// and min-p. Empty as `weigh` is.
fn select_candidates(
    row: &[f32],
    params: &SamplingParams,
    weights: &mut Vec<f32>,
    candidates: &mut Vec<(u32, f32)>,
) {
    candidates.clear();
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return;
    }
    match params.top_k.filter(|&k| k > 0 && k < row.len()) {
        Some(k) => {
            // A partial selection on the logits (so top_k = 1 is exactly
            // argmax), O(vocab); then exp of only k.
            let finite = row.iter().enumerate().filter(|(_, l)| **l > f32::NEG_INFINITY);
            candidates.extend(finite.map(|(i, &l)| (i as u32, l)));
            if k < candidates.len() {
                candidates.select_nth_unstable_by(k - 1, by_rank);
                candidates.truncate(k);
            }
            let inv_t = 1.0 / params.temperature;
            candidates.iter_mut().for_each(|c| c.1 = exp_nonpositive((c.1 - max) * inv_t));
        }
        None => {
            weigh(row, params.temperature, weights);
            let weighted = weights.iter().enumerate().filter(|(_, w)| **w > 0.0);
            candidates.extend(weighted.map(|(i, &w)| (i as u32, w)));
        }
    }
    let total: f64 = candidates.iter().map(|c| c.1 as f64).sum();
    // Both filters keep a head of the same ranking, so min-p may go first to
    // shrink what top-p sorts, as long as top-p measures against the total
    // before it (vLLM applies min-p after top-p). The top token weighs 1, so
    // min_p is the threshold itself.
    if params.min_p > 0.0 {
        candidates.retain(|c| c.1 >= params.min_p);
    }
    if params.top_p < 1.0 {
        keep_top_p(candidates, params.top_p as f64 * total);
    }
}

/// Keeps the most likely candidates until their mass reaches `target` (at
/// least one). The nucleus is usually small, so this sorts chunks of growing
/// size picked off the front by partial selection, not the whole vocabulary.
fn keep_top_p(candidates: &mut Vec<(u32, f32)>, target: f64) {
    let len = candidates.len();
    let (mut sorted, mut chunk, mut mass) = (0, 64, 0.0);
    while sorted < len {
        let end = (sorted + chunk).min(len);
        if end < len {
            candidates[sorted..].select_nth_unstable_by(end - sorted - 1, by_rank);
        }
        candidates[sorted..end].sort_unstable_by(by_rank);
        for i in sorted..end {
            mass += candidates[i].1 as f64;
            if mass >= target {
                candidates.truncate(i + 1);
                return;
            }
        }
        (sorted, chunk) = (end, chunk * 4);
    }
    // Not reached: min-p cut earlier, or rounding left the mass a hair short.
}

/// The token whose weight interval holds `uniform * total`; `None` when the
/// weights are empty or all zero.
fn pick(weighted: impl Iterator<Item = (u32, f32)> + Clone, uniform: f64) -> Option<u32> {
    let total: f64 = weighted.clone().map(|(_, w)| w as f64).sum();
    let mut target = uniform * total;
    let mut last = None;
    for (id, weight) in weighted.filter(|(_, w)| *w > 0.0) {
        if target < weight as f64 {
            return Some(id);
        }
        target -= weight as f64;
        last = Some(id);
    }
    // Rounding can leave the target just past the last weight.
    last
}

/// exp(x) for x <= 0 to within about 2 ulp, 0 below -87 and for NaN. A
/// polynomial the compiler vectorises: libm's expf, a call per element, was
/// most of a draw's time over a 49152-token vocabulary.
fn exp_nonpositive(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding and removing 1.5 * 2^23 rounds to an integer without SSE4.1's roundps.
    const ROUND: f32 = 12_582_912.0;
    let clamped = x.clamp(-87.0, 0.0); // NaN stays NaN and comes out as 0 below
    let shifted = clamped * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = clamped - n * LN2_HI - n * LN2_LO; // |r| <= ln2 / 2
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r / 720.0)))));
    // The integer n sits in the low mantissa bits of `shifted`: 2^n without a float-to-int cast.
    let n_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    let scale = f32::from_bits(n_bits.wrapping_add(127) << 23); // n in -126..=0
    if x >= -87.0 { p * scale } else { 0.0 }
}

/// log(sum(exp(row))), accumulated in f64 over the vocabulary.
fn log_sum_exp(row: &[f32]) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return max;
    }
    let sum: f64 = row.iter().map(|&l| exp_nonpositive(l - max) as f64).sum();
    max + sum.ln() as f32
}

/// The n largest (id, logit) of a row, largest first, ties by lower id; one
/// pass with a small sorted buffer, since n <= 20.
fn top_n(row: &[f32], n: usize) -> Vec<(u32, f32)> {
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(n + 1);
    if n == 0 {
        return best;
    }
    for (i, &v) in row.iter().enumerate() {
        if v.is_nan() || (best.len() == n && v <= best[n - 1].1) {
            continue;
        }
        let at = best.partition_point(|&(_, b)| b >= v);
        best.insert(at, (i as u32, v));
        best.truncate(n);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(change: impl FnOnce(&mut SamplingParams)) -> SamplingParams {
        let mut params = SamplingParams::default();
        change(&mut params);
        params
    }

    /// Deterministic logits in [-scale, scale).
    fn random_logits(len: usize, seed: u64, scale: f32) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..len).map(|_| (rng.random::<f32>() * 2.0 - 1.0) * scale).collect()
    }

    /// The first index of the maximum, written differently from `argmax`.
    fn reference_argmax(logits: &[f32]) -> u32 {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        logits.iter().position(|&l| l == max).unwrap_or(0) as u32
    }

    fn draws(sampler: &mut Sampler, logits: &[f32], n: usize) -> Vec<u32> {
        (0..n).map(|_| sampler.sample(logits, &[], &[]).id).collect()
    }

    fn histogram(ids: &[u32], vocab: usize) -> Vec<usize> {
        let mut counts = vec![0; vocab];
        for &id in ids {
            counts[id as usize] += 1;
        }
        counts
    }

    #[test]
    fn greedy_is_argmax_first_on_ties() {
        let mut sampler = Sampler::new(SamplingParams::default());
        assert_eq!(sampler.sample(&[1.0, 3.0, 3.0, 2.0], &[], &[]).id, 1);
        for seed in 0..20 {
            let logits = random_logits(1000, seed, 10.0);
            assert_eq!(sampler.sample(&logits, &[], &[]).id, reference_argmax(&logits));
        }
    }

    #[test]
    fn top_k_one_and_tiny_top_p_are_greedy() {
        let top_k = with(|p| {
            p.temperature = 1.0;
            p.top_k = Some(1);
            p.seed = Some(1);
        });
        let top_p = with(|p| {
            p.temperature = 1.0;
            p.top_p = 1e-6;
            p.seed = Some(2);
        });
        for params in [top_k, top_p] {
            let mut sampler = Sampler::new(params);
            assert_eq!(sampler.sample(&[1.0, 3.0, 3.0, 2.0], &[], &[]).id, 1, "ties go to the lower id");
            for seed in 0..20 {
                let logits = random_logits(1000, seed, 3.0);
                assert_eq!(sampler.sample(&logits, &[], &[]).id, reference_argmax(&logits));
            }
        }
    }

    #[test]
    fn min_p_drops_unlikely_tokens() {
        let logits: Vec<f32> = [0.5f32, 0.3, 0.15, 0.05].iter().map(|p| p.ln()).collect();
        // Threshold 0.2 * 0.5 = 0.1: tokens 0, 1, 2 stay, token 3 goes.
        let params = with(|p| {
            p.temperature = 1.0;
            p.min_p = 0.2;
            p.seed = Some(3);
        });
        let (mut weights, mut candidates) = (Vec::new(), Vec::new());
        select_candidates(&logits, &params, &mut weights, &mut candidates);
        let mut kept: Vec<u32> = candidates.iter().map(|c| c.0).collect();
        kept.sort_unstable();
        assert_eq!(kept, [0, 1, 2]);
        let counts = histogram(&draws(&mut Sampler::new(params), &logits, 5000), 4);
        assert_eq!(counts[3], 0);
        assert!(counts[..3].iter().all(|&c| c > 0), "{counts:?}");
    }

    #[test]
    fn top_p_keeps_the_nucleus_renormalised() {
        let logits: Vec<f32> = [0.5f32, 0.3, 0.15, 0.05].iter().map(|p| p.ln()).collect();
        // 0.5 < 0.7 <= 0.5 + 0.3: tokens 0 and 1, drawn 5:3.
        let params = with(|p| {
            p.temperature = 1.0;
            p.top_p = 0.7;
            p.seed = Some(4);
        });
        let counts = histogram(&draws(&mut Sampler::new(params), &logits, 10_000), 4);
        assert_eq!(counts[2] + counts[3], 0, "{counts:?}");
        let share = counts[0] as f64 / 10_000.0;
        assert!((share - 0.625).abs() < 0.02, "token 0 drawn {share}, expected 0.625");
    }

    #[test]
    fn seeded_draws_are_reproducible_whatever_else_runs() {
        let logits = random_logits(500, 7, 5.0);
        let seeded = |seed| {
            Sampler::new(with(|p| {
                p.temperature = 1.0;
                p.seed = Some(seed);
            }))
        };
        let alone = draws(&mut seeded(42), &logits, 200);
        // The same seed with other samplers drawing in between ("another batch").
        let (mut again, mut other, mut greedy) =
            (seeded(42), seeded(43), Sampler::new(SamplingParams::default()));
        let interleaved: Vec<u32> = (0..200)
            .map(|_| {
                other.sample(&logits, &[], &[]);
                greedy.sample(&logits, &[], &[]);
                again.sample(&logits, &[], &[]).id
            })
            .collect();
        assert_eq!(alone, interleaved);
        assert_ne!(alone, draws(&mut seeded(43), &logits, 200));
        let unseeded = || Sampler::new(with(|p| p.temperature = 1.0));
        assert_ne!(draws(&mut unseeded(), &logits, 200), draws(&mut unseeded(), &logits, 200));
    }

    #[test]
    fn draw_frequencies_match_softmax() {
        let logits = [1.0f32, 0.5, 0.0, -0.5, -2.0];
        let temperature = 0.8;
        let params = with(|p| {
            p.temperature = temperature;
            p.seed = Some(2024);
        });
        let n = 20_000;
        let counts = histogram(&draws(&mut Sampler::new(params), &logits, n), logits.len());
        let weights: Vec<f64> = logits.iter().map(|&l| (l as f64 / temperature as f64).exp()).collect();
        let total: f64 = weights.iter().sum();
        let chi2: f64 = counts
            .iter()
            .zip(&weights)
            .map(|(&observed, &w)| {
                let expected = n as f64 * w / total;
                (observed as f64 - expected).powi(2) / expected
            })
            .sum();
        // 4 degrees of freedom: P(chi2 > 18.5) = 0.001.
        assert!(chi2 < 18.5, "chi-square {chi2} for counts {counts:?}");
    }

    /// Temperature, top-k, top-p and min-p by a full sort, to check the
    /// partial selections against.
    fn reference_candidates(row: &[f32], params: &SamplingParams) -> Vec<(u32, f32)> {
        let mut all: Vec<(u32, f32)> = row.iter().enumerate().map(|(i, &l)| (i as u32, l)).collect();
        all.sort_by(by_rank);
        let max = all[0].1;
        all.truncate(params.top_k.filter(|&k| k > 0).unwrap_or(all.len()));
        let mut weights: Vec<(u32, f32)> =
            all.iter().map(|&(i, l)| (i, exp_nonpositive((l - max) * (1.0 / params.temperature)))).collect();
        weights.sort_by(by_rank);
        let total: f64 = weights.iter().map(|w| w.1 as f64).sum();
        let mut mass = 0.0;
        let mut kept = Vec::new();
        for w in weights {
            if params.top_p < 1.0 && mass >= params.top_p as f64 * total {
                break;
            }
            mass += w.1 as f64;
            kept.push(w);
        }
        kept.retain(|w| w.1 >= params.min_p);
        kept.sort_by_key(|w| w.0);
        kept
    }

    #[test]
    fn partial_selection_matches_a_full_sort_on_a_real_vocab() {
        // Rounded to 0.01 so that many logits tie and the id order matters.
        let row: Vec<f32> =
            random_logits(49152, 11, 8.0).iter().map(|l| (l * 100.0).round() / 100.0).collect();
        let cases = [
            (1.0, None, 0.9, 0.0),
            (0.7, Some(50), 1.0, 0.0),
            (1.3, Some(1000), 0.95, 0.05),
            (1.0, None, 1.0, 0.1),
            (0.5, None, 0.999, 0.0),
            (2.0, Some(40000), 0.5, 0.0),
        ];
        for (temperature, top_k, top_p, min_p) in cases {
            let params = with(|p| {
                p.temperature = temperature;
                p.top_k = top_k;
                p.top_p = top_p;
                p.min_p = min_p;
            });
            let (mut weights, mut candidates) = (Vec::new(), Vec::new());
            select_candidates(&row, &params, &mut weights, &mut candidates);
            candidates.sort_by_key(|c| c.0);
            assert_eq!(candidates, reference_candidates(&row, &params), "{params:?}");
        }
    }

    #[test]
    fn penalties_and_bias_give_the_exact_logits() {
        let mut logits = vec![2.0, -1.0, 0.5, 3.0, 0.0];
        let params = with(|p| {
            p.logit_bias = BTreeMap::from([(0, 1.0)]);
            p.repetition_penalty = 2.0;
            p.frequency_penalty = 0.5;
            p.presence_penalty = 0.25;
        });
        // 99 is outside the vocabulary: ignored, not a panic.
        let tokens = PastTokens { prompt: &[0, 1, 99], output: &[2, 2, 3] };
        let (mut counts, mut seen) = (Vec::new(), Vec::new());
        apply_logit_bias(&mut logits, &params.logit_bias);
        apply_penalties(&mut logits, &params, tokens, &mut counts, &mut seen);
        // 0: (2 + 1) / 2 (bias first, then repetition as a prompt token)
        // 1: -1 * 2 (negative: multiplied)
        // 2: 0.5 / 2 - 0.5 * 2 - 0.25 (output twice)
        // 3: 3 / 2 - 0.5 - 0.25 (output once)
        // 4: not seen
        assert_eq!(logits, [1.5, -2.0, -1.0, 0.75, 0.0]);
        assert!(counts.iter().all(|&c| c == 0) && seen.iter().all(|&s| !s), "scratch left dirty");

        // The same through `sample`: logprob differences are logit differences.
        let params = SamplingParams { logprobs: true, top_logprobs: 5, ..params };
        let sampled = Sampler::new(params).sample(&[2.0, -1.0, 0.5, 3.0, 0.0], &[0, 1, 99], &[2, 2, 3]);
        assert_eq!(sampled.id, 0);
        let top: BTreeMap<u32, f32> = sampled.top_logprobs.into_iter().collect();
        for (id, expected) in [1.5f32, -2.0, -1.0, 0.75, 0.0].into_iter().enumerate() {
            assert!((top[&(id as u32)] - top[&0] - (expected - 1.5)).abs() < 1e-5);
        }
    }

    #[test]
    fn repetition_penalty_changes_the_greedy_choice() {
        let logits = [2.0, 1.9];
        let params = with(|p| p.repetition_penalty = 1.2);
        assert_eq!(Sampler::new(params.clone()).sample(&logits, &[], &[]).id, 0);
        assert_eq!(Sampler::new(params).sample(&logits, &[5], &[0]).id, 1, "2 / 1.2 < 1.9");
    }

    #[test]
    fn logit_bias_of_minus_100_bans_a_token() {
        let logits = [10.0, 0.0, 0.0, 0.0];
        let ban = BTreeMap::from([(0, -100.0)]);
        let greedy = with(|p| p.logit_bias = ban.clone());
        assert_eq!(Sampler::new(greedy).sample(&logits, &[], &[]).id, 1);
        let sampled = with(|p| {
            p.temperature = 1.0;
            p.seed = Some(5);
            p.logit_bias = ban;
        });
        assert_eq!(histogram(&draws(&mut Sampler::new(sampled), &logits, 5000), 4)[0], 0);
    }

    #[test]
    fn logprobs_are_a_distribution_sorted_and_independent_of_temperature() {
        let logits = random_logits(MAX_TOP_LOGPROBS, 9, 4.0);
        let params = |temperature| {
            with(|p| {
                p.temperature = temperature;
                p.seed = Some(6);
                p.logprobs = true;
                p.top_logprobs = MAX_TOP_LOGPROBS;
            })
        };
        let hot = Sampler::new(params(2.0)).sample(&logits, &[], &[]);
        let cold = Sampler::new(params(0.0)).sample(&logits, &[], &[]);
        assert_eq!(hot.top_logprobs, cold.top_logprobs, "logprobs are taken before temperature");
        let all = hot.top_logprobs;
        assert_eq!(all.len(), MAX_TOP_LOGPROBS);
        let mass: f64 = all.iter().map(|&(_, l)| (l as f64).exp()).sum();
        assert!((mass - 1.0).abs() < 1e-5, "probabilities sum to {mass}");
        assert!(all.windows(2).all(|w| w[0].1 >= w[1].1), "not sorted: {all:?}");
        let sampled = all.iter().find(|t| t.0 == hot.id).map(|t| t.1);
        assert_eq!(hot.logprob, sampled);
        assert_eq!(cold.logprob, Some(all[0].1), "greedy takes the most likely");

        let three = Sampler::new(with(|p| {
            p.logprobs = true;
            p.top_logprobs = 3;
        }))
        .sample(&logits, &[], &[]);
        assert_eq!(three.top_logprobs, all[..3]);
        let none = Sampler::new(SamplingParams::default()).sample(&logits, &[], &[]);
        assert_eq!((none.logprob, none.top_logprobs.len()), (None, 0));
    }

    #[test]
    fn validation_names_the_field() {
        let vocab = 100;
        assert_eq!(SamplingParams::default().validate(vocab), Ok(()));
        let everything = with(|p| {
            p.temperature = 2.0;
            p.top_p = 0.5;
            p.top_k = Some(40);
            p.min_p = 1.0;
            p.presence_penalty = -2.0;
            p.frequency_penalty = 2.0;
            p.repetition_penalty = 1.3;
            p.logit_bias = BTreeMap::from([(99, -100.0), (0, 100.0)]);
            p.logprobs = true;
            p.top_logprobs = 20;
            p.max_tokens = Some(1);
            p.stop_token_ids = vec![99];
            p.stop = vec!["\n\n".into()];
        });
        assert_eq!(everything.validate(vocab), Ok(()));
        let cases: Vec<(&str, SamplingParams)> = vec![
            ("temperature", with(|p| p.temperature = 2.5)),
            ("temperature", with(|p| p.temperature = -0.1)),
            ("temperature", with(|p| p.temperature = f32::NAN)),
            ("top_p", with(|p| p.top_p = 0.0)),
            ("top_p", with(|p| p.top_p = 1.5)),
            ("min_p", with(|p| p.min_p = 1.5)),
            ("presence_penalty", with(|p| p.presence_penalty = -2.5)),
            ("frequency_penalty", with(|p| p.frequency_penalty = 3.0)),
            ("repetition_penalty", with(|p| p.repetition_penalty = 0.0)),
            ("logit_bias", with(|p| p.logit_bias = BTreeMap::from([(100, 1.0)]))),
            ("logit_bias", with(|p| p.logit_bias = BTreeMap::from([(1, 150.0)]))),
            (
                "top_logprobs",
                with(|p| {
                    p.logprobs = true;
                    p.top_logprobs = 21;
                }),
            ),
            ("top_logprobs", with(|p| p.top_logprobs = 2)),
            ("max_tokens", with(|p| p.max_tokens = Some(0))),
            ("stop_token_ids", with(|p| p.stop_token_ids = vec![100])),
            ("stop", with(|p| p.stop = vec![String::new()])),
            ("stop", with(|p| p.stop = vec!["x".into(); MAX_STOP_STRINGS + 1])),
            ("stop", with(|p| p.stop = vec!["x".repeat(MAX_STOP_STRING_BYTES + 1)])),
            ("stop_token_ids", with(|p| p.stop_token_ids = vec![1; MAX_STOP_TOKEN_IDS + 1])),
        ];
        for (field, params) in cases {
            let error = params.validate(vocab).expect_err(field);
            assert_eq!(error.param, field);
            assert!(error.to_string().starts_with(field), "{error}");
        }
    }

    #[test]
    fn fast_exp_matches_std_exp() {
        for i in 0..870_000 {
            let x = -(i as f32) * 1e-4;
            let (fast, exact) = (exp_nonpositive(x), (x as f64).exp());
            assert!(((fast as f64 - exact) / exact).abs() < 3e-7, "exp({x}) = {fast}, not {exact}");
        }
        for x in [-87.5, -1000.0, f32::NEG_INFINITY, f32::NAN] {
            assert_eq!(exp_nonpositive(x), 0.0, "exp({x})");
        }
    }

    #[test]
    fn only_plain_greedy_skips_the_logits() {
        assert!(!SamplingParams::default().needs_logits());
        assert!(with(|p| p.temperature = 1.0).needs_logits());
        assert!(with(|p| p.logprobs = true).needs_logits());
        assert!(with(|p| p.logit_bias = BTreeMap::from([(1, 1.0)])).needs_logits());
        assert!(with(|p| p.presence_penalty = 0.5).needs_logits());
        assert!(!with(|p| p.seed = Some(1)).needs_logits());
    }
}
