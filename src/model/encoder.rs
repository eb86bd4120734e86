//! What an encoder's blocks bind to besides their weights: the batch
//! inputs on the GPU and the activations every layer overwrites, both
//! sized at load for the largest batch (`EncoderOptions`). The encoder
//! counterpart of `decoder::StepInputs` and `blocks::LayerScratch`; it
//! holds buffers only and runs nothing.

use crate::gpu::kernels::StepParams;
use crate::gpu::{GpuBuffer, GpuContext};

use super::ModelError;
use super::batch::EncoderBatch;
use super::builder::ModelBuilder;

/// Sizes fixed at load: the largest batch.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderOptions {
    /// Most tokens in one forward pass (all inputs together).
    pub max_batch_tokens: usize,
    /// Most inputs in one forward pass.
    pub max_seqs: usize,
}

impl Default for EncoderOptions {
    fn default() -> Self {
        Self { max_batch_tokens: 2048, max_seqs: 256 }
    }
}

/// A batch of whole inputs as the kernels read it.
pub struct EncoderInputs {
    /// Uniform: `num_tokens` and `num_seqs` of the batch.
    pub step: GpuBuffer,
    /// [M] u32
    pub token_ids: GpuBuffer,
    /// [M] u32: the segment of each token (BERT's sentence A or B).
    pub token_type_ids: GpuBuffer,
    /// [M] u32: position of each token within its input.
    pub positions: GpuBuffer,
    /// [M] u32: the input of each token.
    pub token_seq: GpuBuffer,
    /// [S + 1] u32: first token of each input, then M.
    pub seq_start: GpuBuffer,
}

impl EncoderInputs {
    pub fn new(builder: &ModelBuilder, options: &EncoderOptions) -> Result<Self, ModelError> {
        let (m, s) = (options.max_batch_tokens, options.max_seqs);
        Ok(Self {
            step: GpuBuffer::uniform(&builder.ctx, "step", std::mem::size_of::<StepParams>() as u64),
            token_ids: builder.activation("token_ids", m)?,
            token_type_ids: builder.activation("token_type_ids", m)?,
            positions: builder.activation("positions", m)?,
            token_seq: builder.activation("token_seq", m)?,
            seq_start: builder.activation("seq_start", s + 1)?,
        })
    }

    /// Uploads a batch the caller has checked against the sizes above.
    pub fn write(&self, ctx: &GpuContext, batch: &EncoderBatch) {
        let (m, s) = (batch.num_tokens() as u32, batch.num_seqs() as u32);
        let params = StepParams { num_tokens: m, num_seqs: s, max_blocks_per_seq: 0, _pad: 0 };
        self.step.write(ctx, bytemuck::bytes_of(&params));
        self.token_ids.write(ctx, bytemuck::cast_slice(&batch.token_ids));
        self.token_type_ids.write(ctx, bytemuck::cast_slice(&batch.token_type_ids));
        self.positions.write(ctx, bytemuck::cast_slice(&batch.positions));
        self.token_seq.write(ctx, bytemuck::cast_slice(&batch.token_seq));
        self.seq_start.write(ctx, bytemuck::cast_slice(&batch.seq_start));
    }
}

/// Activations a layer writes and the next layer overwrites.
pub struct EncoderScratch {
    /// [M, 3 H]: fused Q, K, V with their biases.
    pub qkv: GpuBuffer,
    /// [M, H]: attention output, before its projection.
    pub attn: GpuBuffer,
    /// [M, I]: the intermediate projection, then its activation.
    pub intermediate: GpuBuffer,
}

impl EncoderScratch {
    pub fn new(
        builder: &ModelBuilder,
        options: &EncoderOptions,
        hidden_size: usize,
        intermediate_size: usize,
    ) -> Result<Self, ModelError> {
        let m = options.max_batch_tokens;
        Ok(Self {
            qkv: builder.activation("qkv", m * 3 * hidden_size)?,
            attn: builder.activation("attn", m * hidden_size)?,
            intermediate: builder.activation("intermediate", m * intermediate_size)?,
        })
    }
}
