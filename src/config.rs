//! Typed configuration. Every option lives in a serde struct with its default documented
//! beside it; `config/podtap.toml` lists them all. Unknown keys and bad values are
//! rejected with the key path and the file named.

use serde::Deserialize;
use std::path::{Path, PathBuf};

use crate::packet::defrag::DefragLimits;

/// The configuration shipped with podtap and used when no file is given.
pub const EMBEDDED: &str = include_str!("../config/podtap.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {file}: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: invalid config at `{key}`: {message}")]
    Invalid {
        file: PathBuf,
        key: String,
        message: String,
    },
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub capture: CaptureConfig,
    pub flow: FlowConfig,
    pub reassembly: ReassemblyConfig,
    pub defrag: DefragConfig,
    pub replay: ReplayConfig,
    pub output: OutputConfig,
    /// `[protocols]` and one `[protocols.<name>]` section per decoder (its switch, port
    /// hint and own settings), as the decoder list in `proto/mod.rs` makes them.
    pub protocols: crate::proto::ProtocolsConfig,
    pub export: crate::export::config::ExportConfig,
    pub attribution: AttributionConfig,
    /// `[privileges]`: the capabilities the daemon keeps (see [`crate::privilege`]).
    pub privileges: crate::privilege::PrivilegeConfig,
    /// `[memory]`: one budget the traffic-driven bounds derive from (see [`crate::memory`]).
    pub memory: crate::memory::MemoryConfig,
    /// `[control]`: the daemon's control socket (`podtap status`, `podtap sniff`).
    pub control: crate::control::ControlConfig,
    /// `[anomalies]`: network anomaly events and their thresholds (see [`crate::anomaly`]).
    pub anomalies: crate::anomaly::AnomalyConfig,
    /// `[probes]`: health probes of neighbours, the API server, URLs and pods (see
    /// [`crate::probes`]). Off by default.
    pub probes: crate::probes::ProbesConfig,
    /// `[recorder]`: the flight recorder (see [`crate::recorder`]). Off by default.
    pub recorder: crate::recorder::RecorderConfig,
}

/// What is captured, and how.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaptureConfig {
    /// Packet filter in tcpdump's language, pcap-filter (`tcp port 80 or udp port 53`),
    /// with its precedence: `and` and `or` equal, grouping from the left; `not` tightest.
    /// Packets that do not match are counted as `packet.filtered` and not analysed.
    /// Default: everything. See [`crate::filter`].
    pub filter: crate::filter::Filter,
    /// Capture engine: `auto` (AF_XDP where it can run, TPACKET_V3 elsewhere, the reason
    /// logged per interface), `xdp` or `tpacket`. Default `auto`.
    pub mode: CaptureMode,
    /// Interfaces to capture, as anchored regexes over interface names. Interfaces that
    /// appear later (new pods) are attached within a second. Default: the host ends of pod
    /// veths of the common CNIs and the node's Ethernet interfaces.
    pub interfaces: Vec<String>,
    /// Interfaces never captured, even when `interfaces` matches them. Default none.
    pub exclude: Vec<String>,
    /// Worker threads (capture queues). 0: one per CPU in `cpus`, or per online CPU.
    /// Default 0.
    pub workers: usize,
    /// CPUs the workers are pinned to, worker i on `cpus[i % len]`. Empty: worker i on
    /// CPU i modulo the online CPUs. Default empty.
    pub cpus: Vec<usize>,
    /// Pin workers to CPUs at all. Default true.
    pub pin: bool,
    /// Dedicated copy ports (a SPAN/TAP port, the end of a mirror tunnel or of someone
    /// else's tc mirror), as anchored regexes: in `xdp` and `auto` mode AF_XDP binds
    /// their queues and takes every frame from the kernel. Only listed interfaces are
    /// bound so; a NIC that carries the node's own traffic must never be listed (`podtap
    /// check` fails when a listed one has addresses or routes). Default none.
    pub direct: Vec<String>,
    /// Packets per second one worker must absorb at peak: its ring has to hold 30 ms of
    /// them (the longest a loaded host was seen to deschedule a capture thread).
    /// `podtap check` reports how long each engine's ring holds at this rate and fails
    /// below 30 ms. Default 1500000.
    pub peak_pps_per_worker: u64,
    /// TPACKET_V3 ring geometry.
    pub tpacket: crate::capture::tpacket::TpacketConfig,
    /// AF_XDP socket geometry and attach behaviour.
    pub xdp: crate::capture::xdp::XdpConfig,
    /// The capture device pod veths are mirrored to for AF_XDP.
    pub mirror: crate::capture::mirror::MirrorConfig,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            filter: Default::default(),
            mode: CaptureMode::Auto,
            interfaces: ["veth.*", "cali.*", "lxc.*", "eth.*", "en.*"]
                .map(String::from)
                .to_vec(),
            exclude: Vec::new(),
            workers: 0,
            cpus: Vec::new(),
            pin: true,
            direct: Vec::new(),
            peak_pps_per_worker: 1_500_000,
            tpacket: Default::default(),
            xdp: Default::default(),
            mirror: Default::default(),
        }
    }
}

/// Capture engine choice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CaptureMode {
    #[default]
    Auto,
    Xdp,
    Tpacket,
}

/// Flow table limits and timeouts (per worker).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlowConfig {
    /// Most flows tracked at once by one worker. When full, the least recently seen flow
    /// is closed early (end reason `evicted`) and counted as `flow.evicted`. A tracked
    /// flow costs the table 925 bytes (`flow::table::FLOW_BYTES`, held under 1 KiB when
    /// building), and a flow carrying application data up to 912 more for its decoder:
    /// the default is about 231 MiB per worker for the table. Default 262144.
    pub max_flows: usize,
    /// A TCP flow with no packets for this long is closed (`idle`). Default 300 s.
    pub tcp_idle_timeout_secs: u64,
    /// After both FINs or a RST, a TCP flow lingers this long to collect the last ACKs
    /// and retransmissions before it is reported (`fin` / `rst`). Default 5 s.
    pub tcp_close_linger_secs: u64,
    /// A UDP flow with no packets for this long is closed. Default 60 s.
    pub udp_idle_timeout_secs: u64,
    /// ICMP and other IP protocols. Default 30 s.
    pub other_idle_timeout_secs: u64,
    /// Keep flows on different VLANs apart (needed only where VLANs reuse addresses).
    /// Default false: SPAN ports often tag one direction only, which would split flows.
    pub vlan_in_key: bool,
    /// Open flows hand their traffic (bytes, packets, retransmissions) to the metrics this
    /// often, so a long-lived connection shows up before it ends; 0: only when it ends.
    /// A worker visits up to 4096 flows a second (the timeout sweep), so with more open
    /// flows the interval stretches. Default 10 s.
    pub report_interval_secs: u64,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            max_flows: 262_144,
            tcp_idle_timeout_secs: 300,
            tcp_close_linger_secs: 5,
            udp_idle_timeout_secs: 60,
            other_idle_timeout_secs: 30,
            vlan_in_key: false,
            report_interval_secs: 10,
        }
    }
}

/// The most worker threads `capture.workers`, `replay.workers` and `--workers` accept:
/// beyond the CPUs of any machine podtap runs on, and far below the point where spawning
/// them fails.
pub const MAX_WORKERS: usize = 1024;

/// TCP reassembly bounds.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReassemblyConfig {
    /// Memory of out-of-order data held per flow direction before a gap is declared
    /// (`reassembly.flow_limit`): the held buffers' capacity plus
    /// `flow::reassembly::SEGMENT_OVERHEAD` (48 bytes) per held segment, so it bounds real
    /// memory whatever the segment sizes. Default 256 KiB.
    pub max_flow_bytes: usize,
    /// Held segments per flow direction (`reassembly.flow_limit` too): real loss leaves a
    /// few holes per window, a sender crafting thousands is cut short. Default 1024.
    pub max_flow_segments: usize,
    /// Memory of out-of-order data held by one worker across all flows, counted as for
    /// `max_flow_bytes` (`reassembly.worker_limit`). Default 64 MiB.
    pub max_worker_bytes: usize,
    /// Held segments across one worker's flows (`reassembly.worker_limit`). Default 65536.
    pub max_worker_segments: usize,
    /// A segment that fills a hole within this long of the segment that opened it is
    /// out-of-order rather than a retransmission (when the handshake RTT is unknown;
    /// otherwise the RTT is used). Default 3 ms, as Wireshark does.
    pub out_of_order_threshold_us: u64,
}

impl Default for ReassemblyConfig {
    fn default() -> Self {
        ReassemblyConfig {
            max_flow_bytes: 256 * 1024,
            max_flow_segments: 1024,
            max_worker_bytes: 64 << 20,
            max_worker_segments: 65536,
            out_of_order_threshold_us: 3000,
        }
    }
}

/// IP fragment reassembly bounds (per worker).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DefragConfig {
    /// Datagrams reassembled at once; the oldest is dropped when full. Default 256.
    pub max_datagrams: usize,
    /// Incomplete datagrams are dropped after this long. Default 30 s.
    pub timeout_secs: u64,
}

impl Default for DefragConfig {
    fn default() -> Self {
        DefragConfig {
            max_datagrams: 256,
            timeout_secs: 30,
        }
    }
}

impl DefragConfig {
    pub fn limits(&self) -> DefragLimits {
        DefragLimits {
            max_datagrams: self.max_datagrams,
            max_datagram_bytes: 65_535,
            timeout_ns: self.timeout_secs.saturating_mul(1_000_000_000),
        }
    }
}

/// `podtap replay` defaults (the command line overrides them).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplayConfig {
    /// Worker threads; packets are spread by a symmetric flow hash, as the kernel's
    /// PACKET_FANOUT_HASH does live. Default 1.
    pub workers: usize,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig { workers: 1 }
    }
}

/// Record output.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutputConfig {
    /// Records queued between workers and the writer, in batches. Default 1024.
    pub queue_batches: usize,
    /// Emit a record for every flow, not only for flows with transactions. Default true.
    pub flows: bool,
    /// `podtap run --output table`: seconds between tables. Default 10.
    pub table_interval_secs: u64,
    /// `--output table` (`podtap run` per interval, `podtap replay` per file): endpoint
    /// rows kept (server x operation); the transactions of later endpoints are counted in
    /// one `(other endpoints)` row per protocol. A row takes up to
    /// [`crate::export::summary::endpoint_max_bytes`] (~28 KiB); the table prints the 50
    /// busiest. Default 1000.
    pub table_max_endpoints: usize,
    /// `podtap run`: seconds between capture statistics lines in the log. 0: only at
    /// exit. Default 60.
    pub stats_interval_secs: u64,
    /// `podtap run --output jsonl`: write the JSON lines to this file instead of stdout,
    /// rotated by size. Empty: stdout. Default empty.
    pub file: String,
    /// Largest size of `file` before it is rotated to `<file>.1`. Default 100 MiB.
    pub file_max_bytes: u64,
    /// Rotated files kept (`<file>.1` .. `<file>.N`); older ones are deleted, so records
    /// on disk take at most `file_max_bytes * (file_keep + 1)`. Default 4.
    pub file_keep: usize,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            queue_batches: 1024,
            flows: true,
            table_interval_secs: 10,
            table_max_endpoints: crate::export::summary::DEFAULT_MAX_ENDPOINTS,
            stats_interval_secs: 60,
            file: String::new(),
            file_max_bytes: 100 << 20,
            file_keep: 4,
        }
    }
}

/// Pod attribution (`src/k8s/`): which pod, Service or node each end of a flow is.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AttributionConfig {
    /// Attribute flows and transactions to pods. Default true.
    pub enabled: bool,
    /// Also attribute in `podtap replay`, against this host's current metadata (only
    /// right when the capture was made here, now). Default false.
    pub replay: bool,
    /// Node-local discovery: network namespaces, their veths, addresses and processes.
    /// Default true.
    pub netns: bool,
    /// Rescan namespaces this often; 0 scans once at start. Default 10 s.
    pub resync_secs: u64,
    /// Static map file (TOML) naming pods by interface, namespace or CIDR. Default none.
    pub static_map: String,
    /// Pod label keys reported as `k8s.pod.label.<key>`. Default none.
    pub label_keys: Vec<String>,
    /// Replay: pcapng interface `i` was captured on the host interface (or
    /// `/var/run/netns` namespace) named `replay_interfaces[i]`. Default none.
    pub replay_interfaces: Vec<String>,
    /// Only pods matching this label selector are captured and reported. Default: all.
    pub selector: crate::k8s::selector::LabelSelector,
    pub kubernetes: KubernetesConfig,
}

impl Default for AttributionConfig {
    fn default() -> Self {
        AttributionConfig {
            enabled: true,
            replay: false,
            netns: true,
            resync_secs: 10,
            static_map: String::new(),
            label_keys: Vec::new(),
            replay_interfaces: Vec::new(),
            selector: Default::default(),
            kubernetes: KubernetesConfig::default(),
        }
    }
}

/// The Kubernetes API source.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct KubernetesConfig {
    /// Watch this node's pods, Services, EndpointSlices, ReplicaSets and Jobs. Default false.
    pub enabled: bool,
    /// Kubeconfig file; empty: in-cluster service account, else `KUBECONFIG` or
    /// `~/.kube/config`. Default empty.
    pub kubeconfig: String,
    /// This node's name; empty: the `NODE_NAME` environment variable, else the host name.
    pub node_name: String,
    /// Also watch `PodtapPolicy` monitoring policies (docs/POLICIES.md) and write each
    /// one's status for this node. While a valid policy exists, the policies' selectors
    /// decide what is captured instead of `attribution.selector`. Default true.
    pub policies: bool,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        KubernetesConfig {
            enabled: false,
            kubeconfig: String::new(),
            node_name: String::new(),
            policies: true,
        }
    }
}

/// Deserialize TOML into `T`, naming the dotted key a bad value or an unknown key sits at
/// (`(syntax)` for text that is not TOML): the files podtap reads (config, static map)
/// all report errors this way.
pub fn from_toml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, (String, String)> {
    let de =
        toml::Deserializer::parse(text).map_err(|e| ("(syntax)".to_string(), e.to_string()))?;
    serde_path_to_error::deserialize(de)
        .map_err(|e| (e.path().to_string(), e.into_inner().message().to_string()))
}

impl Config {
    /// Parse `text`, naming `file` and the offending key in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let invalid = |key: String, message: String| ConfigError::Invalid {
            file: file.to_path_buf(),
            key,
            message,
        };
        let mut cfg: Config = from_toml(text).map_err(|(key, mut msg)| {
            // The decoders' sections moved under [protocols.<name>].
            if ["http", "http2", "dns", "tls"].contains(&key.as_str()) {
                msg.push_str(&format!(
                    " (the [{key}] settings are now under [protocols.{key}])"
                ));
            }
            invalid(key, msg)
        })?;
        // Bounds the file does not set come from `memory.max_bytes`, when it is set.
        let table: toml::Table = text.parse().unwrap_or_default();
        crate::memory::apply(&mut cfg, |section, key| {
            let mut v = table.get(section);
            for part in key.split('.') {
                v = v.and_then(|t| t.get(part));
            }
            v.is_some()
        });
        cfg.checked(file)
    }

    /// `self`, once the checks that serde cannot express pass; errors name `file`.
    fn checked(self, file: &Path) -> Result<Config, ConfigError> {
        let invalid = |key: String, message: String| ConfigError::Invalid {
            file: file.to_path_buf(),
            key,
            message,
        };
        self.validate()
            .map_err(|(key, msg)| invalid(key.into(), msg))?;
        self.attribution
            .selector
            .validate()
            .map_err(|(key, msg)| invalid(format!("attribution.selector.{key}"), msg))?;
        Ok(self)
    }

    /// Load from a file, or the embedded default when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            // The embedded file writes out the defaults (`embedded_config_matches_defaults`
            // compares every value), so they are taken as they are: parsing its 33 KB costs
            // a third of a millisecond at every start, a tenth of a short replay.
            None => Config::default().checked(Path::new("<embedded config/podtap.toml>")),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    file: p.into(),
                    source,
                })?;
                Config::parse(&text, p)
            }
        }
    }

    /// Checks that serde cannot express.
    fn validate(&self) -> Result<(), (&'static str, String)> {
        for (key, n) in [
            ("capture.workers", self.capture.workers),
            ("replay.workers", self.replay.workers),
        ] {
            if n > MAX_WORKERS {
                return Err((
                    key,
                    format!(
                        "{n} worker threads: at most {MAX_WORKERS} (one per CPU is the most that helps)"
                    ),
                ));
            }
        }
        let positive = [
            ("flow.max_flows", self.flow.max_flows),
            ("replay.workers", self.replay.workers),
            ("defrag.max_datagrams", self.defrag.max_datagrams),
            ("output.queue_batches", self.output.queue_batches),
            (
                "output.table_max_endpoints",
                self.output.table_max_endpoints,
            ),
        ];
        if self.output.file_max_bytes < 4096 {
            return Err(("output.file_max_bytes", "must be at least 4096".into()));
        }
        for (key, v) in positive {
            if v == 0 {
                return Err((key, "must be at least 1".into()));
            }
        }
        // Syntax only: compiling a regex builds its automata, milliseconds of every start-up
        // for patterns the command may never use (`replay` matches no interfaces).
        let check = |re: &str| {
            regex_syntax::Parser::new()
                .parse(re)
                .map(drop)
                .map_err(|e| e.to_string())
        };
        self.anomalies.validate()?;
        if let Err(m) = self.capture.tpacket.validate() {
            return Err(("capture.tpacket", m));
        }
        if let Err(m) = self.capture.xdp.validate() {
            return Err(("capture.xdp", m));
        }
        if let Err(m) = self.capture.mirror.validate() {
            return Err(("capture.mirror", m));
        }
        for re in self
            .capture
            .interfaces
            .iter()
            .chain(&self.capture.exclude)
            .chain(&self.capture.direct)
        {
            if let Err(e) = check(re) {
                return Err(("capture.interfaces", e));
            }
        }
        for (key, v) in [
            ("reassembly.max_flow_bytes", self.reassembly.max_flow_bytes),
            (
                "reassembly.max_flow_segments",
                self.reassembly.max_flow_segments,
            ),
            (
                "reassembly.max_worker_segments",
                self.reassembly.max_worker_segments,
            ),
        ] {
            if v == 0 {
                return Err((
                    key,
                    "must be at least 1: 0 would hold no out-of-order data".into(),
                ));
            }
        }
        if self.reassembly.max_worker_bytes < self.reassembly.max_flow_bytes {
            return Err((
                "reassembly.max_worker_bytes",
                "must be at least reassembly.max_flow_bytes".into(),
            ));
        }
        self.control
            .validate()
            .map_err(|(key, msg)| (&*format!("control.{key}").leak(), msg))?;
        self.recorder
            .validate()
            .map_err(|(key, msg)| (&*format!("recorder.{key}").leak(), msg))?;
        self.protocols.validate()?;
        self.export
            .validate()
            .map_err(|(key, msg)| (&*key.leak(), msg))?;
        self.probes
            .validate(&self.export.prometheus.listen)
            .map_err(|(key, msg)| (&*key.leak(), msg))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_config_matches_defaults() {
        let parsed = Config::parse(EMBEDDED, Path::new("embedded")).unwrap();
        // Every value, not a sample: `load(None)` returns the defaults without parsing.
        assert_eq!(
            format!("{parsed:#?}"),
            format!("{:#?}", Config::load(None).unwrap())
        );
        assert_eq!(format!("{parsed:#?}"), format!("{:#?}", Config::default()));
    }

    #[test]
    fn unknown_key_is_named_with_file() {
        let err = Config::parse("[flow]\nmax_flow = 3\n", Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("x.toml") && err.contains("max_flow"), "{err}");
    }

    #[test]
    fn bad_value_is_named_with_key() {
        let err = Config::parse("[flow]\nmax_flows = \"many\"\n", Path::new("y.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("y.toml") && err.contains("flow.max_flows"),
            "{err}"
        );
        let err = Config::parse("[replay]\nworkers = 0\n", Path::new("z.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("replay.workers") && err.contains("at least 1"),
            "{err}"
        );
    }
}

#[cfg(test)]
mod zero_bounds {
    use super::*;

    /// Every bound of the embedded configuration set to 0 (which would hold, keep or
    /// accept nothing) is rejected, and the error names the key and the file.
    #[test]
    fn a_zero_bound_is_rejected_with_its_key() {
        let base: toml::Table = toml::from_str(EMBEDDED).unwrap();
        let mut bounds = Vec::new();
        fn walk(t: &toml::Table, path: &str, out: &mut Vec<String>) {
            for (k, v) in t {
                let key = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match v {
                    toml::Value::Table(inner) => walk(inner, &key, out),
                    toml::Value::Integer(n) if *n > 0 && k.starts_with("max_") => out.push(key),
                    _ => {}
                }
            }
        }
        walk(&base, "", &mut bounds);
        assert!(bounds.len() > 15, "{bounds:?}");
        let mut accepted = Vec::new();
        for key in &bounds {
            let mut t = base.clone();
            let mut at = &mut t;
            let parts: Vec<&str> = key.split('.').collect();
            for p in &parts[..parts.len() - 1] {
                at = at.get_mut(*p).unwrap().as_table_mut().unwrap();
            }
            at.insert(parts[parts.len() - 1].into(), toml::Value::Integer(0));
            match Config::parse(&toml::to_string(&t).unwrap(), Path::new("zero.toml")) {
                Ok(_) => accepted.push(key.clone()),
                Err(e) => {
                    let e = e.to_string();
                    let last = parts[parts.len() - 1];
                    assert!(e.contains(last) && e.contains("zero.toml"), "{key}: {e}");
                }
            }
        }
        // Where 0 is a choice, not a mistake: Redis summaries without any part of a key.
        accepted.retain(|k| k != "protocols.redis.max_key_prefix");
        assert!(accepted.is_empty(), "0 accepted for {accepted:?}");
    }
}
