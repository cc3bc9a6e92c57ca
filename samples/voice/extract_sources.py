#!/usr/bin/env python3
"""One-off provenance script: rebuilds the trimmed excerpts in samples/voice/ from the
downloaded packages (NOT needed to generate the corpus; scripts/make_voice_corpus.py only
reads the committed excerpts).  Needs: numpy, an ffmpeg binary (e.g. `pip install
imageio-ffmpeg`) for ogg / G.722 decoding and resampling, and the packages unpacked under
SRC (default /tmp/src):
  apt-get download asterisk-core-sounds-{en,fr}-g722 asterisk-core-sounds-{es,it,ru}-wav \
      asterisk-moh-opsound-wav alsa-utils gcompris-qt-data openttd-opensfx
  dpkg-deb -x each .deb into $SRC/x/<package>/
  pocketsphinx-5.1.1.tar.gz (PyPI sdist) unpacked in $SRC; pyannote.audio 4.0.7 wheel
  unzipped in $SRC/pyax.
Speech labels: see label_energy() and samples/voice/README.md.
"""
import io, json, os, struct, subprocess, sys, wave, zlib
import numpy as np

SRC = os.environ.get("SRC", "/tmp/src")
HERE = os.path.dirname(os.path.abspath(__file__))
try:
    import imageio_ffmpeg
    FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
except ImportError:
    FFMPEG = "ffmpeg"
X = SRC + "/x"
AST = {"en": X + "/asterisk-core-sounds-en-g722/usr/share/asterisk/sounds/en_US_f_Allison",
       "fr": X + "/asterisk-core-sounds-fr-g722/usr/share/asterisk/sounds/fr_CA_f_June",
       "es": X + "/asterisk-core-sounds-es-wav/usr/share/asterisk/sounds/es_MX_f_Allison",
       "it": X + "/asterisk-core-sounds-it-wav/usr/share/asterisk/sounds/it_IT_m_Carlo",
       "ru": X + "/asterisk-core-sounds-ru-wav/usr/share/asterisk/sounds/ru_RU_f_IvrvoiceRU"}
PS = SRC + "/pocketsphinx-5.1.1/test"
RCC = X + "/gcompris-qt-data/usr/share/gcompris-qt/rcc"
SFX = X + "/openttd-opensfx/usr/share/games/openttd/baseset/opensfx/opensfx.cat"
MOH = X + "/asterisk-moh-opsound-wav/usr/share/asterisk/moh"


def decode(data_or_path, sr, fmt=None, raw_sr=None):
    """Decode anything ffmpeg reads to mono float32 at sr."""
    args = [FFMPEG, "-v", "error"]
    if fmt:
        args += ["-f", fmt]
        if raw_sr:
            args += ["-ar", str(raw_sr), "-ac", "1"]
    inp = data_or_path if isinstance(data_or_path, bytes) else None
    args += ["-i", "pipe:0" if inp is not None else data_or_path,
             "-ac", "1", "-ar", str(sr), "-af", "aresample=resampler=soxr", "-f", "s16le", "pipe:1"]
    out = subprocess.run(args, input=inp, capture_output=True, check=True).stdout
    return np.frombuffer(out, "<i2").astype(np.float32) / 32768.0


def write_wav(path, x, sr):
    y = np.clip(np.round(x * 32767), -32768, 32767).astype("<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(1); w.setsampwidth(2); w.setframerate(sr); w.writeframes(y.tobytes())


def frame_db(x, sr):
    n = int(round(0.01 * sr))
    k = len(x) // n
    f = x[: k * n].reshape(k, n)
    return 10 * np.log10(np.mean(f.astype(np.float64) ** 2, axis=1) + 1e-12)


def label_energy(x, sr, rel_db=35.0, floor_margin_db=12.0, merge_gap_s=0.25, min_seg_s=0.03):
    """Energy labelling of clean, silence-padded speech at 10 ms resolution.
    A 10 ms frame is speech when its RMS level (dBFS) exceeds
      thr = max(peak_frame_dB - 35 dB, floor_dB + 12 dB), floor_dB = 10th percentile;
    speech runs closer than 250 ms are merged, runs shorter than 30 ms dropped."""
    d = frame_db(x, sr)
    thr = max(d.max() - rel_db, np.percentile(d, 10) + floor_margin_db)
    on = d > thr
    segs, i = [], 0
    while i < len(on):
        if on[i]:
            j = i
            while j < len(on) and on[j]:
                j += 1
            segs.append([i, j]); i = j
        else:
            i += 1
    merged = []
    for s in segs:
        if merged and (s[0] - merged[-1][1]) * 0.01 < merge_gap_s:
            merged[-1][1] = s[1]
        else:
            merged.append(s)
    return [[a * 0.01, b * 0.01] for a, b in merged if (b - a) * 0.01 >= min_seg_s], float(thr)


def rcc_files(path):
    """Minimal Qt .rcc reader: yields (name, payload)."""
    b = open(path, "rb").read()
    assert b[:4] == b"qres"
    ver, tree, data, names = struct.unpack(">IIII", b[4:20])
    ns = 22 if ver >= 2 else 14

    def name(off):
        ln = struct.unpack(">H", b[names + off: names + off + 2])[0]
        return b[names + off + 6: names + off + 6 + 2 * ln].decode("utf-16-be")
    out = {}

    def walk(i, prefix):
        o = tree + i * ns
        noff, flags = struct.unpack(">IH", b[o:o + 6])
        nm = name(noff) if i else ""
        if flags & 2:
            cnt, first = struct.unpack(">II", b[o + 6:o + 14])
            for k in range(cnt):
                walk(first + k, prefix + nm + "/")
        else:
            doff = struct.unpack(">I", b[o + 10:o + 14])[0]
            ln = struct.unpack(">I", b[data + doff:data + doff + 4])[0]
            pl = b[data + doff + 4:data + doff + 4 + ln]
            if flags & 1:
                pl = zlib.decompress(pl[4:])
            out[prefix + nm] = pl
    walk(0, "")
    return out


def opensfx(index):
    b = open(SFX, "rb").read()
    off, size = struct.unpack("<II", b[index * 8:index * 8 + 8])
    off &= 0x7FFFFFFF
    nl = b[off]
    return b[off + 1 + nl: off + size]


def gcompris(rcc, name):
    files = rcc_files(f"{RCC}/{rcc}.rcc")
    return [v for k, v in files.items() if k.endswith("/" + name)][0]


# ---- speech: (out name, loader, sr, label method) --------------------------------------
SPEECH = []
def ast(spk, lang, band, names):
    for n in names:
        fn = f"{AST[lang]}/{n}.{'g722' if lang in ('en', 'fr') else 'wav'}"
        sr = 16000 if band == "wide" else 8000
        load = (lambda fn=fn, sr=sr: decode(fn, sr, "g722")) if fn.endswith("g722") else \
               (lambda fn=fn, sr=sr: decode(fn, sr))
        SPEECH.append((f"{spk}_{lang}_{band}_{n.replace('/', '-')}", load, sr, "energy",
                       f"{os.path.basename(os.path.dirname(AST[lang]))}: {fn.split('/sounds/')[1]}"))

# TUNE speakers
ast("allison", "en", "wide", ["conf-onlyperson", "privacy-prompt", "vm-login", "hello-world", "digits/3", "vm-goodbye"])
ast("allison", "es", "phone", ["conf-onlyperson", "vm-login", "hello-world", "digits/3"])
ast("carlo", "it", "phone", ["conf-onlyperson", "privacy-prompt", "vm-login", "digits/3", "vm-youhave", "pbx-invalid"])
ast("ivrru", "ru", "phone", ["conf-onlyperson", "privacy-prompt", "vm-login", "digits/7", "pbx-invalid"])
for k in ["0870", "0880", "0890", "0930"]:
    fn = f"{PS}/data/librivox/sense_and_sensibility_01_austen_64kb-{k}.wav"
    SPEECH.append((f"librivox_en_wide_{k}", lambda fn=fn: decode(fn, 16000), 16000, "lab:" + fn[:-4] + ".lab",
                   f"pocketsphinx-5.1.1 sdist: test/data/librivox/{os.path.basename(fn)}"))
# HOLDOUT speakers
ast("june", "fr", "wide", ["conf-onlyperson", "privacy-prompt", "vm-login", "hello-world", "digits/3", "vm-goodbye", "pbx-invalid"])
for n in ["goforward", "numbers", "something"]:
    fn = f"{PS}/data/{n}.raw"
    SPEECH.append((f"cmu_en_wide_{n}", lambda fn=fn: decode(fn, 16000, "s16le", 16000), 16000, "energy",
                   f"pocketsphinx-5.1.1 sdist: test/data/{n}.raw"))
for n in ["Front_Left", "Rear_Right", "Side_Left", "Front_Center"]:
    fn = f"{X}/alsa-utils/usr/share/sounds/alsa/{n}.wav"
    SPEECH.append((f"alsa_en_wide48k_{n}", lambda fn=fn: decode(fn, 48000), 48000, "energy",
                   f"alsa-utils 1.2.8-1: /usr/share/sounds/alsa/{n}.wav"))
PYA = SRC + "/pyax/pyannote/audio/sample/sample.wav"
SPEECH.append(("pyannote_en_wide_sample", lambda: decode(PYA, 16000)[int(6.5 * 16000):int(18.5 * 16000)], 16000,
               "rttm", "pyannote.audio 4.0.7 wheel: pyannote/audio/sample/sample.wav 6.5-18.5 s"))

# ---- noise: (out name, loader, sr, seconds kept, start) --------------------------------
NOISE = [
    ("tune_street_bus", lambda sr: decode(opensfx(27), sr), "openttd-opensfx 1.0.3 opensfx.cat #27 'Modern bus start' (london bus approaches & leaves.wav by icmusic), CC-BY-3.0"),
    ("tune_street_oldbus", lambda sr: decode(opensfx(28), sr), "openttd-opensfx 1.0.3 opensfx.cat #28 'Old bus start' (t_start1.mp3 by roscoetoon), CC-BY-3.0"),
    ("tune_street_car", lambda sr: decode(gcompris("traffic", "car.wav"), sr), "gcompris-qt-data 3.1-2 traffic.rcc car.wav, GPL-3+"),
    ("tune_street_horn", lambda sr: decode(opensfx(35), sr), "openttd-opensfx 1.0.3 #35 'Modern car horn' (claxon.wav by han1), CC-BY-3.0"),
    ("tune_music_ireland", lambda sr: decode(gcompris("explore_world_music", "ireland.ogg"), sr)[int(5 * sr):int(15 * sr)], "gcompris-qt-data 3.1-2 explore_world_music.rcc ireland.ogg 5-15 s, GPL-3+"),
    ("tune_music_moh_coldday", lambda sr: decode(MOH + "/macroform-cold_day.wav", sr)[int(20 * sr):int(30 * sr)], "asterisk-moh-opsound-wav 2.03-1.1 macroform-cold_day.wav 20-30 s (8 kHz), CC-BY-SA-3.0"),
    ("tune_rain_garden", lambda sr: decode(gcompris("memory-sound", "LRRain_in_garden_01_LA_cut.ogg"), sr), "gcompris-qt-data 3.1-2 memory-sound.rcc LRRain_in_garden_01_LA_cut.ogg, GPL-3+"),
    ("tune_crowd_applause", lambda sr: decode(opensfx(29), sr), "openttd-opensfx 1.0.3 #29 'Applause' (Approx 850 - Enthusiast Audience.wav by lonemonk), CC-BY-3.0"),
    ("tune_engine_train", lambda sr: decode(gcompris("memory-sound", "LRTrain_slowing_down_01_LA_cut.ogg"), sr), "gcompris-qt-data 3.1-2 memory-sound.rcc LRTrain_slowing_down_01_LA_cut.ogg, GPL-3+"),
    ("tune_engine_car", lambda sr: decode(gcompris("memory-sound", "LRStartAndStopCarEngine1LACut.ogg"), sr), "gcompris-qt-data 3.1-2 memory-sound.rcc LRStartAndStopCarEngine1LACut.ogg, GPL-3+"),
    ("holdout_street_truck", lambda sr: decode(opensfx(25), sr), "openttd-opensfx 1.0.3 #25 'Truck/old bus start, pull away' (file0375.mp3 by saphix), CC0-1.0"),
    ("holdout_street_crossing", lambda sr: decode(opensfx(14), sr), "openttd-opensfx 1.0.3 #14 'Level crossing' (RRCrossing.wav by Mark_Ian), CC0-1.0"),
    ("holdout_street_passby", lambda sr: decode(opensfx(71), sr), "openttd-opensfx 1.0.3 #71 'Monorail train station departure' (Train passby (tape stop).wav by Metzik), CC0-1.0"),
    ("holdout_music_australia", lambda sr: decode(gcompris("explore_world_music", "australia.ogg"), sr)[int(10 * sr):int(20 * sr)], "gcompris-qt-data 3.1-2 explore_world_music.rcc australia.ogg 10-20 s, GPL-3+"),
    ("holdout_music_moh_system", lambda sr: decode(MOH + "/reno_project-system.wav", sr)[int(30 * sr):int(40 * sr)], "asterisk-moh-opsound-wav 2.03-1.1 reno_project-system.wav 30-40 s (8 kHz), CC-BY-SA-3.0"),
    ("holdout_rain_storm", lambda sr: decode(gcompris("memory-sound", "LRFrogsInPondDuringStormLACut.ogg"), sr), "gcompris-qt-data 3.1-2 memory-sound.rcc LRFrogsInPondDuringStormLACut.ogg, GPL-3+"),
    ("holdout_crowd_applause", lambda sr: decode(gcompris("memory-sound", "LRApplauses_1_LA_cut.ogg"), sr), "gcompris-qt-data 3.1-2 memory-sound.rcc LRApplauses_1_LA_cut.ogg, GPL-3+"),
    ("holdout_wind", lambda sr: decode(opensfx(52), sr), "openttd-opensfx 1.0.3 #52 'Wind' (wind1.wav by Anton), CC-BY-3.0"),
]
NOISE_SR = {"tune_music_moh_coldday": 8000, "holdout_music_moh_system": 8000}


def main():
    os.makedirs(f"{HERE}/speech", exist_ok=True)
    os.makedirs(f"{HERE}/noise", exist_ok=True)
    meta = {"speech": {}, "noise": {}}
    for name, load, sr, how, origin in SPEECH:
        x = load()
        if how == "energy":
            segs, thr = label_energy(x, sr)
            method = f"energy 10 ms, thr {thr:.1f} dBFS"
        elif how.startswith("lab:"):
            ls = [l.split() for l in open(how[4:])]
            segs = [[round(float(ls[0][0]), 2), round(float(ls[1][0]), 2)]]
            method = "pocketsphinx .lab (forced alignment)"
        else:  # rttm: union of both speakers' turns, shifted by the 6.5 s excerpt start
            rt = [l.split() for l in open(os.path.dirname(PYA) + "/sample.rttm")]
            iv = sorted([float(r[3]) - 6.5, float(r[3]) + float(r[4]) - 6.5] for r in rt)
            segs = []
            for a, b in iv:
                a, b = max(a, 0.0), min(b, 12.0)
                if b <= a: continue
                if segs and a <= segs[-1][1]: segs[-1][1] = max(segs[-1][1], b)
                else: segs.append([a, b])
            method = "pyannote sample.rttm (union of speakers)"
        # trim to [first onset - 0.2 s, last offset + 0.2 s]
        t0 = max(0.0, round(segs[0][0] - 0.2, 2)); t1 = min(len(x) / sr, round(segs[-1][1] + 0.2, 2))
        y = x[int(round(t0 * sr)):int(round(t1 * sr))]
        segs = [[round(a - t0, 2), round(b - t0, 2)] for a, b in segs]
        peak = np.max(np.abs(y)); y = y * (0.7 / peak) if peak > 0 else y
        write_wav(f"{HERE}/speech/{name}.wav", y, sr)
        meta["speech"][name] = {"sr": sr, "speech": segs, "label_method": method, "origin": origin,
                                "trim_s": [t0, round(t1, 2)]}
        print(name, sr, round(len(y) / sr, 2), segs, method)
    for name, load, origin in NOISE:
        sr = NOISE_SR.get(name, 16000)
        x = load(sr)
        peak = np.max(np.abs(x)); x = x * (0.7 / peak)
        write_wav(f"{HERE}/noise/{name}.wav", x, sr)
        meta["noise"][name] = {"sr": sr, "origin": origin, "seconds": round(len(x) / sr, 2)}
        print(name, sr, round(len(x) / sr, 2))
    json.dump(meta, open(f"{HERE}/sources.json", "w"), indent=1)


if __name__ == "__main__":
    main()
