// Sentence embeddings from token states: per sequence, the mean of its
// tokens' rows (or its first token's row, BERT's [CLS]), then optionally
// divided by its L2 norm, as sentence-transformers' Pooling and Normalize
// modules do. One invocation per sequence.

struct Step {
    num_tokens: u32,
    num_seqs: u32,
    max_blocks_per_seq: u32,
    _pad: u32,
}

override H: u32;                   // hidden size, a multiple of 4
override MEAN: bool = true;        // mean of the tokens; false: the first token
override NORMALIZE: bool = true;   // divide by the L2 norm

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> hidden: array<vec4<f32>>;    // [M, H] f32
@group(0) @binding(2) var<storage, read> seq_start: array<u32>;       // [S + 1] first token of each sequence, then M
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>; // [S, H] f32

@compute @workgroup_size(8)
fn pooling(@builtin(global_invocation_id) gid: vec3<u32>) {
    let s = gid.x;
    if (s >= step.num_seqs) { return; }
    let n4 = H / 4u;
    let first = seq_start[s];
    var end = seq_start[s + 1u];
    if (!MEAN) { end = first + 1u; }
    // max(.., 1) as sentence-transformers' clamp: an empty sequence gives 0, not NaN.
    let inv_count = 1.0 / f32(max(end - first, 1u));
    var sum_sq = vec4<f32>(0.0);
    for (var c = 0u; c < n4; c++) {
        var sum = vec4<f32>(0.0);
        for (var t = first; t < end; t++) {
            sum += hidden[t * n4 + c];
        }
        let mean = sum * inv_count;
        out[s * n4 + c] = mean;
        sum_sq += mean * mean;
    }
    if (NORMALIZE) {
        // F.normalize: x / max(||x||, 1e-12).
        let inv_norm = 1.0 / max(sqrt(sum_sq.x + sum_sq.y + sum_sq.z + sum_sq.w), 1e-12);
        for (var c = 0u; c < n4; c++) {
            out[s * n4 + c] *= inv_norm;
        }
    }
}
