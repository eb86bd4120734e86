//! RMSNorm over the residual stream, writing its input for a projection
//! or adding a normed block output back into the stream.

use crate::gpu::kernels::rmsnorm::RmsNormKey;
use crate::gpu::{GpuBuffer, KernelKey};

use crate::model::bound::Bound;
use crate::model::builder::ModelBuilder;
use crate::model::decoder::StepInputs;

pub struct RmsNorm {
    bound: Bound,
}

impl RmsNorm {
    /// out[t] = x[t] / rms(x[t]) * weight, for every token of the step.
    pub fn new(
        builder: &mut ModelBuilder,
        inputs: &StepInputs,
        eps: f32,
        weight: &GpuBuffer,
        x: &GpuBuffer,
        out: &GpuBuffer,
    ) -> Self {
        let hidden = (weight.size / 4) as u32;
        let key = RmsNormKey { hidden, eps_bits: eps.to_bits(), gather: false };
        let bound = Bound::new(
            &builder.ctx,
            &mut builder.cache,
            KernelKey::RmsNorm(key),
            &[&inputs.step, x, weight, &inputs.sample_indices, out],
        );
        Self { bound }
    }

    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>, num_tokens: u32) {
        self.bound.record(pass, num_tokens);
    }
}
