// Probes of the adapter for `wgserve bench --profile`: the fixed cost of a
// dispatch that does nothing, and the peak f32 FMA rate.

// [1] u32: written only when the impossible happens, so that each kernel
// keeps a read-write binding (and the barriers a real kernel gets) and the
// compiler cannot drop its work.
@group(0) @binding(0) var<storage, read_write> sink: array<u32>;

// Loop trips of `fma_peak`.
override ITERATIONS: u32 = 1024u;

@compute @workgroup_size(64)
fn empty(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x == 0xffffffffu) {
        sink[0] = 1u;
    }
}

// Four steps of one chain, written out (a loop here would blend too).
fn fma4_steps(a: vec4<f32>, m: vec4<f32>, c: vec4<f32>) -> vec4<f32> {
    return fma(fma(fma(fma(a, m, c), m, c), m, c), m, c);
}

// Eight independent chains of vec4 fused multiply-adds, as the prefill
// matmul tiles write theirs (`shaders/mul_add.wgsl`), four steps of each
// per trip: 256 FLOPs per trip per invocation. Several steps per trip
// because llvmpipe blends every loop-carried value with the loop's mask
// at the end of each trip: with one step per trip that blending took
// about half the time, and the matmul tiles (which do 32 or 64 steps
// per trip) measured above this "peak".
@compute @workgroup_size(64)
fn fma_peak(@builtin(global_invocation_id) gid: vec3<u32>) {
    let seed = f32(gid.x) * 1e-6;
    var a0 = vec4<f32>(seed);
    var a1 = a0 + 0.1;
    var a2 = a0 + 0.2;
    var a3 = a0 + 0.3;
    var a4 = a0 + 0.4;
    var a5 = a0 + 0.5;
    var a6 = a0 + 0.6;
    var a7 = a0 + 0.7;
    let m = vec4<f32>(0.999);
    let c = vec4<f32>(0.001);
    for (var i = 0u; i < ITERATIONS; i++) {
        a0 = fma4_steps(a0, m, c);
        a1 = fma4_steps(a1, m, c);
        a2 = fma4_steps(a2, m, c);
        a3 = fma4_steps(a3, m, c);
        a4 = fma4_steps(a4, m, c);
        a5 = fma4_steps(a5, m, c);
        a6 = fma4_steps(a6, m, c);
        a7 = fma4_steps(a7, m, c);
    }
    let s = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
    if (s.x + s.y + s.z + s.w == -1.0) {
        sink[0] = 1u;
    }
}
