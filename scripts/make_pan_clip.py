#!/usr/bin/env python3
"""Builds samples/composite_pan.mp4 + .gt.json: a camera panning diagonally, at a speed that is
not a whole number of pixels per frame, over the 12 faces (160 down to 12 px) of
samples/images/composite_faces.png. It tests that the zoom pass follows a real pan (sub-pixel
motion, re-sampled pixels, both axes) without losing faces.

  python3 scripts/make_pan_clip.py

640x360, 25 fps, 160 frames (6.4 s), H.264 (x264, CRF 23, GOP 50) + silent AAC 16 kHz mono,
encoded with GStreamer (gst-launch-1.0; no ffmpeg needed). Frame i shows the photo through a
640x360 window whose top-left corner moves from (8, 20) to (312, 160), re-sampled bilinearly
(so a frame's pixels are never an exact copy of the last one's). Needs numpy and pillow.
Deterministic: same inputs, same pixels (the encoder's output may differ by version).
"""
import json, os, subprocess
import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLES = os.path.join(HERE, '..', 'samples')
W, H, FPS, N = 640, 360, 25, 160
START, END = (8.0, 20.0), (312.0, 160.0)

def main():
    photo = Image.open(os.path.join(SAMPLES, 'images', 'composite_faces.png')).convert('RGB')
    faces = json.load(open(os.path.join(SAMPLES, 'images', 'composite_faces.json')))['faces']
    out = os.path.join(SAMPLES, 'composite_pan.mp4')
    enc = subprocess.Popen([
        'gst-launch-1.0', '-q', '-e',
        'fdsrc', 'fd=0', '!', 'rawvideoparse', f'width={W}', f'height={H}', 'format=rgb',
        f'framerate={FPS}/1', '!', 'videoconvert', '!', 'video/x-raw,format=I420', '!',
        'x264enc', 'speed-preset=slow', 'pass=quant', 'quantizer=23', f'key-int-max={2 * FPS}',
        'bframes=2', '!', 'video/x-h264,profile=main', '!', 'h264parse', '!', 'mux.',
        'audiotestsrc', 'wave=silence', 'samplesperbuffer=640', f'num-buffers={N}', '!',
        'audio/x-raw,rate=16000,channels=1', '!', 'audioconvert', '!', 'avenc_aac', '!',
        'aacparse', '!', 'mux.', 'mp4mux', 'name=mux', 'faststart=true', '!', 'filesink',
        f'location={out}'], stdin=subprocess.PIPE)
    gt_faces = [{'id': k + 1, 'source': f['source'], 'width_px': f['face_width_px'], 'boxes': []}
                for k, f in enumerate(faces)]
    for i in range(N):
        t = i / (N - 1)
        x0 = START[0] + (END[0] - START[0]) * t
        y0 = START[1] + (END[1] - START[1]) * t
        frame = photo.transform((W, H), Image.AFFINE, (1, 0, x0, 0, 1, y0), resample=Image.BILINEAR)
        enc.stdin.write(np.asarray(frame).tobytes())
        for k, f in enumerate(faces):
            x1, y1, x2, y2 = f['box']
            gt_faces[k]['boxes'].append([i, round(x1 - x0, 1), round(y1 - y0, 1),
                                         round(x2 - x1, 1), round(y2 - y1, 1)])
    enc.stdin.close()
    assert enc.wait() == 0
    gt = {'video': 'composite_pan.mp4', 'width': W, 'height': H, 'fps': FPS, 'frames': N,
          'note': f'frame i = composite_faces.png through a {W}x{H} window at '
                  f'{START} + ({END[0] - START[0]}, {END[1] - START[1]}) * i/{N - 1}; '
                  'boxes [frame,x,y,w,h] unclipped',
          'faces': gt_faces, 'speech': []}
    json.dump(gt, open(os.path.join(SAMPLES, 'composite_pan.gt.json'), 'w'), separators=(',', ':'))
    print(out, os.path.getsize(out))

if __name__ == '__main__':
    main()
