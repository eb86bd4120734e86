//! `shaders/glu.wgsl`: the gated activation of the FFN, out = act(gate) * up
//! from the fused gate/up projection: SwiGLU (Llama) or GeGLU with tanh
//! GELU (Gemma).

use super::{KernelBindings, groups};
use crate::gpu::GpuBuffer;
use crate::gpu::pipelines::{BindingKind, KernelSpec};

pub struct GluBindings<'a> {
    /// Uniform; `num_tokens` rows.
    pub step: &'a GpuBuffer,
    /// [M, 2 I] f32, per token the gate projection then the up projection.
    pub gate_up: &'a GpuBuffer,
    /// [M, I] f32, act(gate) * up.
    pub out: &'a GpuBuffer,
}

impl KernelBindings for GluBindings<'_> {
    fn in_binding_order(&self) -> Vec<&GpuBuffer> {
        vec![self.step, self.gate_up, self.out]
    }
}

/// The activation applied to the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GluActivation {
    /// x * sigmoid(x) (SwiGLU).
    Silu,
    /// PyTorch's `gelu(x, approximate="tanh")` (GeGLU).
    GeluTanh,
}

impl GluActivation {
    /// The shaders' activation code (`gate_activation` in activation.wgsl).
    pub(crate) fn id(self) -> f64 {
        match self {
            GluActivation::Silu => 0.0,
            GluActivation::GeluTanh => 1.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GluKey {
    pub intermediate: u32,
    pub activation: GluActivation,
}

impl GluKey {
    pub(crate) fn spec(&self) -> KernelSpec {
        KernelSpec {
            label: "glu",
            source: concat!(
                include_str!("../../../shaders/glu.wgsl"),
                include_str!("../../../shaders/activation.wgsl")
            ),
            entry_point: "glu",
            bindings: &[BindingKind::Uniform, BindingKind::StorageRead, BindingKind::StorageReadWrite],
            constants: vec![("INTERMEDIATE", self.intermediate as f64), ("ACTIVATION", self.activation.id())],
        }
    }

    pub fn workgroups(&self, num_tokens: u32) -> [u32; 3] {
        [groups(self.intermediate / 4), num_tokens, 1]
    }
}
