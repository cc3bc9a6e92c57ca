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
