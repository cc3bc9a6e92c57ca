//! Detection: face detectors (YuNet, CenterFace) and the voice activity detector (Silero) on
//! ONNX Runtime, the model registry with sha256 checks, and the face tracker.
//!
//! Owns: model files, inference sessions, pre/post-processing of model tensors, and turning
//! per-frame detections into tracks. Must not touch: GStreamer, pixels of the full frame,
//! or output files — detectors get small packed images and return boxes.

pub mod centerface;
pub mod contrast;
pub mod models;
pub mod runtime;
pub mod shrink;
pub mod tracker;
pub mod vad;
pub mod yunet;
pub mod zoom;

use std::path::PathBuf;

use crate::types::Detection;

pub use models::{ModelFile, ModelKind};
pub use runtime::{ActiveProvider, Device, SessionOptions};

/// Errors of the detection layer. Each says what failed and where.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error(
        "ONNX Runtime library not found (looked for libonnxruntime.so* in: {}); run scripts/setup.sh or set OBSCURA_ORT_LIB",
        searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    RuntimeMissing { searched: Vec<PathBuf> },
    #[error("{0}")]
    RuntimeLoad(String),
    #[error("model {name} not found at {}", path.display())]
    ModelMissing { name: String, path: PathBuf },
    #[error("model {} has sha256 {actual}, expected {expected} (corrupt or wrong file)", path.display())]
    ModelChecksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("cannot load model {}: {reason}", path.display())]
    ModelLoad { path: PathBuf, reason: String },
    #[error("ONNX Runtime session: {0}")]
    Session(String),
    #[error("CUDA requested but unavailable: {0}")]
    CudaUnavailable(String),
    #[error("inference failed in {model}: {reason}")]
    Inference { model: String, reason: String },
    #[error("detector input {got_w}x{got_h} does not match {want}")]
    BadInput {
        got_w: u32,
        got_h: u32,
        want: String,
    },
}

/// Channel order of the packed 8-bit image a detector wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelOrder {
    Bgr,
    Rgb,
}

/// A packed 3-channel 8-bit image at the detector's input size.
#[derive(Debug, Clone, Copy)]
pub struct DetectorImage<'a> {
    pub data: &'a [u8],
    pub width: u32,
    pub height: u32,
    /// Bytes per row (GStreamer rows may be padded).
    pub stride: usize,
}

/// A batch of detector inputs already packed as an NCHW float tensor (raw 0..255 values,
/// channels in the detector's [`ChannelOrder`]): what [`to_nchw`] makes from packed images, or
/// what the zoom pass renders directly (`zoom::render_nchw`).
#[derive(Debug, Clone, Copy)]
pub struct NchwTensor<'a> {
    pub data: &'a [f32],
    pub batch: usize,
    pub width: u32,
    pub height: u32,
}

impl NchwTensor<'_> {
    /// Checks the size suits a fully convolutional detector with stride 32 and the data
    /// holds exactly `batch` images.
    pub(crate) fn check(&self) -> Result<(), DetectError> {
        let (w, h) = (self.width, self.height);
        if w == 0 || h == 0 || w % 32 != 0 || h % 32 != 0 {
            return Err(DetectError::BadInput {
                got_w: w,
                got_h: h,
                want: "a size that is a multiple of 32".into(),
            });
        }
        if self.data.len() != self.batch * 3 * w as usize * h as usize {
            return Err(DetectError::BadInput {
                got_w: w,
                got_h: h,
                want: format!(
                    "{} floats for {} image(s), got {}",
                    self.batch * 3 * w as usize * h as usize,
                    self.batch,
                    self.data.len()
                ),
            });
        }
        Ok(())
    }
}

/// A face detector. Boxes come back in detector-input pixels; the caller scales them.
pub trait FaceDetector: Send {
    fn kind(&self) -> ModelKind;
    fn model(&self) -> &ModelFile;
    fn channel_order(&self) -> ChannelOrder;
    fn provider(&self) -> ActiveProvider;
    /// The score a face must pass to be reported (`detect.threshold`).
    fn threshold(&self) -> f32;
    /// Runs the detector on a batch already packed as a tensor, reporting what scores above
    /// `threshold` (the zoom pass's proposals ask with a lower one than [`Self::threshold`]);
    /// one result list per image.
    fn detect_tensor_at(
        &mut self,
        t: NchwTensor<'_>,
        threshold: f32,
    ) -> Result<Vec<Vec<Detection>>, DetectError>;
    /// Runs the detector on a batch already packed as a tensor at its own threshold; one
    /// result list per image.
    fn detect_tensor(&mut self, t: NchwTensor<'_>) -> Result<Vec<Vec<Detection>>, DetectError> {
        let threshold = self.threshold();
        self.detect_tensor_at(t, threshold)
    }
    /// Runs the detector on a batch of packed images of one size; one result list per image.
    fn detect(&mut self, batch: &[DetectorImage<'_>]) -> Result<Vec<Vec<Detection>>, DetectError> {
        let Some(first) = batch.first() else {
            return Ok(Vec::new());
        };
        let (width, height) = (first.width, first.height);
        let data = to_nchw(batch, width, height)?;
        self.detect_tensor(NchwTensor {
            data: &data,
            batch: batch.len(),
            width,
            height,
        })
    }
}

/// Loads the detector of `kind`, verifying the model's sha256 first.
pub fn load_face_detector(
    kind: ModelKind,
    models_dir: Option<&std::path::Path>,
    threshold: f32,
    opts: &SessionOptions,
) -> Result<Box<dyn FaceDetector>, DetectError> {
    // Verified by `build_session`, on the very bytes it loads.
    let model = models::ModelFile::locate(kind, models_dir)?;
    Ok(match kind {
        ModelKind::Yunet | ModelKind::YunetS => {
            Box::new(yunet::Yunet::new(model, threshold, opts)?)
        }
        ModelKind::Centerface => Box::new(centerface::CenterFace::new(model, threshold, opts)?),
        ModelKind::SileroVad => {
            return Err(DetectError::ModelLoad {
                path: model.path,
                reason: "not a face detector".into(),
            });
        }
    })
}

/// Packs a batch of detector images into an NCHW float tensor with raw 0..255 values, in the
/// channel order the images already have. Checks every image has the expected size.
pub(crate) fn to_nchw(
    batch: &[DetectorImage<'_>],
    w: u32,
    h: u32,
) -> Result<Vec<f32>, DetectError> {
    let (wu, hu) = (w as usize, h as usize);
    let plane = wu * hu;
    let mut out = vec![0.0; batch.len() * 3 * plane];
    for (b, img) in batch.iter().enumerate() {
        if img.width != w
            || img.height != h
            || img.stride < wu * 3
            || img.data.len() < img.stride * (hu - 1) + wu * 3
        {
            return Err(DetectError::BadInput {
                got_w: img.width,
                got_h: img.height,
                want: format!("{w}x{h} packed 3-channel"),
            });
        }
        let base = b * 3 * plane;
        let (c0, rest) = out[base..base + 3 * plane].split_at_mut(plane);
        let (c1, c2) = rest.split_at_mut(plane);
        for y in 0..hu {
            let row = &img.data[y * img.stride..y * img.stride + wu * 3];
            let o = y * wu;
            for (x, px) in row.chunks_exact(3).enumerate() {
                c0[o + x] = px[0] as f32;
                c1[o + x] = px[1] as f32;
                c2[o + x] = px[2] as f32;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nchw_packing_splits_channels_and_honours_stride() {
        // 2x1 image, stride 8 (2 bytes padding).
        let data = [1u8, 2, 3, 4, 5, 6, 0, 0];
        let img = DetectorImage {
            data: &data,
            width: 2,
            height: 1,
            stride: 8,
        };
        let t = to_nchw(&[img], 2, 1).unwrap();
        assert_eq!(t, vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        assert!(to_nchw(&[img], 4, 1).is_err());
    }
}
