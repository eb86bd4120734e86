//! A packed weight matrix on the GPU and a matmul bound to its input and
//! output buffers, with the pipeline picked per step by the token count.

use std::sync::Arc;

use crate::gpu::kernels::matmul::{MatmulKey, Tile, WeightFormat};
use crate::gpu::pipelines::Kernel;
use crate::gpu::{GpuBuffer, GpuContext, GpuError, KernelKey, PipelineCache};

use super::weights::PackedMatrix;

/// A `[rows, cols]` weight matrix in one of the packed formats, with an
/// optional bias per row.
pub struct GpuMatrix {
    pub format: WeightFormat,
    pub rows: usize,
    pub cols: usize,
    pub data: GpuBuffer,
    pub scales: GpuBuffer,
    /// [rows] f32
    pub bias: Option<GpuBuffer>,
}

impl GpuMatrix {
    pub fn upload(ctx: &GpuContext, name: &str, packed: PackedMatrix) -> Result<Self, GpuError> {
        Ok(Self {
            format: packed.format,
            rows: packed.rows,
            cols: packed.cols,
            data: GpuBuffer::storage_init(ctx, name, bytemuck::cast_slice(&packed.data))?,
            scales: GpuBuffer::storage_init(ctx, name, bytemuck::cast_slice(&packed.scales))?,
            bias: None,
        })
    }

    /// Adds a bias of one value per row (the caller checked its length).
    pub fn with_bias(mut self, ctx: &GpuContext, name: &str, bias: &[f32]) -> Result<Self, GpuError> {
        debug_assert_eq!(bias.len(), self.rows);
        self.bias = Some(GpuBuffer::storage_init(ctx, name, bytemuck::cast_slice(bias))?);
        Ok(self)
    }
}

/// y = x · Wᵀ (or y += x · Wᵀ), for any token count up to the scratch size.
pub struct MatmulOp {
    /// One pipeline per token tile; all share the bind group layout.
    variants: Vec<(MatmulKey, Arc<Kernel>)>,
    bind_group: wgpu::BindGroup,
    weight_bytes: u64,
}

impl MatmulOp {
    pub fn new(
        ctx: &GpuContext,
        cache: &mut PipelineCache,
        weight: GpuMatrix,
        step: &GpuBuffer,
        x: &GpuBuffer,
        y: &GpuBuffer,
        accumulate: bool,
    ) -> Self {
        let variants: Vec<(MatmulKey, Arc<Kernel>)> = Tile::ALL
            .iter()
            .map(|&tile| {
                let key = MatmulKey {
                    format: weight.format,
                    k: weight.cols as u32,
                    n: weight.rows as u32,
                    tile,
                    accumulate,
                    bias: weight.bias.is_some(),
                };
                (key, cache.get(ctx, KernelKey::Matmul(key)))
            })
            .collect();
        // Without a bias the binding still needs a buffer; the kernel never reads it.
        let bias = match weight.bias {
            Some(bias) => bias.buffer,
            None => ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("no bias"),
                size: 4,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            }),
        };
        let buffers = [&step.buffer, &x.buffer, &weight.data.buffer, &weight.scales.buffer, &y.buffer, &bias];
        let bind_group = variants[0].1.bind_group(ctx, &buffers);
        Self { variants, bind_group, weight_bytes: weight.data.size + weight.scales.size }
    }

    /// Bytes of packed weights one pass reads.
    pub fn weight_bytes(&self) -> u64 {
        self.weight_bytes
    }

    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>, num_tokens: u32) {
        let tile = Tile::for_tokens(num_tokens);
        if let Some((key, kernel)) = self.variants.iter().find(|(key, _)| key.tile == tile) {
            kernel.dispatch(pass, &self.bind_group, key.workgroups(num_tokens));
        }
    }
}
