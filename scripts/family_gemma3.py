"""The tiny Gemma 3 (GGUF only): linear RoPE scaling on the global layer,
the sliding window, and variants the reference must tell apart. Part of
make_family_fixtures.py, whose docstring (its gemma3 part) gives every
decision."""

import json
import math
import os

import numpy as np

from family_gguf import convert_f16_gguf, gguf_arch, gguf_f32_values, gguf_scalars, load_gguf_values
from family_models import (
    NUM_LOGIT_STEPS,
    check_gguf_f16,
    config_record,
    f16_checkpoint,
    f32_list,
    prompt_references,
    rope_exponents,
)

# The tiny Gemma 3: 6 layers so that layer 5 is the one global layer of
# transformers' default pattern (every 6th), heads wider than hidden / heads.
GEMMA3_SHAPE = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 6,
                "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32}
GEMMA3_ROPE = {
    # Gemma 3 4B+: linear factor 8 on the global layers only.
    "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1_000_000.0},
    "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
}
GEMMA3_SLIDING_WINDOW = 8
MIN_VARIANT_LOGIT_DIFF = 0.05  # the test must be able to tell each variant from the reference


def make_gemma3_config(spec, hf_tok, rope=None, **overrides):
    import copy

    from transformers import Gemma3TextConfig

    ids = {t: hf_tok.convert_tokens_to_ids(t) for t in (spec["bos"], spec["eos"], spec["pad"])}
    args = dict(
        vocab_size=len(hf_tok),
        rms_norm_eps=1e-6,
        max_position_embeddings=256,
        bos_token_id=ids[spec["bos"]],
        eos_token_id=ids[spec["eos"]],
        pad_token_id=ids[spec["pad"]],
        hidden_activation="gelu_pytorch_tanh",
        query_pre_attn_scalar=GEMMA3_SHAPE["head_dim"],
        final_logit_softcapping=None,
        attn_logit_softcapping=None,
        sliding_window=GEMMA3_SLIDING_WINDOW,
        rope_parameters=copy.deepcopy(rope or GEMMA3_ROPE),
        tie_word_embeddings=True,
        attention_dropout=0.0,
        **GEMMA3_SHAPE,
    )
    args.update(overrides)
    config = Gemma3TextConfig(**args)
    config.architectures = [spec["architecture"]]
    return config


def round_gemma3_to_f16(model):
    """f16 rounding such that the GGUF holds exactly these weights: the
    converter adds Gemma's 1 to each norm weight in float16, so 1 + w is
    kept in [0.5, 4) and rounded to f16 first; w = (1 + w) - 1 is then an
    f16 value too, and f16(w) + 1 is exact."""
    import torch

    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                scale = (1.0 + param).clamp(0.5, 7.99).half().float()
                param.copy_(scale - 1.0)
                assert torch.equal(param.half().float() + 1.0, scale), name
            else:
                param.copy_(param.half().float())


def gemma3_rope_facts(model):
    """What transformers' rotary embedding uses per layer type."""
    import torch

    rotary = model.model.rotary_emb
    cfg = model.config
    facts = {
        "layer_types": list(cfg.layer_types),
        "global_layers": [i for i, t in enumerate(cfg.layer_types) if t == "full_attention"],
        "inv_freq_global": f32_list(rotary.full_attention_inv_freq),
        "inv_freq_local": f32_list(rotary.sliding_attention_inv_freq),
        "attention_scaling_global": float(rotary.full_attention_attention_scaling),
        "attention_scaling_local": float(rotary.sliding_attention_attention_scaling),
        "sliding_window": cfg.sliding_window,
        "rule": (
            "global (full_attention) layers: inv_freq = theta_global^(-2i/d) / factor (linear), "
            "no window; local (sliding_attention) layers: inv_freq = theta_local^(-2i/d), unscaled, "
            "keys with q - k >= sliding_window masked (a query sees itself and the window - 1 before it); "
            "attention scores scaled by query_pre_attn_scalar^-0.5; embeddings times sqrt(hidden)"
        ),
    }
    exponent = rope_exponents(cfg.head_dim)
    full, local = GEMMA3_ROPE["full_attention"], GEMMA3_ROPE["sliding_attention"]
    assert torch.equal(rotary.full_attention_inv_freq, 1.0 / (full["rope_theta"] ** exponent) / full["factor"])
    assert torch.equal(rotary.sliding_attention_inv_freq, 1.0 / (local["rope_theta"] ** exponent))
    return facts


def gemma3_variants(spec, hf_tok):
    """Configs that differ from the reference in one way a wrong
    implementation could: each must move the logits by more than
    MIN_VARIANT_LOGIT_DIFF somewhere, so the Rust test can tell."""
    import copy

    no_scaling = copy.deepcopy(GEMMA3_ROPE)
    no_scaling["full_attention"] = {"rope_type": "default", "rope_theta": GEMMA3_ROPE["full_attention"]["rope_theta"]}
    scaled_everywhere = copy.deepcopy(GEMMA3_ROPE)
    scaled_everywhere["sliding_attention"] = {"rope_type": "linear", "factor": GEMMA3_ROPE["full_attention"]["factor"],
                                              "rope_theta": GEMMA3_ROPE["sliding_attention"]["rope_theta"]}
    layers = GEMMA3_SHAPE["num_hidden_layers"]
    return {
        "without_rope_scaling": make_gemma3_config(spec, hf_tok, rope=no_scaling),
        "rope_scaling_on_all_layers": make_gemma3_config(spec, hf_tok, rope=scaled_everywhere),
        "without_sliding_window": make_gemma3_config(spec, hf_tok, sliding_window=256),
        "all_layers_sliding": make_gemma3_config(spec, hf_tok, layer_types=["sliding_attention"] * layers),
    }


def variant_logit_diffs(model, prompts, variants):
    """Largest |logit difference| between the reference and each variant
    (same weights) over the recorded positions of every prompt (last prompt
    position and the NUM_LOGIT_STEPS decode steps, teacher-forced with the
    reference's greedy tokens)."""
    import torch
    from transformers import AutoModelForCausalLM

    def recorded_logits(m, prompt):
        ids = prompt["ids"] + prompt["greedy"][:NUM_LOGIT_STEPS]
        with torch.no_grad():
            out = m(input_ids=torch.tensor([ids]), use_cache=False).logits[0]
        return out[len(prompt["ids"]) - 1:]

    reference = [recorded_logits(model, p) for p in prompts]
    for prompt, logits in zip(prompts, reference):
        recorded = torch.tensor([prompt["logits_last_prompt"]] + prompt["logits_steps"])
        assert torch.allclose(logits, recorded, atol=1e-4)
    out = {}
    for name, config in variants.items():
        variant = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
        variant.load_state_dict(model.state_dict())
        per_prompt = [float(str(np.float32((recorded_logits(variant, p) - r).abs().max())))
                      for p, r in zip(prompts, reference)]
        assert max(per_prompt) > MIN_VARIANT_LOGIT_DIFF, (name, per_prompt)
        out[name] = {"max_abs_logit_diff": max(per_prompt), "per_prompt": per_prompt}
    return out


def make_gemma3_models(family, spec, hf_tok, hf_dir, fam_dir, llama_cpp):
    """The tiny Gemma 3: a float16 checkpoint in the scratch hf_dir,
    converted by llama.cpp to model-f16.gguf (the only committed model
    file), and the reference of transformers' Gemma3ForCausalLM on the
    GGUF's weights (equal to the checkpoint's bit for bit, asserted)."""
    import torch
    from transformers import AutoModelForCausalLM

    config = make_gemma3_config(spec, hf_tok)
    checkpoint, seed = f16_checkpoint(family, spec, hf_tok, config, hf_dir, round_gemma3_to_f16)
    with open(os.path.join(hf_dir, "config.json"), encoding="utf-8") as f:
        saved_config = json.load(f)
    f16_gguf = convert_f16_gguf(llama_cpp, spec, hf_dir, fam_dir, {})
    gguf_check = check_gguf_f16(family, fam_dir, checkpoint, hf_tok,
                                extra_keys=("layer_types", "query_pre_attn_scalar", "final_logit_softcapping"))

    # The reference runs on the GGUF's tensors (norms minus the stored 1).
    values = gguf_f32_values(f16_gguf)
    ref = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    load_gguf_values(ref, values, gguf_arch(family))
    ref.generation_config = checkpoint.generation_config
    prompts = prompt_references(ref, hf_tok, family)
    assert max(len(p["ids"]) for p in prompts) > 4 * GEMMA3_SLIDING_WINDOW
    metadata = gguf_scalars(f16_gguf)
    arch = gguf_arch(family)
    scaling_keys = {k: metadata.get(f"{arch}.rope.scaling.{k}") for k in ("type", "factor")}
    assert scaling_keys == {"type": "linear", "factor": GEMMA3_ROPE["full_attention"]["factor"]}, scaling_keys
    pattern_key = f"{arch}.attention.sliding_window_pattern"

    cfg = ref.config
    return {
        "config": config_record(
            spec, arch, cfg, hf_tok, head_dim=cfg.head_dim, sliding_window=cfg.sliding_window, attention_bias=False,
            arch_keys={
                "layer_types": list(cfg.layer_types),
                "query_pre_attn_scalar": cfg.query_pre_attn_scalar,
                "final_logit_softcapping": cfg.final_logit_softcapping,
                "attn_logit_softcapping": cfg.attn_logit_softcapping,
                "hidden_activation": cfg.hidden_activation,
                "embedding_scale": float(str(np.float32(math.sqrt(cfg.hidden_size)))),
            },
            tail={
                "checkpoint_config_json": {k: saved_config.get(k) for k in
                                           ("rope_parameters", "layer_types", "sliding_window",
                                            "sliding_window_pattern")},
                "gguf_layer_pattern": {
                    "key": pattern_key,
                    "value": metadata.get(pattern_key),
                    "note": (
                        "llama.cpp's Gemma3Model converter writes no layer pattern (config.json's layer_types "
                        "is not read); llama.cpp then assumes every 6th layer global (load_swa_pattern(ml, 6)), "
                        "as transformers' default sliding_window_pattern 6 and wgserve do"
                    ),
                },
                "rope_effective": gemma3_rope_facts(ref),
            },
        ),
        "models": {
            "f16": {
                "files": ["model-f16.gguf"],
                "seed": seed,
                "gguf_metadata": metadata,
                "gguf_check": gguf_check,
                "variant_logit_diffs": variant_logit_diffs(ref, prompts, gemma3_variants(spec, hf_tok)),
                "prompts": prompts,
            },
        },
        "q4_k_note": (
            "no model-q4_k.gguf for gemma3: Q4_K needs rows of 256, and 6 layers that wide (the fewest "
            "with a global layer) take about 1.2 MB of Q4_K plus a 0.25 MB Q8_0 embedding"
        ),
    }
