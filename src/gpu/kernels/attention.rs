//! `shaders/attention.wgsl`: paged causal attention, varlen batch, GQA,
//! optionally over a sliding window of keys (Gemma's local layers), in
//! both kernel families (`attention` and `attention_gpu`).

use super::{KernelBindings, KernelFamily};
use crate::gpu::GpuBuffer;
use crate::gpu::pipelines::{BindingKind, KernelSpec};

/// Largest head size the kernel's registers hold.
pub const MAX_HEAD_DIM: u32 = 256;

pub struct AttentionBindings<'a> {
    /// Uniform; `num_tokens` query tokens, `max_blocks_per_seq` the table stride.
    pub step: &'a GpuBuffer,
    /// [M, (Hq + 2 Hkv) D] f32, fused Q/K/V after RoPE; only Q is read.
    pub qkv: &'a GpuBuffer,
    /// [slots, Hkv, D] f32, this layer's K pool (new tokens already written).
    pub k_cache: &'a GpuBuffer,
    /// [slots, Hkv, D] f32, this layer's V pool.
    pub v_cache: &'a GpuBuffer,
    /// [S, max_blocks_per_seq] u32, physical block of each logical block.
    pub block_tables: &'a GpuBuffer,
    /// [M] u32, sequence (row of `block_tables`) of each token.
    pub token_seq: &'a GpuBuffer,
    /// [M] u32, position of each token in its sequence.
    pub positions: &'a GpuBuffer,
    /// [M, Hq D] f32, attention output.
    pub out: &'a GpuBuffer,
}

impl KernelBindings for AttentionBindings<'_> {
    fn in_binding_order(&self) -> Vec<&GpuBuffer> {
        vec![
            self.step,
            self.qkv,
            self.k_cache,
            self.v_cache,
            self.block_tables,
            self.token_seq,
            self.positions,
            self.out,
        ]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AttentionKey {
    pub head_dim: u32,
    pub n_q_heads: u32,
    pub n_kv_heads: u32,
    pub block_size: u32,
    /// Keys visible to a query: 0 = every earlier position (plain causal);
    /// W = positions p - W + 1 ..= p, as Hugging Face's `sliding_window`
    /// (see the shader). Block-table entries of blocks wholly before the
    /// window are never read.
    pub sliding_window: u32,
    pub family: KernelFamily,
    /// Query tokens per invocation in the CPU family: 1, or
    /// `QUERIES_TOGETHER` (`attention_queries4`: a prefill chunk's
    /// consecutive tokens share each K/V load). The GPU family takes 1.
    pub queries: u32,
}

/// Queries that `attention_queries4` takes together.
pub const QUERIES_TOGETHER: u32 = 4;

impl AttentionKey {
    pub(crate) fn spec(&self) -> KernelSpec {
        KernelSpec {
            label: "attention",
            source: include_str!("../../../shaders/attention.wgsl"),
            entry_point: match (self.family, self.queries) {
                (KernelFamily::Cpu, QUERIES_TOGETHER) => "attention_queries4",
                (KernelFamily::Cpu, _) => "attention",
                (KernelFamily::Gpu, _) => "attention_gpu",
            },
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
                ("SLIDING_WINDOW", self.sliding_window as f64),
            ],
        }
    }

    /// The number of queries per invocation for a step of `num_tokens`
    /// tokens: together from a chunk of 4 on (a decode batch's tokens,
    /// each its own sequence, then take the one-query path inside).
    pub fn queries_for(family: KernelFamily, num_tokens: u32) -> u32 {
        if family == KernelFamily::Cpu && num_tokens >= QUERIES_TOGETHER { QUERIES_TOGETHER } else { 1 }
    }

    pub fn workgroups(&self, num_tokens: u32) -> [u32; 3] {
        match self.family {
            // 8 invocations per workgroup, one per (query group, head).
            KernelFamily::Cpu => {
                [(num_tokens.div_ceil(self.queries.max(1)) * self.n_q_heads).div_ceil(8), 1, 1]
            }
            // A workgroup per (token, head).
            KernelFamily::Gpu => [self.n_q_heads, num_tokens, 1],
        }
    }
}
