#!/usr/bin/env python3
"""Builds the bundled sample clips and their ground truth from the vetted photos and audio in
../shared/media (see samples/README.md for provenance and licenses).

  python3 scripts/make_samples.py [SHARED_MEDIA_DIR]

Needs: numpy, pillow (pip) and ffmpeg (Debian). Deterministic: same inputs, same files.

Outputs (in samples/):
  city_pan.mp4 + city_pan.gt.json          640x360 12 fps 14.09 s, ~17 faces 12-40 px, speech audio
  faces_sizes.mp4 + faces_sizes.gt.json    1280x720 30 fps 8 s, 10 faces 12-120 px entering and
                                           leaving the frame, speech audio
"""
import json, os, shutil, subprocess, sys
import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, '..', 'samples')
MEDIA = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, '..', '..', 'shared', 'media')
IMG = os.path.join(MEDIA, 'images')
AUD = os.path.join(MEDIA, 'audio')

def iou(a, b):
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0])); iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    i = ix * iy
    return i / ((a[2]-a[0])*(a[3]-a[1]) + (b[2]-b[0])*(b[3]-b[1]) - i)

# ---------------------------------------------------------------- city_pan
def city_boxes():
    """Reference faces of city.jpg: CenterFace (thr 0.5) and YuNet (thr 0.6) boxes from
    expected_detections.json, merged (mean) where they overlap (IoU > 0.3), kept otherwise."""
    exp = json.load(open(os.path.join(IMG, 'expected_detections.json')))['city.jpg']
    cf = [b[:4] for b in exp['centerface_dynamic.onnx thr=0.5']]
    yn = [b[:4] for b in exp['face_detection_yunet_2023mar.onnx thr=0.6']]
    out, used = [], set()
    for c in cf:
        best = max(range(len(yn)), key=lambda j: iou(c, yn[j]))
        if iou(c, yn[best]) > 0.3 and best not in used:
            used.add(best); out.append([(c[k] + yn[best][k]) / 2 for k in range(4)])
        else:
            out.append(c)
    out += [yn[j] for j in range(len(yn)) if j not in used]
    return out

def make_city():
    src = os.path.join(MEDIA, 'video', 'faces_speech_city.mp4')
    shutil.copyfile(src, os.path.join(OUT, 'city_pan.mp4'))
    fps, n = 12, 169
    faces = []
    for k, b in enumerate(city_boxes()):
        boxes = []
        for i in range(n):
            x0, y0 = round(160 * i / (n - 1)), 60
            boxes.append([i, round(b[0] - x0, 1), round(b[1] - y0, 1), round(b[2] - b[0], 1), round(b[3] - b[1], 1)])
        faces.append({'id': k + 1, 'source': 'city.jpg', 'width_px': round(b[2] - b[0], 1), 'boxes': boxes})
    gt = {'video': 'city_pan.mp4', 'width': 640, 'height': 360, 'fps': fps, 'frames': n,
          'note': 'frame i = city.jpg cropped at x0=round(160*i/168), y0=60; boxes [frame,x,y,w,h] unclipped',
          'faces': faces, 'speech': [[1.236, 7.762], [10.351, 12.874]]}
    json.dump(gt, open(os.path.join(OUT, 'city_pan.gt.json'), 'w'), separators=(',', ':'))

# ---------------------------------------------------------------- faces_sizes
SRC = {  # face boxes (x1,y1,x2,y2) in the source photos, as in make_composite.py
    'grace_hopper.jpg': (176, 126, 356, 334),
    'astronaut.png': (180, 60, 270, 176),
    'camera.png': (200, 115, 258, 198),
}
W, H, FPS, N = 1280, 720, 30, 240
# (source, face width, lane y of the face top, x at t=0 and x at t=1 of the face's left edge)
# x outside [0, W) means outside the frame: faces enter and leave.
PATHS = [
    ('grace_hopper.jpg', 120, 60, -220, 420),     # enters from the left
    ('astronaut.png', 96, 70, 980, 1400),         # leaves on the right
    ('camera.png', 64, 330, 1330, -100),          # crosses right to left
    ('grace_hopper.jpg', 48, 150, 640, 800),
    ('camera.png', 40, 500, -60, 640),            # enters from the left
    ('astronaut.png', 32, 510, 1080, 1300),       # leaves on the right
    ('grace_hopper.jpg', 24, 640, 200, 900),
    ('astronaut.png', 20, 650, 1240, 980),
    ('grace_hopper.jpg', 16, 270, 700, 760),
    ('astronaut.png', 12, 450, 560, 660),
]

def face_crop(src, fw):
    im = Image.open(os.path.join(IMG, src)).convert('RGB')
    x1, y1, x2, y2 = SRC[src]; w, h = x2 - x1, y2 - y1
    mx, my = 0.5 * w, 0.5 * h
    cx1, cy1 = max(0, int(x1 - mx)), max(0, int(y1 - my))
    cx2, cy2 = min(im.width, int(x2 + mx)), min(im.height, int(y2 + my))
    s = fw / w
    crop = im.crop((cx1, cy1, cx2, cy2))
    crop = crop.resize((max(1, round(crop.width * s)), max(1, round(crop.height * s))), Image.LANCZOS)
    # Offset of the face box inside the crop, and its size.
    return crop, ((x1 - cx1) * s, (y1 - cy1) * s, w * s, h * s)

def make_sizes():
    bg = Image.open(os.path.join(IMG, 'coffee.png')).convert('RGB').resize((W, H), Image.BICUBIC)
    bg = np.asarray(bg).astype(np.float32)
    # Darken and add a gentle gradient so the picture has texture everywhere but no faces.
    yy, xx = np.mgrid[0:H, 0:W]
    bg = np.clip(bg * 0.8 + 20 * np.sin(xx / 97.0)[..., None] + 10 * np.cos(yy / 53.0)[..., None], 0, 255)
    bg = Image.fromarray(bg.astype(np.uint8))
    crops = [face_crop(s, fw) for s, fw, _, _, _ in PATHS]
    faces = [{'id': k + 1, 'source': PATHS[k][0], 'width_px': PATHS[k][1], 'boxes': []} for k in range(len(PATHS))]
    wav = os.path.join(AUD, 'speech_en-us_male_160wpm.wav')
    p = subprocess.Popen(['ffmpeg', '-y', '-loglevel', 'error', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', f'{W}x{H}',
                          '-r', str(FPS), '-i', '-', '-i', wav, '-filter_complex', '[1:a]apad=whole_dur=8[a]', '-map', '0:v', '-map', '[a]',
                          '-c:v', 'libx264', '-preset', 'slow', '-crf', '20', '-pix_fmt', 'yuv420p', '-profile:v', 'main',
                          '-g', '60', '-bf', '2', '-c:a', 'aac', '-b:a', '64k', '-ar', '16000', '-ac', '1', '-t', str(N / FPS),
                          '-movflags', '+faststart', os.path.join(OUT, 'faces_sizes.mp4')], stdin=subprocess.PIPE)
    # Paste large faces first so that small faces are never hidden behind a larger crop.
    order = sorted(range(len(PATHS)), key=lambda k: -PATHS[k][1])
    for i in range(N):
        t = i / (N - 1)
        frame = bg.copy()
        for k in order:
            src, fw, y, xa, xb = PATHS[k]
            crop, (ox, oy, fw_, fh_) = crops[k]
            fx = xa + (xb - xa) * t  # face box left edge
            px, py = int(round(fx - ox)), int(round(y - oy))
            frame.paste(crop, (px, py))
            box = [px + ox, py + oy, fw_, fh_]
            faces[k]['boxes'].append([i] + [round(v, 1) for v in box])
        p.stdin.write(np.asarray(frame).tobytes())
    p.stdin.close(); rc = p.wait()
    assert rc == 0, rc
    gt = {'video': 'faces_sizes.mp4', 'width': W, 'height': H, 'fps': FPS, 'frames': N,
          'note': 'boxes [frame,x,y,w,h] unclipped; faces pasted largest first; crops include 50% context',
          'faces': faces, 'speech': [[0.5, 7.23]]}
    json.dump(gt, open(os.path.join(OUT, 'faces_sizes.gt.json'), 'w'), separators=(',', ':'))

if __name__ == '__main__':
    os.makedirs(OUT, exist_ok=True)
    make_city()
    make_sizes()
    for f in sorted(os.listdir(OUT)):
        print(f, os.path.getsize(os.path.join(OUT, f)))
