#!/usr/bin/env python3
"""Golden references for Gemma 3 270M (GGUF Q4_K_M) from HF transformers.

Run through scripts/make_gemma3_reference.sh (it makes the venv).
transformers reads the GGUF itself (`gguf_file=`) and dequantizes every
tensor to float32, so its logits differ from a quantized kernel's by
rounding only; each step records the gap between the top-two logits so a
test can tell a real bug from a near tie.

Writes
  tests/fixtures/gemma3_reference.json (same shape as smollm2_reference.json):
    per prompt the text, prompt token ids (BOS first: the GGUF says
    tokenizer.ggml.add_bos_token = true), 32 greedy token ids (EOS does not
    stop), the top-2 logit gap and top-1 logit per step, the top-10
    (id, logit) of the first generated position. One prompt is longer than
    the 512-token sliding window, so the local layers must mask.
  tests/fixtures/gemma3_chat_template.json:
    conversations rendered by `apply_chat_template` (strings, and their ids
    tokenized as apply_chat_template(tokenize=True) does: no special tokens
    added, the template writes <bos> itself), and one it must refuse.
  --debug-dir DIR (not committed): per-layer hidden states of a short
    prompt and per-position top-5 logits of the long one; see
    write_debug_dumps.

The chat template. This GGUF (the base model) carries no
tokenizer.chat_template and no tokenizer.ggml.eot_token_id. wgserve then
falls back to Gemma 3's published template (src/text/chat_templates/
gemma3.jinja, the chat_template of google/gemma-3-*-it's
tokenizer_config.json), and so does this script: it uses the GGUF's template
when it has one, else that file, and passes it as `chat_template=`. The
fixture says which ("chat_template_source"). `<end_of_turn>` (id 106) is a
control token of the vocabulary; Gemma's generation_config.json ends on
[1, 106] (<eos>, <end_of_turn>), while transformers' GGUF loader sets only
eos_token_id = 1 from tokenizer.ggml.eos_token_id.

What transformers' GGUF loader does for gemma3 (5.24, read in the venv:
integrations/ggml.py, modeling_gguf_pytorch_utils.py, models/gemma3/), and
what main() asserts at run time:
  - Norm weights: llama.cpp's converter stores Gemma's RMSNorm weights as
    1 + w (so that its norm is x * w); Gemma3RMSNorm computes x * (1 + w).
    Gemma2TensorProcessor (used for "gemma3" too) subtracts 1 from every
    tensor whose GGUF name contains "norm.weight": attn_norm,
    post_attention_norm, ffn_norm, post_ffw_norm, attn_q_norm, attn_k_norm
    and output_norm. Checked: GGUF value - 1 == HF parameter, per norm.
  - Sliding window: gemma3.attention.sliding_window = 512 -> sliding_window;
    layer_types comes from Gemma3TextConfig's default pattern 6 (the GGUF
    has no pattern key): layers 5, 11, 17 full attention, the others
    sliding. masking_utils.sliding_window_overlay keeps kv_idx > q_idx - 512,
    i.e. a query sees itself and the 511 positions before it (llama.cpp:
    masked when pos_q - pos_k >= 512; the same).
  - RoPE bases: gemma3.rope.freq_base = 1e6 -> rope_parameters
    ["full_attention"].rope_theta; the GGUF has no local base, so
    ["sliding_attention"].rope_theta is the config default 10000.
  - Embedding scaled by sqrt(640) (Gemma3TextScaledWordEmbedding, in f32);
    tied output (no output.weight tensor -> tie_word_embeddings = True);
    query_pre_attn_scalar 256 (= head_dim, the config default); hidden
    activation gelu_pytorch_tanh; no logit soft-capping (None for Gemma 3).
  - Special ids: bos 2, eos 1, pad 0, unk 3 from tokenizer.ggml.*; the
    tokenizer adds BOS (add_bos_token = true) and no EOS.
  - The sliding-window KV cache of generate-style decoding is checked too:
    every prompt's 32 cached greedy steps are re-run as one uncached forward
    and must give the same argmax.
"""

import argparse
import json
import os
import sys

import gguf
import numpy as np
import torch
from transformers import AutoTokenizer

sys.path.insert(0, os.path.dirname(__file__))
from fixture_json import write_fixture  # noqa: E402
from greedy_reference import (  # noqa: E402
    NUM_NEW_TOKENS,
    chat_cases,
    greedy,
    gguf_field,
    load_model,
    min_top2_logit_gap,
    open_gguf,
    prompt_record,
    render_chat,
    shared_chat,
    versions,
)

SLIDING_WINDOW = 512
MIN_LONG_PROMPT_TOKENS = 600
DEBUG_PROMPT_TOKENS = 6
BUILTIN_TEMPLATE = "src/text/chat_templates/gemma3.jinja"

# A long text whose first lines matter at its end, so that the global
# layers reach back past the 512-token window of the local ones.
LONG_TEXT = (
    "Field notes, day one. The expedition's radio call sign is KESTREL-7 and "
    "the supply drop is scheduled for the ninth of March at the northern "
    "glacier camp. Keep both in mind; everything below is the ordinary log.\n\n"
    "We left the harbour before sunrise. The boat was loaded with tents, two "
    "stoves, sixty litres of fuel, dried food for three weeks, a satellite "
    "phone, spare batteries, rope, ice axes, crampons and a first-aid kit that "
    "Maria packed twice because she did not trust the first attempt. The sea "
    "was calm for the first hour and then turned grey and restless. Tomas was "
    "sick over the side, apologised, and was sick again. By noon the coast "
    "appeared: black cliffs streaked with snow, seabirds wheeling above the "
    "breaking waves, and a narrow beach of dark gravel where we could land.\n\n"
    "Unloading took the whole afternoon. We carried the crates up the beach in "
    "pairs, stacking them behind a boulder that kept off the worst of the wind. "
    "The tents went up at dusk. Dinner was lentil soup with too much salt, which "
    "nobody mentioned. Afterwards we checked the instruments: the thermometer "
    "read minus four degrees, the barometer was falling slowly, and the "
    "anemometer spun steadily in a wind from the south-west at about twenty "
    "kilometres per hour.\n\n"
    "Day two. Snow overnight, perhaps ten centimetres. We spent the morning "
    "digging out and drying gloves over the stove. In the afternoon Maria and I "
    "walked the first kilometre of the route towards the glacier. The ground "
    "was a mixture of frozen moss, loose scree and patches of hard old snow. "
    "We marked the path with orange flags every fifty metres so that the others "
    "could follow in poor visibility. On the way back we saw the tracks of an "
    "arctic fox crossing the slope, neat and direct, as if it knew exactly "
    "where it was going.\n\n"
    "Day three. Clear sky at last. We moved the first load of equipment to the "
    "intermediate camp beside a frozen lake. The ice was thick enough to walk "
    "on, and Tomas drilled a hole to measure it: forty-one centimetres. The "
    "water underneath was astonishingly clear. We ate lunch in the sun, sitting "
    "on our packs, and for a while nobody spoke. The silence there is not empty; "
    "it is full of small sounds, the creak of the ice, the hiss of wind over "
    "snow, the distant crack of the glacier moving.\n\n"
    "Day four. Wind again, strong gusts from the north. We stayed in the tents "
    "and repaired equipment: a torn pole sleeve, a stove pump that leaked, a "
    "zip that had frozen solid. Maria read aloud from a book about the first "
    "explorers of the region, men who came with wooden sledges and wool "
    "clothing and who wrote in their diaries mostly about food. We laughed, "
    "because our own notes are not so different. Tomas calculated that we had "
    "eaten exactly one third of the supplies, which means the drop cannot come "
    "too late.\n\n"
    "Day five. We reached the edge of the glacier in the early afternoon. The "
    "ice rises in a wall of blue and white, broken by crevasses that we "
    "mapped carefully before choosing a route. Tomorrow we cross to the "
    "northern camp and wait for the plane. Before sleeping I went over the "
    "plan with the others one more time, so that nobody would forget the two "
    "things written on the first page of this log.\n\n"
    "Summary for the pilot: our radio call sign is"
)

PROMPTS = [
    {
        "name": "raw_english",
        "kind": "raw",
        "text": "The old lighthouse keeper climbed the spiral stairs every evening at dusk. "
        "One stormy night in November, he noticed",
    },
    {
        "name": "raw_code",
        "kind": "raw",
        "text": "def merge_sorted(a, b):\n"
        '    """Merge two sorted lists into one sorted list."""\n'
        "    result = []\n"
        "    i, j = 0, 0\n"
        "    while i < len(a) and j < len(b):\n",
    },
    {
        "name": "raw_multilingual",
        "kind": "raw",
        "text": "Le chat dort sur le canapé. El gato duerme en el sofá. "
        "Die Katze schläft auf dem Sofa. 猫はソファで寝ています。 猫在沙发上睡觉。 "
        "Кошка спит на диване. In English:",
    },
    {
        "name": "chat_system",
        "kind": "chat",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant. Answer briefly."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
    },
    {
        "name": "raw_long",
        "kind": "raw",
        "text": LONG_TEXT,
    },
]

# Conversations for the chat-template fixture: roles as the OpenAI API
# sends them; the template maps assistant -> model and folds a system
# message into the first user turn.
CHAT_CASES = [
    shared_chat("system_user"),
    {
        "name": "user_only",
        "messages": [{"role": "user", "content": "Write a haiku about the sea."}],
    },
    shared_chat("multi_turn"),
    shared_chat("system_multi_turn_ends_with_assistant"),
    shared_chat("whitespace_unicode_code"),
]
# Roles that do not alternate: the template raises, and so must ours.
CHAT_ERROR_CASES = [
    {
        "name": "two_users_in_a_row",
        "messages": [
            {"role": "user", "content": "One."},
            {"role": "user", "content": "Two."},
        ],
    },
    {
        "name": "assistant_first",
        "messages": [{"role": "assistant", "content": "I speak first."}],
    },
]


def chat_template_source(reader, repo_root):
    """The GGUF's template, else wgserve's built-in Gemma 3 template."""
    template = gguf_field(reader, "tokenizer.chat_template")
    if template is not None:
        return template, "gguf tokenizer.chat_template"
    with open(os.path.join(repo_root, BUILTIN_TEMPLATE), encoding="utf-8") as f:
        return f.read(), BUILTIN_TEMPLATE + " (the GGUF has no tokenizer.chat_template)"


def check_loader(model, reader):
    """Asserts what the module docstring says the GGUF loader does."""
    config = model.config
    checks = {}
    assert config.sliding_window == SLIDING_WINDOW, config.sliding_window
    full = [i for i, t in enumerate(config.layer_types) if t == "full_attention"]
    assert full == [5, 11, 17], config.layer_types
    checks["full_attention_layers"] = full
    rope = config.rope_parameters
    assert rope["full_attention"]["rope_theta"] == 1e6, rope
    assert rope["sliding_attention"]["rope_theta"] == 1e4, rope
    checks["rope_theta"] = {k: v["rope_theta"] for k, v in rope.items()}
    assert config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert config.query_pre_attn_scalar == config.head_dim == 256
    assert config.final_logit_softcapping is None and config.attn_logit_softcapping is None
    assert config.hidden_activation == "gelu_pytorch_tanh"
    embed_scale = float(model.model.embed_tokens.embed_scale)
    assert abs(embed_scale - config.hidden_size**0.5) < 1e-5, embed_scale
    checks["embed_scale"] = embed_scale
    # Norm weights: the GGUF's (F32, stored as 1 + w) minus one.
    params = dict(model.named_parameters())
    names = {
        "blk.0.attn_norm.weight": "model.layers.0.input_layernorm.weight",
        "blk.0.post_attention_norm.weight": "model.layers.0.post_attention_layernorm.weight",
        "blk.0.ffn_norm.weight": "model.layers.0.pre_feedforward_layernorm.weight",
        "blk.0.post_ffw_norm.weight": "model.layers.0.post_feedforward_layernorm.weight",
        "blk.0.attn_q_norm.weight": "model.layers.0.self_attn.q_norm.weight",
        "blk.0.attn_k_norm.weight": "model.layers.0.self_attn.k_norm.weight",
        "output_norm.weight": "model.norm.weight",
    }
    tensors = {t.name: t for t in reader.tensors}
    worst = 0.0
    for gguf_name, hf_name in names.items():
        raw = gguf.quants.dequantize(tensors[gguf_name].data, tensors[gguf_name].tensor_type)
        hf = params[hf_name].detach().numpy()
        worst = max(worst, float(np.abs(raw.reshape(hf.shape) - 1.0 - hf).max()))
    assert worst < 1e-6, worst
    checks["norm_weights"] = "HF weight == GGUF weight - 1 for every Gemma norm (max diff %g)" % worst
    checks["special_ids"] = {
        "bos": config.bos_token_id,
        "eos": config.eos_token_id,
        "pad": config.pad_token_id,
        "generation_config_eos": model.generation_config.eos_token_id,
    }
    return checks


@torch.no_grad()
def check_without_cache(model, prompt_ids, generated, top1_logits):
    """One uncached forward over prompt + generated must pick the same tokens
    (this checks transformers' sliding-window cache, too)."""
    ids = prompt_ids + generated[:-1]
    logits = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0]
    tail = logits[len(prompt_ids) - 1 :]
    argmax = [int(i) for i in torch.argmax(tail, dim=-1)]
    if argmax != generated:
        sys.exit(f"cached and uncached greedy differ: {generated} vs {argmax}")
    return float(np.abs(tail.max(dim=-1).values.numpy() - np.array(top1_logits)).max())


def chat_template_fixture(tok, template, template_source, gguf_name, versions):
    errors = []
    for case in CHAT_ERROR_CASES:
        try:
            tok.apply_chat_template(case["messages"], chat_template=template, tokenize=False)
        except Exception as e:  # jinja2's TemplateError, re-raised by transformers
            errors.append({"name": case["name"], "messages": case["messages"], "error": str(e)})
            continue
        sys.exit(f"{case['name']}: the template did not refuse it")
    return {
        "gguf_file": gguf_name,
        "made_by": "scripts/make_gemma3_reference.py (via scripts/make_gemma3_reference.sh)",
        "versions": versions,
        "chat_template_source": template_source,
        "chat_template": template,
        "bos_token": tok.bos_token,
        "eos_token": tok.eos_token,
        "ids_note": "apply_chat_template(tokenize=True): the rendered text tokenized "
        "without adding special tokens (the template writes <bos> itself)",
        "cases": chat_cases(tok, template, CHAT_CASES),
        "error_cases": errors,
    }


def to_list(t):
    return [[float(x) for x in row] for row in t.tolist()]


@torch.no_grad()
def write_debug_dumps(model, tok, prompt_ids, long_ids, out_dir):
    """Hidden states of a short prompt for debugging a new implementation
    layer by layer; all arrays are float32 values as JSON numbers.

    hidden_states.json:
      prompt_ids [T]; embedding [T][640] (after the sqrt(640) scale);
      layer_outputs[l] [T][640], the residual stream after decoder layer l
      (before the final norm); final_norm [T][640]; top10 per position
      (ids, logits); hf_hidden_states_note says how HF's
      output_hidden_states lines up (it was checked equal).
    layer_internals.json: for each layer l, per position, the outputs of
      input_layernorm, q_norm (after the q RMSNorm, before RoPE,
      [T][4*256]), k_norm ([T][256]), v_proj ([T][256]), attn (the input of
      o_proj: attention output before the projection, [T][1024]), o_proj,
      post_attention_layernorm, pre_feedforward_layernorm, mlp,
      post_feedforward_layernorm ([T][640] each).
    long_prompt_top5.json: the long prompt's ids and, per position, the
      top-5 (ids, logits) of one uncached forward.
    """
    os.makedirs(out_dir, exist_ok=True)
    layers = model.model.layers
    captured = {}
    hooks = []

    def keep(key, pre=False):
        def hook(_module, args, output=None):
            value = args[0] if pre else output
            if isinstance(value, tuple):
                value = value[0]
            captured[key] = value[0].detach().clone()

        return hook

    for l, layer in enumerate(layers):
        hooks.append(layer.register_forward_hook(keep(("layer", l))))
        attn = layer.self_attn
        for name, module in [
            ("input_layernorm", layer.input_layernorm),
            ("q_norm", attn.q_norm),
            ("k_norm", attn.k_norm),
            ("v_proj", attn.v_proj),
            ("o_proj", attn.o_proj),
            ("post_attention_layernorm", layer.post_attention_layernorm),
            ("pre_feedforward_layernorm", layer.pre_feedforward_layernorm),
            ("mlp", layer.mlp),
            ("post_feedforward_layernorm", layer.post_feedforward_layernorm),
        ]:
            hooks.append(module.register_forward_hook(keep((name, l))))
        hooks.append(attn.o_proj.register_forward_pre_hook(keep(("attn", l), pre=True)))
    hooks.append(model.model.norm.register_forward_hook(keep(("final_norm", 0))))
    out = model(
        input_ids=torch.tensor([prompt_ids]), use_cache=False, output_hidden_states=True
    )
    for h in hooks:
        h.remove()

    num_layers = len(layers)
    hs = out.hidden_states
    # HF: hidden_states[0] = embedding, [l] = input of layer l, and the last
    # one is after the final norm (not the raw output of the last layer).
    for l in range(1, num_layers):
        assert torch.equal(hs[l][0], captured[("layer", l - 1)]), l
    assert torch.equal(hs[num_layers][0], captured[("final_norm", 0)])
    logits = out.logits[0]
    top = torch.topk(logits, 10, dim=-1)
    dump = {
        "model": "gemma-3-270m Q4_K_M GGUF, float32 by transformers",
        "prompt_ids": prompt_ids,
        "prompt_pieces": tok.convert_ids_to_tokens(prompt_ids),
        "hidden_size": model.config.hidden_size,
        "num_layers": num_layers,
        "embedding": to_list(hs[0][0]),
        "layer_outputs": [to_list(captured[("layer", l)]) for l in range(num_layers)],
        "final_norm": to_list(captured[("final_norm", 0)]),
        "top10": [
            {"ids": [int(i) for i in ids], "logits": [float(v) for v in vals]}
            for ids, vals in zip(top.indices, top.values)
        ],
        "hf_hidden_states_note": "output_hidden_states: [0] = embedding, [l] = "
        "layer_outputs[l-1] for l in 1..17, [18] = final_norm (checked equal)",
    }
    write_fixture(os.path.join(out_dir, "hidden_states.json"), dump)

    names = [
        "input_layernorm", "q_norm", "k_norm", "v_proj", "attn", "o_proj",
        "post_attention_layernorm", "pre_feedforward_layernorm", "mlp",
        "post_feedforward_layernorm",
    ]
    internals = {
        "prompt_ids": prompt_ids,
        "layers": [
            {name: to_list(captured[(name, l)].reshape(len(prompt_ids), -1)) for name in names}
            for l in range(num_layers)
        ],
    }
    write_fixture(os.path.join(out_dir, "layer_internals.json"), internals)

    logits = model(input_ids=torch.tensor([long_ids]), use_cache=False).logits[0]
    top = torch.topk(logits, 5, dim=-1)
    write_fixture(
        os.path.join(out_dir, "long_prompt_top5.json"),
        {
            "prompt_ids": long_ids,
            "top5": [
                {"ids": [int(i) for i in ids], "logits": [round(float(v), 5) for v in vals]}
                for ids, vals in zip(top.indices, top.values)
            ],
        },
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--gguf", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--chat-out", required=True)
    parser.add_argument("--debug-dir")
    args = parser.parse_args()

    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    model_dir, gguf_name, reader = open_gguf(args.gguf)
    add_bos = gguf_field(reader, "tokenizer.ggml.add_bos_token")
    eot_id = gguf_field(reader, "tokenizer.ggml.eot_token_id")
    template, template_source = chat_template_source(reader, repo_root)
    made_with = versions()

    tok = AutoTokenizer.from_pretrained(model_dir, gguf_file=gguf_name)
    chat = chat_template_fixture(tok, template, template_source, gguf_name, made_with)
    chat["end_of_turn_id"] = tok.convert_tokens_to_ids("<end_of_turn>")
    chat["gguf_eot_token_id"] = eot_id
    write_fixture(args.chat_out, chat)

    model = load_model(model_dir, gguf_name, attn_implementation="eager")
    loader_checks = check_loader(model, reader)
    print(json.dumps(loader_checks), file=sys.stderr)

    records = []
    for p in PROMPTS:
        if p["kind"] == "chat":
            text, ids = render_chat(tok, template, p["messages"], True)
        else:
            text = p["text"]
            ids = tok(text, add_special_tokens=True)["input_ids"]
            plain = tok(text, add_special_tokens=False)["input_ids"]
            if not (add_bos and ids == [tok.bos_token_id] + plain):
                sys.exit(f"{p['name']}: expected BOS and the text's ids, got {ids[:4]}")
        if p["name"] == "raw_long" and len(ids) < MIN_LONG_PROMPT_TOKENS:
            sys.exit(f"raw_long has only {len(ids)} tokens; make it longer")
        run = greedy(model, ids)
        generated, gaps, top1, _ = run
        uncached_diff = check_without_cache(model, ids, generated, top1)
        rec = prompt_record(p, text, ids, tok, run)
        rec["max_top1_diff_uncached"] = round(uncached_diff, 6)
        records.append(rec)
        print(
            f"{p['name']}: {len(ids)} prompt tokens, min gap {min(gaps):.4f}, "
            f"uncached diff {uncached_diff:.2e}: {rec['generated_text']!r}",
            file=sys.stderr,
        )

    fixture = {
        "model": "gemma-3-270m Q4_K_M GGUF, dequantized to float32 by transformers",
        "gguf_file": gguf_name,
        "made_by": "scripts/make_gemma3_reference.py (via scripts/make_gemma3_reference.sh)",
        "versions": made_with,
        "device": "cpu",
        "attn_implementation": "eager",
        "tokenizer_add_bos_token": add_bos,
        "chat_template_source": template_source,
        "loader_checks": loader_checks,
        "sliding_window": SLIDING_WINDOW,
        "num_new_tokens": NUM_NEW_TOKENS,
        "decoding": "greedy argmax over float32 logits, EOS does not stop; each "
        "prompt's greedy run also checked against one uncached forward",
        "min_top2_logit_gap": min_top2_logit_gap(records),
        "prompts": records,
    }
    write_fixture(args.out, fixture)

    if args.debug_dir:
        short = records[0]["prompt_ids"][:DEBUG_PROMPT_TOKENS]
        long_ids = next(r["prompt_ids"] for r in records if r["name"] == "raw_long")
        write_debug_dumps(model, tok, short, long_ids, args.debug_dir)


if __name__ == "__main__":
    main()
