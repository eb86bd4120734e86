//! The HTTP server end to end: each test starts the built `wgserve serve`
//! (`common::server`) with the real model on lavapipe and talks plain
//! HTTP/1.1 to it. Waits have deadlines; nothing sleeps a fixed time.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::server::{Reply, Server, model_path};
use serde_json::{Value, json};

const KEY: &str = "test-key";
const OTHER_KEY: &str = "second-key";
const JSON: (&str, &str) = ("Content-Type", "application/json");

fn start() -> Server {
    Server::start(&[
        "--api-key",
        KEY,
        "--api-key",
        OTHER_KEY,
        "--served-model-name",
        "smol",
        "--cors-origin",
        "http://app.test",
    ])
}

#[test]
fn health_and_models() {
    let server = start();
    let health = server.request("GET", "/health", &[], b"");
    assert_eq!(health.status, 200);
    assert_eq!(health.json(), json!({"status": "ok"}));

    let models = server.get("/v1/models");
    assert_eq!(models.status, 200);
    let models = models.json();
    assert_eq!(models["object"], "list");
    let data = models["data"].as_array().unwrap();
    // The chat model, then the default embedding model (its longest input).
    assert_eq!(data.len(), 2);
    assert_eq!(data[1]["id"], "all-MiniLM-L6-v2");
    assert_eq!(data[1]["max_model_len"], 256);
    assert_eq!((&data[0]["task"], &data[1]["task"]), (&json!("generate"), &json!("embed")));
    assert_eq!(server.get("/v1/models/all-MiniLM-L6-v2").json(), data[1]);
    assert_eq!(data[0]["id"], "smol");
    assert_eq!(data[0]["object"], "model");
    assert_eq!(data[0]["owned_by"], "wgserve");
    assert!(data[0]["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(data[0]["max_model_len"], 8192);

    let model = server.get("/v1/models/smol");
    assert_eq!(model.status, 200);
    assert_eq!(model.json(), data[0]);
    let missing = server.get("/v1/models/gpt-4").error(404);
    assert_eq!(missing["code"], "not_found");
    assert!(missing["message"].as_str().unwrap().contains("gpt-4"));
}

#[test]
fn unknown_routes_wrong_methods_and_preflight() {
    let server = start();
    let error = server.get("/v1/nothing").error(404);
    assert_eq!(error["type"], "invalid_request_error");
    server.post("/health", &json!({})).error(405);
    let reply = server.request("DELETE", "/v1/models", &[("Authorization", &format!("Bearer {KEY}"))], b"");
    reply.error(405);
    assert_eq!(reply.header("allow"), Some("GET, OPTIONS"));

    let preflight = server.request(
        "OPTIONS",
        "/tokenize",
        &[("Origin", "http://app.test"), ("Access-Control-Request-Method", "POST")],
        b"",
    );
    assert_eq!(preflight.status, 204);
    assert_eq!(preflight.header("access-control-allow-origin"), Some("http://app.test"));
    assert_eq!(preflight.header("access-control-allow-methods"), Some("POST, OPTIONS"));
    assert!(preflight.header("access-control-allow-headers").unwrap().contains("authorization"));
    // Allowed origins get the header on every response; others are refused
    // (tests/http_security.rs has the rest of the origin rules).
    let auth = format!("Bearer {KEY}");
    let allowed =
        server.request("GET", "/v1/models", &[("Authorization", &auth), ("Origin", "http://app.test")], b"");
    assert_eq!(allowed.header("access-control-allow-origin"), Some("http://app.test"));
    let other =
        server.request("GET", "/v1/models", &[("Authorization", &auth), ("Origin", "http://evil.test")], b"");
    assert_eq!(other.error(403)["code"], "origin_not_allowed");
    assert_eq!(other.header("access-control-allow-origin"), None);
}

#[test]
fn bodies_over_the_limit_and_bad_json() {
    let server = start();
    // Refused from the declared length, before any of the body is read.
    let auth = format!("Bearer {KEY}");
    let too_big = (4 * 1024 * 1024 + 1).to_string();
    let reply = server.request(
        "POST",
        "/tokenize",
        &[("Authorization", &auth), JSON, ("Content-Length", &too_big)],
        b"",
    );
    assert_eq!(reply.error(413)["code"], "payload_too_large");
    // A chunked body with no declared length is cut off at the limit too.
    let chunk = vec![b' '; 1024 * 1024];
    let mut body = Vec::new();
    for _ in 0..5 {
        body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        body.extend_from_slice(&chunk);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let head = format!(
        "POST /tokenize HTTP/1.1\r\nHost: {}\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        server.addr
    );
    server.exchange(head.as_bytes(), &body).error(413);

    let reply = server.request("POST", "/tokenize", &[("Authorization", &auth), JSON], b"{\"prompt\": ");
    let error = reply.error(400);
    assert_eq!(error["type"], "invalid_request_error");
    assert!(error["message"].as_str().unwrap().contains("invalid JSON"), "{error}");
    let error = server.post("/tokenize", &json!({"prompt": 12})).error(400);
    assert_eq!(error["param"], "prompt");
    let error = server.post("/detokenize", &json!({"tokens": [1, -5]})).error(400);
    assert_eq!(error["param"], "tokens[1]");
    let error =
        server.post("/tokenize", &json!({"messages": [{"role": "wizard", "content": "hi"}]})).error(400);
    assert_eq!(error["param"], "messages[0].role");
    let error = server.post("/tokenize", &json!({"messages": []})).error(400);
    assert_eq!(error["param"], "messages");
    server
        .post("/tokenize", &json!({"prompt": "a", "messages": [{"role": "user", "content": "b"}]}))
        .error(400);
    server.post("/tokenize", &json!({"prompt": "a", "model": "nope"})).error(404);
    // The server is still up after all of that.
    assert_eq!(server.request("GET", "/health", &[], b"").status, 200);
}

#[test]
fn api_keys() {
    let server = start();
    let missing = server.request("GET", "/v1/models", &[], b"");
    assert_eq!(missing.error(401)["type"], "authentication_error");
    let wrong = server.request("GET", "/v1/models", &[("Authorization", "Bearer test-kez")], b"");
    wrong.error(401);
    let prefix = server.request("GET", "/v1/models", &[("Authorization", "Bearer test-ke")], b"");
    prefix.error(401);
    let second =
        server.request("GET", "/v1/models", &[("Authorization", &format!("Bearer {OTHER_KEY}"))], b"");
    assert_eq!(second.status, 200);
    server.request("POST", "/tokenize", &[], b"{\"prompt\": \"hi\"}").error(401);
    assert_eq!(server.request("GET", "/health", &[], b"").status, 200);
}

#[test]
fn tokenize_and_detokenize() {
    let server = start();
    let text = "Hello world, ça va? 你好";
    let reply = server.post("/tokenize", &json!({"prompt": text}));
    assert_eq!(reply.status, 200);
    let tokenized = reply.json();
    let tokens = tokenized["tokens"].as_array().unwrap().clone();
    assert!(!tokens.is_empty());
    assert_eq!(tokenized["count"], tokens.len());
    assert_eq!(tokenized["max_model_len"], 8192);
    let reply = server.post("/detokenize", &json!({"tokens": tokens}));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), json!({"prompt": text}));

    // Chat messages go through the model's template (ChatML for SmolLM2).
    let messages = json!([{"role": "user", "content": [{"type": "text", "text": "Hi there"}]}]);
    let chat = server.post("/tokenize", &json!({"messages": messages, "model": "smol"})).json();
    let chat_tokens = chat["tokens"].clone();
    let text = server.post("/detokenize", &json!({"tokens": chat_tokens})).json()["prompt"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(text.contains("<|im_start|>user\nHi there<|im_end|>"), "{text}");
    assert!(text.ends_with("<|im_start|>assistant\n"), "{text}");

    let error = server.post("/detokenize", &json!({"tokens": [1, 4_000_000]})).error(400);
    assert_eq!(error["param"], "tokens");
    assert!(error["message"].as_str().unwrap().contains("4000000"), "{error}");
}

#[test]
fn sigterm_drains_finishes_short_requests_aborts_long_ones_with_a_final_chunk_and_exits_zero() {
    let agent_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let agent_port = agent_port.to_string();
    let mut server =
        Server::start(&["--shutdown-grace", "5", "--served-model-name", "smol", "--agent-port", &agent_port]);
    assert_eq!(server.request("GET", "/health", &[], b"").status, 200);
    let agent = || {
        let mut line = String::new();
        TcpStream::connect(("127.0.0.1", agent_port.parse::<u16>().unwrap()))
            .and_then(|mut stream| stream.read_to_string(&mut line))
            .map(|_| line)
            .unwrap_or_else(|e| format!("no answer: {e}"))
    };
    assert_eq!(agent(), "up ready 100%\n");
    // An idle keep-alive connection must not hold the shutdown up.
    let mut idle = TcpStream::connect(&server.addr).unwrap();
    idle.write_all(format!("GET /health HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr).as_bytes()).unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    // Both in flight when the signal comes: the short one fits in the
    // grace period, the long one (1000 tokens, about a minute here) not.
    let no_eos = json!({"0": -100, "1": -100, "2": -100});
    let mut long = OpenStream::chat(
        &server,
        &chat_request(json!({"stream": true, "max_tokens": 1000, "logit_bias": no_eos})),
    );
    let mut short = OpenStream::chat(&server, &chat_request(json!({"stream": true, "max_tokens": 4})));
    long.read_until_contents(2);
    short.read_until_contents(0);
    let status = Command::new("kill").args(["-TERM", &server.pid()]).status().unwrap();
    assert!(status.success());
    // Draining while the long one runs: still answering, so that a
    // balancer sees the replica leave; new work is refused.
    let deadline = Instant::now() + Duration::from_secs(3);
    while server.request("GET", "/health", &[], b"").status == 200 {
        assert!(Instant::now() < deadline, "/health still 200 after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    let health = server.request("GET", "/health", &[], b"").error(503);
    assert!(health["message"].as_str().unwrap().contains("draining"), "{health}");
    let refused = server.post("/v1/chat/completions", &chat_request(json!({"max_tokens": 2})));
    assert!(refused.error(503)["message"].as_str().unwrap().contains("draining"));
    assert_eq!(refused.header("retry-after"), Some("1"));
    // A long body too gets its answer, not a connection reset for the
    // bytes left unread (a balancer can then pass the 503 on).
    let mut long_body = chat_request(json!({"max_tokens": 2})).to_string().into_bytes();
    long_body.resize(2_000_000, b' ');
    let refused =
        server.request("POST", "/v1/chat/completions", &[("Content-Type", "application/json")], &long_body);
    assert!(refused.error(503)["message"].as_str().unwrap().contains("draining"));
    assert_eq!(agent(), "drain\n");

    let short = short.finish();
    assert_eq!(short.last().unwrap()["choices"][0]["finish_reason"], "length");
    let long = long.finish();
    assert_eq!(long.last().unwrap()["choices"][0]["finish_reason"], "abort", "{long:?}");
    let generated = long.iter().filter(|c| c["choices"][0]["delta"]["content"].is_string()).count();
    assert!(generated < 1000, "the long request was not cut short");

    let exit = server.wait_exit(Duration::from_secs(60));
    assert_eq!(exit.code(), Some(0), "{exit:?}");
    assert!(TcpStream::connect(&server.addr).is_err(), "still accepting after shutdown");
}

/// A streaming request read as it arrives, on its own connection.
struct OpenStream {
    stream: TcpStream,
    received: Vec<u8>,
}

impl OpenStream {
    fn chat(server: &Server, body: &Value) -> OpenStream {
        let body = body.to_string();
        let mut stream = TcpStream::connect(&server.addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let head = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {KEY}\r\n\
             Content-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            server.addr,
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body.as_bytes()).unwrap();
        OpenStream { stream, received: Vec::new() }
    }

    /// Reads until the response has started and `count` content deltas
    /// have arrived (the first chunk, with the role, comes before any step).
    fn read_until_contents(&mut self, count: usize) {
        let mut buffer = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&self.received);
            if text.contains("\"role\":\"assistant\"") && text.matches("\"content\":").count() > count {
                return;
            }
            let n = self.stream.read(&mut buffer).unwrap();
            assert!(n > 0, "the stream ended early: {text}");
            self.received.extend_from_slice(&buffer[..n]);
        }
    }

    /// The rest of the response, as its chunks (`[DONE]` checked and dropped).
    fn finish(mut self) -> Vec<Value> {
        self.stream.read_to_end(&mut self.received).expect("read the stream");
        let reply = Reply::parse(&self.received);
        let events = sse_events(&reply);
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
        events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect()
    }
}

/// A chunked HTTP/1.1 body, decoded.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n").expect("chunk size line");
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..line_end]).unwrap().trim(), 16).unwrap();
        raw = &raw[line_end + 2..];
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

/// The `data:` payloads of a server-sent-event body, `[DONE]` included.
fn sse_events(reply: &Reply) -> Vec<String> {
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(reply.header("content-type"), Some("text/event-stream"));
    let body = match reply.header("transfer-encoding") {
        Some("chunked") => dechunk(&reply.body),
        _ => reply.body.clone(),
    };
    let text = String::from_utf8(body).unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    text.split("\n\n")
        .filter(|event| !event.is_empty())
        .map(|event| {
            event.strip_prefix("data: ").unwrap_or_else(|| panic!("not a data event: {event:?}")).to_string()
        })
        .collect()
}

fn chat_request(extra: Value) -> Value {
    let mut request = json!({
        "model": "smol",
        "messages": [{"role": "system", "content": "You are brief."},
                     {"role": "user", "content": [{"type": "text", "text": "Name three colors."}]}],
        "max_tokens": 12,
        "temperature": 0,
    });
    request.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    request
}

#[test]
fn chat_completions_non_stream_stream_and_errors() {
    let server = start();
    // Greedy is deterministic, and the response has OpenAI's shape.
    let first = server.post("/v1/chat/completions", &chat_request(json!({})));
    assert_eq!(first.status, 200, "{}", String::from_utf8_lossy(&first.body));
    let first = first.json();
    assert!(first["id"].as_str().unwrap().starts_with("chatcmpl-"), "{first}");
    assert_eq!(first["object"], "chat.completion");
    assert_eq!(first["model"], "smol");
    assert!(first["created"].as_u64().unwrap() > 1_600_000_000);
    let choice = &first["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    let content = choice["message"]["content"].as_str().unwrap().to_string();
    assert!(!content.is_empty());
    let usage = &first["usage"];
    assert_eq!(usage["completion_tokens"], 12, "{first}");
    assert_eq!(choice["finish_reason"], "length");
    let prompt_tokens = usage["prompt_tokens"].as_u64().unwrap();
    assert!(prompt_tokens > 10);
    assert_eq!(usage["total_tokens"].as_u64().unwrap(), prompt_tokens + 12);
    // The same text as the engine gives offline (`wgserve generate --chat`,
    // which prints the completion and a blank line).
    let offline = Command::new(env!("CARGO_BIN_EXE_wgserve"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["generate", "--chat", "--system", "You are brief.", "--max-tokens", "12"])
        .args(["--prompt", "Name three colors.", "--model"])
        .arg(model_path())
        .stderr(Stdio::null())
        .output()
        .expect("run wgserve generate");
    assert!(offline.status.success());
    assert_eq!(String::from_utf8(offline.stdout).unwrap().trim_end(), content.trim_end());
    // max_completion_tokens wins over max_tokens; same greedy text.
    let second = server
        .post("/v1/chat/completions", &chat_request(json!({"max_tokens": 3, "max_completion_tokens": 12})))
        .json();
    assert_eq!(second["choices"][0]["message"]["content"], content.as_str());

    // A stop string cuts the text and finishes with "stop".
    let word: String = content.split_whitespace().nth(1).unwrap().chars().take(3).collect();
    let stopped = server.post("/v1/chat/completions", &chat_request(json!({"stop": [word.clone()]}))).json();
    let stopped_text = stopped["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(stopped["choices"][0]["finish_reason"], "stop", "{stopped}");
    assert!(
        content.starts_with(stopped_text) && !stopped_text.contains(&word),
        "{stopped_text:?} vs {content:?}"
    );

    // Streaming: role first, deltas that add up to the same text, a final
    // chunk with finish_reason, a usage chunk, then [DONE].
    let events = sse_events(&server.post(
        "/v1/chat/completions",
        &chat_request(json!({"stream": true, "stream_options": {"include_usage": true}})),
    ));
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> =
        events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["id"], chunks[0]["id"]);
        assert_eq!(chunk["model"], "smol");
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect::<Vec<_>>()
        .concat();
    assert_eq!(streamed, content);
    let usage_chunk = chunks.last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"], first["usage"]);
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "length");
    assert!(chunks[..chunks.len() - 2].iter().all(|c| c["choices"][0]["finish_reason"].is_null()));

    // Logprobs: one entry per token, the sampled one first among the
    // alternatives under greedy decoding; streamed per token too.
    let with_logprobs = chat_request(json!({"max_tokens": 4, "logprobs": true, "top_logprobs": 3}));
    let reply = server.post("/v1/chat/completions", &with_logprobs).json();
    let entries = reply["choices"][0]["logprobs"]["content"].as_array().unwrap().clone();
    assert_eq!(entries.len(), 4, "{reply}");
    let joined: String = entries.iter().map(|e| e["token"].as_str().unwrap()).collect();
    assert_eq!(joined, reply["choices"][0]["message"]["content"].as_str().unwrap());
    for entry in &entries {
        let logprob = entry["logprob"].as_f64().unwrap();
        assert!(logprob <= 0.0);
        let top = entry["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        assert_eq!(top[0]["token"], entry["token"]);
        assert_eq!(top[0]["logprob"], entry["logprob"]);
        assert!(top.windows(2).all(|w| w[0]["logprob"].as_f64() >= w[1]["logprob"].as_f64()));
        assert_eq!(entry["bytes"], json!(entry["token"].as_str().unwrap().as_bytes()));
    }
    let mut streamed_logprobs = with_logprobs.clone();
    streamed_logprobs["stream"] = json!(true);
    let events = sse_events(&server.post("/v1/chat/completions", &streamed_logprobs));
    let streamed_entries: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str::<Value>(e).unwrap())
        .filter_map(|c| c["choices"][0]["logprobs"]["content"].as_array().cloned())
        .flatten()
        .collect();
    assert_eq!(streamed_entries, entries);

    // n choices: greedy gives n copies of the same text; the prompt counts
    // once in usage. Streamed, the deltas of each index add up the same.
    let three = server.post("/v1/chat/completions", &chat_request(json!({"n": 3}))).json();
    let choices = three["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3);
    for (i, choice) in choices.iter().enumerate() {
        assert_eq!(choice["index"], i);
        assert_eq!(choice["message"]["content"], content.as_str());
    }
    assert_eq!(three["usage"]["prompt_tokens"], prompt_tokens);
    assert_eq!(three["usage"]["completion_tokens"], 36);
    let events = sse_events(&server.post(
        "/v1/chat/completions",
        &chat_request(json!({"n": 2, "stream": true, "stream_options": {"include_usage": true}})),
    ));
    let chunks: Vec<Value> =
        events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    for index in 0..2 {
        let of_index: Vec<&Value> = chunks.iter().filter(|c| c["choices"][0]["index"] == index).collect();
        assert_eq!(of_index[0]["choices"][0]["delta"]["role"], "assistant");
        let text: String =
            of_index.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
        assert_eq!(text, content);
        assert_eq!(of_index.last().unwrap()["choices"][0]["finish_reason"], "length");
    }
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 24);

    // Errors name the field.
    let post = |body: Value| server.post("/v1/chat/completions", &body);
    let error = post(chat_request(json!({"temperature": 3}))).error(400);
    assert_eq!(error["param"], "temperature", "{error}");
    let error = post(chat_request(json!({"max_tokens": 0}))).error(400);
    assert_eq!(error["param"], "max_tokens", "{error}");
    let error = post(chat_request(json!({"top_p": 0}))).error(400);
    assert_eq!(error["param"], "top_p", "{error}");
    let error = post(chat_request(json!({"max_tokens": 100_000}))).error(400);
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("100000") && message.contains("8192"), "{message}");
    let error = post(chat_request(json!({"model": "nope"}))).error(404);
    assert!(error["message"].as_str().unwrap().contains("nope"), "{error}");
    let error = post(json!({"messages": []})).error(400);
    assert_eq!(error["param"], "messages");
    let error = post(json!({"messages": [{"role": "robot", "content": "hi"}]})).error(400);
    assert_eq!(error["param"], "messages[0].role");
    let error = post(json!({"model": "smol"})).error(400);
    assert_eq!(error["param"], "messages");
    for n in [0, 17] {
        let error = post(chat_request(json!({"n": n}))).error(400);
        assert_eq!(error["param"], "n");
    }
    let error = post(chat_request(json!({"logprobs": 2}))).error(400);
    assert_eq!(error["param"], "logprobs", "{error}");
    let error = post(chat_request(json!({"top_logprobs": 2}))).error(400);
    assert_eq!(error["param"], "top_logprobs", "{error}");
    let error = post(chat_request(json!({"logprobs": true, "top_logprobs": 21}))).error(400);
    assert_eq!(error["param"], "top_logprobs", "{error}");
    let error = post(chat_request(json!({"stop": 5}))).error(400);
    assert_eq!(error["param"], "stop", "{error}");
    // The default temperature is 1 (sampling), and a seed makes it repeatable.
    let seeded = chat_request(json!({"seed": 7, "max_tokens": 8}));
    let mut seeded = seeded.as_object().unwrap().clone();
    seeded.remove("temperature");
    seeded.insert("n".into(), json!(2));
    let seeded = Value::Object(seeded);
    let a = post(seeded.clone()).json();
    let b = post(seeded).json();
    assert_eq!(a["choices"], b["choices"]);
}

#[test]
fn n_choices_compute_their_shared_prompt_once() {
    // Without the prefix cache, only sharing by construction can save work.
    let server = Server::start(&["--no-prefix-cache", "--served-model-name", "smol"]);
    let prompt = "Tell me about the history of the river and its towns. ".repeat(8);
    let request = json!({"model": "smol", "prompt": prompt, "max_tokens": 4, "temperature": 0,
        "ignore_eos": true, "n": 4});
    let before = scrape(&server);
    let reply = server.post("/v1/completions", &request).json();
    let after = scrape(&server);
    let choices = reply["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 4);
    assert!(choices.iter().all(|c| c["text"] == choices[0]["text"]), "greedy choices differ: {reply}");
    let prompt_len = reply["usage"]["prompt_tokens"].as_u64().unwrap() as f64;
    // Each later choice computes only the prompt's last partial block (16 tokens a block).
    let tail = prompt_len - 16.0 * ((prompt_len - 1.0) / 16.0).floor();
    let computed = gauge(&after, "vllm:prompt_tokens_total") - gauge(&before, "vllm:prompt_tokens_total");
    assert_eq!(computed, prompt_len + 3.0 * tail, "{prompt_len} prompt tokens");
    assert_eq!(gauge(&after, "vllm:prefix_cache_hits_total"), 0.0);
    assert_eq!(gauge(&after, "vllm:kv_cache_usage_perc"), 0.0);
}

#[test]
fn ignore_eos_generates_past_the_end_of_sequence() {
    let server = start();
    let say_ok = |extra: Value| {
        let mut request = json!({"model": "smol", "messages": [{"role": "user", "content": "Say OK."}],
            "max_tokens": 30, "temperature": 0});
        request.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        server.post("/v1/chat/completions", &request).json()
    };
    let stopped = say_ok(json!({}));
    assert_eq!(stopped["choices"][0]["finish_reason"], "stop", "{stopped}");
    assert!(stopped["usage"]["completion_tokens"].as_u64().unwrap() < 30);
    let ignored = say_ok(json!({"ignore_eos": true}));
    assert_eq!(ignored["choices"][0]["finish_reason"], "length", "{ignored}");
    assert_eq!(ignored["usage"]["completion_tokens"], 30);
    let message = ignored["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(message.starts_with(stopped["choices"][0]["message"]["content"].as_str().unwrap()));
}

#[test]
fn the_serving_benchmark_drives_the_server() {
    let server = start();
    let output = Command::new(env!("CARGO_BIN_EXE_wgserve"))
        .args(["bench", "--url", &format!("http://{}/v1", server.addr), "--api-key", KEY])
        .args(["--concurrency", "1,2", "--num-prompts", "3", "--input-words", "12", "--output-tokens", "5"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("concurrency")).collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    for line in &lines {
        assert!(line.contains("3 ok, 0 failed"), "{line}");
        assert!(line.contains("TTFT p50") && line.contains("ITL p50"), "{line}");
    }
    assert!(lines[1].contains("x the first run"), "{stdout}");
    // Every request ran to its 5 tokens: 2 runs x 3, plus the warm-up.
    let metrics = scrape(&server);
    assert_eq!(sample(&metrics, "vllm:request_success_total", "finished_reason=\"length\""), 7.0);
    assert_eq!(gauge(&metrics, "vllm:generation_tokens_total"), 32.0);

    let refused = Command::new(env!("CARGO_BIN_EXE_wgserve"))
        .args(["bench", "--url", &format!("http://{}", server.addr), "--api-key", "wrong"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("401"), "{refused:?}");
}

#[test]
fn legacy_completions() {
    let server = start();
    let request =
        json!({"model": "smol", "prompt": "The capital of France is", "max_tokens": 8, "temperature": 0});
    let reply = server.post("/v1/completions", &request);
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    let plain = reply.json();
    assert!(plain["id"].as_str().unwrap().starts_with("cmpl-"));
    assert_eq!(plain["object"], "text_completion");
    let text = plain["choices"][0]["text"].as_str().unwrap().to_string();
    assert!(!text.is_empty());
    assert_eq!(plain["usage"]["completion_tokens"], 8);

    let mut echo = request.clone();
    echo["echo"] = json!(true);
    let echoed = server.post("/v1/completions", &echo).json();
    assert_eq!(echoed["choices"][0]["text"], format!("The capital of France is{text}"));

    // Token ids give the same continuation as the text they encode.
    let tokens =
        server.post("/tokenize", &json!({"prompt": "The capital of France is"})).json()["tokens"].clone();
    let mut by_ids = request.clone();
    by_ids["prompt"] = tokens;
    assert_eq!(server.post("/v1/completions", &by_ids).json()["choices"][0]["text"], text.as_str());
    let mut listed = request.clone();
    listed["prompt"] = json!(["The capital of France is"]);
    assert_eq!(server.post("/v1/completions", &listed).json()["choices"][0]["text"], text.as_str());

    let mut stream = echo.clone();
    stream["stream"] = json!(true);
    let events = sse_events(&server.post("/v1/completions", &stream));
    let chunks: Vec<Value> =
        events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    assert!(chunks.iter().all(|c| c["object"] == "text_completion"));
    let streamed: String = chunks.iter().map(|c| c["choices"][0]["text"].as_str().unwrap()).collect();
    assert_eq!(streamed, format!("The capital of France is{text}"));
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "length");
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));

    let error = server.post("/v1/completions", &json!({"model": "smol"})).error(400);
    assert_eq!(error["param"], "prompt");
    let error = server.post("/v1/completions", &json!({"prompt": ""})).error(400);
    assert_eq!(error["param"], "prompt");
    let error = server.post("/v1/completions", &json!({"prompt": []})).error(400);
    assert_eq!(error["param"], "prompt");
    let error = server.post("/v1/completions", &json!({"prompt": vec!["a"; 17]})).error(400);
    assert_eq!(error["param"], "prompt");
    let error = server.post("/v1/completions", &json!({"prompt": ["a", ""]})).error(400);
    assert_eq!(error["param"], "prompt[1]");

    // Several prompts, n choices each: index = prompt * n + choice; each
    // prompt counts once in usage.
    let other = "One, two, three,";
    let other_len = server.post("/tokenize", &json!({"prompt": other})).json()["count"].as_u64().unwrap();
    let mut batch = request.clone();
    batch["prompt"] = json!(["The capital of France is", other]);
    batch["n"] = json!(2);
    let reply = server.post("/v1/completions", &batch).json();
    let choices = reply["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 4, "{reply}");
    for (i, choice) in choices.iter().enumerate() {
        assert_eq!(choice["index"], i);
    }
    assert_eq!(choices[0]["text"], text.as_str());
    assert_eq!(choices[1]["text"], text.as_str());
    assert_eq!(choices[2]["text"], choices[3]["text"]);
    assert_eq!(
        reply["usage"]["prompt_tokens"],
        plain["usage"]["prompt_tokens"].as_u64().unwrap() + other_len
    );
    assert_eq!(reply["usage"]["completion_tokens"], 32);
    batch["stream"] = json!(true);
    let events = sse_events(&server.post("/v1/completions", &batch));
    let chunks: Vec<Value> =
        events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    for (i, choice) in choices.iter().enumerate() {
        let streamed: String = chunks
            .iter()
            .filter(|c| c["choices"][0]["index"] == i)
            .map(|c| c["choices"][0]["text"].as_str().unwrap())
            .collect();
        assert_eq!(streamed, choice["text"].as_str().unwrap());
    }
    let error = server.post("/v1/completions", &json!({"prompt": "x", "logprobs": true})).error(400);
    assert_eq!(error["param"], "logprobs");
    let error = server.post("/v1/completions", &json!({"prompt": "x", "logprobs": 21})).error(400);
    assert_eq!(error["param"], "logprobs");

    // Legacy logprobs: tokens, token_logprobs, top_logprobs maps, text_offset
    // (counted from the start of the echoed prompt).
    let mut with_logprobs = echo.clone();
    with_logprobs["logprobs"] = json!(2);
    let reply = server.post("/v1/completions", &with_logprobs).json();
    let logprobs = &reply["choices"][0]["logprobs"];
    let tokens: Vec<&str> =
        logprobs["tokens"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert_eq!(tokens.len(), 8, "{reply}");
    assert_eq!(tokens.concat(), text);
    assert_eq!(logprobs["text_offset"][0], "The capital of France is".len());
    assert_eq!(logprobs["token_logprobs"].as_array().unwrap().len(), 8);
    for (i, top) in logprobs["top_logprobs"].as_array().unwrap().iter().enumerate() {
        let top = top.as_object().unwrap();
        assert!(top.len() <= 2 && !top.is_empty());
        assert_eq!(top[tokens[i]], logprobs["token_logprobs"][i]);
    }
}

/// The sum of the samples named `name` whose labels include `labels`
/// (Prometheus text); panics if there is none.
fn sample(metrics: &str, name: &str, labels: &str) -> f64 {
    sample_sum(metrics, name, labels).unwrap_or_else(|| panic!("no {name}{{{labels}}} in {metrics}"))
}

/// As `sample`; `None` if there is none (a label set not seen yet).
fn sample_sum(metrics: &str, name: &str, labels: &str) -> Option<f64> {
    let values: Vec<f64> = metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = series.split_once('{').unwrap_or((series, ""));
            (series_name == name && series_labels.contains(labels)).then(|| value.parse().unwrap())
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

fn gauge(metrics: &str, name: &str) -> f64 {
    sample(metrics, name, "")
}

fn scrape(server: &Server) -> String {
    let reply = server.request("GET", "/metrics", &[], b"");
    assert_eq!(reply.status, 200);
    String::from_utf8(reply.body).unwrap()
}

#[test]
fn metrics_use_vllm_names_and_count_what_happened() {
    let server = start();
    let reply = server.request("GET", "/metrics", &[], b"");
    assert!(reply.header("content-type").unwrap().starts_with("application/openmetrics-text"));
    let before = String::from_utf8(reply.body).unwrap();
    for name in [
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "wgserve:kv_cache_blocks_used",
        "wgserve:kv_cache_blocks_total",
        "vllm:prefix_cache_queries_total",
        "vllm:prefix_cache_hits_total",
        "vllm:num_preemptions_total",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        "vllm:time_to_first_token_seconds_count",
        "vllm:inter_token_latency_seconds_count",
        "vllm:e2e_request_latency_seconds_count",
    ] {
        sample(&before, name, "model_name=\"smol\"");
    }
    assert!(gauge(&before, "wgserve:kv_cache_blocks_total") > 0.0);
    // The process's own memory, under Prometheus' standard name (Linux).
    #[cfg(target_os = "linux")]
    assert!(gauge(&before, "process_resident_memory_bytes") > 1e6, "{before}");

    // Two requests with one long prompt, one after the other: the second
    // finds the first's full blocks in the prefix cache.
    let long_prompt = "Tell me about the history of the river and its towns. ".repeat(8);
    let request = json!({"model": "smol", "prompt": long_prompt, "max_tokens": 5, "temperature": 0,
        "logit_bias": {"0": -100, "1": -100, "2": -100}});
    let usage = server.post("/v1/completions", &request).json()["usage"].clone();
    let prompt_tokens = usage["prompt_tokens"].as_f64().unwrap();
    server.post("/v1/completions", &request).json();

    let after = scrape(&server);
    let delta = |name: &str, labels: &str| {
        sample(&after, name, labels) - sample_sum(&before, name, labels).unwrap_or(0.0)
    };
    assert_eq!(delta("vllm:request_success_total", "finished_reason=\"length\""), 2.0, "{after}");
    assert_eq!(delta("vllm:generation_tokens_total", ""), 10.0, "{after}");
    // The second prompt's cached tokens are not computed again.
    let computed = delta("vllm:prompt_tokens_total", "");
    assert!(computed > prompt_tokens && computed < 2.0 * prompt_tokens, "{computed} of 2 x {prompt_tokens}");
    assert_eq!(delta("vllm:prefix_cache_queries_total", ""), 2.0 * prompt_tokens, "{after}");
    assert!(delta("vllm:prefix_cache_hits_total", "") >= 16.0, "{after}");
    assert_eq!(delta("vllm:time_to_first_token_seconds_count", ""), 2.0);
    assert_eq!(delta("vllm:inter_token_latency_seconds_count", ""), 8.0);
    assert_eq!(delta("vllm:e2e_request_latency_seconds_count", ""), 2.0);
    assert!(delta("vllm:e2e_request_latency_seconds_sum", "") > 0.0);
    assert!(
        delta("vllm:time_to_first_token_seconds_bucket", "le=\"+Inf\"") == 2.0,
        "histogram buckets: {after}"
    );
    assert_eq!(gauge(&after, "vllm:num_requests_running"), 0.0);
}

#[test]
fn a_client_that_disconnects_mid_stream_aborts_its_request() {
    let server = start();
    // SmolLM2's special tokens (0..=2, EOS among them) banned: it runs to max_tokens.
    let no_eos = json!({"0": -100, "1": -100, "2": -100});
    let body = chat_request(json!({"stream": true, "max_tokens": 1000, "logit_bias": no_eos})).to_string();
    let mut stream = TcpStream::connect(&server.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        server.addr,
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    // Read until a few content deltas have arrived (the first chunk, with
    // the role, comes before any step), then hang up.
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    while String::from_utf8_lossy(&received).matches("\"content\":").count() < 4 {
        let n = stream.read(&mut buffer).unwrap();
        assert!(n > 0, "the stream ended early: {}", String::from_utf8_lossy(&received));
        received.extend_from_slice(&buffer[..n]);
        assert!(
            received.starts_with(b"HTTP/1.1 200") || received.len() < 12,
            "{}",
            String::from_utf8_lossy(&received)
        );
    }
    let metrics = scrape(&server);
    assert_eq!(gauge(&metrics, "vllm:num_requests_running"), 1.0, "{metrics}");
    let aborted = |metrics: &str| {
        sample_sum(metrics, "vllm:request_success_total", "finished_reason=\"abort\"").unwrap_or(0.0)
    };
    let aborted_before = aborted(&metrics);
    drop(stream);
    // 1000 tokens take about a minute here (~15 tokens/s on lavapipe): an
    // idle engine within 10 s means the request was aborted, not finished.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = scrape(&server);
        if gauge(&metrics, "vllm:num_requests_running") == 0.0
            && gauge(&metrics, "vllm:kv_cache_usage_perc") == 0.0
            && aborted(&metrics) == aborted_before + 1.0
        {
            break;
        }
        assert!(Instant::now() < deadline, "the request still runs after the client left: {metrics}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // And the server goes on serving.
    let reply = server.post("/v1/chat/completions", &chat_request(json!({"max_tokens": 4})));
    assert_eq!(reply.status, 200);
}

/// The concatenated `delta.content` of a streamed chat completion.
fn streamed_content(server: &Server, body: &Value) -> String {
    let reply = server.post("/v1/chat/completions", body);
    sse_events(&reply)
        .iter()
        .filter(|event| event.as_str() != "[DONE]")
        .filter_map(|event| {
            let chunk: Value = serde_json::from_str(event).unwrap();
            chunk["choices"][0]["delta"]["content"].as_str().map(str::to_string)
        })
        .collect()
}

#[test]
fn sixteen_concurrent_streams_give_the_greedy_text_of_each_alone() {
    let server = start();
    let bodies: Vec<Value> = (0..16)
        .map(|i| {
            chat_request(json!({
                "stream": true,
                "messages": [{"role": "user", "content": format!("Count from {i} to {} in words.", i + 3)}],
            }))
        })
        .collect();
    let alone: Vec<String> = bodies.iter().map(|body| streamed_content(&server, body)).collect();
    let together: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> =
            bodies.iter().map(|body| scope.spawn(|| streamed_content(&server, body))).collect();
        handles.into_iter().map(|handle| handle.join().unwrap()).collect()
    });
    for (i, (alone, together)) in alone.iter().zip(&together).enumerate() {
        assert!(!alone.is_empty(), "request {i} streamed no text");
        assert_eq!(together, alone, "request {i} differs when 16 stream at once");
    }
}
