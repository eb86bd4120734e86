//! The official `openai` Python client, unmodified, against `wgserve
//! serve`: tests/openai_client/run.sh makes its venv (pinned client from
//! PyPI) and runs check.py, which asserts each answer: models, chat and
//! completions on the chat model, `embeddings.create` (base64, the
//! client's default, and float) on the default embedding model.

mod common;

use std::process::Command;

use common::server::Server;

#[test]
fn the_official_openai_python_client_works_unmodified() {
    let server = Server::start(&["--api-key", "client-key", "--served-model-name", "smol"]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openai_client/run.sh");
    let output = Command::new("bash")
        .arg(script)
        .arg(format!("http://{}/v1", server.addr))
        .args(["client-key", "smol", "all-MiniLM-L6-v2"])
        .output()
        .expect("cannot run tests/openai_client/run.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the openai client check failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(": ok"), "{stdout}");
    println!("{stdout}");
}
