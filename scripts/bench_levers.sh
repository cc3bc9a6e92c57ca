#!/usr/bin/env bash
# Measures each throughput lever alone against the defaults with `obscura bench` on one clip
# and prints a Markdown table (the README's lever table). Usage:
#   scripts/bench_levers.sh [CLIP] [RUNS]        (default samples/faces_sizes.mp4, 3 runs)
# Each row is one `obscura bench --json` run (median of RUNS per mode). The CPU ratio
# (transcode-only CPU per frame / full CPU per frame) is steadier than fps on a shared machine.
set -euo pipefail
cd "$(dirname "$0")/.."
clip=${1:-samples/faces_sizes.mp4}
runs=${2:-3}
bin=target/release/obscura
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cfg() { printf '%b\n' "$2" > "$tmp/$1.toml"; echo "--config $tmp/$1.toml"; }
levers=(
  "defaults|"
  "detector input 448x256 (main pass)|--detect-size 448x256"
  "detector input 704x384 (main pass)|--detect-size 704x384"
  "main pass every 3rd frame (10 Hz; the default before)|--detect-every 3"
  "main pass every 2nd frame|--detect-every 2"
  "zoom pass every 120 frames|--zoom-every 120"
  "zoom pass at 1.75x|--zoom 1.75"
  "zoom pass at 1.5x|--zoom 1.5"
  "zoom pass off|--zoom off"
  "every zoom sweep over the whole frame (the behaviour before)|$(cfg zf1 '[detect]\nzoom_full_every = 1')"
  "zoom sweeps magnify all they look at (no first look at 1x; the behaviour before)|$(cfg zp0 '[detect]\nzoom_proposal_threshold = 0')"
  "zoom proposals from 0.2 (fewer magnified looks)|$(cfg zp2 '[detect]\nzoom_proposal_threshold = 0.2')"
  "batch 4 frames per ORT run|$(cfg b4 '[detect]\nbatch = 4')"
  "ORT intra-op threads 1|$(cfg t1 '[runtime]\nthreads = 1')"
  "x264 veryfast (--quality balanced)|--quality balanced"
  "--min-face 24 (no zoom pass)|--min-face 24"
  "defaults again (the spread between repeated runs)|"
)
echo "| lever | full fps | transcode fps | full/transcode (wall) | full/transcode (CPU) | CPU ms/frame full | leak |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for l in "${levers[@]}"; do
  name=${l%%|*}; args=${l#*|}
  # shellcheck disable=SC2086
  "$bin" bench "$clip" --runs "$runs" --concurrent 0 --batches 1 --json $args > "$tmp/r.json" 2>"$tmp/err" || { echo "| $name | failed: $(tail -1 "$tmp/err") |"; continue; }
  python3 - "$name" "$tmp/r.json" <<'PY'
import json, sys
name, path = sys.argv[1], sys.argv[2]
d = json.load(open(path))
leak = d.get("leak")
leak_s = f"{leak['leak_rate']*100:.2f}%" if leak else "-"
print(f"| {name} | {d['full_fps']:.1f} | {d['transcode_only_fps']:.1f} | {d['full_vs_transcode']*100:.0f}% | "
      f"{d['full_vs_transcode_cpu']*100:.0f}% | {d['cpu_ms_per_frame']['full']:.1f} | {leak_s} |")
PY
done
