//! Sources are watched for as long as they exist, end to end on a real kube-apiserver: a
//! Machine API installed after the controller started is watched from then on, and no
//! decision that needs it is taken before its first list.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod builders;
mod harness;
mod scene;

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use scene::*;
use serde_json::json;

const DECISION_TIMEOUT: Duration = Duration::from_secs(15);

/// Trusts Cluster API Machines in `capi`, and lets any `w-<n>` join through the inventory
/// when no Machine speaks against it.
const CAPI_AND_PATTERN: &str = "machines:
  apiGroups: [cluster.x-k8s.io]
  namespaces: {cluster.x-k8s.io: [capi]}
inventory:
  - namePattern: 'w-[0-9]+'
";

/// A Cluster API Machine in `capi` whose `status.nodeRef` names `node`.
async fn create_linked_capi_machine(scene: &Scene, name: &str, node: &str) {
    let api: Api<DynamicObject> = Api::namespaced_with(
        scene.admin.clone(),
        "capi",
        &harness::capi_machine_resource(),
    );
    let mut machine = DynamicObject::new(name, &harness::capi_machine_resource());
    machine.data = json!({"spec": {"clusterName": "c"}});
    api.create(&PostParams::default(), &machine)
        .await
        .expect("create Machine");
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"nodeRef": {"kind": "Node", "name": node}}})),
    )
    .await
    .expect("Machine nodeRef");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_api_installed_after_start_is_watched_before_anything_it_protects_is_approved()
{
    let _serial = SERIAL.lock().await;
    let mut scene = Scene::new(SceneOptions {
        machine_crds: false,
        policy: Some(CAPI_AND_PATTERN),
    })
    .await;
    harness::ensure_namespace(&scene.admin, "capi").await;
    let c = scene.start_controller("replica-a", &[]);
    scene.wait_ready(c).await;

    // `clusterctl init` after csr-approver: the CRD, then a Machine whose Node is w-1.
    scene.cp.install_crd("machines.cluster.x-k8s.io").await;
    create_linked_capi_machine(&scene, "w-1-machine", "w-1").await;
    // A bootstrapper asks for w-1, which the inventory pattern alone would let join.
    scene.join_request("w-1-client", "w-1").await;

    let refused = wait_for(DECISION_TIMEOUT, || async {
        let metrics = scene.metrics(c);
        (metric(
            &metrics,
            "csr_approver_decisions_total{reason=\"MachineAlreadyLinked\"",
        ) >= 1.0)
            .then_some(())
    })
    .await;
    assert_eq!(
        scene.condition("w-1-client").await,
        None,
        "a second identity for a host a Machine already links:\n{}",
        scene.controller_log(c)
    );
    assert!(
        refused.is_some(),
        "w-1-client never judged MachineAlreadyLinked:\n{}\n{}",
        scene.metrics(c),
        scene.controller_log(c)
    );
    let metrics = scene.metrics(c);
    assert_eq!(
        metric(
            &metrics,
            "csr_approver_source_synced{source=\"Machines cluster.x-k8s.io/v1beta1\"}"
        ),
        1.0,
        "{metrics}"
    );

    // The CRD removed (its Machines go with it): nothing is left to wait for.
    Api::<CustomResourceDefinition>::all(scene.admin.clone())
        .delete("machines.cluster.x-k8s.io", &DeleteParams::default())
        .await
        .expect("delete CRD");
    let gone = wait_for(DECISION_TIMEOUT, || async {
        let metrics = scene.metrics(c);
        (!metrics.contains("source=\"Machines cluster.x-k8s.io/v1beta1\"")).then_some(())
    })
    .await;
    assert!(gone.is_some(), "{}", scene.metrics(c));
    assert_eq!(scene.readyz(c), Some(200), "{}", scene.controller_log(c));
}
