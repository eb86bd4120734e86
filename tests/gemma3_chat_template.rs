//! Gemma 3's chat template and end of turn, from the real GGUF, against
//! Hugging Face transformers' `apply_chat_template` (tests/fixtures/
//! gemma3_chat_template.json, made by scripts/make_gemma3_reference.sh).
//! No GPU: the template, the tokenizer and the stop ids only.
//!
//! The 270M base model's GGUF carries no `tokenizer.chat_template` and no
//! `tokenizer.ggml.eot_token_id`: the template is Gemma 3's published one
//! (`text::builtin_templates::GEMMA3`), `<end_of_turn>` is found by name.
//! Hand-made GGUFs check the other cases: a declared eot id, a file of
//! another family, a vocabulary without the turn tokens.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use wgserve::formats::FormatError;
use wgserve::formats::gguf::{GgufFile, GgufValue};
use wgserve::model::vocab::{chat_template_from_gguf, end_of_turn_ids_from_gguf, vocab_from_gguf};
use wgserve::text::builtin_templates::GEMMA3;
use wgserve::text::{ChatMessage, ChatTemplate, TextError, Tokenizer};

#[path = "common/chat_fixture.rs"]
mod chat_fixture;
#[path = "common/gguf_writer.rs"]
mod gguf_writer;
use chat_fixture::{ChatCase, assert_none_differ, chat_case_failures};
use gguf_writer::build_gguf;

#[derive(Deserialize)]
struct Fixture {
    gguf_file: String,
    chat_template: String,
    bos_token: String,
    end_of_turn_id: u32,
    gguf_eot_token_id: Option<u32>,
    cases: Vec<ChatCase>,
    error_cases: Vec<ErrorCase>,
}

#[derive(Deserialize)]
struct ErrorCase {
    name: String,
    messages: Vec<ChatMessage>,
    error: String,
}

const END_OF_TURN: u32 = 106;
const EOS: u32 = 1;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

struct Gemma {
    fixture: Fixture,
    gguf: GgufFile,
    tokenizer: Tokenizer,
    template: ChatTemplate,
}

fn load() -> Gemma {
    let text =
        std::fs::read_to_string(root().join("tests/fixtures/gemma3_chat_template.json")).expect("fixture");
    let fixture: Fixture = serde_json::from_str(&text).expect("fixture parses");
    let path: PathBuf = root().join("models/gemma3-270m").join(&fixture.gguf_file);
    assert!(path.exists(), "{} is missing: run `bash scripts/setup.sh --test` first", path.display());
    let gguf = GgufFile::open(&path).expect("GGUF opens");
    let tokenizer = Tokenizer::from_vocab(vocab_from_gguf(&gguf).expect("vocabulary")).expect("tokenizer");
    let template = chat_template_from_gguf(&gguf)
        .expect("template compiles")
        .expect("a Gemma 3 GGUF gets a chat template");
    Gemma { fixture, gguf, tokenizer, template }
}

#[test]
fn renders_and_tokenizes_as_transformers_does() {
    let Gemma { fixture, gguf, tokenizer, template } = load();
    // The script rendered the template we render: the file's own, else ours.
    let expected_source = match gguf.get("tokenizer.chat_template") {
        Some(_) => gguf.get_str("tokenizer.chat_template").expect("a string"),
        None => GEMMA3,
    };
    assert_eq!(fixture.chat_template, expected_source);
    assert_eq!(fixture.bos_token, "<bos>");
    assert_eq!(fixture.cases.len(), 10);
    // As the chat route encodes it: the template wrote <bos> already.
    assert_none_differ(&chat_case_failures(&template, &tokenizer, &fixture.cases), fixture.cases.len());
}

#[test]
fn roles_that_do_not_alternate_are_refused_with_the_templates_message() {
    let Gemma { fixture, template, .. } = load();
    assert_eq!(fixture.error_cases.len(), 2);
    for case in &fixture.error_cases {
        match template.render(&case.messages, true) {
            Err(TextError::Template(message)) => {
                assert!(message.contains(&case.error), "{}: {message:?} lacks {:?}", case.name, case.error)
            }
            other => panic!("{}: expected the template's refusal, got {other:?}", case.name),
        }
    }
}

#[test]
fn a_reply_stops_at_end_of_turn() {
    let Gemma { fixture, gguf, tokenizer, .. } = load();
    assert_eq!(fixture.end_of_turn_id, END_OF_TURN);
    assert_eq!(tokenizer.token_to_id("<end_of_turn>"), Some(END_OF_TURN));
    // The file declares no eot id; <end_of_turn> is a stop by name.
    assert_eq!(fixture.gguf_eot_token_id, None);
    let declared = end_of_turn_ids_from_gguf(&gguf).expect("reads");
    assert_eq!(declared, Vec::<u32>::new());
    assert_eq!(tokenizer.end_of_generation_ids(&declared), vec![EOS, END_OF_TURN]);
    // Every turn transformers renders ends with that id, so the turn the
    // model writes after the generation prompt ends on a stop id.
    for case in &fixture.cases {
        let turns = case.messages.iter().filter(|m| m.role != "system").count();
        let ends = case.ids.iter().filter(|&&id| id == END_OF_TURN).count();
        assert_eq!(ends, turns, "{}", case.name);
    }
    // It is a control token: kept by a plain decode, dropped when skipping specials.
    assert_eq!(tokenizer.decode(&[END_OF_TURN], false).expect("decodes"), "<end_of_turn>");
    assert_eq!(tokenizer.decode(&[END_OF_TURN], true).expect("decodes"), "");
}

/// A hand-made GGUF with `tokens` and the given extra keys.
fn small_gguf(architecture: &str, tokens: &[&str], extra: Vec<(&str, GgufValue)>) -> GgufFile {
    let tokens = tokens.iter().map(|t| GgufValue::String(t.to_string())).collect();
    let mut metadata = vec![
        ("general.architecture", GgufValue::String(architecture.into())),
        ("tokenizer.ggml.tokens", GgufValue::Array(tokens)),
        ("tokenizer.ggml.bos_token_id", GgufValue::U32(2)),
        ("tokenizer.ggml.eos_token_id", GgufValue::U32(1)),
    ];
    metadata.extend(extra);
    GgufFile::from_bytes(build_gguf(3, &metadata, &[], 32)).expect("hand-made GGUF opens")
}

const TURN_VOCAB: [&str; 6] = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"];

#[test]
fn declared_end_of_turn_ids_are_read_and_checked() {
    let eot = |id| vec![("tokenizer.ggml.eot_token_id", GgufValue::U32(id))];
    let file = small_gguf("gemma3", &TURN_VOCAB, eot(5));
    assert_eq!(end_of_turn_ids_from_gguf(&file).expect("reads"), vec![5]);
    let mut both = eot(5);
    both.push(("tokenizer.ggml.eom_token_id", GgufValue::U32(4)));
    let file = small_gguf("llama", &TURN_VOCAB, both);
    assert_eq!(end_of_turn_ids_from_gguf(&file).expect("reads"), vec![5, 4]);
    let file = small_gguf("gemma3", &TURN_VOCAB, eot(6));
    assert!(
        matches!(end_of_turn_ids_from_gguf(&file), Err(FormatError::Invalid(m)) if m.contains("eot_token_id"))
    );
}

#[test]
fn the_builtin_template_is_only_for_gemma3_files_without_one() {
    let user = [ChatMessage::new("user", "Hi")];
    // Gemma 3 without a template: Gemma 3's, with the file's BOS string.
    let template = chat_template_from_gguf(&small_gguf("gemma3", &TURN_VOCAB, vec![]))
        .expect("compiles")
        .expect("the built-in template");
    assert_eq!(
        template.render(&user, true).expect("renders"),
        "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
    );
    // The file's own template wins.
    let own = vec![("tokenizer.chat_template", GgufValue::String("{{ messages[0].content }}!".into()))];
    let template = chat_template_from_gguf(&small_gguf("gemma3", &TURN_VOCAB, own))
        .expect("compiles")
        .expect("the file's template");
    assert_eq!(template.render(&user, true).expect("renders"), "Hi!");
    // Another family, or a vocabulary without the turn tokens: none.
    assert!(chat_template_from_gguf(&small_gguf("llama", &TURN_VOCAB, vec![])).expect("reads").is_none());
    let no_turns = &TURN_VOCAB[..4];
    assert!(chat_template_from_gguf(&small_gguf("gemma3", no_turns, vec![])).expect("reads").is_none());
}
