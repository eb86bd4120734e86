//! Golden embeddings: the real all-MiniLM-L6-v2 on our kernels against
//! sentence-transformers (`tests/fixtures/minilm_reference.json`, made by
//! `scripts/make_embedding_reference.sh`; no Python here). Token ids must
//! be identical (WordPiece, lowercasing and accent stripping, CJK, emoji,
//! [CLS]/[SEP], truncation at 256) and every vector within cosine 0.9999
//! of the reference, each input alone and all of them in one varlen batch.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use wgserve::model::batch::EncoderBatch;
use wgserve::model::bert::EncoderOptions;
use wgserve::model::loader::{LoadedEncoder, load_encoder};

#[derive(Deserialize)]
struct Fixture {
    model_dir: String,
    max_seq_length: usize,
    sentences: Vec<Sentence>,
}

#[derive(Deserialize)]
struct Sentence {
    name: String,
    text: String,
    token_ids: Vec<u32>,
    num_tokens_untruncated: usize,
    embedding: Vec<f32>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture() -> Fixture {
    let path = root().join("tests/fixtures/minilm_reference.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn load(fixture: &Fixture) -> LoadedEncoder {
    let dir = root().join(&fixture.model_dir);
    assert!(
        dir.join("model.safetensors").exists(),
        "{} is missing: run `bash scripts/setup.sh`",
        dir.display()
    );
    // WGSERVE_KERNELS picks the kernel family, as for the golden tests.
    let ctx = Arc::new(common::gpu::context_from_env());
    load_encoder(ctx, &dir, &EncoderOptions::default()).unwrap_or_else(|e| panic!("loading: {e}"))
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

fn embed(model: &LoadedEncoder, inputs: &[&[u32]]) -> Vec<Vec<f32>> {
    let mut batch = EncoderBatch::default();
    for ids in inputs {
        batch.push_sequence(ids);
    }
    let flat = model.bert.forward(&batch).unwrap_or_else(|e| panic!("forward: {e}"));
    flat.chunks(model.bert.dimensions()).map(<[f32]>::to_vec).collect()
}

#[test]
fn minilm_matches_sentence_transformers() {
    let fixture = fixture();
    let model = load(&fixture);
    assert_eq!(model.bert.sentence.max_seq_length, fixture.max_seq_length);
    assert_eq!(model.bert.dimensions(), 384);
    assert!(fixture.sentences.len() >= 6);
    assert!(fixture.sentences.iter().any(|s| s.num_tokens_untruncated > fixture.max_seq_length));

    for s in &fixture.sentences {
        let ids = model.tokenizer.encode(&s.text, true).unwrap_or_else(|e| panic!("{}: {e}", s.name));
        assert_eq!(ids, s.token_ids, "{}: token ids", s.name);
    }
    let inputs: Vec<&[u32]> = fixture.sentences.iter().map(|s| s.token_ids.as_slice()).collect();
    let batched = embed(&model, &inputs);
    let mut worst = f64::MAX;
    for (i, s) in fixture.sentences.iter().enumerate() {
        let alone = &embed(&model, &[inputs[i]])[0];
        for (what, got) in [("alone", alone), ("batched", &batched[i])] {
            let similarity = cosine(got, &s.embedding);
            assert!(similarity >= 0.9999, "{} ({what}): cosine {similarity} with the reference", s.name);
            let norm = got.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "{} ({what}): norm {norm}", s.name);
            worst = worst.min(similarity);
        }
    }
    eprintln!("lowest cosine similarity with sentence-transformers: {worst:.7}");
}

#[test]
fn a_paraphrase_is_closer_than_an_unrelated_sentence() {
    let fixture = fixture();
    let model = load(&fixture);
    let texts = [
        "The quick brown fox jumps over the lazy dog.",
        "A fast brown fox leaps over a sleepy dog.",
        "Quarterly revenue grew by 12% despite supply-chain problems.",
        "How do I reset my password?",
        "I forgot my password and cannot log in.",
    ];
    let ids: Vec<Vec<u32>> = texts.iter().map(|t| model.tokenizer.encode(t, true).unwrap()).collect();
    let refs: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
    let v = embed(&model, &refs);
    let fox_paraphrase = cosine(&v[0], &v[1]);
    assert!(fox_paraphrase > 0.7, "{fox_paraphrase}");
    assert!(fox_paraphrase > cosine(&v[0], &v[2]) + 0.5);
    assert!(cosine(&v[3], &v[4]) > cosine(&v[3], &v[0]) + 0.3);
    assert!(cosine(&v[3], &v[4]) > cosine(&v[3], &v[2]) + 0.3);
}
