//! The command line: argument parsing, logging set-up, progress display, exit codes.
//!
//! Owns: turning flags into a validated [`Config`] and a job, and turning results into output
//! and an exit status. Must not touch: processing itself — it calls `pipeline` and friends.
//!
//! Exit codes (stable contract, also in the README):
//! 0 success · 1 an input could not be processed (missing, empty, not media, corrupt,
//! unsupported, stalled; unredacted media for a region that refuses it; a disclosure package
//! that fails `disclose verify`) · 2 usage or
//! configuration error (an id or hold case named on the command line that nothing knows
//! included, and a refused `correct`) · 3 environment error (model missing or wrong sha256,
//! ONNX Runtime or a GStreamer element missing, CUDA unavailable) · 4 output could not be written · 130 interrupted.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, InputSize};
use crate::detect::{Device, ModelKind};
use crate::media::encode::Quality;
use crate::pipeline::{Control, Job, PipelineError};
use crate::redact::video::Style;

#[derive(Parser, Debug)]
#[command(name = "obscura", version, about = "Find and redact faces (and voices) in device video", long_about = None)]
pub struct Cli {
    /// Log as JSON lines on stderr.
    #[arg(long, global = true)]
    pub log_json: bool,
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Redact faces in a video file: writes a playable MP4 and a JSON sidecar.
    Redact(RedactArgs),
    /// Check a configuration, the models (sha256), ONNX Runtime and the GStreamer elements.
    Validate(ValidateArgs),
    /// Measure a redacted output against ground truth (leak rate, untouched area).
    Eval(EvalArgs),
    /// Time decode-only, transcode-only and the full pipeline on one input, plus the detector
    /// alone (and the leak rate when INPUT.gt.json exists).
    Bench(BenchArgs),
    /// Redact a folder tree or a list of files into a mirrored output tree (resumable).
    Batch(BatchArgs),
    /// Redact, classify and store a clip in its device's region with retention metadata.
    Ingest(IngestArgs),
    /// Erase clips everywhere (except clips on hold).
    Erase(SelectArgs),
    /// Export one account's clips (records and media) into a folder.
    Export(ExportArgs),
    /// Legal holds: set one per case, release a case, list those in force.
    #[command(subcommand)]
    Hold(HoldCommand),
    /// Restrictions of use: the clips stay stored (retention still runs), but `export` leaves
    /// them out unless `--case` names a hold in force over them.
    #[command(subcommand)]
    Restrict(RestrictCommand),
    /// Correct a clip's record (recording time, account, classification): its sidecar and
    /// retention are re-issued and the change audited. Re-redaction is not done here.
    Correct(CorrectArgs),
    /// A package for a law-enforcement or court request: the redacted media and sidecars of
    /// the selected clips and a manifest of every file with its sha256, signed with the
    /// region's Ed25519 key; `disclose verify DIR` checks one.
    Disclose(DiscloseArgs),
    /// Retention: delete what is past its retention and not on hold.
    Retention(RetentionArgs),
    /// The audit log.
    Audit(AuditArgs),
    /// Run beside camera fleets: watch inboxes, record RTSP streams, process every clip as
    /// `ingest` does; /metrics, /healthz, /readyz; drains on SIGTERM. See README.
    Daemon(DaemonArgs),
}

#[derive(Args, Debug)]
pub struct DaemonArgs {
    /// The configuration ([daemon], [[inbox]], [[stream]], [queue], regions, devices).
    #[arg(long, env = "OBSCURA_CONFIG")]
    pub config: PathBuf,
}

#[derive(Args, Debug)]
pub struct BatchArgs {
    /// A folder (walked recursively), a list file (.txt/.list, one path per line), `-` for a
    /// list on standard input, or one media file.
    pub input: PathBuf,
    /// Output folder; the input tree is mirrored under it, with report.json at its top.
    #[arg(long)]
    pub out: PathBuf,
    /// Files processed at once (default: half the CPUs, at least 1).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub jobs: Option<u16>,
    /// Skip files whose committed output matches the input's sha256 and the current settings.
    #[arg(long)]
    pub resume: bool,
    /// Follow symbolic links in the folder walk (each folder walked once, loops included; a
    /// file reached twice done once). Without it links are listed as ignored.
    #[arg(long, short = 'L')]
    pub follow: bool,
    /// Print the report as JSON on stdout.
    #[arg(long, conflicts_with = "jsonl")]
    pub json: bool,
    /// Print JSON lines on stdout as the batch goes: a `begin` record, one `file` record per
    /// file as it finishes, a `summary` record (the report without its file list).
    #[arg(long)]
    pub jsonl: bool,
    #[command(flatten)]
    pub processing: ProcessingArgs,
}

#[derive(Args, Debug)]
// `--device` is the camera here; the compute device is `--compute` only.
#[command(mut_arg("compute", |a| a.alias(None)))]
pub struct IngestArgs {
    pub input: PathBuf,
    /// The camera that recorded the clip (a device id of the configuration).
    #[arg(long, value_name = "ID", required = true, action = clap::ArgAction::Append)]
    pub device: Vec<String>,
    /// When the clip was recorded: RFC 3339 (2026-11-29T08:00:00Z) or 20261129T080000Z,
    /// from 2000-01-01 to 5 minutes after now; default: now.
    #[arg(long, value_name = "TIME")]
    pub recorded_at: Option<String>,
    #[command(flatten)]
    pub processing: ProcessingArgs,
}

#[derive(Args, Debug)]
#[group(required = true, multiple = false, id = "selector")]
pub struct Select {
    #[arg(long, group = "selector")]
    pub device: Option<String>,
    #[arg(long, group = "selector")]
    pub account: Option<String>,
    #[arg(long, group = "selector")]
    pub clip: Option<String>,
}

impl Select {
    fn selector(&self) -> crate::route::Selector {
        use crate::route::Selector;
        match (&self.device, &self.account, &self.clip) {
            (Some(d), _, _) => Selector::Device(d.clone()),
            (_, Some(a), _) => Selector::Account(a.clone()),
            (_, _, Some(c)) => Selector::Clip(c.clone()),
            _ => Selector::Clip(String::new()),
        }
    }
}

#[derive(Args, Debug)]
pub struct SelectArgs {
    #[command(flatten)]
    pub select: Select,
    #[arg(long, env = "OBSCURA_CONFIG")]
    pub config: PathBuf,
}

/// An optional device, account or clip.
#[derive(Args, Debug)]
#[group(required = false, multiple = false, id = "opt_selector")]
pub struct OptSelect {
    #[arg(long, group = "opt_selector")]
    pub device: Option<String>,
    #[arg(long, group = "opt_selector")]
    pub account: Option<String>,
    #[arg(long, group = "opt_selector")]
    pub clip: Option<String>,
}

impl OptSelect {
    fn selector(&self) -> Option<crate::route::Selector> {
        use crate::route::Selector;
        match (&self.device, &self.account, &self.clip) {
            (Some(d), _, _) => Some(Selector::Device(d.clone())),
            (_, Some(a), _) => Some(Selector::Account(a.clone())),
            (_, _, Some(c)) => Some(Selector::Clip(c.clone())),
            _ => None,
        }
    }
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[arg(long)]
    pub account: String,
    #[arg(long)]
    pub out: PathBuf,
    /// Also export restricted clips covered by a hold of this case (in force).
    #[arg(long)]
    pub case: Option<String>,
    #[arg(long, env = "OBSCURA_CONFIG")]
    pub config: PathBuf,
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct DiscloseArgs {
    #[command(subcommand)]
    pub verify: Option<DiscloseCommand>,
    #[command(flatten)]
    pub make: DiscloseMakeArgs,
}

#[derive(Subcommand, Debug)]
pub enum DiscloseCommand {
    /// Check a package: the signature over its manifest, every file's sha256 and size, no
    /// file missing or added. Exit 1 when it does not hold.
    Verify(DiscloseVerifyArgs),
}

#[derive(Args, Debug)]
pub struct DiscloseMakeArgs {
    /// The request's case: restricted clips and originals are given only where a hold of
    /// this case (in force) covers them.
    #[arg(long, required = true)]
    pub case: Option<String>,
    /// Who receives the package (authority, court, reference).
    #[arg(long, required = true)]
    pub recipient: Option<String>,
    #[command(flatten)]
    pub select: OptSelect,
    /// Only clips recorded at or after this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    /// Only clips recorded at or before this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub to: Option<chrono::DateTime<chrono::Utc>>,
    /// Only clips stored in this region (a package is signed by one region's key).
    #[arg(long)]
    pub region: Option<String>,
    /// Also the decrypted originals from the vault: refused unless a hold of the case covers
    /// every selected clip.
    #[arg(long)]
    pub originals: bool,
    /// The package folder: new, or an existing empty folder.
    #[arg(long, required = true)]
    pub out: Option<PathBuf>,
    /// Who discloses (default: $USER).
    #[arg(long)]
    pub by: Option<String>,
    #[arg(long, env = "OBSCURA_CONFIG", required = true)]
    pub config: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct DiscloseVerifyArgs {
    /// The package folder.
    pub dir: PathBuf,
    /// The signer's public key (PEM, or 64 hex digits) obtained apart from the package (the
    /// region's key store holds it as keys/disclose/ed25519.pub.pem); without it the key in
    /// the package is used, which proves the package whole but not who made it.
    #[arg(long, value_name = "PUBKEYFILE")]
    pub key: Option<PathBuf>,
    /// Ignored (verify needs no configuration); accepted so that OBSCURA_CONFIG scripts work.
    #[arg(long, hide = true)]
    pub config: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct CorrectArgs {
    /// The clip whose record is corrected.
    #[arg(long)]
    pub clip: String,
    /// The true recording time (same forms and bounds as `ingest --recorded-at`); the
    /// retention is recomputed from it.
    #[arg(long, value_name = "TIME")]
    pub recorded_at: Option<String>,
    /// The account the clip's device belonged to when it recorded this clip.
    #[arg(long)]
    pub account: Option<String>,
    /// personal | non-personal (non-personal is recorded as a downgrade).
    #[arg(long, value_name = "CLASS")]
    pub classification: Option<String>,
    /// Why the record is corrected (required; recorded in the sidecar and the audit log).
    #[arg(long)]
    pub reason: String,
    /// Who corrects it (default: $USER).
    #[arg(long)]
    pub by: Option<String>,
    #[arg(long, env = "OBSCURA_CONFIG")]
    pub config: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum RestrictCommand {
    /// Restrict the use of a device's, an account's or a clip's clips (a person objects).
    Set(RestrictSetArgs),
    /// End the restriction over a device, an account or a clip.
    Release(RestrictReleaseArgs),
    /// The restrictions in force (all, or those over a device, account or clip).
    List(RestrictListArgs),
}

#[derive(Args, Debug)]
pub struct RestrictSetArgs {
    #[command(flatten)]
    pub select: Select,
    /// What the person objects to.
    #[arg(long)]
    pub reason: String,
    /// Who sets it (default: $USER).
    #[arg(long)]
    pub by: Option<String>,
    #[arg(long, env = "OBSCURA_CONFIG")]
    pub config: PathBuf,
}

#[derive(Args, Debug)]
pub struct RestrictReleaseArgs {
    #[command(flatten)]
    pub select: Select,
    /// Why it ends (recorded in the audit log).
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Who releases it (default: $USER).
    #[arg(long)]
    pub by: Option<String>,
    #[arg(long, env = "OBSCURA_CONFIG")]
    pub config: PathBuf,
}

#[derive(Args, Debug)]
pub struct RestrictListArgs {
    #[command(flatten)]
    pub select: OptSelect,
    /// JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[arg(long, env = "OBSCURA_CONFIG")]
    pub config: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum HoldCommand {
    /// Put a device, an account or a clip on hold for a case (added to the holds in force; a
    /// device or account hold also covers clips ingested later).
    Set(HoldSetArgs),
    /// End the holds of one case; the other cases stay in force.
    Release(HoldReleaseArgs),
    /// The holds in force (all, or those over a device, account or clip).
    List(HoldListArgs),
}

#[derive(Args, Debug)]
pub struct HoldSetArgs {
    #[command(flatten)]
    pub select: Select,
    /// The case (matter, request, ticket) the hold is for; `hold release --case` ends it.
    #[arg(long)]
    pub case: String,
    /// Why the hold is set.
    #[arg(long)]
    pub reason: String,
    /// Who sets it (default: $USER).
    #[arg(long)]
    pub by: Option<String>,
    /// Only clips recorded at or after this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    /// Only clips recorded at or before this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub to: Option<chrono::DateTime<chrono::Utc>>,
    #[arg(long, env = "OBSCURA_CONFIG")]
    pub config: PathBuf,
}

#[derive(Args, Debug)]
pub struct HoldReleaseArgs {
    /// The case whose holds end.
    #[arg(long)]
    pub case: String,
    /// Only the case's hold over this device, account or clip.
    #[command(flatten)]
    pub select: OptSelect,
    /// Why it ends (recorded in the audit log).
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Who releases it (default: $USER).
    #[arg(long)]
    pub by: Option<String>,
    #[arg(long, env = "OBSCURA_CONFIG")]
    pub config: PathBuf,
}

#[derive(Args, Debug)]
pub struct HoldListArgs {
    #[command(flatten)]
    pub select: OptSelect,
    /// JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[arg(long, env = "OBSCURA_CONFIG")]
    pub config: PathBuf,
}

/// An RFC 3339 time.
fn parse_time(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("{e} (expected RFC 3339, such as 2026-11-29T08:00:00Z)"))
}

/// Who runs the command: `--by`, else `$USER`, else `unknown`.
fn operator(by: &Option<String>) -> String {
    by.clone()
        .filter(|b| !b.trim().is_empty())
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "unknown".into())
}

#[derive(Args, Debug)]
pub struct RetentionArgs {
    /// sweep
    #[arg(value_parser = ["sweep"])]
    pub action: String,
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long, env = "OBSCURA_CONFIG")]
    pub config: PathBuf,
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    /// verify
    #[arg(value_parser = ["verify"])]
    pub action: String,
    #[arg(long, env = "OBSCURA_CONFIG")]
    pub config: PathBuf,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Input video (default: the bundled 720p sample samples/faces_sizes.mp4).
    pub input: Option<PathBuf>,
    /// Runs per mode; the median is reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub runs: u32,
    /// Detector batch sizes to time at the main input size.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32",
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub batches: Vec<u16>,
    /// Also time this many full runs of the input at once (0: skip).
    #[arg(long, default_value_t = 2)]
    pub concurrent: usize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub processing: ProcessingArgs,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The original video, or a folder of clips each with its ground truth `NAME.gt.json`.
    pub input: PathBuf,
    /// The redacted video, or the folder of redacted clips of the same names (what
    /// `obscura batch INPUT --out OUTPUT` writes).
    pub output: PathBuf,
    /// Ground truth (samples/*.gt.json format); for one video only.
    #[arg(long)]
    pub gt: Option<PathBuf>,
    /// A folder's evaluation as JSON instead of a table (one video's is always JSON).
    #[arg(long)]
    pub json: bool,
}

/// Settings shared by every command that processes media; each overrides the config file.
#[derive(Args, Debug, Clone, Default)]
pub struct ProcessingArgs {
    /// Configuration file (TOML); flags override it.
    #[arg(long, env = "OBSCURA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Redaction style.
    #[arg(long, value_enum)]
    pub style: Option<Style>,
    /// Face detector.
    #[arg(long, value_enum)]
    pub detector: Option<ModelKind>,
    /// Detector score threshold (0..1).
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Where inference runs. `--device` is its older name, still taken by every command but
    /// `ingest`, whose `--device` is the camera.
    #[arg(long, alias = "device", value_enum, value_name = "cpu|cuda|auto")]
    pub compute: Option<Device>,
    /// Encoder speed/quality trade-off.
    #[arg(long, value_enum)]
    pub quality: Option<Quality>,
    /// Run the detector on every N-th frame (the tracker fills the rest).
    #[arg(long, value_name = "N")]
    pub detect_every: Option<u32>,
    /// Detector input size: `auto` or WIDTHxHEIGHT (multiples of 32).
    #[arg(long, value_name = "auto|WxH")]
    pub detect_size: Option<InputSize>,
    /// Zoom pass for tiny faces: `auto`, `off`, or a magnification factor.
    #[arg(long, value_name = "auto|off|F")]
    pub zoom: Option<crate::config::Zoom>,
    /// Run the zoom pass on every N-th frame (instead of every --revisit seconds).
    #[arg(long, value_name = "N")]
    pub zoom_every: Option<u32>,
    /// Seconds between zoom-pass looks for faces too small for the main pass (default 1).
    #[arg(long, value_name = "SECS")]
    pub revisit: Option<f32>,
    /// Smallest face to find, in source pixels (sets the `auto` detector size).
    #[arg(long, value_name = "PX")]
    pub min_face: Option<u32>,
    /// What happens to speech.
    #[arg(long, value_enum)]
    pub voice: Option<crate::redact::audio::VoiceMode>,
    /// Voice activity threshold (0..1).
    #[arg(long, value_name = "F")]
    pub voice_threshold: Option<f32>,
    /// Margin added around each face box, as a fraction of its size.
    #[arg(long)]
    pub margin: Option<f32>,
    /// Folder with the model files.
    #[arg(long, value_name = "DIR")]
    pub models: Option<PathBuf>,
    /// The ONNX Runtime library (file or folder).
    #[arg(long, value_name = "PATH")]
    pub ort_lib: Option<PathBuf>,
}

impl ProcessingArgs {
    /// Loads the config file (or defaults), applies the flags, validates the result.
    pub fn resolve(&self) -> Result<Config, crate::config::ConfigError> {
        let mut c = match &self.config {
            Some(p) => Config::load(p)?,
            None => Config::default(),
        };
        if let Some(v) = self.style {
            c.redact.style = v;
        }
        if let Some(v) = self.detector {
            c.detect.model = v;
        }
        if let Some(v) = self.threshold {
            c.detect.threshold = v;
        }
        if let Some(v) = self.compute {
            c.runtime.device = v;
        }
        if let Some(v) = self.quality {
            c.encode.quality = v;
        }
        if let Some(v) = self.detect_every {
            c.detect.every = v;
        }
        if let Some(v) = self.detect_size {
            c.detect.input_size = v;
        }
        if let Some(v) = self.zoom {
            c.detect.zoom = v;
        }
        if let Some(v) = self.zoom_every {
            c.detect.zoom_every = v;
        }
        if let Some(v) = self.revisit {
            c.detect.revisit_s = v;
        }
        if let Some(v) = self.min_face {
            c.detect.min_face_px = v;
        }
        if let Some(v) = self.voice {
            c.voice.mode = v;
        }
        if let Some(v) = self.voice_threshold {
            c.voice.threshold = v;
        }
        if let Some(v) = self.margin {
            c.redact.margin = v;
        }
        if let Some(v) = &self.models {
            c.runtime.models_dir = Some(v.clone());
        }
        if let Some(v) = &self.ort_lib {
            c.runtime.onnxruntime_lib = Some(v.clone());
        }
        c.validate()?;
        Ok(c)
    }
}

#[derive(Args, Debug)]
pub struct RedactArgs {
    /// Input video (any container/codec GStreamer can decode).
    pub input: PathBuf,
    /// Output file (H.264/AAC in MP4).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Sidecar path (default: OUTPUT.json).
    #[arg(long)]
    pub sidecar: Option<PathBuf>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Never show a progress bar.
    #[arg(long)]
    pub no_progress: bool,
    #[command(flatten)]
    pub processing: ProcessingArgs,
}

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Print the effective configuration (file + flags + defaults) as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    #[command(flatten)]
    pub processing: ProcessingArgs,
}

/// Process exit statuses (see the module docs).
pub mod exit {
    pub const OK: u8 = 0;
    pub const INPUT: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const ENVIRONMENT: u8 = 3;
    pub const OUTPUT: u8 = 4;
    pub const INTERRUPTED: u8 = 130;
}

/// The exit status for a pipeline error.
pub fn exit_code_for(e: &PipelineError) -> u8 {
    match e.class() {
        "model_missing" | "model_checksum" | "runtime_missing" | "cuda_unavailable"
        | "missing_element" => exit::ENVIRONMENT,
        "io" => exit::OUTPUT,
        "invalid" => exit::USAGE,
        "cancelled" => exit::INTERRUPTED,
        _ => exit::INPUT,
    }
}

pub fn init_logging(json: bool, verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn,ort=error",
        1 => "info,ort=warn",
        _ => "debug,ort=info",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        // Field values are shown with their control characters escaped: a file name or a
        // device id from an inbox can hold a line break, which must not end the log line
        // and forge the next one (JSON lines escape them already).
        use tracing_subscriber::field::MakeExt;
        let fields = tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
            let value = printable_name(&format!("{value:?}"));
            match field.name() {
                "message" => write!(w, "{value}"),
                name => write!(w, "{name}={value}"),
            }
        })
        .delimited(" ");
        builder.compact().fmt_fields(fields).try_init()
    };
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    // The daemon logs what it does by default (info); other commands only warnings.
    let verbose = match cli.command {
        Command::Daemon(_) => cli.verbose.max(1),
        _ => cli.verbose,
    };
    init_logging(cli.log_json, verbose);
    let code = match cli.command {
        Command::Redact(a) => cmd_redact(a),
        Command::Validate(a) => cmd_validate(a),
        Command::Eval(a) => cmd_eval(a),
        Command::Bench(a) => cmd_bench(a),
        Command::Batch(a) => cmd_batch(a),
        Command::Ingest(a) => cmd_ingest(a),
        Command::Daemon(a) => cmd_daemon(a),
        Command::Erase(a) => with_router(&a.config, |r| {
            r.erase(&a.select.selector())
                .map(|x| serde_json::to_value(x).unwrap_or_default())
        }),
        Command::Export(a) => with_router(&a.config, |r| {
            r.export(&a.account, &a.out, a.case.as_deref())
                .map(|x| serde_json::to_value(x).unwrap_or_default())
        }),
        Command::Hold(HoldCommand::Set(a)) => with_router(&a.config, |r| {
            r.hold_set(&crate::route::HoldRequest {
                scope: a.select.selector(),
                case: a.case.clone(),
                reason: a.reason.clone(),
                by: operator(&a.by),
                from: a.from,
                to: a.to,
            })
            .map(|x| serde_json::to_value(x).unwrap_or_default())
        }),
        Command::Hold(HoldCommand::Release(a)) => with_router(&a.config, |r| {
            r.hold_release(
                &a.case,
                a.select.selector().as_ref(),
                &a.reason,
                &operator(&a.by),
            )
            .map(|x| serde_json::to_value(x).unwrap_or_default())
        }),
        Command::Hold(HoldCommand::List(a)) => cmd_hold_list(a),
        Command::Restrict(RestrictCommand::Set(a)) => with_router(&a.config, |r| {
            r.restrict_set(&a.select.selector(), &a.reason, &operator(&a.by))
                .map(|x| serde_json::to_value(x).unwrap_or_default())
        }),
        Command::Restrict(RestrictCommand::Release(a)) => with_router(&a.config, |r| {
            r.restrict_release(&a.select.selector(), &a.reason, &operator(&a.by))
                .map(|x| serde_json::to_value(x).unwrap_or_default())
        }),
        Command::Restrict(RestrictCommand::List(a)) => cmd_restrict_list(a),
        Command::Retention(a) => with_router(&a.config, |r| {
            r.sweep(a.dry_run)
                .map(|x| serde_json::to_value(x).unwrap_or_default())
        }),
        Command::Correct(a) => cmd_correct(a),
        Command::Disclose(a) => cmd_disclose(a),
        Command::Audit(a) => cmd_audit_verify(a),
    };
    ExitCode::from(code)
}

/// `--recorded-at`, parsed (formats and bounds as at ingest); a bad value is reported here.
fn recorded_at_flag(value: Option<&str>) -> Result<Option<chrono::DateTime<chrono::Utc>>, ()> {
    value
        .map(crate::route::parse_recorded_at)
        .transpose()
        .map_err(|e| fail(format!("--recorded-at {e}")))
}

fn cmd_correct(a: CorrectArgs) -> u8 {
    let Ok(recorded_at) = recorded_at_flag(a.recorded_at.as_deref()) else {
        return exit::USAGE;
    };
    with_router(&a.config, |r| {
        r.correct(&crate::route::CorrectRequest {
            clip: a.clip.clone(),
            recorded_at,
            account: a.account.clone(),
            classification: a.classification.clone(),
            reason: a.reason.clone(),
            by: operator(&a.by),
        })
        .map(|x| serde_json::to_value(x).unwrap_or_default())
    })
}

fn cmd_disclose(a: DiscloseArgs) -> u8 {
    if let Some(DiscloseCommand::Verify(v)) = a.verify {
        return match crate::route::disclose::verify(&v.dir, v.key.as_deref()) {
            Ok(r) => {
                println!("{}", serde_json::to_value(r).unwrap_or_default());
                exit::OK
            }
            Err(e) => {
                println!(
                    "{}",
                    serde_json::json!({"ok": false, "error": e.to_string()})
                );
                fail(&e);
                e.exit_code()
            }
        };
    }
    let m = a.make;
    let (Some(case), Some(recipient), Some(out), Some(config), Some(scope)) =
        (m.case, m.recipient, m.out, m.config, m.select.selector())
    else {
        fail(
            "disclose needs --case, --recipient, one of --clip, --device, --account, --out and --config (or `disclose verify DIR`)",
        );
        return exit::USAGE;
    };
    with_router(&config, |r| {
        r.disclose(&crate::route::DiscloseRequest {
            scope,
            case,
            recipient,
            by: operator(&m.by),
            from: m.from,
            to: m.to,
            region: m.region,
            originals: m.originals,
            out,
        })
        .map(|x| serde_json::to_value(x).unwrap_or_default())
    })
}

/// `audit verify`: the chain, the head file and the heads anchored in the stores. A broken
/// log is exit 1 with the first bad entry named.
fn cmd_audit_verify(a: AuditArgs) -> u8 {
    let c = match Config::load(&a.config) {
        Ok(c) => c,
        Err(e) => {
            fail(&e);
            return exit::USAGE;
        }
    };
    let r = match crate::route::Router::new(&c) {
        Ok(r) => r,
        Err(e) => {
            fail(&e);
            return e.exit_code();
        }
    };
    match r.verify_audit() {
        Ok(v) => {
            let mut out = serde_json::json!({"ok": true, "log": c.paths.audit});
            if let (Some(o), Ok(serde_json::Value::Object(m))) =
                (out.as_object_mut(), serde_json::to_value(&v))
            {
                o.extend(m);
            }
            if v.legacy_entries > 0 {
                let note = match v.hmac_from {
                    Some(k) => format!(
                        "entries 1 to {} are legacy (plain sha256, from an earlier version), sealed by the HMAC chain from entry {k}",
                        v.legacy_entries
                    ),
                    None => format!(
                        "all {} entries are legacy (plain sha256, from an earlier version): anyone who can write the log could have rewritten them",
                        v.legacy_entries
                    ),
                };
                out["note"] = note.into();
            }
            println!("{out}");
            exit::OK
        }
        Err(e) => {
            println!(
                "{}",
                serde_json::json!({"ok": false, "error": e.to_string()})
            );
            fail(&e);
            match e {
                crate::route::RouteError::Audit(_) => exit::INPUT,
                e => e.exit_code(),
            }
        }
    }
}

/// The configuration from the file and flags, or the usage exit status after saying why.
fn resolve_or_usage(p: &ProcessingArgs) -> Result<Config, u8> {
    p.resolve().map_err(|e| {
        fail(&e);
        exit::USAGE
    })
}

/// The one stderr line of a failure (newlines inside a message are flattened, so the
/// one-line contract holds whatever a lower layer returns).
fn fail(message: impl std::fmt::Display) {
    eprintln!("obscura: error: {}", one_line(&message.to_string()));
}

/// A message as one line: line breaks become spaces, other control characters escapes.
fn one_line(message: &str) -> String {
    printable_name(&message.replace(['\n', '\r'], " "))
}

/// An untrusted name (a file name from a walked folder) for a line of output: every control
/// character escaped, so that a name cannot end the line or forge the next one.
fn printable_name(name: &str) -> String {
    name.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

fn cmd_redact(a: RedactArgs) -> u8 {
    let cfg = match resolve_or_usage(&a.processing) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let job = Job {
        input: a.input.clone(),
        output: a.output.clone(),
        sidecar: a.sidecar.clone(),
    };
    let ctl = Control::default();
    install_interrupt(&ctl);
    let show_progress = !a.no_progress && !a.json && std::io::stderr().is_terminal();
    let progress = show_progress.then(|| spawn_progress(&ctl, &a.input));
    let result = crate::pipeline::redact_file(&job, &cfg, &ctl);
    if let Some((bar, handle)) = progress {
        ctl.cancel.fetch_or(false, Ordering::Relaxed);
        bar.finish_and_clear();
        let _ = handle.join();
    }
    match result {
        Ok(out) => {
            let s = &out.sidecar;
            if a.json {
                let summary = serde_json::json!({
                    "status": "ok",
                    "input": s.input.path,
                    "output": out.output,
                    "sidecar": out.sidecar_path,
                    "frames": s.totals.frames,
                    "frames_with_faces": s.totals.frames_with_faces,
                    "tracks": s.totals.tracks,
                    "face_boxes": s.totals.face_boxes,
                    "wall_s": s.timing.wall_s,
                    "fps": s.timing.fps,
                });
                println!("{summary}");
            } else {
                eprintln!(
                    "{}: {} frames, {} face tracks ({} frames with faces), {:.1} fps -> {} (sidecar {})",
                    a.input.display(),
                    s.totals.frames,
                    s.totals.tracks,
                    s.totals.frames_with_faces,
                    s.timing.fps,
                    out.output.display(),
                    out.sidecar_path.display()
                );
            }
            exit::OK
        }
        Err(e) => {
            fail(&e);
            if a.json {
                println!(
                    "{}",
                    serde_json::json!({"status": "error", "input": a.input, "class": e.class(), "error": e.to_string()})
                );
            }
            exit_code_for(&e)
        }
    }
}

type ProgressHandle = (indicatif::ProgressBar, std::thread::JoinHandle<()>);

fn spawn_progress(ctl: &Control, input: &std::path::Path) -> ProgressHandle {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {pos}/{len} frames {per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(
        input
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default(),
    );
    let (b, c) = (bar.clone(), ctl.clone());
    let handle = std::thread::spawn(move || {
        while !b.is_finished() {
            b.set_length(c.frames_total.load(Ordering::Relaxed));
            b.set_position(c.frames_done.load(Ordering::Relaxed));
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    (bar, handle)
}

/// SIGINT/SIGTERM set the cancel flag: the run stops, removes its temporary output and exits
/// with 130.
fn install_interrupt(ctl: &Control) {
    use std::sync::OnceLock;
    static CANCEL: OnceLock<std::sync::Arc<std::sync::atomic::AtomicBool>> = OnceLock::new();
    let _ = CANCEL.set(ctl.cancel.clone());
    extern "C" fn on_signal(_: libc::c_int) {
        if let Some(c) = CANCEL.get() {
            c.store(true, Ordering::Relaxed);
        }
    }
    // SAFETY: the handler only stores into an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

fn cmd_validate(a: ValidateArgs) -> u8 {
    if a.print_config {
        return match a.processing.resolve() {
            Ok(c) => match toml::to_string_pretty(&c) {
                Ok(t) => {
                    print!("{t}");
                    exit::OK
                }
                Err(e) => {
                    fail(e);
                    exit::USAGE
                }
            },
            Err(e) => {
                fail(e);
                exit::USAGE
            }
        };
    }
    let mut checks: Vec<(String, Result<String, String>)> = Vec::new();
    let cfg = match a.processing.resolve() {
        Ok(c) => {
            checks.push((
                "config".into(),
                Ok(a.processing
                    .config
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "defaults".into())),
            ));
            Some(c)
        }
        Err(e) => {
            checks.push(("config".into(), Err(e.to_string())));
            None
        }
    };
    checks.push((
        "gstreamer elements".into(),
        crate::media::check_elements(crate::media::REQUIRED_ELEMENTS)
            .map(|_| format!("{} present", crate::media::REQUIRED_ELEMENTS.len()))
            .map_err(|e| e.to_string()),
    ));
    if let Some(cfg) = &cfg {
        crate::detect::runtime::set_library_path(cfg.runtime.onnxruntime_lib.clone());
        checks.push((
            "onnxruntime".into(),
            crate::detect::runtime::loaded_library()
                .map(|p| p.display().to_string())
                .map_err(|e| e.to_string()),
        ));
        for kind in [
            ModelKind::Yunet,
            ModelKind::YunetS,
            ModelKind::Centerface,
            ModelKind::SileroVad,
        ] {
            let r = crate::detect::ModelFile::locate(kind, cfg.runtime.models_dir.as_deref())
                .and_then(|m| m.verify().map(|_| m))
                .map(|m| format!("{} sha256 ok", m.path.display()))
                .map_err(|e| e.to_string());
            checks.push((format!("model {kind}"), r));
        }
        if cfg.runtime.device != Device::Cpu {
            checks.push((
                "cuda".into(),
                if crate::detect::runtime::cuda_available() {
                    Ok("CUDA execution provider available".into())
                } else {
                    Err("the loaded ONNX Runtime has no CUDA execution provider".into())
                },
            ));
        }
    }
    let ok = checks.iter().all(|(_, r)| r.is_ok());
    if a.json {
        let v: Vec<_> = checks
            .iter()
            .map(|(k, r)| match r {
                Ok(m) => serde_json::json!({"check": k, "ok": true, "detail": m}),
                Err(m) => serde_json::json!({"check": k, "ok": false, "detail": m}),
            })
            .collect();
        println!("{}", serde_json::json!({"ok": ok, "checks": v}));
    } else {
        for (k, r) in &checks {
            match r {
                Ok(m) => println!("ok    {k}: {m}"),
                Err(m) => println!("FAIL  {k}: {m}"),
            }
        }
    }
    if ok {
        exit::OK
    } else if cfg.is_none() {
        exit::USAGE
    } else {
        exit::ENVIRONMENT
    }
}

fn cmd_eval(a: EvalArgs) -> u8 {
    if a.input.is_dir() {
        if a.gt.is_some() {
            fail("--gt is for one video: a folder's clips name their own NAME.gt.json");
            return exit::USAGE;
        }
        if !a.output.is_dir() {
            fail(format!("{}: not a folder", a.output.display()));
            return exit::USAGE;
        }
        return match crate::eval::evaluate_folder(&a.input, &a.output, crate::eval::REDACTED_BELOW)
        {
            Ok(r) => {
                if a.json {
                    println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
                } else {
                    print!("{}", r.table());
                }
                if r.errors() > 0 {
                    exit::INPUT
                } else {
                    exit::OK
                }
            }
            Err(e) => {
                fail(&e);
                exit::INPUT
            }
        };
    }
    let Some(gt_path) = &a.gt else {
        fail("--gt GROUND_TRUTH.json is needed for one video");
        return exit::USAGE;
    };
    let gt = match crate::eval::GroundTruth::load(gt_path) {
        Ok(g) => g,
        Err(e) => {
            fail(format!("{}: {e}", gt_path.display()));
            return exit::USAGE;
        }
    };
    let faces = if gt.has_video() {
        match crate::eval::evaluate(&a.input, &a.output, &gt) {
            Ok(r) => serde_json::to_value(&r).unwrap_or_default(),
            Err(e) => {
                fail(&e);
                return exit::INPUT;
            }
        }
    } else {
        serde_json::json!({})
    };
    let mut out = faces;
    if gt.has_voice() {
        match crate::eval::voice::evaluate(&a.input, &a.output, &gt.speech) {
            Ok(v) => out["voice"] = serde_json::to_value(&v).unwrap_or_default(),
            Err(e) => {
                fail(format!("voice: {e}"));
                return exit::INPUT;
            }
        }
    }
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    exit::OK
}

/// The bundled benchmark clip, looked up like the models (beside the binary or the repo).
fn default_bench_input() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let mut dirs: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(4)
        .map(|d| d.join("samples"))
        .collect();
    if let Ok(cwd) = std::env::current_dir() {
        dirs.push(cwd.join("samples"));
    }
    dirs.into_iter()
        .map(|d| d.join("faces_sizes.mp4"))
        .find(|p| p.is_file())
}

/// "; rounds 64–76%" for two or more per-round ratios, else nothing.
fn spread(rounds: &[f64]) -> String {
    if rounds.len() < 2 {
        return String::new();
    }
    let lo = rounds.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = rounds.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("; rounds {:.0}–{:.0}%", lo * 100.0, hi * 100.0)
}

fn cmd_bench(a: BenchArgs) -> u8 {
    let cfg = match resolve_or_usage(&a.processing) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let batches: Vec<usize> = a.batches.iter().map(|&b| usize::from(b)).collect();
    let Some(input) = a.input.clone().or_else(default_bench_input) else {
        fail("no INPUT given and the bundled samples/faces_sizes.mp4 was not found");
        return exit::USAGE;
    };
    match crate::bench::run(&input, &cfg, a.runs, &batches, a.concurrent) {
        Ok(r) => {
            if a.json {
                println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
            } else {
                println!(
                    "input            {} ({}x{}, {} frames, median of {} runs)",
                    r.input, r.width, r.height, r.frames, r.runs
                );
                println!("decode only      {:>8.1} fps", r.decode_only_fps);
                let so = &r.storage;
                println!(
                    "transcode only   {:>8.1} fps  {:.2} output bytes per input byte",
                    r.transcode_only_fps, so.transcode_output_per_input_byte
                );
                println!(
                    "full pipeline    {:>8.1} fps  {:.2} output bytes per input byte  ({:.0}% of transcode{})",
                    r.full_fps,
                    so.output_per_input_byte,
                    r.full_vs_transcode * 100.0,
                    spread(&r.full_vs_transcode_rounds)
                );
                println!(
                    "storage          {} -> {} bytes; x264 {} CRF {}{}{}",
                    so.input_bytes,
                    so.output_bytes,
                    so.preset,
                    so.crf,
                    so.tune
                        .as_ref()
                        .map(|t| format!(" tune {t}"))
                        .unwrap_or_default(),
                    match (so.max_kbps, so.input_video_kbps) {
                        (0, _) => String::new(),
                        (m, Some(i)) => format!(", cap {m} kbit/s (input video {i} kbit/s)"),
                        (m, None) => format!(", cap {m} kbit/s"),
                    }
                );
                let st = &r.stage_ms_per_frame;
                println!(
                    "stages ms/frame  detect {:.2}  track {:.2}  redact {:.2}  encode-push {:.2}",
                    st.detect, st.track, st.redact, st.encode_push
                );
                println!(
                    "detector         {} {}x{}: {:.2} ms/frame (batch 1){}",
                    r.detector.provider,
                    r.settings.detect_size[0],
                    r.settings.detect_size[1],
                    r.detector.main_ms,
                    r.detector
                        .zoom_sweep_ms
                        .map(|z| format!(
                            "; zoom sweep {:.1} ms ({} tiles)",
                            z,
                            r.settings.zoom_tiles.len()
                        ))
                        .unwrap_or_default()
                        + &r.detector
                            .zoom_proposal_ms
                            .map(|z| format!("; first look {z:.1} ms"))
                            .unwrap_or_default()
                );
                if let Some(v) = r.vad_ms_per_audio_s {
                    println!(
                        "voice activity   {v:.2} ms per second of audio (Silero VAD, 1 thread)"
                    );
                }
                if let Some(m) = r.peak_rss_mib {
                    println!("peak memory      {m:.0} MiB resident (the whole bench process)");
                }
                for b in &r.detector.batches {
                    println!(
                        "                 batch {:>2}: {:.2} ms/frame ({:.1} fps)",
                        b.batch, b.ms_per_frame, b.fps
                    );
                }
                let cpu = &r.cpu_ms_per_frame;
                println!(
                    "cpu ms/frame     decode {:.2}  transcode {:.2}  full {:.2}  (transcode/full {:.0}%{})",
                    cpu.decode_only,
                    cpu.transcode_only,
                    cpu.full,
                    r.full_vs_transcode_cpu * 100.0,
                    spread(&r.full_vs_transcode_cpu_rounds)
                );
                if let Some(c) = &r.concurrent {
                    println!(
                        "concurrent       {} files at once: {:.1} fps in all",
                        c.files, c.fps
                    );
                }
                println!(
                    "device           {} asked; inference on {}, video decoder {}{}",
                    r.device.requested,
                    r.device.inference,
                    r.device.video_decoder.as_deref().unwrap_or("-"),
                    r.device
                        .gpu_memory_mib
                        .map(|m| format!(", {m} MiB GPU memory"))
                        .unwrap_or_default()
                );
                if let Some(l) = &r.leak {
                    println!(
                        "leak             {:.2}% of {} ground-truth boxes; {:.1}% of the rest unchanged",
                        l.leak_rate * 100.0,
                        l.gt_boxes,
                        l.outside_unchanged * 100.0
                    );
                }
            }
            exit::OK
        }
        Err(e) => {
            fail(&e);
            exit_code_for(&e)
        }
    }
}

/// The router of the configuration at `config`, or the exit code of why there is none (the
/// reason printed).
fn open_router(config: &std::path::Path) -> Result<crate::route::Router, u8> {
    let cfg = Config::load(config).map_err(|e| {
        fail(&e);
        exit::USAGE
    })?;
    crate::route::Router::new(&cfg).map_err(|e| {
        fail(&e);
        e.exit_code()
    })
}

fn with_router(
    config: &std::path::Path,
    f: impl FnOnce(&crate::route::Router) -> Result<serde_json::Value, crate::route::RouteError>,
) -> u8 {
    let router = match open_router(config) {
        Ok(r) => r,
        Err(code) => return code,
    };
    match f(&router) {
        Ok(v) => {
            println!("{v}");
            exit::OK
        }
        Err(e) => {
            fail(&e);
            e.exit_code()
        }
    }
}

fn cmd_hold_list(a: HoldListArgs) -> u8 {
    let json = a.json;
    let sel = a.select.selector();
    let router = match open_router(&a.config) {
        Ok(r) => r,
        Err(code) => return code,
    };
    print_list(
        router.hold_list(sel.as_ref()),
        json,
        "no holds in force",
        "CASE\tSCOPE\tWINDOW\tBY\tSET AT\tCLIPS\tREASON",
        |h| {
            let r = &h.record;
            format!(
                "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                one_line(&r.case),
                r.scope,
                r.window(),
                one_line(&r.by),
                r.set_at,
                h.clips.len(),
                one_line(&r.reason)
            )
        },
    )
}

/// Prints a listing as JSON or as a tab-separated table (`empty` when there is nothing).
fn print_list<T: serde::Serialize>(
    list: Result<Vec<T>, crate::route::RouteError>,
    json: bool,
    empty: &str,
    header: &str,
    row: impl Fn(&T) -> String,
) -> u8 {
    match list {
        Ok(list) if json => {
            println!("{}", serde_json::to_string(&list).unwrap_or_default());
            exit::OK
        }
        Ok(list) => {
            println!("{}", if list.is_empty() { empty } else { header });
            for x in &list {
                println!("{}", row(x));
            }
            exit::OK
        }
        Err(e) => {
            fail(&e);
            e.exit_code()
        }
    }
}

fn cmd_restrict_list(a: RestrictListArgs) -> u8 {
    let sel = a.select.selector();
    let router = match open_router(&a.config) {
        Ok(r) => r,
        Err(code) => return code,
    };
    print_list(
        router.restrict_list(sel.as_ref()),
        a.json,
        "no restrictions in force",
        "SCOPE\tBY\tSET AT\tCLIPS\tREASON",
        |x| {
            let r = &x.record;
            format!(
                "{}\t{}\t{}\t{}\t{}",
                r.scope,
                one_line(&r.by),
                r.set_at,
                x.clips.len(),
                one_line(&r.reason)
            )
        },
    )
}

/// Names that mean a compute device, not a camera.
const COMPUTE_NAMES: [&str; 3] = ["cpu", "cuda", "auto"];

fn cmd_ingest(a: IngestArgs) -> u8 {
    let cfg = match resolve_or_usage(&a.processing) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // `--device` once, naming a camera: before `--compute` existed, `--device` meant both.
    let device = match a.device.as_slice() {
        [d] if !COMPUTE_NAMES.contains(&d.as_str()) || cfg.devices.contains_key(d) => d.clone(),
        ds => {
            fail(format!(
                "--device {}: ingest's --device is the camera that recorded the clip, given once; the compute device (cpu, cuda, auto) is --compute",
                ds.join(" --device ")
            ));
            return exit::USAGE;
        }
    };
    let Ok(recorded) = recorded_at_flag(a.recorded_at.as_deref()) else {
        return exit::USAGE;
    };
    let router = match crate::route::Router::new(&cfg) {
        Ok(r) => r,
        Err(e) => {
            fail(&e);
            return e.exit_code();
        }
    };
    let ctl = Control::default();
    install_interrupt(&ctl);
    match router.ingest(&a.input, &device, recorded, &ctl) {
        Ok(r) => {
            println!("{}", serde_json::to_string(&r).unwrap_or_default());
            exit::OK
        }
        Err(e) => {
            fail(format!("{}: {e}", a.input.display()));
            e.exit_code()
        }
    }
}

fn cmd_daemon(a: DaemonArgs) -> u8 {
    limit_malloc_arenas();
    let cfg = match Config::load(&a.config) {
        Ok(c) => c,
        Err(e) => {
            fail(&e);
            return exit::USAGE;
        }
    };
    match crate::daemon::run(cfg) {
        Ok(()) => exit::OK,
        Err(e) => {
            fail(&e);
            match e {
                crate::daemon::DaemonError::Config(_) => exit::USAGE,
                crate::daemon::DaemonError::Route(r) => r.exit_code(),
                _ => exit::ENVIRONMENT,
            }
        }
    }
}

/// Long-running processes: glibc's default of up to 8 malloc arenas per core lets the
/// daemon's many short-lived pipeline threads fragment memory (measured: RSS 180 MB → 410 MB
/// over 20 clips; 140–300 MB, no upward trend, with 2 arenas). `MALLOC_ARENA_MAX` in
/// the environment wins.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only adjusts allocator tuning; called before worker threads start.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

fn cmd_batch(a: BatchArgs) -> u8 {
    let cfg = match resolve_or_usage(&a.processing) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let inputs = match crate::batch::collect_with(&a.input, &a.out, a.follow) {
        Ok(i) => i,
        Err(
            e @ (crate::batch::CollectError::OutIsInput(_)
            | crate::batch::CollectError::OutNotFolder(_)),
        ) => {
            fail(e.to_string());
            return exit::USAGE;
        }
        Err(e) => {
            fail(e.to_string());
            return exit::INPUT;
        }
    };
    let items = &inputs.items;
    if items.is_empty() {
        // Not an error (a day's folder may be empty), but never silent: a wrong path looks
        // like this too.
        tracing::warn!(
            input = %a.input.display(),
            ignored = inputs.ignored.len(),
            "no media files to process"
        );
    }
    if !inputs.ignored.is_empty() && !a.json {
        eprintln!(
            "{} entries in {} are not processed ({}); report.json lists them",
            inputs.ignored.len(),
            printable_name(&a.input.display().to_string()),
            ignored_reasons(&inputs.ignored)
        );
    }
    if let Err(e) = std::fs::create_dir_all(&a.out) {
        fail(format!("{}: {e}", a.out.display()));
        return exit::OUTPUT;
    }
    let jobs = a.jobs.map(usize::from).unwrap_or_else(|| {
        (std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            / 2)
        .max(1)
    });
    let report_path = a.out.join("report.json");
    let ctl = Control::default();
    install_interrupt(&ctl);
    let tty =
        std::io::stderr().is_terminal() && !a.json && !(a.jsonl && std::io::stdout().is_terminal());
    let bar = indicatif::ProgressBar::new(items.len() as u64);
    if tty {
        bar.set_style(
            indicatif::ProgressStyle::with_template("{pos}/{len} files [{bar:30}] {msg} eta {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let started = std::time::Instant::now();
    let frames_per_s = |ctl: &Control| {
        let f = ctl.frames_done.load(Ordering::Relaxed);
        format!(
            "{:.0} frames/s",
            f as f64 / started.elapsed().as_secs_f64().max(1e-3)
        )
    };
    let stdout_lock = std::sync::Mutex::new(());
    let json_line = |line: String| {
        let _one_at_a_time = stdout_lock.lock();
        println!("{line}");
    };
    if a.jsonl {
        json_line(jsonl_record(JsonLine {
            kind: "begin",
            n: None,
            body: serde_json::json!({
                "input": a.input.display().to_string(),
                "out": a.out.display().to_string(),
                "files": items.len(),
                "ignored": inputs.ignored,
                "jobs": jobs,
                "resume": a.resume,
                "settings_sha256": cfg.fingerprint(),
            }),
        }));
    }
    let on_done = |r: &crate::batch::FileReport, n: usize| {
        let line = || {
            format!(
                "[{n}/{}] {} {} ({} frames, {:.1} s){}",
                items.len(),
                r.status,
                printable_name(&r.input),
                r.frames,
                r.wall_s,
                r.error
                    .as_deref()
                    .map(|e| format!(": {}", one_line(e)))
                    .unwrap_or_default()
            )
        };
        if a.jsonl {
            json_line(jsonl_record(JsonLine {
                kind: "file",
                n: Some(n),
                body: r,
            }));
        }
        if tty {
            // A failure is said when it happens, above the bar, not only in the summary.
            if r.status == "failed" {
                bar.println(line());
            }
            bar.set_position(n as u64);
            bar.set_message(frames_per_s(&ctl));
        } else if !a.json && !a.jsonl {
            eprintln!("{}", line());
        }
    };
    // frames/s moves while files are in progress, not only when one ends.
    let ticking = std::sync::atomic::AtomicBool::new(tty);
    let report = std::thread::scope(|s| {
        s.spawn(|| {
            while ticking.load(Ordering::Relaxed) {
                bar.set_message(frames_per_s(&ctl));
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
        });
        let report = crate::batch::run(
            &inputs,
            &cfg,
            jobs,
            a.resume,
            &ctl,
            &on_done,
            Some((&report_path, crate::batch::PARTIAL_REPORT_EVERY)),
        );
        ticking.store(false, Ordering::Relaxed);
        report
    });
    bar.finish_and_clear();
    let json = serde_json::to_vec_pretty(&report).unwrap_or_default();
    if let Err(e) = crate::fsutil::write_atomic(&report_path, &json) {
        fail(format!("{}: {e}", report_path.display()));
        return exit::OUTPUT;
    }
    if a.json {
        println!("{}", String::from_utf8_lossy(&json));
    } else if a.jsonl {
        json_line(jsonl_record(JsonLine {
            kind: "summary",
            n: None,
            body: serde_json::json!({
                "files": report.files.len(),
                "ok": report.ok,
                "skipped": report.skipped,
                "failed": report.failed,
                "cancelled": report.cancelled,
                "ignored": report.ignored.len(),
                "frames": report.frames,
                "wall_s": report.wall_s,
                "started_at": report.started_at,
                "finished_at": report.finished_at,
                "interrupted": ctl.cancel.load(Ordering::Relaxed),
                "report": report_path.display().to_string(),
            }),
        }));
    } else {
        eprintln!(
            "{} files: {} ok, {} skipped, {} failed{}{}; {} frames in {:.1} s; report {}",
            report.files.len(),
            report.ok,
            report.skipped,
            report.failed,
            if report.cancelled > 0 {
                format!(", {} cancelled", report.cancelled)
            } else {
                String::new()
            },
            if report.ignored.is_empty() {
                String::new()
            } else {
                format!(" ({} other files ignored)", report.ignored.len())
            },
            report.frames,
            report.wall_s,
            report_path.display()
        );
    }
    if ctl.cancel.load(Ordering::Relaxed) {
        if !a.json {
            eprintln!(
                "interrupted: the files not finished are listed as cancelled; `--resume` does them and keeps the ones done"
            );
        }
        exit::INTERRUPTED
    } else if report.failed > 0 {
        exit::INPUT
    } else {
        exit::OK
    }
}

/// One line of JSON for a record (its kind first).
fn jsonl_record<T: serde::Serialize>(r: JsonLine<T>) -> String {
    serde_json::to_string(&r).unwrap_or_default()
}

/// One record of `batch --jsonl`: its kind first, then what it says.
#[derive(serde::Serialize)]
struct JsonLine<T: serde::Serialize> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    n: Option<usize>,
    #[serde(flatten)]
    body: T,
}

/// "2 not a media file extension, 1 symbolic link": how many of each reason, without the
/// reasons' explanations in brackets, in the order first met.
fn ignored_reasons(ignored: &[crate::batch::Ignored]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for i in ignored {
        let head = i.reason.split(" (").next().unwrap_or(&i.reason);
        match counts.iter_mut().find(|(r, _)| *r == head) {
            Some((_, n)) => *n += 1,
            None => counts.push((head, 1)),
        }
    }
    counts
        .iter()
        .map(|(r, n)| format!("{n} {r}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--runs 0`, `--batches 0` and `--jobs 0` were taken as 1 or skipped without a word.
    #[test]
    fn counts_of_zero_are_usage_errors() {
        use clap::Parser;
        for args in [
            &["obscura", "bench", "--runs", "0"][..],
            &["obscura", "bench", "--batches", "1,0"],
            &["obscura", "batch", "in", "--out", "o", "--jobs", "0"],
            // One report format on stdout at a time.
            &["obscura", "batch", "in", "--out", "o", "--json", "--jsonl"],
        ] {
            let e = Cli::try_parse_from(args).expect_err("accepted");
            assert_eq!(e.exit_code(), 2, "{args:?}");
        }
        assert!(
            Cli::try_parse_from(["obscura", "bench", "--runs", "1", "--batches", "1,8"]).is_ok()
        );
    }

    /// `ingest --device` was both the camera and the compute device: `--device cam-1
    /// --device cpu` failed, `--device cpu` alone was taken for a camera. The compute device
    /// is `--compute` (other commands still take `--device` for it).
    #[test]
    fn regression_ingest_had_two_flags_called_device() {
        use clap::Parser;
        let parsed = Cli::try_parse_from([
            "obscura",
            "ingest",
            "x.mp4",
            "--device",
            "cam-1",
            "--compute",
            "cpu",
        ])
        .unwrap();
        match parsed.command {
            Command::Ingest(a) => {
                assert_eq!(a.device, ["cam-1"]);
                assert_eq!(a.processing.compute, Some(Device::Cpu));
            }
            other => panic!("{other:?}"),
        }
        for args in [
            &[
                "obscura", "redact", "x.mp4", "-o", "y.mp4", "--device", "cuda",
            ][..],
            &[
                "obscura",
                "redact",
                "x.mp4",
                "-o",
                "y.mp4",
                "--compute",
                "cuda",
            ],
        ] {
            match Cli::try_parse_from(args).unwrap().command {
                Command::Redact(a) => assert_eq!(a.processing.compute, Some(Device::Cuda)),
                other => panic!("{other:?}"),
            }
        }
        // A hold needs its case.
        let e = Cli::try_parse_from([
            "obscura", "hold", "set", "--device", "cam-1", "--reason", "r", "--config", "c",
        ])
        .expect_err("accepted");
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn ignored_entries_are_summed_up_by_reason() {
        let said = |reason: &str| crate::batch::Ignored {
            path: "p".into(),
            reason: reason.into(),
        };
        let ignored = [
            said("not a media file extension"),
            said("symbolic link (not followed; list its target to process it)"),
            said("not a media file extension"),
        ];
        assert_eq!(
            ignored_reasons(&ignored),
            "2 not a media file extension, 1 symbolic link"
        );
    }

    #[test]
    fn a_name_cannot_break_or_forge_a_line_of_output() {
        assert_eq!(
            printable_name("/in/a\n[2/2] ok b.mp4"),
            "/in/a\\n[2/2] ok b.mp4"
        );
        assert_eq!(
            printable_name("/in/ü ß\t\u{1b}[31m.mp4"),
            "/in/ü ß\\t\\u{1b}[31m.mp4"
        );
        assert_eq!(one_line("x.mp4: bad\nmore\u{7}"), "x.mp4: bad more\\u{7}");
    }
}
