
// ---- gated activations (appended to glu.wgsl and the matmul shaders) ----
//
// act(gate) for the gated MLP; `activation` is a pipeline constant.
// 0: SiLU, x / (1 + exp(-x)) (SwiGLU: Llama).
// 1: GELU, tanh form, as PyTorch's gelu(approximate="tanh"):
//   0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))   (GeGLU: Gemma).
//   The tanh argument is clamped to [-10, 10]: tanh of large values may be
//   computed as a ratio of exponentials that overflows to inf/inf = NaN on
//   some drivers, and f32 tanh(+-10) is already +-1 exactly (1 - tanh(10)
//   is 4e-9, under half an ulp of 1), so the clamp changes no result. It
//   also catches x^3 overflowing to inf for |x| > 7e12.

const SQRT_2_OVER_PI: f32 = 0.7978845608028654;

fn gate_activation(x: vec4<f32>, activation: u32) -> vec4<f32> {
    if (activation == 1u) {
        let inner = clamp(SQRT_2_OVER_PI * (x + 0.044715 * (x * x * x)), vec4<f32>(-10.0), vec4<f32>(10.0));
        return 0.5 * x * (1.0 + tanh(inner));
    }
    return x / (1.0 + exp(-x));
}
