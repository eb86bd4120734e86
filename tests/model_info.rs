//! `wgserve info` on files that load and files that do not: it names the
//! architecture, and when a file cannot run, exactly why (an unknown
//! architecture, a missing tensor, a setting that changes the math).
//! The files are tiny hand-made Gemma 3 GGUFs with random f32 weights.

mod common;

use std::process::Command;

use common::temp_dir::TempDir;

#[path = "common/gguf_writer.rs"]
mod gguf_writer;
use gguf_writer::{TestTensor, build_gguf};
use wgserve::formats::gguf::GgufValue;

const HIDDEN: u64 = 64;
const HEAD_DIM: u64 = 32;
const HEADS: u64 = 2;
const INTERMEDIATE: u64 = 64;
const LAYERS: u64 = 2;
const F32: u32 = 0;
const TOKENS: [&str; 8] = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>", "▁a", "b"];

fn random_f32(len: u64, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .flat_map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let value = ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2;
            value.to_le_bytes()
        })
        .collect()
}

/// GGUF dims are innermost first: a `[rows, cols]` matrix is `[cols, rows]`.
fn tensor(name: String, dims: &[u64], seed: u64) -> TestTensor {
    let len = dims.iter().product();
    TestTensor {
        name: Box::leak(name.into_boxed_str()),
        dims: dims.to_vec(),
        type_id: F32,
        data: random_f32(len, seed),
    }
}

fn tiny_gemma3_tensors() -> Vec<TestTensor> {
    let vocab = TOKENS.len() as u64;
    let (q_rows, kv_rows) = (HEADS * HEAD_DIM, HEAD_DIM);
    let mut tensors = vec![
        tensor("token_embd.weight".into(), &[HIDDEN, vocab], 1),
        tensor("output_norm.weight".into(), &[HIDDEN], 2),
    ];
    for layer in 0..LAYERS {
        let name = |leaf: &str| format!("blk.{layer}.{leaf}.weight");
        let seed = 100 * (layer + 1);
        tensors.extend([
            tensor(name("attn_norm"), &[HIDDEN], seed),
            tensor(name("attn_q"), &[HIDDEN, q_rows], seed + 1),
            tensor(name("attn_k"), &[HIDDEN, kv_rows], seed + 2),
            tensor(name("attn_v"), &[HIDDEN, kv_rows], seed + 3),
            tensor(name("attn_q_norm"), &[HEAD_DIM], seed + 4),
            tensor(name("attn_k_norm"), &[HEAD_DIM], seed + 5),
            tensor(name("attn_output"), &[q_rows, HIDDEN], seed + 6),
            tensor(name("post_attention_norm"), &[HIDDEN], seed + 7),
            tensor(name("ffn_norm"), &[HIDDEN], seed + 8),
            tensor(name("ffn_gate"), &[HIDDEN, INTERMEDIATE], seed + 9),
            tensor(name("ffn_up"), &[HIDDEN, INTERMEDIATE], seed + 10),
            tensor(name("ffn_down"), &[INTERMEDIATE, HIDDEN], seed + 11),
            tensor(name("post_ffw_norm"), &[HIDDEN], seed + 12),
        ]);
    }
    tensors
}

fn tiny_gemma3_metadata() -> Vec<(&'static str, GgufValue)> {
    let strings =
        |items: &[&str]| GgufValue::Array(items.iter().map(|t| GgufValue::String(t.to_string())).collect());
    let types = TOKENS.iter().map(|t| GgufValue::I32(if t.starts_with('<') { 3 } else { 1 })).collect();
    vec![
        ("general.architecture", GgufValue::String("gemma3".into())),
        ("gemma3.context_length", GgufValue::U32(128)),
        ("gemma3.embedding_length", GgufValue::U32(HIDDEN as u32)),
        ("gemma3.block_count", GgufValue::U32(LAYERS as u32)),
        ("gemma3.feed_forward_length", GgufValue::U32(INTERMEDIATE as u32)),
        ("gemma3.attention.head_count", GgufValue::U32(HEADS as u32)),
        ("gemma3.attention.head_count_kv", GgufValue::U32(1)),
        ("gemma3.attention.key_length", GgufValue::U32(HEAD_DIM as u32)),
        ("gemma3.attention.value_length", GgufValue::U32(HEAD_DIM as u32)),
        ("gemma3.attention.layer_norm_rms_epsilon", GgufValue::F32(1e-6)),
        ("gemma3.attention.sliding_window", GgufValue::U32(16)),
        ("gemma3.rope.freq_base", GgufValue::F32(1e6)),
        ("tokenizer.ggml.model", GgufValue::String("llama".into())),
        ("tokenizer.ggml.tokens", strings(&TOKENS)),
        ("tokenizer.ggml.scores", GgufValue::Array(TOKENS.iter().map(|_| GgufValue::F32(0.0)).collect())),
        ("tokenizer.ggml.token_type", GgufValue::Array(types)),
        ("tokenizer.ggml.bos_token_id", GgufValue::U32(2)),
        ("tokenizer.ggml.eos_token_id", GgufValue::U32(1)),
        ("tokenizer.ggml.unknown_token_id", GgufValue::U32(3)),
        ("tokenizer.ggml.add_bos_token", GgufValue::Bool(true)),
    ]
}

/// `wgserve info` on a file made of this metadata and these tensors.
fn info(name: &str, metadata: &[(&str, GgufValue)], tensors: &[TestTensor]) -> String {
    info_with(name, metadata, tensors, &[])
}

/// `info`, with these flags after the model's path.
fn info_with(name: &str, metadata: &[(&str, GgufValue)], tensors: &[TestTensor], flags: &[&str]) -> String {
    let dir = TempDir::new("model_info", name);
    let path = dir.0.join(format!("{name}.gguf"));
    std::fs::write(&path, build_gguf(3, metadata, tensors, 32)).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_wgserve"))
        .args(["info", "--model"])
        .arg(&path)
        .args(flags)
        .output()
        .unwrap();
    assert!(output.status.success(), "wgserve info failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn info_says_a_complete_file_loads() {
    let out = info("complete", &tiny_gemma3_metadata(), &tiny_gemma3_tensors());
    assert!(out.contains("architecture: gemma3, 2 layers, hidden 64"), "{out}");
    assert!(out.contains("sliding window: 16 tokens on 5 of every 6 layers"), "{out}");
    assert!(out.contains("tokenizer: SentencePiece, 8 tokens"), "{out}");
    assert!(out.contains("chat template: none in the file; the family's published one is used"), "{out}");
    assert!(out.contains("loads: yes"), "{out}");
    // The KV capacity per dtype: f16 (the default) holds twice f32's tokens.
    let kv = out.lines().find(|l| l.starts_with("KV cache (--kv-cache-memory 512 MiB): ")).expect(&out);
    let numbers: Vec<usize> = kv.split([' ', ':']).filter_map(|w| w.parse().ok()).collect();
    assert!(matches!(numbers[..], [512, f16, f32] if f32 > 0 && f16 == 2 * f32), "{kv}");
    assert!(kv.ends_with("--kv-cache-dtype f16"), "{kv}");
    // q8_0: 1.0625 bytes per element against f16's 2, on a line of its own.
    let q8 = out.lines().find(|l| l.starts_with("KV cache in q8_0: ")).expect(&out);
    let q8_tokens: Vec<usize> = q8.split(' ').filter_map(|w| w.parse().ok()).collect();
    assert!(matches!(q8_tokens[..], [t, ..] if t > numbers[1] && t < 2 * numbers[1]), "{q8} against {kv}");
}

/// The kernel flags reach the adapter `info` reports and loads with.
#[test]
fn info_loads_with_the_kernels_the_flags_ask_for() {
    let (metadata, tensors) = (tiny_gemma3_metadata(), tiny_gemma3_tensors());
    let out = info_with("gpu_family", &metadata, &tensors, &["--kernel-family", "gpu", "--no-subgroups"]);
    assert!(out.contains("kernels: gpu"), "{out}");
    assert!(out.contains("not used by the kernels)"), "{out}");
    assert!(out.contains("loads: yes"), "{out}");
    let out = info_with("cpu_family", &metadata, &tensors, &["--kernel-family", "cpu"]);
    assert!(out.contains("kernels: cpu"), "{out}");
    // Kernels use subgroups of 8 lanes or more: "subgroups true (8-8 lanes, ...".
    let min_lanes =
        out.split_once("subgroups true (").and_then(|(_, rest)| rest.split('-').next()?.parse::<u32>().ok());
    let usable = min_lanes.is_some_and(|lanes| lanes >= 8);
    assert_eq!(out.contains(", used by the kernels)"), usable, "{out}");
    // f16 arithmetic: the GPU family's, where the adapter has shader-f16.
    let out = info_with("f16_cpu", &metadata, &tensors, &["--kernel-family", "cpu", "--f16-arithmetic"]);
    assert!(
        out.contains("GPU: --f16-arithmetic: f16 arithmetic is in the gpu kernel family's tiles"),
        "{out}"
    );
    assert!(!out.contains("loads: yes"), "{out}");
    let out = info_with("f16_gpu", &metadata, &tensors, &["--kernel-family", "gpu", "--f16-arithmetic"]);
    if out.contains("features: shader-f16 true") {
        assert!(out.contains("(f16 arithmetic on)"), "{out}");
        assert!(out.contains("loads: yes"), "{out}");
    } else {
        assert!(out.contains("f16 arithmetic needs shader-f16"), "{out}");
    }
}

#[test]
fn info_names_the_missing_tensor() {
    let tensors: Vec<TestTensor> =
        tiny_gemma3_tensors().into_iter().filter(|t| t.name != "blk.1.attn_k_norm.weight").collect();
    let out = info("missing", &tiny_gemma3_metadata(), &tensors);
    assert!(out.contains("loads: no: missing tensor blk.1.attn_k_norm.weight"), "{out}");
}

#[test]
fn info_names_a_tensor_of_the_wrong_shape() {
    let mut tensors = tiny_gemma3_tensors();
    let q = tensors.iter_mut().find(|t| t.name == "blk.0.attn_q.weight").unwrap();
    *q = tensor("blk.0.attn_q.weight".into(), &[HIDDEN, HEAD_DIM], 7);
    let out = info("shape", &tiny_gemma3_metadata(), &tensors);
    assert!(
        out.contains("loads: no: tensor blk.0.attn_q.weight: shape [32, 64], expected [64, 64]"),
        "{out}"
    );
}

#[test]
fn info_refuses_a_setting_that_changes_the_math() {
    let mut metadata = tiny_gemma3_metadata();
    metadata.push(("gemma3.rope.scaling.type", GgufValue::String("yarn".into())));
    metadata.push(("gemma3.rope.scaling.factor", GgufValue::F32(8.0)));
    let out = info("scaling", &metadata, &tiny_gemma3_tensors());
    assert!(out.contains("architecture: not loadable: model config: gemma3.rope.scaling.type"), "{out}");
    assert!(out.contains("changes the math"), "{out}");
    assert!(out.contains("loads: no"), "{out}");
    let mut metadata = tiny_gemma3_metadata();
    metadata.push(("gemma3.final_logit_softcapping", GgufValue::F32(30.0)));
    let out = info("softcap", &metadata, &tiny_gemma3_tensors());
    assert!(out.contains("gemma3.final_logit_softcapping"), "{out}");
    assert!(out.contains("loads: no"), "{out}");
    // Linear scaling (Gemma 3 4B's) is carried out, and shown.
    let mut metadata = tiny_gemma3_metadata();
    metadata.push(("gemma3.rope.scaling.type", GgufValue::String("linear".into())));
    metadata.push(("gemma3.rope.scaling.factor", GgufValue::F32(8.0)));
    let out = info("linear", &metadata, &tiny_gemma3_tensors());
    assert!(out.contains("RoPE scaling: linear, factor 8"), "{out}");
    assert!(out.contains("loads: yes"), "{out}");
    // A neutral setting is no reason to refuse.
    let mut metadata = tiny_gemma3_metadata();
    metadata.push(("gemma3.rope.scaling.type", GgufValue::String("none".into())));
    assert!(info("neutral", &metadata, &tiny_gemma3_tensors()).contains("loads: yes"));
}

#[test]
fn info_names_an_unknown_architecture_and_the_known_ones() {
    let mut metadata = tiny_gemma3_metadata();
    metadata[0].1 = GgufValue::String("mamba".into());
    let out = info("mamba", &metadata, &tiny_gemma3_tensors());
    assert!(
        out.contains(
            "architecture \"mamba\" is not supported (these are: llama, qwen2, qwen3, phi3, gemma3)"
        ),
        "{out}"
    );
}

/// `wgserve info` of each family's fixture (tests/golden_families.rs
/// proves them), from a Hugging Face directory and from GGUF: the
/// architecture, what sets it apart, its tokenizer and where it stops.
#[test]
fn info_describes_each_family() {
    let families = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/families");
    let info_of = |file: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_wgserve"))
            .args(["info", "--model"])
            .arg(families.join(file))
            .output();
        String::from_utf8(output.unwrap().stdout).unwrap()
    };
    for (file, expected) in [
        ("qwen2/hf", &["architecture: qwen2", "tokenizer: tokenizer.json", "642 <|im_end|>"][..]),
        ("qwen3/model-f16.gguf", &["architecture: qwen3", "head size 32", "pre-tokenizer \"qwen2\""]),
        (
            "llama3/model-f16.gguf",
            &[
                "RoPE scaling: per-frequency factors (rope_freqs)",
                "pre-tokenizer \"llama-bpe\"",
                "<|eot_id|>",
            ],
        ),
        ("mistral/hf", &["architecture: mistral", "sliding window: 8 tokens on 2 of 2 layers"]),
        (
            "phi3/model-q4_k.gguf",
            &["architecture: phi3", "context 64", "longrope short factors", "SentencePiece", "903 <|end|>"],
        ),
        ("gemma3/model-f16.gguf", &["architecture: gemma3", "RoPE scaling: linear, factor 8"]),
    ] {
        let out = info_of(file);
        for line in expected.iter().chain(&["chat template: from the file", "loads: yes"]) {
            assert!(out.contains(line), "{file}: no {line:?} in\n{out}");
        }
    }
}
