//! A packed weight matrix on the GPU and a matmul bound to its input and
//! output buffers, with the pipeline picked per step by the token count.
//!
//! A matrix whose data or scales exceed one storage binding
//! (`GpuContext::max_storage_binding`) is uploaded as row chunks, each in
//! buffers of its own, and the matmul runs one dispatch per chunk, each
//! writing its rows' columns of y. Model code sees one matrix and one op.

use std::ops::Range;
use std::sync::Arc;

use crate::gpu::kernels::KernelFamily;
use crate::gpu::kernels::glu::GluActivation;
use crate::gpu::kernels::matmul::{MatmulBindings, MatmulKey, Tile, WeightFormat};
use crate::gpu::pipelines::Kernel;
use crate::gpu::profiler::{DispatchWork, KernelKind, MatmulRole, Recorder};
use crate::gpu::{GpuBuffer, GpuContext, GpuError, KernelKey, PipelineCache};

use super::ModelError;
use super::weights::{PackedMatrix, concat_rows};

/// Rows [row_start, row_start + rows) of a matrix, in buffers of their own.
#[derive(Clone)]
pub struct MatrixChunk {
    /// Chunks of a stacked matrix may differ (a Q8_0 V under Q5_0 Q and K).
    pub format: WeightFormat,
    pub row_start: usize,
    pub rows: usize,
    /// [rows, ...] packed values (`PackedMatrix::data`)
    pub data: GpuBuffer,
    /// [rows, ...] block scales (`PackedMatrix::scales`)
    pub scales: GpuBuffer,
    /// [rows] f32
    pub bias: Option<GpuBuffer>,
}

/// A `[rows, cols]` weight matrix in one of the packed formats, with an
/// optional bias per row, in one or more row chunks. Cloning is cheap (the
/// buffers are shared handles): a tied output head and the embedding
/// lookup read the same upload.
#[derive(Clone)]
pub struct GpuMatrix {
    pub rows: usize,
    pub cols: usize,
    /// Consecutive row ranges covering all rows, in order.
    pub chunks: Vec<MatrixChunk>,
}

/// Rows per chunk so that each chunk's data and scales fit in `limit`
/// bytes: as few chunks as possible, of even size, rounded up to whole
/// 8-row tiles when that still fits.
fn chunk_rows(name: &str, packed: &PackedMatrix, limit: u64) -> Result<usize, GpuError> {
    let row_bytes = 4 * packed.data_words_per_row().max(packed.scale_words_per_row()) as u64;
    let rows = packed.rows.max(1);
    if row_bytes * rows as u64 <= limit {
        return Ok(rows);
    }
    let max_rows = (limit / row_bytes) as usize;
    if max_rows == 0 {
        return Err(GpuError::BindingTooLarge {
            what: format!("one row of {name}"),
            needed: row_bytes,
            limit,
        });
    }
    let per_chunk = rows.div_ceil(rows.div_ceil(max_rows));
    let tiled = per_chunk.next_multiple_of(8);
    Ok(if tiled <= max_rows { tiled } else { per_chunk })
}

impl GpuMatrix {
    pub fn upload(ctx: &GpuContext, name: &str, packed: PackedMatrix) -> Result<Self, GpuError> {
        let per_chunk = chunk_rows(name, &packed, ctx.max_storage_binding())?;
        let (data_words, scale_words) = (packed.data_words_per_row(), packed.scale_words_per_row());
        let mut chunks = Vec::new();
        for row_start in (0..packed.rows.max(1)).step_by(per_chunk) {
            let rows = per_chunk.min(packed.rows.saturating_sub(row_start));
            let data = &packed.data[row_start * data_words..(row_start + rows) * data_words];
            let scales = &packed.scales[row_start * scale_words..(row_start + rows) * scale_words];
            chunks.push(MatrixChunk {
                format: packed.format,
                row_start,
                rows,
                data: GpuBuffer::storage_init(ctx, name, bytemuck::cast_slice(data))?,
                scales: GpuBuffer::storage_init(ctx, name, bytemuck::cast_slice(scales))?,
                bias: None,
            });
        }
        if chunks.len() > 1 {
            tracing::debug!(name, chunks = chunks.len(), rows_per_chunk = per_chunk, "matrix split by rows");
        }
        Ok(Self { rows: packed.rows, cols: packed.cols, chunks })
    }

    /// Matrices of the same width stacked by rows, so one op computes them
    /// all (Q, K and V; gate and up). Parts of one format are joined into
    /// one upload; parts of different formats stay chunks of their own.
    pub fn stack(ctx: &GpuContext, name: &str, parts: Vec<PackedMatrix>) -> Result<Self, ModelError> {
        let cols = parts.first().map_or(0, |p| p.cols);
        if let Some(part) = parts.iter().find(|p| p.cols != cols) {
            return Err(ModelError::Config(format!("cannot stack {name}: rows of {} and {cols}", part.cols)));
        }
        let mut stacked = Self { rows: 0, cols, chunks: Vec::new() };
        for part in group_by_format(parts)? {
            let upload = Self::upload(ctx, name, part)?;
            let offset = stacked.rows;
            stacked.chunks.extend(
                upload.chunks.into_iter().map(|c| MatrixChunk { row_start: c.row_start + offset, ..c }),
            );
            stacked.rows += upload.rows;
        }
        Ok(stacked)
    }

    /// The format of every chunk, or `None` where they differ.
    pub fn format(&self) -> Option<WeightFormat> {
        let first = self.chunks.first()?.format;
        self.chunks.iter().all(|c| c.format == first).then_some(first)
    }

    /// Adds a bias of one value per row (the caller checked its length).
    pub fn with_bias(mut self, ctx: &GpuContext, name: &str, bias: &[f32]) -> Result<Self, GpuError> {
        debug_assert_eq!(bias.len(), self.rows);
        for chunk in &mut self.chunks {
            let part = &bias[chunk.row_range()];
            chunk.bias = Some(GpuBuffer::storage_init(ctx, name, bytemuck::cast_slice(part))?);
        }
        Ok(self)
    }

    /// Bytes of packed weights (data and scales) in all chunks.
    pub fn weight_bytes(&self) -> u64 {
        self.chunks.iter().map(|c| c.data.size + c.scales.size).sum()
    }
}

/// Runs of consecutive parts in one format, each joined into one matrix.
fn group_by_format(parts: Vec<PackedMatrix>) -> Result<Vec<PackedMatrix>, ModelError> {
    let mut runs: Vec<Vec<PackedMatrix>> = Vec::new();
    for part in parts {
        match runs.last_mut() {
            Some(run) if run[0].format == part.format => run.push(part),
            _ => runs.push(vec![part]),
        }
    }
    runs.into_iter().map(concat_rows).collect()
}

impl MatrixChunk {
    pub fn row_range(&self) -> Range<usize> {
        self.row_start..self.row_start + self.rows
    }
}

/// One chunk's pipelines (one per token tile, sharing a layout) and bind group.
struct ChunkMatmul {
    variants: Vec<(MatmulKey, Arc<Kernel>)>,
    bind_group: wgpu::BindGroup,
    /// [rows, cols] of this chunk and the bytes of its packed weights, for profiles.
    shape: (u64, u64),
    weight_bytes: u64,
}

/// y = x · Wᵀ (or y += x · Wᵀ), for any token count up to the scratch size.
pub struct MatmulOp {
    chunks: Vec<ChunkMatmul>,
    weight_bytes: u64,
    /// What it computes, for profiles.
    role: MatmulRole,
    /// Its kernels' family, which picks the tile of a step.
    family: KernelFamily,
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
        Self::build(ctx, cache, weight, step, x, y, accumulate, None, &Tile::ALL)
    }

    /// The gated MLP's first half in one matvec: `act` [M, I] =
    /// act(x · gateᵀ) ⊙ (x · upᵀ), for `weight` = [gate; up] ([2 I, H]). Only the CPU
    /// family's matvec does it (`Tile::Rows8`: decode steps; `covers` says
    /// which token counts), and only for a matrix in one chunk without a
    /// bias; `None` otherwise, and the caller runs the matmul and the
    /// activation kernel.
    pub fn gated_matvec(
        ctx: &GpuContext,
        cache: &mut PipelineCache,
        weight: &GpuMatrix,
        step: &GpuBuffer,
        x: &GpuBuffer,
        act: &GpuBuffer,
        activation: GluActivation,
    ) -> Option<Self> {
        let one_chunk = weight.chunks.len() == 1 && weight.chunks[0].bias.is_none();
        if ctx.kernels() != KernelFamily::Cpu || !one_chunk || !weight.rows.is_multiple_of(2) {
            return None;
        }
        Some(Self::build(ctx, cache, weight.clone(), step, x, act, false, Some(activation), &[Tile::Rows8]))
    }

    /// Whether `record` runs this op for `num_tokens` tokens.
    pub fn covers(&self, num_tokens: u32) -> bool {
        let tile = Tile::for_step(self.family, num_tokens);
        self.chunks.iter().all(|chunk| chunk.variants.iter().any(|(key, _)| key.tile == tile))
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        ctx: &GpuContext,
        cache: &mut PipelineCache,
        weight: GpuMatrix,
        step: &GpuBuffer,
        x: &GpuBuffer,
        y: &GpuBuffer,
        accumulate: bool,
        glu: Option<GluActivation>,
        tiles: &[Tile],
    ) -> Self {
        // Without a bias the binding still needs a buffer; the kernel never reads it.
        let no_bias = GpuBuffer {
            buffer: ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("no bias"),
                size: 4,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            }),
            size: 4,
        };
        // y's row length: the units with GLU, else all of W's rows.
        let y_stride = if glu.is_some() { weight.rows / 2 } else { weight.rows };
        let chunks = weight
            .chunks
            .iter()
            .map(|chunk| {
                let variants: Vec<(MatmulKey, Arc<Kernel>)> = tiles
                    .iter()
                    .map(|&tile| {
                        let key = MatmulKey {
                            format: chunk.format,
                            k: weight.cols as u32,
                            n: chunk.rows as u32,
                            row_start: chunk.row_start as u32,
                            y_stride: y_stride as u32,
                            tile,
                            accumulate,
                            bias: chunk.bias.is_some(),
                            family: ctx.kernels(),
                            glu,
                            subgroups: ctx.kernel_subgroups(),
                            f16_arithmetic: ctx.kernel_f16_arithmetic() && tile == Tile::Rows4Tokens4,
                        };
                        (key, cache.get(ctx, KernelKey::Matmul(key)))
                    })
                    .collect();
                let bindings = MatmulBindings {
                    step,
                    x,
                    w_data: &chunk.data,
                    w_scales: &chunk.scales,
                    y,
                    bias: chunk.bias.as_ref().unwrap_or(&no_bias),
                };
                let bind_group = variants[0].1.bind(ctx, &bindings);
                let shape = (chunk.rows as u64, weight.cols as u64);
                ChunkMatmul { variants, bind_group, shape, weight_bytes: chunk.data.size + chunk.scales.size }
            })
            .collect();
        Self { chunks, weight_bytes: weight.weight_bytes(), role: MatmulRole::Unnamed, family: ctx.kernels() }
    }

    /// Names what this matmul computes in its layer (profiles group by it).
    pub fn with_role(mut self, role: MatmulRole) -> Self {
        self.role = role;
        self
    }

    /// Bytes of packed weights one pass reads.
    pub fn weight_bytes(&self) -> u64 {
        self.weight_bytes
    }

    pub fn record(&self, pass: &mut dyn Recorder, num_tokens: u32) {
        debug_assert!(self.covers(num_tokens), "no pipeline for {num_tokens} tokens");
        let tile = Tile::for_step(self.family, num_tokens);
        for chunk in &self.chunks {
            if let Some((key, kernel)) = chunk.variants.iter().find(|(key, _)| key.tile == tile) {
                let (rows, cols) = chunk.shape;
                let work = DispatchWork {
                    kind: KernelKind::Matmul(self.role),
                    weight_bytes: chunk.weight_bytes,
                    flops: 2 * u64::from(num_tokens) * rows * cols,
                };
                pass.dispatch(work, kernel, &chunk.bind_group, key.workgroups(num_tokens));
            }
        }
    }
}
