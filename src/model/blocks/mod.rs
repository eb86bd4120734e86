//! The building blocks architectures compose: for decoders norms, RoPE
//! tables, the attention block over the paged KV cache and the gated MLP;
//! for encoders LayerNorm, bidirectional attention within each input and
//! the ungated GELU MLP. Each block binds its kernels to named buffers
//! once, at load, and only records dispatches per step.

pub mod attention;
pub mod encoder_attention;
pub mod gelu_mlp;
pub mod layer;
pub mod layer_norm;
pub mod mlp;
pub mod norm;
pub mod rope;

use super::LoadOptions;
use super::ModelError;
use super::builder::ModelBuilder;
use super::config::DecoderConfig;
use super::decoder::DecoderBuffers;
use super::matmul::{GpuMatrix, MatmulOp};
use crate::gpu::GpuBuffer;
use crate::gpu::kernels::attention::AttentionPass;
use crate::gpu::profiler::MatmulRole;
use crate::gpu::profiler::Recorder;
use norm::RmsNorm;

/// Activations a layer writes and the next layer overwrites, shared by
/// all layers and sized for the largest step (M tokens).
pub struct LayerScratch {
    /// [M, H]: the normed residual stream, input of a projection.
    pub normed: GpuBuffer,
    /// [M, (Hq + 2 Hkv) D]: fused Q, K, V.
    pub qkv: GpuBuffer,
    /// [M, Hq D]: attention output, before its projection.
    pub attn: GpuBuffer,
    /// The split attention passes' partial results (CPU family; see
    /// `AttentionPass::partials_len`).
    pub attention_partials: GpuBuffer,
    /// [M, H]: a block's projected output where a norm follows it before
    /// the residual add (Gemma's post-norms).
    pub projected: GpuBuffer,
    /// [M, 2 I]: fused gate and up projections.
    pub gate_up: GpuBuffer,
    /// [M, I]: the gated activation.
    pub act: GpuBuffer,
}

impl LayerScratch {
    pub fn new(builder: &ModelBuilder, c: &DecoderConfig, options: &LoadOptions) -> Result<Self, ModelError> {
        let m = options.max_batch_tokens;
        Ok(Self {
            normed: builder.activation("normed", m * c.hidden_size)?,
            qkv: builder.activation("qkv", m * c.qkv_size())?,
            attn: builder.activation("attn", m * c.num_heads * c.head_dim)?,
            attention_partials: builder.activation("attention_partials", {
                let split_tokens =
                    AttentionPass::max_split_tokens(builder.ctx.kernels(), m, options.max_seqs);
                AttentionPass::partials_len(split_tokens, c.num_heads, c.head_dim)
            })?,
            projected: builder.activation("projected", m * c.hidden_size)?,
            gate_up: builder.activation("gate_up", m * 2 * c.intermediate_size)?,
            act: builder.activation("act", m * c.intermediate_size)?,
        })
    }
}

/// A block's output projection joined to the residual stream:
/// x -> matmul -> hidden += (or -> RMSNorm -> hidden +=).
pub struct ResidualProjection {
    matmul: MatmulOp,
    post_norm: Option<RmsNorm>,
}

impl ResidualProjection {
    pub fn new(
        builder: &mut ModelBuilder,
        config: &DecoderConfig,
        buffers: &DecoderBuffers,
        scratch: &LayerScratch,
        weight: GpuMatrix,
        x: &GpuBuffer,
        residual: Residual,
    ) -> Self {
        let ctx = builder.ctx.clone();
        let step = &buffers.inputs.step;
        match residual {
            Residual::Add => {
                let matmul = MatmulOp::new(&ctx, &mut builder.cache, weight, step, x, &buffers.hidden, true);
                Self { matmul, post_norm: None }
            }
            Residual::PostNorm(norm_weight) => {
                let (projected, eps) = (&scratch.projected, config.rms_norm_eps);
                let matmul = MatmulOp::new(&ctx, &mut builder.cache, weight, step, x, projected, false);
                let norm = RmsNorm::accumulating(
                    builder,
                    &buffers.inputs,
                    eps,
                    norm_weight,
                    projected,
                    &buffers.hidden,
                );
                Self { matmul, post_norm: Some(norm) }
            }
        }
    }

    /// Names the projection in profiles.
    pub fn with_role(mut self, role: MatmulRole) -> Self {
        self.matmul = self.matmul.with_role(role);
        self
    }

    pub fn record(&self, pass: &mut dyn Recorder, num_tokens: u32) {
        self.matmul.record(pass, num_tokens);
        if let Some(norm) = &self.post_norm {
            norm.record(pass, num_tokens);
        }
    }

    pub fn weight_bytes(&self) -> u64 {
        self.matmul.weight_bytes()
    }
}

/// How a block's output joins the residual stream.
pub enum Residual<'a> {
    /// hidden += output (Llama).
    Add,
    /// hidden += RMSNorm(output) with these weights (Gemma's post-norms).
    PostNorm(&'a GpuBuffer),
}
