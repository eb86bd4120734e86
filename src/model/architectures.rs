//! Which architectures load, and the one place that maps a file's
//! architecture name to its implementation. The engine sees only the
//! `CausalLm` trait.

use std::sync::Arc;

use crate::gpu::GpuContext;

use super::causal_lm::CausalLm;
use super::config::DecoderConfig;
use super::gemma3::Gemma3;
use super::llama::Llama;
use super::source::WeightSource;
use super::{LoadOptions, ModelError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    Llama,
    Gemma3,
}

impl Architecture {
    /// GGUF `general.architecture` names we load.
    pub const GGUF_NAMES: [(&'static str, Architecture); 2] =
        [("llama", Architecture::Llama), ("gemma3", Architecture::Gemma3)];

    /// The architecture a weight file declares, or an error naming it and
    /// what would load instead.
    pub fn of(source: &WeightSource) -> Result<Self, ModelError> {
        let Some(gguf) = source.gguf() else {
            // Hugging Face directories: `config.json` names the class, checked as it is read.
            return Ok(Architecture::Llama);
        };
        let name = gguf.get_str("general.architecture")?;
        match Self::GGUF_NAMES.iter().find(|(known, _)| *known == name) {
            Some(&(_, architecture)) => Ok(architecture),
            None => {
                let known: Vec<&str> = Self::GGUF_NAMES.iter().map(|(n, _)| *n).collect();
                Err(ModelError::Config(format!(
                    "architecture {name:?} is not supported (these are: {})",
                    known.join(", ")
                )))
            }
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Gemma3 => "gemma3",
        }
    }

    /// What the hyperparameters say, in a few lines for `wgserve info`, or
    /// why this file is not one we can run.
    pub fn describe(self, source: &WeightSource) -> Result<String, ModelError> {
        match self {
            Architecture::Llama => Ok(describe_decoder(self, &Llama::config(source)?)),
            Architecture::Gemma3 => {
                let gemma = Gemma3::config(source)?;
                Ok(format!(
                    "{}\nsliding window: {} tokens on {} of every {} layers (RoPE base {}), the others global",
                    describe_decoder(self, &gemma.decoder),
                    gemma.sliding_window,
                    gemma.global_every - 1,
                    gemma.global_every,
                    gemma.local_rope_base
                ))
            }
        }
    }

    /// Loads the model onto the GPU and compiles its kernels.
    pub fn load(
        self,
        ctx: Arc<GpuContext>,
        source: &WeightSource,
        options: &LoadOptions,
    ) -> Result<Box<dyn CausalLm>, ModelError> {
        let model = self.build(ctx, source, options)?;
        model.warm_up()?;
        Ok(model)
    }

    /// Loads the model onto the GPU; its kernels compile on first use.
    pub fn build(
        self,
        ctx: Arc<GpuContext>,
        source: &WeightSource,
        options: &LoadOptions,
    ) -> Result<Box<dyn CausalLm>, ModelError> {
        Ok(match self {
            Architecture::Llama => Box::new(Llama::from_source(ctx, source, options)?),
            Architecture::Gemma3 => Box::new(Gemma3::from_source(ctx, source, options)?),
        })
    }
}

fn describe_decoder(architecture: Architecture, c: &DecoderConfig) -> String {
    format!(
        "architecture: {}, {} layers, hidden {}, intermediate {}\n\
         attention: {} heads, {} KV heads, head size {}, RoPE theta {} ({:?}), context {}\n\
         vocabulary: {}, RMSNorm eps {:e}",
        architecture.name(),
        c.num_layers,
        c.hidden_size,
        c.intermediate_size,
        c.num_heads,
        c.num_kv_heads,
        c.head_dim,
        c.rope_theta,
        c.rope_style,
        c.max_position_embeddings,
        c.vocab_size,
        c.rms_norm_eps
    )
}
