//! `shaders/embedding.wgsl`: out[t] = scale * dequantized row ids[t] of the
//! table. Bindings: `EmbeddingBindings`. A table over the storage binding
//! limit runs as row chunks, one dispatch each, keyed with its rows.

use super::matmul::WeightFormat;
use super::matmul_quant::QuantLayout;
use super::{KernelBindings, groups};
use crate::gpu::GpuBuffer;
use crate::gpu::pipelines::{BindingKind, KernelSpec};

pub struct EmbeddingBindings<'a> {
    /// Uniform; `num_tokens` is M.
    pub step: &'a GpuBuffer,
    /// [M] u32 token ids
    pub ids: &'a GpuBuffer,
    /// [rows, K/32, words per block] packed table rows (a row chunk)
    pub w_data: &'a GpuBuffer,
    /// [rows, ...] block scales, format-specific (a placeholder for floats)
    pub w_scales: &'a GpuBuffer,
    /// [M, K] f32
    pub out: &'a GpuBuffer,
}

impl KernelBindings for EmbeddingBindings<'_> {
    fn in_binding_order(&self) -> Vec<&GpuBuffer> {
        vec![self.step, self.ids, self.w_data, self.w_scales, self.out]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EmbeddingKey {
    pub format: WeightFormat,
    pub hidden: u32,
    /// Rows of the whole table: ids at or past it are clamped to the last.
    pub vocab: u32,
    /// The first table row this dispatch's buffers hold.
    pub row_start: u32,
    /// Table rows this dispatch's buffers hold (`vocab` when unchunked).
    pub rows: u32,
    /// f32 bits of the factor multiplied into every output (1.0: none).
    pub scale_bits: u32,
}

impl EmbeddingKey {
    pub(crate) fn spec(&self) -> KernelSpec {
        let entry_point = match self.format {
            WeightFormat::F32 => "embedding_f32",
            WeightFormat::F16 => "embedding_f16",
            WeightFormat::Q8_0 => "embedding_q8_0",
            WeightFormat::Q4_0 => "embedding_q4_0",
            WeightFormat::Q4_1 => "embedding_q4_1",
            WeightFormat::Q5_0
            | WeightFormat::Q5_1
            | WeightFormat::Q2_K
            | WeightFormat::Q3_K
            | WeightFormat::Q4_K
            | WeightFormat::Q5_K
            | WeightFormat::Q6_K
            | WeightFormat::IQ4_NL
            | WeightFormat::IQ4_XS => "embedding_quant",
        };
        let mut constants = vec![
            ("K", self.hidden as f64),
            ("V", self.vocab as f64),
            ("ROW_START", self.row_start as f64),
            ("ROWS", self.rows as f64),
            ("SCALE", f32::from_bits(self.scale_bits) as f64),
        ];
        if let Some(layout) = QuantLayout::of(self.format) {
            constants.extend(layout.constants());
        }
        KernelSpec {
            label: "embedding",
            source: concat!(
                include_str!("../../../shaders/embedding.wgsl"),
                include_str!("../../../shaders/quant_scales.wgsl"),
                include_str!("../../../shaders/quant_codes.wgsl")
            ),
            entry_point,
            bindings: &[
                BindingKind::Uniform,
                BindingKind::StorageRead,
                BindingKind::StorageRead,
                BindingKind::StorageRead,
                BindingKind::StorageReadWrite,
            ],
            constants,
        }
    }

    pub fn workgroups(&self, num_tokens: u32) -> [u32; 3] {
        [groups(self.hidden / 32), num_tokens, 1]
    }
}
