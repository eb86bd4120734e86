//! The GGUF header parser: magic, version, metadata, tensor infos, and every
//! bound check, done once at open so that later reads cannot go wrong.
//!
//! Every count read from the file is checked against the bytes left before
//! anything is allocated for it, so a hostile header costs at most a small
//! multiple of the file's own size.

use std::collections::{BTreeMap, HashMap};

use super::{GgufTensorInfo, GgufValue};
use crate::formats::FormatError;
use crate::formats::ggml_type::GgmlType;

const MAGIC: &[u8; 4] = b"GGUF";
/// ggml's default when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// `GGML_MAX_DIMS`.
const MAX_DIMS: u32 = 4;
/// Arrays of arrays are legal but nothing real nests deeply; the cap bounds
/// recursion.
const MAX_ARRAY_DEPTH: u32 = 8;
/// Each value costs 32 bytes in memory however small in the file, so their
/// total is capped (at 128 MiB); the largest real vocabularies hold ~1.5M
/// values (tokens, scores, types, merges of 256k-token models).
const MAX_METADATA_VALUES: u64 = 1 << 22;

/// Everything the header says, checked.
pub struct Header {
    pub version: u32,
    pub metadata: BTreeMap<String, GgufValue>,
    pub tensors: Vec<GgufTensorInfo>,
    pub index: HashMap<String, usize>,
    pub alignment: u64,
    pub data_offset: u64,
}

fn invalid(msg: String) -> FormatError {
    FormatError::Invalid(msg)
}

/// Prefixes an error with where it happened.
fn context(err: FormatError, place: &str) -> FormatError {
    match err {
        FormatError::Invalid(msg) => FormatError::Invalid(format!("{place}: {msg}")),
        FormatError::Unsupported(msg) => FormatError::Unsupported(format!("{place}: {msg}")),
        other => other,
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn take(&mut self, len: u64, what: &str) -> Result<&'a [u8], FormatError> {
        let left = self.remaining();
        if len > left {
            return Err(invalid(format!(
                "file truncated: {what} needs {len} bytes at offset {}, only {left} remain",
                self.pos
            )));
        }
        let start = self.pos;
        // len <= left <= usize::MAX, so the cast is lossless.
        self.pos += len as usize;
        Ok(&self.bytes[start..self.pos])
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], FormatError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N as u64, what)?);
        Ok(out)
    }

    fn u32(&mut self, what: &str) -> Result<u32, FormatError> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64, FormatError> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// A length-prefixed byte string; the length is checked before use.
    fn bytes(&mut self, what: &str) -> Result<&'a [u8], FormatError> {
        let len = self.u64(what)?;
        let left = self.remaining();
        if len > left {
            return Err(invalid(format!(
                "{what}: string length {len} exceeds the {left} bytes left in the file"
            )));
        }
        self.take(len, what)
    }

    /// Keys and tensor names must be exact, so invalid UTF-8 is an error.
    fn utf8(&mut self, what: &str) -> Result<String, FormatError> {
        let raw = self.bytes(what)?;
        String::from_utf8(raw.to_vec()).map_err(|e| invalid(format!("{what} is not valid UTF-8: {e}")))
    }

    /// Checks that `count` items of at least `min_bytes` each can fit.
    fn check_count(&self, count: u64, min_bytes: u64, what: &str) -> Result<(), FormatError> {
        let left = self.remaining();
        match count.checked_mul(min_bytes) {
            Some(need) if need <= left => Ok(()),
            _ => Err(invalid(format!(
                "{what} {count} needs at least {min_bytes} bytes per item, \
                 but only {left} bytes are left in the file"
            ))),
        }
    }
}

/// Parses and checks the header; `source` names the file in errors.
pub fn parse(bytes: &[u8], source: &str) -> Result<Header, FormatError> {
    parse_header(bytes).map_err(|e| context(e, source))
}

fn parse_header(bytes: &[u8]) -> Result<Header, FormatError> {
    let mut cur = Cursor { bytes, pos: 0 };
    let magic: [u8; 4] = cur.array("magic")?;
    if &magic != MAGIC {
        return Err(invalid(format!("not a GGUF file: magic is {magic:02x?}, expected \"GGUF\"")));
    }
    let version = cur.u32("version")?;
    if version.swap_bytes() == 2 || version.swap_bytes() == 3 {
        return Err(FormatError::Unsupported("big-endian GGUF files are not supported".into()));
    }
    if version != 2 && version != 3 {
        return Err(FormatError::Unsupported(format!("version {version} (only versions 2 and 3 are read)")));
    }
    let tensor_count = cur.u64("tensor count")?;
    let metadata_count = cur.u64("metadata count")?;
    // Cheapest entries: 8 (key length) + 4 (type) + 1 (u8 value) bytes; a
    // tensor info: 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset).
    cur.check_count(metadata_count, 13, "metadata count")?;
    cur.check_count(tensor_count, 24, "tensor count")?;

    let mut metadata = BTreeMap::new();
    let mut budget = MAX_METADATA_VALUES;
    for i in 0..metadata_count {
        let key = cur.utf8(&format!("metadata key #{i}"))?;
        let place = format!("metadata `{key}`");
        let value_type = cur.u32("value type").map_err(|e| context(e, &place))?;
        let value = read_value(&mut cur, value_type, 0, &mut budget).map_err(|e| context(e, &place))?;
        if metadata.insert(key, value).is_some() {
            return Err(invalid(format!("{place} appears twice")));
        }
    }

    let alignment = alignment(&metadata)?;
    let mut tensors = Vec::with_capacity(tensor_count as usize);
    let mut index = HashMap::with_capacity(tensor_count as usize);
    for i in 0..tensor_count {
        let tensor = read_tensor_info(&mut cur, i)?;
        if index.insert(tensor.name.clone(), tensors.len()).is_some() {
            return Err(invalid(format!("tensor name `{}` appears twice", tensor.name)));
        }
        tensors.push(tensor);
    }

    let data_offset = (cur.pos as u64)
        .checked_next_multiple_of(alignment)
        .ok_or_else(|| invalid("data section offset overflows".into()))?;
    for tensor in &tensors {
        check_bounds(tensor, data_offset, alignment, bytes.len() as u64)?;
    }
    Ok(Header { version, metadata, tensors, index, alignment, data_offset })
}

/// Smallest encoding of one value of a type, or `None` for an unknown type.
fn min_value_bytes(value_type: u32) -> Option<u64> {
    Some(match value_type {
        0 | 1 | 7 => 1,   // u8, i8, bool
        2 | 3 => 2,       // u16, i16
        4..=6 => 4,       // u32, i32, f32
        10..=12 => 8,     // u64, i64, f64
        8 => 8,           // string: its length
        9 => 12,          // array: element type + count
        _ => return None, // unknown
    })
}

fn read_value(
    cur: &mut Cursor<'_>,
    value_type: u32,
    depth: u32,
    budget: &mut u64,
) -> Result<GgufValue, FormatError> {
    let value = match value_type {
        0 => GgufValue::U8(u8::from_le_bytes(cur.array("u8 value")?)),
        1 => GgufValue::I8(i8::from_le_bytes(cur.array("i8 value")?)),
        2 => GgufValue::U16(u16::from_le_bytes(cur.array("u16 value")?)),
        3 => GgufValue::I16(i16::from_le_bytes(cur.array("i16 value")?)),
        4 => GgufValue::U32(cur.u32("u32 value")?),
        5 => GgufValue::I32(i32::from_le_bytes(cur.array("i32 value")?)),
        6 => GgufValue::F32(f32::from_le_bytes(cur.array("f32 value")?)),
        7 => match cur.array::<1>("bool value")? {
            [0] => GgufValue::Bool(false),
            [1] => GgufValue::Bool(true),
            [b] => return Err(invalid(format!("bool value is byte {b}, not 0 or 1"))),
        },
        // Values are kept even when not UTF-8 (some vocabularies hold raw
        // bytes): a lossy token is better than refusing the whole model.
        8 => GgufValue::String(String::from_utf8_lossy(cur.bytes("string value")?).into_owned()),
        9 => read_array(cur, depth, budget)?,
        10 => GgufValue::U64(cur.u64("u64 value")?),
        11 => GgufValue::I64(i64::from_le_bytes(cur.array("i64 value")?)),
        12 => GgufValue::F64(f64::from_le_bytes(cur.array("f64 value")?)),
        other => return Err(invalid(format!("unknown metadata value type {other}"))),
    };
    Ok(value)
}

fn read_array(cur: &mut Cursor<'_>, depth: u32, budget: &mut u64) -> Result<GgufValue, FormatError> {
    if depth >= MAX_ARRAY_DEPTH {
        return Err(invalid(format!("arrays nested deeper than {MAX_ARRAY_DEPTH} levels")));
    }
    let elem_type = cur.u32("array element type")?;
    let min_bytes = min_value_bytes(elem_type)
        .ok_or_else(|| invalid(format!("unknown array element type {elem_type}")))?;
    let count = cur.u64("array count")?;
    cur.check_count(count, min_bytes, "array count")?;
    *budget = budget
        .checked_sub(count)
        .ok_or_else(|| invalid(format!("more than {MAX_METADATA_VALUES} metadata values in total")))?;
    // count * min_bytes <= bytes left, so this allocation is bounded.
    let mut items = Vec::with_capacity(count as usize);
    for _ in 0..count {
        items.push(read_value(cur, elem_type, depth + 1, budget)?);
    }
    Ok(GgufValue::Array(items))
}

fn alignment(metadata: &BTreeMap<String, GgufValue>) -> Result<u64, FormatError> {
    let Some(value) = metadata.get("general.alignment") else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    match value.as_u64() {
        Some(a) if a.is_power_of_two() => Ok(a),
        _ => Err(invalid(format!("general.alignment must be a power of two, got {}", value.summary()))),
    }
}

fn read_tensor_info(cur: &mut Cursor<'_>, i: u64) -> Result<GgufTensorInfo, FormatError> {
    let name = cur.utf8(&format!("name of tensor #{i}"))?;
    let place = format!("tensor `{name}`");
    let n_dims = cur.u32("dimension count").map_err(|e| context(e, &place))?;
    if n_dims > MAX_DIMS {
        return Err(invalid(format!("{place} has {n_dims} dimensions, at most {MAX_DIMS} are allowed")));
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for _ in 0..n_dims {
        let dim = cur.u64("dimension").map_err(|e| context(e, &place))?;
        // ggml holds dimensions in an int64_t.
        if dim > i64::MAX as u64 {
            return Err(invalid(format!("{place} has dimension {dim}, too large")));
        }
        dims.push(dim);
    }
    let type_id = cur.u32("tensor type").map_err(|e| context(e, &place))?;
    let tensor_type = GgmlType::from_id(type_id)
        .ok_or_else(|| FormatError::Unsupported(format!("{place} has unknown ggml type {type_id}")))?;
    let offset = cur.u64("data offset").map_err(|e| context(e, &place))?;

    let num_elements = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= i64::MAX as u64)
        .ok_or_else(|| invalid(format!("{place}: element count of {dims:?} overflows")))?;
    // Quantized blocks run along the innermost dimension, so it must hold
    // whole blocks (not just the total).
    let block_len = tensor_type.block_len();
    if dims.first().is_some_and(|d0| !d0.is_multiple_of(block_len)) {
        return Err(invalid(format!(
            "{place}: innermost dimension {} is not a multiple of the {tensor_type} block length {block_len}",
            dims[0]
        )));
    }
    let size_in_bytes = tensor_type.size_in_bytes(num_elements).ok_or_else(|| {
        invalid(format!(
            "{place}: {num_elements} elements are not whole {tensor_type} blocks, or their size overflows"
        ))
    })?;
    Ok(GgufTensorInfo { name, dims, tensor_type, offset, size_in_bytes })
}

fn check_bounds(
    tensor: &GgufTensorInfo,
    data_offset: u64,
    alignment: u64,
    file_len: u64,
) -> Result<(), FormatError> {
    let name = &tensor.name;
    if !tensor.offset.is_multiple_of(alignment) {
        return Err(invalid(format!(
            "tensor `{name}`: data offset {} is not a multiple of the alignment {alignment}",
            tensor.offset
        )));
    }
    let end =
        data_offset.checked_add(tensor.offset).and_then(|start| start.checked_add(tensor.size_in_bytes));
    match end {
        Some(end) if end <= file_len => Ok(()),
        _ => Err(invalid(format!(
            "tensor `{name}`: {} bytes at data offset {} (data section starts at byte \
             {data_offset}) lie outside the file of {file_len} bytes",
            tensor.size_in_bytes, tensor.offset
        ))),
    }
}
