# The two commands a new user needs: `make serve` and `make test`.
# Each runs the idempotent setup first (Rust check, software Vulkan where no
# GPU, models). Everything builds with the release profile, so `make test`,
# `make serve` and `make bench` share one set of compiled artifacts.
CARGO ?= cargo
# Where cargo puts the binary: $CARGO_TARGET_DIR if set, else ./target.
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
WGSERVE := $(TARGET_DIR)/release/wgserve
PROMPT ?= Explain in two sentences why the sky is blue.

.PHONY: setup setup-test build lint test serve generate bench bench-embeddings bench-llamacpp soak reference embedding-reference tokenizer-reference gemma3-reference fuzz

setup:
	bash scripts/setup.sh

# What only the tests need (a Python venv, Node.js, Chromium) on top.
setup-test:
	bash scripts/setup.sh --test

build: setup
	$(CARGO) build --release

lint: setup-test
	$(CARGO) fmt --check
	$(CARGO) clippy --release --all-targets -- -D warnings

# One test at a time: each GPU test already uses every core through lavapipe.
test: lint
	$(CARGO) test --release -- --test-threads=1

# A long fuzz run: make fuzz TARGET=gguf SECONDS=600 (targets: gguf,
# safetensors, tokenizer, http, all). Failing inputs land in
# target/fuzz/failures/<target>/; `make test` runs a short seeded run.
TARGET ?= all
SECONDS ?= 60
fuzz: setup
	$(CARGO) run --release --example fuzz -- --target $(TARGET) --seconds $(SECONDS)

# The HTTP server with the default model; prints its URL once loaded.
# Extra flags: make serve SERVE_ARGS="--port 9000 --api-key KEY".
SERVE_ARGS ?=
serve: build
	$(WGSERVE) serve $(SERVE_ARGS)

# One chat prompt through the default model, streamed to stdout.
generate: build
	$(WGSERVE) generate --chat --prompt "$(PROMPT)"

bench: build
	$(WGSERVE) bench

# The soak run against a running server (`make serve` in another terminal):
# 1,000 requests at concurrency 32, valid, hung up on mid-stream and
# malformed; exits non-zero when a check fails.
# Other server or options: make soak SOAK_URL=http://HOST:PORT SOAK_ARGS="--seed 7".
SOAK_URL ?= http://127.0.0.1:8080
SOAK_ARGS ?=
soak: build
	$(WGSERVE) bench --url $(SOAK_URL) --soak $(SOAK_ARGS)

# Embedding throughput of the default embedding model.
bench-embeddings: build
	$(WGSERVE) bench --embeddings

# llama.cpp's CPU backend and wgserve side by side on the default model, in
# one run: llama-bench against `wgserve bench` (prompt 512, generation 64),
# then llama-server and `wgserve serve` under the same load client; prints
# figure | llama.cpp | wgserve | ratio and keeps it in .llamacpp/results/.
# The first run builds llama.cpp (from PyPI's llama-cpp-python sdist, cmake
# and ninja from PyPI) into .llamacpp/: minutes. Not part of `make test`.
bench-llamacpp: build
	WGSERVE=$(WGSERVE) bash scripts/bench-llamacpp.sh

# Regenerates tests/fixtures/smollm2_reference.json with HF transformers.
reference: setup
	bash scripts/make_reference.sh

# Regenerates tests/fixtures/minilm_reference.json with sentence-transformers.
embedding-reference: setup
	bash scripts/make_embedding_reference.sh

# Regenerates tests/fixtures/gemma3_tokenizer.json (Gemma 3's SentencePiece
# vocabulary, HF transformers); the Gemma GGUF comes from setup --test.
tokenizer-reference: setup-test
	bash scripts/make_sentencepiece_reference.sh

# Regenerates tests/fixtures/gemma3_reference.json (greedy tokens) and
# gemma3_chat_template.json (HF transformers reading the Gemma GGUF).
gemma3-reference: setup-test
	bash scripts/make_gemma3_reference.sh
