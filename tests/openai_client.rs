//! The official `openai` Python client, unmodified, against `wgserve
//! serve`: tests/openai_client/run.sh makes its venv (pinned client from
//! PyPI) and runs check.py, which asserts each answer: models, chat and
//! completions on the chat model, `embeddings.create` (base64, the
//! client's default, and float) on the default embedding model.

mod common;

use common::openai_client::run_check;
use common::server::Server;

#[test]
fn the_official_openai_python_client_works_unmodified() {
    let server = Server::start(&["--api-key", "client-key", "--served-model-name", "smol"]);
    let args =
        [format!("http://{}/v1", server.addr), "client-key".into(), "smol".into(), "all-MiniLM-L6-v2".into()];
    println!("{}", run_check("check.py", &args));
}
