// ---- attention_gpu without subgroups (appended to attention.wgsl) ----
//
// A chunk's max and sum over the workgroup's ATT_KEYS invocations: each
// writes its value to workgroup memory and every one reads them all
// (one barrier, ATT_KEYS reads that the hardware broadcasts).

var<workgroup> chunk_values: array<f32, ATT_KEYS>;

fn chunk_max(value: f32, li: u32) -> f32 {
    chunk_values[li] = value;
    workgroupBarrier();
    var top = chunk_values[0];
    for (var i = 1u; i < ATT_KEYS; i++) {
        top = max(top, chunk_values[i]);
    }
    workgroupBarrier();
    return top;
}

fn chunk_sum(value: f32, li: u32) -> f32 {
    chunk_values[li] = value;
    workgroupBarrier();
    var total = 0.0;
    for (var i = 0u; i < ATT_KEYS; i++) {
        total += chunk_values[i];
    }
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(64)
fn attention_gpu(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    attention_gpu_query(wg.x, wg.y, li);
}

// A workgroup per (head x SPLITS + span, query token).
@compute @workgroup_size(64)
fn attention_gpu_split(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    attention_gpu_split_query(wg.x / SPLITS, wg.x % SPLITS, wg.y, li);
}
