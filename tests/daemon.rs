//! `obscura daemon` as operators run it: the real binary, a real RTSP server (the
//! `rtsp_test_server` example, built by `cargo test`), a real `nats-server -js` (Debian
//! package), real stores on local folders. Loopback only; every wait is bounded.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A free loopback TCP port.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the child when the test ends, however it ends.
struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    let status = body.split_whitespace().nth(1)?.parse().ok()?;
    let text = body.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Some((status, text))
}

/// The value of one metric sample (`name{labels}` exactly as rendered), 0 when absent.
fn metric(port: u16, sample: &str) -> f64 {
    http_get(port, "/metrics")
        .and_then(|(_, t)| {
            t.lines().find_map(|l| {
                l.strip_prefix(sample)
                    .and_then(|rest| rest.strip_prefix(' '))
                    .and_then(|v| v.trim().parse().ok())
            })
        })
        .unwrap_or(0.0)
}

/// Waits until `cond` holds, polling every 100 ms, at most `limit / 100 ms` polls (a hang
/// guard: nothing here measures speed); panics with `what` when it never holds.
fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let polls = limit.as_millis() / 100;
    for _ in 0..polls {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(cond(), "gave up after {polls} polls waiting for {what}");
}

/// Writes a daemon config in `dir` (store, quarantine, audit, state all under it).
fn daemon_config(dir: &Path, port: u16, extra: &str) -> PathBuf {
    let d = dir.display();
    let text = format!(
        r#"[daemon]
listen = "127.0.0.1:{port}"
workers = 2
state_dir = "{d}/state"
stable_secs = 0.3
poll_ms = 100
drain_secs = 30
{extra}
[regions.eu]
store = "file://{d}/store"
[devices.cam-1]
region = "eu"
account = "acct-1"
[devices.cam-2]
region = "eu"
account = "acct-1"
[devices.cam-kid]
region = "eu"
account = "acct-3"
minor = true
[paths]
quarantine = "{d}/quarantine"
audit = "{d}/audit.jsonl"
"#
    );
    let p = dir.join("obscura.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// A daemon config in `dir` watching `dir/inbox` (its `cam-1/` made), with `daemon_keys`
/// added to the `[daemon]` table: the inbox and the config file.
fn inbox_config(dir: &Path, port: u16, daemon_keys: &str) -> (PathBuf, PathBuf) {
    let inbox = dir.join("inbox");
    std::fs::create_dir_all(inbox.join("cam-1")).unwrap();
    let extra = format!("{daemon_keys}[[inbox]]\npath = \"{}\"\n", inbox.display());
    (inbox, daemon_config(dir, port, &extra))
}

fn start_daemon(config: &Path, port: u16, log: &Path) -> Proc {
    let log = std::fs::File::create(log).unwrap();
    let child = bin()
        .args(["daemon", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("obscura daemon starts");
    let p = Proc(child);
    wait_for(Duration::from_secs(30), "/healthz", || {
        http_get(port, "/healthz").is_some_and(|(s, _)| s == 200)
    });
    p
}

/// Committed clips in a local store: clip id → sidecar JSON.
fn stored_clips(store: &Path) -> Vec<(String, serde_json::Value)> {
    let mut v: Vec<_> = std::fs::read_dir(store.join("clips"))
        .map(|r| {
            r.filter_map(Result::ok)
                .filter_map(|e| {
                    let s = std::fs::read(e.path().join("sidecar.json")).ok()?;
                    Some((
                        e.file_name().to_string_lossy().to_string(),
                        serde_json::from_slice(&s).ok()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// A copy of the bundled clip made unique by appended bytes (a distinct sha256, the same
/// media: MP4 readers ignore trailing bytes).
fn unique_clip(to: &Path, tag: &str) {
    let mut data = std::fs::read(sample("city_pan.mp4")).unwrap();
    data.extend_from_slice(tag.as_bytes());
    let tmp = to.with_extension("part");
    std::fs::write(&tmp, data).unwrap();
    std::fs::rename(tmp, to).unwrap();
}

fn sigterm(p: &Proc) {
    // SAFETY: plain kill(2) on our own child.
    unsafe {
        libc::kill(p.0.id() as i32, libc::SIGTERM);
    }
}

/// The exit code once the process ends; `None` if it is still running after `limit / 50 ms`
/// polls (a hang guard).
fn wait_exit(p: &mut Proc, limit: Duration) -> Option<i32> {
    for _ in 0..limit.as_millis() / 50 {
        if let Ok(Some(st)) = p.0.try_wait() {
            return st.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn example(name: &str) -> PathBuf {
    // cargo test builds the examples next to the test binaries' profile folder.
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().and_then(Path::parent).unwrap();
    let p = profile.join("examples").join(name);
    assert!(
        p.is_file(),
        "{} missing (cargo test builds examples)",
        p.display()
    );
    p
}

/// The RTSP test server as a stock gst-rtsp-server media factory with the launch line
/// `launch` (payloaders pay0, pay1, …), on `port`.
fn start_rtsp_launch(port: u16, launch: &str, out: &Path) -> Proc {
    let child = Command::new(example("rtsp_test_server"))
        .args(["--port", &port.to_string(), "--launch", launch])
        .stdout(std::fs::File::create(out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("rtsp test server starts");
    let p = Proc(child);
    wait_for(Duration::from_secs(20), "the RTSP server to listen", || {
        std::fs::read_to_string(out).is_ok_and(|s| s.contains("listening"))
    });
    p
}

fn start_rtsp(port: u16, args: &[&str], out: &Path) -> Proc {
    let child = Command::new(example("rtsp_test_server"))
        .args(["--port", &port.to_string(), "--file"])
        .arg(sample("city_pan.mp4"))
        .args(args)
        .stdout(std::fs::File::create(out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("rtsp test server starts");
    let p = Proc(child);
    wait_for(Duration::from_secs(20), "the RTSP server to listen", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    p
}

#[test]
fn inbox_files_are_routed_removed_only_after_commit_and_counted() {
    let dir = scratch();
    let port = free_port();
    let (inbox, cfg) = inbox_config(dir.path(), port, "");
    let mut d = start_daemon(&cfg, port, &dir.path().join("daemon.log"));
    assert_eq!(
        http_get(port, "/readyz").unwrap().0,
        200,
        "ready with models present"
    );
    std::fs::create_dir_all(inbox.join("cam-9")).unwrap();
    let good = inbox.join("cam-1/20261129T101500Z-a.mp4");
    unique_clip(&good, "a");
    std::fs::write(inbox.join("cam-1/bad.mp4"), b"not a video at all").unwrap();
    unique_clip(&inbox.join("cam-9/x.mp4"), "unknown device");
    // A minor's device: faces found → refused, deleted, not kept anywhere.
    std::fs::create_dir_all(inbox.join("cam-kid")).unwrap();
    unique_clip(&inbox.join("cam-kid/kid.mp4"), "kid");
    // While it works: whenever the good input is gone, its clip must already be committed.
    let store = dir.path().join("store");
    wait_for(Duration::from_secs(120), "the inbox to empty", || {
        if !good.exists() {
            assert_eq!(
                stored_clips(&store).len(),
                1,
                "input removed before its clip was committed"
            );
        }
        listing(&inbox.join("cam-1")).is_empty()
            && listing(&inbox.join("cam-9")).is_empty()
            && listing(&inbox.join("cam-kid")).is_empty()
    });
    let clips = stored_clips(&store);
    assert_eq!(clips.len(), 1);
    let sc = &clips[0].1;
    assert_eq!(sc["clip"]["device"], "cam-1");
    assert_eq!(sc["clip"]["region"], "eu");
    assert_eq!(sc["clip"]["classification"], "personal");
    assert_eq!(
        sc["clip"]["recorded_at"], "2026-11-29T10:15:00Z",
        "recorded time from the file name"
    );
    assert!(sc["totals"]["tracks"].as_u64().unwrap() > 0);
    // Two inputs quarantined with a reason each.
    let q = listing(&dir.path().join("quarantine"));
    assert_eq!(
        q.iter().filter(|n| n.ends_with(".reason.json")).count(),
        2,
        "{q:?}"
    );
    // Metrics say what happened.
    assert_eq!(
        metric(port, "obscura_clips_total{result=\"processed\"}"),
        1.0
    );
    assert_eq!(
        metric(port, "obscura_clips_total{result=\"quarantined\"}"),
        2.0
    );
    assert_eq!(
        metric(port, "obscura_clips_total{result=\"refused_minor\"}"),
        1.0
    );
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    assert!(audit.contains("\"refuse-minor\""));
    assert_eq!(
        metric(port, "obscura_frames_total"),
        sc["totals"]["frames"].as_f64().unwrap()
    );
    assert_eq!(
        metric(port, "obscura_faces_total"),
        sc["totals"]["tracks"].as_f64().unwrap()
    );
    assert_eq!(
        metric(port, "obscura_stage_seconds_count{stage=\"detect\"}"),
        1.0
    );
    assert_eq!(metric(port, "obscura_model_loaded{model=\"yunet\"}"), 1.0);
    assert_eq!(metric(port, "obscura_queue_depth"), 0.0);
    // The same bytes again: recognised as stored, nothing new written.
    unique_clip(&inbox.join("cam-1/again.mp4"), "a");
    wait_for(Duration::from_secs(60), "the duplicate to be taken", || {
        listing(&inbox.join("cam-1")).is_empty()
    });
    assert_eq!(stored_clips(&store).len(), 1);
    assert_eq!(
        metric(port, "obscura_clips_total{result=\"duplicate\"}"),
        1.0
    );
    // SIGTERM: drains and exits 0.
    sigterm(&d);
    assert_eq!(wait_exit(&mut d, Duration::from_secs(40)), Some(0));
}

#[test]
fn kill_9_mid_clip_loses_nothing_and_sigterm_abandons_cleanly() {
    let dir = scratch();
    let port = free_port();
    let (inbox, cfg) = inbox_config(dir.path(), port, "");
    for i in 0..3 {
        unique_clip(&inbox.join(format!("cam-1/c{i}.mp4")), &format!("k{i}"));
    }
    let log = dir.path().join("daemon.log");
    let d = start_daemon(&cfg, port, &log);
    wait_for(Duration::from_secs(60), "a clip in flight", || {
        metric(port, "obscura_clips_in_flight") >= 1.0
    });
    std::thread::sleep(Duration::from_millis(700));
    drop(d); // SIGKILL mid-clip
    let left = listing(&inbox.join("cam-1")).len();
    assert!(left >= 1, "something was still in flight");
    // The work folder has the killed run's temporaries; the restart clears them.
    let mut d = start_daemon(&cfg, port, &dir.path().join("daemon2.log"));
    let store = dir.path().join("store");
    wait_for(Duration::from_secs(180), "every clip committed", || {
        listing(&inbox.join("cam-1")).is_empty()
    });
    let clips = stored_clips(&store);
    assert_eq!(clips.len(), 3, "each input exactly once");
    for (id, sc) in &clips {
        let media = store.join("clips").join(id).join("media.mp4");
        let bytes = std::fs::read(&media).unwrap();
        let obj = &sc["clip"]["objects"][0];
        assert_eq!(obj["kind"], "media");
        assert_eq!(
            obscura::fsutil::sha256_bytes(&bytes),
            obj["sha256"].as_str().unwrap(),
            "committed media matches its sidecar"
        );
    }
    assert!(
        listing(&dir.path().join("quarantine")).is_empty(),
        "nothing quarantined"
    );
    assert!(listing(&dir.path().join("state/work")).is_empty());
    // SIGTERM with a clip in flight and no time to drain: the clip is abandoned, stays in the
    // inbox, nothing partial is stored, exit 0.
    unique_clip(&inbox.join("cam-1/late.mp4"), "late");
    wait_for(Duration::from_secs(60), "the late clip in flight", || {
        metric(port, "obscura_clips_in_flight") >= 1.0
    });
    sigterm(&d);
    std::thread::sleep(Duration::from_millis(100));
    sigterm(&d); // a second signal abandons at once
    assert_eq!(wait_exit(&mut d, Duration::from_secs(30)), Some(0));
    let late_committed = stored_clips(&store).len() == 4;
    assert!(
        late_committed || inbox.join("cam-1/late.mp4").exists(),
        "the abandoned clip stays in the inbox"
    );
}

#[test]
fn rtsp_stream_is_cut_into_clips_holding_every_served_frame() {
    let dir = scratch();
    let port = free_port();
    let rport = free_port();
    // The server plays the 14.08 s clip (169 frames) once, then ends the stream; later
    // connections get an empty stream.
    let served = dir.path().join("served.txt");
    let _server = start_rtsp(rport, &["--loops", "1", "--once"], &served);
    let extra = format!(
        "[[stream]]\ndevice = \"cam-2\"\nurl = \"rtsp://127.0.0.1:{rport}/cam\"\nsegment = \"4s\"\nbackoff_max_secs = 2\n"
    );
    let cfg = daemon_config(dir.path(), port, &extra);
    let mut d = start_daemon(&cfg, port, &dir.path().join("daemon.log"));
    wait_for(Duration::from_secs(90), "the served stream to end", || {
        std::fs::read_to_string(&served).is_ok_and(|s| s.contains("served 14"))
    });
    let store = dir.path().join("store");
    wait_for(Duration::from_secs(120), "all segments processed", || {
        let clips = stored_clips(&store);
        let frames: u64 = clips
            .iter()
            .map(|(_, s)| s["totals"]["frames"].as_u64().unwrap())
            .sum();
        frames >= 169 && listing(&dir.path().join("state/streams/cam-2")).is_empty()
    });
    let clips = stored_clips(&store);
    let frames: u64 = clips
        .iter()
        .map(|(_, s)| s["totals"]["frames"].as_u64().unwrap())
        .sum();
    let secs: f64 = clips
        .iter()
        .map(|(_, s)| s["input"]["duration_s"].as_f64().unwrap())
        .sum();
    assert_eq!(frames, 169, "every served frame in exactly one clip");
    assert!((secs - 14.083).abs() < 0.1, "total duration {secs}");
    assert!(clips.len() >= 3, "cut into 4 s clips: {}", clips.len());
    for (_, s) in &clips {
        assert_eq!(s["clip"]["device"], "cam-2");
        assert!(s["input"]["duration_s"].as_f64().unwrap() < 4.6);
    }
    assert!(metric(port, "obscura_stream_segments_total{device=\"cam-2\"}") >= 3.0);
    sigterm(&d);
    assert_eq!(wait_exit(&mut d, Duration::from_secs(40)), Some(0));
}

#[test]
fn rtsp_camera_killed_and_restarted_is_recorded_again() {
    let dir = scratch();
    let port = free_port();
    let rport = free_port();
    let out = dir.path().join("server.txt");
    let server = start_rtsp(rport, &[], &out);
    let extra = format!(
        "[[stream]]\ndevice = \"cam-2\"\nurl = \"rtsp://127.0.0.1:{rport}/cam\"\nsegment = \"2s\"\nbackoff_max_secs = 1\nstall_secs = 3\n"
    );
    let cfg = daemon_config(dir.path(), port, &extra);
    let mut d = start_daemon(&cfg, port, &dir.path().join("daemon.log"));
    let up = "obscura_stream_up{device=\"cam-2\"}";
    let segs = "obscura_stream_segments_total{device=\"cam-2\"}";
    wait_for(
        Duration::from_secs(60),
        "the stream up and a segment",
        || metric(port, up) == 1.0 && metric(port, segs) >= 1.0,
    );
    drop(server); // the camera dies (SIGKILL)
    wait_for(Duration::from_secs(30), "the stream reported down", || {
        metric(port, up) == 0.0
    });
    let before = metric(port, segs);
    std::thread::sleep(Duration::from_secs(2));
    let _server = start_rtsp(rport, &[], &out);
    wait_for(Duration::from_secs(60), "the stream up again", || {
        metric(port, up) == 1.0
    });
    wait_for(
        Duration::from_secs(60),
        "new segments after the restart",
        || metric(port, segs) >= before + 2.0,
    );
    assert!(metric(port, "obscura_stream_reconnects_total{device=\"cam-2\"}") >= 1.0);
    // The segment open when the camera died was closed and kept, not lost: clips cover
    // both sides of the outage.
    wait_for(Duration::from_secs(120), "segments processed", || {
        stored_clips(&dir.path().join("store")).len() > before as usize
    });
    sigterm(&d);
    assert_eq!(wait_exit(&mut d, Duration::from_secs(40)), Some(0));
    // The segment in progress at shutdown was finished and handed on, not left in the spool.
    assert!(listing(&dir.path().join("state/spool/cam-2")).is_empty());
}

/// A camera whose server goes away for good: once it has delivered no video for
/// `daemon.stream_stale_secs`, /readyz says not ready naming it (and `obscura_ready` is 0)
/// while its staleness gauges keep growing; a stream down but within the bound does not do
/// that. When the server comes back the camera is recorded again and /readyz is ready.
#[test]
fn a_camera_gone_past_the_stale_bound_makes_readyz_name_it_until_it_records_again() {
    let dir = scratch();
    let port = free_port();
    let rport = free_port();
    let out = dir.path().join("server.txt");
    let server = start_rtsp(rport, &[], &out);
    let extra = format!(
        "stream_stale_secs = 5\n[[stream]]\ndevice = \"cam-2\"\nurl = \"rtsp://127.0.0.1:{rport}/cam\"\nsegment = \"2s\"\nbackoff_max_secs = 1\nstall_secs = 3\n"
    );
    let cfg = daemon_config(dir.path(), port, &extra);
    let mut d = start_daemon(&cfg, port, &dir.path().join("daemon.log"));
    let up = "obscura_stream_up{device=\"cam-2\"}";
    let segs = "obscura_stream_segments_total{device=\"cam-2\"}";
    let since_data = "obscura_stream_seconds_since_data{device=\"cam-2\"}";
    let since_segment = "obscura_stream_seconds_since_last_segment{device=\"cam-2\"}";
    let readyz = || http_get(port, "/readyz").unwrap();
    wait_for(
        Duration::from_secs(60),
        "the stream up, a segment, and ready",
        || metric(port, up) == 1.0 && metric(port, segs) >= 1.0 && readyz().0 == 200,
    );
    let text = http_get(port, "/metrics").unwrap().1;
    assert!(
        text.contains(&format!("{since_segment} ")) && text.contains(&format!("{since_data} ")),
        "staleness gauges rendered: {text}"
    );
    drop(server); // the camera's server is gone (SIGKILL) and stays gone for a while
    wait_for(Duration::from_secs(60), "/readyz not ready", || {
        readyz().0 == 503
    });
    let (_, why) = readyz();
    assert!(
        why.contains("cam-2") && why.contains("not recorded"),
        "the reason names the device: {why}"
    );
    assert_eq!(metric(port, "obscura_ready"), 0.0);
    // Not ready only once past the bound; and the gauges keep growing while it is gone.
    let (data0, seg0) = (metric(port, since_data), metric(port, since_segment));
    assert!(
        data0 > 5.0,
        "not ready before the bound: {data0} s without video"
    );
    wait_for(
        Duration::from_secs(30),
        "the staleness gauges growing",
        || metric(port, since_data) > data0 && metric(port, since_segment) > seg0,
    );
    assert_eq!(metric(port, up), 0.0);
    let before = metric(port, segs);
    let _server = start_rtsp(rport, &[], &out);
    wait_for(Duration::from_secs(60), "the camera recorded again", || {
        metric(port, up) == 1.0 && metric(port, segs) >= before + 1.0
    });
    wait_for(Duration::from_secs(60), "/readyz ready again", || {
        readyz().0 == 200
    });
    assert_eq!(metric(port, "obscura_ready"), 1.0);
    assert!(
        metric(port, since_data) < 5.0,
        "ready means video within the bound"
    );
    sigterm(&d);
    assert_eq!(wait_exit(&mut d, Duration::from_secs(40)), Some(0));
}

/// Under load a recorder's `set_state(Null)` was seen never to return: the camera was never
/// reconnected and SIGTERM never ended the daemon. With the first teardown made to hang
/// (fault injection), the camera is reconnected and recorded again, and SIGTERM still ends
/// the daemon within its drain time plus the grace for stuck threads.
#[test]
fn regression_a_stuck_teardown_still_reconnects_and_sigterm_still_ends_the_daemon() {
    let dir = scratch();
    let port = free_port();
    let rport = free_port();
    let out = dir.path().join("server.txt");
    let server = start_rtsp(rport, &[], &out);
    let extra = format!(
        "[[stream]]\ndevice = \"cam-2\"\nurl = \"rtsp://127.0.0.1:{rport}/cam\"\nsegment = \"2s\"\nbackoff_max_secs = 1\nstall_secs = 3\n"
    );
    let cfg = daemon_config(dir.path(), port, &extra);
    let log = std::fs::File::create(dir.path().join("daemon.log")).unwrap();
    let child = bin()
        .args(["daemon", "--config"])
        .arg(&cfg)
        .env("OBSCURA_FAULT", "teardown-hang@count=1")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("obscura daemon starts");
    let mut d = Proc(child);
    wait_for(Duration::from_secs(30), "/healthz", || {
        http_get(port, "/healthz").is_some_and(|(s, _)| s == 200)
    });
    let up = "obscura_stream_up{device=\"cam-2\"}";
    let segs = "obscura_stream_segments_total{device=\"cam-2\"}";
    let stuck = "obscura_stream_stuck_teardowns_total{device=\"cam-2\"}";
    wait_for(
        Duration::from_secs(60),
        "the stream up and a segment",
        || metric(port, up) == 1.0 && metric(port, segs) >= 1.0,
    );
    drop(server); // the camera dies: its connection is torn down, and that teardown hangs
    wait_for(
        Duration::from_secs(40),
        "the stuck teardown counted",
        || metric(port, stuck) == 1.0,
    );
    let before = metric(port, segs);
    let _server = start_rtsp(rport, &[], &out);
    wait_for(Duration::from_secs(60), "the stream up again", || {
        metric(port, up) == 1.0
    });
    wait_for(
        Duration::from_secs(60),
        "new segments after the restart",
        || metric(port, segs) >= before + 2.0,
    );
    sigterm(&d);
    // drain_secs is 30; the stuck teardown's thread is not waited for beyond the grace.
    assert_eq!(wait_exit(&mut d, Duration::from_secs(50)), Some(0));
    let text = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap();
    assert!(text.contains("did not stop in time"), "{text}");
}

/// A camera that sends audio (here G.711 µ-law, as door stations and intercoms do, served by
/// a stock gst-rtsp-server media factory beside the H.264 video): its audio is recorded into
/// every segment, and each stored clip has its voices found and muted like a file's.
#[test]
fn camera_audio_is_recorded_and_its_voices_muted_in_the_stored_clips() {
    let dir = scratch();
    let port = free_port();
    let rport = free_port();
    let launch = format!(
        "filesrc location=\"{}\" ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 \
         config-interval=1 filesrc location=\"{}\" ! wavparse ! audioconvert ! audioresample ! \
         audio/x-raw,rate=8000,channels=1 ! mulawenc ! rtppcmupay name=pay1 pt=0",
        sample("city_pan.mp4").display(),
        sample("audio/librivox_gaps_16k.wav").display()
    );
    let _server = start_rtsp_launch(rport, &launch, &dir.path().join("server.txt"));
    let extra = format!(
        "[[stream]]\ndevice = \"cam-2\"\nurl = \"rtsp://127.0.0.1:{rport}/cam\"\nsegment = \"4s\"\nbackoff_max_secs = 1\n"
    );
    let cfg = daemon_config(dir.path(), port, &extra);
    let mut d = start_daemon(&cfg, port, &dir.path().join("daemon.log"));
    let store = dir.path().join("store");
    // The file's speech runs 1.2-7.8 s and 10.4-12.9 s of each 14 s pass.
    let speech_s = |clips: &[(String, serde_json::Value)]| -> f64 {
        clips
            .iter()
            .filter_map(|(_, s)| s["voice"]["segments"].as_array())
            .flatten()
            .map(|g| g["end_s"].as_f64().unwrap() - g["start_s"].as_f64().unwrap())
            .sum()
    };
    wait_for(Duration::from_secs(120), "clips with speech stored", || {
        speech_s(&stored_clips(&store)) > 4.0
    });
    sigterm(&d);
    assert_eq!(wait_exit(&mut d, Duration::from_secs(40)), Some(0));
    let clips = stored_clips(&store);
    let mut checked = 0.0;
    for (id, s) in &clips {
        assert_eq!(
            s["input"]["audio"]["codec"], "MPEG-4 AAC",
            "the camera's audio is in the clip: {s}"
        );
        let (x, rate) =
            obscura::eval::decode_audio(&store.join("clips").join(id).join("media.mp4")).unwrap();
        assert!(rate > 0 && !x.is_empty(), "stored audio");
        for g in s["voice"]["segments"].as_array().unwrap() {
            let (a, b) = (g["start_s"].as_f64().unwrap(), g["end_s"].as_f64().unwrap());
            if b - a < 0.3 {
                continue;
            }
            let inside = obscura::eval::energy(&x, rate, |t| t > a + 0.05 && t < b - 0.05);
            let n = (b - a - 0.1) * f64::from(rate);
            assert!(
                (inside / n).sqrt() < 1e-3,
                "{id}: speech {a:.2}-{b:.2} s muted (rms {})",
                (inside / n).sqrt()
            );
            checked += b - a;
        }
    }
    assert!(checked > 3.0, "{checked} s of stored speech checked");
}

/// A B-frame camera (H.264 High, 2 B-frames) served the way stock RTSP servers serve a file
/// (gst-rtsp-server's media factory: `qtdemux ! h264parse ! rtph264pay`, paced in real time).
/// RTP carries presentation times only, so each recorded segment holds decode-order
/// timestamps: every segment stalled for 60 s and went to the quarantine (issue #29). Every
/// segment is stored now, none quarantined.
#[test]
fn b_frame_camera_from_a_stock_server_is_recorded_and_every_segment_stored() {
    let dir = scratch();
    let port = free_port();
    let rport = free_port();
    let bframes = dir.path().join("bframes.mp4");
    gst_launch(&format!(
        "filesrc location=\"{}\" ! qtdemux ! h264parse ! avdec_h264 ! videoconvert ! \
         video/x-raw,format=I420 ! x264enc speed-preset=veryfast bframes=2 key-int-max=24 ! \
         video/x-h264,profile=high ! h264parse ! mp4mux ! filesink location=\"{}\"",
        sample("city_pan.mp4").display(),
        bframes.display()
    ));
    let launch = format!(
        "filesrc location=\"{}\" ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 \
         config-interval=1",
        bframes.display()
    );
    let _server = start_rtsp_launch(rport, &launch, &dir.path().join("server.txt"));
    let extra = format!(
        "[[stream]]\ndevice = \"cam-2\"\nurl = \"rtsp://127.0.0.1:{rport}/cam\"\nsegment = \"4s\"\nbackoff_max_secs = 1\n"
    );
    let cfg = daemon_config(dir.path(), port, &extra);
    let mut d = start_daemon(&cfg, port, &dir.path().join("daemon.log"));
    let store = dir.path().join("store");
    let segs = "obscura_stream_segments_total{device=\"cam-2\"}";
    wait_for(
        Duration::from_secs(120),
        "segments recorded and processed",
        || {
            metric(port, segs) >= 4.0
                && listing(&dir.path().join("state/streams/cam-2")).is_empty()
                && stored_clips(&store).len() >= 4
        },
    );
    sigterm(&d);
    assert_eq!(wait_exit(&mut d, Duration::from_secs(40)), Some(0));
    let quarantined = walk(&dir.path().join("quarantine"));
    assert!(
        quarantined.is_empty(),
        "nothing quarantined: {quarantined:?}"
    );
    for (id, s) in stored_clips(&store) {
        assert!(s["totals"]["frames"].as_u64().unwrap() > 0, "{id}: {s}");
    }
}

/// Two daemons on one state folder would clear each other's work folder and spool: the second
/// one refuses to start, naming the folder and the first one's pid, and the first runs on.
#[test]
fn a_second_daemon_on_the_same_state_folder_refuses_to_start() {
    let dir = scratch();
    let port = free_port();
    let (_inbox, cfg) = inbox_config(dir.path(), port, "");
    let first = start_daemon(&cfg, port, &dir.path().join("daemon.log"));
    let mut second = Proc(
        bin()
            .args(["daemon", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let code = wait_exit(&mut second, Duration::from_secs(60));
    assert!(
        matches!(code, Some(c) if c != 0),
        "the second daemon must exit non-zero: {code:?}"
    );
    let mut err = String::new();
    second
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let state = dir.path().join("state");
    assert!(
        err.contains(&format!("state folder {} is in use", state.display()))
            && err.contains(&format!("pid {}", first.0.id())),
        "{err}"
    );
    assert_eq!(
        http_get(port, "/healthz").map(|r| r.0),
        Some(200),
        "the first daemon keeps running"
    );
    sigterm(&first);
}

/// An MJPEG camera (cheap cameras and many door stations send it over RTSP), served by a
/// stock gst-rtsp-server media factory: recorded (its frames encoded to H.264, which MP4
/// holds), every segment stored with its faces found.
#[test]
fn mjpeg_camera_is_recorded_and_its_faces_found() {
    let dir = scratch();
    let port = free_port();
    let rport = free_port();
    let launch = format!(
        "filesrc location=\"{}\" ! qtdemux ! h264parse ! avdec_h264 ! videoconvert ! \
         jpegenc quality=85 ! rtpjpegpay name=pay0 pt=26",
        sample("city_pan.mp4").display()
    );
    let _server = start_rtsp_launch(rport, &launch, &dir.path().join("server.txt"));
    let extra = format!(
        "[[stream]]\ndevice = \"cam-2\"\nurl = \"rtsp://127.0.0.1:{rport}/cam\"\nsegment = \"4s\"\nbackoff_max_secs = 1\n"
    );
    let cfg = daemon_config(dir.path(), port, &extra);
    let mut d = start_daemon(&cfg, port, &dir.path().join("daemon.log"));
    let store = dir.path().join("store");
    wait_for(Duration::from_secs(120), "MJPEG segments stored", || {
        stored_clips(&store).len() >= 2
    });
    sigterm(&d);
    assert_eq!(wait_exit(&mut d, Duration::from_secs(40)), Some(0));
    for (id, s) in stored_clips(&store) {
        assert!(s["totals"]["frames"].as_u64().unwrap() > 0, "{id}: {s}");
        assert!(
            s["faces"]["tracks"].as_array().unwrap().len() > 3,
            "{id}: faces found"
        );
    }
}

fn nats_server() -> PathBuf {
    [
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
        "/usr/local/bin/nats-server",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
    .expect("nats-server is installed by scripts/setup.sh (Debian package nats-server)")
}

#[test]
fn jetstream_two_workers_one_killed_mid_clip_every_clip_stored_once() {
    let dir = scratch();
    let nport = free_port();
    let nats = Proc(
        Command::new(nats_server())
            .args(["-js", "-a", "127.0.0.1", "-p", &nport.to_string(), "-sd"])
            .arg(dir.path().join("js"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts"),
    );
    wait_for(Duration::from_secs(20), "nats-server", || {
        TcpStream::connect(("127.0.0.1", nport)).is_ok()
    });
    let queue = |workers: usize| {
        format!(
            "[queue]\nnats = \"nats://127.0.0.1:{nport}\"\nworkers = {workers}\nack_wait_secs = 4\nmax_deliver = 5\nregions = [\"eu\"]\n"
        )
    };
    // A second region whose clips no node here may process (data residency).
    let us = format!(
        "[regions.us]\nstore = \"file://{}/store-us\"\n[devices.cam-us]\nregion = \"us\"\naccount = \"acct-2\"\n",
        dir.path().display()
    );
    // Three nodes sharing one store: a producer with the inbox, two workers pinned to "eu".
    let shared_dirs = |node: &Path, port: u16, extra: &str| {
        let p = daemon_config(node, port, extra);
        let t = std::fs::read_to_string(&p).unwrap().replace(
            &format!("{}/store", node.display()),
            &format!("{}/store", dir.path().display()),
        );
        std::fs::write(&p, format!("{t}{us}")).unwrap();
        p
    };
    let inbox = dir.path().join("inbox");
    let (pp, p1, p2) = (free_port(), free_port(), free_port());
    for n in ["prod", "w1", "w2"] {
        std::fs::create_dir_all(dir.path().join(n)).unwrap();
    }
    let prod_cfg = shared_dirs(
        &dir.path().join("prod"),
        pp,
        &format!("[[inbox]]\npath = \"{}\"\n{}", inbox.display(), queue(0)),
    );
    let w1_cfg = shared_dirs(&dir.path().join("w1"), p1, &queue(1));
    let w2_cfg = shared_dirs(&dir.path().join("w2"), p2, &queue(1));
    let _prod = start_daemon(&prod_cfg, pp, &dir.path().join("prod.log"));
    let w1 = start_daemon(&w1_cfg, p1, &dir.path().join("w1.log"));
    std::fs::create_dir_all(inbox.join("cam-1")).unwrap();
    let n = 4;
    for i in 0..n {
        unique_clip(&inbox.join(format!("cam-1/j{i}.mp4")), &format!("j{i}"));
    }
    // One clip of a US device: published to obscura.clips.us, never taken by the EU workers.
    std::fs::create_dir_all(inbox.join("cam-us")).unwrap();
    unique_clip(&inbox.join("cam-us/us.mp4"), "us");
    // And one broken file: the producer does not look inside; a worker finds it bad.
    std::fs::write(
        inbox.join("cam-1/broken.mp4"),
        b"\x00\x00\x00\x18ftypmp42 not really",
    )
    .unwrap();
    wait_for(Duration::from_secs(60), "all jobs published", || {
        metric(pp, "obscura_jobs_published_total") == (n + 2) as f64
    });
    assert!(
        listing(&inbox.join("cam-1")).is_empty(),
        "inputs removed after the publish ack"
    );
    // Worker 1 takes a job; kill it mid-clip, then start worker 2.
    wait_for(Duration::from_secs(60), "worker 1 busy", || {
        metric(p1, "obscura_clips_in_flight") >= 1.0
    });
    std::thread::sleep(Duration::from_millis(500));
    drop(w1);
    let mut w2 = start_daemon(&w2_cfg, p2, &dir.path().join("w2.log"));
    let store = dir.path().join("store");
    wait_for(Duration::from_secs(240), "every clip stored", || {
        stored_clips(&store).len() >= n
    });
    // Worker 2 saw the killed worker's job again and no job is left.
    wait_for(Duration::from_secs(30), "the staging area empty", || {
        listing(&store.join("staging")).is_empty()
    });
    let clips = stored_clips(&store);
    assert_eq!(clips.len(), n, "each clip exactly once");
    let devices: Vec<_> = clips
        .iter()
        .map(|(_, s)| s["clip"]["device"].clone())
        .collect();
    assert!(devices.iter().all(|d| d == "cam-1"));
    assert!(metric(p2, "obscura_jobs_redelivered_total") >= 1.0);
    // The broken clip: quarantined by whichever worker took it, and dead-lettered.
    wait_for(
        Duration::from_secs(60),
        "the broken clip quarantined",
        || {
            ["w1", "w2"]
                .iter()
                .map(|w| {
                    listing(&dir.path().join(w).join("quarantine"))
                        .iter()
                        .filter(|n| n.ends_with(".reason.json"))
                        .count()
                })
                .sum::<usize>()
                == 1
        },
    );
    // Raw media never lay unencrypted in the store: only clips/ (and empty staging/ keys/).
    for e in walk(&store) {
        let rel = e
            .strip_prefix(&store)
            .unwrap()
            .to_string_lossy()
            .to_string();
        assert!(rel.starts_with("clips/"), "unexpected object {rel}");
    }
    // Region pinning: the US job waits, staged (encrypted) in the US store, unprocessed.
    let us_store = dir.path().join("store-us");
    assert!(
        stored_clips(&us_store).is_empty(),
        "an EU worker processed a US clip"
    );
    assert_eq!(listing(&us_store.join("staging")).len(), 1);
    sigterm(&w2);
    assert_eq!(wait_exit(&mut w2, Duration::from_secs(40)), Some(0));
    drop(nats);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.filter_map(Result::ok) {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Unmounts a test tmpfs when the test ends.
struct Unmount(PathBuf);
impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn full_store_keeps_the_input_reports_not_ready_and_recovers_when_space_returns() {
    let dir = scratch();
    let small = dir.path().join("store");
    std::fs::create_dir_all(&small).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=300k", "tmpfs"])
        .arg(&small)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
        return;
    }
    let _guard = Unmount(small.clone());
    let port = free_port();
    let (inbox, cfg) = inbox_config(dir.path(), port, "retry_max_secs = 2\n");
    let mut d = start_daemon(&cfg, port, &dir.path().join("daemon.log"));
    let input = inbox.join("cam-1/full.mp4");
    unique_clip(&input, "full");
    wait_for(Duration::from_secs(90), "a no-space failure", || {
        metric(port, "obscura_no_space_total") >= 1.0
    });
    let (status, why) = http_get(port, "/readyz").unwrap();
    assert_eq!(status, 503);
    assert!(why.to_lowercase().contains("space"), "{why}");
    assert!(input.exists(), "the input is kept");
    assert!(stored_clips(&small).is_empty());
    assert!(
        walk(&small).is_empty(),
        "no partial object: {:?}",
        walk(&small)
    );
    assert!(
        listing(&dir.path().join("quarantine")).is_empty(),
        "not the input's fault"
    );
    assert_eq!(metric(port, "obscura_ready"), 0.0);
    // Space returns: the daemon retries by itself.
    let grown = Command::new("mount")
        .args(["-o", "remount,size=64m"])
        .arg(&small)
        .status()
        .is_ok_and(|s| s.success());
    assert!(grown, "remount");
    wait_for(
        Duration::from_secs(120),
        "the clip committed after the retry",
        || stored_clips(&small).len() == 1 && !input.exists(),
    );
    wait_for(Duration::from_secs(10), "ready again", || {
        http_get(port, "/readyz").is_some_and(|(s, _)| s == 200)
    });
    assert_eq!(
        metric(port, "obscura_clips_total{result=\"processed\"}"),
        1.0
    );
    assert!(metric(port, "obscura_clips_total{result=\"failed\"}") >= 1.0);
    sigterm(&d);
    assert_eq!(wait_exit(&mut d, Duration::from_secs(40)), Some(0));
}

#[test]
fn missing_model_fails_closed_keeps_the_input_and_recovers_when_restored() {
    let dir = scratch();
    let port = free_port();
    let inbox = dir.path().join("inbox");
    let models = dir.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    let extra = format!(
        "retry_max_secs = 2\n[[inbox]]\npath = \"{}\"\n[runtime]\nmodels_dir = \"{}\"\n",
        inbox.display(),
        models.display()
    );
    let cfg = daemon_config(dir.path(), port, &extra);
    let mut d = start_daemon(&cfg, port, &dir.path().join("daemon.log"));
    let (status, why) = http_get(port, "/readyz").unwrap();
    assert_eq!(status, 503);
    assert!(why.contains("model"), "{why}");
    assert_eq!(metric(port, "obscura_model_loaded{model=\"yunet\"}"), 0.0);
    std::fs::create_dir_all(inbox.join("cam-1")).unwrap();
    let input = inbox.join("cam-1/m.mp4");
    unique_clip(&input, "model");
    wait_for(Duration::from_secs(60), "a failed attempt", || {
        metric(port, "obscura_clips_total{result=\"failed\"}") >= 1.0
    });
    assert!(input.exists(), "kept for a retry");
    let store = dir.path().join("store");
    assert!(
        !store.join("clips").exists(),
        "nothing stored without the model"
    );
    assert!(listing(&dir.path().join("quarantine")).is_empty());
    // The models come back: ready again and the clip goes through.
    for e in std::fs::read_dir(common::models())
        .unwrap()
        .filter_map(Result::ok)
    {
        if e.path().extension().is_some_and(|x| x == "onnx") {
            std::fs::copy(e.path(), models.join(e.file_name())).unwrap();
        }
    }
    wait_for(Duration::from_secs(120), "the clip committed", || {
        stored_clips(&store).len() == 1 && !input.exists()
    });
    wait_for(Duration::from_secs(20), "ready again", || {
        http_get(port, "/readyz").is_some_and(|(s, _)| s == 200)
    });
    sigterm(&d);
    assert_eq!(wait_exit(&mut d, Duration::from_secs(40)), Some(0));
}

fn proc_counts(pid: u32) -> (usize, usize) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|r| r.count())
        .unwrap_or(0);
    let threads = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:").map(|v| v.trim().parse().ok()))
                .flatten()
        })
        .unwrap_or(0);
    (fds, threads)
}

/// File descriptors and threads of the daemon with no clip in flight: the smallest counts
/// seen over 20 idle samples (GStreamer's thread pools and a reconnecting source come and go;
/// a leak raises the floor).
fn idle_counts(port: u16, pid: u32) -> (usize, usize) {
    let (mut fds, mut threads, mut n) = (usize::MAX, usize::MAX, 0);
    for _ in 0..1200 {
        if n == 20 {
            break;
        }
        if metric(port, "obscura_clips_in_flight") == 0.0 {
            let (f, t) = proc_counts(pid);
            if metric(port, "obscura_clips_in_flight") == 0.0 {
                fds = fds.min(f);
                threads = threads.min(t);
                n += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(n, 20, "the daemon was never idle in 1200 polls");
    (fds, threads)
}

/// Camera restarts: the RTSP server is killed and restarted `OBSCURA_RESTARTS` times (5 in
/// CI; `OBSCURA_RESTARTS=100 cargo test --release --test daemon camera_restarts` on demand).
/// Every reconnect comes within the backoff cap, and the daemon's file descriptors and
/// threads stay flat.
#[test]
fn camera_restarts_reconnect_within_the_backoff_cap_with_flat_fds_and_threads() {
    let restarts: usize = std::env::var("OBSCURA_RESTARTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let dir = scratch();
    let port = free_port();
    let rport = free_port();
    let out = dir.path().join("server.txt");
    let mut server = Some(start_rtsp(rport, &[], &out));
    let cap = 2;
    let extra = format!(
        "[[stream]]\ndevice = \"cam-2\"\nurl = \"rtsp://127.0.0.1:{rport}/cam\"\nsegment = \"2s\"\nbackoff_max_secs = {cap}\nstall_secs = 3\n"
    );
    let cfg = daemon_config(dir.path(), port, &extra);
    let mut d = start_daemon(&cfg, port, &dir.path().join("daemon.log"));
    let pid = d.0.id();
    let up = "obscura_stream_up{device=\"cam-2\"}";
    wait_for(Duration::from_secs(60), "the stream up", || {
        metric(port, up) == 1.0
    });
    let mut baseline = None;
    let mut worst_reconnect = Duration::ZERO;
    for i in 0..restarts {
        drop(server.take());
        wait_for(Duration::from_secs(30), "the stream down", || {
            metric(port, up) == 0.0
        });
        server = Some(start_rtsp(rport, &[], &out));
        let t0 = Instant::now();
        wait_for(Duration::from_secs(60), "the stream up again", || {
            metric(port, up) == 1.0
        });
        worst_reconnect = worst_reconnect.max(t0.elapsed());
        if i == 0 {
            baseline = Some(idle_counts(port, pid));
        }
    }
    // Compare with the first restart, both counted while no clip is being processed (a clip
    // in flight has its own pipeline threads and files).
    let (fds0, th0) = baseline.unwrap();
    let (fds1, th1) = idle_counts(port, pid);
    eprintln!(
        "restarts {restarts}: worst reconnect {worst_reconnect:?}; fds {fds0} -> {fds1}; threads {th0} -> {th1}"
    );
    assert!(fds1.abs_diff(fds0) <= 5, "fds {fds0} -> {fds1}");
    assert!(th1.abs_diff(th0) <= 5, "threads {th0} -> {th1}");
    // The server answers at once, so a reconnect waits at most the backoff cap plus the time
    // to connect and receive a keyframe (the stream is "up" once video flows).
    assert!(
        worst_reconnect < Duration::from_secs(cap + 5),
        "worst reconnect {worst_reconnect:?}"
    );
    assert!(metric(port, "obscura_stream_reconnects_total{device=\"cam-2\"}") >= restarts as f64);
    sigterm(&d);
    assert_eq!(wait_exit(&mut d, Duration::from_secs(40)), Some(0));
}

/// Crash consistency of the daemon (RELIABILITY.md suite 4): clips in the inbox (topped up so
/// that it never runs dry), the daemon SIGKILLed at `OBSCURA_DAEMON_KILLS` random points (6 in
/// CI; `OBSCURA_DAEMON_KILLS=100` on demand; seed `OBSCURA_KILL_SEED`), then run to the end: every input is stored exactly once, every committed media matches the
/// sha256 in its sidecar, nothing else is in the store, nothing is quarantined, the inbox is
/// empty.
fn daemon_kill_loop(store_url: &str, store_dir: &Path, dir: &Path, env: &[(&str, &str)]) {
    let kills = env_num("OBSCURA_DAEMON_KILLS", 6);
    let mut rng = Rng(env_num("OBSCURA_KILL_SEED", 7));
    let port = free_port();
    let (inbox, cfg) = inbox_config(dir, port, "");
    let t = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(&format!("file://{}/store", dir.display()), store_url);
    std::fs::write(&cfg, t).unwrap();
    // Keep work in the inbox so that every kill lands on a busy daemon.
    let mut n = 0;
    let top_up = |n: &mut usize| {
        while listing(&inbox.join("cam-1")).len() < 3 {
            unique_clip(&inbox.join(format!("cam-1/k{n}.mp4")), &format!("kill{n}"));
            *n += 1;
        }
    };
    let start = |log: &str| {
        let mut c = bin();
        c.args(["daemon", "--config"]).arg(&cfg);
        for (k, v) in env {
            c.env(k, v);
        }
        let child = c
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join(log)).unwrap())
            .spawn()
            .unwrap();
        let p = Proc(child);
        wait_for(Duration::from_secs(30), "/healthz", || {
            http_get(port, "/healthz").is_some_and(|(s, _)| s == 200)
        });
        p
    };
    for k in 0..kills {
        top_up(&mut n);
        let p = start(&format!("daemon-{k}.log"));
        std::thread::sleep(Duration::from_millis(300 + rng.below(4000)));
        drop(p); // SIGKILL
    }
    top_up(&mut n);
    let mut p = start("daemon-final.log");
    wait_for(Duration::from_secs(240), "the inbox empty", || {
        listing(&inbox.join("cam-1")).is_empty()
    });
    sigterm(&p);
    assert_eq!(wait_exit(&mut p, Duration::from_secs(40)), Some(0));
    let files = files_under(store_dir);
    let mut ids = std::collections::BTreeSet::new();
    for f in &files {
        let parts: Vec<&str> = f.split('/').collect();
        assert!(
            parts.len() >= 3
                && parts[parts.len() - 3] == "clips"
                && matches!(parts[parts.len() - 1], "media.mp4" | "sidecar.json"),
            "unexpected object in the store: {f} (all: {files:?})"
        );
        ids.insert(parts[parts.len() - 2].to_string());
    }
    assert_eq!(ids.len(), n, "each input stored exactly once: {files:?}");
    for f in files.iter().filter(|f| f.ends_with("sidecar.json")) {
        let sc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(store_dir.join(f)).unwrap()).unwrap();
        let media = store_dir.join(f.replace("sidecar.json", "media.mp4"));
        let bytes = std::fs::read(&media).unwrap();
        let obj = &sc["clip"]["objects"][0];
        assert_eq!(
            obscura::fsutil::sha256_bytes(&bytes),
            obj["sha256"].as_str().unwrap(),
            "{f}: the committed media matches its sidecar"
        );
    }
    assert!(
        listing(&dir.join("quarantine")).is_empty(),
        "nothing quarantined"
    );
}

#[test]
fn daemon_killed_at_random_points_local_store_loses_and_duplicates_nothing() {
    let dir = scratch();
    let store = dir.path().join("store");
    daemon_kill_loop(
        &format!("file://{}", store.display()),
        &store,
        dir.path(),
        &[],
    );
}

#[test]
fn daemon_killed_at_random_points_s3_store_loses_and_duplicates_nothing() {
    let dir = scratch();
    let s3 = start_s3(&["obscura-eu"]);
    let url = format!(
        "s3://obscura-eu/clips?endpoint=http://127.0.0.1:{}&region=us-east-1",
        s3.port
    );
    let root = s3._root.path().join("obscura-eu");
    daemon_kill_loop(
        &url,
        &root,
        dir.path(),
        &[
            ("AWS_ACCESS_KEY_ID", "obscura"),
            ("AWS_SECRET_ACCESS_KEY", "obscura-secret"),
            ("AWS_REGION", "us-east-1"),
        ],
    );
}

/// An idle daemon gives the decoded-frame memory it kept for the next clip back to the
/// system (`daemon.release_memory_after_secs`), and /metrics shows it.
#[test]
fn an_idle_daemon_gives_back_the_frame_memory_kept_for_the_next_clip() {
    let dir = scratch();
    let port = free_port();
    let (inbox, cfg) = inbox_config(dir.path(), port, "release_memory_after_secs = 1\n");
    let _d = start_daemon(&cfg, port, &dir.path().join("daemon.log"));
    unique_clip(&inbox.join("cam-1/20261202T080000Z-idle.mp4"), "idle");
    wait_for(Duration::from_secs(120), "the clip to be processed", || {
        metric(port, "obscura_clips_total{result=\"processed\"}") == 1.0
    });
    wait_for(Duration::from_secs(30), "the idle release", || {
        metric(port, "obscura_frame_memory_released_bytes_total") > 0.0
    });
    // city_pan's decoder held dozens of 640x360 frames (345,600 bytes each).
    assert!(metric(port, "obscura_frame_memory_released_bytes_total") >= 10.0 * 345_600.0);
    assert_eq!(metric(port, "obscura_frame_memory_idle_bytes"), 0.0);
}
