//! csr-approver as users run it: the image built from the shipped Dockerfile
//! (`scripts/build-image.sh`), imported into a real node's containerd, installed with the
//! Helm chart (`hostNetwork: true`), running as a Pod under the chart's ServiceAccount and
//! RBAC — and approving a second real kubelet's TLS bootstrap from there.
//!
//! 1. Control plane with real-node support; node `control-0` joins. Nothing approves CSRs
//!    yet, so the test approves its client CSR by hand, as an admin does for a cluster's
//!    first node.
//! 2. The image archive is imported into control-0's containerd; `helm install` of
//!    `charts/csr-approver` with `image.pullPolicy: Never`, `hostNetwork: true`, a
//!    nodeSelector on control-0 and `extraEnv` pointing the in-cluster client at the
//!    apiserver (see tests/harness/pod.rs for what stands in for the scheduler, the
//!    Deployment controllers and the `kubernetes` Service). The Pod runs and is Ready, and
//!    approves control-0's own serving CSR.
//! 3. Node `worker-1` (in the policy's inventory) joins from nothing: csr-approver in the Pod
//!    approves its client and serving CSRs (Events reported by the Pod), the Node is Ready.
//! 4. A forged client CSR (a bootstrap token asking for a name no inventory entry expects)
//!    stays Pending, with a Warning Event from the Pod.
//! 5. `kubectl logs` of the csr-approver Pod works: the apiserver verified control-0's serving
//!    certificate, which the Pod approved.
//!
//! Needs Linux and root (scripts/node-packages.sh) and the image archive
//! (`$CSR_APPROVER_IMAGE_ARCHIVE`, else built by scripts/build-image.sh); prints one line and
//! passes when not root on Linux or when `CSR_APPROVER_IMAGE=skip`.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod harness;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use harness::node::{RealNode, inventory_policy, unsupported};
use harness::pod::{self, NAMESPACE, Workloads};
use harness::{ControlPlane, KUBELET_CLIENT_SIGNER, KUBELET_SERVING_SIGNER, Options, wait_for};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::Client;
use kube::api::{Api, LogParams, PostParams};

const CONTROL: &str = "control-0";
const CONTROL_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 20);
const WORKER: &str = "worker-1";
const WORKER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 21);

const TIMEOUT: Duration = Duration::from_secs(60);

/// The name of the first CSR for `signer` requested by `username`, once it exists.
async fn csr_by(admin: &Client, signer: &str, username: &str) -> Option<String> {
    let api: Api<CertificateSigningRequest> = Api::all(admin.clone());
    wait_for(TIMEOUT, || {
        let api = api.clone();
        async move {
            api.list(&Default::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|csr| {
                    csr.spec.signer_name == signer && csr.spec.username.as_deref() == Some(username)
                })?
                .metadata
                .name
        }
    })
    .await
}

/// Waits until CSR `name` is approved and its certificate issued.
async fn issued(admin: &Client, name: &str) -> bool {
    let api: Api<CertificateSigningRequest> = Api::all(admin.clone());
    wait_for(TIMEOUT, || {
        let api = api.clone();
        async move {
            let status = api.get(name).await.ok()?.status?;
            let approved = status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Approved" && c.status == "True");
            (approved && !status.certificate?.0.is_empty()).then_some(())
        }
    })
    .await
    .is_some()
}

/// The Event about CSR `csr` whose note starts with `<decision>:`, once it exists.
async fn decision_event(admin: &Client, csr: &str, decision: &str) -> Option<Event> {
    let events: Api<Event> = Api::namespaced(admin.clone(), "default");
    wait_for(TIMEOUT, || {
        let events = events.clone();
        async move {
            events
                .list(&Default::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|e| {
                    e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(csr)
                        && e.note
                            .as_deref()
                            .is_some_and(|n| n.starts_with(&format!("{decision}:")))
                })
        }
    })
    .await
}

/// Asserts `event` is of `type_`/`reason` and was reported by csr-approver in Pod `pod`.
fn assert_from_pod(event: &Event, type_: &str, reason: &str, pod: &str) {
    assert_eq!(
        (event.type_.as_deref(), event.reason.as_deref()),
        (Some(type_), Some(reason)),
        "{event:?}"
    );
    assert_eq!(
        event.reporting_instance.as_deref(),
        Some(pod),
        "the Event comes from the Pod's csr-approver: {event:?}"
    );
}

fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csr_approver_runs_as_a_pod_from_its_chart_and_approves_a_real_kubelet() {
    let test = "real_node_pod";
    if let Some(why) = unsupported() {
        eprintln!("{test}: skipped: {why}");
        return;
    }
    let image = match pod::image_archive() {
        Ok(Some(image)) => image,
        Ok(None) => {
            eprintln!("{test}: skipped: CSR_APPROVER_IMAGE=skip (no image to run)");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let begin = Instant::now();
    let lap = |what: &str| eprintln!("{test}: {what} after {:.1?}", begin.elapsed());

    let cp = ControlPlane::start_with(Options { real_nodes: true });
    let admin = cp.admin_client();
    let workloads = Workloads::start(&cp);
    lap("control plane ready");

    // 1. The first node, approved by hand.
    let control = RealNode::start(&cp, CONTROL, CONTROL_IP).await;
    let context = |nodes: &[&RealNode]| {
        let mut out = String::new();
        for node in nodes {
            out.push_str(&node.log_tail(30));
            out.push('\n');
        }
        out.push_str(&workloads.log_tail(10));
        out.push('\n');
        out.push_str(&cp.log_tail(10));
        out
    };
    let client_csr = csr_by(&admin, KUBELET_CLIENT_SIGNER, &control.bootstrap_user())
        .await
        .unwrap_or_else(|| panic!("no client CSR from {CONTROL}\n{}", context(&[&control])));
    pod::approve_by_hand(&admin, &client_csr).await.unwrap();
    assert!(
        issued(&admin, &client_csr).await,
        "{CONTROL}'s client certificate not issued\n{}",
        context(&[&control])
    );
    lap("control-0's client certificate issued (approved by hand)");

    // 2. The image on control-0, the chart installed, the Pod Ready.
    let imported = Instant::now();
    pod::import_image(&control, &image.archive).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "{test}: imported {} into {CONTROL}'s containerd in {:.1?}",
        image.reference,
        imported.elapsed()
    );
    let http_port = pod::free_host_port();
    let values = pod::chart_values(
        &cp,
        &image,
        CONTROL,
        http_port,
        &inventory_policy(&[(CONTROL, CONTROL_IP), (WORKER, WORKER_IP)]),
    );
    let installed = pod::helm_install(&cp, &values).unwrap_or_else(|e| panic!("{e}"));
    assert!(installed.contains("STATUS: deployed"), "{installed}");
    lap("helm install done");
    let Some(pod_name) = pod::wait_pod_ready(&admin, Duration::from_secs(90)).await else {
        panic!(
            "the csr-approver Pod is not Running and Ready\n{}\n{}",
            pod::describe_pods(&admin).await,
            context(&[&control])
        );
    };
    lap(&format!("Pod {NAMESPACE}/{pod_name} Running and Ready"));
    let pods: Api<Pod> = Api::namespaced(admin.clone(), NAMESPACE);
    let spec = pods.get(&pod_name).await.unwrap().spec.unwrap();
    assert_eq!(spec.node_name.as_deref(), Some(CONTROL));
    assert_eq!(spec.host_network, Some(true));
    assert_eq!(spec.service_account_name.as_deref(), Some("csr-approver"));
    assert_eq!(
        spec.containers[0].image.as_deref(),
        Some(image.reference.as_str())
    );

    // The Pod approves its own host's serving certificate.
    let control_serving = csr_by(
        &admin,
        KUBELET_SERVING_SIGNER,
        &format!("system:node:{CONTROL}"),
    )
    .await
    .unwrap_or_else(|| panic!("no serving CSR from {CONTROL}\n{}", context(&[&control])));
    assert!(
        issued(&admin, &control_serving).await,
        "{CONTROL}'s serving CSR not approved by the Pod\n{}",
        context(&[&control])
    );
    let event = decision_event(&admin, &control_serving, "ServingAddressesVerified")
        .await
        .expect("ServingAddressesVerified Event for control-0");
    assert_from_pod(&event, "Normal", "Approved", &pod_name);
    lap("control-0's serving CSR approved by the Pod");

    // 3. A second node joins from nothing through csr-approver in the Pod.
    let worker = RealNode::start(&cp, WORKER, WORKER_IP).await;
    let client_csr = csr_by(&admin, KUBELET_CLIENT_SIGNER, &worker.bootstrap_user())
        .await
        .unwrap_or_else(|| panic!("no client CSR from {WORKER}\n{}", context(&[&worker])));
    assert!(
        issued(&admin, &client_csr).await,
        "{WORKER}'s client CSR {client_csr} not approved and issued\n{}",
        context(&[&control, &worker])
    );
    let event = decision_event(&admin, &client_csr, "NewNodeInventory")
        .await
        .expect("NewNodeInventory Event");
    assert_from_pod(&event, "Normal", "Approved", &pod_name);
    lap("worker-1's client CSR approved by the Pod");
    let serving_csr = csr_by(
        &admin,
        KUBELET_SERVING_SIGNER,
        &format!("system:node:{WORKER}"),
    )
    .await
    .unwrap_or_else(|| panic!("no serving CSR from {WORKER}\n{}", context(&[&worker])));
    assert!(
        issued(&admin, &serving_csr).await,
        "{WORKER}'s serving CSR {serving_csr} not approved\n{}",
        context(&[&control, &worker])
    );
    let event = decision_event(&admin, &serving_csr, "ServingAddressesVerified")
        .await
        .expect("ServingAddressesVerified Event");
    assert_from_pod(&event, "Normal", "Approved", &pod_name);
    lap("worker-1's serving CSR approved by the Pod");
    let nodes: Api<Node> = Api::all(admin.clone());
    let ready = wait_for(TIMEOUT, || {
        let nodes = nodes.clone();
        async move { nodes.get(WORKER).await.ok().filter(is_ready) }
    })
    .await;
    assert!(
        ready.is_some(),
        "Node {WORKER} not Ready\n{}",
        context(&[&worker])
    );
    lap("worker-1 Ready");

    // 4. A forged client CSR: a bootstrap token asking for a host nobody expects.
    let forger = cp.impersonating_client(
        "system:bootstrap:forged",
        &[
            harness::node::BOOTSTRAPPERS_GROUP,
            harness::node::KUBEADM_TOKEN_GROUP,
        ],
    );
    let forged = harness::kubelet_client_csr("forged-intruder", "intruder");
    Api::<CertificateSigningRequest>::all(forger)
        .create(&PostParams::default(), &forged)
        .await
        .unwrap();
    let event = decision_event(&admin, "forged-intruder", "UnknownMachine")
        .await
        .expect("UnknownMachine Event for the forged CSR");
    assert_from_pod(&event, "Warning", "NotApproved", &pod_name);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let status = Api::<CertificateSigningRequest>::all(admin.clone())
        .get("forged-intruder")
        .await
        .unwrap()
        .status
        .unwrap_or_default();
    assert!(
        status.conditions.unwrap_or_default().is_empty() && status.certificate.is_none(),
        "the forged CSR must stay Pending"
    );
    lap("forged CSR left Pending with a Warning Event");

    // 5. kubectl logs of the Pod: apiserver → control-0's kubelet, TLS verified against the
    //    cluster CA (the serving certificate the Pod approved).
    let logs = pods
        .logs(&pod_name, &LogParams::default())
        .await
        .unwrap_or_else(|e| panic!("kubectl logs {pod_name}: {e}"));
    assert!(
        logs.contains("serving /metrics"),
        "the controller's log, through the kubelet: {logs}"
    );
    lap("kubectl logs of the Pod (kubelet TLS verified)");
    assert!(control.exited().is_none(), "{}", control.log_tail(20));
    assert!(worker.exited().is_none(), "{}", worker.log_tail(20));
    eprintln!("{test}: passed in {:.1?}", begin.elapsed());
}
