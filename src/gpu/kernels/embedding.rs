//! `shaders/embedding.wgsl`: out[t] = dequantized row ids[t] of the table.
//! Bindings: step, ids, w_data, w_scales, out.

use crate::gpu::pipelines::{BindingKind, KernelSpec};

use super::groups;
use super::matmul::WeightFormat;
use super::matmul_quant::QuantLayout;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EmbeddingKey {
    pub format: WeightFormat,
    pub hidden: u32,
    pub vocab: u32,
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
        let mut constants = vec![("K", self.hidden as f64), ("V", self.vocab as f64)];
        if let Some(layout) = QuantLayout::of(self.format) {
            constants.extend(layout.constants());
        }
        KernelSpec {
            label: "embedding",
            source: include_str!("../../../shaders/embedding.wgsl"),
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
