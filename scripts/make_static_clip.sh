#!/usr/bin/env bash
# Makes a static-camera benchmark clip from the bundled 720p sample: its first frame held for
# 8 s at 30 fps (x264 slow, constant quality 20), with the ground truth of that
# frame's faces on every frame. Usage: scripts/make_static_clip.sh [OUT_DIR]  (default /tmp/static)
# Then: target/release/obscura bench OUT_DIR/static.mp4 --runs 5
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/static}
mkdir -p "$out"
# GStreamer (what setup.sh installs; ffmpeg is not needed): the first decoded frame, repeated.
gst-launch-1.0 -q filesrc location="samples/faces_sizes.mp4" ! qtdemux ! h264parse ! avdec_h264 \
  ! videoconvert ! imagefreeze num-buffers=240 ! video/x-raw,framerate=30/1 \
  ! x264enc speed-preset=slow pass=qual quantizer=20 key-int-max=60 bframes=2 \
  ! video/x-h264,profile=main ! h264parse ! mp4mux ! filesink location="$out/static.mp4" 2>/dev/null
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
g = json.load(open('samples/faces_sizes.gt.json'))
faces = []
for f in g['faces']:
    first = [b for b in f['boxes'] if b[0] == 0]
    if first:  # faces that enter later are not in the held frame
        faces.append({**f, 'boxes': [[i] + first[0][1:] for i in range(g['frames'])]})
json.dump({**g, 'video': 'static.mp4', 'faces': faces, 'speech': []},
          open(f'{out}/static.gt.json', 'w'), separators=(',', ':'))
PY
echo "$out/static.mp4"
