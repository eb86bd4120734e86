//! The token embedding lookup bound to its table and buffers:
//! out[t] = scale * row ids[t] of the table. A table split into row chunks
//! (see `GpuMatrix`) runs one dispatch per chunk; each writes the tokens
//! whose ids fall in its rows, so together they write every token once.

use std::sync::Arc;

use crate::gpu::kernels::embedding::{EmbeddingBindings, EmbeddingKey};
use crate::gpu::pipelines::Kernel;
use crate::gpu::profiler::{DispatchWork, KernelKind, Recorder};
use crate::gpu::{GpuBuffer, GpuContext, KernelKey, PipelineCache};

use super::matmul::GpuMatrix;

struct ChunkLookup {
    key: EmbeddingKey,
    kernel: Arc<Kernel>,
    bind_group: wgpu::BindGroup,
}

pub struct EmbeddingOp {
    chunks: Vec<ChunkLookup>,
}

impl EmbeddingOp {
    /// Binds the lookup of `token_ids` ([M] u32) in `table` ([vocab, hidden])
    /// into `out` ([M, hidden] f32), every value multiplied by `scale`
    /// (Gemma: sqrt(hidden); 1.0 leaves the rows exact).
    pub fn new(
        ctx: &GpuContext,
        cache: &mut PipelineCache,
        table: &GpuMatrix,
        step: &GpuBuffer,
        token_ids: &GpuBuffer,
        out: &GpuBuffer,
        scale: f32,
    ) -> Self {
        let chunks = table
            .chunks
            .iter()
            .map(|chunk| {
                let key = EmbeddingKey {
                    format: chunk.format,
                    hidden: table.cols as u32,
                    vocab: table.rows as u32,
                    row_start: chunk.row_start as u32,
                    rows: chunk.rows as u32,
                    scale_bits: scale.to_bits(),
                };
                let kernel = cache.get(ctx, KernelKey::Embedding(key));
                let bindings = EmbeddingBindings {
                    step,
                    ids: token_ids,
                    w_data: &chunk.data,
                    w_scales: &chunk.scales,
                    out,
                };
                let bind_group = kernel.bind(ctx, &bindings);
                ChunkLookup { key, kernel, bind_group }
            })
            .collect();
        Self { chunks }
    }

    pub fn record(&self, pass: &mut dyn Recorder, num_tokens: u32) {
        let work = DispatchWork::kernel(KernelKind::Embedding);
        for chunk in &self.chunks {
            pass.dispatch(work, &chunk.kernel, &chunk.bind_group, chunk.key.workgroups(num_tokens));
        }
    }
}
