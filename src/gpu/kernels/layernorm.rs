//! `shaders/layernorm.wgsl`: per-row LayerNorm in place (BERT).

use super::KernelBindings;
use crate::gpu::GpuBuffer;
use crate::gpu::pipelines::{BindingKind, KernelSpec};

pub struct LayerNormBindings<'a> {
    /// Uniform; `num_tokens` rows.
    pub step: &'a GpuBuffer,
    /// [M, H] f32, normalised in place.
    pub x: &'a GpuBuffer,
    /// [H] f32, per-column scale (gamma).
    pub weight: &'a GpuBuffer,
    /// [H] f32, per-column shift (beta).
    pub bias: &'a GpuBuffer,
}

impl KernelBindings for LayerNormBindings<'_> {
    fn in_binding_order(&self) -> Vec<&GpuBuffer> {
        vec![self.step, self.x, self.weight, self.bias]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LayerNormKey {
    pub hidden: u32,
    /// `f32::to_bits` of epsilon, so the key stays `Eq + Hash`.
    pub eps_bits: u32,
}

impl LayerNormKey {
    pub(crate) fn spec(&self) -> KernelSpec {
        KernelSpec {
            label: "layernorm",
            source: include_str!("../../../shaders/layernorm.wgsl"),
            entry_point: "layernorm",
            bindings: &[
                BindingKind::Uniform,
                BindingKind::StorageReadWrite,
                BindingKind::StorageRead,
                BindingKind::StorageRead,
            ],
            constants: vec![("H", self.hidden as f64), ("EPS", f32::from_bits(self.eps_bits) as f64)],
        }
    }

    pub fn workgroups(&self, num_tokens: u32) -> [u32; 3] {
        // 16 rows per workgroup (see the shader).
        [num_tokens.div_ceil(16), 1, 1]
    }
}
