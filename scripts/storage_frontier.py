#!/usr/bin/env python3
"""Issue #30 storage frontier, one point: `storage_frontier.py INPUT NAME '{"preset":"superfast","crf":20}'`.

Redacts INPUT with only an [encode] section (the JSON's keys), then prints one JSON line: output
bytes / input bytes (whole files), PSNR and SSIM (7x7 box windows) of the luma outside the
sidecar's face boxes (each blanked at twice its size) against the decoded input, and the redact
process's user+sys CPU per frame. Appends the line to $OUT_DIR/results.jsonl. Needs numpy and
imageio_ffmpeg (for an ffmpeg binary)."""
import json, os, subprocess, sys, numpy as np, resource, time
import imageio_ffmpeg
FF = imageio_ffmpeg.get_ffmpeg_exe()
OBS = os.environ.get("OBSCURA", "target/release/obscura")
OUT = os.environ.get("OUT_DIR", "/tmp/storage_frontier")

def dims(path):
    out = subprocess.run([FF, "-hide_banner", "-i", path], capture_output=True, text=True).stderr
    import re
    m = re.search(r"Video: .*?, (\d{2,5})x(\d{2,5})", out)
    return int(m.group(1)), int(m.group(2))

def frames(path, w, h):
    p = subprocess.Popen([FF, "-v", "error", "-i", path, "-f", "rawvideo", "-pix_fmt", "gray", "-"], stdout=subprocess.PIPE)
    n = w * h
    while True:
        b = p.stdout.read(n)
        if len(b) < n:
            break
        yield np.frombuffer(b, np.uint8).reshape(h, w)
    p.wait()

def box(x, r=3):
    # mean over (2r+1)^2 windows, valid region only
    c = np.cumsum(np.cumsum(np.pad(x, ((1, 0), (1, 0))), 0), 1)
    k = 2 * r + 1
    return (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / (k * k)

def ssim_map(a, b):
    a = a.astype(np.float64); b = b.astype(np.float64)
    C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    ma, mb = box(a), box(b)
    va = box(a * a) - ma * ma; vb = box(b * b) - mb * mb; cab = box(a * b) - ma * mb
    return ((2 * ma * mb + C1) * (2 * cab + C2)) / ((ma * ma + mb * mb + C1) * (va + vb + C2))

def nonface_psnr(orig, out, sidecar):
    w, h = dims(orig)
    boxes = {}
    try:
        sc = json.load(open(sidecar))
        for t in sc.get("faces", {}).get("tracks", []):
            for b in t.get("boxes", []):
                boxes.setdefault(b["frame"], []).append(b["box"])
    except Exception as e:
        print("sidecar:", e, file=sys.stderr)
    se = 0.0; cnt = 0; ss = 0.0; scnt = 0; i = 0; masked = 0
    for a, b in zip(frames(orig, w, h), frames(out, w, h)):
        m = np.ones((h, w), bool)
        for (x, y, bw, bh) in boxes.get(i, []):
            cx, cy = x + bw / 2, y + bh / 2
            x0, x1 = int(max(0, cx - bw)), int(min(w, cx + bw + 1))
            y0, y1 = int(max(0, cy - bh)), int(min(h, cy + bh + 1))
            m[y0:y1, x0:x1] = False
        sm = ssim_map(a, b)[m[3:-3, 3:-3]]
        ss += float(sm.sum()); scnt += sm.size
        d = (a.astype(np.int32) - b.astype(np.int32))[m]
        se += float((d * d).sum()); cnt += d.size; masked += m.size - m.sum(); i += 1
    mse = se / max(cnt, 1)
    return (10 * np.log10(255 ** 2 / mse) if mse > 0 else 99.0), i, masked / max(i * w * h, 1), ss / max(scnt, 1)

def main():
    inp, name, enc = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    d = OUT; os.makedirs(d, exist_ok=True)
    base = os.path.splitext(os.path.basename(inp))[0]
    out = f"{d}/{base}.{name}.mp4"
    cfg = f"{d}/{base}.{name}.toml"
    with open(cfg, "w") as f:
        f.write("[encode]\n")
        for k, v in enc.items():
            f.write(f"{k} = {json.dumps(v)}\n")
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    subprocess.run([OBS, "redact", inp, "-o", out, "--config", cfg, "--no-progress"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    wall = time.time() - t0
    psnr, n, masked, ssim = nonface_psnr(inp, out, out + ".json")
    ib, ob = os.path.getsize(inp), os.path.getsize(out)
    rec = dict(input=base, cfg=name, enc=enc, in_bytes=ib, out_bytes=ob, ratio=round(ob / ib, 3),
               psnr_nonface=round(psnr, 2), ssim_nonface=round(ssim, 4), frames=n, masked=round(masked, 4), cpu_s=round(cpu, 2),
               cpu_ms_frame=round(cpu * 1000 / max(n, 1), 1), wall_s=round(wall, 1))
    print(json.dumps(rec))
    with open(f"{OUT}/results.jsonl", "a") as f:
        f.write(json.dumps(rec) + "\n")

if __name__ == "__main__":
    main()
