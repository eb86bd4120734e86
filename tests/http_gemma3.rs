//! `wgserve serve --model` with Gemma 3 270M end to end over HTTP: a
//! completion gives transformers' greedy text (the golden fixture's), and
//! a chat request is rendered by Gemma 3's template into exactly the
//! prompt tokens transformers' `apply_chat_template` gives.

mod common;

use common::golden::model_path;
use common::server::Server;
use serde_json::{Value, json};

const GEMMA3: &str = "models/gemma3-270m/gemma-3-270m-q4_k_m.gguf";

fn fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(common::golden::root().join("tests/fixtures").join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn gemma3_serves_completions_and_chat_as_transformers_does() {
    let server = Server::start_model(&model_path(GEMMA3), &["--no-embedding-model"]);
    let models = server.get("/v1/models").json();
    assert_eq!(models["data"][0]["id"], "gemma-3-270m-q4_k_m", "{models}");

    let golden = fixture("gemma3_reference.json");
    let case = &golden["prompts"][0];
    let body = json!({"prompt": case["prompt"], "max_tokens": 32, "temperature": 0});
    let reply = server.post("/v1/completions", &body).json();
    assert_eq!(reply["choices"][0]["text"], case["generated_text"], "{reply}");
    assert_eq!(reply["usage"]["prompt_tokens"], case["num_prompt_tokens"], "BOS counted: {reply}");

    let template = fixture("gemma3_chat_template.json");
    for case in template["cases"].as_array().unwrap().iter().filter(|c| c["add_generation_prompt"] == true) {
        let body = json!({"messages": case["messages"], "max_tokens": 2, "temperature": 0});
        let reply = server.post("/v1/chat/completions", &body).json();
        let rendered = case["ids"].as_array().unwrap().len();
        assert_eq!(reply["usage"]["prompt_tokens"], rendered, "{}: {reply}", case["name"]);
    }
}
