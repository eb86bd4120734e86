//! The ungated MLP of encoders: up projection with its bias, exact (erf)
//! GELU in place, down projection with its bias added into the residual
//! stream. (Decoders use the gated one, `mlp.rs`.)

use crate::gpu::kernels::gelu::{GeluBindings, GeluKey};
use crate::gpu::{GpuBuffer, KernelKey};
use crate::model::bound::Bound;
use crate::model::builder::ModelBuilder;
use crate::model::encoder::{EncoderInputs, EncoderScratch};
use crate::model::matmul::{GpuMatrix, MatmulOp};

pub struct GeluMlpWeights {
    /// [I, H] with an [I] bias (BERT's `intermediate.dense`).
    pub up: GpuMatrix,
    /// [H, I] with an [H] bias (BERT's `output.dense`).
    pub down: GpuMatrix,
}

pub struct GeluMlp {
    up: MatmulOp,
    gelu: Bound,
    down: MatmulOp,
}

impl GeluMlp {
    /// Reads `hidden` [M, H] and adds its output back into it.
    pub fn new(
        builder: &mut ModelBuilder,
        inputs: &EncoderInputs,
        scratch: &EncoderScratch,
        weights: GeluMlpWeights,
        hidden: &GpuBuffer,
    ) -> Self {
        let ctx = builder.ctx.clone();
        let cache = &mut builder.cache;
        let columns = weights.up.rows as u32;
        // hidden [M, H] -> intermediate [M, I].
        let up = MatmulOp::new(&ctx, cache, weights.up, &inputs.step, hidden, &scratch.intermediate, false);
        // intermediate = gelu(intermediate).
        let bindings = GeluBindings { step: &inputs.step, x: &scratch.intermediate };
        let gelu = Bound::bind(&ctx, cache, KernelKey::Gelu(GeluKey { columns }), &bindings);
        // intermediate [M, I] -> hidden +=.
        let down =
            MatmulOp::new(&ctx, cache, weights.down, &inputs.step, &scratch.intermediate, hidden, true);
        Self { up, gelu, down }
    }

    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>, num_tokens: u32) {
        self.up.record(pass, num_tokens);
        self.gelu.record(pass, num_tokens);
        self.down.record(pass, num_tokens);
    }
}
