//! The API server's own endpoints as the cluster records them (kubeadm's `cluster-info`
//! and `kubeadm-config`, OpenShift's Infrastructure): names and addresses that reach the
//! API server (or, for OpenShift's ingress VIPs, the routers), which no node may have
//! certified.

use std::collections::BTreeMap;

use crate::vocabulary::AddressValue;

/// Which object recorded an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EndpointSource {
    /// `kube-public/cluster-info`: the `server` of the kubeconfig nodes join with.
    ClusterInfo,
    /// `kube-system/kubeadm-config`: the ClusterConfiguration's `controlPlaneEndpoint`.
    KubeadmConfig,
    /// `infrastructures.config.openshift.io/cluster`: API URLs, API and ingress VIPs.
    Infrastructure,
}

impl EndpointSource {
    pub fn describe(self) -> &'static str {
        match self {
            EndpointSource::ClusterInfo => "the API server's address in kube-public/cluster-info",
            EndpointSource::KubeadmConfig => {
                "the API server's controlPlaneEndpoint in kube-system/kubeadm-config"
            }
            EndpointSource::Infrastructure => {
                "an API server or ingress endpoint of the OpenShift Infrastructure cluster"
            }
        }
    }
}

/// Every recorded endpoint, by the source that recorded it (each source replaces its own).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiServerEndpoints {
    by_source: BTreeMap<EndpointSource, Vec<AddressValue>>,
}

impl ApiServerEndpoints {
    /// Replaces what `source` records; says whether anything changed.
    pub fn set(&mut self, source: EndpointSource, values: Vec<AddressValue>) -> bool {
        let before = self.by_source.get(&source);
        if before.map_or(values.is_empty(), |b| *b == values) {
            return false;
        }
        if values.is_empty() {
            self.by_source.remove(&source);
        } else {
            self.by_source.insert(source, values);
        }
        true
    }

    /// The first source that records `value`, if any.
    pub fn source_of(&self, value: &AddressValue) -> Option<EndpointSource> {
        self.by_source
            .iter()
            .find(|(_, values)| values.contains(value))
            .map(|(source, _)| *source)
    }

    pub fn all(&self) -> impl Iterator<Item = (EndpointSource, &AddressValue)> {
        self.by_source
            .iter()
            .flat_map(|(source, values)| values.iter().map(move |v| (*source, v)))
    }
}
