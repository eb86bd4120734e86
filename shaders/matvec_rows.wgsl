
// ---- the eight rows of a matvec invocation (appended to both matmul shaders) ----
//
// Invocation i computes rows_a and rows_b of W for one token: rows 8i..8i+3
// and 8i+4..8i+7. With GLU, W is the gated MLP's gate/up matrix (N = 2 I:
// the gate rows, then the up rows), rows_a are the gate rows 4i..4i+3 and
// rows_b the up rows of the same units, N/2 further on, and the store
// writes act(gate) * up into y [M, I] (Y_STRIDE = I; no ROW_START,
// ACCUMULATE or BIAS then). That saves the activation kernel's dispatch,
// which in a decode step on llvmpipe costs about as much as its work.

override GLU: bool = false;
override GLU_ACTIVATION: u32 = 0u; // as `gate_activation` (activation.wgsl)

struct MatvecRows {
    a: vec4<u32>,
    b: vec4<u32>,
}

fn matvec_rows(i: u32) -> MatvecRows {
    if (GLU) {
        let units = N / 2u;
        let gate = min(vec4<u32>(i * 4u) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(units - 1u));
        return MatvecRows(gate, gate + units);
    }
    return MatvecRows(rows4(i * 8u), rows4(i * 8u + 4u));
}

fn put_unit(unit: u32, token: u32, value: f32) {
    if (unit < N / 2u && token < step.num_tokens) {
        y[token * Y_STRIDE + unit] = value;
    }
}

fn matvec_store(i: u32, token: u32, acc_a: vec4<f32>, acc_b: vec4<f32>) {
    if (GLU) {
        let out = gate_activation(acc_a, GLU_ACTIVATION) * acc_b;
        put_unit(i * 4u, token, out.x);
        put_unit(i * 4u + 1u, token, out.y);
        put_unit(i * 4u + 2u, token, out.z);
        put_unit(i * 4u + 3u, token, out.w);
        return;
    }
    store4(i * 8u, token, acc_a);
    store4(i * 8u + 4u, token, acc_b);
}
