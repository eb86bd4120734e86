//! `shaders/silu_gate.wgsl`: out = silu(gate) * up from the fused projection.
//! Bindings: step, gate_up, out.

use crate::gpu::pipelines::{BindingKind, KernelSpec};

use super::groups;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SiluGateKey {
    pub intermediate: u32,
}

impl SiluGateKey {
    pub(crate) fn spec(&self) -> KernelSpec {
        KernelSpec {
            label: "silu_gate",
            source: include_str!("../../../shaders/silu_gate.wgsl"),
            entry_point: "silu_gate",
            bindings: &[BindingKind::Uniform, BindingKind::StorageRead, BindingKind::StorageReadWrite],
            constants: vec![("INTERMEDIATE", self.intermediate as f64)],
        }
    }

    pub fn workgroups(&self, num_tokens: u32) -> [u32; 3] {
        [groups(self.intermediate / 4), num_tokens, 1]
    }
}
