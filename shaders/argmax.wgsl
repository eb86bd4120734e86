// Greedy sampling: the index of the largest logit per row (first on ties,
// as torch.argmax). One workgroup per row; each invocation scans a
// contiguous chunk, then a tree reduction in workgroup memory.

struct Step {
    num_tokens: u32,
    num_seqs: u32,
    max_blocks_per_seq: u32,
    _pad: u32,
}

override V: u32;   // row length (vocabulary size)
const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read> logits: array<f32>;      // [S, V] f32
@group(0) @binding(2) var<storage, read_write> out: array<u32>;   // [S]

var<workgroup> best_value: array<f32, WG>;
var<workgroup> best_index: array<u32, WG>;

fn better(value: f32, index: u32, than_value: f32, than_index: u32) -> bool {
    return value > than_value || (value == than_value && index < than_index);
}

@compute @workgroup_size(64)
fn argmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.x;
    // Uniform control flow: every invocation reaches the barriers.
    let row_valid = row < step.num_seqs;
    let chunk = (V + WG - 1u) / WG;
    let start = lid * chunk;
    let end = min(start + chunk, V);
    var value = -3.4e38;
    var index = 0xffffffffu;
    if (row_valid) {
        for (var i = start; i < end; i++) {
            let v = logits[row * V + i];
            if (v > value) {
                value = v;
                index = i;
            }
        }
    }
    best_value[lid] = value;
    best_index[lid] = index;
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        workgroupBarrier();
        if (lid < stride && better(best_value[lid + stride], best_index[lid + stride], best_value[lid], best_index[lid])) {
            best_value[lid] = best_value[lid + stride];
            best_index[lid] = best_index[lid + stride];
        }
    }
    if (row_valid && lid == 0u) {
        out[row] = min(best_index[0], V - 1u);
    }
}
