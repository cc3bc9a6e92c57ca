#!/usr/bin/env bash
# Makes a static-camera benchmark clip from the bundled 720p sample: its first frame held for
# 8 s at 30 fps (x264 slow, CRF 20, as samples/faces_sizes.mp4), with the ground truth of that
# frame's faces on every frame. Usage: scripts/make_static_clip.sh [OUT_DIR]  (default /tmp/static)
# Then: target/release/obscura bench OUT_DIR/static.mp4 --runs 5
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/static}
mkdir -p "$out"
ffmpeg -y -loglevel error -i samples/faces_sizes.mp4 -vframes 1 -f image2 "$out/frame0.png"
ffmpeg -y -loglevel error -loop 1 -framerate 30 -i "$out/frame0.png" -t 8 -c:v libx264 \
  -preset slow -crf 20 -pix_fmt yuv420p -profile:v main -g 60 -bf 2 "$out/static.mp4"
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
g = json.load(open('samples/faces_sizes.gt.json'))
faces = []
for f in g['faces']:
    first = [b for b in f['boxes'] if b[0] == 0][0]
    faces.append({**f, 'boxes': [[i] + first[1:] for i in range(g['frames'])]})
json.dump({**g, 'video': 'static.mp4', 'faces': faces, 'speech': []},
          open(f'{out}/static.gt.json', 'w'), separators=(',', ':'))
PY
echo "$out/static.mp4"
