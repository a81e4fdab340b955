//! The podtap command line. Library errors become `anyhow` errors only here.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

use podtap::config::Config;
use podtap::replay::{self, OutputFormat, ReplayOptions};

/// Transactions are built in the workers and freed by the writer thread: glibc's arena
/// lock made that cross-thread traffic the top cost. mimalloc frees across threads cheaply.
#[global_allocator]
static GLOBAL: allocator::Mimalloc = allocator::Mimalloc;

mod allocator;

/// `podtap replay` runs with transparent huge pages off, from its first allocation on. A
/// replay is short and touches nearly all of its heap for the first time: with huge pages
/// each first touch of a 2 MiB region has the kernel zero the whole region although the
/// allocator uses a part of it (8-12% of a worker's time on small HTTP transactions, and
/// up to 13 ms of start-up on this kind of virtual machine: the allocator reserves its
/// arena, asking for huge pages, on the Rust runtime's first allocation, before `main`).
/// So the switch sits in the ELF init array, which the C runtime calls with the command
/// line before the Rust runtime starts. The daemon keeps huge pages: it lives long enough
/// to reuse its heap, and its flow tables gain from fewer TLB misses.
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static SMALL_PAGES_FOR_REPLAY: extern "C" fn(
    libc::c_int,
    *const *const libc::c_char,
    *const *const libc::c_char,
) = small_pages_for_replay;

#[cfg(target_os = "linux")]
extern "C" fn small_pages_for_replay(
    argc: libc::c_int,
    argv: *const *const libc::c_char,
    _envp: *const *const libc::c_char,
) {
    if argv.is_null() || argc < 1 {
        return;
    }
    // SAFETY: glibc calls init-array functions with the process's argc and argv: `argv`
    // holds `argc` valid pointers to NUL-terminated strings. They are only read.
    let args = (1..argc as usize).map(|i| unsafe { std::ffi::CStr::from_ptr(*argv.add(i)) });
    if subcommand(args.map(|a| a.to_bytes())) == Some(&b"replay"[..]) {
        // SAFETY: prctl(2) with integer arguments only. A kernel without THP refuses it,
        // and the process just keeps the default.
        unsafe {
            libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
        }
    }
}

/// The subcommand of a command line (without the program name): its first argument that
/// is neither an option nor the value of `--config`, the one global option with a value.
fn subcommand<'a>(mut args: impl Iterator<Item = &'a [u8]>) -> Option<&'a [u8]> {
    while let Some(a) = args.next() {
        if a == b"--config" {
            args.next();
        } else if !a.starts_with(b"-") {
            return Some(a);
        }
    }
    None
}

#[derive(Parser)]
#[command(
    name = "podtap",
    version,
    about = "Watch every request between the pods of a node, from mirrored traffic"
)]
struct Cli {
    /// Configuration file (TOML). Without it the embedded config/podtap.toml is used.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Decode capture files (pcap or pcapng) through the same pipeline as live capture.
    Replay {
        /// Capture files, processed in order. `-` is standard input (`tcpdump -w - |
        /// podtap replay -`); it, a FIFO, a device or a socket is streamed by one worker.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// JSON lines (records on stdout, summary on stderr), only the summary table, or
        /// none (only OTLP and /metrics).
        #[arg(long, value_enum, default_value = "jsonl")]
        output: OutputFormat,
        /// Worker threads (default: `replay.workers` from the config).
        #[arg(long, value_parser = workers_arg)]
        workers: Option<usize>,
        /// Packet filter in tcpdump's language: `tcp port 80`, `host 10.0.0.1 and not udp`.
        /// As in tcpdump, `and` and `or` have equal precedence and group from the left
        /// (default: `capture.filter` from the config).
        #[arg(long)]
        filter: Option<String>,
        /// After the files are done, keep running this many seconds with the exporter's
        /// endpoints up (/metrics for a scrape, OTLP retries), then flush and exit.
        #[arg(long, default_value_t = 0)]
        hold_secs: u64,
        /// Offer the frames at this rate (frames per second, all workers together), like
        /// `tcpreplay --pps`, instead of as fast as possible: benchmarks at a fixed load.
        #[arg(long, default_value_t = 0)]
        pps: u64,
    },
    /// The daemon: capture live on the node's pod interfaces until SIGINT/SIGTERM.
    Run {
        /// JSON lines (one per flow and transaction, on stdout or to `output.file`), a
        /// periodic summary table on stdout, or none (records leave only through OTLP and
        /// Prometheus: what the systemd unit and the DaemonSet use).
        #[arg(long, value_enum, default_value = "jsonl")]
        output: OutputFormat,
        /// Worker threads (default: `capture.workers` from the config).
        #[arg(long, value_parser = workers_arg)]
        workers: Option<usize>,
        /// Capture engine (default: `capture.mode` from the config).
        #[arg(long, value_enum)]
        mode: Option<podtap::config::CaptureMode>,
        /// Interface regexes to capture (default: `capture.interfaces`); repeatable.
        #[arg(long = "interface", short = 'i')]
        interfaces: Vec<String>,
        /// Packet filter in tcpdump's language; `and` and `or` have equal precedence and
        /// group from the left, as in tcpdump (default: `capture.filter` from the config).
        #[arg(long)]
        filter: Option<String>,
    },
    /// Check whether this host can capture, and which engine each interface would use.
    Check,
    /// The running daemon's interfaces, engines, workers, drops and export state (from
    /// its control socket, `control.socket`).
    Status {
        /// The daemon's answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// A pod's frames, both directions, as pcapng: from the running daemon's workers, or
    /// (no daemon) from a capture of its own. Ends at --count, --duration, --max-size or
    /// Ctrl-C, always with a valid file.
    #[command(group(clap::ArgGroup::new("target").required(true).args(["pod", "selector", "interface"])))]
    Sniff {
        /// The pod (its name, `namespace/name`, or its network namespace's name).
        #[arg(long)]
        pod: Option<String>,
        /// The pod's namespace.
        #[arg(long, short = 'n', requires = "pod")]
        namespace: Option<String>,
        /// Every pod matching a label selector: `-l app=web,tier!=db`.
        #[arg(long = "selector", short = 'l')]
        selector: Option<String>,
        /// A host interface instead of a pod.
        #[arg(long)]
        interface: Option<String>,
        /// Packet filter in tcpdump's language (`tcp port 80`).
        #[arg(long, default_value = "")]
        filter: String,
        /// Stop after this many seconds (default, and at most: `control.max_sniff_secs`).
        #[arg(long, conflicts_with = "count")]
        duration: Option<u64>,
        /// Stop after this many frames.
        #[arg(long, short = 'c')]
        count: Option<u64>,
        /// Bytes kept of each frame (default: whole frames).
        #[arg(long, short = 's', default_value_t = 0)]
        snaplen: u32,
        /// Stop before the file grows past this many bytes.
        #[arg(long, default_value_t = 1 << 30)]
        max_size: u64,
        /// Output file; `-` streams to standard output (`| tshark -r -`).
        #[arg(short = 'w', required = true)]
        write: PathBuf,
    },
    /// A live view of the busiest pods, call edges (client → server, protocol) and
    /// endpoints: rates, errors, latency, bytes, retransmissions and resets, from the
    /// running daemon's control socket. Keys are shown on screen.
    Top {
        /// Print one snapshot and exit (rates over the whole --window: on a daemon not
        /// asked recently this takes that long).
        #[arg(long)]
        once: bool,
        /// With --once: text tables, or the daemon's snapshot as JSON.
        #[arg(long, value_enum, default_value = "text", requires = "once")]
        output: podtap::top::Output,
        /// Sort by: rate, errors, p50, p99, bytes, retransmits, resets, name.
        #[arg(long, default_value = "rate", value_parser = sort_arg)]
        sort: podtap::stats::top::SortKey,
        /// Only rows with an end in this Kubernetes namespace.
        #[arg(long, short = 'n')]
        namespace: Option<String>,
        /// Only rows with an end whose name contains this.
        #[arg(long)]
        pod: Option<String>,
        /// Only calls of this protocol (http, grpc, redis, ...; tcp or udp: undecoded).
        #[arg(long)]
        protocol: Option<String>,
        /// Rows per table (the daemon caps it at control.max_top_rows).
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Rates over about this many seconds (1-10).
        #[arg(long, default_value_t = podtap::stats::top::DEFAULT_WINDOW_SECS,
              value_parser = clap::value_parser!(u64).range(1..=podtap::stats::top::MAX_WINDOW_SECS))]
        window: u64,
        /// Refresh interval in milliseconds.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(100..))]
        interval_ms: u64,
    },
    /// A flight recording of a pod now: the daemon writes its last `recorder.seconds` and
    /// next `recorder.after_secs` of frames as pcapng into `recorder.dir` (the pod must be
    /// one `[recorder]` records). Prints the file's path.
    #[command(group(clap::ArgGroup::new("target").required(true).args(["pod", "selector"])))]
    Record {
        /// The pod (its name, `namespace/name`, or its network namespace's name).
        #[arg(long)]
        pod: Option<String>,
        /// The pod's namespace.
        #[arg(long, short = 'n', requires = "pod")]
        namespace: Option<String>,
        /// Every pod matching a label selector: `-l app=web`.
        #[arg(long = "selector", short = 'l')]
        selector: Option<String>,
        /// Wait until the file is written (the window after has passed), then print it.
        #[arg(long)]
        wait: bool,
    },
    /// Write a synthetic capture (HTTP/1.1 over TCP, optional UDP) for demos and benchmarks.
    Synth {
        /// Output pcap file.
        out: PathBuf,
        #[command(flatten)]
        opts: podtap::synth::SynthOptions,
    },
}

/// Colour codes only for a person at a terminal: a log file, journald or `kubectl logs`
/// would show them as escape sequences. `NO_COLOR` (https://no-color.org) turns them off
/// there too.
fn log_colours() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// `--workers`: a count of threads, not beyond what `[capture]`/`[replay]` accept (a
/// typo such as 40000 would otherwise fail half-way through spawning them).
fn workers_arg(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|e| format!("{e}"))?;
    if n > podtap::config::MAX_WORKERS {
        return Err(format!(
            "{n} worker threads: at most {} (one per CPU is the most that helps)",
            podtap::config::MAX_WORKERS
        ));
    }
    Ok(n)
}

/// `--sort`: one of the sort keys by name.
fn sort_arg(s: &str) -> Result<podtap::stats::top::SortKey, String> {
    use podtap::stats::top::SortKey;
    SortKey::parse(s).ok_or_else(|| {
        let names: Vec<_> = SortKey::ALL.iter().map(|k| k.name()).collect();
        format!("one of {}", names.join(", "))
    })
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The daemon says what it attaches and its statistics; the tools only warn.
    let default_level = if matches!(cli.cmd, Cmd::Run { .. }) {
        "info"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PODTAP_LOG")
                .unwrap_or_else(|_| default_level.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(log_colours())
        .init();
    podtap::capture::route_libbpf_logs();
    let mut cfg = Config::load(cli.config.as_deref())?;
    match cli.cmd {
        Cmd::Replay {
            files,
            output,
            workers,
            filter,
            hold_secs,
            pps,
        } => {
            if let Some(expr) = filter {
                cfg.capture.filter = podtap::filter::Filter::parse(&expr)?;
            }
            // Attribution against this host's metadata, when asked for (attribution.replay).
            let attribution = if cfg.attribution.enabled && cfg.attribution.replay {
                let a = podtap::k8s::Attribution::start(&cfg.attribution)?;
                if !a.wait_synced(std::time::Duration::from_secs(30)) {
                    tracing::warn!("Kubernetes metadata not synced after 30 s; replaying anyway");
                }
                Some(a)
            } else {
                None
            };
            let opts = ReplayOptions {
                files,
                workers: workers.unwrap_or(cfg.replay.workers),
                output,
                hold_secs,
                pps,
                attributor: attribution.as_ref().map(|a| a.attributor()),
            };
            // Statistics, OTLP and Prometheus when `[export]` (or OTEL_* variables) ask.
            let health = podtap::export::Health::new();
            let mut export_cfg = cfg.export.clone();
            export_cfg
                .apply_env(|k| std::env::var(k).ok())
                .map_err(|(k, m)| anyhow::anyhow!("invalid export setting `{k}`: {m}"))?;
            let exporter = if export_cfg.active() {
                health.set_capturing(opts.files.len());
                Some(podtap::export::Exporter::start(
                    &cfg.export,
                    health.clone(),
                )?)
            } else {
                None
            };
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
            let totals = match output {
                OutputFormat::Jsonl => replay::run(
                    &cfg,
                    &opts,
                    &mut out,
                    &mut std::io::stderr(),
                    exporter.as_ref(),
                )?,
                OutputFormat::Table => {
                    let mut table = Vec::new();
                    let t = replay::run(
                        &cfg,
                        &opts,
                        &mut std::io::sink(),
                        &mut table,
                        exporter.as_ref(),
                    )?;
                    std::io::Write::write_all(&mut out, &table)?;
                    t
                }
                // Only the exporter's outputs (OTLP, /metrics with --hold-secs).
                OutputFormat::None => replay::run(
                    &cfg,
                    &opts,
                    &mut std::io::sink(),
                    &mut std::io::sink(),
                    exporter.as_ref(),
                )?,
            };
            if let Some(e) = exporter {
                std::io::Write::flush(&mut out)?;
                if opts.hold_secs > 0 {
                    std::thread::sleep(std::time::Duration::from_secs(opts.hold_secs));
                }
                let t = e.shutdown(std::time::Duration::from_secs(5));
                eprintln!("{t}");
            }
            tracing::info!(
                packets = totals.packets,
                flows = totals.flows,
                "replay done"
            );
        }
        Cmd::Run {
            output,
            workers,
            mode,
            interfaces,
            filter,
        } => {
            if let Some(expr) = filter {
                cfg.capture.filter = podtap::filter::Filter::parse(&expr)?;
            }
            if let Some(m) = mode {
                cfg.capture.mode = m;
            }
            if !interfaces.is_empty() {
                cfg.capture.interfaces = interfaces;
            }
            // Least privilege, before any thread starts (threads inherit the sets).
            match podtap::privilege::drop_unneeded(&cfg)? {
                Some(d) => tracing::info!(
                    kept = ?d.kept,
                    dropped = d.dropped,
                    "capabilities dropped (privileges.drop)"
                ),
                None => tracing::warn!("privileges.drop = false: every capability kept"),
            }
            // The monitoring policies' health checks: published by attribution (in `run`),
            // run by the health probes.
            let with_checks = cfg.probes.enabled
                && cfg.attribution.enabled
                && cfg.attribution.kubernetes.enabled
                && cfg.attribution.kubernetes.policies;
            let (checks_tx, checks_rx) = match with_checks {
                true => {
                    let (tx, rx) = tokio::sync::watch::channel(Vec::new());
                    (Some(tx), Some(rx))
                }
                false => (None, None),
            };
            let opts = podtap::run::RunOptions {
                output,
                workers,
                config_path: cli.config.clone(),
                policy_checks: checks_tx,
            };
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            // JSON lines to a size-rotated file when `output.file` names one.
            let mut out: Box<dyn std::io::Write + Send> =
                if output == OutputFormat::Jsonl && !cfg.output.file.is_empty() {
                    let path = std::path::Path::new(&cfg.output.file);
                    Box::new(
                        podtap::export::rotate::RotatingFile::open(
                            path,
                            cfg.output.file_max_bytes,
                            cfg.output.file_keep,
                        )
                        .with_context(|| format!("output.file: cannot open {}", path.display()))?,
                    )
                } else {
                    Box::new(std::io::stdout())
                };
            // Statistics, OTLP and Prometheus when `[export]` (or OTEL_* variables) ask.
            let mut export_cfg = cfg.export.clone();
            export_cfg
                .apply_env(|k| std::env::var(k).ok())
                .map_err(|(k, m)| anyhow::anyhow!("invalid export setting `{k}`: {m}"))?;
            // `podtap top` reads the exporter's statistics: kept, without exporting them,
            // when control.top asks.
            let exporter = if export_cfg.active() || (cfg.control.enabled && cfg.control.top) {
                let health = podtap::export::Health::new();
                Some(podtap::export::Exporter::start(&cfg.export, health)?)
            } else {
                None
            };
            // Health probes, on their own thread; `/alive` and `/alwayshappy` are on the
            // exporter's server (the config check makes sure there is one).
            let probes = match exporter.as_ref() {
                Some(e) if cfg.probes.enabled => {
                    let k = &cfg.attribution.kubernetes.kubeconfig;
                    let ctx = podtap::probes::ProbeContext {
                        node: podtap::k8s::node_name(&cfg.attribution),
                        kubeconfig: (!k.is_empty()).then(|| k.into()),
                        own_port: e.prometheus_addr.map_or(0, |a| a.port()),
                        policy_checks: checks_rx,
                    };
                    Some(
                        podtap::probes::Probes::start(&cfg.probes, ctx, e.metrics_feed())
                            .context("cannot start the health probes")?,
                    )
                }
                _ => None,
            };
            let t = podtap::run::run(&cfg, &opts, &mut out, stop, exporter.as_ref())?;
            // Stopped first: their last results go out with the exporter's final flush.
            drop(probes);
            if let Some(e) = exporter {
                let totals = e.shutdown(std::time::Duration::from_secs(5));
                eprintln!("{totals}");
            }
            tracing::info!(
                packets = t.packets,
                bytes = t.bytes,
                flows = t.flows,
                transactions = t.transactions,
                kernel_dropped = t.kernel_dropped,
                ring_full = t.ring_full,
                records_dropped = t.records_dropped,
                "podtap stopped"
            );
            for (e, n) in t.counters.nonzero() {
                tracing::info!(event = e.name(), count = n, "{}", e.help());
            }
        }
        Cmd::Check => {
            let report = podtap::check::run(&cfg);
            print!("{}", report.render());
            if !report.all_ok() {
                std::process::exit(1);
            }
        }
        Cmd::Status { json } => {
            let st = podtap::control::client::status(&cfg.control.socket)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&st)?);
            } else {
                print!("{}", podtap::control::client::render(&st));
            }
        }
        Cmd::Sniff {
            pod,
            namespace,
            selector,
            interface,
            filter,
            duration,
            count,
            snaplen,
            max_size,
            write,
        } => {
            let opts = podtap::control::sniff::SniffOptions {
                request: podtap::control::SniffRequest {
                    pod,
                    namespace,
                    selector,
                    interface,
                    filter,
                    snaplen,
                    count: count.unwrap_or(0),
                    duration_secs: duration.unwrap_or(0),
                },
                out: write,
                max_bytes: max_size,
                on_ready: |m| eprintln!("podtap sniff: {m}"),
            };
            let t = podtap::control::sniff::run(&cfg, &opts)?;
            eprintln!(
                "podtap sniff: {} frames ({} bytes) written to {}; ended: {}; {} frames dropped{}",
                t.frames,
                t.bytes,
                opts.out.display(),
                t.reason,
                t.dropped,
                if t.from_daemon {
                    " (read too slowly)"
                } else {
                    " by the kernel (ring full)"
                }
            );
        }
        Cmd::Top {
            once,
            output,
            sort,
            namespace,
            pod,
            protocol,
            limit,
            window,
            interval_ms,
        } => {
            let opts = podtap::top::TopOptions {
                socket: cfg.control.socket.clone(),
                query: podtap::stats::top::TopQuery {
                    limit,
                    window_secs: window,
                    sort,
                    namespace,
                    pod,
                    protocol,
                },
                interval: std::time::Duration::from_millis(interval_ms),
            };
            if once {
                let snap = podtap::top::once(&opts)?;
                match output {
                    podtap::top::Output::Json => println!("{}", serde_json::to_string(&snap)?),
                    podtap::top::Output::Text => print!("{}", podtap::top::view::text(&snap)),
                }
            } else {
                podtap::top::interactive(&opts)?;
            }
        }
        Cmd::Record {
            pod,
            namespace,
            selector,
            wait,
        } => {
            let req = podtap::control::RecordRequest {
                pod,
                namespace,
                selector,
            };
            let info = podtap::control::client::record(&cfg.control.socket, &req, wait)?;
            eprintln!(
                "podtap record: {} of {} ({} to {}): {}",
                info.file,
                info.pods.join(", "),
                info.from,
                info.until,
                info.state
            );
            println!("{}", info.file);
            if info.state.starts_with("failed") {
                std::process::exit(1);
            }
        }
        Cmd::Synth { out, opts } => {
            let f = std::fs::File::create(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            let n = podtap::synth::write(std::io::BufWriter::new(f), &opts)?;
            eprintln!("wrote {n} frames to {}", out.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::subcommand;

    fn sub(line: &str) -> Option<String> {
        subcommand(line.split_whitespace().map(str::as_bytes))
            .map(|s| String::from_utf8(s.to_vec()).unwrap())
    }

    #[test]
    fn subcommand_skips_options_and_the_config_value() {
        assert_eq!(sub("replay a.pcap --workers 1").as_deref(), Some("replay"));
        assert_eq!(sub("--config replay.toml run").as_deref(), Some("run"));
        assert_eq!(sub("--config c.toml replay x").as_deref(), Some("replay"));
        assert_eq!(sub("--config=c.toml replay x").as_deref(), Some("replay"));
        assert_eq!(sub("run --output table").as_deref(), Some("run"));
        // A config file named `replay` is not the subcommand, nor is an option's value.
        assert_eq!(sub("--config replay replay x").as_deref(), Some("replay"));
        assert_eq!(sub("--config replay run").as_deref(), Some("run"));
        assert_eq!(sub("run --interface replay").as_deref(), Some("run"));
        assert_eq!(sub("--version"), None);
        assert_eq!(sub(""), None);
    }

    /// `subcommand` reads the command line before clap can run (no allocation yet), so it
    /// knows the options that come before a subcommand by hand: this fails when the CLI
    /// gains another that takes a value, which `subcommand` would mistake for one.
    #[test]
    fn config_is_the_only_top_level_option_with_a_value() {
        use clap::CommandFactory;
        let cmd = super::Cli::command();
        let with_values: Vec<_> = cmd
            .get_arguments()
            .filter(|a| !a.is_positional() && a.get_action().takes_values())
            .map(|a| a.get_id().to_string())
            .collect();
        assert_eq!(with_values, ["config"]);
    }
}
