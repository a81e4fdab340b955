//! One attempt of each kind of check: HTTP GET, TCP connect, ICMP echo, a Kubernetes API
//! request. A failure is a [`Failure`]: its `type` (the error counter's label) and a
//! message for `/alive`.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;
use tokio::io::unix::AsyncFd;

/// Why an attempt failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// `timeout`, `refused`, `reset`, `unreachable`, `dns`, `tls`, `http_status`,
    /// `connect`, `icmp_socket`, `config`, `other`.
    pub kind: &'static str,
    pub message: String,
}

impl Failure {
    pub fn new(kind: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
        }
    }

    /// Classify an error by its chain of sources: the innermost I/O error says what the
    /// network did, a resolver or TLS failure says so in its message or type.
    pub fn classify(e: &(dyn std::error::Error + 'static)) -> Failure {
        let message = chain(e);
        let mut at: Option<&(dyn std::error::Error + 'static)> = Some(e);
        let mut kind = "other";
        while let Some(err) = at {
            let text = err.to_string();
            if text.contains("dns error") || text.contains("failed to lookup address") {
                kind = "dns";
                break;
            }
            if err.downcast_ref::<rustls::Error>().is_some() {
                kind = "tls";
                break;
            }
            if let Some(io) = err.downcast_ref::<std::io::Error>() {
                if let Some(k) = io_kind(io) {
                    kind = k;
                    break;
                }
                // An I/O error may wrap the real cause (a TLS alert, a resolver error).
                if let Some(inner) = io.get_ref() {
                    at = Some(inner);
                    continue;
                }
            }
            at = err.source();
        }
        Failure { kind, message }
    }
}

/// The failure type of an I/O error that says what the network did.
pub fn io_kind(e: &std::io::Error) -> Option<&'static str> {
    use std::io::ErrorKind as K;
    Some(match e.kind() {
        K::ConnectionRefused => "refused",
        K::TimedOut => "timeout",
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => "reset",
        K::HostUnreachable | K::NetworkUnreachable | K::AddrNotAvailable => "unreachable",
        _ => return None,
    })
}

/// `e: its source: its source ...`, each said once.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut at = e.source();
    while let Some(s) = at {
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        at = s.source();
    }
    out
}

pub type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// A client for HTTP checks: a new connection per attempt (no idle pool), so every
/// attempt resolves, connects and, for https, shakes hands; the system's CA roots.
pub fn http_client() -> HttpClient {
    let mut roots = rustls::RootCertStore::empty();
    // Unreadable or missing roots leave https checks failing with `tls`, counted.
    for c in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(c);
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(connector)
}

/// Bytes of a response body read; the rest is left unread (the connection is closed).
const MAX_BODY: usize = 64 * 1024;

/// GET `uri`: 2xx and 3xx succeed.
pub async fn http_get(client: &HttpClient, uri: &http::Uri) -> Result<(), Failure> {
    let req = http::Request::get(uri.clone())
        .header(http::header::USER_AGENT, "podtap-probe")
        .body(Empty::new())
        .map_err(|e| Failure::new("config", e.to_string()))?;
    let resp = client
        .request(req)
        .await
        .map_err(|e| Failure::classify(&e))?;
    let status = resp.status();
    // Read (a bounded part of) the body: a server that answers its head and then stalls
    // is not healthy. Past the bound it is only left unread.
    if let Err(e) = Limited::new(resp.into_body(), MAX_BODY).collect().await
        && e.downcast_ref::<http_body_util::LengthLimitError>()
            .is_none()
    {
        return Err(Failure::classify(&*e));
    }
    if status.is_success() || status.is_redirection() {
        Ok(())
    } else {
        Err(Failure::new("http_status", format!("HTTP {status}")))
    }
}

/// Resolve `host:port` with the system resolver; the first address.
pub async fn resolve(host_port: &str) -> Result<SocketAddr, Failure> {
    if let Ok(a) = host_port.parse() {
        return Ok(a);
    }
    let mut addrs = tokio::net::lookup_host(host_port)
        .await
        .map_err(|e| Failure::new("dns", format!("{host_port}: {e}")))?;
    addrs
        .next()
        .ok_or_else(|| Failure::new("dns", format!("{host_port}: no address")))
}

/// Connect to `host_port` and close.
pub async fn tcp_connect(host_port: &str) -> Result<(), Failure> {
    let addr = resolve(host_port).await?;
    match tokio::net::TcpStream::connect(addr).await {
        Ok(_) => Ok(()),
        Err(e) => Err(Failure::new(
            io_kind(&e).unwrap_or("connect"),
            format!("{addr}: {e}"),
        )),
    }
}

/// GET `path` from the API server `client` talks to; any 2xx succeeds.
pub async fn kube_get(client: &kube::Client, path: &str) -> Result<(), Failure> {
    let req = http::Request::get(path)
        .body(Vec::new())
        .map_err(|e| Failure::new("config", e.to_string()))?;
    match client.request_text(req).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) => Err(Failure::new(
            "http_status",
            format!("HTTP {}: {}", s.code, s.message),
        )),
        Err(e) => Err(Failure::classify(&e)),
    }
}

/// Resolve `name` with the DNS server at `server`: an A query, then AAAA when it has no
/// IPv4 address; the first address answered. NXDOMAIN, SERVFAIL and the like fail as
/// `dns`, as does an answer without an address.
pub async fn dns_lookup(server: SocketAddr, name: &str) -> Result<IpAddr, Failure> {
    let sock = tokio::net::UdpSocket::bind(if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    })
    .await
    .map_err(|e| Failure::new("connect", e.to_string()))?;
    // The name does not resolve, whatever keeps the server from answering.
    let io = |e: std::io::Error| Failure::new("dns", format!("DNS server {server}: {e}"));
    sock.connect(server).await.map_err(io)?;
    // A query id that differs from query to query (answers to older ones are ignored).
    let id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos()) as u16;
    for qtype in [1u16, 28] {
        let q = dns_query(id, name, qtype)?;
        sock.send(&q).await.map_err(io)?;
        let mut buf = [0u8; 1500];
        loop {
            let n = sock.recv(&mut buf).await.map_err(io)?;
            match dns_answer(&buf[..n], id, qtype) {
                Some(Ok(Some(ip))) => return Ok(ip),
                Some(Ok(None)) => break,
                Some(Err(f)) => return Err(f),
                // Not the answer to this query.
                None => continue,
            }
        }
    }
    Err(Failure::new("dns", format!("{name}: no address")))
}

/// A recursive query for `name`, type `qtype`, class IN.
fn dns_query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, Failure> {
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(Failure::new("config", format!("{name:?}: not a DNS name")));
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    Ok(q)
}

/// The answer `msg` to query `id` of type `qtype`: its first address (`Ok(None)`: no
/// address of that type), a failure for an error code; `None` when `msg` is not the
/// response to that query or cannot be read.
fn dns_answer(msg: &[u8], id: u16, qtype: u16) -> Option<Result<Option<IpAddr>, Failure>> {
    let be16 = |at: usize| Some(u16::from_be_bytes([*msg.get(at)?, *msg.get(at + 1)?]));
    if msg.len() < 12 || be16(0)? != id || msg[2] & 0x80 == 0 {
        return None;
    }
    let rcode = msg[3] & 0x0f;
    if rcode != 0 {
        let what = match rcode {
            2 => "SERVFAIL".to_string(),
            3 => "NXDOMAIN".to_string(),
            5 => "REFUSED".to_string(),
            r => format!("rcode {r}"),
        };
        return Some(Err(Failure::new("dns", what)));
    }
    let (qd, an) = (be16(4)?, be16(6)?);
    let mut at = 12;
    for _ in 0..qd {
        at = skip_name(msg, at)? + 4;
    }
    for _ in 0..an {
        at = skip_name(msg, at)?;
        let (ty, len) = (be16(at)?, usize::from(be16(at + 8)?));
        let data = msg.get(at + 10..at + 10 + len)?;
        at += 10 + len;
        match (ty, qtype, data.len()) {
            (1, 1, 4) => return Some(Ok(Some(IpAddr::from(<[u8; 4]>::try_from(data).ok()?)))),
            (28, 28, 16) => {
                return Some(Ok(Some(IpAddr::from(<[u8; 16]>::try_from(data).ok()?))));
            }
            // CNAMEs and the like come before the address.
            _ => {}
        }
    }
    Some(Ok(None))
}

/// The offset after the (possibly compressed) name at `at`.
fn skip_name(msg: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *msg.get(at)?;
        match len {
            0 => return Some(at + 1),
            l if l & 0xc0 == 0xc0 => return Some(at + 2),
            l => at += 1 + usize::from(l),
        }
    }
}

/// Echo requests told apart from other processes' (and other targets') by this
/// identifier (raw sockets see every echo reply) and a per-process token in the payload.
fn ident() -> u16 {
    std::process::id() as u16
}

/// One ICMP echo to `ip`: a reply with our identifier, sequence number and payload.
pub async fn icmp_echo(ip: IpAddr, seq: u16) -> Result<(), Failure> {
    let (fd, raw) = icmp_socket(ip)?;
    // SAFETY: the OwnedFd is moved in and stays open, the same descriptor, until the
    // AsyncFd drops it.
    let fd =
        unsafe { AsyncFd::register(fd) }.map_err(|e| Failure::new("icmp_socket", e.to_string()))?;
    let token = (std::process::id() as u64) << 16 | u64::from(seq);
    let mut req = [0u8; 24];
    req[0] = if ip.is_ipv4() { 8 } else { 128 };
    req[4..6].copy_from_slice(&ident().to_be_bytes());
    req[6..8].copy_from_slice(&seq.to_be_bytes());
    req[8..16].copy_from_slice(&token.to_be_bytes());
    req[16..24].copy_from_slice(b"podtap\0\0");
    if ip.is_ipv4() {
        // ICMPv6 checksums are computed by the kernel (it knows the pseudo-header).
        let sum = checksum(&req);
        req[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    let dest = sockaddr(ip);
    // SAFETY: `req` and `dest` outlive the call; lengths are theirs.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            req.as_ptr().cast(),
            req.len(),
            0,
            (&raw const dest.0).cast(),
            dest.1,
        )
    };
    if sent < 0 {
        let e = std::io::Error::last_os_error();
        return Err(Failure::new(
            io_kind(&e).unwrap_or("connect"),
            format!("{ip}: {e}"),
        ));
    }
    let mut buf = [0u8; 1500];
    loop {
        let mut guard = fd
            .readable()
            .await
            .map_err(|e| Failure::new("icmp_socket", e.to_string()))?;
        // SAFETY: `buf` is writable for its length.
        let n = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::WouldBlock {
                guard.clear_ready();
                continue;
            }
            return Err(Failure::new(
                io_kind(&e).unwrap_or("connect"),
                format!("{ip}: {e}"),
            ));
        }
        let mut msg = &buf[..n as usize];
        // A raw IPv4 socket hands over the IP header too.
        if raw && ip.is_ipv4() {
            let ihl = usize::from(msg.first().map_or(0, |b| b & 0x0f)) * 4;
            msg = msg.get(ihl..).unwrap_or(&[]);
        }
        let reply = if ip.is_ipv4() { 0 } else { 129 };
        // Datagram sockets rewrite the identifier to their own (the kernel matches it).
        let ours = msg.len() >= 24
            && msg[0] == reply
            && (!raw || msg[4..6] == ident().to_be_bytes())
            && msg[6..8] == seq.to_be_bytes()
            && msg[8..16] == token.to_be_bytes();
        if ours {
            return Ok(());
        }
    }
}

/// A non-blocking ICMP socket connected to `ip` (so only its packets are received): a
/// datagram socket where `net.ipv4.ping_group_range` allows it, else a raw one. Returns
/// whether it is raw.
fn icmp_socket(ip: IpAddr) -> Result<(OwnedFd, bool), Failure> {
    let (domain, proto) = match ip {
        IpAddr::V4(_) => (libc::AF_INET, libc::IPPROTO_ICMP),
        IpAddr::V6(_) => (libc::AF_INET6, libc::IPPROTO_ICMPV6),
    };
    let mut last = None;
    for (ty, raw) in [(libc::SOCK_DGRAM, false), (libc::SOCK_RAW, true)] {
        // SAFETY: socket(2) with constant arguments; the descriptor is owned below.
        let fd =
            unsafe { libc::socket(domain, ty | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, proto) };
        if fd < 0 {
            last = Some(std::io::Error::last_os_error());
            continue;
        }
        // SAFETY: a descriptor just returned by socket(2), owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let dest = sockaddr(ip);
        // SAFETY: `dest` outlives the call; the length is its own.
        if unsafe { libc::connect(fd.as_raw_fd(), (&raw const dest.0).cast(), dest.1) } != 0 {
            let e = std::io::Error::last_os_error();
            return Err(Failure::new(
                io_kind(&e).unwrap_or("connect"),
                format!("{ip}: {e}"),
            ));
        }
        return Ok((fd, raw));
    }
    Err(Failure::new(
        "icmp_socket",
        format!(
            "no ICMP socket (datagram sockets need net.ipv4.ping_group_range, raw ones CAP_NET_RAW): {}",
            last.map_or_else(String::new, |e| e.to_string())
        ),
    ))
}

fn sockaddr(ip: IpAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match ip {
        IpAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&raw mut ss).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        IpAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: 0,
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&raw mut ss).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

/// The Internet checksum (RFC 1071).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        let word = u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Wait `d`, or less when `stop` fires first; false when stopped.
pub async fn sleep_or_stop(d: Duration, stop: &mut tokio::sync::watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => !*stop.borrow(),
        _ = stop.changed() => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_an_echo_request() {
        // type 8, code 0, checksum 0, id 1, seq 1: sum 0x0802, so !0x0802.
        let msg = [8, 0, 0, 0, 0, 1, 0, 1];
        assert_eq!(checksum(&msg), !0x0802u16);
        let mut with = msg;
        with[2..4].copy_from_slice(&checksum(&msg).to_be_bytes());
        assert_eq!(checksum(&with), 0);
    }

    #[test]
    fn dns_answers_are_read() {
        let q = dns_query(0x1234, "kubernetes.default.svc", 1).unwrap();
        assert_eq!(&q[12..31], b"\x0akubernetes\x07default");
        // The response: the question, a CNAME, then the address (names compressed).
        let mut r = q.clone();
        r[2] = 0x81;
        r[3] = 0x80;
        r[7] = 2;
        r.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 30, 0, 2, 0xc0, 12]);
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 10, 96, 0, 1]);
        let ip = dns_answer(&r, 0x1234, 1).unwrap().unwrap();
        assert_eq!(ip, Some("10.96.0.1".parse().unwrap()));
        assert!(
            dns_answer(&r, 0x1235, 1).is_none(),
            "another query's answer"
        );
        assert_eq!(dns_answer(&r, 0x1234, 28).unwrap().unwrap(), None);
        let mut nx = q.clone();
        nx[2] = 0x81;
        nx[3] = 0x83;
        assert_eq!(
            dns_answer(&nx, 0x1234, 1).unwrap().unwrap_err().message,
            "NXDOMAIN"
        );
        // Cut anywhere: never a panic.
        for n in 0..r.len() {
            let _ = dns_answer(&r[..n], 0x1234, 1);
        }
    }

    #[test]
    fn io_errors_are_classified() {
        let e = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(Failure::classify(&e).kind, "refused");
        let wrapped = std::io::Error::other(std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert_eq!(Failure::classify(&wrapped).kind, "timeout");
        let other = std::io::Error::other("dns error: failed to lookup address information");
        assert_eq!(Failure::classify(&other).kind, "dns");
    }
}
