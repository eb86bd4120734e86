"""The official openai client against wgserve: every call as a user of the
client would write it, with the answers checked. Exits non-zero on the
first mismatch. Usage: check.py BASE_URL API_KEY MODEL [EMBEDDING_MODEL]
"""

import math
import sys

import openai
from openai import OpenAI

base_url, api_key, model = sys.argv[1:4]
embedding_model = sys.argv[4] if len(sys.argv) > 4 else None
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

# embeddings: the client asks for base64 unless told otherwise, and decodes it
if embedding_model:
    check(embedding_model in ids, f"{embedding_model} in models.list(): {ids}")
    texts = [
        "The quick brown fox jumps over the lazy dog.",
        "A fast brown fox leaps over a sleepy dog.",
        "Quarterly revenue grew by 12% despite supply-chain problems.",
    ]
    default = client.embeddings.create(model=embedding_model, input=texts)
    floats = client.embeddings.create(model=embedding_model, input=texts, encoding_format="float")
    for response in (default, floats):
        check([d.index for d in response.data] == [0, 1, 2], f"indices of {response.data}")
        check(all(len(d.embedding) == 384 for d in response.data), "384 dimensions")
        check(response.usage.prompt_tokens == 12 + 12 + 14, f"usage {response.usage}")
        check(response.model == embedding_model, f"model {response.model}")
    for a, b in zip(default.data, floats.data):
        worst = max(abs(x - y) for x, y in zip(a.embedding, b.embedding))
        check(worst < 1e-6, f"base64 and float differ by {worst}")
    vectors = [d.embedding for d in floats.data]
    check(all(abs(math.fsum(x * x for x in v) - 1) < 1e-5 for v in vectors), "unit length")

    def cosine(a, b):
        return math.fsum(x * y for x, y in zip(a, b))

    check(cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.5, "a paraphrase is closer")
    one = client.embeddings.create(model=embedding_model, input=texts[0])
    check(len(one.data) == 1 and cosine(one.data[0].embedding, vectors[0]) > 0.999999, "one string")
    try:
        client.embeddings.create(model=embedding_model, input="")
        check(False, "an empty input must fail")
    except openai.BadRequestError as e:
        check(e.param == "input", f"param of {e}")
    try:
        client.embeddings.create(model="no-such-model", input="a")
        check(False, "an unknown embedding model must fail")
    except openai.NotFoundError:
        pass

parts = "models, chat (stream and not), completions" + (", embeddings (float and base64)" if embedding_model else "")
print(f"openai-python {openai.__version__}: {parts}: ok")
