# The two commands a new user needs: `make serve` and `make test`.
# Each runs the idempotent setup first (software Vulkan where no GPU, models).
CARGO ?= cargo

.PHONY: setup build serve test bench reference

setup:
	bash scripts/setup.sh

build: setup
	$(CARGO) build --release

serve: build
	./target/release/wgserve generate --chat --prompt "Explain in two sentences why the sky is blue."

test: setup
	$(CARGO) test --release -- --test-threads=1

bench: build
	./target/release/wgserve bench

reference:
	bash scripts/make_reference.sh
