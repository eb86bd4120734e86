// RMSNorm: out[i] = x[r] / sqrt(mean(x[r]^2) + EPS) * weight, per row.
// One invocation per row: no barriers, which a CPU driver runs best; rows
// are short (the hidden size). With GATHER, row i reads x[row_index[i]] and
// there are num_seqs rows: the final norm of only the positions we sample.
// With ACCUMULATE, out[i] += ... instead: Gemma's norms after attention and
// FFN add their result into the residual stream.

struct Step {
    num_tokens: u32,
    num_seqs: u32,
    max_blocks_per_seq: u32,
    _pad: u32,
}

override H: u32;          // row length, a multiple of 4
override EPS: f32;
override GATHER: bool = false;
override ACCUMULATE: bool = false;

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;         // [M, H] f32
@group(0) @binding(2) var<storage, read> weight: array<vec4<f32>>;    // [H] f32
@group(0) @binding(3) var<storage, read> row_index: array<u32>;       // [S] rows to gather
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>; // [rows, H] f32, written or added to

@compute @workgroup_size(64)
fn rmsnorm(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    var rows = step.num_tokens;
    if (GATHER) { rows = step.num_seqs; }
    if (i >= rows) { return; }
    var src = i;
    if (GATHER) { src = min(row_index[i], step.num_tokens - 1u); }
    let n4 = H / 4u;
    var sum_sq = vec4<f32>(0.0);
    for (var c = 0u; c < n4; c++) {
        let v = x[src * n4 + c];
        sum_sq += v * v;
    }
    let mean = (sum_sq.x + sum_sq.y + sum_sq.z + sum_sq.w) / f32(H);
    let scale = 1.0 / sqrt(mean + EPS);
    for (var c = 0u; c < n4; c++) {
        let normed = x[src * n4 + c] * scale * weight[c];
        if (ACCUMULATE) {
            out[i * n4 + c] += normed;
        } else {
            out[i * n4 + c] = normed;
        }
    }
}
