#!/usr/bin/env bash
# Runs every test: sets up what the tests need (scripts/setup.sh), then the whole suite
# against real GStreamer pipelines and real ONNX models (the reliability suites included, see
# RELIABILITY.md), then a short run of each CI fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --no-build
export PATH="$HOME/.cargo/bin:$PATH"
cargo fmt --all -- --check
cargo clippy --release --locked --all-targets -- -D warnings
# The corrupt-input corpus: every second of its 518 inputs here (all: OBSCURA_CORPUS_EVERY=1).
export OBSCURA_CORPUS_EVERY=${OBSCURA_CORPUS_EVERY:-2}
cargo test --release --locked "$@"
# The CI subset of the fuzz targets (RELIABILITY.md, suite 1); the long runs: scripts/fuzz.sh --long.
FUZZ_SECS=${FUZZ_SECS:-30} scripts/fuzz.sh --ci
