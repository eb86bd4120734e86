//! LayerNorm in place over the residual stream (BERT's post-norms: after
//! the embeddings and after each block's residual add).

use crate::gpu::kernels::layernorm::{LayerNormBindings, LayerNormKey};
use crate::gpu::{GpuBuffer, KernelKey};
use crate::model::bound::Bound;
use crate::model::builder::ModelBuilder;

pub struct LayerNormWeights {
    /// [H] f32, per-column scale (gamma).
    pub weight: GpuBuffer,
    /// [H] f32, per-column shift (beta).
    pub bias: GpuBuffer,
}

pub struct LayerNorm {
    bound: Bound,
}

impl LayerNorm {
    /// x[t] = (x[t] - mean) / sqrt(var + eps) * weight + bias, in place,
    /// for every token; `step` holds the token count.
    pub fn in_place(
        builder: &mut ModelBuilder,
        step: &GpuBuffer,
        eps: f32,
        weights: &LayerNormWeights,
        x: &GpuBuffer,
    ) -> Self {
        let hidden = (weights.weight.size / 4) as u32;
        let key = LayerNormKey { hidden, eps_bits: eps.to_bits() };
        let bindings = LayerNormBindings { step, x, weight: &weights.weight, bias: &weights.bias };
        let bound = Bound::bind(&builder.ctx, &mut builder.cache, KernelKey::LayerNorm(key), &bindings);
        Self { bound }
    }

    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>, num_tokens: u32) {
        self.bound.record(pass, num_tokens);
    }
}
