#!/usr/bin/env python3
"""Quantises YuNet-n to int8 (static, per-channel, QDQ and QOperator) and times each copy
against the float model on one ORT thread, the way Obscura runs it on the CPU.

Needs the `onnxruntime`, `onnx`, `sympy`, `numpy` and `pillow` PyPI packages (not installed by
scripts/setup.sh: this is a measurement, not part of the pipeline). Calibration uses the photos
in ../shared/media/images (or IMAGES=DIR); nothing here is written into models/.

    python3 -m venv /tmp/qenv && /tmp/qenv/bin/pip install onnxruntime==1.31.1 onnx sympy numpy pillow
    /tmp/qenv/bin/python scripts/try_int8_yunet.py
"""
import glob, os, sys, tempfile, time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import version_converter
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "models", "yunet_n_dynamic.onnx")
IMAGES = os.environ.get("IMAGES", os.path.join(ROOT, "..", "shared", "media", "images"))
SIZES = [(576, 320, 40), (1344, 800, 8)]  # main pass input, one zoom tile; runs per round


def bgr_nchw(path, w, h):
    im = Image.open(path).convert("RGB").resize((w, h))
    return np.asarray(im, dtype=np.float32)[:, :, ::-1].transpose(2, 0, 1)[None].copy()


class Calibration(CalibrationDataReader):
    """Hands the same prepared tensors to each quantisation run."""

    def __init__(self, tensors):
        self.pending = list(tensors)

    def get_next(self):
        return {"input": self.pending.pop()} if self.pending else None


def session(path):
    o = ort.SessionOptions()
    o.intra_op_num_threads = 1
    o.inter_op_num_threads = 1
    o.add_session_config_entry("session.intra_op.allow_spinning", "0")
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])


def main():
    photos = sorted(glob.glob(os.path.join(IMAGES, "*.png")) + glob.glob(os.path.join(IMAGES, "*.jpg")))
    if not photos:
        sys.exit(f"no calibration photos in {IMAGES}")
    calibration = [bgr_nchw(p, w, h) for p in photos for (w, h, _) in SIZES]
    with tempfile.TemporaryDirectory(prefix="yunet-int8-") as tmp:
        time_models(quantised_models(tmp, calibration))


def quantised_models(tmp, calibration):
    """Writes the int8 copies under `tmp`; returns label -> model path, the float model first."""
    # Per-channel quantisation needs opset 13 (the model is opset 11).
    op13 = os.path.join(tmp, "op13.onnx")
    onnx.save(version_converter.convert_version(onnx.load(MODEL), 13), op13)
    pre = os.path.join(tmp, "pre.onnx")
    quant_pre_process(op13, pre, skip_symbolic_shape=True)
    models = {"float": MODEL}
    for fmt_name, fmt in [("qdq", QuantFormat.QDQ), ("qoperator", QuantFormat.QOperator)]:
        for wname, wtype in [("u8s8", QuantType.QInt8), ("u8u8", QuantType.QUInt8)]:
            out = os.path.join(tmp, f"yunet_{fmt_name}_{wname}.onnx")
            quantize_static(pre, out, Calibration(calibration), quant_format=fmt,
                            activation_type=QuantType.QUInt8, weight_type=wtype, per_channel=True)
            models[f"{fmt_name} {wname}"] = out
    return models


def time_models(models):
    sessions = {k: session(v) for k, v in models.items()}
    for w, h, n in SIZES:
        x = np.random.RandomState(0).uniform(0, 255, (1, 3, h, w)).astype(np.float32)
        cpu_ms = {k: [] for k in sessions}
        for _ in range(3):  # rounds alternate between the models
            for k, s in sessions.items():
                s.run(None, {"input": x})
                t = time.process_time()
                for _ in range(n):
                    s.run(None, {"input": x})
                cpu_ms[k].append((time.process_time() - t) / n * 1000)
        print(f"{w}x{h} CPU ms per run (median of 3 rounds): "
              + ", ".join(f"{k} {np.median(v):.1f}" for k, v in cpu_ms.items()))


if __name__ == "__main__":
    main()
