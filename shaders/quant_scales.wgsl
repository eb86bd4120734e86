// Shared by matmul_quant.wgsl and embedding.wgsl (appended to each, which
// declare FORMAT, K and w_scales): the block scales of the 5- and 6-bit,
// K-quant and IQ4 formats in the layout of model/quant_pack.rs, one row's.

const FORMAT_Q5_0 = 0u; // w_scales: [rows, K/32] f32 bits of d; z = 16
const FORMAT_Q5_1 = 1u; // w_scales: [rows, K/32] pack2x16float(d, m)
const FORMAT_Q4_K = 2u; // w_scales: [rows, K/256, 6] f32 d, f32 dmin, 4 words of (sc, m) byte pairs
const FORMAT_Q5_K = 3u; // as Q4_K
const FORMAT_Q6_K = 4u; // w_scales: [rows, K/256, 5] f32 d, 16 x i8 scale (one per 16 weights); z = 32
const FORMAT_Q2_K = 5u; // w_scales: [rows, K/256, 6] f32 d, f32 dmin, 16 x (sc | m << 4) bytes (one per 16 weights)
const FORMAT_Q3_K = 6u; // as Q6_K (the scales unpacked to i8 sc - 32); z = 4
const FORMAT_IQ4_NL = 7u; // as Q5_0 (z = 0); codes index kvalues_iq4nl
const FORMAT_IQ4_XS = 8u; // w_scales: [rows, K/256, 3] f32 d, 8 x i8 scale (one per 32 weights); codes index kvalues_iq4nl

fn zero_point() -> f32 {
    switch FORMAT {
        case FORMAT_Q5_0: { return 16.0; }
        case FORMAT_Q6_K: { return 32.0; }
        case FORMAT_Q3_K: { return 4.0; }
        default: { return 0.0; }
    }
}

// Blocks of 32 weights that share a super-block scale: 8 for K-quants
// (256 weights), 1 otherwise. The kernels load the super-block's d (and
// dmin) once per group, not per block: on llvmpipe every load is a
// per-lane gather, and three scale loads per block instead of one cost
// about a quarter of the Q4_K matvec's speed.
fn group_len() -> u32 {
    if (FORMAT >= FORMAT_Q4_K && FORMAT != FORMAT_IQ4_NL) {
        return 8u;
    }
    return 1u;
}

// Words of scales per super-block of a K-quant.
fn group_words() -> u32 {
    if (FORMAT == FORMAT_Q6_K || FORMAT == FORMAT_Q3_K) {
        return 5u;
    }
    if (FORMAT == FORMAT_IQ4_XS) {
        return 3u;
    }
    return 6u;
}

// (d, dmin) of super-block g of a row (K-quants; zero otherwise).
fn group_scales(row: u32, g: u32) -> vec2<f32> {
    if (group_len() == 1u) {
        return vec2<f32>(0.0);
    }
    let at = (row * (K / 256u) + g) * group_words();
    if (group_words() < 6u) { // Q6_K, Q3_K, IQ4_XS: no dmin
        return vec2<f32>(bitcast<f32>(w_scales[at]), 0.0);
    }
    return bitcast<vec2<f32>>(vec2<u32>(w_scales[at], w_scales[at + 1u]));
}

// Blocks whose per-block scales share one word of w_scales: the matvec
// loads that word once for all of them (on llvmpipe a load is a per-lane
// gather, and one per block made the Q4_K matvec read its bytes about 10%
// slower than Q4_1's, which loads exactly one word of scales per block).
fn blocks_per_scale_word() -> u32 {
    switch FORMAT {
        case FORMAT_IQ4_XS: { return 4u; }
        case FORMAT_Q5_0, FORMAT_Q5_1, FORMAT_IQ4_NL: { return 1u; }
        default: { return 2u; }
    }
}

// Index in w_scales of the word with block j of group g's scales.
fn scale_word_at(row: u32, g: u32, j: u32) -> u32 {
    switch FORMAT {
        case FORMAT_Q5_0, FORMAT_Q5_1, FORMAT_IQ4_NL: { return row * (K / 32u) + g; }
        case FORMAT_IQ4_XS: { return (row * (K / 256u) + g) * 3u + 1u + j / 4u; }
        case FORMAT_Q6_K, FORMAT_Q3_K: { return (row * (K / 256u) + g) * 5u + 1u + j / 2u; }
        default: { return (row * (K / 256u) + g) * 6u + 2u + j / 2u; } // Q4_K, Q5_K, Q2_K
    }
}

// (s_lo, s_hi, o_lo, o_hi) of block j of group g of a row, given the
// group's (d, dmin) and the word at scale_word_at(row, g, j). The K-quant
// products d * sc are exact in f32 (an f16 times a small integer), so they
// equal ggml's.
fn affine_of(word: u32, j: u32, dm: vec2<f32>) -> vec4<f32> {
    switch FORMAT {
        case FORMAT_Q5_0, FORMAT_IQ4_NL: {
            let d = bitcast<f32>(word);
            return vec4<f32>(d, d, 0.0, 0.0);
        }
        case FORMAT_IQ4_XS: {
            let sc = bitcast<i32>(word << (24u - 8u * (j % 4u))) >> 24u;
            let s = dm.x * f32(sc);
            return vec4<f32>(s, s, 0.0, 0.0);
        }
        case FORMAT_Q5_1: {
            let d_m = unpack2x16float(word);
            return vec4<f32>(d_m.x, d_m.x, d_m.y, d_m.y);
        }
        case FORMAT_Q2_K: {
            let pair = word >> (16u * (j % 2u));
            let sc = vec2<f32>(f32(pair & 15u), f32((pair >> 8u) & 15u));
            let m = vec2<f32>(f32((pair >> 4u) & 15u), f32((pair >> 12u) & 15u));
            return vec4<f32>(dm.x * sc, -(dm.y * m));
        }
        case FORMAT_Q6_K, FORMAT_Q3_K: {
            let pair = word >> (16u * (j % 2u));
            let sc = bitcast<vec2<i32>>(vec2<u32>(pair << 24u, pair << 16u)) >> vec2<u32>(24u);
            return vec4<f32>(dm.x * f32(sc.x), dm.x * f32(sc.y), 0.0, 0.0);
        }
        default: { // FORMAT_Q4_K, FORMAT_Q5_K
            let pair = word >> (16u * (j % 2u));
            let s = dm.x * f32(pair & 63u);
            let o = -(dm.y * f32((pair >> 8u) & 63u));
            return vec4<f32>(s, s, o, o);
        }
    }
}

fn affine(row: u32, g: u32, j: u32, dm: vec2<f32>) -> vec4<f32> {
    return affine_of(w_scales[scale_word_at(row, g, j)], j, dm);
}

