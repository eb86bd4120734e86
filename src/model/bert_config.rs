//! BERT hyperparameters from a Hugging Face `config.json`, and how a
//! sentence-transformers directory turns token states into one embedding:
//! `modules.json` (is there a Normalize module?), the pooling module's
//! `config.json` (mean or [CLS]) and `sentence_bert_config.json`
//! (`max_seq_length`, the truncation length).

use std::path::Path;

use serde::Deserialize;

use super::ModelError;

#[derive(Debug, Clone, PartialEq)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub head_dim: usize,
    pub layer_norm_eps: f32,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
}

impl BertConfig {
    pub fn from_hf_json(text: &str) -> Result<Self, ModelError> {
        #[derive(Deserialize)]
        struct HfConfig {
            model_type: Option<String>,
            vocab_size: usize,
            hidden_size: usize,
            intermediate_size: usize,
            num_hidden_layers: usize,
            num_attention_heads: usize,
            hidden_act: Option<String>,
            layer_norm_eps: Option<f32>,
            max_position_embeddings: usize,
            type_vocab_size: Option<usize>,
            position_embedding_type: Option<String>,
        }
        let hf: HfConfig =
            serde_json::from_str(text).map_err(|e| ModelError::Config(format!("config.json: {e}")))?;
        let fail = |why: String| Err(ModelError::Config(why));
        if let Some(model_type) = hf.model_type.as_deref().filter(|&t| t != "bert") {
            return fail(format!("model_type {model_type:?} is not supported as an encoder (bert is)"));
        }
        // "gelu" is the exact erf form; the tanh approximations would need their own kernel.
        if let Some(act) = hf.hidden_act.as_deref().filter(|&a| a != "gelu") {
            return fail(format!("hidden_act {act:?} is not supported (gelu is)"));
        }
        if let Some(kind) = hf.position_embedding_type.as_deref().filter(|&k| k != "absolute") {
            return fail(format!("position_embedding_type {kind:?} is not supported (absolute is)"));
        }
        let config = Self {
            vocab_size: hf.vocab_size,
            hidden_size: hf.hidden_size,
            intermediate_size: hf.intermediate_size,
            num_layers: hf.num_hidden_layers,
            num_heads: hf.num_attention_heads,
            head_dim: hf.hidden_size / hf.num_attention_heads.max(1),
            // transformers' BertConfig default.
            layer_norm_eps: hf.layer_norm_eps.unwrap_or(1e-12),
            max_position_embeddings: hf.max_position_embeddings,
            type_vocab_size: hf.type_vocab_size.unwrap_or(2),
        };
        config.validate()
    }

    /// Rejects shapes the kernels cannot run, with the reason.
    fn validate(self) -> Result<Self, ModelError> {
        let fail = |why: String| Err(ModelError::Config(why));
        if self.num_heads == 0 || self.num_layers == 0 || self.vocab_size == 0 || self.type_vocab_size == 0 {
            return fail(format!("empty model: {self:?}"));
        }
        if self.head_dim * self.num_heads != self.hidden_size
            || !self.head_dim.is_multiple_of(4)
            || self.head_dim as u32 > crate::gpu::kernels::encoder_attention::MAX_HEAD_DIM
        {
            return fail(format!(
                "{} heads of a hidden size of {} do not make heads of a multiple of 4 up to 256",
                self.num_heads, self.hidden_size
            ));
        }
        if !self.hidden_size.is_multiple_of(32) || !self.intermediate_size.is_multiple_of(32) {
            return fail("hidden and intermediate sizes must be multiples of 32".into());
        }
        if self.max_position_embeddings < 3 || self.max_position_embeddings > 1 << 16 {
            return fail(format!("max_position_embeddings {} is out of range", self.max_position_embeddings));
        }
        Ok(self)
    }
}

/// How token states become one embedding per input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The mean over the input's tokens.
    Mean,
    /// The first token's state ([CLS]).
    Cls,
}

/// The sentence-transformers pipeline around the encoder.
#[derive(Debug, Clone, PartialEq)]
pub struct SentenceConfig {
    pub pooling: Pooling,
    /// Divide by the L2 norm (a Normalize module).
    pub normalize: bool,
    /// Inputs are truncated to this many tokens, [CLS] and [SEP] included.
    pub max_seq_length: usize,
}

impl SentenceConfig {
    /// Reads the sentence-transformers files of `dir`. Without
    /// `modules.json` (a plain BERT checkpoint): mean pooling, normalised,
    /// as the common sentence encoders do, and the model's full length.
    pub fn from_dir(dir: &Path, config: &BertConfig) -> Result<Self, ModelError> {
        let max_positions = config.max_position_embeddings;
        let mut sentence = Self { pooling: Pooling::Mean, normalize: true, max_seq_length: max_positions };
        if let Some(text) = read_optional(&dir.join("modules.json"))? {
            #[derive(Deserialize)]
            struct Module {
                #[serde(rename = "type")]
                kind: String,
                #[serde(default)]
                path: String,
            }
            let modules: Vec<Module> =
                serde_json::from_str(&text).map_err(|e| ModelError::Config(format!("modules.json: {e}")))?;
            sentence.normalize = modules.iter().any(|m| m.kind.ends_with(".Normalize"));
            if let Some(pooling) = modules.iter().find(|m| m.kind.ends_with(".Pooling")) {
                let path = dir.join(&pooling.path).join("config.json");
                let text = read_optional(&path)?.ok_or_else(|| {
                    ModelError::Config(format!(
                        "modules.json names a pooling module without {}",
                        path.display()
                    ))
                })?;
                sentence.pooling = pooling_mode(&text)?;
            }
        }
        if let Some(text) = read_optional(&dir.join("sentence_bert_config.json"))? {
            #[derive(Deserialize)]
            struct SentenceBert {
                max_seq_length: Option<usize>,
            }
            let parsed: SentenceBert = serde_json::from_str(&text)
                .map_err(|e| ModelError::Config(format!("sentence_bert_config.json: {e}")))?;
            if let Some(max) = parsed.max_seq_length {
                // [CLS] and [SEP] need room, and positions must exist.
                if max < 3 || max > max_positions {
                    return Err(ModelError::Config(format!(
                        "max_seq_length {max} is outside 3..={max_positions} (max_position_embeddings)"
                    )));
                }
                sentence.max_seq_length = max;
            }
        }
        Ok(sentence)
    }
}

/// The one pooling mode a sentence-transformers Pooling config turns on.
fn pooling_mode(text: &str) -> Result<Pooling, ModelError> {
    let config: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text).map_err(|e| ModelError::Config(format!("pooling config: {e}")))?;
    let on: Vec<&str> = config
        .iter()
        .filter(|(key, value)| key.starts_with("pooling_mode_") && value.as_bool() == Some(true))
        .map(|(key, _)| key.as_str())
        .collect();
    match on.as_slice() {
        ["pooling_mode_mean_tokens"] => Ok(Pooling::Mean),
        ["pooling_mode_cls_token"] => Ok(Pooling::Cls),
        other => Err(ModelError::Config(format!(
            "pooling {other:?} is not supported (one of pooling_mode_mean_tokens, pooling_mode_cls_token is)"
        ))),
    }
}

fn read_optional(path: &Path) -> Result<Option<String>, ModelError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ModelError::Config(format!("cannot read {}: {e}", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_modes() {
        let mean = r#"{"word_embedding_dimension": 384, "pooling_mode_cls_token": false,
            "pooling_mode_mean_tokens": true, "pooling_mode_max_tokens": false}"#;
        assert_eq!(pooling_mode(mean).ok(), Some(Pooling::Mean));
        assert_eq!(pooling_mode(r#"{"pooling_mode_cls_token": true}"#).ok(), Some(Pooling::Cls));
        assert!(pooling_mode(r#"{"pooling_mode_max_tokens": true}"#).is_err());
        assert!(
            pooling_mode(r#"{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": true}"#).is_err()
        );
        assert!(pooling_mode(r#"{}"#).is_err());
    }

    #[test]
    fn config_rejects_what_the_kernels_cannot_run() {
        let base = serde_json::json!({
            "model_type": "bert", "vocab_size": 100, "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "hidden_act": "gelu",
            "max_position_embeddings": 32, "type_vocab_size": 2
        });
        let config = BertConfig::from_hf_json(&base.to_string());
        assert_eq!(config.as_ref().map(|c| (c.head_dim, c.layer_norm_eps)).ok(), Some((16, 1e-12)));
        for (key, value) in [
            ("hidden_act", serde_json::json!("gelu_new")),
            ("model_type", serde_json::json!("roberta")),
            ("num_attention_heads", serde_json::json!(5)),
            ("hidden_size", serde_json::json!(48)),
            ("position_embedding_type", serde_json::json!("relative_key")),
        ] {
            let mut bad = base.clone();
            bad[key] = value;
            assert!(BertConfig::from_hf_json(&bad.to_string()).is_err(), "{key}");
        }
    }
}
