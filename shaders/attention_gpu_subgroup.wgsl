// ---- attention_gpu with subgroups (appended to attention.wgsl) ----
//
// For adapters whose subgroups have at least 8 lanes
// (`GpuContext::kernel_subgroups`). A chunk's max and sum: three shuffles
// reduce each run of 8 lanes of a subgroup, and one barrier brings the
// ATT_KEYS / 8 run results together, where the plain variant reads all
// ATT_KEYS values in every invocation. Runs are numbered by subgroup
// (subgroup id * subgroup size + lane in it), so each lies in one subgroup
// whatever order the driver groups invocations in.

const RUN = 8u;
var<workgroup> run_values: array<f32, 8>; // [ATT_KEYS / RUN]
var<private> run_lane: u32;               // subgroup id * size + lane

fn chunk_max(value: f32, li: u32) -> f32 {
    var top = max(value, subgroupShuffleXor(value, 4u));
    top = max(top, subgroupShuffleXor(top, 2u));
    top = max(top, subgroupShuffleXor(top, 1u));
    if (run_lane % RUN == 0u) {
        run_values[run_lane / RUN] = top;
    }
    workgroupBarrier();
    for (var i = 0u; i < ATT_KEYS / RUN; i++) {
        top = max(top, run_values[i]);
    }
    workgroupBarrier();
    return top;
}

fn chunk_sum(value: f32, li: u32) -> f32 {
    var run = value + subgroupShuffleXor(value, 4u);
    run += subgroupShuffleXor(run, 2u);
    run += subgroupShuffleXor(run, 1u);
    if (run_lane % RUN == 0u) {
        run_values[run_lane / RUN] = run;
    }
    workgroupBarrier();
    var total = 0.0;
    for (var i = 0u; i < ATT_KEYS / RUN; i++) {
        total += run_values[i];
    }
    workgroupBarrier();
    return total;
}

// What both entry points take: their workgroup, their place in it and
// in their subgroup.
struct RunInvocation {
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(subgroup_id) subgroup: u32,
    @builtin(subgroup_size) subgroup_size: u32,
    @builtin(subgroup_invocation_id) subgroup_lane: u32,
}

@compute @workgroup_size(64)
fn attention_gpu(inv: RunInvocation) {
    run_lane = inv.subgroup * inv.subgroup_size + inv.subgroup_lane;
    attention_gpu_query(inv.wg.x, inv.wg.y, inv.li);
}

// A workgroup per (head x SPLITS + span, query token).
@compute @workgroup_size(64)
fn attention_gpu_split(inv: RunInvocation) {
    run_lane = inv.subgroup * inv.subgroup_size + inv.subgroup_lane;
    attention_gpu_split_query(inv.wg.x / SPLITS, inv.wg.x % SPLITS, inv.wg.y, inv.li);
}
