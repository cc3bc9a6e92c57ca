#!/usr/bin/env python3
"""Soak test of `obscura daemon`: a simulated fleet for N minutes, with figures.

    scripts/soak.py [--minutes 10] [--streams 2] [--drop-every 20] [--out soak.json]

Starts real processes on loopback: `--streams` RTSP test cameras (the `rtsp_test_server`
example, serving samples/city_pan.mp4 in a loop), one daemon recording them in 10 s clips and
watching an inbox into which a unique copy of the sample is dropped every `--drop-every`
seconds. Samples the daemon's RSS, file descriptors and threads every 15 s. At the end it
drains the daemon (SIGTERM), lets a second daemon finish the backlog, and checks that every
dropped file and every recorded segment was committed or quarantined (0 lost).

Prints and writes a JSON summary: RSS growth per hour after a warm-up of a fifth of the run
(linear fit), fd and thread ranges, clips committed, lost. Build first:
`cargo build --release --examples --bins`.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(REPO, "target/release/obscura")
SERVER = os.path.join(REPO, "target/release/examples/rtsp_test_server")
SAMPLE = os.path.join(REPO, "samples/city_pan.mp4")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def metrics(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            out = {}
            for line in r.read().decode().splitlines():
                if line and not line.startswith("#"):
                    k, _, v = line.rpartition(" ")
                    out[k] = float(v)
            return out
    except OSError:
        return {}


def proc_sample(pid):
    with open(f"/proc/{pid}/status") as f:
        st = dict(l.split(":", 1) for l in f if ":" in l)
    rss_kb = int(st["VmRSS"].split()[0])
    threads = int(st["Threads"])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss_kb, fds, threads


def write_config(d, port, cams):
    streams = "".join(
        f'[[stream]]\ndevice = "cam-{i}"\nurl = "rtsp://127.0.0.1:{p}/cam"\nsegment = "10s"\n'
        for i, p in enumerate(cams)
    )
    devices = "".join(
        f'[devices.cam-{i}]\nregion = "eu"\naccount = "acct-1"\n' for i in range(len(cams))
    )
    text = f"""[daemon]
listen = "127.0.0.1:{port}"
workers = 1
state_dir = "{d}/state"
stable_secs = 0.5
[[inbox]]
path = "{d}/inbox"
{streams}
[regions.eu]
store = "file://{d}/store"
[devices.door-1]
region = "eu"
account = "acct-1"
{devices}
[paths]
quarantine = "{d}/quarantine"
audit = "{d}/audit.jsonl"
"""
    path = os.path.join(d, "obscura.toml")
    with open(path, "w") as f:
        f.write(text)
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--streams", type=int, default=2)
    ap.add_argument("--drop-every", type=float, default=20)
    ap.add_argument("--out", default="soak.json")
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="obscura-soak-")
    env = dict(os.environ, OBSCURA_MODELS=os.path.join(REPO, "models"))
    procs = []
    try:
        cams = []
        for _ in range(a.streams):
            p = free_port()
            procs.append(subprocess.Popen([SERVER, "--port", str(p), "--file", SAMPLE],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            cams.append(p)
        time.sleep(1)
        port = free_port()
        cfg = write_config(d, port, cams)
        os.makedirs(f"{d}/inbox/door-1", exist_ok=True)
        log = open(f"{d}/daemon.log", "w")
        daemon = subprocess.Popen([BIN, "daemon", "--config", cfg], env=env, stderr=log)
        t0 = time.time()
        end = t0 + a.minutes * 60
        samples, dropped, next_drop, next_sample = [], 0, t0, t0
        data = open(SAMPLE, "rb").read()
        while time.time() < end:
            now = time.time()
            if now >= next_drop:
                tmp = f"{d}/inbox/door-1/.d{dropped}.mp4"
                with open(tmp, "wb") as f:
                    f.write(data + f"soak{dropped}".encode())
                os.rename(tmp, f"{d}/inbox/door-1/d{dropped}.mp4")
                dropped += 1
                next_drop += a.drop_every
            if now >= next_sample:
                rss, fds, th = proc_sample(daemon.pid)
                m = metrics(port)
                samples.append({"t": round(now - t0, 1), "rss_kb": rss, "fds": fds, "threads": th,
                                "queue": m.get("obscura_queue_depth", 0),
                                "processed": m.get('obscura_clips_total{result="processed"}', 0)})
                next_sample += 15
            time.sleep(0.2)
        m = metrics(port)
        segments = sum(v for k, v in m.items() if k.startswith("obscura_stream_segments_total"))
        for p in procs:
            p.kill()
        daemon.send_signal(signal.SIGTERM)
        rc = daemon.wait(timeout=120)
        # A second daemon without cameras finishes the backlog (streams' last segments too).
        cfg2 = cfg + ".drain"
        with open(cfg) as f, open(cfg2, "w") as g:
            text = f.read()
            text = text.split("[[stream]]")[0] + "\n[regions.eu]" + text.split("[regions.eu]")[1]
            text = text.replace(f'path = "{d}/inbox"',
                                f'path = "{d}/inbox"\n[[inbox]]\npath = "{d}/state/streams"')
            g.write(text)
        drain = subprocess.Popen([BIN, "daemon", "--config", cfg2], env=env, stderr=log)
        deadline = time.time() + 600
        def pending():
            n = 0
            for root in (f"{d}/inbox", f"{d}/state/streams"):
                for _, _, files in os.walk(root):
                    n += len(files)
            return n
        while pending() and time.time() < deadline:
            time.sleep(1)
        drain.send_signal(signal.SIGTERM)
        drain.wait(timeout=120)
        # Segments handed to processing, the ones closed at shutdown included.
        with open(f"{d}/daemon.log") as f:
            segments = sum(1 for l in f if "segment recorded" in l or "handed on for processing" in l)
        clips = len(os.listdir(f"{d}/store/clips")) if os.path.isdir(f"{d}/store/clips") else 0
        quarantined = len([n for n in os.listdir(f"{d}/quarantine")
                           if n.endswith(".reason.json")]) if os.path.isdir(f"{d}/quarantine") else 0
        warm = [s for s in samples if s["t"] >= a.minutes * 60 / 5]
        slope_kb_s = 0.0
        if len(warm) >= 2:
            n = len(warm)
            mt = sum(s["t"] for s in warm) / n
            mr = sum(s["rss_kb"] for s in warm) / n
            cov = sum((s["t"] - mt) * (s["rss_kb"] - mr) for s in warm)
            var = sum((s["t"] - mt) ** 2 for s in warm) or 1
            slope_kb_s = cov / var
        summary = {
            "minutes": a.minutes, "streams": a.streams, "inbox_files": dropped,
            "segments_recorded": int(segments), "clips_committed": clips,
            "quarantined": quarantined,
            "lost": int(dropped + segments) - clips - quarantined,
            "rss_mb_first_after_warmup": round(warm[0]["rss_kb"] / 1024, 1) if warm else None,
            "rss_mb_last": round(samples[-1]["rss_kb"] / 1024, 1) if samples else None,
            "rss_growth_mb_per_h": round(slope_kb_s * 3600 / 1024, 2),
            "fds_min_max": [min(s["fds"] for s in warm), max(s["fds"] for s in warm)] if warm else None,
            "threads_min_max": [min(s["threads"] for s in warm), max(s["threads"] for s in warm)] if warm else None,
            "max_queue_depth": max((s["queue"] for s in samples), default=0),
            "daemon_exit": rc, "samples": samples, "folder": d,
        }
        print(json.dumps({k: v for k, v in summary.items() if k != "samples"}, indent=1))
        with open(a.out, "w") as f:
            json.dump(summary, f, indent=1)
        return 0 if summary["lost"] == 0 and rc == 0 else 1
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


if __name__ == "__main__":
    sys.exit(main())
