//! Weight repacking for the GPU: file blocks (GGUF Q4_0/Q4_1/Q8_0, or plain
//! floats) become 4-byte aligned arrays the WGSL kernels read as `u32`: one
//! array of packed values, one of per-block scales. Quantized weights stay
//! quantized; the matmul kernels dequantize in registers.

use std::ops::Range;

use half::{bf16, f16};

use crate::formats::TensorType;
use crate::gpu::kernels::matmul::WeightFormat;

use super::{ModelError, quant_pack};

/// A weight matrix `[rows, cols]` (row-major: each row is one output) as the
/// kernels read it.
#[derive(Debug, Clone)]
pub struct PackedMatrix {
    pub format: WeightFormat,
    pub rows: usize,
    pub cols: usize,
    /// Q4: [rows, cols/32, 4] nibble words; Q8_0: [rows, cols/32, 8] byte
    /// words; F16: [rows, cols/2] f16 pairs; F32: [rows, cols] f32 bits;
    /// Q5_*, K-quants: [rows, cols/32, 4 + high bits] (see `quant_pack`).
    pub data: Vec<u32>,
    /// Q4_1: [rows, cols/32] pack2x16float(d, m); Q4_0/Q8_0: [rows, cols/32]
    /// f32 bits of d; float formats: empty; the others: see `quant_pack`.
    pub scales: Vec<u32>,
}

impl PackedMatrix {
    /// Words of `data` per row: every format packs rows independently.
    pub fn data_words_per_row(&self) -> usize {
        self.data.len().checked_div(self.rows).unwrap_or(0)
    }

    /// Words of `scales` per row (0 for the float formats).
    pub fn scale_words_per_row(&self) -> usize {
        self.scales.len().checked_div(self.rows).unwrap_or(0)
    }

    /// Rows `rows` as a matrix of their own.
    pub fn slice_rows(&self, rows: Range<usize>) -> PackedMatrix {
        let (data_words, scale_words) = (self.data_words_per_row(), self.scale_words_per_row());
        PackedMatrix {
            format: self.format,
            rows: rows.len(),
            cols: self.cols,
            data: self.data[rows.start * data_words..rows.end * data_words].to_vec(),
            scales: self.scales[rows.start * scale_words..rows.end * scale_words].to_vec(),
        }
    }
}

fn le_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn f16_to_f32_bits(bits: u16) -> u32 {
    f16::from_bits(bits).to_f32().to_bits()
}

/// Packs `bytes` holding a `[rows, cols]` tensor of `tensor_type`.
pub fn pack_matrix(
    name: &str,
    tensor_type: TensorType,
    bytes: &[u8],
    rows: usize,
    cols: usize,
) -> Result<PackedMatrix, ModelError> {
    let invalid = |why: String| ModelError::InvalidTensor { name: name.to_string(), why };
    // Rows must be whole blocks (256 weights for K-quants), and the kernels
    // work in blocks of 32.
    let row_block = tensor_type.block_len().max(32);
    if !cols.is_multiple_of(row_block) {
        return Err(invalid(format!("row length {cols} of {tensor_type} is not a multiple of {row_block}")));
    }
    let elements = rows.checked_mul(cols).ok_or_else(|| invalid("size overflows".into()))?;
    let expected =
        tensor_type.size_in_bytes(elements as u64).ok_or_else(|| invalid("size overflows".into()))?;
    if bytes.len() as u64 != expected {
        return Err(invalid(format!(
            "{} bytes of {tensor_type} data for [{rows}, {cols}], expected {expected}",
            bytes.len()
        )));
    }
    if let Some((data, scales, format)) = quant_pack::pack_quant(tensor_type, bytes) {
        return Ok(PackedMatrix { format, rows, cols, data, scales });
    }
    let blocks = elements / 32;
    let block_bytes = tensor_type.block_bytes();
    let packed = match tensor_type {
        TensorType::F32 => PackedMatrix {
            format: WeightFormat::F32,
            rows,
            cols,
            data: bytes.chunks_exact(4).map(|c| le_u32(c, 0)).collect(),
            scales: Vec::new(),
        },
        TensorType::F16 => PackedMatrix {
            format: WeightFormat::F16,
            rows,
            cols,
            data: bytes.chunks_exact(4).map(|c| le_u32(c, 0)).collect(),
            scales: Vec::new(),
        },
        // bf16 widens to f32 exactly; narrowing to f16 could overflow.
        TensorType::BF16 => PackedMatrix {
            format: WeightFormat::F32,
            rows,
            cols,
            data: bytes.chunks_exact(2).map(|c| bf16::from_bits(le_u16(c, 0)).to_f32().to_bits()).collect(),
            scales: Vec::new(),
        },
        TensorType::Q8_0 => {
            let mut data = Vec::with_capacity(blocks * 8);
            let mut scales = Vec::with_capacity(blocks);
            for block in bytes.chunks_exact(block_bytes) {
                scales.push(f16_to_f32_bits(le_u16(block, 0)));
                data.extend((0..8).map(|w| le_u32(block, 2 + 4 * w)));
            }
            PackedMatrix { format: WeightFormat::Q8_0, rows, cols, data, scales }
        }
        TensorType::Q4_0 => {
            let mut data = Vec::with_capacity(blocks * 4);
            let mut scales = Vec::with_capacity(blocks);
            for block in bytes.chunks_exact(block_bytes) {
                scales.push(f16_to_f32_bits(le_u16(block, 0)));
                data.extend((0..4).map(|w| le_u32(block, 2 + 4 * w)));
            }
            PackedMatrix { format: WeightFormat::Q4_0, rows, cols, data, scales }
        }
        TensorType::Q4_1 => {
            let mut data = Vec::with_capacity(blocks * 4);
            let mut scales = Vec::with_capacity(blocks);
            for block in bytes.chunks_exact(block_bytes) {
                // pack2x16float order: d in the low half, m in the high half.
                scales.push(le_u16(block, 0) as u32 | (le_u16(block, 2) as u32) << 16);
                data.extend((0..4).map(|w| le_u32(block, 4 + 4 * w)));
            }
            PackedMatrix { format: WeightFormat::Q4_1, rows, cols, data, scales }
        }
        TensorType::Q5_0
        | TensorType::Q5_1
        | TensorType::Q2_K
        | TensorType::Q3_K
        | TensorType::Q4_K
        | TensorType::Q5_K
        | TensorType::Q6_K
        | TensorType::IQ4_NL
        | TensorType::IQ4_XS => {
            return Err(invalid(format!("{tensor_type} should have been packed by quant_pack")));
        }
    };
    Ok(packed)
}

/// An f32 matrix as f16 pairs (round to nearest), which halves what the
/// matmul reads; any other matrix, or one with a value beyond f16's range,
/// comes back unchanged. On lavapipe an f16 matmul runs about twice as
/// fast as an f32 one (half the per-lane loads).
pub fn narrow_to_f16(packed: PackedMatrix) -> PackedMatrix {
    let fits = |bits: &u32| f32::from_bits(*bits).abs() <= f16::MAX.to_f32();
    if packed.format != WeightFormat::F32 || !packed.data.iter().all(fits) {
        return packed;
    }
    let half = |bits: u32| f16::from_f32(f32::from_bits(bits)).to_bits() as u32;
    // pack2x16float order: element 2i in the low half, 2i + 1 in the high half.
    let data = packed.data.chunks_exact(2).map(|pair| half(pair[0]) | half(pair[1]) << 16).collect();
    PackedMatrix { format: WeightFormat::F16, data, ..packed }
}

/// Stacks matrices with the same format and row length into one, rows of
/// the first on top (fuses Q/K/V and gate/up into one matmul).
pub fn concat_rows(parts: Vec<PackedMatrix>) -> Result<PackedMatrix, ModelError> {
    let mut iter = parts.into_iter();
    let mut first = iter.next().ok_or_else(|| ModelError::Config("nothing to concatenate".into()))?;
    for part in iter {
        if part.format != first.format || part.cols != first.cols {
            return Err(ModelError::Config(format!(
                "cannot fuse {} [{}, {}] with {} [{}, {}]",
                first.format.name(),
                first.rows,
                first.cols,
                part.format.name(),
                part.rows,
                part.cols
            )));
        }
        first.rows += part.rows;
        first.data.extend(part.data);
        first.scales.extend(part.scales);
    }
    Ok(first)
}

/// Any float tensor as f32 values (norm weights, biases).
pub fn to_f32_vec(name: &str, tensor_type: TensorType, bytes: &[u8]) -> Result<Vec<f32>, ModelError> {
    match tensor_type {
        TensorType::F32 => Ok(bytes.chunks_exact(4).map(|c| f32::from_bits(le_u32(c, 0))).collect()),
        TensorType::F16 => Ok(bytes.chunks_exact(2).map(|c| f16::from_bits(le_u16(c, 0)).to_f32()).collect()),
        TensorType::BF16 => {
            Ok(bytes.chunks_exact(2).map(|c| bf16::from_bits(le_u16(c, 0)).to_f32()).collect())
        }
        other => Err(ModelError::InvalidTensor {
            name: name.to_string(),
            why: format!("expected a float tensor, found {other}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32_matrix(values: &[f32]) -> PackedMatrix {
        PackedMatrix {
            format: WeightFormat::F32,
            rows: 1,
            cols: values.len(),
            data: values.iter().map(|v| v.to_bits()).collect(),
            scales: Vec::new(),
        }
    }

    #[test]
    fn f32_narrows_to_f16_pairs_unless_a_value_overflows() {
        let values: Vec<f32> = (0..32).map(|i| (i as f32 - 15.5) * 0.013).collect();
        let narrowed = narrow_to_f16(f32_matrix(&values));
        assert_eq!(narrowed.format, WeightFormat::F16);
        assert_eq!(narrowed.data.len(), 16);
        for (i, &v) in values.iter().enumerate() {
            let bits = (narrowed.data[i / 2] >> (16 * (i % 2))) as u16;
            assert_eq!(f16::from_bits(bits), f16::from_f32(v), "element {i}");
        }
        let mut too_big = values.clone();
        too_big[7] = 70_000.0;
        assert_eq!(narrow_to_f16(f32_matrix(&too_big)).format, WeightFormat::F32);
    }
}
