//! Helpers shared by the integration tests: paths of the bundled samples and models, running
//! the real `obscura` binary, and a scratch folder per test.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn sample(name: &str) -> PathBuf {
    repo().join("samples").join(name)
}

pub fn models() -> PathBuf {
    repo().join("models")
}

/// The default configuration with the repository's models.
pub fn config() -> obscura::config::Config {
    let mut c = obscura::config::Config::default();
    c.runtime.models_dir = Some(models());
    c
}

pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_obscura"));
    c.env("OBSCURA_MODELS", models());
    c.env_remove("OBSCURA_CONFIG");
    c
}

pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("obscura binary runs")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("obscura-test-")
        .tempdir()
        .expect("temp dir")
}

/// Files in `dir` (names), sorted.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Writes mono 16-bit PCM WAV.
pub fn write_wav(path: &Path, samples: &[f32], rate: u32) {
    let data: Vec<u8> = samples
        .iter()
        .flat_map(|s| ((s.clamp(-1.0, 1.0) * 32767.0).round() as i16).to_le_bytes())
        .collect();
    let mut out = Vec::with_capacity(44 + data.len());
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&data);
    std::fs::write(path, out).unwrap();
}
