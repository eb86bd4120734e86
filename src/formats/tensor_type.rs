//! The element types a weight tensor can have, with their block layout.

/// Tensor element types we can load. GGUF numbers them; safetensors names them.
/// The quantized ones keep ggml's names (`Q4_K`), the field's vocabulary.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TensorType {
    F32,
    F16,
    BF16,
    /// 32 weights: f16 scale `d`, 32 x i8. Value = d * q.
    Q8_0,
    /// 32 weights: f16 scale `d`, 16 bytes of nibbles. Value = d * (q - 8).
    Q4_0,
    /// 32 weights: f16 scale `d`, f16 min `m`, 16 bytes of nibbles. Value = d * q + m.
    Q4_1,
    /// 32 weights: f16 `d`, 32 high bits, 16 bytes of low nibbles. Value = d * (q - 16).
    Q5_0,
    /// 32 weights: f16 `d`, f16 `m`, 32 high bits, 16 bytes of low nibbles. Value = d * q + m.
    Q5_1,
    /// 256 weights: f16 `d`, f16 `dmin`, 8 x (6-bit scale, 6-bit min) in 12
    /// bytes, 128 bytes of nibbles. Value = d * sc * q - dmin * m per 32.
    Q4_K,
    /// 256 weights: 16 x (4-bit scale, 4-bit min) bytes, 64 bytes of 2-bit
    /// quants, f16 `d`, f16 `dmin`. Value = d * sc * q - dmin * m per 16.
    Q2_K,
    /// 256 weights: 32 bytes of high bits, 64 of 2-bit lows, 16 6-bit scales
    /// in 12 bytes, f16 `d`. Value = d * (sc - 32) * (q - 4) per 16.
    Q3_K,
    /// Q4_K plus 32 bytes of high bits (5-bit quants).
    Q5_K,
    /// 256 weights: 128 bytes of low nibbles, 64 of 2-bit highs, 16 i8
    /// scales, f16 `d`. Value = d * sc * (q - 32) per 16.
    Q6_K,
    /// 32 weights: f16 `d`, 16 bytes of nibbles indexing the fixed
    /// non-linear table `kvalues_iq4nl`. Value = d * kvalues[q].
    IQ4_NL,
    /// 256 weights: f16 `d`, 8 6-bit scales (high 2 bits in a u16, low 4 in
    /// 4 bytes), 128 bytes of nibbles. Value = d * (ls - 32) * kvalues[q] per 32.
    IQ4_XS,
}

impl TensorType {
    /// Weights per block (1 for plain float types).
    pub fn block_len(self) -> usize {
        match self {
            TensorType::F32 | TensorType::F16 | TensorType::BF16 => 1,
            TensorType::Q8_0
            | TensorType::Q4_0
            | TensorType::Q4_1
            | TensorType::Q5_0
            | TensorType::Q5_1
            | TensorType::IQ4_NL => 32,
            TensorType::Q2_K
            | TensorType::Q3_K
            | TensorType::Q4_K
            | TensorType::Q5_K
            | TensorType::Q6_K
            | TensorType::IQ4_XS => 256,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            TensorType::F32 => 4,
            TensorType::F16 | TensorType::BF16 => 2,
            TensorType::Q8_0 => 34,
            TensorType::Q4_0 => 18,
            TensorType::Q4_1 => 20,
            TensorType::Q5_0 => 22,
            TensorType::Q5_1 => 24,
            TensorType::Q2_K => 84,
            TensorType::Q3_K => 110,
            TensorType::Q4_K => 144,
            TensorType::Q5_K => 176,
            TensorType::Q6_K => 210,
            TensorType::IQ4_NL => 18,
            TensorType::IQ4_XS => 136,
        }
    }

    /// Bytes for `num_elements` weights, or `None` when they do not fill
    /// whole blocks or the size overflows.
    pub fn size_in_bytes(self, num_elements: u64) -> Option<u64> {
        let block_len = self.block_len() as u64;
        if !num_elements.is_multiple_of(block_len) {
            return None;
        }
        (num_elements / block_len).checked_mul(self.block_bytes() as u64)
    }

    pub fn is_quantized(self) -> bool {
        self.block_len() > 1
    }

    pub fn name(self) -> &'static str {
        match self {
            TensorType::F32 => "F32",
            TensorType::F16 => "F16",
            TensorType::BF16 => "BF16",
            TensorType::Q8_0 => "Q8_0",
            TensorType::Q4_0 => "Q4_0",
            TensorType::Q4_1 => "Q4_1",
            TensorType::Q5_0 => "Q5_0",
            TensorType::Q5_1 => "Q5_1",
            TensorType::Q2_K => "Q2_K",
            TensorType::Q3_K => "Q3_K",
            TensorType::Q4_K => "Q4_K",
            TensorType::Q5_K => "Q5_K",
            TensorType::Q6_K => "Q6_K",
            TensorType::IQ4_NL => "IQ4_NL",
            TensorType::IQ4_XS => "IQ4_XS",
        }
    }
}

impl std::fmt::Display for TensorType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
