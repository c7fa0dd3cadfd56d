//! APIs followed through their CRDs for as long as the controller runs: one watch per CRD
//! (by name), which starts the watch of what the CRD serves when it appears and stops it,
//! forgetting what it recorded, when the CRD goes. The Machine APIs here; OpenShift's
//! Infrastructure in `endpoints`.
//!
//! Asked once at start-up, a Machine API installed later (`clusterctl init` after
//! csr-approver) stayed unseen, and its Machines' evidence against a request (a Machine
//! already linked to the node) with it: a fail-open. Now the new API is a new source for
//! readiness, and nothing is decided until its Machines have listed.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, ApiResource};
use kube::core::Version;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::task::JoinHandle;

use super::wire::WatchedCrd;
use super::{ClusterCache, Trigger, WatchBackoff, fire, watch_config, watch_machines};
use crate::http::{Readiness, Source};
use crate::policy::{CLUSTER_API_MACHINE_GROUP, OPENSHIFT_MACHINE_GROUP};

/// Every Machine API csr-approver reads, whether the policy trusts it or not: an untrusted
/// Machine still claims its addresses (a conflict to report), and a policy may trust the
/// group at any moment.
pub const MACHINE_API_GROUPS: [&str; 2] = [OPENSHIFT_MACHINE_GROUP, CLUSTER_API_MACHINE_GROUP];

/// The CRD that installs the Machines of `group`.
pub fn machine_crd_name(group: &str) -> String {
    format!("machines.{group}")
}

/// The readiness source of the CRD watch of `group`.
pub fn machine_crd_source(group: &str) -> String {
    format!("CustomResourceDefinition {}", machine_crd_name(group))
}

/// The readiness source of the Machine watch of `resource`.
pub fn machines_source(resource: &ApiResource) -> String {
    format!("Machines {}", resource.api_version)
}

/// The Machine resource a CRD serves: its kind must be `Machine`; the version is the one
/// the API server prefers (the highest by Kubernetes version priority among those served).
pub fn machine_resource(crd: &CustomResourceDefinition) -> Option<ApiResource> {
    if crd.spec.names.kind != "Machine" {
        return None;
    }
    served_resource(crd)
}

/// The resource a CRD serves, at the version the API server prefers (the highest by
/// Kubernetes version priority among those served).
pub(super) fn served_resource(crd: &CustomResourceDefinition) -> Option<ApiResource> {
    let spec = &crd.spec;
    let version = spec
        .versions
        .iter()
        .filter(|v| v.served)
        .max_by_key(|v| Version::parse(&v.name).priority())?;
    Some(ApiResource {
        group: spec.group.clone(),
        version: version.name.clone(),
        api_version: format!("{}/{}", spec.group, version.name),
        kind: spec.names.kind.clone(),
        plural: spec.names.plural.clone(),
    })
}

/// An API that exists while its CRD does: what csr-approver watches of it, and what it
/// forgets when the CRD goes.
pub(super) trait GatedApi: Send {
    /// What `crd` serves that csr-approver watches, if anything.
    fn resource(&self, crd: &CustomResourceDefinition) -> Option<ApiResource>;
    /// Starts the watch of `resource`. Its readiness source is registered before this
    /// returns: from then on nothing is decided until it has listed.
    fn start(&self, resource: ApiResource) -> JoinHandle<()>;
    /// The API is gone: forget what its watch recorded.
    fn forget(&self);
}

/// The watch of a gated API while its CRD exists.
struct Running {
    resource: ApiResource,
    task: JoinHandle<()>,
}

/// Follows one CRD: starts, restarts (another version) and stops the watch it gates.
struct Follower<A: GatedApi> {
    api: A,
    running: Option<Running>,
}

impl<A: GatedApi> Follower<A> {
    /// The CRD as it is now (or gone: `None`): watch what it serves, or nothing.
    async fn follow(&mut self, crd: Option<&CustomResourceDefinition>) {
        let wanted = crd.and_then(|crd| self.api.resource(crd));
        if self.running.as_ref().map(|r| &r.resource) == wanted.as_ref() {
            return;
        }
        // The new watch (if any) is registered before the old one goes, so readiness never
        // sees a moment with neither.
        let started = wanted.map(|resource| Running {
            task: self.api.start(resource.clone()),
            resource,
        });
        let stopped = self.stop().await;
        if stopped && started.is_none() {
            self.api.forget();
        }
        self.running = started;
    }

    /// Stops the running watch, if one runs; says whether one did.
    async fn stop(&mut self) -> bool {
        let Some(running) = self.running.take() else {
            return false;
        };
        running.task.abort();
        // Wait until it is dropped (its readiness source with it): no event of the old
        // watch may land after what it recorded is forgotten.
        let _ = running.task.await;
        true
    }
}

/// Watches CRD `crd_name` (by name: RBAC grants only the CRDs csr-approver reads) and
/// keeps the watch it gates running while it exists. `source` is this CRD watch's own:
/// until it has listed, nobody knows whether the API is installed.
pub(super) async fn follow_crd<A: GatedApi>(
    client: Client,
    crd_name: String,
    api: A,
    source: Source,
) {
    let crds: Api<WatchedCrd> = Api::all(client);
    let config = watch_config().fields(&format!("metadata.name={crd_name}"));
    let mut stream =
        std::pin::pin!(watcher::watcher(crds, config).backoff(WatchBackoff::default()));
    let mut follower = Follower { api, running: None };
    let mut synced = false;
    // The CRD as the (re-)list in progress shows it.
    let mut listed: Option<WatchedCrd> = None;
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Apply(crd)) => follower.follow(Some(&crd.0)).await,
            Ok(Event::Delete(_)) => follower.follow(None).await,
            Ok(Event::Init) => listed = None,
            Ok(Event::InitApply(crd)) => listed = Some(crd),
            Ok(Event::InitDone) => {
                follower
                    .follow(listed.take().as_ref().map(|crd| &crd.0))
                    .await;
                if !synced && follower.running.is_none() {
                    tracing::info!(crd = %crd_name, "not installed; watching for it");
                }
                synced = true;
                source.synced();
            }
            Err(error) => {
                tracing::warn!(crd = %crd_name, %error, "CRD watch error; retrying with backoff");
                if !synced {
                    source.list_failed(&error);
                }
            }
        }
    }
}

/// One Machine API group: its Machines are watched while its CRD exists.
struct MachineApi {
    group: &'static str,
    client: Client,
    cache: Arc<ClusterCache>,
    trigger: Trigger,
    readiness: Arc<Readiness>,
}

impl GatedApi for MachineApi {
    fn resource(&self, crd: &CustomResourceDefinition) -> Option<ApiResource> {
        machine_resource(crd)
    }

    fn start(&self, resource: ApiResource) -> JoinHandle<()> {
        let source: Source = self.readiness.source(machines_source(&resource));
        tracing::info!(group = self.group, version = %resource.version, "Machine API installed; watching its Machines");
        tokio::spawn(watch_machines(
            self.client.clone(),
            resource,
            self.cache.clone(),
            self.trigger.clone(),
            source,
        ))
    }

    /// A CRD deleted takes its Machines with it (the API server deletes them first), so
    /// they are truly gone: an admin's act, like deleting every Machine.
    fn forget(&self) {
        let forgotten = {
            let inventory = &mut self.cache.write().inventory;
            let forgotten = inventory
                .machines()
                .filter(|m| *m.api_group == *self.group)
                .count();
            inventory.replace_machines(self.group, Vec::new());
            forgotten
        };
        tracing::info!(
            group = self.group,
            machines = forgotten,
            "Machine API removed; its Machines are forgotten"
        );
        fire(&self.trigger, self.cache.all_pending());
    }
}

/// Watches the Machine CRD of `group` and that group's Machines while it exists.
pub async fn watch_machine_api(
    client: Client,
    group: &'static str,
    cache: Arc<ClusterCache>,
    trigger: Trigger,
    readiness: Arc<Readiness>,
    source: Source,
) {
    let api = MachineApi {
        group,
        client: client.clone(),
        cache,
        trigger,
        readiness,
    };
    follow_crd(client, machine_crd_name(group), api, source).await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use super::*;

    fn crd(kind: &str, versions: &[(&str, bool)]) -> CustomResourceDefinition {
        let versions: Vec<_> = versions
            .iter()
            .map(|(name, served)| serde_json::json!({"name": name, "served": served, "storage": false, "schema": {"openAPIV3Schema": {"type": "object"}}}))
            .collect();
        let object = serde_json::json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "machines.cluster.x-k8s.io"},
            "spec": {"group": "cluster.x-k8s.io", "scope": "Namespaced",
                "names": {"kind": kind, "plural": "machines", "listKind": "MachineList"},
                "versions": versions}
        });
        serde_json::from_value::<WatchedCrd>(object).unwrap().0
    }

    #[test]
    fn the_preferred_served_version_is_watched() {
        let resource = machine_resource(&crd(
            "Machine",
            &[("v1alpha4", true), ("v1beta1", true), ("v1beta2", false)],
        ))
        .unwrap();
        assert_eq!(resource.api_version, "cluster.x-k8s.io/v1beta1");
        assert_eq!(resource.plural, "machines");
        assert_eq!(
            machines_source(&resource),
            "Machines cluster.x-k8s.io/v1beta1"
        );
        let ga = machine_resource(&crd("Machine", &[("v1beta2", true), ("v1", true)])).unwrap();
        assert_eq!(ga.version, "v1");
    }

    #[test]
    fn a_crd_serving_no_version_or_another_kind_is_no_machine_api() {
        assert!(machine_resource(&crd("Machine", &[("v1beta1", false)])).is_none());
        assert!(machine_resource(&crd("MachineSet", &[("v1beta1", true)])).is_none());
    }
}
