//! `shaders/rmsnorm.wgsl`: per-row RMSNorm, optionally of gathered rows.
//! Bindings: step, x, weight, row_index, out.

use crate::gpu::pipelines::{BindingKind, KernelSpec};

use super::groups;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RmsNormKey {
    pub hidden: u32,
    /// `f32::to_bits` of epsilon, so the key stays `Eq + Hash`.
    pub eps_bits: u32,
    /// Normalise rows `row_index[0..num_seqs]` instead of all tokens.
    pub gather: bool,
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
            ],
        }
    }

    pub fn workgroups(&self, rows: u32) -> [u32; 3] {
        [groups(rows), 1, 1]
    }
}
