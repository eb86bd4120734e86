//! GGUF files: the reader, then what the loader reads from a file without
//! the GPU (the Llama config, the BPE or SentencePiece vocabulary and the
//! tokenizer built from it, the chat template with its probe, every
//! tensor's bytes and their repacking).
//!
//! Allocation: a metadata value costs 32 bytes in memory however small in
//! the file (one byte for a u8), and the tokenizer built from a vocabulary
//! holds each token a few times over (vocabulary, reverse map, merges), so
//! 64 bytes per input byte.

use wgserve::formats::gguf::{GgufFile, GgufValue};
use wgserve::formats::{GgmlType, TensorType};
use wgserve::model::config::DecoderConfig;
use wgserve::model::vocab::{chat_template_from_gguf, vocab_from_gguf};
use wgserve::model::weights::{pack_matrix, to_f32_vec};
use wgserve::text::Tokenizer;

use super::super::Target;
use super::{brief, outcome};

#[path = "../../common/gguf_writer.rs"]
mod gguf_writer;
use gguf_writer::{TestTensor, build_gguf};

pub fn target() -> Target {
    Target {
        name: "gguf",
        seeds,
        prepare: || {},
        run,
        dictionary: &[
            b"GGUF",
            b"general.alignment",
            b"general.architecture",
            b"llama",
            b"tokenizer.ggml.tokens",
            b"tokenizer.ggml.merges",
            b"tokenizer.ggml.scores",
            b"<0x",
            b"tokenizer.chat_template",
            b"{% for m in messages %}",
            b"{{ m.content }}",
            b"{% endfor %}",
        ],
        max_len: 64 << 10,
        alloc_per_input_byte: 64,
    }
}

/// A tiny Llama: 64 byte tokens and a few merges, a chat template, and
/// tensors of each stored type (F32, F16, Q8_0, Q4_0, Q4_1).
fn seeds() -> Vec<Vec<u8>> {
    use GgufValue as V;
    let tokens: Vec<V> = (0..64u8).map(|b| V::String(((b'0' + b % 40) as char).to_string())).collect();
    let mut tokens = dedup(tokens);
    tokens.push(V::String("<|im_end|>".into()));
    let num_tokens = tokens.len();
    let metadata = vec![
        ("general.architecture", V::String("llama".into())),
        ("llama.embedding_length", V::U32(32)),
        ("llama.feed_forward_length", V::U32(64)),
        ("llama.block_count", V::U32(1)),
        ("llama.attention.head_count", V::U32(2)),
        ("llama.attention.head_count_kv", V::U32(1)),
        ("llama.attention.layer_norm_rms_epsilon", V::F32(1e-5)),
        ("llama.context_length", V::U32(128)),
        ("tokenizer.ggml.model", V::String("gpt2".into())),
        ("tokenizer.ggml.pre", V::String("smollm".into())),
        ("tokenizer.ggml.tokens", V::Array(tokens)),
        (
            "tokenizer.ggml.token_type",
            V::Array((0..num_tokens).map(|i| V::I32(if i + 1 == num_tokens { 3 } else { 1 })).collect()),
        ),
        ("tokenizer.ggml.merges", V::Array(vec![V::String("0 1".into()), V::String("2 3".into())])),
        ("tokenizer.ggml.eos_token_id", V::U32(num_tokens as u32 - 1)),
        (
            "tokenizer.chat_template",
            V::String(
                "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{{ eos_token }}{% endfor %}"
                    .into(),
            ),
        ),
    ];
    // ggml type ids: 0 F32, 1 F16, 2 Q4_0, 3 Q4_1, 8 Q8_0.
    let tensor = |name, dims: Vec<u64>, type_id: u32| {
        let elements: u64 = dims.iter().product();
        let size = GgmlType::from_id(type_id).and_then(|t| t.size_in_bytes(elements)).unwrap_or(0) as usize;
        TestTensor { name, dims, type_id, data: (0..size).map(|i| (i * 7) as u8).collect() }
    };
    let tensors = vec![
        tensor("token_embd.weight", vec![32, 4], 8),
        tensor("output_norm.weight", vec![32], 0),
        tensor("blk.0.attn_norm.weight", vec![32], 1),
        tensor("blk.0.attn_q.weight", vec![32, 2], 2),
        tensor("blk.0.ffn_up.weight", vec![32, 2], 3),
    ];
    let full = build_gguf(3, &metadata, &tensors, 32);
    let minimal = build_gguf(2, &metadata[..1], &[], 32);
    vec![full, minimal, sentencepiece_seed()]
}

/// A Gemma-style SentencePiece vocabulary (`tokenizer.ggml.model = llama`):
/// controls, the 256 byte tokens, a few pieces with scores; no tensors.
fn sentencepiece_seed() -> Vec<u8> {
    use GgufValue as V;
    let mut tokens: Vec<String> =
        ["<pad>", "<eos>", "<bos>", "<unk>", "<|im_end|>"].map(String::from).to_vec();
    let mut types = vec![3; tokens.len()];
    tokens.extend((0..=255u8).map(|b| format!("<0x{b:02X}>")));
    types.extend([6; 256]);
    for piece in ["▁", "  ", "h", "e", "l", "o", "he", "ll", "hell", "hello", "▁w", "or", "ld"] {
        tokens.push(piece.into());
        types.push(if piece == "  " { 4 } else { 1 });
    }
    let scores = (0..tokens.len()).map(|i| V::F32(-(i as f32))).collect();
    let metadata = vec![
        ("general.architecture", V::String("gemma3".into())),
        ("tokenizer.ggml.model", V::String("llama".into())),
        ("tokenizer.ggml.tokens", V::Array(tokens.into_iter().map(V::String).collect())),
        ("tokenizer.ggml.scores", V::Array(scores)),
        ("tokenizer.ggml.token_type", V::Array(types.into_iter().map(V::I32).collect())),
        ("tokenizer.ggml.bos_token_id", V::U32(2)),
        ("tokenizer.ggml.eos_token_id", V::U32(1)),
        ("tokenizer.ggml.unknown_token_id", V::U32(3)),
        ("tokenizer.ggml.add_bos_token", V::Bool(true)),
    ];
    build_gguf(3, &metadata, &[], 32)
}

fn dedup(tokens: Vec<GgufValue>) -> Vec<GgufValue> {
    let mut seen = std::collections::HashSet::new();
    tokens.into_iter().filter(|t| seen.insert(t.as_str().map(str::to_string))).collect()
}

fn run(input: &[u8]) -> Result<String, String> {
    let gguf = match GgufFile::from_bytes(input.to_vec()) {
        Ok(gguf) => gguf,
        Err(e) => return Ok(brief(&e.to_string())),
    };
    let mut outcomes = vec![outcome(&DecoderConfig::from_gguf(&gguf))];
    match vocab_from_gguf(&gguf) {
        Ok(vocab) => match Tokenizer::from_vocab(vocab) {
            Ok(tokenizer) => match tokenizer.encode("hello <|im_end|> world 123", true) {
                Ok(ids) => outcomes.push(outcome(&tokenizer.decode(&ids, false))),
                Err(e) => outcomes.push(brief(&e.to_string())),
            },
            Err(e) => outcomes.push(brief(&e.to_string())),
        },
        Err(e) => outcomes.push(brief(&e.to_string())),
    }
    outcomes.push(outcome(&chat_template_from_gguf(&gguf)));
    for info in &gguf.tensors {
        let data = gguf.tensor_data(info);
        if data.len() as u64 != info.size_in_bytes {
            return Err(format!(
                "tensor `{}`: {} bytes, header says {}",
                info.name,
                data.len(),
                info.size_in_bytes
            ));
        }
        let Ok(tensor_type) = info.supported_type() else { continue };
        let result = match (tensor_type, info.dims.as_slice()) {
            (TensorType::F32 | TensorType::F16 | TensorType::BF16, [_]) => {
                to_f32_vec(&info.name, tensor_type, data).map(|_| ())
            }
            (_, [cols, rows]) => {
                pack_matrix(&info.name, tensor_type, data, *rows as usize, *cols as usize).map(|_| ())
            }
            _ => Ok(()),
        };
        outcomes.push(outcome(&result));
    }
    Ok(outcomes.join("|"))
}
