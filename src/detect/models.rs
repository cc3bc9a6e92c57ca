//! The vetted model files Obscura runs, where to find them, and their pinned sha256.
//!
//! Owns: the registry (name → file name, sha256, license) and the search for the models
//! folder. A model is only ever loaded after its sha256 matched.

use std::path::{Path, PathBuf};

use super::DetectError;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// YuNet-n face detector, dynamic input size (default).
    Yunet,
    /// YuNet-s, the same network family with other weights: on grey (night infrared) pictures
    /// it finds other small faces than YuNet-n does, so grey sweeps ask both
    /// (`detect.grey_second_model`). Alone it left more faces than YuNet-n on colour samples.
    #[value(name = "yunet-s")]
    #[serde(rename = "yunet-s")]
    YunetS,
    /// CenterFace face detector (about 8x slower than YuNet; higher recall on some footage).
    Centerface,
    /// Silero voice activity detector (its 16 kHz, batch-1 graph with fixed shapes).
    #[value(skip)]
    #[serde(rename = "silero-vad")]
    SileroVad,
}

impl ModelKind {
    pub fn name(&self) -> &'static str {
        match self {
            ModelKind::Yunet => "yunet",
            ModelKind::YunetS => "yunet-s",
            ModelKind::Centerface => "centerface",
            ModelKind::SileroVad => "silero-vad",
        }
    }
    pub fn file_name(&self) -> &'static str {
        match self {
            ModelKind::Yunet => "yunet_n_dynamic.onnx",
            ModelKind::YunetS => "yunet_s_dynamic.onnx",
            ModelKind::Centerface => "centerface_dynamic.onnx",
            ModelKind::SileroVad => "silero_vad_16k_b1_static.onnx",
        }
    }
    pub fn sha256(&self) -> &'static str {
        match self {
            ModelKind::Yunet => "104ee26c71d5c270ce79a6b3dced91c91013260d29a6bf18f9296c5b8c4c2b12",
            ModelKind::YunetS => "daede24002cc8590f457998cc5e6c9e8b82f45f6bd969506a8913cd4ed10a2d3",
            ModelKind::Centerface => {
                "5aaf17b351911ad4a27f126d2de45809710c458b95cba4a6478c4fd4e2e9d978"
            }
            ModelKind::SileroVad => {
                "6dcffbade0d5f1d4fc2e56719d476a5469588d2c3ce2154c1231d3664404de4a"
            }
        }
    }
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A model file on disk with the checksum it must have.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelFile {
    pub kind: ModelKind,
    pub path: PathBuf,
    pub sha256: String,
}

/// Environment variable naming the models folder.
pub const MODELS_ENV: &str = "OBSCURA_MODELS";

/// Folders searched for models when none is given.
pub fn models_search_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os(MODELS_ENV).filter(|s| !s.is_empty()) {
        dirs.push(PathBuf::from(d));
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        dirs.push(dir.join("models"));
        dirs.push(dir.join("../share/obscura/models"));
        for up in dir.ancestors().skip(1).take(3) {
            dirs.push(up.join("models"));
        }
    }
    if let Ok(cwd) = std::env::current_dir() {
        dirs.push(cwd.join("models"));
    }
    dirs.push(PathBuf::from("/usr/local/share/obscura/models"));
    dirs.push(PathBuf::from("/usr/share/obscura/models"));
    dirs
}

impl ModelFile {
    /// Finds the model of `kind`: in `dir` when given (and only there), else in the search
    /// folders.
    pub fn locate(kind: ModelKind, dir: Option<&Path>) -> Result<ModelFile, DetectError> {
        let candidates: Vec<PathBuf> = match dir {
            Some(d) => vec![d.join(kind.file_name())],
            None => models_search_dirs()
                .into_iter()
                .map(|d| d.join(kind.file_name()))
                .collect(),
        };
        let path = candidates
            .iter()
            .find(|p| p.is_file())
            .cloned()
            .ok_or_else(|| DetectError::ModelMissing {
                name: kind.name().to_string(),
                path: candidates.first().cloned().unwrap_or_default(),
            })?;
        Ok(ModelFile {
            kind,
            path,
            sha256: kind.sha256().to_string(),
        })
    }

    /// Reads the file once and checks those bytes' sha256 against the pinned value: what is
    /// loaded is exactly what was verified, even if the file is replaced or corrupted in
    /// between (the session is built from these bytes, never from the path again).
    pub fn read_verified(&self) -> Result<Vec<u8>, DetectError> {
        let bytes = std::fs::read(&self.path).map_err(|_| DetectError::ModelMissing {
            name: self.kind.name().to_string(),
            path: self.path.clone(),
        })?;
        let actual = crate::fsutil::sha256_bytes(&bytes);
        if actual != self.sha256 {
            return Err(DetectError::ModelChecksum {
                path: self.path.clone(),
                expected: self.sha256.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Checks the file's sha256 against the pinned value.
    pub fn verify(&self) -> Result<(), DetectError> {
        let actual =
            crate::fsutil::sha256_file(&self.path).map_err(|_| DetectError::ModelMissing {
                name: self.kind.name().to_string(),
                path: self.path.clone(),
            })?;
        if actual != self.sha256 {
            return Err(DetectError::ModelChecksum {
                path: self.path.clone(),
                expected: self.sha256.clone(),
                actual,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The model was verified by path and then loaded again by path: a file swapped or
    /// corrupted in between (mid-batch, say) was loaded unverified. Sessions are now built
    /// from the verified bytes only.
    #[test]
    fn regression_model_corrupted_after_its_check_was_loaded_unverified() {
        let d = tempfile::tempdir().unwrap();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
        let name = ModelKind::Yunet.file_name();
        std::fs::copy(repo.join(name), d.path().join(name)).unwrap();
        let m = ModelFile::locate(ModelKind::Yunet, Some(d.path())).unwrap();
        m.verify().unwrap();
        assert_eq!(m.read_verified().unwrap().len() as u64, {
            std::fs::metadata(d.path().join(name)).unwrap().len()
        });
        // Corrupted after the check, before the load.
        let mut bytes = std::fs::read(d.path().join(name)).unwrap();
        bytes[1000] ^= 0x40;
        std::fs::write(d.path().join(name), &bytes).unwrap();
        let opts = crate::detect::SessionOptions::default();
        match crate::detect::runtime::build_session(&m, &opts) {
            Err(DetectError::ModelChecksum { .. }) => {}
            Err(e) => panic!("expected a checksum refusal, got {e}"),
            Ok(_) => panic!("a corrupted model was loaded"),
        }
        // Removed: refused as missing.
        std::fs::remove_file(d.path().join(name)).unwrap();
        assert!(matches!(
            crate::detect::runtime::build_session(&m, &opts),
            Err(DetectError::ModelMissing { .. })
        ));
    }
}
