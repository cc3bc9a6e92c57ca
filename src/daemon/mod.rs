//! `obscura daemon`: runs beside camera fleets. Watches inbox folders and records RTSP
//! streams into clips, processes each clip exactly as `obscura ingest` does, and serves
//! Prometheus metrics, /healthz and /readyz. With `[queue]` it shares the work with other
//! nodes over NATS JetStream (see `queue`).
//!
//! Owns: the daemon's threads (scanner loop, workers, recorders, HTTP), shutdown and
//! readiness (including the staleness rule of streams: no video for
//! `daemon.stream_stale_secs`, or no segment for `segment` plus that). Must not touch:
//! processing (it calls `route::Router`), storage layout.
//!
//! Durability: the inbox is the journal. A file stays in its inbox until its outputs are
//! committed in the store (sidecar last) or it has been copied to the quarantine; only then is
//! it removed (and the folder fsynced). kill -9 at any moment therefore loses nothing, and the
//! file found again after a restart is either processed or recognised as already stored (clip
//! ids derive from content). Failures for a passing reason (store unreachable, disk full,
//! model missing) keep the file and retry it with backoff.

pub mod http;
pub mod inbox;
pub mod metrics;
pub mod queue;
pub mod rtsp;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::config::{Config, DeviceFrom};
use crate::detect::ModelKind;
use crate::pipeline::Control;
use crate::route::{IngestReport, RouteError, Router};
use inbox::{Outcome, Scanner, Watched, Work};
use metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("daemon configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error("queue: {0}")]
    Queue(String),
    /// Another daemon holds the state folder's lock.
    #[error(
        "state folder {} is in use by another obscura daemon ({}): two daemons on one state_dir would clear each other's work; stop it or give this one another daemon.state_dir",
        dir.display(),
        pid.map_or_else(|| "pid unknown".to_string(), |p| format!("pid {p}"))
    )]
    Locked { dir: PathBuf, pid: Option<u32> },
}

/// The lock file in the state folder.
pub const LOCK_FILE: &str = "daemon.lock";

/// The daemon's exclusive hold on its state folder: an flock on `<state_dir>/daemon.lock`
/// (which names the holder's pid), held while this value lives and released by the OS when
/// the process ends, kill -9 included.
pub struct StateLock {
    _file: std::fs::File,
}

impl StateLock {
    /// Takes the lock, or says which process holds it.
    pub fn take(dir: &Path) -> Result<StateLock, DaemonError> {
        use std::io::{Read, Seek, Write};
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join(LOCK_FILE);
        let io = |source| DaemonError::Io {
            path: path.clone(),
            source,
        };
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(crate::fsutil::PRIVATE_FILE)
            .open(&path)
            .map_err(io)?;
        // SAFETY: flock on an open descriptor; released when it is closed (process end).
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(io(e));
            }
            let mut text = String::new();
            let _ = f.read_to_string(&mut text);
            return Err(DaemonError::Locked {
                dir: dir.to_path_buf(),
                pid: text.trim().parse().ok(),
            });
        }
        f.set_len(0).map_err(io)?;
        f.rewind().map_err(io)?;
        writeln!(f, "{}", std::process::id()).map_err(io)?;
        Ok(StateLock { _file: f })
    }
}

/// Signals received (SIGTERM/SIGINT). The first drains, the second abandons clips in flight.
static SIGNALS: AtomicUsize = AtomicUsize::new(0);

fn install_signals() {
    extern "C" fn on_signal(_: libc::c_int) {
        SIGNALS.fetch_add(1, Ordering::SeqCst);
    }
    // SAFETY: the handler only touches an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

/// State shared by the daemon's threads.
pub struct Shared {
    pub cfg: Config,
    pub metrics: Arc<Metrics>,
    /// Set on the first signal: take no new work.
    pub stopping: Arc<AtomicBool>,
    /// Set when clips in flight must stop (drain timeout or second signal).
    pub abandon: Arc<AtomicBool>,
    /// The last failure to write (store or disk), cleared by the next success.
    pub last_write_error: Mutex<Option<String>>,
}

impl Shared {
    fn control(&self) -> Control {
        Control {
            cancel: self.abandon.clone(),
            ..Default::default()
        }
    }

    /// Records a committed clip in the metrics.
    pub fn record_success(&self, r: &IngestReport, wall: Duration) {
        let m = &self.metrics;
        if r.stored {
            m.clips_processed.fetch_add(1, Ordering::Relaxed);
            m.frames.fetch_add(r.frames, Ordering::Relaxed);
            m.faces.fetch_add(r.face_tracks, Ordering::Relaxed);
            m.speech_ms
                .fetch_add((r.speech_s * 1000.0).round() as u64, Ordering::Relaxed);
            if let Some(t) = &r.timing {
                let f = r.frames as f64 / 1000.0;
                let s = &t.stage_ms_per_frame;
                m.observe_stage("detect", s.detect * f);
                m.observe_stage("track", s.track * f);
                m.observe_stage("redact", s.redact * f);
                m.observe_stage("encode", s.encode_push * f);
                m.observe_stage("pipeline", t.wall_s);
            }
            m.observe_stage("ingest", wall.as_secs_f64());
        } else {
            m.clips_duplicate.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(mut e) = self.last_write_error.lock() {
            *e = None;
        }
    }

    /// Records a failure kept for retry.
    pub fn record_passing_failure(&self, what: &str) {
        self.metrics.clips_failed.fetch_add(1, Ordering::Relaxed);
        if is_no_space(what) {
            self.metrics.no_space.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(mut e) = self.last_write_error.lock() {
            *e = Some(what.to_string());
        }
    }

    /// Why the daemon is not ready, if it is not.
    pub fn not_ready(&self) -> Option<String> {
        if self.stopping.load(Ordering::Relaxed) {
            return Some("draining (shutting down)".into());
        }
        if let Ok(m) = self.metrics.models.lock()
            && let Some((name, _)) = m.iter().find(|(_, ok)| !**ok)
        {
            return Some(format!("model {name} missing or its sha256 does not match"));
        }
        let depth = self.metrics.queue_depth.load(Ordering::Relaxed).max(0) as usize;
        if depth > self.cfg.daemon.max_backlog {
            return Some(format!(
                "backlog: {depth} clips waiting (limit {})",
                self.cfg.daemon.max_backlog
            ));
        }
        if let Ok(e) = self.last_write_error.lock()
            && let Some(e) = e.as_ref()
        {
            return Some(format!("last write failed: {e}"));
        }
        self.stale_streams(Instant::now())
    }

    /// The streams not recorded for longer than `daemon.stream_stale_secs` at `now`, as a
    /// reason naming each device, or `None` when every stream is recorded.
    fn stale_streams(&self, now: Instant) -> Option<String> {
        let bound = Duration::from_secs(self.cfg.daemon.stream_stale_secs);
        let streams = self.metrics.streams.lock().ok()?;
        let stale: Vec<String> = self
            .cfg
            .stream
            .iter()
            .filter_map(|s| {
                let st = streams.get(&s.device)?;
                let why = staleness(
                    st.data_age(now),
                    st.segment_age(now),
                    s.segment_duration(),
                    bound,
                )?;
                Some(format!("{} ({why})", s.device))
            })
            .collect();
        if stale.is_empty() {
            return None;
        }
        Some(format!(
            "{} not recorded: {} (daemon.stream_stale_secs = {})",
            if stale.len() == 1 {
                "stream"
            } else {
                "streams"
            },
            stale.join(", "),
            bound.as_secs()
        ))
    }
}

/// The staleness rule of one stream: stale when it has delivered no video for longer than
/// `bound`, or when no segment has been recorded for longer than `segment` plus `bound` (a
/// segment closes about `segment` after the previous one, or at the next reconnect; video
/// that flows but is never committed is stale too). A stream that is down and reconnecting
/// stays fresh until its video has been missing for `bound`. Says why, or `None`.
fn staleness(
    data_age: Duration,
    segment_age: Duration,
    segment: Duration,
    bound: Duration,
) -> Option<String> {
    if data_age > bound {
        return Some(format!("no video for {} s", data_age.as_secs()));
    }
    if segment_age > segment + bound {
        return Some(format!(
            "no segment recorded for {} s",
            segment_age.as_secs()
        ));
    }
    None
}

/// True when an error message says a disk or store was full.
pub fn is_no_space(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("no space left") || m.contains("storage full") || m.contains("quota exceeded")
}

/// Removes a processed input and makes the removal durable.
pub fn remove_input(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(dir) = path.parent() {
        crate::fsutil::sync_dir(dir)?;
    }
    Ok(())
}

/// Checks the models the configuration needs (present, sha256) into the metrics.
fn check_models(cfg: &Config, metrics: &Metrics) {
    let mut kinds = vec![cfg.detect.model];
    kinds.extend(cfg.detect.grey_second_model.kind());
    if cfg.voice.mode != crate::redact::audio::VoiceMode::Keep {
        kinds.push(ModelKind::SileroVad);
    }
    let mut out = std::collections::BTreeMap::new();
    for k in kinds {
        let ok = crate::detect::models::ModelFile::locate(k, cfg.runtime.models_dir.as_deref())
            .and_then(|m| m.verify())
            .is_ok();
        out.insert(k.name().to_string(), ok);
    }
    if let Ok(mut m) = metrics.models.lock() {
        *m = out;
    }
}

/// Processes one local file with `ingest`: commit then remove; quarantine then remove when
/// the input is at fault; keep it otherwise.
fn process_local(router: &Router, w: &Work, shared: &Shared) -> Outcome {
    let t0 = Instant::now();
    let ctl = shared.control();
    let span = tracing::info_span!("clip", path = %w.path.display(), device = %w.device);
    let _g = span.enter();
    match router.try_ingest(&w.path, &w.device, w.recorded_at, &ctl) {
        Ok(r) => {
            shared.record_success(&r, t0.elapsed());
            tracing::info!(
                clip = %r.clip,
                region = %r.region,
                classification = %r.classification,
                stored = r.stored,
                seconds = t0.elapsed().as_secs_f64(),
                "committed"
            );
            finish_removal(&w.path)
        }
        Err(e) => handle_failure(router, w, &e, shared),
    }
}

fn finish_removal(path: &Path) -> Outcome {
    match remove_input(path) {
        Ok(()) => Outcome::Removed,
        Err(e) => {
            tracing::error!(error = %e, "committed, but the input could not be removed; retrying");
            Outcome::Retry
        }
    }
}

/// What a failed clip means: cancelled → abandoned; the input's fault → quarantine and
/// remove; otherwise kept and retried.
fn handle_failure(router: &Router, w: &Work, e: &RouteError, shared: &Shared) -> Outcome {
    if e.is_cancelled() {
        tracing::warn!("abandoned on shutdown; it stays in the inbox");
        return Outcome::Abandoned;
    }
    if let RouteError::Minor { device } = e {
        // The promise: minors' data is deleted. Not stored, not quarantined, removed.
        if let Err(ae) = router.refuse_minor(&w.path, device) {
            // Deleted only once the refusal is on record.
            shared.record_passing_failure(&ae.to_string());
            return Outcome::Retry;
        }
        shared.metrics.clips_refused.fetch_add(1, Ordering::Relaxed);
        tracing::warn!("a minor's clip with personal data: refused and deleted");
        return finish_removal(&w.path);
    }
    if e.is_permanent() {
        return match router.quarantine(&w.path, &w.device, e) {
            Ok(q) => {
                shared
                    .metrics
                    .clips_quarantined
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, quarantine = %q.display(), "quarantined");
                finish_removal(&w.path)
            }
            Err(qe) => {
                tracing::error!(error = %e, quarantine_error = %qe, "could not quarantine; kept");
                shared.record_passing_failure(&qe.to_string());
                Outcome::Retry
            }
        };
    }
    tracing::warn!(error = %e, "failed for a passing reason; kept and retried");
    shared.record_passing_failure(&e.to_string());
    Outcome::Retry
}

/// Gives the decoded-frame memory kept for the next clip back to the system once no clip has
/// been in flight for `after` (zero: never), and shows what is kept and given back.
fn release_memory_when_idle(metrics: &Metrics, after: Duration, idle_since: &mut Option<Instant>) {
    use crate::media::frame_memory;
    if metrics.in_flight.load(Ordering::Relaxed) > 0 {
        *idle_since = None;
    } else {
        let since = *idle_since.get_or_insert_with(Instant::now);
        if !after.is_zero() && since.elapsed() >= after && frame_memory::idle_bytes() > 0 {
            let freed = frame_memory::release_idle();
            tracing::debug!(freed, "idle: decoded-frame memory given back");
        }
    }
    metrics
        .frame_memory_idle_bytes
        .store(frame_memory::idle_bytes() as u64, Ordering::Relaxed);
    metrics
        .frame_memory_released_bytes
        .store(frame_memory::released_bytes(), Ordering::Relaxed);
}

/// Runs the daemon until SIGTERM/SIGINT. Returns after a clean drain.
pub fn run(mut cfg: Config) -> Result<(), DaemonError> {
    let d = cfg.daemon.clone();
    // The daemon's scratch space is its own (a stale one from a killed run is cleared below).
    cfg.paths.work = d.state_dir.join("work");
    let queue_workers = cfg.queue.as_ref().map_or(0, |q| q.workers);
    if cfg.queue.is_none() && d.workers == 0 {
        return Err(DaemonError::Config(
            "daemon.workers is 0 and there is no [queue]: nothing would process clips".into(),
        ));
    }
    if cfg.inbox.is_empty() && cfg.stream.is_empty() && queue_workers == 0 {
        return Err(DaemonError::Config(
            "no [[inbox]], no [[stream]] and no queue workers: nothing to do".into(),
        ));
    }
    // Fail fast on a configuration the router refuses (unknown regions, stores).
    let probe_router = Router::new(&cfg)?;
    for s in &cfg.stream {
        probe_router.device(&s.device)?;
    }
    for b in &cfg.inbox {
        if let Some(dev) = &b.device {
            probe_router.device(dev)?;
        }
    }
    drop(probe_router);
    let spool = d.state_dir.join("spool");
    let streams_dir = d.state_dir.join("streams");
    for dir in [&d.state_dir, &spool, &streams_dir]
        .into_iter()
        .chain(cfg.inbox.iter().map(|b| &b.path))
    {
        crate::fsutil::create_dir_all_durable(dir).map_err(|source| DaemonError::Io {
            path: dir.clone(),
            source,
        })?;
    }
    // One daemon per state folder, taken before anything in it is cleared or written.
    let _state_lock = StateLock::take(&d.state_dir)?;
    clean_stale_temps(&cfg.paths.work);
    let listener =
        std::net::TcpListener::bind(&d.listen).map_err(|source| DaemonError::Listen {
            addr: d.listen.clone(),
            source,
        })?;
    if let Some(lib) = &cfg.runtime.onnxruntime_lib {
        crate::detect::runtime::set_library_path(Some(lib.clone()));
    }
    let metrics = Arc::new(Metrics::default());
    check_models(&cfg, &metrics);
    let shared = Arc::new(Shared {
        cfg: cfg.clone(),
        metrics: metrics.clone(),
        stopping: Arc::new(AtomicBool::new(false)),
        abandon: Arc::new(AtomicBool::new(false)),
        last_write_error: Mutex::new(None),
    });
    install_signals();

    // The queue first: a broker that cannot be reached at start is a start-up error.
    let queue_ctx = match &cfg.queue {
        Some(q) => Some(queue::Context::connect(q, &cfg)?),
        None => None,
    };
    let http_stop = Arc::new(AtomicBool::new(false));
    let http = {
        let (m, s2, stop) = (metrics.clone(), shared.clone(), http_stop.clone());
        let q2 = queue_ctx.clone();
        let readiness: http::Readiness = Arc::new(move || {
            s2.not_ready()
                .or_else(|| q2.as_ref().and_then(queue::Context::not_ready))
        });
        std::thread::Builder::new()
            .name("http".into())
            .spawn(move || http::serve(listener, m, readiness, stop))
            .map_err(|e| DaemonError::Config(format!("thread: {e}")))?
    };
    tracing::info!(listen = %d.listen, workers = d.workers, inboxes = cfg.inbox.len(), streams = cfg.stream.len(), "obscura daemon started");

    // RTSP recorders: finished segments land in state/streams/<device>/.
    let recorder_stop = Arc::new(AtomicBool::new(false));
    let mut recorders = Vec::new();
    for s in &cfg.stream {
        recorders.push(rtsp::spawn(
            s.clone(),
            spool.clone(),
            streams_dir.clone(),
            metrics.clone(),
            recorder_stop.clone(),
        )?);
    }

    // Queue workers (JetStream pull), when configured.
    let mut pullers = Vec::new();
    if let Some(ctx) = &queue_ctx {
        for i in 0..queue_workers {
            pullers.push(queue::spawn_worker(i, ctx.clone(), shared.clone())?);
        }
    }

    // Local workers: process (or, with a queue, publish) what the scanner hands out.
    let (work_tx, work_rx): (Sender<Work>, Receiver<Work>) =
        crossbeam_channel::bounded(d.workers.max(1));
    let (done_tx, done_rx) = crossbeam_channel::unbounded::<(PathBuf, Outcome)>();
    let mut workers = Vec::new();
    let local_workers = if cfg.inbox.is_empty() && cfg.stream.is_empty() {
        0
    } else {
        d.workers.max(1)
    };
    for i in 0..local_workers {
        let (rx, tx, sh) = (work_rx.clone(), done_tx.clone(), shared.clone());
        let router = Router::new(&cfg)?;
        let publisher = queue_ctx.clone();
        workers.push(
            std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || {
                    for w in rx.iter() {
                        sh.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
                        let outcome = match &publisher {
                            Some(p) => p.publish_local(&router, &w, &sh),
                            None => process_local(&router, &w, &sh),
                        };
                        sh.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
                        let _ = tx.send((w.path.clone(), outcome));
                    }
                })
                .map_err(|e| DaemonError::Config(format!("thread: {e}")))?,
        );
    }
    drop(work_rx);
    drop(done_tx);

    let mut watched: Vec<Watched> = cfg
        .inbox
        .iter()
        .map(|b| Watched {
            root: b.path.clone(),
            device_from: b.device_from,
            device: b.device.clone(),
        })
        .collect();
    if !cfg.stream.is_empty() {
        watched.push(Watched {
            root: streams_dir.clone(),
            device_from: DeviceFrom::ParentDir,
            device: None,
        });
    }
    let mut scanner = Scanner::new(
        watched,
        Duration::from_secs_f64(d.stable_secs),
        Duration::from_secs(d.retry_max_secs),
    );
    let poll = Duration::from_millis(d.poll_ms);
    let mut last_model_check = Instant::now();
    let release_after = Duration::from_secs(d.release_memory_after_secs);
    let mut idle_since: Option<Instant> = None;
    // The scanner loop.
    while SIGNALS.load(Ordering::SeqCst) == 0 {
        release_memory_when_idle(&metrics, release_after, &mut idle_since);
        while let Ok((p, o)) = done_rx.try_recv() {
            scanner.finished(&p, o);
        }
        if local_workers > 0 {
            let ready = scanner.ready();
            let mut waiting = ready.len();
            for w in ready {
                let path = w.path.clone();
                match work_tx.try_send(w) {
                    Ok(()) => {
                        scanner.claim(&path);
                        waiting -= 1;
                    }
                    Err(TrySendError::Full(_)) => break,
                    Err(TrySendError::Disconnected(_)) => break,
                }
            }
            metrics.queue_depth.store(waiting as i64, Ordering::Relaxed);
        }
        if last_model_check.elapsed() > Duration::from_secs(10) {
            check_models(&cfg, &metrics);
            last_model_check = Instant::now();
        }
        // Wake early when a worker finishes. (A node without local workers has no sender:
        // the channel is disconnected and would return at once, so sleep instead.)
        match done_rx.recv_timeout(poll) {
            Ok((p, o)) => scanner.finished(&p, o),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => std::thread::sleep(poll),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
        }
    }

    // Drain: take nothing new, close the segments being recorded, give clips in flight
    // `drain_secs`, then abandon them (they stay in the inbox for the next start).
    tracing::info!("signal received: draining");
    shared.stopping.store(true, Ordering::SeqCst);
    drop(work_tx);
    recorder_stop.store(true, Ordering::SeqCst);
    if let Some(ctx) = &queue_ctx {
        ctx.stop();
    }
    let deadline = Instant::now() + Duration::from_secs(d.drain_secs);
    let all_done = |ws: &Vec<std::thread::JoinHandle<()>>| ws.iter().all(|w| w.is_finished());
    while !(all_done(&workers) && all_done(&pullers) && all_done(&recorders)) {
        if Instant::now() > deadline || SIGNALS.load(Ordering::SeqCst) > 1 {
            tracing::warn!("drain time is up: abandoning clips in flight");
            shared.abandon.store(true, Ordering::SeqCst);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Threads that still run after the drain (a clip abandoned mid-stage, a recorder stuck in
    // GStreamer) get a few seconds more; then the daemon stops without them, so that SIGTERM
    // always ends the process (what they held is recovered at the next start).
    let grace = Instant::now() + ABANDON_GRACE;
    let threads: Vec<_> = workers
        .into_iter()
        .chain(pullers)
        .chain(recorders)
        .collect();
    while !all_done(&threads) && Instant::now() < grace {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut left = 0;
    for h in threads {
        if h.is_finished() {
            let _ = h.join();
        } else {
            left += 1;
        }
    }
    if left > 0 {
        tracing::error!(
            threads = left,
            "threads did not stop after the drain: stopping without them"
        );
    }
    http_stop.store(true, Ordering::SeqCst);
    let _ = http.join();
    tracing::info!("obscura daemon stopped");
    Ok(())
}

/// How long threads still running after the drain are waited for before the daemon stops
/// without them.
const ABANDON_GRACE: Duration = Duration::from_secs(5);

/// Empties the daemon's own work folder: anything there was left by a killed run.
fn clean_stale_temps(work: &Path) {
    let Ok(rd) = std::fs::read_dir(work) else {
        return;
    };
    for e in rd.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().to_string();
        let path = e.path();
        let _ = if e.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        tracing::info!(path = %path.display(), name, "removed a stale temporary from a previous run");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn a_stream_is_stale_after_the_bound_without_video_or_segment_plus_bound_without_a_clip() {
        let (seg, bound) = (S(10), S(60));
        // Recording normally: video now, the last segment a segment ago.
        assert_eq!(staleness(S(0), S(10), seg, bound), None);
        // Down and reconnecting, still within the bound: ready.
        assert_eq!(staleness(S(60), S(65), seg, bound), None);
        // Gone longer than the bound.
        assert_eq!(
            staleness(S(61), S(65), seg, bound).as_deref(),
            Some("no video for 61 s")
        );
        // Video flows but no segment is committed (a long first segment is allowed up to
        // segment + bound).
        assert_eq!(staleness(S(0), S(70), seg, bound), None);
        assert_eq!(
            staleness(S(0), S(71), seg, bound).as_deref(),
            Some("no segment recorded for 71 s")
        );
    }

    fn shared(toml: &str) -> Shared {
        let cfg = Config::parse(&format!(
            "[regions.eu]\nstore = \"file:///tmp/obscura-eu\"\n{toml}"
        ))
        .unwrap();
        Shared {
            cfg,
            metrics: Arc::new(Metrics::default()),
            stopping: Arc::new(AtomicBool::new(false)),
            abandon: Arc::new(AtomicBool::new(false)),
            last_write_error: Mutex::new(None),
        }
    }

    #[test]
    fn readiness_names_every_stale_stream_and_only_those() {
        let sh = shared(
            "[daemon]\nstream_stale_secs = 30\n\
             [[stream]]\ndevice = \"cam-1\"\nurl = \"rtsp://h/a\"\nsegment = \"10s\"\n\
             [[stream]]\ndevice = \"cam-2\"\nurl = \"rtsp://h/b\"\nsegment = \"10s\"\n\
             [[stream]]\ndevice = \"cam-3\"\nurl = \"rtsp://h/c\"\nsegment = \"10s\"\n",
        );
        let t0 = Instant::now();
        for d in ["cam-1", "cam-2", "cam-3"] {
            sh.metrics.stream(d, |st| st.since = t0);
        }
        // At start nothing has arrived yet, and that is fine within the bound.
        assert_eq!(sh.stale_streams(t0 + S(30)), None);
        // cam-1 records; cam-2 went quiet at 5 s; cam-3 never delivered anything.
        let now = t0 + S(45);
        sh.metrics.stream("cam-1", |st| {
            st.last_data = Some(now);
            st.last_segment = Some(t0 + S(40));
        });
        sh.metrics.stream("cam-2", |st| {
            st.last_data = Some(t0 + S(5));
            st.last_segment = Some(t0 + S(5));
        });
        assert_eq!(
            sh.stale_streams(now).as_deref(),
            Some(
                "streams not recorded: cam-2 (no video for 40 s), cam-3 (no video for 45 s) (daemon.stream_stale_secs = 30)"
            )
        );
        // cam-2 and cam-3 come back: ready again.
        for d in ["cam-2", "cam-3"] {
            sh.metrics.stream(d, |st| {
                st.last_data = Some(now);
                st.last_segment = Some(now);
            });
        }
        assert_eq!(sh.stale_streams(now + S(1)), None);
        assert_eq!(sh.not_ready(), None);
        // Without streams there is nothing to be stale.
        assert_eq!(shared("").stale_streams(t0 + S(3600)), None);
    }
}
