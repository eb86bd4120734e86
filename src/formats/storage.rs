//! The bytes of a model file: memory-mapped from disk, or owned (tests,
//! in-memory files). Both readers parse from a `&[u8]` view of it.

use std::fs::File;
use std::path::Path;

use super::FormatError;

pub(crate) enum Storage {
    Mmap(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Storage {
    /// Maps `path` read-only.
    pub(crate) fn map(path: &Path) -> Result<Self, FormatError> {
        let io_err = |source| FormatError::Io { path: path.display().to_string(), source };
        let file = File::open(path).map_err(io_err)?;
        // SAFETY: the map is read-only; as with every mmap-based model
        // loader, the file must not be truncated or rewritten while open.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_err)?;
        Ok(Storage::Mmap(map))
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mmap(map) => map,
            Storage::Owned(bytes) => bytes,
        }
    }
}
