//! The watches on Nodes, Machines and the Service `default/kubernetes`: each keeps its
//! compact records in the cache and triggers the pending CSRs a change concerns.

use std::fmt::Debug;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Service;
use kube::Client;
use kube::api::{Api, ApiResource};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};

use super::wire::{WatchedMachine, WatchedNode};
use super::{ClusterCache, KubernetesService, Trigger, WatchBackoff, fire, watch_config};
use crate::http::Source;
use crate::identity::NodeIdentity;
use crate::inventory::{Inventory, MachineInfo, NodeInfo};

/// Turns a watch event about a full object into one about its compact form, so that a
/// re-list holds thousands of compact records rather than thousands of full objects.
fn compact<K, I>(event: Event<K>, to: impl Fn(&K) -> Option<I>) -> Option<Event<I>> {
    match event {
        Event::Apply(object) => to(&object).map(Event::Apply),
        Event::Delete(object) => to(&object).map(Event::Delete),
        Event::InitApply(object) => to(&object).map(Event::InitApply),
        Event::Init => Some(Event::Init),
        Event::InitDone => Some(Event::InitDone),
    }
}

/// Which pending CSRs a change to the cache can unblock.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Concerns {
    /// Those of these nodes.
    Nodes(Vec<String>),
    /// Any of them.
    Everything,
}

/// What a watched kind contributes to the cache.
pub(super) trait Cached: Debug + Sized {
    const KIND: &'static str;
    /// Stores one record; says which pending CSRs the change concerns.
    fn apply(self, inventory: &mut Inventory) -> Concerns;
    fn delete(self, inventory: &mut Inventory) -> Concerns;
}

impl Cached for NodeInfo {
    const KIND: &'static str = "Node";
    fn apply(self, inventory: &mut Inventory) -> Concerns {
        let name = self.name.clone();
        inventory.upsert_node(self);
        Concerns::Nodes(vec![name.to_string()])
    }
    fn delete(self, inventory: &mut Inventory) -> Concerns {
        inventory.remove_node(&self.name);
        Concerns::Nodes(vec![self.name.to_string()])
    }
}

impl Cached for MachineInfo {
    const KIND: &'static str = "Machine";
    fn apply(self, inventory: &mut Inventory) -> Concerns {
        let nodes = self.node_names().collect();
        inventory.upsert_machine(self);
        Concerns::Nodes(nodes)
    }
    fn delete(self, inventory: &mut Inventory) -> Concerns {
        inventory.remove_machine(&self.key());
        Concerns::Nodes(self.node_names().collect())
    }
}

impl Cached for NodeIdentity {
    const KIND: &'static str = "NodeIdentity";
    fn apply(self, inventory: &mut Inventory) -> Concerns {
        let nodes = identity_concerns(&self);
        inventory.upsert_identity(self);
        Concerns::Nodes(nodes)
    }
    fn delete(self, inventory: &mut Inventory) -> Concerns {
        inventory.remove_identity(self.name());
        // An admin deleting a record frees the host's names: look at its CSRs at once.
        Concerns::Nodes(identity_concerns(&self))
    }
}

/// The nodes whose pending CSRs a record concerns: its node and every name of its host.
fn identity_concerns(record: &NodeIdentity) -> Vec<String> {
    std::iter::once(record.name().to_string())
        .chain(
            record
                .spec
                .host_generation
                .iter()
                .flat_map(|g| g.names.iter().cloned()),
        )
        .collect()
}

/// Applies a compact watch stream to the cache and triggers the pending CSRs each change
/// concerns. `replace` swaps in the records of a (re-)list. `source` says when the first
/// list is done, and why it is not while it fails.
pub(super) async fn drive<I, S>(
    stream: S,
    replace: impl Fn(Vec<I>, &mut Inventory),
    cache: Arc<ClusterCache>,
    trigger: Trigger,
    source: Source,
) where
    I: Cached,
    S: Stream<Item = Result<Event<I>, watcher::Error>>,
{
    let mut stream = std::pin::pin!(stream);
    let mut relist: Vec<I> = Vec::new();
    let mut synced = false;
    while let Some(event) = stream.next().await {
        let concerns = match event {
            Ok(Event::Apply(record)) => record.apply(&mut cache.write().inventory),
            Ok(Event::Delete(record)) => record.delete(&mut cache.write().inventory),
            Ok(Event::Init) => {
                relist.clear();
                continue;
            }
            Ok(Event::InitApply(record)) => {
                relist.push(record);
                continue;
            }
            Ok(Event::InitDone) => {
                replace(std::mem::take(&mut relist), &mut cache.write().inventory);
                synced = true;
                source.synced();
                // A re-list (after an outage) may bring any change at all: look again at
                // everything still pending rather than wait for its requeue.
                Concerns::Everything
            }
            Err(error) => {
                tracing::warn!(kind = I::KIND, %error, "watch error; retrying with backoff");
                // Before its first list, readiness says why it waits. After it, the records
                // already listed stand while the watch catches up.
                if !synced {
                    source.list_failed(&error);
                }
                continue;
            }
        };
        let pending = match concerns {
            Concerns::Nodes(nodes) => cache.pending_for(&nodes),
            Concerns::Everything => cache.all_pending(),
        };
        fire(&trigger, pending);
    }
}

/// Watches Nodes into the cache.
pub async fn watch_nodes(
    client: Client,
    cache: Arc<ClusterCache>,
    trigger: Trigger,
    source: Source,
) {
    let stream = watcher::watcher(Api::<WatchedNode>::all(client), watch_config())
        .backoff(WatchBackoff::default())
        .filter_map(|event| async move {
            event
                .map(|e| compact(e, |n: &WatchedNode| crate::facts::node_info(&n.0)))
                .transpose()
        });
    drive(
        stream,
        |nodes, inventory| inventory.replace_nodes(nodes),
        cache,
        trigger,
        source,
    )
    .await;
}

/// Watches the durable record of identities minted (`NodeIdentity`) into the cache. Until
/// it has listed nothing is decided: a decision without it could mint a second identity
/// for a host whose first CSR the cleaner has deleted. Without the CRD (not installed
/// with the chart) the watch fails and retries, and the replica stays unready, saying so.
pub async fn watch_identities(
    client: Client,
    cache: Arc<ClusterCache>,
    trigger: Trigger,
    source: Source,
) {
    let stream = watcher::watcher(Api::<NodeIdentity>::all(client), watch_config())
        .backoff(WatchBackoff::default());
    drive(
        stream,
        |records, inventory| inventory.replace_identities(records),
        cache,
        trigger,
        source,
    )
    .await;
}

/// Watches the Service `default/kubernetes` (by name: RBAC grants only that one) into the
/// cache. It counts for readiness like any other watch: an absent Service lists as none.
pub async fn watch_kubernetes_service(
    client: Client,
    cache: Arc<ClusterCache>,
    trigger: Trigger,
    source: Source,
) {
    let api: Api<Service> = Api::namespaced(client, KubernetesService::NAMESPACE);
    let config = watch_config().fields(&format!("metadata.name={}", KubernetesService::NAME));
    let stream = watcher::watcher(api, config)
        .backoff(WatchBackoff::default())
        .filter_map(|event| async move {
            event
                .map(|e| compact(e, |s| Some(KubernetesService::from_service(s))))
                .transpose()
        });
    let replace = |listed: Vec<KubernetesService>, inventory: &mut Inventory| {
        inventory.set_kubernetes_service_ips(listed.into_iter().flat_map(|s| s.cluster_ips));
    };
    drive(stream, replace, cache, trigger, source).await;
}

/// Watches one Machine API (OpenShift or Cluster API) into the cache.
pub async fn watch_machines(
    client: Client,
    resource: ApiResource,
    cache: Arc<ClusterCache>,
    trigger: Trigger,
    source: Source,
) {
    let api: Api<WatchedMachine> = Api::all_with(client, &resource);
    let group = resource.group.clone();
    let stream = watcher::watcher(api, watch_config())
        .backoff(WatchBackoff::default())
        .filter_map(move |event| {
            let resource = resource.clone();
            async move {
                event
                    .map(|e| {
                        compact(e, |m: &WatchedMachine| {
                            crate::facts::machine_info_from_object(&m.0, &resource)
                        })
                    })
                    .transpose()
            }
        });
    // One watch per API group: a re-list replaces only that group's Machines.
    let replace =
        move |machines, inventory: &mut Inventory| inventory.replace_machines(&group, machines);
    drive(stream, replace, cache, trigger, source).await;
}
