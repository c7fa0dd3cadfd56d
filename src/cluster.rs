//! The controller's view of the cluster: watches on Nodes, Machines and CSRs keep one
//! `Inventory` current (only the fields decisions read, so memory stays flat), and each
//! change names the pending CSRs it can unblock so they are reconciled at once.

use std::fmt::Debug;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use futures::channel::mpsc::UnboundedSender;
use futures::{Stream, StreamExt};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource, ResourceExt};

use crate::check::summarize;
use crate::decision::{CLIENT_SIGNER, SERVING_SIGNER};
use crate::inventory::{CsrState, Inventory, MachineInfo, NodeInfo};
use crate::policy::{CLUSTER_API_MACHINE_GROUP, OPENSHIFT_MACHINE_GROUP};

/// The inventory shared by the watches (writers) and reconciles (readers).
#[derive(Debug, Default)]
pub struct ClusterCache {
    inventory: RwLock<Inventory>,
}

impl ClusterCache {
    pub fn read(&self) -> RwLockReadGuard<'_, Inventory> {
        self.inventory
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inventory> {
        self.inventory
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records a verdict we wrote before its watch event arrives, so the duplicate and
    /// flood rules see it at once.
    pub fn mark_decided(&self, name: &str, state: CsrState) {
        self.write().set_csr_state(name, state);
    }

    /// Whether the cache knows the CSR as decided — possibly ahead of the reflector store,
    /// right after our own write.
    pub fn is_decided(&self, name: &str) -> bool {
        self.read()
            .csr_state(name)
            .is_some_and(|s| s != CsrState::Pending)
    }

    /// Names of pending kubelet CSRs for any of `nodes`: what a change to them can unblock.
    fn pending_for(&self, nodes: &[String]) -> Vec<String> {
        if nodes.is_empty() {
            return Vec::new();
        }
        self.read()
            .csrs()
            .filter(|c| c.state == CsrState::Pending)
            .filter(|c| c.signer == CLIENT_SIGNER || c.signer == SERVING_SIGNER)
            .filter(|c| c.node_name.as_ref().is_some_and(|n| nodes.contains(n)))
            .map(|c| c.name.clone())
            .collect()
    }
}

/// Counts the watches that have not finished their first list; fires once when all have.
pub struct SyncTracker {
    remaining: AtomicUsize,
    on_synced: Box<dyn Fn() + Send + Sync>,
}

impl SyncTracker {
    pub fn new(watches: usize, on_synced: impl Fn() + Send + Sync + 'static) -> Arc<SyncTracker> {
        Arc::new(SyncTracker {
            remaining: AtomicUsize::new(watches),
            on_synced: Box::new(on_synced),
        })
    }

    fn done(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            (self.on_synced)();
        }
    }
}

/// Watch retry delays: 250 ms doubling to 5 s, reset by the first event after a failure.
/// kube's default grows to 30 s, which after a short control-plane outage would leave a
/// joining node waiting far longer than the outage itself.
#[derive(Debug, Clone)]
pub struct WatchBackoff {
    next: std::time::Duration,
}

impl WatchBackoff {
    const FIRST: std::time::Duration = std::time::Duration::from_millis(250);
    const MAX: std::time::Duration = std::time::Duration::from_secs(5);
}

impl Default for WatchBackoff {
    fn default() -> Self {
        WatchBackoff { next: Self::FIRST }
    }
}

impl Iterator for WatchBackoff {
    type Item = std::time::Duration;

    fn next(&mut self) -> Option<Self::Item> {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        Some(delay)
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

/// Which CSRs to reconcile because something they depend on changed.
pub type Trigger = UnboundedSender<ObjectRef<CertificateSigningRequest>>;

fn fire(trigger: &Trigger, names: Vec<String>) {
    for name in names {
        // A closed channel means the controller is shutting down.
        let _ = trigger.unbounded_send(ObjectRef::new(&name));
    }
}

/// Applies a watch stream's events to the cache. `apply`/`delete` update one object and
/// return the node names the change concerns; `replace` swaps in a fresh list.
async fn drive<K, S>(
    kind: &'static str,
    stream: S,
    tracker: Arc<SyncTracker>,
    mut apply: impl FnMut(&K) -> Vec<String>,
    mut delete: impl FnMut(&K) -> Vec<String>,
    mut replace: impl FnMut(Vec<K>),
    mut after_change: impl FnMut(Vec<String>),
) where
    K: Debug,
    S: Stream<Item = Result<Event<K>, watcher::Error>>,
{
    let mut stream = std::pin::pin!(stream);
    let mut relist: Vec<K> = Vec::new();
    let mut synced = false;
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Apply(object)) => after_change(apply(&object)),
            Ok(Event::Delete(object)) => after_change(delete(&object)),
            Ok(Event::Init) => relist.clear(),
            Ok(Event::InitApply(object)) => relist.push(object),
            Ok(Event::InitDone) => {
                replace(std::mem::take(&mut relist));
                if !synced {
                    synced = true;
                    tracker.done();
                    tracing::info!(kind, "watch synced");
                }
            }
            Err(error) => tracing::warn!(kind, %error, "watch error; retrying with backoff"),
        }
    }
}

/// Watches Nodes into the cache.
pub async fn watch_nodes(
    client: Client,
    cache: Arc<ClusterCache>,
    trigger: Trigger,
    tracker: Arc<SyncTracker>,
) {
    let stream = watcher(Api::<Node>::all(client), watcher::Config::default())
        .backoff(WatchBackoff::default())
        .modify(|node: &mut Node| node.managed_fields_mut().clear());
    let (c1, c2, c3) = (cache.clone(), cache.clone(), cache.clone());
    drive(
        "Node",
        stream,
        tracker,
        |node| {
            let Some(info) = NodeInfo::from_node(node) else {
                return Vec::new();
            };
            let name = info.name.clone();
            c1.write().upsert_node(info);
            vec![name]
        },
        |node| {
            let Some(info) = NodeInfo::from_node(node) else {
                return Vec::new();
            };
            c2.write().remove_node(&info.name);
            vec![info.name]
        },
        |nodes| {
            c3.write()
                .replace_nodes(nodes.iter().filter_map(NodeInfo::from_node))
        },
        |names| fire(&trigger, cache.pending_for(&names)),
    )
    .await;
}

fn watcher<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>>
where
    K: Resource + Clone + Debug + Send + serde::de::DeserializeOwned + 'static,
{
    watcher::watcher(api, config)
}

/// The node names a Machine concerns: the hosts it names and the Node it is linked to.
fn machine_nodes(machine: &MachineInfo) -> Vec<String> {
    let mut names: Vec<String> = machine
        .addresses
        .iter()
        .filter(|a| matches!(a.kind.as_str(), "Hostname" | "InternalDNS"))
        .map(|a| a.value.to_string())
        .collect();
    names.extend(machine.node_ref.clone());
    names
}

fn machine_info(object: &DynamicObject, resource: &ApiResource) -> Option<MachineInfo> {
    let mut value = serde_json::to_value(object).ok()?;
    if value.get("apiVersion").is_none() {
        value["apiVersion"] = serde_json::Value::String(resource.api_version.clone());
    }
    MachineInfo::from_json(&value)
}

/// Watches one Machine API (OpenShift or Cluster API) into the cache.
pub async fn watch_machines(
    client: Client,
    resource: ApiResource,
    cache: Arc<ClusterCache>,
    trigger: Trigger,
    tracker: Arc<SyncTracker>,
) {
    let api: Api<DynamicObject> = Api::all_with(client, &resource);
    let stream = watcher::watcher(api, watcher::Config::default())
        .backoff(WatchBackoff::default())
        .modify(|m: &mut DynamicObject| m.managed_fields_mut().clear());
    let group = resource.group.clone();
    let (c1, c2, c3) = (cache.clone(), cache.clone(), cache.clone());
    let (r1, r2, r3) = (resource.clone(), resource.clone(), resource.clone());
    drive(
        "Machine",
        stream,
        tracker,
        move |object| {
            let Some(info) = machine_info(object, &r1) else {
                return Vec::new();
            };
            let nodes = machine_nodes(&info);
            c1.write().upsert_machine(info);
            nodes
        },
        move |object| {
            let Some(info) = machine_info(object, &r2) else {
                return Vec::new();
            };
            c2.write().remove_machine(&info.key());
            machine_nodes(&info)
        },
        move |objects| {
            let infos: Vec<MachineInfo> = objects
                .iter()
                .filter_map(|o| machine_info(o, &r3))
                .collect();
            c3.write().replace_machines(&group, infos);
        },
        |names| fire(&trigger, cache.pending_for(&names)),
    )
    .await;
}

/// The Machine APIs installed in the cluster, found by discovery. A missing CRD is
/// skipped: bare-metal clusters without a machine API rely on the policy inventory.
pub async fn discover_machine_apis(client: &Client) -> Vec<ApiResource> {
    let mut found = Vec::new();
    for group in [OPENSHIFT_MACHINE_GROUP, CLUSTER_API_MACHINE_GROUP] {
        match kube::discovery::group(client, group).await {
            Ok(discovered) => match discovered.recommended_kind("Machine") {
                Some((resource, _)) => {
                    tracing::info!(group, version = %resource.version, "watching Machines");
                    found.push(resource);
                }
                None => tracing::info!(group, "API group has no Machine kind; skipped"),
            },
            Err(error) => tracing::info!(group, %error, "Machine API not installed; skipped"),
        }
    }
    found
}

/// Keeps the CSR summaries (duplicate and flood rules) current from the controller's own
/// CSR watch stream, and counts its first sync.
pub fn track_csrs<S>(
    stream: S,
    cache: Arc<ClusterCache>,
    tracker: Arc<SyncTracker>,
) -> impl Stream<Item = Result<Event<CertificateSigningRequest>, watcher::Error>>
where
    S: Stream<Item = Result<Event<CertificateSigningRequest>, watcher::Error>>,
{
    let mut relist = Vec::new();
    let mut synced = false;
    stream.inspect(move |event| match event {
        Ok(Event::Apply(csr)) => cache.write().upsert_csr(summarize(csr)),
        Ok(Event::Delete(csr)) => {
            if let Some(name) = csr.metadata.name.as_deref() {
                cache.write().remove_csr(name);
            }
        }
        Ok(Event::Init) => relist.clear(),
        Ok(Event::InitApply(csr)) => relist.push(summarize(csr)),
        Ok(Event::InitDone) => {
            cache.write().replace_csrs(std::mem::take(&mut relist));
            if !synced {
                synced = true;
                tracker.done();
                tracing::info!(kind = "CertificateSigningRequest", "watch synced");
            }
        }
        Err(_) => {}
    })
}
