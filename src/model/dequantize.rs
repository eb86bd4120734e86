//! CPU dequantization of a packed matrix, read the way the kernels read it
//! (`shaders/matmul*.wgsl`, `embedding.wgsl`). The tests check it against
//! gguf-py's dequantizer on the committed fixtures and then use it as the
//! reference of the GPU kernels. Not on any serving path.

use half::f16;

use crate::gpu::kernels::matmul::WeightFormat;
use crate::gpu::kernels::matmul_quant::{IQ4_KVALUES, QuantLayout};

use super::weights::PackedMatrix;

fn f16_halves(word: u32) -> (f32, f32) {
    (f16::from_bits(word as u16).to_f32(), f16::from_bits((word >> 16) as u16).to_f32())
}

/// (s_lo, s_hi, o_lo, o_hi, z) of 32-weight block b of a row: value =
/// s * (q - z) + o per half of 16 weights (the shaders' `affine`).
fn affine(packed: &PackedMatrix, row: usize, b: usize) -> ([f32; 2], [f32; 2], f32) {
    let blocks = packed.cols / 32;
    let word = |at: usize| packed.scales[at];
    match packed.format {
        WeightFormat::Q4_0 | WeightFormat::Q8_0 | WeightFormat::Q5_0 | WeightFormat::IQ4_NL => {
            let d = f32::from_bits(word(row * blocks + b));
            let z = match packed.format {
                WeightFormat::Q4_0 => 8.0,
                WeightFormat::Q5_0 => 16.0,
                _ => 0.0,
            };
            ([d, d], [0.0, 0.0], z)
        }
        WeightFormat::Q4_1 | WeightFormat::Q5_1 => {
            let (d, m) = f16_halves(word(row * blocks + b));
            ([d, d], [m, m], 0.0)
        }
        WeightFormat::Q4_K | WeightFormat::Q5_K => {
            let at = (row * blocks / 8 + b / 8) * 6;
            let (d, dmin) = (f32::from_bits(word(at)), f32::from_bits(word(at + 1)));
            let j = b % 8;
            let pair = word(at + 2 + j / 2) >> (16 * (j % 2));
            let s = d * (pair & 63) as f32;
            let o = -(dmin * ((pair >> 8) & 63) as f32);
            ([s, s], [o, o], 0.0)
        }
        WeightFormat::Q6_K | WeightFormat::Q3_K => {
            let at = (row * blocks / 8 + b / 8) * 5;
            let d = f32::from_bits(word(at));
            let j = b % 8;
            let pair = word(at + 1 + j / 2) >> (16 * (j % 2));
            let (s0, s1) = (pair as u8 as i8, (pair >> 8) as u8 as i8);
            let z = if packed.format == WeightFormat::Q6_K { 32.0 } else { 4.0 };
            ([d * s0 as f32, d * s1 as f32], [0.0, 0.0], z)
        }
        WeightFormat::Q2_K => {
            let at = (row * blocks / 8 + b / 8) * 6;
            let (d, dmin) = (f32::from_bits(word(at)), f32::from_bits(word(at + 1)));
            let j = b % 8;
            let pair = word(at + 2 + j / 2) >> (16 * (j % 2));
            let (b0, b1) = (pair & 255, (pair >> 8) & 255);
            let s = [d * (b0 & 15) as f32, d * (b1 & 15) as f32];
            ([s[0], s[1]], [-(dmin * (b0 >> 4) as f32), -(dmin * (b1 >> 4) as f32)], 0.0)
        }
        WeightFormat::IQ4_XS => {
            let at = (row * blocks / 8 + b / 8) * 3;
            let d = f32::from_bits(word(at));
            let j = b % 8;
            let s = d * (word(at + 1 + j / 4) >> (8 * (j % 4))) as u8 as i8 as f32;
            ([s, s], [0.0, 0.0], 0.0)
        }
        WeightFormat::F32 | WeightFormat::F16 => ([1.0, 1.0], [0.0, 0.0], 0.0),
    }
}

/// The 32 codes of block b of a row, as unsigned (Q8_0: signed) integers;
/// IQ4 codes as the table values they index.
fn codes(packed: &PackedMatrix, row: usize, b: usize) -> [f32; 32] {
    let blocks = packed.cols / 32;
    let mut q = [0f32; 32];
    if packed.format == WeightFormat::Q8_0 {
        let at = (row * blocks + b) * 8;
        for (i, code) in q.iter_mut().enumerate() {
            *code = (packed.data[at + i / 4] >> (8 * (i % 4))) as u8 as i8 as f32;
        }
        return q;
    }
    let layout = QuantLayout::of(packed.format);
    let (low_bits, high_bits) = layout.map_or((4, 0), |l| (l.low_bits, l.high_bits));
    let at = (row * blocks + b) * (low_bits + high_bits) as usize;
    let high_at = at + low_bits as usize;
    for j in 0..16 {
        let (w, i) = (j / 4, j % 4);
        // Nibble word w: a low word itself, or one half of a 2-bit one.
        let nibble_word = match low_bits {
            2 => (packed.data[at + w / 2] >> (2 * (w % 2))) & 0x3333_3333,
            _ => packed.data[at + w],
        };
        let byte = nibble_word >> (8 * i);
        let (mut lo, mut hi) = (byte & 15, (byte >> 4) & 15);
        match high_bits {
            1 => {
                let h = packed.data[high_at] >> (8 * i);
                lo |= ((h >> (4 + w)) & 1) << 4;
                hi |= ((h >> w) & 1) << 4;
            }
            2 => {
                let h = packed.data[high_at + w / 2] >> (8 * i + 4 - 4 * (w % 2));
                lo |= (h & 3) << 4;
                hi |= ((h >> 2) & 3) << 4;
            }
            _ => {}
        }
        q[j] = lo as f32;
        q[j + 16] = hi as f32;
    }
    if layout.is_some_and(QuantLayout::is_codebook) {
        q = q.map(|code| IQ4_KVALUES[code as usize] as f32);
    }
    q
}

/// Every weight of `packed` as f32, row by row ([rows, cols]).
pub fn dequantize(packed: &PackedMatrix) -> Vec<f32> {
    match packed.format {
        WeightFormat::F32 => return packed.data.iter().map(|&bits| f32::from_bits(bits)).collect(),
        WeightFormat::F16 => {
            return packed
                .data
                .iter()
                .flat_map(|&word| {
                    let (a, b) = f16_halves(word);
                    [a, b]
                })
                .collect();
        }
        _ => {}
    }
    let mut values = Vec::with_capacity(packed.rows * packed.cols);
    for row in 0..packed.rows {
        for b in 0..packed.cols / 32 {
            let (s, o, z) = affine(packed, row, b);
            let q = codes(packed, row, b);
            values.extend(q.iter().enumerate().map(|(i, &q)| s[i / 16] * (q - z) + o[i / 16]));
        }
    }
    values
}
