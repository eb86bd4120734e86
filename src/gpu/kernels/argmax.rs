//! `shaders/argmax.wgsl`: greedy token per sampled row.

use super::KernelBindings;
use crate::gpu::GpuBuffer;
use crate::gpu::pipelines::{BindingKind, KernelSpec};

pub struct ArgmaxBindings<'a> {
    /// Uniform; `num_tokens` is the number of sampled rows.
    pub step: &'a GpuBuffer,
    /// [rows, V] f32
    pub logits: &'a GpuBuffer,
    /// [rows] u32
    pub out: &'a GpuBuffer,
}

impl KernelBindings for ArgmaxBindings<'_> {
    fn in_binding_order(&self) -> Vec<&GpuBuffer> {
        vec![self.step, self.logits, self.out]
    }
}

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
