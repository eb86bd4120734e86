//! `wgserve info`: what the model is and what GPU would run it.

use std::collections::BTreeMap;

use anyhow::Context;
use clap::Args;
use wgserve::formats::gguf::GgufFile;
use wgserve::model::architectures::Architecture;
use wgserve::model::config::DecoderConfig;
use wgserve::model::source::WeightSource;

use super::{ModelArgs, open_gpu};

#[derive(Args)]
pub struct InfoArgs {
    #[command(flatten)]
    model: ModelArgs,
}

pub fn run(args: InfoArgs) -> anyhow::Result<()> {
    let path = args.model.path()?;
    let source = WeightSource::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    println!("model: {}", path.display());
    match Architecture::of(&source).and_then(|a| Ok((a, DecoderConfig::from_source(&source)?))) {
        Ok((architecture, c)) => {
            println!(
                "architecture: {}, {} layers, hidden {}, intermediate {}",
                architecture.name(),
                c.num_layers,
                c.hidden_size,
                c.intermediate_size
            );
            println!(
                "attention: {} heads, {} KV heads, head size {}, RoPE theta {} ({:?}), context {}",
                c.num_heads,
                c.num_kv_heads,
                c.head_dim,
                c.rope_theta,
                c.rope_style,
                c.max_position_embeddings
            );
            println!("vocabulary: {}, RMSNorm eps {:e}", c.vocab_size, c.rms_norm_eps);
        }
        Err(e) => println!("architecture: not loadable: {e}"),
    }
    if let Some(gguf) = source.gguf() {
        print_gguf_tensors(gguf);
    }
    match open_gpu() {
        Ok(ctx) => println!("{ctx}"),
        Err(e) => println!("GPU: {e}"),
    }
    Ok(())
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
