//! The model layer: loads weights from GGUF or safetensors, repacks them
//! for the GPU, and runs the forward pass of a varlen batch. It composes
//! kernels and knows nothing of requests or scheduling.

pub mod architectures;
pub mod batch;
pub mod bert;
pub mod bert_config;
pub mod blocks;
pub mod bound;
pub mod builder;
pub mod causal_lm;
pub mod config;
pub mod decoder;
pub mod dequantize;
pub mod embedding;
pub mod encoder;
pub mod gemma3;
pub mod llama;
pub mod loader;
pub mod matmul;
pub mod quant_pack;
pub mod rope_scaling;
pub mod source;
pub mod vocab;
pub mod weights;

pub use crate::gpu::kv_cache::KvCacheDtype;
use config::DecoderConfig;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Format(#[from] crate::formats::FormatError),
    #[error(transparent)]
    Gpu(#[from] crate::gpu::GpuError),
    #[error("model config: {0}")]
    Config(String),
    #[error("tensor {name}: {why}")]
    InvalidTensor { name: String, why: String },
    #[error("missing tensor {0}")]
    MissingTensor(String),
    #[error("invalid batch: {0}")]
    InvalidBatch(String),
}

/// Sizes fixed at load: the largest step and the KV-cache pool.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadOptions {
    /// Most tokens in one forward step (prefill chunk + decodes).
    pub max_batch_tokens: usize,
    /// Most sequences in one forward step.
    pub max_seqs: usize,
    /// Tokens per KV block.
    pub block_size: usize,
    /// Memory of the KV cache, all layers, K and V, in MiB.
    pub kv_cache_mib: usize,
    /// What the KV cache stores each element as.
    pub kv_cache_dtype: KvCacheDtype,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            max_batch_tokens: 512,
            max_seqs: 64,
            block_size: 16,
            kv_cache_mib: 512,
            kv_cache_dtype: KvCacheDtype::default(),
        }
    }
}

impl LoadOptions {
    pub(crate) fn validate(&self) -> Result<(), ModelError> {
        if self.max_batch_tokens == 0 || self.max_seqs == 0 || self.block_size == 0 || self.kv_cache_mib == 0
        {
            return Err(ModelError::Config(format!("load options must be positive: {self:?}")));
        }
        Ok(())
    }

    /// Blocks a sequence of the full context length needs.
    pub fn max_blocks_per_seq(&self, config: &DecoderConfig) -> usize {
        config.max_position_embeddings.div_ceil(self.block_size)
    }

    /// Refuses a KV cache dtype that cannot hold this model's heads.
    pub(crate) fn check_kv_cache_dtype(&self, config: &DecoderConfig) -> Result<(), ModelError> {
        let dtype = self.kv_cache_dtype;
        if !dtype.supports_head_dim(config.head_dim) {
            return Err(ModelError::Config(format!(
                "--kv-cache-dtype {} stores heads in groups of {} elements; this model's head_dim is {}: use f16 or f32",
                dtype.name(),
                crate::gpu::kv_cache::Q8_0_GROUP,
                config.head_dim
            )));
        }
        Ok(())
    }

    /// Blocks that fit in `kv_cache_mib`, and in one storage binding per
    /// layer; 0 where the dtype cannot hold this model's heads.
    pub fn num_kv_blocks(&self, config: &DecoderConfig, max_binding: u64) -> usize {
        if !self.kv_cache_dtype.supports_head_dim(config.head_dim) {
            return 0;
        }
        let per_layer = crate::gpu::kv_cache::KvCache::block_bytes(
            self.block_size,
            config.num_kv_heads,
            config.head_dim,
            self.kv_cache_dtype,
        );
        let budget = (self.kv_cache_mib as u64) << 20;
        let by_budget = budget / (per_layer * 2 * config.num_layers as u64);
        let by_binding = max_binding / per_layer;
        by_budget.min(by_binding).max(1) as usize
    }
}
