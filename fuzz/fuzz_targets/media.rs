//! The media entry: bytes written to a file and run through the same probe → demux → decode
//! path `obscura redact` uses (`pipeline::run` in `Mode::DecodeOnly`: no models needed,
//! nothing written), bounded to 300 frames and a 10 s watchdog. Any input must end with a
//! result or a classified error; a stage panic (which the pipeline turns into an `internal`
//! error) is reported as a crash.
#![no_main]

use std::sync::OnceLock;
use std::sync::atomic::Ordering;

use libfuzzer_sys::fuzz_target;
use obscura::config::Config;
use obscura::pipeline::{Control, Job, Mode, PipelineError};

const MAX_FRAMES: u64 = 300;

fn setup() -> &'static (tempfile::TempDir, Config) {
    static S: OnceLock<(tempfile::TempDir, Config)> = OnceLock::new();
    S.get_or_init(|| {
        let mut cfg = Config::default();
        cfg.limits.probe_secs = 5;
        cfg.limits.stall_secs = 10;
        cfg.limits.max_frame_pixels = 1920 * 1080;
        (tempfile::tempdir().expect("temp dir"), cfg)
    })
}

fuzz_target!(|data: &[u8]| {
    let (dir, cfg) = setup();
    let input = dir.path().join("input.bin");
    std::fs::write(&input, data).expect("write");
    let job = Job {
        input: input.clone(),
        output: dir.path().join("never-written.mp4"),
        sidecar: None,
    };
    let ctl = Control::default();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (ctl, done) = (ctl.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if ctl.frames_done.load(Ordering::Relaxed) >= MAX_FRAMES {
                    ctl.cancel.store(true, Ordering::Relaxed);
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        })
    };
    let r = obscura::pipeline::run(&job, cfg, &ctl, Mode::DecodeOnly);
    done.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    match r {
        Err(PipelineError::Internal { message, .. }) if message.contains("panicked") => {
            panic!("a stage panicked: {message}")
        }
        Err(e) => {
            // Every error is classified and names the input.
            assert_ne!(e.class(), "", "unclassified: {e}");
        }
        Ok(_) => {}
    }
    assert!(!job.output.exists(), "decode-only wrote an output");
});
