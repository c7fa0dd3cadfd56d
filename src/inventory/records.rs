//! The records the inventory keeps: compact facts about Nodes, Machines and CSRs (only
//! what decisions read, so memory stays flat), and who claims an address.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use jiff::Timestamp;

use crate::vocabulary::AddressValue;

/// The type of a Node or Machine address. Kubernetes leaves the field open, so a type it
/// does not define is kept as written (and names no host); the five it defines take no
/// allocation, which is most of what 5000 cached Nodes and Machines hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressKind {
    Hostname,
    InternalIP,
    ExternalIP,
    InternalDNS,
    ExternalDNS,
    Other(Box<str>),
}

impl AddressKind {
    pub fn parse(kind: &str) -> AddressKind {
        match kind {
            "Hostname" => AddressKind::Hostname,
            "InternalIP" => AddressKind::InternalIP,
            "ExternalIP" => AddressKind::ExternalIP,
            "InternalDNS" => AddressKind::InternalDNS,
            "ExternalDNS" => AddressKind::ExternalDNS,
            other => AddressKind::Other(other.into()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            AddressKind::Hostname => "Hostname",
            AddressKind::InternalIP => "InternalIP",
            AddressKind::ExternalIP => "ExternalIP",
            AddressKind::InternalDNS => "InternalDNS",
            AddressKind::ExternalDNS => "ExternalDNS",
            AddressKind::Other(other) => other,
        }
    }

    /// Whether an address of this type names its machine's host (its node's name).
    pub fn names_a_host(&self) -> bool {
        matches!(self, AddressKind::Hostname | AddressKind::InternalDNS)
    }
}

impl fmt::Display for AddressKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Node or Machine address, typed as Kubernetes types them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypedAddress {
    pub kind: AddressKind,
    pub value: AddressValue,
}

impl TypedAddress {
    pub fn new(kind: &str, raw: &str) -> TypedAddress {
        TypedAddress {
            kind: AddressKind::parse(kind),
            value: AddressValue::parse(raw),
        }
    }

    /// Whether this address names the host `node` (Hostname or InternalDNS).
    pub fn names_host(&self, node: &str) -> bool {
        self.kind.names_a_host() && matches!(&self.value, AddressValue::Dns(name) if name == node)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Normalised node name; shared with the inventory's indexes, which name the Node by it.
    pub name: Arc<str>,
    pub addresses: Vec<TypedAddress>,
    /// Labelled a control-plane node (`node-role.kubernetes.io/control-plane` or `master`):
    /// set by an admin or the installer, never by the kubelet itself (NodeRestriction
    /// refuses `node-role.kubernetes.io/` labels from a node).
    pub control_plane: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineInfo {
    /// `machine.openshift.io` or `cluster.x-k8s.io`. This and the namespace are shared by
    /// every Machine of the inventory in that API group and namespace.
    pub api_group: Arc<str>,
    pub namespace: Arc<str>,
    pub name: Arc<str>,
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

    /// The node names this Machine concerns: the hosts it names (Hostname/InternalDNS) and
    /// the Node it is linked to.
    pub fn node_names(&self) -> impl Iterator<Item = String> + '_ {
        self.addresses
            .iter()
            .filter(|a| a.kind.names_a_host())
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
    /// Shared with the inventory's indexes, which name the CSR by it.
    pub name: Arc<str>,
    /// Common signers and groups are static text (`vocabulary::common_or_owned`).
    pub signer: Cow<'static, str>,
    pub created: Option<Timestamp>,
    pub state: CsrState,
    /// Normalised node name from the request's CN `system:node:<name>`, when it parses.
    pub node_name: Option<String>,
    /// `spec.username` and `spec.groups`: who asked (the flood guard counts only what a
    /// bootstrapper asked for; the new-node cap counts what was granted to one).
    pub requester: String,
    pub groups: Vec<Cow<'static, str>>,
    /// When the `Approved` condition was written (or when we wrote it), for the new-node cap.
    pub approved_at: Option<Timestamp>,
}

/// Identifies a Machine across both APIs: API group, namespace, name (shared with its
/// record, so a key costs no allocation).
pub type MachineKey = (Arc<str>, Arc<str>, Arc<str>);

/// Who says an address is theirs. The decision weighs each claimant (a Node's status is a
/// self-report, a trusted Machine is not) and ignores those the policy does not trust.
/// Each names its Node or Machine by the inventory's one shared copy of the name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Claimant {
    /// A Node's name is its own, whoever reports addresses.
    NodeName(Arc<str>),
    /// A Node's status lists the address (written by its own kubelet).
    NodeStatus(Arc<str>),
    /// A Machine's status lists the address, or its `nodeRef` holds the name. It speaks
    /// for its host: the Node it is linked to and every host name it gives.
    Machine(Arc<MachineKey>),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_two_host_types_name_a_host_and_any_other_type_is_kept_as_written() {
        for (kind, names) in [
            ("Hostname", true),
            ("InternalDNS", true),
            ("ExternalDNS", false),
            ("InternalIP", false),
            ("ExternalIP", false),
            // Kubernetes compares address types exactly: a near miss names nothing.
            ("hostname", false),
            ("Hostname ", false),
            ("", false),
        ] {
            let address = TypedAddress::new(kind, "worker-1");
            assert_eq!(address.names_host("worker-1"), names, "{kind:?}");
            assert_eq!(address.kind.to_string(), kind, "printed as written");
        }
        assert!(!TypedAddress::new("Hostname", "worker-2").names_host("worker-1"));
        assert_eq!(
            AddressKind::parse("VIP"),
            AddressKind::Other("VIP".into()),
            "an unknown type is kept"
        );
    }

    #[test]
    fn a_machine_concerns_every_host_it_names_and_its_linked_node() {
        let machine = |addresses: &[(&str, &str)], node_ref: Option<&str>| MachineInfo {
            api_group: "machine.openshift.io".into(),
            namespace: "openshift-machine-api".into(),
            name: "m".into(),
            created: None,
            addresses: addresses
                .iter()
                .map(|(k, v)| TypedAddress::new(k, v))
                .collect(),
            node_ref: node_ref.map(str::to_string),
            deleting: false,
        };
        let named = machine(
            &[
                ("InternalIP", "10.0.0.1"),
                ("InternalDNS", "w-1.example.com"),
                ("Hostname", "w-1"),
            ],
            None,
        );
        assert_eq!(
            named.node_names().collect::<Vec<_>>(),
            ["w-1.example.com", "w-1"]
        );
        let linked = machine(&[("Hostname", "w-1")], Some("w-2"));
        assert_eq!(linked.node_names().collect::<Vec<_>>(), ["w-1", "w-2"]);
        // An unknown type, or a host type holding an IP, names no host.
        let unnamed = machine(&[("VIP", "w-1"), ("Hostname", "10.0.0.1")], None);
        assert_eq!(unnamed.node_names().count(), 0);
    }
}
