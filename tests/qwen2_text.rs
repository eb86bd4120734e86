//! Qwen2.5-Coder-0.5B-Instruct's tokenizer, chat template and end of turn,
//! built from the real GGUF (byte-level BPE, `tokenizer.ggml.pre = qwen2`),
//! against Hugging Face transformers reading the same file (tests/fixtures/
//! qwen2_tokenizer.json and qwen2_chat_template.json, made by
//! scripts/make_qwen2_reference.sh). No GPU.
//!
//! One deliberate difference: Qwen's own tokenizer.json NFC-normalizes the
//! text, and so does wgserve for `qwen2`; transformers' GGUF converter does
//! not. The fixture records the ids of each text's NFC form beside the raw
//! ids, and we match those.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use wgserve::formats::gguf::GgufFile;
use wgserve::model::vocab::{chat_template_from_gguf, end_of_turn_ids_from_gguf, vocab_from_gguf};
use wgserve::text::{ChatTemplate, Detokenizer, Tokenizer};

#[path = "common/chat_fixture.rs"]
mod chat_fixture;
use chat_fixture::{ChatCase, assert_none_differ, chat_case_failures};

#[derive(Deserialize)]
struct TokenizerFixture {
    gguf_file: String,
    gguf_add_bos_token: bool,
    eos_token_id: u32,
    cases: Vec<TokenizerCase>,
}

#[derive(Deserialize)]
struct TokenizerCase {
    name: String,
    text: String,
    ids: Vec<u32>,
    ids_with_special: Vec<u32>,
    ids_of_nfc_text: Vec<u32>,
    decoded: String,
    decoded_skip_special: String,
}

#[derive(Deserialize)]
struct ChatFixture {
    chat_template: String,
    end_of_turn_id: u32,
    cases: Vec<ChatCase>,
}

const MODEL_DIR: &str = "models/qwen2.5-coder-0.5b";
const IM_START: u32 = 151_644;
const IM_END: u32 = 151_645;
const ENDOFTEXT: u32 = 151_643;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read_fixture<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let path = root().join("tests/fixtures").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn open_gguf(file: &str) -> GgufFile {
    let path: PathBuf = root().join(MODEL_DIR).join(file);
    assert!(path.exists(), "{} is missing: run `bash scripts/setup.sh --test` first", path.display());
    GgufFile::open(&path).expect("GGUF opens")
}

fn tokenizer_of(gguf: &GgufFile) -> Tokenizer {
    Tokenizer::from_vocab(vocab_from_gguf(gguf).expect("vocabulary")).expect("tokenizer")
}

#[test]
fn encodes_every_text_as_qwens_tokenizer_does() {
    let fixture: TokenizerFixture = read_fixture("qwen2_tokenizer.json");
    let gguf = open_gguf(&fixture.gguf_file);
    assert_eq!(gguf.get_str("tokenizer.ggml.pre").expect("pre"), "qwen2");
    let tokenizer = tokenizer_of(&gguf);
    assert!(!fixture.gguf_add_bos_token);
    assert!(!tokenizer.adds_bos());
    let mut failures = Vec::new();
    for case in &fixture.cases {
        let ids = tokenizer.encode(&case.text, false).expect("encodes");
        if ids != case.ids_of_nfc_text {
            failures.push(format!("{}: {ids:?}\n  transformers {:?}", case.name, case.ids_of_nfc_text));
        }
        // No BOS, no EOS: the specials add nothing.
        assert_eq!(case.ids_with_special, case.ids, "{}", case.name);
        assert_eq!(tokenizer.encode(&case.text, true).expect("encodes"), ids, "{}", case.name);
    }
    assert_none_differ(&failures, fixture.cases.len());
}

#[test]
fn only_text_outside_nfc_differs_from_the_gguf_converter() {
    let fixture: TokenizerFixture = read_fixture("qwen2_tokenizer.json");
    let differing: Vec<&str> =
        fixture.cases.iter().filter(|c| c.ids != c.ids_of_nfc_text).map(|c| c.name.as_str()).collect();
    assert_eq!(differing, ["nfc_composes"]);
}

#[test]
fn decodes_back_to_the_text() {
    let fixture: TokenizerFixture = read_fixture("qwen2_tokenizer.json");
    let tokenizer = tokenizer_of(&open_gguf(&fixture.gguf_file));
    for case in &fixture.cases {
        assert_eq!(tokenizer.decode(&case.ids, false).expect("decodes"), case.decoded, "{}", case.name);
        // transformers' GGUF vocabulary keeps `<|fim_*|>` non-special; the
        // file types them as control, so we drop them with the other specials.
        if !case.name.starts_with("fim") {
            let skipped = tokenizer.decode(&case.ids, true).expect("decodes");
            assert_eq!(skipped, case.decoded_skip_special, "{}", case.name);
        }
        let mut detokenizer = Detokenizer::new(false);
        let mut streamed = String::new();
        for &id in &case.ids {
            streamed += &detokenizer.step(&tokenizer, id).expect("streams");
        }
        streamed += &detokenizer.flush(&tokenizer).expect("flushes");
        assert_eq!(streamed, case.decoded, "{} streamed", case.name);
    }
}

fn template_and_tokenizer() -> (ChatFixture, Tokenizer, ChatTemplate, GgufFile) {
    let fixture: ChatFixture = read_fixture("qwen2_chat_template.json");
    let tokens: TokenizerFixture = read_fixture("qwen2_tokenizer.json");
    let gguf = open_gguf(&tokens.gguf_file);
    let template = chat_template_from_gguf(&gguf).expect("compiles").expect("the GGUF has a template");
    (fixture, tokenizer_of(&gguf), template, gguf)
}

#[test]
fn renders_and_tokenizes_conversations_as_transformers_does() {
    let (fixture, tokenizer, template, gguf) = template_and_tokenizer();
    assert_eq!(fixture.chat_template, gguf.get_str("tokenizer.chat_template").expect("template"));
    assert_eq!(fixture.cases.len(), 12);
    assert_none_differ(&chat_case_failures(&template, &tokenizer, &fixture.cases), fixture.cases.len());
}

#[test]
fn a_reply_stops_at_im_end() {
    let (fixture, tokenizer, _, gguf) = template_and_tokenizer();
    let tokens: TokenizerFixture = read_fixture("qwen2_tokenizer.json");
    assert_eq!(fixture.end_of_turn_id, IM_END);
    assert_eq!(tokens.eos_token_id, IM_END);
    assert_eq!(tokenizer.eos_id(), Some(IM_END));
    let declared = end_of_turn_ids_from_gguf(&gguf).expect("reads");
    let stops = tokenizer.end_of_generation_ids(&declared);
    assert_eq!(stops, [IM_END, ENDOFTEXT]);
    // Every turn the template writes opens with <|im_start|> and closes
    // with <|im_end|>; the generation prompt leaves one open.
    for case in &fixture.cases {
        let opened = case.ids.iter().filter(|&&id| id == IM_START).count();
        let closed = case.ids.iter().filter(|&&id| id == IM_END).count();
        assert_eq!(opened, closed + usize::from(case.add_generation_prompt), "{}", case.name);
    }
}
