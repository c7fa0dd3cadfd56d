//! Faults an operator must see, on a real kube-apiserver + etcd with the controller binary
//! under its ServiceAccount and deploy/ RBAC: a verdict that cannot be written (its
//! ClusterRoleBinding deleted) shows as a Warning Event on the CSR naming the API error, a
//! metric by cause and `check`'s last write error, and is written once the binding is back;
//! a decision csr-approver wrote but did not explain (its leader killed in between) is
//! explained by the next leader, once.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod builders;
mod harness;
mod scene;

use std::time::Duration;

use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, PostParams};
use scene::*;

fn openshift() -> SceneOptions {
    SceneOptions {
        machine_crds: true,
        policy: None,
    }
}

/// `csr-approver check --kubeconfig <admin> NAME -o json`: the one JSON line.
fn check_json(scene: &Scene, name: &str) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_csr-approver"))
        .args(["check", "--kubeconfig"])
        .arg(scene.cp.kubeconfig_path())
        .args([name, "-o", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().next().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn check_table(scene: &Scene, name: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_csr-approver"))
        .args(["check", "--kubeconfig"])
        .arg(scene.cp.kubeconfig_path())
        .arg(name)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Events about a CSR of reason `reason`.
async fn events(scene: &Scene, csr: &str, reason: &str) -> Vec<(String, String, String)> {
    scene
        .events_about("default", csr)
        .await
        .into_iter()
        .filter(|(_, r, _)| r == reason)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_refused_by_rbac_is_seen_everywhere_and_recovers_when_rbac_is_back() {
    let _serial = SERIAL.lock().await;
    let mut scene = Scene::new(openshift()).await;
    let c = scene.start_controller("replica-a", &[]);
    scene.wait_ready(c).await;
    scene
        .create_machine("worker-1", &[("InternalDNS", "worker-1")])
        .await;

    // Only the ClusterRoleBinding goes: the Role that lets the controller publish Events in
    // `default` stays, and the watches already open keep streaming (the apiserver
    // authorizes a watch when it starts).
    let bindings: Api<ClusterRoleBinding> = Api::all(scene.admin.clone());
    bindings
        .delete("csr-approver", &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    scene.join_request("worker-1-client", "worker-1").await;

    let warned = wait_for(Duration::from_secs(15), || async {
        let found = events(&scene, "worker-1-client", "ApprovalFailed").await;
        (!found.is_empty()).then_some(found)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "a Warning ApprovalFailed Event on the CSR\n{}",
            scene.controller_log(c)
        )
    });
    let (type_, _, note) = &warned[0];
    assert_eq!(type_, "Warning");
    assert!(
        // The identity it mints is recorded first: that is the write RBAC refuses.
        note.contains(
            "recording the identity it mints in NodeIdentity worker-1, before writing the Approved condition, failed: HTTP 403 Forbidden:"
        )
            && note.contains("forbidden")
            && note.contains("ClusterRoleBinding"),
        "{note}"
    );
    assert_eq!(scene.condition("worker-1-client").await, None);

    // The metric by cause, after a few 5-second retries; and still a single Event.
    let metrics = wait_for(Duration::from_secs(15), || async {
        let text = scene.metrics(c);
        (metric(
            &text,
            r#"csr_approver_write_failures_total{cause="forbidden",write="approval"}"#,
        ) >= 2.0)
            .then_some(text)
    })
    .await
    .expect("csr_approver_write_failures_total{cause=\"forbidden\"} counts every retry");
    assert_eq!(
        metric(
            &metrics,
            r#"csr_approver_write_failures_total{cause="forbidden",write="event"}"#
        ),
        0.0,
        "the Event itself was published"
    );
    assert_eq!(
        scene.event_occurrences("default", "worker-1-client").await,
        1,
        "one Event for one cause, not one per retry: {:?}",
        scene.events_about("default", "worker-1-client").await
    );

    // `check` keeps the verdict and says why it is not happening.
    let line = check_json(&scene, "worker-1-client");
    assert_eq!(line["verdict"], "approve", "{line}");
    let error = line["last_write_error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(error.contains("HTTP 403 Forbidden"), "{line}");
    assert!(line["last_write_error"]["at"].is_string(), "{line}");
    let table = check_table(&scene, "worker-1-client");
    assert!(
        table.contains("last write error (") && table.contains("HTTP 403 Forbidden"),
        "{table}"
    );

    // The binding back: the next retry writes the approval.
    let out = scene.cp.kubectl(&[
        "apply",
        "-f",
        &format!("{}/deploy/rbac.yaml", env!("CARGO_MANIFEST_DIR")),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        scene
            .wait_condition("worker-1-client", Duration::from_secs(30))
            .await
            .as_deref(),
        Some("Approved"),
        "{}",
        scene.controller_log(c)
    );
    let approved = scene.csr("worker-1-client").await;
    let conditions = approved.status.unwrap().conditions.unwrap();
    assert_eq!(conditions.len(), 1, "approved once: {conditions:?}");
    assert!(
        conditions[0]
            .message
            .as_deref()
            .unwrap_or_default()
            .starts_with("csr-approver: NewNodeMachine: "),
        "{conditions:?}"
    );
    let approved_events = wait_for(Duration::from_secs(10), || async {
        let found = events(&scene, "worker-1-client", "Approved").await;
        (!found.is_empty()).then_some(found)
    })
    .await;
    assert!(approved_events.is_some(), "{}", scene.controller_log(c));
    // Decided now: a past write error is no hint any more.
    let line = check_json(&scene, "worker-1-client");
    assert!(line.get("last_write_error").is_none(), "{line}");
}

/// Writes an Approved condition as the admin, on `/approval`.
async fn approve_as(scene: &Scene, name: &str, reason: &str, message: &str) {
    let api: Api<CertificateSigningRequest> = Api::all(scene.admin.clone());
    let mut csr = api.get(name).await.unwrap();
    csr.status
        .get_or_insert_with(Default::default)
        .conditions
        .get_or_insert_with(Vec::new)
        .push(CertificateSigningRequestCondition {
            type_: "Approved".into(),
            status: "True".into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_update_time: Some(Time(jiff::Timestamp::now())),
            ..Default::default()
        });
    api.replace_subresource("approval", name, &PostParams::default(), &csr)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_written_by_a_killed_leader_is_explained_by_the_next_once() {
    let _serial = SERIAL.lock().await;
    let mut scene = Scene::new(openshift()).await;
    // No controller runs: as if the leader wrote the condition, then was killed before its
    // Event.
    scene.join_request("worker-2-client", "worker-2").await;
    approve_as(
        &scene,
        "worker-2-client",
        "AutoApproved",
        "csr-approver: NewNodeMachine: Machine openshift-machine-api/worker-2 vouches for node worker-2",
    )
    .await;
    // Approved by an admin: not ours to explain.
    scene.join_request("worker-3-client", "worker-3").await;
    approve_as(
        &scene,
        "worker-3-client",
        "KubectlApprove",
        "This CSR was approved by kubectl certificate approve.",
    )
    .await;

    let a = scene.start_controller("replica-a", &[]);
    scene.wait_ready(a).await;
    let explained = wait_for(Duration::from_secs(15), || async {
        let found = events(&scene, "worker-2-client", "Approved").await;
        (!found.is_empty()).then_some(found)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "the new leader explains the approval\n{}",
            scene.controller_log(a)
        )
    });
    assert_eq!(
        explained,
        [(
            "Normal".to_string(),
            "Approved".to_string(),
            "NewNodeMachine: Machine openshift-machine-api/worker-2 vouches for node worker-2"
                .to_string()
        )]
    );

    // The next leader (another process: a fresh Event recorder) finds that Event and adds
    // none.
    scene.kill_controller(a);
    let b = scene.start_controller("replica-b", &[]);
    scene.wait_ready(b).await;
    let leading = wait_for(Duration::from_secs(20), || async {
        (metric(&scene.metrics(b), "csr_approver_leader ") == 1.0).then_some(())
    })
    .await;
    assert!(leading.is_some(), "{}", scene.controller_log(b));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        scene.event_occurrences("default", "worker-2-client").await,
        1,
        "exactly one Approved Event: {:?}\n{}",
        scene.events_about("default", "worker-2-client").await,
        scene.controller_log(b)
    );
    assert_eq!(
        scene.events_about("default", "worker-3-client").await,
        [],
        "an admin's approval gets no Event from csr-approver"
    );
}
