//! The long fuzz run: `cargo run --release --example fuzz -- --target gguf
//! --seconds 600 [--seed N]` (or `make fuzz TARGET=gguf SECONDS=600`).
//! Prints inputs tried, inputs/s and distinct failures as it goes; failing
//! inputs are saved under target/fuzz/failures/<target>/ (move them to
//! tests/fuzz/regressions/<target>/ once fixed). Exits non-zero on a
//! failure. The harness is tests/fuzz_harness/, shared with tests/fuzz.rs.

#[path = "../tests/fuzz_harness/mod.rs"]
mod fuzz_harness;

use std::process::ExitCode;
use std::time::Duration;

use fuzz_harness::runner::{self, Budget, Report};

fn usage() -> ExitCode {
    let names: Vec<&str> = fuzz_harness::targets().iter().map(|t| t.name).collect();
    eprintln!("usage: fuzz --target <{}|all> [--seconds N] [--seed N]", names.join("|"));
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut target = None;
    let mut seconds = 60u64;
    let mut seed = 1u64;
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1);
        match (args[i].as_str(), value) {
            ("--target", Some(v)) => target = Some(v.clone()),
            ("--seconds", Some(v)) => match v.parse() {
                Ok(s) => seconds = s,
                Err(_) => return usage(),
            },
            ("--seed", Some(v)) => match v.parse() {
                Ok(s) => seed = s,
                Err(_) => return usage(),
            },
            _ => return usage(),
        }
        i += 2;
    }
    let Some(target) = target else { return usage() };
    let targets: Vec<_> = match target.as_str() {
        "all" => fuzz_harness::targets(),
        name => match fuzz_harness::target(name) {
            Some(t) => vec![t],
            None => return usage(),
        },
    };
    let mut failures = 0;
    for target in &targets {
        let budget = Budget { max_inputs: u64::MAX, max_time: Duration::from_secs(seconds) };
        let print = |label: &str, r: &Report| {
            println!(
                "{label} {}: {} inputs in {:.0?}, {:.0} inputs/s, corpus {}, distinct failures {}, \
                 largest peak {:.1} MiB (a {}-byte input), slowest {:.0?}",
                target.name,
                r.inputs,
                r.elapsed,
                r.per_second(),
                r.corpus_len,
                r.findings.len(),
                r.max_peak.0 as f64 / (1 << 20) as f64,
                r.max_peak.1,
                r.slowest
            );
        };
        let report = runner::fuzz(target, seed, &budget, Duration::from_secs(10), |r| print("...", r));
        print("done", &report);
        for finding in &report.findings {
            println!("  FAILURE {finding}");
        }
        failures += report.findings.len();
    }
    if failures == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
