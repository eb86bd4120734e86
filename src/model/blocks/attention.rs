//! The attention block over the paged KV cache: the fused Q/K/V
//! projection, RoPE, the write of this step's K/V into the cache, paged
//! attention over each sequence's blocks, and the output projection joined
//! to the residual stream.

use crate::gpu::KernelKey;
use crate::gpu::kernels::attention::AttentionKey;
use crate::gpu::kernels::kv_write::KvWriteKey;
use crate::gpu::kernels::rope::RopeKey;
use crate::model::bound::Bound;
use crate::model::builder::ModelBuilder;
use crate::model::config::{DecoderConfig, RopeStyle};
use crate::model::decoder::DecoderBuffers;
use crate::model::matmul::{GpuMatrix, MatmulOp};

use super::norm::RmsNorm;
use super::rope::RopeTable;
use super::{LayerScratch, Residual};

pub struct AttentionWeights {
    /// [(Hq + 2 Hkv) D, H]: Q, K and V stacked by rows.
    pub qkv: GpuMatrix,
    /// [H, Hq D]
    pub output: GpuMatrix,
}

pub struct PagedAttention {
    qkv: MatmulOp,
    rope: Bound,
    kv_write: Bound,
    attention: Bound,
    output: MatmulOp,
    post_norm: Option<RmsNorm>,
}

impl PagedAttention {
    /// Reads `scratch.normed`, adds its output into `buffers.hidden`;
    /// `layer` picks the layer's K/V pools.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        builder: &mut ModelBuilder,
        config: &DecoderConfig,
        buffers: &DecoderBuffers,
        scratch: &LayerScratch,
        layer: usize,
        weights: AttentionWeights,
        rope: &RopeTable,
        residual: Residual,
    ) -> Self {
        let c = config;
        let inputs = &buffers.inputs;
        let (k_cache, v_cache) = (&buffers.kv_cache.k[layer], &buffers.kv_cache.v[layer]);
        let (head_dim, n_q_heads, n_kv_heads) =
            (c.head_dim as u32, c.num_heads as u32, c.num_kv_heads as u32);
        let ctx = builder.ctx.clone();
        // Q, K, V of every new token: normed [M, H] -> qkv [M, (Hq + 2 Hkv) D].
        let qkv = MatmulOp::new(
            &ctx,
            &mut builder.cache,
            weights.qkv,
            &inputs.step,
            &scratch.normed,
            &scratch.qkv,
            false,
        );
        // Q and K rotated in place by each token's position.
        let rope_key = RopeKey { head_dim, n_q_heads, n_kv_heads, neox: rope.style == RopeStyle::Neox };
        let rope = Bound::new(
            &ctx,
            &mut builder.cache,
            KernelKey::Rope(rope_key),
            &[&inputs.step, &scratch.qkv, &inputs.positions, &rope.table],
        );
        // This step's K and V into the cache slots of the slot mapping.
        let kv_key = KvWriteKey { head_dim, n_q_heads, n_kv_heads };
        let kv_write = Bound::new(
            &ctx,
            &mut builder.cache,
            KernelKey::KvWrite(kv_key),
            &[&inputs.step, &scratch.qkv, &inputs.slot_mapping, k_cache, v_cache],
        );
        // Each query over its sequence's cached K/V: -> attn [M, Hq D].
        let attention_key =
            AttentionKey { head_dim, n_q_heads, n_kv_heads, block_size: buffers.kv_cache.block_size as u32 };
        let attention = Bound::new(
            &ctx,
            &mut builder.cache,
            KernelKey::Attention(attention_key),
            &[
                &inputs.step,
                &scratch.qkv,
                k_cache,
                v_cache,
                &inputs.block_tables,
                &inputs.token_seq,
                &inputs.positions,
                &scratch.attn,
            ],
        );
        // attn [M, Hq D] -> [M, H], into the residual stream.
        let (output, post_norm) = match residual {
            Residual::Add => {
                let op = MatmulOp::new(
                    &ctx,
                    &mut builder.cache,
                    weights.output,
                    &inputs.step,
                    &scratch.attn,
                    &buffers.hidden,
                    true,
                );
                (op, None)
            }
        };
        Self { qkv, rope, kv_write, attention, output, post_norm }
    }

    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>, num_tokens: u32) {
        self.qkv.record(pass, num_tokens);
        self.rope.record(pass, num_tokens);
        self.kv_write.record(pass, num_tokens);
        self.attention.record(pass, num_tokens);
        self.output.record(pass, num_tokens);
        if let Some(norm) = &self.post_norm {
            norm.record(pass, num_tokens);
        }
    }

    pub fn weight_bytes(&self) -> u64 {
        self.qkv.weight_bytes() + self.output.weight_bytes()
    }
}
