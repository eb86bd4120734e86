// The GPU family's prompt tile (matmul_gpu in shaders/matmul_gpu.wgsl) in
// f16 (--f16-arithmetic; the source starts with `enable f16;`): x and the
// dequantized weights are staged as halves, which halves the tile's
// workgroup memory traffic, and each block's 32 products are summed in
// f16, where GPUs with double-rate halves run two per lane; the block's
// sum then joins the f32 sums, so rounding grows with 32 products, not
// with K.
alias TileScalar = f16;

// Beyond f16's range a conversion is undefined: saturate instead.
fn tile_value(v: f32) -> f16 {
    return f16(clamp(v, -65504.0, 65504.0));
}

fn block_start(acc: mat4x4<f32>) -> mat4x4<f16> {
    return mat4x4<f16>();
}

fn block_end(acc: mat4x4<f32>, sum: mat4x4<f16>) -> mat4x4<f32> {
    return acc + mat4x4<f32>(sum);
}
