//! Sources are watched for as long as they exist, end to end on a real kube-apiserver under
//! the shipped RBAC: a Machine API installed after the controller started is watched from
//! then on, and no decision that needs it is taken before its first list; the API server's
//! endpoints kubeadm records are reserved as soon as they are written.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod builders;
mod harness;
mod scene;

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
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
  - namePattern: '^w-[0-9]+$'
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
async fn a_machine_api_installed_after_start_is_watched_before_anything_it_protects_is_approved() {
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

/// A ConfigMap `namespace/name` with `key: text`, created or replaced.
async fn apply_config_map(scene: &Scene, namespace: &str, name: &str, key: &str, text: &str) {
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        data: Some([(key.to_string(), text.to_string())].into()),
        ..Default::default()
    };
    Api::<ConfigMap>::namespaced(scene.admin.clone(), namespace)
        .patch(name, &PatchParams::apply("e2e").force(), &Patch::Apply(&cm))
        .await
        .unwrap_or_else(|e| panic!("apply ConfigMap {namespace}/{name}: {e}"));
}

fn cluster_info(server: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: ''\n  cluster:\n    server: {server}\n"
    )
}

/// kubeadm's records of the API server's endpoint, read under the shipped RBAC: a worker
/// that writes the API VIP or the controlPlaneEndpoint name into its own Node status gets
/// neither certified; a cluster-info that cannot be read stops every decision until it can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_servers_endpoints_recorded_by_kubeadm_are_never_a_workers() {
    let _serial = SERIAL.lock().await;
    let mut scene = Scene::new(SceneOptions {
        machine_crds: false,
        policy: None,
    })
    .await;
    let c = scene.start_controller("replica-a", &[]);
    scene.wait_ready(c).await;

    // kubeadm init, after csr-approver started.
    apply_config_map(
        &scene,
        "kube-public",
        "cluster-info",
        "kubeconfig",
        &cluster_info("https://192.168.10.5:6443"),
    )
    .await;
    apply_config_map(
        &scene,
        "kube-system",
        "kubeadm-config",
        "ClusterConfiguration",
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\ncontrolPlaneEndpoint: k8s-api.corp.example:6443\n",
    )
    .await;
    // A worker that reports the VIP and the endpoint's name as its own.
    scene
        .register_node(
            "worker-7",
            &[
                ("InternalIP", "10.0.0.17"),
                ("InternalIP", "192.168.10.5"),
                ("InternalDNS", "k8s-api.corp.example"),
                ("Hostname", "worker-7"),
            ],
        )
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ask = |csr: &'static str, request: builders::Request| {
        let scene = &scene;
        async move {
            scene
                .create_csr(
                    &scene.node_client("worker-7"),
                    csr,
                    SERVING_SIGNER,
                    &["digital signature", "server auth"],
                    request.pem(),
                )
                .await;
        }
    };
    ask(
        "worker-7-vip",
        builders::Request::node("worker-7")
            .ip("10.0.0.17")
            .ip("192.168.10.5"),
    )
    .await;
    ask(
        "worker-7-endpoint-name",
        builders::Request::node("worker-7").dns("k8s-api.corp.example"),
    )
    .await;
    ask(
        "worker-7-own",
        builders::Request::node("worker-7")
            .dns("worker-7")
            .ip("10.0.0.17"),
    )
    .await;
    assert_eq!(
        scene
            .wait_condition("worker-7-own", DECISION_TIMEOUT)
            .await
            .as_deref(),
        Some("Approved"),
        "{}",
        scene.controller_log(c)
    );
    let refused = wait_for(DECISION_TIMEOUT, || async {
        let metrics = scene.metrics(c);
        (metric(
            &metrics,
            "csr_approver_decisions_total{reason=\"ReservedSan\"",
        ) >= 2.0)
            .then_some(())
    })
    .await;
    assert!(
        refused.is_some(),
        "{}\n{}",
        scene.metrics(c),
        scene.controller_log(c)
    );
    for csr in ["worker-7-vip", "worker-7-endpoint-name"] {
        assert_eq!(scene.condition(csr).await, None, "{csr}");
    }

    // A cluster-info that does not parse: nothing is decided, and /readyz says why.
    apply_config_map(
        &scene,
        "kube-public",
        "cluster-info",
        "kubeconfig",
        "clusters: {",
    )
    .await;
    let unready = wait_for(DECISION_TIMEOUT, || async {
        http_get(scene.controller_port(c), "/readyz").filter(|(code, body)| {
            *code == 503 && body.contains("ConfigMap kube-public/cluster-info")
        })
    })
    .await;
    assert!(unready.is_some(), "{}", scene.controller_log(c));
    let metrics = scene.metrics(c);
    assert_eq!(
        metric(
            &metrics,
            "csr_approver_source_synced{source=\"ConfigMap kube-public/cluster-info\"}"
        ),
        0.0,
        "{metrics}"
    );
    apply_config_map(
        &scene,
        "kube-public",
        "cluster-info",
        "kubeconfig",
        &cluster_info("https://192.168.10.5:6443"),
    )
    .await;
    scene.wait_ready(c).await;
}
