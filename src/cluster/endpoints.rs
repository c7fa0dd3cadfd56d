//! The API server's endpoints as the cluster records them, watched into the inventory so
//! that no node has them certified: kubeadm's `kube-public/cluster-info` (the `server` of
//! the kubeconfig nodes join with) and `kube-system/kubeadm-config` (the
//! ClusterConfiguration's `controlPlaneEndpoint`), and OpenShift's Infrastructure
//! `cluster` (API URLs, API and ingress VIPs), the latter while its CRD exists.
//!
//! An absent object records nothing (not kubeadm, not OpenShift). One that exists but
//! cannot be read (forbidden, unparsable) fails closed: its readiness source says why, and
//! nothing is decided until it can be read.

use std::fmt::Debug;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::task::JoinHandle;

use super::crds::{GatedApi, follow_crd};
use super::{ClusterCache, Trigger, WatchBackoff, fire, watch_config};
use crate::http::{Readiness, Source};
use crate::inventory::EndpointSource;
use crate::vocabulary::AddressValue;

/// Where kubeadm records the kubeconfig nodes join with.
pub const CLUSTER_INFO: (&str, &str) = ("kube-public", "cluster-info");
/// Where kubeadm records its ClusterConfiguration.
pub const KUBEADM_CONFIG: (&str, &str) = ("kube-system", "kubeadm-config");
/// The CRD of OpenShift's Infrastructure, and the one object of it.
pub const INFRASTRUCTURE_CRD: &str = "infrastructures.config.openshift.io";
pub const INFRASTRUCTURE_NAME: &str = "cluster";

/// `config.openshift.io/v1` Infrastructure, for a one-off read (`check --live`); the
/// controller follows the version the CRD serves.
pub fn infrastructure_resource() -> ApiResource {
    ApiResource {
        group: "config.openshift.io".to_string(),
        version: "v1".to_string(),
        api_version: "config.openshift.io/v1".to_string(),
        kind: "Infrastructure".to_string(),
        plural: "infrastructures".to_string(),
    }
}

/// What is read of an object: its endpoints, or why they cannot be read.
type Reading = Result<Vec<AddressValue>, String>;

/// `host` (a URL's or `controlPlaneEndpoint`'s, brackets removed) as an address.
fn address(host: &str) -> Result<AddressValue, String> {
    AddressValue::parse_valid(host)
        .ok_or_else(|| format!("{host:?} is neither an IP nor a DNS name"))
}

/// The host of URL `url` (`https://api.example.com:6443`, `https://[fd00::1]:6443`).
fn url_host(url: &str) -> Result<AddressValue, String> {
    let uri = axum::http::Uri::from_str(url).map_err(|e| format!("URL {url:?}: {e}"))?;
    let host = uri
        .host()
        .ok_or_else(|| format!("URL {url:?} has no host"))?;
    address(host.trim_start_matches('[').trim_end_matches(']'))
}

/// The host of `host[:port]`, `[v6]:port`, or a bare IPv6 address.
fn endpoint_host(endpoint: &str) -> Result<AddressValue, String> {
    if let Ok(ip) = IpAddr::from_str(endpoint) {
        return address(&ip.to_string());
    }
    if let Some(rest) = endpoint.strip_prefix('[') {
        let (host, _) = rest
            .split_once(']')
            .ok_or_else(|| format!("{endpoint:?}: no closing ]"))?;
        return address(host);
    }
    match endpoint.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => address(host),
        Some(_) => Err(format!("{endpoint:?}: the port is not a number")),
        None => address(endpoint),
    }
}

/// The data key `key` of ConfigMap `cm`, if it has one.
fn data<'a>(cm: &'a ConfigMap, key: &str) -> Option<&'a str> {
    cm.data.as_ref()?.get(key).map(String::as_str)
}

/// `kube-public/cluster-info`: every cluster `server` of its `kubeconfig`.
pub fn read_cluster_info(cm: &ConfigMap) -> Reading {
    #[derive(Deserialize)]
    struct Kubeconfig {
        #[serde(default)]
        clusters: Vec<Named>,
    }
    #[derive(Deserialize)]
    struct Named {
        cluster: Cluster,
    }
    #[derive(Deserialize)]
    struct Cluster {
        server: String,
    }
    let Some(text) = data(cm, "kubeconfig") else {
        return Ok(Vec::new());
    };
    let kubeconfig: Kubeconfig =
        serde_saphyr::from_str(text).map_err(|e| format!("its kubeconfig does not parse: {e}"))?;
    kubeconfig
        .clusters
        .iter()
        .map(|named| url_host(&named.cluster.server))
        .collect()
}

/// `kube-system/kubeadm-config`: the ClusterConfiguration's `controlPlaneEndpoint`.
pub fn read_kubeadm_config(cm: &ConfigMap) -> Reading {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct ClusterConfiguration {
        #[serde(default)]
        control_plane_endpoint: Option<String>,
    }
    let Some(text) = data(cm, "ClusterConfiguration") else {
        return Ok(Vec::new());
    };
    let config: ClusterConfiguration = serde_saphyr::from_str(text)
        .map_err(|e| format!("its ClusterConfiguration does not parse: {e}"))?;
    match config.control_plane_endpoint.as_deref() {
        None | Some("") => Ok(Vec::new()),
        Some(endpoint) => Ok(vec![endpoint_host(endpoint)?]),
    }
}

/// OpenShift's Infrastructure `cluster`: `status.apiServerURL`, `apiServerInternalURL`,
/// and under `status.platformStatus.<platform>` (any platform) the API and ingress VIPs.
pub fn read_infrastructure(object: &DynamicObject) -> Reading {
    let status = object.data.get("status");
    let text = |v: &Value| -> Result<String, String> {
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("{v} is not a string"))
    };
    let mut found = Vec::new();
    for field in ["apiServerURL", "apiServerInternalURL"] {
        if let Some(url) = status.and_then(|s| s.get(field)) {
            let url = text(url).map_err(|e| format!("status.{field}: {e}"))?;
            if !url.is_empty() {
                found.push(url_host(&url).map_err(|e| format!("status.{field}: {e}"))?);
            }
        }
    }
    let platforms = status
        .and_then(|s| s.get("platformStatus"))
        .and_then(Value::as_object);
    for (platform, fields) in platforms.into_iter().flatten() {
        let Some(fields) = fields.as_object() else {
            continue; // `type`
        };
        for (field, value) in fields {
            let at = || format!("status.platformStatus.{platform}.{field}");
            let ips: Vec<&Value> = match field.as_str() {
                "apiServerInternalIPs" | "ingressIPs" => value
                    .as_array()
                    .ok_or_else(|| format!("{}: not a list", at()))?
                    .iter()
                    .collect(),
                "apiServerInternalIP" | "ingressIP" => vec![value],
                _ => continue,
            };
            for ip in ips {
                let ip = text(ip).map_err(|e| format!("{}: {e}", at()))?;
                match IpAddr::from_str(&ip) {
                    Ok(_) => found.push(address(&ip)?),
                    Err(_) => return Err(format!("{}: {ip:?} is not an IP", at())),
                }
            }
        }
    }
    found.sort();
    found.dedup();
    Ok(found)
}

/// Watches one object by name (RBAC grants only that one) into the inventory's endpoints
/// of `endpoint_source`. `source` is its readiness: synced once listed and readable.
async fn watch_endpoint_object<K>(
    api: Api<K>,
    name: &str,
    endpoint_source: EndpointSource,
    read: fn(&K) -> Reading,
    cache: Arc<ClusterCache>,
    trigger: Trigger,
    source: Source,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let config = watch_config().fields(&format!("metadata.name={name}"));
    let mut stream = std::pin::pin!(watcher::watcher(api, config).backoff(WatchBackoff::default()));
    let record = |reading: Reading| match reading {
        Ok(values) => {
            let changed = cache
                .write()
                .inventory
                .set_api_server_endpoints(endpoint_source, values.clone());
            if changed {
                let values: Vec<String> = values.iter().map(ToString::to_string).collect();
                tracing::info!(
                    source = source.name(),
                    ?values,
                    "API server endpoints reserved"
                );
                fire(&trigger, cache.all_pending());
            }
            source.synced();
        }
        Err(why) => source.failing(why),
    };
    let mut synced = false;
    let mut listed: Option<Reading> = None;
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Apply(object)) => record(read(&object)),
            Ok(Event::Delete(_)) => record(Ok(Vec::new())),
            Ok(Event::Init) => listed = None,
            Ok(Event::InitApply(object)) => listed = Some(read(&object)),
            Ok(Event::InitDone) => {
                synced = true;
                record(listed.take().unwrap_or(Ok(Vec::new())));
            }
            Err(error) => {
                tracing::warn!(source = source.name(), %error, "watch error; retrying with backoff");
                if !synced {
                    source.list_failed(&error);
                }
            }
        }
    }
}

/// Watches kubeadm's `cluster-info` and `kubeadm-config` ConfigMaps.
pub fn watch_kubeadm_endpoints(
    client: &Client,
    cache: &Arc<ClusterCache>,
    trigger: &Trigger,
    readiness: &Arc<Readiness>,
) {
    let watches = [
        (
            CLUSTER_INFO,
            EndpointSource::ClusterInfo,
            read_cluster_info as fn(&ConfigMap) -> Reading,
        ),
        (
            KUBEADM_CONFIG,
            EndpointSource::KubeadmConfig,
            read_kubeadm_config,
        ),
    ];
    for ((namespace, name), endpoint_source, read) in watches {
        let source = readiness.source(format!("ConfigMap {namespace}/{name}"));
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        tokio::spawn({
            let (cache, trigger) = (cache.clone(), trigger.clone());
            async move {
                watch_endpoint_object(api, name, endpoint_source, read, cache, trigger, source)
                    .await;
            }
        });
    }
}

/// OpenShift's Infrastructure API: the object `cluster` is watched while the CRD exists.
struct InfrastructureApi {
    client: Client,
    cache: Arc<ClusterCache>,
    trigger: Trigger,
    readiness: Arc<Readiness>,
}

impl GatedApi for InfrastructureApi {
    fn resource(&self, crd: &CustomResourceDefinition) -> Option<ApiResource> {
        super::crds::served_resource(crd)
    }

    fn start(&self, resource: ApiResource) -> JoinHandle<()> {
        let source = self.readiness.source(format!(
            "Infrastructure {INFRASTRUCTURE_NAME} ({})",
            resource.api_version
        ));
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &resource);
        let (cache, trigger) = (self.cache.clone(), self.trigger.clone());
        tokio::spawn(async move {
            watch_endpoint_object(
                api,
                INFRASTRUCTURE_NAME,
                EndpointSource::Infrastructure,
                read_infrastructure,
                cache,
                trigger,
                source,
            )
            .await;
        })
    }

    fn forget(&self) {
        let changed = self
            .cache
            .write()
            .inventory
            .set_api_server_endpoints(EndpointSource::Infrastructure, Vec::new());
        if changed {
            fire(&self.trigger, self.cache.all_pending());
        }
    }
}

/// Watches the Infrastructure CRD and, while it exists, the Infrastructure `cluster`. The
/// CRD watch's source is registered before this returns.
pub fn watch_infrastructure_api(
    client: &Client,
    cache: &Arc<ClusterCache>,
    trigger: &Trigger,
    readiness: &Arc<Readiness>,
) {
    let source = readiness.source(format!("CustomResourceDefinition {INFRASTRUCTURE_CRD}"));
    let api = InfrastructureApi {
        client: client.clone(),
        cache: cache.clone(),
        trigger: trigger.clone(),
        readiness: readiness.clone(),
    };
    tokio::spawn(follow_crd(
        client.clone(),
        INFRASTRUCTURE_CRD.to_string(),
        api,
        source,
    ));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use super::*;

    fn config_map(key: &str, text: &str) -> ConfigMap {
        ConfigMap {
            data: Some([(key.to_string(), text.to_string())].into()),
            ..ConfigMap::default()
        }
    }

    fn values(list: &[&str]) -> Vec<AddressValue> {
        list.iter().map(|v| AddressValue::parse(v)).collect()
    }

    #[test]
    fn cluster_info_reserves_its_servers_host() {
        let kubeconfig = "apiVersion: v1\nkind: Config\nclusters:\n- name: ''\n  cluster:\n    certificate-authority-data: LS0t\n    server: https://192.168.10.5:6443\n";
        assert_eq!(
            read_cluster_info(&config_map("kubeconfig", kubeconfig)),
            Ok(values(&["192.168.10.5"]))
        );
        let v6 = "clusters:\n- cluster:\n    server: https://[fd00::5]:6443\n- cluster:\n    server: https://API.Example.com\n";
        assert_eq!(
            read_cluster_info(&config_map("kubeconfig", v6)),
            Ok(values(&["fd00::5", "api.example.com"]))
        );
        assert_eq!(read_cluster_info(&ConfigMap::default()), Ok(Vec::new()));
        assert!(
            read_cluster_info(&config_map(
                "kubeconfig",
                "clusters: [{cluster: {server: 'https://'}}]"
            ))
            .is_err()
        );
        assert!(read_cluster_info(&config_map("kubeconfig", "clusters: {")).is_err());
    }

    #[test]
    fn kubeadm_config_reserves_the_control_plane_endpoint() {
        let read = |endpoint: &str| {
            read_kubeadm_config(&config_map(
                "ClusterConfiguration",
                &format!(
                    "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\ncontrolPlaneEndpoint: \"{endpoint}\"\nnetworking: {{serviceSubnet: 10.96.0.0/12}}\n"
                ),
            ))
        };
        assert_eq!(
            read("k8s-api.corp.example:6443"),
            Ok(values(&["k8s-api.corp.example"]))
        );
        assert_eq!(
            read("k8s-api.corp.example"),
            Ok(values(&["k8s-api.corp.example"]))
        );
        assert_eq!(read("192.168.10.5:6443"), Ok(values(&["192.168.10.5"])));
        assert_eq!(read("[fd00::5]:6443"), Ok(values(&["fd00::5"])));
        assert_eq!(read("fd00::5"), Ok(values(&["fd00::5"])));
        assert_eq!(read(""), Ok(Vec::new()));
        assert!(read("api:port").is_err());
        assert!(read("bad_name:6443").is_err());
        let without = config_map("ClusterConfiguration", "kind: ClusterConfiguration\n");
        assert_eq!(read_kubeadm_config(&without), Ok(Vec::new()));
    }

    #[test]
    fn the_infrastructure_reserves_api_urls_and_every_platforms_vips() {
        let object: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "config.openshift.io/v1", "kind": "Infrastructure",
            "metadata": {"name": "cluster"},
            "status": {
                "apiServerURL": "https://api.ocp.example.com:6443",
                "apiServerInternalURL": "https://api-int.ocp.example.com:6443",
                "platform": "BareMetal",
                "platformStatus": {
                    "type": "BareMetal",
                    "baremetal": {
                        "apiServerInternalIP": "192.168.111.5",
                        "apiServerInternalIPs": ["192.168.111.5", "fd2e::5"],
                        "ingressIP": "192.168.111.4",
                        "ingressIPs": ["192.168.111.4"],
                        "nodeDNSIP": "192.168.111.1"
                    }
                }
            }
        }))
        .unwrap();
        assert_eq!(
            read_infrastructure(&object),
            Ok(values(&[
                "192.168.111.4",
                "192.168.111.5",
                "fd2e::5",
                "api-int.ocp.example.com",
                "api.ocp.example.com",
            ]))
        );
        let broken: DynamicObject = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "cluster"},
            "status": {"platformStatus": {"vsphere": {"ingressIPs": ["not-an-ip"]}}}
        }))
        .unwrap();
        assert!(
            read_infrastructure(&broken)
                .unwrap_err()
                .contains("vsphere.ingressIPs")
        );
    }
}
