//! `POST /v1/embeddings` end to end: the built `wgserve serve`
//! (`common::server`) with SmolLM2 for chat and the default embedding
//! model (all-MiniLM-L6-v2) beside it, on lavapipe. Input shapes, float and
//! base64, usage, truncation, OpenAI errors, many concurrent requests, and
//! a server without an embedding model.

mod common;

use std::path::PathBuf;

use common::server::Server;
use serde_json::{Value, json};

const MODEL: &str = "all-MiniLM-L6-v2";
const FOX: &str = "The quick brown fox jumps over the lazy dog.";
const PARAPHRASE: &str = "A fast brown fox leaps over a sleepy dog.";
const UNRELATED: &str = "Quarterly revenue grew by 12% despite supply-chain problems.";

fn start() -> Server {
    Server::start(&["--served-model-name", "smol"])
}

fn vectors(reply: &Value) -> Vec<Vec<f32>> {
    let data = reply["data"].as_array().unwrap_or_else(|| panic!("no data: {reply}"));
    data.iter()
        .enumerate()
        .map(|(i, item)| {
            assert_eq!(item["object"], "embedding");
            assert_eq!(item["index"], i);
            let floats = item["embedding"].as_array().unwrap_or_else(|| panic!("not floats: {item}"));
            floats.iter().map(|v| v.as_f64().unwrap() as f32).collect()
        })
        .collect()
}

fn embed(server: &Server, body: Value) -> Value {
    let reply = server.post("/v1/embeddings", &body);
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    let reply = reply.json();
    assert_eq!(reply["object"], "list");
    reply
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

fn assert_same(what: &str, a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "{what}");
    let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(worst <= 1e-6, "{what}: differ by {worst}");
}

/// The reference vector of a fixture sentence (sentence-transformers).
fn reference(name: &str) -> Vec<f32> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/minilm_reference.json");
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let sentence = fixture["sentences"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap();
    sentence["embedding"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect()
}

fn base64_floats(text: &str) -> Vec<f32> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut bytes = Vec::new();
    for c in text.bytes().filter(|&c| c != b'=') {
        let value = ALPHABET.iter().position(|&a| a == c).unwrap_or_else(|| panic!("not base64: {c}"));
        bits = bits << 6 | value as u32;
        count += 6;
        if count >= 8 {
            count -= 8;
            bytes.push((bits >> count) as u8);
        }
    }
    assert_eq!(bytes.len() % 4, 0);
    bytes.chunks(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

#[test]
fn every_input_shape_float_and_base64() {
    let server = start();
    // A list of strings: the reference vectors, in order, with usage.
    let reply = embed(&server, json!({"model": MODEL, "input": [FOX, PARAPHRASE, UNRELATED]}));
    assert_eq!(reply["model"], MODEL);
    assert_eq!(reply["usage"], json!({"prompt_tokens": 12 + 12 + 14, "total_tokens": 12 + 12 + 14}));
    let texts = vectors(&reply);
    assert_eq!(texts.len(), 3);
    assert!(texts.iter().all(|v| v.len() == 384));
    for (name, vector) in [("fox", &texts[0]), ("fox_paraphrase", &texts[1]), ("unrelated", &texts[2])] {
        let similarity = cosine(vector, &reference(name));
        assert!(similarity >= 0.9999, "{name}: cosine {similarity} with sentence-transformers");
    }
    assert!(cosine(&texts[0], &texts[1]) > cosine(&texts[0], &texts[2]) + 0.5);

    // One string; no model named means the embedding model.
    let one = embed(&server, json!({"input": FOX}));
    assert_eq!(one["model"], MODEL);
    assert_eq!(one["usage"]["prompt_tokens"], 12);
    assert_same("a string", &vectors(&one)[0], &texts[0]);

    // Token ids, one list and a list of lists: taken as they are.
    let fox_ids = json!([101, 1996, 4248, 2829, 4419, 14523, 2058, 1996, 13971, 3899, 1012, 102]);
    let ids = embed(&server, json!({"model": MODEL, "input": fox_ids}));
    assert_same("token ids", &vectors(&ids)[0], &texts[0]);
    let lists = embed(&server, json!({"model": MODEL, "input": [fox_ids, [101, 7592, 102]]}));
    assert_eq!(lists["usage"]["prompt_tokens"], 15);
    assert_same("lists of token ids", &vectors(&lists)[0], &texts[0]);

    // base64 holds the very same f32 values.
    let encoded =
        embed(&server, json!({"model": MODEL, "input": [FOX, UNRELATED], "encoding_format": "base64"}));
    for (i, item) in encoded["data"].as_array().unwrap().iter().enumerate() {
        let floats = base64_floats(item["embedding"].as_str().unwrap());
        let want = &texts[if i == 0 { 0 } else { 2 }];
        assert_eq!(floats.len(), 384);
        assert_same("base64", &floats, want);
    }

    // Truncated to 256 tokens, [CLS] and [SEP] included.
    let long = "word ".repeat(400);
    let reply = embed(&server, json!({"model": MODEL, "input": [long, "short"], "dimensions": 384}));
    assert_eq!(reply["usage"]["prompt_tokens"], 256 + 3);
}

#[test]
fn errors_are_openai_error_objects() {
    let server = start();
    let error = |body: Value, status: u16| server.post("/v1/embeddings", &body).error(status);
    let param = |body: Value| error(body, 400)["param"].clone();
    assert_eq!(param(json!({"model": MODEL})), "input");
    assert_eq!(param(json!({"model": MODEL, "input": ""})), "input");
    assert_eq!(param(json!({"model": MODEL, "input": []})), "input");
    assert_eq!(param(json!({"model": MODEL, "input": ["a", ""]})), "input[1]");
    assert_eq!(param(json!({"model": MODEL, "input": 5})), "input");
    assert_eq!(param(json!({"model": MODEL, "input": ["a", 5]})), "input[1]");
    assert_eq!(param(json!({"model": MODEL, "input": [[101, 102], "a"]})), "input[1]");
    assert_eq!(param(json!({"model": MODEL, "input": [101, -1]})), "input[1]");
    assert_eq!(param(json!({"model": MODEL, "input": "a", "encoding_format": "hex"})), "encoding_format");
    assert_eq!(param(json!({"model": MODEL, "input": "a", "dimensions": 100})), "dimensions");
    // Token ids are checked against the vocabulary and the longest input.
    let message = error(json!({"model": MODEL, "input": [[101], [101, 30522]]}), 400);
    assert_eq!(message["param"], "input[1][1]");
    assert!(message["message"].as_str().unwrap().contains("30522"), "{message}");
    let message = error(json!({"model": MODEL, "input": vec![1000; 257]}), 400);
    assert_eq!(message["param"], "input");
    let text = message["message"].as_str().unwrap();
    assert!(text.contains("257") && text.contains("256"), "{message}");
    let too_many = vec!["a"; 2049];
    assert_eq!(param(json!({"model": MODEL, "input": too_many})), "input");
    // Models: unknown 404, the chat model 400.
    assert_eq!(error(json!({"model": "text-embedding-3-small", "input": "a"}), 404)["code"], "not_found");
    assert_eq!(param(json!({"model": "smol", "input": "a"})), "model");
    // Still serving; fields it does not use (`user`) are ignored.
    embed(&server, json!({"model": MODEL, "input": "still here", "user": "someone"}));
}

#[test]
fn concurrent_requests_share_passes_and_get_their_own_vectors() {
    let server = start();
    let texts: Vec<String> = (0..12)
        .map(|i| format!("Sentence number {i} is about {}.", ["cats", "trains", "rain"][i % 3]))
        .collect();
    let alone: Vec<Vec<f32>> = texts
        .iter()
        .map(|t| vectors(&embed(&server, json!({"model": MODEL, "input": t})))[0].clone())
        .collect();
    let together: Vec<(usize, Vec<f32>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = texts
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let server = &server;
                // Odd requests carry a second input, so requests of different sizes mix.
                let input = if i % 2 == 1 { json!([text, FOX]) } else { json!(text) };
                scope.spawn(move || {
                    (i, vectors(&embed(server, json!({"model": MODEL, "input": input})))[0].clone())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, vector) in together {
        assert_same(&format!("request {i}"), &vector, &alone[i]);
    }
}

#[test]
fn without_an_embedding_model() {
    let server = Server::start(&["--served-model-name", "smol", "--no-embedding-model"]);
    let models = server.get("/v1/models").json();
    assert_eq!(models["data"].as_array().unwrap().len(), 1);
    let error = server.post("/v1/embeddings", &json!({"input": "a"})).error(404);
    assert!(error["message"].as_str().unwrap().contains("--embedding-model"), "{error}");
    server.post("/v1/embeddings", &json!({"model": MODEL, "input": "a"})).error(404);
}
