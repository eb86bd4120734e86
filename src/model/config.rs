//! The hyperparameters every decoder architecture has, read from GGUF
//! metadata (under the architecture's own key prefix) or a Hugging Face
//! `config.json`. What only one architecture has (Gemma's sliding window)
//! its own file reads.

use serde::Deserialize;

use crate::formats::gguf::GgufFile;

use super::ModelError;
use super::source::WeightSource;

/// How RoPE pairs elements; it follows the weights' Q/K row order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs (2i, 2i+1): GGUF Llama, whose Q/K rows llama.cpp permuted.
    Interleaved,
    /// Halves (i, i + D/2): Hugging Face checkpoints.
    Neox,
}

/// GGUF settings (after `{arch}.`) that change what a model computes.
const MATH_SETTINGS: [&str; 7] = [
    "rope.scaling.type",
    "rope.scaling.factor",
    "rope.freq_scale",
    "attention.sliding_window",
    "attn_logit_softcapping",
    "final_logit_softcapping",
    "attention.scale",
];

#[derive(Debug, Clone, PartialEq)]
pub struct DecoderConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f32,
    pub rope_theta: f32,
    pub rope_style: RopeStyle,
    pub max_position_embeddings: usize,
    /// The output head is the token embedding table. GGUF says so by
    /// omitting `output.weight`; Hugging Face configs say it explicitly.
    pub tie_word_embeddings: Option<bool>,
}

impl DecoderConfig {
    pub fn from_source(source: &WeightSource) -> Result<Self, ModelError> {
        match source {
            WeightSource::Gguf(gguf) => Self::from_gguf(gguf),
            WeightSource::Safetensors { dir, .. } => {
                let path = dir.join("config.json");
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| ModelError::Config(format!("cannot read {}: {e}", path.display())))?;
                Self::from_hf_json(&text)
            }
        }
    }

    pub fn from_gguf(gguf: &GgufFile) -> Result<Self, ModelError> {
        let arch = gguf.get_str("general.architecture")?;
        let key = |name: &str| format!("{arch}.{name}");
        let usize_of = |name: &str| -> Result<usize, ModelError> { Ok(gguf.get_u64(&key(name))? as usize) };
        let hidden_size = usize_of("embedding_length")?;
        let num_heads = usize_of("attention.head_count")?;
        let num_kv_heads = match gguf.get(&key("attention.head_count_kv")) {
            Some(value) => value
                .as_u64()
                .ok_or_else(|| ModelError::Config("attention.head_count_kv is not an integer".into()))?
                as usize,
            None => num_heads,
        };
        let vocab_size = match gguf.get(&key("vocab_size")) {
            Some(value) => value.as_u64().unwrap_or(0) as usize,
            None => gguf.get("tokenizer.ggml.tokens").and_then(|t| t.as_array()).map_or(0, |t| t.len()),
        };
        let config = Self {
            vocab_size,
            hidden_size,
            intermediate_size: usize_of("feed_forward_length")?,
            num_layers: usize_of("block_count")?,
            num_heads,
            num_kv_heads,
            // Gemma's heads are wider than hidden / heads; the GGUF says so.
            head_dim: match gguf.get(&key("attention.key_length")) {
                Some(value) => value
                    .as_u64()
                    .ok_or_else(|| ModelError::Config("attention.key_length is not an integer".into()))?
                    as usize,
                None => hidden_size / num_heads.max(1),
            },
            rms_norm_eps: gguf.get_f64(&key("attention.layer_norm_rms_epsilon"))? as f32,
            rope_theta: gguf.get(&key("rope.freq_base")).and_then(|v| v.as_f64()).unwrap_or(10000.0) as f32,
            rope_style: RopeStyle::Interleaved,
            max_position_embeddings: usize_of("context_length")?,
            tie_word_embeddings: None,
        };
        config.validate()
    }

    pub fn from_hf_json(text: &str) -> Result<Self, ModelError> {
        #[derive(Deserialize)]
        struct HfConfig {
            architectures: Option<Vec<String>>,
            vocab_size: usize,
            hidden_size: usize,
            intermediate_size: usize,
            num_hidden_layers: usize,
            num_attention_heads: usize,
            num_key_value_heads: Option<usize>,
            head_dim: Option<usize>,
            rms_norm_eps: f32,
            rope_theta: Option<f32>,
            max_position_embeddings: usize,
            tie_word_embeddings: Option<bool>,
            /// Llama 3's frequency scaling; refused until carried out.
            rope_scaling: Option<serde_json::Value>,
        }
        let hf: HfConfig =
            serde_json::from_str(text).map_err(|e| ModelError::Config(format!("config.json: {e}")))?;
        if let Some(archs) = &hf.architectures
            && !archs.iter().any(|a| a == "LlamaForCausalLM")
        {
            return Err(ModelError::Config(format!(
                "architectures {archs:?} are not supported (LlamaForCausalLM is)"
            )));
        }
        if let Some(scaling) = hf.rope_scaling.as_ref().filter(|v| !v.is_null()) {
            let shown: String = scaling.to_string().chars().take(80).collect();
            return Err(ModelError::Config(format!(
                "config.json rope_scaling = {shown} changes the math and wgserve does not carry it out"
            )));
        }
        let config = Self {
            vocab_size: hf.vocab_size,
            hidden_size: hf.hidden_size,
            intermediate_size: hf.intermediate_size,
            num_layers: hf.num_hidden_layers,
            num_heads: hf.num_attention_heads,
            num_kv_heads: hf.num_key_value_heads.unwrap_or(hf.num_attention_heads),
            head_dim: hf.head_dim.unwrap_or(hf.hidden_size / hf.num_attention_heads.max(1)),
            rms_norm_eps: hf.rms_norm_eps,
            rope_theta: hf.rope_theta.unwrap_or(10000.0),
            rope_style: RopeStyle::Neox,
            max_position_embeddings: hf.max_position_embeddings,
            // transformers' default for Llama is untied.
            tie_word_embeddings: Some(hf.tie_word_embeddings.unwrap_or(false)),
        };
        config.validate()
    }

    /// Refuses a GGUF whose metadata sets something that changes the math
    /// (RoPE scaling, soft-capping, a sliding window) unless the
    /// architecture says it carries it out (`honoured`: key suffixes after
    /// `{arch}.`). A setting that is present but neutral (scaling type
    /// "none", factor 1) is fine.
    pub fn refuse_unhonoured(gguf: &GgufFile, honoured: &[&str]) -> Result<(), ModelError> {
        let arch = gguf.get_str("general.architecture")?;
        for suffix in MATH_SETTINGS {
            if honoured.contains(&suffix) {
                continue;
            }
            let key = format!("{arch}.{suffix}");
            let Some(value) = gguf.get(&key) else { continue };
            let neutral = match value.as_str() {
                Some(text) => text == "none",
                None => value.as_f64().is_some_and(|v| {
                    (suffix.ends_with("factor") || suffix.ends_with("freq_scale")) && v == 1.0
                }),
            };
            if !neutral {
                let shown: String = format!("{value:?}").chars().take(80).collect();
                return Err(ModelError::Config(format!(
                    "{key} = {shown} changes the math and wgserve does not carry it out for {arch}"
                )));
            }
        }
        Ok(())
    }

    /// Rejects shapes the kernels cannot run, with the reason.
    fn validate(self) -> Result<Self, ModelError> {
        let fail = |why: String| Err(ModelError::Config(why));
        if self.num_heads == 0 || self.num_kv_heads == 0 || self.num_layers == 0 || self.vocab_size == 0 {
            return fail(format!("empty model: {self:?}"));
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return fail(format!(
                "{} heads do not group over {} KV heads",
                self.num_heads, self.num_kv_heads
            ));
        }
        if !self.head_dim.is_multiple_of(4)
            || self.head_dim as u32 > crate::gpu::kernels::attention::MAX_HEAD_DIM
        {
            return fail(format!("head size {} is not a multiple of 4 up to 256", self.head_dim));
        }
        if !self.hidden_size.is_multiple_of(32) || !self.intermediate_size.is_multiple_of(32) {
            return fail("hidden and intermediate sizes must be multiples of 32".into());
        }
        if self.max_position_embeddings == 0 || self.max_position_embeddings > 1 << 20 {
            return fail(format!("context length {} is out of range", self.max_position_embeddings));
        }
        Ok(self)
    }

    /// Width of the fused Q/K/V projection.
    pub fn qkv_size(&self) -> usize {
        (self.num_heads + 2 * self.num_kv_heads) * self.head_dim
    }
}
