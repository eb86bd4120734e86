//! Which architectures load, and the one place that maps a file's
//! architecture name to its implementation. The engine sees only the
//! `CausalLm` trait.

use std::sync::Arc;

use crate::gpu::GpuContext;

use super::causal_lm::CausalLm;
use super::llama::Llama;
use super::source::WeightSource;
use super::{LoadOptions, ModelError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    Llama,
}

impl Architecture {
    /// GGUF `general.architecture` names we load.
    pub const GGUF_NAMES: [(&'static str, Architecture); 1] = [("llama", Architecture::Llama)];

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
        }
    }

    /// Loads the model onto the GPU and compiles its kernels.
    pub fn load(
        self,
        ctx: Arc<GpuContext>,
        source: &WeightSource,
        options: &LoadOptions,
    ) -> Result<Box<dyn CausalLm>, ModelError> {
        match self {
            Architecture::Llama => {
                let model = Llama::from_source(ctx, source, options)?;
                model.warm_up()?;
                Ok(Box::new(model))
            }
        }
    }
}
