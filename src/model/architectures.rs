//! Which architectures load, and the one place that maps a file's
//! architecture name to its implementation. The engine sees only the
//! `CausalLm` trait.

use std::sync::Arc;

use crate::gpu::GpuContext;

use super::causal_lm::CausalLm;
use super::config::DecoderConfig;
use super::gemma3::Gemma3;
use super::llama::{Llama, LlamaFamily};
use super::source::WeightSource;
use super::{LoadOptions, ModelError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    Llama,
    /// The Llama layout with a sliding window; its GGUF files say `llama`.
    Mistral,
    Qwen2,
    Qwen3,
    Phi3,
    Gemma3,
}

impl Architecture {
    /// GGUF `general.architecture` names we load.
    pub const GGUF_NAMES: [(&'static str, Architecture); 5] = [
        ("llama", Architecture::Llama),
        ("qwen2", Architecture::Qwen2),
        ("qwen3", Architecture::Qwen3),
        ("phi3", Architecture::Phi3),
        ("gemma3", Architecture::Gemma3),
    ];

    /// Hugging Face `config.json` `architectures` classes we load.
    pub const HF_CLASSES: [(&'static str, Architecture); 5] = [
        ("LlamaForCausalLM", Architecture::Llama),
        ("MistralForCausalLM", Architecture::Mistral),
        ("Qwen2ForCausalLM", Architecture::Qwen2),
        ("Qwen3ForCausalLM", Architecture::Qwen3),
        ("Phi3ForCausalLM", Architecture::Phi3),
    ];

    /// The architecture a weight file declares, or an error naming it and
    /// what would load instead.
    pub fn of(source: &WeightSource) -> Result<Self, ModelError> {
        let Some(gguf) = source.gguf() else {
            let dir = source.hf_dir().unwrap_or(std::path::Path::new("."));
            let path = dir.join("config.json");
            let text = std::fs::read_to_string(&path)
                .map_err(|e| ModelError::Config(format!("cannot read {}: {e}", path.display())))?;
            return Self::of_hf_config(&text);
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

    /// The architecture a `config.json` names in `architectures`; a config
    /// without that list is taken for Llama, as the oldest checkpoints are.
    pub fn of_hf_config(text: &str) -> Result<Self, ModelError> {
        #[derive(serde::Deserialize)]
        struct Classes {
            architectures: Option<Vec<String>>,
        }
        let classes: Classes =
            serde_json::from_str(text).map_err(|e| ModelError::Config(format!("config.json: {e}")))?;
        let Some(names) = classes.architectures else { return Ok(Architecture::Llama) };
        let found = names
            .iter()
            .find_map(|name| Self::HF_CLASSES.iter().find(|(class, _)| class == name).map(|&(_, a)| a));
        found.ok_or_else(|| {
            let known: Vec<&str> = Self::HF_CLASSES.iter().map(|(n, _)| *n).collect();
            ModelError::Config(format!(
                "architectures {names:?} are not supported from safetensors (these are: {})",
                known.join(", ")
            ))
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Mistral => "mistral",
            Architecture::Qwen2 => "qwen2",
            Architecture::Qwen3 => "qwen3",
            Architecture::Phi3 => "phi3",
            Architecture::Gemma3 => "gemma3",
        }
    }

    /// The switches of a Llama-layout family; `None` for the others.
    pub fn llama_family(self) -> Option<LlamaFamily> {
        match self {
            Architecture::Llama | Architecture::Mistral => Some(LlamaFamily::LLAMA),
            Architecture::Qwen2 => Some(LlamaFamily::QWEN2),
            Architecture::Qwen3 => Some(LlamaFamily::QWEN3),
            Architecture::Phi3 => Some(LlamaFamily::PHI3),
            Architecture::Gemma3 => None,
        }
    }

    /// What the hyperparameters say, in a few lines for `wgserve info`, or
    /// why this file is not one we can run.
    pub fn describe(self, source: &WeightSource) -> Result<String, ModelError> {
        match self {
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
            _ => {
                let config = Llama::config(source)?;
                let mut text = describe_decoder(self, &config);
                if let Some(window) = &config.sliding_window {
                    let sliding = window.layers.iter().filter(|&&s| s).count();
                    text += &format!(
                        "\nsliding window: {} tokens on {sliding} of {} layers",
                        window.tokens, config.num_layers
                    );
                }
                Ok(text)
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
            Architecture::Gemma3 => Box::new(Gemma3::from_source(ctx, source, options)?),
            _ => Box::new(Llama::from_source(ctx, source, options)?),
        })
    }
}

fn describe_decoder(architecture: Architecture, c: &DecoderConfig) -> String {
    format!(
        "architecture: {}, {} layers, hidden {}, intermediate {}\n\
         attention: {} heads, {} KV heads, head size {}, RoPE theta {} ({:?}), context {}\n\
         vocabulary: {}, RMSNorm eps {:e}{}",
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
        c.rms_norm_eps,
        match &c.rope_scaling {
            Some(scaling) =>
                format!("\nRoPE scaling: {} (attention factor {})", scaling.kind, scaling.attention_factor),
            None => String::new(),
        }
    )
}
