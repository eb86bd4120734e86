//! Structured output through the official `openai` Python client against
//! `wgserve serve` with the default model (tests/openai_client/structured.py):
//! every answer to a corpus of JSON schemas, at temperature 0 and 1 with
//! several seeds, parses and validates (the `jsonschema` package checks);
//! json_object, vLLM's choice and regex, `n` > 1, a 400 for a schema that
//! does not compile, and `chat.completions.parse` with a Pydantic model.

mod common;

use std::process::Command;

use common::server::Server;

#[test]
fn every_constrained_answer_validates_against_its_schema() {
    let server = Server::start(&["--api-key", "client-key", "--served-model-name", "smol"]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openai_client/run.sh");
    let output = Command::new("bash")
        .arg(script)
        .env("CHECK", "structured.py")
        .arg(format!("http://{}/v1", server.addr))
        .args(["client-key", "smol"])
        .output()
        .expect("cannot run tests/openai_client/run.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the structured-output check failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(": ok"), "{stdout}");
    println!("{stdout}");
}
