//! The client side: connecting to the daemon, and `podtap status`.

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use super::{ControlError, Reply, Request, Status};

/// Longest reply line a client reads (a status of a node with many interfaces is a few
/// hundred KiB at most).
pub const MAX_REPLY_BYTES: usize = 16 << 20;

/// Connect to the daemon's socket. No socket, or nobody listening: [`ControlError::NoDaemon`].
pub fn connect(path: &str) -> Result<UnixStream, ControlError> {
    UnixStream::connect(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
            ControlError::NoDaemon { path: path.into() }
        }
        io::ErrorKind::PermissionDenied => ControlError::Denied { path: path.into() },
        _ => ControlError::Socket {
            path: path.into(),
            source: e,
        },
    })
}

/// Send `req` and read the reply line. An error reply is [`ControlError::Refused`].
pub fn request(stream: &mut UnixStream, req: &Request) -> Result<Reply, ControlError> {
    let mut line = serde_json::to_vec(req).expect("plain enum serializes");
    line.push(b'\n');
    // A daemon that refuses the client answers and closes without reading: the reply
    // is still there to read when writing failed.
    let written = stream.write_all(&line);
    let reply = match super::read_line(stream, MAX_REPLY_BYTES) {
        Ok(Some(r)) => r,
        Ok(None) => {
            written?;
            return Err(ControlError::Protocol(
                "the daemon closed the connection".into(),
            ));
        }
        Err(e) => {
            written?;
            return Err(e.into());
        }
    };
    let r: Reply = serde_json::from_slice(&reply)
        .map_err(|e| ControlError::Protocol(format!("reply: {e}")))?;
    if !r.ok {
        return Err(ControlError::Refused(r.error.unwrap_or_default()));
    }
    Ok(r)
}

/// `podtap status`: the daemon's status.
pub fn status(path: &str) -> Result<Status, ControlError> {
    let mut s = connect(path)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    request(&mut s, &Request::Status {})?
        .status
        .ok_or_else(|| ControlError::Protocol("status reply without a status".into()))
}

/// The status as a person reads it.
pub fn render(st: &Status) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "podtap {} (pid {}) on node {}, up {}",
        st.version,
        st.pid,
        st.node,
        uptime(st.uptime_secs)
    );
    let _ = writeln!(o, "\ninterfaces ({}):", st.interfaces.len());
    for i in &st.interfaces {
        let _ = writeln!(
            o,
            "  {:<16} ifindex {:<5} {:<8} {:>10} frames {:>14} bytes  {}  ({})",
            i.name,
            i.ifindex,
            i.engine,
            i.frames,
            i.bytes,
            i.pod.as_deref().unwrap_or("-"),
            i.reason
        );
    }
    if let Some(m) = &st.mirror {
        let _ = writeln!(o, "  mirror capture device: {m}");
    }
    let count = |e: &str| {
        st.workers
            .iter()
            .filter(|w| w.active && w.engine == e)
            .count()
    };
    let _ = writeln!(
        o,
        "\nengines: tpacket {} workers, xdp {} workers",
        count("tpacket"),
        count("xdp")
    );
    let _ = writeln!(o, "workers:");
    for w in &st.workers {
        let _ = writeln!(
            o,
            "  queue {:<3} {:<8} {:<8} received {:>12} kernel_dropped {:>8} ring_full {:>6} \
             filtered {:>10} malformed {:>6} records_dropped {:>6} open_flows {:>7}",
            w.queue,
            w.engine,
            if w.active { "active" } else { "idle" },
            w.received,
            w.kernel_dropped,
            w.ring_full,
            w.filtered,
            w.malformed,
            w.records_dropped,
            w.open_flows
        );
    }
    let d = &st.drops;
    let _ = writeln!(
        o,
        "\ndrops: kernel {} (ring full {}), records {}",
        d.kernel, d.ring_full, d.records
    );
    let e = &st.export;
    if e.enabled {
        let _ = writeln!(
            o,
            "export: {}{}, spans sampled {} exported {} dropped {}, data points exported {} dropped {}{}",
            if e.ready { "ready" } else { "not ready" },
            if e.failing { ", FAILING" } else { "" },
            e.spans_sampled,
            e.spans_exported,
            e.spans_dropped,
            e.points_exported,
            e.points_dropped,
            e.prometheus
                .as_deref()
                .map(|a| format!(", /metrics on {a}"))
                .unwrap_or_default()
        );
    } else {
        let _ = writeln!(o, "export: off (no OTLP, no Prometheus)");
    }
    let _ = writeln!(o, "sniffs active: {}", st.sniffs_active);
    for s in &st.sniffs {
        let _ = writeln!(
            o,
            "  {} (filter: {}) for {}: {} frames sent, {} dropped",
            s.target,
            if s.filter.is_empty() {
                "none"
            } else {
                &s.filter
            },
            uptime(s.secs),
            s.frames,
            s.dropped
        );
    }
    o
}

fn uptime(s: u64) -> String {
    match s {
        s if s >= 86400 => format!("{}d {}h", s / 86400, s % 86400 / 3600),
        s if s >= 3600 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m {}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// `podtap top`: one snapshot of the busiest pods, call edges and endpoints.
pub fn top(
    path: &str,
    q: &crate::stats::top::TopQuery,
) -> Result<crate::stats::top::TopSnapshot, ControlError> {
    let mut s = connect(path)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    request(&mut s, &Request::Top(q.clone()))?
        .top
        .ok_or_else(|| ControlError::Protocol("top reply without a snapshot".into()))
}
