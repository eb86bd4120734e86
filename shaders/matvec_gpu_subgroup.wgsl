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
var<workgroup> mv_partial: array<f32, 32>; // [MV_ROWS, MV_LANES / MV_SPAN]

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
    var sum = matvec_gpu_partial(row, lane, wg.y);
    // Lanes v and v ^ s (s < MV_SPAN) are in the same subgroup and row.
    sum += subgroupShuffleXor(sum, 4u);
    sum += subgroupShuffleXor(sum, 2u);
    sum += subgroupShuffleXor(sum, 1u);
    if (lane % MV_SPAN == 0u) {
        mv_partial[v / MV_SPAN] = sum;
    }
    workgroupBarrier();
    if (lane == 0u) {
        let at = v / MV_SPAN;
        put(row, wg.y, (mv_partial[at] + mv_partial[at + 1u]) + (mv_partial[at + 2u] + mv_partial[at + 3u]));
    }
}
