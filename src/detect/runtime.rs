//! The ONNX Runtime environment: finding and loading `libonnxruntime`, choosing the execution
//! provider, and building sessions with the thread settings that share 2 cores with GStreamer.
//!
//! Owns: the one process-wide `ort::Environment`, the library search and the pool of built
//! sessions. Every session in the crate comes from [`build_session`] so that ORT is never
//! touched before the library is loaded explicitly (ort's implicit
//! `dlopen("libonnxruntime.so")` panics when that fails).
//!
//! Sessions are pooled across files: building one costs far more than checking a model
//! (YuNet + Silero VAD ≈ 250 ms of CPU against ≈ 10 ms to read and hash both), which
//! `batch` and the daemon paid for every file and every 4 s segment. The check is never
//! skipped: every [`build_session`] reads the model file and compares its sha256 first, and
//! only then lends an idle session built from bytes with that same sha256 and the same
//! settings. A missing or corrupted model therefore still fails the file that meets it.
//! Must not touch: model formats (see `yunet`, `centerface`, `vad`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::ep::{self, ExecutionProvider};
use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};

use super::DetectError;
use super::models::ModelFile;

/// Which hardware runs inference.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, Default,
)]
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
            intra_threads: 1,
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
/// an earlier check is refused, never loaded. An idle session built earlier from bytes with
/// the same sha256 and the same options is lent instead of building a new one (see the
/// module docs); it goes back to the pool when the [`PooledSession`] is dropped. The
/// provider the session got is [`PooledSession::provider`].
pub fn build_session(
    model_file: &ModelFile,
    opts: &SessionOptions,
) -> Result<PooledSession, DetectError> {
    let model_bytes = model_file.read_verified()?;
    let key = PoolKey::new(model_file, opts);
    let (session, provider) = match pool_take(&key) {
        Some(idle) => idle,
        None => build_new_session(model_file, &model_bytes, opts)?,
    };
    Ok(PooledSession {
        session: Some(session),
        provider,
        key,
    })
}

fn build_new_session(
    model_file: &ModelFile,
    model_bytes: &[u8],
    opts: &SessionOptions,
) -> Result<(Session, ActiveProvider), DetectError> {
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
                Ok(mut b) => match b.commit_from_memory(model_bytes) {
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
        .commit_from_memory(model_bytes)
        .map_err(|e| DetectError::ModelLoad {
            path: model.to_path_buf(),
            reason: e.to_string(),
        })?;
    Ok((s, ActiveProvider::Cpu))
}

/// What makes two sessions interchangeable: the same model bytes (by their verified sha256)
/// built with the same options.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PoolKey {
    sha256: String,
    device: Device,
    intra_threads: usize,
    inter_threads: usize,
    spinning: bool,
}

impl PoolKey {
    fn new(model_file: &ModelFile, opts: &SessionOptions) -> Self {
        PoolKey {
            sha256: model_file.sha256.clone(),
            device: opts.device,
            intra_threads: opts.intra_threads,
            inter_threads: opts.inter_threads,
            spinning: opts.spinning,
        }
    }
}

type Idle = HashMap<PoolKey, Vec<(Session, ActiveProvider)>>;

/// Idle sessions; never more per key than were in use at once.
static POOL: Mutex<Option<Idle>> = Mutex::new(None);

fn pool_take(key: &PoolKey) -> Option<(Session, ActiveProvider)> {
    POOL.lock().ok()?.as_mut()?.get_mut(key)?.pop()
}

fn pool_put(key: PoolKey, session: Session, provider: ActiveProvider) {
    if let Ok(mut pool) = POOL.lock() {
        pool.get_or_insert_with(HashMap::new)
            .entry(key)
            .or_default()
            .push((session, provider));
    }
}

/// How many idle sessions the pool holds for this model and these options.
pub fn idle_sessions(model_file: &ModelFile, opts: &SessionOptions) -> usize {
    let key = PoolKey::new(model_file, opts);
    POOL.lock()
        .ok()
        .and_then(|p| p.as_ref().and_then(|m| m.get(&key).map(Vec::len)))
        .unwrap_or(0)
}

/// A session lent by the pool: used like a [`Session`], given back when dropped. A session
/// keeps no state between runs (inputs, outputs and Silero's recurrent state are the
/// caller's), so a session whose run failed is as good as a fresh one.
pub struct PooledSession {
    /// `None` only inside `drop`.
    session: Option<Session>,
    provider: ActiveProvider,
    key: PoolKey,
}

impl PooledSession {
    /// The execution provider this session runs on.
    pub fn provider(&self) -> ActiveProvider {
        self.provider
    }
}

impl std::ops::Deref for PooledSession {
    type Target = Session;
    fn deref(&self) -> &Session {
        self.session.as_ref().expect("taken only in drop")
    }
}

impl std::ops::DerefMut for PooledSession {
    fn deref_mut(&mut self) -> &mut Session {
        self.session.as_mut().expect("taken only in drop")
    }
}

impl Drop for PooledSession {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            pool_put(self.key.clone(), s, self.provider);
        }
    }
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

    /// Sessions are lent again across files, but only to a file whose model passed the
    /// sha256 check again: a model corrupted or removed after a session was pooled fails
    /// the next file, as it did when every file built its own session.
    #[test]
    fn a_pooled_session_is_lent_only_after_the_model_passed_its_check_again() {
        use crate::detect::{ModelFile, ModelKind};
        let d = tempfile::tempdir().unwrap();
        let name = ModelKind::Yunet.file_name();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
        std::fs::copy(repo.join(name), d.path().join(name)).unwrap();
        let m = ModelFile::locate(ModelKind::Yunet, Some(d.path())).unwrap();
        // Options no other test uses: the pool is process-wide.
        let opts = SessionOptions {
            intra_threads: 5,
            inter_threads: 3,
            ..Default::default()
        };
        assert_eq!(idle_sessions(&m, &opts), 0);
        let a = build_session(&m, &opts).unwrap();
        let b = build_session(&m, &opts).unwrap();
        assert_eq!(idle_sessions(&m, &opts), 0, "both in use");
        drop(a);
        drop(b);
        assert_eq!(idle_sessions(&m, &opts), 2, "both given back");
        let a = build_session(&m, &opts).unwrap();
        assert_eq!(idle_sessions(&m, &opts), 1, "one lent again, not built");
        drop(a);
        // Other options: a session of its own.
        let other = SessionOptions {
            intra_threads: 5,
            inter_threads: 4,
            ..Default::default()
        };
        drop(build_session(&m, &other).unwrap());
        assert_eq!(idle_sessions(&m, &opts), 2);

        let mut bytes = std::fs::read(d.path().join(name)).unwrap();
        bytes[1000] ^= 0x40;
        std::fs::write(d.path().join(name), &bytes).unwrap();
        assert!(matches!(
            build_session(&m, &opts),
            Err(DetectError::ModelChecksum { .. })
        ));
        std::fs::remove_file(d.path().join(name)).unwrap();
        assert!(matches!(
            build_session(&m, &opts),
            Err(DetectError::ModelMissing { .. })
        ));
        assert_eq!(idle_sessions(&m, &opts), 2, "refusals lend nothing");
    }

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
