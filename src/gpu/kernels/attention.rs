//! `shaders/attention.wgsl`: paged causal attention, varlen batch, GQA.
//! Bindings: step, qkv, k_cache, v_cache, block_tables, token_seq,
//! positions, out.

use crate::gpu::pipelines::{BindingKind, KernelSpec};

/// Largest head size the kernel's registers hold.
pub const MAX_HEAD_DIM: u32 = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AttentionKey {
    pub head_dim: u32,
    pub n_q_heads: u32,
    pub n_kv_heads: u32,
    pub block_size: u32,
}

impl AttentionKey {
    pub(crate) fn spec(&self) -> KernelSpec {
        KernelSpec {
            label: "attention",
            source: include_str!("../../../shaders/attention.wgsl"),
            entry_point: "attention",
            bindings: &[
                BindingKind::Uniform,
                BindingKind::StorageRead,
                BindingKind::StorageRead,
                BindingKind::StorageRead,
                BindingKind::StorageRead,
                BindingKind::StorageRead,
                BindingKind::StorageRead,
                BindingKind::StorageReadWrite,
            ],
            constants: vec![
                ("HEAD_DIM", self.head_dim as f64),
                ("N_Q_HEADS", self.n_q_heads as f64),
                ("N_KV_HEADS", self.n_kv_heads as f64),
                ("BLOCK_SIZE", self.block_size as f64),
                ("SCALE", 1.0 / (self.head_dim as f64).sqrt()),
            ],
        }
    }

    pub fn workgroups(&self, num_tokens: u32) -> [u32; 3] {
        // 8 invocations per workgroup (see the shader).
        [(num_tokens * self.n_q_heads).div_ceil(8), 1, 1]
    }
}
