//! The request contract of sampling: what a client may ask for
//! (`SamplingParams`), its defaults, and the ranges `validate` enforces
//! when a request is submitted. The `sampler` module carries it out.

use std::collections::BTreeMap;

/// Temperatures below this are greedy (as vLLM's `_SAMPLING_EPS`): dividing
/// by a smaller one would only overflow the scaled logits.
pub const GREEDY_TEMPERATURE: f32 = 1e-5;

/// The most alternatives per position the OpenAI API lets a client ask for.
pub const MAX_TOP_LOGPROBS: usize = 20;

/// Stop strings a request may give, and their longest length in bytes:
/// each generated token is matched against all of them on the engine
/// thread, so an unbounded list would slow every request in the batch.
/// (OpenAI takes 4; vLLM users send a few more.)
pub const MAX_STOP_STRINGS: usize = 16;
pub const MAX_STOP_STRING_BYTES: usize = 1024;

/// Stop token ids a request may give, for the same reason.
pub const MAX_STOP_TOKEN_IDS: usize = 1024;

/// A sampling parameter out of range; `param` is the request field's name
/// (what the OpenAI error object reports as `param`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{param}: {reason}")]
pub struct SamplingError {
    pub param: &'static str,
    pub reason: String,
}

impl SamplingError {
    fn new(param: &'static str, reason: impl Into<String>) -> Self {
        Self { param, reason: reason.into() }
    }
}

/// What one request asks of the sampler. `Default` is greedy with nothing
/// else on (the server applies the OpenAI default temperature of 1 itself).
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// Softmax temperature, 0..=2; below `GREEDY_TEMPERATURE` (so 0) is greedy.
    pub temperature: f32,
    /// Nucleus: keep the most likely tokens until their mass reaches top_p, in (0, 1].
    pub top_p: f32,
    /// Keep only the k most likely tokens; `None` or `Some(0)` is off (unsigned,
    /// so never negative; a k beyond the vocabulary keeps everything).
    pub top_k: Option<usize>,
    /// Drop tokens less likely than min_p times the most likely one, 0..=1 (0 is off).
    pub min_p: f32,
    /// Seed of this request's own RNG; `None` draws one from the OS.
    pub seed: Option<u64>,
    /// Subtracted once from the logit of every token already in the output, -2..=2.
    pub presence_penalty: f32,
    /// Subtracted from a token's logit once per occurrence in the output, -2..=2.
    pub frequency_penalty: f32,
    /// Divides the positive logits and multiplies the negative ones of tokens
    /// in prompt + output (HF / vLLM), > 0; 1 is off.
    pub repetition_penalty: f32,
    /// Added to a token's logit before anything else, -100..=100 per token.
    pub logit_bias: BTreeMap<u32, f32>,
    /// Return the sampled token's log-probability.
    pub logprobs: bool,
    /// Also return this many most likely alternatives, 0..=20 (needs `logprobs`).
    pub top_logprobs: usize,
    /// Most tokens to generate; `None` is up to the context.
    pub max_tokens: Option<usize>,
    /// Generation stops after any of these tokens (EOS is added by the caller).
    pub stop_token_ids: Vec<u32>,
    /// Generation stops at any of these strings in the decoded text, which is cut.
    pub stop: Vec<String>,
    /// Generate past the model's end-of-sequence tokens (benchmarks use it
    /// to fix output lengths); `stop_token_ids` still stop.
    pub ignore_eos: bool,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_p: 1.0,
            top_k: None,
            min_p: 0.0,
            seed: None,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            repetition_penalty: 1.0,
            logit_bias: BTreeMap::new(),
            logprobs: false,
            top_logprobs: 0,
            max_tokens: None,
            stop_token_ids: Vec::new(),
            stop: Vec::new(),
            ignore_eos: false,
        }
    }
}

impl SamplingParams {
    pub fn is_greedy(&self) -> bool {
        self.temperature < GREEDY_TEMPERATURE
    }

    pub(super) fn has_penalties(&self) -> bool {
        self.repetition_penalty != 1.0 || self.frequency_penalty != 0.0 || self.presence_penalty != 0.0
    }

    /// Whether the CPU must see the logits; if not, a plain argmax on the GPU
    /// gives the same token and only the ids need reading back.
    pub fn needs_logits(&self) -> bool {
        !self.is_greedy() || self.logprobs || !self.logit_bias.is_empty() || self.has_penalties()
    }

    /// Checks the ranges the OpenAI API accepts; the error names the field.
    pub fn validate(&self, vocab_size: usize) -> Result<(), SamplingError> {
        in_range("temperature", self.temperature, 0.0, 2.0)?;
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(SamplingError::new("top_p", format!("must be in (0, 1], got {}", self.top_p)));
        }
        in_range("min_p", self.min_p, 0.0, 1.0)?;
        in_range("presence_penalty", self.presence_penalty, -2.0, 2.0)?;
        in_range("frequency_penalty", self.frequency_penalty, -2.0, 2.0)?;
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return Err(SamplingError::new(
                "repetition_penalty",
                format!("must be greater than 0, got {}", self.repetition_penalty),
            ));
        }
        for (&id, &bias) in &self.logit_bias {
            if id as usize >= vocab_size {
                return Err(SamplingError::new(
                    "logit_bias",
                    format!("token id {id} is outside the vocabulary of {vocab_size}"),
                ));
            }
            in_range("logit_bias", bias, -100.0, 100.0)?;
        }
        if self.top_logprobs > MAX_TOP_LOGPROBS {
            return Err(SamplingError::new(
                "top_logprobs",
                format!("must be in 0..={MAX_TOP_LOGPROBS}, got {}", self.top_logprobs),
            ));
        }
        if self.top_logprobs > 0 && !self.logprobs {
            return Err(SamplingError::new("top_logprobs", "needs logprobs to be true"));
        }
        if self.max_tokens == Some(0) {
            return Err(SamplingError::new("max_tokens", "must be at least 1"));
        }
        if let Some(&id) = self.stop_token_ids.iter().find(|&&id| id as usize >= vocab_size) {
            return Err(SamplingError::new(
                "stop_token_ids",
                format!("token id {id} is outside the vocabulary of {vocab_size}"),
            ));
        }
        if self.stop.iter().any(String::is_empty) {
            return Err(SamplingError::new("stop", "stop strings must not be empty"));
        }
        if self.stop.len() > MAX_STOP_STRINGS {
            return Err(SamplingError::new(
                "stop",
                format!("at most {MAX_STOP_STRINGS} stop strings, got {}", self.stop.len()),
            ));
        }
        if let Some(long) = self.stop.iter().find(|s| s.len() > MAX_STOP_STRING_BYTES) {
            return Err(SamplingError::new(
                "stop",
                format!("a stop string may be at most {MAX_STOP_STRING_BYTES} bytes, got {}", long.len()),
            ));
        }
        if self.stop_token_ids.len() > MAX_STOP_TOKEN_IDS {
            return Err(SamplingError::new(
                "stop_token_ids",
                format!("at most {MAX_STOP_TOKEN_IDS} stop token ids, got {}", self.stop_token_ids.len()),
            ));
        }
        Ok(())
    }
}

/// `lo..=hi`, written so that NaN fails too.
fn in_range(param: &'static str, value: f32, lo: f32, hi: f32) -> Result<(), SamplingError> {
    if value >= lo && value <= hi {
        Ok(())
    } else {
        Err(SamplingError::new(param, format!("must be in {lo}..={hi}, got {value}")))
    }
}
