//! The gated MLP: one matmul for gate and up, the gated activation
//! (SiLU for Llama, tanh GELU for Gemma), the down projection joined to
//! the residual stream.

use crate::gpu::KernelKey;
use crate::gpu::kernels::silu_gate::SiluGateKey;
use crate::model::bound::Bound;
use crate::model::builder::ModelBuilder;
use crate::model::config::DecoderConfig;
use crate::model::decoder::DecoderBuffers;
use crate::model::matmul::{GpuMatrix, MatmulOp};

use super::norm::RmsNorm;
use super::{LayerScratch, Residual};

pub struct MlpWeights {
    /// [2 I, H]: gate rows, then up rows.
    pub gate_up: GpuMatrix,
    /// [H, I]
    pub down: GpuMatrix,
}

pub struct GatedMlp {
    gate_up: MatmulOp,
    activation: Bound,
    down: MatmulOp,
    post_norm: Option<RmsNorm>,
}

impl GatedMlp {
    /// Reads `scratch.normed`, adds its output into `buffers.hidden`.
    pub fn new(
        builder: &mut ModelBuilder,
        config: &DecoderConfig,
        buffers: &DecoderBuffers,
        scratch: &LayerScratch,
        weights: MlpWeights,
        residual: Residual,
    ) -> Self {
        let inputs = &buffers.inputs;
        let ctx = builder.ctx.clone();
        // normed [M, H] -> gate_up [M, 2 I].
        let gate_up = MatmulOp::new(
            &ctx,
            &mut builder.cache,
            weights.gate_up,
            &inputs.step,
            &scratch.normed,
            &scratch.gate_up,
            false,
        );
        // act = silu(gate) * up: [M, I].
        let key = SiluGateKey { intermediate: config.intermediate_size as u32 };
        let activation = Bound::new(
            &ctx,
            &mut builder.cache,
            KernelKey::SiluGate(key),
            &[&inputs.step, &scratch.gate_up, &scratch.act],
        );
        // act [M, I] -> [M, H], into the residual stream.
        let (down, post_norm) = match residual {
            Residual::Add => {
                let op = MatmulOp::new(
                    &ctx,
                    &mut builder.cache,
                    weights.down,
                    &inputs.step,
                    &scratch.act,
                    &buffers.hidden,
                    true,
                );
                (op, None)
            }
        };
        Self { gate_up, activation, down, post_norm }
    }

    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>, num_tokens: u32) {
        self.gate_up.record(pass, num_tokens);
        self.activation.record(pass, num_tokens);
        self.down.record(pass, num_tokens);
        if let Some(norm) = &self.post_norm {
            norm.record(pass, num_tokens);
        }
    }

    pub fn weight_bytes(&self) -> u64 {
        self.gate_up.weight_bytes() + self.down.weight_bytes()
    }
}
