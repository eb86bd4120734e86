//! Tokenizer: text <-> token ids, a thin wrapper over the `tokenizers` crate.
//!
//! Three sources: a Hugging Face `tokenizer.json` ([`Tokenizer::from_file`]),
//! or a GGUF vocabulary that the model layer fills: byte-level BPE
//! ([`Tokenizer::from_bpe_vocab`]) or SentencePiece
//! ([`Tokenizer::from_spm_vocab`], built in [`super::spm`]). This file owns the mapping from GGUF's tokenizer description
//! (`tokenizer.ggml.pre`, token types) to a `tokenizers` pipeline; it knows
//! nothing of GGUF parsing itself.

use std::path::Path;

use tokenizers::decoders::byte_level::ByteLevel;
use tokenizers::models::bpe::{BPE, Vocab as TokenToId};
use tokenizers::{AddedToken, TruncationParams};

use super::TextError;
use super::pre_tokenizers::bpe_pipeline;
use super::spm::{self, SpmVocab};

/// GGUF token types (`tokenizer.ggml.token_type`), as llama.cpp numbers them.
pub mod token_type {
    pub const NORMAL: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const CONTROL: i32 = 3;
    pub const USER_DEFINED: i32 = 4;
    pub const UNUSED: i32 = 5;
    pub const BYTE: i32 = 6;
}

/// End-of-turn tokens of common chat formats: ChatML's `<|im_end|>`,
/// Llama 3's `<|eot_id|>`, `<|eom_id|>` and `<|end_of_text|>` (the base
/// model's end, which the instruct models' generation_config also stops
/// on), Phi's `<|end|>`, Gemma's `<end_of_turn>`, and GPT-2's
/// `<|endoftext|>`. A generation ends on them as on EOS when the
/// vocabulary has them, whether or not the model file names them (as
/// llama.cpp's end-of-generation set does): a chat reply ends with its turn.
pub const END_OF_TURN_TOKENS: [&str; 7] = [
    "<|endoftext|>",
    "<|im_end|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end_of_text|>",
    "<|end|>",
    "<end_of_turn>",
];

/// A byte-level BPE vocabulary as a GGUF file describes it
/// (`tokenizer.ggml.model = "gpt2"`).
#[derive(Debug, Clone, Default)]
pub struct BpeVocab {
    /// Token strings indexed by id, already in GPT-2 byte-level unicode form
    /// (a space is `Ġ`), except control/user-defined tokens which are plain
    /// text such as `<|im_start|>`.
    pub tokens: Vec<String>,
    /// GGUF token types per id (see [`token_type`]); may be empty (all normal).
    pub token_types: Vec<i32>,
    /// Merge rules in priority order, each `"left right"`.
    pub merges: Vec<String>,
    /// GGUF `tokenizer.ggml.pre`: which pre-tokenizer splits the text.
    pub pre: String,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    /// Whether `encode(.., add_special = true)` prepends the BOS token.
    pub add_bos: bool,
}

/// A GGUF vocabulary of either kind the tokenizer builds from.
#[derive(Debug, Clone)]
pub enum Vocab {
    /// `tokenizer.ggml.model = "gpt2"`.
    Bpe(BpeVocab),
    /// `tokenizer.ggml.model = "llama"`.
    SentencePiece(SpmVocab),
}

/// Text <-> token ids. Cloned where two owners need it (the engine
/// thread and the HTTP handlers that tokenize).
#[derive(Clone)]
pub struct Tokenizer {
    pub(super) inner: tokenizers::Tokenizer,
    bos_id: Option<u32>,
    eos_id: Option<u32>,
    /// Prepend BOS ourselves on `encode(.., true)`. Only for GGUF vocabularies:
    /// a `tokenizer.json` does it in its own post-processor.
    add_bos: bool,
    /// Drop the BOS a `tokenizer.json`'s post-processor adds, where
    /// `tokenizer_config.json` says `add_bos_token = false`.
    drop_bos: bool,
    /// Counted once: the `tokenizers` crate counts by cloning the whole
    /// vocabulary into a map (~4 ms for 49k tokens), and error paths and
    /// request validation ask for it per request.
    vocab_size: usize,
}

impl Tokenizer {
    /// Wraps a built `tokenizers` pipeline; the BOS is dropped by nobody.
    fn new(inner: tokenizers::Tokenizer, bos_id: Option<u32>, eos_id: Option<u32>, add_bos: bool) -> Self {
        let vocab_size = inner.get_vocab_size(true);
        Self { inner, bos_id, eos_id, add_bos, drop_bos: false, vocab_size }
    }

    /// Loads a Hugging Face `tokenizer.json`. BOS/EOS are not known from that
    /// file alone (they live in `tokenizer_config.json`); set them with
    /// [`Tokenizer::with_special_ids`].
    pub fn from_file(path: &Path) -> Result<Self, TextError> {
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| TextError::Load { path: path.display().to_string(), message: e.to_string() })?;
        Ok(Self::new(inner, None, None, false))
    }

    /// Truncates every encoding to at most `max_tokens` ids, the special
    /// tokens (`[CLS]`, `[SEP]`) included, and pads nothing. This is how
    /// sentence-transformers encodes for an encoder whose `max_seq_length`
    /// is `max_tokens`; it overrides whatever truncation and padding the
    /// `tokenizer.json` asks for (all-MiniLM-L6-v2's asks for 128 and fixed
    /// padding to 128, which sentence-transformers does not use).
    pub fn with_truncation(mut self, max_tokens: usize) -> Result<Self, TextError> {
        let params = TruncationParams { max_length: max_tokens, ..TruncationParams::default() };
        self.inner.with_truncation(Some(params)).map_err(|e| TextError::Tokenizer(e.to_string()))?;
        self.inner.with_padding(None);
        Ok(self)
    }

    /// Sets the BOS/EOS ids (e.g. from `tokenizer_config.json`).
    pub fn with_special_ids(mut self, bos_id: Option<u32>, eos_id: Option<u32>) -> Self {
        self.bos_id = bos_id;
        self.eos_id = eos_id;
        self
    }

    /// Makes `encode(.., true)` start with BOS or not, whatever the
    /// `tokenizer.json`'s post-processor does: `tokenizer_config.json`'s
    /// `add_bos_token` decides, as in transformers. Call after
    /// [`Tokenizer::with_special_ids`]; without a BOS id it changes nothing.
    pub fn with_add_bos(mut self, add_bos: bool) -> Result<Self, TextError> {
        let Some(bos) = self.bos_id else { return Ok(self) };
        self.add_bos = false;
        self.drop_bos = false;
        let post_processor_adds = self.encode("", true)?.first() == Some(&bos);
        self.add_bos = add_bos && !post_processor_adds;
        self.drop_bos = !add_bos && post_processor_adds;
        Ok(self)
    }

    /// Builds a GPT-2 style byte-level BPE tokenizer from a GGUF vocabulary.
    pub fn from_bpe_vocab(vocab: BpeVocab) -> Result<Self, TextError> {
        let num_tokens = vocab.tokens.len();
        if num_tokens == 0 {
            return Err(TextError::InvalidVocab("no tokens".into()));
        }
        if !vocab.token_types.is_empty() && vocab.token_types.len() != num_tokens {
            return Err(TextError::InvalidVocab(format!(
                "{} token types for {} tokens",
                vocab.token_types.len(),
                num_tokens
            )));
        }
        for (name, id) in [("bos", vocab.bos_id), ("eos", vocab.eos_id)] {
            if let Some(id) = id.filter(|&id| id as usize >= num_tokens) {
                return Err(TextError::InvalidVocab(format!(
                    "{name} id {id} >= vocabulary size {num_tokens}"
                )));
            }
        }
        let pipeline = bpe_pipeline(&vocab.pre)?;

        // Some GGUF vocabularies repeat a string (e.g. padding entries); the
        // first id keeps the string so that encoding stays deterministic.
        // Collected in reverse so that the first id is inserted last and wins.
        let token_to_id: TokenToId =
            vocab.tokens.iter().enumerate().rev().map(|(id, token)| (token.clone(), id as u32)).collect();
        let merges = vocab
            .merges
            .iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| TextError::InvalidVocab(format!("merge without a space: {m:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Byte-level: every byte has a token, so no unknown token and no
        // byte fallback.
        let bpe = BPE::builder()
            .vocab_and_merges(token_to_id, merges)
            .ignore_merges(pipeline.ignore_merges)
            .build()
            .map_err(|e| TextError::InvalidVocab(e.to_string()))?;

        let mut inner = tokenizers::Tokenizer::new(bpe);
        inner.with_normalizer(pipeline.normalizer);
        inner.with_pre_tokenizer(Some(pipeline.pre_tokenizer));
        inner.with_decoder(Some(ByteLevel::default()));
        inner.add_special_tokens(&added_tokens(&vocab));
        Ok(Self::new(inner, vocab.bos_id, vocab.eos_id, vocab.add_bos))
    }

    /// Builds a SentencePiece tokenizer (byte fallback, `▁` spaces) from a
    /// GGUF vocabulary; see [`super::spm`].
    pub fn from_spm_vocab(vocab: SpmVocab) -> Result<Self, TextError> {
        let inner = spm::build(&vocab)?;
        Ok(Self::new(inner, vocab.bos_id, vocab.eos_id, vocab.add_bos))
    }

    /// The tokenizer of either kind of GGUF vocabulary.
    pub fn from_vocab(vocab: Vocab) -> Result<Self, TextError> {
        match vocab {
            Vocab::Bpe(bpe) => Self::from_bpe_vocab(bpe),
            Vocab::SentencePiece(spm) => Self::from_spm_vocab(spm),
        }
    }

    /// Token ids of `text`. Special tokens written in the text (such as
    /// `<|im_start|>`) become their ids; `add_special` adds what the
    /// tokenizer adds around a sequence (BOS for GGUF vocabularies that ask
    /// for it).
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>, TextError> {
        let encoding =
            self.inner.encode_fast(text, add_special).map_err(|e| TextError::Tokenizer(e.to_string()))?;
        let mut ids = encoding.get_ids();
        if let (Some(bos), true, true) = (self.bos_id, add_special, self.drop_bos) {
            ids = ids.strip_prefix(&[bos]).unwrap_or(ids);
        }
        match self.bos_id {
            Some(bos) if add_special && self.add_bos => {
                let mut with_bos = Vec::with_capacity(ids.len() + 1);
                with_bos.push(bos);
                with_bos.extend_from_slice(ids);
                Ok(with_bos)
            }
            _ => Ok(ids.to_vec()),
        }
    }

    /// Text of `ids`; `skip_special` drops special (control) tokens. An id
    /// outside the vocabulary is an error, not silently dropped.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, TextError> {
        if let Some(&id) = ids.iter().find(|&&id| self.inner.id_to_token(id).is_none()) {
            return Err(TextError::UnknownTokenId { id, vocab_size: self.vocab_size() });
        }
        self.inner.decode(ids, skip_special).map_err(|e| TextError::Tokenizer(e.to_string()))
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The token's string as stored in the vocabulary (byte-level form for
    /// BPE tokens, e.g. `Ġthe`).
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Number of token ids, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    /// Whether `encode(.., true)` prepends BOS itself.
    pub fn adds_bos(&self) -> bool {
        self.add_bos
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos_id
    }

    /// The ids that end a generation: EOS, then `declared` (the model
    /// file's own end-of-turn ids, e.g. GGUF `tokenizer.ggml.eot_token_id`),
    /// then those of [`END_OF_TURN_TOKENS`] the vocabulary has; each once.
    pub fn end_of_generation_ids(&self, declared: &[u32]) -> Vec<u32> {
        let by_name = END_OF_TURN_TOKENS.iter().filter_map(|token| self.token_to_id(token));
        let mut ids: Vec<u32> = Vec::new();
        for id in self.eos_id.into_iter().chain(declared.iter().copied()).chain(by_name) {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids
    }
}

/// Control and user-defined tokens, matched verbatim in input text.
/// Control tokens are special (dropped by `decode(.., skip_special = true)`);
/// user-defined ones are plain added text that decoding always keeps, as in
/// llama.cpp.
fn added_tokens(vocab: &BpeVocab) -> Vec<AddedToken> {
    vocab
        .token_types
        .iter()
        .zip(&vocab.tokens)
        .filter_map(|(&kind, token)| {
            let special = match kind {
                token_type::CONTROL => true,
                token_type::USER_DEFINED => false,
                _ => return None,
            };
            Some(AddedToken::from(token.clone(), special).normalized(false))
        })
        .collect()
}

/// GPT-2's byte -> unicode map for test vocabularies: printable bytes stand
/// for themselves, the others map to U+0100.. in byte order.
#[cfg(test)]
pub(crate) fn byte_level_byte(b: u8) -> String {
    let printable =
        |x: u8| (b'!'..=b'~').contains(&x) || (0xA1..=0xAC).contains(&x) || (0xAE..=0xFF).contains(&x);
    if printable(b) {
        char::from(b).to_string()
    } else {
        let rank = (0..b).filter(|&x| !printable(x)).count() as u32;
        char::from_u32(256 + rank).map(String::from).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny vocabulary: all 256 byte tokens, a few merges, three specials.
    fn tiny_vocab(pre: &str) -> BpeVocab {
        let mut tokens: Vec<String> = vec!["<|endoftext|>".into(), "<|im_start|>".into()];
        let mut token_types = vec![token_type::CONTROL, token_type::CONTROL];
        tokens.push("<tool>".into());
        token_types.push(token_type::USER_DEFINED);
        for b in 0u8..=255 {
            tokens.push(byte_level_byte(b));
            token_types.push(token_type::BYTE);
        }
        let merges = ["h e", "he l", "hel l", "hell o", "Ġ w", "2 0"];
        for m in merges {
            tokens.push(m.replace(' ', ""));
            token_types.push(token_type::NORMAL);
        }
        BpeVocab {
            tokens,
            token_types,
            merges: merges.iter().map(|m| m.to_string()).collect(),
            pre: pre.into(),
            bos_id: Some(0),
            eos_id: Some(0),
            add_bos: false,
        }
    }

    fn tiny(pre: &str) -> Tokenizer {
        match Tokenizer::from_bpe_vocab(tiny_vocab(pre)) {
            Ok(t) => t,
            Err(e) => panic!("tiny vocab: {e}"),
        }
    }

    #[test]
    fn merges_apply_and_special_tokens_are_recognised() -> Result<(), TextError> {
        let tok = tiny("gpt2");
        let hello = tok.token_to_id("hello").ok_or(TextError::Tokenizer("no hello".into()))?;
        let im_start = tok.token_to_id("<|im_start|>");
        assert_eq!(im_start, Some(1));
        let ids = tok.encode("<|im_start|>hello<tool>", false)?;
        assert_eq!(ids, vec![1, hello, 2]);
        Ok(())
    }

    #[test]
    fn decode_round_trips_and_skips_only_control_tokens() -> Result<(), TextError> {
        let tok = tiny("gpt2");
        let text = "<|im_start|>hello world<tool> é 🤖\n";
        let ids = tok.encode(text, false)?;
        assert_eq!(tok.decode(&ids, false)?, text);
        assert_eq!(tok.decode(&ids, true)?, "hello world<tool> é 🤖\n");
        Ok(())
    }

    #[test]
    fn smollm_splits_digits_one_by_one() -> Result<(), TextError> {
        let digit = |c: &str| tiny("smollm").token_to_id(c);
        let twenty = tiny("gpt2").token_to_id("20");
        assert!(twenty.is_some());
        // With gpt2's split "2024" is one pre-token, so the "2 0" merge applies.
        let ids = tiny("gpt2").encode("2024", false)?;
        assert_eq!(ids.len(), 3);
        assert_eq!(ids[0], twenty.unwrap_or_default());
        // smollm isolates each digit first: no merge across digits.
        let ids = tiny("smollm").encode("2024", false)?;
        let expect: Vec<u32> = ["2", "0", "2", "4"].iter().filter_map(|c| digit(c)).collect();
        assert_eq!(ids, expect);
        Ok(())
    }

    #[test]
    fn bos_is_added_only_when_asked() -> Result<(), TextError> {
        let mut vocab = tiny_vocab("gpt2");
        vocab.add_bos = true;
        let tok = Tokenizer::from_bpe_vocab(vocab)?;
        assert_eq!(tok.encode("hello", true)?.first(), Some(&0));
        assert_ne!(tok.encode("hello", false)?.first(), Some(&0));
        Ok(())
    }

    #[test]
    fn generation_ends_on_eos_declared_ids_and_end_of_turn_tokens_once_each() -> Result<(), TextError> {
        // tiny_vocab: 0 = <|endoftext|> (EOS), 1 = <|im_start|>, 2 = <tool>.
        let tok = tiny("gpt2");
        assert_eq!(tok.end_of_generation_ids(&[]), vec![0]);
        assert_eq!(tok.end_of_generation_ids(&[2, 0, 2]), vec![0, 2]);
        let mut vocab = tiny_vocab("gpt2");
        vocab.tokens[2] = "<end_of_turn>".into();
        vocab.token_types[2] = token_type::CONTROL;
        vocab.eos_id = Some(1);
        let tok = Tokenizer::from_bpe_vocab(vocab)?;
        // EOS first, then the declared id, then the named ones it lacks.
        assert_eq!(tok.end_of_generation_ids(&[7]), vec![1, 7, 0, 2]);
        Ok(())
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(matches!(
            Tokenizer::from_bpe_vocab(tiny_vocab("nonesuch")),
            Err(TextError::UnsupportedPreTokenizer(_))
        ));
        let mut vocab = tiny_vocab("gpt2");
        vocab.merges.push("nospace".into());
        assert!(matches!(Tokenizer::from_bpe_vocab(vocab), Err(TextError::InvalidVocab(_))));
        let mut vocab = tiny_vocab("gpt2");
        vocab.token_types.pop();
        assert!(matches!(Tokenizer::from_bpe_vocab(vocab), Err(TextError::InvalidVocab(_))));
        let tok = tiny("gpt2");
        let too_big = tok.vocab_size() as u32 + 5;
        assert!(matches!(tok.decode(&[too_big], false), Err(TextError::UnknownTokenId { .. })));
    }
}
