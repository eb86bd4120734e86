// The GPU kernel family's matvec and matmul, for every weight format:
// appended to shaders/matmul.wgsl and shaders/matmul_quant.wgsl when their
// pipelines are built (WGSL has no includes), it reads weights through
// the format file's `weights8(row, block, word)` (8 dequantized weights:
// word `word` of 32-weight block `block`), and writes through its `put`
// and `store4`, which apply ROW_START, Y_STRIDE, bias and accumulation.

// matvec_gpu: a workgroup computes MV_ROWS rows for up to MV_TOKENS
// tokens (decode steps of up to 8 sequences: each weight is read once for
// all of them, as llama.cpp's mul_mat_vec takes up to 8 columns); the
// MV_LANES invocations of a row take every MV_LANES-th word of its
// nibbles (adjacent invocations read adjacent words: coalesced), and their
// partial sums meet in workgroup memory (shaders/matvec_gpu.wgsl) or
// through the subgroup (shaders/matvec_gpu_subgroup.wgsl), the entry
// point's two variants, one of which is appended after this file.
const MV_ROWS = 8u;
const MV_LANES = 32u;
const MV_TOKENS = 8u; // GPU_MATVEC_TOKENS in src/gpu/kernels/matmul.rs

// The tokens of workgroup row `group`: MV_TOKENS from t0, fewer at the
// step's end.
fn matvec_gpu_tokens(group: u32) -> vec2<u32> {
    let t0 = group * MV_TOKENS;
    return vec2<u32>(t0, min(MV_TOKENS, step.num_tokens - t0));
}

// Lane `lane`'s share of row `row`'s dot products with tokens.x ..
// tokens.x + tokens.y - 1: column 0 holds tokens 0-3 of them, column 1
// tokens 4-7. Each dot product is selected into its slot rather than
// indexed by the token, so that the sums stay in registers.
fn matvec_gpu_partials(row: u32, lane: u32, tokens: vec2<u32>) -> mat2x4<f32> {
    let r = min(row, N - 1u);
    var sums = mat2x4<f32>();
    for (var u = lane; u < K / 8u; u += MV_LANES) {
        let b = u / 4u;
        let w = u % 4u;
        let v = weights8(r, b, w);
        for (var i = 0u; i < tokens.y; i++) {
            let xt = token_row(tokens.x + i) + b * 8u + w;
            let d = vec4<f32>(dot(v.lo, x[xt]) + dot(v.hi, x[xt + 4u]));
            sums[0] += select(vec4<f32>(), d, vec4<u32>(i) == vec4<u32>(0u, 1u, 2u, 3u));
            sums[1] += select(vec4<f32>(), d, vec4<u32>(i) == vec4<u32>(4u, 5u, 6u, 7u));
        }
    }
    return sums;
}

// Token i's entry of `sums` (as matvec_gpu_partials lays them out),
// selected rather than indexed.
fn matvec_gpu_pick(sums: mat2x4<f32>, i: u32) -> f32 {
    let lo = select(vec4<f32>(), sums[0], vec4<u32>(i) == vec4<u32>(0u, 1u, 2u, 3u));
    let hi = select(vec4<f32>(), sums[1], vec4<u32>(i) == vec4<u32>(4u, 5u, 6u, 7u));
    return dot(lo + hi, vec4<f32>(1.0));
}

// matmul_gpu: a workgroup computes a 64-row x 64-token tile of y. Per
// block of 32 along K, its 256 invocations stage the tokens' x and the
// rows' dequantized weights in workgroup memory, K-major, so that each
// invocation's 4 rows (or tokens) at one k are one vec4; then each
// accumulates a 4-row x 4-token outer product per k. The tiles hold
// TileScalar, f32 (16 KiB of workgroup memory: WebGPU's default limit)
// or f16 with --f16-arithmetic: one of shaders/matmul_gpu_f32.wgsl and
// shaders/matmul_gpu_f16.wgsl is appended, with `tile_value`,
// `block_start` and `block_end`.
const MM_TILE = 64u;
var<workgroup> x_tile: array<vec4<TileScalar>, 512>; // [32 k, 16] 4 tokens each
var<workgroup> w_tile: array<vec4<TileScalar>, 512>; // [32 k, 16] 4 rows each

// acc plus one staged block's outer products (32 k), summed in
// TileScalar from block_start(acc) and brought back by block_end.
fn tile_accumulate(acc: mat4x4<f32>, r4: u32, t4: u32) -> mat4x4<f32> {
    var sum = block_start(acc);
    for (var k = 0u; k < 32u; k++) {
        let wv = w_tile[k * 16u + r4];
        let xv = x_tile[k * 16u + t4];
        sum += mat4x4<TileScalar>(wv * xv.x, wv * xv.y, wv * xv.z, wv * xv.w);
    }
    return block_end(acc, sum);
}

@compute @workgroup_size(256)
fn matmul_gpu(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row0 = wg.x * MM_TILE;
    let t0 = wg.y * MM_TILE;
    let last = step.num_tokens - 1u;
    // What this invocation stages: one word of weights of one row.
    let w_row = li / 4u;
    let w_word = li % 4u;
    let w_at = w_word * 64u + w_row / 4u;
    let w_lane = w_row % 4u;
    let r = min(row0 + w_row, N - 1u);
    // What it computes: rows row0 + 4 r4.., tokens t0 + 4 t4..
    let r4 = li % 16u;
    let t4 = li / 16u;
    var acc = mat4x4<f32>();
    for (var b = 0u; b < K / 32u; b++) {
        for (var i = li; i < 512u; i += 256u) {
            let token = i / 8u;
            let c = i % 8u;
            let v = x[min(t0 + token, last) * (K / 4u) + b * 8u + c];
            let at = c * 64u + token / 4u;
            let lane = token % 4u;
            x_tile[at][lane] = tile_value(v.x);
            x_tile[at + 16u][lane] = tile_value(v.y);
            x_tile[at + 32u][lane] = tile_value(v.z);
            x_tile[at + 48u][lane] = tile_value(v.w);
        }
        let v = weights8(r, b, w_word);
        w_tile[w_at][w_lane] = tile_value(v.lo.x);
        w_tile[w_at + 16u][w_lane] = tile_value(v.lo.y);
        w_tile[w_at + 32u][w_lane] = tile_value(v.lo.z);
        w_tile[w_at + 48u][w_lane] = tile_value(v.lo.w);
        w_tile[w_at + 256u][w_lane] = tile_value(v.hi.x);
        w_tile[w_at + 272u][w_lane] = tile_value(v.hi.y);
        w_tile[w_at + 288u][w_lane] = tile_value(v.hi.z);
        w_tile[w_at + 304u][w_lane] = tile_value(v.hi.w);
        workgroupBarrier();
        acc = tile_accumulate(acc, r4, t4);
        workgroupBarrier();
    }
    let row0_out = row0 + r4 * 4u;
    for (var t = 0u; t < 4u; t++) {
        store4(row0_out, t0 + t4 * 4u + t, acc[t]);
    }
}
