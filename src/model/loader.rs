//! Everything a server needs from one model path: the network on the GPU,
//! its tokenizer, its chat template and the tokens that end a generation;
//! or, for an embedding model, the encoder and its truncating tokenizer.

use std::path::Path;
use std::sync::Arc;

use crate::formats::gguf::GgufFile;
use crate::gpu::GpuContext;
use crate::text::{ChatTemplate, Tokenizer};

use super::architectures::Architecture;
use super::bert::{Bert, EncoderOptions};
use super::causal_lm::CausalLm;
use super::source::WeightSource;
use super::vocab::{chat_template_from_gguf, end_of_turn_ids_from_gguf, vocab_from_gguf};
use super::{LoadOptions, ModelError};

pub struct LoadedModel {
    pub model: Box<dyn CausalLm>,
    pub tokenizer: Tokenizer,
    pub chat_template: Option<ChatTemplate>,
    /// End-of-generation ids: EOS and the other end-of-turn control tokens.
    pub stop_token_ids: Vec<u32>,
    /// A short name: the file stem or directory name.
    pub name: String,
}

pub fn load_model(
    ctx: Arc<GpuContext>,
    path: &Path,
    options: &LoadOptions,
) -> Result<LoadedModel, ModelError> {
    let source = WeightSource::open(path)?;
    let (tokenizer, chat_template, declared_end_ids) = match &source {
        WeightSource::Gguf(gguf) => gguf_text(gguf)?,
        WeightSource::Safetensors { dir, .. } => {
            let (tokenizer, template) = hf_text(dir)?;
            (tokenizer, template, Vec::new())
        }
    };
    let model = Architecture::of(&source)?.load(ctx, &source, options)?;
    let stop_token_ids = tokenizer.end_of_generation_ids(&declared_end_ids);
    let name = path.file_stem().map_or_else(|| "model".to_string(), |s| s.to_string_lossy().into_owned());
    Ok(LoadedModel { model, tokenizer, chat_template, stop_token_ids, name })
}

fn text_error(e: crate::text::TextError) -> ModelError {
    ModelError::Config(format!("tokenizer: {e}"))
}

/// The tokenizer, the chat template and the end-of-turn ids the file declares.
fn gguf_text(gguf: &GgufFile) -> Result<(Tokenizer, Option<ChatTemplate>, Vec<u32>), ModelError> {
    let tokenizer = Tokenizer::from_vocab(vocab_from_gguf(gguf)?).map_err(text_error)?;
    Ok((tokenizer, chat_template_from_gguf(gguf)?, end_of_turn_ids_from_gguf(gguf)?))
}

/// tokenizer.json, with the template and special tokens of tokenizer_config.json.
fn hf_text(dir: &Path) -> Result<(Tokenizer, Option<ChatTemplate>), ModelError> {
    let mut tokenizer = Tokenizer::from_file(&dir.join("tokenizer.json")).map_err(text_error)?;
    let config: serde_json::Value = match std::fs::read_to_string(dir.join("tokenizer_config.json")) {
        Ok(text) => serde_json::from_str(&text)
            .map_err(|e| ModelError::Config(format!("tokenizer_config.json: {e}")))?,
        Err(_) => serde_json::Value::Null,
    };
    // Special tokens appear either as strings or as {"content": ...} objects.
    let token_text = |key: &str| -> Option<String> {
        let value = &config[key];
        value.as_str().or_else(|| value["content"].as_str()).map(str::to_string)
    };
    let bos = token_text("bos_token");
    let eos = token_text("eos_token");
    let bos_id = bos.as_deref().and_then(|t| tokenizer.token_to_id(t));
    let eos_id = eos.as_deref().and_then(|t| tokenizer.token_to_id(t));
    let (bos_id, eos_id) = (bos_id.or(tokenizer.bos_id()), eos_id.or(tokenizer.eos_id()));
    tokenizer = tokenizer.with_special_ids(bos_id, eos_id);
    let template = match config["chat_template"].as_str() {
        Some(source) => Some(
            ChatTemplate::new(source, bos.unwrap_or_default(), eos.unwrap_or_default())
                .map_err(|e| ModelError::Config(format!("tokenizer_config.json `chat_template`: {e}")))?,
        ),
        None => None,
    };
    Ok((tokenizer, template))
}

/// Everything a server needs from an embedding model's directory.
pub struct LoadedEncoder {
    pub bert: Bert,
    /// Truncates to the model's `max_seq_length`, [CLS] and [SEP] included.
    pub tokenizer: Tokenizer,
}

pub fn load_encoder(
    ctx: Arc<GpuContext>,
    dir: &Path,
    options: &EncoderOptions,
) -> Result<LoadedEncoder, ModelError> {
    let bert = Bert::load(ctx, dir, options)?;
    let tokenizer = Tokenizer::from_file(&dir.join("tokenizer.json"))
        .and_then(|t| t.with_truncation(bert.sentence.max_seq_length))
        .map_err(text_error)?;
    bert.warm_up()?;
    Ok(LoadedEncoder { bert, tokenizer })
}
