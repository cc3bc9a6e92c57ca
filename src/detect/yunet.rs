//! YuNet (libfacedetection.train `yunet_n_dynamic.onnx`, and `yunet_s_dynamic.onnx` with the same IO): BGR, raw 0..255, NCHW, any input
//! size that is a multiple of 32, batches > 1. Outputs per stride 8/16/32: `cls`, `obj`,
//! `bbox (dx, dy, log w, log h)`; score = sqrt(cls * obj). Port of
//! `shared/models/tools/detect.py::YuNet`.

use ort::value::TensorRef;

use super::{
    ActiveProvider, ChannelOrder, DetectError, FaceDetector, ModelFile, ModelKind, NchwTensor,
};
use crate::geom::{BoxF, nms};
use crate::types::Detection;

pub const STRIDES: [u32; 3] = [8, 16, 32];
pub const NMS_IOU: f32 = 0.3;

pub struct Yunet {
    session: super::runtime::PooledSession,
    model: ModelFile,
    threshold: f32,
}

impl Yunet {
    pub fn new(
        model: ModelFile,
        threshold: f32,
        opts: &super::SessionOptions,
    ) -> Result<Self, DetectError> {
        let session = super::runtime::build_session(&model, opts)?;
        Ok(Yunet {
            session,
            model,
            threshold,
        })
    }
}

/// Raw YuNet output tensors of one image, one entry per stride in [`STRIDES`] order.
pub struct YunetOutputs<'a> {
    pub cls: [&'a [f32]; 3],
    pub obj: [&'a [f32]; 3],
    pub bbox: [&'a [f32]; 3],
}

/// Decodes one image's outputs (input size `w x h`) into boxes in input pixels, after NMS.
pub fn decode(out: &YunetOutputs<'_>, w: u32, h: u32, threshold: f32) -> Vec<Detection> {
    let mut boxes = Vec::new();
    let mut scores = Vec::new();
    for (si, &s) in STRIDES.iter().enumerate() {
        let cols = (w / s) as usize;
        let rows = (h / s) as usize;
        let n = rows * cols;
        let (cls, obj, bb) = (out.cls[si], out.obj[si], out.bbox[si]);
        if cls.len() < n || obj.len() < n || bb.len() < 4 * n {
            continue;
        }
        let sf = s as f32;
        for i in 0..n {
            let score = (cls[i].clamp(0.0, 1.0) * obj[i].clamp(0.0, 1.0)).sqrt();
            if score <= threshold || !score.is_finite() {
                continue;
            }
            let (r, c) = (i / cols, i % cols);
            let b = &bb[4 * i..4 * i + 4];
            let cx = (c as f32 + b[0]) * sf;
            let cy = (r as f32 + b[1]) * sf;
            // Clamp the log-size so a corrupt output cannot produce inf boxes.
            let bw = b[2].clamp(-10.0, 10.0).exp() * sf;
            let bh = b[3].clamp(-10.0, 10.0).exp() * sf;
            let bx = BoxF::new(cx - bw / 2.0, cy - bh / 2.0, bw, bh);
            if bx.is_finite() {
                boxes.push(bx);
                scores.push(score);
            }
        }
    }
    nms(&boxes, &scores, NMS_IOU)
        .into_iter()
        .map(|i| Detection {
            bbox: boxes[i],
            score: scores[i],
            revisit: 1,
        })
        .collect()
}

impl FaceDetector for Yunet {
    fn kind(&self) -> ModelKind {
        self.model.kind
    }
    fn model(&self) -> &ModelFile {
        &self.model
    }
    fn channel_order(&self) -> ChannelOrder {
        ChannelOrder::Bgr
    }
    fn provider(&self) -> ActiveProvider {
        self.session.provider()
    }
    fn threshold(&self) -> f32 {
        self.threshold
    }

    fn detect_tensor_at(
        &mut self,
        t: NchwTensor<'_>,
        threshold: f32,
    ) -> Result<Vec<Vec<Detection>>, DetectError> {
        if t.batch == 0 {
            return Ok(Vec::new());
        }
        t.check()?;
        let (b, w, h) = (t.batch, t.width, t.height);
        let data = t.data;
        let err = |e: ort::Error| DetectError::Inference {
            model: "yunet".into(),
            reason: e.to_string(),
        };
        let input =
            TensorRef::from_array_view(([b, 3, h as usize, w as usize], data)).map_err(err)?;
        let outputs = self
            .session
            .run(ort::inputs!["input" => input])
            .map_err(err)?;
        let get = |name: String| -> Result<&[f32], DetectError> {
            let v = outputs.get(&name).ok_or_else(|| DetectError::Inference {
                model: "yunet".into(),
                reason: format!("output {name} missing"),
            })?;
            v.try_extract_tensor::<f32>().map(|(_, d)| d).map_err(err)
        };
        let mut cls = Vec::new();
        let mut obj = Vec::new();
        let mut bbox = Vec::new();
        for s in STRIDES {
            cls.push(get(format!("cls_{s}"))?);
            obj.push(get(format!("obj_{s}"))?);
            bbox.push(get(format!("bbox_{s}"))?);
        }
        let cells: Vec<usize> = STRIDES
            .iter()
            .map(|s| ((w / s) * (h / s)) as usize)
            .collect();
        // Output `si` of image `i`, `k` values per cell.
        fn part<'a>(
            all: &[&'a [f32]],
            cells: &[usize],
            si: usize,
            i: usize,
            k: usize,
        ) -> Result<&'a [f32], DetectError> {
            let n = cells[si] * k;
            all[si]
                .get(i * n..(i + 1) * n)
                .ok_or_else(|| DetectError::Inference {
                    model: "yunet".into(),
                    reason: "output shorter than expected".into(),
                })
        }
        let mut results = Vec::with_capacity(b);
        for i in 0..b {
            let o = YunetOutputs {
                cls: [
                    part(&cls, &cells, 0, i, 1)?,
                    part(&cls, &cells, 1, i, 1)?,
                    part(&cls, &cells, 2, i, 1)?,
                ],
                obj: [
                    part(&obj, &cells, 0, i, 1)?,
                    part(&obj, &cells, 1, i, 1)?,
                    part(&obj, &cells, 2, i, 1)?,
                ],
                bbox: [
                    part(&bbox, &cells, 0, i, 4)?,
                    part(&bbox, &cells, 1, i, 4)?,
                    part(&bbox, &cells, 2, i, 4)?,
                ],
            };
            results.push(decode(&o, w, h, threshold));
        }
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_one_cell_into_a_box_and_suppresses_duplicates() {
        // 64x32 input: stride 8 → 8x4 cells, stride 16 → 4x2, stride 32 → 2x1.
        let (w, h) = (64u32, 32u32);
        let n = |s: u32| ((w / s) * (h / s)) as usize;
        let mut cls: Vec<Vec<f32>> = STRIDES.iter().map(|&s| vec![0.0; n(s)]).collect();
        let mut obj = cls.clone();
        let mut bbox: Vec<Vec<f32>> = STRIDES.iter().map(|&s| vec![0.0; 4 * n(s)]).collect();
        // Stride 8, row 1, col 2 → idx 1*8+2 = 10: centre (2.5*8, 1.5*8) = (20, 12), size 16x8.
        cls[0][10] = 0.81;
        obj[0][10] = 1.0;
        bbox[0][40..44].copy_from_slice(&[0.5, 0.5, 2f32.ln(), 0.0]);
        // A weaker duplicate at the neighbouring cell, same box → suppressed by NMS.
        cls[0][11] = 0.64;
        obj[0][11] = 1.0;
        bbox[0][44..48].copy_from_slice(&[-0.5, 0.5, 2f32.ln(), 0.0]);
        // Below threshold: ignored.
        cls[1][0] = 0.1;
        obj[1][0] = 0.1;
        let out = YunetOutputs {
            cls: [&cls[0], &cls[1], &cls[2]],
            obj: [&obj[0], &obj[1], &obj[2]],
            bbox: [&bbox[0], &bbox[1], &bbox[2]],
        };
        let d = decode(&out, w, h, 0.5);
        assert_eq!(d.len(), 1);
        assert!((d[0].score - 0.9).abs() < 1e-5);
        let b = d[0].bbox;
        assert!((b.x - 12.0).abs() < 1e-4 && (b.y - 8.0).abs() < 1e-4);
        assert!((b.w - 16.0).abs() < 1e-4 && (b.h - 8.0).abs() < 1e-4);
    }

    #[test]
    fn corrupt_outputs_never_give_infinite_boxes() {
        let (w, h) = (32u32, 32u32);
        let cls = [vec![1.0f32; 16], vec![0.0; 4], vec![0.0; 1]];
        let bb = [vec![f32::MAX; 64], vec![0.0; 16], vec![0.0; 4]];
        let out = YunetOutputs {
            cls: [&cls[0], &cls[1], &cls[2]],
            obj: [&cls[0], &cls[1], &cls[2]],
            bbox: [&bb[0], &bb[1], &bb[2]],
        };
        for d in decode(&out, w, h, 0.5) {
            assert!(d.bbox.is_finite());
        }
    }
}
