//! `shaders/encoder_attention.wgsl`: bidirectional attention within each
//! sequence of a varlen batch, K and V read from the fused QKV rows.
//! Bindings: step, qkv, token_seq, seq_start, out.

use crate::gpu::pipelines::{BindingKind, KernelSpec};

/// Largest head size the kernel's registers hold.
pub const MAX_HEAD_DIM: u32 = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EncoderAttentionKey {
    pub head_dim: u32,
    pub n_heads: u32,
}

impl EncoderAttentionKey {
    pub(crate) fn spec(&self) -> KernelSpec {
        KernelSpec {
            label: "encoder_attention",
            source: include_str!("../../../shaders/encoder_attention.wgsl"),
            entry_point: "encoder_attention",
            bindings: &[
                BindingKind::Uniform,
                BindingKind::StorageRead,
                BindingKind::StorageRead,
                BindingKind::StorageRead,
                BindingKind::StorageReadWrite,
            ],
            constants: vec![
                ("HEAD_DIM", self.head_dim as f64),
                ("N_HEADS", self.n_heads as f64),
                ("SCALE", 1.0 / (self.head_dim as f64).sqrt()),
            ],
        }
    }

    pub fn workgroups(&self, num_tokens: u32) -> [u32; 3] {
        // 8 invocations per workgroup (see the shader).
        [(num_tokens * self.n_heads).div_ceil(8), 1, 1]
    }
}
