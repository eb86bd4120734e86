//! `shaders/rmsnorm.wgsl`: per-row RMSNorm, optionally of gathered rows,
//! optionally added into the output (Gemma's post-attention and post-FFN
//! norms: hidden += rmsnorm(x) * w).

use super::{KernelBindings, groups};
use crate::gpu::GpuBuffer;
use crate::gpu::pipelines::{BindingKind, KernelSpec};

pub struct RmsNormBindings<'a> {
    /// Uniform; `num_tokens` rows, or `num_seqs` gathered rows.
    pub step: &'a GpuBuffer,
    /// [M, H] f32, rows to normalize.
    pub x: &'a GpuBuffer,
    /// [H] f32, per-column scale.
    pub weight: &'a GpuBuffer,
    /// [S] u32, rows of `x` to gather (read only with `gather`).
    pub row_index: &'a GpuBuffer,
    /// [rows, H] f32, written, or added to with `accumulate`.
    pub out: &'a GpuBuffer,
}

impl KernelBindings for RmsNormBindings<'_> {
    fn in_binding_order(&self) -> Vec<&GpuBuffer> {
        vec![self.step, self.x, self.weight, self.row_index, self.out]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RmsNormKey {
    pub hidden: u32,
    /// `f32::to_bits` of epsilon, so the key stays `Eq + Hash`.
    pub eps_bits: u32,
    /// Normalise rows `row_index[0..num_seqs]` instead of all tokens.
    pub gather: bool,
    /// out += rmsnorm(x) * w instead of out = rmsnorm(x) * w.
    pub accumulate: bool,
}

impl RmsNormKey {
    pub(crate) fn spec(&self) -> KernelSpec {
        KernelSpec {
            label: "rmsnorm",
            source: include_str!("../../../shaders/rmsnorm.wgsl"),
            entry_point: "rmsnorm",
            bindings: &[
                BindingKind::Uniform,
                BindingKind::StorageRead,
                BindingKind::StorageRead,
                BindingKind::StorageRead,
                BindingKind::StorageReadWrite,
            ],
            constants: vec![
                ("H", self.hidden as f64),
                ("EPS", f32::from_bits(self.eps_bits) as f64),
                ("GATHER", if self.gather { 1.0 } else { 0.0 }),
                ("ACCUMULATE", if self.accumulate { 1.0 } else { 0.0 }),
            ],
        }
    }

    pub fn workgroups(&self, rows: u32) -> [u32; 3] {
        [groups(rows), 1, 1]
    }
}
