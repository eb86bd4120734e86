// ---- matvec_gpu with subgroups (appended after shaders/matmul_gpu.wgsl) ----
//
// For adapters whose subgroups have at least MV_SPAN lanes
// (`GpuContext::kernel_subgroups`). A row's lanes are numbered by subgroup
// (subgroup id * subgroup size + lane in it), not by local index, so that
// each run of MV_SPAN consecutive lanes lies in one subgroup whatever
// order the driver groups invocations in; three shuffles sum each run,
// and one barrier brings a row's MV_LANES / MV_SPAN run sums together
// (log2(MV_LANES) barriers without subgroups).

const MV_SPAN = 8u;
var<workgroup> mv_partial: array<mat2x4<f32>, 32>; // [MV_ROWS, MV_LANES / MV_SPAN]

// The sum of `v` over lanes v ^ 1, v ^ 2, v ^ 4: a run of MV_SPAN, all in
// the same subgroup and row.
fn run_sum(v: vec4<f32>) -> vec4<f32> {
    var sum = v + subgroupShuffleXor(v, 4u);
    sum += subgroupShuffleXor(sum, 2u);
    return sum + subgroupShuffleXor(sum, 1u);
}

@compute @workgroup_size(256)
fn matvec_gpu(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(subgroup_id) subgroup: u32,
    @builtin(subgroup_size) subgroup_size: u32,
    @builtin(subgroup_invocation_id) subgroup_lane: u32,
) {
    let v = subgroup * subgroup_size + subgroup_lane;
    let row = wg.x * MV_ROWS + v / MV_LANES;
    let lane = v % MV_LANES;
    let tokens = matvec_gpu_tokens(wg.y);
    let sums = matvec_gpu_partials(row, lane, tokens);
    let runs = mat2x4<f32>(run_sum(sums[0]), run_sum(sums[1]));
    if (lane % MV_SPAN == 0u) {
        mv_partial[v / MV_SPAN] = runs;
    }
    workgroupBarrier();
    // Lane i writes token i's dot product: one store each.
    if (lane < tokens.y) {
        let at = (v - lane) / MV_SPAN;
        let total = (mv_partial[at] + mv_partial[at + 1u]) + (mv_partial[at + 2u] + mv_partial[at + 3u]);
        put(row, tokens.x + lane, matvec_gpu_pick(total, lane));
    }
}
