//! Model file formats: pure parsing with size limits, no GPU and no model
//! semantics. A hostile file gives a `FormatError`, never a panic or a huge
//! allocation.

pub mod ggml_type;
pub mod gguf;
pub mod safetensors;
mod storage;
pub mod tensor_type;

pub use ggml_type::GgmlType;
pub use tensor_type::TensorType;

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
}
