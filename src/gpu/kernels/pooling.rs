//! `shaders/pooling.wgsl`: one embedding per sequence (mean of its tokens
//! or its first token), optionally L2-normalised.

use super::KernelBindings;
use crate::gpu::GpuBuffer;
use crate::gpu::pipelines::{BindingKind, KernelSpec};

pub struct PoolingBindings<'a> {
    /// Uniform; `num_seqs` sequences.
    pub step: &'a GpuBuffer,
    /// [M, H] f32, the last layer's token states.
    pub hidden: &'a GpuBuffer,
    /// [S + 1] u32, first token of each sequence, then M.
    pub seq_start: &'a GpuBuffer,
    /// [S, H] f32, one embedding per sequence.
    pub out: &'a GpuBuffer,
}

impl KernelBindings for PoolingBindings<'_> {
    fn in_binding_order(&self) -> Vec<&GpuBuffer> {
        vec![self.step, self.hidden, self.seq_start, self.out]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PoolingKey {
    pub hidden: u32,
    /// Mean of the sequence's tokens; otherwise its first token ([CLS]).
    pub mean: bool,
    pub normalize: bool,
}

impl PoolingKey {
    pub(crate) fn spec(&self) -> KernelSpec {
        KernelSpec {
            label: "pooling",
            source: include_str!("../../../shaders/pooling.wgsl"),
            entry_point: "pooling",
            bindings: &[
                BindingKind::Uniform,
                BindingKind::StorageRead,
                BindingKind::StorageRead,
                BindingKind::StorageReadWrite,
            ],
            constants: vec![
                ("H", self.hidden as f64),
                ("MEAN", if self.mean { 1.0 } else { 0.0 }),
                ("NORMALIZE", if self.normalize { 1.0 } else { 0.0 }),
            ],
        }
    }

    pub fn workgroups(&self, num_seqs: u32) -> [u32; 3] {
        // 8 invocations per workgroup (see the shader).
        [num_seqs.div_ceil(8), 1, 1]
    }
}
