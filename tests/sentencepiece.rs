//! Gemma 3's SentencePiece vocabulary, built from the real GGUF, against
//! Hugging Face transformers reading the same file (tests/fixtures/
//! gemma3_tokenizer.json, made by scripts/make_sentencepiece_reference.sh).
//! The GGUF comes from `scripts/setup.sh --test`.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use wgserve::formats::gguf::GgufFile;
use wgserve::model::vocab::vocab_from_gguf;
use wgserve::text::{Detokenizer, SpmStyle, Tokenizer, Vocab};

#[derive(Deserialize)]
struct Fixture {
    gguf_file: String,
    vocab_size: usize,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    ids: Vec<u32>,
    ids_with_special: Vec<u32>,
    decoded: String,
    decoded_skip_special: String,
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn load() -> (Fixture, Tokenizer) {
    let path = root().join("tests/fixtures/gemma3_tokenizer.json");
    let text = std::fs::read_to_string(&path).expect("fixture");
    let fixture: Fixture = serde_json::from_str(&text).expect("fixture parses");
    let gguf_path: PathBuf = root().join("models/gemma3-270m").join(&fixture.gguf_file);
    assert!(
        gguf_path.exists(),
        "{} is missing: run `bash scripts/setup.sh --test` first",
        gguf_path.display()
    );
    let gguf = GgufFile::open(&gguf_path).expect("GGUF opens");
    let vocab = match vocab_from_gguf(&gguf).expect("vocabulary") {
        Vocab::SentencePiece(spm) => spm,
        Vocab::Bpe(_) => panic!("Gemma's vocabulary is SentencePiece"),
    };
    assert_eq!(vocab.style, SpmStyle::Gemma);
    assert!(vocab.add_bos, "the GGUF says add_bos_token = true");
    let tokenizer = Tokenizer::from_vocab(Vocab::SentencePiece(vocab)).expect("tokenizer builds");
    (fixture, tokenizer)
}

#[test]
fn gemma3_tokenizer_matches_hugging_face() {
    let (fixture, tokenizer) = load();
    assert_eq!(tokenizer.vocab_size(), fixture.vocab_size);
    assert_eq!(tokenizer.bos_id(), Some(2));
    assert_eq!(tokenizer.token_to_id("<start_of_turn>"), Some(105));
    let mut failures = Vec::new();
    for case in &fixture.cases {
        let ids = tokenizer.encode(&case.text, false).expect("encodes");
        if ids != case.ids {
            failures.push(format!("{:?}: ids {ids:?}, HF {:?}", case.text, case.ids));
        }
        let with_special = tokenizer.encode(&case.text, true).expect("encodes");
        if with_special != case.ids_with_special {
            failures
                .push(format!("{:?}: with BOS {with_special:?}, HF {:?}", case.text, case.ids_with_special));
        }
        let decoded = tokenizer.decode(&case.ids, false).expect("decodes");
        if decoded != case.decoded {
            failures.push(format!("{:?}: decoded {decoded:?}, HF {:?}", case.text, case.decoded));
        }
        let skipped = tokenizer.decode(&case.ids, true).expect("decodes");
        if skipped != case.decoded_skip_special {
            failures
                .push(format!("{:?}: decoded {skipped:?}, HF {:?}", case.text, case.decoded_skip_special));
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

/// The fixture covers what the vocabulary has to do: byte-fallback pieces
/// (characters with no token), whole user-defined and control tokens.
#[test]
fn fixture_exercises_byte_fallback_and_special_tokens() {
    let (fixture, tokenizer) = load();
    let all: Vec<u32> = fixture.cases.iter().flat_map(|c| c.ids.iter().copied()).collect();
    let byte_tokens = all
        .iter()
        .filter(|&&id| tokenizer.id_to_token(id).is_some_and(|t| t.starts_with("<0x") && t.len() == 6))
        .count();
    assert!(byte_tokens >= 4, "only {byte_tokens} byte-fallback tokens in the fixture");
    for token in ["<start_of_turn>", "<end_of_turn>", "\n"] {
        let id = tokenizer.token_to_id(token).expect("token in vocabulary");
        assert!(all.contains(&id), "{token:?} never appears whole in the fixture");
    }
}

/// Streaming: the detokenizer, fed one id at a time, emits exactly HF's
/// decode, never half a character (byte-fallback tokens arrive one byte at
/// a time).
#[test]
fn detokenizer_streams_byte_fallback_text() {
    let (fixture, tokenizer) = load();
    for case in &fixture.cases {
        let mut detokenizer = Detokenizer::new(false);
        let mut streamed = String::new();
        for &id in &case.ids {
            let piece = detokenizer.step(&tokenizer, id).expect("step");
            assert!(!piece.contains('\u{FFFD}'), "{:?}: half a character emitted: {piece:?}", case.text);
            streamed.push_str(&piece);
        }
        streamed.push_str(&detokenizer.flush(&tokenizer).expect("flush"));
        assert_eq!(streamed, case.decoded, "{:?}", case.text);
    }
}
