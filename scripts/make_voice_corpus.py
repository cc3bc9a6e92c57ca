#!/usr/bin/env python3
"""Build the real-speech-in-noise corpus for judging voice redaction (issue #28).

    python3 scripts/make_voice_corpus.py OUT [--split tune|holdout|all] [--snr 10,5,0,-5] [--quick]

Needs only python3 + numpy.  Reads the recorded clean speech and noise excerpts in
samples/voice/ (provenance, licences and labels: samples/voice/README.md and sources.json)
and writes, deterministically (fixed seeds):

    OUT/<split>/<scene>_<snr>dB.wav   16-bit PCM mono (16 kHz; phone scenes 8 kHz; some 48 kHz)
    OUT/<split>/<scene>_<snr>dB.gt.json
    OUT/<split>/<scene>_clean.wav (+ .gt.json)   the scene without noise
    OUT/corpus.json                              every clip with its ground-truth fields

SNR: 10*log10(Ps/Pn), Ps = mean power of the clean scene speech over the labelled speech
samples, Pn = mean power of the noise over the same samples (phone scenes: both measured
after the 300-3400 Hz band-pass, at 8 kHz).

Tune and held-out scenes share no speaker and no noise recording (see SPEAKERS / NOISES).
"""
import argparse
import json
import os
import sys
import time
import wave

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOICE = os.path.join(ROOT, "samples", "voice")

# speaker id -> (split, sex, files prefix)
SPEAKERS = {
    "allison": ("tune", "F"),      # Allison Smith, asterisk-core-sounds en/es
    "carlo": ("tune", "M"),        # Carlo Flora, asterisk-core-sounds it
    "ivrru": ("tune", "F"),        # IvrvoiceRU, asterisk-core-sounds ru
    "librivox": ("tune", "M"),     # LibriVox reader, pocketsphinx sdist
    "june": ("holdout", "F"),      # June Wallack, asterisk-core-sounds fr
    "cmu": ("holdout", "M"),       # pocketsphinx test speaker(s)
    "alsa": ("holdout", "F"),      # alsa-utils channel-test voice
    "pyannote": ("holdout", "F"),  # pyannote.audio sample.wav (2 talkers, babble only)
}

# Scenes.  turns: speech excerpt names (samples/voice/speech/<name>.wav) in order.
# start0: first turn's labelled speech begins at t=0.  noise: (kind, [noise excerpt names]).
SCENES = [
    # ---------------- tune ----------------
    dict(name="t1_street_librivox", split="tune", band="wide", sr=16000, start0=True,
         turns=["librivox_en_wide_0880", "librivox_en_wide_0930", "librivox_en_wide_0890"],
         noise=("street", ["tune_street_bus", "tune_street_oldbus", "tune_street_car", "tune_street_horn"])),
    dict(name="t2_babble_allison_en", split="tune", band="wide", sr=16000, start0=False,
         turns=["allison_en_wide_conf-onlyperson", "allison_en_wide_vm-goodbye", "allison_en_wide_hello-world"],
         noise=("babble", None)),
    dict(name="t3_music_allison_es_phone", split="tune", band="phone", sr=8000, start0=False,
         turns=["allison_es_phone_conf-onlyperson", "allison_es_phone_digits-3", "allison_es_phone_vm-login"],
         noise=("music", ["tune_music_moh_coldday"])),
    dict(name="t4_hvac_carlo_it_phone", split="tune", band="phone", sr=8000, start0=True,
         turns=["carlo_it_phone_privacy-prompt", "carlo_it_phone_vm-youhave", "carlo_it_phone_digits-3",
                "carlo_it_phone_conf-onlyperson"],
         noise=("hvac", "tune")),
    dict(name="t5_rain_allison_en", split="tune", band="wide", sr=16000, start0=False,
         turns=["allison_en_wide_privacy-prompt", "allison_en_wide_digits-3", "allison_en_wide_vm-login"],
         noise=("rain", ["tune_rain_garden"])),
    dict(name="t6_crowd_librivox_48k", split="tune", band="wide", sr=48000, start0=False,
         turns=["librivox_en_wide_0930", "librivox_en_wide_0880"],
         noise=("crowd", ["tune_crowd_applause"])),
    dict(name="t7_engine_ivrru_ru_phone", split="tune", band="phone", sr=8000, start0=False,
         turns=["ivrru_ru_phone_conf-onlyperson", "ivrru_ru_phone_digits-7", "ivrru_ru_phone_pbx-invalid"],
         noise=("engine", ["tune_engine_train", "tune_engine_car"])),
    dict(name="t8_music_dialog_en", split="tune", band="wide", sr=16000, start0=True,
         turns=["allison_en_wide_hello-world", "librivox_en_wide_0870", "allison_en_wide_vm-goodbye"],
         noise=("music", ["tune_music_ireland"])),
    # ---------------- held-out ----------------
    dict(name="h1_street_june_fr", split="holdout", band="wide", sr=16000, start0=True,
         turns=["june_fr_wide_conf-onlyperson", "june_fr_wide_digits-3", "june_fr_wide_vm-goodbye"],
         noise=("street", ["holdout_street_truck", "holdout_street_crossing", "holdout_street_passby"])),
    dict(name="h2_babble_cmu_en", split="holdout", band="wide", sr=16000, start0=False,
         turns=["cmu_en_wide_goforward", "cmu_en_wide_numbers", "cmu_en_wide_something"],
         noise=("babble", None)),
    dict(name="h3_music_june_fr_phone", split="holdout", band="phone", sr=8000, start0=False,
         turns=["june_fr_wide_privacy-prompt", "june_fr_wide_hello-world", "june_fr_wide_digits-3"],
         noise=("music", ["holdout_music_moh_system"])),
    dict(name="h4_hvac_alsa_en_48k", split="holdout", band="wide", sr=48000, start0=True,
         turns=["alsa_en_wide48k_Front_Left", "alsa_en_wide48k_Rear_Right", "alsa_en_wide48k_Side_Left",
                "alsa_en_wide48k_Front_Center"],
         noise=("hvac", "holdout")),
    dict(name="h5_rain_cmu_en", split="holdout", band="wide", sr=16000, start0=False,
         turns=["cmu_en_wide_numbers", "cmu_en_wide_goforward"],
         noise=("rain", ["holdout_rain_storm"])),
    dict(name="h6_crowd_june_fr", split="holdout", band="wide", sr=16000, start0=False,
         turns=["june_fr_wide_vm-login", "june_fr_wide_pbx-invalid", "june_fr_wide_vm-goodbye"],
         noise=("crowd", ["holdout_crowd_applause"])),
    dict(name="h7_wind_cmu_en_phone", split="holdout", band="phone", sr=8000, start0=True,
         turns=["cmu_en_wide_something", "cmu_en_wide_goforward", "cmu_en_wide_numbers"],
         noise=("wind", ["holdout_wind"])),
    dict(name="h8_music_cmu_en", split="holdout", band="wide", sr=16000, start0=False,
         turns=["cmu_en_wide_numbers", "cmu_en_wide_something"],
         noise=("music", ["holdout_music_australia"])),
]
QUICK = ["t2_babble_allison_en", "t3_music_allison_es_phone", "h1_street_june_fr", "h4_hvac_alsa_en_48k"]
QUICK_SNR = [5, 0]
SPEECH_DBFS = -26.0  # active speech level of each turn (+-2 dB jitter)


# ------------------------------------------------------------------------ audio utils
def read_wav(path):
    with wave.open(path, "rb") as w:
        assert w.getsampwidth() == 2, path
        n, sr = w.getnchannels(), w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float64) / 32768.0
    return x.reshape(-1, n).mean(axis=1), sr


def write_wav(path, x, sr):
    y = np.clip(np.round(x * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(y.tobytes())


def resample(x, sr_in, sr_out, half_width=32):
    """Windowed-sinc (Blackman) band-limited resampling; cutoff 0.95 * the lower Nyquist."""
    if sr_in == sr_out:
        return x.copy()
    n_out = int(round(len(x) * sr_out / sr_in))
    ratio = sr_out / sr_in
    fc = 0.95 * min(1.0, ratio)                      # cutoff in units of input Nyquist
    hw = int(np.ceil(half_width / min(1.0, ratio)))  # taps each side, in input samples
    xp = np.concatenate([np.zeros(hw), x, np.zeros(hw + 1)])
    out = np.empty(n_out)
    k = np.arange(-hw + 1, hw + 1)
    for s in range(0, n_out, 8192):
        t = np.arange(s, min(n_out, s + 8192)) / ratio   # positions in input samples
        base = np.floor(t).astype(np.int64)
        d = (base[:, None] + k[None, :]) - t[:, None]    # tap offsets
        w = 0.42 + 0.5 * np.cos(np.pi * d / hw) + 0.08 * np.cos(2 * np.pi * d / hw)
        w[np.abs(d) > hw] = 0.0
        h = fc * np.sinc(fc * d) * w
        out[s:s + len(t)] = np.sum(h * xp[base[:, None] + k[None, :] + hw], axis=1)
    return out


def bandpass(x, sr, lo=300.0, hi=3400.0, edge=100.0):
    """Zero-phase FFT band-pass with raised-cosine edges (telephone band by default)."""
    n = len(x)
    nf = 1 << int(np.ceil(np.log2(max(n, 2))))
    X = np.fft.rfft(x, nf)
    f = np.fft.rfftfreq(nf, 1.0 / sr)
    g = np.ones_like(f)
    g[f < lo - edge] = 0
    m = (f >= lo - edge) & (f < lo)
    g[m] = 0.5 - 0.5 * np.cos(np.pi * (f[m] - (lo - edge)) / edge)
    g[f > hi + edge] = 0
    m = (f > hi) & (f <= hi + edge)
    g[m] = 0.5 + 0.5 * np.cos(np.pi * (f[m] - hi) / edge)
    return np.fft.irfft(X * g, nf)[:n]


def colored_noise(rng, n, sr, slope_db_per_oct, lo=20.0, hi=None):
    """Gaussian noise with a power spectrum falling slope dB/octave above lo (flat below)."""
    nf = 1 << int(np.ceil(np.log2(n)))
    X = np.fft.rfft(rng.standard_normal(nf))
    f = np.fft.rfftfreq(nf, 1.0 / sr)
    g = (np.maximum(f, lo) / lo) ** (slope_db_per_oct / (20 * np.log10(2)))
    if hi:
        g *= 1.0 / np.sqrt(1 + (f / hi) ** 8)
    g[0] = 0
    y = np.fft.irfft(X * g, nf)[:n]
    return y / (np.sqrt(np.mean(y ** 2)) + 1e-12)


def rms(x):
    return float(np.sqrt(np.mean(x ** 2) + 1e-20))


def loop_to(rng, x, n, sr, xfade_s=0.25):
    """Tile x (random start) with raised-cosine cross-fades until n samples."""
    xf = min(int(xfade_s * sr), len(x) // 4)
    start = int(rng.integers(0, max(1, len(x) - xf)))
    out = x[start:].copy()
    fade = 0.5 - 0.5 * np.cos(np.pi * np.arange(xf) / max(xf, 1))
    while len(out) < n:
        if xf:
            out[-xf:] = out[-xf:] * (1 - fade) + x[:xf] * fade
            out = np.concatenate([out, x[xf:]])
        else:
            out = np.concatenate([out, x])
    return out[:n]


# ------------------------------------------------------------------------ sources
class Sources:
    def __init__(self):
        with open(os.path.join(VOICE, "sources.json")) as f:
            self.meta = json.load(f)
        self.cache = {}

    def get(self, kind, name, sr):
        key = (kind, name, sr)
        if key not in self.cache:
            x, s = read_wav(os.path.join(VOICE, kind, name + ".wav"))
            self.cache[key] = resample(x, s, sr)
        return self.cache[key]

    def labels(self, name):
        return self.meta["speech"][name]["speech"]


def speaker_of(name):
    return name.split("_")[0]


def active_rms(x, segs, sr):
    idx = np.concatenate([np.arange(int(a * sr), min(len(x), int(b * sr))) for a, b in segs])
    return rms(x[idx])


# ------------------------------------------------------------------------ noise beds
def make_hvac(rng, n, sr, variant):
    """Synthetic HVAC / fan: broadband airflow (coloured Gaussian noise), mains hum with
    harmonics, a fan blade-pass tone with slow amplitude wobble.  Parameters differ per
    split (tune: 60 Hz mains, -4.5 dB/oct airflow, 118 Hz blade; held-out: 50 Hz mains,
    -3 dB/oct airflow from 80 Hz, 87 Hz blade), different seeds."""
    p = {"tune": dict(mains=60.0, slope=-4.5, lo=150.0, blade=118.0, hi=6000.0),
         "holdout": dict(mains=50.0, slope=-3.0, lo=80.0, blade=87.0, hi=9000.0)}[variant]
    t = np.arange(n) / sr
    air = colored_noise(rng, n, sr, p["slope"], p["lo"], p["hi"])
    hum = sum(a * np.sin(2 * np.pi * p["mains"] * k * t + rng.uniform(0, 6.28))
              for k, a in [(1, 0.30), (2, 0.20), (3, 0.10), (4, 0.05)])
    wob = 1 + 0.3 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6.28))
    blade = 0.25 * wob * (np.sin(2 * np.pi * p["blade"] * t) + 0.5 * np.sin(4 * np.pi * p["blade"] * t))
    return air + hum + blade


def make_street(rng, src, names, n, sr):
    """Recorded vehicle sounds (bus/truck pass-bys, engine starts, horn, crossing) strung
    in random order with random gaps/gains over a synthetic traffic rumble bed
    (Gaussian noise, -6 dB/oct from 40 Hz, low-passed at 2 kHz) 10 dB below them."""
    ev = np.zeros(n)
    t = int(rng.uniform(-1.0, 0.5) * sr)
    order = list(names)
    while t < n:
        rng.shuffle(order)
        for nm in order:
            x = src.get("noise", nm, sr)
            x = x / rms(x) * 10 ** (rng.uniform(-4, 2) / 20)
            a, b = max(0, t), min(n, t + len(x))
            if b > a:
                ev[a:b] += x[a - t:b - t]
            t += int(len(x) * rng.uniform(0.5, 0.9))  # overlapping vehicles
            if t >= n:
                break
    bed = colored_noise(rng, n, sr, -6.0, 40.0, 2000.0) * 10 ** (-10 / 20)
    return ev + bed


def make_loop(rng, src, names, n, sr):
    """Recorded ambience (music, rain, crowd, wind, engine) looped with cross-fades;
    several recordings of a kind are summed (each looped, random start)."""
    out = np.zeros(n)
    for nm in names:
        x = src.get("noise", nm, sr)
        out += loop_to(rng, x / rms(x), n, sr) * 10 ** (rng.uniform(-3, 0) / 20)
    return out


def make_babble(rng, src, scene, n, sr):
    """Babble: 5 talkers of the scene's split other than the scene's own speakers, each a
    chain of that split's recorded utterances (short gaps) with a random start; summed with
    random gains (+-3 dB)."""
    own = {speaker_of(t) for t in scene["turns"]}
    pool = sorted(nm for nm in src.meta["speech"]
                  if SPEAKERS[speaker_of(nm)][0] == scene["split"] and speaker_of(nm) not in own)
    by_spk = {}
    for nm in pool:
        by_spk.setdefault(speaker_of(nm), []).append(nm)
    spks = sorted(by_spk)
    out = np.zeros(n)
    for i in range(5):
        spk = spks[i % len(spks)]
        chain = []
        total = int(rng.uniform(0, 1.5) * sr)
        chain.append(np.zeros(total))
        while total < n:
            x = src.get("speech", by_spk[spk][int(rng.integers(len(by_spk[spk])))], sr)
            gap = np.zeros(int(rng.uniform(0.05, 0.4) * sr))
            chain += [x / rms(x), gap]
            total += len(x) + len(gap)
        out += np.concatenate(chain)[:n] * 10 ** (rng.uniform(-3, 3) / 20)
    return out, spks


# ------------------------------------------------------------------------ scene build
def build_scene(src, sc):
    seed = 1000 + SCENES.index(sc)
    rng = np.random.default_rng(seed)
    sr = sc["sr"]
    work_sr = sr
    turns, gt = [], []
    t = 0.0 if sc["start0"] else rng.uniform(0.6, 2.0)
    for i, nm in enumerate(sc["turns"]):
        x = src.get("speech", nm, work_sr)
        segs = src.labels(nm)
        if sc["band"] == "phone":
            x = bandpass(x, work_sr)
        x = x / active_rms(x, segs, work_sr) * 10 ** ((SPEECH_DBFS + rng.uniform(-2, 2)) / 20)
        if i == 0 and sc["start0"]:       # drop the lead-in so speech starts at 0.00 s
            cut = int(round(segs[0][0] * work_sr))
            x = x[cut:]
            segs = [[a - segs[0][0], b - segs[0][0]] for a, b in segs]
        off = int(round(t * work_sr))
        turns.append((off, x))
        gt += [[round(t + a, 2), round(t + b, 2)] for a, b in segs]
        t += len(x) / work_sr + rng.uniform(0.7, 2.2)
    dur = max(8.0, min(20.0, t - 1.0 + rng.uniform(0.8, 2.0)))
    n = int(round(dur * work_sr))
    clean = np.zeros(n)
    for off, x in turns:
        m = min(len(x), n - off)
        clean[off:off + m] += x[:m]
    gt = [[a, min(b, round(n / work_sr, 2))] for a, b in gt if a < n / work_sr]

    kind, arg = sc["noise"]
    extra = []
    if kind == "hvac":
        noise = make_hvac(rng, n, work_sr, arg)
    elif kind == "street":
        noise = make_street(rng, src, arg, n, work_sr)
    elif kind == "babble":
        noise, extra = make_babble(rng, src, sc, n, work_sr)
    else:
        noise = make_loop(rng, src, arg, n, work_sr)
    if sc["band"] == "phone":
        noise = bandpass(noise, work_sr)
    mask = np.zeros(n, bool)
    for a, b in gt:
        mask[int(round(a * work_sr)):int(round(b * work_sr))] = True
    ps = float(np.mean(clean[mask] ** 2))
    pn = float(np.mean(noise[mask] ** 2))
    return dict(clean=clean, noise=noise, ps=ps, pn=pn, sr=work_sr, gt=gt, babble_speakers=extra)


def gt_json(sc, b, snr, speakers, stem):
    return {"fps": 0, "frames": 0, "faces": [], "speech": b["gt"],
            "condition": "clean" if snr is None else sc["noise"][0],
            "noise": sc["noise"][0],
            "split": sc["split"], "snr_db": snr, "band": sc["band"],
            "language": sc_lang(sc), "speakers": speakers,
            "sample_rate": b["sr"], "duration_s": round(len(b["clean"]) / b["sr"], 2),
            "clip": stem}


def sc_lang(sc):
    langs = sorted({nm.split("_")[1] for nm in sc["turns"]})
    return langs[0] if len(langs) == 1 else "+".join(langs)


def report(sc, b, mix0):
    """Label check, printed with --report: level (dBFS, 10 ms frames) of the clean scene
    inside each labelled interval vs the gaps between/around them (frames >= 20 ms away
    from any interval edge: 95th percentile and max; and the loudest frame within 20 ms
    outside an edge), the shortest interval, and the SNR measured back from the written
    0 dB mix (least-squares fit of the clean scene into the 16-bit mix)."""
    x, sr, gt = b["clean"], b["sr"], b["gt"]
    h = int(0.01 * sr)
    k = len(x) // h
    db = 10 * np.log10(np.mean(x[:k * h].reshape(k, h) ** 2, axis=1) + 1e-20)
    inside = np.zeros(k, bool)
    near = np.zeros(k, bool)
    for s0, s1 in gt:
        i0, i1 = int(round(s0 * 100)), int(round(s1 * 100))
        inside[i0:i1] = True
        near[max(0, i0 - 2):i1 + 2] = True
    far = ~near
    edge = near & ~inside
    lv = [20 * np.log10(rms(x[int(s0 * sr):int(s1 * sr)])) for s0, s1 in gt]
    m = np.repeat(inside, h)
    c, y = x[:k * h][m], mix0[:k * h][m]
    a = float(np.dot(y, c) / np.dot(c, c))
    snr0 = 10 * np.log10(np.mean((a * c) ** 2) / np.mean((y - a * c) ** 2))
    print(f"| {sc['name']} | {sr} | {len(x) / sr:.2f} | {len(gt)} | {min(e - s for s, e in gt):.2f} | "
          f"{gt[0][0]:.2f} | {min(lv):.1f} / {np.median(lv):.1f} | {np.percentile(db[far], 95):.1f} / "
          f"{db[far].max():.1f} | {db[edge].max() if edge.any() else float('nan'):.1f} | {snr0:+.2f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--split", default="all", choices=["tune", "holdout", "all"])
    ap.add_argument("--snr", default="10,5,0,-5")
    ap.add_argument("--quick", action="store_true", help="2 scenes per split at 5 and 0 dB")
    ap.add_argument("--report", action="store_true",
                    help="print the label check: per-interval speech level vs the gaps of the clean scene")
    a = ap.parse_args()
    snrs = QUICK_SNR if a.quick else [float(s) if "." in s else int(s) for s in a.snr.split(",")]
    t0 = time.time()
    src = Sources()
    if a.report:
        print("| scene | Hz | dur s | intervals | shortest s | first onset s | speech dB min / median "
              "| gap dB p95 / max (>=20 ms from edges) | edge frame max dB | SNR of 0 dB mix, measured |")
        print("|---" * 10 + "|")
    clips = []
    for sc in SCENES:
        if a.split != "all" and sc["split"] != a.split:
            continue
        if a.quick and sc["name"] not in QUICK:
            continue
        for nm in sc["turns"]:  # honesty check: speakers stay in their split
            assert SPEAKERS[speaker_of(nm)][0] == sc["split"], (sc["name"], nm)
        if isinstance(sc["noise"][1], list):
            for nm in sc["noise"][1]:
                assert nm.startswith(sc["split"] + "_"), (sc["name"], nm)
        b = build_scene(src, sc)
        speakers = sorted({speaker_of(t) for t in sc["turns"]})
        d = os.path.join(a.out, sc["split"])
        os.makedirs(d, exist_ok=True)
        for snr in [None] + snrs:
            stem = f"{sc['name']}_clean" if snr is None else f"{sc['name']}_{snr}dB"
            if snr is None:
                y = b["clean"].copy()
            else:
                g = np.sqrt(b["ps"] / (b["pn"] * 10 ** (snr / 10)))
                y = b["clean"] + g * b["noise"]
            pk = np.max(np.abs(y))
            if pk > 0.98:  # scale the whole mix: keeps the SNR
                y *= 0.98 / pk
            write_wav(os.path.join(d, stem + ".wav"), y, b["sr"])
            if a.report and snr == snrs[0]:
                g0 = np.sqrt(b["ps"] / b["pn"])
                y0 = b["clean"] + g0 * b["noise"]
                y0 = np.round(y0 * 0.98 / max(0.98, np.max(np.abs(y0))) * 32767) / 32767
                report(sc, b, y0)
            j = gt_json(sc, b, snr, speakers, stem)
            if snr is not None and b["babble_speakers"]:
                j["babble_speakers"] = b["babble_speakers"]
            with open(os.path.join(d, stem + ".gt.json"), "w") as f:
                json.dump(j, f)
            j = dict(j, file=f"{sc['split']}/{stem}.wav")
            clips.append(j)
    with open(os.path.join(a.out, "corpus.json"), "w") as f:
        json.dump({"snr_definition": "10*log10(mean clean-speech power / mean noise power, both over the "
                                     "labelled speech samples)", "clips": clips}, f, indent=1)
    print(f"{len(clips)} clips in {a.out} ({time.time() - t0:.1f} s)")


if __name__ == "__main__":
    sys.exit(main())
