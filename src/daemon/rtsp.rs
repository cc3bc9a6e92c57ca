//! RTSP recorders: one thread per camera cuts its stream into clips of at most `segment` and
//! hands each finished clip to the daemon's own inbox (`state/streams/<device>/`).
//!
//! `rtspsrc ! rtph26Xdepay ! h26Xparse ! splitmuxsink(mp4mux)`: no re-encoding, cuts only on
//! keyframes so that every frame lands in exactly one clip. `segment` is splitmuxsink's
//! `max-size-time`: a clip holds the whole GOPs that fit within it (a GOP that would overrun it
//! starts the next clip; a GOP longer than `segment` is a clip alone), so clips are `segment`
//! rounded down to a multiple of the keyframe interval, and where the interval divides it
//! exactly, timestamp jitter makes lengths alternate (10 s on a 2 s GOP: 8 s and 10 s clips).
//! A clip's name is the time its file was opened (the connection's start for the first,
//! about one GOP after its first frame for later ones). A segment is written under
//! `state/spool/<device>/` and moved (fsync, rename, fsync) into the inbox only when
//! splitmuxsink reports it closed, so the inbox only ever holds complete, playable clips. A
//! segment cut short by a crash (no index yet) is handed on at the next start rather than
//! deleted: processing finds it truncated and it lands in the quarantine with that reason.
//! (Fragmented MP4 would keep such a segment playable, but splitmuxsink then mis-sizes
//! segments and declares durations counted from the stream's start; measured, not used.)
//!
//! Lost connections and streams that deliver nothing for `stall_secs` are closed (the open
//! segment is finished first) and reconnected with exponential backoff (0.5 s doubling up to
//! `backoff_max_secs`). A connection's pipeline is stopped on a thread of its own, waited for at
//! most `TEARDOWN_LIMIT`: under load GStreamer was seen waiting for good in `gst_pad_stop_task`
//! (`set_state(Null)`), which left the camera never reconnected and the daemon unable to stop.
//! A teardown that does not finish is left behind (counted in
//! `obscura_stream_stuck_teardowns_total`), its spool files are handed on later (at the end of
//! a later connection or the next start; one still being written fails as truncated and is
//! quarantined), and a new connection starts.
//!
//! The recorder tells the metrics when video last arrived and when a segment was last
//! committed (monotonic times): `obscura_stream_seconds_since_data` and
//! `…_seconds_since_last_segment`, and the staleness rule of `/readyz`.
//!
//! The camera's audio goes into the segments beside the video (`audio = "drop"`: video only):
//! AAC and Opus as sent, G.711 (PCMU/PCMA, which MP4 cannot hold) decoded and encoded to AAC.
//! A segment is raw input like any file: its voices are redacted by `voice` when processed.
//!
//! Owns: the recording pipelines and the spool. Must not touch: processing, stores.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;

use super::DaemonError;
use super::metrics::Metrics;
use crate::config::{StreamAudio, StreamConfig, redact_url};

/// How long a connection's teardown (`set_state(Null)`) may take before it is left behind.
pub const TEARDOWN_LIMIT: Duration = Duration::from_secs(5);

/// Stops `pipeline` on a thread of its own and waits up to `limit`; whether it finished.
/// A teardown that does not finish keeps its thread and the pipeline (nothing else can be
/// done with a pipeline stuck in a state change); the caller goes on.
fn teardown(pipeline: gst::Pipeline, device: &str, limit: Duration) -> bool {
    let (tx, rx) = crossbeam_channel::bounded::<()>(1);
    let hang = crate::pipeline::fault::teardown_hangs();
    let spawned = std::thread::Builder::new()
        .name(format!("teardown-{device}"))
        .spawn(move || {
            if hang {
                // Fault injection: a teardown that never returns (the pipeline stays up).
                let _keep = pipeline;
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            }
            let _ = pipeline.set_state(gst::State::Null);
            drop(pipeline);
            let _ = tx.send(());
        });
    if spawned.is_err() {
        return false;
    }
    rx.recv_timeout(limit).is_ok()
}

/// Starts the recorder thread of one stream.
pub fn spawn(
    s: StreamConfig,
    spool: PathBuf,
    ready: PathBuf,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, DaemonError> {
    crate::media::init().map_err(|e| DaemonError::Config(e.to_string()))?;
    // The device id was validated with the configuration; it names two folders.
    let spool = spool.join(&s.device);
    let ready = ready.join(&s.device);
    for d in [&spool, &ready] {
        crate::fsutil::create_dir_all_durable(d).map_err(|source| DaemonError::Io {
            path: d.clone(),
            source,
        })?;
    }
    recover_spool(&spool, &ready);
    metrics.stream(&s.device, |st| st.up = false);
    std::thread::Builder::new()
        .name(format!("rtsp-{}", s.device))
        .spawn(move || record_loop(&s, &spool, &ready, &metrics, &stop))
        .map_err(|e| DaemonError::Config(format!("thread: {e}")))
}

/// Segments left in the spool by a crash are handed on like finished ones (processing decides;
/// an unreadable one goes to the quarantine with its reason). Empty files are removed.
fn recover_spool(spool: &Path, ready: &Path) {
    let Ok(rd) = std::fs::read_dir(spool) else {
        return;
    };
    for e in rd.filter_map(Result::ok) {
        let p = e.path();
        if e.metadata().is_ok_and(|m| m.len() == 0) {
            let _ = std::fs::remove_file(&p);
            continue;
        }
        match commit_segment(&p, ready) {
            Ok(to) => tracing::warn!(
                from = %p.display(),
                to = %to.display(),
                "segment left by an earlier run handed on for processing"
            ),
            Err(err) => {
                tracing::error!(path = %p.display(), error = %err, "cannot hand on segment")
            }
        }
    }
}

/// Moves a closed segment into the ready folder durably.
fn commit_segment(path: &Path, ready: &Path) -> std::io::Result<PathBuf> {
    std::fs::File::open(path)?.sync_all()?;
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("segment without a name"))?;
    let to = ready.join(name);
    std::fs::rename(path, &to)?;
    crate::fsutil::sync_dir(ready)?;
    if let Some(p) = path.parent() {
        crate::fsutil::sync_dir(p)?;
    }
    Ok(to)
}

fn record_loop(s: &StreamConfig, spool: &Path, ready: &Path, metrics: &Metrics, stop: &AtomicBool) {
    let start_backoff = Duration::from_millis(500);
    let cap = Duration::from_secs(s.backoff_max_secs);
    let mut backoff = start_backoff;
    let mut first = true;
    while !stop.load(Ordering::SeqCst) {
        if !first {
            metrics.stream(&s.device, |st| st.reconnects += 1);
        }
        first = false;
        let delivered = match record_once(s, spool, ready, metrics, stop) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(device = %s.device, error = %e, "stream could not start");
                false
            }
        };
        metrics.stream(&s.device, |st| st.up = false);
        if stop.load(Ordering::SeqCst) {
            break;
        }
        if delivered {
            backoff = start_backoff;
        }
        tracing::info!(device = %s.device, wait_ms = backoff.as_millis() as u64, "stream down; reconnecting");
        let until = Instant::now() + backoff;
        while Instant::now() < until && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
        backoff = (backoff * 2).min(cap);
    }
}

/// Milliseconds since `origin`, for the stall watchdog.
fn ms_since(origin: Instant) -> u64 {
    origin.elapsed().as_millis() as u64
}

/// One connection: records until the stream ends, fails, stalls or `stop` is set. Returns
/// whether any video arrived.
fn record_once(
    s: &StreamConfig,
    spool: &Path,
    ready: &Path,
    metrics: &Metrics,
    stop: &AtomicBool,
) -> Result<bool, String> {
    let device = s.device.clone();
    let pipeline = gst::Pipeline::with_name(&format!("rtsp-{device}"));
    let src = gst::ElementFactory::make("rtspsrc")
        .property("location", &s.url)
        .property("latency", s.latency_ms)
        .build()
        .map_err(|e| format!("rtspsrc: {e}"))?;
    if !s.url.starts_with("rtsps") {
        src.set_property_from_str("protocols", "tcp");
    }
    let mux = gst::ElementFactory::make("mp4mux")
        .build()
        .map_err(|e| format!("mp4mux: {e}"))?;
    let split = gst::ElementFactory::make("splitmuxsink")
        .property(
            "max-size-time",
            s.segment_duration().as_nanos().min(u128::from(u64::MAX)) as u64,
        )
        .property("muxer", &mux)
        .build()
        .map_err(|e| format!("splitmuxsink: {e}"))?;
    {
        let spool = spool.to_path_buf();
        split.connect("format-location", false, move |args| {
            let id = args.get(1).and_then(|v| v.get::<u32>().ok()).unwrap_or(0);
            let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
            let p = spool.join(format!("{stamp}-{id:05}.mp4"));
            Some(p.to_string_lossy().to_string().to_value())
        });
    }
    pipeline
        .add_many([&src, &split])
        .map_err(|e| format!("pipeline: {e}"))?;

    let origin = Instant::now();
    let last_data = Arc::new(AtomicU64::new(0));
    let got_video = Arc::new(AtomicBool::new(false));
    {
        let (pipe, split) = (pipeline.downgrade(), split.downgrade());
        let (last_data, got_video, device) = (last_data.clone(), got_video.clone(), device.clone());
        let (audio, got_audio) = (s.audio, Arc::new(AtomicBool::new(false)));
        src.connect_pad_added(move |_, pad| {
            let (Some(pipe), Some(split)) = (pipe.upgrade(), split.upgrade()) else {
                return;
            };
            let media = pad
                .current_caps()
                .unwrap_or_else(|| pad.query_caps(None))
                .structure(0)
                .and_then(|st| st.get::<String>("media").ok())
                .unwrap_or_default();
            let linked = if media == "audio" {
                link_audio_pad(&pipe, &split, pad, audio, &got_audio)
            } else {
                link_pad(&pipe, &split, pad, &last_data, &got_video, origin)
            };
            if let Err(e) = linked {
                tracing::warn!(device = %device, error = %e, "stream pad not recorded");
            }
        });
    }
    let bus = pipeline.bus().ok_or("pipeline without a bus")?;
    if let Err(e) = pipeline.set_state(gst::State::Playing) {
        if !teardown(pipeline, &device, TEARDOWN_LIMIT) {
            metrics.stream(&device, |st| st.stuck_teardowns += 1);
        }
        return Err(format!("cannot start: {e}"));
    }
    tracing::info!(device = %device, url = %redact_url(&s.url), "stream connecting");
    let stall = Duration::from_secs(s.stall_secs);
    // Fragments opened minus closed (messages of a cut may arrive in either order).
    let mut open_fragments: i64 = 0;
    let mut ended = false;
    let mut finalize_reason: Option<String> = None;
    // The last data time already handed to the metrics (ms since `origin`; 0: none yet).
    let mut shown_data = 0;
    while !ended {
        if stop.load(Ordering::SeqCst) {
            finalize_reason = Some("shutdown".into());
            break;
        }
        let last = last_data.load(Ordering::Relaxed);
        if last != shown_data {
            shown_data = last;
            let at = origin + Duration::from_millis(last);
            metrics.stream(&device, |st| st.last_data = Some(at));
        }
        let quiet = Duration::from_millis(ms_since(origin).saturating_sub(last));
        if quiet > stall && origin.elapsed() > stall {
            metrics.stream(&device, |st| st.stalls += 1);
            finalize_reason = Some(format!("no data for {} s", stall.as_secs()));
            break;
        }
        if got_video.load(Ordering::Relaxed) && quiet < Duration::from_secs(2) {
            metrics.stream(&device, |st| st.up = true);
        }
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(200)) else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Element(e) => {
                on_fragment_message(e, &mut open_fragments, ready, metrics, &device);
            }
            gst::MessageView::Eos(_) => {
                tracing::info!(device = %device, "stream ended (EOS)");
                ended = true;
            }
            gst::MessageView::Error(err) => {
                finalize_reason = Some(format!(
                    "{}: {}",
                    err.src()
                        .map(|s| s.path_string().to_string())
                        .unwrap_or_default(),
                    err.error()
                ));
                break;
            }
            _ => {}
        }
    }
    if let Some(why) = finalize_reason {
        tracing::warn!(device = %device, reason = %why, "closing the stream");
        if open_fragments > 0 {
            // Finish the open segment: EOS into the muxer's inputs, then wait until every
            // opened fragment has been reported closed.
            for pad in split.sink_pads() {
                let _ = pad.send_event(gst::event::Eos::new());
            }
            // The muxer may flush what it buffered into one more fragment after the EOS:
            // wait until all are closed and the bus has been quiet for a moment.
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut quiet_since = Instant::now();
            while Instant::now() < deadline
                && (open_fragments > 0 || quiet_since.elapsed() < Duration::from_millis(300))
            {
                let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(50)) else {
                    continue;
                };
                quiet_since = Instant::now();
                if let gst::MessageView::Element(e) = msg.view() {
                    on_fragment_message(e, &mut open_fragments, ready, metrics, &device);
                }
            }
        }
    }
    drop(bus);
    if !teardown(pipeline, &device, TEARDOWN_LIMIT) {
        metrics.stream(&device, |st| st.stuck_teardowns += 1);
        tracing::error!(device = %device, limit_s = TEARDOWN_LIMIT.as_secs(), "the connection's pipeline did not stop in time: left behind, a new connection starts");
        return Ok(got_video.load(Ordering::Relaxed));
    }
    // The recorder is stopped: whatever is still in the spool (a fragment the muxer could not
    // close) is handed on now; processing keeps it or quarantines it as truncated.
    recover_spool(spool, ready);
    Ok(got_video.load(Ordering::Relaxed))
}

/// Counts splitmuxsink's fragment-opened/closed messages (they may arrive in either order
/// around a cut) and hands each closed fragment on.
fn on_fragment_message(
    e: &gst::message::Element,
    open_fragments: &mut i64,
    ready: &Path,
    metrics: &Metrics,
    device: &str,
) {
    let Some(st) = e.structure() else { return };
    match st.name().as_str() {
        "splitmuxsink-fragment-opened" => *open_fragments += 1,
        "splitmuxsink-fragment-closed" => {
            *open_fragments -= 1;
            on_closed(st, ready, metrics, device);
        }
        _ => {}
    }
}

fn on_closed(st: &gst::StructureRef, ready: &Path, metrics: &Metrics, device: &str) {
    let Ok(loc) = st.get::<String>("location") else {
        return;
    };
    let path = PathBuf::from(loc);
    if std::fs::metadata(&path).is_ok_and(|m| m.len() == 0) {
        let _ = std::fs::remove_file(&path);
        return;
    }
    match commit_segment(&path, ready) {
        Ok(to) => {
            let now = Instant::now();
            metrics.stream(device, |s| {
                s.segments += 1;
                s.last_segment = Some(now);
            });
            tracing::info!(device = %device, clip = %to.display(), "segment recorded");
        }
        Err(e) => {
            tracing::error!(device = %device, path = %path.display(), error = %e, "cannot hand on segment")
        }
    }
}

/// Links a new rtspsrc pad: video (H.264/H.265) into splitmuxsink, anything else into a
/// fakesink (dropped).
/// A fakesink for a stream that is not recorded.
fn drop_pad(pipe: &gst::Pipeline, pad: &gst::Pad) -> Result<(), String> {
    let sink = gst::ElementFactory::make("fakesink")
        .property("sync", false)
        .property("async", false)
        .build()
        .map_err(|e| e.to_string())?;
    pipe.add(&sink).map_err(|e| e.to_string())?;
    sink.sync_state_with_parent().map_err(|e| e.to_string())?;
    pad.link(&sink.static_pad("sink").ok_or("fakesink pad")?)
        .map_err(|e| format!("{e:?}"))?;
    Ok(())
}

/// Makes the elements `names`, adds them to `pipe` and links them in a row.
fn add_chain(pipe: &gst::Pipeline, names: &[&str]) -> Result<Vec<gst::Element>, String> {
    let elements = names
        .iter()
        .map(|n| {
            gst::ElementFactory::make(n)
                .build()
                .map_err(|e| format!("{n}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    pipe.add_many(elements.iter()).map_err(|e| e.to_string())?;
    gst::Element::link_many(elements.iter()).map_err(|e| e.to_string())?;
    Ok(elements)
}

/// The elements that take a camera's audio from RTP into what mp4mux takes (AAC or Opus as
/// sent; G.711, which MP4 cannot hold, decoded and encoded to AAC).
fn audio_chain(enc: &str) -> Option<Vec<&'static str>> {
    Some(match enc {
        "PCMU" => vec![
            "rtppcmudepay",
            "mulawdec",
            "audioconvert",
            "audioresample",
            "avenc_aac",
            "aacparse",
        ],
        "PCMA" => vec![
            "rtppcmadepay",
            "alawdec",
            "audioconvert",
            "audioresample",
            "avenc_aac",
            "aacparse",
        ],
        "MPEG4-GENERIC" => vec!["rtpmp4gdepay", "aacparse"],
        "MP4A-LATM" => vec!["rtpmp4adepay", "aacparse"],
        "OPUS" => vec!["rtpopusdepay", "opusparse"],
        _ => return None,
    })
}

/// Records a camera's audio track into the segments beside the video (`audio = "record"`),
/// or drops it. One audio track per stream; others, and codecs not handled, are dropped.
fn link_audio_pad(
    pipe: &gst::Pipeline,
    split: &gst::Element,
    pad: &gst::Pad,
    mode: StreamAudio,
    got_audio: &AtomicBool,
) -> Result<(), String> {
    let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
    let enc = caps
        .structure(0)
        .and_then(|st| st.get::<&str>("encoding-name").ok())
        .unwrap_or("")
        .to_ascii_uppercase();
    if mode == StreamAudio::Drop {
        drop_pad(pipe, pad)?;
        return Ok(());
    }
    let Some(names) = audio_chain(&enc) else {
        drop_pad(pipe, pad)?;
        return Err(format!("audio stream '{enc}' is not recorded (dropped)"));
    };
    if got_audio.swap(true, Ordering::SeqCst) {
        drop_pad(pipe, pad)?;
        return Err("a second audio stream is not recorded".into());
    }
    let elements = add_chain(pipe, &names)?;
    let sinkpad = split
        .request_pad_simple("audio_%u")
        .ok_or("splitmuxsink refused an audio pad")?;
    let last = elements.last().ok_or("empty chain")?;
    last.static_pad("src")
        .ok_or("audio parser pad")?
        .link(&sinkpad)
        .map_err(|e| format!("{e:?}"))?;
    for e in &elements {
        e.sync_state_with_parent().map_err(|e| e.to_string())?;
    }
    pad.link(&elements[0].static_pad("sink").ok_or("depayloader pad")?)
        .map_err(|e| format!("{e:?}"))?;
    tracing::info!(encoding = %enc, "recording the camera's audio");
    Ok(())
}

fn link_pad(
    pipe: &gst::Pipeline,
    split: &gst::Element,
    pad: &gst::Pad,
    last_data: &Arc<AtomicU64>,
    got_video: &Arc<AtomicBool>,
    origin: Instant,
) -> Result<(), String> {
    let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
    let st = caps.structure(0).ok_or("pad without caps")?;
    let media = st.get::<&str>("media").unwrap_or("");
    let enc = st
        .get::<&str>("encoding-name")
        .unwrap_or("")
        .to_ascii_uppercase();
    // Elements from RTP to what mp4mux takes. MJPEG (which MP4 cannot hold) is decoded and
    // encoded to H.264 here: one lossy generation (x264 CRF-like quantizer 18) before
    // redaction, and an encoder's CPU per MJPEG camera.
    let chain: Option<Vec<&str>> = match (media, enc.as_str()) {
        ("video", "H264") => Some(vec!["rtph264depay", "h264parse"]),
        ("video", "H265") => Some(vec!["rtph265depay", "h265parse"]),
        ("video", "JPEG") => Some(vec![
            "rtpjpegdepay",
            "jpegdec",
            "videoconvert",
            "x264enc",
            "h264parse",
        ]),
        _ => None,
    };
    let Some(names) = chain else {
        drop_pad(pipe, pad)?;
        return Err(format!("{media} stream '{enc}' is not recorded (dropped)"));
    };
    if got_video.load(Ordering::Relaxed) {
        drop_pad(pipe, pad)?;
        return Err("a second video stream is not recorded".into());
    }
    let elements = add_chain(pipe, &names)?;
    for e in &elements {
        match e.factory().map(|f| f.name().to_string()).as_deref() {
            Some("h264parse") | Some("h265parse") => e.set_property("config-interval", -1i32),
            Some("x264enc") => {
                e.set_property_from_str("speed-preset", "ultrafast");
                e.set_property_from_str("tune", "zerolatency");
                e.set_property_from_str("pass", "qual");
                e.set_property("quantizer", 18u32);
                // A keyframe every 2 s at 25 fps: clips are `segment` rounded down to a multiple of 2 s.
                e.set_property("key-int-max", 50u32);
            }
            _ => {}
        }
    }
    let sinkpad = split
        .request_pad_simple("video")
        .ok_or("splitmuxsink refused a video pad")?;
    let srcpad = elements
        .last()
        .and_then(|e| e.static_pad("src"))
        .ok_or("parser pad")?;
    // Drop what comes before the first keyframe (undecodable), and feed the stall watchdog.
    let seen_key = AtomicBool::new(false);
    let (last_data, got) = (last_data.clone(), got_video.clone());
    srcpad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        last_data.store(ms_since(origin), Ordering::Relaxed);
        if let Some(buf) = info.buffer()
            && !seen_key.load(Ordering::Relaxed)
        {
            if buf.flags().contains(gst::BufferFlags::DELTA_UNIT) {
                return gst::PadProbeReturn::Drop;
            }
            seen_key.store(true, Ordering::Relaxed);
            got.store(true, Ordering::Relaxed);
        }
        gst::PadProbeReturn::Ok
    });
    srcpad.link(&sinkpad).map_err(|e| format!("{e:?}"))?;
    for e in &elements {
        e.sync_state_with_parent().map_err(|e| e.to_string())?;
    }
    pad.link(&elements[0].static_pad("sink").ok_or("depayloader pad")?)
        .map_err(|e| format!("{e:?}"))?;
    Ok(())
}
