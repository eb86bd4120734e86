// y[M, N] (+)= x[M, K] · W[N, K]^T, with W in one of our packed formats.
//
// Shaped for what a CPU driver (lavapipe) does well and still valid on a GPU:
// one output row per invocation, each streaming its weight row contiguously
// and reusing every dequantized block across TILE_TOKENS tokens held in
// registers. No workgroup memory and no barriers: on llvmpipe both cost more
// than they save, and the activations stay in the CPU's caches anyway.

struct Step {
    num_tokens: u32,
    num_seqs: u32,
    max_blocks_per_seq: u32,
    _pad: u32,
}

override K: u32;                 // inner size, a multiple of 32
override N: u32;                 // output rows
override TILE_TOKENS: u32 = 8u;  // tokens per invocation, 1..=MAX_TILE
override ACCUMULATE: bool = false; // y += ... (fuses the residual add)

const MAX_TILE: u32 = 8u;

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;  // [M, K] f32
@group(0) @binding(2) var<storage, read> w_data: array<u32>;   // [N, K/32, words per block] packed weights
@group(0) @binding(3) var<storage, read> w_scales: array<u32>; // [N, K/32] block scales (format-specific)
@group(0) @binding(4) var<storage, read_write> y: array<f32>;  // [M, N] f32

var<private> acc: array<f32, MAX_TILE>;

fn tile_len(t0: u32) -> u32 {
    return min(TILE_TOKENS, step.num_tokens - t0);
}

fn store(row: u32, t0: u32) {
    let count = tile_len(t0);
    for (var t = 0u; t < count; t++) {
        let index = (t0 + t) * N + row;
        if (ACCUMULATE) {
            y[index] += acc[t];
        } else {
            y[index] = acc[t];
        }
    }
}

fn nibbles_low(q: u32) -> vec4<f32> {
    return vec4<f32>(vec4<u32>(q, q >> 8u, q >> 16u, q >> 24u) & vec4<u32>(15u));
}

fn nibbles_high(q: u32) -> vec4<f32> {
    return vec4<f32>(vec4<u32>(q >> 4u, q >> 12u, q >> 20u, q >> 28u) & vec4<u32>(15u));
}

fn bytes_signed(q: u32) -> vec4<f32> {
    let v = bitcast<vec4<i32>>(vec4<u32>(q << 24u, q << 16u, q << 8u, q));
    return vec4<f32>(v >> vec4<u32>(24u));
}

// Q4_1: 4 words of nibbles per block (byte j: weight j low, weight j+16 high),
// scales word = pack2x16float(d, m). Value = d * q + m.
@compute @workgroup_size(64)
fn matmul_q4_1(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.x;
    let t0 = gid.y * TILE_TOKENS;
    if (row >= N || t0 >= step.num_tokens) { return; }
    let count = tile_len(t0);
    let blocks = K / 32u;
    for (var t = 0u; t < MAX_TILE; t++) { acc[t] = 0.0; }
    for (var b = 0u; b < blocks; b++) {
        let block = row * blocks + b;
        let dm = unpack2x16float(w_scales[block]);
        var lo: array<vec4<f32>, 4>;
        var hi: array<vec4<f32>, 4>;
        for (var w = 0u; w < 4u; w++) {
            let q = w_data[block * 4u + w];
            lo[w] = nibbles_low(q);
            hi[w] = nibbles_high(q);
        }
        for (var t = 0u; t < count; t++) {
            let xb = (t0 + t) * (K / 4u) + b * 8u;
            var dot_q = 0.0;
            var sum_x = vec4<f32>(0.0);
            for (var w = 0u; w < 4u; w++) {
                let xl = x[xb + w];
                let xh = x[xb + 4u + w];
                dot_q += dot(lo[w], xl) + dot(hi[w], xh);
                sum_x += xl + xh;
            }
            acc[t] += dm.x * dot_q + dm.y * (sum_x.x + sum_x.y + sum_x.z + sum_x.w);
        }
    }
    store(row, t0);
}

// Q4_0: as Q4_1 without the min; scales word = f32 bits of d. Value = d * (q - 8).
@compute @workgroup_size(64)
fn matmul_q4_0(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.x;
    let t0 = gid.y * TILE_TOKENS;
    if (row >= N || t0 >= step.num_tokens) { return; }
    let count = tile_len(t0);
    let blocks = K / 32u;
    for (var t = 0u; t < MAX_TILE; t++) { acc[t] = 0.0; }
    for (var b = 0u; b < blocks; b++) {
        let block = row * blocks + b;
        let d = bitcast<f32>(w_scales[block]);
        var lo: array<vec4<f32>, 4>;
        var hi: array<vec4<f32>, 4>;
        for (var w = 0u; w < 4u; w++) {
            let q = w_data[block * 4u + w];
            lo[w] = nibbles_low(q) - vec4<f32>(8.0);
            hi[w] = nibbles_high(q) - vec4<f32>(8.0);
        }
        for (var t = 0u; t < count; t++) {
            let xb = (t0 + t) * (K / 4u) + b * 8u;
            var dot_q = 0.0;
            for (var w = 0u; w < 4u; w++) {
                dot_q += dot(lo[w], x[xb + w]) + dot(hi[w], x[xb + 4u + w]);
            }
            acc[t] += d * dot_q;
        }
    }
    store(row, t0);
}

// Q8_0: 8 words of signed bytes per block; scales word = f32 bits of d.
@compute @workgroup_size(64)
fn matmul_q8_0(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.x;
    let t0 = gid.y * TILE_TOKENS;
    if (row >= N || t0 >= step.num_tokens) { return; }
    let count = tile_len(t0);
    let blocks = K / 32u;
    for (var t = 0u; t < MAX_TILE; t++) { acc[t] = 0.0; }
    for (var b = 0u; b < blocks; b++) {
        let block = row * blocks + b;
        let d = bitcast<f32>(w_scales[block]);
        var q: array<vec4<f32>, 8>;
        for (var w = 0u; w < 8u; w++) {
            q[w] = bytes_signed(w_data[block * 8u + w]);
        }
        for (var t = 0u; t < count; t++) {
            let xb = (t0 + t) * (K / 4u) + b * 8u;
            var dot_q = 0.0;
            for (var w = 0u; w < 8u; w++) {
                dot_q += dot(q[w], x[xb + w]);
            }
            acc[t] += d * dot_q;
        }
    }
    store(row, t0);
}

// F32: w_data holds the f32 bits of W row by row; w_scales is unused.
@compute @workgroup_size(64)
fn matmul_f32(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.x;
    let t0 = gid.y * TILE_TOKENS;
    if (row >= N || t0 >= step.num_tokens) { return; }
    let count = tile_len(t0);
    for (var t = 0u; t < MAX_TILE; t++) { acc[t] = 0.0; }
    for (var c = 0u; c < K / 4u; c++) {
        let base = row * K + c * 4u;
        let wv = bitcast<vec4<f32>>(vec4<u32>(w_data[base], w_data[base + 1u], w_data[base + 2u], w_data[base + 3u]));
        for (var t = 0u; t < count; t++) {
            acc[t] += dot(wv, x[(t0 + t) * (K / 4u) + c]);
        }
    }
    store(row, t0);
}

// F16: w_data holds pairs of f16 (element 2i low half, 2i+1 high half).
@compute @workgroup_size(64)
fn matmul_f16(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.x;
    let t0 = gid.y * TILE_TOKENS;
    if (row >= N || t0 >= step.num_tokens) { return; }
    let count = tile_len(t0);
    for (var t = 0u; t < MAX_TILE; t++) { acc[t] = 0.0; }
    for (var c = 0u; c < K / 4u; c++) {
        let base = (row * K + c * 4u) / 2u;
        let wv = vec4<f32>(unpack2x16float(w_data[base]), unpack2x16float(w_data[base + 1u]));
        for (var t = 0u; t < count; t++) {
            acc[t] += dot(wv, x[(t0 + t) * (K / 4u) + c]);
        }
    }
    store(row, t0);
}
