//! Helpers shared by the integration tests: paths of the bundled samples and models, running
//! the real `obscura` binary, and a scratch folder per test.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

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

/// A real S3-compatible server (s3s-fs, installed by scripts/setup.sh) on a free loopback
/// port, serving the folder `_root`; stopped when dropped.
pub struct S3 {
    pub child: Child,
    pub port: u16,
    pub _root: tempfile::TempDir,
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn s3s_fs() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    [
        home.join(".cargo/bin/s3s-fs"),
        PathBuf::from("/usr/local/bin/s3s-fs"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

pub fn start_s3(buckets: &[&str]) -> S3 {
    let bin = s3s_fs().expect("s3s-fs is installed by scripts/setup.sh (cargo install s3s-fs)");
    let root = scratch();
    for b in buckets {
        std::fs::create_dir_all(root.path().join(b)).unwrap();
    }
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let child = Command::new(bin)
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--access-key",
            "obscura",
            "--secret-key",
            "obscura-secret",
        ])
        .arg(root.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    S3 {
        child,
        port,
        _root: root,
    }
}

/// SplitMix64: a small, stable generator for the suites' random choices (seeded, so a
/// failure reproduces).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Kill points for the kill-and-resume suites. Points are drawn uniformly over 110% of how
/// long an uninterrupted run takes, so that some land after the end; the estimate starts at
/// the measured reference run and shrinks to any later run that ended before its kill point
/// (the reference run is often the slowest: cold caches, a busy machine), so that the suite
/// keeps killing runs instead of watching them finish. Attempts go on until `want` runs were
/// really killed (at most `3 * want` attempts); `finish` fails the test when fewer were, so a
/// suite that never kills anything cannot pass.
pub struct KillPlan {
    span_ms: u64,
    want: u64,
    pub attempts: u64,
    pub killed: u64,
}

impl KillPlan {
    pub fn new(reference: std::time::Duration, want: u64) -> Self {
        KillPlan {
            span_ms: reference.as_millis() as u64,
            want,
            attempts: 0,
            killed: 0,
        }
    }

    /// Whether another attempt is due.
    pub fn more(&self) -> bool {
        self.killed < self.want && self.attempts < self.want * 3
    }

    /// The next kill point, counted from the start of the attempt.
    pub fn next_at(&mut self, rng: &mut Rng) -> std::time::Duration {
        self.attempts += 1;
        std::time::Duration::from_millis(rng.below(self.span_ms * 11 / 10))
    }

    /// Records how an attempt went: `None` when it was killed, else how long it ran to its end.
    pub fn record(&mut self, ended_after: Option<std::time::Duration>) {
        match ended_after {
            None => self.killed += 1,
            Some(d) => self.span_ms = self.span_ms.min(d.as_millis() as u64),
        }
    }

    pub fn finish(&self, name: &str) {
        eprintln!(
            "{name}: {} attempts, {} killed before they ended (last estimate of a run {} ms)",
            self.attempts, self.killed, self.span_ms
        );
        assert!(
            self.killed >= self.want,
            "{name}: only {} of {} attempts were really killed",
            self.killed,
            self.attempts
        );
    }
}

/// A number from the environment, or `default`.
pub fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Every file under `p` (relative paths), sorted.
pub fn files_under(p: &Path) -> Vec<String> {
    let mut v = Vec::new();
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                v.push(e.path().strip_prefix(p).unwrap().display().to_string());
            }
        }
    }
    v.sort();
    v
}

/// Spawns `cmd` (stdout and stderr discarded) and SIGKILLs it once `at` has passed since
/// `start`. Returns `Some(exit status)` when it ended by itself, `None` when it was killed.
pub fn run_until(
    cmd: &mut Command,
    start: std::time::Instant,
    at: std::time::Duration,
) -> Option<std::process::ExitStatus> {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("obscura runs");
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if start.elapsed() >= at {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// `obscura redact INPUT -o OUT EXTRA…` through the real binary.
pub fn redact_to(input: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "redact",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run(&args)
}

/// Runs `obscura redact INPUT -o DIR/out.mp4 EXTRA...` and checks the failure contract.
pub fn expect_failure(input: &Path, extra: &[&str], code: i32, needles: &[&str]) {
    let dir = scratch();
    let out = dir.path().join("out.mp4");
    let o = redact_to(input, &out, extra);
    let err = stderr(&o);
    assert_eq!(
        o.status.code(),
        Some(code),
        "exit status for {input:?}; stderr: {err}"
    );
    assert!(!out.exists(), "no output after a failure");
    assert!(
        listing(dir.path()).is_empty(),
        "nothing left in the output folder: {:?}",
        listing(dir.path())
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line on stderr, got: {err}");
    assert!(lines[0].starts_with("obscura: error: "), "{err}");
    for n in needles {
        assert!(
            err.to_lowercase().contains(&n.to_lowercase()),
            "stderr should mention {n:?}: {err}"
        );
    }
}

/// Runs a `gst-launch`-style pipeline `desc` to its end of stream (within two minutes): how the
/// tests make clips the bundled samples do not have.
pub fn gst_launch(desc: &str) {
    gstreamer::init().unwrap();
    run_to_eos(&gstreamer::parse::launch(desc).unwrap());
}

/// Plays `p` until its end of stream (within 120 s), then stops it.
pub fn run_to_eos(p: &gstreamer::Element) {
    use gstreamer::prelude::*;
    p.set_state(gstreamer::State::Playing).unwrap();
    let msg = p
        .bus()
        .unwrap()
        .timed_pop_filtered(
            gstreamer::ClockTime::from_seconds(120),
            &[gstreamer::MessageType::Eos, gstreamer::MessageType::Error],
        )
        .expect("the pipeline ends in time");
    assert_eq!(msg.type_(), gstreamer::MessageType::Eos, "{msg:?}");
    p.set_state(gstreamer::State::Null).unwrap();
}
