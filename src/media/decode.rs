//! Decoding a file into raw streams with GStreamer:
//!
//! ```text
//! filesrc ! decodebin ─ video ─ queue ! videoconvert ! videoflip auto ! I420 ! appsink "full"   (displayed size)
//!                     └ audio ─ queue ! audioconvert ! F32 interleaved ! tee ─ queue ! appsink "audio"
//!                                                                          └ queue ! audioresample
//!                                                                            ! F32 16 kHz mono ! appsink "vad"
//! ```
//!
//! `videoflip video-direction=auto` applies the container's orientation (the
//! `image-orientation` tag qtdemux reads from an MP4/MOV display matrix: phone and body-camera
//! files store their pixels sideways), so every frame handed out is upright, as a viewer sees
//! it, and its size is the displayed one that `media::probe` reports. Without the tag it passes
//! frames through untouched.
//!
//! Frames stay in I420 at full resolution (the detector's shrunk input is made from them by
//! `detect::shrink`, not here). Every
//! appsink hands its samples to a bounded channel from its callback (backpressure reaches the
//! demuxer), and a closed channel means end of stream. A bus thread watches for errors and
//! classifies them; [`Decoder::finish`] reports how the stream ended.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, SendTimeoutError, Sender, bounded};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::{MediaError, classify, make};

#[derive(Debug, Clone)]
pub struct DecodeConfig {
    pub path: PathBuf,
    /// Decode video.
    pub video: bool,
    /// Decode audio at its own rate (F32 interleaved).
    pub audio: bool,
    /// Also make a 16 kHz mono F32 copy of the audio for voice activity detection.
    pub vad: bool,
    /// Capacity of each video channel, in frames.
    pub video_queue: usize,
    /// Capacity of each audio channel, in buffers.
    pub audio_queue: usize,
}

/// Receivers of the decoded streams. A channel that closes has reached its end (or the
/// decoder stopped: see [`Decoder::finish`]).
pub struct Streams {
    pub full: Option<Receiver<gst::Sample>>,
    pub audio: Option<Receiver<gst::Sample>>,
    pub vad: Option<Receiver<gst::Sample>>,
}

/// A running decode pipeline.
pub struct Decoder {
    pipeline: gst::Pipeline,
    path: PathBuf,
    abort: Arc<AtomicBool>,
    senders: Senders,
    outcome: Arc<Mutex<Option<Result<(), MediaError>>>>,
    bus_thread: Option<std::thread::JoinHandle<()>>,
    video_decoder: Arc<Mutex<Option<String>>>,
}

type SharedSender = Arc<Mutex<Option<Sender<gst::Sample>>>>;

/// The senders of every appsink, so that an error or an abort can close all channels at once
/// (consumers then see the end and ask [`Decoder::finish`] why).
#[derive(Clone, Default)]
struct Senders(Arc<Mutex<Vec<SharedSender>>>);

impl Senders {
    fn close_all(&self) {
        if let Ok(list) = self.0.lock() {
            for s in list.iter() {
                if let Ok(mut g) = s.lock() {
                    g.take();
                }
            }
        }
    }
}

fn appsink_to_channel(
    sink: &gst_app::AppSink,
    tx: Sender<gst::Sample>,
    abort: Arc<AtomicBool>,
    all: &Senders,
) {
    let shared: SharedSender = Arc::new(Mutex::new(Some(tx)));
    if let Ok(mut list) = all.0.lock() {
        list.push(shared.clone());
    }
    let on_eos = shared.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let tx = match shared.lock() {
                    Ok(g) => g.clone(),
                    Err(_) => None,
                };
                let Some(tx) = tx else {
                    return Err(gst::FlowError::Eos);
                };
                let mut item = sample;
                loop {
                    if abort.load(Ordering::Relaxed) {
                        return Err(gst::FlowError::Flushing);
                    }
                    match tx.send_timeout(item, Duration::from_millis(100)) {
                        Ok(()) => return Ok(gst::FlowSuccess::Ok),
                        Err(SendTimeoutError::Timeout(back)) => item = back,
                        Err(SendTimeoutError::Disconnected(_)) => {
                            return Err(gst::FlowError::Flushing);
                        }
                    }
                }
            })
            .eos(move |_| {
                if let Ok(mut g) = on_eos.lock() {
                    g.take();
                }
            })
            .build(),
    );
}

fn appsink(name: &str, caps: &gst::Caps) -> Result<gst_app::AppSink, MediaError> {
    let sink = gst_app::AppSink::builder()
        .name(name)
        .caps(caps)
        .sync(false)
        // Not part of the async state change: a stream that starts late (audio seconds after
        // video) must not hold back prerolling of the others.
        .async_(false)
        .enable_last_sample(false)
        .max_buffers(2)
        .build();
    Ok(sink)
}

/// Answers the allocation query that reaches `sink` with the frame allocator (see
/// `frame_memory`), so that the pool the decoder (or a converter) fills keeps its memory
/// for the next file instead of faulting in fresh pages.
fn offer_frame_allocator(sink: &gst_app::AppSink) {
    let Some(pad) = sink.static_pad("sink") else {
        return;
    };
    let allocator = super::frame_memory::allocator();
    pad.add_probe(gst::PadProbeType::QUERY_DOWNSTREAM, move |_, info| {
        if let Some(gst::PadProbeData::Query(q)) = info.data.as_mut()
            && let gst::QueryViewMut::Allocation(a) = q.view_mut()
        {
            a.add_allocation_param(Some(&allocator), gst::AllocationParams::default());
            return gst::PadProbeReturn::Handled;
        }
        gst::PadProbeReturn::Ok
    });
}

fn queue(max_buffers: u32) -> Result<gst::Element, MediaError> {
    let q = make("queue")?;
    q.set_property("max-size-buffers", max_buffers);
    q.set_property("max-size-bytes", 0u32);
    q.set_property("max-size-time", 0u64);
    Ok(q)
}

fn capsfilter(caps: &gst::Caps) -> Result<gst::Element, MediaError> {
    let f = make("capsfilter")?;
    f.set_property("caps", caps);
    Ok(f)
}

fn link_all(elements: &[&gst::Element]) -> Result<(), MediaError> {
    gst::Element::link_many(elements.iter().copied())
        .map_err(|e| MediaError::Gst(format!("linking: {e}")))
}

fn add_all(p: &gst::Pipeline, elements: &[&gst::Element]) -> Result<(), MediaError> {
    p.add_many(elements.iter().copied())
        .map_err(|e| MediaError::Gst(format!("adding elements: {e}")))
}

impl Decoder {
    /// Builds and starts the pipeline; returns it with the stream receivers.
    pub fn start(cfg: &DecodeConfig) -> Result<(Decoder, Streams), MediaError> {
        super::init()?;
        let pipeline = gst::Pipeline::with_name("obscura-decode");
        let abort = Arc::new(AtomicBool::new(false));
        let senders = Senders::default();
        let src = make("filesrc")?;
        src.set_property("location", cfg.path.to_string_lossy().to_string());
        let decodebin = make("decodebin")?;
        // Which video decoder decodebin plugged (software or NVDEC), for reports.
        let video_decoder = Arc::new(Mutex::new(None));
        if let Some(bin) = decodebin.downcast_ref::<gst::Bin>() {
            let slot = video_decoder.clone();
            bin.connect_deep_element_added(move |_, _, element| {
                let Some(f) = element.factory() else { return };
                let klass = f.metadata(gst::ELEMENT_METADATA_KLASS).unwrap_or_default();
                if klass.contains("Decoder")
                    && klass.contains("Video")
                    && let Ok(mut g) = slot.lock()
                {
                    *g = Some(f.name().to_string());
                }
            });
        }
        add_all(&pipeline, &[&src, &decodebin])?;
        link_all(&[&src, &decodebin])?;

        let mut streams = Streams {
            full: None,
            audio: None,
            vad: None,
        };
        // Entry elements of the branches, linked in pad-added.
        let mut video_entry: Option<gst::Element> = None;
        let mut audio_entry: Option<gst::Element> = None;

        if cfg.video {
            let q = queue(4)?;
            let conv = make("videoconvert")?;
            let flip = make("videoflip")?;
            flip.set_property_from_str("video-direction", "auto");
            let i420 = capsfilter(
                &gst::Caps::builder("video/x-raw")
                    .field("format", "I420")
                    .build(),
            )?;
            let full = appsink(
                "full",
                &gst::Caps::builder("video/x-raw")
                    .field("format", "I420")
                    .build(),
            )?;
            offer_frame_allocator(&full);
            add_all(&pipeline, &[&q, &conv, &flip, &i420, full.upcast_ref()])?;
            link_all(&[&q, &conv, &flip, &i420, full.upcast_ref()])?;
            let (tx, rx) = bounded(cfg.video_queue.max(1));
            appsink_to_channel(&full, tx, abort.clone(), &senders);
            streams.full = Some(rx);
            video_entry = Some(q);
        }

        if cfg.audio {
            let q = queue(64)?;
            let conv = make("audioconvert")?;
            let f32caps = capsfilter(
                &gst::Caps::builder("audio/x-raw")
                    .field("format", "F32LE")
                    .field("layout", "interleaved")
                    .build(),
            )?;
            let tee = make("tee")?;
            let qa = queue(64)?;
            let sink = appsink(
                "audio",
                &gst::Caps::builder("audio/x-raw")
                    .field("format", "F32LE")
                    .field("layout", "interleaved")
                    .build(),
            )?;
            add_all(
                &pipeline,
                &[&q, &conv, &f32caps, &tee, &qa, sink.upcast_ref()],
            )?;
            link_all(&[&q, &conv, &f32caps, &tee])?;
            link_all(&[&tee, &qa, sink.upcast_ref()])?;
            let (tx, rx) = bounded(cfg.audio_queue.max(1));
            appsink_to_channel(&sink, tx, abort.clone(), &senders);
            streams.audio = Some(rx);
            if cfg.vad {
                let qv = queue(64)?;
                let conv2 = make("audioconvert")?;
                let resample = make("audioresample")?;
                let caps = gst::Caps::builder("audio/x-raw")
                    .field("format", "F32LE")
                    .field("layout", "interleaved")
                    .field("rate", 16000i32)
                    .field("channels", 1i32)
                    .build();
                let vsink = appsink("vad", &caps)?;
                add_all(&pipeline, &[&qv, &conv2, &resample, vsink.upcast_ref()])?;
                link_all(&[&tee, &qv, &conv2, &resample, vsink.upcast_ref()])?;
                let (tx, rx) = bounded(cfg.audio_queue.max(1));
                appsink_to_channel(&vsink, tx, abort.clone(), &senders);
                streams.vad = Some(rx);
            }
            audio_entry = Some(q);
        }

        // Link decodebin's pads: the first raw video and audio pads to their branches,
        // everything else to a fakesink so that no pad is left unlinked.
        let entries = Arc::new(Mutex::new((video_entry, audio_entry)));
        let pipeline_weak = pipeline.downgrade();
        let entries_pad = entries.clone();
        decodebin.connect_pad_added(move |_, pad| {
            let Some(pipeline) = pipeline_weak.upgrade() else {
                return;
            };
            let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
            let media = caps
                .structure(0)
                .map(|s| s.name().to_string())
                .unwrap_or_default();
            let target = {
                let Ok(mut e) = entries_pad.lock() else {
                    return;
                };
                if media.starts_with("video/x-raw") {
                    e.0.take()
                } else if media.starts_with("audio/x-raw") {
                    e.1.take()
                } else {
                    None
                }
            };
            let target = match target {
                Some(t) => t,
                None => {
                    let Ok(fake) = make("fakesink") else { return };
                    fake.set_property("sync", false);
                    fake.set_property("async", false);
                    if pipeline.add(&fake).is_err() {
                        return;
                    }
                    let _ = fake.sync_state_with_parent();
                    fake
                }
            };
            if let Some(sinkpad) = target.static_pad("sink")
                && let Err(e) = pad.link(&sinkpad)
            {
                // The run fails (or that stream is missing) with its own error line.
                tracing::debug!(error = ?e, media, "could not link decoded stream");
            }
        });
        // Once decodebin has exposed all its pads, a branch still waiting for a stream will
        // never get one: end it so that its consumers see end of stream.
        let entries_nmp = entries.clone();
        decodebin.connect_no_more_pads(move |_| {
            let Ok(mut e) = entries_nmp.lock() else {
                return;
            };
            for entry in [e.0.take(), e.1.take()].into_iter().flatten() {
                if let Some(pad) = entry.static_pad("sink") {
                    pad.send_event(gst::event::Eos::new());
                }
            }
        });

        let outcome = Arc::new(Mutex::new(None));
        let bus = pipeline
            .bus()
            .ok_or_else(|| MediaError::Gst("pipeline without a bus".into()))?;
        let bus_thread = {
            let outcome = outcome.clone();
            let abort = abort.clone();
            let senders = senders.clone();
            let path = cfg.path.clone();
            std::thread::Builder::new()
                .name("decode-bus".into())
                .spawn(move || watch_bus(&bus, &path, &abort, &senders, &outcome))
                .map_err(|e| MediaError::Gst(format!("spawning bus thread: {e}")))?
        };

        let decoder = Decoder {
            pipeline,
            path: cfg.path.clone(),
            abort,
            senders,
            outcome,
            video_decoder,
            bus_thread: Some(bus_thread),
        };
        if let Err(e) = decoder.pipeline.set_state(gst::State::Playing) {
            // The bus usually holds the real reason; give it a moment to arrive.
            std::thread::sleep(Duration::from_millis(50));
            let reason = decoder.take_error();
            return Err(reason.unwrap_or_else(|| MediaError::Corrupt {
                path: cfg.path.clone(),
                detail: format!("cannot start decoding: {e}"),
            }));
        }
        Ok((decoder, streams))
    }

    fn take_error(&self) -> Option<MediaError> {
        self.outcome.lock().ok()?.take().and_then(|r| r.err())
    }

    /// The decoder's error, if it has one (without consuming it).
    pub fn error_snapshot(&self) -> Option<MediaError> {
        let g = self.outcome.lock().ok()?;
        match &*g {
            Some(Err(e)) => Some(e.clone()),
            _ => None,
        }
    }

    /// Whether the bus reported an error already (without waiting).
    pub fn failed(&self) -> bool {
        self.outcome
            .lock()
            .map(|g| matches!(*g, Some(Err(_))))
            .unwrap_or(true)
    }

    /// Stops the decoder early (on a failure elsewhere). Unblocks its streaming threads.
    pub fn abort(&self) {
        self.abort.store(true, Ordering::Relaxed);
        self.senders.close_all();
    }

    /// Waits (up to `timeout`) for the end of the stream and reports how it ended: `Ok` after
    /// a clean end of stream, the classified error otherwise.
    /// The factory name of the video decoder in use (`avdec_h264`, `nvh264dec`, …), once
    /// decodebin has plugged one.
    pub fn video_decoder(&self) -> Option<String> {
        self.video_decoder.lock().ok().and_then(|g| g.clone())
    }

    pub fn finish(mut self, timeout: Duration) -> Result<(), MediaError> {
        let deadline = std::time::Instant::now() + timeout;
        let result = loop {
            if let Some(r) = self.outcome.lock().ok().and_then(|mut g| g.take()) {
                break r;
            }
            if std::time::Instant::now() >= deadline {
                break Err(MediaError::Stalled {
                    path: self.path.clone(),
                    what: "decoding (end of stream never came)".into(),
                    secs: timeout.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        self.stop();
        result
    }

    fn stop(&mut self) {
        self.abort.store(true, Ordering::Relaxed);
        self.senders.close_all();
        super::shutdown(&self.pipeline);
        if let Some(t) = self.bus_thread.take() {
            let _ = t.join();
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        self.stop();
    }
}

fn watch_bus(
    bus: &gst::Bus,
    path: &Path,
    abort: &AtomicBool,
    senders: &Senders,
    outcome: &Mutex<Option<Result<(), MediaError>>>,
) {
    use gst::MessageView;
    loop {
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) else {
            if abort.load(Ordering::Relaxed) {
                return;
            }
            continue;
        };
        let result = match msg.view() {
            MessageView::Eos(_) => Some(Ok(())),
            MessageView::Error(err) => {
                let e = classify(path, &err.error(), err.debug().as_deref());
                tracing::debug!(error = %e, src = ?err.src().map(|s| s.path_string()), "decode error");
                Some(Err(e))
            }
            MessageView::Warning(w) => {
                tracing::debug!(warning = %w.error(), "decode warning");
                None
            }
            _ => None,
        };
        if let Some(r) = result {
            let is_err = r.is_err();
            if let Ok(mut g) = outcome.lock()
                && g.is_none()
            {
                *g = Some(r);
            }
            if is_err {
                // Unblock the streaming threads and the consumers.
                abort.store(true, Ordering::Relaxed);
                senders.close_all();
            }
            return;
        }
    }
}

/// The frame of a decoded video sample and its timestamp in running time (the demuxer's
/// segment — e.g. an MP4 edit list — applied), so that every stage and the encoder share one
/// timeline starting at 0. `None` when the frame lies outside the segment (and must not be
/// shown).
///
/// The buffer is the decoder's own, not a copy, and keeps its stream-time timestamps: whoever
/// hands it on sets the running time once it is the buffer's only holder. A copy — even a
/// shallow one that shares the pixels — outlives the original, so the decoder's pool finds the
/// pixels still in use when the original comes back, throws the buffer away and decodes every
/// frame into freshly allocated memory (a new 1.38 MB buffer and ~340 page faults per 720p
/// frame).
pub fn video_buffer(sample: &gst::Sample) -> Option<(gst::Buffer, Option<gst::ClockTime>)> {
    let buffer = sample.buffer_owned()?;
    let pts = match (
        sample
            .segment()
            .and_then(|s| s.downcast_ref::<gst::ClockTime>()),
        buffer.pts(),
    ) {
        (Some(seg), Some(pts)) => Some(seg.to_running_time(pts)?),
        (None, pts) => pts,
        (Some(_), None) => None,
    };
    Some((buffer, pts))
}

/// The audio of a decoded sample clipped to its segment (encoder priming that an edit list
/// hides is dropped) with timestamps in running time. `None` when nothing of it is inside.
pub fn audio_buffer(sample: &gst::Sample) -> Option<gst::Buffer> {
    let buffer = sample.buffer_owned()?;
    let info = gstreamer_audio::AudioInfo::from_caps(sample.caps()?).ok()?;
    let Some(seg) = sample.segment() else {
        return Some(buffer);
    };
    let clipped = gstreamer_audio::audio_buffer_clip(buffer, seg, info.rate(), info.bpf())?;
    let mut out = clipped;
    if let (Some(seg), Some(pts)) = (seg.downcast_ref::<gst::ClockTime>(), out.pts()) {
        let rt = seg.to_running_time(pts)?;
        out.make_mut().set_pts(rt);
    }
    Some(out)
}
