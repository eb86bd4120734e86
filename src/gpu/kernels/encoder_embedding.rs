//! `shaders/encoder_embedding.wgsl`: word + position + token type rows (BERT).

use super::{KernelBindings, groups};
use crate::gpu::GpuBuffer;
use crate::gpu::pipelines::{BindingKind, KernelSpec};

pub struct EncoderEmbeddingBindings<'a> {
    /// Uniform; `num_tokens` rows.
    pub step: &'a GpuBuffer,
    /// [M] u32, row of `word` for each token.
    pub token_ids: &'a GpuBuffer,
    /// [M] u32, position of each token within its sequence (row of `position`).
    pub positions: &'a GpuBuffer,
    /// [M] u32, segment of each token (row of `token_type`).
    pub token_type_ids: &'a GpuBuffer,
    /// [vocab, H] f32
    pub word: &'a GpuBuffer,
    /// [max_positions, H] f32
    pub position: &'a GpuBuffer,
    /// [type_vocab, H] f32
    pub token_type: &'a GpuBuffer,
    /// [M, H] f32, the sum of the three rows.
    pub out: &'a GpuBuffer,
}

impl KernelBindings for EncoderEmbeddingBindings<'_> {
    fn in_binding_order(&self) -> Vec<&GpuBuffer> {
        vec![
            self.step,
            self.token_ids,
            self.positions,
            self.token_type_ids,
            self.word,
            self.position,
            self.token_type,
            self.out,
        ]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EncoderEmbeddingKey {
    pub hidden: u32,
    pub vocab: u32,
    pub max_positions: u32,
    pub type_vocab: u32,
}

impl EncoderEmbeddingKey {
    pub(crate) fn spec(&self) -> KernelSpec {
        KernelSpec {
            label: "encoder_embedding",
            source: include_str!("../../../shaders/encoder_embedding.wgsl"),
            entry_point: "encoder_embedding",
            bindings: &[
                BindingKind::Uniform,
                BindingKind::StorageRead,
                BindingKind::StorageRead,
                BindingKind::StorageRead,
                BindingKind::StorageRead,
                BindingKind::StorageRead,
                BindingKind::StorageRead,
                BindingKind::StorageReadWrite,
            ],
            constants: vec![
                ("H", self.hidden as f64),
                ("VOCAB", self.vocab as f64),
                ("MAX_POSITIONS", self.max_positions as f64),
                ("TYPE_VOCAB", self.type_vocab as f64),
            ],
        }
    }

    pub fn workgroups(&self, num_tokens: u32) -> [u32; 3] {
        [groups(self.hidden / 4), num_tokens, 1]
    }
}
