"""Tool calling through the official openai client: with `tool_choice`
"required" or a named function, at temperature 0 and 1 with several seeds,
every answer is a call of a declared tool whose arguments validate against
its schema (checked by `jsonschema`); `parallel_tool_calls: false` gives
one call; "auto" answers or calls; "none" never calls; streamed deltas
reassemble into the same calls; a round trip (call, tool result, final
answer); requests that cannot be served are 400s naming the field.
Usage: tools.py BASE_URL API_KEY MODEL
"""

import json
import sys

import jsonschema
import openai
from openai import OpenAI

base_url, api_key, model = sys.argv[1:4]
client = OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=300)


def check(condition, what):
    if not condition:
        raise SystemExit(f"FAILED: {what}")


# Strings are bounded: a 135M model may otherwise fill a string until
# max_tokens, and a cut-off call is not a valid one.
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "maxLength": 20},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city", "unit"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "The local time in a timezone.",
            "parameters": {
                "type": "object",
                "properties": {
                    "timezone": {"type": "string", "enum": ["Europe/Paris", "Asia/Tokyo", "UTC"]},
                    "hours24": {"type": "boolean"},
                },
                "required": ["timezone"],
                "additionalProperties": False,
            },
        },
    },
]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
ASK = [{"role": "user", "content": "What is the weather in Paris, and what time is it in Tokyo?"}]


def check_calls(message, what, names=SCHEMAS):
    """Every call is of a declared tool with valid arguments; returns them."""
    calls = message.tool_calls
    check(calls, f"{what}: no tool_calls in {message}")
    ids = set()
    for call in calls:
        check(call.type == "function", f"{what}: type {call.type}")
        check(call.id.startswith("call_") and call.id not in ids, f"{what}: id {call.id}")
        ids.add(call.id)
        check(call.function.name in names, f"{what}: unknown function {call.function.name}")
        try:
            arguments = json.loads(call.function.arguments)
        except json.JSONDecodeError as e:
            raise SystemExit(f"FAILED: {what}: arguments do not parse: {e}: {call.function.arguments!r}")
        try:
            jsonschema.validate(arguments, SCHEMAS[call.function.name])
        except jsonschema.ValidationError as e:
            raise SystemExit(f"FAILED: {what}: {call.function.arguments} does not validate: {e.message}")
    return calls


def create(**kwargs):
    args = {"model": model, "messages": ASK, "tools": TOOLS, "max_tokens": 120}
    args.update(kwargs)
    return client.chat.completions.create(**args)


def required_and_named():
    # Sampled answers are held to one call: a model sampled at temperature
    # 1 may go on calling until max_tokens, and a cut-off call is not whole.
    runs = 0
    for temperature, seeds in ((0.0, [0]), (1.0, [1, 2, 3, 4])):
        for seed in seeds:
            what = f"required t={temperature} seed={seed}"
            r = create(tool_choice="required", parallel_tool_calls=False, temperature=temperature, seed=seed)
            choice = r.choices[0]
            check(choice.finish_reason == "tool_calls", f"{what}: finish_reason {choice.finish_reason}")
            check(choice.message.content is None, f"{what}: content {choice.message.content!r}")
            check(len(check_calls(choice.message, what)) == 1, f"{what}: more than one call")
            what = f"named t={temperature} seed={seed}"
            named = {"type": "function", "function": {"name": "get_time"}}
            r = create(tool_choice=named, temperature=temperature, seed=seed)
            calls = check_calls(r.choices[0].message, what, names={"get_time"})
            check(len(calls) == 1, f"{what}: {len(calls)} calls")
            check(r.choices[0].finish_reason == "tool_calls", f"{what}: {r.choices[0].finish_reason}")
            runs += 2
    print(f"required/named: {runs} answers, each one valid call")


def parallel_calls():
    # Asked about two things, the model calls twice in one answer.
    r = create(tool_choice="required", temperature=0.0)
    calls = check_calls(r.choices[0].message, "parallel")
    check(len(calls) >= 2, f"parallel: {len(calls)} call(s)")
    check(r.choices[0].finish_reason == "tool_calls", f"parallel: {r.choices[0].finish_reason}")
    print(f"parallel: {[(c.function.name, c.function.arguments) for c in calls]}")


def auto_and_none():
    for seed in range(4):
        r = create(tool_choice="auto", temperature=1.0, seed=seed)
        choice = r.choices[0]
        if choice.message.tool_calls:
            check_calls(choice.message, f"auto seed={seed}")
            check(choice.finish_reason == "tool_calls", f"auto: {choice.finish_reason}")
        else:
            check(choice.message.content, f"auto seed={seed}: neither text nor calls")
            check(choice.finish_reason in ("stop", "length"), f"auto: {choice.finish_reason}")
    r = create(tool_choice="none", temperature=0.0)
    check(not r.choices[0].message.tool_calls, "none: tool_calls present")
    check(r.choices[0].message.content, "none: no text")
    print("auto and none: ok")


def streamed_deltas_reassemble():
    expected = create(tool_choice="required", temperature=0.0).choices[0].message.tool_calls
    stream = create(tool_choice="required", temperature=0.0, stream=True)
    calls = {}
    finish = None
    for chunk in stream:
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for delta in choice.delta.tool_calls or []:
            if delta.index not in calls:
                # The first delta of a call carries its id, type and name.
                check(delta.id and delta.type == "function" and delta.function.name, f"first delta {delta}")
                calls[delta.index] = {"id": delta.id, "name": delta.function.name, "arguments": ""}
            else:
                check(delta.id is None and delta.function.name is None, f"later delta repeats {delta}")
            calls[delta.index]["arguments"] += delta.function.arguments or ""
    check(finish == "tool_calls", f"stream finish_reason {finish}")
    got = [(c["name"], json.loads(c["arguments"])) for _, c in sorted(calls.items())]
    want = [(c.function.name, json.loads(c.function.arguments)) for c in expected]
    check(got == want, f"streamed {got} != {want}")
    print(f"stream: {len(got)} call(s) reassembled as answered whole")


def round_trip():
    first = create(tool_choice={"type": "function", "function": {"name": "get_weather"}}, temperature=0.0)
    call = check_calls(first.choices[0].message, "round trip call")[0]
    messages = ASK + [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"temperature_c": 21, "sky": "clear"}'},
    ]
    final = create(messages=messages, tool_choice="none", temperature=0.0, max_tokens=40)
    check(final.choices[0].message.content, f"round trip: no final answer: {final}")
    check(not final.choices[0].message.tool_calls, "round trip: a call in the final answer")
    print(f"round trip: {call.function.name}({call.function.arguments}) -> {final.choices[0].message.content!r}")


def refusals():
    cases = [
        ("tool_choice", dict(tool_choice={"type": "function", "function": {"name": "nope"}})),
        ("tool_choice", dict(tools=None, tool_choice="required")),
        ("tool_choice", dict(tool_choice="sometimes")),
        ("tools[0].function.name", dict(tools=[{"type": "function", "function": {"name": "bad name!"}}])),
        ("tools[0].function.parameters", dict(tools=[{"type": "function", "function": {"name": "f", "parameters": 7}}])),
        ("tools[1].function.name", dict(tools=[TOOLS[0], TOOLS[0]])),
        ("response_format", dict(tool_choice="required", response_format={"type": "json_object"})),
        (
            "messages[1].tool_calls[0].function.arguments",
            dict(
                messages=ASK
                + [
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {"id": "call_1", "type": "function", "function": {"name": "get_time", "arguments": "{oops"}}
                        ],
                    }
                ]
            ),
        ),
    ]
    for param, kwargs in cases:
        try:
            create(**kwargs)
        except openai.BadRequestError as e:
            check(e.body.get("param") == param, f"{kwargs}: param {e.body.get('param')} != {param}: {e.body}")
            continue
        raise SystemExit(f"FAILED: {kwargs} was accepted")
    print(f"refusals: {len(cases)} bad requests, each a 400 naming its field")


required_and_named()
parallel_calls()
auto_and_none()
streamed_deltas_reassemble()
round_trip()
refusals()
print("ok")
