//! A Hugging Face checkpoint without the GPU: `config.json` (as a Llama and
//! as a BERT config) and the safetensors file, every tensor read and
//! repacked, and the tensors a Llama of that config asks for looked up
//! with their shapes.
//!
//! One input holds both files: a little-endian u32 length, that many
//! bytes of config.json, then the safetensors file.
//!
//! Allocation: the header's JSON becomes a map of tensor infos (name,
//! shape, offsets: ~150 bytes for an entry of ~50 bytes of JSON), and a
//! tensor is repacked into a copy of its bytes, so 32 bytes per input byte.

use std::path::PathBuf;

use wgserve::formats::TensorType;
use wgserve::formats::safetensors::SafetensorsFile;
use wgserve::model::bert_config::BertConfig;
use wgserve::model::config::DecoderConfig;
use wgserve::model::source::WeightSource;
use wgserve::model::weights::{pack_matrix, to_f32_vec};

use super::super::Target;
use super::{brief, outcome};

pub fn target() -> Target {
    Target {
        name: "safetensors",
        seeds,
        prepare: || {},
        run,
        dictionary: &[
            b"\"dtype\"",
            b"\"F32\"",
            b"\"BF16\"",
            b"\"shape\"",
            b"\"data_offsets\"",
            b"\"__metadata__\"",
            b"\"hidden_size\"",
            b"\"num_attention_heads\"",
            b"\"vocab_size\"",
            b"[0, 0]",
            b"18446744073709551615",
            b"-1",
            b"1e308",
        ],
        max_len: 64 << 10,
        alloc_per_input_byte: 32,
    }
}

const LLAMA_CONFIG: &str = r#"{"architectures": ["LlamaForCausalLM"], "vocab_size": 8, "hidden_size": 32,
 "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
 "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 64, "tie_word_embeddings": true}"#;

const BERT_CONFIG: &str = r#"{"model_type": "bert", "vocab_size": 8, "hidden_size": 32, "intermediate_size": 64,
 "num_hidden_layers": 1, "num_attention_heads": 2, "hidden_act": "gelu", "layer_norm_eps": 1e-12,
 "max_position_embeddings": 16, "type_vocab_size": 2}"#;

/// A safetensors file of `(name, dtype, shape)` tensors with patterned bytes.
fn safetensors_bytes(tensors: &[(&str, &str, &[usize])]) -> Vec<u8> {
    let mut header = Vec::new();
    let mut data = Vec::new();
    for (name, dtype, shape) in tensors {
        let width = if *dtype == "F32" { 4 } else { 2 };
        let len = shape.iter().product::<usize>() * width;
        let start = data.len();
        data.extend((0..len).map(|i| (i % 61) as u8));
        header.push(format!(
            "\"{name}\": {{\"dtype\": \"{dtype}\", \"shape\": {shape:?}, \"data_offsets\": [{start}, {}]}}",
            data.len()
        ));
    }
    let header = format!("{{\"__metadata__\": {{\"format\": \"pt\"}}, {}}}", header.join(", "));
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header.as_bytes());
    out.extend(data);
    out
}

fn with_config(config: &str, file: Vec<u8>) -> Vec<u8> {
    let mut input = (config.len() as u32).to_le_bytes().to_vec();
    input.extend(config.as_bytes());
    input.extend(file);
    input
}

fn seeds() -> Vec<Vec<u8>> {
    let llama = safetensors_bytes(&[
        ("model.embed_tokens.weight", "F16", &[8, 32]),
        ("model.norm.weight", "F32", &[32]),
        ("model.layers.0.input_layernorm.weight", "BF16", &[32]),
        ("model.layers.0.self_attn.q_proj.weight", "F16", &[32, 32]),
        ("model.layers.0.self_attn.k_proj.weight", "F32", &[16, 32]),
    ]);
    let bert = safetensors_bytes(&[("embeddings.word_embeddings.weight", "F32", &[8, 32])]);
    vec![with_config(LLAMA_CONFIG, llama), with_config(BERT_CONFIG, bert)]
}

fn run(input: &[u8]) -> Result<String, String> {
    let (config_len, rest) = match input.split_first_chunk::<4>() {
        Some((len, rest)) => (u32::from_le_bytes(*len) as usize, rest),
        None => (0, input),
    };
    let (config, file) = rest.split_at(config_len.min(rest.len()));
    let config = String::from_utf8_lossy(config);
    let llama = DecoderConfig::from_hf_json(&config);
    let mut outcomes = vec![outcome(&llama), outcome(&BertConfig::from_hf_json(&config))];
    let file = match SafetensorsFile::from_bytes(file.to_vec()) {
        Ok(file) => file,
        Err(e) => {
            outcomes.push(brief(&e.to_string()));
            return Ok(outcomes.join("|"));
        }
    };
    for name in file.tensor_names() {
        let tensor = match file.tensor(name) {
            Ok(tensor) => tensor,
            Err(e) => {
                outcomes.push(brief(&e.to_string()));
                continue;
            }
        };
        let result = match tensor.shape.as_slice() {
            [_] => to_f32_vec(name, tensor.tensor_type, tensor.data).map(|_| ()),
            [rows, cols] => pack_matrix(name, tensor.tensor_type, tensor.data, *rows, *cols).map(|_| ()),
            _ => Ok(()),
        };
        outcomes.push(outcome(&result));
    }
    if let Ok(config) = llama {
        let source = WeightSource::Safetensors { dir: PathBuf::new(), shards: vec![file] };
        let (h, v) = (config.hidden_size, config.vocab_size);
        let mut wanted =
            vec![("token_embd.weight".to_string(), vec![v, h]), ("output_norm.weight".into(), vec![h])];
        // A hostile config may claim millions of layers: a few show the lookups.
        for layer in 0..config.num_layers.min(2) {
            wanted.push((format!("blk.{layer}.attn_norm.weight"), vec![h]));
            let q_rows = config.num_heads.saturating_mul(config.head_dim);
            let kv_rows = config.num_kv_heads.saturating_mul(config.head_dim);
            wanted.push((format!("blk.{layer}.attn_q.weight"), vec![q_rows, h]));
            wanted.push((format!("blk.{layer}.attn_k.weight"), vec![kv_rows, h]));
        }
        for (name, shape) in wanted {
            let found = source.require(&name, &shape);
            // The crate checks that each tensor's bytes match its shape.
            let width = |t: TensorType| -> usize { if t == TensorType::F32 { 4 } else { 2 } };
            if let Ok(raw) = &found
                && Some(raw.data.len())
                    != shape.iter().try_fold(width(raw.tensor_type), |n, &d| n.checked_mul(d))
            {
                return Err(format!("`{name}`: {} bytes for shape {shape:?}", raw.data.len()));
            }
            outcomes.push(outcome(&found));
        }
    }
    Ok(outcomes.join("|"))
}
