//! The Llama layout and the families that share it: pre-norm layers of
//! RMSNorm, the attention block over the paged cache with RoPE, RMSNorm,
//! and the SiLU gated MLP, each joined to the residual stream by addition.
//! What sets the families apart is either a hyperparameter (RoPE scaling,
//! a sliding window: `DecoderConfig` reads them) or one of the few
//! switches of [`LlamaFamily`]; fused Q/K/V and gate/up matrices (Phi-3)
//! and biases are taken as the file stores them.

use std::path::Path;
use std::sync::Arc;

use crate::gpu::GpuContext;

use super::architectures::Architecture;
use super::blocks::attention::{AttentionWeights, PagedAttention};
use super::blocks::layer::{DecoderLayer, LayerStack};
use super::blocks::mlp::{Activation, GatedMlp, MlpWeights};
use super::blocks::norm::RmsNorm;
use super::blocks::rope::RopeTable;
use super::blocks::{LayerScratch, Residual};
use super::builder::ModelBuilder;
pub use super::causal_lm::{CausalLm, ForwardOutput, Output};
use super::config::{DecoderConfig, RopeStyle};
use super::decoder::{Decoder, DecoderBuffers};
use super::source::WeightSource;
use super::{LoadOptions, ModelError};

/// The switches of one family of the Llama layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LlamaFamily {
    /// Each Q and K head RMSNormed before RoPE (Qwen 3).
    pub qk_norm: bool,
    /// Q/K/V biases the file must have (Qwen 2); the others use them where present.
    pub qkv_bias_required: bool,
    /// How RoPE pairs a GGUF file's Q/K rows: llama.cpp permutes them for
    /// `llama` files only, and rotates halves for the others (its NEOX type).
    pub gguf_rope_style: RopeStyle,
}

impl LlamaFamily {
    /// Llama 1-3 (and SmolLM2, TinyLlama, ...), and Mistral, which llama.cpp
    /// writes as `llama` too.
    pub const LLAMA: Self =
        Self { qk_norm: false, qkv_bias_required: false, gguf_rope_style: RopeStyle::Interleaved };
    /// Qwen 2 and 2.5: biases on Q, K and V.
    pub const QWEN2: Self =
        Self { qk_norm: false, qkv_bias_required: true, gguf_rope_style: RopeStyle::Neox };
    /// Qwen 3: no biases, each Q and K head RMSNormed.
    pub const QWEN3: Self =
        Self { qk_norm: true, qkv_bias_required: false, gguf_rope_style: RopeStyle::Neox };
    /// Phi-3: fused Q/K/V and gate/up, longrope scaling, a sliding window.
    pub const PHI3: Self =
        Self { qk_norm: false, qkv_bias_required: false, gguf_rope_style: RopeStyle::Neox };
}

/// Loads the Llama-layout families; they run as a `Decoder<LayerStack>`.
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

    /// The family of the file's architecture, or why it is not one of the Llama layout.
    pub fn family(source: &WeightSource) -> Result<LlamaFamily, ModelError> {
        let architecture = Architecture::of(source)?;
        architecture.llama_family().ok_or_else(|| {
            ModelError::Config(format!("a {} model, not one of the Llama layout", architecture.name()))
        })
    }

    /// The hyperparameters, or why this file is not a model we can run.
    pub fn config(source: &WeightSource) -> Result<DecoderConfig, ModelError> {
        let family = Self::family(source)?;
        if let Some(gguf) = source.gguf() {
            DecoderConfig::refuse_unhonoured(gguf, &[])?;
        }
        let mut config = DecoderConfig::from_source(source)?;
        if source.gguf().is_some() {
            config.rope_style = family.gguf_rope_style;
        }
        Ok(config)
    }

    pub fn from_source(
        ctx: Arc<GpuContext>,
        source: &WeightSource,
        options: &LoadOptions,
    ) -> Result<Decoder<LayerStack>, ModelError> {
        let family = Self::family(source)?;
        let config = Self::config(source)?;
        let c = &config;
        let (h, v) = (c.hidden_size, c.vocab_size);
        let mut b = ModelBuilder::new(ctx, source);
        let buffers = DecoderBuffers::new(&b, c, options)?;
        let scratch = LayerScratch::new(&b, c, options)?;
        let rope = RopeTable::new(
            &b,
            c.head_dim,
            c.rope_theta,
            c.max_position_embeddings,
            c.rope_style,
            c.rope_scaling.as_ref(),
        )?;

        let token_embd = b.matrix("token_embd.weight", v, h)?;
        // token ids -> hidden [M, H].
        let embedding = b.embedding(&buffers.inputs, &token_embd, &buffers.hidden, 1.0);
        let mut layers = Vec::with_capacity(c.num_layers);
        for layer in 0..c.num_layers {
            let name = |leaf: &str| format!("blk.{layer}.{leaf}.weight");
            let attn_norm_w = b.vector(&name("attn_norm"), h)?;
            let ffn_norm_w = b.vector(&name("ffn_norm"), h)?;
            let attention = AttentionWeights::load(&b, c, layer, family.qk_norm, family.qkv_bias_required)?;
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
                // normed -> (q/k-normed) rotated attention -> hidden +=
                attention: PagedAttention::new(
                    &mut b,
                    c,
                    &buffers,
                    &scratch,
                    layer,
                    attention,
                    &rope,
                    c.attention_mask(layer),
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
