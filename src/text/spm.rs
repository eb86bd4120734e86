//! SentencePiece vocabularies as GGUF files carry them
//! (`tokenizer.ggml.model = "llama"`: Gemma, Llama 2, Mistral), built into a
//! `tokenizers` pipeline the way Hugging Face transformers converts the same
//! file (`integrations/gguf/gguf_tokenizer_mapping.py`): a BPE with byte
//! fallback whose merges are rebuilt from the vocabulary, `▁` for spaces,
//! byte tokens `<0xNN>` decoded back to bytes. Owns that mapping only; the
//! GGUF keys are read by the model layer.

use std::collections::HashSet;

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{BPE, Vocab as TokenToId};
use tokenizers::normalizers::prepend::Prepend;
use tokenizers::normalizers::replace::Replace;
use tokenizers::normalizers::utils::Sequence as NormalizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, DecoderWrapper, SplitDelimiterBehavior};

use super::TextError;
use super::tokenizer::token_type;

/// SentencePiece's stand-in for a space.
const SPACE: char = '▁';

/// How a family's SentencePiece model reads, where files of the same GGUF
/// type differ (transformers picks by `general.architecture` too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpmStyle {
    /// Gemma: spaces become `▁` in a normalizer, no prefix space; merges
    /// ranked by the token's position in the file (its scores do not follow
    /// the merge order); tokens of only spaces are stored as real spaces.
    Gemma,
    /// Llama 2, Mistral, Phi-3: spaces become `▁` and every stretch of text
    /// between added tokens gets a `▁` in front when the file asks
    /// (`add_space_prefix`), as sentencepiece's dummy prefix; merges ranked
    /// by score.
    Llama,
}

/// A SentencePiece vocabulary as a GGUF file describes it.
#[derive(Debug, Clone)]
pub struct SpmVocab {
    /// Token strings indexed by id (`▁` for a space, `<0x0A>` for a byte).
    pub tokens: Vec<String>,
    /// Per-id scores (`tokenizer.ggml.scores`); may be empty (all 0).
    pub scores: Vec<f32>,
    /// GGUF token types per id (see [`token_type`]); may be empty.
    pub token_types: Vec<i32>,
    pub style: SpmStyle,
    /// `tokenizer.ggml.add_space_prefix` ([`SpmStyle::Llama`] only).
    pub add_space_prefix: bool,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub unk_id: Option<u32>,
    pub add_bos: bool,
}

/// The `tokenizers` pipeline for `vocab` (BOS is added by the caller).
pub(crate) fn build(vocab: &SpmVocab) -> Result<tokenizers::Tokenizer, TextError> {
    check(vocab)?;
    let tokens: Vec<String> = match vocab.style {
        SpmStyle::Gemma => vocab.tokens.iter().map(|t| respell_spaces(t)).collect(),
        SpmStyle::Llama => vocab.tokens.clone(),
    };
    // As a Python dict built in id order: a repeated string keeps its last id.
    let token_to_id: TokenToId =
        tokens.iter().enumerate().map(|(id, token)| (token.clone(), id as u32)).collect();
    let merges = merges(&tokens, &token_to_id, vocab)?;

    let mut builder =
        BPE::builder().vocab_and_merges(token_to_id.clone(), merges).fuse_unk(true).byte_fallback(true);
    // Gemma's converter names its unknown token; Llama's leaves the BPE
    // without one (byte fallback covers every byte).
    if let (SpmStyle::Gemma, Some(unk)) = (vocab.style, vocab.unk_id.and_then(|id| tokens.get(id as usize))) {
        builder = builder.unk_token(unk.clone());
    }
    let bpe = builder.build().map_err(|e| TextError::InvalidVocab(e.to_string()))?;

    let mut inner = tokenizers::Tokenizer::new(bpe);
    let space = SPACE.to_string();
    let mut decoders: Vec<DecoderWrapper> = vec![
        tokenizers::decoders::DecoderWrapper::Replace(
            Replace::new(space.as_str(), " ").map_err(|e| TextError::Tokenizer(e.to_string()))?,
        ),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    match vocab.style {
        SpmStyle::Gemma => {
            inner.with_normalizer(Some(
                Replace::new(" ", space.as_str()).map_err(|e| TextError::Tokenizer(e.to_string()))?,
            ));
            // GemmaTokenizer's split on " ": after the normalizer no space
            // is left, but it is kept so the pipelines stay the same.
            let split = Split::new(
                SplitPattern::String(" ".into()),
                SplitDelimiterBehavior::MergedWithPrevious,
                false,
            )
            .map_err(|e| TextError::Tokenizer(e.to_string()))?;
            inner.with_pre_tokenizer(Some(split));
        }
        SpmStyle::Llama => {
            // SentencePiece's dummy prefix: every stretch of text between
            // added tokens gets a `▁` in front, even one that starts with a
            // space (" " -> "▁▁"), as sentencepiece and llama.cpp encode.
            // A `Metaspace` pre-tokenizer would skip the `▁` there, and
            // with `prepend_scheme = first` after every added token too.
            let replace =
                Replace::new(" ", space.as_str()).map_err(|e| TextError::Tokenizer(e.to_string()))?;
            if vocab.add_space_prefix {
                let prepend = Prepend::new(space.clone());
                inner.with_normalizer(Some(NormalizerSequence::new(vec![prepend.into(), replace.into()])));
                decoders.push(Strip::new(' ', 1, 0).into());
            } else {
                inner.with_normalizer(Some(replace));
            }
        }
    }
    inner.with_decoder(Some(DecoderSequence::new(decoders)));
    inner.add_special_tokens(&control_tokens(vocab));
    inner.add_tokens(&user_defined_tokens(vocab, &token_to_id));
    Ok(inner)
}

fn check(vocab: &SpmVocab) -> Result<(), TextError> {
    let num_tokens = vocab.tokens.len();
    if num_tokens == 0 {
        return Err(TextError::InvalidVocab("no tokens".into()));
    }
    for (name, len) in [("token types", vocab.token_types.len()), ("scores", vocab.scores.len())] {
        if len != 0 && len != num_tokens {
            return Err(TextError::InvalidVocab(format!("{len} {name} for {num_tokens} tokens")));
        }
    }
    for (name, id) in [("bos", vocab.bos_id), ("eos", vocab.eos_id), ("unk", vocab.unk_id)] {
        if let Some(id) = id.filter(|&id| id as usize >= num_tokens) {
            return Err(TextError::InvalidVocab(format!("{name} id {id} >= vocabulary size {num_tokens}")));
        }
    }
    Ok(())
}

/// Gemma files store a token of two or more spaces as real spaces, while
/// the normalized text has `▁`: spell them as the text will look.
fn respell_spaces(token: &str) -> String {
    if token.contains(' ') && token.trim().is_empty() {
        SPACE.to_string().repeat(token.chars().count())
    } else {
        token.to_string()
    }
}

/// Merges a vocabulary may imply per token. Real SentencePiece
/// vocabularies imply about 2 (Gemma 3: 514,906 for 262,144 tokens); a
/// crafted one (`a`, `aa`, .. `a`*k) implies k per token, cubic in bytes.
const MAX_MERGES_PER_TOKEN: usize = 4;

/// A merge while ranking: ids, not strings, to stay small.
struct RankedMerge {
    left: u32,
    right: u32,
    score: f64,
    left_chars: usize,
    right_chars: usize,
}

/// Merge rules rebuilt from the vocabulary, best first, as transformers'
/// `generate_merges` does: every split of a token into two tokens is a merge
/// ranked by the token's score (Gemma: minus its id), ties by the longer
/// left, then right, piece; equal keys keep the vocabulary's order.
fn merges(
    tokens: &[String],
    token_to_id: &TokenToId,
    vocab: &SpmVocab,
) -> Result<Vec<(String, String)>, TextError> {
    let score = |id: usize| -> f64 {
        match vocab.style {
            SpmStyle::Gemma => -(id as f64),
            SpmStyle::Llama => vocab.scores.get(id).copied().map_or(0.0, f64::from),
        }
    };
    let max_merges = MAX_MERGES_PER_TOKEN * tokens.len() + 1024;
    let mut ranked: Vec<RankedMerge> = Vec::new();
    let mut local = Vec::new();
    let mut seen = HashSet::new();
    for (id, token) in tokens.iter().enumerate() {
        // Each distinct string once, at its first id, with its last id's
        // score: the order and value of a Python dict.
        if !seen.insert(token.as_str()) {
            continue;
        }
        let token_score = score(token_to_id.get(token).map_or(id, |&last| last as usize));
        local.clear();
        for (split, _) in token.char_indices().skip(1) {
            let (left, right) = token.split_at(split);
            if let (Some(&l), Some(&r)) = (token_to_id.get(left), token_to_id.get(right)) {
                local.push(RankedMerge {
                    left: l,
                    right: r,
                    score: token_score,
                    left_chars: left.chars().count(),
                    right_chars: right.chars().count(),
                });
            }
        }
        local.sort_by_key(|m| (m.left, m.right));
        ranked.append(&mut local);
        if ranked.len() > max_merges {
            return Err(TextError::InvalidVocab(format!(
                "{} tokens imply over {max_merges} merges (a real vocabulary about 2 per token)",
                tokens.len()
            )));
        }
    }
    // Stable, and comparing b to a: best first, ties in their first order.
    ranked.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(b.left_chars.cmp(&a.left_chars))
            .then(b.right_chars.cmp(&a.right_chars))
    });
    let text = |id: u32| tokens.get(id as usize).cloned().unwrap_or_default();
    Ok(ranked.into_iter().map(|m| (text(m.left), text(m.right))).collect())
}

/// Control tokens (`<start_of_turn>`, `<eos>`): matched whole in the text,
/// dropped by `decode(.., skip_special = true)`.
fn control_tokens(vocab: &SpmVocab) -> Vec<AddedToken> {
    typed_tokens(vocab, token_type::CONTROL)
        .map(|t| AddedToken::from(t.clone(), true).normalized(false))
        .collect()
}

/// User-defined tokens (`\n\n`, `<div>`): matched whole, kept by decoding.
/// Those the vocabulary no longer spells so (Gemma's space runs, respelled
/// with `▁`) are left to the merges, as transformers does.
fn user_defined_tokens(vocab: &SpmVocab, token_to_id: &TokenToId) -> Vec<AddedToken> {
    typed_tokens(vocab, token_type::USER_DEFINED)
        .filter(|t| token_to_id.contains_key(*t))
        .map(|t| AddedToken::from(t.clone(), false).normalized(false))
        .collect()
}

fn typed_tokens(vocab: &SpmVocab, kind: i32) -> impl Iterator<Item = &String> {
    vocab.token_types.iter().zip(&vocab.tokens).filter(move |&(&k, _)| k == kind).map(|(_, t)| t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::Tokenizer;

    /// Controls, the 256 byte tokens, then pieces best first (Gemma ranks
    /// merges by id), scores falling with the id (Llama ranks by score).
    fn tiny_vocab(style: SpmStyle) -> SpmVocab {
        let mut tokens: Vec<String> =
            ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>"].map(String::from).to_vec();
        let mut token_types = vec![token_type::CONTROL; tokens.len()];
        tokens.push("\n".into());
        token_types.push(token_type::USER_DEFINED);
        for b in 0u8..=255 {
            tokens.push(format!("<0x{b:02X}>"));
            token_types.push(token_type::BYTE);
        }
        for piece in [
            "▁", "h", "e", "l", "o", "w", "r", "d", "he", "ll", "hell", "hello", "▁w", "▁wor", "or",
            "▁world", "ld",
        ] {
            tokens.push(piece.into());
            token_types.push(token_type::NORMAL);
        }
        let scores = (0..tokens.len()).map(|i| -(i as f32)).collect();
        SpmVocab {
            tokens,
            scores,
            token_types,
            style,
            add_space_prefix: style == SpmStyle::Llama,
            bos_id: Some(2),
            eos_id: Some(1),
            unk_id: Some(3),
            add_bos: true,
        }
    }

    fn tiny(style: SpmStyle) -> Tokenizer {
        match Tokenizer::from_spm_vocab(tiny_vocab(style)) {
            Ok(t) => t,
            Err(e) => panic!("tiny vocab: {e}"),
        }
    }

    fn pieces(tok: &Tokenizer, ids: &[u32]) -> Vec<String> {
        ids.iter().filter_map(|&id| tok.id_to_token(id)).collect()
    }

    #[test]
    fn merges_build_words_and_bytes_fall_back() -> Result<(), TextError> {
        let tok = tiny(SpmStyle::Gemma);
        let ids = tok.encode("hello world é", false)?;
        let expect = ["hello", "▁world", "▁", "<0xC3>", "<0xA9>"];
        assert_eq!(pieces(&tok, &ids), expect);
        assert_eq!(tok.decode(&ids, false)?, "hello world é");
        Ok(())
    }

    #[test]
    fn control_and_user_defined_tokens_match_whole() -> Result<(), TextError> {
        let tok = tiny(SpmStyle::Gemma);
        let ids = tok.encode("<start_of_turn>hello\n", true)?;
        assert_eq!(ids[..2], [2, 4]);
        assert_eq!(pieces(&tok, &ids[2..]), ["hello", "\n"]);
        assert_eq!(tok.decode(&ids, true)?, "hello\n");
        assert_eq!(tok.decode(&ids, false)?, "<bos><start_of_turn>hello\n");
        Ok(())
    }

    #[test]
    fn llama_style_prepends_a_space_and_strips_it_when_decoding() -> Result<(), TextError> {
        let tok = tiny(SpmStyle::Llama);
        let ids = tok.encode("world", false)?;
        assert_eq!(pieces(&tok, &ids), ["▁world"]);
        assert_eq!(tok.decode(&ids, false)?, "world");
        Ok(())
    }

    type Spoil = fn(&mut SpmVocab);

    #[test]
    fn malformed_vocabularies_are_errors() {
        let cases: [(&str, Spoil); 5] = [
            ("no tokens", |v| v.tokens.clear()),
            ("scores", |v| {
                v.scores.pop();
            }),
            ("token types", |v| {
                v.token_types.pop();
            }),
            ("bos id", |v| v.bos_id = Some(100_000)),
            ("merges", |v| {
                for k in 2..200 {
                    v.tokens.push("a".repeat(k));
                    v.scores.push(0.0);
                    v.token_types.push(token_type::NORMAL);
                }
            }),
        ];
        for (name, spoil) in cases {
            let mut vocab = tiny_vocab(SpmStyle::Gemma);
            spoil(&mut vocab);
            match Tokenizer::from_spm_vocab(vocab) {
                Err(TextError::InvalidVocab(message)) => assert!(message.contains(name), "{name}: {message}"),
                Err(e) => panic!("{name}: {e}"),
                Ok(_) => panic!("{name}: accepted"),
            }
        }
    }
}
