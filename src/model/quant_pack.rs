//! Repacking of the 5- and 6-bit, K-quant and IQ4 formats (Q5_0, Q5_1,
//! Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS) into the layout
//! `shaders/matmul_quant.wgsl` reads. They stay quantized: about as many bytes as in the file (Q4_K
//! 152 per 256 weights against 144, Q6_K 212 against 210, Q5_0 24 per 32
//! against 22, Q2_K 88 against 84); Q3_K keeps its 3-bit codes in
//! nibbles (148 bytes against 110: packed tighter, its matvec measured
//! about 20% slower).
//!
//! Per 32 weights of a row, the unsigned codes q (0..2^bits) go into:
//! - their low bits (`QuantLayout::low_bits`): 4 words of nibbles, byte j
//!   of the 16 holding weight j in its low nibble and weight j + 16 in its
//!   high one (the Q4_0/Q4_1 order, so the kernels share one nibble
//!   unpacking); or, for Q2_K, 2 words of 2-bit codes, word p holding
//!   nibble words 2p (in bits 0-1 and 4-5 of each byte) and 2p + 1 (bits
//!   2-3 and 6-7), so that one shift and mask gives a nibble word (until
//!   2026-12-01 its codes sat in nibbles, 1.8x the file);
//! - the bits above the nibbles, laid out so that the kernels move the
//!   high bits of nibble word w (weights 4w + i and 16 + 4w + i, i = 0..3)
//!   into bits 4.. of byte i with one shift of the whole word, not one per
//!   weight (per-weight shifts cost the Q5_K/Q6_K matvecs about a fifth of
//!   their speed on llvmpipe):
//!   - 1 word (5-bit formats): in byte i, bit 4 + w = bit 4 of weight
//!     4w + i, bit w = bit 4 of weight 16 + 4w + i;
//!   - 2 words (Q6_K), word w / 2: in byte i, for even w bits 4..5 = bits
//!     4..5 of weight 4w + i and bits 6..7 those of weight 16 + 4w + i; for
//!     odd w bits 0..1 and 2..3 the same.
//!
//! Each half block of 16 weights has a scale s and an offset o and the
//! format a zero point z: value = s * (q - z) + o. The scales array:
//! - Q5_0: [rows, cols/32] f32 bits of d (s = d, o = 0, z = 16);
//! - Q5_1: [rows, cols/32] pack2x16float(d, m) (s = d, o = m);
//! - Q4_K, Q5_K: [rows, cols/256, 6]: f32 bits of d and of dmin, then for
//!   sub-block j the byte pair (sc_j, m_j) at bits 16 (j % 2) of word
//!   2 + j / 2 (s = d sc_j, o = -dmin m_j). The 6-bit scales are unpacked
//!   at load; the products stay in the shader, exact in f32 there;
//! - Q6_K: [rows, cols/256, 5]: f32 bits of d, then the 16 i8 scales as
//!   the file has them (s = d sc, one per 16 weights, z = 32);
//! - Q3_K: as Q6_K, the scales unpacked to i8 sc - 32 (z = 4);
//! - Q2_K: [rows, cols/256, 6]: f32 bits of d and of dmin, then the 16
//!   scale bytes as the file has them, sc | m << 4 (s = d sc, o = -dmin m,
//!   one per 16 weights).
//! - IQ4_NL: as Q5_0, its nibbles index `IQ4_KVALUES` (s = d, z = 0);
//! - IQ4_XS: [rows, cols/256, 3]: f32 bits of d, then the 8 6-bit scales
//!   unpacked to i8 ls - 32, one per 32 weights (s = d (ls - 32)); the
//!   nibbles index `IQ4_KVALUES`. The file's nibble order is already the
//!   Q4 order: its bytes are copied.

use half::f16;

use crate::formats::TensorType;
use crate::gpu::kernels::matmul::WeightFormat;
use crate::gpu::kernels::matmul_quant::QuantLayout;

/// The unsigned codes of 32 consecutive weights.
type Codes = [u8; 32];

// Callers pass whole blocks (`chunks_exact` of the block size), so the
// constant offsets below are always inside.
fn le_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn f16_as_f32_bits(bytes: &[u8], at: usize) -> u32 {
    f16::from_bits(le_u16(bytes, at)).to_f32().to_bits()
}

/// Appends 32 codes as their low words (`low_bits` 4: 4 nibble words;
/// 2: 2 words, each two nibble words' 2-bit codes) and `high_bits` words of
/// the bits above the nibbles, placed so that nibble word w's high bits
/// reach their bytes with one shift for all four (see the module header).
fn push_codes(data: &mut Vec<u32>, q: &Codes, low_bits: u32, high_bits: u32) {
    let low_mask = (1u8 << low_bits) - 1;
    let nibble_word = |w: usize| {
        (0..4).fold(0u32, |word, i| {
            let j = 4 * w + i;
            word | (((q[j] & low_mask) | (q[j + 16] & low_mask) << 4) as u32) << (8 * i)
        })
    };
    if low_bits == 2 {
        data.push(nibble_word(0) | nibble_word(1) << 2);
        data.push(nibble_word(2) | nibble_word(3) << 2);
    } else {
        data.extend((0..4).map(nibble_word));
    }
    let high = |j: usize, mask: u8| ((q[j] >> 4) & mask) as u32;
    match high_bits {
        1 => data.push((0..16).fold(0u32, |word, j| {
            let (w, i) = (j / 4, j % 4);
            word | high(j, 1) << (8 * i + 4 + w) | high(j + 16, 1) << (8 * i + w)
        })),
        2 => {
            for pair in 0..2 {
                data.push((0..8).fold(0u32, |word, k| {
                    let (odd, i) = (k / 4, k % 4);
                    let j = 4 * (2 * pair + odd) + i;
                    let at = 8 * i + 4 - 4 * odd;
                    word | high(j, 3) << at | high(j + 16, 3) << (at + 2)
                }));
            }
        }
        _ => {}
    }
}

/// Codes of a Q5_0/Q5_1 block from its 32 high bits and 16 nibble bytes.
fn q5_codes(qh: u32, qs: &[u8]) -> Codes {
    let mut q = [0u8; 32];
    for j in 0..16 {
        q[j] = (qs[j] & 15) | ((qh >> j) as u8 & 1) << 4;
        q[j + 16] = (qs[j] >> 4) | ((qh >> (j + 16)) as u8 & 1) << 4;
    }
    q
}

/// (sc, m) of sub-block j from a K-quant's 12 packed scale bytes
/// (`get_scale_min_k4` in ggml-quants.c).
fn scale_min_k4(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        ((s[j + 4] & 15) | (s[j - 4] >> 6) << 4, (s[j + 4] >> 4) | (s[j] >> 6) << 4)
    }
}

/// Q4_K and Q5_K blocks: `qh` (Q5_K's 32 bytes of high bits) is empty for Q4_K.
fn pack_k_block(
    block: &[u8],
    qh: &[u8],
    qs: &[u8],
    data: &mut Vec<u32>,
    scales: &mut Vec<u32>,
    high_bits: u32,
) {
    scales.push(f16_as_f32_bits(block, 0));
    scales.push(f16_as_f32_bits(block, 2));
    let packed_scales = &block[4..16];
    for p in 0..4 {
        let (s0, m0) = scale_min_k4(2 * p, packed_scales);
        let (s1, m1) = scale_min_k4(2 * p + 1, packed_scales);
        scales.push(u32::from_le_bytes([s0, m0, s1, m1]));
    }
    for j in 0..8 {
        let mut q = [0u8; 32];
        for (l, code) in q.iter_mut().enumerate() {
            // Each 32 bytes of qs hold two sub-blocks: low nibbles first.
            *code = (qs[32 * (j / 2) + l] >> (4 * (j % 2))) & 15;
            if !qh.is_empty() {
                *code |= ((qh[l] >> j) & 1) << 4;
            }
        }
        push_codes(data, &q, 4, high_bits);
    }
}

/// Q6_K: ql[128], qh[64], scales[16] i8, d f16 (`dequantize_row_q6_K`).
fn pack_q6_k_block(block: &[u8], data: &mut Vec<u32>, scales: &mut Vec<u32>) {
    let (ql, qh) = (&block[0..128], &block[128..192]);
    scales.push(f16_as_f32_bits(block, 208));
    scales.extend((0..4).map(|w| le_u32(block, 192 + 4 * w)));
    for j in 0..8 {
        // Each half of 128 weights: ql's 64 bytes give weights 0..63 (low
        // nibbles) and 64..127 (high ones); qh's 32 bytes four 2-bit
        // fields, field f for weights 32f..32f+31.
        let (n, part) = (j / 4, j % 4);
        let mut q = [0u8; 32];
        for (l, code) in q.iter_mut().enumerate() {
            let i = 32 * part + l;
            let low = (ql[64 * n + i % 64] >> (4 * (i / 64))) & 15;
            let high = (qh[32 * n + l] >> (2 * part)) & 3;
            *code = low | high << 4;
        }
        push_codes(data, &q, 4, 2);
    }
}

/// Q2_K (`scales` 16, qs 64, d, dmin) and Q3_K (hmask 32, qs 64, scales
/// 12, d): 2 low bits of weight i of each half of 128 at bits 2 (i / 32)
/// of qs[32 half + i % 32]; Q3_K's third bit is bit w / 32 of
/// hmask[w % 32] for weight w of the block.
fn pack_q2_q3_block(tensor_type: TensorType, block: &[u8], data: &mut Vec<u32>, scales: &mut Vec<u32>) {
    let q3 = tensor_type == TensorType::Q3_K;
    let qs = if q3 { &block[32..96] } else { &block[16..80] };
    if q3 {
        scales.push(f16_as_f32_bits(block, 108));
        let packed = &block[96..108];
        let sc: Vec<u8> = (0..16)
            .map(|k| {
                let low = if k < 8 { packed[k] & 15 } else { packed[k - 8] >> 4 };
                let high = (packed[8 + k % 4] >> (2 * (k / 4))) & 3;
                ((low | high << 4) as i8).wrapping_sub(32) as u8
            })
            .collect();
        scales.extend(sc.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])));
    } else {
        scales.push(f16_as_f32_bits(block, 80));
        scales.push(f16_as_f32_bits(block, 82));
        scales.extend((0..4).map(|w| le_u32(block, 4 * w)));
    }
    for j in 0..8 {
        let mut q = [0u8; 32];
        for (l, code) in q.iter_mut().enumerate() {
            let w = 32 * j + l;
            *code = (qs[32 * (j / 4) + l] >> (2 * (j % 4))) & 3;
            if q3 {
                *code |= ((block[w % 32] >> (w / 32)) & 1) << 2;
            }
        }
        push_codes(data, &q, if q3 { 4 } else { 2 }, 0);
    }
}

/// IQ4_XS: d f16, scales_h u16, scales_l[4], qs[128] (`dequantize_row_iq4_xs`).
fn pack_iq4_xs_block(block: &[u8], data: &mut Vec<u32>, scales: &mut Vec<u32>) {
    scales.push(f16_as_f32_bits(block, 0));
    let scales_h = le_u16(block, 2);
    let sc: Vec<u8> = (0..8)
        .map(|j| {
            let low = (block[4 + j / 2] >> (4 * (j % 2))) & 15;
            let high = (scales_h >> (2 * j)) as u8 & 3;
            ((low | high << 4) as i8).wrapping_sub(32) as u8
        })
        .collect();
    scales.extend(sc.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])));
    data.extend((0..32).map(|w| le_u32(block, 8 + 4 * w)));
}

/// The packed (data, scales, format) of `bytes`, whole blocks of one of this
/// module's types; `None` for other types.
pub fn pack_quant(tensor_type: TensorType, bytes: &[u8]) -> Option<(Vec<u32>, Vec<u32>, WeightFormat)> {
    let format = match tensor_type {
        TensorType::Q5_0 => WeightFormat::Q5_0,
        TensorType::Q5_1 => WeightFormat::Q5_1,
        TensorType::Q2_K => WeightFormat::Q2_K,
        TensorType::Q3_K => WeightFormat::Q3_K,
        TensorType::Q4_K => WeightFormat::Q4_K,
        TensorType::Q5_K => WeightFormat::Q5_K,
        TensorType::Q6_K => WeightFormat::Q6_K,
        TensorType::IQ4_NL => WeightFormat::IQ4_NL,
        TensorType::IQ4_XS => WeightFormat::IQ4_XS,
        _ => return None,
    };
    let layout = QuantLayout::of(format)?;
    let block_bytes = tensor_type.block_bytes();
    let blocks = bytes.len() / block_bytes;
    let sub_blocks = blocks * tensor_type.block_len() / 32;
    let mut data = Vec::with_capacity(sub_blocks * layout.words_per_block());
    let mut scales = Vec::with_capacity(sub_blocks);
    for block in bytes.chunks_exact(block_bytes) {
        match tensor_type {
            TensorType::Q5_0 => {
                scales.push(f16_as_f32_bits(block, 0));
                push_codes(&mut data, &q5_codes(le_u32(block, 2), &block[6..22]), 4, 1);
            }
            TensorType::Q5_1 => {
                // pack2x16float order: d in the low half, m in the high half.
                scales.push(le_u32(block, 0));
                push_codes(&mut data, &q5_codes(le_u32(block, 4), &block[8..24]), 4, 1);
            }
            TensorType::Q4_K => pack_k_block(block, &[], &block[16..144], &mut data, &mut scales, 0),
            TensorType::Q5_K => {
                pack_k_block(block, &block[16..48], &block[48..176], &mut data, &mut scales, 1)
            }
            TensorType::Q6_K => pack_q6_k_block(block, &mut data, &mut scales),
            TensorType::Q2_K | TensorType::Q3_K => {
                pack_q2_q3_block(tensor_type, block, &mut data, &mut scales)
            }
            TensorType::IQ4_NL => {
                scales.push(f16_as_f32_bits(block, 0));
                data.extend((0..4).map(|w| le_u32(block, 2 + 4 * w)));
            }
            TensorType::IQ4_XS => pack_iq4_xs_block(block, &mut data, &mut scales),
            // Not reached: the match above returned for other types.
            _ => {}
        }
    }
    Some((data, scales, format))
}
