//! GGUF v2/v3 reader: metadata, tensor infos, and borrowed tensor bytes.
//!
//! Owns the file's bytes (a read-only memory map, or a `Vec` for tests) and
//! the parsed header. Every bound is checked at open (see `parse`), so
//! `tensor_data` is a plain slice. It knows no model semantics: which keys
//! and tensors a model needs is the model loader's business.

mod parse;
mod value;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

pub use super::ggml_type::GgmlType;
use super::storage::Storage;
use super::{FormatError, TensorType};
pub use value::GgufValue;

/// One tensor as the header describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufTensorInfo {
    pub name: String,
    /// GGUF order: `dims[0]` is the innermost (contiguous) dimension, so a
    /// matrix of `[rows, cols]` is stored as `dims = [cols, rows]`.
    pub dims: Vec<u64>,
    /// May be a type we cannot compute with; [`GgufTensorInfo::supported_type`]
    /// says so when loading.
    pub tensor_type: GgmlType,
    /// Relative to the data section; a multiple of the file's alignment.
    pub offset: u64,
    pub size_in_bytes: u64,
}

impl GgufTensorInfo {
    pub fn num_elements(&self) -> u64 {
        // Checked not to overflow at open; saturate for hand-built infos.
        self.dims.iter().fold(1u64, |acc, &d| acc.saturating_mul(d))
    }

    /// The tensor's type if we can load it, else `Unsupported` naming the
    /// tensor and its type.
    pub fn supported_type(&self) -> Result<TensorType, FormatError> {
        self.tensor_type
            .supported()
            .map_err(|e| FormatError::Unsupported(format!("tensor `{}`: {}", self.name, unsupported(e))))
    }
}

fn unsupported(err: FormatError) -> String {
    match err {
        FormatError::Unsupported(msg) => msg,
        other => other.to_string(),
    }
}

/// An open, validated GGUF file.
pub struct GgufFile {
    pub version: u32,
    pub metadata: BTreeMap<String, GgufValue>,
    /// In file order.
    pub tensors: Vec<GgufTensorInfo>,
    index: HashMap<String, usize>,
    storage: Storage,
    alignment: u64,
    /// Absolute file offset where tensor offsets start.
    data_offset: u64,
}

impl GgufFile {
    /// Maps the file read-only and parses its header.
    pub fn open(path: &Path) -> Result<Self, FormatError> {
        Self::from_storage(Storage::map(path)?, &format!("GGUF file {}", path.display()))
    }

    /// Parses a GGUF file held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, FormatError> {
        Self::from_storage(Storage::Owned(bytes), "GGUF")
    }

    fn from_storage(storage: Storage, source: &str) -> Result<Self, FormatError> {
        let header = parse::parse(storage.bytes(), source)?;
        Ok(GgufFile {
            version: header.version,
            metadata: header.metadata,
            tensors: header.tensors,
            index: header.index,
            storage,
            alignment: header.alignment,
            data_offset: header.data_offset,
        })
    }

    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }

    fn get_as<'a, T>(
        &'a self,
        key: &str,
        expected: &str,
        convert: impl FnOnce(&'a GgufValue) -> Option<T>,
    ) -> Result<T, FormatError> {
        let value = self
            .get(key)
            .ok_or_else(|| FormatError::Invalid(format!("GGUF metadata key `{key}` is missing")))?;
        convert(value).ok_or_else(|| {
            FormatError::Invalid(format!(
                "GGUF metadata key `{key}` is {}, expected {expected}",
                value.summary()
            ))
        })
    }

    /// Any non-negative integer.
    pub fn get_u64(&self, key: &str) -> Result<u64, FormatError> {
        self.get_as(key, "a non-negative integer", GgufValue::as_u64)
    }

    /// Any number.
    pub fn get_f64(&self, key: &str) -> Result<f64, FormatError> {
        self.get_as(key, "a number", GgufValue::as_f64)
    }

    pub fn get_str(&self, key: &str) -> Result<&str, FormatError> {
        self.get_as(key, "a string", GgufValue::as_str)
    }

    pub fn get_bool(&self, key: &str) -> Result<bool, FormatError> {
        self.get_as(key, "a bool", GgufValue::as_bool)
    }

    pub fn get_array(&self, key: &str) -> Result<&[GgufValue], FormatError> {
        self.get_as(key, "an array", GgufValue::as_array)
    }

    pub fn tensor(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.index.get(name).and_then(|&i| self.tensors.get(i))
    }

    /// The tensor's raw bytes (blocks as stored, little-endian).
    ///
    /// # Panics
    /// If `info` does not come from this file: its bounds were checked
    /// against this file only.
    pub fn tensor_data(&self, info: &GgufTensorInfo) -> &[u8] {
        let start = self.data_offset + info.offset;
        let end = start + info.size_in_bytes;
        &self.storage.bytes()[start as usize..end as usize]
    }

    /// Alignment of the data section and of every tensor offset, in bytes.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute file offset of the data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("version", &self.version)
            .field("metadata_keys", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("alignment", &self.alignment)
            .field("data_offset", &self.data_offset)
            .finish()
    }
}
