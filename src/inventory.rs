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

use crate::evidence::Observations;
use crate::request::canonical_ip;

/// Lowercase, without one trailing dot: how DNS names and node names compare. Nothing else
/// is forgiven — no whitespace trimmed, no run of dots dropped — so that a name that only
/// becomes valid by being "cleaned up" stays invalid (see `canonical_dns_name`).
pub fn normalize_dns_name(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// The canonical form of a DNS name, if it is a valid DNS-1123 subdomain once lower-cased
/// and stripped of one trailing dot, and not an IP literal in disguise; `None` for anything
/// else (whitespace, empty labels, underscores, wildcards, over-long labels).
///
/// A name whose last label is all digits (`10.0.0.11.`, `010.0.0.11`) is refused: no
/// top-level domain is numeric (RFC 3696 §2), so such a name is only ever an address
/// written as a name — which some resolvers and TLS stacks read as the address, and which
/// would otherwise compare unequal to that same address.
pub fn canonical_dns_name(name: &str) -> Option<String> {
    let normalized = normalize_dns_name(name);
    let numeric_tld = normalized
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()));
    (crate::policy::is_dns1123_subdomain(&normalized) && !numeric_tld).then_some(normalized)
}

/// A Node or Machine address, typed as Kubernetes types them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypedAddress {
    /// `InternalIP`, `ExternalIP`, `Hostname`, `InternalDNS`, `ExternalDNS`.
    pub kind: String,
    pub value: AddressValue,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AddressValue {
    Ip(IpAddr),
    Dns(String),
    /// Neither an IP nor a valid DNS name, as written: evidence of nothing, and equal to no
    /// SAN (SANs are validated before they are compared).
    Invalid(String),
}

impl std::fmt::Display for AddressValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AddressValue::Ip(ip) => ip.fmt(f),
            AddressValue::Dns(d) => f.write_str(d),
            AddressValue::Invalid(raw) => write!(f, "{raw:?} (invalid)"),
        }
    }
}

impl AddressValue {
    /// Reads an address canonically: IPs as parsed (IPv4-mapped IPv6 as IPv4), names
    /// lower-cased without one trailing dot.
    pub fn parse(raw: &str) -> AddressValue {
        match IpAddr::from_str(raw) {
            Ok(ip) => AddressValue::Ip(canonical_ip(ip)),
            Err(_) => match canonical_dns_name(raw) {
                Some(name) => AddressValue::Dns(name),
                None => AddressValue::Invalid(raw.to_string()),
            },
        }
    }
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
    /// `metadata.deletionTimestamp` is set: the Machine is going away and vouches for nothing.
    pub deleting: bool,
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
        let deleting = metadata
            .get("deletionTimestamp")
            .is_some_and(|t| !t.is_null());
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
            deleting,
        })
    }

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

    /// When the `Approved` condition was last updated, if the CSR carries one.
    pub fn approved_at(csr: &CertificateSigningRequest) -> Option<Timestamp> {
        let condition = csr
            .status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == "Approved" && c.status != "False")?;
        condition
            .last_update_time
            .as_ref()
            .or(condition.last_transition_time.as_ref())
            .map(|t| t.0)
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
    /// ClusterIP(s) of the `default/kubernetes` Service: never a node's address.
    kubernetes_service_ips: Vec<IpAddr>,
    /// Address → everyone who claims it, so ownership is one lookup per SAN.
    claims: HashMap<AddressValue, BTreeSet<Claimant>>,
    /// Evidence read on demand (Leases, kubelet certificates), with when it was read.
    observations: Observations,
}

fn node_claims(node: &NodeInfo) -> impl Iterator<Item = (AddressValue, Claimant)> + '_ {
    std::iter::once((
        AddressValue::Dns(node.name.clone()),
        Claimant::NodeName(node.name.clone()),
    ))
    .chain(
        node.addresses
            .iter()
            .map(|a| (a.value.clone(), Claimant::NodeStatus(node.name.clone()))),
    )
}

fn machine_claims(machine: &MachineInfo) -> impl Iterator<Item = (AddressValue, Claimant)> + '_ {
    machine
        .addresses
        .iter()
        .map(|a| (a.value.clone(), Claimant::Machine(machine.key())))
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

    /// The node a known CSR names in its subject, if it parsed.
    pub fn csr_node(&self, name: &str) -> Option<&str> {
        self.csrs.get(name)?.node_name.as_deref()
    }

    /// ClusterIP(s) of the `default/kubernetes` Service, as last seen.
    pub fn kubernetes_service_ips(&self) -> &[IpAddr] {
        &self.kubernetes_service_ips
    }

    /// Records the `default/kubernetes` Service's ClusterIP(s) (empty when it is absent).
    pub fn set_kubernetes_service_ips(&mut self, ips: impl IntoIterator<Item = IpAddr>) {
        self.kubernetes_service_ips = ips.into_iter().map(canonical_ip).collect();
    }

    /// Everyone who claims `value` (Nodes by name or status, Machines by status).
    pub fn claimants(&self, value: &AddressValue) -> impl Iterator<Item = &Claimant> {
        self.claims.get(value).into_iter().flatten()
    }

    pub fn machine(&self, key: &MachineKey) -> Option<&MachineInfo> {
        self.machines.get(key)
    }

    pub fn observations(&self) -> &Observations {
        &self.observations
    }

    pub fn observations_mut(&mut self) -> &mut Observations {
        &mut self.observations
    }

    fn add_claims(&mut self, claims: Vec<(AddressValue, Claimant)>) {
        for (value, claimant) in claims {
            self.claims.entry(value).or_default().insert(claimant);
        }
    }

    fn remove_claims(&mut self, claims: Vec<(AddressValue, Claimant)>) {
        for (value, claimant) in claims {
            if let Some(set) = self.claims.get_mut(&value) {
                set.remove(&claimant);
                if set.is_empty() {
                    self.claims.remove(&value);
                }
            }
        }
    }

    pub fn upsert_node(&mut self, node: NodeInfo) {
        self.remove_node(&node.name.clone());
        self.add_claims(node_claims(&node).collect());
        self.nodes.insert(node.name.clone(), node);
    }

    pub fn remove_node(&mut self, name: &str) {
        if let Some(old) = self.nodes.remove(name) {
            self.remove_claims(node_claims(&old).collect());
        }
    }

    /// Replaces every Node, as after a watch re-list.
    pub fn replace_nodes(&mut self, nodes: impl IntoIterator<Item = NodeInfo>) {
        let old: Vec<String> = self.nodes.keys().cloned().collect();
        for name in old {
            self.remove_node(&name);
        }
        for node in nodes {
            self.upsert_node(node);
        }
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
        self.add_claims(machine_claims(&machine).collect());
        self.machines.insert(key, machine);
    }

    pub fn remove_machine(&mut self, key: &MachineKey) {
        let Some(old) = self.machines.remove(key) else {
            return;
        };
        self.remove_claims(machine_claims(&old).collect());
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

    /// Records a new state for a CSR already known (a verdict we just wrote, at `at`).
    pub fn set_csr_state(&mut self, name: &str, state: CsrState, at: Timestamp) {
        if let Some(mut summary) = self.csrs.get(name).cloned() {
            summary.state = state;
            if state == CsrState::Approved && summary.approved_at.is_none() {
                summary.approved_at = Some(at);
            }
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
