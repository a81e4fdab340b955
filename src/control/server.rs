//! The daemon side of the control socket: binding it safely, checking who connects,
//! bounded request reading, and the handlers (`status`, `sniff`).

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::tap::{QueueBounds, TapHub};
use super::{
    ControlConfig, ControlError, Drops, ExportStatus, IfaceStatus, Reply, Request, SniffEnd,
    SniffHeader, SniffRequest, SniffStatus, Status, StreamFrame, WorkerStatus,
};
use crate::export::Exporter;
use crate::run::QueueStats;
use crate::stats::top::{self, History, TopQuery, TopSnapshot};

/// What the daemon shares with its control server: kept up to date by the control loop
/// (interfaces) and the workers (queue counters).
pub struct DaemonState {
    pub started: Instant,
    pub node: String,
    pub queues: Vec<Arc<QueueStats>>,
    /// Attached interfaces with their engine and why.
    pub interfaces: Mutex<Vec<IfaceStatus>>,
    pub mirror: Option<String>,
    pub hub: Arc<TapHub>,
    pub attributor: Option<crate::k8s::Attributor>,
    /// The flight recorder, when `[recorder]` is on.
    pub recorder: Option<Arc<crate::recorder::Recorder>>,
}

/// A bound control socket. Dropping it removes the socket file, if it is still ours.
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
    /// Device and inode of the socket we bound, so that exit never removes another
    /// daemon's socket that replaced it.
    ident: (u64, u64),
    cfg: ControlConfig,
    gid: Option<u32>,
}

impl Server {
    /// Bind `cfg.socket`: mode 0600 (root) or 0660 with `cfg.group`, the directory created
    /// 0750 when missing. A stale socket is replaced; `Ok(None)` when a live daemon
    /// already answers there (it keeps it).
    pub fn bind(cfg: &ControlConfig) -> Result<Option<Server>, ControlError> {
        let path = PathBuf::from(&cfg.socket);
        let err = |source| ControlError::Socket {
            path: cfg.socket.clone(),
            source,
        };
        let gid = if cfg.group.is_empty() {
            None
        } else {
            Some(group_id(&cfg.group).ok_or_else(|| ControlError::NoGroup(cfg.group.clone()))?)
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.exists()
        {
            std::fs::create_dir_all(dir).map_err(err)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750)).map_err(err)?;
            if let Some(g) = gid {
                chown(dir, g).map_err(err)?;
            }
        }
        match std::fs::symlink_metadata(&path) {
            Ok(m) => {
                use std::os::unix::fs::FileTypeExt;
                if !m.file_type().is_socket() {
                    return Err(err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        "exists and is not a socket; not replaced",
                    )));
                }
                if UnixStream::connect(&path).is_ok() {
                    return Ok(None);
                }
                // Nobody answers: a dead daemon's socket.
                std::fs::remove_file(&path).map_err(err)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(e)),
        }
        let listener = match UnixListener::bind(&path) {
            Ok(l) => l,
            // Another daemon bound it since the check above (two started at once): when it
            // answers, it serves and this one goes on without; it may need a moment between
            // its bind and its listen.
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                for _ in 0..50 {
                    if UnixStream::connect(&path).is_ok() {
                        return Ok(None);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                return Err(err(e));
            }
            Err(e) => return Err(err(e)),
        };
        // Bound with the process umask (others cannot connect: no write bit); narrowed now.
        let mode = if gid.is_some() { 0o660 } else { 0o600 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).map_err(err)?;
        if let Some(g) = gid {
            chown(&path, g).map_err(err)?;
        }
        listener.set_nonblocking(true).map_err(err)?;
        let m = std::fs::metadata(&path).map_err(err)?;
        Ok(Some(Server {
            listener,
            path,
            ident: (m.dev(), m.ino()),
            cfg: cfg.clone(),
            gid,
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accept and serve clients until `stop`; returns when every handler has ended.
    pub fn serve(&self, state: &DaemonState, export: Option<&Exporter>, stop: &AtomicBool) {
        let clients = AtomicUsize::new(0);
        let sniffs = AtomicUsize::new(0);
        let active = Mutex::new(Vec::new());
        let top_history = Mutex::new(History::default());
        let ctx = Ctx {
            top_history: &top_history,
            cfg: &self.cfg,
            gid: self.gid,
            state,
            export,
            stop,
            sniffs: &sniffs,
            active: &active,
        };
        std::thread::scope(|s| {
            while !stop.load(Ordering::Relaxed) {
                let mut pfd = libc::pollfd {
                    fd: self.listener.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: poll(2) on one valid pollfd.
                unsafe { libc::poll(&mut pfd, 1, 200) };
                let stream = match self.listener.accept() {
                    Ok((c, _)) => c,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => {
                        tracing::warn!("control socket accept: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                };
                // Blocking from here on, with timeouts (the listener's flag is inherited).
                if stream.set_nonblocking(false).is_err() {
                    continue;
                }
                if clients.load(Ordering::Relaxed) >= self.cfg.max_clients {
                    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
                    reply(
                        &stream,
                        &Reply::error(format!(
                            "busy: {} clients already (control.max_clients)",
                            self.cfg.max_clients
                        )),
                    );
                    continue;
                }
                clients.fetch_add(1, Ordering::Relaxed);
                let (ctx, clients) = (&ctx, &clients);
                let spawned = std::thread::Builder::new()
                    .name("podtap-control".into())
                    .spawn_scoped(s, move || {
                        ctx.handle(stream);
                        clients.fetch_sub(1, Ordering::Relaxed);
                    });
                if let Err(e) = spawned {
                    tracing::warn!("control: cannot start a handler: {e}");
                    clients.fetch_sub(1, Ordering::Relaxed);
                }
            }
        });
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.ident) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

struct Ctx<'a> {
    cfg: &'a ControlConfig,
    gid: Option<u32>,
    state: &'a DaemonState,
    export: Option<&'a Exporter>,
    stop: &'a AtomicBool,
    sniffs: &'a AtomicUsize,
    /// The sniffs being served, for `podtap status`.
    active: &'a Mutex<Vec<Arc<ActiveSniff>>>,
    /// Earlier `top` samples, for rates (taken only when a client asks).
    top_history: &'a Mutex<History>,
}

/// A sniff being served.
struct ActiveSniff {
    target: String,
    filter: String,
    started: Instant,
    frames: AtomicU64,
    dropped: AtomicU64,
}

impl Ctx<'_> {
    fn handle(&self, stream: UnixStream) {
        let _ = stream.set_write_timeout(Some(Duration::from_millis(self.cfg.request_timeout_ms)));
        match peer_cred(&stream) {
            Ok(c) if self.allowed(&c) => {}
            Ok(c) => {
                tracing::warn!(
                    uid = c.uid,
                    pid = c.pid,
                    "control: client refused (not root, not in control.group)"
                );
                reply(
                    &stream,
                    &Reply::error(format!(
                        "permission denied: uid {} is not root{}",
                        c.uid,
                        if self.gid.is_some() {
                            " nor in control.group"
                        } else {
                            ""
                        }
                    )),
                );
                return;
            }
            Err(e) => {
                tracing::warn!("control: cannot read the client's credentials: {e}");
                return;
            }
        }
        let deadline = Instant::now() + Duration::from_millis(self.cfg.request_timeout_ms);
        let mut r = DeadlineReader {
            stream: &stream,
            deadline,
        };
        let line = match super::read_line(&mut r, self.cfg.max_request_bytes) {
            Ok(Some(l)) => l,
            Ok(None) => return,
            Err(e) => {
                let msg = match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => format!(
                        "no whole request within {} ms (control.request_timeout_ms)",
                        self.cfg.request_timeout_ms
                    ),
                    _ => e.to_string(),
                };
                tracing::debug!("control: bad request: {msg}");
                reply(&stream, &Reply::error(msg));
                return;
            }
        };
        let req: Request = match serde_json::from_slice(&line) {
            Ok(r) => r,
            Err(e) => {
                reply(&stream, &Reply::error(format!("malformed request: {e}")));
                return;
            }
        };
        match req {
            Request::Status {} => {
                let st = self.status();
                reply(
                    &stream,
                    &Reply {
                        status: Some(st),
                        ..Reply::ok()
                    },
                );
            }
            Request::Sniff(s) => self.sniff(stream, s),
            Request::Top(q) => {
                let r = match self.top(&q) {
                    Ok(t) => Reply {
                        top: Some(t),
                        ..Reply::ok()
                    },
                    Err(e) => Reply::error(e),
                };
                reply(&stream, &r);
            }
            Request::Record(r) => {
                let answer = match &self.state.recorder {
                    None => Err("the flight recorder is off ([recorder] enabled = false)".into()),
                    Some(rec) => {
                        let snap = self.state.attributor.as_ref().map(|a| a.snapshot());
                        rec.trigger_request(&r, snap.as_deref())
                    }
                };
                match answer {
                    Ok(info) => {
                        tracing::info!(file = %info.file, "control: recording requested");
                        reply(
                            &stream,
                            &Reply {
                                recording: Some(info),
                                ..Reply::ok()
                            },
                        );
                    }
                    Err(e) => {
                        reply(&stream, &Reply::error(e));
                    }
                }
            }
        }
    }

    fn allowed(&self, c: &libc::ucred) -> bool {
        c.uid == 0 || self.gid.is_some_and(|g| c.gid == g || in_group(c.pid, g))
    }

    fn status(&self) -> Status {
        let st = self.state;
        let l = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let mut drops = Drops::default();
        let mut workers = Vec::new();
        for (i, q) in st.queues.iter().enumerate() {
            let w = WorkerStatus {
                queue: i,
                engine: q.engine.into(),
                active: q.active.load(Ordering::Relaxed),
                received: l(&q.received),
                kernel_dropped: l(&q.kernel_dropped),
                ring_full: l(&q.ring_full),
                filtered: l(&q.filtered),
                malformed: l(&q.malformed),
                records_dropped: l(&q.records_dropped),
                open_flows: l(&q.open_flows),
            };
            drops.kernel += w.kernel_dropped;
            drops.ring_full += w.ring_full;
            drops.records += w.records_dropped;
            workers.push(w);
        }
        let per = crate::run::iface_totals(&st.queues);
        let snap = st.attributor.as_ref().map(|a| a.snapshot());
        let mut interfaces = st
            .interfaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for i in &mut interfaces {
            i.pod = snap
                .as_ref()
                .and_then(|s| s.obs(i.ifindex))
                .map(|p| pod_label(p));
            if let Some(c) = per.iter().find(|c| c.ifindex == i.ifindex) {
                (i.frames, i.bytes) = (c.frames, c.bytes);
            }
        }
        let export = match self.export {
            Some(e) => {
                let t = e.totals();
                ExportStatus {
                    enabled: e.exports(),
                    ready: e.health().ready(),
                    failing: e.health().exporter_failing(),
                    prometheus: e.prometheus_addr.map(|a| a.to_string()),
                    spans_sampled: t.spans_sampled,
                    spans_exported: t.spans_exported,
                    spans_dropped: t.spans_dropped,
                    points_exported: t.points_exported,
                    points_dropped: t.points_dropped,
                }
            }
            None => ExportStatus::default(),
        };
        Status {
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            node: st.node.clone(),
            uptime_secs: st.started.elapsed().as_secs(),
            interfaces,
            mirror: st.mirror.clone(),
            workers,
            drops,
            export,
            sniffs_active: st.hub.active_count(),
            sniffs: self
                .active
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|a| SniffStatus {
                    target: a.target.clone(),
                    filter: a.filter.clone(),
                    secs: a.started.elapsed().as_secs(),
                    frames: a.frames.load(Ordering::Relaxed),
                    dropped: a.dropped.load(Ordering::Relaxed),
                })
                .collect(),
            recorder: st.recorder.as_ref().map(|r| r.status()),
        }
    }

    /// A `top` snapshot: the exporter's statistics now, with rates since an earlier
    /// sample. Computed here, on the handler's thread: the workers do nothing more.
    fn top(&self, q: &TopQuery) -> Result<TopSnapshot, String> {
        let Some(e) = self.export else {
            return Err(
                "no statistics: `podtap top` needs the daemon to keep them; set \
                 `control.top = true` (or export metrics: export.prometheus.listen, \
                 export.otlp.enabled)"
                    .into(),
            );
        };
        let window = q.window_secs.clamp(1, top::MAX_WINDOW_SECS);
        let limit = q.limit.clamp(1, self.cfg.max_top_rows);
        let now_totals = e.with_stats(top::Totals::from_store);
        let now = Instant::now();
        let mut h = self.top_history.lock().unwrap_or_else(|e| e.into_inner());
        let base = h.base(now, Duration::from_secs(window));
        let mut snap = top::snapshot(
            &now_totals,
            base.map(|(t, _)| t),
            base.map_or(0.0, |(_, age)| age.as_secs_f64()),
            &TopQuery {
                window_secs: window,
                limit,
                ..q.clone()
            },
        );
        h.push(now, &now_totals);
        snap.node = self.state.node.clone();
        snap.uptime_secs = self.state.started.elapsed().as_secs();
        Ok(snap)
    }

    fn sniff(&self, stream: UnixStream, req: SniffRequest) {
        // Counted before anything else, so concurrent requests cannot overshoot.
        if self.sniffs.fetch_add(1, Ordering::AcqRel) >= self.cfg.max_sniffs {
            self.sniffs.fetch_sub(1, Ordering::AcqRel);
            reply(
                &stream,
                &Reply::error(format!(
                    "busy: {} sniffs already (control.max_sniffs)",
                    self.cfg.max_sniffs
                )),
            );
            return;
        }
        self.sniff_counted(&stream, &req);
        self.sniffs.fetch_sub(1, Ordering::AcqRel);
    }

    fn sniff_counted(&self, stream: &UnixStream, req: &SniffRequest) {
        let filter = match crate::filter::Filter::parse(&req.filter) {
            Ok(f) => f,
            Err(e) => {
                reply(stream, &Reply::error(format!("filter: {e}")));
                return;
            }
        };
        let snap = self.state.attributor.as_ref().map(|a| a.snapshot());
        let (target, ifaces) =
            match super::sniff::resolve(req, snap.as_deref(), &crate::capture::iface::list()) {
                Ok(t) => t,
                Err(e) => {
                    reply(stream, &Reply::error(e));
                    return;
                }
            };
        // Only what the workers see can be handed over.
        let attached: Vec<u32> = self
            .state
            .interfaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|i| i.ifindex)
            .collect();
        if !ifaces.iter().any(|i| attached.contains(&i.ifindex)) {
            let names: Vec<&str> = ifaces.iter().map(|i| i.name.as_str()).collect();
            reply(
                stream,
                &Reply::error(format!(
                    "{target}: {} not captured by the daemon (capture.interfaces, \
                     attribution.selector)",
                    names.join(", ")
                )),
            );
            return;
        }
        let rx = self.state.hub.subscribe(
            ifaces.iter().map(|i| i.ifindex).collect(),
            filter,
            req.snaplen,
            QueueBounds {
                frames: self.cfg.max_sniff_queue_frames,
                bytes: self.cfg.max_sniff_queue_bytes,
            },
        );
        tracing::info!(target = %target, filter = %req.filter, "control: sniff started");
        let me = Arc::new(ActiveSniff {
            target: target.clone(),
            filter: req.filter.clone(),
            started: Instant::now(),
            frames: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
        self.active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(me.clone());
        // Unlisted however this ends.
        let _listed = Unlist(self.active, me.clone());
        let header = Reply {
            sniff: Some(SniffHeader {
                node: self.state.node.clone(),
                target,
                filter: req.filter.clone(),
                interfaces: ifaces,
            }),
            ..Reply::ok()
        };
        if !reply(stream, &header) {
            return;
        }
        let max_secs = match req.duration_secs {
            0 => self.cfg.max_sniff_secs,
            s => s.min(self.cfg.max_sniff_secs),
        };
        let deadline = Instant::now() + Duration::from_secs(max_secs);
        let mut out = Vec::with_capacity(1 << 20);
        let mut sent = 0u64;
        let count = if req.count == 0 { u64::MAX } else { req.count };
        let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
        let add = |f: super::tap::TapFrame, out: &mut Vec<u8>, sent: &mut u64| {
            super::encode_frame(
                out,
                &StreamFrame {
                    ifindex: f.obs,
                    linktype: f.linktype,
                    ts_ns: f.ts.as_nanos(),
                    wire_len: f.wire_len,
                    data: &f.data,
                },
            );
            *sent += 1;
        };
        let reason = loop {
            if sent >= count {
                break "count";
            }
            if self.stop.load(Ordering::Relaxed) {
                break "shutdown";
            }
            if Instant::now() >= deadline {
                break "duration";
            }
            let client_done = client_closed(stream);
            if let Some(f) = rx.recv_timeout(Duration::from_millis(50)) {
                add(f, &mut out, &mut sent);
                while sent < count && out.len() < (1 << 20) {
                    match rx.try_recv() {
                        Some(f) => add(f, &mut out, &mut sent),
                        None => break,
                    }
                }
            }
            if !out.is_empty() && !self.write_all(stream, &out) {
                break "client";
            }
            out.clear();
            me.frames.store(sent, Ordering::Relaxed);
            me.dropped.store(rx.dropped(), Ordering::Relaxed);
            // The client asked to stop (it shut its side): what was queued before has
            // been sent above.
            if client_done {
                break "client";
            }
        };
        let end = SniffEnd {
            frames: sent,
            dropped: rx.dropped(),
            reason: reason.into(),
        };
        drop(rx);
        tracing::info!(
            frames = end.frames,
            dropped = end.dropped,
            reason,
            "control: sniff ended"
        );
        out.clear();
        super::encode_end(&mut out, &end);
        let _ = self.write_all(stream, &out);
    }

    /// Write all of `buf`, waiting for a slow client (its queue fills meanwhile, the
    /// workers are not held up) until it is gone or the daemon stops.
    fn write_all(&self, mut stream: &UnixStream, buf: &[u8]) -> bool {
        let mut done = 0;
        while done < buf.len() {
            match stream.write(&buf[done..]) {
                Ok(0) => return false,
                Ok(n) => done += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    if self.stop.load(Ordering::Relaxed) {
                        return false;
                    }
                }
                Err(_) => return false,
            }
        }
        true
    }
}

/// Removes a sniff from the list when dropped.
struct Unlist<'a>(&'a Mutex<Vec<Arc<ActiveSniff>>>, Arc<ActiveSniff>);

impl Drop for Unlist<'_> {
    fn drop(&mut self) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|a| !Arc::ptr_eq(a, &self.1));
    }
}

/// Has the client shut its side (end of file) or gone?
fn client_closed(stream: &UnixStream) -> bool {
    let mut b = [0u8; 1];
    // SAFETY: recv(2) into a live one-byte buffer; MSG_PEEK leaves the data in place.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            b.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match n {
        0 => true,
        n if n > 0 => false,
        _ => {
            let e = io::Error::last_os_error();
            !matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            )
        }
    }
}

/// `namespace/name`, or what else names the pod.
pub fn pod_label(p: &crate::k8s::PodMeta) -> String {
    match (&p.namespace, &p.name, &p.netns_name) {
        (Some(ns), Some(n), _) => format!("{ns}/{n}"),
        (None, Some(n), _) => n.to_string(),
        (_, None, Some(n)) => n.to_string(),
        _ => p
            .ips
            .first()
            .map_or_else(|| "(unnamed)".into(), |ip| ip.to_string()),
    }
}

/// Send one reply line; false when the client is gone.
fn reply(mut stream: &UnixStream, r: &Reply) -> bool {
    let mut line = serde_json::to_vec(r).expect("plain structs serialize");
    line.push(b'\n');
    stream.write_all(&line).is_ok()
}

/// Reads that give up at a deadline for the whole request, not per read (a client
/// dribbling a byte at a time cannot hold a handler longer).
struct DeadlineReader<'a> {
    stream: &'a UnixStream,
    deadline: Instant,
}

impl Read for DeadlineReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        let mut s = self.stream;
        s.read(buf)
    }
}

/// The connecting process's pid, uid and gid (SO_PEERCRED: what it was when it
/// connected, set by the kernel, not claimed by the client).
pub fn peer_cred(s: &UnixStream) -> io::Result<libc::ucred> {
    let mut c = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt(2) writing at most `len` bytes into a live ucred.
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut c as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(c)
}

/// Is process `pid` in group `gid` (its supplementary groups, from /proc)?
fn in_group(pid: i32, gid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Groups:"))
            .is_some_and(|g| g.split_whitespace().any(|x| x.parse() == Ok(gid)))
    })
}

/// A group's id, by number or by name (getgrnam_r).
fn group_id(group: &str) -> Option<u32> {
    if let Ok(n) = group.parse() {
        return Some(n);
    }
    let name = std::ffi::CString::new(group).ok()?;
    // SAFETY: `group` is plain C data (integers and pointers): all-zero is a valid value.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0u8; 16384];
    let mut out: *mut libc::group = std::ptr::null_mut();
    // SAFETY: getgrnam_r(3) with a NUL-terminated name, a zeroed struct and a buffer of
    // the given size; on success `out` points at `grp`.
    let r = unsafe {
        libc::getgrnam_r(
            name.as_ptr(),
            &mut grp,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut out,
        )
    };
    (r == 0 && !out.is_null()).then_some(grp.gr_gid)
}

fn chown(path: &Path, gid: u32) -> io::Result<()> {
    std::os::unix::fs::chown(path, Some(0), Some(gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Daemons started at once on one socket path: one serves, the others go on without,
    /// none fails (a check-then-bind race made the late ones exit with "address in use").
    #[test]
    fn daemons_binding_at_once_leave_one_server_and_no_error() {
        let dir = tempfile::tempdir().unwrap();
        for round in 0..20 {
            let cfg = ControlConfig {
                socket: dir
                    .path()
                    .join(format!("c{round}.sock"))
                    .display()
                    .to_string(),
                ..Default::default()
            };
            let barrier = std::sync::Barrier::new(4);
            let got: Vec<_> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..4)
                    .map(|_| {
                        s.spawn(|| {
                            barrier.wait();
                            Server::bind(&cfg).map_err(|e| e.to_string())
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let servers = got.iter().filter(|r| matches!(r, Ok(Some(_)))).count();
            assert!(
                got.iter().all(|r| r.is_ok()),
                "round {round}: {:?}",
                got.iter()
                    .filter_map(|r| r.as_ref().err())
                    .collect::<Vec<_>>()
            );
            assert_eq!(servers, 1, "round {round}");
        }
    }
}
