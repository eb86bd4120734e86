//! `shaders/gelu.wgsl`: exact (erf) GELU in place, as BERT's "gelu".

use super::{KernelBindings, groups};
use crate::gpu::GpuBuffer;
use crate::gpu::pipelines::{BindingKind, KernelSpec};

pub struct GeluBindings<'a> {
    /// Uniform; `num_tokens` rows.
    pub step: &'a GpuBuffer,
    /// [M, columns] f32, activated in place.
    pub x: &'a GpuBuffer,
}

impl KernelBindings for GeluBindings<'_> {
    fn in_binding_order(&self) -> Vec<&GpuBuffer> {
        vec![self.step, self.x]
    }
}

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
