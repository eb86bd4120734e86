//! The encoder's attention block: the fused Q/K/V projection with its
//! bias, bidirectional attention within each input of the varlen batch
//! (no KV cache, no RoPE: K and V are read from the projection), and the
//! output projection with its bias added into the residual stream.

use crate::gpu::kernels::encoder_attention::{EncoderAttentionBindings, EncoderAttentionKey};
use crate::gpu::{GpuBuffer, KernelKey};
use crate::model::bert_config::BertConfig;
use crate::model::bound::Bound;
use crate::model::builder::ModelBuilder;
use crate::model::encoder::{EncoderInputs, EncoderScratch};
use crate::model::matmul::{GpuMatrix, MatmulOp};

pub struct EncoderAttentionWeights {
    /// [3 H, H] with a [3 H] bias: Q, K and V stacked by rows.
    pub qkv: GpuMatrix,
    /// [H, H] with an [H] bias.
    pub output: GpuMatrix,
}

pub struct EncoderAttention {
    qkv: MatmulOp,
    attention: Bound,
    output: MatmulOp,
}

impl EncoderAttention {
    /// Reads `hidden` [M, H] and adds its output back into it.
    pub fn new(
        builder: &mut ModelBuilder,
        inputs: &EncoderInputs,
        scratch: &EncoderScratch,
        config: &BertConfig,
        weights: EncoderAttentionWeights,
        hidden: &GpuBuffer,
    ) -> Self {
        let ctx = builder.ctx.clone();
        let cache = &mut builder.cache;
        // hidden [M, H] -> qkv [M, 3 H].
        let qkv = MatmulOp::new(&ctx, cache, weights.qkv, &inputs.step, hidden, &scratch.qkv, false);
        // Each query over the keys of its own input: -> attn [M, H].
        let key = EncoderAttentionKey { head_dim: config.head_dim as u32, n_heads: config.num_heads as u32 };
        let bindings = EncoderAttentionBindings {
            step: &inputs.step,
            qkv: &scratch.qkv,
            token_seq: &inputs.token_seq,
            seq_start: &inputs.seq_start,
            out: &scratch.attn,
        };
        let attention = Bound::bind(&ctx, cache, KernelKey::EncoderAttention(key), &bindings);
        // attn [M, H] -> hidden +=.
        let output = MatmulOp::new(&ctx, cache, weights.output, &inputs.step, &scratch.attn, hidden, true);
        Self { qkv, attention, output }
    }

    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>, num_tokens: u32) {
        self.qkv.record(pass, num_tokens);
        self.attention.record(pass, num_tokens);
        self.output.record(pass, num_tokens);
    }
}
