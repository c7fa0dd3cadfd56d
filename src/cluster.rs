//! The controller's view of the cluster: watches on Nodes, Machines and CSRs keep one
//! `Inventory` current (only the fields decisions read, so memory stays flat), and each
//! change names the pending CSRs it can unblock so they are reconciled at once.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::net::IpAddr;
use std::ops::Deref;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use futures::channel::mpsc::UnboundedSender;
use futures::{Stream, StreamExt};
use jiff::Timestamp;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{Node, Service};
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::{self, Event};

use crate::decision::{CLIENT_SIGNER, SERVING_SIGNER};
use crate::gather::Reading;
use crate::inventory::{CsrState, CsrSummary, Inventory, MachineInfo, NodeInfo};
use crate::policy::{CLUSTER_API_MACHINE_GROUP, OPENSHIFT_MACHINE_GROUP};

/// The inventory shared by the watches (writers) and reconciles (readers).
#[derive(Debug, Default)]
pub struct ClusterCache {
    state: RwLock<CacheState>,
}

/// The inventory and the verdicts we wrote, under one lock: a watch event cannot slip
/// between looking up our verdict and overwriting the CSR's state.
#[derive(Debug, Default)]
struct CacheState {
    inventory: Inventory,
    /// Verdicts we wrote that the CSR watch has not shown yet, by CSR name. An event or a
    /// re-list older than our write still shows the CSR pending; without this the cache
    /// would go back in time and the CSR would be judged again.
    written: HashMap<String, OwnVerdict>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct OwnVerdict {
    /// The CSR we decided: a CSR re-created under the same name is another request.
    uid: Option<String>,
    state: CsrState,
    /// When we wrote it.
    at: Timestamp,
}

impl CacheState {
    /// Whether our verdict still stands over what the watch shows for CSR `name` with
    /// `uid` in `state`; forgets it once it no longer does.
    fn own_verdict(
        &mut self,
        name: &str,
        uid: Option<&str>,
        state: CsrState,
    ) -> Option<OwnVerdict> {
        let own = self.written.get(name)?;
        if own.uid.as_deref() == uid && state == CsrState::Pending {
            return Some(own.clone());
        }
        // Either the watch has caught up with a decision (ours or not) and is authoritative
        // again, or the CSR was deleted and re-created: our verdict was about another one.
        self.written.remove(name);
        None
    }

    /// Stores what the CSR watch says about one CSR, keeping our own verdict over an
    /// older view that still shows it pending.
    fn observe_csr(&mut self, uid: Option<&str>, summary: CsrSummary) {
        let own = self.own_verdict(&summary.name, uid, summary.state);
        let name = summary.name.clone();
        self.inventory.upsert_csr(summary);
        if let Some(own) = own {
            self.inventory.set_csr_state(&name, own.state, own.at);
        }
    }

    fn forget_csr(&mut self, name: &str) {
        self.written.remove(name);
        self.inventory.remove_csr(name);
    }

    /// Replaces every CSR, as after a (re-)list; `listed` pairs each summary with its uid.
    fn replace_csrs(&mut self, listed: Vec<(Option<String>, CsrSummary)>) {
        // A CSR missing from a list taken after our write was deleted meanwhile.
        let names: HashSet<&str> = listed.iter().map(|(_, c)| c.name.as_str()).collect();
        self.written.retain(|name, _| names.contains(name.as_str()));
        let mut kept = Vec::new();
        let mut summaries = Vec::with_capacity(listed.len());
        for (uid, summary) in listed {
            if let Some(own) = self.own_verdict(&summary.name, uid.as_deref(), summary.state) {
                kept.push((summary.name.clone(), own));
            }
            summaries.push(summary);
        }
        self.inventory.replace_csrs(summaries);
        for (name, own) in kept {
            self.inventory.set_csr_state(&name, own.state, own.at);
        }
    }
}

/// Read access to the inventory.
pub struct InventoryGuard<'a>(RwLockReadGuard<'a, CacheState>);

impl Deref for InventoryGuard<'_> {
    type Target = Inventory;

    fn deref(&self) -> &Inventory {
        &self.0.inventory
    }
}

impl ClusterCache {
    pub fn read(&self) -> InventoryGuard<'_> {
        InventoryGuard(
            self.state
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    fn write(&self) -> RwLockWriteGuard<'_, CacheState> {
        self.state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records a verdict we wrote before its watch event arrives, so the duplicate and
    /// flood rules see it at once, and no older event or re-list can make it pending again.
    pub fn mark_decided(&self, name: &str, uid: Option<&str>, state: CsrState) {
        let at = Timestamp::now();
        let mut cache = self.write();
        cache.written.insert(
            name.to_string(),
            OwnVerdict {
                uid: uid.map(str::to_string),
                state,
                at,
            },
        );
        cache.inventory.set_csr_state(name, state, at);
    }

    /// Records evidence read on demand (`gather`).
    pub fn record(&self, reading: Reading) {
        reading.record(self.write().inventory.observations_mut());
    }

    /// Whether CSR `name` (with `uid`) is decided: by our own write (possibly ahead of the
    /// watch and of the reflector store) or as the watch last showed it.
    pub fn is_decided(&self, name: &str, uid: Option<&str>) -> bool {
        let cache = self.state.read().unwrap_or_else(|p| p.into_inner());
        match cache.written.get(name) {
            Some(own) if own.uid.as_deref() == uid => true,
            _ => cache
                .inventory
                .csr_state(name)
                .is_some_and(|s| s != CsrState::Pending),
        }
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

/// How every watch a decision reads lists: quorum reads (`MostRecent`, also kube's default,
/// spelled out because it matters). A first list or a re-list is then never older than
/// what this replica has already seen or written; `Any` would be served from the
/// apiserver's watch cache, which may lag behind (a Node missing, a CSR still pending).
pub fn watch_config() -> watcher::Config {
    watcher::Config::default().list_semantic(watcher::ListSemantic::MostRecent)
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

/// Which pending CSRs a change to the cache can unblock.
#[derive(Debug, PartialEq, Eq)]
enum Concerns {
    /// Those of these nodes.
    Nodes(Vec<String>),
    /// Any of them.
    Everything,
}

/// What a watched kind contributes to the cache.
trait Cached: Debug + Sized {
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
        Concerns::Nodes(vec![name])
    }
    fn delete(self, inventory: &mut Inventory) -> Concerns {
        inventory.remove_node(&self.name);
        Concerns::Nodes(vec![self.name])
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

/// The ClusterIP(s) of the Service `default/kubernetes`: the API server's in-cluster
/// address, which no node may claim as its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesService {
    pub cluster_ips: Vec<IpAddr>,
}

impl KubernetesService {
    pub const NAMESPACE: &'static str = "default";
    pub const NAME: &'static str = "kubernetes";

    /// `spec.clusterIPs` (dual-stack), else `spec.clusterIP`; `None` (headless) and
    /// unparsable values are not addresses.
    pub fn from_service(service: &Service) -> KubernetesService {
        let spec = service.spec.as_ref();
        let listed = spec
            .and_then(|s| s.cluster_ips.clone())
            .filter(|ips| !ips.is_empty());
        let raw = listed.unwrap_or_else(|| {
            spec.and_then(|s| s.cluster_ip.clone())
                .into_iter()
                .collect()
        });
        KubernetesService {
            cluster_ips: raw
                .iter()
                .filter_map(|ip| IpAddr::from_str(ip.trim()).ok())
                .collect(),
        }
    }

    /// Records `ips`; a change concerns every pending serving CSR.
    fn set(inventory: &mut Inventory, ips: Vec<IpAddr>) -> Concerns {
        let before = inventory.kubernetes_service_ips().to_vec();
        inventory.set_kubernetes_service_ips(ips);
        if inventory.kubernetes_service_ips() == before.as_slice() {
            Concerns::Nodes(Vec::new())
        } else {
            Concerns::Everything
        }
    }
}

impl Cached for KubernetesService {
    const KIND: &'static str = "Service default/kubernetes";
    fn apply(self, inventory: &mut Inventory) -> Concerns {
        KubernetesService::set(inventory, self.cluster_ips)
    }
    fn delete(self, inventory: &mut Inventory) -> Concerns {
        KubernetesService::set(inventory, Vec::new())
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
                if !synced {
                    synced = true;
                    tracker.done();
                    tracing::info!(kind = I::KIND, "watch synced");
                }
                // A re-list (after an outage) may bring any change at all: look again at
                // everything still pending rather than wait for its requeue.
                Concerns::Everything
            }
            Err(error) => {
                tracing::warn!(kind = I::KIND, %error, "watch error; retrying with backoff");
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
    tracker: Arc<SyncTracker>,
) {
    let stream = watcher::watcher(Api::<Node>::all(client), watch_config())
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

/// Watches the Service `default/kubernetes` (by name: RBAC grants only that one) into the
/// cache. It counts for readiness like any other watch: an absent Service lists as none.
pub async fn watch_kubernetes_service(
    client: Client,
    cache: Arc<ClusterCache>,
    trigger: Trigger,
    tracker: Arc<SyncTracker>,
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
    drive(stream, replace, cache, trigger, tracker).await;
}

/// A CSR as the duplicate and flood rules see it.
fn summarize(csr: &CertificateSigningRequest) -> CsrSummary {
    crate::facts::csr_summary(&crate::facts::csr_facts(csr))
}

fn machine_info(object: &DynamicObject, resource: &ApiResource) -> Option<MachineInfo> {
    crate::facts::machine_info_from_object(object, resource)
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
    let stream = watcher::watcher(api, watch_config())
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

/// Why Machine API discovery gave no definitive answer.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error(
        "the API server lists no {group} group but is not ready ({readyz}): a starting API server may not list every installed group yet"
    )]
    NotReady { group: &'static str, readyz: String },
}

/// The Machine APIs installed in the cluster, found by discovery. A group the API server
/// does not list is skipped: bare-metal clusters without a machine API rely on the policy
/// inventory. But "not installed" is believed only from an API server that says it is
/// ready (a starting one may list its custom resource groups late), and any other failure
/// (unreachable, 5xx, 403) is an error: taking either for "not installed" would silently
/// drop every Machine's evidence.
pub async fn discover_machine_apis(client: &Client) -> Result<Vec<ApiResource>, DiscoveryError> {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for group in [OPENSHIFT_MACHINE_GROUP, CLUSTER_API_MACHINE_GROUP] {
        match kube::discovery::group(client, group).await {
            Ok(discovered) => match discovered.recommended_kind("Machine") {
                Some((resource, _)) => {
                    tracing::info!(group, version = %resource.version, "watching Machines");
                    found.push(resource);
                }
                None => tracing::info!(group, "API group has no Machine kind; skipped"),
            },
            Err(kube::Error::Discovery(kube::error::DiscoveryError::MissingApiGroup(_))) => {
                missing.push(group);
            }
            Err(error) => return Err(error.into()),
        }
    }
    if let Some(&group) = missing.first() {
        api_server_ready(client)
            .await
            .map_err(|readyz| DiscoveryError::NotReady { group, readyz })?;
        for group in missing {
            tracing::info!(group, "Machine API not installed; skipped");
        }
    }
    Ok(found)
}

/// Whether the API server's `/readyz` says `ok` (readable by every authenticated user
/// through `system:public-info-viewer`). Where a cluster forbids it, there is nothing more
/// to ask: discovery's answer stands.
async fn api_server_ready(client: &Client) -> Result<(), String> {
    let request = axum::http::Request::get("/readyz")
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    match client.request_text(request).await {
        Ok(body) if body.trim() == "ok" => Ok(()),
        Ok(body) => Err(format!("/readyz: {}", body.trim())),
        Err(kube::Error::Api(status)) if status.code == 401 || status.code == 403 => {
            tracing::debug!(
                code = status.code,
                "/readyz is forbidden; trusting discovery"
            );
            Ok(())
        }
        Err(error) => Err(format!("/readyz: {error}")),
    }
}

/// How long one discovery may take: the client has no read timeout, and an API server
/// that accepts connections but does not answer would otherwise hold start-up forever.
const DISCOVERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// [`discover_machine_apis`] until the API server answers it, retried with the watches'
/// backoff (capped at 2 s): at start-up the control plane may be restarting.
pub async fn discover_machine_apis_until_answered(client: &Client) -> Vec<ApiResource> {
    use kube::runtime::utils::Backoff;
    let mut backoff = WatchBackoff::default();
    let mut failures = 0u32;
    loop {
        let error =
            match tokio::time::timeout(DISCOVERY_TIMEOUT, discover_machine_apis(client)).await {
                Ok(Ok(found)) => {
                    if failures > 0 {
                        tracing::info!(failures, "Machine API discovery answered");
                    }
                    backoff.reset();
                    return found;
                }
                Ok(Err(error)) => error.to_string(),
                Err(_) => format!("no answer within {DISCOVERY_TIMEOUT:?}"),
            };
        failures += 1;
        let delay = backoff.next().unwrap_or(WatchBackoff::MAX);
        // Once, then every minute or so: the outage may last.
        if failures == 1 || failures.is_multiple_of(30) {
            tracing::warn!(%error, failures, retry_in = ?delay, "Machine API discovery failed; not ready until the API server answers it");
        } else {
            tracing::debug!(%error, failures, retry_in = ?delay, "Machine API discovery failed");
        }
        tokio::time::sleep(delay).await;
    }
}

/// Keeps the CSR summaries (duplicate and flood rules) current from the controller's own
/// CSR watch stream, and counts its first sync.
pub fn track_csrs<S>(
    stream: S,
    cache: Arc<ClusterCache>,
    trigger: Trigger,
    tracker: Arc<SyncTracker>,
) -> impl Stream<Item = Result<Event<CertificateSigningRequest>, watcher::Error>>
where
    S: Stream<Item = Result<Event<CertificateSigningRequest>, watcher::Error>>,
{
    let mut relist = Vec::new();
    let mut synced = false;
    stream.inspect(move |event| match event {
        Ok(Event::Apply(csr)) => cache
            .write()
            .observe_csr(csr.metadata.uid.as_deref(), summarize(csr)),
        Ok(Event::Delete(csr)) => {
            if let Some(name) = csr.metadata.name.as_deref() {
                // Its node, as summarised when it arrived: no second parse of the request.
                let node = cache.read().csr_node(name).map(str::to_string);
                cache.write().forget_csr(name);
                // A deleted client CSR may be what held its node's next one back (one
                // identity per host generation: an admin deletes the earlier CSR of a
                // re-provisioned host): look again at once rather than at the next requeue.
                if let Some(node) = node {
                    fire(&trigger, cache.pending_for(&[node]));
                }
            }
        }
        Ok(Event::Init) => relist.clear(),
        Ok(Event::InitApply(csr)) => relist.push((csr.metadata.uid.clone(), summarize(csr))),
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use super::*;

    /// A CSR as the watch shows it: `approved` adds the Approved condition.
    fn csr(name: &str, uid: &str, approved: bool) -> CertificateSigningRequest {
        let conditions = if approved {
            serde_json::json!([{"type": "Approved", "status": "True"}])
        } else {
            serde_json::json!([])
        };
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "uid": uid, "resourceVersion": "1"},
            "spec": {
                "request": "",
                "signerName": CLIENT_SIGNER,
                "usages": ["digital signature", "client auth"]
            },
            "status": {"conditions": conditions}
        }))
        .unwrap()
    }

    fn observe(cache: &ClusterCache, csr: &CertificateSigningRequest) {
        cache
            .write()
            .observe_csr(csr.metadata.uid.as_deref(), summarize(csr));
    }

    fn relist(cache: &ClusterCache, csrs: &[CertificateSigningRequest]) {
        let listed = csrs
            .iter()
            .map(|c| (c.metadata.uid.clone(), summarize(c)))
            .collect();
        cache.write().replace_csrs(listed);
    }

    #[test]
    fn our_verdict_survives_older_events_and_relists() {
        let cache = ClusterCache::default();
        let pending = csr("a", "uid-a", false);
        observe(&cache, &pending);
        assert!(!cache.is_decided("a", Some("uid-a")));

        cache.mark_decided("a", Some("uid-a"), CsrState::Approved);
        assert!(cache.is_decided("a", Some("uid-a")));
        // A watch event sent before our write landed.
        observe(&cache, &pending);
        assert!(cache.is_decided("a", Some("uid-a")));
        assert_eq!(cache.read().csr_state("a"), Some(CsrState::Approved));
        // A re-list taken before our write landed.
        relist(&cache, std::slice::from_ref(&pending));
        assert!(cache.is_decided("a", Some("uid-a")));
        assert_eq!(cache.read().csr_state("a"), Some(CsrState::Approved));
        assert_eq!(cache.read().pending_since(jiff::Timestamp::MIN).count(), 0);

        // The watch catches up: from now on it is the only source.
        observe(&cache, &csr("a", "uid-a", true));
        assert!(cache.write().written.is_empty());
        assert!(cache.is_decided("a", Some("uid-a")));
    }

    #[test]
    fn a_csr_recreated_under_the_same_name_is_a_new_request() {
        let cache = ClusterCache::default();
        observe(&cache, &csr("a", "uid-1", false));
        cache.mark_decided("a", Some("uid-1"), CsrState::Denied);
        cache.write().forget_csr("a");
        assert!(!cache.is_decided("a", Some("uid-1")));

        cache.mark_decided("a", Some("uid-1"), CsrState::Denied);
        observe(&cache, &csr("a", "uid-2", false));
        assert!(!cache.is_decided("a", Some("uid-2")));
        assert_eq!(cache.read().csr_state("a"), Some(CsrState::Pending));
        assert!(cache.write().written.is_empty());

        cache.mark_decided("a", Some("uid-2"), CsrState::Approved);
        relist(&cache, &[csr("a", "uid-3", false)]);
        assert!(!cache.is_decided("a", Some("uid-3")));
        assert_eq!(cache.read().csr_state("a"), Some(CsrState::Pending));
    }

    #[test]
    fn a_relist_without_the_csr_forgets_our_verdict() {
        let cache = ClusterCache::default();
        observe(&cache, &csr("a", "uid-a", false));
        cache.mark_decided("a", Some("uid-a"), CsrState::Approved);
        relist(&cache, &[csr("b", "uid-b", false)]);
        assert!(cache.write().written.is_empty());
        assert!(!cache.is_decided("a", Some("uid-a")));
        assert_eq!(cache.read().csr_state("b"), Some(CsrState::Pending));
    }

    fn service(spec: serde_json::Value) -> Service {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "kubernetes", "namespace": "default"},
            "spec": spec
        }))
        .unwrap()
    }

    #[test]
    fn the_kubernetes_service_ips_are_read_from_the_spec() {
        let dual = service(serde_json::json!({
            "clusterIP": "10.0.0.1",
            "clusterIPs": ["10.0.0.1", "fd00:0:0:0::1"]
        }));
        assert_eq!(
            KubernetesService::from_service(&dual).cluster_ips,
            vec![
                IpAddr::from_str("10.0.0.1").unwrap(),
                IpAddr::from_str("fd00::1").unwrap()
            ]
        );
        let single = service(serde_json::json!({"clusterIP": "172.30.0.1"}));
        assert_eq!(
            KubernetesService::from_service(&single).cluster_ips,
            vec![IpAddr::from_str("172.30.0.1").unwrap()]
        );
        let headless = service(serde_json::json!({"clusterIP": "None"}));
        assert!(
            KubernetesService::from_service(&headless)
                .cluster_ips
                .is_empty()
        );
    }

    #[test]
    fn a_change_of_the_kubernetes_service_concerns_every_pending_csr() {
        let mut inventory = Inventory::default();
        let ip = IpAddr::from_str("10.0.0.1").unwrap();
        let service = KubernetesService {
            cluster_ips: vec![ip],
        };
        assert_eq!(service.clone().apply(&mut inventory), Concerns::Everything);
        assert_eq!(inventory.kubernetes_service_ips(), &[ip]);
        assert_eq!(
            service.clone().apply(&mut inventory),
            Concerns::Nodes(Vec::new())
        );
        assert_eq!(service.delete(&mut inventory), Concerns::Everything);
        assert!(inventory.kubernetes_service_ips().is_empty());
    }
}
