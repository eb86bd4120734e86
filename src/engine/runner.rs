//! Runs a fixed set of sequences to completion on the model: chunked
//! prefill under the step's token budget, then batched decode steps. Blocks
//! are handed out contiguously per sequence and returned at the end; the
//! scheduler and block manager replace this policy with continuous batching.

use std::time::{Duration, Instant};

use crate::model::ModelError;
use crate::model::batch::BatchInputs;
use crate::model::llama::{ForwardOutput, Llama, Output};

use super::sampler::{Sampler, SamplingParams};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("{0}")]
    Rejected(String),
}

#[derive(Debug, Clone)]
pub struct SequenceRequest {
    pub prompt: Vec<u32>,
    pub max_new_tokens: usize,
    pub sampling: SamplingParams,
    /// Generation ends after any of these (it is kept in the output).
    pub stop_token_ids: Vec<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SequenceOutput {
    pub tokens: Vec<u32>,
    pub finish_reason: FinishReason,
}

/// Token counts and wall time of the prefill and decode phases.
#[derive(Debug, Clone, Default)]
pub struct RunStats {
    pub prompt_tokens: usize,
    pub prefill_time: Duration,
    pub generated_tokens: usize,
    pub decode_time: Duration,
}

struct Sequence {
    tokens: Vec<u32>,
    prompt_len: usize,
    /// Tokens whose K/V are in the cache.
    num_computed: usize,
    block_table: Vec<u32>,
    sampler: Sampler,
    request: SequenceRequest,
    finish_reason: Option<FinishReason>,
}

impl Sequence {
    fn generated(&self) -> &[u32] {
        &self.tokens[self.prompt_len..]
    }
}

pub struct Runner {
    model: Llama,
}

impl Runner {
    pub fn new(model: Llama) -> Self {
        Self { model }
    }

    pub fn model(&self) -> &Llama {
        &self.model
    }

    /// Generates for every request together; `on_token(index, token)` sees
    /// each new token as soon as it is sampled.
    pub fn generate(
        &mut self,
        requests: &[SequenceRequest],
        mut on_token: impl FnMut(usize, u32),
    ) -> Result<(Vec<SequenceOutput>, RunStats), EngineError> {
        let block_size = self.model.block_size();
        let context = self.model.config.max_position_embeddings;
        let mut next_block = 0usize;
        let mut sequences = Vec::with_capacity(requests.len());
        for (i, request) in requests.iter().enumerate() {
            let total = request.prompt.len() + request.max_new_tokens;
            if request.prompt.is_empty() {
                return Err(EngineError::Rejected(format!("request {i}: empty prompt")));
            }
            if total > context {
                return Err(EngineError::Rejected(format!(
                    "request {i}: {} prompt tokens + {} new tokens exceed the context of {context}",
                    request.prompt.len(),
                    request.max_new_tokens
                )));
            }
            let blocks = total.div_ceil(block_size);
            if next_block + blocks > self.model.num_kv_blocks() {
                return Err(EngineError::Rejected(format!(
                    "the KV cache has {} blocks; these requests need more",
                    self.model.num_kv_blocks()
                )));
            }
            sequences.push(Sequence {
                tokens: request.prompt.clone(),
                prompt_len: request.prompt.len(),
                num_computed: 0,
                block_table: (next_block as u32..(next_block + blocks) as u32).collect(),
                sampler: Sampler::new(request.sampling.clone()),
                request: request.clone(),
                finish_reason: None,
            });
            next_block += blocks;
        }
        let mut stats = RunStats::default();
        loop {
            let batch_seqs = self.next_batch(&sequences);
            if batch_seqs.is_empty() {
                break;
            }
            let is_prefill =
                batch_seqs.iter().any(|&(i, _)| sequences[i].num_computed < sequences[i].prompt_len);
            let started = Instant::now();
            let mut batch = BatchInputs::default();
            for &(i, count) in &batch_seqs {
                let seq = &sequences[i];
                let new_tokens = &seq.tokens[seq.num_computed..seq.num_computed + count];
                batch.push_sequence(new_tokens, seq.num_computed, &seq.block_table, block_size);
            }
            // Plain greedy requests need only the GPU's argmax; anything else reads the logits.
            let all_argmax = batch_seqs.iter().all(|&(i, _)| !sequences[i].sampler.params().needs_logits());
            let output =
                self.model.forward(&batch, if all_argmax { Output::TokenIds } else { Output::Logits })?;
            let vocab = self.model.config.vocab_size;
            for (row, &(i, count)) in batch_seqs.iter().enumerate() {
                let seq = &mut sequences[i];
                seq.num_computed += count;
                if seq.num_computed < seq.tokens.len() {
                    continue; // mid-prompt chunk: its logits predict a known token
                }
                let token = match &output {
                    ForwardOutput::TokenIds(ids) => ids[row],
                    ForwardOutput::Logits(logits) => {
                        let (prompt, generated) = seq.tokens.split_at(seq.prompt_len);
                        seq.sampler.sample(&logits[row * vocab..(row + 1) * vocab], prompt, generated).id
                    }
                };
                seq.tokens.push(token);
                on_token(i, token);
                if seq.request.stop_token_ids.contains(&token) {
                    seq.finish_reason = Some(FinishReason::Stop);
                } else if seq.generated().len() >= seq.request.max_new_tokens {
                    seq.finish_reason = Some(FinishReason::Length);
                }
            }
            let elapsed = started.elapsed();
            if is_prefill {
                stats.prefill_time += elapsed;
            } else {
                stats.decode_time += elapsed;
            }
        }
        stats.prompt_tokens = sequences.iter().map(|s| s.prompt_len).sum();
        stats.generated_tokens = sequences.iter().map(|s| s.generated().len()).sum();
        let outputs = sequences
            .into_iter()
            .map(|s| SequenceOutput {
                tokens: s.generated().to_vec(),
                finish_reason: s.finish_reason.unwrap_or(FinishReason::Length),
            })
            .collect();
        Ok((outputs, stats))
    }

    /// Picks (sequence, new token count) pairs for the next step: unfinished
    /// prompts first, in chunks that fill the token budget; then one decode
    /// token per running sequence.
    fn next_batch(&self, sequences: &[Sequence]) -> Vec<(usize, usize)> {
        let options = self.model.options();
        let mut budget = options.max_batch_tokens;
        let mut batch = Vec::new();
        for (i, seq) in sequences.iter().enumerate() {
            if batch.len() == options.max_seqs || budget == 0 {
                break;
            }
            let pending = seq.tokens.len() - seq.num_computed;
            if seq.finish_reason.is_some() || pending == 0 || seq.request.max_new_tokens == 0 {
                continue;
            }
            let count = pending.min(budget);
            budget -= count;
            batch.push((i, count));
        }
        batch
    }
}
