//! The durable record of identities minted (`NodeIdentity`), end to end on a real
//! kube-apiserver + etcd, with the controller binary under its ServiceAccount and the
//! RBAC and CRD of deploy/. kube-controller-manager's CSR cleaner deletes an approved CSR
//! an hour after approval; these tests delete the CSRs as it does (its delays are
//! constants) and restart the controller, and the memory must hold: no second identity
//! for a host generation, no second recovery for a node in its window.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod builders;
mod harness;
mod scene;

use std::time::Duration;

use csr_approver::identity::NodeIdentity;
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::{Api, PostParams};
use scene::*;

const APPROVAL_TIMEOUT: Duration = Duration::from_secs(15);

fn openshift() -> SceneOptions {
    SceneOptions {
        machine_crds: true,
        policy: None,
    }
}

/// The Warning `NotApproved` Event's note about `csr` that holds `words`, once there is one.
async fn refusal(scene: &Scene, csr: &str, words: &str) -> String {
    wait_for(APPROVAL_TIMEOUT, || async {
        scene
            .events_about("default", csr)
            .await
            .into_iter()
            .find(|(t, r, n)| t == "Warning" && r == "NotApproved" && n.contains(words))
            .map(|(_, _, note)| note)
    })
    .await
    .unwrap_or_else(|| panic!("a Warning Event about {csr} saying {words:?}"))
}

async fn approved(scene: &Scene, csr: &str, controller: usize) {
    assert_eq!(
        scene.wait_condition(csr, APPROVAL_TIMEOUT).await.as_deref(),
        Some("Approved"),
        "{csr}\n{}",
        scene.controller_log(controller)
    );
}

async fn record(scene: &Scene, node: &str) -> Option<NodeIdentity> {
    Api::<NodeIdentity>::all(scene.admin.clone())
        .get_opt(node)
        .await
        .unwrap()
}

/// Issues a certificate on `csr` as a signer does (its status subresource), with `serial`,
/// valid until 2027-12-01.
async fn sign(scene: &Scene, csr: &str, serial: &[u8]) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.serial_number = Some(rcgen::SerialNumber::from(serial.to_vec()));
    params.not_before = rcgen::date_time_ymd(2026, 12, 1);
    params.not_after = rcgen::date_time_ymd(2027, 12, 1);
    let pem = params.self_signed(&key).unwrap().pem();
    let api: Api<CertificateSigningRequest> = Api::all(scene.admin.clone());
    let mut object = api.get(csr).await.unwrap();
    let status = object.status.get_or_insert_with(Default::default);
    status.certificate = Some(ByteString(pem.into_bytes()));
    api.replace_status(csr, &PostParams::default(), &object)
        .await
        .unwrap();
}

/// Kills the controller and starts another replica that must list the record again.
async fn restart(scene: &mut Scene, controller: usize, name: &'static str) -> usize {
    scene.kill_controller(controller);
    let next = scene.start_controller(name, &[]);
    scene.wait_ready(next).await;
    next
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_generation_keeps_one_identity_after_the_cleaner_and_a_restart() {
    let _serial = SERIAL.lock().await;
    let mut scene = Scene::new(openshift()).await;
    let c = scene.start_controller("replica-a", &[]);
    scene.wait_ready(c).await;

    // A host whose Machine gives it a short name and an FQDN.
    scene
        .create_machine(
            "worker-1",
            &[
                ("Hostname", "worker-1"),
                ("InternalDNS", "worker-1.example.com"),
                ("InternalIP", "10.0.0.11"),
            ],
        )
        .await;
    scene.join_request("first", "worker-1").await;
    approved(&scene, "first", c).await;

    // Recorded before the approval was written, and readable with kubectl.
    let recorded = record(&scene, "worker-1").await.expect("a NodeIdentity");
    assert_eq!(recorded.spec.minted.len(), 1, "{recorded:?}");
    assert_eq!(recorded.spec.minted[0].csr, "first");
    assert_eq!(recorded.spec.minted[0].reason, "NewNodeMachine");
    assert_eq!(
        recorded
            .spec
            .host_generation
            .as_ref()
            .map(|g| g.names.as_slice()),
        Some(&["worker-1".to_string(), "worker-1.example.com".to_string()][..])
    );
    let table = scene.cp.kubectl(&["get", "nodeidentities"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("HOST GENERATION")
            && table.contains("Machine openshift-machine-api/worker-1 (machine.openshift.io)"),
        "{table}"
    );

    // The signer issues the certificate: the record shows it (serial, notAfter).
    sign(&scene, "first", &[0x0a, 0x1b]).await;
    let shown = wait_for(APPROVAL_TIMEOUT, || async {
        record(&scene, "worker-1")
            .await
            .and_then(|r| r.spec.client_certificate)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "the issued certificate recorded\n{}",
            scene.controller_log(c)
        )
    });
    assert_eq!(
        (shown.csr.as_str(), shown.serial.as_str()),
        ("first", "0A1B")
    );
    assert_eq!(shown.not_after.to_string(), "2027-12-01T00:00:00Z");
    let table = scene.cp.kubectl(&["get", "nodeidentities"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("CLIENT NOTAFTER") && table.contains("2027-12-01T00:00:00Z"),
        "{table}"
    );

    // The cleaner deletes the approved CSR; the controller restarts.
    scene.delete_csr_as_the_cleaner_does("first").await;
    let c = restart(&mut scene, c, "replica-b").await;

    // The bootstrap credential asks again, under the same name and under the FQDN.
    scene.join_request("second", "worker-1").await;
    let note = refusal(&scene, "second", "DuplicateClientRequest").await;
    assert!(note.contains("CSR first"), "{note}");
    scene.join_request("fqdn", "worker-1.example.com").await;
    let note = refusal(&scene, "fqdn", "DuplicateClientRequest").await;
    assert!(note.contains("system:node:worker-1"), "{note}");
    for csr in ["second", "fqdn"] {
        assert_eq!(scene.condition(csr).await, None, "{csr} stays pending");
    }
    assert_eq!(
        record(&scene, "worker-1").await.unwrap().spec.minted.len(),
        1,
        "{}",
        scene.controller_log(c)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_recovery_per_window_survives_the_cleaner_and_a_restart() {
    let _serial = SERIAL.lock().await;
    let mut scene = Scene::new(SceneOptions {
        machine_crds: false,
        policy: Some(
            "client: {recovery: {enabled: true, offlineFor: 1m}}\ninventory: [{name: worker-1}]\n",
        ),
    })
    .await;
    scene
        .register_node("worker-1", &[("Hostname", "worker-1")])
        .await;
    scene
        .node_lease("worker-1", Duration::from_secs(2 * 3600))
        .await;
    let c = scene.start_controller("replica-a", &[]);
    scene.wait_ready(c).await;

    scene.join_request("recover", "worker-1").await;
    approved(&scene, "recover", c).await;
    let recorded = record(&scene, "worker-1").await.expect("a NodeIdentity");
    assert_eq!(recorded.spec.minted[0].reason, "NodeRecovery");

    scene.delete_csr_as_the_cleaner_does("recover").await;
    let c = restart(&mut scene, c, "replica-b").await;

    scene.join_request("recover-again", "worker-1").await;
    let note = refusal(&scene, "recover-again", "one recovery per node per window").await;
    assert!(
        note.starts_with("NodeAlreadyExists: ") && note.contains("CSR recover"),
        "{note}"
    );
    assert_eq!(
        scene.condition("recover-again").await,
        None,
        "{}",
        scene.controller_log(c)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_its_record_the_controller_decides_nothing() {
    let _serial = SERIAL.lock().await;
    let mut scene = Scene::new(openshift()).await;
    // The CRD gone: the record cannot be read, so nothing may be decided.
    let out = scene.cp.kubectl(&[
        "delete",
        "crd",
        "nodeidentities.csr-approver.io",
        "--wait=true",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    scene
        .create_machine("worker-1", &[("InternalDNS", "worker-1")])
        .await;
    let c = scene.start_controller("replica-a", &[]);
    scene.join_request("first", "worker-1").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(scene.readyz(c), Some(503), "{}", scene.controller_log(c));
    assert_eq!(scene.condition("first").await, None);
    assert!(
        scene.controller_log(c).contains("NodeIdentity"),
        "the log says which watch fails: {}",
        scene.controller_log(c)
    );
}

/// `check expiry` live, with no controller running: worker-1's client certificate from its
/// record, worker-2's from its issued CSR, worker-3 unknown; recovery from the ConfigMap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_expiry_reads_the_record_and_the_issued_csrs_live() {
    let _serial = SERIAL.lock().await;
    let scene = Scene::new(SceneOptions {
        machine_crds: false,
        policy: Some(
            "client: {recovery: {enabled: true, offlineFor: 1m}}\ninventory: [{name: worker-1}]\n",
        ),
    })
    .await;
    for node in ["worker-1", "worker-2", "worker-3"] {
        scene.register_node(node, &[("Hostname", node)]).await;
    }
    let mut recorded = NodeIdentity::empty("worker-1");
    recorded.spec.client_certificate = Some(csr_approver::identity::IssuedCertificate {
        csr: "long-gone".to_string(),
        serial: "0A".to_string(),
        not_before: "2026-12-01T00:00:00Z".parse().unwrap(),
        not_after: "2027-06-01T00:00:00Z".parse().unwrap(),
    });
    Api::<NodeIdentity>::all(scene.admin.clone())
        .create(&PostParams::default(), &recorded)
        .await
        .unwrap();
    scene.join_request("w2-join", "worker-2").await;
    let out = scene.cp.kubectl(&["certificate", "approve", "w2-join"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    sign(&scene, "w2-join", &[0x2b]).await;

    let kubeconfig = scene.cp.kubeconfig_path().to_str().unwrap().to_string();
    let out = tokio::task::block_in_place(|| {
        std::process::Command::new(env!("CARGO_BIN_EXE_csr-approver"))
            .args(["check", "expiry", "--kubeconfig", &kubeconfig])
            .args(["--now", "2026-12-15T00:00:00Z", "-o", "json"])
            .output()
            .unwrap()
    });
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["earliestClient"]["node"], "worker-1", "{text}");
    assert_eq!(report["earliestClient"]["notAfter"], "2027-06-01T00:00:00Z");
    assert_eq!(report["shutdownUntil"], "2027-05-31T23:00:00Z");
    assert_eq!(report["recovery"], true);
    assert_eq!(report["unknownNodes"], serde_json::json!(["worker-3"]));
    let nodes = report["nodes"].as_array().unwrap();
    assert_eq!(nodes[0]["client"]["source"], "NodeIdentity");
    assert_eq!(nodes[1]["client"]["source"], "CertificateSigningRequest");
    assert_eq!(nodes[1]["client"]["csr"], "w2-join");
    assert_eq!(nodes[1]["client"]["serial"], "2B");
    assert_eq!(nodes[1]["client"]["notAfter"], "2027-12-01T00:00:00Z");
    assert_eq!(nodes[2]["client"], serde_json::Value::Null);
}
