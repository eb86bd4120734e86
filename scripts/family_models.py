"""Tiny random models of the Llama-layout families (qwen2, qwen3, llama3,
mistral, phi3) and their references: seeds without near ties, greedy ids
and logits, RoPE facts, and what llama.cpp's converter wrote. Part of
make_family_fixtures.py, whose docstring gives every decision."""

import math
import os
import shutil
import tempfile

import numpy as np

from family_gguf import (
    convert_f16_gguf,
    convert_to_gguf,
    copy_gguf,
    fake_quantize,
    gguf_arch,
    gguf_f32_values,
    gguf_scalars,
    load_gguf_values,
)

FAMILIES = ["qwen2", "qwen3", "llama3", "mistral", "phi3", "gemma3"]
NUM_NEW_TOKENS = 16
NUM_LOGIT_STEPS = 3
SEED = 1234
MIN_TOP2_GAP = 0.03  # no near ties among the greedy steps (seed search)
MAX_SEED_TRIES = 200


# Prompts of the model references: lengths from a few tokens to ~40, two of
# them longer than the mistral (8) and phi3 (12) sliding windows; prompt +
# 16 generated tokens stay <= 64 (phi3's original context: short factors).
PROMPTS = [
    "Hello",
    "The capital of France is",
    "Der Fuchs springt über den Hund; 12345 ist eine Zahl.",
    "def add(a, b):\n    return a + b\n# Привет, 世界! 3.14159 😀 and more words here",
]
MAX_SEQ_LEN_PHI3 = 64


# Tiny f16 model / wider q4_k model shapes.
SHAPES = {
    "f16": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16},
    "q4_k": {"hidden_size": 256, "intermediate_size": 256, "num_hidden_layers": 1,
             "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64},
}
QWEN3_HEAD_DIM_F16 = 32  # like real Qwen3, head_dim != hidden / heads


def make_config(family, spec, hf_tok, shape_name):
    from transformers import LlamaConfig, MistralConfig, Phi3Config, Qwen2Config, Qwen3Config

    shape = dict(SHAPES[shape_name])
    vocab_size = -(-len(hf_tok) // spec["vocab_multiple"]) * spec["vocab_multiple"]
    ids = {t: hf_tok.convert_tokens_to_ids(t) for t in [spec["config_bos"], spec["eos"], spec["pad"]] if t}
    common = dict(
        vocab_size=vocab_size,
        rms_norm_eps=1e-6,
        max_position_embeddings=256,
        bos_token_id=ids[spec["config_bos"]],
        eos_token_id=ids[spec["eos"]],
        pad_token_id=ids.get(spec["pad"]),
        hidden_act="silu",
        attention_dropout=0.0,
        **shape,
    )
    if family == "qwen2":
        del common["head_dim"]
        return Qwen2Config(tie_word_embeddings=True, rope_theta=1e6, use_sliding_window=False, **common)
    if family == "qwen3":
        if shape_name == "f16":
            common["head_dim"] = QWEN3_HEAD_DIM_F16
        return Qwen3Config(tie_word_embeddings=True, rope_theta=1e6, use_sliding_window=False, **common)
    if family == "llama3":
        del common["head_dim"]
        rope = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
        return LlamaConfig(tie_word_embeddings=False, rope_parameters=rope, **common)
    if family == "mistral":
        del common["head_dim"]
        return MistralConfig(tie_word_embeddings=False, rope_theta=10000.0, sliding_window=8, **common)
    if family == "phi3":
        half = common.pop("head_dim") // 2
        short = [round(1.0 + 0.25 * i, 4) for i in range(half)]
        long = [round(1.5 + 0.5 * i * 3.0 / max(half - 1, 1), 4) for i in range(half)]
        rope = {"rope_type": "longrope", "rope_theta": 10000.0, "short_factor": short, "long_factor": long,
                "original_max_position_embeddings": 64}
        return Phi3Config(tie_word_embeddings=False, rope_parameters=rope, original_max_position_embeddings=64,
                          sliding_window=12, resid_pdrop=0.0, embd_pdrop=0.0, **common)
    raise ValueError(family)


def randomize(model, seed):
    """Random weights with spread-out logits: matrices N(0, 1/fan_in) (q/k
    a bit sharper), embeddings N(0, 3/sqrt(hidden)) so logits spread over
    several units, norms around 1, biases nonzero."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    hidden = model.config.hidden_size
    gemma = model.config.model_type == "gemma3_text"
    for name, param in sorted(model.named_parameters()):
        shape = param.shape
        if gemma and name == "model.norm.weight":
            # Gemma ties the head to the embedding, which enters scaled by
            # sqrt(hidden): a small embedding keeps each token's own row
            # from dominating the residual (greedy would repeat the last
            # token); the final norm (1 + w, about 3) spreads the logits.
            value = 6.0 + 0.2 * torch.randn(shape, generator=gen)
        elif "norm" in name:
            # Gemma's RMSNorm scales by (1 + w): its w are centred on 0.
            value = (0.0 if gemma else 1.0) + 0.2 * torch.randn(shape, generator=gen)
        elif name.endswith("bias"):
            value = 0.5 * torch.randn(shape, generator=gen)
        elif "embed_tokens" in name or "lm_head" in name:
            value = ((0.25 if gemma else 3.0) / math.sqrt(hidden)) * torch.randn(shape, generator=gen)
        else:
            gain = 1.5 if any(k in name for k in ("q_proj", "k_proj", "qkv_proj")) else 1.0
            if any(k in name for k in ("o_proj", "down_proj")):
                gain = 2.0  # layer outputs outweigh the token's own embedding
            value = (gain / math.sqrt(shape[1])) * torch.randn(shape, generator=gen)
        with torch.no_grad():
            param.copy_(value)


def generation_config(spec, hf_tok, config):
    from transformers import GenerationConfig

    eos = [hf_tok.convert_tokens_to_ids(t) for t in spec["generation_eos"]]
    return GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=eos if len(eos) > 1 else eos[0],
        pad_token_id=config.pad_token_id,
    )


def f32_list(t):
    """Shortest decimal that reads back as the same float32."""
    return [float(str(np.float32(x))) for x in t.detach().float().numpy().reshape(-1)]


def greedy_reference(model, ids, family):
    """Cached greedy decoding (16 steps, EOS does not stop), checked against
    one uncached forward over prompt + generated tokens and generate()."""
    import torch
    from transformers import GenerationConfig

    with torch.no_grad():
        input_ids = torch.tensor([ids])
        out = model(input_ids=input_ids, use_cache=True)
        cache = out.past_key_values
        logits = [out.logits[0, -1]]
        generated = []
        for _ in range(NUM_NEW_TOKENS):
            next_id = int(torch.argmax(logits[-1]))
            generated.append(next_id)
            if len(generated) == NUM_NEW_TOKENS:
                break
            out = model(input_ids=torch.tensor([[next_id]]), past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            logits.append(out.logits[0, -1])
        full = model(input_ids=torch.tensor([ids + generated[:-1]]), use_cache=False).logits[0]
        uncached = full[len(ids) - 1:]
        assert torch.argmax(uncached, dim=-1).tolist() == generated, family
        assert torch.allclose(uncached, torch.stack(logits), atol=1e-4), family
        # generate() without any EOS (the model's generation_config would
        # stop, or with min_new_tokens mask, at its EOS ids).
        saved = model.generation_config
        model.generation_config = GenerationConfig()
        gen_config = GenerationConfig(do_sample=False, max_new_tokens=NUM_NEW_TOKENS,
                                      pad_token_id=model.config.pad_token_id or 0)
        from_generate = model.generate(input_ids, attention_mask=torch.ones_like(input_ids),
                                       generation_config=gen_config)[0, len(ids):].tolist()
        model.generation_config = saved
        assert from_generate == generated, (family, from_generate, generated)
    gaps = []
    for step_logits in logits:
        top2 = torch.topk(step_logits, 2).values
        gaps.append(float(str(np.float32(top2[0] - top2[1]))))
    return {
        "greedy": generated,
        "top2_gap": gaps,
        "logits_last_prompt": f32_list(logits[0]),
        "logits_steps": [f32_list(l) for l in logits[1:1 + NUM_LOGIT_STEPS]],
    }


def prompt_references(model, hf_tok, family):
    prompts = []
    for text in PROMPTS:
        ids = hf_tok.encode(text, add_special_tokens=True)
        if family == "phi3":
            assert len(ids) + NUM_NEW_TOKENS <= MAX_SEQ_LEN_PHI3
        prompts.append({"text": text, "ids": ids, **greedy_reference(model, ids, family)})
    return prompts


def rope_exponents(head_dim):
    """2i / head_dim for each rotated pair i, as transformers computes them:
    inv_freq = 1 / theta^exponent (before any scaling)."""
    import torch

    return torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim


def rope_facts(model, family):
    """What transformers' rotary embedding actually uses at these lengths."""
    import torch

    rotary = model.model.rotary_emb
    facts = {
        "inv_freq": f32_list(rotary.inv_freq),
        "attention_scaling": float(rotary.attention_scaling),
    }
    if family == "phi3":
        rope = model.config.rope_parameters
        head_dim = model.config.hidden_size // model.config.num_attention_heads
        base = rope["rope_theta"] * 1.0
        exponent = rope_exponents(head_dim)
        short = 1.0 / (torch.tensor(rope["short_factor"]) * base ** exponent)
        assert torch.allclose(rotary.inv_freq, short), "phi3 should use the short factors"
        facts["longrope_factor_used"] = "short_factor"
        facts["longrope_rule"] = (
            "transformers: long_factor when seq_len > original_max_position_embeddings (64), else "
            "short_factor; cos/sin times attention_scaling = sqrt(1 + ln(256/64) / ln(64)). "
            "llama.cpp: long factors when n_ctx > n_ctx_orig (64)."
        )
    return facts


def check_gguf_f16(family, fam_dir, model, hf_tok, extra_keys=()):
    """Checks what llama.cpp's converter wrote into model-f16.gguf.
    1. gguf-py reads it; with the llama Q/K permutation undone (unpermute),
       every tensor must equal the safetensors weight bit for bit.
    2. transformers' own GGUF loader (`gguf_file=`) reads it: same weights
       (it undoes the permutation itself), and logits within 1e-3 on a short
       prompt. Its config comes from the GGUF and misses what it does not
       read: llama3's rope_freqs (no rope scaling), Phi-3's longrope factors,
       sliding windows; where the config differs, the logits are compared
       with its weights in a model of our config (the differences are
       recorded). For qwen3 it cannot load at all: it ignores
       qwen3.attention.key_length (head_dim 32 != 64/4), the error is
       recorded."""
    import torch
    from transformers import AutoModelForCausalLM

    values = gguf_f32_values(os.path.join(fam_dir, "model-f16.gguf"))
    probe = type(model)(model.config)
    load_gguf_values(probe, values, gguf_arch(family))
    ours = dict(model.named_parameters())
    for name, param in probe.named_parameters():
        assert torch.equal(param.data, ours[name].data), (family, name)
    result = {"gguf_py_weights_equal": True}

    try:
        loaded = AutoModelForCausalLM.from_pretrained(fam_dir, gguf_file="model-f16.gguf", dtype=torch.float32)
    except Exception as e:  # noqa: BLE001 - recorded in the fixture
        result["transformers_gguf_loader_error"] = str(e).strip().split("\n")[-1][:300]
        return result
    for name, param in loaded.named_parameters():
        assert name in ours, (family, name)
        assert torch.equal(param.data, ours[name].data), (family, name)
    notes = []
    for key in ("rope_parameters", "sliding_window", "original_max_position_embeddings", "head_dim", *extra_keys):
        a, b = getattr(loaded.config, key, None), getattr(model.config, key, None)
        if a != b:
            notes.append(f"{key}: gguf loader {a!r}, ours {b!r}")
    if notes:
        weights = {n: p.data for n, p in loaded.named_parameters()}
        loaded = type(model)(model.config)
        loaded.load_state_dict(weights, strict=False)
    loaded.eval()
    ids = torch.tensor([hf_tok.encode("The capital of France is", add_special_tokens=True)])
    with torch.no_grad():
        diff = (loaded(ids).logits - model(ids).logits).abs().max().item()
    assert diff < 1e-3, (family, diff)
    result.update({"transformers_weights_equal": True, "max_logit_diff": float(str(np.float32(diff))),
                   "transformers_config_differences": notes})
    return result


def min_greedy_gap(model, hf_tok):
    """Smallest top-2 logit gap over the greedy steps of all PROMPTS."""
    import torch

    gap = math.inf
    with torch.no_grad():
        for text in PROMPTS:
            ids = hf_tok.encode(text, add_special_tokens=True)
            out = model(input_ids=torch.tensor([ids]), use_cache=True)
            for step in range(NUM_NEW_TOKENS):
                top2 = torch.topk(out.logits[0, -1], 2)
                gap = min(gap, float(top2.values[0] - top2.values[1]))
                if step + 1 < NUM_NEW_TOKENS:
                    out = model(input_ids=top2.indices[:1].view(1, 1), past_key_values=out.past_key_values,
                                use_cache=True)
    return gap


def random_model(config, hf_tok, base_seed, round_weights):
    """The first seed from base_seed whose greedy steps have no near tie
    (top-2 gap >= MIN_TOP2_GAP) on the weights as the reference will see
    them (round_weights: f16 rounding or Q4_K/Q8_0 round trip)."""
    import torch
    from transformers import AutoModelForCausalLM

    for seed in range(base_seed, base_seed + MAX_SEED_TRIES):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
        randomize(model, seed)
        probe = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
        probe.load_state_dict(model.state_dict())
        round_weights(probe)
        if min_greedy_gap(probe, hf_tok) >= MIN_TOP2_GAP:
            return model, seed
    raise RuntimeError(f"no seed in {MAX_SEED_TRIES} tries gives top-2 gaps >= {MIN_TOP2_GAP}")


def round_to_f16(model):
    import torch

    with torch.no_grad():
        for param in model.parameters():
            param.copy_(param.half().float())


def f16_checkpoint(family, spec, hf_tok, config, hf_dir, round_weights):
    """A random model of `config` (seeded as random_model says) rounded by
    round_weights and saved as float16 into hf_dir; returns it read back
    as float32, and its seed."""
    import torch
    from transformers import AutoModelForCausalLM

    model, seed = random_model(config, hf_tok, SEED + 1000 * FAMILIES.index(family), round_weights)
    round_weights(model)
    model.generation_config = generation_config(spec, hf_tok, config)
    model.half().save_pretrained(hf_dir)
    return AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval(), seed


def make_models(family, spec, hf_tok, hf_dir, fam_dir, llama_cpp):
    import gguf

    # f16 model: hf/ + model-f16.gguf
    config = make_config(family, spec, hf_tok, "f16")
    model, f16_seed = f16_checkpoint(family, spec, hf_tok, config, hf_dir, round_to_f16)
    extra_kv = {}
    if family == "mistral":
        # llama.cpp's converter does not write the window for Mistral (and
        # llama.cpp's llama arch does not apply one); we add the key.
        extra_kv[f"llama.attention.sliding_window"] = (config.sliding_window, gguf.GGUFValueType.UINT32)
    f16_gguf = convert_f16_gguf(llama_cpp, spec, hf_dir, fam_dir, extra_kv)
    gguf_check = check_gguf_f16(family, fam_dir, model, hf_tok)
    f16_prompts = prompt_references(model, hf_tok, family)
    f16_rope = rope_facts(model, family)

    # q4_k model: converted at f32 from a scratch hf dir, then requantized
    wide_config = make_config(family, spec, hf_tok, "q4_k")
    wide, q4_seed = random_model(wide_config, hf_tok, SEED + 500 + 1000 * FAMILIES.index(family), fake_quantize)
    wide.generation_config = generation_config(spec, hf_tok, wide_config)
    q4_gguf = os.path.join(fam_dir, "model-q4_k.gguf")
    with tempfile.TemporaryDirectory() as tmp:
        wide_dir = os.path.join(tmp, "hf")
        wide.save_pretrained(wide_dir)
        for name in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model"):
            if os.path.isfile(os.path.join(hf_dir, name)):
                shutil.copy(os.path.join(hf_dir, name), wide_dir)
        f32_gguf = os.path.join(tmp, "model-f32.gguf")
        convert_to_gguf(llama_cpp, spec, wide_dir, f32_gguf, "f32")
        values = copy_gguf(f32_gguf, q4_gguf, extra_kv, quantize=True)
    arch = gguf_arch(family)
    load_gguf_values(wide, values, arch)
    wide.eval()
    q4_prompts = prompt_references(wide, hf_tok, family)

    cfg = model.config
    return {
        "config": config_record(
            spec, arch, cfg, hf_tok,
            head_dim=getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads,
            sliding_window=getattr(cfg, "sliding_window", None) if family in ("mistral", "phi3") else None,
            attention_bias=family == "qwen2",
            tail={"rope_effective": f16_rope},
        ),
        "models": {
            "f16": {
                "files": ["hf", "model-f16.gguf"],
                "seed": f16_seed,
                "gguf_metadata": gguf_scalars(f16_gguf),
                "gguf_check": gguf_check,
                "prompts": f16_prompts,
            },
            "q4_k": {
                "files": ["model-q4_k.gguf"],
                "seed": q4_seed,
                "shape": {**SHAPES["q4_k"], "vocab_size": wide_config.vocab_size},
                "note": "2-D weights Q4_K, token_embd Q8_0, 1-D F32; reference on gguf-py-dequantized values",
                "rope_effective": rope_facts(wide, family),
                "gguf_metadata": gguf_scalars(q4_gguf),
                "prompts": q4_prompts,
            },
        },
    }


def config_record(spec, arch, cfg, hf_tok, head_dim, sliding_window, attention_bias, arch_keys=None, tail=None):
    """The fixture's "config": the model's shape and special ids, with
    arch_keys after the sliding window and tail at the end (JSON keys in
    the order a reader scans them)."""
    return {
        "architecture": spec["architecture"],
        "gguf_architecture": arch,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_key_value_heads,
        "head_dim": head_dim,
        "vocab_size": cfg.vocab_size,
        "tokenizer_len": len(hf_tok),
        "rms_norm_eps": cfg.rms_norm_eps,
        "max_position_embeddings": cfg.max_position_embeddings,
        "rope_parameters": cfg.rope_parameters,
        "sliding_window": sliding_window,
        **(arch_keys or {}),
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "attention_bias": attention_bias,
        "bos_token_id": cfg.bos_token_id,
        "eos_token_id": cfg.eos_token_id,
        "pad_token_id": cfg.pad_token_id,
        "generation_eos_token_ids": [hf_tok.convert_tokens_to_ids(t) for t in spec["generation_eos"]],
        **(tail or {}),
    }
