//! Failure containment through the real server: one client's bad request
//! is its own 400 and the server serves everyone else; an engine failure
//! (a device fault injected with the hidden `--inject-device-fault` flag)
//! rebuilds the engine and serving resumes, or, with the restarts spent,
//! the process exits non-zero for its supervisor; a full waiting queue
//! answers 429 with Retry-After.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::server::Server;

fn completion(max_tokens: u64) -> Value {
    json!({"prompt": "The capital of France is", "max_tokens": max_tokens, "temperature": 0})
}

/// Polls `path` until it answers `status`, or fails after `deadline`.
fn wait_for_status(server: &Server, path: &str, status: u16, deadline: Duration) {
    let start = Instant::now();
    loop {
        let reply = server.get(path);
        if reply.status == status {
            return;
        }
        assert!(start.elapsed() < deadline, "{path} still answers {}", reply.status);
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_bad_request_is_its_own_400_and_the_server_serves_on() {
    let server = Server::start(&["--no-embedding-model"]);
    // A token id outside the vocabulary once failed the engine for everyone.
    let error =
        server.post("/v1/completions", &json!({"prompt": [1, 2, 1_000_000_000], "max_tokens": 2})).error(400);
    assert_eq!(error["param"], "prompt[2]", "{error}");
    assert!(error["message"].as_str().unwrap().contains("1000000000"), "{error}");
    let two_prompts = json!({"prompt": [[1, 2], [3, 49152]], "max_tokens": 2});
    assert_eq!(server.post("/v1/completions", &two_prompts).error(400)["param"], "prompt[1][1]");
    // OpenAI requires `content` in a user message.
    let no_content = json!({"messages": [{"role": "user"}], "max_tokens": 2});
    assert_eq!(server.post("/v1/chat/completions", &no_content).error(400)["param"], "messages[0].content");
    let image = json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]});
    assert_eq!(server.post("/v1/chat/completions", &image).error(400)["param"], "messages[0].content[0]");
    // Everyone else is still served.
    assert_eq!(server.get("/health").status, 200);
    let reply = server.post("/v1/completions", &completion(3));
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(reply.json()["usage"]["completion_tokens"], 3);
}

#[test]
fn an_engine_failure_rebuilds_the_engine_and_serving_resumes() {
    let server =
        Server::start(&["--no-embedding-model", "--inject-device-fault", "1", "--max-engine-restarts", "2"]);
    // The first step's forward pass fails: the request in it gets a 503
    // with the cause, and /health says the engine is restarting.
    let error = server.post("/v1/completions", &completion(3)).error(503);
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("the engine failed") && message.contains("device was lost"), "{error}");
    let health = server.get("/health");
    let health_error = health.error(503);
    assert!(health_error["message"].as_str().unwrap().contains("restarting"), "{health_error}");
    assert!(health.header("retry-after").is_some());
    // The rebuilt engine (new device, model reloaded) serves again.
    wait_for_status(&server, "/health", 200, Duration::from_secs(180));
    let reply = server.post("/v1/completions", &completion(3));
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    let metrics = String::from_utf8(server.get("/metrics").body).unwrap();
    let restarts = metrics.lines().find(|l| l.starts_with("wgserve:engine_restarts_total")).unwrap_or("");
    assert!(restarts.ends_with(" 1"), "expected one restart: {restarts:?}");
    // The counters went on across the restart: this request's tokens count.
    let generated = metrics.lines().find(|l| l.starts_with("vllm:generation_tokens_total")).unwrap_or("");
    assert!(generated.ends_with(" 3"), "{generated:?}");
}

#[test]
fn the_server_exits_non_zero_when_its_restarts_are_spent() {
    // Every engine fails at its first step; one restart is allowed.
    let mut server = Server::start(&[
        "--no-embedding-model",
        "--inject-device-fault",
        "1:9",
        "--max-engine-restarts",
        "1",
    ]);
    server.post("/v1/completions", &completion(2)).error(503);
    wait_for_status(&server, "/health", 200, Duration::from_secs(180));
    server.post("/v1/completions", &completion(2)).error(503);
    let status = server.wait_exit(Duration::from_secs(60));
    assert!(!status.success(), "exited with {status}");
}

/// A streamed completion on its own connection, read until its first
/// token has arrived (so the engine runs it).
fn started_stream(server: &Server, max_tokens: u64) -> TcpStream {
    let body = json!({"prompt": "Once upon a time", "max_tokens": max_tokens, "ignore_eos": true,
        "temperature": 0, "stream": true})
    .to_string();
    let mut stream = TcpStream::connect(&server.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!(
        "POST /v1/completions HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Connection: close\r\nContent-Length: {}\r\n\r\n",
        server.addr,
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    stream
}

fn read_until(stream: &mut TcpStream, needle: &str) {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&received).contains(needle) {
        let n = stream.read(&mut buffer).unwrap();
        assert!(n > 0, "the stream ended early: {}", String::from_utf8_lossy(&received));
        received.extend_from_slice(&buffer[..n]);
    }
}

#[test]
fn a_full_waiting_queue_answers_429_with_retry_after() {
    let server =
        Server::start(&["--no-embedding-model", "--max-num-seqs", "1", "--max-waiting-requests", "1"]);
    // One request runs (the only place in the batch), one waits behind it.
    let mut running = started_stream(&server, 400);
    read_until(&mut running, "\"text\"");
    let mut waiting = started_stream(&server, 4);
    read_until(&mut waiting, "200 OK");
    let full = server.post("/v1/completions", &completion(2));
    let error = full.error(429);
    assert_eq!(error["type"], "rate_limit_error", "{error}");
    assert_eq!(full.header("retry-after"), Some("1"));
    // The running client leaves: the queue drains and requests are served.
    drop(running);
    drop(waiting);
    let start = Instant::now();
    loop {
        let reply = server.post("/v1/completions", &completion(2));
        if reply.status == 200 {
            break;
        }
        assert_eq!(reply.status, 429, "{}", String::from_utf8_lossy(&reply.body));
        assert!(start.elapsed() < Duration::from_secs(60), "the queue never drained");
        std::thread::sleep(Duration::from_millis(100));
    }
}
