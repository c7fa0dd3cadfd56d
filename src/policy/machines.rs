//! `machines` and `inventory`: the evidence the policy trusts that a host is expected.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{AnchoredRegex, Cidr, PolicyError};
use crate::vocabulary::{AddressValue, is_dns1123_subdomain, normalize_dns_name};

pub const OPENSHIFT_MACHINE_GROUP: &str = "machine.openshift.io";
pub const CLUSTER_API_MACHINE_GROUP: &str = "cluster.x-k8s.io";

/// Where OpenShift's machine API keeps its Machines; the only namespace trusted for it
/// unless the policy names others.
pub const OPENSHIFT_MACHINE_NAMESPACE: &str = "openshift-machine-api";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct MachinePolicy {
    pub api_groups: Vec<String>,
    /// API group → the namespaces whose Machines are trusted. Anyone who may create a
    /// Machine in a namespace could otherwise vouch for a node, so nothing is trusted by
    /// default but `machine.openshift.io` in `openshift-machine-api`.
    pub namespaces: BTreeMap<String, Vec<String>>,
}

impl Default for MachinePolicy {
    fn default() -> Self {
        MachinePolicy {
            api_groups: vec![OPENSHIFT_MACHINE_GROUP.to_string()],
            namespaces: BTreeMap::new(),
        }
    }
}

impl MachinePolicy {
    /// The namespaces trusted for `api_group`: as configured, else the OpenShift default.
    pub fn namespaces_of(&self, api_group: &str) -> &[String] {
        static OPENSHIFT: std::sync::LazyLock<Vec<String>> =
            std::sync::LazyLock::new(|| vec![OPENSHIFT_MACHINE_NAMESPACE.to_string()]);
        match self.namespaces.get(api_group) {
            Some(namespaces) => namespaces,
            None if api_group == OPENSHIFT_MACHINE_GROUP => &OPENSHIFT,
            None => &[],
        }
    }

    pub fn admits(&self, api_group: &str, namespace: &str) -> bool {
        self.api_groups.iter().any(|g| g == api_group)
            && self.namespaces_of(api_group).iter().any(|n| n == namespace)
    }

    pub(super) fn validate(&self) -> Result<(), PolicyError> {
        for (index, group) in self.api_groups.iter().enumerate() {
            if group != OPENSHIFT_MACHINE_GROUP && group != CLUSTER_API_MACHINE_GROUP {
                return Err(PolicyError {
                    path: format!("machines.apiGroups[{index}]"),
                    message: format!(
                        "unknown Machine API group {group:?} (expected {OPENSHIFT_MACHINE_GROUP} or {CLUSTER_API_MACHINE_GROUP})"
                    ),
                });
            }
            if self.namespaces_of(group).is_empty() {
                return Err(PolicyError {
                    path: format!("machines.namespaces.{group}"),
                    message: format!(
                        "API group {group} is trusted but no namespace is named for its Machines; list the namespaces whose Machines may vouch for nodes"
                    ),
                });
            }
        }
        for (group, namespaces) in &self.namespaces {
            if namespaces.iter().any(|n| n.is_empty() || n == "*") {
                return Err(PolicyError {
                    path: format!("machines.namespaces.{group}"),
                    message:
                        "name each namespace; \"\" and \"*\" (every namespace) are not accepted"
                            .to_string(),
                });
            }
        }
        Ok(())
    }
}

/// A bare-metal/UPI host expected to join. Exactly one of `name` or `namePattern`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "RawInventoryEntry")]
pub struct InventoryEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "namePattern", skip_serializing_if = "Option::is_none")]
    pub name_pattern: Option<AnchoredRegex>,
    /// Addresses owned by the host named `name`: IPs and DNS names its serving CSR may carry.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<AddressValue>,
    /// A fence: IP SANs of matching nodes must fall inside these ranges.
    #[serde(rename = "ipRanges", skip_serializing_if = "Vec::is_empty")]
    pub ip_ranges: Vec<Cidr>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawInventoryEntry {
    name: Option<String>,
    name_pattern: Option<AnchoredRegex>,
    #[serde(default)]
    addresses: Vec<AddressValue>,
    #[serde(default, rename = "ipRanges")]
    ip_ranges: Vec<Cidr>,
}

impl TryFrom<RawInventoryEntry> for InventoryEntry {
    type Error = String;
    fn try_from(raw: RawInventoryEntry) -> Result<Self, String> {
        let name = match (raw.name, &raw.name_pattern) {
            (Some(n), None) => {
                let normalized = normalize_dns_name(&n);
                if !is_dns1123_subdomain(&normalized) {
                    return Err(format!("`name` {n:?} is not a valid DNS-1123 node name"));
                }
                Some(normalized)
            }
            (None, Some(_)) => {
                if !raw.addresses.is_empty() {
                    return Err(
                        "`addresses` belong to one host: use them with `name`, not `namePattern`"
                            .to_string(),
                    );
                }
                None
            }
            (Some(_), Some(_)) => return Err("set either `name` or `namePattern`, not both".into()),
            (None, None) => return Err("needs `name` or `namePattern`".into()),
        };
        Ok(InventoryEntry {
            name,
            name_pattern: raw.name_pattern,
            addresses: raw.addresses,
            ip_ranges: raw.ip_ranges,
        })
    }
}

impl InventoryEntry {
    /// `node` must already be normalised.
    pub fn matches(&self, node: &str) -> bool {
        match (&self.name, &self.name_pattern) {
            (Some(name), _) => name == node,
            (None, Some(pattern)) => pattern.is_match(node),
            (None, None) => false,
        }
    }

    /// A pattern that matches every name vouches for every name: refused. Tested on names
    /// that share no prefix, suffix or shape a real naming scheme would need.
    pub(super) fn validate(&self, index: usize) -> Result<(), PolicyError> {
        const UNRELATED_NAMES: [&str; 4] = ["a", "0", "zz-9", "x.example.invalid"];
        match &self.name_pattern {
            Some(pattern) if UNRELATED_NAMES.iter().all(|n| pattern.is_match(n)) => {
                Err(PolicyError {
                    path: format!("inventory[{index}].namePattern"),
                    message: format!(
                        "{:?} matches every name ({}): it would vouch for a node of any name; describe your hosts' names",
                        pattern.as_written(),
                        UNRELATED_NAMES.join(", ")
                    ),
                })
            }
            _ => Ok(()),
        }
    }

    pub fn describe(&self) -> String {
        match (&self.name, &self.name_pattern) {
            (Some(name), _) => format!("inventory entry {name}"),
            (None, Some(p)) => format!("inventory pattern {}", p.as_written()),
            (None, None) => "empty inventory entry".to_string(),
        }
    }
}
