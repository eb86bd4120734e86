//! Our repacking of GGML quantized blocks, read back by the CPU twin of the
//! kernels (`model::dequantize`), against the `gguf` Python package's
//! dequantizer on the fixtures of scripts/make_quant_fixtures.py (random
//! blocks with extreme scales: zero, subnormal, 65504, negative, all-zero
//! and all-one codes). Exact: both compute each value with the same f32
//! operations (a scale times a small integer is exact in f32), so every
//! value must be bit for bit the same (0.0 and -0.0 count as equal).

use serde_json::Value;
use wgserve::formats::{GgmlType, TensorType};
use wgserve::model::dequantize::dequantize;
use wgserve::model::weights::pack_matrix;

/// The formats we load: every fixture of scripts/make_quant_fixtures.py.
const LOADED: [&str; 12] =
    ["Q4_0", "Q4_1", "Q8_0", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS"];

struct Fixture {
    tensor_type: TensorType,
    rows: usize,
    cols: usize,
    bytes: Vec<u8>,
    values: Vec<f32>,
}

fn load(name: &str) -> Fixture {
    let path = format!("{}/tests/fixtures/quants/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let json: Value = serde_json::from_str(&text).expect("fixture JSON");
    let id = (0..64).find(|&id| GgmlType::from_id(id).is_some_and(|t| t.name() == name)).expect("ggml type");
    let numbers = |key: &str| {
        json[key].as_array().expect(key).iter().map(|v| v.as_f64().expect(key)).collect::<Vec<_>>()
    };
    Fixture {
        tensor_type: GgmlType::from_id(id).and_then(|t| t.tensor_type()).expect("a loadable type"),
        rows: json["rows"].as_u64().expect("rows") as usize,
        cols: json["cols"].as_u64().expect("cols") as usize,
        bytes: numbers("bytes").into_iter().map(|b| b as u8).collect(),
        // An f32 printed as a double parses back exactly.
        values: numbers("values").into_iter().map(|v| v as f32).collect(),
    }
}

#[test]
fn repacked_blocks_dequantize_as_gguf_py_does() {
    for name in LOADED {
        let fixture = load(name);
        let packed = pack_matrix(name, fixture.tensor_type, &fixture.bytes, fixture.rows, fixture.cols)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = dequantize(&packed);
        assert_eq!(got.len(), fixture.values.len(), "{name}: length");
        let mut extremes = 0;
        for (i, (&g, &want)) in got.iter().zip(&fixture.values).enumerate() {
            assert!(
                g == want,
                "{name}: value {i} (row {}, column {}): got {g:e}, want {want:e}",
                i / fixture.cols,
                i % fixture.cols
            );
            extremes += usize::from(want.abs() > 60_000.0 || (want != 0.0 && want.abs() < 1e-6));
        }
        // The fixture really holds huge and tiny values, not only typical ones.
        assert!(extremes > 0, "{name}: no extreme values in the fixture");
    }
}

#[test]
fn a_changed_byte_changes_the_values() {
    // The comparison above can fail: one flipped code bit in a K-quant
    // block must show up in the dequantized values.
    let fixture = load("Q6_K");
    let mut bytes = fixture.bytes.clone();
    bytes[5] ^= 0x10;
    let packed = pack_matrix("q6_k", fixture.tensor_type, &bytes, fixture.rows, fixture.cols).expect("packs");
    assert_ne!(dequantize(&packed), fixture.values);
}

#[test]
fn a_changed_iq4_scale_bit_changes_the_values() {
    // IQ4_XS's 6-bit scales are split over two fields: flipping a high bit
    // (scales_h, byte 2) or a low one (scales_l, byte 4) must each show.
    let fixture = load("IQ4_XS");
    for (at, bit) in [(2, 0x01), (4, 0x10)] {
        let mut bytes = fixture.bytes.clone();
        bytes[at] ^= bit;
        let packed =
            pack_matrix("iq4_xs", fixture.tensor_type, &bytes, fixture.rows, fixture.cols).expect("packs");
        assert_ne!(dequantize(&packed), fixture.values, "byte {at} bit {bit:#x}");
    }
}

#[test]
fn k_quant_rows_must_be_whole_super_blocks() {
    // 256 weights fill one Q4_K block, but as 2 rows of 128 no row is whole.
    let bytes = vec![0u8; 144];
    let err =
        pack_matrix("w", TensorType::Q4_K, &bytes, 2, 128).expect_err("rows of 128 are not whole blocks");
    assert!(err.to_string().contains("multiple of 256"), "{err}");
    assert!(pack_matrix("w", TensorType::Q4_K, &bytes, 1, 256).is_ok());
}
