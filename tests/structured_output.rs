//! Structured output through the official `openai` Python client against
//! `wgserve serve` with the default model (tests/openai_client/structured.py):
//! every answer to a corpus of JSON schemas, at temperature 0 and 1 with
//! several seeds, parses and validates (the `jsonschema` package checks);
//! json_object, vLLM's choice and regex, `n` > 1, a 400 for a schema that
//! does not compile, and `chat.completions.parse` with a Pydantic model.

mod common;

use common::openai_client::run_check;
use common::server::Server;

#[test]
fn every_constrained_answer_validates_against_its_schema() {
    let server = Server::start(&["--api-key", "client-key", "--served-model-name", "smol"]);
    let args = [format!("http://{}/v1", server.addr), "client-key".into(), "smol".into()];
    println!("{}", run_check("structured.py", &args));
}
