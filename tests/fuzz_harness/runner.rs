//! Runs inputs against a target: one at a time under `catch_unwind`, with
//! the allocation measured and capped, the time measured, and a watchdog
//! that saves the input and exits if one never returns.

use std::collections::{HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use super::Target;
use super::alloc;
use super::mutate::Mutator;

/// The fixed part of every allocation bound: what a parser may need however
/// small its input (a tokenizer's regexes, serde's buffers), with margin.
pub const FIXED_ALLOC_BYTES: usize = 64 << 20;
/// Past this one input aborts the process (after saving the input) rather
/// than take the machine's memory.
const HARD_CAP_BYTES: usize = 2 << 30;
/// An input slower than this is a finding.
pub const SLOW: Duration = Duration::from_secs(2);
/// An input still running after this is a hang: saved, and the process exits.
const HANG: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    Panic(String),
    Property(String),
    Alloc { peak_bytes: usize, bound_bytes: usize },
    Slow(Duration),
}

impl Failure {
    /// What makes two findings the same bug: the kind and the message with
    /// numbers blanked out.
    fn key(&self) -> String {
        match self {
            Failure::Panic(msg) => format!("panic {}", normalize(msg)),
            Failure::Property(msg) => format!("property {}", normalize(msg)),
            Failure::Alloc { .. } => "alloc".into(),
            Failure::Slow(_) => "slow".into(),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Failure::Panic(_) => "panic",
            Failure::Property(_) => "property",
            Failure::Alloc { .. } => "alloc",
            Failure::Slow(_) => "slow",
        }
    }
}

pub struct Finding {
    pub failure: Failure,
    pub input: Vec<u8>,
    pub saved: Option<PathBuf>,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} on a {}-byte input", self.failure, self.input.len())?;
        if let Some(path) = &self.saved {
            write!(f, " (saved to {})", path.display())?;
        }
        write!(f, "\n  input: {}", preview(&self.input))
    }
}

/// Hex of the first bytes, or the text when it is printable.
pub fn preview(input: &[u8]) -> String {
    let head = &input[..input.len().min(512)];
    match std::str::from_utf8(head) {
        Ok(text) if !text.chars().any(|c| c.is_control() && c != '\n') => format!("{text:?}"),
        _ => head.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// A message with its particulars blanked out (numbers, and whatever is
/// quoted or bracketed: names, values, byte dumps), so that failures group
/// by kind.
pub fn normalize(msg: &str) -> String {
    let line = msg.lines().next().unwrap_or_default();
    {
        let mut out = String::new();
        let mut depth = 0usize;
        let mut in_quote: Option<char> = None;
        for c in line.chars() {
            match (in_quote, c) {
                (Some(q), c) if c == q => in_quote = None,
                (Some(_), _) => {}
                (None, '`' | '"') => {
                    in_quote = Some(c);
                    out.push('_');
                }
                (None, '[' | '{' | '(') => {
                    depth += 1;
                    out.push('_');
                }
                (None, ']' | '}' | ')') => depth = depth.saturating_sub(1),
                (None, _) if depth > 0 => {}
                (None, c) if c.is_ascii_digit() => {
                    if !out.ends_with('#') {
                        out.push('#');
                    }
                }
                (None, c) => out.push(c),
            }
        }
        out.chars().take(160).collect()
    }
}

/// Where findings are saved: `target/fuzz/failures/<target>/`.
pub fn failures_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz/failures").join(target)
}

/// Where fixed findings are kept and replayed by `make test`.
pub fn regressions_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/regressions").join(target)
}

fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

fn save(target: &str, kind: &str, input: &[u8]) -> Option<PathBuf> {
    let dir = failures_dir(target);
    std::fs::create_dir_all(&dir).ok()?;
    let path = dir.join(format!("{kind}-{:016x}", fnv64(input)));
    std::fs::write(&path, input).ok()?;
    Some(path)
}

/// The input each thread is running, for the watchdog and the allocator's
/// over-cap hook.
struct Running {
    target: &'static str,
    started: Instant,
    input: Vec<u8>,
}

static RUNNING: Mutex<Option<HashMap<ThreadId, Running>>> = Mutex::new(None);
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);
static SETUP: Once = Once::new();

thread_local! {
    static IN_TARGET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn with_running<T>(f: impl FnOnce(&mut HashMap<ThreadId, Running>) -> T) -> T {
    let mut guard = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(HashMap::new))
}

/// The panic hook (records panics inside targets instead of printing
/// them), the watchdog thread and the allocator's hook; once per process.
fn setup() {
    SETUP.call_once(|| {
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_TARGET.with(|t| t.get()) {
                let payload = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                let place = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
                *LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!("{payload} at {place}"));
            } else {
                default_hook(info);
            }
        }));
        alloc::set_over_cap_hook(|size| {
            let id = std::thread::current().id();
            with_running(|running| {
                if let Some(r) = running.get(&id) {
                    let saved = save(r.target, "alloc", &r.input);
                    eprintln!(
                        "fuzz {}: one input asked for {size} more bytes, past the hard cap of {HARD_CAP_BYTES}; \
                         aborting. Input saved to {saved:?}: {}",
                        r.target,
                        preview(&r.input)
                    );
                }
            });
        });
        std::thread::spawn(|| {
            loop {
                std::thread::sleep(Duration::from_millis(250));
                with_running(|running| {
                    for r in running.values() {
                        if r.started.elapsed() > HANG {
                            let saved = save(r.target, "hang", &r.input);
                            eprintln!(
                                "fuzz {}: an input has run for over {HANG:?}: a hang. Input saved to {saved:?}: {}",
                                r.target,
                                preview(&r.input)
                            );
                            std::process::exit(2);
                        }
                    }
                });
            }
        });
    });
}

/// Prepares the target (its shared state is not charged to an input).
pub fn prepare(target: &Target) {
    setup();
    (target.prepare)();
}

/// Runs one input; `Ok` is the outcome's description.
pub fn run_one(target: &Target, input: &[u8]) -> Result<String, Failure> {
    run_measured(target, input).result
}

/// One input's outcome with what it cost.
pub struct Measured {
    pub result: Result<String, Failure>,
    /// Peak bytes allocated above what was live when the input started.
    pub peak_bytes: usize,
    pub elapsed: Duration,
}

pub fn run_measured(target: &Target, input: &[u8]) -> Measured {
    setup();
    let id = std::thread::current().id();
    with_running(|running| {
        running.insert(id, Running { target: target.name, started: Instant::now(), input: input.to_vec() })
    });
    let bound_bytes =
        input.len().saturating_mul(target.alloc_per_input_byte).saturating_add(FIXED_ALLOC_BYTES);
    let started = Instant::now();
    IN_TARGET.with(|t| t.set(true));
    let live = alloc::start(HARD_CAP_BYTES);
    let result = catch_unwind(AssertUnwindSafe(|| (target.run)(input)));
    let peak_bytes = alloc::finish(live);
    IN_TARGET.with(|t| t.set(false));
    let elapsed = started.elapsed();
    with_running(|running| running.remove(&id));
    let result = match result {
        Ok(Ok(_)) if peak_bytes > bound_bytes => Err(Failure::Alloc { peak_bytes, bound_bytes }),
        Ok(Ok(_)) if elapsed > SLOW => Err(Failure::Slow(elapsed)),
        Ok(Ok(signature)) => Ok(signature),
        Ok(Err(property)) => Err(Failure::Property(property)),
        Err(_) => {
            let msg = LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or_default();
            Err(Failure::Panic(msg))
        }
    };
    Measured { result, peak_bytes, elapsed }
}

/// When to stop a run.
pub struct Budget {
    pub max_inputs: u64,
    pub max_time: Duration,
}

pub struct Report {
    pub inputs: u64,
    pub elapsed: Duration,
    pub corpus_len: usize,
    /// The largest allocation peak of one input, and that input's size.
    pub max_peak: (usize, usize),
    pub slowest: Duration,
    /// One per distinct failure.
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn per_second(&self) -> f64 {
        self.inputs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Mutates the corpus from `seed` until the budget is spent. `progress`
/// gets the report so far about every `progress_every`.
pub fn fuzz(
    target: &Target,
    seed: u64,
    budget: &Budget,
    progress_every: Duration,
    mut progress: impl FnMut(&Report),
) -> Report {
    prepare(target);
    let mut corpus = (target.seeds)();
    let num_seeds = corpus.len();
    let mut seen: HashSet<String> = HashSet::new();
    let mut failure_keys: HashSet<String> = HashSet::new();
    let mut report = Report {
        inputs: 0,
        elapsed: Duration::ZERO,
        corpus_len: 0,
        max_peak: (0, 0),
        slowest: Duration::ZERO,
        findings: Vec::new(),
    };
    let mut record = |input: Vec<u8>, failure: Failure, report: &mut Report| {
        if failure_keys.insert(failure.key()) {
            let saved = save(target.name, failure.kind(), &input);
            report.findings.push(Finding { failure, input, saved });
        }
    };
    for input in corpus.clone() {
        match run_one(target, &input) {
            Ok(signature) => {
                seen.insert(normalize(&signature));
            }
            Err(failure) => record(input, failure, &mut report),
        }
    }
    let mut mutator = Mutator::new(seed, target.max_len);
    let started = Instant::now();
    let mut last_progress = started;
    while report.inputs < budget.max_inputs && started.elapsed() < budget.max_time {
        // Half the time from a seed: valid structure reaches deeper code
        // than the corpus's broken variants.
        let base = if mutator.below(2) == 0 { mutator.below(num_seeds) } else { mutator.below(corpus.len()) };
        let other = mutator.below(corpus.len());
        let input = mutator.mutate(&corpus[base], &corpus[other], target.dictionary);
        report.inputs += 1;
        let measured = run_measured(target, &input);
        report.max_peak = report.max_peak.max((measured.peak_bytes, input.len()));
        report.slowest = report.slowest.max(measured.elapsed);
        match measured.result {
            // A new kind of outcome: keep the input to mutate further.
            Ok(signature) => {
                if corpus.len() < 4096 && seen.insert(normalize(&signature)) {
                    corpus.push(input);
                }
            }
            Err(failure) => record(input, failure, &mut report),
        }
        if last_progress.elapsed() >= progress_every {
            last_progress = Instant::now();
            report.elapsed = started.elapsed();
            report.corpus_len = corpus.len();
            progress(&report);
        }
    }
    report.elapsed = started.elapsed();
    report.corpus_len = corpus.len();
    report
}

/// Runs every saved regression input of `target`: (file, failure) for each
/// that still fails.
pub fn replay_regressions(target: &Target) -> Vec<(PathBuf, Failure)> {
    prepare(target);
    let Ok(entries) = std::fs::read_dir(regressions_dir(target.name)) else { return Vec::new() };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    paths.sort();
    let mut failing = Vec::new();
    for path in paths {
        let Ok(input) = std::fs::read(&path) else { continue };
        if let Err(failure) = run_one(target, &input) {
            failing.push((path, failure));
        }
    }
    failing
}
