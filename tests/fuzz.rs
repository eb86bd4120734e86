//! The short fuzz run of `make test`: each target for a fixed number of
//! mutated inputs from a fixed seed (a few seconds each here), and every saved
//! regression input in tests/fuzz/regressions/<target>/ replayed. Long runs:
//! `make fuzz TARGET=gguf SECONDS=600` (examples/fuzz.rs).

#[path = "fuzz_harness/mod.rs"]
mod fuzz_harness;

use std::time::Duration;

use fuzz_harness::runner::{self, Budget};

/// The same seed every run, so a failure here reproduces.
const SEED: u64 = 0x5eed_f022;

fn short_run(name: &str, max_inputs: u64) {
    let target = fuzz_harness::target(name).expect("a known target");
    // Inputs, not time, end the run so that it is deterministic; the time
    // limit only guards a much slower machine.
    let budget = Budget { max_inputs, max_time: Duration::from_secs(60) };
    let report = runner::fuzz(&target, SEED, &budget, Duration::from_secs(3600), |_| {});
    println!(
        "{name}: {} inputs in {:.1?} ({:.0}/s), corpus {}",
        report.inputs,
        report.elapsed,
        report.per_second(),
        report.corpus_len
    );
    let findings: Vec<String> = report.findings.iter().map(|f| f.to_string()).collect();
    assert!(findings.is_empty(), "{name}: {} distinct failures:\n{}", findings.len(), findings.join("\n"));
}

#[test]
fn gguf_short_run() {
    short_run("gguf", 300_000);
}

#[test]
fn safetensors_short_run() {
    short_run("safetensors", 300_000);
}

#[test]
fn tokenizer_short_run() {
    short_run("tokenizer", 5_000);
}

#[test]
fn http_short_run() {
    short_run("http", 400_000);
}

#[test]
fn saved_regressions_pass() {
    let mut failing = Vec::new();
    for target in fuzz_harness::targets() {
        for (path, failure) in runner::replay_regressions(&target) {
            failing.push(format!("{}: {failure:?}", path.display()));
        }
    }
    assert!(failing.is_empty(), "regression inputs fail again:\n{}", failing.join("\n"));
}

/// Inputs far larger than the mutator makes (it stays under 64 KiB, where
/// the fixed part of the bound dominates): each target's allocation per
/// input byte, measured against its bound, and its time.
#[test]
fn large_inputs_stay_within_their_bounds() {
    let gguf_u8_array = {
        let count = 4usize << 20;
        let mut raw = b"GGUF".to_vec();
        raw.extend(3u32.to_le_bytes());
        raw.extend(0u64.to_le_bytes()); // tensors
        raw.extend(1u64.to_le_bytes()); // metadata entries
        raw.extend(3u64.to_le_bytes());
        raw.extend(b"big");
        raw.extend(9u32.to_le_bytes()); // array
        raw.extend(0u32.to_le_bytes()); // of u8
        raw.extend((count as u64).to_le_bytes());
        raw.resize(raw.len() + count, 7);
        raw
    };
    let mut text = vec![1u8];
    text.extend("Hello <|im_end|> wörld 12345, ".repeat(8 << 10).as_bytes());
    let mut ids_body = br#"{"input": ["#.to_vec();
    ids_body.extend("1,".repeat(1 << 20).as_bytes());
    ids_body.extend(br#"1], "prompt": "x"}"#);
    let cases = [("gguf", gguf_u8_array), ("tokenizer", text), ("http", ids_body)];
    for (name, input) in cases {
        let target = fuzz_harness::target(name).expect("a known target");
        runner::prepare(&target);
        let measured = runner::run_measured(&target, &input);
        println!(
            "{name}: {} bytes in, peak {:.1} MiB ({:.1} per input byte, bound {} + 64 MiB), {:.0?}",
            input.len(),
            measured.peak_bytes as f64 / (1 << 20) as f64,
            measured.peak_bytes as f64 / input.len() as f64,
            target.alloc_per_input_byte,
            measured.elapsed
        );
        assert!(measured.result.is_ok(), "{name}: {:?}", measured.result);
    }
}

/// The harness can fail: a panicking, an over-allocating and a property-
/// breaking target are each reported, with the input.
#[test]
fn the_harness_catches_panics_allocations_and_broken_properties() {
    use fuzz_harness::Target;
    use fuzz_harness::runner::{Failure, run_one};
    let planted = |run: fn(&[u8]) -> Result<String, String>| Target {
        name: "planted",
        seeds: Vec::new,
        prepare: || {},
        run,
        dictionary: &[],
        max_len: 16,
        alloc_per_input_byte: 1,
    };
    let panics = planted(|input| if input.first() == Some(&7) { panic!("seven") } else { Ok(String::new()) });
    assert_eq!(run_one(&panics, &[1]), Ok(String::new()));
    assert!(matches!(run_one(&panics, &[7]), Err(Failure::Panic(msg)) if msg.contains("seven")));
    let hungry = planted(|input| Ok(vec![0u8; 100 << 20].len().to_string() + &input.len().to_string()));
    assert!(
        matches!(run_one(&hungry, &[0]), Err(Failure::Alloc { peak_bytes, .. }) if peak_bytes >= 100 << 20)
    );
    let broken = planted(|_| Err("broken".into()));
    assert_eq!(run_one(&broken, &[]), Err(Failure::Property("broken".into())));
}
