//! `shaders/kv_write.wgsl`: new K/V into the paged cache by slot mapping.
//! Bindings: step, qkv, slot_mapping, k_cache, v_cache.

use crate::gpu::pipelines::{BindingKind, KernelSpec};

use super::groups;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KvWriteKey {
    pub head_dim: u32,
    pub n_q_heads: u32,
    pub n_kv_heads: u32,
}

impl KvWriteKey {
    pub(crate) fn spec(&self) -> KernelSpec {
        KernelSpec {
            label: "kv_write",
            source: include_str!("../../../shaders/kv_write.wgsl"),
            entry_point: "kv_write",
            bindings: &[
                BindingKind::Uniform,
                BindingKind::StorageRead,
                BindingKind::StorageRead,
                BindingKind::StorageReadWrite,
                BindingKind::StorageReadWrite,
            ],
            constants: vec![
                ("HEAD_DIM", self.head_dim as f64),
                ("N_Q_HEADS", self.n_q_heads as f64),
                ("N_KV_HEADS", self.n_kv_heads as f64),
            ],
        }
    }

    pub fn workgroups(&self, num_tokens: u32) -> [u32; 3] {
        [groups(self.n_kv_heads * self.head_dim / 4), num_tokens, 1]
    }
}
