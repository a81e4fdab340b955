//! The Kubernetes manifests in `deploy/kubernetes/` against the code they deploy.
//!
//! No Kubernetes API server can run on this machine (no cluster, and no image registry to
//! pull one from), so nothing here applies the manifests. Instead every YAML document is
//! parsed into its real k8s-openapi type, with the fields the type does not know
//! reported (what `kubectl apply --validate=strict` would reject), and the objects are
//! held against podtap itself:
//! - the ConfigMap's podtap.toml goes through podtap's own config loader
//!   (`Config::load`, unknown keys rejected) and is what a cluster needs (Kubernetes
//!   attribution, OTLP to the collector of deploy/otel-collector.yaml, Prometheus on all
//!   addresses);
//! - the ClusterRole grants list and watch on exactly what `src/k8s/kube.rs` watches;
//! - the DaemonSet's command line is accepted by the real `podtap` binary, its probes are
//!   answered by podtap's real exporter on the ConfigMap's port, its node-name variable is
//!   the one `k8s::node_name` reads, and it mounts what the config and the capture code
//!   use; its memory limit covers the config's bounds;
//! - the ClusterRoleBinding binds the DaemonSet's ServiceAccount in its namespace.
//!
//! `broken_manifests_are_caught` breaks the file in one place at a time and checks that
//! the right check fails, so none of the checks passes vacuously. Needs neither root nor
//! a network: the exporter listens on loopback only.

use k8s_openapi::Resource;
use k8s_openapi::api::apps::v1::{DaemonSet, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Namespace, Pod, PodSpec, Service, ServiceAccount,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use podtap::config::{CaptureMode, Config};
use serde::de::{Deserialize, DeserializeOwned};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

const MANIFEST: &str = "deploy/kubernetes/podtap.yaml";

type Check = Result<(), String>;

/// `ensure!(cond, "message {}", x)`: fail the check with the message unless `cond`.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo_file(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

// ---------------------------------------------------------------------------------------
// Parsing: every document into its k8s-openapi type.

/// The objects of the manifest file, typed.
struct Manifests {
    namespace: Namespace,
    service_account: ServiceAccount,
    cluster_role: ClusterRole,
    binding: ClusterRoleBinding,
    config_map: ConfigMap,
    daemon_set: DaemonSet,
    /// Optional: the metrics Service.
    services: Vec<Service>,
}

/// The YAML documents of a multi-document file (empty documents skipped).
fn documents(text: &str, file: &str) -> Result<Vec<serde_yaml_ng::Value>, String> {
    let mut docs = Vec::new();
    for (i, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let v = serde_yaml_ng::Value::deserialize(de)
            .map_err(|e| format!("{file} document {}: not YAML: {e}", i + 1))?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok(docs)
}

/// `doc` as a `T`: its apiVersion and kind must be `T`'s, and every field it sets must
/// be one `T` has (k8s-openapi skips unknown fields; the API server's strict validation
/// does not, and a misspelt field would otherwise silently do nothing).
fn typed<T>(doc: &serde_yaml_ng::Value, at: &str) -> Result<T, String>
where
    T: Resource + DeserializeOwned + serde::Serialize,
{
    let field = |k: &str| doc.get(k).and_then(|v| v.as_str()).unwrap_or("");
    ensure!(
        field("apiVersion") == T::API_VERSION && field("kind") == T::KIND,
        "{at}: {}/{} is not {}/{}",
        field("apiVersion"),
        field("kind"),
        T::API_VERSION,
        T::KIND
    );
    let obj: T = serde_yaml_ng::from_value(doc.clone())
        .map_err(|e| format!("{at}: not a valid {}: {e}", T::KIND))?;
    let written = serde_json::to_value(doc).map_err(|e| format!("{at}: {e}"))?;
    let read_back = serde_json::to_value(&obj).map_err(|e| format!("{at}: {e}"))?;
    dropped_fields(&written, &read_back, at)?;
    Ok(obj)
}

/// Every field of `written` is in `read_back` with the same value.
fn dropped_fields(written: &Value, read_back: &Value, path: &str) -> Check {
    match (written, read_back) {
        (Value::Object(w), Value::Object(r)) => {
            for (k, v) in w {
                match r.get(k) {
                    Some(rv) => dropped_fields(v, rv, &format!("{path}.{k}"))?,
                    None if v.is_null() => {}
                    None => return Err(format!("{path}.{k}: unknown field")),
                }
            }
            Ok(())
        }
        (Value::Array(w), Value::Array(r)) if w.len() == r.len() => {
            for (i, (a, b)) in w.iter().zip(r).enumerate() {
                dropped_fields(a, b, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        _ if written == read_back => Ok(()),
        // A schema's `minimum: 1` reads back as 1.0 (k8s-openapi holds it as a float):
        // the same number to the API server.
        (Value::Number(w), Value::Number(r)) if w.as_f64() == r.as_f64() => Ok(()),
        _ => Err(format!("{path}: {written} reads back as {read_back}")),
    }
}

fn parse(text: &str) -> Result<Manifests, String> {
    fn one<T>(slot: &mut Option<T>, v: T, at: &str) -> Check {
        ensure!(slot.is_none(), "{at}: a second one of this kind");
        *slot = Some(v);
        Ok(())
    }
    fn is<T: Resource>(api_version: &str, kind: &str) -> bool {
        api_version == T::API_VERSION && kind == T::KIND
    }
    let (mut ns, mut sa, mut role, mut binding, mut cm, mut ds) =
        (None, None, None, None, None, None);
    let mut services = Vec::new();
    for (i, doc) in documents(text, MANIFEST)?.iter().enumerate() {
        let field = |k: &str| doc.get(k).and_then(|v| v.as_str()).unwrap_or("");
        let (api_version, kind) = (field("apiVersion"), field("kind"));
        let at = format!("{MANIFEST} document {} ({kind})", i + 1);
        if is::<Namespace>(api_version, kind) {
            one(&mut ns, typed(doc, &at)?, &at)?;
        } else if is::<ServiceAccount>(api_version, kind) {
            one(&mut sa, typed(doc, &at)?, &at)?;
        } else if is::<ClusterRole>(api_version, kind) {
            one(&mut role, typed(doc, &at)?, &at)?;
        } else if is::<ClusterRoleBinding>(api_version, kind) {
            one(&mut binding, typed(doc, &at)?, &at)?;
        } else if is::<ConfigMap>(api_version, kind) {
            one(&mut cm, typed(doc, &at)?, &at)?;
        } else if is::<DaemonSet>(api_version, kind) {
            one(&mut ds, typed(doc, &at)?, &at)?;
        } else if is::<Service>(api_version, kind) {
            services.push(typed(doc, &at)?);
        } else {
            return Err(format!(
                "{at}: unexpected apiVersion/kind {api_version}/{kind}"
            ));
        }
    }
    let missing = |what: &str| format!("{MANIFEST}: no {what}");
    Ok(Manifests {
        namespace: ns.ok_or_else(|| missing("Namespace"))?,
        service_account: sa.ok_or_else(|| missing("ServiceAccount"))?,
        cluster_role: role.ok_or_else(|| missing("ClusterRole"))?,
        binding: binding.ok_or_else(|| missing("ClusterRoleBinding"))?,
        config_map: cm.ok_or_else(|| missing("ConfigMap"))?,
        daemon_set: ds.ok_or_else(|| missing("DaemonSet"))?,
        services,
    })
}

fn name(m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    m.name.as_deref().unwrap_or("")
}

fn ns_of(m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    m.namespace.as_deref().unwrap_or("")
}

/// Namespaced objects live in the manifest's Namespace; the DaemonSet selects its pods.
fn check_objects(m: &Manifests) -> Check {
    let ns = name(&m.namespace.metadata);
    ensure!(!ns.is_empty(), "the Namespace has no name");
    let mut namespaced = vec![
        ("ServiceAccount", &m.service_account.metadata),
        ("ConfigMap", &m.config_map.metadata),
        ("DaemonSet", &m.daemon_set.metadata),
    ];
    namespaced.extend(m.services.iter().map(|s| ("Service", &s.metadata)));
    for (kind, meta) in namespaced {
        ensure!(
            ns_of(meta) == ns,
            "{kind} {} is in namespace {:?}, not the manifest's {ns:?}",
            name(meta),
            ns_of(meta)
        );
    }
    let spec = &m.daemon_set.spec;
    let selector = spec.selector.match_labels.clone().unwrap_or_default();
    let labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|md| md.labels.clone())
        .unwrap_or_default();
    ensure!(
        !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v)),
        "DaemonSet selector {selector:?} does not select its pod labels {labels:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The DaemonSet's pod and its one container.

fn pod_spec(m: &Manifests) -> Result<&PodSpec, String> {
    m.daemon_set
        .spec
        .template
        .spec
        .as_ref()
        .ok_or_else(|| "DaemonSet without a pod spec".to_string())
}

fn container(m: &Manifests) -> Result<&Container, String> {
    let spec = pod_spec(m)?;
    ensure!(
        spec.containers.len() == 1,
        "expected one container, found {}",
        spec.containers.len()
    );
    Ok(&spec.containers[0])
}

/// The container's full command line (command, then args).
fn argv(c: &Container) -> Vec<String> {
    let mut v = c.command.clone().unwrap_or_default();
    v.extend(c.args.clone().unwrap_or_default());
    v
}

/// The value of `--config` on the command line.
fn config_flag(argv: &[String]) -> Option<String> {
    argv.iter().enumerate().find_map(|(i, a)| {
        if a == "--config" {
            argv.get(i + 1).cloned()
        } else {
            a.strip_prefix("--config=").map(String::from)
        }
    })
}

/// The volume mounted at the longest mount path that contains `path`, and `path`
/// relative to that mount.
fn mount_for<'a>(c: &'a Container, path: &str) -> Option<(&'a str, String)> {
    c.volume_mounts
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter_map(|vm| {
            let rest = Path::new(path).strip_prefix(&vm.mount_path).ok()?;
            Some((vm, rest.to_string_lossy().into_owned()))
        })
        .max_by_key(|(vm, _)| vm.mount_path.len())
        .map(|(vm, rest)| (vm.name.as_str(), rest))
}

fn volume<'a>(spec: &'a PodSpec, name: &str) -> Option<&'a k8s_openapi::api::core::v1::Volume> {
    spec.volumes.as_deref()?.iter().find(|v| v.name == name)
}

/// The ConfigMap key the `--config` path of the command line reads, through the
/// container's mounts, and that key's text.
fn mounted_config(m: &Manifests) -> Result<(String, String), String> {
    let c = container(m)?;
    let path = config_flag(&argv(c)).ok_or("the container's command line passes no --config")?;
    let (vol, rel) = mount_for(c, &path)
        .ok_or_else(|| format!("--config {path}: no volume is mounted there"))?;
    let src = volume(pod_spec(m)?, vol)
        .and_then(|v| v.config_map.as_ref())
        .ok_or_else(|| format!("--config {path}: volume {vol:?} is not a ConfigMap"))?;
    ensure!(
        src.name == name(&m.config_map.metadata),
        "--config {path}: volume {vol:?} holds ConfigMap {:?}, not {:?}",
        src.name,
        name(&m.config_map.metadata)
    );
    // With `items`, a key is mounted at its `path`; without, every key at its own name.
    let key = match &src.items {
        Some(items) => items
            .iter()
            .find(|i| i.path == rel)
            .map(|i| i.key.clone())
            .ok_or_else(|| format!("--config {path}: no item of {vol:?} is at {rel:?}"))?,
        None => rel,
    };
    let text = m
        .config_map
        .data
        .as_ref()
        .and_then(|d| d.get(&key))
        .ok_or_else(|| format!("--config {path}: ConfigMap has no key {key:?}"))?;
    Ok((key, text.clone()))
}

// ---------------------------------------------------------------------------------------
// The ConfigMap's podtap.toml through podtap's loader.

/// Load the mounted podtap.toml as `podtap run --config` would, and check that it is a
/// cluster configuration.
fn check_config(m: &Manifests) -> Result<Config, String> {
    let (key, text) = mounted_config(m)?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let file = dir.path().join(&key);
    std::fs::write(&file, &text).map_err(|e| e.to_string())?;
    let cfg = Config::load(Some(&file)).map_err(|e| format!("ConfigMap {key}: {e}"))?;
    let a = &cfg.attribution;
    ensure!(
        a.enabled && a.kubernetes.enabled,
        "ConfigMap {key}: attribution.kubernetes is not enabled"
    );
    ensure!(
        a.kubernetes.kubeconfig.is_empty(),
        "ConfigMap {key}: attribution.kubernetes.kubeconfig is set; in a pod the \
         service account is the credential"
    );
    ensure!(
        cfg.capture.mode == CaptureMode::Auto,
        "ConfigMap {key}: capture.mode is {:?}, not auto",
        cfg.capture.mode
    );
    ensure!(
        cfg.capture.workers > 0,
        "ConfigMap {key}: capture.workers = 0 sizes memory by the node's CPUs, which the \
         container's limit cannot follow"
    );
    ensure!(
        cfg.export.otlp.enabled,
        "ConfigMap {key}: export.otlp is not enabled"
    );
    check_collector_port(&cfg)?;
    prometheus_listen(&cfg)?;
    Ok(cfg)
}

/// The OTLP endpoint's port is the one deploy/otel-collector.yaml receives this
/// protocol on.
fn check_collector_port(cfg: &Config) -> Check {
    let collector = documents(
        &read("deploy/otel-collector.yaml"),
        "deploy/otel-collector.yaml",
    )?;
    let protocol = match cfg.export.otlp.protocol {
        podtap::export::config::Protocol::Grpc => "grpc",
        podtap::export::config::Protocol::HttpProtobuf => "http",
    };
    let listen = collector
        .first()
        .and_then(|c| {
            c.get("receivers")?
                .get("otlp")?
                .get("protocols")?
                .get(protocol)
        })
        .and_then(|p| p.get("endpoint")?.as_str())
        .ok_or_else(|| format!("deploy/otel-collector.yaml receives no OTLP/{protocol}"))?;
    let want = listen.rsplit(':').next().unwrap_or("");
    let url: http::Uri = cfg
        .export
        .otlp
        .endpoint
        .parse()
        .map_err(|e| format!("export.otlp.endpoint: {e}"))?;
    let port = url.port_u16().map(|p| p.to_string()).unwrap_or_default();
    ensure!(
        port == want,
        "export.otlp.endpoint {} uses port {port:?}, the collector receives OTLP/{protocol} \
         on {want}",
        cfg.export.otlp.endpoint
    );
    Ok(())
}

/// `export.prometheus.listen`: set, on every address (the kubelet probes and Prometheus
/// scrapes the node's address), and its port.
fn prometheus_listen(cfg: &Config) -> Result<u16, String> {
    let l = &cfg.export.prometheus.listen;
    let addr: SocketAddr = l
        .parse()
        .map_err(|_| format!("export.prometheus.listen {l:?} is not address:port"))?;
    ensure!(
        addr.ip().is_unspecified(),
        "export.prometheus.listen {l:?}: the kubelet's probes and Prometheus reach the \
         node's address, so it must listen on the unspecified address (0.0.0.0)"
    );
    Ok(addr.port())
}

// ---------------------------------------------------------------------------------------
// RBAC against src/k8s/kube.rs.

/// A resource kube.rs watches: the k8s-openapi type name, API group and plural.
struct Watched {
    type_name: &'static str,
    group: &'static str,
    plural: &'static str,
}

fn watched<T: Resource>() -> Watched {
    let full = std::any::type_name::<T>();
    Watched {
        type_name: full.rsplit("::").next().unwrap_or(full),
        group: T::GROUP,
        plural: T::URL_PATH_SEGMENT,
    }
}

/// The `PodtapPolicy` custom resource, as `src/k8s/policy.rs` names it.
fn watched_policies() -> Watched {
    use podtap::k8s::policy;
    Watched {
        type_name: "PodtapPolicy",
        group: policy::GROUP,
        plural: policy::PLURAL,
    }
}

/// What `kube::start` and `policy_watch::start` watch. Tied to the code twice: the
/// count is `kube::WATCHED` plus the policies, and the type names are the `Api::<T>` of
/// src/k8s/kube.rs and src/k8s/policy_watch.rs, so a new watch there fails here until
/// it is added (and granted).
fn kube_rs_watches() -> Result<Vec<Watched>, String> {
    let list = vec![
        watched::<Pod>(),
        watched::<Service>(),
        watched::<EndpointSlice>(),
        watched::<ReplicaSet>(),
        watched::<Job>(),
        watched_policies(),
    ];
    ensure!(
        list.len() as u32 == podtap::k8s::kube::WATCHED + 1,
        "this test lists {} watched resources, src/k8s/kube.rs says WATCHED = {} (and the policies)",
        list.len(),
        podtap::k8s::kube::WATCHED
    );
    let source = read("src/k8s/kube.rs") + &read("src/k8s/policy_watch.rs");
    let re = regex::Regex::new(r"Api::<(\w+)>").expect("static regex");
    let in_code: BTreeSet<&str> = re
        .captures_iter(&source)
        .filter_map(|c| c.get(1))
        .map(|m| m.as_str())
        .collect();
    let listed: BTreeSet<&str> = list.iter().map(|w| w.type_name).collect();
    ensure!(
        in_code == listed,
        "src/k8s/kube.rs and policy_watch.rs watch {in_code:?}, this test lists {listed:?}"
    );
    Ok(list)
}

/// The subresource podtap writes: each node's entry of a policy's status.
const STATUS: &str = "podtappolicies/status";

/// The ClusterRole grants list and watch on every watched resource in its API group, and
/// patch on the policies' status, and nothing else: only read verbs elsewhere, only
/// those resources, no wildcards.
fn check_rbac(m: &Manifests) -> Check {
    let watches = kube_rs_watches()?;
    let rules = m.cluster_role.rules.as_deref().unwrap_or_default();
    ensure!(
        m.cluster_role.aggregation_rule.is_none(),
        "the ClusterRole aggregates other roles"
    );
    for w in &watches {
        for verb in ["list", "watch"] {
            let granted = rules.iter().any(|r| {
                let has = |l: &Option<Vec<String>>, x: &str| {
                    l.as_deref().unwrap_or_default().iter().any(|v| v == x)
                };
                has(&r.api_groups, w.group)
                    && has(&r.resources, w.plural)
                    && r.verbs.iter().any(|v| v == verb)
                    && r.resource_names.as_deref().unwrap_or_default().is_empty()
            });
            ensure!(
                granted,
                "the ClusterRole does not grant {verb} on {} (group {:?}), which \
                 src/k8s/kube.rs watches",
                w.plural,
                w.group
            );
        }
    }
    let policies = watched_policies();
    let patches_status = rules.iter().any(|r| {
        r.api_groups.as_deref().unwrap_or_default() == [policies.group]
            && r.resources.as_deref().unwrap_or_default() == [STATUS]
            && r.verbs == ["patch"]
    });
    ensure!(
        patches_status,
        "the ClusterRole does not grant patch on {STATUS} (group {:?}) alone, where \
         src/k8s/policy_watch.rs writes each node's status",
        policies.group
    );
    let mut allowed: BTreeSet<(&str, &str)> = watches.iter().map(|w| (w.group, w.plural)).collect();
    allowed.insert((policies.group, STATUS));
    for r in rules {
        ensure!(
            r.non_resource_urls
                .as_deref()
                .unwrap_or_default()
                .is_empty(),
            "the ClusterRole grants non-resource URLs"
        );
        let status_only = r.resources.as_deref().unwrap_or_default() == [STATUS];
        for v in &r.verbs {
            ensure!(
                ["get", "list", "watch"].contains(&v.as_str()) || (status_only && v == "patch"),
                "the ClusterRole grants {v:?}; podtap only reads (and patches {STATUS})"
            );
        }
        for g in r.api_groups.as_deref().unwrap_or_default() {
            for res in r.resources.as_deref().unwrap_or_default() {
                ensure!(
                    allowed.contains(&(g.as_str(), res.as_str())),
                    "the ClusterRole grants {res:?} in group {g:?}, which src/k8s/kube.rs \
                     does not watch"
                );
            }
        }
    }
    Ok(())
}

fn check_binding(m: &Manifests) -> Check {
    let b = &m.binding;
    ensure!(
        b.role_ref.kind == "ClusterRole"
            && b.role_ref.api_group.as_deref() == Some("rbac.authorization.k8s.io")
            && b.role_ref.name == name(&m.cluster_role.metadata),
        "the ClusterRoleBinding's roleRef {:?} is not the ClusterRole {:?}",
        b.role_ref,
        name(&m.cluster_role.metadata)
    );
    let spec = pod_spec(m)?;
    let sa = spec
        .service_account_name
        .as_deref()
        .ok_or("the DaemonSet sets no serviceAccountName (it would run as \"default\")")?;
    ensure!(
        sa == name(&m.service_account.metadata),
        "the DaemonSet runs as service account {sa:?}, the manifest defines {:?}",
        name(&m.service_account.metadata)
    );
    let ds_ns = ns_of(&m.daemon_set.metadata);
    let bound = b.subjects.as_deref().unwrap_or_default().iter().any(|s| {
        s.kind == "ServiceAccount" && s.name == sa && s.namespace.as_deref() == Some(ds_ns)
    });
    ensure!(
        bound,
        "the ClusterRoleBinding does not bind service account {sa:?} in namespace \
         {ds_ns:?} (subjects {:?})",
        b.subjects
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The DaemonSet against the code.

/// Node-name lookups change the process environment: one at a time.
static ENV: Mutex<()> = Mutex::new(());

/// What `k8s::node_name` returns for `cfg` when the environment variable `var` holds a
/// marker value.
fn node_name_with(var: &str, cfg: &Config) -> String {
    const MARKER: &str = "deploy-manifests-test-node";
    let _g = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let old = std::env::var_os(var);
    // SAFETY: every change of the environment in this test binary holds ENV, and the
    // code that reads it meanwhile (here and in the exporter) uses std::env, which takes
    // std's own environment lock; no foreign code reads it.
    unsafe { std::env::set_var(var, MARKER) };
    let got = podtap::k8s::node_name(&cfg.attribution);
    // SAFETY: as above.
    unsafe {
        match old {
            Some(v) => std::env::set_var(var, v),
            None => std::env::remove_var(var),
        }
    }
    if got == MARKER { var.to_string() } else { got }
}

/// A container port by number or name.
fn resolve_port(c: &Container, p: &IntOrString) -> Option<i32> {
    match p {
        IntOrString::Int(n) => Some(*n),
        IntOrString::String(s) => c
            .ports
            .as_deref()?
            .iter()
            .find(|cp| cp.name.as_deref() == Some(s))
            .map(|cp| cp.container_port),
    }
}

/// GET `path` on 127.0.0.1:`port`: the status code (0 when nothing answered).
fn http_status(port: u16, path: &str) -> u16 {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    );
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Ask podtap's real exporter, started with the ConfigMap's export settings (on a
/// loopback port, OTLP off), what it answers on the probes' paths: liveness must pass
/// even before anything is captured (a node without pods yet must not be restarted in a
/// loop); readiness must fail until capture runs and pass once it does.
fn check_probe_paths(cfg: &Config, liveness: &str, readiness: &str) -> Check {
    let mut export = cfg.export.clone();
    export.prometheus.listen = "127.0.0.1:0".into();
    export.otlp.enabled = false;
    let health = podtap::export::Health::new();
    let exporter = podtap::export::Exporter::start(&export, health.clone())
        .map_err(|e| format!("podtap's exporter: {e}"))?;
    let port = exporter
        .prometheus_addr
        .ok_or("the exporter serves no HTTP")?
        .port();
    let live_idle = http_status(port, liveness);
    let ready_idle = http_status(port, readiness);
    health.set_capturing(1);
    let live = http_status(port, liveness);
    let ready = http_status(port, readiness);
    exporter.shutdown(Duration::from_secs(1));
    ensure!(
        live_idle == 200 && live == 200,
        "livenessProbe {liveness}: podtap answers {live_idle} (not capturing) and {live} \
         (capturing), not 200"
    );
    ensure!(
        ready_idle == 503 && ready == 200,
        "readinessProbe {readiness}: podtap answers {ready_idle} before capturing and \
         {ready} while capturing (a readiness endpoint answers 503, then 200)"
    );
    Ok(())
}

/// The real `podtap` binary accepts the container's command line: the same arguments
/// with `--help` appended make clap validate every one of them and then print the help
/// instead of starting the daemon.
fn check_command_line(argv: &[String]) -> Check {
    let (bin, args) = argv.split_first().ok_or("the container has no command")?;
    ensure!(
        Path::new(bin).file_name().is_some_and(|n| n == "podtap"),
        "the container runs {bin:?}, not podtap"
    );
    ensure!(
        args.first().map(String::as_str) == Some("run"),
        "the container runs `podtap {}`, not `podtap run`",
        args.join(" ")
    );
    let out = Command::new(env!("CARGO_BIN_EXE_podtap"))
        .args(args)
        .arg("--help")
        .output()
        .map_err(|e| format!("cannot run podtap: {e}"))?;
    ensure!(
        out.status.success(),
        "podtap rejects the container's command line `{}`: {}",
        argv.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

fn check_daemon_set(m: &Manifests, cfg: &Config) -> Check {
    let spec = pod_spec(m)?;
    let c = container(m)?;
    ensure!(
        spec.host_network == Some(true),
        "hostNetwork is not true: podtap must capture the node's interfaces"
    );
    ensure!(
        spec.host_pid == Some(true),
        "hostPID is not true: node-local discovery walks the node's /proc/*/ns/net"
    );
    ensure!(
        spec.dns_policy.as_deref() == Some("ClusterFirstWithHostNet"),
        "dnsPolicy is {:?}: with hostNetwork only ClusterFirstWithHostNet resolves the \
         collector's Service name",
        spec.dns_policy
    );
    let tolerates_all = spec
        .tolerations
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|t| t.operator.as_deref() == Some("Exists") && t.key.is_none() && t.effect.is_none());
    ensure!(
        tolerates_all,
        "no toleration {{operator: Exists}}: tainted nodes would go unwatched"
    );

    // The command line: accepted by podtap, --config pointing into the ConfigMap mount
    // (mounted_config, which check_config already followed).
    let argv = argv(c);
    check_command_line(&argv)?;

    // NODE_NAME: from the downward API's spec.nodeName, under the name podtap reads.
    let env = c.env.as_deref().unwrap_or_default();
    let node_var = env
        .iter()
        .find(|e| {
            e.value_from
                .as_ref()
                .and_then(|f| f.field_ref.as_ref())
                .is_some_and(|f| f.field_path == "spec.nodeName")
        })
        .map(|e| e.name.as_str())
        .ok_or("no environment variable comes from the downward API's spec.nodeName")?;
    let seen = node_name_with(node_var, cfg);
    ensure!(
        seen == node_var,
        "podtap does not take the node name from {node_var} (spec.nodeName): with the \
         ConfigMap's settings k8s::node_name gives {seen:?}"
    );

    // Probes: podtap's paths, on the port the ConfigMap makes it listen on.
    let port = prometheus_listen(cfg)?;
    let mut paths = Vec::new();
    for (what, probe) in [
        ("livenessProbe", &c.liveness_probe),
        ("readinessProbe", &c.readiness_probe),
    ] {
        let get = probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .ok_or_else(|| format!("no {what} with httpGet"))?;
        let p = resolve_port(c, &get.port);
        ensure!(
            p == Some(i32::from(port)),
            "{what} probes port {:?} (= {p:?}); export.prometheus.listen is on {port}",
            get.port
        );
        ensure!(
            get.scheme.as_deref().unwrap_or("HTTP") == "HTTP",
            "{what}: podtap serves plain HTTP"
        );
        paths.push(get.path.clone().unwrap_or_else(|| "/".into()));
    }
    check_probe_paths(cfg, &paths[0], &paths[1])?;

    // Prometheus annotations name the same port.
    let ann = m
        .daemon_set
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|md| md.annotations.clone())
        .unwrap_or_default();
    ensure!(
        ann.get("prometheus.io/scrape").map(String::as_str) == Some("true")
            && ann.get("prometheus.io/port") == Some(&port.to_string())
            && ann.get("prometheus.io/path").map(String::as_str) == Some("/metrics"),
        "pod annotations {ann:?} do not point Prometheus at /metrics on port {port}"
    );

    check_host_mounts(m, cfg)?;
    check_privileges(c)?;
    Ok(())
}

/// The node's paths podtap uses are mounted from the node.
fn check_host_mounts(m: &Manifests, cfg: &Config) -> Check {
    let spec = pod_spec(m)?;
    let c = container(m)?;
    let mounts = c.volume_mounts.as_deref().unwrap_or_default();
    // (path in the container, what uses it, required propagation)
    let state_dir = cfg.capture.mirror.state_dir.to_string_lossy().into_owned();
    let wanted = [
        (
            "/sys/fs/bpf",
            "the bpffs libxdp pins the XDP dispatcher in",
            Some("Bidirectional"),
        ),
        (
            "/var/run/netns",
            "named network namespaces (attribution, replay_interfaces)",
            Some("HostToContainer"),
        ),
        ("/sys", "the node's /sys/class/net", None),
        (
            state_dir.as_str(),
            "capture.mirror.state_dir, which must outlive the container",
            None,
        ),
        (
            cfg.recorder.dir.as_str(),
            "recorder.dir, whose recordings must outlive the container",
            None,
        ),
    ];
    for (path, why, propagation) in wanted {
        let vm = mounts
            .iter()
            .find(|vm| vm.mount_path == path)
            .ok_or_else(|| format!("nothing is mounted at {path} ({why})"))?;
        let host = volume(spec, &vm.name)
            .and_then(|v| v.host_path.as_ref())
            .ok_or_else(|| format!("{path} ({why}) is not a hostPath volume"))?;
        ensure!(
            host.path == path,
            "{path} ({why}) is mounted from the node's {}, not {path}",
            host.path
        );
        if let Some(p) = propagation {
            ensure!(
                vm.mount_propagation.as_deref() == Some(p),
                "{path} ({why}) is mounted with propagation {:?}, not {p}",
                vm.mount_propagation
            );
        }
    }
    // The API server refuses Bidirectional mounts in unprivileged containers.
    let privileged = c
        .security_context
        .as_ref()
        .and_then(|s| s.privileged)
        .unwrap_or(false);
    for vm in mounts {
        ensure!(
            vm.mount_propagation.as_deref() != Some("Bidirectional") || privileged,
            "{} is mounted Bidirectional, which only a privileged container may",
            vm.mount_path
        );
    }
    Ok(())
}

/// Privileged, or every capability live capture needs.
fn check_privileges(c: &Container) -> Check {
    let sc = c
        .security_context
        .as_ref()
        .ok_or("the container has no securityContext")?;
    if sc.privileged == Some(true) {
        return Ok(());
    }
    let added: BTreeSet<&str> = sc
        .capabilities
        .as_ref()
        .and_then(|c| c.add.as_deref())
        .unwrap_or_default()
        .iter()
        .map(String::as_str)
        .collect();
    for cap in [
        "NET_ADMIN",
        "NET_RAW",
        "BPF",
        "PERFMON",
        "SYS_ADMIN",
        "SYS_PTRACE",
        "IPC_LOCK",
    ] {
        ensure!(
            added.contains(cap),
            "the container is neither privileged nor granted CAP_{cap}"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Memory: the container's request and limit against the config's bounds.

/// Records per batch between workers and writer (run.rs RECORD_BATCH).
const RECORD_BATCH: u64 = 256;
/// What the bounds do not cover: decoder state, metric series, the runtimes, the binary.
const HEADROOM: u64 = 128 << 20;

/// Bytes of a Kubernetes memory quantity (`512Mi`, `1Gi`, `1G`, `1000000`).
fn quantity_bytes(q: &str) -> Option<u64> {
    let split = q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len());
    let (n, unit) = q.split_at(split);
    let n: u64 = n.parse().ok()?;
    let mult: u64 = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// (allocated up front, every bound added up) in bytes for `cfg`.
fn memory_bounds(cfg: &Config) -> (u64, u64) {
    let c = &cfg.capture;
    let workers = c.workers as u64;
    let ring = u64::from(c.tpacket.block_size) * u64::from(c.tpacket.block_count);
    let umem = u64::from(c.xdp.frame_size) * u64::from(c.xdp.frame_count);
    let flows = cfg.flow.max_flows as u64 * std::mem::size_of::<podtap::flow::Flow>() as u64;
    let reassembly = cfg.reassembly.max_worker_bytes as u64;
    let record = std::mem::size_of::<podtap::export::Record>() as u64;
    let records = cfg.output.queue_batches as u64 * RECORD_BATCH * record;
    let spans = cfg.export.spans.max_buffered_bytes as u64 + cfg.export.spans.queue as u64 * record;
    let up_front = workers * (ring + umem);
    (
        up_front,
        up_front + workers * (flows + reassembly) + records + spans + cfg.recorder.memory_bound(),
    )
}

fn check_memory(m: &Manifests, cfg: &Config) -> Check {
    let c = container(m)?;
    let res = c
        .resources
        .as_ref()
        .ok_or("the container sets no resources")?;
    let mem = |which: &Option<
        BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >,
               what: &str| {
        which
            .as_ref()
            .and_then(|m| m.get("memory"))
            .ok_or_else(|| format!("the container sets no memory {what}"))
            .and_then(|q| {
                quantity_bytes(&q.0).ok_or_else(|| format!("memory {what} {:?}: unreadable", q.0))
            })
    };
    let (request, limit) = (mem(&res.requests, "request")?, mem(&res.limits, "limit")?);
    let (up_front, bound) = memory_bounds(cfg);
    let mib = |b: u64| b >> 20;
    ensure!(
        request >= up_front,
        "memory request {} MiB is less than the rings and UMEM allocated at start ({} MiB)",
        mib(request),
        mib(up_front)
    );
    ensure!(
        limit >= bound + HEADROOM,
        "memory limit {} MiB does not cover the ConfigMap's bounds ({} MiB) plus {} MiB \
         for the rest",
        mib(limit),
        mib(bound),
        mib(HEADROOM)
    );
    ensure!(request <= limit, "memory request above the limit");
    Ok(())
}

/// The optional metrics Service selects the DaemonSet's pods on the metrics port.
fn check_services(m: &Manifests, cfg: &Config) -> Check {
    let port = i32::from(prometheus_listen(cfg)?);
    let c = container(m)?;
    let labels = m
        .daemon_set
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|md| md.labels.clone())
        .unwrap_or_default();
    for s in &m.services {
        let spec = s.spec.as_ref().ok_or("Service without spec")?;
        let sel = spec.selector.clone().unwrap_or_default();
        ensure!(
            !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v)),
            "Service {} does not select podtap's pods",
            name(&s.metadata)
        );
        for p in spec.ports.as_deref().unwrap_or_default() {
            let target = p.target_port.clone().unwrap_or(IntOrString::Int(p.port));
            ensure!(
                resolve_port(c, &target) == Some(port),
                "Service {} targets {target:?}, podtap listens on {port}",
                name(&s.metadata)
            );
        }
    }
    Ok(())
}

/// Every check, in order; the first failure.
fn check(text: &str) -> Check {
    let m = parse(text)?;
    check_objects(&m)?;
    let cfg = check_config(&m)?;
    check_rbac(&m)?;
    check_binding(&m)?;
    check_daemon_set(&m, &cfg)?;
    check_memory(&m, &cfg)?;
    check_services(&m, &cfg)?;
    Ok(())
}

fn manifests() -> Manifests {
    parse(&read(MANIFEST)).unwrap_or_else(|e| panic!("{e}"))
}

// ---------------------------------------------------------------------------------------
// Tests.

#[test]
fn every_document_is_its_kinds_kubernetes_type() {
    let m = manifests();
    check_objects(&m).unwrap();
    assert_eq!(name(&m.namespace.metadata), "podtap");
    assert_eq!(m.services.len(), 1, "the metrics Service");
}

#[test]
fn config_map_loads_through_podtaps_config_loader() {
    let m = manifests();
    let cfg = check_config(&m).unwrap();
    assert!(cfg.attribution.kubernetes.enabled);
    assert_eq!(prometheus_listen(&cfg), Ok(9464));
    assert_eq!(
        cfg.export.otlp.endpoint,
        "http://otel-collector.observability:4317"
    );
}

#[test]
fn cluster_role_grants_list_and_watch_on_what_kube_rs_watches() {
    let m = manifests();
    check_rbac(&m).unwrap();
    let granted: BTreeSet<(String, String)> = m
        .cluster_role
        .rules
        .iter()
        .flatten()
        .flat_map(|r| {
            let groups = r.api_groups.clone().unwrap_or_default();
            let resources = r.resources.clone().unwrap_or_default();
            groups.into_iter().flat_map(move |g| {
                resources
                    .clone()
                    .into_iter()
                    .map(move |res| (g.clone(), res))
            })
        })
        .collect();
    let expected: BTreeSet<(String, String)> = [
        ("", "pods"),
        ("", "services"),
        ("discovery.k8s.io", "endpointslices"),
        ("apps", "replicasets"),
        ("batch", "jobs"),
        ("podtap.io", "podtappolicies"),
        ("podtap.io", "podtappolicies/status"),
    ]
    .iter()
    .map(|(g, r)| (g.to_string(), r.to_string()))
    .collect();
    assert_eq!(granted, expected);
}

#[test]
fn cluster_role_binding_binds_the_daemon_sets_service_account() {
    check_binding(&manifests()).unwrap();
}

#[test]
fn daemon_set_runs_podtap_as_its_config_and_code_expect() {
    let m = manifests();
    let cfg = check_config(&m).unwrap();
    check_daemon_set(&m, &cfg).unwrap();
    check_services(&m, &cfg).unwrap();
    let (key, _) = mounted_config(&m).unwrap();
    assert_eq!(key, "podtap.toml");
}

#[test]
fn memory_request_and_limit_cover_the_configs_bounds() {
    let m = manifests();
    let cfg = check_config(&m).unwrap();
    check_memory(&m, &cfg).unwrap();
    let (up_front, bound) = memory_bounds(&cfg);
    eprintln!(
        "allocated at start {} MiB, all bounds {} MiB (+{} MiB headroom)",
        up_front >> 20,
        bound >> 20,
        HEADROOM >> 20
    );
}

#[test]
fn kustomization_lists_every_manifest() {
    let docs = documents(
        &read("deploy/kubernetes/kustomization.yaml"),
        "kustomization.yaml",
    )
    .unwrap();
    assert_eq!(docs.len(), 1);
    let k = &docs[0];
    assert_eq!(k["kind"].as_str(), Some("Kustomization"));
    let listed: BTreeSet<String> = k["resources"]
        .as_sequence()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().expect("a file name").to_string())
        .collect();
    let on_disk: BTreeSet<String> = std::fs::read_dir(repo_file("deploy/kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    assert_eq!(listed, on_disk);
}

/// deploy/Dockerfile cannot be built here (no registry to pull its base images from);
/// this checks what can be checked: it builds with the Makefile's RUN_PKGS, installs the
/// binary where the DaemonSet runs it, and its runtime stage has the libraries and the
/// tools podtap runs.
#[test]
fn dockerfile_matches_the_makefile_and_the_daemon_set() {
    let docker = read("deploy/Dockerfile");
    let stages: Vec<&str> = docker.split("\nFROM ").collect();
    assert_eq!(stages.len(), 3, "a build stage and a runtime stage");
    let (build, runtime) = (stages[1], stages[2]);
    assert!(build.starts_with("rust:bookworm"), "{build}");
    assert!(runtime.starts_with("debian:bookworm-slim"), "{runtime}");
    let makefile = read("Makefile");
    let run_pkgs = makefile
        .lines()
        .find_map(|l| l.strip_prefix("RUN_PKGS :="))
        .expect("RUN_PKGS in the Makefile");
    let words = |s: &str| -> BTreeSet<String> {
        s.split(|c: char| c.is_whitespace() || c == '\\')
            .filter(|w| !w.is_empty())
            .map(String::from)
            .collect()
    };
    let build_words = words(build);
    for p in run_pkgs.split_whitespace() {
        assert!(build_words.contains(p), "build stage lacks RUN_PKGS's {p}");
    }
    let runtime_words = words(runtime);
    for p in [
        "libelf1",
        "zlib1g",
        "iproute2",
        "ethtool",
        "ca-certificates",
    ] {
        assert!(runtime_words.contains(p), "runtime stage lacks {p}");
    }
    let bin = argv(container(&manifests()).unwrap())[0].clone();
    assert!(
        runtime.contains(&format!("COPY --from=build {bin} {bin}")),
        "the runtime stage does not install {bin}"
    );
}

/// Break the manifest in one place at a time: each break must fail the check that
/// guards it, with a message naming the problem.
#[test]
fn broken_manifests_are_caught() {
    let good = read(MANIFEST);
    check(&good).unwrap();
    // (what, text to replace (exactly once in the file), replacement, expected in error)
    let breaks: &[(&str, &str, &str, &str)] = &[
        (
            "misspelt field",
            "      hostNetwork: true\n",
            "      hostNetwork: true\n      hostNetwrok: true\n",
            "hostNetwrok: unknown field",
        ),
        (
            "wrong apiVersion for the kind",
            "apiVersion: apps/v1\nkind: DaemonSet",
            "apiVersion: extensions/v1beta1\nkind: DaemonSet",
            "unexpected apiVersion/kind",
        ),
        (
            "no hostNetwork",
            "      hostNetwork: true\n",
            "      hostNetwork: false\n",
            "hostNetwork is not true",
        ),
        (
            "no hostPID",
            "      hostPID: true\n",
            "",
            "hostPID is not true",
        ),
        (
            "cluster DNS lost",
            "dnsPolicy: ClusterFirstWithHostNet",
            "dnsPolicy: ClusterFirst",
            "dnsPolicy",
        ),
        (
            "tainted nodes skipped",
            "      tolerations:\n        - operator: Exists\n",
            "      tolerations:\n        - key: node-role.kubernetes.io/control-plane\n          operator: Exists\n",
            "operator: Exists",
        ),
        (
            "node name from the pod name",
            "fieldPath: spec.nodeName",
            "fieldPath: metadata.name",
            "spec.nodeName",
        ),
        (
            "node name under a variable podtap does not read",
            "- name: NODE_NAME",
            "- name: MY_NODE_NAME",
            "does not take the node name from MY_NODE_NAME",
        ),
        (
            "liveness on a path podtap does not serve",
            "path: /healthz",
            "path: /health",
            "livenessProbe /health",
        ),
        (
            "readiness on the liveness path",
            "path: /readyz",
            "path: /healthz",
            "readinessProbe /healthz",
        ),
        (
            "Prometheus port moved in the config only",
            "listen = \"0.0.0.0:9464\"",
            "listen = \"0.0.0.0:9465\"",
            "export.prometheus.listen is on 9465",
        ),
        (
            "Prometheus on loopback",
            "listen = \"0.0.0.0:9464\"",
            "listen = \"127.0.0.1:9464\"",
            "unspecified address",
        ),
        (
            "scrape annotation on another port",
            "prometheus.io/port: \"9464\"",
            "prometheus.io/port: \"9000\"",
            "do not point Prometheus",
        ),
        (
            "unknown config key",
            "    enabled = true\n---",
            "    enabled = true\n    watch_nodes = true\n---",
            "watch_nodes",
        ),
        (
            "Kubernetes attribution off",
            "    enabled = true\n---",
            "    enabled = false\n---",
            "attribution.kubernetes is not enabled",
        ),
        (
            "OTLP to the collector's HTTP port over gRPC",
            "otel-collector.observability:4317",
            "otel-collector.observability:4318",
            "receives OTLP/grpc on 4317",
        ),
        (
            "jobs not granted",
            "  - apiGroups: [\"batch\"]\n    resources: [\"jobs\"]\n    verbs: [\"list\", \"watch\"]\n",
            "",
            "list on jobs",
        ),
        (
            "endpointslices in the wrong group",
            "apiGroups: [\"discovery.k8s.io\"]",
            "apiGroups: [\"extensions\"]",
            "endpointslices (group \"discovery.k8s.io\")",
        ),
        (
            "no watch on pods",
            "resources: [\"pods\", \"services\"]\n    verbs: [\"list\", \"watch\"]",
            "resources: [\"pods\", \"services\"]\n    verbs: [\"list\"]",
            "watch on pods",
        ),
        (
            "secrets granted",
            "resources: [\"pods\", \"services\"]",
            "resources: [\"pods\", \"services\", \"secrets\"]",
            "\"secrets\"",
        ),
        (
            "policies patched, not only their status",
            "resources: [\"podtappolicies\"]\n    verbs: [\"list\", \"watch\"]",
            "resources: [\"podtappolicies\"]\n    verbs: [\"list\", \"watch\", \"patch\"]",
            "grants \"patch\"",
        ),
        (
            "no status patch",
            "    resources: [\"podtappolicies/status\"]\n    verbs: [\"patch\"]\n",
            "    resources: [\"podtappolicies/status\"]\n    verbs: [\"get\"]\n",
            "does not grant patch on podtappolicies/status",
        ),
        (
            "policies not watched",
            "resources: [\"podtappolicies\"]\n    verbs: [\"list\", \"watch\"]",
            "resources: [\"podtappolicies\"]\n    verbs: [\"list\"]",
            "watch on podtappolicies",
        ),
        (
            "write verb granted",
            "resources: [\"pods\", \"services\"]\n    verbs: [\"list\", \"watch\"]",
            "resources: [\"pods\", \"services\"]\n    verbs: [\"list\", \"watch\", \"delete\"]",
            "grants \"delete\"",
        ),
        (
            "binding in another namespace",
            "  - kind: ServiceAccount\n    name: podtap\n    namespace: podtap\n",
            "  - kind: ServiceAccount\n    name: podtap\n    namespace: default\n",
            "does not bind service account",
        ),
        (
            "binding to another role",
            "  kind: ClusterRole\n  name: podtap\nsubjects:",
            "  kind: ClusterRole\n  name: view\nsubjects:",
            "roleRef",
        ),
        (
            "DaemonSet under another account",
            "serviceAccountName: podtap",
            "serviceAccountName: podtap-agent",
            "service account \"podtap-agent\"",
        ),
        (
            "config mounted elsewhere",
            "mountPath: /etc/podtap\n",
            "mountPath: /etc/podtap.d\n",
            "--config /etc/podtap/podtap.toml: no volume",
        ),
        (
            "--config names a key the ConfigMap lacks",
            "- /etc/podtap/podtap.toml",
            "- /etc/podtap/config.toml",
            "no key \"config.toml\"",
        ),
        (
            "flag podtap does not have",
            "- --output\n",
            "- --outptu\n",
            "rejects the container's command line",
        ),
        (
            "bpffs not mounted",
            "mountPath: /sys/fs/bpf\n",
            "mountPath: /bpf\n",
            "nothing is mounted at /sys/fs/bpf",
        ),
        (
            "Bidirectional without privileged",
            "privileged: true",
            "privileged: false",
            "Bidirectional",
        ),
        (
            "mirror state not on the node",
            "mountPath: /run/podtap\n",
            "mountPath: /run/podtap-state\n",
            "capture.mirror.state_dir",
        ),
        (
            "recordings not on the node",
            "mountPath: /var/lib/podtap/recordings\n",
            "mountPath: /var/lib/podtap\n",
            "recorder.dir",
        ),
        (
            "recorder on without room for it",
            "    enabled = false\n    # On the node",
            "    enabled = true\n    # On the node",
            "memory limit",
        ),
        (
            "memory limit below the bounds",
            "memory: 1Gi",
            "memory: 384Mi",
            "does not cover",
        ),
        (
            "more workers, same limit",
            "workers = 2\n",
            "workers = 4\n",
            "does not cover",
        ),
    ];
    let mut missed = Vec::new();
    for (what, from, to, expect) in breaks {
        assert_eq!(
            good.matches(from).count(),
            1,
            "{what}: {from:?} must occur exactly once in {MANIFEST}"
        );
        match check(&good.replacen(from, to, 1)) {
            Ok(()) => missed.push(format!("{what}: passed")),
            Err(e) if e.contains(expect) => eprintln!("{what}: {e}"),
            Err(e) => missed.push(format!("{what}: failed with {e:?}, expected {expect:?}")),
        }
    }
    assert!(missed.is_empty(), "{}", missed.join("\n"));
}

// ---------------------------------------------------------------------------------------
// The PodtapPolicy CustomResourceDefinition against src/k8s/policy.rs and docs/POLICIES.md.

const CRD: &str = "deploy/kubernetes/podtappolicy-crd.yaml";

type Crd =
    k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

/// The CRD file: one CustomResourceDefinition (checked like every other manifest:
/// its k8s-openapi type, no unknown field), naming the group, kind and plural the
/// code watches, namespaced, one served and stored version the code's, with a status
/// subresource, and a structural schema (every object property typed).
fn check_crd(text: &str) -> Result<Crd, String> {
    use podtap::k8s::policy;
    let docs = documents(text, CRD)?;
    ensure!(
        docs.len() == 1,
        "{CRD}: {} documents, expected one",
        docs.len()
    );
    let crd: Crd = typed(&docs[0], &format!("{CRD} document 1"))?;
    let s = &crd.spec;
    ensure!(
        s.group == policy::GROUP
            && s.names.kind == policy::KIND
            && s.names.plural == policy::PLURAL
            && name(&crd.metadata) == format!("{}.{}", policy::PLURAL, policy::GROUP),
        "{CRD}: names {}/{} in group {} (metadata.name {}), the code watches {}/{} in {}",
        s.names.kind,
        s.names.plural,
        s.group,
        name(&crd.metadata),
        policy::KIND,
        policy::PLURAL,
        policy::GROUP
    );
    ensure!(
        s.scope == "Namespaced",
        "{CRD}: scope {}, policies are namespaced",
        s.scope
    );
    ensure!(
        s.versions.len() == 1,
        "{CRD}: {} versions, the code reads one",
        s.versions.len()
    );
    let v = &s.versions[0];
    ensure!(
        v.name == policy::VERSION && v.served && v.storage,
        "{CRD}: version {} (served {}, storage {}), the code reads {}",
        v.name,
        v.served,
        v.storage,
        policy::VERSION
    );
    ensure!(
        v.subresources
            .as_ref()
            .and_then(|r| r.status.as_ref())
            .is_some(),
        "{CRD}: no status subresource: each node's status write would change the spec's generation"
    );
    let schema = v
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .ok_or_else(|| format!("{CRD}: no openAPIV3Schema"))?;
    let schema = serde_json::to_value(schema).map_err(|e| e.to_string())?;
    structural(&schema, "openAPIV3Schema")?;
    for part in ["spec", "status"] {
        ensure!(
            schema["properties"][part].is_object(),
            "{CRD}: the schema has no {part}"
        );
    }
    let nodes = &schema["properties"]["status"]["properties"]["nodes"];
    ensure!(
        nodes["x-kubernetes-list-type"] == "map"
            && nodes["x-kubernetes-list-map-keys"] == serde_json::json!(["node"]),
        "{CRD}: status.nodes is not a list-map keyed by node: nodes would overwrite each other's entries"
    );
    Ok(crd)
}

/// Every schema node has a type, and every object's properties are schemas too
/// (a structural schema: the API server refuses a CRD otherwise).
fn structural(s: &Value, at: &str) -> Check {
    let ty = s["type"]
        .as_str()
        .ok_or_else(|| format!("{CRD}: {at} has no type"))?;
    if let Some(props) = s["properties"].as_object() {
        ensure!(ty == "object", "{CRD}: {at} has properties but is a {ty}");
        for (k, v) in props {
            structural(v, &format!("{at}.{k}"))?;
        }
    }
    if ty == "array" {
        structural(&s["items"], &format!("{at}[]"))?;
    }
    if let Some(ap) = s.get("additionalProperties") {
        structural(ap, &format!("{at}.*"))?;
    }
    Ok(())
}

/// `value` is valid under `schema` as the API server checks it: types, known
/// properties, required ones, enums and bounds.
fn validate(schema: &Value, value: &Value, at: &str) -> Check {
    let ty = schema["type"].as_str().unwrap_or("");
    match (ty, value) {
        ("object", Value::Object(m)) => {
            for r in schema["required"].as_array().into_iter().flatten() {
                let r = r.as_str().unwrap_or("");
                ensure!(m.contains_key(r), "{at}.{r}: required");
            }
            for (k, v) in m {
                let sub = match (
                    schema["properties"].get(k),
                    schema.get("additionalProperties"),
                ) {
                    (Some(p), _) => p,
                    (None, Some(ap)) => ap,
                    (None, None) if schema.get("properties").is_none() => continue,
                    (None, None) => return Err(format!("{at}.{k}: not in the schema")),
                };
                validate(sub, v, &format!("{at}.{k}"))?;
            }
        }
        ("array", Value::Array(items)) => {
            if let Some(max) = schema["maxItems"].as_u64() {
                ensure!(items.len() as u64 <= max, "{at}: more than {max} items");
            }
            for (i, v) in items.iter().enumerate() {
                validate(&schema["items"], v, &format!("{at}[{i}]"))?;
            }
        }
        ("string", Value::String(v)) => {
            if let Some(e) = schema["enum"].as_array() {
                ensure!(e.iter().any(|x| x == v), "{at}: {v:?} not one of {e:?}");
            }
        }
        ("integer", Value::Number(n)) if n.is_i64() => {
            let n = n.as_i64().unwrap_or(0);
            // Bounds read back as floats (k8s-openapi), of whole numbers.
            let bound = |k: &str| schema[k].as_f64().map(|b| b as i64);
            if let Some(min) = bound("minimum") {
                ensure!(n >= min, "{at}: {n} below {min}");
            }
            if let Some(max) = bound("maximum") {
                ensure!(n <= max, "{at}: {n} above {max}");
            }
        }
        _ => return Err(format!("{at}: {value} is not a {ty}")),
    }
    Ok(())
}

/// The example policy of docs/POLICIES.md (its first `yaml` block).
fn doc_example() -> Value {
    let doc = read("docs/POLICIES.md");
    let start = doc
        .find("```yaml\n")
        .expect("a yaml block in docs/POLICIES.md")
        + 8;
    let len = doc[start..].find("```").expect("the block's end");
    let y: serde_yaml_ng::Value = serde_yaml_ng::from_str(&doc[start..start + len]).unwrap();
    serde_json::to_value(y).unwrap()
}

#[test]
fn policy_crd_matches_the_code_and_the_documented_example() {
    let crd = check_crd(&read(CRD)).unwrap_or_else(|e| panic!("{e}"));
    let schema = serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap();
    // The documented example is valid under the schema, uses every field of the spec,
    // and podtap reads all of it (it rejects fields it does not know).
    let example = doc_example();
    assert_eq!(example["kind"], "PodtapPolicy");
    validate(&schema, &example, "example").unwrap();
    let used: BTreeSet<&String> = example["spec"].as_object().unwrap().keys().collect();
    let declared: BTreeSet<&String> = schema["properties"]["spec"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(used, declared, "the example shows every field of the spec");
    let obj: podtap::k8s::policy::PodtapPolicy = serde_json::from_value(example.clone()).unwrap();
    let p = podtap::k8s::policy::Policy::from_object(&obj);
    let rules = p.rules.as_ref().unwrap_or_else(|e| panic!("{e:?}"));
    assert!(!rules.checks.is_empty() && !rules.label_keys.is_empty());
    assert!(rules.families.is_some() && !rules.anomalies.is_empty());
    // Every anomaly threshold the schema declares, podtap reads, and the other way round.
    let thresholds = &schema["properties"]["spec"]["properties"]["anomalies"]["properties"];
    let mut all = serde_json::Map::new();
    for k in thresholds.as_object().unwrap().keys() {
        all.insert(k.clone(), 1.into());
    }
    let mut with_all = example.clone();
    with_all["spec"]["anomalies"] = Value::Object(all);
    let obj: podtap::k8s::policy::PodtapPolicy = serde_json::from_value(with_all).unwrap();
    let r = podtap::k8s::policy::Policy::from_object(&obj)
        .rules
        .unwrap();
    assert_eq!(
        serde_json::to_value(r.anomalies)
            .unwrap()
            .as_object()
            .unwrap()
            .len(),
        thresholds.as_object().unwrap().len()
    );
    assert!(
        serde_json::to_value(r.anomalies)
            .unwrap()
            .as_object()
            .unwrap()
            .values()
            .all(|v| v == 1),
        "the schema declares a threshold podtap does not read"
    );
    // What the schema refuses and what only podtap can (a selector's semantics).
    let mut bad = example.clone();
    bad["spec"]["healthChecks"][0]["type"] = "arping".into();
    assert!(
        validate(&schema, &bad, "bad")
            .unwrap_err()
            .contains("not one of")
    );
    let mut bad = example.clone();
    bad["spec"]["selector"]["matchExpressions"] =
        serde_json::json!([{"key": "app", "operator": "In"}]);
    validate(&schema, &bad, "bad").unwrap();
    let obj: podtap::k8s::policy::PodtapPolicy = serde_json::from_value(bad).unwrap();
    let e = podtap::k8s::policy::Policy::from_object(&obj)
        .rules
        .unwrap_err();
    assert_eq!(e.reason, "InvalidSelector");
}

#[test]
fn broken_policy_crds_are_caught() {
    let good = read(CRD);
    check_crd(&good).unwrap();
    let breaks: &[(&str, &str, &str, &str)] = &[
        (
            "cluster-scoped",
            "scope: Namespaced",
            "scope: Cluster",
            "policies are namespaced",
        ),
        (
            "another group",
            "  group: podtap.io",
            "  group: podtap.dev",
            "the code watches",
        ),
        (
            "no status subresource",
            "      subresources:\n        status: {}\n",
            "",
            "no status subresource",
        ),
        (
            "misspelt field",
            "      served: true",
            "      served: true\n      serverd: true",
            "serverd: unknown field",
        ),
        (
            "untyped property",
            "                podLabels:\n                  type: array\n",
            "                podLabels:\n",
            "podLabels has no type",
        ),
        (
            "status entries not keyed by node",
            "                  x-kubernetes-list-map-keys: [\"node\"]\n",
            "                  x-kubernetes-list-map-keys: [\"matchedPods\"]\n",
            "keyed by node",
        ),
    ];
    let mut missed = Vec::new();
    for (what, from, to, expect) in breaks {
        assert_eq!(
            good.matches(from).count(),
            1,
            "{what}: {from:?} once in {CRD}"
        );
        match check_crd(&good.replacen(from, to, 1)) {
            Ok(_) => missed.push(format!("{what}: passed")),
            Err(e) if e.contains(expect) => eprintln!("{what}: {e}"),
            Err(e) => missed.push(format!("{what}: failed with {e:?}, expected {expect:?}")),
        }
    }
    assert!(missed.is_empty(), "{}", missed.join("\n"));
}
