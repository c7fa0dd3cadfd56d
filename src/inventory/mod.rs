//! What the cluster knows about its machines: Nodes, Machines (OpenShift machine API and
//! Cluster API), and the other kubelet CSRs (for the duplicate and flood rules). Built from
//! Kubernetes objects by the controller or from files by `check`; read by `decide`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use sorted_set::SortedSet;
use std::net::IpAddr;

use jiff::Timestamp;

mod endpoints;
mod records;
mod sorted_set;

pub use endpoints::{ApiServerEndpoints, EndpointSource};
pub use records::{
    AddressKind, Claimant, CsrState, CsrSummary, MachineInfo, MachineKey, NodeInfo, TypedAddress,
};

use crate::evidence::Observations;
use crate::identity::{Minted, NodeIdentity};
use crate::vocabulary::{AddressValue, canonical_ip};

/// Everything `decide` may consult besides the CSR itself. The controller keeps one up to
/// date from its watches; `check` builds one from files. Indexed so that one decision costs
/// the same in a cluster of ten machines or ten thousand. The indexes share one copy of
/// each Node, Machine and CSR name (`Arc`): with thousands of each, separate copies were
/// most of the allocations the cache holds.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    nodes: HashMap<Arc<str>, NodeInfo>,
    // Ordered, so that decisions and their messages are deterministic.
    machines: BTreeMap<Arc<MachineKey>, MachineInfo>,
    csrs: BTreeMap<Arc<str>, CsrSummary>,
    /// Host name (Hostname/InternalDNS address) or linked Node → Machines.
    machines_by_node: HashMap<String, SortedSet<Arc<MachineKey>>>,
    /// (API group, namespace) → how many Machines; the one copy of each that they share.
    machine_counts: HashMap<(Arc<str>, Arc<str>), usize>,
    /// Node name from the CN → CSRs.
    csrs_by_node: HashMap<String, SortedSet<Arc<str>>>,
    /// Pending CSRs by creation time, for the flood guard's window.
    pending: BTreeSet<(Option<Timestamp>, Arc<str>)>,
    /// ClusterIP(s) of the `default/kubernetes` Service: never a node's address.
    kubernetes_service_ips: Vec<IpAddr>,
    /// The API server's endpoints recorded by the cluster: never a node's.
    api_server_endpoints: ApiServerEndpoints,
    /// Address, as it denotes (`AddressValue::denoted`: an IPv6 form embedding an IPv4
    /// address is filed under the IPv4 address) → everyone who claims it, so a conflict
    /// is one lookup per SAN whatever form either side wrote.
    claims: HashMap<AddressValue, SortedSet<Claimant>>,
    /// Evidence read on demand (Leases, kubelet certificates), with when it was read.
    observations: Observations,
    /// The durable record of identities minted (`NodeIdentity`), by node.
    identities: HashMap<Arc<str>, NodeIdentity>,
    /// Host-generation key → the nodes whose records hold an identity minted for it.
    minted_by_generation: HashMap<String, SortedSet<Arc<str>>>,
}

fn node_claims(node: &NodeInfo) -> impl Iterator<Item = (AddressValue, Claimant)> + '_ {
    std::iter::once((
        AddressValue::Dns(node.name.to_string()),
        Claimant::NodeName(node.name.clone()),
    ))
    .chain(
        node.addresses
            .iter()
            .map(|a| (a.value.clone(), Claimant::NodeStatus(node.name.clone()))),
    )
}

/// A Machine claims its addresses and the name its `nodeRef` holds: that name stays its
/// host's after the Node is deleted. `key`: the Machine's key as the inventory holds it,
/// one allocation its claims share.
fn machine_claims<'a>(
    machine: &'a MachineInfo,
    key: &'a Arc<MachineKey>,
) -> impl Iterator<Item = (AddressValue, Claimant)> + 'a {
    machine
        .addresses
        .iter()
        .map(|a| a.value.clone())
        .chain(machine.node_ref.clone().map(AddressValue::Dns))
        .map(|value| (value, Claimant::Machine(key.clone())))
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
            .map(|((group, namespace), n)| (&**group, &**namespace, *n))
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
            .range((Some(since), Arc::<str>::from(""))..)
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

    /// The API server's endpoints as the cluster records them.
    pub fn api_server_endpoints(&self) -> &ApiServerEndpoints {
        &self.api_server_endpoints
    }

    /// Records what `source` says of the API server's endpoints (empty when it is absent);
    /// says whether anything changed.
    pub fn set_api_server_endpoints(
        &mut self,
        source: EndpointSource,
        values: Vec<AddressValue>,
    ) -> bool {
        self.api_server_endpoints.set(source, values)
    }

    /// Everyone who claims `value` or an alias of it (Nodes by name or status, Machines by
    /// status or `nodeRef`).
    pub fn claimants(&self, value: &AddressValue) -> impl Iterator<Item = &Claimant> {
        self.claims.get(&*value.denoted()).into_iter().flatten()
    }

    pub fn machine(&self, key: &MachineKey) -> Option<&MachineInfo> {
        self.machines.get(key)
    }

    /// The identity record of `node`, if csr-approver ever minted one for it.
    pub fn identity(&self, node: &str) -> Option<&NodeIdentity> {
        self.identities.get(node)
    }

    pub fn identities(&self) -> impl Iterator<Item = &NodeIdentity> {
        self.identities.values()
    }

    /// Every identity minted for host generation `key`, under whichever node name, with
    /// that name.
    pub fn minted_for_generation<'a>(
        &'a self,
        key: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a Minted)> + 'a {
        self.minted_by_generation
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|node| self.identities.get(node))
            .flat_map(move |record| {
                record
                    .spec
                    .minted
                    .iter()
                    .filter(move |m| m.host_generation == key)
                    .map(move |m| (record.spec.node.as_str(), m))
            })
    }

    pub fn upsert_identity(&mut self, mut record: NodeIdentity) {
        record.metadata.managed_fields = None;
        let node: Arc<str> = Arc::from(record.name());
        self.remove_identity(&node);
        for minted in &record.spec.minted {
            self.minted_by_generation
                .entry(minted.host_generation.clone())
                .or_default()
                .insert(node.clone());
        }
        self.identities.insert(node, record);
    }

    pub fn remove_identity(&mut self, node: &str) {
        let Some(old) = self.identities.remove(node) else {
            return;
        };
        for minted in &old.spec.minted {
            if let Some(nodes) = self.minted_by_generation.get_mut(&minted.host_generation) {
                nodes.remove::<str>(node);
                if nodes.is_empty() {
                    self.minted_by_generation.remove(&minted.host_generation);
                }
            }
        }
    }

    /// Replaces every record, as after a watch re-list.
    pub fn replace_identities(&mut self, records: impl IntoIterator<Item = NodeIdentity>) {
        self.identities.clear();
        self.minted_by_generation.clear();
        for record in records {
            self.upsert_identity(record);
        }
    }

    pub fn observations(&self) -> &Observations {
        &self.observations
    }

    pub fn observations_mut(&mut self) -> &mut Observations {
        &mut self.observations
    }

    fn add_claims(&mut self, claims: Vec<(AddressValue, Claimant)>) {
        for (value, claimant) in claims {
            let key = value.denoted().into_owned();
            self.claims.entry(key).or_default().insert(claimant);
        }
    }

    fn remove_claims(&mut self, claims: Vec<(AddressValue, Claimant)>) {
        for (value, claimant) in claims {
            let key = value.denoted();
            if let Some(set) = self.claims.get_mut(&*key) {
                set.remove(&claimant);
                if set.is_empty() {
                    self.claims.remove(&*key);
                }
            }
        }
    }

    pub fn upsert_node(&mut self, node: NodeInfo) {
        self.remove_node(&node.name);
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
        let old: Vec<Arc<str>> = self.nodes.keys().cloned().collect();
        for name in old {
            self.remove_node(&name);
        }
        for node in nodes {
            self.upsert_node(node);
        }
    }

    pub fn upsert_machine(&mut self, mut machine: MachineInfo) {
        self.share_group_and_namespace(&mut machine);
        let key = Arc::new(machine.key());
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
        self.add_claims(machine_claims(&machine, &key).collect());
        self.machines.insert(key, machine);
    }

    /// Points a Machine's API group and namespace at the copies the Machines already kept
    /// share: thousands of Machines sit in one or two namespaces of one API group. A scan
    /// of the (group, namespace) places that hold Machines, which are few.
    fn share_group_and_namespace(&self, machine: &mut MachineInfo) {
        for (group, namespace) in self.machine_counts.keys() {
            if *group == machine.api_group {
                machine.api_group = group.clone();
            }
            if *namespace == machine.namespace {
                machine.namespace = namespace.clone();
            }
        }
    }

    pub fn remove_machine(&mut self, key: &MachineKey) {
        let Some((shared_key, old)) = self.machines.remove_entry(key) else {
            return;
        };
        self.remove_claims(machine_claims(&old, &shared_key).collect());
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
        let stale: Vec<Arc<MachineKey>> = self
            .machines
            .keys()
            .filter(|key| &*key.0 == api_group)
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
        self.remove_csr(&csr.name);
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
            names.remove::<str>(name);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(namespace: &str, name: &str, ip: &str) -> MachineInfo {
        MachineInfo {
            // Built apart, as the watch builds each record: nothing shared yet.
            api_group: String::from("machine.openshift.io").into(),
            namespace: namespace.into(),
            name: name.into(),
            created: None,
            addresses: vec![TypedAddress::new("InternalIP", ip)],
            node_ref: None,
            deleting: false,
        }
    }

    #[test]
    fn machines_of_one_namespace_share_its_name_and_forget_it_with_the_last_of_them() {
        let mut inventory = Inventory::default();
        inventory.upsert_machine(machine("openshift-machine-api", "m-1", "10.0.0.1"));
        inventory.upsert_machine(machine("openshift-machine-api", "m-2", "10.0.0.2"));
        inventory.upsert_machine(machine("other", "m-3", "10.0.0.3"));
        let kept: Vec<&MachineInfo> = inventory.machines().collect();
        assert_eq!(kept.len(), 3);
        assert!(Arc::ptr_eq(&kept[0].namespace, &kept[1].namespace));
        assert!(Arc::ptr_eq(&kept[0].api_group, &kept[2].api_group));
        assert!(!Arc::ptr_eq(&kept[0].namespace, &kept[2].namespace));
        let mut counts: Vec<_> = inventory.machine_counts().collect();
        counts.sort();
        assert_eq!(
            counts,
            [
                ("machine.openshift.io", "openshift-machine-api", 2),
                ("machine.openshift.io", "other", 1)
            ]
        );

        // A Machine replaced in place keeps one entry and one claim per address.
        inventory.upsert_machine(machine("openshift-machine-api", "m-2", "10.0.0.9"));
        let old = AddressValue::parse("10.0.0.2");
        let new = AddressValue::parse("10.0.0.9");
        assert_eq!(inventory.claimants(&old).count(), 0);
        assert_eq!(inventory.claimants(&new).count(), 1);

        let key = |ns: &str, name: &str| -> MachineKey {
            ("machine.openshift.io".into(), ns.into(), name.into())
        };
        inventory.remove_machine(&key("other", "m-3"));
        inventory.remove_machine(&key("openshift-machine-api", "m-1"));
        inventory.remove_machine(&key("openshift-machine-api", "m-2"));
        assert_eq!(inventory.machines().count(), 0);
        assert_eq!(
            inventory.machine_counts().count(),
            0,
            "nothing kept after them"
        );
        assert_eq!(inventory.claimants(&new).count(), 0);
    }

    #[test]
    fn a_linked_machine_claims_its_node_name_after_the_node_is_gone() {
        let mut inventory = Inventory::default();
        let mut linked = machine("openshift-machine-api", "m-1", "10.0.0.1");
        linked.node_ref = Some("worker-1".to_string());
        inventory.upsert_machine(linked);
        let name = AddressValue::parse("worker-1");
        let claimants: Vec<&Claimant> = inventory.claimants(&name).collect();
        assert!(
            matches!(claimants.as_slice(), [Claimant::Machine(key)] if &*key.2 == "m-1"),
            "{claimants:?}"
        );
        inventory.remove_machine(&(
            "machine.openshift.io".into(),
            "openshift-machine-api".into(),
            "m-1".into(),
        ));
        assert_eq!(inventory.claimants(&name).count(), 0, "forgotten with it");
    }

    #[test]
    fn a_node_and_its_claims_share_one_copy_of_its_name() {
        let mut inventory = Inventory::default();
        inventory.upsert_node(NodeInfo {
            control_plane: false,
            name: "worker-1".into(),
            addresses: vec![
                TypedAddress::new("InternalIP", "10.0.0.1"),
                TypedAddress::new("Hostname", "worker-1"),
            ],
        });
        let Some(node) = inventory.node("worker-1") else {
            panic!("the Node is kept");
        };
        let by_name: Vec<&Claimant> = inventory
            .claimants(&AddressValue::parse("worker-1"))
            .collect();
        assert_eq!(by_name.len(), 2, "its name and its Hostname address");
        for claimant in by_name
            .into_iter()
            .chain(inventory.claimants(&AddressValue::parse("10.0.0.1")))
        {
            match claimant {
                Claimant::NodeName(name) | Claimant::NodeStatus(name) => {
                    assert!(Arc::ptr_eq(name, &node.name));
                }
                Claimant::Machine(_) => panic!("no Machine here"),
            }
        }
        inventory.remove_node("worker-1");
        assert_eq!(
            inventory
                .claimants(&AddressValue::parse("worker-1"))
                .count(),
            0
        );
    }
}
