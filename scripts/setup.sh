#!/usr/bin/env bash
# Installs what Obscura needs on Debian 12 and builds it (idempotent; safe to re-run):
#   - GStreamer 1.22 and its plugins (apt)
#   - nats-server (apt; the JetStream broker the daemon tests start)
#   - the ONNX Runtime shared library, from the `onnxruntime` PyPI wheel, into .deps/
#   - s3s-fs and cargo-fuzz (cargo install) for the storage tests and the fuzz targets
#   - the release build (cargo build --release --locked)
# Usage: scripts/setup.sh [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."

ORT_VERSION=1.31.1
ORT_LIB="libonnxruntime.so.${ORT_VERSION}"
ORT_SHA256=fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3
DEPS=.deps/onnxruntime

APT_PACKAGES=(
  pkg-config ca-certificates python3 python3-pip g++
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev
  libgstrtspserver-1.0-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-tools gstreamer1.0-rtsp
  nats-server
)

say() { printf 'setup: %s\n' "$*" >&2; }

sudo_if_needed() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# --- apt packages ---------------------------------------------------------------------------
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${#missing[@]} Debian packages: ${missing[*]}"
  sudo_if_needed apt-get update -q
  DEBIAN_FRONTEND=noninteractive sudo_if_needed apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  say "Debian packages present"
fi

# --- Rust -----------------------------------------------------------------------------------
if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    say "cargo not found: installing Rust 1.95 with rustup (https://rustup.rs)"
    command -v curl >/dev/null 2>&1 || sudo_if_needed apt-get install -y -q --no-install-recommends curl
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain 1.95.0
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi

# --- s3s-fs: the S3-compatible server the storage tests start (a real server, not a mock) ----
if ! command -v s3s-fs >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/s3s-fs" ]; then
  say "installing s3s-fs 0.14.1 (cargo install; newer versions need rustc 1.96)"
  cargo install s3s-fs@0.14.1 --features binary --quiet
else
  say "s3s-fs present"
fi

# --- cargo-fuzz: drives the fuzz targets of scripts/fuzz.sh (RELIABILITY.md) on stable Rust -----
if ! cargo fuzz --version >/dev/null 2>&1; then
  say "installing cargo-fuzz 0.13.2 (cargo install --locked)"
  cargo install cargo-fuzz@0.13.2 --locked --quiet
else
  say "cargo-fuzz present"
fi

# --- ONNX Runtime (the wheel's library; ort loads it at run time) ----------------------------
have_ort() {
  [ -f "$DEPS/$ORT_LIB" ] && echo "$ORT_SHA256  $DEPS/$ORT_LIB" | sha256sum -c --status
}
if have_ort; then
  say "ONNX Runtime $ORT_VERSION present in $DEPS"
else
  say "fetching ONNX Runtime $ORT_VERSION (PyPI wheel onnxruntime==$ORT_VERSION)"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --platform manylinux_2_28_x86_64 --python-version 3.11 \
    "onnxruntime==${ORT_VERSION}" -d "$tmp"
  mkdir -p "$DEPS"
  python3 - "$tmp" "$DEPS" "$ORT_LIB" <<'PY'
import glob, sys, zipfile
tmp, deps, lib = sys.argv[1:]
wheel = glob.glob(f"{tmp}/onnxruntime-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    data = z.read(f"onnxruntime/capi/{lib}")
with open(f"{deps}/{lib}", "wb") as f:
    f.write(data)
PY
  chmod 0755 "$DEPS/$ORT_LIB"
  have_ort || { say "ONNX Runtime library checksum mismatch"; exit 1; }
  say "installed $DEPS/$ORT_LIB"
fi

# --- build ----------------------------------------------------------------------------------
if [ "${1:-}" != "--no-build" ]; then
  say "building (release)"
  cargo build --release --locked
  ./target/release/obscura validate >&2
fi
