//! safetensors reader (and a small writer for tests and tools), over the
//! `safetensors` crate and a read-only memory map.
//!
//! Owns the file's bytes and its parsed header; hands out borrowed tensor
//! bytes with our `TensorType`. The crate checks the header (size cap, JSON,
//! offsets covering the data exactly); we only map dtypes and names.

use std::collections::HashMap;
use std::path::Path;

use ::safetensors::tensor::{Metadata, TensorView};
use ::safetensors::{Dtype, SafeTensors};

use super::storage::Storage;
use super::{FormatError, TensorType};

/// Length of the little-endian u64 header size that opens the file.
const HEADER_SIZE_BYTES: usize = 8;

/// One tensor: row-major `shape` (outermost first), raw little-endian bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct SafeTensor<'a> {
    pub shape: Vec<usize>,
    pub tensor_type: TensorType,
    pub data: &'a [u8],
}

/// An open, validated safetensors file.
pub struct SafetensorsFile {
    storage: Storage,
    metadata: Metadata,
    /// Where tensor offsets start: after the size and the JSON header.
    data_offset: usize,
    /// In data order, so loading walks the file front to back.
    names: Vec<String>,
    /// For error messages.
    source: String,
}

impl SafetensorsFile {
    /// Maps the file read-only and parses its header.
    pub fn open(path: &Path) -> Result<Self, FormatError> {
        Self::from_storage(Storage::map(path)?, path.display().to_string())
    }

    /// Parses a safetensors file held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, FormatError> {
        Self::from_storage(Storage::Owned(bytes), "<memory>".into())
    }

    fn from_storage(storage: Storage, source: String) -> Result<Self, FormatError> {
        let (header_len, metadata) = SafeTensors::read_metadata(storage.bytes())
            .map_err(|e| FormatError::Invalid(format!("safetensors {source}: {e}")))?;
        let data_offset = HEADER_SIZE_BYTES + header_len;
        let names = metadata.offset_keys();
        Ok(SafetensorsFile { storage, metadata, data_offset, names, source })
    }

    /// Tensor names in data order.
    pub fn tensor_names(&self) -> &[String] {
        &self.names
    }

    /// The free-form `__metadata__` string map, if the file has one.
    pub fn user_metadata(&self) -> Option<&HashMap<String, String>> {
        self.metadata.metadata().as_ref()
    }

    /// The tensor's shape, type and bytes; `Unsupported` for dtypes other
    /// than F32, F16 and BF16.
    pub fn tensor(&self, name: &str) -> Result<SafeTensor<'_>, FormatError> {
        let info = self.metadata.info(name).ok_or_else(|| {
            FormatError::Invalid(format!("safetensors {}: no tensor `{name}`", self.source))
        })?;
        let tensor_type = tensor_type(info.dtype).ok_or_else(|| {
            FormatError::Unsupported(format!(
                "safetensors {}: tensor `{name}` has dtype {:?}; supported: F32, F16, BF16",
                self.source, info.dtype
            ))
        })?;
        let (start, end) = info.data_offsets;
        // The crate checked that offsets tile the data section exactly; stay
        // panic-free anyway.
        let data =
            self.storage.bytes().get(self.data_offset + start..self.data_offset + end).ok_or_else(|| {
                FormatError::Invalid(format!(
                    "safetensors {}: tensor `{name}` lies outside the file",
                    self.source
                ))
            })?;
        Ok(SafeTensor { shape: info.shape.clone(), tensor_type, data })
    }
}

fn tensor_type(dtype: Dtype) -> Option<TensorType> {
    match dtype {
        Dtype::F32 => Some(TensorType::F32),
        Dtype::F16 => Some(TensorType::F16),
        Dtype::BF16 => Some(TensorType::BF16),
        _ => None,
    }
}

fn dtype(tensor_type: TensorType) -> Option<Dtype> {
    match tensor_type {
        TensorType::F32 => Some(Dtype::F32),
        TensorType::F16 => Some(Dtype::F16),
        TensorType::BF16 => Some(Dtype::BF16),
        TensorType::Q8_0
        | TensorType::Q4_0
        | TensorType::Q4_1
        | TensorType::Q5_0
        | TensorType::Q5_1
        | TensorType::Q2_K
        | TensorType::Q3_K
        | TensorType::Q4_K
        | TensorType::Q5_K
        | TensorType::Q6_K
        | TensorType::IQ4_NL
        | TensorType::IQ4_XS => None,
    }
}

/// Writes `tensors` as a safetensors file (for tests and conversion tools).
/// Fails when a byte length does not match its shape and type, or a type is
/// quantized (safetensors has no block types).
pub fn write_file(path: &Path, tensors: &[(&str, SafeTensor<'_>)]) -> Result<(), FormatError> {
    let mut views = Vec::with_capacity(tensors.len());
    for (name, tensor) in tensors {
        let dtype = dtype(tensor.tensor_type).ok_or_else(|| {
            FormatError::Unsupported(format!(
                "safetensors cannot hold {} tensor `{name}`",
                tensor.tensor_type
            ))
        })?;
        let view = TensorView::new(dtype, tensor.shape.clone(), tensor.data)
            .map_err(|e| FormatError::Invalid(format!("safetensors tensor `{name}`: {e}")))?;
        views.push((*name, view));
    }
    ::safetensors::serialize_to_file(views.iter().map(|(name, view)| (*name, view)), None, path)
        .map_err(|e| FormatError::Invalid(format!("writing safetensors {}: {e}", path.display())))
}
