//! `serving`: which addresses a serving certificate may carry, and where they come from.

use serde::{Deserialize, Serialize};

use std::time::Duration;

use super::{AnchoredRegex, Cidr, DEFAULT_MAX_EXPIRATION_SECONDS, HumanDuration, PolicyError};
use crate::vocabulary::canonical_dns_name;

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
    /// With `KubeletCertificate` a source: a SAN only the kubelet's own certificate
    /// vouches for is the node's only while independent evidence (Node status, a trusted
    /// Machine, an inventory entry) vouched for it at a serving approval within this long
    /// (the node's `NodeIdentity` remembers when). Without it an address certified once
    /// would stay renewable forever on the strength of its own certificate.
    pub kubelet_certificate_max_age: HumanDuration,
    /// Names and addresses no node may have certified, beside those csr-approver reads from
    /// the cluster (the API server's endpoints): load balancers, ingress VIPs.
    pub reserved: ReservedPolicy,
}

/// `serving.reserved`: names and IP ranges no serving certificate may carry, for any node.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ReservedPolicy {
    /// DNS names: `api.example.com` reserves that name, `*.apps.example.com` every name
    /// under `apps.example.com` (and the wildcard itself).
    pub names: Vec<ReservedName>,
    #[serde(rename = "ipRanges")]
    pub ip_ranges: Vec<Cidr>,
}

/// One entry of `serving.reserved.names`: a DNS name, or `*.` and a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservedName {
    written: String,
    /// The name, canonical; for a wildcard, the domain under it.
    name: String,
    wildcard: bool,
}

impl ReservedName {
    pub fn new(written: &str) -> Result<ReservedName, String> {
        let (wildcard, rest) = match written.strip_prefix("*.") {
            Some(domain) => (true, domain),
            None => (false, written),
        };
        let name = canonical_dns_name(rest).ok_or_else(|| {
            format!("{written:?} is not a DNS name (write a name, or *.<domain> for every name under a domain)")
        })?;
        Ok(ReservedName {
            written: written.to_string(),
            name,
            wildcard,
        })
    }

    /// Whether canonical DNS name `name` is reserved by this entry.
    pub fn matches(&self, name: &str) -> bool {
        if self.wildcard {
            name.strip_suffix(&self.name)
                .is_some_and(|head| head.ends_with('.'))
        } else {
            name == self.name
        }
    }

    pub fn as_written(&self) -> &str {
        &self.written
    }
}

impl Serialize for ReservedName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.written)
    }
}

impl<'de> Deserialize<'de> for ReservedName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        ReservedName::new(&text).map_err(serde::de::Error::custom)
    }
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
            kubelet_certificate_max_age: HumanDuration(DEFAULT_KUBELET_CERTIFICATE_MAX_AGE),
            reserved: ReservedPolicy::default(),
        }
    }
}

pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";

/// `serving.kubeletCertificateMaxAge` by default: 30 days.
pub const DEFAULT_KUBELET_CERTIFICATE_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

/// The longest `serving.kubeletCertificateMaxAge` accepted: a year, the longest a
/// kubelet serving certificate usually lives. Longer, the bound is hardly one.
pub const MAX_KUBELET_CERTIFICATE_MAX_AGE: Duration = Duration::from_secs(365 * 24 * 3600);

impl ServingPolicy {
    pub(super) fn validate(&self) -> Result<(), PolicyError> {
        let max_age = self.kubelet_certificate_max_age.0;
        let error = |message: String| PolicyError {
            path: "serving.kubeletCertificateMaxAge".to_string(),
            message,
        };
        if max_age.is_zero() {
            return Err(error(
                "0s bounds nothing: give how long after independent evidence last vouched for an address the kubelet's own certificate may renew it (e.g. 720h)".to_string(),
            ));
        }
        if max_age < crate::identity::VOUCHING_REFRESH {
            return Err(error(format!(
                "{} is shorter than 1h, the interval at which csr-approver refreshes its record of independently vouched addresses",
                humantime::format_duration(max_age)
            )));
        }
        if max_age > MAX_KUBELET_CERTIFICATE_MAX_AGE {
            return Err(error(format!(
                "{} is longer than 8760h (a year): an address certified once would stay renewable on its own certificate for nearly as long as without a bound",
                humantime::format_duration(max_age)
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use super::*;

    #[test]
    fn a_reserved_name_is_exact_and_a_wildcard_reserves_its_domain() {
        let exact = ReservedName::new("API.Example.com.").unwrap();
        assert!(exact.matches("api.example.com"));
        assert!(!exact.matches("x.api.example.com"));
        let under = ReservedName::new("*.apps.example.com").unwrap();
        assert!(under.matches("console.apps.example.com"));
        assert!(under.matches("a.b.apps.example.com"));
        assert!(!under.matches("apps.example.com"));
        assert!(!under.matches("xapps.example.com"));
        for bad in ["", "*", "*.", "a..b", "10.0.0.1", "under_score.example.com"] {
            assert!(ReservedName::new(bad).is_err(), "{bad:?}");
        }
    }
}
