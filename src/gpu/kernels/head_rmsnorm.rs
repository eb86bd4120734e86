//! `shaders/head_rmsnorm.wgsl`: RMSNorm of each query and key head, in
//! place on the fused QKV activations (Gemma 3's q_norm / k_norm, before
//! RoPE). V is left untouched.

use super::{KernelBindings, groups};
use crate::gpu::GpuBuffer;
use crate::gpu::pipelines::{BindingKind, KernelSpec};

pub struct HeadRmsNormBindings<'a> {
    /// Uniform; `num_tokens` rows.
    pub step: &'a GpuBuffer,
    /// [M, (Hq + 2 Hkv) D] f32, fused Q/K/V; Q and K heads normalized in place.
    pub qkv: &'a GpuBuffer,
    /// [D] f32, scale of every query head.
    pub q_norm: &'a GpuBuffer,
    /// [D] f32, scale of every key head.
    pub k_norm: &'a GpuBuffer,
}

impl KernelBindings for HeadRmsNormBindings<'_> {
    fn in_binding_order(&self) -> Vec<&GpuBuffer> {
        vec![self.step, self.qkv, self.q_norm, self.k_norm]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HeadRmsNormKey {
    pub head_dim: u32,
    pub n_q_heads: u32,
    pub n_kv_heads: u32,
    /// `f32::to_bits` of epsilon, so the key stays `Eq + Hash`.
    pub eps_bits: u32,
}

impl HeadRmsNormKey {
    pub(crate) fn spec(&self) -> KernelSpec {
        KernelSpec {
            label: "head_rmsnorm",
            source: include_str!("../../../shaders/head_rmsnorm.wgsl"),
            entry_point: "head_rmsnorm",
            bindings: &[
                BindingKind::Uniform,
                BindingKind::StorageReadWrite,
                BindingKind::StorageRead,
                BindingKind::StorageRead,
            ],
            constants: vec![
                ("HEAD_DIM", self.head_dim as f64),
                ("N_Q_HEADS", self.n_q_heads as f64),
                ("N_KV_HEADS", self.n_kv_heads as f64),
                ("EPS", f32::from_bits(self.eps_bits) as f64),
            ],
        }
    }

    /// One invocation per (token, Q or K head).
    pub fn workgroups(&self, num_tokens: u32) -> [u32; 3] {
        [groups(num_tokens * (self.n_q_heads + self.n_kv_heads)), 1, 1]
    }
}
