//! `wgserve info`: what the model is and what GPU would run it.

use std::collections::BTreeMap;

use anyhow::Context;
use clap::Args;
use wgserve::formats::gguf::GgufFile;
use wgserve::model::architectures::Architecture;
use wgserve::model::loader::{gguf_text, hf_text};
use wgserve::model::source::WeightSource;
use wgserve::model::vocab::vocab_from_gguf;
use wgserve::model::{KvCacheDtype, LoadOptions};
use wgserve::text::tokenizer::Vocab;

use super::ModelArgs;

#[derive(Args)]
pub struct InfoArgs {
    #[command(flatten)]
    model: ModelArgs,
}

pub fn run(args: InfoArgs) -> anyhow::Result<()> {
    let path = args.model.path()?;
    let source = WeightSource::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    println!("model: {}", path.display());
    let architecture = Architecture::of(&source);
    match architecture
        .as_ref()
        .map_err(|e| e.to_string())
        .and_then(|a| a.describe(&source).map_err(|e| e.to_string()))
    {
        Ok(summary) => println!("{summary}"),
        Err(e) => println!("architecture: not loadable: {e}"),
    }
    print_text(&source);
    if let Some(gguf) = source.gguf() {
        print_gguf_tensors(gguf);
    }
    match args.model.open_gpu() {
        Ok(ctx) => {
            println!("{ctx}");
            // The real test: every tensor read, checked and uploaded, with a
            // small KV cache. Errors name the tensor or setting at fault.
            if let Ok(architecture) = architecture {
                let options = LoadOptions { kv_cache_mib: 16, ..LoadOptions::default() };
                match architecture.build(ctx, &source, &options) {
                    Ok(model) => {
                        println!("loads: yes");
                        let asked = args.model.load_options();
                        let tokens = |kv_cache_dtype| {
                            model.kv_cache_tokens(&LoadOptions { kv_cache_dtype, ..asked.clone() })
                        };
                        println!(
                            "KV cache (--kv-cache-memory {} MiB): {} tokens in f16, {} in f32; --kv-cache-dtype {}",
                            asked.kv_cache_mib,
                            tokens(KvCacheDtype::F16),
                            tokens(KvCacheDtype::F32),
                            asked.kv_cache_dtype.name()
                        );
                        // Its own line: the one above is a format scripts read.
                        match tokens(KvCacheDtype::Q8_0) {
                            0 => println!(
                                "KV cache in q8_0: not for this model (head_dim not a multiple of 32)"
                            ),
                            n => println!("KV cache in q8_0: {n} tokens (lossy 8-bit codes, a scale per 32)"),
                        }
                    }
                    Err(e) => println!("loads: no: {e}"),
                }
            }
        }
        Err(e) => println!("GPU: {e:#}"),
    }
    Ok(())
}

/// The tokenizer, chat template and end-of-generation tokens, as the
/// server would load them.
fn print_text(source: &WeightSource) {
    let (kind, text, template_in_file) = match source {
        WeightSource::Gguf(gguf) => {
            let kind = match vocab_from_gguf(gguf) {
                Ok(Vocab::Bpe(bpe)) => format!("byte-level BPE (pre-tokenizer {:?})", bpe.pre),
                Ok(Vocab::SentencePiece(_)) => "SentencePiece".to_string(),
                Err(_) => String::new(),
            };
            (kind, gguf_text(gguf), gguf.get("tokenizer.chat_template").is_some())
        }
        WeightSource::Safetensors { dir, .. } => ("tokenizer.json".to_string(), hf_text(dir), true),
    };
    let text = match text {
        Ok(text) => text,
        Err(e) => {
            println!("tokenizer: not loadable: {e}");
            return;
        }
    };
    let t = &text.tokenizer;
    println!(
        "tokenizer: {kind}, {} tokens, BOS {:?} (added: {}), EOS {:?}",
        t.vocab_size(),
        t.bos_id(),
        t.adds_bos(),
        t.eos_id()
    );
    let named: Vec<String> = text
        .stop_token_ids
        .iter()
        .map(|&id| format!("{id} {}", t.id_to_token(id).unwrap_or_default()))
        .collect();
    println!("generation ends on: {}", named.join(", "));
    match (&text.chat_template, template_in_file) {
        (Some(_), true) => println!("chat template: from the file"),
        (Some(_), false) => println!("chat template: none in the file; the family's published one is used"),
        (None, _) => println!("chat template: none (the chat routes answer 400; /v1/completions works)"),
    }
}

fn print_gguf_tensors(gguf: &GgufFile) {
    // Per type name: tensors, bytes, and whether our kernels can load it.
    let mut by_type: BTreeMap<String, (usize, u64, bool)> = BTreeMap::new();
    for tensor in &gguf.tensors {
        let entry = by_type.entry(tensor.tensor_type.name().to_string()).or_default();
        entry.0 += 1;
        entry.1 += tensor.size_in_bytes;
        entry.2 = tensor.tensor_type.tensor_type().is_some();
    }
    let total: u64 = by_type.values().map(|v| v.1).sum();
    println!(
        "tensors: {} ({:.1} MiB; GGUF v{})",
        gguf.tensors.len(),
        total as f64 / (1 << 20) as f64,
        gguf.version
    );
    for (name, (count, bytes, loadable)) in by_type {
        let note = if loadable { "" } else { " (type not supported)" };
        println!("  {name}: {count} tensors, {:.1} MiB{note}", bytes as f64 / (1 << 20) as f64);
    }
}
