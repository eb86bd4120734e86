//! `shaders/matmul_quant.wgsl`: the matmul of the 5- and 6-bit, K-quant
//! and IQ4 formats (Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL,
//! IQ4_XS), keyed by `MatmulKey` like the
//! other formats, with the same bindings, tiles and dispatch size. Their
//! packed layout is written in `model::quant_pack`.

use crate::gpu::pipelines::KernelSpec;

use super::KernelFamily;
use super::matmul::{BINDINGS, MatmulKey, Tile, WeightFormat, gpu_entry_point};

/// The values IQ4_NL and IQ4_XS codes stand for (`kvalues_iq4nl` in
/// ggml-common.h), before the block scale; embedding.wgsl holds the same
/// table, matmul_quant.wgsl computes it (`iq4_values`).
pub const IQ4_KVALUES: [i8; 16] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

/// What the shaders' `FORMAT` and `HIGH_BITS` overrides say about a format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuantLayout {
    /// `FORMAT` in the shaders: which scale layout `affine()` reads.
    pub code: u32,
    /// Bits of each code above its low nibble: 0 (4-bit), 1 (5-bit), 2 (6-bit).
    pub high_bits: u32,
}

impl QuantLayout {
    /// The layout of a format this shader family handles, or `None`.
    pub fn of(format: WeightFormat) -> Option<Self> {
        let (code, high_bits) = match format {
            WeightFormat::Q5_0 => (0, 1),
            WeightFormat::Q5_1 => (1, 1),
            WeightFormat::Q4_K => (2, 0),
            // 2- and 3-bit codes sit in nibbles (HIGH_BITS 0): simpler
            // than a third unpacking, at 4 bits of codes per weight.
            WeightFormat::Q2_K => (5, 0),
            WeightFormat::Q3_K => (6, 0),
            WeightFormat::Q5_K => (3, 1),
            WeightFormat::Q6_K => (4, 2),
            // Nibbles that index the fixed table `IQ4_KVALUES`.
            WeightFormat::IQ4_NL => (7, 0),
            WeightFormat::IQ4_XS => (8, 0),
            WeightFormat::F32
            | WeightFormat::F16
            | WeightFormat::Q8_0
            | WeightFormat::Q4_0
            | WeightFormat::Q4_1 => {
                return None;
            }
        };
        Some(Self { code, high_bits })
    }

    /// Whether a code indexes `IQ4_KVALUES` instead of being the integer itself.
    pub fn is_codebook(self) -> bool {
        self.code >= 7
    }

    /// Packed words per 32 weights: 4 of nibbles, then the high bits.
    pub fn words_per_block(self) -> usize {
        4 + self.high_bits as usize
    }

    /// The overrides that specialize a shader to this layout.
    pub(crate) fn constants(self) -> [(&'static str, f64); 2] {
        [("FORMAT", self.code as f64), ("HIGH_BITS", self.high_bits as f64)]
    }
}

pub(crate) fn spec(key: &MatmulKey, layout: QuantLayout) -> KernelSpec {
    let entry_point = match (key.family, key.tile) {
        (KernelFamily::Gpu, tile) => gpu_entry_point(tile),
        (KernelFamily::Cpu, Tile::Rows8) => "matvec_quant",
        (KernelFamily::Cpu, Tile::Rows4Tokens4) => "matmul_quant",
    };
    let mut constants = key.output_constants();
    constants.extend(layout.constants());
    KernelSpec {
        label: "matmul_quant",
        source: concat!(
            include_str!("../../../shaders/matmul_quant.wgsl"),
            include_str!("../../../shaders/quant_codes.wgsl"),
            include_str!("../../../shaders/matvec_rows.wgsl"),
            include_str!("../../../shaders/mul_add.wgsl"),
            include_str!("../../../shaders/activation.wgsl"),
            include_str!("../../../shaders/matmul_gpu.wgsl")
        ),
        entry_point,
        bindings: BINDINGS,
        constants,
    }
}
