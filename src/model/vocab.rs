//! Glue from a GGUF file's `tokenizer.*` metadata to the text module's plain
//! data: a [`BpeVocab`] or [`SpmVocab`] for the tokenizer, the model's
//! [`ChatTemplate`] (the file's own, else its family's published one), and
//! the end-of-turn ids the file declares.
//! Reads keys only; tokenizer behaviour lives in `crate::text`.

use crate::formats::FormatError;
use crate::formats::gguf::{GgufFile, GgufValue};
use crate::text::{BpeVocab, ChatTemplate, SpmStyle, SpmVocab, Vocab, builtin_templates, pre_tokenizers};

const MODEL: &str = "tokenizer.ggml.model";
const TOKENS: &str = "tokenizer.ggml.tokens";
const TOKEN_TYPES: &str = "tokenizer.ggml.token_type";
const SCORES: &str = "tokenizer.ggml.scores";
const MERGES: &str = "tokenizer.ggml.merges";
const PRE: &str = "tokenizer.ggml.pre";
const BOS_ID: &str = "tokenizer.ggml.bos_token_id";
const EOS_ID: &str = "tokenizer.ggml.eos_token_id";
const EOT_ID: &str = "tokenizer.ggml.eot_token_id";
const EOM_ID: &str = "tokenizer.ggml.eom_token_id";
const UNK_ID: &str = "tokenizer.ggml.unknown_token_id";
const ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
const ADD_SPACE_PREFIX: &str = "tokenizer.ggml.add_space_prefix";
const ARCHITECTURE: &str = "general.architecture";
const CHAT_TEMPLATE: &str = "tokenizer.chat_template";

/// The vocabulary of a GGUF, of whichever kind `tokenizer.ggml.model` names.
pub fn vocab_from_gguf(gguf: &GgufFile) -> Result<Vocab, FormatError> {
    match gguf.get_str(MODEL)? {
        "gpt2" => Ok(Vocab::Bpe(bpe_vocab_from_gguf(gguf)?)),
        "llama" => Ok(Vocab::SentencePiece(spm_vocab_from_gguf(gguf)?)),
        other => Err(unsupported(other)),
    }
}

/// The byte-level BPE vocabulary of a GGUF with `tokenizer.ggml.model =
/// "gpt2"` (Llama 3, SmolLM, Qwen, ...).
pub fn bpe_vocab_from_gguf(gguf: &GgufFile) -> Result<BpeVocab, FormatError> {
    let model = gguf.get_str(MODEL)?;
    if model != "gpt2" {
        return Err(unsupported(model));
    }
    let tokens = strings(gguf, TOKENS)?;
    let merges = strings(gguf, MERGES)?;
    let token_types = token_types(gguf)?;
    // llama.cpp treats a missing `pre` as the GPT-2 default split.
    let pre = match gguf.get(PRE) {
        None => "default".to_string(),
        Some(_) => gguf.get_str(PRE)?.to_string(),
    };
    // As llama.cpp reads a file that does not say: BOS for the split rules
    // of families that always start with it (Llama 3's `llama-bpe`), none
    // for the others (SmolLM2 and Qwen 2 say add_bos_token = false anyway).
    let add_bos = optional_bool(gguf, ADD_BOS, pre_tokenizers::adds_bos_by_default(&pre))?;
    Ok(BpeVocab {
        tokens,
        token_types,
        merges,
        pre,
        bos_id: token_id(gguf, BOS_ID)?,
        eos_id: token_id(gguf, EOS_ID)?,
        add_bos,
    })
}

/// The SentencePiece vocabulary of a GGUF with `tokenizer.ggml.model =
/// "llama"` (Gemma, Llama 2, Mistral): no merges, but scores and byte
/// tokens `<0xNN>`.
pub fn spm_vocab_from_gguf(gguf: &GgufFile) -> Result<SpmVocab, FormatError> {
    let model = gguf.get_str(MODEL)?;
    if model != "llama" {
        return Err(unsupported(model));
    }
    let scores = match gguf.get(SCORES) {
        None => Vec::new(),
        Some(_) => gguf
            .get_array(SCORES)?
            .iter()
            .enumerate()
            .map(|(i, v)| v.as_f64().map(|x| x as f32).ok_or_else(|| element_error(SCORES, i, "a number", v)))
            .collect::<Result<_, _>>()?,
    };
    // Gemma files are SentencePiece of their own reading (transformers
    // picks the same way, by architecture).
    let style = match gguf.get(ARCHITECTURE).and_then(GgufValue::as_str) {
        Some(arch) if arch.starts_with("gemma") => SpmStyle::Gemma,
        _ => SpmStyle::Llama,
    };
    // llama.cpp and transformers add BOS and a prefix space to a
    // SentencePiece vocabulary that does not say otherwise.
    Ok(SpmVocab {
        tokens: strings(gguf, TOKENS)?,
        scores,
        token_types: token_types(gguf)?,
        style,
        add_space_prefix: optional_bool(gguf, ADD_SPACE_PREFIX, true)?,
        bos_id: token_id(gguf, BOS_ID)?,
        eos_id: token_id(gguf, EOS_ID)?,
        unk_id: token_id(gguf, UNK_ID)?,
        add_bos: optional_bool(gguf, ADD_BOS, true)?,
    })
}

/// The model's chat template, with its BOS/EOS token strings: the file's
/// own, else its family's published template when the file has none (see
/// [`builtin_template`]), else `None`.
pub fn chat_template_from_gguf(gguf: &GgufFile) -> Result<Option<ChatTemplate>, FormatError> {
    let (source, origin) = match gguf.get(CHAT_TEMPLATE) {
        Some(_) => (gguf.get_str(CHAT_TEMPLATE)?, format!("GGUF `{CHAT_TEMPLATE}`")),
        None => match builtin_template(gguf) {
            Some((source, family)) => (source, format!("built-in {family} chat template")),
            None => return Ok(None),
        },
    };
    let tokens = gguf.get_array(TOKENS)?;
    let token_text = |key: &str| -> Result<String, FormatError> {
        Ok(token_id(gguf, key)?
            .and_then(|id| tokens.get(id as usize))
            .and_then(GgufValue::as_str)
            .unwrap_or_default()
            .to_string())
    };
    let template = ChatTemplate::new(source, token_text(BOS_ID)?, token_text(EOS_ID)?)
        .map_err(|e| FormatError::Invalid(format!("{origin}: {e}")))?;
    Ok(Some(template))
}

/// The published template of a file's family, for a file without one: a
/// base model's GGUF has none, but its vocabulary has the turn tokens the
/// family's instruct models use (llama.cpp would fall back to ChatML, whose
/// `<|im_start|>` such a vocabulary lacks). Only Gemma 3 so far, and only
/// when `<start_of_turn>` and `<end_of_turn>` are in the vocabulary.
fn builtin_template(gguf: &GgufFile) -> Option<(&'static str, &'static str)> {
    let tokens = gguf.get_array(TOKENS).unwrap_or_default();
    let has = |token: &str| tokens.iter().any(|t| t.as_str() == Some(token));
    match gguf.get(ARCHITECTURE).and_then(GgufValue::as_str) {
        Some("gemma3") if has("<start_of_turn>") && has("<end_of_turn>") => {
            Some((builtin_templates::GEMMA3, "Gemma 3"))
        }
        _ => None,
    }
}

/// Ids the file declares as ends of a turn besides EOS:
/// `tokenizer.ggml.eot_token_id` and `eom_token_id` (llama.cpp writes them
/// for Llama 3 and others), each checked against the vocabulary. Files
/// without them (Gemma 3's) rely on the end-of-turn tokens found by name,
/// [`crate::text::Tokenizer::end_of_generation_ids`].
pub fn end_of_turn_ids_from_gguf(gguf: &GgufFile) -> Result<Vec<u32>, FormatError> {
    let num_tokens = gguf.get_array(TOKENS)?.len();
    let mut ids = Vec::new();
    for key in [EOT_ID, EOM_ID] {
        if let Some(id) = token_id(gguf, key)? {
            if id as usize >= num_tokens {
                return Err(FormatError::Invalid(format!(
                    "GGUF `{key}` = {id} is outside the vocabulary of {num_tokens} tokens"
                )));
            }
            ids.push(id);
        }
    }
    Ok(ids)
}

fn unsupported(model: &str) -> FormatError {
    FormatError::Unsupported(format!(
        "tokenizer model `{model}` (byte-level BPE `gpt2` and SentencePiece `llama` are supported)"
    ))
}

fn token_types(gguf: &GgufFile) -> Result<Vec<i32>, FormatError> {
    if gguf.get(TOKEN_TYPES).is_none() {
        return Ok(Vec::new());
    }
    gguf.get_array(TOKEN_TYPES)?
        .iter()
        .enumerate()
        .map(|(i, v)| {
            v.as_i64()
                .and_then(|t| i32::try_from(t).ok())
                .ok_or_else(|| element_error(TOKEN_TYPES, i, "an i32", v))
        })
        .collect()
}

fn optional_bool(gguf: &GgufFile, key: &str, default: bool) -> Result<bool, FormatError> {
    match gguf.get(key) {
        None => Ok(default),
        Some(_) => gguf.get_bool(key),
    }
}

fn strings(gguf: &GgufFile, key: &str) -> Result<Vec<String>, FormatError> {
    gguf.get_array(key)?
        .iter()
        .enumerate()
        .map(|(i, v)| v.as_str().map(str::to_string).ok_or_else(|| element_error(key, i, "a string", v)))
        .collect()
}

fn token_id(gguf: &GgufFile, key: &str) -> Result<Option<u32>, FormatError> {
    if gguf.get(key).is_none() {
        return Ok(None);
    }
    let id = gguf.get_u64(key)?;
    u32::try_from(id)
        .map(Some)
        .map_err(|_| FormatError::Invalid(format!("GGUF `{key}` = {id} is not a token id")))
}

fn element_error(key: &str, index: usize, expected: &str, value: &GgufValue) -> FormatError {
    FormatError::Invalid(format!("GGUF `{key}`[{index}] is {}, expected {expected}", value.type_name()))
}
