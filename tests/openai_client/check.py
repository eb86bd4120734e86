"""The official openai client against wgserve: every call as a user of the
client would write it, with the answers checked. Exits non-zero on the
first mismatch. Usage: check.py BASE_URL API_KEY MODEL
"""

import sys

import openai
from openai import OpenAI

base_url, api_key, model = sys.argv[1:4]
client = OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=180)
messages = [
    {"role": "system", "content": "You are brief."},
    {"role": "user", "content": "Name three colors."},
]


def check(condition, what):
    if not condition:
        raise SystemExit(f"FAILED: {what}")


# models.list and models.retrieve
ids = [m.id for m in client.models.list().data]
check(model in ids, f"{model} in models.list(): {ids}")
check(client.models.retrieve(model).id == model, "models.retrieve")

# chat, not streamed
chat = client.chat.completions.create(model=model, messages=messages, max_tokens=12, temperature=0)
answer = chat.choices[0].message
check(answer.role == "assistant" and answer.content, f"chat answer: {chat}")
check(chat.choices[0].finish_reason in ("stop", "length"), f"finish_reason: {chat}")
check(0 < chat.usage.completion_tokens <= 12 and chat.usage.prompt_tokens > 0, f"usage: {chat.usage}")
check(chat.usage.total_tokens == chat.usage.prompt_tokens + chat.usage.completion_tokens, "total_tokens")

# chat, streamed, with usage: the same greedy text
stream = client.chat.completions.create(
    model=model,
    messages=messages,
    max_tokens=12,
    temperature=0,
    stream=True,
    stream_options={"include_usage": True},
)
pieces, finish, usage = [], None, None
for chunk in stream:
    for choice in chunk.choices:
        pieces.append(choice.delta.content or "")
        finish = choice.finish_reason or finish
    usage = chunk.usage or usage
check("".join(pieces) == answer.content, f"streamed {''.join(pieces)!r} != {answer.content!r}")
check(finish == chat.choices[0].finish_reason, f"streamed finish_reason {finish}")
check(usage is not None and usage.completion_tokens == chat.usage.completion_tokens, f"stream usage {usage}")

# chat with logprobs and n
chat = client.chat.completions.create(
    model=model, messages=messages, max_tokens=6, temperature=0, logprobs=True, top_logprobs=2, n=2
)
check(len(chat.choices) == 2, "n=2 gives two choices")
content = chat.choices[0].logprobs.content
tokens = "".join(entry.token for entry in content)
check(content and tokens == chat.choices[0].message.content, f"logprob tokens {tokens!r}")
check(all(len(entry.top_logprobs) == 2 for entry in content), "two top_logprobs per token")

# legacy completions, plain and streamed
prompt = "The capital of France is"
completion = client.completions.create(model=model, prompt=prompt, max_tokens=8, temperature=0)
text = completion.choices[0].text
check(text and completion.usage.completion_tokens == 8, f"completion: {completion}")
streamed = "".join(
    c.choices[0].text
    for c in client.completions.create(model=model, prompt=prompt, max_tokens=8, temperature=0, stream=True)
    if c.choices
)
check(streamed == text, f"streamed completion {streamed!r} != {text!r}")
echoed = client.completions.create(model=model, prompt=prompt, max_tokens=8, temperature=0, echo=True)
check(echoed.choices[0].text == prompt + text, "echo")

# errors arrive as the client's typed exceptions, naming the field
try:
    client.chat.completions.create(model="no-such-model", messages=messages)
    check(False, "an unknown model must fail")
except openai.NotFoundError:
    pass
try:
    client.chat.completions.create(model=model, messages=messages, temperature=3)
    check(False, "temperature 3 must fail")
except openai.BadRequestError as e:
    check(e.param == "temperature", f"param of {e}")
try:
    OpenAI(base_url=base_url, api_key="wrong", max_retries=0).models.list()
    check(False, "a wrong key must fail")
except openai.AuthenticationError:
    pass

print(f"openai-python {openai.__version__}: models, chat (stream and not), completions: ok")
