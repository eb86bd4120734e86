//! `shaders/kv_write.wgsl`: RoPE on the new tokens' Q (in place) and K,
//! and their K/V into the paged cache by slot mapping, in one dispatch.

use super::{KernelBindings, groups};
use crate::gpu::GpuBuffer;
use crate::gpu::kv_cache::KvCacheDtype;
use crate::gpu::pipelines::{BindingKind, KernelSpec};

pub struct KvWriteBindings<'a> {
    /// Uniform; `num_tokens` rows.
    pub step: &'a GpuBuffer,
    /// [M, (Hq + 2 Hkv) D] f32, fused Q/K/V: Q rotated in place, K and V read.
    pub qkv: &'a GpuBuffer,
    /// [M] u32, cache slot (block * block_size + offset) of each token.
    pub slot_mapping: &'a GpuBuffer,
    /// [slots, Hkv, row words] u32, rows of the cache's dtype: this layer's K pool.
    pub k_cache: &'a GpuBuffer,
    /// [slots, Hkv, row words] u32, rows of the cache's dtype: this layer's V pool.
    pub v_cache: &'a GpuBuffer,
    /// [M] u32, position of each token.
    pub positions: &'a GpuBuffer,
    /// [max_positions, D / 2] (cos, sin) f32 pairs, from `rope::rope_table`.
    pub rope_table: &'a GpuBuffer,
}

impl KernelBindings for KvWriteBindings<'_> {
    fn in_binding_order(&self) -> Vec<&GpuBuffer> {
        vec![
            self.step,
            self.qkv,
            self.slot_mapping,
            self.k_cache,
            self.v_cache,
            self.positions,
            self.rope_table,
        ]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KvWriteKey {
    pub head_dim: u32,
    pub n_q_heads: u32,
    pub n_kv_heads: u32,
    pub kv_dtype: KvCacheDtype,
    /// Rotate halves (i, i + D/2) instead of adjacent pairs (2i, 2i + 1):
    /// Hugging Face weights, and GGUF files of the architectures llama.cpp
    /// marks `LLAMA_ROPE_TYPE_NEOX` (Gemma 3 among them).
    pub neox: bool,
}

impl KvWriteKey {
    pub(crate) fn spec(&self) -> KernelSpec {
        KernelSpec {
            label: "rope_kv_write",
            source: include_str!("../../../shaders/kv_write.wgsl"),
            entry_point: "kv_write",
            bindings: &[
                BindingKind::Uniform,
                BindingKind::StorageReadWrite,
                BindingKind::StorageRead,
                BindingKind::StorageReadWrite,
                BindingKind::StorageReadWrite,
                BindingKind::StorageRead,
                BindingKind::StorageRead,
            ],
            constants: vec![
                ("HEAD_DIM", self.head_dim as f64),
                ("N_Q_HEADS", self.n_q_heads as f64),
                ("N_KV_HEADS", self.n_kv_heads as f64),
                ("KV_DTYPE", self.kv_dtype.shader_code()),
                ("NEOX", if self.neox { 1.0 } else { 0.0 }),
            ],
        }
    }

    pub fn workgroups(&self, num_tokens: u32) -> [u32; 3] {
        // Two vec4s of a Q head each (a vec4 and its NEOX partners).
        let queries = self.n_q_heads * self.head_dim / 8;
        let writers = match self.kv_dtype {
            // A vec4 of the token's K/V heads each.
            KvCacheDtype::F32 | KvCacheDtype::F16 => self.n_kv_heads * self.head_dim / 4,
            // A scale word (two groups of 32) each, so that each has one writer.
            KvCacheDtype::Q8_0 => self.n_kv_heads * self.head_dim.div_ceil(64),
        };
        [groups(queries + writers), num_tokens, 1]
    }
}
