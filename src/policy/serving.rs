//! `serving`: which addresses a serving certificate may carry, and where they come from.

use serde::{Deserialize, Serialize};

use super::{AnchoredRegex, Cidr, DEFAULT_MAX_EXPIRATION_SECONDS};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum AddressSource {
    Machine,
    Node,
    /// The serving certificate the kubelet presents today, verified against
    /// `serving.kubeletServingCAFile`: renewals keep the addresses it already holds.
    KubeletCertificate,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ServingPolicy {
    pub enabled: bool,
    pub address_sources: Vec<AddressSource>,
    #[serde(rename = "allowedIPRanges")]
    pub allowed_ip_ranges: Vec<Cidr>,
    pub dns_name_patterns: Vec<AnchoredRegex>,
    pub max_expiration_seconds: u32,
    /// The cluster's DNS domain: no name under it is ever a node's.
    pub cluster_domain: String,
    /// Loopback IP SANs (127.0.0.0/8, ::1) are refused unless this is set, for development
    /// clusters whose nodes live on loopback addresses.
    pub allow_loopback: bool,
    /// The CA bundle (PEM) that signs kubelet serving certificates, read at each probe
    /// (so a rotated CA mounted from a ConfigMap is followed) when `addressSources` lists
    /// `KubeletCertificate`.
    #[serde(rename = "kubeletServingCAFile")]
    pub kubelet_serving_ca_file: String,
}

/// Where a Pod finds its cluster's CA: on kubeadm clusters it also signs kubelet serving
/// certificates. OpenShift has its own (`openshift-config-managed/kubelet-serving-ca`).
pub const DEFAULT_KUBELET_SERVING_CA_FILE: &str =
    "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";

impl Default for ServingPolicy {
    fn default() -> Self {
        ServingPolicy {
            enabled: true,
            address_sources: vec![AddressSource::Machine, AddressSource::Node],
            allowed_ip_ranges: Vec::new(),
            dns_name_patterns: Vec::new(),
            max_expiration_seconds: DEFAULT_MAX_EXPIRATION_SECONDS,
            cluster_domain: DEFAULT_CLUSTER_DOMAIN.to_string(),
            allow_loopback: false,
            kubelet_serving_ca_file: DEFAULT_KUBELET_SERVING_CA_FILE.to_string(),
        }
    }
}

pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";
