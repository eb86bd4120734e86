// y[M, N] (+)= x[M, K] · W[N, K]^T (+ b[N]), with W in one of our packed formats.
//
// Shaped for what a CPU driver (lavapipe) does well, and valid on a GPU.
// llvmpipe runs each invocation as one SIMD lane and every load as a
// per-lane gather, so what pays is reuse inside an invocation: each one
// computes a register tile, and every loaded activation serves several
// rows, every dequantized weight several tokens. Tiles are mat4x4 values,
// not arrays: the driver keeps them in registers without having to unroll
// anything, where an indexed private array would live in memory.
//
// matmul_*: 4 rows x 4 tokens per invocation (prefill, big batches).
// Small workgroups (16, and 8 for matvec) balance the work over the CPU
// threads of llvmpipe better than 32 or 64 (measured: 10-25% faster).
// matvec_*: 8 rows x 1 token per invocation (decode, small batches); with
// GLU, 4 gate and 4 up rows, stored as act(gate) * up (matvec_rows.wgsl).
// A tile hanging over the edge re-reads the last row or token and drops
// those results at the store.
//
// matvec_gpu, matmul_gpu: the GPU family (`KernelFamily::Gpu`), at the end
// of the file, shaped for real GPUs instead: workgroups of 256, K split
// over invocations, prefill tiled through workgroup memory. They read the
// weights through `weights8`, with the format chosen by `WEIGHTS`.

struct Step {
    num_tokens: u32,
    num_seqs: u32,
    max_blocks_per_seq: u32,
    _pad: u32,
}

override K: u32;                   // inner size, a multiple of 32
override N: u32;                   // output rows
// A matrix over the storage binding limit runs as row chunks, one dispatch
// each: N rows of W from its row ROW_START, written to those columns of y.
override ROW_START: u32 = 0u;      // first output column this dispatch writes
override Y_STRIDE: u32;            // y's row length: all rows of the whole W
override ACCUMULATE: bool = false; // y += ... (fuses the residual add)
override HALF_WEIGHTS: bool = false; // float formats: f16 pairs instead of f32
override BIAS: bool = false;       // y += bias[row] (BERT's linear layers have biases)
override WEIGHTS: u32 = 0u;        // the GPU entry points' format: WEIGHTS_* below

const WEIGHTS_FLOAT = 0u; // F32, or F16 with HALF_WEIGHTS
const WEIGHTS_Q8_0 = 1u;
const WEIGHTS_Q4_0 = 2u;
const WEIGHTS_Q4_1 = 3u;

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;  // [M, K] f32
@group(0) @binding(2) var<storage, read> w_data: array<u32>;   // [N, K/32, words per block] packed weights
@group(0) @binding(3) var<storage, read> w_scales: array<u32>; // [N, K/32] block scales (format-specific)
@group(0) @binding(4) var<storage, read_write> y: array<f32>;  // [M, Y_STRIDE] f32
@group(0) @binding(5) var<storage, read> bias: array<f32>;     // [N] f32, this chunk's (read only with BIAS)

const BLOCK: u32 = 32u;
const ONES = vec4<f32>(1.0);

// ---- tiles ----

// Four consecutive rows from `row0`, clamped to the matrix.
fn rows4(row0: u32) -> vec4<u32> {
    return min(vec4<u32>(row0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(N - 1u));
}

// Offsets (in vec4s) of four consecutive tokens' rows of x, clamped.
fn token_rows4(t0: u32) -> vec4<u32> {
    let last = step.num_tokens - 1u;
    return min(vec4<u32>(t0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(last)) * (K / 4u);
}

fn words4(rows: vec4<u32>, words_per_row: u32, at: u32) -> vec4<u32> {
    return vec4<u32>(
        w_data[rows.x * words_per_row + at],
        w_data[rows.y * words_per_row + at],
        w_data[rows.z * words_per_row + at],
        w_data[rows.w * words_per_row + at],
    );
}

fn scales4(rows: vec4<u32>, b: u32) -> vec4<u32> {
    let blocks = K / BLOCK;
    return vec4<u32>(
        w_scales[rows.x * blocks + b],
        w_scales[rows.y * blocks + b],
        w_scales[rows.z * blocks + b],
        w_scales[rows.w * blocks + b],
    );
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

// acc[t][r] is the result of row row0 + r for token t0 + t.
fn store4x4(row0: u32, t0: u32, acc: mat4x4<f32>) {
    for (var t = 0u; t < 4u; t++) {
        let column = acc[t];
        put(row0, t0 + t, column.x);
        put(row0 + 1u, t0 + t, column.y);
        put(row0 + 2u, t0 + t, column.z);
        put(row0 + 3u, t0 + t, column.w);
    }
}

fn store4(row0: u32, token: u32, acc: vec4<f32>) {
    put(row0, token, acc.x);
    put(row0 + 1u, token, acc.y);
    put(row0 + 2u, token, acc.z);
    put(row0 + 3u, token, acc.w);
}

// ---- dequantization ----

fn nibbles_low(q: u32) -> vec4<f32> {
    return vec4<f32>(vec4<u32>(q, q >> 8u, q >> 16u, q >> 24u) & vec4<u32>(15u));
}

fn nibbles_high(q: u32) -> vec4<f32> {
    return vec4<f32>(vec4<u32>(q >> 4u, q >> 12u, q >> 20u, q >> 28u) & vec4<u32>(15u));
}

fn low4(q: vec4<u32>) -> mat4x4<f32> {
    return mat4x4<f32>(nibbles_low(q.x), nibbles_low(q.y), nibbles_low(q.z), nibbles_low(q.w));
}

fn high4(q: vec4<u32>) -> mat4x4<f32> {
    return mat4x4<f32>(nibbles_high(q.x), nibbles_high(q.y), nibbles_high(q.z), nibbles_high(q.w));
}

fn bytes_signed(q: u32) -> vec4<f32> {
    let v = bitcast<vec4<i32>>(vec4<u32>(q << 24u, q << 16u, q << 8u, q));
    return vec4<f32>(v >> vec4<u32>(24u));
}

fn bytes4(q: vec4<u32>) -> mat4x4<f32> {
    return mat4x4<f32>(bytes_signed(q.x), bytes_signed(q.y), bytes_signed(q.z), bytes_signed(q.w));
}

fn f32x4(rows: vec4<u32>, c: u32) -> mat4x4<f32> {
    let a = words4(rows, K, c * 4u);
    let b = words4(rows, K, c * 4u + 1u);
    let d = words4(rows, K, c * 4u + 2u);
    let e = words4(rows, K, c * 4u + 3u);
    // Column r holds row r's four weights.
    return transpose(mat4x4<f32>(bitcast<vec4<f32>>(a), bitcast<vec4<f32>>(b), bitcast<vec4<f32>>(d), bitcast<vec4<f32>>(e)));
}

fn f16x4(rows: vec4<u32>, c: u32) -> mat4x4<f32> {
    let a = words4(rows, K / 2u, c * 2u);
    let b = words4(rows, K / 2u, c * 2u + 1u);
    return mat4x4<f32>(
        vec4<f32>(unpack2x16float(a.x), unpack2x16float(b.x)),
        vec4<f32>(unpack2x16float(a.y), unpack2x16float(b.y)),
        vec4<f32>(unpack2x16float(a.z), unpack2x16float(b.z)),
        vec4<f32>(unpack2x16float(a.w), unpack2x16float(b.w)),
    );
}

// Weights are mat4x4 with column r = row r's four weights, so
// transpose(w) * xs gives, per token column, the four rows' dot products.

// ---- 4 rows x 4 tokens ----

// One Q4 block of four rows against four tokens: the nibble dot products
// (before scale) and each token's sum of x over the block (for the offset).
struct Q4Block4x4 {
    dot_q: mat4x4<f32>,
    sum_x: vec4<f32>,
}

// Word w of the block (weights 4w..4w+3 and 16+4w..16+4w+3) of four rows
// against four tokens' activations for them, added to `block`.
fn q4_word_4x4(rows: vec4<u32>, b: u32, w: u32, x_low: mat4x4<f32>, x_high: mat4x4<f32>, block: Q4Block4x4) -> Q4Block4x4 {
    let q = words4(rows, K / 8u, b * 4u + w);
    let dot_q = mul_add4x4(high4(q), x_high, mul_add4x4(low4(q), x_low, block.dot_q));
    return Q4Block4x4(dot_q, block.sum_x + transpose(x_low + x_high) * ONES);
}

// The four words written out rather than looped: each activation vec4 is
// then picked from the subgroup by a constant lane (x_loads_subgroup.wgsl),
// and the tile ran 1.13x as fast so on llvmpipe.
fn q4_block_4x4(rows: vec4<u32>, tokens: vec4<u32>, b: u32) -> Q4Block4x4 {
    var block = Q4Block4x4(mat4x4<f32>(), vec4<f32>(0.0));
    let xb = x_block4(tokens, b);
    block = q4_word_4x4(rows, b, 0u, x_block4_at(xb, 0u), x_block4_at(xb, 4u), block);
    block = q4_word_4x4(rows, b, 1u, x_block4_at(xb, 1u), x_block4_at(xb, 5u), block);
    block = q4_word_4x4(rows, b, 2u, x_block4_at(xb, 2u), x_block4_at(xb, 6u), block);
    block = q4_word_4x4(rows, b, 3u, x_block4_at(xb, 3u), x_block4_at(xb, 7u), block);
    return block;
}

// Q4_1: 4 nibble words per block (byte j: weight j low, weight j+16 high),
// scales word = pack2x16float(d, m). Value = d * q + m.
@compute @workgroup_size(16)
fn matmul_q4_1(@builtin(global_invocation_id) gid: vec3<u32>) {
    init_x_lane();
    let rows = rows4(gid.x * 4u);
    let tokens = token_rows4(gid.y * 4u);
    var acc = mat4x4<f32>();
    for (var b = 0u; b < K / BLOCK; b++) {
        let block = q4_block_4x4(rows, tokens, b);
        let s = scales4(rows, b);
        let d0 = unpack2x16float(s.x);
        let d1 = unpack2x16float(s.y);
        let d2 = unpack2x16float(s.z);
        let d3 = unpack2x16float(s.w);
        let d = vec4<f32>(d0.x, d1.x, d2.x, d3.x);
        let m = vec4<f32>(d0.y, d1.y, d2.y, d3.y);
        let dq = block.dot_q;
        let sx = block.sum_x;
        acc += mat4x4<f32>(d * dq[0] + m * sx.x, d * dq[1] + m * sx.y, d * dq[2] + m * sx.z, d * dq[3] + m * sx.w);
    }
    store4x4(gid.x * 4u, gid.y * 4u, acc);
}

// Q4_0: as Q4_1 without the min; scales word = f32 bits of d. Value = d * (q - 8).
@compute @workgroup_size(16)
fn matmul_q4_0(@builtin(global_invocation_id) gid: vec3<u32>) {
    init_x_lane();
    let rows = rows4(gid.x * 4u);
    let tokens = token_rows4(gid.y * 4u);
    var acc = mat4x4<f32>();
    for (var b = 0u; b < K / BLOCK; b++) {
        let block = q4_block_4x4(rows, tokens, b);
        let d = bitcast<vec4<f32>>(scales4(rows, b));
        let dq = block.dot_q;
        let c = 8.0 * block.sum_x;
        acc += mat4x4<f32>(d * (dq[0] - c.x), d * (dq[1] - c.y), d * (dq[2] - c.z), d * (dq[3] - c.w));
    }
    store4x4(gid.x * 4u, gid.y * 4u, acc);
}

// Word w of a Q8_0 block (weights 4w..4w+3) of four rows against four
// tokens' activations for them, added to dot_q.
fn q8_word_4x4(rows: vec4<u32>, b: u32, w: u32, xs: mat4x4<f32>, dot_q: mat4x4<f32>) -> mat4x4<f32> {
    return mul_add4x4(bytes4(words4(rows, K / 4u, b * 8u + w)), xs, dot_q);
}

// Q8_0: 8 words of signed bytes per block; scales word = f32 bits of d.
@compute @workgroup_size(16)
fn matmul_q8_0(@builtin(global_invocation_id) gid: vec3<u32>) {
    init_x_lane();
    let rows = rows4(gid.x * 4u);
    let tokens = token_rows4(gid.y * 4u);
    var acc = mat4x4<f32>();
    for (var b = 0u; b < K / BLOCK; b++) {
        let xb = x_block4(tokens, b);
        // Written out as q4_block_4x4's words are (constant lanes).
        var dot_q = q8_word_4x4(rows, b, 0u, x_block4_at(xb, 0u), mat4x4<f32>());
        dot_q = q8_word_4x4(rows, b, 1u, x_block4_at(xb, 1u), dot_q);
        dot_q = q8_word_4x4(rows, b, 2u, x_block4_at(xb, 2u), dot_q);
        dot_q = q8_word_4x4(rows, b, 3u, x_block4_at(xb, 3u), dot_q);
        dot_q = q8_word_4x4(rows, b, 4u, x_block4_at(xb, 4u), dot_q);
        dot_q = q8_word_4x4(rows, b, 5u, x_block4_at(xb, 5u), dot_q);
        dot_q = q8_word_4x4(rows, b, 6u, x_block4_at(xb, 6u), dot_q);
        dot_q = q8_word_4x4(rows, b, 7u, x_block4_at(xb, 7u), dot_q);
        let d = bitcast<vec4<f32>>(scales4(rows, b));
        acc += mat4x4<f32>(d * dot_q[0], d * dot_q[1], d * dot_q[2], d * dot_q[3]);
    }
    store4x4(gid.x * 4u, gid.y * 4u, acc);
}

// Four rows' four weights at column chunk c of a float matrix.
fn float4(rows: vec4<u32>, c: u32) -> mat4x4<f32> {
    if (HALF_WEIGHTS) {
        return f16x4(rows, c);
    }
    return f32x4(rows, c);
}

// F32 (w_data: the f32 bits of W row by row) or F16 (pairs of f16:
// element 2i low half, 2i+1 high half); w_scales is unused.
@compute @workgroup_size(16)
fn matmul_float(@builtin(global_invocation_id) gid: vec3<u32>) {
    init_x_lane();
    let rows = rows4(gid.x * 4u);
    let tokens = token_rows4(gid.y * 4u);
    var acc = mat4x4<f32>();
    for (var b = 0u; b < K / BLOCK; b++) {
        let xb = x_block4(tokens, b);
        // Written out as q4_block_4x4's words are (constant lanes).
        let c = b * 8u;
        acc = mul_add4x4(float4(rows, c), x_block4_at(xb, 0u), acc);
        acc = mul_add4x4(float4(rows, c + 1u), x_block4_at(xb, 1u), acc);
        acc = mul_add4x4(float4(rows, c + 2u), x_block4_at(xb, 2u), acc);
        acc = mul_add4x4(float4(rows, c + 3u), x_block4_at(xb, 3u), acc);
        acc = mul_add4x4(float4(rows, c + 4u), x_block4_at(xb, 4u), acc);
        acc = mul_add4x4(float4(rows, c + 5u), x_block4_at(xb, 5u), acc);
        acc = mul_add4x4(float4(rows, c + 6u), x_block4_at(xb, 6u), acc);
        acc = mul_add4x4(float4(rows, c + 7u), x_block4_at(xb, 7u), acc);
    }
    store4x4(gid.x * 4u, gid.y * 4u, acc);
}

// ---- 8 rows x 1 token ----

fn token_row(token: u32) -> u32 {
    return min(token, step.num_tokens - 1u) * (K / 4u);
}

// One Q4 block of eight rows against one token: nibble dot products per
// row (before scale) and the token's sum of x over the block.
struct Q4Block8 {
    dot_a: vec4<f32>,
    dot_b: vec4<f32>,
    sum_x: f32,
}

fn q4_block_8(rows_a: vec4<u32>, rows_b: vec4<u32>, xt: u32, b: u32) -> Q4Block8 {
    var block = Q4Block8(vec4<f32>(0.0), vec4<f32>(0.0), 0.0);
    var sum_x = vec4<f32>(0.0);
    let xb = x_block1(xt, b);
    for (var w = 0u; w < 4u; w++) {
        let x_low = x_block1_at(xb, w);
        let x_high = x_block1_at(xb, 4u + w);
        let qa = words4(rows_a, K / 8u, b * 4u + w);
        let qb = words4(rows_b, K / 8u, b * 4u + w);
        block.dot_a += transpose(low4(qa)) * x_low + transpose(high4(qa)) * x_high;
        block.dot_b += transpose(low4(qb)) * x_low + transpose(high4(qb)) * x_high;
        sum_x += x_low + x_high;
    }
    block.sum_x = dot(sum_x, ONES);
    return block;
}

// The d and m halves of four Q4_1 scale words.
fn q4_1_dm(s: vec4<u32>) -> mat2x4<f32> {
    let s0 = unpack2x16float(s.x);
    let s1 = unpack2x16float(s.y);
    let s2 = unpack2x16float(s.z);
    let s3 = unpack2x16float(s.w);
    return mat2x4<f32>(vec4<f32>(s0.x, s1.x, s2.x, s3.x), vec4<f32>(s0.y, s1.y, s2.y, s3.y));
}

@compute @workgroup_size(8)
fn matvec_q4_1(@builtin(global_invocation_id) gid: vec3<u32>) {
    init_x_lane();
    let rows = matvec_rows(gid.x);
    let rows_a = rows.a;
    let rows_b = rows.b;
    let xt = token_row(gid.y);
    var acc_a = vec4<f32>(0.0);
    var acc_b = vec4<f32>(0.0);
    for (var b = 0u; b < K / BLOCK; b++) {
        let block = q4_block_8(rows_a, rows_b, xt, b);
        let dm_a = q4_1_dm(scales4(rows_a, b));
        let dm_b = q4_1_dm(scales4(rows_b, b));
        acc_a += dm_a[0] * block.dot_a + dm_a[1] * block.sum_x;
        acc_b += dm_b[0] * block.dot_b + dm_b[1] * block.sum_x;
    }
    matvec_store(gid.x, gid.y, acc_a, acc_b);
}

@compute @workgroup_size(8)
fn matvec_q4_0(@builtin(global_invocation_id) gid: vec3<u32>) {
    init_x_lane();
    let rows = matvec_rows(gid.x);
    let rows_a = rows.a;
    let rows_b = rows.b;
    let xt = token_row(gid.y);
    var acc_a = vec4<f32>(0.0);
    var acc_b = vec4<f32>(0.0);
    for (var b = 0u; b < K / BLOCK; b++) {
        let block = q4_block_8(rows_a, rows_b, xt, b);
        let c = 8.0 * block.sum_x;
        acc_a += bitcast<vec4<f32>>(scales4(rows_a, b)) * (block.dot_a - c);
        acc_b += bitcast<vec4<f32>>(scales4(rows_b, b)) * (block.dot_b - c);
    }
    matvec_store(gid.x, gid.y, acc_a, acc_b);
}

@compute @workgroup_size(8)
fn matvec_q8_0(@builtin(global_invocation_id) gid: vec3<u32>) {
    init_x_lane();
    let rows = matvec_rows(gid.x);
    let rows_a = rows.a;
    let rows_b = rows.b;
    let xt = token_row(gid.y);
    var acc_a = vec4<f32>(0.0);
    var acc_b = vec4<f32>(0.0);
    for (var b = 0u; b < K / BLOCK; b++) {
        var dot_a = vec4<f32>(0.0);
        var dot_b = vec4<f32>(0.0);
        let xb = x_block1(xt, b);
        for (var w = 0u; w < 8u; w++) {
            let xv = x_block1_at(xb, w);
            dot_a += transpose(bytes4(words4(rows_a, K / 4u, b * 8u + w))) * xv;
            dot_b += transpose(bytes4(words4(rows_b, K / 4u, b * 8u + w))) * xv;
        }
        acc_a += bitcast<vec4<f32>>(scales4(rows_a, b)) * dot_a;
        acc_b += bitcast<vec4<f32>>(scales4(rows_b, b)) * dot_b;
    }
    matvec_store(gid.x, gid.y, acc_a, acc_b);
}

@compute @workgroup_size(8)
fn matvec_float(@builtin(global_invocation_id) gid: vec3<u32>) {
    init_x_lane();
    let rows = matvec_rows(gid.x);
    let rows_a = rows.a;
    let rows_b = rows.b;
    let xt = token_row(gid.y);
    var acc_a = vec4<f32>(0.0);
    var acc_b = vec4<f32>(0.0);
    for (var b = 0u; b < K / BLOCK; b++) {
        let xb = x_block1(xt, b);
        for (var i = 0u; i < 8u; i++) {
            let xv = x_block1_at(xb, i);
            let c = b * 8u + i;
            acc_a += transpose(float4(rows_a, c)) * xv;
            acc_b += transpose(float4(rows_b, c)) * xv;
        }
    }
    matvec_store(gid.x, gid.y, acc_a, acc_b);
}

// ---- GPU family ----
//
// Designs followed: llama.cpp's WebGPU backend (ggml-webgpu: mul_mat_vec
// with a workgroup per few rows, K split over its invocations and summed
// in workgroup memory; mul_mat with register tiles over workgroup-memory
// tiles of dequantized weights) and the classic register-blocked GEMM of
// web-llm's generated kernels (each invocation a 4x4 outer-product tile).
// Accumulation is f32 throughout.

// Weights 4w..4w+3 (lo) and 16+4w..16+4w+3 (hi) of block b of a row,
// dequantized: the unit both GPU kernels read (one word of nibbles).
struct Weights8 {
    lo: vec4<f32>,
    hi: vec4<f32>,
}

fn weights8(row: u32, b: u32, w: u32) -> Weights8 {
    switch WEIGHTS {
        case WEIGHTS_Q4_1: {
            let q = w_data[row * (K / 8u) + b * 4u + w];
            let dm = unpack2x16float(w_scales[row * (K / BLOCK) + b]);
            return Weights8(dm.x * nibbles_low(q) + dm.y, dm.x * nibbles_high(q) + dm.y);
        }
        case WEIGHTS_Q4_0: {
            let q = w_data[row * (K / 8u) + b * 4u + w];
            let d = bitcast<f32>(w_scales[row * (K / BLOCK) + b]);
            return Weights8(d * (nibbles_low(q) - 8.0), d * (nibbles_high(q) - 8.0));
        }
        case WEIGHTS_Q8_0: {
            let at = row * (K / 4u) + b * 8u + w;
            let d = bitcast<f32>(w_scales[row * (K / BLOCK) + b]);
            return Weights8(d * bytes_signed(w_data[at]), d * bytes_signed(w_data[at + 4u]));
        }
        default: {
            if (HALF_WEIGHTS) {
                let at = row * (K / 2u) + b * 16u + w * 2u;
                return Weights8(
                    vec4<f32>(unpack2x16float(w_data[at]), unpack2x16float(w_data[at + 1u])),
                    vec4<f32>(unpack2x16float(w_data[at + 8u]), unpack2x16float(w_data[at + 9u])),
                );
            }
            let at = row * K + b * BLOCK + w * 4u;
            return Weights8(
                bitcast<vec4<f32>>(vec4<u32>(w_data[at], w_data[at + 1u], w_data[at + 2u], w_data[at + 3u])),
                bitcast<vec4<f32>>(vec4<u32>(w_data[at + 16u], w_data[at + 17u], w_data[at + 18u], w_data[at + 19u])),
            );
        }
    }
}
