//! The model layer: loads weights from GGUF or safetensors, repacks them
//! for the GPU, and runs the forward pass of a varlen batch. It composes
//! kernels and knows nothing of requests or scheduling.

pub mod vocab;
pub mod weights;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Format(#[from] crate::formats::FormatError),
    #[error(transparent)]
    Gpu(#[from] crate::gpu::GpuError),
    #[error("model config: {0}")]
    Config(String),
    #[error("tensor {name}: {why}")]
    InvalidTensor { name: String, why: String },
    #[error("missing tensor {0}")]
    MissingTensor(String),
}
