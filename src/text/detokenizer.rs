//! Incremental detokenizer: token ids in one at a time, newly completed text
//! out, for streaming. Owns only a short window of recent ids; the
//! [`Tokenizer`] is passed to each call so a sequence can keep its
//! detokenizer without borrowing the tokenizer.
//!
//! Tokens are not characters: a byte-level BPE token may hold half of a
//! UTF-8 character (an emoji is often 2-4 tokens), and decoders may change
//! how a token reads depending on its neighbours (a leading space). So, as
//! in Hugging Face's `DecodeStream` and vLLM, we decode a window twice:
//! `ids[prefix..read]` (text already emitted) and `ids[prefix..]`, and emit
//! the difference, unless the new text ends in U+FFFD, the decoder's mark of
//! an incomplete character: then we hold it until a later token completes
//! it (a genuine U+FFFD at the end is merely held one token longer). The
//! concatenation of everything emitted (plus [`Detokenizer::flush`]) equals
//! `tokenizer.decode(all_ids)`.

use super::TextError;
use super::tokenizer::Tokenizer;

/// What the decoder writes for bytes that are not (yet) valid UTF-8.
const REPLACEMENT: char = '\u{FFFD}';

/// Tokens kept before the read position so that the decoder sees each new
/// token in context (a few are enough for a leading-space rule).
const CONTEXT_TOKENS: usize = 4;

/// Held tokens past which the run is settled: a character needs at most 4
/// bytes, so a longer run that still emits nothing is text the decoder never
/// completes (skipped special tokens, invalid bytes). Without this bound
/// every step would decode the whole growing run: quadratic time (the fuzz
/// harness found 16 s for 4,000 such tokens).
const MAX_HELD_TOKENS: usize = 16;

/// Tokens a settlement leaves held: at most the 3 continuation bytes of a
/// character still arriving, and one more.
const KEEP_HELD_TOKENS: usize = 4;

/// Streaming decoder of one sequence.
#[derive(Debug, Clone)]
pub struct Detokenizer {
    skip_special: bool,
    /// Recent ids: `ids[..read_offset]` are emitted; `ids[read_offset..]`
    /// wait for a character to complete.
    ids: Vec<u32>,
    /// Start of the decode window in `ids` (context before `read_offset`).
    prefix_offset: usize,
    read_offset: usize,
}

impl Detokenizer {
    pub fn new(skip_special: bool) -> Self {
        Self { skip_special, ids: Vec::new(), prefix_offset: 0, read_offset: 0 }
    }

    /// Adds one token; returns the text it completes (often empty while a
    /// multi-byte character is still arriving).
    pub fn step(&mut self, tokenizer: &Tokenizer, id: u32) -> Result<String, TextError> {
        // Checked before it joins the window: a bad id fails this step
        // alone instead of every later decode of the window.
        if tokenizer.id_to_token(id).is_none() {
            return Err(TextError::UnknownTokenId { id, vocab_size: tokenizer.vocab_size() });
        }
        self.ids.push(id);
        let window = &self.ids[self.prefix_offset..];
        let prefix_text =
            tokenizer.decode(&window[..self.read_offset - self.prefix_offset], self.skip_special)?;
        let new_text = tokenizer.decode(window, self.skip_special)?;

        // Hold back while the tail is an incomplete character, or while the
        // decoder has not yet produced more than the already-emitted text.
        // (If the decoder rewrote earlier text, not seen with byte-level
        // BPE, also wait rather than emit something inconsistent.)
        if new_text.len() > prefix_text.len()
            && !new_text.ends_with(REPLACEMENT)
            && let Some(delta) =
                new_text.get(prefix_text.len()..).filter(|_| new_text.starts_with(&prefix_text))
        {
            let delta = delta.to_string();
            self.advance(tokenizer, self.ids.len())?;
            return Ok(delta);
        }
        if self.ids.len() - self.read_offset > MAX_HELD_TOKENS {
            return self.settle(tokenizer, &prefix_text);
        }
        Ok(String::new())
    }

    /// Emits all but the last few held tokens, splitting where no character
    /// is cut (the decode does not end in U+FFFD) when there is such a
    /// place; otherwise the text is invalid anyway and reads as a full
    /// decode would read it.
    fn settle(&mut self, tokenizer: &Tokenizer, prefix_text: &str) -> Result<String, TextError> {
        let last = self.ids.len() - KEEP_HELD_TOKENS;
        let window = &self.ids[self.prefix_offset..];
        let mut chosen = None;
        for split in (self.read_offset + 1..=last).rev() {
            let text = tokenizer.decode(&window[..split - self.prefix_offset], self.skip_special)?;
            if !text.ends_with(REPLACEMENT) {
                chosen = Some((split, text));
                break;
            }
        }
        let (split, text) = match chosen {
            Some(found) => found,
            None => (last, tokenizer.decode(&window[..last - self.prefix_offset], self.skip_special)?),
        };
        let delta = text.strip_prefix(prefix_text).unwrap_or_default().to_string();
        self.advance(tokenizer, split)?;
        Ok(delta)
    }

    /// Text still held back at the end of the sequence (an incomplete
    /// character decodes to U+FFFD, as in a full decode).
    pub fn flush(&mut self, tokenizer: &Tokenizer) -> Result<String, TextError> {
        let window = &self.ids[self.prefix_offset..];
        let prefix_text =
            tokenizer.decode(&window[..self.read_offset - self.prefix_offset], self.skip_special)?;
        let new_text = tokenizer.decode(window, self.skip_special)?;
        let delta = new_text.strip_prefix(&prefix_text).unwrap_or_default().to_string();
        self.advance(tokenizer, self.ids.len())?;
        Ok(delta)
    }

    /// Marks `ids[..read_to]` as emitted and drops ids no longer needed as
    /// context, so memory stays bounded on long generations. The context
    /// must not start inside a character: SentencePiece's byte fallback
    /// decodes a run of byte tokens as a whole, and a run that starts with
    /// a stray continuation byte becomes U+FFFD throughout, so the window
    /// would never stop ending in U+FFFD.
    fn advance(&mut self, tokenizer: &Tokenizer, read_to: usize) -> Result<(), TextError> {
        self.read_offset = read_to;
        let mut keep_from = self.read_offset.saturating_sub(CONTEXT_TOKENS);
        while keep_from < self.read_offset
            && tokenizer
                .decode(&self.ids[keep_from..self.read_offset], self.skip_special)?
                .starts_with(REPLACEMENT)
        {
            keep_from += 1;
        }
        self.ids.drain(..keep_from);
        self.read_offset -= keep_from;
        self.prefix_offset = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::tokenizer::{BpeVocab, byte_level_byte, token_type};

    /// Byte tokens only (id = 1 + byte), plus `<|eot|>` (id 0, control):
    /// every multi-byte character spans several tokens.
    fn bytes_tokenizer() -> Tokenizer {
        let mut tokens = vec!["<|eot|>".to_string()];
        let mut token_types = vec![token_type::CONTROL];
        for b in 0u8..=255 {
            tokens.push(byte_level_byte(b));
            token_types.push(token_type::BYTE);
        }
        let vocab = BpeVocab {
            tokens,
            token_types,
            merges: Vec::new(),
            pre: "gpt2".into(),
            bos_id: None,
            eos_id: Some(0),
            add_bos: false,
        };
        match Tokenizer::from_bpe_vocab(vocab) {
            Ok(t) => t,
            Err(e) => panic!("bytes vocab: {e}"),
        }
    }

    fn stream(tok: &Tokenizer, ids: &[u32], skip_special: bool) -> Result<Vec<String>, TextError> {
        let mut detok = Detokenizer::new(skip_special);
        let mut pieces = Vec::new();
        for &id in ids {
            pieces.push(detok.step(tok, id)?);
        }
        pieces.push(detok.flush(tok)?);
        Ok(pieces)
    }

    #[test]
    fn never_splits_a_character_and_concatenates_to_the_full_decode() -> Result<(), TextError> {
        let tok = bytes_tokenizer();
        let text = "héllo 🤖 世界 👩\u{200d}💻!";
        let ids = tok.encode(text, false)?;
        assert_eq!(ids.len(), text.len(), "one token per byte");
        let pieces = stream(&tok, &ids, false)?;
        for piece in &pieces {
            assert!(!piece.contains(REPLACEMENT), "split character in {piece:?}");
        }
        // The robot emoji is 4 tokens: nothing, nothing, nothing, then all of it.
        let robot = text.find('🤖').unwrap_or_default();
        assert_eq!(pieces[robot..robot + 4], ["", "", "", "🤖"]);
        assert_eq!(pieces.concat(), text);
        assert_eq!(pieces.concat(), tok.decode(&ids, false)?);
        Ok(())
    }

    #[test]
    fn special_tokens_follow_skip_special() -> Result<(), TextError> {
        let tok = bytes_tokenizer();
        let mut ids = tok.encode("ok", false)?;
        ids.push(0);
        assert_eq!(stream(&tok, &ids, false)?.concat(), "ok<|eot|>");
        assert_eq!(stream(&tok, &ids, true)?.concat(), "ok");
        Ok(())
    }

    #[test]
    fn flush_emits_an_incomplete_tail_like_a_full_decode() -> Result<(), TextError> {
        let tok = bytes_tokenizer();
        // "a" then the first two bytes of a 4-byte emoji.
        let ids = [1 + u32::from(b'a'), 1 + 0xF0, 1 + 0x9F];
        let pieces = stream(&tok, &ids, false)?;
        assert_eq!(pieces[..3], ["a", "", ""]);
        assert_eq!(pieces.concat(), tok.decode(&ids, false)?);
        Ok(())
    }

    #[test]
    fn long_streams_keep_a_bounded_window() -> Result<(), TextError> {
        let tok = bytes_tokenizer();
        let text = "abc é ".repeat(200);
        let ids = tok.encode(&text, false)?;
        let mut detok = Detokenizer::new(false);
        let mut out = String::new();
        for &id in &ids {
            out.push_str(&detok.step(&tok, id)?);
            assert!(detok.ids.len() <= CONTEXT_TOKENS + 4);
        }
        assert_eq!(out, text);
        Ok(())
    }

    #[test]
    fn unknown_ids_are_errors_that_do_not_stick() -> Result<(), TextError> {
        let tok = bytes_tokenizer();
        let mut detok = Detokenizer::new(false);
        assert!(matches!(detok.step(&tok, 10_000), Err(TextError::UnknownTokenId { .. })));
        assert_eq!(detok.step(&tok, 1 + u32::from(b'a'))?, "a");
        Ok(())
    }

    /// Runs that never complete a character (skipped special tokens,
    /// invalid bytes) are settled: the window stays short, so each step
    /// costs the same, and the pieces still add up to the full decode.
    #[test]
    fn long_runs_without_text_keep_a_bounded_window() -> Result<(), TextError> {
        let tok = bytes_tokenizer();
        let invalid = 1 + 0xFF;
        let lead = 1 + 0xF0;
        let runs: [(Vec<u32>, bool); 3] = [
            (std::iter::repeat_n(0, 5000).chain(tok.encode("ok é", false)?).collect(), true),
            (std::iter::repeat_n(invalid, 5000).chain(tok.encode("ok é", false)?).collect(), false),
            // Lead bytes each cut short by the next: invalid, then a whole emoji.
            (std::iter::repeat_n(lead, 100).chain(tok.encode("🤖", false)?).collect(), false),
        ];
        for (ids, skip_special) in runs {
            let mut detok = Detokenizer::new(skip_special);
            let mut out = String::new();
            for &id in &ids {
                out.push_str(&detok.step(&tok, id)?);
                assert!(detok.ids.len() <= CONTEXT_TOKENS + MAX_HELD_TOKENS + 1);
            }
            out.push_str(&detok.flush(&tok)?);
            assert_eq!(out, tok.decode(&ids, skip_special)?);
        }
        Ok(())
    }
}
