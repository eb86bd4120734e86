// y[M, N] (+)= x[M, K] · W[N, K]^T, with W in one of our packed formats.
//
// Shaped for what a CPU driver (lavapipe) does well, and valid on a GPU.
// Each invocation computes a register tile of TILE_ROWS consecutive output
// rows by TILE_TOKENS tokens: every activation it loads serves TILE_ROWS
// rows and every weight it dequantizes serves TILE_TOKENS tokens. On
// llvmpipe each invocation is one SIMD lane and every load is a per-lane
// gather, so reuse inside the lane is what pays; workgroup memory and
// barriers cost more than they save there (measured: see README).
// All loops run to override constants so the driver unrolls them and keeps
// the tile in registers; a short last tile re-reads the last token or row
// and drops the extra results at the store.

struct Step {
    num_tokens: u32,
    num_seqs: u32,
    max_blocks_per_seq: u32,
    _pad: u32,
}

override K: u32;                   // inner size, a multiple of 32
override N: u32;                   // output rows
override TILE_TOKENS: u32 = 1u;    // tokens per invocation, 1..=MAX_TILE_TOKENS
override TILE_ROWS: u32 = 8u;      // rows per invocation, 1..=MAX_TILE_ROWS
override ACCUMULATE: bool = false; // y += ... (fuses the residual add)

const MAX_TILE_TOKENS: u32 = 8u;
const MAX_TILE_ROWS: u32 = 8u;

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;  // [M, K] f32
@group(0) @binding(2) var<storage, read> w_data: array<u32>;   // [N, K/32, words per block] packed weights
@group(0) @binding(3) var<storage, read> w_scales: array<u32>; // [N, K/32] block scales (format-specific)
@group(0) @binding(4) var<storage, read_write> y: array<f32>;  // [M, N] f32

// [TILE_ROWS * TILE_TOKENS] partial sums, row-major.
var<private> acc: array<f32, 64>;
// One block's per-token partial dot products (before the block scale).
var<private> dots: array<vec4<f32>, 64>;
var<private> block_sum_x: array<f32, MAX_TILE_TOKENS>;

struct Tile {
    row0: u32,
    t0: u32,
}

fn tile_of(gid: vec3<u32>) -> Tile {
    return Tile(gid.x * TILE_ROWS, gid.y * TILE_TOKENS);
}

fn tile_row(tile: Tile, r: u32) -> u32 {
    return min(tile.row0 + r, N - 1u);
}

fn x_row(tile: Tile, t: u32) -> u32 {
    return min(tile.t0 + t, step.num_tokens - 1u) * (K / 4u);
}

fn clear_acc() {
    for (var i = 0u; i < TILE_ROWS * TILE_TOKENS; i++) { acc[i] = 0.0; }
}

fn clear_dots() {
    for (var i = 0u; i < TILE_ROWS * TILE_TOKENS; i++) { dots[i] = vec4<f32>(0.0); }
}

fn hsum(v: vec4<f32>) -> f32 {
    return v.x + v.y + v.z + v.w;
}

fn store(tile: Tile) {
    for (var r = 0u; r < TILE_ROWS; r++) {
        for (var t = 0u; t < TILE_TOKENS; t++) {
            if (tile.row0 + r < N && tile.t0 + t < step.num_tokens) {
                let index = (tile.t0 + t) * N + tile.row0 + r;
                if (ACCUMULATE) {
                    y[index] += acc[r * TILE_TOKENS + t];
                } else {
                    y[index] = acc[r * TILE_TOKENS + t];
                }
            }
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

// dots[r, t] = sum over the block's nibbles q * x, and block_sum_x[t] =
// sum of the block's x (Q4_0 and Q4_1 share it).
fn q4_block_dots(tile: Tile, b: u32) {
    let blocks = K / 32u;
    clear_dots();
    for (var t = 0u; t < TILE_TOKENS; t++) { block_sum_x[t] = 0.0; }
    for (var w = 0u; w < 4u; w++) {
        var xl: array<vec4<f32>, MAX_TILE_TOKENS>;
        var xh: array<vec4<f32>, MAX_TILE_TOKENS>;
        for (var t = 0u; t < TILE_TOKENS; t++) {
            let xb = x_row(tile, t) + b * 8u;
            xl[t] = x[xb + w];
            xh[t] = x[xb + 4u + w];
            block_sum_x[t] += hsum(xl[t] + xh[t]);
        }
        for (var r = 0u; r < TILE_ROWS; r++) {
            let q = w_data[(tile_row(tile, r) * blocks + b) * 4u + w];
            let lo = nibbles_low(q);
            let hi = nibbles_high(q);
            for (var t = 0u; t < TILE_TOKENS; t++) {
                dots[r * TILE_TOKENS + t] += lo * xl[t] + hi * xh[t];
            }
        }
    }
}

// Q4_1: scales word = pack2x16float(d, m). Value = d * q + m.
@compute @workgroup_size(64)
fn matmul_q4_1(@builtin(global_invocation_id) gid: vec3<u32>) {
    let tile = tile_of(gid);
    let blocks = K / 32u;
    clear_acc();
    for (var b = 0u; b < blocks; b++) {
        q4_block_dots(tile, b);
        for (var r = 0u; r < TILE_ROWS; r++) {
            let dm = unpack2x16float(w_scales[tile_row(tile, r) * blocks + b]);
            for (var t = 0u; t < TILE_TOKENS; t++) {
                acc[r * TILE_TOKENS + t] += dm.x * hsum(dots[r * TILE_TOKENS + t]) + dm.y * block_sum_x[t];
            }
        }
    }
    store(tile);
}

// Q4_0: scales word = f32 bits of d. Value = d * (q - 8).
@compute @workgroup_size(64)
fn matmul_q4_0(@builtin(global_invocation_id) gid: vec3<u32>) {
    let tile = tile_of(gid);
    let blocks = K / 32u;
    clear_acc();
    for (var b = 0u; b < blocks; b++) {
        q4_block_dots(tile, b);
        for (var r = 0u; r < TILE_ROWS; r++) {
            let d = bitcast<f32>(w_scales[tile_row(tile, r) * blocks + b]);
            for (var t = 0u; t < TILE_TOKENS; t++) {
                acc[r * TILE_TOKENS + t] += d * (hsum(dots[r * TILE_TOKENS + t]) - 8.0 * block_sum_x[t]);
            }
        }
    }
    store(tile);
}

// Q8_0: 8 words of signed bytes per block; scales word = f32 bits of d.
@compute @workgroup_size(64)
fn matmul_q8_0(@builtin(global_invocation_id) gid: vec3<u32>) {
    let tile = tile_of(gid);
    let blocks = K / 32u;
    clear_acc();
    for (var b = 0u; b < blocks; b++) {
        clear_dots();
        for (var w = 0u; w < 8u; w++) {
            var xv: array<vec4<f32>, MAX_TILE_TOKENS>;
            for (var t = 0u; t < TILE_TOKENS; t++) {
                xv[t] = x[x_row(tile, t) + b * 8u + w];
            }
            for (var r = 0u; r < TILE_ROWS; r++) {
                let q = bytes_signed(w_data[(tile_row(tile, r) * blocks + b) * 8u + w]);
                for (var t = 0u; t < TILE_TOKENS; t++) {
                    dots[r * TILE_TOKENS + t] += q * xv[t];
                }
            }
        }
        for (var r = 0u; r < TILE_ROWS; r++) {
            let d = bitcast<f32>(w_scales[tile_row(tile, r) * blocks + b]);
            for (var t = 0u; t < TILE_TOKENS; t++) {
                acc[r * TILE_TOKENS + t] += d * hsum(dots[r * TILE_TOKENS + t]);
            }
        }
    }
    store(tile);
}

// F32: w_data holds the f32 bits of W row by row; w_scales is unused.
@compute @workgroup_size(64)
fn matmul_f32(@builtin(global_invocation_id) gid: vec3<u32>) {
    let tile = tile_of(gid);
    clear_dots();
    for (var c = 0u; c < K / 4u; c++) {
        var xv: array<vec4<f32>, MAX_TILE_TOKENS>;
        for (var t = 0u; t < TILE_TOKENS; t++) {
            xv[t] = x[x_row(tile, t) + c];
        }
        for (var r = 0u; r < TILE_ROWS; r++) {
            let base = tile_row(tile, r) * K + c * 4u;
            let wv = bitcast<vec4<f32>>(vec4<u32>(w_data[base], w_data[base + 1u], w_data[base + 2u], w_data[base + 3u]));
            for (var t = 0u; t < TILE_TOKENS; t++) {
                dots[r * TILE_TOKENS + t] += wv * xv[t];
            }
        }
    }
    for (var i = 0u; i < TILE_ROWS * TILE_TOKENS; i++) { acc[i] = hsum(dots[i]); }
    store(tile);
}

// F16: w_data holds pairs of f16 (element 2i low half, 2i+1 high half).
@compute @workgroup_size(64)
fn matmul_f16(@builtin(global_invocation_id) gid: vec3<u32>) {
    let tile = tile_of(gid);
    clear_dots();
    for (var c = 0u; c < K / 4u; c++) {
        var xv: array<vec4<f32>, MAX_TILE_TOKENS>;
        for (var t = 0u; t < TILE_TOKENS; t++) {
            xv[t] = x[x_row(tile, t) + c];
        }
        for (var r = 0u; r < TILE_ROWS; r++) {
            let base = (tile_row(tile, r) * K + c * 4u) / 2u;
            let wv = vec4<f32>(unpack2x16float(w_data[base]), unpack2x16float(w_data[base + 1u]));
            for (var t = 0u; t < TILE_TOKENS; t++) {
                dots[r * TILE_TOKENS + t] += wv * xv[t];
            }
        }
    }
    for (var i = 0u; i < TILE_ROWS * TILE_TOKENS; i++) { acc[i] = hsum(dots[i]); }
    store(tile);
}
