//! `shaders/argmax.wgsl`: greedy token per sampled row.
//! Bindings: step, logits, out.

use crate::gpu::pipelines::{BindingKind, KernelSpec};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArgmaxKey {
    pub vocab: u32,
}

impl ArgmaxKey {
    pub(crate) fn spec(&self) -> KernelSpec {
        KernelSpec {
            label: "argmax",
            source: include_str!("../../../shaders/argmax.wgsl"),
            entry_point: "argmax",
            bindings: &[BindingKind::Uniform, BindingKind::StorageRead, BindingKind::StorageReadWrite],
            constants: vec![("V", self.vocab as f64)],
        }
    }

    pub fn workgroups(&self, num_rows: u32) -> [u32; 3] {
        [num_rows, 1, 1]
    }
}
