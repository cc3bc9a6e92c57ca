#!/usr/bin/env bash
# Compare obscura with deface (PyPI, CenterFace) on the sample clips: speed and redaction quality.
#
# For each clip and each run it times, interleaved and back to back (so that background load on a
# shared machine hits all tools alike): deface with its defaults (plain `pip install deface`, i.e.
# the OpenCV DNN backend), `obscura redact` with its defaults, and deface with its defaults but
# with the optional onnxruntime backend installed (`pip install deface onnx onnxruntime`, which
# deface's "auto" backend then prefers). Each command runs under `/usr/bin/time` and
# `nice -n $NICE`. Afterwards it runs `obscura eval` on the run-1 output of each tool (deface's
# outputs are deterministic; obscura's leak count varied by a few boxes between runs). deface writes 640x368 for a 640x360 input (imageio-ffmpeg's macro_block_size=16
# resize); such an output is scaled back to the input size with ffmpeg (libx264 -crf 0) before
# `obscura eval`, which refuses outputs of another size.
#
# Prints a JSON summary on stdout (progress on stderr) and writes it to $WORK/summary.json.
#
# Environment (all optional):
#   RUNS=3                 runs per tool and clip (median wall is reported)
#   CLIPS="city_pan faces_sizes"   names of samples/NAME.mp4 with samples/NAME.gt.json
#   TOOLS="deface obscura deface-ort"   which tools, in the interleaving order
#   DEFACE_VENV=/tmp/deface-venv, DEFACE_ORT_VENV=/tmp/deface-ort-venv  (created when missing)
#   PIP_SPEC="deface==1.5.0 imageio==2.38.1 imageio-ffmpeg==0.8.1 numpy==2.4.6 opencv-python==5.0.0.93"
#   PIP_ORT_SPEC="onnx==1.23.2 onnxruntime==1.32.0"
#   OBSCURA=target/release/obscura, OBSCURA_MODELS=models, NICE=5, WORK=(new dir under /tmp)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OBSCURA=${OBSCURA:-$ROOT/target/release/obscura}
export OBSCURA_MODELS=${OBSCURA_MODELS:-$ROOT/models}
RUNS=${RUNS:-3}
CLIPS=${CLIPS:-"city_pan faces_sizes"}
TOOLS=${TOOLS:-"deface obscura deface-ort"}
NICE=${NICE:-5}
DEFACE_VENV=${DEFACE_VENV:-/tmp/deface-venv}
DEFACE_ORT_VENV=${DEFACE_ORT_VENV:-/tmp/deface-ort-venv}
PIP_SPEC=${PIP_SPEC:-"deface==1.5.0 imageio==2.38.1 imageio-ffmpeg==0.8.1 numpy==2.4.6 opencv-python==5.0.0.93"}
PIP_ORT_SPEC=${PIP_ORT_SPEC:-"onnx==1.23.2 onnxruntime==1.32.0"}
PYTHON=${PYTHON:-python3}
WORK=${WORK:-$(mktemp -d /tmp/bench_deface.XXXXXX)}
mkdir -p "$WORK"

log() { echo "[bench_deface] $*" >&2; }

for bin in /usr/bin/time ffmpeg ffprobe "$PYTHON"; do
    command -v "$bin" >/dev/null || { log "missing: $bin"; exit 2; }
done
[[ -x $OBSCURA ]] || { log "missing $OBSCURA (cargo build --release)"; exit 2; }

make_venv() { # DIR SPEC...
    local dir=$1; shift
    if [[ ! -x $dir/bin/deface ]]; then
        log "creating $dir: pip install $*"
        "$PYTHON" -m venv "$dir"
        "$dir/bin/pip" install -q --upgrade pip >&2
        # shellcheck disable=SC2068
        "$dir/bin/pip" install -q $@ >&2
    fi
}
[[ " $TOOLS " == *" deface "* ]] && make_venv "$DEFACE_VENV" $PIP_SPEC
[[ " $TOOLS " == *" deface-ort "* ]] && make_venv "$DEFACE_ORT_VENV" $PIP_SPEC $PIP_ORT_SPEC

# One timed run: TOOL CLIP RUN -> $WORK/CLIP.TOOL.RUN.{mp4,time,log}
run_one() {
    local tool=$1 clip=$2 run=$3
    local in=$ROOT/samples/$clip.mp4 out=$WORK/$clip.$tool.$run.mp4
    local t=$WORK/$clip.$tool.$run.time l=$WORK/$clip.$tool.$run.log
    rm -f "$out"
    case $tool in
        deface) cmd=("$DEFACE_VENV/bin/deface" "$in" -o "$out") ;;
        deface-ort) cmd=("$DEFACE_ORT_VENV/bin/deface" "$in" -o "$out") ;;
        obscura) cmd=("$OBSCURA" redact "$in" -o "$out" --json --no-progress) ;;
        *) log "unknown tool $tool"; exit 2 ;;
    esac
    # %e wall s, %U user s, %S sys s, %M max RSS KiB
    /usr/bin/time -f '%e %U %S %M' -o "$t" nice -n "$NICE" "${cmd[@]}" >"$l" 2>&1 \
        || { log "FAILED: ${cmd[*]} (see $l)"; tail -5 "$l" >&2; exit 1; }
    log "$clip $tool run $run: $(cat "$t") (wall user sys maxrssKiB)"
}

for clip in $CLIPS; do
    for run in $(seq 1 "$RUNS"); do
        for tool in $TOOLS; do run_one "$tool" "$clip" "$run"; done
    done
done

# Quality: obscura eval on run 1 of each tool.
for clip in $CLIPS; do
    in=$ROOT/samples/$clip.mp4
    size_in=$(ffprobe -v error -select_streams v:0 -show_entries stream=width,height -of csv=p=0 "$in")
    for tool in $TOOLS; do
        out=$WORK/$clip.$tool.1.mp4 ev=$out
        size_out=$(ffprobe -v error -select_streams v:0 -show_entries stream=width,height -of csv=p=0 "$out")
        if [[ $size_out != "$size_in" ]]; then
            ev=$WORK/$clip.$tool.1.rescaled.mp4
            log "$clip $tool: output is ${size_out/,/x}, input ${size_in/,/x}: scaling back for eval"
            ffmpeg -v error -y -i "$out" -vf "scale=${size_in/,/:}:flags=bicubic" -c:v libx264 -crf 0 -an "$ev"
            echo "${size_out/,/x}" >"$WORK/$clip.$tool.rescaled_from"
        fi
        "$OBSCURA" eval "$in" "$ev" --gt "$ROOT/samples/$clip.gt.json" >"$WORK/$clip.$tool.eval.json"
        log "$clip $tool eval done"
    done
done

# Versions
{
    [[ -x $DEFACE_VENV/bin/pip ]] && "$DEFACE_VENV/bin/pip" freeze | sed "s|^|deface ($DEFACE_VENV): |"
    [[ -x $DEFACE_ORT_VENV/bin/pip ]] && "$DEFACE_ORT_VENV/bin/pip" freeze | sed "s|^|deface-ort ($DEFACE_ORT_VENV): |"
    "$OBSCURA" --version | sed 's/^/obscura: /'
} >"$WORK/versions.txt" 2>/dev/null || true

WORK=$WORK ROOT=$ROOT CLIPS=$CLIPS TOOLS=$TOOLS RUNS=$RUNS NICE=$NICE "$PYTHON" - <<'EOF' | tee "$WORK/summary.json"
import json, os, statistics, subprocess
work, root = os.environ["WORK"], os.environ["ROOT"]
clips, tools, runs = os.environ["CLIPS"].split(), os.environ["TOOLS"].split(), int(os.environ["RUNS"])

def frames(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets",
                          "-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", path],
                         capture_output=True, text=True, check=True).stdout.strip()
    return int(out)

summary = {"runs": runs, "nice": int(os.environ["NICE"]), "nproc": os.cpu_count(),
           "loadavg_at_end": os.getloadavg(), "work": work, "clips": {}}
try:
    summary["versions"] = open(os.path.join(work, "versions.txt")).read().split("\n")
    summary["versions"] = [v for v in summary["versions"]
                           if any(k in v.split(": ")[-1].lower()
                                  for k in ("deface", "onnx", "opencv", "imageio", "numpy", "obscura"))]
except OSError:
    pass
for clip in clips:
    n = frames(os.path.join(root, "samples", clip + ".mp4"))
    c = summary["clips"][clip] = {"frames": n, "tools": {}}
    for tool in tools:
        rs = []
        for r in range(1, runs + 1):
            wall, user, sys_, rss = open(os.path.join(work, f"{clip}.{tool}.{r}.time")).read().split()[-4:]
            rs.append({"wall_s": float(wall), "cpu_s": round(float(user) + float(sys_), 2),
                       "max_rss_mib": round(int(rss) / 1024, 1)})
        med = statistics.median(r["wall_s"] for r in rs)
        ev = json.load(open(os.path.join(work, f"{clip}.{tool}.eval.json")))
        t = c["tools"][tool] = {
            "median_wall_s": med, "fps": round(n / med, 2),
            "median_cpu_s": statistics.median(r["cpu_s"] for r in rs),
            "max_rss_mib": max(r["max_rss_mib"] for r in rs),
            "runs": rs,
            "eval": {k: ev[k] for k in ("frames_input", "frames_output", "boxes", "redacted",
                                        "leak_rate", "outside_unchanged")},
            "leak_pct": round(100 * ev["leak_rate"], 2),
            "outside_unchanged_pct": round(100 * ev["outside_unchanged"], 2),
        }
        p = os.path.join(work, f"{clip}.{tool}.rescaled_from")
        if os.path.exists(p):
            t["eval_on_rescaled_output_from"] = open(p).read().strip()
    if "obscura" in c["tools"]:
        for d in ("deface", "deface-ort"):
            if d in c["tools"]:
                c[f"fps_ratio_obscura_over_{d}"] = round(c["tools"]["obscura"]["fps"] / c["tools"][d]["fps"], 2)
print(json.dumps(summary, indent=2))
EOF
