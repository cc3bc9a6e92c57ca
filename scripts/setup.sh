#!/usr/bin/env bash
# Installs what Obscura needs on Debian 12 and builds it (idempotent; safe to re-run):
#   - GStreamer 1.22 and its plugins (apt)
#   - nats-server (apt; the JetStream broker the daemon tests start)
#   - the ONNX Runtime shared library, from the `onnxruntime` PyPI wheel, into .deps/
#   - s3s-fs and cargo-fuzz (cargo install) for the storage tests and the fuzz targets
#   - the release build (cargo build --release --locked)
#   - with --gpu, also the `onnxruntime-gpu` wheel's libraries (CUDA and TensorRT execution
#     providers) into .deps/onnxruntime-gpu/ (255 MB download; for GPU hosts)
# Usage: scripts/setup.sh [--no-build] [--gpu]
set -euo pipefail
cd "$(dirname "$0")/.."

ORT_VERSION=1.31.1
ORT_LIB="libonnxruntime.so.${ORT_VERSION}"
ORT_SHA256=fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3
DEPS=.deps/onnxruntime
GPU_DEPS=.deps/onnxruntime-gpu
# sha256 of each library taken from onnxruntime_gpu-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl
GPU_LIBS=(
  "libonnxruntime.so.${ORT_VERSION} 5104254339ecadae808da771bd0b63b240f0dbd466514234905e54372435c303"
  "libonnxruntime_providers_shared.so 086ec1d5388f64153d9c63470d126693db9a182c8ce236d3a1119068471b8a0d"
  "libonnxruntime_providers_cuda.so d5290158115fa5569a3fe8f1f4037ee9b0e86658a96e52f852bbb7039aa88137"
  "libonnxruntime_providers_tensorrt.so 1882ee49fdb0e6fc2d272b00cfaf9a3310bf8580a34385c0eec4d82014ea172e"
)
BUILD=1
GPU=0
for arg in "$@"; do
  case "$arg" in
    --no-build) BUILD=0 ;;
    --gpu) GPU=1 ;;
    *) echo "setup: unknown option $arg (use --no-build, --gpu)" >&2; exit 2 ;;
  esac
done

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

# --- numpy and pillow (pip): the Python clip generators, e.g. scripts/make_stress_corpus.py ---
if python3 -c 'import numpy, PIL' >/dev/null 2>&1; then
  say "numpy and pillow present"
else
  say "installing numpy and pillow for python3 (pip)"
  python3 -m pip install --quiet numpy pillow 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages numpy pillow
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

# --- ONNX Runtime with the CUDA/TensorRT execution providers (GPU hosts, --gpu) --------------
have_gpu_ort() {
  for entry in "${GPU_LIBS[@]}"; do
    set -- $entry
    [ -f "$GPU_DEPS/$1" ] && echo "$2  $GPU_DEPS/$1" | sha256sum -c --status || return 1
  done
}
if [ "$GPU" = 1 ]; then
  if have_gpu_ort; then
    say "ONNX Runtime $ORT_VERSION (GPU build) present in $GPU_DEPS"
  else
    say "fetching ONNX Runtime $ORT_VERSION GPU build (PyPI wheel onnxruntime-gpu==$ORT_VERSION, 255 MB)"
    gtmp=$(mktemp -d)
    python3 -m pip download --quiet --no-deps --only-binary=:all: \
      --platform manylinux_2_28_x86_64 --python-version 3.11 \
      "onnxruntime-gpu==${ORT_VERSION}" -d "$gtmp"
    mkdir -p "$GPU_DEPS"
    names=()
    for entry in "${GPU_LIBS[@]}"; do names+=("${entry%% *}"); done
    python3 - "$gtmp" "$GPU_DEPS" "${names[@]}" <<'PY'
import glob, sys, zipfile
tmp, deps, *libs = sys.argv[1:]
wheel = glob.glob(f"{tmp}/onnxruntime_gpu-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    for lib in libs:
        with open(f"{deps}/{lib}", "wb") as f:
            f.write(z.read(f"onnxruntime/capi/{lib}"))
PY
    chmod 0755 "$GPU_DEPS"/*.so*
    rm -rf "$gtmp"
    have_gpu_ort || { say "ONNX Runtime GPU library checksum mismatch"; exit 1; }
  fi
  say "GPU build in $GPU_DEPS: run with OBSCURA_ORT_LIB=$PWD/$GPU_DEPS --device cuda (or auto); it needs the NVIDIA driver and the CUDA 13 runtime and cuBLAS (libcudart.so.13, libcublas.so.13, libcublasLt.so.13, libcurand.so.10) on the library path"
fi

# --- build ----------------------------------------------------------------------------------
if [ "$BUILD" = 1 ]; then
  say "building (release)"
  cargo build --release --locked
  ./target/release/obscura validate >&2
fi
