//! The Kubernetes source: kube-rs watchers (list, then watch with bookmarks; a 410 Gone
//! re-lists, errors back off) feeding reflector stores for this node's pods and the
//! cluster's Services, EndpointSlices, ReplicaSets and Jobs. Every change wakes the
//! snapshot builder; the stores are read only when a snapshot is built.

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use tokio::sync::Notify;

use super::snapshot::KubeObjects;

/// Resources watched; `synced` counts those whose first list completed.
pub const WATCHED: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("Kubernetes client configuration ({source_desc}): {message}")]
    Config {
        source_desc: String,
        message: String,
    },
}

/// Build a client: from `kubeconfig` when given, else in-cluster or the usual kubeconfig
/// (`kube::Config::infer`).
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client, KubeError> {
    let cfg = config(kubeconfig).await?;
    Client::try_from(cfg).map_err(|e| KubeError::Config {
        source_desc: describe(kubeconfig),
        message: e.to_string(),
    })
}

fn describe(kubeconfig: Option<&Path>) -> String {
    match kubeconfig {
        Some(p) => format!("kubeconfig {}", p.display()),
        None => "in-cluster or default kubeconfig".to_string(),
    }
}

/// The client settings [`client`] uses (the health probes derive the API server's
/// address and a second client from them).
pub async fn config(kubeconfig: Option<&Path>) -> Result<kube::Config, KubeError> {
    let err = |m: String| KubeError::Config {
        source_desc: describe(kubeconfig),
        message: m,
    };
    match kubeconfig {
        Some(p) => {
            let kc = kube::config::Kubeconfig::read_from(p).map_err(|e| err(e.to_string()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|e| err(e.to_string()))
        }
        None => kube::Config::infer().await.map_err(|e| err(e.to_string())),
    }
}

/// Readers of the watched objects.
#[derive(Clone)]
pub struct KubeStores {
    pods: Store<Pod>,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    replica_sets: Store<ReplicaSet>,
    jobs: Store<Job>,
}

impl KubeStores {
    pub fn objects(&self) -> KubeObjects {
        KubeObjects {
            pods: self.pods.state(),
            services: self.services.state(),
            endpoint_slices: self.slices.state(),
            replica_sets: self.replica_sets.state(),
            jobs: self.jobs.state(),
        }
    }
}

/// Start the watchers on the current tokio runtime. `changed` is notified on every
/// change; `synced` counts resources whose initial list is in.
pub fn start(
    client: Client,
    node: &str,
    changed: Arc<Notify>,
    synced: Arc<AtomicU32>,
) -> KubeStores {
    let wc = watcher::Config::default().any_semantic();
    let node_pods = wc.clone().fields(&format!("spec.nodeName={node}"));
    let (pods, w) = reflector::store();
    spawn_reflector(
        Api::<Pod>::all(client.clone()),
        node_pods,
        w,
        "pods",
        &changed,
        &synced,
        None,
    );
    let (services, w) = reflector::store();
    spawn_reflector(
        Api::<Service>::all(client.clone()),
        wc.clone(),
        w,
        "services",
        &changed,
        &synced,
        None,
    );
    let (slices, w) = reflector::store();
    spawn_reflector(
        Api::<EndpointSlice>::all(client.clone()),
        wc.clone(),
        w,
        "endpointslices",
        &changed,
        &synced,
        None,
    );
    let (replica_sets, w) = reflector::store();
    spawn_reflector(
        Api::<ReplicaSet>::all(client.clone()),
        wc.clone(),
        w,
        "replicasets",
        &changed,
        &synced,
        None,
    );
    let (jobs, w) = reflector::store();
    spawn_reflector(
        Api::<Job>::all(client),
        wc,
        w,
        "jobs",
        &changed,
        &synced,
        None,
    );
    KubeStores {
        pods,
        services,
        slices,
        replica_sets,
        jobs,
    }
}

/// Keep `writer`'s store in step with `api` on the current tokio runtime: `changed` is
/// notified on every change, `synced` incremented once the first list is in. With
/// `missing`, a resource the API server does not know (a CRD not installed) counts as
/// synced and empty, `missing` is logged once, and the watch keeps retrying so that a
/// resource installed later is picked up.
pub(super) fn spawn_reflector<K>(
    api: Api<K>,
    wc: watcher::Config,
    writer: reflector::store::Writer<K>,
    what: &'static str,
    changed: &Arc<Notify>,
    synced: &Arc<AtomicU32>,
    missing: Option<&'static str>,
) where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (changed, synced) = (changed.clone(), synced.clone());
    tokio::spawn(async move {
        let stream = watcher(api, wc).default_backoff().reflect(writer);
        let mut stream = std::pin::pin!(stream);
        let mut first_sync = true;
        let mut errors: u64 = 0;
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::InitDone) => {
                    if std::mem::take(&mut first_sync) {
                        synced.fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::debug!(resource = what, "watch list complete");
                    changed.notify_one();
                }
                Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => changed.notify_one(),
                Ok(_) => {}
                Err(e) => {
                    // 410 Gone re-lists and other errors retry with backoff inside the
                    // watcher; log the first and then every power of ten.
                    errors += 1;
                    if let Some(why) = missing
                        && is_not_found(&e)
                        && std::mem::take(&mut first_sync)
                    {
                        synced.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(resource = what, "{why}");
                    } else if errors.is_power_of_two() || errors.is_multiple_of(1000) {
                        tracing::warn!(resource = what, errors, "Kubernetes watch: {e}");
                    }
                }
            }
        }
    });
}

/// The API server does not know the resource (404 on list or watch).
fn is_not_found(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s)) => s.code == 404,
        watcher::Error::WatchError(s) => s.code == 404,
        _ => false,
    }
}
