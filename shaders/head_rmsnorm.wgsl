// Per-head RMSNorm in place on the fused QKV activations: each of the
// N_Q_HEADS query heads is scaled by q_norm, each of the N_KV_HEADS key
// heads by k_norm; the V heads are not touched. Gemma 3 runs it between the
// QKV projection and RoPE. One invocation per (token, head), no barriers:
// a head is only HEAD_DIM values.

struct Step {
    num_tokens: u32,
    num_seqs: u32,
    max_blocks_per_seq: u32,
    _pad: u32,
}

override HEAD_DIM: u32;   // a multiple of 4
override N_Q_HEADS: u32;
override N_KV_HEADS: u32;
override EPS: f32;

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read_write> qkv: array<vec4<f32>>; // [M, (N_Q_HEADS + 2 N_KV_HEADS) HEAD_DIM] f32
@group(0) @binding(2) var<storage, read> q_norm: array<vec4<f32>>;    // [HEAD_DIM] f32
@group(0) @binding(3) var<storage, read> k_norm: array<vec4<f32>>;    // [HEAD_DIM] f32

@compute @workgroup_size(64)
fn head_rmsnorm(@builtin(global_invocation_id) gid: vec3<u32>) {
    let heads = N_Q_HEADS + N_KV_HEADS;   // Q heads, then K heads
    let head = gid.x % heads;
    let t = gid.x / heads;
    if (t >= step.num_tokens) { return; }
    let d4 = HEAD_DIM / 4u;
    let base = (t * (N_Q_HEADS + 2u * N_KV_HEADS) + head) * d4;
    var sum_sq = vec4<f32>(0.0);
    for (var c = 0u; c < d4; c++) {
        let v = qkv[base + c];
        sum_sq += v * v;
    }
    let mean = (sum_sq.x + sum_sq.y + sum_sq.z + sum_sq.w) / f32(HEAD_DIM);
    let scale = 1.0 / sqrt(mean + EPS);
    let is_query = head < N_Q_HEADS;
    for (var c = 0u; c < d4; c++) {
        var w = k_norm[c];
        if (is_query) { w = q_norm[c]; }
        qkv[base + c] = qkv[base + c] * scale * w;
    }
}
