//! `shaders/encoder_embedding.wgsl`: word + position + token type rows (BERT).
//! Bindings: step, token_ids, positions, token_type_ids, word, position,
//! token_type, out.

use crate::gpu::pipelines::{BindingKind, KernelSpec};

use super::groups;

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
