// LayerNorm in place: x[t] = (x[t] - mean) / sqrt(var + EPS) * weight + bias,
// per row, with the mean and the (biased) variance of the row, as PyTorch.
// One invocation per row, no barriers (rows are short: the hidden size);
// two passes over the row, so the variance has no cancellation.

struct Step {
    num_tokens: u32,
    num_seqs: u32,
    max_blocks_per_seq: u32,
    _pad: u32,
}

override H: u32;          // row length, a multiple of 4
override EPS: f32;

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read_write> x: array<vec4<f32>>; // [M, H] f32, normalised in place
@group(0) @binding(2) var<storage, read> weight: array<vec4<f32>>;  // [H] f32
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;    // [H] f32

// Workgroups of 16 rows: a small batch still spreads over the CPU threads.
@compute @workgroup_size(16)
fn layernorm(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.x;
    if (row >= step.num_tokens) { return; }
    let n4 = H / 4u;
    let base = row * n4;
    var sum = vec4<f32>(0.0);
    for (var c = 0u; c < n4; c++) {
        sum += x[base + c];
    }
    let mean = (sum.x + sum.y + sum.z + sum.w) / f32(H);
    var sum_sq = vec4<f32>(0.0);
    for (var c = 0u; c < n4; c++) {
        let d = x[base + c] - mean;
        sum_sq += d * d;
    }
    let variance = (sum_sq.x + sum_sq.y + sum_sq.z + sum_sq.w) / f32(H);
    let scale = 1.0 / sqrt(variance + EPS);
    for (var c = 0u; c < n4; c++) {
        x[base + c] = (x[base + c] - mean) * scale * weight[c] + bias[c];
    }
}
