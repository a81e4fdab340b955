//! Which other nodes' instances this one probes: the next `n` nodes after its own in the
//! sorted node names, wrapping around. Every node picks the same way from the same list,
//! so each node is probed by exactly `n` others (fewer only when there are fewer nodes),
//! and a node joining or leaving moves only the neighbourhoods next to it.

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;

use super::check::Failure;

/// One node's instance: its node name and `host:port`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Peer {
    pub node: String,
    pub address: String,
}

/// The `n` neighbours of `me` among `all` (which may or may not hold `me`): the nodes
/// after `me` in name order, wrapping around. One instance per node (the first address
/// in sort order when a node has several).
pub fn neighbours(me: &str, mut all: Vec<Peer>, n: usize) -> Vec<Peer> {
    all.sort();
    all.dedup_by(|a, b| a.node == b.node);
    all.retain(|p| p.node != me);
    let start = all.partition_point(|p| p.node.as_str() < me);
    let len = all.len();
    (0..n.min(len))
        .map(|k| all[(start + k) % len].clone())
        .collect()
}

/// podtap's instances as the Kubernetes API lists them: pods matching `selector` in
/// `namespace` (empty: all), each with its node and pod IP (the node's address under
/// hostNetwork), served on `port`. Pods not yet scheduled or without an address are left
/// out (nothing to probe yet); terminating ones too.
pub async fn from_kubernetes(
    client: &kube::Client,
    namespace: &str,
    selector: &str,
    port: u16,
) -> Result<Vec<Peer>, Failure> {
    let api: Api<Pod> = if namespace.is_empty() {
        Api::all(client.clone())
    } else {
        Api::namespaced(client.clone(), namespace)
    };
    let list = match api.list(&ListParams::default().labels(selector)).await {
        Ok(l) => l,
        Err(kube::Error::Api(s)) => {
            return Err(Failure::new(
                "http_status",
                format!("listing pods: HTTP {}: {}", s.code, s.message),
            ));
        }
        Err(e) => return Err(Failure::classify(&e)),
    };
    Ok(list
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let node = p.spec?.node_name?;
            let ip: std::net::IpAddr = p.status?.pod_ip?.parse().ok()?;
            let address = std::net::SocketAddr::new(ip, port).to_string();
            Some(Peer { node, address })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(names: &[&str]) -> Vec<Peer> {
        names
            .iter()
            .map(|n| Peer {
                node: n.to_string(),
                address: format!("{n}:9464"),
            })
            .collect()
    }

    fn names(p: &[Peer]) -> Vec<&str> {
        p.iter().map(|p| p.node.as_str()).collect()
    }

    #[test]
    fn the_next_n_on_the_ring() {
        let all = peers(&["e", "a", "c", "b", "d"]);
        assert_eq!(names(&neighbours("b", all.clone(), 2)), ["c", "d"]);
        assert_eq!(names(&neighbours("d", all.clone(), 2)), ["e", "a"]);
        assert_eq!(names(&neighbours("e", all.clone(), 3)), ["a", "b", "c"]);
        // More asked than there are others: all of them, once.
        assert_eq!(
            names(&neighbours("a", all.clone(), 9)),
            ["b", "c", "d", "e"]
        );
        // A node not (yet) in the list still gets its place on the ring.
        assert_eq!(names(&neighbours("bb", all.clone(), 2)), ["c", "d"]);
        assert!(neighbours("a", peers(&["a"]), 3).is_empty());
    }

    #[test]
    fn every_node_is_probed_by_n_others() {
        let names: Vec<String> = (0..17).map(|i| format!("node-{i:02}")).collect();
        let all: Vec<Peer> = names
            .iter()
            .map(|n| Peer {
                node: n.clone(),
                address: String::new(),
            })
            .collect();
        for n in 1..5 {
            let mut probed_by = std::collections::HashMap::<String, usize>::new();
            for me in &names {
                for p in neighbours(me, all.clone(), n) {
                    assert_ne!(&p.node, me);
                    *probed_by.entry(p.node).or_default() += 1;
                }
            }
            assert_eq!(probed_by.len(), names.len());
            assert!(probed_by.values().all(|&c| c == n), "{probed_by:?}");
        }
    }

    #[test]
    fn one_instance_per_node() {
        let mut all = peers(&["a", "b"]);
        all.push(Peer {
            node: "b".into(),
            address: "b2:9464".into(),
        });
        let got = neighbours("a", all, 3);
        assert_eq!(got.len(), 1);
        // The first in sort order: "b2:9464" < "b:9464".
        assert_eq!(got[0].address, "b2:9464");
    }
}
