//! The physical KV cache: per layer one K and one V pool of
//! `[num_blocks * block_size, n_kv_heads, head_dim]` f32. Which block
//! belongs to which sequence is the engine's business (block tables); this
//! only owns the memory.

use super::buffers::GpuBuffer;
use super::context::{GpuContext, GpuError};

pub struct KvCache {
    pub num_blocks: usize,
    pub block_size: usize,
    /// [num_blocks * block_size, n_kv_heads, head_dim] f32, per layer.
    pub k: Vec<GpuBuffer>,
    pub v: Vec<GpuBuffer>,
}

impl KvCache {
    /// Bytes one block takes in one layer's K (or V) pool.
    pub fn block_bytes(block_size: usize, n_kv_heads: usize, head_dim: usize) -> u64 {
        (block_size * n_kv_heads * head_dim * 4) as u64
    }

    pub fn new(
        ctx: &GpuContext,
        num_layers: usize,
        num_blocks: usize,
        block_size: usize,
        n_kv_heads: usize,
        head_dim: usize,
    ) -> Result<Self, GpuError> {
        let bytes = num_blocks as u64 * Self::block_bytes(block_size, n_kv_heads, head_dim);
        let mut k = Vec::with_capacity(num_layers);
        let mut v = Vec::with_capacity(num_layers);
        for _ in 0..num_layers {
            k.push(GpuBuffer::storage_zeroed(ctx, "k_cache", bytes)?);
            v.push(GpuBuffer::storage_zeroed(ctx, "v_cache", bytes)?);
        }
        Ok(Self { num_blocks, block_size, k, v })
    }
}
