//! `shaders/encoder_attention.wgsl`: bidirectional attention within each
//! sequence of a varlen batch, K and V read from the fused QKV rows.

use super::KernelBindings;
use crate::gpu::GpuBuffer;
use crate::gpu::pipelines::{BindingKind, KernelSpec};

pub struct EncoderAttentionBindings<'a> {
    /// Uniform; `num_tokens` query tokens.
    pub step: &'a GpuBuffer,
    /// [M, 3 n_heads D] f32, per token Q | K | V.
    pub qkv: &'a GpuBuffer,
    /// [M] u32, sequence of each token.
    pub token_seq: &'a GpuBuffer,
    /// [S + 1] u32, first token of each sequence, then M.
    pub seq_start: &'a GpuBuffer,
    /// [M, n_heads D] f32, attention output.
    pub out: &'a GpuBuffer,
}

impl KernelBindings for EncoderAttentionBindings<'_> {
    fn in_binding_order(&self) -> Vec<&GpuBuffer> {
        vec![self.step, self.qkv, self.token_seq, self.seq_start, self.out]
    }
}

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
