//! What the cluster knows about its machines: Nodes, Machines (OpenShift machine API and
//! Cluster API), and the other kubelet CSRs (for the duplicate and flood rules). Built from
//! Kubernetes objects by the controller or from files by `check`; read by `decide`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::str::FromStr;

use jiff::Timestamp;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::Node;
use serde_json::Value;

use crate::request::canonical_ip;

/// Lowercase, without the trailing dot: how DNS names and node names compare.
pub fn normalize_dns_name(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// A Node or Machine address, typed as Kubernetes types them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypedAddress {
    /// `InternalIP`, `ExternalIP`, `Hostname`, `InternalDNS`, `ExternalDNS`.
    pub kind: String,
    pub value: AddressValue,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AddressValue {
    Ip(IpAddr),
    Dns(String),
}

impl std::fmt::Display for AddressValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AddressValue::Ip(ip) => ip.fmt(f),
            AddressValue::Dns(d) => f.write_str(d),
        }
    }
}

impl TypedAddress {
    pub fn new(kind: &str, raw: &str) -> TypedAddress {
        let value = match IpAddr::from_str(raw.trim()) {
            Ok(ip) => AddressValue::Ip(canonical_ip(ip)),
            Err(_) => AddressValue::Dns(normalize_dns_name(raw)),
        };
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

impl NodeInfo {
    pub fn from_node(node: &Node) -> Option<NodeInfo> {
        let name = normalize_dns_name(node.metadata.name.as_deref()?);
        let addresses = node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .map(|list| {
                list.iter()
                    .map(|a| TypedAddress::new(&a.type_, &a.address))
                    .collect()
            })
            .unwrap_or_default();
        Some(NodeInfo { name, addresses })
    }
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
}

impl MachineInfo {
    /// Reads a Machine of either API from its JSON form. Both APIs share the shape this
    /// needs: `status.addresses[{type,address}]` and `status.nodeRef.name`.
    pub fn from_json(object: &Value) -> Option<MachineInfo> {
        let api_version = object.get("apiVersion")?.as_str()?;
        let api_group = api_version.split('/').next()?.to_string();
        let metadata = object.get("metadata")?;
        let name = metadata.get("name")?.as_str()?.to_string();
        let namespace = metadata
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let created = metadata
            .get("creationTimestamp")
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<Timestamp>().ok());
        let status = object.get("status");
        let addresses = status
            .and_then(|s| s.get("addresses"))
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|a| {
                        let kind = a.get("type")?.as_str()?;
                        let address = a.get("address")?.as_str()?;
                        Some(TypedAddress::new(kind, address))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let node_ref = status
            .and_then(|s| s.get("nodeRef"))
            .and_then(|r| r.get("name"))
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map(normalize_dns_name);
        Some(MachineInfo {
            api_group,
            namespace,
            name,
            created,
            addresses,
            node_ref,
        })
    }

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
            .filter(|a| matches!(a.kind.as_str(), "Hostname" | "InternalDNS"))
            .filter_map(|a| match &a.value {
                AddressValue::Dns(name) => Some(name.clone()),
                AddressValue::Ip(_) => None,
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
    pub fn of(csr: &CertificateSigningRequest) -> CsrState {
        let Some(status) = csr.status.as_ref() else {
            return CsrState::Pending;
        };
        let has = |t: &str| {
            status
                .conditions
                .as_ref()
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == t && c.status != "False"))
        };
        if has("Denied") {
            CsrState::Denied
        } else if has("Failed") {
            CsrState::Failed
        } else if status.certificate.as_ref().is_some_and(|c| !c.0.is_empty()) {
            CsrState::Issued
        } else if has("Approved") {
            CsrState::Approved
        } else {
            CsrState::Pending
        }
    }

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
}

/// Identifies a Machine across both APIs.
pub type MachineKey = (String, String, String);

impl MachineInfo {
    pub fn key(&self) -> MachineKey {
        (
            self.api_group.clone(),
            self.namespace.clone(),
            self.name.clone(),
        )
    }
}

/// Everything `decide` may consult besides the CSR itself. The controller keeps one up to
/// date from its watches; `check` builds one from files. Indexed so that one decision costs
/// the same in a cluster of ten machines or ten thousand.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    nodes: HashMap<String, NodeInfo>,
    // Ordered, so that decisions and their messages are deterministic.
    machines: BTreeMap<MachineKey, MachineInfo>,
    csrs: BTreeMap<String, CsrSummary>,
    /// Host name (Hostname/InternalDNS address) or linked Node → Machines.
    machines_by_node: HashMap<String, BTreeSet<MachineKey>>,
    /// (API group, namespace) → how many Machines.
    machine_counts: HashMap<(String, String), usize>,
    /// Node name from the CN → CSRs.
    csrs_by_node: HashMap<String, BTreeSet<String>>,
    /// Pending CSRs by creation time, for the flood guard's window.
    pending: BTreeSet<(Option<Timestamp>, String)>,
}

impl Inventory {
    pub fn new(
        nodes: impl IntoIterator<Item = NodeInfo>,
        machines: impl IntoIterator<Item = MachineInfo>,
        csrs: impl IntoIterator<Item = CsrSummary>,
    ) -> Inventory {
        let mut inventory = Inventory::default();
        inventory.replace_nodes(nodes);
        for machine in machines {
            inventory.upsert_machine(machine);
        }
        inventory.replace_csrs(csrs);
        inventory
    }

    /// `name` must be normalised.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.get(name)
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn machines(&self) -> impl Iterator<Item = &MachineInfo> {
        self.machines.values()
    }

    /// Machines that name host `node` (Hostname/InternalDNS) or are linked to Node `node`.
    pub fn machines_for_node(&self, node: &str) -> impl Iterator<Item = &MachineInfo> {
        self.machines_by_node
            .get(node)
            .into_iter()
            .flatten()
            .filter_map(|key| self.machines.get(key))
    }

    /// How many Machines each (API group, namespace) holds.
    pub fn machine_counts(&self) -> impl Iterator<Item = (&str, &str, usize)> {
        self.machine_counts
            .iter()
            .map(|((group, namespace), n)| (group.as_str(), namespace.as_str(), *n))
    }

    pub fn csrs(&self) -> impl Iterator<Item = &CsrSummary> {
        self.csrs.values()
    }

    /// CSRs whose subject names node `node`.
    pub fn csrs_for_node(&self, node: &str) -> impl Iterator<Item = &CsrSummary> {
        self.csrs_by_node
            .get(node)
            .into_iter()
            .flatten()
            .filter_map(|name| self.csrs.get(name))
    }

    /// Pending CSRs created at or after `since` (or in the future), oldest first.
    pub fn pending_since(&self, since: Timestamp) -> impl Iterator<Item = &CsrSummary> {
        self.pending
            .range((Some(since), String::new())..)
            .filter_map(|(_, name)| self.csrs.get(name))
    }

    pub fn csr_state(&self, name: &str) -> Option<CsrState> {
        self.csrs.get(name).map(|c| c.state)
    }

    pub fn upsert_node(&mut self, node: NodeInfo) {
        self.nodes.insert(node.name.clone(), node);
    }

    pub fn remove_node(&mut self, name: &str) {
        self.nodes.remove(name);
    }

    /// Replaces every Node, as after a watch re-list.
    pub fn replace_nodes(&mut self, nodes: impl IntoIterator<Item = NodeInfo>) {
        self.nodes = nodes.into_iter().map(|n| (n.name.clone(), n)).collect();
    }

    pub fn upsert_machine(&mut self, machine: MachineInfo) {
        let key = machine.key();
        self.remove_machine(&key);
        for name in machine.node_names() {
            self.machines_by_node
                .entry(name)
                .or_default()
                .insert(key.clone());
        }
        *self
            .machine_counts
            .entry((key.0.clone(), key.1.clone()))
            .or_default() += 1;
        self.machines.insert(key, machine);
    }

    pub fn remove_machine(&mut self, key: &MachineKey) {
        let Some(old) = self.machines.remove(key) else {
            return;
        };
        for name in old.node_names() {
            if let Some(keys) = self.machines_by_node.get_mut(&name) {
                keys.remove(key);
                if keys.is_empty() {
                    self.machines_by_node.remove(&name);
                }
            }
        }
        let group_namespace = (key.0.clone(), key.1.clone());
        if let Some(count) = self.machine_counts.get_mut(&group_namespace) {
            *count -= 1;
            if *count == 0 {
                self.machine_counts.remove(&group_namespace);
            }
        }
    }

    /// Replaces every Machine of one API group, as after a watch re-list.
    pub fn replace_machines(
        &mut self,
        api_group: &str,
        machines: impl IntoIterator<Item = MachineInfo>,
    ) {
        let stale: Vec<MachineKey> = self
            .machines
            .keys()
            .filter(|key| key.0 == api_group)
            .cloned()
            .collect();
        for key in &stale {
            self.remove_machine(key);
        }
        for machine in machines {
            self.upsert_machine(machine);
        }
    }

    pub fn upsert_csr(&mut self, csr: CsrSummary) {
        self.remove_csr(&csr.name.clone());
        if let Some(node) = &csr.node_name {
            self.csrs_by_node
                .entry(node.clone())
                .or_default()
                .insert(csr.name.clone());
        }
        if csr.state == CsrState::Pending {
            self.pending.insert((csr.created, csr.name.clone()));
        }
        self.csrs.insert(csr.name.clone(), csr);
    }

    /// Records a new state for a CSR already known.
    pub fn set_csr_state(&mut self, name: &str, state: CsrState) {
        if let Some(mut summary) = self.csrs.get(name).cloned() {
            summary.state = state;
            self.upsert_csr(summary);
        }
    }

    pub fn remove_csr(&mut self, name: &str) {
        let Some(old) = self.csrs.remove(name) else {
            return;
        };
        if let Some(node) = &old.node_name
            && let Some(names) = self.csrs_by_node.get_mut(node)
        {
            names.remove(name);
            if names.is_empty() {
                self.csrs_by_node.remove(node);
            }
        }
        self.pending.remove(&(old.created, old.name));
    }

    pub fn replace_csrs(&mut self, csrs: impl IntoIterator<Item = CsrSummary>) {
        self.csrs.clear();
        self.csrs_by_node.clear();
        self.pending.clear();
        for csr in csrs {
            self.upsert_csr(csr);
        }
    }
}
