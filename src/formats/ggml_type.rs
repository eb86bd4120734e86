//! GGML tensor type ids as GGUF stores them, known to us or not.
//!
//! A GGUF file may hold tensors of types we cannot compute with (most
//! i-quants). Their block layout is still known, so opening the file checks
//! their bounds and `info`-style listings can name them; only turning one
//! into a [`TensorType`] (to load it) fails, with `Unsupported`.

use super::{FormatError, TensorType};

/// A ggml type id (`ggml_type` in ggml.h) with a known block layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GgmlType(u32);

/// Name, weights per block, bytes per block.
struct Layout(&'static str, u64, u64);

/// Super-block length of the K-quants and most i-quants.
const QK_K: u64 = 256;

/// Block layouts of ggml.h / gguf-py `GGML_QUANT_SIZES`. Ids 4, 5 and 31..=33,
/// 36..=38 were removed from ggml and are no longer written.
fn layout(id: u32) -> Option<Layout> {
    let layout = match id {
        0 => Layout("F32", 1, 4),
        1 => Layout("F16", 1, 2),
        2 => Layout("Q4_0", 32, 18),
        3 => Layout("Q4_1", 32, 20),
        6 => Layout("Q5_0", 32, 22),
        7 => Layout("Q5_1", 32, 24),
        8 => Layout("Q8_0", 32, 34),
        9 => Layout("Q8_1", 32, 36),
        10 => Layout("Q2_K", QK_K, 84),
        11 => Layout("Q3_K", QK_K, 110),
        12 => Layout("Q4_K", QK_K, 144),
        13 => Layout("Q5_K", QK_K, 176),
        14 => Layout("Q6_K", QK_K, 210),
        15 => Layout("Q8_K", QK_K, 292),
        16 => Layout("IQ2_XXS", QK_K, 66),
        17 => Layout("IQ2_XS", QK_K, 74),
        18 => Layout("IQ3_XXS", QK_K, 98),
        19 => Layout("IQ1_S", QK_K, 50),
        20 => Layout("IQ4_NL", 32, 18),
        21 => Layout("IQ3_S", QK_K, 110),
        22 => Layout("IQ2_S", QK_K, 82),
        23 => Layout("IQ4_XS", QK_K, 136),
        24 => Layout("I8", 1, 1),
        25 => Layout("I16", 1, 2),
        26 => Layout("I32", 1, 4),
        27 => Layout("I64", 1, 8),
        28 => Layout("F64", 1, 8),
        29 => Layout("IQ1_M", QK_K, 56),
        30 => Layout("BF16", 1, 2),
        34 => Layout("TQ1_0", QK_K, 54),
        35 => Layout("TQ2_0", QK_K, 66),
        39 => Layout("MXFP4", 32, 17),
        _ => return None,
    };
    Some(layout)
}

impl GgmlType {
    /// The type with this id, or `None` when ggml has no such type (then we
    /// cannot even tell how many bytes a tensor of it takes).
    pub fn from_id(id: u32) -> Option<Self> {
        layout(id).map(|_| GgmlType(id))
    }

    pub fn id(self) -> u32 {
        self.0
    }

    fn layout(self) -> Layout {
        // `from_id` and `From<TensorType>` only build ids that have a layout.
        layout(self.0).unwrap_or(Layout("?", 1, 1))
    }

    /// The ggml name, e.g. `"Q4_K"`.
    pub fn name(self) -> &'static str {
        self.layout().0
    }

    /// Weights per block.
    pub fn block_len(self) -> u64 {
        self.layout().1
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> u64 {
        self.layout().2
    }

    /// Bytes for `num_elements` weights, or `None` when they do not fill
    /// whole blocks or the size overflows.
    pub fn size_in_bytes(self, num_elements: u64) -> Option<u64> {
        let Layout(_, block_len, block_bytes) = self.layout();
        if !num_elements.is_multiple_of(block_len) {
            return None;
        }
        (num_elements / block_len).checked_mul(block_bytes)
    }

    /// The type we can compute with, if this is one.
    pub fn tensor_type(self) -> Option<TensorType> {
        match self.0 {
            0 => Some(TensorType::F32),
            1 => Some(TensorType::F16),
            2 => Some(TensorType::Q4_0),
            3 => Some(TensorType::Q4_1),
            6 => Some(TensorType::Q5_0),
            7 => Some(TensorType::Q5_1),
            8 => Some(TensorType::Q8_0),
            10 => Some(TensorType::Q2_K),
            11 => Some(TensorType::Q3_K),
            12 => Some(TensorType::Q4_K),
            13 => Some(TensorType::Q5_K),
            14 => Some(TensorType::Q6_K),
            20 => Some(TensorType::IQ4_NL),
            23 => Some(TensorType::IQ4_XS),
            30 => Some(TensorType::BF16),
            _ => None,
        }
    }

    /// Like [`GgmlType::tensor_type`], with an `Unsupported` error naming the type.
    pub fn supported(self) -> Result<TensorType, FormatError> {
        self.tensor_type().ok_or_else(|| {
            FormatError::Unsupported(format!(
                "tensor type {} (ggml type {}); supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS",
                self.name(),
                self.0
            ))
        })
    }
}

impl From<TensorType> for GgmlType {
    fn from(tensor_type: TensorType) -> Self {
        GgmlType(match tensor_type {
            TensorType::F32 => 0,
            TensorType::F16 => 1,
            TensorType::Q4_0 => 2,
            TensorType::Q4_1 => 3,
            TensorType::Q5_0 => 6,
            TensorType::Q5_1 => 7,
            TensorType::Q8_0 => 8,
            TensorType::Q2_K => 10,
            TensorType::Q3_K => 11,
            TensorType::Q4_K => 12,
            TensorType::Q5_K => 13,
            TensorType::Q6_K => 14,
            TensorType::IQ4_NL => 20,
            TensorType::IQ4_XS => 23,
            TensorType::BF16 => 30,
        })
    }
}

/// Lets callers write `info.tensor_type == TensorType::Q8_0`.
impl PartialEq<TensorType> for GgmlType {
    fn eq(&self, other: &TensorType) -> bool {
        self.tensor_type() == Some(*other)
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
