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
    let text = match &source {
        WeightSource::Gguf(gguf) => gguf_text(gguf)?,
        WeightSource::Safetensors { dir, .. } => hf_text(dir)?,
    };
    let model = Architecture::of(&source)?.load(ctx, &source, options)?;
    let ModelText { tokenizer, chat_template, stop_token_ids } = text;
    let name = path.file_stem().map_or_else(|| "model".to_string(), |s| s.to_string_lossy().into_owned());
    Ok(LoadedModel { model, tokenizer, chat_template, stop_token_ids, name })
}

fn text_error(e: crate::text::TextError) -> ModelError {
    ModelError::Config(format!("tokenizer: {e}"))
}

/// A model's text side: what turns a request into ids and ids back into
/// text, and where a generation ends.
pub struct ModelText {
    pub tokenizer: Tokenizer,
    pub chat_template: Option<ChatTemplate>,
    /// EOS, the ids the model's files declare as ends of a turn, then the
    /// end-of-turn tokens found by name ([`Tokenizer::end_of_generation_ids`]).
    pub stop_token_ids: Vec<u32>,
}

/// The text side of a GGUF: its `tokenizer.*` keys.
pub fn gguf_text(gguf: &GgufFile) -> Result<ModelText, ModelError> {
    let tokenizer = Tokenizer::from_vocab(vocab_from_gguf(gguf)?).map_err(text_error)?;
    let stop_token_ids = tokenizer.end_of_generation_ids(&end_of_turn_ids_from_gguf(gguf)?);
    Ok(ModelText { tokenizer, chat_template: chat_template_from_gguf(gguf)?, stop_token_ids })
}

/// The text side of a Hugging Face directory, read as transformers reads
/// it: `tokenizer.json`; special tokens, `add_bos_token` and the chat
/// template from `tokenizer_config.json` (the template from
/// `chat_template.jinja` first, where newer transformers saves it); the end
/// ids of `generation_config.json`, whose `eos_token_id` may be a list.
pub fn hf_text(dir: &Path) -> Result<ModelText, ModelError> {
    let tokenizer = Tokenizer::from_file(&dir.join("tokenizer.json")).map_err(text_error)?;
    let config = optional_json(dir, "tokenizer_config.json")?;
    // Special tokens appear either as strings or as {"content": ...} objects.
    let token_text = |key: &str| -> Option<String> {
        let value = &config[key];
        value.as_str().or_else(|| value["content"].as_str()).map(str::to_string)
    };
    let bos = token_text("bos_token");
    let eos = token_text("eos_token");
    let bos_id = bos.as_deref().and_then(|t| tokenizer.token_to_id(t)).or(tokenizer.bos_id());
    let eos_id = eos.as_deref().and_then(|t| tokenizer.token_to_id(t)).or(tokenizer.eos_id());
    let mut tokenizer = tokenizer.with_special_ids(bos_id, eos_id);
    if let Some(add_bos) = config["add_bos_token"].as_bool() {
        tokenizer = tokenizer.with_add_bos(add_bos).map_err(text_error)?;
    }
    let chat_template = match hf_chat_template(dir, &config)? {
        Some((source, origin)) => Some(
            ChatTemplate::new(&source, bos.unwrap_or_default(), eos.unwrap_or_default())
                .map_err(|e| ModelError::Config(format!("{origin}: {e}")))?,
        ),
        None => None,
    };
    let declared = generation_end_ids(dir, tokenizer.vocab_size())?;
    let stop_token_ids = tokenizer.end_of_generation_ids(&declared);
    Ok(ModelText { tokenizer, chat_template, stop_token_ids })
}

/// The template source and where it came from: `chat_template.jinja`, else
/// `tokenizer_config.json`'s `chat_template`, a string or a list of named
/// templates of which transformers uses "default".
fn hf_chat_template(dir: &Path, config: &serde_json::Value) -> Result<Option<(String, String)>, ModelError> {
    let file = dir.join("chat_template.jinja");
    if file.exists() {
        let source = std::fs::read_to_string(&file)
            .map_err(|e| ModelError::Config(format!("{}: {e}", file.display())))?;
        return Ok(Some((source, "chat_template.jinja".into())));
    }
    let origin = "tokenizer_config.json `chat_template`";
    match &config["chat_template"] {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(source) => Ok(Some((source.clone(), origin.into()))),
        serde_json::Value::Array(named) => named
            .iter()
            .find(|t| t["name"] == "default")
            .and_then(|t| t["template"].as_str())
            .map(|source| Some((source.to_string(), format!("{origin} \"default\""))))
            .ok_or_else(|| {
                ModelError::Config(format!("{origin}: a list of templates without a \"default\" one"))
            }),
        other => Err(ModelError::Config(format!("{origin}: expected a string or a list, got {other}"))),
    }
}

/// `generation_config.json`'s `eos_token_id` (one id or a list): every one
/// ends a generation, as in transformers' `generate`.
fn generation_end_ids(dir: &Path, vocab_size: usize) -> Result<Vec<u32>, ModelError> {
    let config = optional_json(dir, "generation_config.json")?;
    let ids = match &config["eos_token_id"] {
        serde_json::Value::Array(ids) => ids.iter().collect(),
        serde_json::Value::Null => Vec::new(),
        one => vec![one],
    };
    ids.into_iter()
        .map(|id| {
            id.as_u64()
                .and_then(|id| u32::try_from(id).ok())
                .filter(|&id| (id as usize) < vocab_size)
                .ok_or_else(|| {
                    ModelError::Config(format!(
                        "generation_config.json `eos_token_id`: {id} is not a token id below {vocab_size}"
                    ))
                })
        })
        .collect()
}

/// A JSON file of the directory, or `null` when there is none.
fn optional_json(dir: &Path, name: &str) -> Result<serde_json::Value, ModelError> {
    match std::fs::read_to_string(dir.join(name)) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| ModelError::Config(format!("{name}: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(serde_json::Value::Null),
        Err(e) => Err(ModelError::Config(format!("{name}: {e}"))),
    }
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
