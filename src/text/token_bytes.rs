//! The bytes each token stands for: what a grammar engine needs to tell
//! which tokens may come next (a JSON string may take `Ġ"` but not `Ġ}`).
//! Read from the tokenizer's own pipeline, serialized: byte-level BPE maps
//! each character back to its byte; SentencePiece (byte fallback) writes
//! `<0xNN>` as that byte and its space mark as a space. A vocabulary is
//! input from strangers: a token that maps to no bytes is left empty (a
//! grammar never picks it), never a panic.

use serde_json::Value;

use super::{TextError, Tokenizer};

/// What a grammar engine (toktrie) puts before a special token's text so
/// that no text the model writes can spell it.
pub const SPECIAL_TOKEN_MARKER: u8 = 0xFF;

/// How the pipeline's decoder turns token strings into text.
enum Pieces {
    /// GPT-2's byte-to-character map.
    ByteLevel,
    /// SentencePiece: `<0xNN>` byte tokens, and this character for a space.
    ByteFallback { space: char },
}

impl Tokenizer {
    /// The bytes of each id below `num_ids` (the model's output rows, which
    /// may exceed the vocabulary: padding rows are empty). Special added
    /// tokens are `SPECIAL_TOKEN_MARKER` followed by their text.
    pub fn token_bytes(&self, num_ids: usize) -> Result<Vec<Vec<u8>>, TextError> {
        let json = serde_json::to_value(&self.inner).map_err(|e| TextError::Tokenizer(e.to_string()))?;
        let pieces = pieces(&json["decoder"]).ok_or_else(|| {
            TextError::Tokenizer(
                "structured output needs a byte-level BPE or SentencePiece (byte fallback) tokenizer".into(),
            )
        })?;
        let mut bytes = vec![Vec::new(); num_ids];
        let mut put = |id: Option<u64>, token: Vec<u8>| {
            if let Some(slot) = id.and_then(|id| bytes.get_mut(usize::try_from(id).ok()?)) {
                *slot = token;
            }
        };
        match &json["model"]["vocab"] {
            // BPE and WordPiece: token -> id.
            Value::Object(vocab) => {
                for (token, id) in vocab {
                    put(id.as_u64(), piece_bytes(token, &pieces));
                }
            }
            // Unigram: [token, score] by id.
            Value::Array(vocab) => {
                for (id, entry) in vocab.iter().enumerate() {
                    let token = entry[0].as_str().unwrap_or_default();
                    put(Some(id as u64), piece_bytes(token, &pieces));
                }
            }
            _ => return Err(TextError::Tokenizer("the tokenizer has no vocabulary".into())),
        }
        // Added tokens are matched whole in text; special ones are marked.
        for added in json["added_tokens"].as_array().into_iter().flatten() {
            let content = added["content"].as_str().unwrap_or_default();
            let mut token = Vec::with_capacity(content.len() + 1);
            if added["special"].as_bool().unwrap_or(false) {
                token.push(SPECIAL_TOKEN_MARKER);
            }
            token.extend_from_slice(content.as_bytes());
            put(added["id"].as_u64(), token);
        }
        Ok(bytes)
    }
}

/// The decoder's reading of token strings, looked for through sequences.
fn pieces(decoder: &Value) -> Option<Pieces> {
    match decoder["type"].as_str()? {
        "ByteLevel" => Some(Pieces::ByteLevel),
        "Metaspace" => Some(Pieces::ByteFallback {
            space: decoder["replacement"].as_str().and_then(|s| s.chars().next()).unwrap_or('▁'),
        }),
        "Sequence" => {
            let decoders = decoder["decoders"].as_array()?;
            if decoders.iter().any(|d| d["type"] == "ByteLevel") {
                return Some(Pieces::ByteLevel);
            }
            if !decoders.iter().any(|d| d["type"] == "ByteFallback") {
                return None;
            }
            // The Replace that turns the space mark back into a space.
            let space = decoders
                .iter()
                .filter(|d| d["type"] == "Replace" && d["content"] == " ")
                .find_map(|d| d["pattern"]["String"].as_str().and_then(|s| s.chars().next()))
                .unwrap_or('▁');
            Some(Pieces::ByteFallback { space })
        }
        _ => None,
    }
}

fn piece_bytes(token: &str, pieces: &Pieces) -> Vec<u8> {
    match pieces {
        Pieces::ByteLevel => token.chars().map(byte_of_char).collect::<Option<Vec<u8>>>().unwrap_or_default(),
        Pieces::ByteFallback { space } => match byte_token(token) {
            Some(byte) => vec![byte],
            None => token.replace(*space, " ").into_bytes(),
        },
    }
}

/// SentencePiece's byte tokens, `<0x0A>`.
fn byte_token(token: &str) -> Option<u8> {
    let hex = token.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// GPT-2's byte-level map inverted: printable bytes stand for themselves,
/// the other 68 bytes for U+0100.. in byte order.
fn byte_of_char(c: char) -> Option<u8> {
    let printable =
        |b: u8| (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
    let code = c as u32;
    if code < 256 && printable(code as u8) {
        return Some(code as u8);
    }
    let rank = code.checked_sub(256)?;
    (0..=255u8).filter(|&b| !printable(b)).nth(rank as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_characters_map_back_to_every_byte_once() {
        let mut seen = [false; 256];
        for code in 0..512u32 {
            if let Some(b) = char::from_u32(code).and_then(byte_of_char) {
                assert!(!seen[b as usize], "byte {b} twice");
                seen[b as usize] = true;
                assert_eq!(
                    crate::text::tokenizer::byte_level_byte(b),
                    char::from_u32(code).unwrap().to_string()
                );
            }
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(byte_of_char('Ġ'), Some(b' '));
        assert_eq!(byte_of_char('中'), None);
    }

    #[test]
    fn sentencepiece_byte_tokens_and_odd_names() {
        assert_eq!(byte_token("<0x0A>"), Some(b'\n'));
        assert_eq!(byte_token("<0xff>"), Some(0xFF));
        for odd in ["<0x>", "<0xZZ>", "<0x123>", "<0x0A", "0x0A>"] {
            assert_eq!(byte_token(odd), None, "{odd}");
        }
        let pieces = Pieces::ByteFallback { space: '▁' };
        assert_eq!(piece_bytes("▁the", &pieces), b" the");
        assert_eq!(piece_bytes("<0xZZ>", &pieces), b"<0xZZ>");
    }
}
