//! The records the inventory keeps: compact facts about Nodes, Machines and CSRs (only
//! what decisions read, so memory stays flat), and who claims an address.

use jiff::Timestamp;

use crate::vocabulary::AddressValue;

/// A Node or Machine address, typed as Kubernetes types them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypedAddress {
    /// `InternalIP`, `ExternalIP`, `Hostname`, `InternalDNS`, `ExternalDNS`.
    pub kind: String,
    pub value: AddressValue,
}

impl TypedAddress {
    pub fn new(kind: &str, raw: &str) -> TypedAddress {
        let value = AddressValue::parse(raw);
        TypedAddress {
            kind: kind.to_string(),
            value,
        }
    }

    /// Whether this address names the host `node` (Hostname or InternalDNS).
    pub fn names_host(&self, node: &str) -> bool {
        matches!(self.kind.as_str(), "Hostname" | "InternalDNS")
            && self.value == AddressValue::Dns(node.to_string())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Normalised node name.
    pub name: String,
    pub addresses: Vec<TypedAddress>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineInfo {
    /// `machine.openshift.io` or `cluster.x-k8s.io`.
    pub api_group: String,
    pub namespace: String,
    pub name: String,
    pub created: Option<Timestamp>,
    pub addresses: Vec<TypedAddress>,
    /// Normalised name of the Node this Machine became, once linked.
    pub node_ref: Option<String>,
    /// `metadata.deletionTimestamp` is set: the Machine is going away and vouches for nothing.
    pub deleting: bool,
}

impl MachineInfo {
    pub fn describe(&self) -> String {
        format!(
            "Machine {}/{} ({})",
            self.namespace, self.name, self.api_group
        )
    }

    /// The node this Machine speaks for when it claims an address: the Node it is linked
    /// to, else the first host it names; `None` when it names no host (it then stands for
    /// itself, and its addresses belong to no node).
    pub fn owner(&self) -> Option<&str> {
        self.node_ref.as_deref().or_else(|| {
            self.addresses
                .iter()
                .find_map(|a| match (&a.value, a.kind.as_str()) {
                    (AddressValue::Dns(name), "Hostname" | "InternalDNS") => Some(name.as_str()),
                    _ => None,
                })
        })
    }

    /// The node names this Machine concerns: the hosts it names (Hostname/InternalDNS) and
    /// the Node it is linked to.
    pub fn node_names(&self) -> impl Iterator<Item = String> + '_ {
        self.addresses
            .iter()
            .filter(|a| matches!(a.kind.as_str(), "Hostname" | "InternalDNS"))
            .filter_map(|a| match &a.value {
                AddressValue::Dns(name) => Some(name.clone()),
                AddressValue::Ip(_) | AddressValue::Invalid(_) => None,
            })
            .chain(self.node_ref.clone())
    }
}

/// Where a CSR stands, from its status conditions and certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsrState {
    Pending,
    Approved,
    Denied,
    Failed,
    Issued,
}

impl CsrState {
    pub fn as_str(self) -> &'static str {
        match self {
            CsrState::Pending => "Pending",
            CsrState::Approved => "Approved",
            CsrState::Denied => "Denied",
            CsrState::Failed => "Failed",
            CsrState::Issued => "Issued",
        }
    }
}

/// Another kubelet CSR in the cluster, as the duplicate and flood rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsrSummary {
    pub name: String,
    pub signer: String,
    pub created: Option<Timestamp>,
    pub state: CsrState,
    /// Normalised node name from the request's CN `system:node:<name>`, when it parses.
    pub node_name: Option<String>,
    /// `spec.username` and `spec.groups`: who asked (the flood guard counts only what a
    /// bootstrapper asked for; the new-node cap counts what was granted to one).
    pub requester: String,
    pub groups: Vec<String>,
    /// When the `Approved` condition was written (or when we wrote it), for the new-node cap.
    pub approved_at: Option<Timestamp>,
}

/// Identifies a Machine across both APIs.
pub type MachineKey = (String, String, String);

/// Who says an address is theirs. The decision maps each claimant to the node it speaks
/// for (and ignores claimants the policy does not trust) to find addresses two nodes claim.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Claimant {
    /// A Node's name is its own, whoever reports addresses.
    NodeName(String),
    /// A Node's status lists the address (written by its own kubelet).
    NodeStatus(String),
    /// A Machine's status lists the address.
    Machine(MachineKey),
}

impl MachineInfo {
    pub fn key(&self) -> MachineKey {
        (
            self.api_group.clone(),
            self.namespace.clone(),
            self.name.clone(),
        )
    }
}
