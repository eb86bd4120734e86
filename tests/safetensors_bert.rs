//! The BERT loader and encoder against a plain CPU forward
//! (`common::cpu_bert`) on a tiny random checkpoint, in the layouts found
//! in the wild: `BertModel` names or `bert.`-prefixed ones, LayerNorm
//! `weight`/`bias` or `gamma`/`beta`, mean pooling normalised (no
//! sentence-transformers files) or a [CLS] pooling module without
//! Normalize. One varlen batch holds inputs of 1, 7, 24 (every position)
//! and 3 tokens. And the checkpoints the loader must refuse with a message.
//!
//! Tolerance 1e-4 on values of order 0.1 to 1: the GPU holds the very
//! weights the reference uses (they are on the f16 grid already), so the
//! two differ by f32 arithmetic in another order only; a wrong position
//! row, a missing bias or attention leaking across inputs moves them by
//! 0.01 or more.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::cpu_bert::{Layout, MAX_POSITIONS, Pooling, TinyBert};
use common::gpu::assert_close;
use common::temp_dir::TempDir;
use wgserve::gpu::GpuContext;
use wgserve::model::batch::EncoderBatch;
use wgserve::model::bert::{Bert, EncoderOptions};

fn ctx() -> Arc<GpuContext> {
    Arc::new(GpuContext::new().expect("a wgpu adapter (run scripts/setup.sh for software Vulkan)"))
}

fn options() -> EncoderOptions {
    EncoderOptions { max_batch_tokens: 64, max_seqs: 8 }
}

fn load_err(ctx: &Arc<GpuContext>, dir: &Path) -> String {
    match Bert::load(ctx.clone(), dir, &options()) {
        Ok(_) => panic!("{} loaded, expected an error", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn tiny_bert_matches_the_cpu_reference_in_every_layout() {
    let ctx = ctx();
    let model = TinyBert::random(21);
    let inputs: Vec<Vec<u32>> = [1usize, 7, MAX_POSITIONS, 3]
        .iter()
        .enumerate()
        .map(|(s, &len)| (0..len).map(|i| ((i * 13 + s * 7 + 2) % 60) as u32).collect())
        .collect();
    let layouts = [
        Layout { prefix: false, gamma_beta: false, pooling: Pooling::Default },
        Layout { prefix: true, gamma_beta: true, pooling: Pooling::ClsUnnormalised },
    ];
    for (i, layout) in layouts.into_iter().enumerate() {
        let dir = TempDir::new("st-bert", &format!("layout{i}"));
        model.write_hf_dir(&dir.0, layout, &[]);
        let bert = Bert::load(ctx.clone(), &dir.0, &options()).unwrap_or_else(|e| panic!("{layout:?}: {e}"));
        assert_eq!(bert.sentence.max_seq_length, MAX_POSITIONS);
        let mut batch = EncoderBatch::default();
        for input in &inputs {
            batch.push_sequence(input);
        }
        let got = bert.forward(&batch).unwrap();
        let want: Vec<f32> = inputs.iter().flat_map(|input| model.embed(input, layout.pooling)).collect();
        assert_close(&format!("{layout:?}"), &got, &want, 1e-4, 1e-4);
        // The same inputs one at a time give the same vectors.
        let mut alone = EncoderBatch::default();
        alone.push_sequence(&inputs[2]);
        let hidden = common::cpu_bert::HIDDEN;
        assert_close("alone", &bert.forward(&alone).unwrap(), &got[2 * hidden..3 * hidden], 1e-6, 1e-6);
    }
}

#[test]
fn broken_checkpoints_say_what_is_wrong() {
    let ctx = ctx();
    let model = TinyBert::random(22);
    let layout = Layout { prefix: true, gamma_beta: false, pooling: Pooling::Default };

    let dir = TempDir::new("st-bert", "missing");
    model.write_hf_dir(&dir.0, layout, &["encoder.layer.1.intermediate.dense.bias"]);
    let error = load_err(&ctx, &dir.0);
    assert!(error.contains("bert.encoder.layer.1.intermediate.dense.bias"), "{error}");

    let dir = TempDir::new("st-bert", "config");
    model.write_hf_dir(&dir.0, layout, &[]);
    let config_path = dir.0.join("config.json");
    let config = std::fs::read_to_string(&config_path).unwrap();
    std::fs::write(&config_path, config.replace("\"gelu\"", "\"gelu_new\"")).unwrap();
    let error = load_err(&ctx, &dir.0);
    assert!(error.contains("gelu_new"), "{error}");
    std::fs::write(&config_path, "{not json").unwrap();
    assert!(load_err(&ctx, &dir.0).contains("config.json"));

    let dir = TempDir::new("st-bert", "max_seq_length");
    model.write_hf_dir(&dir.0, layout, &[]);
    std::fs::write(dir.0.join("sentence_bert_config.json"), r#"{"max_seq_length": 25}"#).unwrap();
    let error = load_err(&ctx, &dir.0);
    assert!(error.contains("25") && error.contains("24"), "{error}");

    let dir = TempDir::new("st-bert", "pooling");
    model.write_hf_dir(&dir.0, Layout { pooling: Pooling::ClsUnnormalised, ..layout }, &[]);
    std::fs::write(dir.0.join("1_Pooling/config.json"), r#"{"pooling_mode_max_tokens": true}"#).unwrap();
    let error = load_err(&ctx, &dir.0);
    assert!(error.contains("pooling_mode_max_tokens"), "{error}");

    // A batch the encoder cannot run is refused, not sent to the GPU.
    let dir = TempDir::new("st-bert", "batch");
    model.write_hf_dir(&dir.0, layout, &[]);
    let bert = Bert::load(ctx.clone(), &dir.0, &options()).unwrap();
    let mut batch = EncoderBatch::default();
    batch.push_sequence(&[1, 60]);
    assert!(bert.forward(&batch).unwrap_err().to_string().contains("60"));
    let mut batch = EncoderBatch::default();
    batch.push_sequence(&[1; MAX_POSITIONS + 1]);
    assert!(bert.forward(&batch).is_err());
    assert!(bert.forward(&EncoderBatch::default()).is_err());
}
