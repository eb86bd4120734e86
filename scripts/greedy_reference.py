"""Greedy references from HF transformers reading a GGUF, shared by
make_reference.py (SmolLM2), make_qwen2_reference.py and
make_gemma3_reference.py: the GGUF's metadata, chat rendering, a greedy
decode that records the top-2 logit gap of each step (so a test can tell a
real bug from a near tie), and the per-prompt record of the fixtures.
Each script keeps its own prompts, checks and fixture fields."""

import importlib.metadata
import os
import sys

import gguf
import numpy as np
import tokenizers
import torch
import transformers
from transformers import AutoModelForCausalLM

NUM_NEW_TOKENS = 32
TOP_K_FIRST = 10

# Conversations that more than one fixture renders (roles as the OpenAI API
# sends them), by the case name the fixtures give them.
CONVERSATIONS = {
    "system_user": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hello!"},
    ],
    "multi_turn": [
        {"role": "user", "content": "Hi! Can you help me with math?"},
        {"role": "assistant", "content": "Of course. What do you need?"},
        {"role": "user", "content": "What is 17 + 25?"},
    ],
    "system_multi_turn_ends_with_assistant": [
        {"role": "system", "content": "Réponds en français."},
        {"role": "user", "content": "Bonjour, ça va ?"},
        {"role": "assistant", "content": "Très bien, merci ! Et vous ?"},
    ],
    "whitespace_unicode_code": [
        {"role": "system", "content": "  Be exact.  \n"},
        {"role": "user", "content": "\n  日本語で答えて 🤖: what does\n\n```python\nprint( 'a  b' )\n```\nprint?  \n"},
        {"role": "assistant", "content": "  It prints `a  b`.\n\n"},
        {"role": "user", "content": "<b>And</b> \"quotes\" & {{ braces }}?"},
    ],
}


def shared_chat(name):
    """A chat case of CONVERSATIONS, as the scripts list their cases."""
    return {"name": name, "messages": CONVERSATIONS[name]}


def versions():
    return {
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "tokenizers": tokenizers.__version__,
        "gguf": importlib.metadata.version("gguf"),
        "numpy": np.__version__,
        "python": sys.version.split()[0],
    }


def open_gguf(path):
    """Uses every core, and returns (model_dir, gguf_name, reader) as
    transformers' `gguf_file=` loading wants them."""
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    model_dir, gguf_name = os.path.split(os.path.abspath(path))
    return model_dir, gguf_name, gguf.GGUFReader(path)


def gguf_field(reader, key):
    field = reader.fields.get(key)
    return None if field is None else field.contents()


def load_model(model_dir, gguf_name, **kwargs):
    """The GGUF dequantized to float32 by transformers, in eval mode."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, gguf_file=gguf_name, dtype=torch.float32, **kwargs)
    model.eval()
    return model


def render_chat(tok, template, messages, add_generation_prompt):
    """apply_chat_template's text and ids; the ids must equal the text
    tokenized without added specials."""
    text = tok.apply_chat_template(
        messages, chat_template=template, tokenize=False, add_generation_prompt=add_generation_prompt
    )
    ids = tok.apply_chat_template(
        messages,
        chat_template=template,
        tokenize=True,
        return_dict=False,
        add_generation_prompt=add_generation_prompt,
    )
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    if ids and isinstance(ids[0], list):
        ids = ids[0]
    plain = tok(text, add_special_tokens=False)["input_ids"]
    if ids != plain:
        sys.exit(f"apply_chat_template ids differ from tokenizing its text: {ids[:8]} vs {plain[:8]}")
    return text, ids


def chat_cases(tok, template, cases):
    """Each conversation rendered with and without the generation prompt."""
    out = []
    for case in cases:
        for agp in (True, False):
            text, ids = render_chat(tok, template, case["messages"], agp)
            out.append(
                {
                    "name": case["name"],
                    "messages": case["messages"],
                    "add_generation_prompt": agp,
                    "rendered": text,
                    "ids": ids,
                }
            )
    return out


@torch.no_grad()
def greedy(model, prompt_ids):
    """Greedy decode exactly NUM_NEW_TOKENS tokens; EOS does not stop it.
    Returns (generated ids, top-2 gap per step, top-1 logit per step,
    top-10 ids and logits of the first step)."""
    input_ids = torch.tensor([prompt_ids], dtype=torch.long)
    past = None
    generated, gaps, top1_logits = [], [], []
    first_top = None
    for step in range(NUM_NEW_TOKENS):
        out = model(input_ids=input_ids, past_key_values=past, use_cache=True)
        past = out.past_key_values
        logits = out.logits[0, -1].to(torch.float32)
        top = torch.topk(logits, TOP_K_FIRST)
        # torch.topk sorts descending; argmax picks the first maximal index,
        # which is what a greedy sampler does on an exact tie.
        next_id = int(torch.argmax(logits))
        gaps.append(float(top.values[0] - top.values[1]))
        top1_logits.append(float(top.values[0]))
        if step == 0:
            first_top = {
                "ids": [int(i) for i in top.indices],
                "logits": [float(v) for v in top.values],
            }
        generated.append(next_id)
        input_ids = torch.tensor([[next_id]], dtype=torch.long)
    return generated, gaps, top1_logits, first_top


def prompt_record(prompt, text, ids, tok, run):
    """A fixture's record of one prompt: `prompt` as the script lists it
    (name, kind, messages for a chat), the rendered text and its ids, and
    `run` as greedy() returns it."""
    generated, gaps, top1, first_top = run
    rec = {"name": prompt["name"], "kind": prompt["kind"]}
    if prompt["kind"] == "chat":
        rec["messages"] = prompt["messages"]
        rec["add_generation_prompt"] = True
    rec.update(
        {
            "prompt": text,
            "prompt_ids": ids,
            "num_prompt_tokens": len(ids),
            "generated_ids": generated,
            "generated_text": tok.decode(generated, skip_special_tokens=False),
            "top2_logit_gaps": [round(g, 5) for g in gaps],
            "top1_logits": [round(v, 5) for v in top1],
            "min_top2_logit_gap": round(min(gaps), 5),
            "first_step_top10": first_top,
        }
    )
    return rec


def min_top2_logit_gap(records):
    return round(min(r["min_top2_logit_gap"] for r in records), 5)
