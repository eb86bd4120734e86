// y[M, N] (+)= x[M, K] · W[N, K]^T (+ b[N]) for the 5- and 6-bit, K-quant
// and IQ4 formats (Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL,
// IQ4_XS), dequantized in registers.
//
// Same tiles, workgroups and bindings as matmul.wgsl (read its header for
// why they are shaped for llvmpipe); WGSL has no includes, so the tile
// helpers are repeated here, and so are the GPU family's two entry points
// (matvec_gpu, matmul_gpu, at the end), which read the weights through
// this file's `weights8`. One entry point per tile serves every format:
// the `FORMAT`, `LOW_BITS` and `HIGH_BITS` overrides specialize it.
//
// Packed layout (model/quant_pack.rs), per 32 weights of a row:
// - LOW_BITS 4: 4 words of low nibbles: byte j of the 16 holds weight j
//   in its low nibble, weight j + 16 in its high nibble (the Q4_0/Q4_1
//   order); LOW_BITS 2 (Q2_K): 2 words, each two of those nibble words'
//   2-bit codes (`nibble_word` in quant_codes.wgsl);
// - HIGH_BITS (1 or 2) words of the bits above the nibbles, laid out so
//   that one shift of a whole word moves four codes' high bits in place
//   (`code_words`; model/quant_pack.rs says where each bit lives).
// Each half block of 16 weights h has a scale s_h and offset o_h, and the
// format a zero point z: value = s_h * (q - z) + o_h (see `affine`). The
// IQ4 formats' nibbles index kvalues_iq4nl (`iq4_values`): q is the
// table's value there.

struct Step {
    num_tokens: u32,
    num_seqs: u32,
    max_blocks_per_seq: u32,
    _pad: u32,
}

override K: u32;                   // inner size, a multiple of 32 (256 for K-quants)
override N: u32;                   // output rows
// A matrix over the storage binding limit runs as row chunks, one dispatch
// each: N rows of W from its row ROW_START, written to those columns of y.
override ROW_START: u32 = 0u;      // first output column this dispatch writes
override Y_STRIDE: u32;            // y's row length: all rows of the whole W
override ACCUMULATE: bool = false; // y += ... (fuses the residual add)
override BIAS: bool = false;       // y += bias[row]
override FORMAT: u32;              // FORMAT_* (quant_scales.wgsl)
override LOW_BITS: u32;            // bits of each code in its low words: 4 or 2 (Q2_K)
override HIGH_BITS: u32;           // bits of each code above its nibble: 0, 1 or 2

// FORMAT_* and the w_scales layout of each: shaders/quant_scales.wgsl.

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;  // [M, K] f32
@group(0) @binding(2) var<storage, read> w_data: array<u32>;   // [N, K/32, LOW_BITS + HIGH_BITS] packed codes
@group(0) @binding(3) var<storage, read> w_scales: array<u32>; // per FORMAT_* (quant_scales.wgsl)
@group(0) @binding(4) var<storage, read_write> y: array<f32>;  // [M, Y_STRIDE] f32
@group(0) @binding(5) var<storage, read> bias: array<f32>;     // [N] f32, this chunk's (read only with BIAS)

const ONES = vec4<f32>(1.0);

fn block_words() -> u32 {
    return LOW_BITS + HIGH_BITS;
}

fn row_words() -> u32 {
    return (K / 32u) * block_words();
}

// ---- scales (one row's: shaders/quant_scales.wgsl, appended) ----

// Four rows' (d, dmin): column r is row r's.
fn group_scales4(rows: vec4<u32>, g: u32) -> mat4x2<f32> {
    return mat4x2<f32>(group_scales(rows.x, g), group_scales(rows.y, g), group_scales(rows.z, g), group_scales(rows.w, g));
}

// Column r: row r's (s_lo, s_hi, o_lo, o_hi); transposed, [0] is s_lo of
// the four rows, and so on.
fn affine4(rows: vec4<u32>, g: u32, j: u32, dm: mat4x2<f32>) -> mat4x4<f32> {
    return affine4_of(scale_words4(rows, g, j), j, dm);
}

fn scale_words4(rows: vec4<u32>, g: u32, j: u32) -> vec4<u32> {
    return vec4<u32>(
        w_scales[scale_word_at(rows.x, g, j)],
        w_scales[scale_word_at(rows.y, g, j)],
        w_scales[scale_word_at(rows.z, g, j)],
        w_scales[scale_word_at(rows.w, g, j)],
    );
}

fn affine4_of(words: vec4<u32>, j: u32, dm: mat4x2<f32>) -> mat4x4<f32> {
    return transpose(mat4x4<f32>(affine_of(words.x, j, dm[0]), affine_of(words.y, j, dm[1]), affine_of(words.z, j, dm[2]), affine_of(words.w, j, dm[3])));
}

// ---- codes ----

// The high-bit words of block b of a row (zero where there are none).
fn high_words(row: u32, b: u32) -> vec2<u32> {
    let at = row * row_words() + b * block_words() + LOW_BITS;
    switch HIGH_BITS {
        case 1u: { return vec2<u32>(w_data[at], 0u); }
        case 2u: { return vec2<u32>(w_data[at], w_data[at + 1u]); }
        default: { return vec2<u32>(0u); }
    }
}

// Four rows' high-bit words: [0] the first of each row, [1] the second.
struct High4 {
    first: vec4<u32>,
    second: vec4<u32>,
}

fn high4(rows: vec4<u32>, b: u32) -> High4 {
    let a = high_words(rows.x, b);
    let c = high_words(rows.y, b);
    let d = high_words(rows.z, b);
    let e = high_words(rows.w, b);
    return High4(vec4<u32>(a.x, c.x, d.x, e.x), vec4<u32>(a.y, c.y, d.y, e.y));
}

// Nibble word w of block b of four rows (`nibble_word`). With LOW_BITS 2
// the two nibble words of a low word load it twice: loading it once for
// both (the loop split in two, or four calls with constant w) measured
// slower on llvmpipe.
fn nibble4(low: vec4<u32>, w: u32) -> vec4<u32> {
    return vec4<u32>(nibble_word(low.x, w), nibble_word(low.y, w), nibble_word(low.z, w), nibble_word(low.w, w));
}

fn nibble_words4(rows: vec4<u32>, b: u32, w: u32) -> vec4<u32> {
    return nibble4(words4(rows, b * block_words() + low_word_of(w)), w);
}

// `code_words` (a nibble word with its high bits joined) is in
// shaders/quant_codes.wgsl, appended to this file and to embedding.wgsl.

// Four rows' code_words: lane r of each is row r's.
struct CodeWords4 {
    lo: vec4<u32>,
    hi: vec4<u32>,
}

fn code_words4(q: vec4<u32>, high: High4, w: u32) -> CodeWords4 {
    let a = code_words(q.x, vec2<u32>(high.first.x, high.second.x), w);
    let c = code_words(q.y, vec2<u32>(high.first.y, high.second.y), w);
    let d = code_words(q.z, vec2<u32>(high.first.z, high.second.z), w);
    let e = code_words(q.w, vec2<u32>(high.first.w, high.second.w), w);
    return CodeWords4(vec4<u32>(a.x, c.x, d.x, e.x), vec4<u32>(a.y, c.y, d.y, e.y));
}

// The four codes of a code word, masked in place: lane i holds code n as
// n * 256^i (an exact float below 2^30). The caller scales x by 256^-i
// (LANE_SCALE) once for all rows, so the products equal n * x exactly.
// Compared with shifting every lane down, this drops about a third of the
// unpacking work, which on llvmpipe costs more than the multiply-adds.
const BYTE_MASK = vec4<u32>(0xFFu, 0xFF00u, 0xFF0000u, 0xFF000000u);
const LANE_SCALE = vec4<f32>(1.0, 1.0 / 256.0, 1.0 / 65536.0, 1.0 / 16777216.0);
const LANES = vec4<u32>(0u, 1u, 2u, 3u);

fn codes(word: u32) -> vec4<f32> {
    if (is_codebook()) {
        return iq4_values(word);
    }
    // Below 2^31: a signed conversion is exact and cheaper than an unsigned one.
    return vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(word) & BYTE_MASK));
}

fn is_codebook() -> bool {
    return FORMAT == FORMAT_IQ4_NL || FORMAT == FORMAT_IQ4_XS;
}

// What x is scaled by so that x * codes(..) is the product with the code:
// table values are not in place.
fn lane_scale() -> vec4<f32> {
    if (is_codebook()) {
        return ONES;
    }
    return LANE_SCALE;
}

// The table values of the nibbles at bits 8i..8i+3 of q, lane i. A degree-4
// polynomial (minimax over the 16 codes: |p(n) - kvalues[n]| <= 0.433)
// rounded gives the table exactly, in f32 with or without fused
// multiply-adds; tests/kernels.rs checks every code against the CPU table.
// On llvmpipe this is 5.7x faster than indexing a constant array (a
// per-lane gather) and 1.5x faster than selecting bytes of a packed table.
const IQ4_POLY = vec4<f32>(0.0015860428, 0.03108644, -1.371927, 24.17383);
const IQ4_POLY_0 = -126.567009;

fn iq4_values(q: u32) -> vec4<f32> {
    let t = vec4<f32>((vec4<u32>(q) >> (vec4<u32>(8u) * LANES)) & vec4<u32>(15u));
    let c = IQ4_POLY;
    return round((((c.x * t + c.y) * t + c.z) * t + c.w) * t + IQ4_POLY_0);
}

// Column r: row r's four codes (in place, as above) from its code word.
fn codes4(words: vec4<u32>) -> mat4x4<f32> {
    return mat4x4<f32>(codes(words.x), codes(words.y), codes(words.z), codes(words.w));
}

// ---- tiles (as matmul.wgsl) ----

fn rows4(row0: u32) -> vec4<u32> {
    return min(vec4<u32>(row0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(N - 1u));
}

fn token_rows4(t0: u32) -> vec4<u32> {
    let last = step.num_tokens - 1u;
    return min(vec4<u32>(t0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(last)) * (K / 4u);
}

fn words4(rows: vec4<u32>, at: u32) -> vec4<u32> {
    let stride = row_words();
    return vec4<u32>(w_data[rows.x * stride + at], w_data[rows.y * stride + at], w_data[rows.z * stride + at], w_data[rows.w * stride + at]);
}

fn put(row: u32, token: u32, dot: f32) {
    if (row < N && token < step.num_tokens) {
        let index = token * Y_STRIDE + ROW_START + row;
        var value = dot;
        if (BIAS) {
            value += bias[row];
        }
        if (ACCUMULATE) {
            y[index] += value;
        } else {
            y[index] = value;
        }
    }
}

fn store4(row0: u32, token: u32, acc: vec4<f32>) {
    put(row0, token, acc.x);
    put(row0 + 1u, token, acc.y);
    put(row0 + 2u, token, acc.z);
    put(row0 + 3u, token, acc.w);
}

// Q6_K, Q3_K and Q2_K have a scale per 16 weights; the others one per 32, so their
// kernels sum both halves in one accumulator (half the bookkeeping).
fn split_halves() -> bool {
    return FORMAT == FORMAT_Q6_K || FORMAT == FORMAT_Q3_K || FORMAT == FORMAT_Q2_K;
}

// Four rows' block result for one token from the code dot products of each
// half (dot_lo, dot_hi: one per row) and the token's sums of x per half:
// sum over the half of (s (q - z) + o) x = s (dot - z sum) + o sum.
fn combine(f: mat4x4<f32>, dot_lo: vec4<f32>, dot_hi: vec4<f32>, sum_lo: f32, sum_hi: f32) -> vec4<f32> {
    let z = zero_point();
    if (!split_halves()) {
        // One s and o for the whole block (the matvec keeps it all in dot_lo
        // and sum_lo, its dot_hi and sum_hi stay zero).
        let sum = sum_lo + sum_hi;
        return f[0] * (dot_lo + dot_hi - z * sum) + f[2] * sum;
    }
    return f[0] * (dot_lo - z * sum_lo) + f[1] * (dot_hi - z * sum_hi) + f[2] * sum_lo + f[3] * sum_hi;
}

// ---- 4 rows x 4 tokens ----

// A block's sums so far, four rows against four tokens. Column t of a dot:
// the four rows' code dot products with token t (each half of the block);
// lane t of a sum: token t's sum of x over the half.
struct QuantPart4x4 {
    dot_lo: mat4x4<f32>,
    dot_hi: mat4x4<f32>,
    sum_lo: vec4<f32>,
    sum_hi: vec4<f32>,
}

// Word w of block b (codes of weights 4w..4w+3, and 16+4w..16+4w+3) of
// four rows, `high` their high bits, against four tokens' activations.
fn quant_word_4x4(rows: vec4<u32>, b: u32, high: High4, w: u32, x_lo: mat4x4<f32>, x_hi: mat4x4<f32>, part: QuantPart4x4) -> QuantPart4x4 {
    let words = code_words4(nibble_words4(rows, b, w), high, w);
    let ls = lane_scale();
    let xs_lo = mat4x4<f32>(x_lo[0] * ls, x_lo[1] * ls, x_lo[2] * ls, x_lo[3] * ls);
    let xs_hi = mat4x4<f32>(x_hi[0] * ls, x_hi[1] * ls, x_hi[2] * ls, x_hi[3] * ls);
    return QuantPart4x4(
        mul_add4x4(codes4(words.lo), xs_lo, part.dot_lo),
        mul_add4x4(codes4(words.hi), xs_hi, part.dot_hi),
        part.sum_lo + transpose(x_lo) * ONES,
        part.sum_hi + transpose(x_hi) * ONES,
    );
}

@compute @workgroup_size(16)
fn matmul_quant(@builtin(global_invocation_id) gid: vec3<u32>) {
    init_x_lane();
    let rows = rows4(gid.x * 4u);
    let tokens = token_rows4(gid.y * 4u);
    var acc = mat4x4<f32>();
    for (var g = 0u; g < K / 32u / group_len(); g++) {
        let dm = group_scales4(rows, g);
        for (var j = 0u; j < group_len(); j++) {
            let b = g * group_len() + j;
            let high = high4(rows, b);
            let xb = x_block4(tokens, b);
            // Written out as matmul.wgsl's q4_block_4x4 is (constant lanes).
            var part = quant_word_4x4(rows, b, high, 0u, x_block4_at(xb, 0u), x_block4_at(xb, 4u), QuantPart4x4());
            part = quant_word_4x4(rows, b, high, 1u, x_block4_at(xb, 1u), x_block4_at(xb, 5u), part);
            part = quant_word_4x4(rows, b, high, 2u, x_block4_at(xb, 2u), x_block4_at(xb, 6u), part);
            part = quant_word_4x4(rows, b, high, 3u, x_block4_at(xb, 3u), x_block4_at(xb, 7u), part);
            let f = affine4(rows, g, j, dm);
            acc += mat4x4<f32>(
                combine(f, part.dot_lo[0], part.dot_hi[0], part.sum_lo.x, part.sum_hi.x),
                combine(f, part.dot_lo[1], part.dot_hi[1], part.sum_lo.y, part.sum_hi.y),
                combine(f, part.dot_lo[2], part.dot_hi[2], part.sum_lo.z, part.sum_hi.z),
                combine(f, part.dot_lo[3], part.dot_hi[3], part.sum_lo.w, part.sum_hi.w),
            );
        }
    }
    let row0 = gid.x * 4u;
    for (var t = 0u; t < 4u; t++) {
        store4(row0, gid.y * 4u + t, acc[t]);
    }
}

// ---- 8 rows x 1 token ----

fn token_row(token: u32) -> u32 {
    return min(token, step.num_tokens - 1u) * (K / 4u);
}

@compute @workgroup_size(8)
fn matvec_quant(@builtin(global_invocation_id) gid: vec3<u32>) {
    init_x_lane();
    let rows = matvec_rows(gid.x);
    let rows_a = rows.a;
    let rows_b = rows.b;
    let xt = token_row(gid.y);
    var acc_a = vec4<f32>(0.0);
    var acc_b = vec4<f32>(0.0);
    var dm_a = mat4x2<f32>();
    var dm_b = mat4x2<f32>();
    var scale_words_a = vec4<u32>();
    var scale_words_b = vec4<u32>();
    for (var b = 0u; b < K / 32u; b++) {
        let g = b / group_len();
        let j = b % group_len();
        if (j == 0u) {
            dm_a = group_scales4(rows_a, g);
            dm_b = group_scales4(rows_b, g);
        }
        if (j % blocks_per_scale_word() == 0u) {
            scale_words_a = scale_words4(rows_a, g, j);
            scale_words_b = scale_words4(rows_b, g, j);
        }
        let high_a = high4(rows_a, b);
        let high_b = high4(rows_b, b);
        // The block's scales multiply each word's dot products as they
        // come, rather than per-half sums at the end: fewer live
        // accumulators (Q2_K, Q3_K and Q6_K read 5-10% faster so).
        let f_a = affine4_of(scale_words_a, j, dm_a);
        let f_b = affine4_of(scale_words_b, j, dm_b);
        var sum_lo = vec4<f32>(0.0);
        var sum_hi = vec4<f32>(0.0);
        let xb = x_block1(xt, b);
        for (var w = 0u; w < 4u; w++) {
            let x_lo = x_block1_at(xb, w);
            let x_hi = x_block1_at(xb, 4u + w);
            let wa = code_words4(nibble_words4(rows_a, b, w), high_a, w);
            let wb = code_words4(nibble_words4(rows_b, b, w), high_b, w);
            let xs_lo = x_lo * lane_scale();
            let xs_hi = x_hi * lane_scale();
            if (split_halves()) {
                let ca_lo = transpose(codes4(wa.lo)) * xs_lo;
                let ca_hi = transpose(codes4(wa.hi)) * xs_hi;
                let cb_lo = transpose(codes4(wb.lo)) * xs_lo;
                let cb_hi = transpose(codes4(wb.hi)) * xs_hi;
                acc_a += f_a[0] * ca_lo + f_a[1] * ca_hi;
                acc_b += f_b[0] * cb_lo + f_b[1] * cb_hi;
                sum_lo += x_lo;
                sum_hi += x_hi;
            } else {
                // Fused here (IQ4_XS about 6% faster, the others the same);
                // the split halves above measured 3% slower fused (Q2_K).
                let zero = vec4<f32>(0.0);
                let ca = mul_add4(transpose(codes4(wa.hi)), xs_hi, mul_add4(transpose(codes4(wa.lo)), xs_lo, zero));
                let cb = mul_add4(transpose(codes4(wb.hi)), xs_hi, mul_add4(transpose(codes4(wb.lo)), xs_lo, zero));
                acc_a = fma(f_a[0], ca, acc_a);
                acc_b = fma(f_b[0], cb, acc_b);
                sum_lo += x_lo + x_hi;
            }
        }
        let s_lo = dot(sum_lo, ONES);
        let s_hi = dot(sum_hi, ONES);
        // What the zero point and offsets add: the dot products are in.
        let none = vec4<f32>(0.0);
        acc_a += combine(f_a, none, none, s_lo, s_hi);
        acc_b += combine(f_b, none, none, s_lo, s_hi);
    }
    matvec_store(gid.x, gid.y, acc_a, acc_b);
}

// ---- GPU family (as in matmul.wgsl: read its notes there) ----

// Weights 4w..4w+3 (lo) and 16+4w..16+4w+3 (hi) of block b of a row,
// dequantized: s (q - z) + o of each half.
struct Weights8 {
    lo: vec4<f32>,
    hi: vec4<f32>,
}

fn weights8(row: u32, b: u32, w: u32) -> Weights8 {
    let g = b / group_len();
    let f = affine(row, g, b % group_len(), group_scales(row, g));
    let low = w_data[row * row_words() + b * block_words() + low_word_of(w)];
    let words = code_words(nibble_word(low, w), high_words(row, b), w);
    let z = zero_point();
    let lo = codes(words.x) * lane_scale();
    let hi = codes(words.y) * lane_scale();
    return Weights8(f[0] * (lo - z) + f[2], f[1] * (hi - z) + f[3]);
}
