//! Runs a check script of tests/openai_client/ with the official `openai`
//! Python client (run.sh makes its venv) and returns what it printed.

use std::process::Command;

/// `script` (check.py, structured.py) with `args`; panics with its output
/// unless it exits 0 having printed ": ok".
pub fn run_check(script: &str, args: &[String]) -> String {
    let run = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openai_client/run.sh");
    let output = Command::new("bash")
        .arg(run)
        .env("CHECK", script)
        .args(args)
        .output()
        .expect("cannot run tests/openai_client/run.sh");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the openai client's {script} failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(": ok"), "{stdout}");
    stdout
}
