#!/usr/bin/env bash
# Fuzzing (RELIABILITY.md, suite 1): cargo-fuzz / libFuzzer targets in fuzz/.
#
#   scripts/fuzz.sh --ci            # CI subset: config, sidecar, audit, ids for FUZZ_SECS (default 60) s each
#   scripts/fuzz.sh --long          # every target (media included) for FUZZ_SECS (default 3600) s each
#   scripts/fuzz.sh --long media    # one target
#   scripts/fuzz.sh --build         # build only
#
# Works on stable Rust (1.95): coverage instrumentation (sancov) needs no nightly flag, so the
# targets are built with `--sanitizer none` (libFuzzer still catches panics, hangs via
# -timeout, and memory via -rss_limit_mb=2048). For AddressSanitizer set FUZZ_SANITIZER=address:
# that needs nightly, or RUSTC_BOOTSTRAP=1 on stable (set here when it is asked for).
#
# Corpora: fuzz/seeds/TARGET (committed) and, for media, tests/corpus/seeds; the growing
# corpus lives in fuzz/target/corpus/TARGET (ignored). Crashes land in fuzz/artifacts/TARGET;
# the script exits non-zero if any target found one.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

mode=${1:---ci}
shift || true
case "$mode" in
  --ci) secs=${FUZZ_SECS:-60}; default_targets=(config sidecar audit ids) ;;
  --long) secs=${FUZZ_SECS:-3600}; default_targets=(config sidecar audit ids media) ;;
  --build) secs=0; default_targets=(config sidecar audit ids media) ;;
  *) echo "usage: scripts/fuzz.sh [--ci|--long|--build] [TARGET...]" >&2; exit 2 ;;
esac
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${default_targets[@]}")

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: cargo-fuzz missing: run scripts/setup.sh (cargo install cargo-fuzz --locked)" >&2
  exit 3
fi
sanitizer=${FUZZ_SANITIZER:-none}
if [ "$sanitizer" != none ]; then
  export RUSTC_BOOTSTRAP=1
fi
# Many codegen units: the instrumented build of every dependency is the slow part.
build_flags=(--release --sanitizer "$sanitizer" --codegen-units 16)

say() { printf 'fuzz: %s\n' "$*" >&2; }

t0=$(date +%s)
for t in "${targets[@]}"; do
  cargo fuzz build "${build_flags[@]}" "$t"
done
say "built ${targets[*]} in $(( $(date +%s) - t0 )) s"
[ "$mode" = --build ] && exit 0

failed=()
for t in "${targets[@]}"; do
  corpus=fuzz/target/corpus/$t
  mkdir -p "$corpus" "fuzz/artifacts/$t"
  seeds=(fuzz/seeds/"$t")
  extra=()
  case "$t" in
    media)
      seeds=(tests/corpus/seeds)
      # Media files are larger; each input runs a real GStreamer pipeline.
      extra=(-max_len=131072 -timeout=60)
      ;;
    *) extra=(-max_len=8192 -timeout=10) ;;
  esac
  say "$t: ${secs} s"
  if ! cargo fuzz run "${build_flags[@]}" "$t" "$corpus" "${seeds[@]}" -- \
      -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 "${extra[@]}" \
      2> "fuzz/target/$t.log"; then
    failed+=("$t")
    tail -n 40 "fuzz/target/$t.log" >&2
  else
    grep -E '^stat::number_of_executed_units|^Done|^#[0-9]+.*DONE' "fuzz/target/$t.log" | sed "s/^/fuzz: $t: /" >&2 || true
  fi
done
say "done in $(( $(date +%s) - t0 )) s"
if [ ${#failed[@]} -gt 0 ]; then
  say "crashes in: ${failed[*]} (inputs in fuzz/artifacts/)"
  exit 1
fi
