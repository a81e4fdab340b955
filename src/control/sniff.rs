//! `podtap sniff`: a pod's (or an interface's) frames as pcapng, from the running
//! daemon's workers, or, with no daemon, from a capture of its own.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::pcapng::{Output, PcapngWriter};
use super::{ControlError, Request, SniffEnd, SniffHeader, SniffIface, SniffRequest, StreamRecord};
use crate::capture::iface::Iface;
use crate::config::Config;
use crate::k8s::Snapshot;
use crate::k8s::selector::{LabelSelector, Operator, Requirement};

/// The CLI's choices beyond the request itself.
pub struct SniffOptions {
    pub request: SniffRequest,
    /// `-` for standard output.
    pub out: PathBuf,
    /// The file ends (cleanly) before it would grow past this many bytes.
    pub max_bytes: u64,
    /// Told, once the capture runs, where its frames come from (the CLI prints it).
    pub on_ready: fn(&str),
}

/// What a sniff did.
#[derive(Debug, Default)]
pub struct SniffSummary {
    pub frames: u64,
    pub bytes: u64,
    /// Frames the daemon could not hand over because this client read too slowly.
    pub dropped: u64,
    /// Why it ended: `count`, `duration`, `interrupted`, `size`, `shutdown`, ...
    pub reason: String,
    /// The daemon's workers, or a capture of its own.
    pub from_daemon: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SniffError {
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("{0}")]
    Target(String),
    #[error("filter: {0}")]
    Filter(#[from] crate::filter::FilterError),
    #[error(transparent)]
    Capture(#[from] crate::capture::CaptureError),
    #[error(transparent)]
    Attribution(#[from] crate::k8s::AttrError),
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("cannot create {path}: {source}")]
    Create { path: String, source: io::Error },
    /// Writing failed (a full disk): the file holds every block written before, whole.
    #[error(
        "writing {path} failed after {frames} frames: {source}; the file ends cleanly at its last whole block"
    )]
    Write {
        path: String,
        frames: u64,
        source: io::Error,
    },
}

/// Run a sniff until its count, duration or size is reached, or SIGINT/SIGTERM.
pub fn run(cfg: &Config, opts: &SniffOptions) -> Result<SniffSummary, SniffError> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(ControlError::Io)?;
    }
    // Validate locally first: a typo is reported the same with or without a daemon.
    crate::filter::Filter::parse(&opts.request.filter)?;
    match super::client::connect(&cfg.control.socket) {
        Ok(s) => from_daemon(s, opts, &stop),
        Err(ControlError::NoDaemon { path }) => {
            local(cfg, opts, &stop, &format!("no podtap daemon at {path}"))
        }
        Err(e) => Err(e.into()),
    }
}

fn path_name(opts: &SniffOptions) -> String {
    opts.out.display().to_string()
}

const READER_GONE: &str = "the reader closed standard output";

/// The output: a file, or standard output for `-`.
enum Out {
    File(std::fs::File),
    Stdout(io::Stdout),
}

impl Write for Out {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Out::File(f) => f.write(b),
            Out::Stdout(s) => s.write(b),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Out::File(f) => f.flush(),
            Out::Stdout(s) => s.flush(),
        }
    }
}

impl Output for Out {
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        match self {
            Out::File(f) => f.truncate(len),
            Out::Stdout(s) => s.truncate(len),
        }
    }
}

/// The pcapng file (or stream) of a sniff: its section comment and one interface per
/// observation point, more when a frame comes with another link type.
struct Capture {
    w: PcapngWriter<Out>,
    /// (ifindex, linktype) to pcapng interface id.
    ids: Vec<((u32, u16), u32)>,
    ifaces: Vec<SniffIface>,
    snaplen: u32,
    max_bytes: u64,
    path: String,
    frames: u64,
    bytes: u64,
    /// Why no more frames are written, when the file ended before the sniff did: the
    /// size limit, or the reader of standard output went away.
    stopped: Option<&'static str>,
}

impl Capture {
    fn create(opts: &SniffOptions, h: &SniffHeader) -> Result<Capture, SniffError> {
        let path = path_name(opts);
        let out = if opts.out.as_os_str() == "-" {
            Out::Stdout(io::stdout())
        } else {
            Out::File(
                std::fs::File::create(&opts.out).map_err(|source| SniffError::Create {
                    path: path.clone(),
                    source,
                })?,
            )
        };
        let comment = format!(
            "podtap sniff of {} on node {}; filter: {}",
            h.target,
            h.node,
            if h.filter.is_empty() {
                "(none)"
            } else {
                &h.filter
            }
        );
        let mut c = Capture {
            w: PcapngWriter::new(out, &comment),
            ids: Vec::new(),
            ifaces: h.interfaces.clone(),
            snaplen: if opts.request.snaplen == 0 {
                262_144
            } else {
                opts.request.snaplen
            },
            max_bytes: opts.max_bytes,
            path,
            frames: 0,
            bytes: 0,
            stopped: None,
        };
        for i in h.interfaces.clone() {
            c.id(i.ifindex, i.linktype);
        }
        c.flush()?;
        Ok(c)
    }

    fn id(&mut self, ifindex: u32, linktype: u16) -> u32 {
        if let Some((_, id)) = self.ids.iter().find(|(k, _)| *k == (ifindex, linktype)) {
            return *id;
        }
        let i = self.ifaces.iter().find(|i| i.ifindex == ifindex);
        let name = i.map_or_else(|| format!("ifindex {ifindex}"), |i| i.name.clone());
        let desc = match i.and_then(|i| i.pod.as_deref()) {
            Some(p) => format!("pod {p}, host interface {name} (ifindex {ifindex})"),
            None => format!("host interface {name} (ifindex {ifindex})"),
        };
        let id = self.w.interface(linktype, self.snaplen, &name, &desc);
        self.ids.push(((ifindex, linktype), id));
        id
    }

    /// Add a frame, unless the file has ended (`stopped` says why).
    fn frame(
        &mut self,
        ifindex: u32,
        linktype: u16,
        ts_ns: u64,
        wire_len: u32,
        data: &[u8],
    ) -> Result<(), SniffError> {
        // An EPB is 32 bytes of header and trailer around the padded data.
        if self.stopped.is_some() {
            return Ok(());
        }
        if self.w.size() + 32 + data.len() as u64 + 3 + 64 > self.max_bytes {
            self.stopped = Some("size");
            return Ok(());
        }
        let id = self.id(ifindex, linktype);
        let r = self.w.packet(id, ts_ns, wire_len, data);
        self.check(r)?;
        if self.stopped.is_none() {
            self.frames += 1;
            self.bytes += wire_len as u64;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SniffError> {
        if self.stopped == Some(READER_GONE) {
            return Ok(());
        }
        let r = self.w.flush();
        self.check(r)
    }

    /// A write's outcome: standard output closed by its reader (`| head`) ends the
    /// capture normally; any other failure is an error.
    fn check(&mut self, r: io::Result<()>) -> Result<(), SniffError> {
        match r {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe && self.path == "-" => {
                self.stopped = Some(READER_GONE);
                Ok(())
            }
            Err(e) => Err(self.write_err(e)),
            Ok(()) => Ok(()),
        }
    }

    fn write_err(&self, source: io::Error) -> SniffError {
        SniffError::Write {
            path: self.path.clone(),
            frames: self.frames,
            source,
        }
    }
}

fn from_daemon(
    mut s: UnixStream,
    opts: &SniffOptions,
    stop: &AtomicBool,
) -> Result<SniffSummary, SniffError> {
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let reply = super::client::request(&mut s, &Request::Sniff(opts.request.clone()))?;
    let header = reply
        .sniff
        .ok_or_else(|| ControlError::Protocol("sniff reply without a header".into()))?;
    let mut cap = Capture::create(opts, &header)?;
    (opts.on_ready)(&format!(
        "capturing {} from the daemon's workers ({} interface{}: {})",
        header.target,
        header.interfaces.len(),
        if header.interfaces.len() == 1 {
            ""
        } else {
            "s"
        },
        header
            .interfaces
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    s.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut chunk = vec![0u8; 1 << 16];
    // Set once this side has asked the daemon to stop (shut its writing half); the
    // daemon then sends what it queued and the end record.
    let mut stopping: Option<(Instant, &'static str)> = None;
    // The daemon ends at the duration; this is only in case it cannot.
    let hard_end = (opts.request.duration_secs > 0)
        .then(|| Instant::now() + Duration::from_secs(opts.request.duration_secs + 10));
    let mut end: Option<SniffEnd> = None;
    let result = loop {
        if stopping.is_none() {
            let why = if stop.load(Ordering::Relaxed) {
                Some("interrupted")
            } else {
                cap.stopped
            };
            if let Some(why) = why {
                let _ = s.shutdown(std::net::Shutdown::Write);
                stopping = Some((Instant::now(), why));
            }
        }
        if let Some((t, _)) = stopping
            && t.elapsed() > Duration::from_secs(5)
        {
            break Ok(());
        }
        if hard_end.is_some_and(|h| Instant::now() > h) {
            break Ok(());
        }
        match s.read(&mut chunk) {
            Ok(0) => break Ok(()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => break Err(SniffError::from(ControlError::Io(e))),
        }
        let mut at = 0;
        let mut r = Ok(());
        loop {
            let (rec, n) = match super::decode_record(&buf[at..]) {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => {
                    r = Err(e.into());
                    break;
                }
            };
            at += n;
            match rec {
                StreamRecord::Frame(f) => {
                    if let Err(e) = cap.frame(f.ifindex, f.linktype, f.ts_ns, f.wire_len, f.data) {
                        r = Err(e);
                        break;
                    }
                }
                StreamRecord::End(e) => end = Some(e),
            }
        }
        buf.drain(..at);
        if let Err(e) = r.and_then(|_| cap.flush()) {
            break Err(e);
        }
        if end.is_some() {
            break Ok(());
        }
    };
    let flushed = cap.flush();
    result.and(flushed)?;
    let reason = match (stopping, &end) {
        (Some((_, why)), _) => why.to_string(),
        (None, Some(e)) => e.reason.clone(),
        (None, None) => "the daemon closed the stream".into(),
    };
    Ok(SniffSummary {
        frames: cap.frames,
        bytes: cap.bytes,
        dropped: end.as_ref().map_or(0, |e| e.dropped),
        reason,
        from_daemon: true,
    })
}

/// No daemon: a TPACKET_V3 ring of its own on the target's interfaces.
fn local(
    cfg: &Config,
    opts: &SniffOptions,
    stop: &AtomicBool,
    why: &str,
) -> Result<SniffSummary, SniffError> {
    use crate::capture::Source;
    use crate::capture::tpacket::{IfaceFilter, TpacketSource};
    let req = &opts.request;
    let attribution = if req.interface.is_none() && cfg.attribution.enabled {
        let mut ac = cfg.attribution.clone();
        ac.replay_interfaces.clear();
        let a = crate::k8s::Attribution::start(&ac)?;
        a.wait_synced(Duration::from_secs(30));
        Some(a)
    } else {
        None
    };
    let snap = attribution.as_ref().map(|a| a.snapshot());
    let (target, ifaces) = resolve(req, snap.as_deref(), &crate::capture::iface::list())
        .map_err(SniffError::Target)?;
    let filter = crate::filter::Filter::parse(&req.filter)?;
    let mut tcfg = cfg.capture.tpacket.clone();
    // A sniff's own ring: small (a few blocks), whole frames unless asked.
    tcfg.block_count = tcfg.block_count.min(8);
    if req.snaplen > 0 {
        tcfg.snaplen = req.snaplen.max(128);
    }
    let mut src = TpacketSource::open(
        &tcfg,
        &IfaceFilter::Only(ifaces.iter().map(|i| i.ifindex).collect()),
        None,
    )?;
    (opts.on_ready)(&format!(
        "{why}; capturing {target} on its own (TPACKET_V3 on {})",
        ifaces
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let header = SniffHeader {
        node: crate::k8s::node_name(&cfg.attribution),
        target,
        filter: req.filter.clone(),
        interfaces: ifaces,
    };
    let mut cap = Capture::create(opts, &header)?;
    let mut defrag = crate::packet::Defragmenter::new(super::tap::NO_DEFRAG);
    let deadline = Instant::now()
        + Duration::from_secs(match req.duration_secs {
            0 => cfg.control.max_sniff_secs,
            d => d,
        });
    let count = if req.count == 0 { u64::MAX } else { req.count };
    let snaplen = if req.snaplen == 0 {
        usize::MAX
    } else {
        req.snaplen as usize
    };
    let mut err: Option<SniffError> = None;
    let reason = loop {
        if stop.load(Ordering::Relaxed) {
            break "interrupted";
        }
        if Instant::now() >= deadline {
            break "duration";
        }
        if cap.frames >= count {
            break "count";
        }
        if let Some(why) = cap.stopped {
            break why;
        }
        let n = src
            .next_batch(256, |f| {
                if err.is_some() || cap.stopped.is_some() || cap.frames >= count {
                    return;
                }
                if !super::tap::matches(&filter, &mut defrag, f) {
                    return;
                }
                let data = &f.data[..f.data.len().min(snaplen)];
                let lt = super::tap::linktype_of(f.link);
                if let Err(e) = cap.frame(f.obs, lt, f.ts.as_nanos(), f.wire_len, data) {
                    err = Some(e);
                }
            })?
            .unwrap_or(0);
        if let Some(e) = err.take() {
            return Err(e);
        }
        cap.flush()?;
        if n == 0 {
            let _ = src.wait(100);
        }
    };
    cap.flush()?;
    src.refresh_kernel_stats();
    Ok(SniffSummary {
        frames: cap.frames,
        bytes: cap.bytes,
        dropped: src.stats().dropped,
        reason: reason.into(),
        from_daemon: false,
    })
}

/// What a request names: a description and its observation points.
pub fn resolve(
    req: &SniffRequest,
    snap: Option<&Snapshot>,
    links: &[Iface],
) -> Result<(String, Vec<SniffIface>), String> {
    let label = |ifindex: u32| {
        snap.and_then(|s| s.obs(ifindex))
            .map(|p| super::server::pod_label(p))
    };
    let chosen = [
        req.pod.is_some(),
        req.selector.is_some(),
        req.interface.is_some(),
    ]
    .iter()
    .filter(|&&b| b)
    .count();
    if chosen != 1 {
        return Err("name exactly one of a pod, a label selector or an interface".into());
    }
    let iface = |ifindex: u32, name: &str| SniffIface {
        ifindex,
        name: name.into(),
        pod: label(ifindex),
        linktype: linktype_of_iface(name),
    };
    if let Some(name) = &req.interface {
        let i = links
            .iter()
            .find(|i| &i.name == name)
            .ok_or_else(|| format!("no interface named {name:?} on this node"))?;
        return Ok((format!("interface {name}"), vec![iface(i.ifindex, name)]));
    }
    let Some(snap) = snap else {
        return Err("pod attribution is off (attribution.enabled): name an --interface".into());
    };
    let pods: Vec<&Arc<crate::k8s::PodMeta>> = if let Some(pod) = &req.pod {
        let (ns, name) = match (pod.split_once('/'), &req.namespace) {
            (Some((ns, n)), _) => (Some(ns), n),
            (None, Some(ns)) => (Some(ns.as_str()), pod.as_str()),
            (None, None) => (None, pod.as_str()),
        };
        let found: Vec<_> = snap
            .pods()
            .iter()
            .filter(|p| {
                (p.name.as_deref() == Some(name) || p.netns_name.as_deref() == Some(name))
                    && ns.is_none_or(|ns| p.namespace.as_deref() == Some(ns))
            })
            .collect();
        if found.len() > 1 {
            let names: Vec<String> = found.iter().map(|p| super::server::pod_label(p)).collect();
            return Err(format!(
                "{} pods are named {name:?} ({}): add --namespace",
                found.len(),
                names.join(", ")
            ));
        }
        found
    } else {
        let sel = parse_selector(req.selector.as_deref().unwrap_or_default())?;
        snap.pods()
            .iter()
            .filter(|p| sel.matches(p.labels()))
            .collect()
    };
    let what = match (&req.pod, &req.selector) {
        (Some(p), _) => match &req.namespace {
            Some(ns) if !p.contains('/') => format!("pod {ns}/{p}"),
            _ => format!("pod {p}"),
        },
        (_, Some(s)) => format!("pods -l {s}"),
        _ => unreachable!("one target checked above"),
    };
    if pods.is_empty() {
        return Err(format!("no {what} on this node"));
    }
    let mut out: Vec<SniffIface> = Vec::new();
    for p in &pods {
        for (ifindex, name) in &p.host_ifaces {
            if !out.iter().any(|i| i.ifindex == *ifindex) {
                out.push(iface(*ifindex, name));
            }
        }
    }
    if out.is_empty() {
        return Err(format!(
            "{what} has no interface on this node (hostNetwork pods share the node's: name an --interface)"
        ));
    }
    Ok((what, out))
}

/// pcap link type of an interface, from its ARPHRD type in sysfs.
fn linktype_of_iface(name: &str) -> u16 {
    match std::fs::read_to_string(format!("/sys/class/net/{name}/type"))
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
    {
        // ARPHRD_NONE (tun, wireguard): raw IP.
        Some(65534) => 101,
        _ => 1,
    }
}

/// A label selector as kubectl writes it: `app=web,tier!=db,env in (a,b),!legacy,gpu`.
pub fn parse_selector(s: &str) -> Result<LabelSelector, String> {
    let mut sel = LabelSelector::default();
    // Split on commas outside parentheses.
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    let bad = |p: &str| format!("label selector: cannot read {p:?}");
    for p in parts.iter().map(|p| p.trim()) {
        if p.is_empty() {
            return Err(bad(p));
        }
        let set = |rest: &str| -> Result<Vec<String>, String> {
            let inner = rest
                .trim()
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(|| bad(p))?;
            Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
        };
        let req = |key: &str, operator, values| Requirement {
            key: key.trim().into(),
            operator,
            values,
        };
        if let Some((k, v)) = p.split_once("!=") {
            sel.match_expressions
                .push(req(k, Operator::NotIn, vec![v.trim().into()]));
        } else if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
            sel.match_labels.insert(k.trim().into(), v.trim().into());
        } else if let Some((k, rest)) = p.split_once(" notin ") {
            sel.match_expressions
                .push(req(k, Operator::NotIn, set(rest)?));
        } else if let Some((k, rest)) = p.split_once(" in ") {
            sel.match_expressions.push(req(k, Operator::In, set(rest)?));
        } else if let Some(k) = p.strip_prefix('!') {
            sel.match_expressions
                .push(req(k, Operator::DoesNotExist, vec![]));
        } else if !p.contains(char::is_whitespace) {
            sel.match_expressions.push(req(p, Operator::Exists, vec![]));
        } else {
            return Err(bad(p));
        }
    }
    sel.validate()
        .map_err(|(k, m)| format!("label selector: {k}: {m}"))?;
    Ok(sel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_as_kubectl_writes_them() {
        let s = parse_selector("app=web, tier!=db,env in (a, b),!legacy,gpu").unwrap();
        let labels = |v: &[(&'static str, &'static str)]| v.to_vec();
        let ok = labels(&[("app", "web"), ("env", "b"), ("gpu", "1")]);
        assert!(s.matches(ok.iter().copied()));
        let wrong_env = labels(&[("app", "web"), ("env", "c"), ("gpu", "1")]);
        assert!(!s.matches(wrong_env.iter().copied()));
        let legacy = labels(&[("app", "web"), ("env", "a"), ("gpu", "1"), ("legacy", "")]);
        assert!(!s.matches(legacy.iter().copied()));
        assert!(parse_selector("").is_err());
        assert!(parse_selector("a b c").is_err());
        assert!(parse_selector("env in a").is_err());
    }

    #[test]
    fn exactly_one_target() {
        let links = [Iface {
            name: "lo".into(),
            ifindex: 1,
        }];
        let none = SniffRequest::default();
        assert!(resolve(&none, None, &links).is_err());
        let both = SniffRequest {
            pod: Some("a".into()),
            interface: Some("lo".into()),
            ..Default::default()
        };
        assert!(resolve(&both, None, &links).is_err());
        let lo = SniffRequest {
            interface: Some("lo".into()),
            ..Default::default()
        };
        let (what, ifs) = resolve(&lo, None, &links).unwrap();
        assert_eq!((what.as_str(), ifs[0].ifindex), ("interface lo", 1));
        let pod = SniffRequest {
            pod: Some("web".into()),
            ..Default::default()
        };
        let e = resolve(&pod, None, &links).unwrap_err();
        assert!(e.contains("attribution"), "{e}");
        let snap = Snapshot::default();
        let e = resolve(&pod, Some(&snap), &links).unwrap_err();
        assert_eq!(e, "no pod web on this node");
    }
}
