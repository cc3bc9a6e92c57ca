#!/usr/bin/env python3
"""Issue #30, the encoder alone: `encoder_cpu.py INPUT REPS 'NAME|{"preset":"superfast","crf":20,"tune":"psnr","opts":"mbtree=1"}' ...`.

Encoder-only frontier: raw I420 of the input -> x264enc (GStreamer) per config; CPU user+sys (median of reps), bytes / input bytes, Y PSNR and SSIM of the encode against the decoded input."""
import json, os, subprocess, sys, resource, re, statistics
import imageio_ffmpeg
FF = imageio_ffmpeg.get_ffmpeg_exe()
D = os.environ.get("OUT_DIR", "/tmp/storage_frontier")
os.makedirs(D, exist_ok=True)
inp = sys.argv[1]; reps = int(sys.argv[2]); cfgs = sys.argv[3:]
base = os.path.splitext(os.path.basename(inp))[0]
info = subprocess.run([FF, "-hide_banner", "-i", inp], capture_output=True, text=True).stderr
w, h = map(int, re.search(r"Video: .*?, (\d{2,5})x(\d{2,5})", info).groups())
fps = re.search(r"([\d.]+) fps", info).group(1)
raw = f"{D}/{base}.yuv"
if not os.path.exists(raw):
    subprocess.run([FF, "-v", "error", "-i", inp, "-f", "rawvideo", "-pix_fmt", "yuv420p", raw], check=True)
n = os.path.getsize(raw) // (w * h * 3 // 2)
for c in cfgs:
    name, spec = c.split("|", 1); spec = json.loads(spec)
    props = [f"speed-preset={spec['preset']}", "pass=qual", f"quantizer={spec['crf']}", "bitrate=2048000",
             f"threads={spec.get('threads', 0)}"]
    if spec.get("tune"): props.append(f"psy-tune={spec['tune']}")
    if spec.get("opts"): props.append(f"option-string={spec['opts']}")
    out = f"{D}/enc_{base}_{name}.mp4"
    cpus = []
    for _ in range(reps):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(["gst-launch-1.0", "-q", "filesrc", f"location={raw}", "!", "rawvideoparse", f"width={w}", f"height={h}",
                        "format=i420", f"framerate={int(float(fps))}/1", "!", "x264enc", *props, "!", "h264parse", "!", "mp4mux", "!",
                        "filesink", f"location={out}"], check=True, stdout=subprocess.DEVNULL)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime))
    cpu = statistics.median(cpus)
    q = subprocess.run([FF, "-hide_banner", "-i", out, "-f", "rawvideo", "-framerate", fps, "-s", f"{w}x{h}", "-pix_fmt", "yuv420p", "-i", raw,
                        "-lavfi", "[0:v][1:v]psnr", "-f", "null", "-"], capture_output=True, text=True).stderr
    psnr = float(re.search(r"PSNR y:([\d.]+|inf)", q).group(1))
    q = subprocess.run([FF, "-hide_banner", "-i", out, "-f", "rawvideo", "-framerate", fps, "-s", f"{w}x{h}", "-pix_fmt", "yuv420p", "-i", raw,
                        "-lavfi", "[0:v][1:v]ssim", "-f", "null", "-"], capture_output=True, text=True).stderr
    ssim = float(re.search(r"SSIM Y:([\d.]+)", q).group(1))
    rec = dict(input=base, cfg=name, spec=spec, frames=n, enc_cpu_ms_frame=round(cpu * 1000 / n, 2), runs=[round(x*1000/n,2) for x in cpus],
               ratio=round(os.path.getsize(out) / os.path.getsize(inp), 3), psnr_y=psnr, ssim_y=ssim)
    print(json.dumps(rec), flush=True)
    open(f"{D}/encoder_cpu.jsonl", "a").write(json.dumps(rec) + "\n")
