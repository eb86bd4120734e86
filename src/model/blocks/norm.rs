//! RMSNorm over the residual stream: writing the input of a projection,
//! or adding a normed block output back into the stream.

use crate::gpu::kernels::rmsnorm::{RmsNormBindings, RmsNormKey};
use crate::gpu::profiler::Recorder;
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
        Self::build(builder, inputs, eps, weight, x, out, false)
    }

    /// out[t] += x[t] / rms(x[t]) * weight: a normed block output joining
    /// the residual stream.
    pub fn accumulating(
        builder: &mut ModelBuilder,
        inputs: &StepInputs,
        eps: f32,
        weight: &GpuBuffer,
        x: &GpuBuffer,
        out: &GpuBuffer,
    ) -> Self {
        Self::build(builder, inputs, eps, weight, x, out, true)
    }

    fn build(
        builder: &mut ModelBuilder,
        inputs: &StepInputs,
        eps: f32,
        weight: &GpuBuffer,
        x: &GpuBuffer,
        out: &GpuBuffer,
        accumulate: bool,
    ) -> Self {
        let hidden = (weight.size / 4) as u32;
        let key = RmsNormKey { hidden, eps_bits: eps.to_bits(), gather: false, accumulate };
        let bindings =
            RmsNormBindings { step: &inputs.step, x, weight, row_index: &inputs.sample_indices, out };
        let bound = Bound::bind(&builder.ctx.clone(), &mut builder.cache, KernelKey::RmsNorm(key), &bindings);
        Self { bound }
    }

    pub fn record(&self, pass: &mut dyn Recorder, num_tokens: u32) {
        self.bound.record(pass, num_tokens);
    }
}
