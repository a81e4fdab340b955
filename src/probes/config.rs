//! `[probes]`: which targets the health probes check, how often, and when one is down.

use serde::Deserialize;
use std::time::Duration;

/// `[probes]`. Off by default.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ProbesConfig {
    /// Run the health probes. Needs `export.prometheus.listen`: `/alwayshappy`, which
    /// other nodes' instances probe, and `/alive` are served there. Default false.
    pub enabled: bool,
    /// Milliseconds between two attempts at one target, for targets that do not set
    /// their own `period_ms`. Default 10000.
    pub period_ms: u64,
    /// An attempt that has not succeeded within this many milliseconds fails with type
    /// `timeout` (targets may set their own `timeout_ms`; at most the period). Default 2000.
    pub timeout_ms: u64,
    /// Consecutive failed attempts after which a target is reported down (targets may
    /// set their own `failure_threshold`); one success makes it up again. Default 3.
    pub failure_threshold: u32,
    /// Most targets probed: neighbours (`peers.max_neighbours`), the two API server
    /// checks, `urls` and `pods` together. A configuration that could exceed it is
    /// rejected. Default 64.
    pub max_targets: usize,
    /// Other nodes' podtap instances.
    pub peers: PeersConfig,
    /// The Kubernetes API server, directly and through cluster DNS.
    pub api_server: ApiServerConfig,
    /// Services or URLs checked with an HTTP GET (`[[probes.urls]]`). Default none.
    pub urls: Vec<UrlProbe>,
    /// Pods checked from the node with ICMP echo, TCP connect or HTTP GET
    /// (`[[probes.pods]]`). Default none.
    pub pods: Vec<PodProbe>,
}

impl Default for ProbesConfig {
    fn default() -> Self {
        ProbesConfig {
            enabled: false,
            period_ms: 10_000,
            timeout_ms: 2_000,
            failure_threshold: 3,
            max_targets: 64,
            peers: PeersConfig::default(),
            api_server: ApiServerConfig::default(),
            urls: Vec::new(),
            pods: Vec::new(),
        }
    }
}

/// How neighbours are found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Discovery {
    /// The pods of podtap's DaemonSet, listed from the Kubernetes API.
    #[default]
    Kubernetes,
    /// The `nodes` listed in the config.
    Static,
}

/// `[probes.peers]`: other nodes' instances, probed with an HTTP GET of `/alwayshappy`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PeersConfig {
    /// Probe neighbours at all. Default true.
    pub enabled: bool,
    /// Neighbours each instance probes: the next ones after its own node in the sorted
    /// node names, wrapping around (a ring), so with every node running podtap each node
    /// is probed by exactly this many others. Default 3.
    pub max_neighbours: usize,
    /// `kubernetes` (the pods matching `label_selector` in `namespace`, re-listed every
    /// `resync_secs`; each pod's node and address, one per node) or `static` (`nodes`).
    /// Default `kubernetes`.
    pub discovery: Discovery,
    /// The namespace of podtap's pods; empty: all namespaces. Default "podtap" (as in
    /// deploy/kubernetes).
    pub namespace: String,
    /// The label selector of podtap's pods. Default "app.kubernetes.io/name=podtap".
    pub label_selector: String,
    /// Seconds between two listings of podtap's pods. Default 60.
    pub resync_secs: u64,
    /// The port peers serve `/alwayshappy` on (with `kubernetes` discovery); 0: this
    /// instance's `export.prometheus.listen` port. Default 0.
    pub port: u16,
    /// `static` discovery: every node's instance, this node's included or not, as
    /// `{ node = "node-b", address = "10.0.0.2:9464" }`. Default none.
    pub nodes: Vec<StaticPeer>,
    /// Per-target overrides of `[probes]` `period_ms`, `timeout_ms`, `failure_threshold`.
    pub period_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub failure_threshold: Option<u32>,
}

impl Default for PeersConfig {
    fn default() -> Self {
        PeersConfig {
            enabled: true,
            max_neighbours: 3,
            discovery: Discovery::Kubernetes,
            namespace: "podtap".into(),
            label_selector: "app.kubernetes.io/name=podtap".into(),
            resync_secs: 60,
            port: 0,
            nodes: Vec::new(),
            period_ms: None,
            timeout_ms: None,
            failure_threshold: None,
        }
    }
}

/// One node's instance for `static` discovery.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StaticPeer {
    /// The node's name (as `attribution.kubernetes.node_name` or `NODE_NAME` gives it).
    pub node: String,
    /// `ip:port` or `host:port` its `/alwayshappy` is served on.
    pub address: String,
}

/// `[probes.api_server]`: `path` requested from the API server with podtap's Kubernetes
/// credentials (`attribution.kubernetes.kubeconfig`, else in-cluster), once at the
/// address the client is configured with (in a pod: `KUBERNETES_SERVICE_HOST`/`PORT`)
/// and once at `dns_name`, resolved by the system resolver each attempt.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ApiServerConfig {
    /// Probe the API server directly. Default true.
    pub direct: bool,
    /// Probe it through cluster DNS. Default true.
    pub dns: bool,
    /// The name resolved for the DNS check. Default "kubernetes.default.svc.cluster.local".
    pub dns_name: String,
    /// The port used with `dns_name`; 0: the direct address's port. Default 0.
    pub dns_port: u16,
    /// The DNS server (`ip` or `ip:port`) `dns_name` is resolved with (an A query, then
    /// AAAA, over UDP); the request then goes to the address it answers, with
    /// `dns_name` as the TLS server name. Empty: the system resolver. Default empty.
    pub dns_server: String,
    /// The path requested; any 2xx answer is a success. Default "/livez" (readable
    /// without special rights).
    pub path: String,
    pub period_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub failure_threshold: Option<u32>,
}

impl Default for ApiServerConfig {
    fn default() -> Self {
        ApiServerConfig {
            direct: true,
            dns: true,
            dns_name: "kubernetes.default.svc.cluster.local".into(),
            dns_port: 0,
            dns_server: String::new(),
            path: "/livez".into(),
            period_ms: None,
            timeout_ms: None,
            failure_threshold: None,
        }
    }
}

impl ApiServerConfig {
    /// `dns_server` as an address (port 53 when it names none).
    pub fn dns_server_addr(&self) -> Option<std::net::SocketAddr> {
        let s = self.dns_server.as_str();
        s.parse().ok().or_else(|| {
            s.parse::<std::net::IpAddr>()
                .ok()
                .map(|ip| std::net::SocketAddr::new(ip, 53))
        })
    }
}

/// `[[probes.urls]]`: a Service or URL checked with an HTTP GET; 2xx and 3xx succeed.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UrlProbe {
    /// Names the target in metrics and `/alive`; unique among the URLs.
    pub name: String,
    /// `http://` or `https://` (the system's CA roots).
    pub url: String,
    #[serde(default)]
    pub period_ms: Option<u64>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub failure_threshold: Option<u32>,
}

/// How a pod is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PodMethod {
    /// ICMP echo to `address` (an IP): a datagram ICMP socket where
    /// `net.ipv4.ping_group_range` allows it, else a raw one (`CAP_NET_RAW`).
    Icmp,
    /// TCP connect to `address` (`ip:port` or `host:port`).
    Tcp,
    /// HTTP GET of `address` (a URL); 2xx and 3xx succeed.
    Http,
}

impl PodMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            PodMethod::Icmp => "icmp",
            PodMethod::Tcp => "tcp",
            PodMethod::Http => "http",
        }
    }
}

/// `[[probes.pods]]`: a pod checked from the node.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PodProbe {
    /// Names the target in metrics and `/alive` (e.g. `shop/web-0`); unique with its
    /// method among the pods.
    pub name: String,
    pub method: PodMethod,
    /// An IP (`icmp`), `ip:port` or `host:port` (`tcp`), a URL (`http`).
    pub address: String,
    #[serde(default)]
    pub period_ms: Option<u64>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub failure_threshold: Option<u32>,
}

/// A target's schedule, its own settings over `[probes]`'s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub period: Duration,
    pub timeout: Duration,
    pub failure_threshold: u32,
}

impl ProbesConfig {
    pub fn timing(
        &self,
        period: Option<u64>,
        timeout: Option<u64>,
        threshold: Option<u32>,
    ) -> Timing {
        Timing {
            period: Duration::from_millis(period.unwrap_or(self.period_ms)),
            timeout: Duration::from_millis(timeout.unwrap_or(self.timeout_ms)),
            failure_threshold: threshold.unwrap_or(self.failure_threshold),
        }
    }

    /// Targets this configuration can probe at most at once.
    pub fn most_targets(&self) -> usize {
        let peers = if self.peers.enabled {
            self.peers.max_neighbours
        } else {
            0
        };
        peers
            + usize::from(self.api_server.direct)
            + usize::from(self.api_server.dns)
            + self.urls.len()
            + self.pods.len()
    }

    /// Checks serde cannot express; the error names the key under `probes.`.
    /// `prometheus_listen` is `export.prometheus.listen`, which enabled probes need.
    pub fn validate(&self, prometheus_listen: &str) -> Result<(), (String, String)> {
        let err = |k: String, m: String| Err((format!("probes.{k}"), m));
        // The rest is checked also when the probes are off: a mistake in the section
        // shows when it is written, not when the probes are turned on.
        if self.enabled && prometheus_listen.is_empty() {
            return err(
                "enabled".into(),
                "health probes need export.prometheus.listen: /alwayshappy and /alive are \
                 served there"
                    .into(),
            );
        }
        if self.max_targets == 0 {
            return err("max_targets".into(), "must be at least 1".into());
        }
        if self.most_targets() > self.max_targets {
            return err(
                "max_targets".into(),
                format!(
                    "{} targets configured (peers.max_neighbours, api_server, urls, pods) \
                     but max_targets is {}",
                    self.most_targets(),
                    self.max_targets
                ),
            );
        }
        let mut timings = vec![
            (
                String::new(),
                Some(self.period_ms),
                Some(self.timeout_ms),
                Some(self.failure_threshold),
            ),
            (
                "peers.".into(),
                self.peers.period_ms,
                self.peers.timeout_ms,
                self.peers.failure_threshold,
            ),
            (
                "api_server.".into(),
                self.api_server.period_ms,
                self.api_server.timeout_ms,
                self.api_server.failure_threshold,
            ),
        ];
        for (i, u) in self.urls.iter().enumerate() {
            timings.push((
                format!("urls[{i}]."),
                u.period_ms,
                u.timeout_ms,
                u.failure_threshold,
            ));
        }
        for (i, p) in self.pods.iter().enumerate() {
            timings.push((
                format!("pods[{i}]."),
                p.period_ms,
                p.timeout_ms,
                p.failure_threshold,
            ));
        }
        for (at, period, timeout, threshold) in timings {
            let t = self.timing(period, timeout, threshold);
            if t.period.is_zero() {
                return err(format!("{at}period_ms"), "must be at least 1".into());
            }
            if t.timeout.is_zero() || t.timeout > t.period {
                return err(
                    format!("{at}timeout_ms"),
                    format!(
                        "must be between 1 and the period ({} ms): attempts at one target never overlap",
                        t.period.as_millis()
                    ),
                );
            }
            if t.failure_threshold == 0 {
                return err(
                    format!("{at}failure_threshold"),
                    "must be at least 1".into(),
                );
            }
        }
        let p = &self.peers;
        if p.enabled {
            if p.max_neighbours == 0 {
                return err("peers.max_neighbours".into(), "must be at least 1".into());
            }
            match p.discovery {
                Discovery::Static => {
                    if p.nodes.is_empty() {
                        return err(
                            "peers.nodes".into(),
                            "static discovery needs the nodes' instances".into(),
                        );
                    }
                    for (i, n) in p.nodes.iter().enumerate() {
                        if n.node.is_empty() {
                            return err(format!("peers.nodes[{i}].node"), "empty".into());
                        }
                        if let Err(m) = host_port(&n.address) {
                            return err(format!("peers.nodes[{i}].address"), m);
                        }
                    }
                }
                Discovery::Kubernetes => {
                    if p.resync_secs == 0 {
                        return err("peers.resync_secs".into(), "must be at least 1".into());
                    }
                    if p.label_selector.is_empty() {
                        return err(
                            "peers.label_selector".into(),
                            "empty: it would make every pod a peer".into(),
                        );
                    }
                }
            }
        }
        let a = &self.api_server;
        if a.dns && a.dns_name.is_empty() {
            return err("api_server.dns_name".into(), "empty".into());
        }
        if a.dns && !a.dns_server.is_empty() && a.dns_server_addr().is_none() {
            return err(
                "api_server.dns_server".into(),
                format!("{:?}: not an ip or ip:port", a.dns_server),
            );
        }
        if (a.direct || a.dns) && !a.path.starts_with('/') {
            return err("api_server.path".into(), "must start with /".into());
        }
        let mut names = std::collections::HashSet::new();
        for (i, u) in self.urls.iter().enumerate() {
            if u.name.is_empty() || !names.insert(u.name.as_str()) {
                return err(format!("urls[{i}].name"), "empty or used twice".into());
            }
            if let Err(m) = http_uri(&u.url) {
                return err(format!("urls[{i}].url"), m);
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, p) in self.pods.iter().enumerate() {
            if p.name.is_empty() || !names.insert((p.name.as_str(), p.method)) {
                return err(
                    format!("pods[{i}].name"),
                    "empty or used twice with one method".into(),
                );
            }
            let checked = match p.method {
                PodMethod::Icmp => p
                    .address
                    .parse::<std::net::IpAddr>()
                    .map(drop)
                    .map_err(|_| "not an IP address".to_string()),
                PodMethod::Tcp => host_port(&p.address),
                PodMethod::Http => http_uri(&p.address).map(drop),
            };
            if let Err(m) = checked {
                return err(format!("pods[{i}].address"), m);
            }
        }
        Ok(())
    }
}

/// `host:port` (an IPv6 address in brackets).
pub fn host_port(s: &str) -> Result<(), String> {
    if s.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(());
    }
    match s.rsplit_once(':') {
        Some((host, port))
            if !host.is_empty() && !host.contains(':') && port.parse::<u16>().is_ok() =>
        {
            Ok(())
        }
        _ => Err(format!("{s:?}: not host:port")),
    }
}

/// An `http://` or `https://` URL with a host.
pub fn http_uri(s: &str) -> Result<http::Uri, String> {
    let u: http::Uri = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    match (u.scheme_str(), u.host()) {
        (Some("http" | "https"), Some(_)) => Ok(u),
        _ => Err(format!("{s:?}: not an http:// or https:// URL")),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    fn error(text: &str) -> String {
        Config::parse(text, Path::new("p.toml"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn off_by_default_and_the_embedded_section_is_the_default() {
        let cfg = Config::load(None).unwrap();
        assert!(!cfg.probes.enabled);
        assert_eq!(cfg.probes, super::ProbesConfig::default());
    }

    #[test]
    fn mistakes_name_the_key_and_the_file() {
        let listen = "[export.prometheus]\nlisten = \"127.0.0.1:9464\"\n";
        let e = error("[probes]\nenabled = true\n");
        assert!(e.contains("p.toml") && e.contains("probes.enabled"), "{e}");
        for (text, key) in [
            ("[probes.peers]\nbogus = 1\n", "probes.peers"),
            ("[probes]\ntimeout_ms = 20000\n", "probes.timeout_ms"),
            (
                "[[probes.pods]]\nname = \"a\"\nmethod = \"icmp\"\naddress = \"10.0.0.1:80\"\n",
                "probes.pods[0].address",
            ),
            (
                "[[probes.pods]]\nname = \"a\"\nmethod = \"ping\"\naddress = \"10.0.0.1\"\n",
                "probes.pods[0].method",
            ),
            (
                "[[probes.urls]]\nname = \"a\"\nurl = \"ftp://x/\"\n",
                "probes.urls[0].url",
            ),
            (
                "[[probes.urls]]\nname = \"a\"\nurl = \"http://x/\"\nfailure_threshold = 0\n",
                "probes.urls[0].failure_threshold",
            ),
            (
                "[probes.api_server]\ndns_server = \"dns.local\"\n",
                "probes.api_server.dns_server",
            ),
            (
                "[probes.peers]\ndiscovery = \"static\"\n",
                "probes.peers.nodes",
            ),
            (
                "[probes]\nmax_targets = 4\n[probes.peers]\nmax_neighbours = 3\n",
                "probes.max_targets",
            ),
        ] {
            let e = error(&format!("{listen}{text}"));
            assert!(e.contains("p.toml") && e.contains(key), "{text}: {e}");
        }
        let ok = format!(
            "{listen}[probes]\nenabled = true\n[probes.peers]\ndiscovery = \"static\"\n\
             nodes = [{{ node = \"a\", address = \"10.0.0.1:9464\" }}]\n\
             [[probes.pods]]\nname = \"a\"\nmethod = \"tcp\"\naddress = \"web.shop:80\"\n"
        );
        Config::parse(&ok, Path::new("p.toml")).unwrap();
    }
}
