//! The pre-norm decoder layer Llama and Gemma 3 share (norm, attention,
//! norm, MLP; each block joins its output to the residual stream itself,
//! added or post-normed), and the stack an architecture runs: the token
//! embedding, then its layers.

use crate::gpu::profiler::Recorder;
use crate::model::decoder::DecoderBody;
use crate::model::embedding::EmbeddingOp;

use super::attention::PagedAttention;
use super::mlp::GatedMlp;
use super::norm::RmsNorm;

pub struct DecoderLayer {
    /// hidden -> normed
    pub attn_norm: RmsNorm,
    /// normed -> attention -> hidden +=
    pub attention: PagedAttention,
    /// hidden -> normed
    pub ffn_norm: RmsNorm,
    /// normed -> MLP -> hidden +=
    pub mlp: GatedMlp,
}

impl DecoderLayer {
    /// A step of `num_tokens` tokens of `num_seqs` sequences.
    pub fn record(&self, pass: &mut dyn Recorder, num_tokens: u32, num_seqs: u32) {
        self.attn_norm.record(pass, num_tokens);
        self.attention.record(pass, num_tokens, num_seqs);
        self.ffn_norm.record(pass, num_tokens);
        self.mlp.record(pass, num_tokens);
    }

    pub fn weight_bytes(&self) -> u64 {
        self.attention.weight_bytes() + self.mlp.weight_bytes()
    }
}

pub struct LayerStack {
    /// token ids -> hidden
    pub embedding: EmbeddingOp,
    pub layers: Vec<DecoderLayer>,
}

impl DecoderBody for LayerStack {
    fn record(&self, pass: &mut dyn Recorder, num_tokens: u32, num_seqs: u32) {
        self.embedding.record(pass, num_tokens);
        for layer in &self.layers {
            layer.record(pass, num_tokens, num_seqs);
        }
    }

    fn matmul_weight_bytes(&self) -> u64 {
        self.layers.iter().map(DecoderLayer::weight_bytes).sum()
    }
}
