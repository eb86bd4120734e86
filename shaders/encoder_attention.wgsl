// Bidirectional attention over a varlen batch, for encoders (BERT): each
// token attends to every token of its own sequence and to nothing else,
// which is what a padding mask does to a padded batch, without computing
// the padding. No KV cache: K and V are read straight from the fused QKV
// projection. One invocation per (token, head), with an online softmax
// (flash-attention style), so no score matrix is ever stored.

struct Step {
    num_tokens: u32,
    num_seqs: u32,
    max_blocks_per_seq: u32,
    _pad: u32,
}

override HEAD_DIM: u32;     // a multiple of 4, at most 4 * MAX_D4
override N_HEADS: u32;
override SCALE: f32;        // 1 / sqrt(HEAD_DIM)

const MAX_D4: u32 = 64u;

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> qkv: array<vec4<f32>>;       // [M, 3 N_HEADS HEAD_DIM] f32: Q | K | V
@group(0) @binding(2) var<storage, read> token_seq: array<u32>;       // [M] sequence of each token
@group(0) @binding(3) var<storage, read> seq_start: array<u32>;       // [S + 1] first token of each sequence, then M
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>; // [M, N_HEADS HEAD_DIM] f32

var<private> q: array<vec4<f32>, MAX_D4>;
var<private> acc: array<vec4<f32>, MAX_D4>;

// Workgroups of 8 spread a small batch over every CPU thread on llvmpipe.
@compute @workgroup_size(8)
fn encoder_attention(@builtin(global_invocation_id) gid: vec3<u32>) {
    let head = gid.x % N_HEADS;
    let t = gid.x / N_HEADS;
    if (t >= step.num_tokens) { return; }
    let d4 = HEAD_DIM / 4u;
    let width4 = N_HEADS * d4;        // one of Q, K, V per token, in vec4s
    let row4 = 3u * width4;
    for (var c = 0u; c < d4; c++) {
        q[c] = qkv[t * row4 + head * d4 + c] * SCALE;
        acc[c] = vec4<f32>(0.0);
    }
    let seq = token_seq[t];
    let first = seq_start[seq];
    let end = seq_start[seq + 1u];
    var running_max = -3.4e38;
    var denom = 0.0;
    for (var j = first; j < end; j++) {
        let k_at = j * row4 + width4 + head * d4;
        let v_at = k_at + width4;
        var s4 = vec4<f32>(0.0);
        for (var c = 0u; c < d4; c++) {
            s4 += q[c] * qkv[k_at + c];
        }
        let score = s4.x + s4.y + s4.z + s4.w;
        let new_max = max(running_max, score);
        let correction = exp(running_max - new_max);
        let p = exp(score - new_max);
        denom = denom * correction + p;
        for (var c = 0u; c < d4; c++) {
            acc[c] = acc[c] * correction + p * qkv[v_at + c];
        }
        running_max = new_max;
    }
    let inv = 1.0 / denom;
    for (var c = 0u; c < d4; c++) {
        out[(t * N_HEADS + head) * d4 + c] = acc[c] * inv;
    }
}
