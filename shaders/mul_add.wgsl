
// ---- multiply-adds of a register tile (appended to both matmul shaders) ----

// acc + transpose(w) * x, where column r of w holds row r's four weights
// and column t of x token t's four activations: column t of the result
// gains the four rows' dot products with token t. Written as one chain of
// `fma` per accumulator: about 1.17x the 512-token prompt rate on
// llvmpipe against `transpose(w) * x + acc`. Not from fused instructions
// (Mesa 25.0 splits `fma` into a multiply and an add, `GALLIVM_DEBUG=asm`)
// but from the order of the operations; a GPU may fuse them.
fn mul_add4x4(w: mat4x4<f32>, x: mat4x4<f32>, acc: mat4x4<f32>) -> mat4x4<f32> {
    let rows = transpose(w);
    return mat4x4<f32>(
        mul_add4(rows, x[0], acc[0]),
        mul_add4(rows, x[1], acc[1]),
        mul_add4(rows, x[2], acc[2]),
        mul_add4(rows, x[3], acc[3]),
    );
}

// acc + rows * x: column i of rows holds the four rows' weights i.
fn mul_add4(rows: mat4x4<f32>, x: vec4<f32>, acc: vec4<f32>) -> vec4<f32> {
    let a = fma(rows[0], vec4<f32>(x.x), acc);
    let b = fma(rows[1], vec4<f32>(x.y), a);
    let c = fma(rows[2], vec4<f32>(x.z), b);
    return fma(rows[3], vec4<f32>(x.w), c);
}
