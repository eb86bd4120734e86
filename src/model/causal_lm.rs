//! What the engine runs: a decoder-only language model over the paged KV
//! cache, whatever its architecture. Each architecture file (llama.rs
//! today) implements this trait; the engine holds a `Box<dyn CausalLm>`
//! and never names an architecture, so adding one touches no engine code.

use crate::gpu::GpuContext;
use crate::gpu::profiler::StepProfile;

use super::batch::BatchInputs;
use super::{LoadOptions, ModelError};

/// What a forward pass reads back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// The greedy next token of each sequence (argmax on the GPU).
    TokenIds,
    /// The logits of each sequence's sampled position.
    Logits,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ForwardOutput {
    TokenIds(Vec<u32>),
    /// [num_seqs, vocab_size]
    Logits(Vec<f32>),
}

pub trait CausalLm: Send {
    /// Runs one step of a varlen batch: every layer over the batch's new
    /// tokens, writing their K/V into the cache blocks of the batch's
    /// slot mapping, then the output head on each sequence's last token.
    fn forward(&self, batch: &BatchInputs, output: Output) -> Result<ForwardOutput, ModelError>;
    /// Runs throwaway steps so the driver compiles every kernel variant
    /// now rather than during the first request.
    fn warm_up(&self) -> Result<(), ModelError>;
    /// Runs one greedy step of `batch` (a decode step, a prefill chunk)
    /// with every dispatch timed, for `wgserve bench --profile`.
    fn profile_step(&self, batch: &BatchInputs) -> Result<StepProfile, ModelError>;
    /// Sizes fixed at load (largest step, most sequences).
    fn options(&self) -> &LoadOptions;
    /// Tokens per KV block.
    fn block_size(&self) -> usize;
    /// Blocks in the KV pool.
    fn num_kv_blocks(&self) -> usize;
    /// Tokens a KV cache of `options` (its memory and dtype) would hold
    /// for this model, on this adapter.
    fn kv_cache_tokens(&self, options: &LoadOptions) -> usize;
    /// Rows of the logits: the ids the model can read and write.
    fn vocab_size(&self) -> usize;
    /// Longest sequence (prompt and generated tokens) the model takes.
    fn max_model_len(&self) -> usize;
    /// Bytes of weights every step streams through the matmuls: the floor
    /// of a decode step's memory traffic (the benchmark's baseline).
    fn matmul_weight_bytes(&self) -> u64;
    fn gpu(&self) -> &GpuContext;
}
