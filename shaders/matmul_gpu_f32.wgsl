// The GPU family's prompt tile (matmul_gpu in shaders/matmul_gpu.wgsl) in
// f32, the default: every product added straight into the f32 sums.
alias TileScalar = f32;

fn tile_value(v: f32) -> f32 {
    return v;
}

fn block_start(acc: mat4x4<f32>) -> mat4x4<f32> {
    return acc;
}

fn block_end(acc: mat4x4<f32>, sum: mat4x4<f32>) -> mat4x4<f32> {
    return sum;
}
