//! A small GGUF writer for hand-made (also broken) files: the format tests
//! and the fuzz harness's seed corpus build their files with it.
#![allow(dead_code)]

use wgserve::formats::gguf::GgufValue;

/// Little-endian byte builder for hand-made (also broken) GGUF files.
#[derive(Default)]
pub struct Raw(pub Vec<u8>);

impl Raw {
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend(v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend(v.to_le_bytes());
        self
    }
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64);
        self.0.extend(s.as_bytes());
        self
    }
    pub fn header(version: u32, n_tensors: u64, n_kv: u64) -> Raw {
        let mut raw = Raw(b"GGUF".to_vec());
        raw.u32(version).u64(n_tensors).u64(n_kv);
        raw
    }
    pub fn pad_to(&mut self, alignment: usize) -> &mut Self {
        while !self.0.len().is_multiple_of(alignment) {
            self.0.push(0);
        }
        self
    }
    pub fn tensor_info(&mut self, name: &str, dims: &[u64], type_id: u32, offset: u64) -> &mut Self {
        self.str(name).u32(dims.len() as u32);
        for &d in dims {
            self.u64(d);
        }
        self.u32(type_id).u64(offset)
    }
}

pub fn value_type(v: &GgufValue) -> u32 {
    match v {
        GgufValue::U8(_) => 0,
        GgufValue::I8(_) => 1,
        GgufValue::U16(_) => 2,
        GgufValue::I16(_) => 3,
        GgufValue::U32(_) => 4,
        GgufValue::I32(_) => 5,
        GgufValue::F32(_) => 6,
        GgufValue::Bool(_) => 7,
        GgufValue::String(_) => 8,
        GgufValue::Array(_) => 9,
        GgufValue::U64(_) => 10,
        GgufValue::I64(_) => 11,
        GgufValue::F64(_) => 12,
    }
}

pub fn put_value(raw: &mut Raw, v: &GgufValue) {
    match v {
        GgufValue::U8(x) => raw.0.extend(x.to_le_bytes()),
        GgufValue::I8(x) => raw.0.extend(x.to_le_bytes()),
        GgufValue::U16(x) => raw.0.extend(x.to_le_bytes()),
        GgufValue::I16(x) => raw.0.extend(x.to_le_bytes()),
        GgufValue::U32(x) => raw.0.extend(x.to_le_bytes()),
        GgufValue::I32(x) => raw.0.extend(x.to_le_bytes()),
        GgufValue::U64(x) => raw.0.extend(x.to_le_bytes()),
        GgufValue::I64(x) => raw.0.extend(x.to_le_bytes()),
        GgufValue::F32(x) => raw.0.extend(x.to_le_bytes()),
        GgufValue::F64(x) => raw.0.extend(x.to_le_bytes()),
        GgufValue::Bool(x) => raw.0.push(u8::from(*x)),
        GgufValue::String(s) => {
            raw.str(s);
        }
        GgufValue::Array(items) => {
            // An empty array still needs an element type; u8 will do.
            raw.u32(items.first().map_or(0, value_type));
            raw.u64(items.len() as u64);
            for item in items {
                put_value(raw, item);
            }
        }
    }
}

pub struct TestTensor {
    pub name: &'static str,
    pub dims: Vec<u64>,
    pub type_id: u32,
    pub data: Vec<u8>,
}

/// A valid GGUF file; the last tensor's data ends the file, so cutting any
/// byte off must fail.
pub fn build_gguf(
    version: u32,
    metadata: &[(&str, GgufValue)],
    tensors: &[TestTensor],
    alignment: usize,
) -> Vec<u8> {
    let mut raw = Raw::header(version, tensors.len() as u64, metadata.len() as u64);
    for (key, value) in metadata {
        raw.str(key).u32(value_type(value));
        put_value(&mut raw, value);
    }
    let mut offset = 0u64;
    for t in tensors {
        raw.tensor_info(t.name, &t.dims, t.type_id, offset);
        offset = (offset + t.data.len() as u64).next_multiple_of(alignment as u64);
    }
    for t in tensors {
        raw.pad_to(alignment);
        raw.0.extend(&t.data);
    }
    raw.0
}
