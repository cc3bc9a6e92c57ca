//! The ONNX Runtime environment: finding and loading `libonnxruntime`, choosing the execution
//! provider, and building sessions with the thread settings that share 2 cores with GStreamer.
//!
//! Owns: the one process-wide `ort::Environment` and the library search. Every ORT call in the
//! crate goes through [`session_builder`] so that ORT is never touched before the library is
//! loaded explicitly (ort's implicit `dlopen("libonnxruntime.so")` panics when that fails).
//! Must not touch: model formats (see `yunet`, `centerface`, `vad`).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::ep::{self, ExecutionProvider};
use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};

use super::DetectError;
use super::models::ModelFile;

/// Which hardware runs inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
#[derive(clap::ValueEnum)]
pub enum Device {
    /// ONNX Runtime's CPU execution provider.
    #[default]
    Cpu,
    /// CUDA execution provider; an error when it cannot be used.
    Cuda,
    /// CUDA when the library and a GPU are there, otherwise CPU (with a log line saying so).
    Auto,
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
            Device::Auto => "auto",
        })
    }
}

/// How an inference session is set up.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    pub device: Device,
    pub intra_threads: usize,
    pub inter_threads: usize,
    /// Busy-waiting ORT worker threads steal time from GStreamer's decoder/encoder threads
    /// on small machines; off by default.
    pub spinning: bool,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            device: Device::Cpu,
            intra_threads: 2,
            inter_threads: 1,
            spinning: false,
        }
    }
}

/// File name prefix of the ONNX Runtime shared library (the PyPI wheel ships only a
/// versioned name such as `libonnxruntime.so.1.31.1`).
const LIB_PREFIX: &str = "libonnxruntime.so";

/// Environment variables that name the library explicitly, in order of preference.
pub const LIB_ENV_VARS: [&str; 2] = ["OBSCURA_ORT_LIB", "ORT_DYLIB_PATH"];

struct Loaded {
    env: ort::environment::Environment,
    lib: PathBuf,
}

static ENV: OnceLock<Result<Loaded, String>> = OnceLock::new();
static EXPLICIT_LIB: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Sets the library path to use (from config or a flag). Must be called before the first
/// session is built; later calls have no effect.
pub fn set_library_path(path: Option<PathBuf>) {
    if let Ok(mut slot) = EXPLICIT_LIB.lock() {
        *slot = path;
    }
}

/// Folders searched for the library when nothing names it explicitly.
pub fn library_search_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        dirs.push(dir.join("lib"));
        dirs.push(dir.to_path_buf());
        // A binary in <repo>/target/{release,debug}[/deps] finds the set-up script's copy.
        for up in dir.ancestors().skip(1).take(3) {
            dirs.push(up.join(".deps/onnxruntime"));
        }
    }
    if let Ok(cwd) = std::env::current_dir() {
        dirs.push(cwd.join(".deps/onnxruntime"));
    }
    dirs.push(PathBuf::from("/usr/local/lib/obscura"));
    dirs.push(PathBuf::from("/usr/lib/obscura"));
    dirs
}

fn find_in_dir(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(LIB_PREFIX))
                && p.is_file()
        })
        .collect();
    // Prefer the most specific (versioned) name; stable order for reproducibility.
    found.sort();
    found.pop()
}

/// Resolves which library file will be loaded, without loading it.
pub fn resolve_library() -> Result<PathBuf, DetectError> {
    let explicit = EXPLICIT_LIB.lock().ok().and_then(|g| g.clone());
    let from_env = LIB_ENV_VARS.iter().find_map(|v| {
        std::env::var_os(v)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
    });
    if let Some(p) = explicit.or(from_env) {
        if p.is_dir() {
            return find_in_dir(&p).ok_or_else(|| DetectError::RuntimeMissing {
                searched: vec![p.clone()],
            });
        }
        if p.is_file() {
            return Ok(p);
        }
        return Err(DetectError::RuntimeMissing { searched: vec![p] });
    }
    let dirs = library_search_dirs();
    for d in &dirs {
        if let Some(p) = find_in_dir(d) {
            return Ok(p);
        }
    }
    Err(DetectError::RuntimeMissing { searched: dirs })
}

fn environment() -> Result<&'static Loaded, DetectError> {
    let loaded = ENV.get_or_init(|| {
        let lib = resolve_library().map_err(|e| e.to_string())?;
        // ort may panic on some load failures; never let that escape as a panic.
        let built = std::panic::catch_unwind(|| {
            ort::init_from(&lib)
                .map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", lib.display()))?
                .with_name("obscura")
                .build()
                .map_err(|e| format!("cannot start ONNX Runtime from {}: {e}", lib.display()))
        })
        .unwrap_or_else(|_| {
            Err(format!(
                "ONNX Runtime at {} panicked while loading",
                lib.display()
            ))
        });
        built.map(|env| Loaded { env, lib })
    });
    loaded
        .as_ref()
        .map_err(|msg| DetectError::RuntimeLoad(msg.clone()))
}

/// The path of the loaded ONNX Runtime library (loads it if needed).
pub fn loaded_library() -> Result<PathBuf, DetectError> {
    environment().map(|l| l.lib.clone())
}

/// Whether this ONNX Runtime library was built with the CUDA execution provider.
pub fn cuda_available() -> bool {
    environment().is_ok() && ep::CUDA::is_available().unwrap_or(false)
}

fn map_builder_err(what: &str) -> impl Fn(ort::Error<SessionBuilder>) -> DetectError + '_ {
    move |e| DetectError::Session(format!("{what}: {}", ort::Error::<()>::from(e)))
}

/// The execution provider a session actually got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActiveProvider {
    Cpu,
    Cuda,
}

impl ActiveProvider {
    pub fn name(&self) -> &'static str {
        match self {
            ActiveProvider::Cpu => "cpu",
            ActiveProvider::Cuda => "cuda",
        }
    }
}

/// Builds a session for the model file with the requested provider. CUDA is registered with
/// `error_on_failure` so that a failure is seen here; with [`Device::Auto`] it falls back to
/// CPU and logs why; with [`Device::Cuda`] the failure is an error.
///
/// The session is built from the bytes whose sha256 was just checked
/// ([`ModelFile::read_verified`]), not from the path: a model file swapped or corrupted after
/// an earlier check is refused, never loaded.
pub fn build_session(
    model_file: &ModelFile,
    opts: &SessionOptions,
) -> Result<(Session, ActiveProvider), DetectError> {
    let model_bytes = model_file.read_verified()?;
    let model: &Path = &model_file.path;
    let loaded = environment()?;
    let want_cuda = matches!(opts.device, Device::Cuda | Device::Auto);
    if want_cuda {
        let reason = if !ep::CUDA::is_available().unwrap_or(false) {
            Some(format!(
                "the ONNX Runtime library {} has no CUDA execution provider (the GPU build: scripts/setup.sh --gpu, then OBSCURA_ORT_LIB=.deps/onnxruntime-gpu)",
                loaded.lib.display()
            ))
        } else {
            match base_builder(loaded, opts).and_then(|b| {
                b.with_execution_providers([ep::CUDA::default().build().error_on_failure()])
                    .map_err(map_builder_err("registering the CUDA execution provider"))
            }) {
                Ok(mut b) => match b.commit_from_memory(&model_bytes) {
                    Ok(s) => return Ok((s, ActiveProvider::Cuda)),
                    Err(e) => Some(format!("CUDA session failed: {e}")),
                },
                Err(e) => Some(e.to_string()),
            }
        };
        if let Some(reason) = reason {
            // ORT's messages end in blank lines: one line, as every message of ours.
            let reason = reason.split_whitespace().collect::<Vec<_>>().join(" ");
            if opts.device == Device::Cuda {
                return Err(DetectError::CudaUnavailable(reason));
            }
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                tracing::warn!(%reason, "device auto: CUDA unavailable, inference runs on the CPU execution provider");
            });
        }
    }
    let mut b = base_builder(loaded, opts)?;
    let s = b
        .commit_from_memory(&model_bytes)
        .map_err(|e| DetectError::ModelLoad {
            path: model.to_path_buf(),
            reason: e.to_string(),
        })?;
    Ok((s, ActiveProvider::Cpu))
}

fn base_builder(loaded: &Loaded, opts: &SessionOptions) -> Result<SessionBuilder, DetectError> {
    Session::builder(&loaded.env)
        .map_err(|e| DetectError::Session(e.to_string()))?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(map_builder_err("optimisation level"))?
        .with_intra_threads(opts.intra_threads.max(1))
        .map_err(map_builder_err("intra-op threads"))?
        .with_inter_threads(opts.inter_threads.max(1))
        .map_err(map_builder_err("inter-op threads"))?
        .with_intra_op_spinning(opts.spinning)
        .map_err(map_builder_err("spinning"))?
        .with_inter_op_spinning(opts.spinning)
        .map_err(map_builder_err("spinning"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_versioned_library_name_in_a_folder() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("libonnxruntime.so.1.31.1"), b"x").unwrap();
        std::fs::write(d.path().join("README"), b"x").unwrap();
        assert_eq!(
            find_in_dir(d.path()).unwrap().file_name().unwrap(),
            "libonnxruntime.so.1.31.1"
        );
    }
}
