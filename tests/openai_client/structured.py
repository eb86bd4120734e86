"""Structured output through the official openai client: for a corpus of
JSON schemas, at temperature 0 and 1 with several seeds, every answer must
parse and validate against its schema (checked by the `jsonschema`
package, an implementation independent of ours); `response_format`
json_object, vLLM's choice and regex extensions, a schema that cannot
compile (400 naming the field), and `chat.completions.parse` with a
Pydantic model. Usage: structured.py BASE_URL API_KEY MODEL
"""

import json
import re
import sys

import jsonschema
import openai
import pydantic
from openai import OpenAI

base_url, api_key, model = sys.argv[1:4]
client = OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=300)


def check(condition, what):
    if not condition:
        raise SystemExit(f"FAILED: {what}")


SCHEMAS = {
    "person": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 24},
            "age": {"type": "integer", "minimum": 0, "maximum": 130},
            "email": {"type": "string", "maxLength": 40},
        },
        "required": ["name", "age"],
        "additionalProperties": False,
    },
    "nested": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 20},
            "location": {
                "type": "object",
                "properties": {
                    "lat": {"type": "number", "minimum": -90, "maximum": 90},
                    "lon": {"type": "number", "minimum": -180, "maximum": 180},
                },
                "required": ["lat", "lon"],
                "additionalProperties": False,
            },
        },
        "required": ["city", "location"],
        "additionalProperties": False,
    },
    "enum_array": {
        "type": "object",
        "properties": {
            "colors": {
                "type": "array",
                "items": {"enum": ["red", "green", "blue", "yellow"]},
                "minItems": 1,
                "maxItems": 4,
            },
        },
        "required": ["colors"],
        "additionalProperties": False,
    },
    "bounded_numbers": {
        "type": "object",
        "properties": {
            "score": {"type": "number", "exclusiveMinimum": 0, "maximum": 10},
            "count": {"type": "integer", "minimum": 3, "maximum": 7},
            "ok": {"type": "boolean"},
        },
        "required": ["score", "count", "ok"],
        "additionalProperties": False,
    },
    "pattern": {
        "type": "object",
        "properties": {
            "code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{2}$"},
            "note": {"type": ["string", "null"], "maxLength": 16},
        },
        "required": ["code"],
        "additionalProperties": False,
    },
    "array_of_objects": {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {
                "item": {"type": "string", "maxLength": 12},
                "qty": {"type": "integer", "minimum": 1, "maximum": 9},
            },
            "required": ["item", "qty"],
            "additionalProperties": False,
        },
        "minItems": 1,
        "maxItems": 3,
    },
    "top_level_enum": {"enum": ["yes", "no", "maybe"]},
}

runs = 0
for name, schema in SCHEMAS.items():
    messages = [{"role": "user", "content": f"Answer with JSON ({name.replace('_', ' ')})."}]
    for temperature, seed in [(0, None), (1, 0), (1, 1), (1, 2)]:
        answer = client.chat.completions.create(
            model=model,
            messages=messages,
            max_tokens=300,
            temperature=temperature,
            seed=seed,
            response_format={"type": "json_schema", "json_schema": {"name": name, "schema": schema}},
        )
        text = answer.choices[0].message.content
        check(answer.choices[0].finish_reason == "stop", f"{name} t={temperature} s={seed}: cut off: {text!r}")
        try:
            jsonschema.validate(json.loads(text), schema)
        except (ValueError, jsonschema.ValidationError) as e:
            check(False, f"{name} t={temperature} s={seed}: {text!r}: {e}")
        runs += 1

# Any JSON object; streamed, reassembled.
chunks = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "Give the capital of France as JSON."}],
    max_tokens=300,
    temperature=0,
    stream=True,
    response_format={"type": "json_object"},
)
chunks = [c for c in chunks if c.choices]
text = "".join(c.choices[0].delta.content or "" for c in chunks)
check(chunks[-1].choices[0].finish_reason == "stop", f"json_object cut off: {text!r}")
check(isinstance(json.loads(text), dict), f"json_object: {text!r}")

# vLLM's extensions, through extra_body: a choice and a regex, legacy API.
choice = client.completions.create(
    model=model, prompt="The sky is", max_tokens=8, extra_body={"structured_outputs": {"choice": ["blue", "green"]}}
)
check(choice.choices[0].text in ("blue", "green"), f"choice: {choice.choices[0].text!r}")
date = client.completions.create(
    model=model, prompt="Today's date:", max_tokens=20, temperature=1, seed=3,
    extra_body={"guided_regex": r"20[0-9]{2}-[01][0-9]-[0-3][0-9]"},
)
check(re.fullmatch(r"20[0-9]{2}-[01][0-9]-[0-3][0-9]", date.choices[0].text), f"regex: {date.choices[0].text!r}")

# n > 1: every choice follows the schema on its own.
several = client.chat.completions.create(
    model=model, messages=[{"role": "user", "content": "A person."}], n=3, temperature=1, seed=5, max_tokens=300,
    response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMAS["person"]}},
)
for c in several.choices:
    jsonschema.validate(json.loads(c.message.content), SCHEMAS["person"])

# A schema that cannot compile is a 400 naming the field.
try:
    client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "x"}], max_tokens=5,
        response_format={"type": "json_schema", "json_schema": {"name": "bad", "schema": {"type": "no-such-type"}}},
    )
    check(False, "an invalid schema must fail")
except openai.BadRequestError as e:
    check(e.param == "response_format.json_schema.schema", f"param of {e}")


class Pet(pydantic.BaseModel):
    name: str = pydantic.Field(max_length=20)
    species: str = pydantic.Field(max_length=20)
    legs: int = pydantic.Field(ge=0, le=8)


parsed = client.chat.completions.parse(
    model=model, messages=[{"role": "user", "content": "Describe a pet."}], response_format=Pet, max_tokens=200,
    temperature=0,
)
check(isinstance(parsed.choices[0].message.parsed, Pet), f"parse: {parsed.choices[0].message}")

print(f"openai-python {openai.__version__}, jsonschema {jsonschema.__version__}: "
      f"{runs} schema runs valid, json_object, choice, regex, n=3, 400, parse: ok")
