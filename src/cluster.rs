//! The controller's view of the cluster: watches on Nodes, Machines and CSRs keep one
//! `Inventory` current (only the fields decisions read, so memory stays flat), and each
//! change names the pending CSRs it can unblock so they are reconciled at once.

use std::fmt::Debug;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use futures::channel::mpsc::UnboundedSender;
use futures::{Stream, StreamExt};
use jiff::Timestamp;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::{self, Event};

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
        self.write().set_csr_state(name, state, Timestamp::now());
    }

    /// Whether the cache knows the CSR as decided — possibly ahead of the reflector store,
    /// right after our own write.
    pub fn is_decided(&self, name: &str) -> bool {
        self.read()
            .csr_state(name)
            .is_some_and(|s| s != CsrState::Pending)
    }

    /// Names of every pending kubelet CSR.
    fn all_pending(&self) -> Vec<String> {
        self.read()
            .pending_since(Timestamp::MIN)
            .filter(|c| c.signer == CLIENT_SIGNER || c.signer == SERVING_SIGNER)
            .map(|c| c.name.clone())
            .collect()
    }

    /// Names of pending kubelet CSRs for any of `nodes`: what a change to them can unblock.
    fn pending_for(&self, nodes: &[String]) -> Vec<String> {
        let inventory = self.read();
        nodes
            .iter()
            .flat_map(|node| inventory.csrs_for_node(node))
            .filter(|c| c.state == CsrState::Pending)
            .filter(|c| c.signer == CLIENT_SIGNER || c.signer == SERVING_SIGNER)
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

/// Watch retry delays: 250 ms doubling to 2 s, reset by the first event after a failure.
/// kube's default grows to 30 s, which after a short control-plane outage would leave a
/// joining node waiting far longer than the outage itself.
#[derive(Debug, Clone)]
pub struct WatchBackoff {
    next: std::time::Duration,
}

impl WatchBackoff {
    const FIRST: std::time::Duration = std::time::Duration::from_millis(250);
    const MAX: std::time::Duration = std::time::Duration::from_secs(2);
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

/// What a watched kind contributes to the cache.
trait Cached: Debug + Sized {
    const KIND: &'static str;
    /// Stores one record; returns the node names the change concerns.
    fn apply(self, inventory: &mut Inventory) -> Vec<String>;
    fn delete(self, inventory: &mut Inventory) -> Vec<String>;
}

impl Cached for NodeInfo {
    const KIND: &'static str = "Node";
    fn apply(self, inventory: &mut Inventory) -> Vec<String> {
        let name = self.name.clone();
        inventory.upsert_node(self);
        vec![name]
    }
    fn delete(self, inventory: &mut Inventory) -> Vec<String> {
        inventory.remove_node(&self.name);
        vec![self.name]
    }
}

impl Cached for MachineInfo {
    const KIND: &'static str = "Machine";
    fn apply(self, inventory: &mut Inventory) -> Vec<String> {
        let nodes = self.node_names().collect();
        inventory.upsert_machine(self);
        nodes
    }
    fn delete(self, inventory: &mut Inventory) -> Vec<String> {
        inventory.remove_machine(&self.key());
        self.node_names().collect()
    }
}

/// Applies a compact watch stream to the cache and triggers the pending CSRs each change
/// concerns. `replace` swaps in the records of a (re-)list.
async fn drive<I, S>(
    stream: S,
    replace: impl Fn(Vec<I>, &mut Inventory),
    cache: Arc<ClusterCache>,
    trigger: Trigger,
    tracker: Arc<SyncTracker>,
) where
    I: Cached,
    S: Stream<Item = Result<Event<I>, watcher::Error>>,
{
    let mut stream = std::pin::pin!(stream);
    let mut relist: Vec<I> = Vec::new();
    let mut synced = false;
    while let Some(event) = stream.next().await {
        let changed = match event {
            Ok(Event::Apply(record)) => record.apply(&mut cache.write()),
            Ok(Event::Delete(record)) => record.delete(&mut cache.write()),
            Ok(Event::Init) => {
                relist.clear();
                continue;
            }
            Ok(Event::InitApply(record)) => {
                relist.push(record);
                continue;
            }
            Ok(Event::InitDone) => {
                replace(std::mem::take(&mut relist), &mut cache.write());
                if !synced {
                    synced = true;
                    tracker.done();
                    tracing::info!(kind = I::KIND, "watch synced");
                }
                // A re-list (after an outage) may bring any change at all: look again at
                // everything still pending rather than wait for its requeue.
                fire(&trigger, cache.all_pending());
                continue;
            }
            Err(error) => {
                tracing::warn!(kind = I::KIND, %error, "watch error; retrying with backoff");
                continue;
            }
        };
        fire(&trigger, cache.pending_for(&changed));
    }
}

/// Watches Nodes into the cache.
pub async fn watch_nodes(
    client: Client,
    cache: Arc<ClusterCache>,
    trigger: Trigger,
    tracker: Arc<SyncTracker>,
) {
    let stream = watcher::watcher(Api::<Node>::all(client), watcher::Config::default())
        .backoff(WatchBackoff::default())
        .filter_map(
            |event| async move { event.map(|e| compact(e, NodeInfo::from_node)).transpose() },
        );
    drive(
        stream,
        |nodes, inventory| inventory.replace_nodes(nodes),
        cache,
        trigger,
        tracker,
    )
    .await;
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
    let group = resource.group.clone();
    let stream = watcher::watcher(api, watcher::Config::default())
        .backoff(WatchBackoff::default())
        .filter_map(move |event| {
            let resource = resource.clone();
            async move {
                event
                    .map(|e| compact(e, |m| machine_info(m, &resource)))
                    .transpose()
            }
        });
    // One watch per API group: a re-list replaces only that group's Machines.
    let replace =
        move |machines, inventory: &mut Inventory| inventory.replace_machines(&group, machines);
    drive(stream, replace, cache, trigger, tracker).await;
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
