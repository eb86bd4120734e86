// ---- matvec_gpu without subgroups (appended after shaders/matmul_gpu.wgsl) ----
//
// A row's MV_LANES partial sums meet in workgroup memory, halved at each
// of log2(MV_LANES) barriers.

var<workgroup> mv_partial: array<mat2x4<f32>, 256>; // [MV_ROWS, MV_LANES], 8 KiB

@compute @workgroup_size(256)
fn matvec_gpu(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row = wg.x * MV_ROWS + li / MV_LANES;
    let lane = li % MV_LANES;
    let tokens = matvec_gpu_tokens(wg.y);
    mv_partial[li] = matvec_gpu_partials(row, lane, tokens);
    workgroupBarrier();
    for (var s = MV_LANES / 2u; s > 0u; s >>= 1u) {
        if (lane < s) {
            mv_partial[li] += mv_partial[li + s];
        }
        workgroupBarrier();
    }
    // Lane i writes token i's dot product: one store each.
    if (lane < tokens.y) {
        put(row, tokens.x + lane, matvec_gpu_pick(mv_partial[li - lane], lane));
    }
}
