//! Gemma 3 (text): pre- and post-norms around attention and MLP, q/k
//! RMSNorm per head, sliding-window attention on five of every six layers
//! (each with its own RoPE base), a tanh-GELU gated MLP, embeddings scaled
//! by sqrt(hidden), and the output head tied to the embedding table.
//!
//! Norm weights are used as the GGUF stores them: llama.cpp's converter
//! already added the 1 of Gemma's `(1 + w)` RMSNorm.

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
use super::config::{DecoderConfig, RopeStyle};
use super::decoder::{Decoder, DecoderBuffers};
use super::source::WeightSource;
use super::{LoadOptions, ModelError};

/// What Gemma 3 adds to the shared hyperparameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Gemma3Config {
    pub decoder: DecoderConfig,
    /// Keys a local layer's query sees: itself and the `sliding_window - 1` before it.
    pub sliding_window: usize,
    /// Every n-th layer (the last of each group) attends globally.
    pub global_every: usize,
    /// RoPE base of the local layers (the global ones use `rope_theta`).
    pub local_rope_base: f32,
}

/// transformers' and llama.cpp's values where the GGUF does not carry them
/// (no converter writes the pattern; newer ones write the local base as
/// `gemma3.rope.freq_base_swa`).
const GLOBAL_EVERY: usize = 6;
const LOCAL_ROPE_BASE: f32 = 10_000.0;

impl Gemma3Config {
    fn is_global(&self, layer: usize) -> bool {
        (layer + 1).is_multiple_of(self.global_every)
    }
}

/// Loads Gemma3 models; they run as a `Decoder<LayerStack>`.
pub struct Gemma3;

impl Gemma3 {
    pub fn load(
        ctx: Arc<GpuContext>,
        path: &Path,
        options: &LoadOptions,
    ) -> Result<Decoder<LayerStack>, ModelError> {
        Self::from_source(ctx, &WeightSource::open(path)?, options)
    }

    /// The hyperparameters, or why this file is not a Gemma 3 we can run.
    pub fn config(source: &WeightSource) -> Result<Gemma3Config, ModelError> {
        let gguf = match (Architecture::of(source)?, source.gguf()) {
            (Architecture::Gemma3, Some(gguf)) => gguf,
            (architecture, _) => {
                return Err(ModelError::Config(format!("a {} model, not gemma3", architecture.name())));
            }
        };
        DecoderConfig::refuse_unhonoured(gguf, &[])?;
        let mut decoder = DecoderConfig::from_gguf(gguf)?;
        // The window applies to the local layers only, by Gemma's own pattern.
        decoder.sliding_window = None;
        // llama.cpp does not permute Gemma's Q/K rows: RoPE rotates halves.
        decoder.rope_style = RopeStyle::Neox;
        // The 27B scales queries by hidden / heads, not head size; the
        // attention kernel scales by head size only.
        if decoder.hidden_size != decoder.num_heads * decoder.head_dim && decoder.num_layers == 62 {
            return Err(ModelError::Config(
                "Gemma 3 27B scales attention by hidden / heads, which wgserve does not carry out".into(),
            ));
        }
        let sliding_window = gguf.get_u64("gemma3.attention.sliding_window")? as usize;
        if sliding_window == 0 {
            return Err(ModelError::Config("gemma3.attention.sliding_window is 0".into()));
        }
        // Newer converters write the local base; older files leave it to the default.
        let local_rope_base = match gguf.get("gemma3.rope.freq_base_swa") {
            Some(value) => value
                .as_f64()
                .ok_or_else(|| ModelError::Config("gemma3.rope.freq_base_swa is not a number".into()))?
                as f32,
            None => LOCAL_ROPE_BASE,
        };
        Ok(Gemma3Config { decoder, sliding_window, global_every: GLOBAL_EVERY, local_rope_base })
    }

    pub fn from_source(
        ctx: Arc<GpuContext>,
        source: &WeightSource,
        options: &LoadOptions,
    ) -> Result<Decoder<LayerStack>, ModelError> {
        let gemma = Self::config(source)?;
        let c = &gemma.decoder;
        let (h, v) = (c.hidden_size, c.vocab_size);
        let mut b = ModelBuilder::new(ctx, source);
        let buffers = DecoderBuffers::new(&b, c, options)?;
        let scratch = LayerScratch::new(&b, c, options)?;
        let max_positions = c.max_position_embeddings;
        // RoPE scaling (Gemma 3 4B and up: linear, factor 8) stretches the
        // global layers only, as in transformers.
        let global_rope = RopeTable::new(
            &b,
            c.head_dim,
            c.rope_theta,
            max_positions,
            c.rope_style,
            c.rope_scaling.as_ref(),
        )?;
        let local_rope =
            RopeTable::new(&b, c.head_dim, gemma.local_rope_base, max_positions, c.rope_style, None)?;

        let token_embd = b.matrix("token_embd.weight", v, h)?;
        // token ids -> hidden [M, H], scaled by sqrt(H) (in f32, as transformers does).
        let embed_scale = (h as f32).sqrt();
        let embedding = b.embedding(&buffers.inputs, &token_embd, &buffers.hidden, embed_scale);
        let mut layers = Vec::with_capacity(c.num_layers);
        for layer in 0..c.num_layers {
            let name = |leaf: &str| format!("blk.{layer}.{leaf}.weight");
            let attn_norm_w = b.vector(&name("attn_norm"), h)?;
            let post_attn_norm_w = b.vector(&name("post_attention_norm"), h)?;
            let ffn_norm_w = b.vector(&name("ffn_norm"), h)?;
            let post_ffn_norm_w = b.vector(&name("post_ffw_norm"), h)?;
            let attention = AttentionWeights::load(&b, c, layer, true, false)?;
            let mlp = MlpWeights::load(&b, c, layer)?;
            let (rope, mask) = if gemma.is_global(layer) {
                (&global_rope, AttentionMask::Causal)
            } else {
                (&local_rope, AttentionMask::SlidingWindow(gemma.sliding_window))
            };
            let eps = c.rms_norm_eps;
            layers.push(DecoderLayer {
                // hidden -> normed
                attn_norm: RmsNorm::new(
                    &mut b,
                    &buffers.inputs,
                    eps,
                    &attn_norm_w,
                    &buffers.hidden,
                    &scratch.normed,
                ),
                // normed -> q/k-normed, rotated attention -> post-norm -> hidden +=
                attention: PagedAttention::new(
                    &mut b,
                    c,
                    &buffers,
                    &scratch,
                    layer,
                    attention,
                    rope,
                    mask,
                    Residual::PostNorm(&post_attn_norm_w),
                ),
                // hidden -> normed
                ffn_norm: RmsNorm::new(
                    &mut b,
                    &buffers.inputs,
                    eps,
                    &ffn_norm_w,
                    &buffers.hidden,
                    &scratch.normed,
                ),
                // normed -> tanh-GELU gated MLP -> post-norm -> hidden +=
                mlp: GatedMlp::new(
                    &mut b,
                    c,
                    &buffers,
                    &scratch,
                    mlp,
                    Activation::GeluTanh,
                    Residual::PostNorm(&post_ffn_norm_w),
                ),
            });
        }

        let output_norm = b.vector("output_norm.weight", h)?;
        // Tied to the embedding table unless the file has its own.
        let lm_head = b.output_head(None, token_embd)?;
        let body = LayerStack { embedding, layers };
        Decoder::new(&mut b, gemma.decoder.clone(), options, buffers, body, &output_norm, lm_head)
    }
}
