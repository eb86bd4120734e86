//! The safetensors Llama path end to end: a tiny random checkpoint in the
//! Hugging Face layout, written to a temp dir, loaded by our loader and run
//! on the GPU, against the plain CPU reference (`common::cpu_llama`) on the
//! same weights. Covers a varlen prefill of two sequences (one spanning two
//! KV blocks, tables not contiguous), decode steps and a chunked prefill
//! reading the paged cache, for F32, F16 and BF16 files; and the files the
//! loader must refuse with a message rather than a panic.
//!
//! Tolerance: 1e-4 absolute on logits of order 1. The GPU holds the very
//! weights the reference uses (16-bit values widen to f32 exactly; the
//! reference rounds its weights the same way), so the two differ only by
//! f32 arithmetic in another order against the reference's f64: about
//! 1e-6 on lavapipe (the test prints the largest difference), so 1e-4
//! leaves 100x for other drivers' FMA and reduction orders. 1e-3 would be
//! too loose: measured, an eps of 1e-4 instead of 1e-5 moves logits by
//! 1.1e-3 and a RoPE base of 10010 instead of 10000 by 8e-4; grosser bugs
//! (RoPE pairing, GQA head mapping, a block table) by 0.1 or more.

mod common;

use std::path::Path;
use std::sync::{Arc, OnceLock};

use common::cpu_llama::{TinyConfig, TinyLlama};
use common::gpu::assert_close;
use common::temp_dir::TempDir;
use wgserve::formats::TensorType;
use wgserve::formats::safetensors::{self, SafetensorsFile};
use wgserve::gpu::GpuContext;
use wgserve::model::batch::BatchInputs;
use wgserve::model::blocks::layer::LayerStack;
use wgserve::model::decoder::Decoder;
use wgserve::model::llama::{ForwardOutput, Llama, Output};
use wgserve::model::{KvCacheDtype, LoadOptions};

const ATOL: f32 = 1e-4;

fn ctx() -> Arc<GpuContext> {
    static CTX: OnceLock<Arc<GpuContext>> = OnceLock::new();
    CTX.get_or_init(|| {
        Arc::new(GpuContext::new().expect("a wgpu adapter (run scripts/setup.sh for software Vulkan)"))
    })
    .clone()
}

// An f32 KV cache: these compare logits with an f32 reference at a tight
// tolerance (the f16 default rounds every cached K and V; the golden tests
// check that it keeps the greedy tokens).
fn options() -> LoadOptions {
    LoadOptions {
        max_batch_tokens: 64,
        max_seqs: 4,
        block_size: 16,
        kv_cache_mib: 1,
        kv_cache_dtype: KvCacheDtype::F32,
    }
}

fn load(dir: &Path) -> Decoder<LayerStack> {
    match Llama::load(ctx(), dir, &options()) {
        Ok(llama) => llama,
        Err(e) => panic!("loading {}: {e}", dir.display()),
    }
}

/// The loader's error on `dir`, as displayed; panics when it loads.
fn load_err(dir: &Path) -> String {
    match Llama::load(ctx(), dir, &options()) {
        Ok(_) => panic!("{} loaded, expected an error", dir.display()),
        Err(e) => e.to_string(),
    }
}

fn logits(llama: &Decoder<LayerStack>, batch: &BatchInputs) -> Vec<f32> {
    match llama.forward(batch, Output::Logits).unwrap() {
        ForwardOutput::Logits(logits) => logits,
        other => panic!("asked for logits, got {other:?}"),
    }
}

/// One sequence of a step: all its tokens so far (the reference reruns
/// them from position 0), how many of them are new, and its block table.
struct Seq<'a> {
    tokens: &'a [u32],
    num_new_tokens: usize,
    block_table: &'a [u32],
}

/// Runs one step on the GPU and checks each sequence's logits against the
/// reference's at its last token; returns the largest difference.
fn check_step(what: &str, llama: &Decoder<LayerStack>, reference: &TinyLlama, seqs: &[Seq]) -> f32 {
    let mut batch = BatchInputs::default();
    for seq in seqs {
        let start = seq.tokens.len() - seq.num_new_tokens;
        batch.push_sequence(&seq.tokens[start..], start, seq.block_table, llama.block_size());
    }
    let got = logits(llama, &batch);
    let vocab = reference.config.vocab_size;
    assert_eq!(got.len(), seqs.len() * vocab, "{what}: logits length");
    let mut max_diff = 0.0f32;
    for (s, seq) in seqs.iter().enumerate() {
        let want = reference.forward(seq.tokens).pop().unwrap();
        let got = &got[s * vocab..][..vocab];
        assert_close(&format!("{what}, sequence {s}"), got, &want, ATOL, 0.0);
        max_diff = got.iter().zip(&want).map(|(g, w)| (g - w).abs()).fold(max_diff, f32::max);
    }
    max_diff
}

/// Prefill, decode and chunked prefill of two sequences; `dtype` is how the
/// checkpoint stores its weights.
fn matches_reference(config: TinyConfig, dtype: TensorType, seed: u64) {
    let model = TinyLlama::random(config, seed);
    let dir = TempDir::new("st-llama", &format!("{dtype}-{seed}"));
    model.write_hf_dir_as(&dir.0, dtype);
    let reference = model.rounded(dtype);
    let llama = load(&dir.0);
    assert_eq!(llama.block_size(), 16);

    let a: Vec<u32> = vec![1, 17, 42, 99, 0, 63, 8, 8, 25];
    let b: Vec<u32> = (0..28).map(|i| (i * 37 + 11) % 100).collect();
    // Scattered blocks: paging must follow the tables, not assume order.
    let (table_a, table_b) = ([5u32], [2u32, 9]);
    let (prefill_a, prefill_b) = (5, 20);
    let mut max_diff = check_step(
        &format!("{dtype} prefill"),
        &llama,
        &reference,
        &[
            Seq { tokens: &a[..prefill_a], num_new_tokens: prefill_a, block_table: &table_a },
            Seq { tokens: &b[..prefill_b], num_new_tokens: prefill_b, block_table: &table_b },
        ],
    );
    for step in 0..2 {
        let diff = check_step(
            &format!("{dtype} decode {step}"),
            &llama,
            &reference,
            &[
                Seq { tokens: &a[..prefill_a + step + 1], num_new_tokens: 1, block_table: &table_a },
                Seq { tokens: &b[..prefill_b + step + 1], num_new_tokens: 1, block_table: &table_b },
            ],
        );
        max_diff = max_diff.max(diff);
    }
    // A decode beside a chunk of new tokens that attends to the cache and,
    // causally, to itself.
    let diff = check_step(
        &format!("{dtype} chunked prefill"),
        &llama,
        &reference,
        &[
            Seq { tokens: &a[..prefill_a + 3], num_new_tokens: 1, block_table: &table_a },
            Seq { tokens: &b, num_new_tokens: b.len() - prefill_b - 2, block_table: &table_b },
        ],
    );
    max_diff = max_diff.max(diff);
    eprintln!("{dtype}: largest logit difference {max_diff:e} (tolerance {ATOL:e})");
}

#[test]
fn f32_checkpoint_matches_cpu_reference() {
    matches_reference(TinyConfig::small(), TensorType::F32, 1);
}

#[test]
fn f16_checkpoint_matches_cpu_reference() {
    matches_reference(TinyConfig::small(), TensorType::F16, 2);
}

#[test]
fn bf16_checkpoint_matches_cpu_reference() {
    matches_reference(TinyConfig::small(), TensorType::BF16, 3);
}

/// Tied embeddings (no `lm_head.weight`), plain multi-head attention and
/// another RoPE base.
#[test]
fn tied_mha_checkpoint_matches_cpu_reference() {
    let config = TinyConfig {
        num_key_value_heads: 4,
        tie_word_embeddings: true,
        rope_theta: 500000.0,
        rms_norm_eps: 1e-6,
        ..TinyConfig::small()
    };
    matches_reference(config, TensorType::F32, 4);
}

#[test]
fn token_ids_output_is_the_argmax_of_the_logits() {
    let model = TinyLlama::random(TinyConfig::small(), 5);
    let dir = TempDir::new("st-llama", "argmax");
    model.write_hf_dir(&dir.0);
    let llama = load(&dir.0);
    let mut batch = BatchInputs::default();
    batch.push_sequence(&[4, 8, 15, 16, 23, 42], 0, &[0], 16);
    batch.push_sequence(&[7], 0, &[1], 16);
    let logits = logits(&llama, &batch);
    let ids = match llama.forward(&batch, Output::TokenIds).unwrap() {
        ForwardOutput::TokenIds(ids) => ids,
        other => panic!("asked for token ids, got {other:?}"),
    };
    let argmax: Vec<u32> = logits
        .chunks_exact(model.config.vocab_size)
        .map(|row| (0..row.len()).max_by(|&i, &j| row[i].total_cmp(&row[j])).unwrap() as u32)
        .collect();
    assert_eq!(ids, argmax);
}

// ---------- files the loader must refuse ----------

fn assert_mentions(message: &str, needles: &[&str]) {
    for needle in needles {
        assert!(message.contains(needle), "error {message:?} does not mention {needle:?}");
    }
}

/// A valid F32 checkpoint in a fresh dir.
fn valid_dir(name: &str) -> (TinyLlama, TempDir) {
    let model = TinyLlama::random(TinyConfig::small(), 6);
    let dir = TempDir::new("st-llama", name);
    model.write_hf_dir(&dir.0);
    (model, dir)
}

#[test]
fn missing_config_json_is_an_error() {
    let (_, dir) = valid_dir("no-config");
    std::fs::remove_file(dir.0.join("config.json")).unwrap();
    assert_mentions(&load_err(&dir.0), &["config.json"]);
}

#[test]
fn garbage_config_json_is_an_error() {
    let (_, dir) = valid_dir("garbage-config");
    std::fs::write(dir.0.join("config.json"), "{\"hidden_size\": 64,, ]").unwrap();
    assert_mentions(&load_err(&dir.0), &["config.json"]);
    std::fs::write(dir.0.join("config.json"), [0xff, 0xfe, 0x00, 0x41]).unwrap();
    assert_mentions(&load_err(&dir.0), &["config.json"]);
}

#[test]
fn config_json_missing_a_field_or_with_bad_sizes_is_an_error() {
    let (model, dir) = valid_dir("bad-config-fields");
    let mut json = model.config.to_json(TensorType::F32);
    json.as_object_mut().unwrap().remove("hidden_size");
    std::fs::write(dir.0.join("config.json"), json.to_string()).unwrap();
    assert_mentions(&load_err(&dir.0), &["config.json", "hidden_size"]);

    let mut json = model.config.to_json(TensorType::F32);
    json["num_key_value_heads"] = 3.into();
    std::fs::write(dir.0.join("config.json"), json.to_string()).unwrap();
    assert_mentions(&load_err(&dir.0), &["KV heads"]);

    let mut json = model.config.to_json(TensorType::F32);
    json["architectures"] = serde_json::json!(["BertModel"]);
    std::fs::write(dir.0.join("config.json"), json.to_string()).unwrap();
    assert_mentions(&load_err(&dir.0), &["BertModel"]);
}

#[test]
fn missing_or_corrupt_safetensors_is_an_error() {
    let (_, dir) = valid_dir("bad-safetensors");
    let path = dir.0.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert_mentions(&load_err(&dir.0), &["safetensors"]);
    std::fs::remove_file(&path).unwrap();
    assert_mentions(&load_err(&dir.0), &["model.safetensors"]);
}

/// Errors name a tensor the way the checkpoint does, so the user can find it.
fn names_tensor(message: &str, hf_name: &str) {
    assert!(message.contains(hf_name), "error {message:?} does not name {hf_name}");
}

#[test]
fn missing_tensor_is_an_error() {
    let (mut model, dir) = valid_dir("missing-tensor");
    model.weights.remove("model.layers.1.self_attn.k_proj.weight");
    model.write_hf_dir(&dir.0);
    let message = load_err(&dir.0);
    assert_mentions(&message, &["missing"]);
    names_tensor(&message, "model.layers.1.self_attn.k_proj.weight");
}

#[test]
fn tensor_of_the_wrong_shape_is_an_error() {
    let (mut model, dir) = valid_dir("wrong-shape");
    // A full-size K projection where GQA wants half the rows.
    let name = "model.layers.0.self_attn.k_proj.weight";
    model.weights.insert(name.to_string(), (vec![64, 64], vec![0.5; 64 * 64]));
    model.write_hf_dir(&dir.0);
    let message = load_err(&dir.0);
    assert_mentions(&message, &["shape", "[64, 64]", "[32, 64]"]);
    names_tensor(&message, name);

    let (mut model, dir) = valid_dir("wrong-norm-shape");
    let name = "model.norm.weight";
    model.weights.insert(name.to_string(), (vec![63], vec![1.0; 63]));
    model.write_hf_dir(&dir.0);
    let message = load_err(&dir.0);
    assert_mentions(&message, &["shape", "[63]"]);
    names_tensor(&message, name);
}

#[test]
fn untied_checkpoint_without_lm_head_is_an_error() {
    // config.json says the head is separate (tie_word_embeddings: false), so
    // falling back to the embedding table would silently give wrong logits.
    let (mut model, dir) = valid_dir("no-lm-head");
    model.weights.remove("lm_head.weight");
    model.write_hf_dir(&dir.0);
    let message = load_err(&dir.0);
    assert_mentions(&message, &["missing"]);
    names_tensor(&message, "lm_head.weight");
}

/// Splits `dir`'s model.safetensors into two shards (every other tensor)
/// with a model.safetensors.index.json, as large checkpoints come.
fn shard(dir: &Path) {
    let whole = SafetensorsFile::open(&dir.join("model.safetensors")).unwrap();
    let mut weight_map = serde_json::Map::new();
    for (part, file) in
        ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"].iter().enumerate()
    {
        let names: Vec<&String> = whole.tensor_names().iter().skip(part).step_by(2).collect();
        let tensors: Vec<(&str, _)> = names.iter().map(|n| (n.as_str(), whole.tensor(n).unwrap())).collect();
        safetensors::write_file(&dir.join(file), &tensors).unwrap();
        for name in names {
            weight_map.insert(name.clone(), (*file).into());
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
}

#[test]
fn sharded_checkpoint_matches_the_single_file() {
    let (_, dir) = valid_dir("sharded");
    let mut batch = BatchInputs::default();
    batch.push_sequence(&[4, 8, 15, 16, 23, 42], 0, &[0], 16);
    let single = logits(&load(&dir.0), &batch);
    shard(&dir.0);
    assert_eq!(logits(&load(&dir.0), &batch), single);

    // The index names files beside it, nothing else.
    let index = dir.0.join("model.safetensors.index.json");
    let good = std::fs::read_to_string(&index).unwrap();
    for bad in ["../model-00001-of-00002.safetensors", "/etc/passwd", "config.json"] {
        let escaped = good.replacen("model-00002-of-00002.safetensors", bad, 1);
        std::fs::write(&index, escaped).unwrap();
        assert_mentions(&load_err(&dir.0), &["model.safetensors.index.json", bad]);
    }
    std::fs::write(&index, good.replace("model-00002-of-00002", "model-00003-of-00002")).unwrap();
    assert_mentions(&load_err(&dir.0), &["model-00003-of-00002.safetensors"]);
}
