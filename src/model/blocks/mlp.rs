//! The gated MLP: one matmul for gate and up, the gated activation
//! (SiLU for Llama, tanh GELU for Gemma), the down projection joined to
//! the residual stream. Decode steps on the CPU kernels run gate/up and
//! the activation as one matvec (`MatmulOp::gated_matvec`).

use crate::gpu::KernelKey;
pub use crate::gpu::kernels::glu::GluActivation as Activation;
use crate::gpu::kernels::glu::{GluBindings, GluKey};
use crate::gpu::profiler::{MatmulRole, Recorder};
use crate::model::ModelError;
use crate::model::bound::Bound;
use crate::model::builder::ModelBuilder;
use crate::model::config::DecoderConfig;
use crate::model::decoder::DecoderBuffers;
use crate::model::matmul::{GpuMatrix, MatmulOp};

use super::{LayerScratch, Residual, ResidualProjection};

pub struct MlpWeights {
    /// [2 I, H]: gate rows, then up rows.
    pub gate_up: GpuMatrix,
    /// [H, I]
    pub down: GpuMatrix,
}

impl MlpWeights {
    /// Layer `layer`'s `ffn_gate` and `ffn_up` stacked, or, in a file
    /// without `ffn_gate` (Phi-3), `ffn_up` holding both; and `ffn_down`
    /// (GGUF names).
    pub fn load(b: &ModelBuilder, c: &DecoderConfig, layer: usize) -> Result<Self, ModelError> {
        let name = |leaf: &str| format!("blk.{layer}.{leaf}.weight");
        let (h, i) = (c.hidden_size, c.intermediate_size);
        let gate_up = match b.source.tensor(&name("ffn_gate"))? {
            Some(_) => b.fused(&name("ffn_gate_up"), &[(&name("ffn_gate"), i), (&name("ffn_up"), i)], h)?,
            None => b.matrix(&name("ffn_up"), 2 * i, h)?,
        };
        Ok(Self { gate_up, down: b.matrix(&name("ffn_down"), h, i)? })
    }
}

pub struct GatedMlp {
    gate_up: MatmulOp,
    activation: Bound,
    /// gate_up and the activation in one matvec, for the steps it covers.
    gated_matvec: Option<MatmulOp>,
    down: ResidualProjection,
}

impl GatedMlp {
    /// Reads `scratch.normed`, adds its output into `buffers.hidden`.
    pub fn new(
        builder: &mut ModelBuilder,
        config: &DecoderConfig,
        buffers: &DecoderBuffers,
        scratch: &LayerScratch,
        weights: MlpWeights,
        activation: Activation,
        residual: Residual,
    ) -> Self {
        let inputs = &buffers.inputs;
        let ctx = builder.ctx.clone();
        let cache = &mut builder.cache;
        // Decode steps: normed [M, H] -> act [M, I] in one matvec.
        let gated_matvec = MatmulOp::gated_matvec(
            &ctx,
            cache,
            &weights.gate_up,
            &inputs.step,
            &scratch.normed,
            &scratch.act,
            activation,
        )
        .map(|op| op.with_role(MatmulRole::GateUp));
        // Other steps: normed [M, H] -> gate_up [M, 2 I].
        let gate_up = MatmulOp::new(
            &ctx,
            cache,
            weights.gate_up,
            &inputs.step,
            &scratch.normed,
            &scratch.gate_up,
            false,
        )
        .with_role(MatmulRole::GateUp);
        // act = activation(gate) * up: [M, I].
        let key = GluKey { intermediate: config.intermediate_size as u32, activation };
        let bindings = GluBindings { step: &inputs.step, gate_up: &scratch.gate_up, out: &scratch.act };
        let activation = Bound::bind(&ctx, cache, KernelKey::Glu(key), &bindings);
        // act [M, I] -> [M, H], into the residual stream.
        let down =
            ResidualProjection::new(builder, config, buffers, scratch, weights.down, &scratch.act, residual)
                .with_role(MatmulRole::Down);
        Self { gate_up, activation, gated_matvec, down }
    }

    pub fn record(&self, pass: &mut dyn Recorder, num_tokens: u32) {
        match &self.gated_matvec {
            Some(fused) if fused.covers(num_tokens) => fused.record(pass, num_tokens),
            _ => {
                self.gate_up.record(pass, num_tokens);
                self.activation.record(pass, num_tokens);
            }
        }
        self.down.record(pass, num_tokens);
    }

    pub fn weight_bytes(&self) -> u64 {
        self.gate_up.weight_bytes() + self.down.weight_bytes()
    }
}
