"""GGUF files of the tiny family models: llama.cpp's converter run with the
pre-tokenizer name pinned, our Q4_K encoder, the copy that adds keys or
requantizes, and reading tensors back into an HF model. Part of
make_family_fixtures.py, whose docstring gives every decision."""

import os
import subprocess
import sys
import tempfile

import numpy as np

# Runs llama.cpp's converter with the byte-level pre-tokenizer name pinned
# (argv: llama.cpp dir, pre name or "", hf dir, out file, outtype).
CONVERT_WRAPPER = r"""
import sys
llama_cpp, pre, hf_dir, out, outtype = sys.argv[1:6]
sys.path.insert(0, llama_cpp)
sys.path.insert(1, llama_cpp + "/gguf-py")
import conversion.base as base
if pre:
    base.TextModel.get_vocab_base_pre = lambda self, tokenizer: pre
sys.argv = ["convert_hf_to_gguf.py", hf_dir, "--outtype", outtype, "--outfile", out]
import convert_hf_to_gguf
convert_hf_to_gguf.main()
"""


def convert_to_gguf(llama_cpp, spec, hf_dir, out, outtype):
    env = dict(os.environ, NO_LOCAL_GGUF="1")
    subprocess.run(
        [sys.executable, "-c", CONVERT_WRAPPER, llama_cpp, spec.get("gguf_pre", ""), hf_dir, out, outtype],
        check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def encode_q4_k(w):
    """float32 [rows, cols] (cols % 256 == 0) -> uint8 [rows, cols/256*144]
    in ggml's block_q4_K layout: f16 d, f16 dmin, 12 bytes of 6-bit
    sub-block scales and mins, 128 bytes of 4-bit quants (sub-blocks 2i and
    2i+1 share 32 bytes: low then high nibble). Value = d*sc*q - dmin*m."""
    rows, cols = w.shape
    x = w.astype(np.float32).reshape(-1, 8, 32)  # [blocks, sub-blocks, 32]
    lo = np.minimum(x.min(axis=-1), 0.0)
    hi = x.max(axis=-1)
    scale = (hi - lo) / 15.0  # [blocks, 8]
    mins = -lo
    d = (scale.max(axis=-1) / 63.0).astype(np.float16)
    dmin = (mins.max(axis=-1) / 63.0).astype(np.float16)
    d32 = d.astype(np.float32)[:, None]
    dmin32 = dmin.astype(np.float32)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.where(d32 > 0, np.rint(scale / d32), 0).clip(0, 63).astype(np.uint8)
        mq = np.where(dmin32 > 0, np.ceil(mins / dmin32), 0).clip(0, 63).astype(np.uint8)
        eff_scale = (d32 * sc)[..., None]
        eff_min = (dmin32 * mq)[..., None]
        q = np.where(eff_scale > 0, np.rint((x + eff_min) / eff_scale), 0).clip(0, 15).astype(np.uint8)
    scales = np.zeros((x.shape[0], 12), dtype=np.uint8)
    for j in range(4):
        scales[:, j] = (sc[:, j] & 63) | ((sc[:, j + 4] >> 4) << 6)
        scales[:, j + 4] = (mq[:, j] & 63) | ((mq[:, j + 4] >> 4) << 6)
        scales[:, j + 8] = (sc[:, j + 4] & 0xF) | ((mq[:, j + 4] & 0xF) << 4)
    qs = (q[:, 0::2, :] | (q[:, 1::2, :] << 4)).reshape(-1, 128)
    blocks = np.concatenate(
        [d.view(np.uint8).reshape(-1, 2), dmin.view(np.uint8).reshape(-1, 2), scales, qs], axis=1
    )
    return blocks.reshape(rows, cols // 256 * 144)


def copy_gguf(src, dst, extra_kv, quantize):
    """Rewrites the GGUF `src` as `dst`: every key copied (plus extra_kv:
    {key: (value, GGUFValueType)}), every tensor as is or, with quantize,
    2-D weights Q4_K (our encoder) and token_embd Q8_0 (gguf-py), 1-D F32.
    Returns {name: float32 array} as gguf-py's dequantize reads dst."""
    import gguf

    reader = gguf.GGUFReader(src)
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(dst, arch)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        value = field.contents()
        if name == "general.file_type" and quantize:
            value = int(gguf.LlamaFileType.MOSTLY_Q4_K_M)
        sub_type = field.types[1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(name, value, field.types[0], sub_type=sub_type)
    for name, (value, vtype) in extra_kv.items():
        writer.add_key_value(name, value, vtype)
    values = {}
    for tensor in reader.tensors:
        data = np.array(tensor.data)
        if not quantize or data.ndim != 2:
            writer.add_tensor(tensor.name, data, raw_dtype=tensor.tensor_type)
            values[tensor.name] = data.astype(np.float32)
            continue
        data = data.astype(np.float32)
        if tensor.name == "token_embd.weight":
            qtype, packed, tol = gguf.GGMLQuantizationType.Q8_0, None, 0.01
            packed = gguf.quants.quantize(data, qtype)
        else:
            qtype, packed, tol = gguf.GGMLQuantizationType.Q4_K, encode_q4_k(data), 0.1
        back = gguf.quants.dequantize(packed, qtype)
        err = np.abs(back - data).max() / np.abs(data).max()
        assert back.shape == data.shape and err < tol, (tensor.name, err)
        writer.add_tensor(tensor.name, packed, raw_dtype=qtype)
        values[tensor.name] = back
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return values


def fake_quantize(model):
    """What copy_gguf(quantize=True) does to the weights, in HF space (a
    Q/K row permutation moves whole rows, so it commutes with row-wise
    quantization): used to pick a seed without converting."""
    import gguf
    import torch

    for name, param in model.named_parameters():
        if param.ndim != 2:
            continue
        w = param.detach().numpy().astype(np.float32)
        if "embed_tokens" in name:
            back = gguf.quants.dequantize(gguf.quants.quantize(w, gguf.GGMLQuantizationType.Q8_0),
                                          gguf.GGMLQuantizationType.Q8_0)
        else:
            back = gguf.quants.dequantize(encode_q4_k(w), gguf.GGMLQuantizationType.Q4_K)
        with torch.no_grad():
            param.copy_(torch.from_numpy(back))


def unpermute(w, n_head):
    """Inverse of convert_hf_to_gguf's LlamaModel.permute (rows of Q/K)."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def load_gguf_values(model, values, arch):
    """Puts GGUF tensors (float32, by GGUF name) into the HF model."""
    import gguf
    import torch

    cfg = model.config
    tmap = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], cfg.num_hidden_layers)
    state = {}
    for name, param in model.named_parameters():
        gguf_name = tmap.get_name(name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None and name == "lm_head.weight":
            gguf_name = "output.weight"
        key = gguf_name
        if key not in values and name == "lm_head.weight" and cfg.tie_word_embeddings:
            key = "token_embd.weight"
        w = values[key]
        if arch == "llama" and name.endswith("q_proj.weight"):
            w = unpermute(w, cfg.num_attention_heads)
        if arch == "llama" and name.endswith("k_proj.weight"):
            w = unpermute(w, cfg.num_key_value_heads)
        if arch == "gemma3" and key.endswith("norm.weight"):
            w = w - np.float32(1.0)  # the converter stored 1 + w (exact: see round_gemma3_to_f16)
        assert w.shape == tuple(param.shape), (name, w.shape, param.shape)
        state[name] = torch.from_numpy(np.ascontiguousarray(w))
    model.load_state_dict(state, strict=False)
    for name, param in model.named_parameters():
        assert torch.equal(param.data, state[name]), name


def gguf_f32_values(path):
    """{name: float32 array} of an unquantized GGUF's tensors."""
    import gguf

    return {t.name: np.array(t.data, dtype=np.float32) for t in gguf.GGUFReader(path).tensors}


def gguf_scalars(path):
    """Non-array metadata of a GGUF, for the record."""
    import gguf

    reader = gguf.GGUFReader(path)
    out = {}
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or field.types[0] == gguf.GGUFValueType.ARRAY:
            continue
        if name == "tokenizer.chat_template":
            continue
        value = field.contents()
        out[name] = float(str(np.float32(value))) if isinstance(value, float) else value
    out["tensors"] = {t.name: [t.tensor_type.name, [int(x) for x in t.shape]] for t in reader.tensors}
    return out


def convert_f16_gguf(llama_cpp, spec, hf_dir, fam_dir, extra_kv):
    """hf_dir converted by llama.cpp at f16 into fam_dir/model-f16.gguf,
    with extra_kv added (see copy_gguf); returns its path."""
    f16_gguf = os.path.join(fam_dir, "model-f16.gguf")
    with tempfile.TemporaryDirectory() as tmp:
        converted = os.path.join(tmp, "model-f16.gguf")
        convert_to_gguf(llama_cpp, spec, hf_dir, converted, "f16")
        copy_gguf(converted, f16_gguf, extra_kv, quantize=False)
    return f16_gguf


def gguf_arch(family):
    return {"qwen2": "qwen2", "qwen3": "qwen3", "llama3": "llama", "mistral": "llama", "phi3": "phi3",
            "gemma3": "gemma3"}[family]
