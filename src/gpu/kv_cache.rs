//! The physical KV cache: per layer one K and one V pool of
//! `[num_blocks * block_size, n_kv_heads]` rows, one row a head's
//! `head_dim` elements in the dtype's words (`KvCacheDtype::row_words`).
//! Which block belongs to which sequence is the engine's business (block
//! tables); this only owns the memory.

use super::buffers::GpuBuffer;
use super::context::{GpuContext, GpuError};

/// What one cached K or V element is stored as (`--kv-cache-dtype`).
/// Every dtype lays a row out in u32 words, so no adapter feature is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KvCacheDtype {
    F32,
    /// IEEE half, two to a u32 word (`pack2x16float`): half the memory,
    /// twice the tokens. K and V are rounded to f16 as they are written;
    /// attention computes in f32.
    #[default]
    F16,
    /// llama.cpp's q8_0: each group of 32 elements as signed 8-bit codes
    /// and one f16 scale d = max|x| / 127 (code = round(x / d)). A row has
    /// `head_dim / 4` words of codes (element 4i + j in byte j of word i)
    /// and `ceil(head_dim / 64)` words of scales (group g's in half g % 2
    /// of word g / 2); a pool holds the codes of all its rows, then all
    /// their scales, so that rows of codes are 16-byte aligned for the
    /// attention kernels' loads. Lossy; about 1.9x the tokens of f16.
    Q8_0,
}

/// Elements per q8_0 group (one scale each).
pub const Q8_0_GROUP: usize = 32;

impl KvCacheDtype {
    /// u32 words one row (one slot, one KV head: `head_dim` elements) takes.
    pub fn row_words(self, head_dim: usize) -> usize {
        match self {
            KvCacheDtype::F32 => head_dim,
            KvCacheDtype::F16 => head_dim.div_ceil(2),
            KvCacheDtype::Q8_0 => head_dim.div_ceil(4) + head_dim.div_ceil(2 * Q8_0_GROUP),
        }
    }

    /// Whether rows of `head_dim` elements can be stored: q8_0 needs whole
    /// groups of 32.
    pub fn supports_head_dim(self, head_dim: usize) -> bool {
        match self {
            KvCacheDtype::F32 | KvCacheDtype::F16 => true,
            KvCacheDtype::Q8_0 => head_dim.is_multiple_of(Q8_0_GROUP),
        }
    }

    /// The shaders' `KV_DTYPE` override (see `shaders/attention.wgsl`).
    pub fn shader_code(self) -> f64 {
        match self {
            KvCacheDtype::F32 => 0.0,
            KvCacheDtype::F16 => 1.0,
            KvCacheDtype::Q8_0 => 2.0,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            KvCacheDtype::F32 => "f32",
            KvCacheDtype::F16 => "f16",
            KvCacheDtype::Q8_0 => "q8_0",
        }
    }
}

pub struct KvCache {
    pub num_blocks: usize,
    pub block_size: usize,
    pub dtype: KvCacheDtype,
    /// [num_blocks * block_size, n_kv_heads, row_words(head_dim)] u32, per layer.
    pub k: Vec<GpuBuffer>,
    pub v: Vec<GpuBuffer>,
}

impl KvCache {
    /// Bytes one block takes in one layer's K (or V) pool.
    pub fn block_bytes(block_size: usize, n_kv_heads: usize, head_dim: usize, dtype: KvCacheDtype) -> u64 {
        (block_size * n_kv_heads * dtype.row_words(head_dim) * 4) as u64
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
        debug_assert!(dtype.supports_head_dim(head_dim), "{dtype:?} rows of {head_dim}");
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
