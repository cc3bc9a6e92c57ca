//! CenterFace (`centerface_dynamic.onnx`): RGB, raw 0..255, NCHW, H and W multiples of 32.
//! Outputs at stride 4: heatmap (sigmoid), log scale `(h, w)`, offset `(dy, dx)`, landmarks.
//! Port of `shared/models/tools/detect.py::CenterFace`.

use ort::value::TensorRef;

use super::{
    ActiveProvider, ChannelOrder, DetectError, FaceDetector, ModelFile, ModelKind, NchwTensor,
};
use crate::geom::{BoxF, nms};
use crate::types::Detection;

pub const NMS_IOU: f32 = 0.3;

pub struct CenterFace {
    session: super::runtime::PooledSession,
    model: ModelFile,
    threshold: f32,
}

impl CenterFace {
    pub fn new(
        model: ModelFile,
        threshold: f32,
        opts: &super::SessionOptions,
    ) -> Result<Self, DetectError> {
        let session = super::runtime::build_session(&model, opts)?;
        Ok(CenterFace {
            session,
            model,
            threshold,
        })
    }
}

/// Decodes one image's heatmap `[h*w]`, scale `[2*h*w]` and offset `[2*h*w]` (channel-major)
/// for an input of `in_w x in_h` into boxes in input pixels, after NMS.
pub fn decode(
    heat: &[f32],
    scale: &[f32],
    offset: &[f32],
    in_w: u32,
    in_h: u32,
    threshold: f32,
) -> Vec<Detection> {
    let (ow, oh) = ((in_w / 4) as usize, (in_h / 4) as usize);
    let n = ow * oh;
    if heat.len() < n || scale.len() < 2 * n || offset.len() < 2 * n {
        return Vec::new();
    }
    let (wf, hf) = (in_w as f32, in_h as f32);
    let mut boxes = Vec::new();
    let mut scores = Vec::new();
    for y in 0..oh {
        for x in 0..ow {
            let i = y * ow + x;
            let score = heat[i];
            if score <= threshold || !score.is_finite() {
                continue;
            }
            let bh = scale[i].clamp(-10.0, 10.0).exp() * 4.0;
            let bw = scale[n + i].clamp(-10.0, 10.0).exp() * 4.0;
            let (dy, dx) = (offset[i], offset[n + i]);
            let x1 = ((x as f32 + dx + 0.5) * 4.0 - bw / 2.0).max(0.0).min(wf);
            let y1 = ((y as f32 + dy + 0.5) * 4.0 - bh / 2.0).max(0.0).min(hf);
            let x2 = (x1 + bw).min(wf);
            let y2 = (y1 + bh).min(hf);
            let b = BoxF::from_corners(x1, y1, x2, y2);
            if b.is_finite() {
                boxes.push(b);
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

impl FaceDetector for CenterFace {
    fn kind(&self) -> ModelKind {
        ModelKind::Centerface
    }
    fn model(&self) -> &ModelFile {
        &self.model
    }
    fn channel_order(&self) -> ChannelOrder {
        ChannelOrder::Rgb
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
            model: "centerface".into(),
            reason: e.to_string(),
        };
        let input =
            TensorRef::from_array_view(([b, 3, h as usize, w as usize], data)).map_err(err)?;
        let outputs = self
            .session
            .run(ort::inputs!["input.1" => input])
            .map_err(err)?;
        if outputs.len() < 3 {
            return Err(DetectError::Inference {
                model: "centerface".into(),
                reason: format!("expected 4 outputs, got {}", outputs.len()),
            });
        }
        let heat = outputs[0].try_extract_tensor::<f32>().map_err(err)?.1;
        let scale = outputs[1].try_extract_tensor::<f32>().map_err(err)?.1;
        let offset = outputs[2].try_extract_tensor::<f32>().map_err(err)?.1;
        let n = ((w / 4) * (h / 4)) as usize;
        let mut results = Vec::with_capacity(b);
        for i in 0..b {
            let short = || DetectError::Inference {
                model: "centerface".into(),
                reason: "output shorter than expected".into(),
            };
            let hm = heat.get(i * n..(i + 1) * n).ok_or_else(short)?;
            let sc = scale.get(i * 2 * n..(i + 1) * 2 * n).ok_or_else(short)?;
            let of = offset.get(i * 2 * n..(i + 1) * 2 * n).ok_or_else(short)?;
            results.push(decode(hm, sc, of, w, h, threshold));
        }
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_peak_into_its_box() {
        // 32x32 input → 8x8 output grid.
        let n = 64;
        let mut heat = vec![0.0f32; n];
        let mut scale = vec![0.0f32; 2 * n];
        let mut offset = vec![0.0f32; 2 * n];
        let i = 3 * 8 + 4; // y=3, x=4
        heat[i] = 0.9;
        scale[i] = 3f32.ln(); // h = 12
        scale[n + i] = 2f32.ln(); // w = 8
        offset[i] = 0.25; // dy
        offset[n + i] = -0.25; // dx
        let d = decode(&heat, &scale, &offset, 32, 32, 0.5);
        assert_eq!(d.len(), 1);
        let b = d[0].bbox;
        // cx = (4 - 0.25 + 0.5) * 4 = 17, cy = (3 + 0.25 + 0.5) * 4 = 15
        assert!((b.x - 13.0).abs() < 1e-4, "{b:?}");
        assert!((b.y - 9.0).abs() < 1e-4, "{b:?}");
        assert!((b.w - 8.0).abs() < 1e-4 && (b.h - 12.0).abs() < 1e-4);
    }

    #[test]
    fn boxes_are_clipped_to_the_input() {
        let n = 64;
        let mut heat = vec![0.0f32; n];
        let mut scale = vec![0.0f32; 2 * n];
        heat[0] = 0.9;
        scale[0] = 4f32.ln(); // h = 16 at the corner → clipped at 0
        scale[n] = 4f32.ln();
        let d = decode(&heat, &scale, &vec![0.0; 2 * n], 32, 32, 0.5);
        assert_eq!(d[0].bbox.x, 0.0);
        assert_eq!(d[0].bbox.y, 0.0);
    }
}
