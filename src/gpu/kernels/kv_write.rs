//! `shaders/kv_write.wgsl`: new K/V into the paged cache by slot mapping.

use super::{KernelBindings, groups};
use crate::gpu::GpuBuffer;
use crate::gpu::kv_cache::KvCacheDtype;
use crate::gpu::pipelines::{BindingKind, KernelSpec};

pub struct KvWriteBindings<'a> {
    /// Uniform; `num_tokens` rows.
    pub step: &'a GpuBuffer,
    /// [M, (Hq + 2 Hkv) D] f32, fused Q/K/V; K and V are read.
    pub qkv: &'a GpuBuffer,
    /// [M] u32, cache slot (block * block_size + offset) of each token.
    pub slot_mapping: &'a GpuBuffer,
    /// [slots, Hkv, row words] u32, rows of the cache's dtype: this layer's K pool.
    pub k_cache: &'a GpuBuffer,
    /// [slots, Hkv, row words] u32, rows of the cache's dtype: this layer's V pool.
    pub v_cache: &'a GpuBuffer,
}

impl KernelBindings for KvWriteBindings<'_> {
    fn in_binding_order(&self) -> Vec<&GpuBuffer> {
        vec![self.step, self.qkv, self.slot_mapping, self.k_cache, self.v_cache]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KvWriteKey {
    pub head_dim: u32,
    pub n_q_heads: u32,
    pub n_kv_heads: u32,
    pub kv_dtype: KvCacheDtype,
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
                ("KV_DTYPE", self.kv_dtype.shader_code()),
            ],
        }
    }

    pub fn workgroups(&self, num_tokens: u32) -> [u32; 3] {
        let per_token = match self.kv_dtype {
            // A vec4 of the token's K/V heads each.
            KvCacheDtype::F32 | KvCacheDtype::F16 => self.n_kv_heads * self.head_dim / 4,
            // A scale word (two groups of 32) each, so that each has one writer.
            KvCacheDtype::Q8_0 => self.n_kv_heads * self.head_dim.div_ceil(64),
        };
        [groups(per_token), num_tokens, 1]
    }
}
