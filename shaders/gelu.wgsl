// GELU in place, the exact form BERT's "gelu" means:
// x = 0.5 x (1 + erf(x / sqrt(2))), as torch.nn.functional.gelu computes it.
// WGSL has no erf, so `erf` below is FreeBSD's erff (s_erff.c, also musl's
// and Rust's libm): rational approximations on four intervals, within about
// 1 ulp of the true value in f32.

struct Step {
    num_tokens: u32,
    num_seqs: u32,
    max_blocks_per_seq: u32,
    _pad: u32,
}

override COLUMNS: u32;   // row length, a multiple of 4

@group(0) @binding(0) var<uniform> step: Step;
@group(0) @binding(1) var<storage, read_write> x: array<vec4<f32>>; // [M, COLUMNS] f32, in place

const ERX: f32 = 8.4506291151e-01;
// erf on [0, 0.84375]
const EFX8: f32 = 1.0270333290e+00;
const PP0: f32 = 1.2837916613e-01;
const PP1: f32 = -3.2504209876e-01;
const PP2: f32 = -2.8481749818e-02;
const PP3: f32 = -5.7702702470e-03;
const PP4: f32 = -2.3763017452e-05;
const QQ1: f32 = 3.9791721106e-01;
const QQ2: f32 = 6.5022252500e-02;
const QQ3: f32 = 5.0813062117e-03;
const QQ4: f32 = 1.3249473704e-04;
const QQ5: f32 = -3.9602282413e-06;
// erf on [0.84375, 1.25]
const PA0: f32 = -2.3621185683e-03;
const PA1: f32 = 4.1485610604e-01;
const PA2: f32 = -3.7220788002e-01;
const PA3: f32 = 3.1834661961e-01;
const PA4: f32 = -1.1089469492e-01;
const PA5: f32 = 3.5478305072e-02;
const PA6: f32 = -2.1663755178e-03;
const QA1: f32 = 1.0642088205e-01;
const QA2: f32 = 5.4039794207e-01;
const QA3: f32 = 7.1828655899e-02;
const QA4: f32 = 1.2617121637e-01;
const QA5: f32 = 1.3637083583e-02;
const QA6: f32 = 1.1984500103e-02;
// erfc on [1.25, 1 / 0.35]
const RA0: f32 = -9.8649440333e-03;
const RA1: f32 = -6.9385856390e-01;
const RA2: f32 = -1.0558626175e+01;
const RA3: f32 = -6.2375331879e+01;
const RA4: f32 = -1.6239666748e+02;
const RA5: f32 = -1.8460508728e+02;
const RA6: f32 = -8.1287437439e+01;
const RA7: f32 = -9.8143291473e+00;
const SA1: f32 = 1.9651271820e+01;
const SA2: f32 = 1.3765776062e+02;
const SA3: f32 = 4.3456588745e+02;
const SA4: f32 = 6.4538726807e+02;
const SA5: f32 = 4.2900814819e+02;
const SA6: f32 = 1.0863500214e+02;
const SA7: f32 = 6.5702495575e+00;
const SA8: f32 = -6.0424413532e-02;
// erfc on [1 / 0.35, 6]
const RB0: f32 = -9.8649431020e-03;
const RB1: f32 = -7.9928326607e-01;
const RB2: f32 = -1.7757955551e+01;
const RB3: f32 = -1.6063638306e+02;
const RB4: f32 = -6.3756646729e+02;
const RB5: f32 = -1.0250950928e+03;
const RB6: f32 = -4.8351919556e+02;
const SB1: f32 = 3.0338060379e+01;
const SB2: f32 = 3.2579251099e+02;
const SB3: f32 = 1.5367296143e+03;
const SB4: f32 = 3.1998581543e+03;
const SB5: f32 = 2.5530502930e+03;
const SB6: f32 = 4.7452853394e+02;
const SB7: f32 = -2.2440952301e+01;

// erfc(a) for 1.25 <= a < 6.
fn erfc_tail(a: f32) -> f32 {
    let s = 1.0 / (a * a);
    var r: f32;
    var q: f32;
    if (a < 1.0 / 0.35) {
        r = RA0 + s * (RA1 + s * (RA2 + s * (RA3 + s * (RA4 + s * (RA5 + s * (RA6 + s * RA7))))));
        q = 1.0 + s * (SA1 + s * (SA2 + s * (SA3 + s * (SA4 + s * (SA5 + s * (SA6 + s * (SA7 + s * SA8)))))));
    } else {
        r = RB0 + s * (RB1 + s * (RB2 + s * (RB3 + s * (RB4 + s * (RB5 + s * RB6)))));
        q = 1.0 + s * (SB1 + s * (SB2 + s * (SB3 + s * (SB4 + s * (SB5 + s * (SB6 + s * SB7))))));
    }
    // exp(-a^2) as exp(-z^2) exp(-(a - z)(a + z)) with z = a rounded to 12
    // bits, so that z^2 is exact.
    let z = bitcast<f32>(bitcast<u32>(a) & 0xffffe000u);
    return exp(-z * z - 0.5625) * exp((z - a) * (z + a) + r / q) / a;
}

fn erf(x: f32) -> f32 {
    let a = abs(x);
    if (a < 0.84375) {
        if (a < 3.7252902984e-9) {   // 2^-28: erf(x) = x (1 + EFX8 / 8) to f32 precision
            return 0.125 * (8.0 * x + EFX8 * x);
        }
        let z = x * x;
        let r = PP0 + z * (PP1 + z * (PP2 + z * (PP3 + z * PP4)));
        let s = 1.0 + z * (QQ1 + z * (QQ2 + z * (QQ3 + z * (QQ4 + z * QQ5))));
        return x + x * (r / s);
    }
    var y: f32;
    if (a < 1.25) {
        let s = a - 1.0;
        let p = PA0 + s * (PA1 + s * (PA2 + s * (PA3 + s * (PA4 + s * (PA5 + s * PA6)))));
        let q = 1.0 + s * (QA1 + s * (QA2 + s * (QA3 + s * (QA4 + s * (QA5 + s * QA6)))));
        y = ERX + p / q;
    } else if (a < 6.0) {
        y = 1.0 - erfc_tail(a);
    } else {
        y = 1.0;
    }
    return select(y, -y, x < 0.0);
}

fn gelu(v: f32) -> f32 {
    return 0.5 * v * (1.0 + erf(v * 0.70710678118654752));
}

@compute @workgroup_size(64)
fn gelu_in_place(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n4 = COLUMNS / 4u;
    let i = gid.x;
    let t = gid.y;
    if (i >= n4 || t >= step.num_tokens) { return; }
    let v = x[t * n4 + i];
    x[t * n4 + i] = vec4<f32>(gelu(v.x), gelu(v.y), gelu(v.z), gelu(v.w));
}
