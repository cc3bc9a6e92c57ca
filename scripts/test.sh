#!/usr/bin/env bash
# Runs every test: sets up what the tests need (scripts/setup.sh), then the whole suite
# against real GStreamer pipelines and real ONNX models.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --no-build
export PATH="$HOME/.cargo/bin:$PATH"
cargo fmt --all -- --check
cargo clippy --release --locked --all-targets -- -D warnings
cargo test --release --locked "$@"
