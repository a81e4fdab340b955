//! Health probes (off by default, `[probes]`): each instance checks its neighbours'
//! instances (`/alwayshappy`), the Kubernetes API server directly and through cluster
//! DNS, configured URLs, and configured pods (ICMP echo, TCP connect, HTTP GET), and
//! reports what it finds as metrics and on `/alive`.
//!
//! ```text
//! podtap-probes thread (own tokio runtime, never the packet path)
//!   one task per target ── attempt (bounded by its timeout) every period
//!        │                   └─ record: duration histogram, error counter by type,
//!        │                      up / consecutive-failure gauges, /alive status
//!   discovery task ── lists podtap's pods (or the static nodes), keeps the neighbour
//!        │            tasks in step with the ring (peers.rs)
//!   flush task ── hands the recorded delta to the exporter every second (MetricsFeed)
//! ```
//!
//! The number of targets is bounded by the configuration (`max_targets`, checked when
//! it is loaded), and every failed attempt is counted (`podtap.probe.errors`), discovery
//! failures included (target type `peer_discovery`).

pub mod check;
pub mod config;
pub mod peers;

pub use config::{Discovery, PodMethod, ProbesConfig};

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use compact_str::CompactString;
use tokio::sync::watch;

use crate::export::MetricsFeed;
use crate::k8s::policy::CheckKind;
use crate::k8s::policy_watch::PodCheck as PolicyCheck;
use crate::stats::{Attrs, Metric, Store, Val};
use check::Failure;
use config::Timing;

/// What kind of target a series or `/alive` entry is about
/// (`podtap.probe.target.type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TargetType {
    Peer,
    ApiServer,
    ApiServerDns,
    Url,
    Pod,
    /// Listing podtap's pods to find the neighbours.
    PeerDiscovery,
}

impl TargetType {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetType::Peer => "peer",
            TargetType::ApiServer => "api_server",
            TargetType::ApiServerDns => "api_server_dns",
            TargetType::Url => "url",
            TargetType::Pod => "pod",
            TargetType::PeerDiscovery => "peer_discovery",
        }
    }
}

/// How a target is checked.
enum Check {
    Http(http::Uri),
    Tcp(String),
    Icmp(IpAddr),
    /// A request to the API server; `resolve` (`host:port`) is resolved first, so a
    /// failing cluster DNS fails the attempt with `dns` even when the client holds a
    /// connection open. A client that could not be built fails every attempt (`config`).
    Kube {
        client: Result<kube::Client, String>,
        path: String,
        resolve: Option<String>,
    },
    /// A request to the API server at the address `server` (a DNS server) answers for
    /// `name`, with `name` as the TLS server name: a client per attempt, as the address
    /// may change.
    KubeVia {
        /// Boxed: a client's settings are large, and there is at most one such target.
        config: Box<Result<kube::Config, String>>,
        path: String,
        name: String,
        port: u16,
        server: std::net::SocketAddr,
    },
    /// The neighbour listing itself (see [`discover`]).
    Discovery,
}

/// One probed target.
struct Target {
    ty: TargetType,
    name: String,
    /// `podtap.probe.method`: `http`, `tcp`, `icmp`, `list`.
    method: &'static str,
    /// What is probed, for `/alive`.
    address: String,
    check: Check,
    timing: Timing,
}

impl Target {
    fn attrs(&self) -> Attrs {
        vec![
            (
                "podtap.probe.target.type",
                Val::Str(CompactString::const_new(self.ty.as_str())),
            ),
            ("podtap.probe.target", Val::Str(self.name.as_str().into())),
            (
                "podtap.probe.method",
                Val::Str(CompactString::const_new(self.method)),
            ),
        ]
    }

    fn key(&self) -> Key {
        (self.ty, self.name.clone(), self.method)
    }
}

type Key = (TargetType, String, &'static str);

/// The last results of one target, as `/alive` shows them.
#[derive(Default)]
struct Status {
    address: String,
    failure_threshold: u32,
    /// None until the first success or the failure threshold.
    up: Option<bool>,
    consecutive_failures: u32,
    attempts: u64,
    failures: u64,
    last_seconds: f64,
    last_unix_ms: u64,
    last_error: Option<Failure>,
}

struct Shared {
    node: String,
    feed: MetricsFeed,
    /// Recorded since the last hand-over to the exporter.
    store: Mutex<Store>,
    status: Mutex<BTreeMap<Key, Status>>,
    http: check::HttpClient,
}

impl Shared {
    /// Record one attempt of `t`.
    fn record(&self, t: &Target, took: Duration, result: Result<(), Failure>) {
        let attrs = t.attrs();
        let mut status = self.status.lock().expect("probe status lock");
        let s = status.entry(t.key()).or_insert_with(|| Status {
            address: t.address.clone(),
            failure_threshold: t.timing.failure_threshold,
            ..Default::default()
        });
        s.attempts += 1;
        s.last_seconds = took.as_secs_f64();
        s.last_unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut store = self.store.lock().expect("probe store lock");
        store.observe(Metric::ProbeDuration, &attrs, took.as_secs_f64());
        match result {
            Ok(()) => {
                s.consecutive_failures = 0;
                s.up = Some(true);
                s.last_error = None;
            }
            Err(f) => {
                s.failures += 1;
                s.consecutive_failures = s.consecutive_failures.saturating_add(1);
                if s.consecutive_failures >= t.timing.failure_threshold {
                    if s.up != Some(false) {
                        tracing::warn!(
                            target_type = t.ty.as_str(),
                            target = %t.name,
                            failures = s.consecutive_failures,
                            "probe target down: {} ({})",
                            f.message,
                            f.kind
                        );
                    }
                    s.up = Some(false);
                }
                let mut e = attrs.clone();
                e.push(("type", Val::Str(CompactString::const_new(f.kind))));
                store.add(Metric::ProbeErrors, &e, 1);
                s.last_error = Some(f);
            }
        }
        store.set(
            Metric::ProbeConsecutiveFailures,
            &attrs,
            i64::from(s.consecutive_failures),
        );
        if let Some(up) = s.up {
            store.set(Metric::ProbeUp, &attrs, i64::from(up));
        }
    }

    /// Hand what was recorded to the exporter; a full queue keeps it for the next time.
    fn flush(&self) {
        let mut store = self.store.lock().expect("probe store lock");
        self.feed.push(&mut store);
    }

    /// `t` is no longer probed: its status and series go.
    fn forget(&self, t: &Target) {
        self.status
            .lock()
            .expect("probe status lock")
            .remove(&t.key());
        let attrs = t.attrs();
        let of_target = |k: &crate::stats::SeriesKey| {
            matches!(
                k.metric,
                Metric::ProbeDuration
                    | Metric::ProbeErrors
                    | Metric::ProbeUp
                    | Metric::ProbeConsecutiveFailures
            ) && k.attrs.len() >= attrs.len()
                && k.attrs[..attrs.len()] == attrs[..]
        };
        // From what is not handed over yet, and from the exporter's stores (which merge
        // what was handed over first, so nothing brings the series back).
        self.store
            .lock()
            .expect("probe store lock")
            .retain(|k| !of_target(k));
        self.feed.forget(of_target);
    }

    /// `/alive`: this node, whether every target whose state is known is up, the
    /// neighbours and the other checks.
    fn alive_json(&self) -> String {
        let status = self.status.lock().expect("probe status lock");
        let entry = |(ty, name, method): &Key, s: &Status| {
            serde_json::json!({
                "type": ty.as_str(),
                "target": name,
                "method": method,
                "address": s.address,
                "status": match s.up { Some(true) => "up", Some(false) => "down", None => "unknown" },
                "consecutive_failures": s.consecutive_failures,
                "failure_threshold": s.failure_threshold,
                "attempts": s.attempts,
                "failures": s.failures,
                "last_duration_seconds": s.last_seconds,
                "last_check_unix_ms": s.last_unix_ms,
                "last_error": s.last_error.as_ref().map(|f| serde_json::json!({
                    "type": f.kind,
                    "message": f.message,
                })),
            })
        };
        let healthy = status.values().all(|s| s.up != Some(false));
        let (peers, checks): (Vec<_>, Vec<_>) = status
            .iter()
            .partition(|((ty, _, _), _)| *ty == TargetType::Peer);
        let body = serde_json::json!({
            "node": self.node,
            "healthy": healthy,
            "neighbours": peers.into_iter().map(|(k, s)| entry(k, s)).collect::<Vec<_>>(),
            "checks": checks.into_iter().map(|(k, s)| entry(k, s)).collect::<Vec<_>>(),
        });
        let mut out = body.to_string();
        out.push('\n');
        out
    }
}

/// Where the probes run: this node's name, the Kubernetes client settings, the port
/// this instance serves `/alwayshappy` on.
#[derive(Clone, Debug)]
pub struct ProbeContext {
    pub node: String,
    pub kubeconfig: Option<PathBuf>,
    pub own_port: u16,
    /// The monitoring policies' health checks of this node's pods, as attribution
    /// publishes them (`k8s::Attribution::publish_checks`); None: none.
    pub policy_checks: Option<watch::Receiver<Vec<PolicyCheck>>>,
}

/// The running probes; dropping it stops them.
pub struct Probes {
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Probes {
    /// Start the probes thread. `/alive` is answered from now on.
    pub fn start(
        cfg: &ProbesConfig,
        ctx: ProbeContext,
        feed: MetricsFeed,
    ) -> std::io::Result<Probes> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let shared = Arc::new(Shared {
            node: ctx.node.clone(),
            store: Mutex::new(feed.new_store()),
            status: Mutex::new(BTreeMap::new()),
            http: {
                let _guard = runtime.enter();
                check::http_client()
            },
            feed,
        });
        let s = shared.clone();
        shared.feed.serve_alive(Arc::new(move || s.alive_json()));
        let (stop, stop_rx) = watch::channel(false);
        let cfg = cfg.clone();
        let thread = std::thread::Builder::new()
            .name("podtap-probes".into())
            .spawn(move || runtime.block_on(run(cfg, ctx, shared, stop_rx)))?;
        Ok(Probes {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Probes {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("probes thread panicked");
        }
    }
}

async fn run(
    cfg: ProbesConfig,
    ctx: ProbeContext,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let a = &cfg.api_server;
    let needs_kube =
        a.direct || a.dns || (cfg.peers.enabled && cfg.peers.discovery == Discovery::Kubernetes);
    let kube_cfg = if needs_kube {
        crate::k8s::kube::config(ctx.kubeconfig.as_deref())
            .await
            .map_err(|e| e.to_string())
    } else {
        Err(String::new())
    };
    if let (true, Err(e)) = (needs_kube, &kube_cfg) {
        tracing::warn!("health probes: no Kubernetes client ({e}): its checks fail as `config`");
    }
    let mut targets = api_server_targets(&cfg, &kube_cfg);
    targets.extend(configured_targets(&cfg));
    tracing::info!(
        targets = targets.len(),
        peers = cfg.peers.enabled,
        "health probes started; /alwayshappy and /alive served"
    );
    for t in targets {
        tokio::spawn(probe_loop(shared.clone(), Arc::new(t), stop.clone()));
    }
    if cfg.peers.enabled {
        let client = match (&kube_cfg, cfg.peers.discovery) {
            (Ok(c), Discovery::Kubernetes) => client_of(c),
            (Err(e), _) => Err(e.clone()),
            _ => Err(String::new()),
        };
        tokio::spawn(discover(
            shared.clone(),
            cfg.clone(),
            ctx.clone(),
            client,
            stop.clone(),
        ));
    }
    if let Some(rx) = ctx.policy_checks.clone() {
        // What the configuration leaves of `max_targets` (checked when it was loaded).
        let budget = cfg.max_targets.saturating_sub(cfg.most_targets());
        tokio::spawn(follow_policy_checks(
            shared.clone(),
            cfg.clone(),
            rx,
            budget,
            stop.clone(),
        ));
    }
    // Hand the recorded series over every second, and once more when stopping.
    while check::sleep_or_stop(Duration::from_secs(1), &mut stop).await {
        shared.flush();
    }
    shared.flush();
}

fn client_of(c: &kube::Config) -> Result<kube::Client, String> {
    kube::Client::try_from(c.clone()).map_err(|e| e.to_string())
}

/// The API server checks, direct and by name, as `[probes.api_server]` asks (a client
/// that cannot be built makes its check fail as `config` every period).
fn api_server_targets(cfg: &ProbesConfig, kube_cfg: &Result<kube::Config, String>) -> Vec<Target> {
    let a = &cfg.api_server;
    let mut targets = Vec::new();
    if a.direct {
        let t = cfg.timing(a.period_ms, a.timeout_ms, a.failure_threshold);
        let (client, address) = match kube_cfg {
            Ok(c) => (client_of(c), c.cluster_url.to_string()),
            Err(e) => (Err(e.clone()), String::new()),
        };
        targets.push(Target {
            ty: TargetType::ApiServer,
            name: "kubernetes".into(),
            method: "http",
            address,
            check: Check::Kube {
                client,
                path: a.path.clone(),
                resolve: None,
            },
            timing: t,
        });
    }
    let dns_port = |c: &kube::Config| match a.dns_port {
        0 => c
            .cluster_url
            .port_u16()
            .unwrap_or(if c.cluster_url.scheme_str() == Some("http") {
                80
            } else {
                443
            }),
        p => p,
    };
    if let (true, Some(server)) = (a.dns, a.dns_server_addr()) {
        let port = kube_cfg.as_ref().map_or(443, dns_port);
        targets.push(Target {
            ty: TargetType::ApiServerDns,
            name: a.dns_name.clone(),
            method: "http",
            address: format!("{}:{port} via {server}", a.dns_name),
            check: Check::KubeVia {
                config: Box::new(kube_cfg.clone()),
                path: a.path.clone(),
                name: a.dns_name.clone(),
                port,
                server,
            },
            timing: cfg.timing(a.period_ms, a.timeout_ms, a.failure_threshold),
        });
    } else if a.dns {
        let t = cfg.timing(a.period_ms, a.timeout_ms, a.failure_threshold);
        let (client, host_port) = match kube_cfg {
            Ok(c) => {
                let port = dns_port(c);
                let host_port = format!("{}:{port}", a.dns_name);
                let scheme = c.cluster_url.scheme_str().unwrap_or("https");
                let mut by_name = c.clone();
                let client = format!("{scheme}://{host_port}")
                    .parse()
                    .map_err(|e: http::uri::InvalidUri| e.to_string())
                    .and_then(|u| {
                        by_name.cluster_url = u;
                        client_of(&by_name)
                    });
                (client, host_port)
            }
            Err(e) => (Err(e.clone()), a.dns_name.clone()),
        };
        targets.push(Target {
            ty: TargetType::ApiServerDns,
            name: a.dns_name.clone(),
            method: "http",
            address: host_port.clone(),
            check: Check::Kube {
                client,
                path: a.path.clone(),
                resolve: Some(host_port),
            },
            timing: t,
        });
    }
    targets
}

/// The `[[probes.urls]]` and `[[probes.pods]]` targets.
fn configured_targets(cfg: &ProbesConfig) -> Vec<Target> {
    let mut targets = Vec::new();
    for u in &cfg.urls {
        let Ok(uri) = config::http_uri(&u.url) else {
            continue; // rejected when the config was loaded
        };
        targets.push(Target {
            ty: TargetType::Url,
            name: u.name.clone(),
            method: "http",
            address: u.url.clone(),
            check: Check::Http(uri),
            timing: cfg.timing(u.period_ms, u.timeout_ms, u.failure_threshold),
        });
    }
    for p in &cfg.pods {
        let check = match p.method {
            PodMethod::Icmp => match p.address.parse() {
                Ok(ip) => Check::Icmp(ip),
                Err(_) => continue,
            },
            PodMethod::Tcp => Check::Tcp(p.address.clone()),
            PodMethod::Http => match config::http_uri(&p.address) {
                Ok(u) => Check::Http(u),
                Err(_) => continue,
            },
        };
        targets.push(Target {
            ty: TargetType::Pod,
            name: p.name.clone(),
            method: p.method.as_str(),
            address: p.address.clone(),
            check,
            timing: cfg.timing(p.period_ms, p.timeout_ms, p.failure_threshold),
        });
    }
    targets
}

/// Keep one probe task per policy health check: start the new ones, stop (and forget)
/// those no policy asks for any more, as attribution publishes them. At most `budget`
/// run; the rest are logged.
async fn follow_policy_checks(
    shared: Arc<Shared>,
    cfg: ProbesConfig,
    mut rx: watch::Receiver<Vec<PolicyCheck>>,
    budget: usize,
    stop: watch::Receiver<bool>,
) {
    let mut running: HashMap<PolicyCheck, (Arc<Target>, tokio::task::AbortHandle)> = HashMap::new();
    let mut warned = false;
    loop {
        let want = rx.borrow_and_update().clone();
        running.retain(|c, (t, task)| {
            let keep = want.contains(c);
            if !keep {
                task.abort();
                shared.forget(t);
            }
            keep
        });
        for c in &want {
            if running.contains_key(c) {
                continue;
            }
            if running.len() >= budget {
                if !std::mem::replace(&mut warned, true) {
                    tracing::warn!(
                        checks = want.len(),
                        budget,
                        "policy health checks beyond probes.max_targets are not run"
                    );
                }
                break;
            }
            let Some(t) = policy_target(&cfg, c) else {
                continue;
            };
            let t = Arc::new(t);
            let task = tokio::spawn(probe_loop(shared.clone(), t.clone(), stop.clone()));
            running.insert(c.clone(), (t, task.abort_handle()));
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// The probe target of a policy health check.
fn policy_target(cfg: &ProbesConfig, c: &PolicyCheck) -> Option<Target> {
    let (method, check) = match c.kind {
        CheckKind::Ping => (PodMethod::Icmp, Check::Icmp(c.address.parse().ok()?)),
        CheckKind::Tcp => (PodMethod::Tcp, Check::Tcp(c.address.clone())),
        CheckKind::Http => (
            PodMethod::Http,
            Check::Http(config::http_uri(&c.address).ok()?),
        ),
    };
    let mut timing = cfg.timing(
        Some(c.period_secs.saturating_mul(1000)),
        c.timeout_secs.map(|t| t.saturating_mul(1000)),
        Some(c.failure_threshold),
    );
    timing.timeout = timing.timeout.min(timing.period);
    Some(Target {
        ty: TargetType::Pod,
        name: c.name.clone(),
        method: method.as_str(),
        address: c.address.clone(),
        check,
        timing,
    })
}

/// Attempt `t` every period until stopped.
async fn probe_loop(shared: Arc<Shared>, t: Arc<Target>, mut stop: watch::Receiver<bool>) {
    // Spread the first attempts of many targets over up to a second (by name, so it
    // stays the same from start to start).
    let spread = t.timing.period.min(Duration::from_secs(1));
    let h = t
        .name
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    let first = spread.mul_f64((h % 1000) as f64 / 1000.0);
    if !check::sleep_or_stop(first, &mut stop).await {
        return;
    }
    let mut seq: u16 = 0;
    loop {
        let started = Instant::now();
        let result = match tokio::time::timeout(t.timing.timeout, attempt(&shared, &t, seq)).await {
            Ok(r) => r,
            Err(_) => Err(Failure::new(
                "timeout",
                format!("no answer within {} ms", t.timing.timeout.as_millis()),
            )),
        };
        shared.record(&t, started.elapsed(), result);
        seq = seq.wrapping_add(1);
        let next = t.timing.period.saturating_sub(started.elapsed());
        if !check::sleep_or_stop(next, &mut stop).await {
            return;
        }
    }
}

async fn attempt(shared: &Shared, t: &Target, seq: u16) -> Result<(), Failure> {
    match &t.check {
        Check::Http(uri) => check::http_get(&shared.http, uri).await,
        Check::Tcp(addr) => check::tcp_connect(addr).await,
        Check::Icmp(ip) => check::icmp_echo(*ip, seq).await,
        Check::Kube {
            client,
            path,
            resolve,
        } => {
            let client = client
                .as_ref()
                .map_err(|e| Failure::new("config", e.clone()))?;
            if let Some(name) = resolve {
                check::resolve(name).await?;
            }
            check::kube_get(client, path).await
        }
        Check::KubeVia {
            config,
            path,
            name,
            port,
            server,
        } => {
            let mut c = (**config)
                .as_ref()
                .map_err(|e| Failure::new("config", e.clone()))?
                .clone();
            let ip = check::dns_lookup(*server, name).await?;
            let scheme = c.cluster_url.scheme_str().unwrap_or("https").to_string();
            c.cluster_url = format!("{scheme}://{}", std::net::SocketAddr::new(ip, *port))
                .parse()
                .map_err(|e: http::uri::InvalidUri| Failure::new("config", e.to_string()))?;
            // The certificate names the Service, not the address it resolved to.
            c.tls_server_name = Some(name.clone());
            let client =
                kube::Client::try_from(c).map_err(|e| Failure::new("config", e.to_string()))?;
            check::kube_get(&client, path).await
        }
        Check::Discovery => Ok(()),
    }
}

/// Keep one probe task per neighbour: list the instances (every `resync_secs`, or once
/// for `static`), pick the ring's neighbours, start the new ones' tasks and stop (and
/// forget) those no longer picked. A failed listing keeps the current neighbours and
/// is counted.
async fn discover(
    shared: Arc<Shared>,
    cfg: ProbesConfig,
    ctx: ProbeContext,
    client: Result<kube::Client, String>,
    mut stop: watch::Receiver<bool>,
) {
    let p = &cfg.peers;
    let timing = cfg.timing(p.period_ms, p.timeout_ms, p.failure_threshold);
    let port = if p.port == 0 { ctx.own_port } else { p.port };
    let listing = Target {
        ty: TargetType::PeerDiscovery,
        name: match p.discovery {
            Discovery::Kubernetes => "kubernetes".into(),
            Discovery::Static => "static".into(),
        },
        method: "list",
        address: format!("{}/{}", p.namespace, p.label_selector),
        check: Check::Discovery,
        timing: Timing {
            period: Duration::from_secs(p.resync_secs),
            ..timing
        },
    };
    let mut running: HashMap<peers::Peer, (Arc<Target>, tokio::task::AbortHandle)> = HashMap::new();
    loop {
        let started = Instant::now();
        let found = match p.discovery {
            Discovery::Static => Ok(p
                .nodes
                .iter()
                .map(|n| peers::Peer {
                    node: n.node.clone(),
                    address: n.address.clone(),
                })
                .collect()),
            Discovery::Kubernetes => {
                let listed = async {
                    let c = client
                        .as_ref()
                        .map_err(|e| Failure::new("config", e.clone()))?;
                    peers::from_kubernetes(c, &p.namespace, &p.label_selector, port).await
                };
                let r = tokio::time::timeout(timing.timeout, listed)
                    .await
                    .unwrap_or_else(|_| Err(Failure::new("timeout", "listing podtap's pods")));
                shared.record(
                    &listing,
                    started.elapsed(),
                    r.as_ref().map(drop).map_err(Clone::clone),
                );
                r
            }
        };
        if let Ok(all) = found {
            let want = peers::neighbours(&ctx.node, all, p.max_neighbours);
            let gone: Vec<peers::Peer> = running
                .keys()
                .filter(|k| !want.contains(k))
                .cloned()
                .collect();
            for k in gone {
                if let Some((t, task)) = running.remove(&k) {
                    task.abort();
                    shared.forget(&t);
                }
            }
            for peer in want {
                if running.contains_key(&peer) {
                    continue;
                }
                let uri = match format!("http://{}/alwayshappy", peer.address).parse() {
                    Ok(u) => u,
                    Err(e) => {
                        tracing::warn!(node = %peer.node, address = %peer.address, "peer address: {e}");
                        continue;
                    }
                };
                let t = Arc::new(Target {
                    ty: TargetType::Peer,
                    name: peer.node.clone(),
                    method: "http",
                    address: format!("http://{}/alwayshappy", peer.address),
                    check: Check::Http(uri),
                    timing,
                });
                let task = tokio::spawn(probe_loop(shared.clone(), t.clone(), stop.clone()));
                running.insert(peer, (t, task.abort_handle()));
            }
        }
        let wait = match p.discovery {
            // Nothing changes: the same list again a day later, or the stop.
            Discovery::Static => Duration::from_secs(86_400),
            Discovery::Kubernetes => listing.timing.period.saturating_sub(started.elapsed()),
        };
        if !check::sleep_or_stop(wait, &mut stop).await {
            return;
        }
    }
}
