//! Structured output through the official `openai` Python client against
//! `wgserve serve` with the default model (tests/openai_client/structured.py):
//! every answer to a corpus of JSON schemas, at temperature 0 and 1 with
//! several seeds, parses and validates (the `jsonschema` package checks);
//! json_object, vLLM's choice and regex, `n` > 1, a 400 for a schema that
//! does not compile, and `chat.completions.parse` with a Pydantic model.
//! Tool calls (tests/openai_client/tools.py): with `tool_choice` required
//! or named, at temperature 0 and 1, each answer is a call of a declared
//! tool whose arguments validate; parallel calls; auto and none; streamed
//! deltas reassembled; a round trip; 400s naming the field.

mod common;

use common::openai_client::run_check;
use common::server::Server;

#[test]
fn every_constrained_answer_validates_against_its_schema() {
    let server = Server::start(&["--api-key", "client-key", "--served-model-name", "smol"]);
    let args = [format!("http://{}/v1", server.addr), "client-key".into(), "smol".into()];
    println!("{}", run_check("structured.py", &args));
}

#[test]
fn every_tool_call_is_a_declared_tool_with_valid_arguments() {
    let server = Server::start(&["--api-key", "client-key", "--served-model-name", "smol"]);
    let args = [format!("http://{}/v1", server.addr), "client-key".into(), "smol".into()];
    println!("{}", run_check("tools.py", &args));
}

/// Qwen2.5-Coder's own template renders the tools, and its calls come in
/// its own Hermes form (`<tool_call>` is one token of its vocabulary):
/// asked about two things with `tool_choice: required`, it calls both.
#[test]
fn qwen_calls_tools_in_its_own_format() {
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models/qwen2.5-coder-0.5b/qwen2.5-coder-0.5b-instruct.gguf");
    assert!(model.exists(), "{} is missing: run `bash scripts/setup.sh --test` first", model.display());
    let server = Server::start_model(&model, &[]);
    let tool = |name: &str, property: &str, values: &[&str]| {
        serde_json::json!({"type": "function", "function": {"name": name, "parameters": {
            "type": "object",
            "properties": {property: {"type": "string", "enum": values}},
            "required": [property],
            "additionalProperties": false
        }}})
    };
    let body = serde_json::json!({
        "messages": [{"role": "user", "content": "What is the weather in Paris, and what time is it in Tokyo?"}],
        "tools": [tool("get_weather", "city", &["Paris", "Tokyo", "Oslo"]), tool("get_time", "timezone", &["Europe/Paris", "Asia/Tokyo"])],
        "tool_choice": "required",
        "temperature": 0,
        "max_tokens": 80
    });
    let reply = server.post("/v1/chat/completions", &body);
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    let choice = &reply.json()["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{choice}");
    let calls: Vec<(String, serde_json::Value)> = choice["message"]["tool_calls"]
        .as_array()
        .expect("tool_calls")
        .iter()
        .map(|call| {
            let arguments = call["function"]["arguments"].as_str().expect("arguments string");
            (
                call["function"]["name"].as_str().unwrap().to_string(),
                serde_json::from_str(arguments).expect("JSON"),
            )
        })
        .collect();
    assert_eq!(
        calls,
        [
            ("get_weather".to_string(), serde_json::json!({"city": "Paris"})),
            ("get_time".to_string(), serde_json::json!({"timezone": "Asia/Tokyo"}))
        ]
    );
}
