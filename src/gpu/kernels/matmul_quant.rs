//! `shaders/matmul_quant.wgsl`: the matmul of the 5- and 6-bit, K-quant
//! and IQ4 formats (Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL,
//! IQ4_XS), keyed by `MatmulKey` like the
//! other formats, with the same bindings, tiles and dispatch size. Their
//! packed layout is written in `model::quant_pack`.

use crate::gpu::pipelines::KernelSpec;

use super::KernelFamily;
use super::matmul::{BINDINGS, MatmulKey, Tile, WeightFormat, gpu_entry_point, matmul_source};

/// The values IQ4_NL and IQ4_XS codes stand for (`kvalues_iq4nl` in
/// ggml-common.h), before the block scale; embedding.wgsl holds the same
/// table, matmul_quant.wgsl computes it (`iq4_values`).
pub const IQ4_KVALUES: [i8; 16] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

/// What the shaders' `FORMAT`, `LOW_BITS` and `HIGH_BITS` overrides say
/// about a format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuantLayout {
    /// `FORMAT` in the shaders: which scale layout `affine()` reads.
    pub code: u32,
    /// Bits of each code in its low words: 4 (nibbles, 4 words per 32
    /// weights) or 2 (Q2_K: 2 words; no high bits then).
    pub low_bits: u32,
    /// Bits of each code above its nibble: 0, 1 (5-bit formats) or 2
    /// (Q6_K), a word each per 32 weights.
    pub high_bits: u32,
}

impl QuantLayout {
    /// The layout of a format this shader family handles, or `None`.
    pub fn of(format: WeightFormat) -> Option<Self> {
        let (code, low_bits, high_bits) = match format {
            WeightFormat::Q5_0 => (0, 4, 1),
            WeightFormat::Q5_1 => (1, 4, 1),
            WeightFormat::Q4_K => (2, 4, 0),
            // 2-bit low words: 2.75 bits per weight, near the file's
            // 2.625 (4.75 with the codes in nibbles), and no slower.
            WeightFormat::Q2_K => (5, 2, 0),
            // 3-bit codes in nibbles, 4.62 bits per weight against 3.44 in
            // the file: as 2-bit low words and a word of third bits (3.62)
            // the matvec measured about 20% slower.
            WeightFormat::Q3_K => (6, 4, 0),
            WeightFormat::Q5_K => (3, 4, 1),
            WeightFormat::Q6_K => (4, 4, 2),
            // Nibbles that index the fixed table `IQ4_KVALUES`.
            WeightFormat::IQ4_NL => (7, 4, 0),
            WeightFormat::IQ4_XS => (8, 4, 0),
            WeightFormat::F32
            | WeightFormat::F16
            | WeightFormat::Q8_0
            | WeightFormat::Q4_0
            | WeightFormat::Q4_1 => {
                return None;
            }
        };
        Some(Self { code, low_bits, high_bits })
    }

    /// Whether a code indexes `IQ4_KVALUES` instead of being the integer itself.
    pub fn is_codebook(self) -> bool {
        self.code >= 7
    }

    /// Packed words per 32 weights: the low bits' words, then the high bits'.
    pub fn words_per_block(self) -> usize {
        (self.low_bits + self.high_bits) as usize
    }

    /// The overrides that specialize a shader to this layout.
    pub(crate) fn constants(self) -> [(&'static str, f64); 3] {
        [
            ("FORMAT", self.code as f64),
            ("LOW_BITS", self.low_bits as f64),
            ("HIGH_BITS", self.high_bits as f64),
        ]
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
        source: matmul_source!(
            key,
            [
                "../../../shaders/matmul_quant.wgsl",
                "../../../shaders/quant_scales.wgsl",
                "../../../shaders/quant_codes.wgsl",
                "../../../shaders/matvec_rows.wgsl",
                "../../../shaders/mul_add.wgsl",
                "../../../shaders/activation.wgsl",
                "../../../shaders/matmul_gpu.wgsl"
            ]
        ),
        entry_point,
        bindings: BINDINGS,
        constants,
    }
}
