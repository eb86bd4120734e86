"""Conversations with tools and tool calls rendered by transformers'
chat-template renderer (render_jinja_template, what apply_chat_template
calls) with real templates that render tools themselves: Qwen2.5's (read
from the Qwen2.5-Coder GGUF of scripts/setup.sh --test; Hermes-form calls)
and Llama 3.1's (llama.cpp's copy of Meta's template; JSON-form calls).

Writes tests/fixtures/tool_chat_templates.json, read by tests/tool_calls.rs.
Messages carry tool-call arguments as objects, as transformers expects
them and as wgserve passes them after parsing OpenAI's argument strings.

Usage: .venv-reference/bin/python scripts/make_tool_chat_reference.py \
    --gguf models/qwen2.5-coder-0.5b/qwen2.5-coder-0.5b-instruct.gguf \
    --llama31 .llamacpp/.../models/templates/meta-llama-Llama-3.1-8B-Instruct.jinja \
    --out tests/fixtures/tool_chat_templates.json
"""

import argparse
import importlib.metadata
import json

import gguf
import transformers
from transformers.utils.chat_template_utils import render_jinja_template

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city now.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "The city's name."},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "The local time in a timezone.",
            "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}}},
        },
    },
]


def call(id_, name, arguments):
    return {"id": id_, "type": "function", "function": {"name": name, "arguments": arguments}}


ASK = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What's the weather in Paris?"},
]
ONE_CALL = ASK + [
    {"role": "assistant", "content": "", "tool_calls": [call("call_1", "get_weather", {"city": "Paris"})]},
    {"role": "tool", "content": '{"temperature": 21, "sky": "clear"}', "tool_call_id": "call_1"},
]
TWO_CALLS = [
    {"role": "user", "content": "Weather and time in Tokyo?"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            call("call_a", "get_weather", {"city": "Tokyo", "unit": "celsius"}),
            call("call_b", "get_time", {"timezone": "Asia/Tokyo"}),
        ],
    },
    {"role": "tool", "content": "18 C, rain", "tool_call_id": "call_a"},
    {"role": "tool", "content": "09:30", "tool_call_id": "call_b"},
]

CASES = {
    "qwen2.5": [
        ("ask_with_tools", ASK, True),
        ("call_and_result", ONE_CALL, True),
        ("parallel_calls_and_results", TWO_CALLS, True),
        ("answer_after_result", ONE_CALL + [{"role": "assistant", "content": "It is 21 C and clear."}], False),
    ],
    "llama3.1": [
        ("ask_with_tools", ASK, True),
        ("call_and_result", ONE_CALL, True),
        ("answer_after_result", ONE_CALL + [{"role": "assistant", "content": "It is 21 C and clear."}], False),
    ],
}

SPECIALS = {
    "qwen2.5": {"bos_token": "", "eos_token": "<|im_end|>"},
    "llama3.1": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--gguf", required=True)
    parser.add_argument("--llama31", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    reader = gguf.GGUFReader(args.gguf)
    field = reader.fields["tokenizer.chat_template"]
    qwen_template = bytes(field.parts[field.data[0]]).decode("utf-8")
    with open(args.llama31, encoding="utf-8") as f:
        llama_template = f.read()
    templates = {"qwen2.5": qwen_template, "llama3.1": llama_template}
    fixture = {
        "made_by": "scripts/make_tool_chat_reference.py",
        "versions": {"transformers": transformers.__version__, "gguf": importlib.metadata.version("gguf")},
        "tools": TOOLS,
        "templates": [],
    }
    for name, template in templates.items():
        cases = []
        for case_name, messages, add_generation_prompt in CASES[name]:
            rendered, _ = render_jinja_template(
                conversations=[messages],
                tools=TOOLS,
                chat_template=template,
                add_generation_prompt=add_generation_prompt,
                **SPECIALS[name],
            )
            cases.append(
                {
                    "name": case_name,
                    "messages": messages,
                    "add_generation_prompt": add_generation_prompt,
                    "rendered": rendered[0],
                }
            )
        fixture["templates"].append({"name": name, "chat_template": template, **SPECIALS[name], "cases": cases})
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(fixture, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
