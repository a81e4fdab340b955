//! A static map file (TOML) naming pods and Services for hosts without Kubernetes
//! (systemd hosts, tests): interfaces, network namespaces, observation points or CIDR
//! blocks → pod name, namespace, workload, labels, service name.
//!
//! ```toml
//! [[pod]]
//! name = "web-1"
//! namespace = "shop"
//! interfaces = ["veth1a2b"]          # host-side interface names
//! interface_regex = "vethweb.*"       # or an (anchored) regex over them
//! netns = "web-1"                     # a /var/run/netns name
//! cidrs = ["10.1.2.3/32"]             # addresses of the pod (longest prefix wins)
//! obs = [0]                           # observation points (replay: pcapng interface ids)
//! workload = { kind = "Deployment", name = "web" }
//! labels = { app = "web" }
//! service = "web"                     # service.name
//!
//! [[service]]
//! name = "web"
//! namespace = "shop"
//! cluster_ips = ["10.96.0.10"]
//! ports = [80]                        # empty: any port
//! ```

use regex::Regex;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::cidr::Cidr;

#[derive(Debug, thiserror::Error)]
pub enum StaticMapError {
    #[error("cannot read static map {file}: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("static map {file}: invalid at `{key}`: {message}")]
    Invalid {
        file: PathBuf,
        key: String,
        message: String,
    },
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StaticMap {
    pub pod: Vec<StaticPod>,
    pub service: Vec<StaticService>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StaticPod {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub uid: Option<String>,
    pub node: Option<String>,
    pub container: Option<String>,
    pub interfaces: Vec<String>,
    pub interface_regex: Option<String>,
    pub netns: Option<String>,
    pub cidrs: Vec<Cidr>,
    pub obs: Vec<u32>,
    pub workload: Option<StaticWorkload>,
    pub labels: BTreeMap<String, String>,
    pub service: Option<String>,
    pub host_network: bool,
    /// Compiled `interface_regex` (anchored), filled in by [`StaticMap::parse`].
    #[serde(skip)]
    pub regex: Option<Regex>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticWorkload {
    pub kind: String,
    pub name: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StaticService {
    pub name: String,
    pub namespace: String,
    pub cluster_ips: Vec<IpAddr>,
    pub ports: Vec<u16>,
}

impl StaticPod {
    /// Does this entry claim the host-side interface `name`?
    pub fn matches_iface(&self, name: &str) -> bool {
        self.interfaces.iter().any(|i| i == name)
            || self.regex.as_ref().is_some_and(|r| r.is_match(name))
    }
}

impl StaticMap {
    pub fn parse(text: &str, file: &Path) -> Result<StaticMap, StaticMapError> {
        let invalid = |key: String, message: String| StaticMapError::Invalid {
            file: file.to_path_buf(),
            key,
            message,
        };
        let mut map: StaticMap =
            crate::config::from_toml(text).map_err(|(key, msg)| invalid(key, msg))?;
        for (i, p) in map.pod.iter_mut().enumerate() {
            if let Some(r) = &p.interface_regex {
                p.regex =
                    Some(Regex::new(&format!("^(?:{r})$")).map_err(|e| {
                        invalid(format!("pod[{i}].interface_regex"), e.to_string())
                    })?);
            }
            let claims = !p.interfaces.is_empty()
                || p.regex.is_some()
                || p.netns.is_some()
                || !p.cidrs.is_empty()
                || !p.obs.is_empty();
            if !claims {
                return Err(invalid(
                    format!("pod[{i}]"),
                    "names no interfaces, interface_regex, netns, cidrs or obs: it would match nothing".into(),
                ));
            }
        }
        for (i, s) in map.service.iter().enumerate() {
            if s.name.is_empty() {
                return Err(invalid(
                    format!("service[{i}].name"),
                    "must not be empty".into(),
                ));
            }
            if s.cluster_ips.is_empty() {
                return Err(invalid(
                    format!("service[{i}].cluster_ips"),
                    "must list at least one address".into(),
                ));
            }
        }
        Ok(map)
    }

    pub fn load(path: &Path) -> Result<StaticMap, StaticMapError> {
        let text = std::fs::read_to_string(path).map_err(|source| StaticMapError::Read {
            file: path.into(),
            source,
        })?;
        StaticMap::parse(&text, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<StaticMap, String> {
        StaticMap::parse(t, Path::new("pods.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn parses_a_full_entry() {
        let m = parse(
            r#"
[[pod]]
name = "web-1"
namespace = "shop"
interfaces = ["veth1"]
interface_regex = "vethweb.*"
cidrs = ["10.1.2.3/32", "fd00::/64"]
obs = [0, 2]
workload = { kind = "Deployment", name = "web" }
labels = { app = "web" }
service = "web"

[[service]]
name = "web"
namespace = "shop"
cluster_ips = ["10.96.0.10"]
ports = [80]
"#,
        )
        .unwrap();
        let p = &m.pod[0];
        assert!(p.matches_iface("veth1") && p.matches_iface("vethweb7"));
        assert!(!p.matches_iface("xvethweb7"), "the regex is anchored");
        assert_eq!(p.cidrs.len(), 2);
        assert_eq!(p.workload.as_ref().unwrap().kind, "Deployment");
        assert_eq!(m.service[0].ports, [80]);
    }

    #[test]
    fn errors_name_the_key_and_the_file() {
        let e = parse("[[pod]]\nname = \"a\"\ncidrs = [\"10.0.0.0/8\", \"10.0.0.0/99\"]\n")
            .unwrap_err();
        assert!(
            e.contains("pods.toml") && e.contains("pod[0].cidrs[1]") && e.contains("10.0.0.0/99"),
            "{e}"
        );
        let e = parse("[[pod]]\nname = \"a\"\ninterfacez = [\"x\"]\n").unwrap_err();
        assert!(e.contains("pods.toml") && e.contains("interfacez"), "{e}");
        let e = parse("[[pod]]\nname = \"a\"\ninterface_regex = \"(\"\n").unwrap_err();
        assert!(e.contains("pod[0].interface_regex"), "{e}");
        let e = parse("[[pod]]\nname = \"a\"\n").unwrap_err();
        assert!(e.contains("`pod[0]`") && e.contains("match nothing"), "{e}");
        let e = parse("[[pod]]\nname = \"a\"\nobs = [0]\n[[service]]\nname = \"s\"\nnamespace = \"n\"\ncluster_ips = [\"x\"]\n").unwrap_err();
        assert!(e.contains("service[0].cluster_ips"), "{e}");
        let e = parse("[[pod]\n").unwrap_err();
        assert!(e.contains("pods.toml") && e.contains("(syntax)"), "{e}");
        let e = StaticMap::load(Path::new("/nonexistent/podtap-map.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/podtap-map.toml"), "{e}");
    }
}
