//! The physical KV cache: per layer one K and one V pool of
//! `[num_blocks * block_size, n_kv_heads, head_dim]` elements of its
//! dtype. Which block belongs to which sequence is the engine's business
//! (block tables); this only owns the memory.

use super::buffers::GpuBuffer;
use super::context::{GpuContext, GpuError};

/// What one cached K or V element is stored as (`--kv-cache-dtype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KvCacheDtype {
    F32,
    /// IEEE half, two to a u32 word (`pack2x16float`), so no adapter
    /// feature is needed: half the memory, twice the tokens. K and V are
    /// rounded to f16 as they are written; attention computes in f32.
    #[default]
    F16,
}

impl KvCacheDtype {
    pub fn bytes_per_element(self) -> usize {
        match self {
            KvCacheDtype::F32 => 4,
            KvCacheDtype::F16 => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            KvCacheDtype::F32 => "f32",
            KvCacheDtype::F16 => "f16",
        }
    }
}

pub struct KvCache {
    pub num_blocks: usize,
    pub block_size: usize,
    pub dtype: KvCacheDtype,
    /// [num_blocks * block_size, n_kv_heads, head_dim] of `dtype`, per layer.
    pub k: Vec<GpuBuffer>,
    pub v: Vec<GpuBuffer>,
}

impl KvCache {
    /// Bytes one block takes in one layer's K (or V) pool.
    pub fn block_bytes(block_size: usize, n_kv_heads: usize, head_dim: usize, dtype: KvCacheDtype) -> u64 {
        (block_size * n_kv_heads * head_dim * dtype.bytes_per_element()) as u64
    }

    pub fn new(
        ctx: &GpuContext,
        num_layers: usize,
        num_blocks: usize,
        block_size: usize,
        n_kv_heads: usize,
        head_dim: usize,
        dtype: KvCacheDtype,
    ) -> Result<Self, GpuError> {
        let bytes = num_blocks as u64 * Self::block_bytes(block_size, n_kv_heads, head_dim, dtype);
        let mut k = Vec::with_capacity(num_layers);
        let mut v = Vec::with_capacity(num_layers);
        for _ in 0..num_layers {
            k.push(GpuBuffer::storage_zeroed(ctx, "k_cache", bytes)?);
            v.push(GpuBuffer::storage_zeroed(ctx, "v_cache", bytes)?);
        }
        Ok(Self { num_blocks, block_size, dtype, k, v })
    }
}
