//! A real RTSP server for the daemon's tests (and for trying the daemon by hand): serves the
//! H.264 video of an MP4 file at `rtsp://127.0.0.1:PORT/cam`, looped, paced in real time,
//! without re-encoding.
//!
//! ```text
//! cargo run --release --example rtsp_test_server -- --port 8554 --file samples/city_pan.mp4 \
//!     [--loops N]   # end the stream (EOS) after N loops; default: forever
//!     [--once]      # only the first client gets the stream; later ones get an empty one
//!     [--launch DESC]  # instead of --file: a stock gst-rtsp-server media factory with this
//!                      # launch line (payloaders pay0, pay1, …; paced by the server's clock),
//!                      # e.g. a file with B-frames, or a camera's video and G.711 audio
//! ```
//! Prints `listening rtsp://127.0.0.1:PORT/cam` when ready, and `served <seconds>` on stdout
//! when a session's stream ends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_rtsp_server as rtsp;
use gstreamer_rtsp_server::prelude::*;

struct Sample {
    data: gst::Buffer,
    pts: gst::ClockTime,
    duration: gst::ClockTime,
}

/// Reads every H.264 access unit of `file` (byte-stream, parameter sets in each keyframe).
fn read_samples(file: &str) -> Result<(gst::Caps, Vec<Sample>, gst::ClockTime), String> {
    let p = gst::parse::launch(&format!(
        "filesrc location=\"{file}\" ! qtdemux ! h264parse config-interval=-1 ! \
         video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=s sync=false"
    ))
    .map_err(|e| e.to_string())?
    .downcast::<gst::Pipeline>()
    .map_err(|_| "not a pipeline")?;
    let sink = p
        .by_name("s")
        .ok_or("no sink")?
        .downcast::<gst_app::AppSink>()
        .map_err(|_| "not an appsink")?;
    p.set_state(gst::State::Playing)
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let mut caps = None;
    while let Ok(s) = sink.pull_sample() {
        if caps.is_none() {
            caps = s.caps().map(|c| c.to_owned());
        }
        let b = s.buffer().ok_or("no buffer")?;
        out.push(Sample {
            data: b.copy(),
            pts: b.pts().unwrap_or(gst::ClockTime::ZERO),
            duration: b.duration().unwrap_or(gst::ClockTime::from_mseconds(33)),
        });
    }
    let _ = p.set_state(gst::State::Null);
    let first = out.first().map(|s| s.pts).unwrap_or_default();
    for s in &mut out {
        s.pts = s.pts.saturating_sub(first);
    }
    let total = out.last().map(|s| s.pts + s.duration).unwrap_or_default();
    Ok((caps.ok_or("no caps")?, out, total))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let port = arg("--port").unwrap_or_else(|| "8554".into());
    let file = arg("--file").unwrap_or_else(|| "samples/city_pan.mp4".into());
    let loops: u64 = arg("--loops").and_then(|s| s.parse().ok()).unwrap_or(0);
    let once = args.iter().any(|a| a == "--once");
    gst::init().expect("gstreamer");
    if let Some(launch) = arg("--launch") {
        let factory = rtsp::RTSPMediaFactory::new();
        factory.set_launch(&format!("( {launch} )"));
        factory.set_shared(false);
        serve(&port, factory);
        return;
    }
    let (caps, samples, clip_len) = match read_samples(&file) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{file}: {e}");
            std::process::exit(1);
        }
    };
    let samples = Arc::new(samples);
    let factory = rtsp::RTSPMediaFactory::new();
    factory.set_launch(
        "( appsrc name=src is-live=true format=time do-timestamp=false ! h264parse ! \
           rtph264pay name=pay0 pt=96 config-interval=1 )",
    );
    factory.set_shared(false);
    let served_once = Arc::new(AtomicBool::new(false));
    factory.connect_media_configure(move |_, media| {
        let bin = media.element();
        let Some(src) = bin
            .downcast_ref::<gst::Bin>()
            .and_then(|b| b.by_name_recurse_up("src"))
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
        else {
            return;
        };
        src.set_caps(Some(&caps));
        src.set_max_bytes(2_000_000);
        let samples = samples.clone();
        let empty = once && served_once.swap(true, Ordering::SeqCst);
        let stopped = Arc::new(Mutex::new(false));
        let stopped2 = stopped.clone();
        media.connect_unprepared(move |_| {
            if let Ok(mut s) = stopped2.lock() {
                *s = true;
            }
        });
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut served = gst::ClockTime::ZERO;
            let mut i = 0u64;
            while !empty && (loops == 0 || i < loops) {
                for s in samples.iter() {
                    if stopped.lock().map(|s| *s).unwrap_or(true) {
                        return;
                    }
                    let pts = clip_len * i + s.pts;
                    let due = Duration::from_nanos(pts.nseconds());
                    if let Some(wait) = due.checked_sub(start.elapsed()) {
                        std::thread::sleep(wait);
                    }
                    let mut b = s.data.copy();
                    {
                        let b = b.get_mut().expect("owned");
                        b.set_pts(pts);
                        b.set_dts(pts);
                        b.set_duration(s.duration);
                    }
                    if src.push_buffer(b).is_err() {
                        return;
                    }
                    served = pts + s.duration;
                }
                i += 1;
            }
            let _ = src.end_of_stream();
            println!("served {:.3}", served.nseconds() as f64 / 1e9);
        });
    });
    serve(&port, factory);
}

/// Mounts `factory` at `/cam` on 127.0.0.1:`port`, says so on stdout and serves for ever.
fn serve(port: &str, factory: rtsp::RTSPMediaFactory) {
    let main_loop = gst::glib::MainLoop::new(None, false);
    let server = rtsp::RTSPServer::new();
    server.set_address("127.0.0.1");
    server.set_service(port);
    server
        .mount_points()
        .expect("mount points")
        .add_factory("/cam", factory);
    let _id = server.attach(None).expect("attach");
    println!("listening rtsp://127.0.0.1:{port}/cam");
    main_loop.run();
}
