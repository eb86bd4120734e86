//! What every architecture's loader works with: the GPU, the pipeline
//! cache and the weight file, with the few ways a weight becomes a GPU
//! buffer (a packed matrix, an f32 vector) and activations get allocated.

use std::sync::Arc;

use crate::gpu::{GpuBuffer, GpuContext, PipelineCache};

use super::ModelError;
use super::decoder::StepInputs;
use super::embedding::EmbeddingOp;
use super::matmul::GpuMatrix;
use super::source::WeightSource;
use super::weights::{PackedMatrix, narrow_to_f16, pack_matrix, to_f32_vec};

pub struct ModelBuilder<'a> {
    pub ctx: Arc<GpuContext>,
    pub cache: PipelineCache,
    pub source: &'a WeightSource,
}

impl<'a> ModelBuilder<'a> {
    pub fn new(ctx: Arc<GpuContext>, source: &'a WeightSource) -> Self {
        Self { ctx, cache: PipelineCache::new(), source }
    }

    /// The `[rows, cols]` tensor `name`, packed for the kernels.
    pub fn packed(&self, name: &str, rows: usize, cols: usize) -> Result<PackedMatrix, ModelError> {
        let raw = self.source.require(name, &[rows, cols])?;
        pack_matrix(name, raw.tensor_type, raw.data, rows, cols)
    }

    /// The `[rows, cols]` tensor `name` on the GPU.
    pub fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<GpuMatrix, ModelError> {
        self.upload(name, self.packed(name, rows, cols)?)
    }

    /// Several tensors of the same width stacked by rows into one matrix, so
    /// one matmul computes them all (Q, K and V; gate and up).
    pub fn fused(&self, label: &str, parts: &[(&str, usize)], cols: usize) -> Result<GpuMatrix, ModelError> {
        let packed =
            parts.iter().map(|&(name, rows)| self.packed(name, rows, cols)).collect::<Result<_, _>>()?;
        GpuMatrix::stack(&self.ctx, label, packed)
    }

    pub fn upload(&self, label: &str, packed: PackedMatrix) -> Result<GpuMatrix, ModelError> {
        Ok(GpuMatrix::upload(&self.ctx, label, packed)?)
    }

    /// A 1-D weight (norm weights) as f32 values on the GPU.
    pub fn vector(&self, name: &str, len: usize) -> Result<GpuBuffer, ModelError> {
        let raw = self.source.require(name, &[len])?;
        let values = to_f32_vec(name, raw.tensor_type, raw.data)?;
        Ok(GpuBuffer::storage_init(&self.ctx, name, bytemuck::cast_slice(&values))?)
    }

    /// The output head `[vocab, hidden]`: the file's `output.weight`, or the
    /// embedding table where the model ties them (`tie`: what the config
    /// says; unsaid, a file without `output.weight` ties).
    pub fn output_head(&self, tie: Option<bool>, token_embd: GpuMatrix) -> Result<GpuMatrix, ModelError> {
        let tied = match tie {
            Some(tied) => tied,
            None => self.source.tensor("output.weight")?.is_none(),
        };
        if tied { Ok(token_embd) } else { self.matrix("output.weight", token_embd.rows, token_embd.cols) }
    }

    /// The lookup of the step's token ids in `table` into `out`, scaled.
    pub fn embedding(
        &mut self,
        inputs: &StepInputs,
        table: &GpuMatrix,
        out: &GpuBuffer,
        scale: f32,
    ) -> EmbeddingOp {
        EmbeddingOp::new(&self.ctx, &mut self.cache, table, &inputs.step, &inputs.token_ids, out, scale)
    }

    /// The tensor `name` of this `shape` as f32 values.
    pub fn f32_values(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, ModelError> {
        let raw = self.source.require(name, shape)?;
        to_f32_vec(name, raw.tensor_type, raw.data)
    }

    /// The tensor `name` of this `shape` as f32 values on the GPU (BERT's
    /// embedding tables, read by row, not by a matmul).
    pub fn f32_tensor(&self, name: &str, shape: &[usize]) -> Result<GpuBuffer, ModelError> {
        self.table(name, &self.f32_values(name, shape)?)
    }

    /// Linear layers with biases as Hugging Face names them, `{name}.weight`
    /// [rows, cols] and `{name}.bias` [rows] for each (name, rows), stacked
    /// by rows into one matrix with one bias (BERT's query, key and value
    /// in one matmul). f32 weights are stored as f16 (`narrow_to_f16`):
    /// half the bytes each matmul reads.
    pub fn biased_f16(
        &self,
        label: &str,
        parts: &[(&str, usize)],
        cols: usize,
    ) -> Result<GpuMatrix, ModelError> {
        let mut packed = Vec::with_capacity(parts.len());
        let mut bias = Vec::new();
        for &(name, rows) in parts {
            packed.push(narrow_to_f16(self.packed(&format!("{name}.weight"), rows, cols)?));
            bias.extend(self.f32_values(&format!("{name}.bias"), &[rows])?);
        }
        Ok(GpuMatrix::stack(&self.ctx, label, packed)?.with_bias(&self.ctx, label, &bias)?)
    }

    /// `matrix` with the bias `name` (one value per row) where the file
    /// stores one.
    pub fn with_bias_if_stored(&self, matrix: GpuMatrix, name: &str) -> Result<GpuMatrix, ModelError> {
        if self.source.tensor(name)?.is_none() {
            return Ok(matrix);
        }
        let bias = self.f32_values(name, &[matrix.rows])?;
        Ok(matrix.with_bias(&self.ctx, name, &bias)?)
    }

    /// A zeroed activation buffer of `elements` f32 (or u32) values.
    pub fn activation(&self, label: &str, elements: usize) -> Result<GpuBuffer, ModelError> {
        Ok(GpuBuffer::storage_zeroed(&self.ctx, label, (elements * 4) as u64)?)
    }

    pub fn table(&self, label: &str, values: &[f32]) -> Result<GpuBuffer, ModelError> {
        Ok(GpuBuffer::storage_init(&self.ctx, label, bytemuck::cast_slice(values))?)
    }
}
