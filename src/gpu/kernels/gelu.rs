//! `shaders/gelu.wgsl`: exact (erf) GELU in place, as BERT's "gelu".
//! Bindings: step, x.

use crate::gpu::pipelines::{BindingKind, KernelSpec};

use super::groups;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GeluKey {
    /// Row length (the intermediate size), a multiple of 4.
    pub columns: u32,
}

impl GeluKey {
    pub(crate) fn spec(&self) -> KernelSpec {
        KernelSpec {
            label: "gelu",
            source: include_str!("../../../shaders/gelu.wgsl"),
            entry_point: "gelu_in_place",
            bindings: &[BindingKind::Uniform, BindingKind::StorageReadWrite],
            constants: vec![("COLUMNS", self.columns as f64)],
        }
    }

    pub fn workgroups(&self, num_tokens: u32) -> [u32; 3] {
        [groups(self.columns / 4), num_tokens, 1]
    }
}
