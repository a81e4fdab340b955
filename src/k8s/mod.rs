//! Pod attribution: which pod, Service or node each end of a flow is, and which pod's
//! interface it was captured on.
//!
//! Sources (each optional): node-local discovery of network namespaces and veths
//! ([`netns`]), a static map file ([`static_map`]) and the Kubernetes API ([`kube`]).
//! A builder merges them into an immutable [`Snapshot`] published through `arc-swap`
//! with a generation number. Workers hold an [`Attributor`]: they resolve a flow once
//! when it is created and again only when the generation has moved on; resolving never
//! locks and nothing is resolved per packet.
//!
//! ```text
//! sources ──(tokio thread: watch / rescan)──▶ Inputs ──build──▶ Snapshot ──ArcSwap──▶ Attributor (per worker)
//! ```

pub mod cidr;
pub mod kube;
pub mod model;
pub mod netns;
pub mod policy;
pub mod policy_watch;
pub mod selector;
pub mod snapshot;
pub mod sockets;
pub mod static_map;

pub use model::{FlowPods, METRIC_LABELS, Peer, PodMeta, ServiceMeta, Workload};
pub use snapshot::{Inputs, KubeObjects, Snapshot};

use arc_swap::ArcSwap;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::AttributionConfig;
use crate::proto::Endpoint;

/// Changes arriving within this long of each other are built into one snapshot.
const DEBOUNCE: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum AttrError {
    #[error(transparent)]
    StaticMap(#[from] static_map::StaticMapError),
    #[error(transparent)]
    Discovery(#[from] netns::DiscoveryError),
    #[error(transparent)]
    Kube(#[from] kube::KubeError),
    #[error("attribution runtime: {0}")]
    Runtime(std::io::Error),
}

struct Shared {
    current: ArcSwap<Snapshot>,
    /// Mirror of `current.generation`, for the per-flow staleness check.
    generation: AtomicU64,
    /// Builder side only (sources, reload): never touched by workers.
    state: Mutex<BuildState>,
    changed: Arc<tokio::sync::Notify>,
    kube_synced: Arc<AtomicU32>,
    /// Watches whose first list `wait_synced` waits for.
    kube_watches: AtomicU32,
}

struct BuildState {
    inputs: Inputs,
    kube: Option<kube::KubeStores>,
    /// The `PodtapPolicy` watch, and where this node's view of each policy goes after
    /// each snapshot (the status task).
    policies: Option<policy_watch::PolicyStore>,
    statuses: Option<tokio::sync::watch::Sender<Vec<policy_watch::NodeStatus>>>,
    /// Where the policies' health checks of this node's pods go (the health probes).
    checks: Option<tokio::sync::watch::Sender<Vec<policy_watch::PodCheck>>>,
    cfg: AttributionConfig,
}

impl Shared {
    /// Build a snapshot from the current inputs and publish it.
    fn rebuild(&self) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = &st.kube {
            st.inputs.kube = Some(k.objects());
        }
        if let Some(p) = &st.policies {
            st.inputs.policies = Some(Arc::new(p.policies()));
        }
        let generation = self.current.load().generation + 1;
        let snap = Arc::new(snapshot::build(&st.inputs, generation));
        tracing::debug!(generation, pods = snap.pods().len(), "attribution snapshot");
        self.current.store(snap.clone());
        self.generation.store(generation, Ordering::Release);
        if let (Some(tx), Some(set)) = (&st.statuses, &st.inputs.policies) {
            send_changed(tx, policy_watch::node_statuses(set, &snap));
        }
        if let Some(tx) = &st.checks {
            send_changed(tx, policy_watch::pod_checks(&snap));
        }
    }
}

/// Hand `now` to the receivers of `tx` when it differs from what they have.
fn send_changed<T: PartialEq>(tx: &tokio::sync::watch::Sender<T>, now: T) {
    tx.send_if_modified(|old| {
        let changed = *old != now;
        if changed {
            *old = now;
        }
        changed
    });
}

/// The worker's handle: cheap to clone, never locks.
#[derive(Clone)]
pub struct Attributor {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Attributor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Attributor(generation {})", self.generation())
    }
}

impl Attributor {
    /// The generation of the newest snapshot (one relaxed atomic load).
    #[inline]
    pub fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::Relaxed)
    }

    /// The newest snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.current.load_full()
    }

    /// Resolve a flow against the newest snapshot.
    pub fn resolve(
        &self,
        obs: u32,
        ip_proto: u8,
        client: Endpoint,
        server: Endpoint,
    ) -> Arc<FlowPods> {
        Arc::new(
            self.shared
                .current
                .load()
                .resolve(obs, ip_proto, client, server),
        )
    }

    /// Make `slot` current: resolve when empty or when the snapshot has changed since
    /// (an end the newer snapshot no longer knows keeps its old attribution).
    #[inline]
    pub fn refresh(
        &self,
        slot: &mut Option<Arc<FlowPods>>,
        obs: u32,
        ip_proto: u8,
        client: Endpoint,
        server: Endpoint,
    ) {
        if let Some(p) = slot
            && p.generation == self.generation()
        {
            return;
        }
        let mut fresh = self
            .shared
            .current
            .load()
            .resolve(obs, ip_proto, client, server);
        if let Some(old) = slot.as_ref() {
            fresh.keep_known(old);
        }
        *slot = Some(Arc::new(fresh));
    }
}

/// The attribution service: owns the sources and the background thread that follows
/// them. Dropping it stops the thread.
pub struct Attribution {
    shared: Arc<Shared>,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Attribution {
    /// Start from the configuration: read the static map, discover namespaces, connect
    /// to Kubernetes (when enabled) and publish a first snapshot before returning.
    pub fn start(cfg: &AttributionConfig) -> Result<Attribution, AttrError> {
        let mut inputs = inputs_from(cfg)?;
        if cfg.netns {
            inputs.netns = Some(netns::discover(false)?);
        }
        let node = node_name(cfg);
        inputs.node_name = Some(node.clone());
        let a = Attribution::with_inputs(inputs);
        a.shared.state.lock().unwrap_or_else(|e| e.into_inner()).cfg = cfg.clone();
        let needs_thread = cfg.kubernetes.enabled || (cfg.netns && cfg.resync_secs > 0);
        if !needs_thread {
            return Ok(a);
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(AttrError::Runtime)?;
        if cfg.kubernetes.enabled {
            let path = (!cfg.kubernetes.kubeconfig.is_empty())
                .then(|| Path::new(&cfg.kubernetes.kubeconfig));
            let client = rt.block_on(kube::client(path))?;
            let _guard = rt.enter();
            let stores = kube::start(
                client.clone(),
                &node,
                a.shared.changed.clone(),
                a.shared.kube_synced.clone(),
            );
            let mut st = a.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            st.kube = Some(stores);
            a.shared
                .kube_watches
                .store(kube::WATCHED, Ordering::Relaxed);
            if cfg.kubernetes.policies {
                st.policies = Some(policy_watch::start(
                    client.clone(),
                    a.shared.changed.clone(),
                    a.shared.kube_synced.clone(),
                ));
                a.shared.kube_watches.fetch_add(1, Ordering::Relaxed);
                let (tx, rx) = tokio::sync::watch::channel(Vec::new());
                st.statuses = Some(tx);
                tokio::spawn(policy_watch::report(client, node.clone(), rx));
            }
        }
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let shared = a.shared.clone();
        let resync =
            (cfg.netns && cfg.resync_secs > 0).then(|| Duration::from_secs(cfg.resync_secs));
        let thread = std::thread::Builder::new()
            .name("podtap-attribution".into())
            .spawn(move || rt.block_on(follow(shared, resync, stop_rx)))
            .map_err(AttrError::Runtime)?;
        let mut a = a;
        a.stop = Some(stop_tx);
        a.thread = Some(thread);
        Ok(a)
    }

    /// A service over fixed inputs, without background work (tests, benchmarks, replay
    /// of files from elsewhere). [`Attribution::update`] changes the inputs.
    pub fn with_inputs(inputs: Inputs) -> Attribution {
        let snap = snapshot::build(&inputs, 1);
        Attribution {
            shared: Arc::new(Shared {
                current: ArcSwap::from_pointee(snap),
                generation: AtomicU64::new(1),
                state: Mutex::new(BuildState {
                    inputs,
                    kube: None,
                    policies: None,
                    statuses: None,
                    checks: None,
                    cfg: AttributionConfig::default(),
                }),
                changed: Arc::new(tokio::sync::Notify::new()),
                kube_synced: Arc::new(AtomicU32::new(0)),
                kube_watches: AtomicU32::new(0),
            }),
            stop: None,
            thread: None,
        }
    }

    pub fn attributor(&self) -> Attributor {
        Attributor {
            shared: self.shared.clone(),
        }
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.current.load_full()
    }

    /// Change the inputs and publish a new snapshot.
    pub fn update(&self, f: impl FnOnce(&mut Inputs)) {
        {
            let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut st.inputs);
        }
        self.shared.rebuild();
    }

    /// Apply a new configuration (SIGHUP): label keys, selector, static map and replay
    /// interfaces take effect at once, with a new snapshot; watch state and discovered
    /// namespaces are kept. Changing the Kubernetes connection, node name or the
    /// enabled sources needs a restart (logged). A bad static map is an error and the
    /// old configuration stays.
    pub fn reload(&self, cfg: &AttributionConfig) -> Result<(), AttrError> {
        let fresh = inputs_from(cfg)?;
        {
            let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            if st.cfg.kubernetes != cfg.kubernetes || st.cfg.netns != cfg.netns {
                tracing::warn!(
                    "attribution: kubernetes and netns settings take effect after a restart"
                );
            }
            st.inputs.static_map = fresh.static_map;
            st.inputs.label_keys = fresh.label_keys;
            st.inputs.selector = fresh.selector;
            st.inputs.obs_interfaces = fresh.obs_interfaces;
            let keep = (st.cfg.kubernetes.clone(), st.cfg.netns);
            st.cfg = cfg.clone();
            (st.cfg.kubernetes, st.cfg.netns) = keep;
        }
        self.shared.rebuild();
        Ok(())
    }

    /// Send the monitoring policies' health checks of this node's pods to `tx` now and
    /// after every snapshot that changes them (see [`policy_watch::pod_checks`]).
    pub fn publish_checks(&self, tx: tokio::sync::watch::Sender<Vec<policy_watch::PodCheck>>) {
        send_changed(&tx, policy_watch::pod_checks(&self.snapshot()));
        self.shared
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .checks = Some(tx);
    }

    /// Rescan this host's network namespaces now and publish a snapshot: a pod interface
    /// has just appeared, and its pod must be known before its first flow is reported,
    /// not at the next periodic rescan. Flows already open re-resolve against the new
    /// snapshot (their generation is behind). A no-op when `attribution.netns` is off.
    pub fn rescan_netns(&self) {
        let (enabled, with_ports) = {
            let st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            (
                st.cfg.netns,
                self.shared
                    .current
                    .load()
                    .pods()
                    .iter()
                    .any(|p| p.host_network),
            )
        };
        if !enabled {
            return;
        }
        match netns::discover(with_ports) {
            Ok(d) => {
                self.shared
                    .state
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .inputs
                    .netns = Some(d);
                self.shared.rebuild();
            }
            Err(e) => tracing::warn!("attribution: namespace discovery failed: {e}"),
        }
    }

    /// Wait until every Kubernetes watch has listed once (true), or the timeout.
    pub fn wait_synced(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let synced = self.shared.kube_synced.load(Ordering::Relaxed)
                >= self.shared.kube_watches.load(Ordering::Relaxed);
            let enabled = self
                .shared
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .kube
                .is_some();
            if !enabled || synced {
                // The builder runs after the last list arrives: give it its debounce.
                if enabled {
                    std::thread::sleep(DEBOUNCE * 3);
                }
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Attribution {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The background loop: rebuild on change (debounced), rescan namespaces periodically.
async fn follow(
    shared: Arc<Shared>,
    resync: Option<Duration>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut rescan = tokio::time::interval(resync.unwrap_or(Duration::from_secs(3600)));
    rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    rescan.tick().await; // the first tick is immediate: start() already discovered
    let changed = shared.changed.clone();
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = changed.notified() => {
                tokio::time::sleep(DEBOUNCE).await;
                shared.rebuild();
            }
            _ = rescan.tick(), if resync.is_some() => {
                let with_ports = shared.current.load().pods().iter().any(|p| p.host_network);
                match tokio::task::spawn_blocking(move || netns::discover(with_ports)).await {
                    Ok(Ok(d)) => {
                        shared.state.lock().unwrap_or_else(|e| e.into_inner()).inputs.netns = Some(d);
                        shared.rebuild();
                    }
                    Ok(Err(e)) => tracing::warn!("attribution: namespace discovery failed: {e}"),
                    Err(e) => tracing::warn!("attribution: namespace discovery panicked: {e}"),
                }
            }
        }
    }
}

/// The parts of the inputs that come straight from the configuration.
fn inputs_from(cfg: &AttributionConfig) -> Result<Inputs, AttrError> {
    let static_map = if cfg.static_map.is_empty() {
        None
    } else {
        Some(static_map::StaticMap::load(Path::new(&cfg.static_map))?)
    };
    Ok(Inputs {
        static_map,
        label_keys: cfg.label_keys.clone(),
        selector: cfg.selector.clone(),
        obs_interfaces: cfg.replay_interfaces.clone(),
        ..Default::default()
    })
}

/// `attribution.kubernetes.node_name`, else `NODE_NAME` (the downward API), else the
/// host name.
pub fn node_name(cfg: &AttributionConfig) -> String {
    if !cfg.kubernetes.node_name.is_empty() {
        return cfg.kubernetes.node_name.clone();
    }
    if let Ok(n) = std::env::var("NODE_NAME")
        && !n.is_empty()
    {
        return n;
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

#[cfg(test)]
mod tests;
