//! Llama (and SmolLM2, TinyLlama, ...): pre-norm layers of RMSNorm, the
//! attention block over the paged cache with RoPE, RMSNorm, and the SiLU
//! gated MLP, each joined to the residual stream by addition.

use std::path::Path;
use std::sync::Arc;

use crate::gpu::GpuContext;

use super::architectures::Architecture;
use super::blocks::attention::{AttentionMask, AttentionWeights, PagedAttention};
use super::blocks::layer::{DecoderLayer, LayerStack};
use super::blocks::mlp::{Activation, GatedMlp, MlpWeights};
use super::blocks::norm::RmsNorm;
use super::blocks::rope::RopeTable;
use super::blocks::{LayerScratch, Residual};
use super::builder::ModelBuilder;
pub use super::causal_lm::{CausalLm, ForwardOutput, Output};
use super::config::DecoderConfig;
use super::decoder::{Decoder, DecoderBuffers};
use super::source::WeightSource;
use super::{LoadOptions, ModelError};

/// Loads Llama models; they run as a `Decoder<LayerStack>`.
pub struct Llama;

impl Llama {
    /// Loads a `.gguf` file or a Hugging Face directory (config.json + model.safetensors).
    pub fn load(
        ctx: Arc<GpuContext>,
        path: &Path,
        options: &LoadOptions,
    ) -> Result<Decoder<LayerStack>, ModelError> {
        Self::from_source(ctx, &WeightSource::open(path)?, options)
    }

    /// The hyperparameters, or why this file is not a Llama we can run.
    pub fn config(source: &WeightSource) -> Result<DecoderConfig, ModelError> {
        let architecture = Architecture::of(source)?;
        if architecture != Architecture::Llama {
            return Err(ModelError::Config(format!("a {} model, not llama", architecture.name())));
        }
        if let Some(gguf) = source.gguf() {
            DecoderConfig::refuse_unhonoured(gguf, &[])?;
        }
        DecoderConfig::from_source(source)
    }

    pub fn from_source(
        ctx: Arc<GpuContext>,
        source: &WeightSource,
        options: &LoadOptions,
    ) -> Result<Decoder<LayerStack>, ModelError> {
        let config = Self::config(source)?;
        let c = &config;
        let (h, v) = (c.hidden_size, c.vocab_size);
        let mut b = ModelBuilder::new(ctx, source);
        let buffers = DecoderBuffers::new(&b, c, options)?;
        let scratch = LayerScratch::new(&b, c, options)?;
        let rope = RopeTable::new(&b, c.head_dim, c.rope_theta, c.max_position_embeddings, c.rope_style)?;

        let token_embd = b.matrix("token_embd.weight", v, h)?;
        // token ids -> hidden [M, H].
        let embedding = b.embedding(&buffers.inputs, &token_embd, &buffers.hidden, 1.0);
        let mut layers = Vec::with_capacity(c.num_layers);
        for layer in 0..c.num_layers {
            let name = |leaf: &str| format!("blk.{layer}.{leaf}.weight");
            let attn_norm_w = b.vector(&name("attn_norm"), h)?;
            let ffn_norm_w = b.vector(&name("ffn_norm"), h)?;
            let attention = AttentionWeights::load(&b, c, layer, false)?;
            let mlp = MlpWeights::load(&b, c, layer)?;
            layers.push(DecoderLayer {
                // hidden -> normed
                attn_norm: RmsNorm::new(
                    &mut b,
                    &buffers.inputs,
                    c.rms_norm_eps,
                    &attn_norm_w,
                    &buffers.hidden,
                    &scratch.normed,
                ),
                // normed -> attention -> hidden +=
                attention: PagedAttention::new(
                    &mut b,
                    c,
                    &buffers,
                    &scratch,
                    layer,
                    attention,
                    &rope,
                    AttentionMask::Causal,
                    Residual::Add,
                ),
                // hidden -> normed
                ffn_norm: RmsNorm::new(
                    &mut b,
                    &buffers.inputs,
                    c.rms_norm_eps,
                    &ffn_norm_w,
                    &buffers.hidden,
                    &scratch.normed,
                ),
                // normed -> MLP -> hidden +=
                mlp: GatedMlp::new(&mut b, c, &buffers, &scratch, mlp, Activation::Silu, Residual::Add),
            });
        }

        let output_norm = b.vector("output_norm.weight", h)?;
        let lm_head = b.output_head(c.tie_word_embeddings, token_embd)?;
        let body = LayerStack { embedding, layers };
        Decoder::new(&mut b, config, options, buffers, body, &output_norm, lm_head)
    }
}
