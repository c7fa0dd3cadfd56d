//! Real kubelets (v1.37.2, built by scripts/node-assets.sh) with their own containerd join a
//! real control plane through a bootstrap token (or, OpenShift's way, the node-bootstrapper
//! ServiceAccount's token), and csr-approver — the binary under its ServiceAccount and the
//! RBAC of deploy/ — is the only approver; kube-controller-manager only signs and cleans
//! CSRs up. Covered: a join from nothing, both renewals (with a 2 min signing duration),
//! strangers and impostors refused, a host re-provisioned under its name (the admin deletes
//! its NodeIdentity record and earlier CSR, or a new Machine starts a new generation), the
//! OpenShift shape. See tests/harness/node.rs.
//!
//! Needs Linux and root (and scripts/node-packages.sh); elsewhere each test prints one line
//! saying why it is skipped and passes. The tests run one at a time.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod builders;
mod harness;
mod scene;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use csr_approver::identity::NodeIdentity;
use harness::node::{
    Bootstrap, RealNode, SIGNING_DURATION, pause_image, restart_signer, unsupported,
};
use harness::{ControlPlane, Options, openshift_machine_resource};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{Node, Pod, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, DynamicObject, LogParams, PostParams};
use scene::{
    BOOTSTRAPPER, BOOTSTRAPPER_GROUPS, CLIENT_SIGNER, SERIAL, SERVING_SIGNER, Scene, SceneOptions,
    wait_for,
};

/// Bootstrap tokens may ask for new nodes; the inventory names the one expected host and
/// its addresses; serving SANs are checked against the Node's own status (loopback IPs
/// allowed: the test nodes live on 127.0.0.x).
const POLICY: &str = r#"
client:
  bootstrappers:
    - group: system:bootstrappers
machines:
  apiGroups: []
serving:
  addressSources: [Node]
  allowLoopback: true
inventory:
  - name: node-a
    addresses: [127.0.0.2, node-a]
"#;

const NODE_A_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// From kubelet start to its client CSR (≈ 0.2 s), approval and issue.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// From the client certificate to a serving CSR: 1–40 s with default status frequencies.
const SERVING_TIMEOUT: Duration = Duration::from_secs(60);
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Scene with real-node support and csr-approver running under [`POLICY`]; `None` (after
/// printing why) where real nodes cannot run.
async fn scene(test: &str) -> Option<(Scene, usize)> {
    scene_with(test, Setup::default()).await
}

/// How a test's scene differs from the default one.
#[derive(Default)]
struct Setup {
    /// The policy (default [`POLICY`]).
    policy: Option<&'static str>,
    /// Install the Machine CRDs and the namespace `openshift-machine-api`.
    machine_crds: bool,
    /// kube-controller-manager's `--cluster-signing-duration` (default [`SIGNING_DURATION`]).
    signing_duration: Option<&'static str>,
}

async fn scene_with(test: &str, setup: Setup) -> Option<(Scene, usize)> {
    if let Some(why) = unsupported() {
        // Once per test binary, past the test harness's output capture.
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "real-node tests skipped: {why}");
        });
        return None;
    }
    let begin = Instant::now();
    let mut cp = ControlPlane::start_with(Options { real_nodes: true });
    if let Some(duration) = setup.signing_duration {
        restart_signer(&mut cp, duration);
    }
    let mut scene = Scene::on(
        cp,
        SceneOptions {
            machine_crds: setup.machine_crds,
            policy: Some(setup.policy.unwrap_or(POLICY)),
        },
    )
    .await;
    let controller = scene.start_controller("replica-a", &[]);
    scene.wait_ready(controller).await;
    eprintln!(
        "{test}: control plane + kube-controller-manager + csr-approver ready in {:.1?}",
        begin.elapsed()
    );
    Some((scene, controller))
}

/// The first CSR for `signer` requested by `username`, once it exists.
async fn csr_by(
    admin: &Client,
    signer: &str,
    username: &str,
    timeout: Duration,
) -> Option<CertificateSigningRequest> {
    csr_by_except(admin, signer, username, &[], timeout).await
}

/// The first CSR for `signer` requested by `username` and not named in `known`, once it
/// exists.
async fn csr_by_except(
    admin: &Client,
    signer: &str,
    username: &str,
    known: &[String],
    timeout: Duration,
) -> Option<CertificateSigningRequest> {
    let api: Api<CertificateSigningRequest> = Api::all(admin.clone());
    wait_for(timeout, || {
        let api = api.clone();
        async move {
            api.list(&Default::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|csr| {
                    csr.spec.signer_name == signer
                        && csr.spec.username.as_deref() == Some(username)
                        && !known.iter().any(|k| csr.metadata.name.as_ref() == Some(k))
                })
        }
    })
    .await
}

/// Waits until CSR `name` is approved and its certificate issued; returns the certificate.
async fn issued_certificate(admin: &Client, name: &str, timeout: Duration) -> Option<Vec<u8>> {
    let api: Api<CertificateSigningRequest> = Api::all(admin.clone());
    wait_for(timeout, || {
        let api = api.clone();
        async move {
            let status = api.get(name).await.ok()?.status?;
            let approved = status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Approved" && c.status == "True");
            let certificate = status.certificate?.0;
            (approved && !certificate.is_empty()).then_some(certificate)
        }
    })
    .await
}

/// The (type, reason, note) of the first Event about CSR `name` whose note starts with
/// `decision` (csr-approver writes `<Reason>: <message>`).
async fn event(
    scene: &Scene,
    csr: &str,
    decision: &str,
    timeout: Duration,
) -> Option<(String, String, String)> {
    wait_for(timeout, || async move {
        scene
            .events_about("default", csr)
            .await
            .into_iter()
            .find(|(_, _, note)| note.starts_with(&format!("{decision}:")))
    })
    .await
}

fn context(scene: &Scene, controller: usize, node: &RealNode) -> String {
    format!(
        "{}\n{}\n{}",
        scene.controller_log(controller),
        node.log_tail(40),
        scene.cp.log_tail(10)
    )
}

/// Checks `pem` is a certificate signed by the cluster CA for `common_name`, issued by
/// kube-controller-manager with the short signing duration.
fn assert_issued_by_cluster_ca(cp: &ControlPlane, pem: &[u8], common_name: &str) {
    let (_, ca) = x509_parser::pem::parse_x509_pem(cp.ca_pem().as_bytes()).unwrap();
    let ca = ca.parse_x509().unwrap();
    let (_, leaf) = x509_parser::pem::parse_x509_pem(pem).unwrap();
    let leaf = leaf.parse_x509().unwrap();
    leaf.verify_signature(Some(ca.public_key()))
        .expect("issued certificate is signed by the cluster CA");
    let cn = leaf
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok());
    assert_eq!(cn, Some(common_name));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let left = leaf.validity().not_after.timestamp() - now;
    assert!(
        left <= 10 * 60 + 5,
        "certificate valid for {left} s more: not the --cluster-signing-duration={SIGNING_DURATION}"
    );
}

fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// GET `path` on the kubelet at `node.kubelet_url()` as the cluster admin, trusting only the
/// cluster CA and verifying the serving certificate for `server_name` (None: the URL's IP).
async fn kubelet_get(
    cp: &ControlPlane,
    node: &RealNode,
    server_name: Option<&str>,
    path: &str,
) -> Result<String, kube::Error> {
    let mut config = cp.admin_config();
    config.cluster_url = node.kubelet_url().parse().unwrap();
    config.tls_server_name = server_name.map(str::to_owned);
    config.connect_timeout = Some(Duration::from_secs(5));
    let client = Client::try_from(config).unwrap();
    let request = http::Request::get(path).body(Vec::new()).unwrap();
    client.request_text(request).await
}

/// Runs a host-network pause Pod on `node` and reads its (empty) log through the apiserver.
async fn pod_logs(scene: &Scene, node: &RealNode) -> Result<String, kube::Error> {
    let namespace = "default";
    let accounts: Api<ServiceAccount> = Api::namespaced(scene.admin.clone(), namespace);
    let account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some("default".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    // No ServiceAccount controller runs here; 409 if the test made it before.
    let _ = accounts.create(&PostParams::default(), &account).await;
    let pods: Api<Pod> = Api::namespaced(scene.admin.clone(), namespace);
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("pause-{}", node.name())},
        "spec": {
            "nodeName": node.name(),
            "hostNetwork": true,
            "automountServiceAccountToken": false,
            "containers": [{
                "name": "pause",
                "image": pause_image(),
                "imagePullPolicy": "Never",
            }],
        },
    }))
    .unwrap();
    let name = pod.metadata.name.clone().unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let running = wait_for(READY_TIMEOUT, || {
        let pods = pods.clone();
        let name = name.clone();
        async move {
            let phase = pods.get(&name).await.ok()?.status?.phase?;
            (phase == "Running").then_some(())
        }
    })
    .await;
    assert!(
        running.is_some(),
        "pod {name} not Running: {:?}\n{}",
        pods.get(&name).await.ok().and_then(|p| p.status),
        node.log_tail(30)
    );
    pods.logs(&name, &LogParams::default()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubelet_joins_from_nothing() {
    let _serial = SERIAL.lock().await;
    let test = "a_kubelet_joins_from_nothing";
    let Some((scene, controller)) = scene(test).await else {
        return;
    };
    let begin = Instant::now();
    let lap = |what: &str| eprintln!("{test}: {what} after {:.1?}", begin.elapsed());
    let node = RealNode::start(&scene.cp, "node-a", NODE_A_IP).await;
    let admin = scene.admin.clone();

    // Client CSR from the bootstrap token → approved by csr-approver → issued by the KCM signer.
    let client_csr = csr_by(
        &admin,
        CLIENT_SIGNER,
        &node.bootstrap_user(),
        CLIENT_TIMEOUT,
    )
    .await
    .unwrap_or_else(|| {
        panic!(
            "no client CSR from the kubelet\n{}",
            context(&scene, controller, &node)
        )
    });
    let client_csr = client_csr.metadata.name.unwrap();
    lap("client CSR created");
    let certificate = issued_certificate(&admin, &client_csr, CLIENT_TIMEOUT)
        .await
        .unwrap_or_else(|| {
            panic!(
                "client CSR {client_csr} not approved and issued\n{}",
                context(&scene, controller, &node)
            )
        });
    lap("client certificate issued");
    assert_issued_by_cluster_ca(&scene.cp, &certificate, "system:node:node-a");
    let Some((type_, reason, note)) =
        event(&scene, &client_csr, "NewNodeInventory", CLIENT_TIMEOUT).await
    else {
        let events = scene.events_about("default", &client_csr).await;
        panic!("no NewNodeInventory Event for {client_csr}: {events:?}");
    };
    assert_eq!(
        (type_.as_str(), reason.as_str()),
        ("Normal", "Approved"),
        "{note}"
    );

    // The Node registers, the kubelet asks for a serving certificate as system:node:node-a.
    let nodes: Api<Node> = Api::all(admin.clone());
    wait_for(CLIENT_TIMEOUT, || {
        let nodes = nodes.clone();
        async move { nodes.get_opt("node-a").await.ok().flatten() }
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "Node node-a never registered\n{}",
            context(&scene, controller, &node)
        )
    });
    lap("Node registered");
    let serving_csr = csr_by(
        &admin,
        SERVING_SIGNER,
        "system:node:node-a",
        SERVING_TIMEOUT,
    )
    .await
    .unwrap_or_else(|| panic!("no serving CSR\n{}", context(&scene, controller, &node)));
    let serving_csr = serving_csr.metadata.name.unwrap();
    lap("serving CSR created");
    let Some(serving) = issued_certificate(&admin, &serving_csr, CLIENT_TIMEOUT).await else {
        let events = scene.events_about("default", &serving_csr).await;
        panic!(
            "serving CSR {serving_csr} not approved and issued: {events:?}\n{}",
            context(&scene, controller, &node)
        );
    };
    lap("serving certificate issued");
    assert_issued_by_cluster_ca(&scene.cp, &serving, "system:node:node-a");
    let (type_, reason, note) = event(
        &scene,
        &serving_csr,
        "ServingAddressesVerified",
        CLIENT_TIMEOUT,
    )
    .await
    .expect("ServingAddressesVerified Event");
    assert_eq!(
        (type_.as_str(), reason.as_str()),
        ("Normal", "Approved"),
        "{note}"
    );

    // Ready.
    let ready = wait_for(READY_TIMEOUT, || {
        let nodes = nodes.clone();
        async move { nodes.get("node-a").await.ok().filter(is_ready) }
    })
    .await;
    if ready.is_none() {
        let conditions = nodes
            .get("node-a")
            .await
            .ok()
            .and_then(|n| n.status)
            .and_then(|s| s.conditions);
        panic!(
            "Node node-a not Ready: {conditions:?}\n{}",
            context(&scene, controller, &node)
        );
    }
    lap("Node Ready");

    // The kubelet serves with that certificate: verified against the cluster CA alone, for
    // its IP and for its name, and not for another name.
    let by_ip = wait_for(Duration::from_secs(20), || async {
        kubelet_get(&scene.cp, &node, None, "/healthz").await.ok()
    })
    .await;
    assert_eq!(
        by_ip.as_deref(),
        Some("ok"),
        "kubelet at {} does not serve a certificate valid for {} from the cluster CA: {:?}",
        node.kubelet_url(),
        node.ip(),
        kubelet_get(&scene.cp, &node, None, "/healthz").await
    );
    let by_name = kubelet_get(&scene.cp, &node, Some("node-a"), "/healthz").await;
    assert_eq!(
        by_name.ok().as_deref(),
        Some("ok"),
        "serving certificate for DNS node-a"
    );
    let other = kubelet_get(&scene.cp, &node, Some("node-b"), "/healthz").await;
    assert!(
        other.is_err(),
        "certificate must not be valid for node-b: {other:?}"
    );
    // As `kubectl logs` reaches it: the apiserver dials the kubelet at the Node's InternalIP
    // and verifies its certificate with --kubelet-certificate-authority. (The node proxy
    // would be simpler but refuses loopback addresses.) A host-network pause Pod, bound to
    // the node by name (no scheduler here).
    let logs = pod_logs(&scene, &node).await;
    assert_eq!(
        logs.as_deref().ok(),
        Some(""),
        "apiserver → kubelet TLS: {logs:?}"
    );
    lap("kubelet TLS verified");
    assert!(node.exited().is_none(), "{}", node.log_tail(20));
}

/// Asserts the kubelet's client CSR gets a Warning `NotApproved` Event whose note starts with
/// `reason`, and then nothing: still pending, no certificate, no Node.
async fn assert_gets_nothing(
    scene: &Scene,
    controller: usize,
    node: &RealNode,
    reason: &str,
    node_may_exist: bool,
) -> String {
    let admin = scene.admin.clone();
    let csr = csr_by(
        &admin,
        CLIENT_SIGNER,
        &node.bootstrap_user(),
        CLIENT_TIMEOUT,
    )
    .await
    .unwrap_or_else(|| {
        panic!(
            "no client CSR from the kubelet\n{}",
            context(scene, controller, node)
        )
    });
    let csr = csr.metadata.name.unwrap();
    let Some((type_, event_reason, note)) = event(scene, &csr, reason, CLIENT_TIMEOUT).await else {
        let events = scene.events_about("default", &csr).await;
        panic!(
            "no {reason} Event for {csr}: {events:?}\n{}",
            context(scene, controller, node)
        );
    };
    assert_eq!(
        (type_.as_str(), event_reason.as_str()),
        ("Warning", "NotApproved"),
        "{note}"
    );
    // A moment more for anything that would still happen.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let status = Api::<CertificateSigningRequest>::all(admin.clone())
        .get(&csr)
        .await
        .unwrap()
        .status
        .unwrap_or_default();
    assert!(
        status.conditions.unwrap_or_default().is_empty(),
        "CSR {csr} must stay pending"
    );
    assert!(
        status.certificate.is_none(),
        "CSR {csr} must get no certificate"
    );
    assert!(
        !node.dir().join("pki/kubelet-client-current.pem").exists(),
        "the kubelet must have no client certificate"
    );
    if !node_may_exist {
        let nodes: Api<Node> = Api::all(admin);
        assert!(nodes.get_opt(node.name()).await.unwrap().is_none());
    }
    assert!(node.exited().is_none(), "{}", node.log_tail(20));
    note
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubelet_not_in_the_inventory_gets_nothing() {
    let _serial = SERIAL.lock().await;
    let test = "a_kubelet_not_in_the_inventory_gets_nothing";
    let Some((scene, controller)) = scene(test).await else {
        return;
    };
    let begin = Instant::now();
    let node = RealNode::start(&scene.cp, "stranger", Ipv4Addr::new(127, 0, 0, 3)).await;
    let note = assert_gets_nothing(&scene, controller, &node, "UnknownMachine", false).await;
    assert!(
        note.contains("stranger"),
        "the message names the node: {note}"
    );
    eprintln!("{test}: {note:?}; checked in {:.1?}", begin.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubelet_with_an_existing_nodes_name_gets_nothing() {
    let _serial = SERIAL.lock().await;
    let test = "a_kubelet_with_an_existing_nodes_name_gets_nothing";
    let Some((scene, controller)) = scene(test).await else {
        return;
    };
    let begin = Instant::now();
    // node-a is in the inventory and already a Node.
    let nodes: Api<Node> = Api::all(scene.admin.clone());
    let existing = Node {
        metadata: ObjectMeta {
            name: Some("node-a".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    nodes
        .create(&PostParams::default(), &existing)
        .await
        .unwrap();
    let impostor = RealNode::start(&scene.cp, "node-a", Ipv4Addr::new(127, 0, 0, 3)).await;
    let note = assert_gets_nothing(&scene, controller, &impostor, "NodeAlreadyExists", true).await;
    assert!(
        note.contains("node-a"),
        "the message names the node: {note}"
    );
    eprintln!("{test}: {note:?}; checked in {:.1?}", begin.elapsed());
}

// ---- Joining step by step, renewals, re-provisioning, the OpenShift shape ----

/// A certificate's serial number (hex) and `NotAfter` (Unix seconds).
fn serial_and_not_after(pem: &[u8]) -> (String, i64) {
    let (_, leaf) = x509_parser::pem::parse_x509_pem(pem).unwrap();
    let leaf = leaf.parse_x509().unwrap();
    (
        leaf.raw_serial_as_string(),
        leaf.validity().not_after.timestamp(),
    )
}

/// Asserts CSR `csr` got a Normal `Approved` Event whose note starts with `reason`; returns
/// the note.
async fn assert_approved_for(scene: &Scene, csr: &str, reason: &str) -> String {
    let Some((type_, event_reason, note)) = event(scene, csr, reason, CLIENT_TIMEOUT).await else {
        let events = scene.events_about("default", csr).await;
        panic!("no {reason} Event for {csr}: {events:?}");
    };
    assert_eq!(
        (type_.as_str(), event_reason.as_str()),
        ("Normal", "Approved"),
        "{note}"
    );
    note
}

/// The kubelet's client CSR (from its bootstrap credential) is approved by csr-approver for
/// `reason` and issued, and the Node registers. Returns (CSR name, certificate).
async fn client_joins(
    scene: &Scene,
    controller: usize,
    node: &RealNode,
    reason: &str,
) -> (String, Vec<u8>) {
    let admin = &scene.admin;
    let csr = csr_by(admin, CLIENT_SIGNER, &node.bootstrap_user(), CLIENT_TIMEOUT)
        .await
        .unwrap_or_else(|| {
            panic!(
                "no client CSR from the kubelet\n{}",
                context(scene, controller, node)
            )
        });
    let csr = csr.metadata.name.unwrap();
    let certificate = issued_certificate(admin, &csr, CLIENT_TIMEOUT)
        .await
        .unwrap_or_else(|| {
            panic!(
                "client CSR {csr} not approved and issued\n{}",
                context(scene, controller, node)
            )
        });
    assert_issued_by_cluster_ca(
        &scene.cp,
        &certificate,
        &format!("system:node:{}", node.name()),
    );
    assert_approved_for(scene, &csr, reason).await;
    let nodes: Api<Node> = Api::all(admin.clone());
    wait_for(CLIENT_TIMEOUT, || {
        let nodes = nodes.clone();
        async move { nodes.get_opt(node.name()).await.ok().flatten() }
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "Node {} never registered\n{}",
            node.name(),
            context(scene, controller, node)
        )
    });
    (csr, certificate)
}

/// The kubelet's serving CSR (not one of `earlier`) is approved for its verified addresses
/// and issued, and the Node goes Ready. Returns (CSR name, certificate).
async fn serving_and_ready(
    scene: &Scene,
    controller: usize,
    node: &RealNode,
    earlier: &[String],
) -> (String, Vec<u8>) {
    let admin = &scene.admin;
    let user = format!("system:node:{}", node.name());
    let csr = csr_by_except(admin, SERVING_SIGNER, &user, earlier, SERVING_TIMEOUT)
        .await
        .unwrap_or_else(|| panic!("no serving CSR\n{}", context(scene, controller, node)));
    let csr = csr.metadata.name.unwrap();
    let Some(certificate) = issued_certificate(admin, &csr, CLIENT_TIMEOUT).await else {
        let events = scene.events_about("default", &csr).await;
        panic!(
            "serving CSR {csr} not approved and issued: {events:?}\n{}",
            context(scene, controller, node)
        );
    };
    assert_issued_by_cluster_ca(&scene.cp, &certificate, &user);
    assert_approved_for(scene, &csr, "ServingAddressesVerified").await;
    wait_node_ready(scene, controller, node).await;
    (csr, certificate)
}

async fn wait_node_ready(scene: &Scene, controller: usize, node: &RealNode) -> Node {
    let nodes: Api<Node> = Api::all(scene.admin.clone());
    let ready = wait_for(READY_TIMEOUT, || {
        let nodes = nodes.clone();
        async move { nodes.get(node.name()).await.ok().filter(is_ready) }
    })
    .await;
    ready.unwrap_or_else(|| {
        panic!(
            "Node {} not Ready\n{}",
            node.name(),
            context(scene, controller, node)
        )
    })
}

/// The Ready condition's (lastTransitionTime, lastHeartbeatTime).
fn ready_times(node: &Node) -> (Option<String>, Option<String>) {
    let condition = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
    (
        condition.and_then(|c| c.last_transition_time.as_ref().map(|t| t.0.to_string())),
        condition.and_then(|c| c.last_heartbeat_time.as_ref().map(|t| t.0.to_string())),
    )
}

/// The serial number of the certificate in the kubelet's `pki/kubelet-<kind>-current.pem`
/// (`kind`: `client` or `server`).
fn kubelet_current_serial(node: &RealNode, kind: &str) -> Option<String> {
    let path = node.dir().join(format!("pki/kubelet-{kind}-current.pem"));
    let data = std::fs::read(path).ok()?;
    x509_parser::pem::Pem::iter_from_buffer(&data)
        .filter_map(Result::ok)
        .find(|pem| pem.label == "CERTIFICATE")
        .and_then(|pem| Some(pem.parse_x509().ok()?.raw_serial_as_string()))
}

/// Waits (≤ 60 s) until the kubelet's current `kind` certificate is no longer the one with
/// `old_serial`, and returns the CSR (for `signer`, from `user`) that certificate was
/// issued for. Not necessarily the first renewal CSR seen: when the client certificate
/// rotates, the kubelet closes its connections, and a serving rotation waiting for its
/// certificate then gives up that CSR and makes another.
async fn kubelet_renewed(
    scene: &Scene,
    node: &RealNode,
    kind: &str,
    signer: &str,
    user: &str,
    old_serial: &str,
) -> Option<String> {
    let api: Api<CertificateSigningRequest> = Api::all(scene.admin.clone());
    wait_for(Duration::from_secs(60), || {
        let api = api.clone();
        async move {
            let current = kubelet_current_serial(node, kind).filter(|s| s != old_serial)?;
            api.list(&Default::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|csr| {
                    csr.spec.signer_name == signer
                        && csr.spec.username.as_deref() == Some(user)
                        && csr
                            .status
                            .as_ref()
                            .and_then(|s| s.certificate.as_ref())
                            .is_some_and(|c| serial_and_not_after(&c.0).0 == current)
                })
                .and_then(|csr| csr.metadata.name)
        }
    })
    .await
}

/// One of a kubelet's certificates, as first issued, whose renewal a test awaits.
struct Renewal<'a> {
    label: &'static str,
    /// The kubelet's `pki/kubelet-<file>-current.pem`.
    kubelet_file: &'static str,
    signer: &'static str,
    reason: &'static str,
    first_csr: &'a str,
    first: &'a [u8],
}

/// The node renews `renewal` by itself: the CSR is approved for `reason` and issued by the
/// cluster CA, the new certificate ends later than the first, and the kubelet takes a
/// renewed certificate into use (not always that one: see `kubelet_renewed`).
async fn assert_renewed(
    scene: &Scene,
    controller: usize,
    node: &RealNode,
    user: &str,
    renewal: Renewal<'_>,
    lap: &impl Fn(&str),
) {
    let Renewal {
        label,
        kubelet_file,
        signer,
        reason,
        first_csr,
        first,
    } = renewal;
    let csr = csr_by_except(
        &scene.admin,
        signer,
        user,
        &[first_csr.to_string()],
        RENEWAL_TIMEOUT,
    )
    .await
    .unwrap_or_else(|| {
        panic!(
            "no {label} renewal CSR from {user}\n{}",
            context(scene, controller, node)
        )
    });
    let csr = csr.metadata.name.unwrap();
    lap(&format!("{label} renewal CSR {csr} created"));
    let Some(renewed) = issued_certificate(&scene.admin, &csr, CLIENT_TIMEOUT).await else {
        let events = scene.events_about("default", &csr).await;
        panic!(
            "{label} renewal {csr} not approved and issued: {events:?}\n{}",
            context(scene, controller, node)
        );
    };
    let note = assert_approved_for(scene, &csr, reason).await;
    assert_issued_by_cluster_ca(&scene.cp, &renewed, user);
    let (old_serial, old_not_after) = serial_and_not_after(first);
    let (serial, not_after) = serial_and_not_after(&renewed);
    assert_ne!(serial, old_serial, "a new {label} certificate");
    assert!(
        not_after > old_not_after,
        "the renewed {label} certificate ends later"
    );
    let in_use = kubelet_renewed(scene, node, kubelet_file, signer, user, &old_serial)
        .await
        .unwrap_or_else(|| {
            panic!(
                "the kubelet did not take a renewed {label} certificate into use\n{}",
                node.log_tail(30)
            )
        });
    assert_approved_for(scene, &in_use, reason).await;
    lap(&format!(
        "{label} certificate renewed ({note:?}); the kubelet uses that of {in_use}"
    ));
}

/// The signing duration of the renewal test: kube-controller-manager backdates NotBefore by
/// 5 min and sets NotAfter = now + 2 min, so a kubelet renews at 70–90 % of those 7 min:
/// between at once and 78 s after each certificate is issued.
const SHORT_SIGNING_DURATION: &str = "2m";
/// From one certificate to the kubelet's renewal CSR (≤ 78 s), with slack.
const RENEWAL_TIMEOUT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubelet_renews_both_certificates() {
    let _serial = SERIAL.lock().await;
    let test = "a_kubelet_renews_both_certificates";
    let setup = Setup {
        signing_duration: Some(SHORT_SIGNING_DURATION),
        ..Setup::default()
    };
    let Some((scene, controller)) = scene_with(test, setup).await else {
        return;
    };
    let begin = Instant::now();
    let lap = |what: &str| eprintln!("{test}: {what} after {:.1?}", begin.elapsed());
    let node = RealNode::start(&scene.cp, "node-a", NODE_A_IP).await;
    let (client_csr, client) = client_joins(&scene, controller, &node, "NewNodeInventory").await;
    lap("client certificate issued, Node registered");
    let (serving_csr, serving) = serving_and_ready(&scene, controller, &node, &[]).await;
    lap("serving certificate issued, Node Ready");
    let nodes: Api<Node> = Api::all(scene.admin.clone());
    let (ready_since, _) = ready_times(&nodes.get("node-a").await.unwrap());
    let user = "system:node:node-a";
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    let (_, client_not_after) = serial_and_not_after(&client);
    assert!(
        client_not_after - now() <= 2 * 60 + 5,
        "client certificate valid for {} s: not --cluster-signing-duration={SHORT_SIGNING_DURATION}",
        client_not_after - now()
    );

    // Each certificate: renewed by the node itself, approved as a renewal.
    let client_renewal = Renewal {
        label: "client",
        kubelet_file: "client",
        signer: CLIENT_SIGNER,
        reason: "ClientRenewal",
        first_csr: &client_csr,
        first: &client,
    };
    assert_renewed(&scene, controller, &node, user, client_renewal, &lap).await;
    let serving_renewal = Renewal {
        label: "serving",
        kubelet_file: "server",
        signer: SERVING_SIGNER,
        reason: "ServingAddressesVerified",
        first_csr: &serving_csr,
        first: &serving,
    };
    assert_renewed(&scene, controller, &node, user, serving_renewal, &lap).await;

    // Still Ready all along, still reporting (with the renewed client certificate), and
    // serving with a certificate the cluster CA vouches for.
    let reported_after = now() + 1;
    let node_object = wait_for(Duration::from_secs(20), || {
        let nodes = nodes.clone();
        async move {
            let n = nodes.get("node-a").await.ok().filter(is_ready)?;
            let heartbeat = n
                .status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == "Ready")?
                .last_heartbeat_time
                .as_ref()?
                .0
                .as_second();
            (heartbeat > reported_after).then_some(n)
        }
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "Node node-a not Ready and reporting after the renewals\n{}",
            context(&scene, controller, &node)
        )
    });
    assert_eq!(
        ready_times(&node_object).0,
        ready_since,
        "the Node's Ready condition changed during the renewals"
    );
    let healthz = kubelet_get(&scene.cp, &node, None, "/healthz").await;
    assert_eq!(healthz.ok().as_deref(), Some("ok"));
    let pending = Api::<CertificateSigningRequest>::all(scene.admin.clone())
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|c| {
            c.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_none_or(|cs| cs.is_empty())
        })
        .count();
    lap(&format!("Node still Ready ({pending} CSR(s) pending)"));
    assert!(node.exited().is_none(), "{}", node.log_tail(20));
}

/// Stops `node` (its kubelet state goes with its directory: the next node of that name
/// starts from nothing) and deletes its Node, as when a host is re-provisioned.
async fn wipe(scene: &Scene, mut node: RealNode) {
    node.stop();
    let nodes: Api<Node> = Api::all(scene.admin.clone());
    nodes
        .delete(node.name(), &Default::default())
        .await
        .unwrap();
    let gone = wait_for(Duration::from_secs(20), || {
        let nodes = nodes.clone();
        let name = node.name().to_owned();
        async move { nodes.get_opt(&name).await.unwrap().is_none().then_some(()) }
    })
    .await;
    assert!(gone.is_some(), "Node {} not deleted", node.name());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reprovisioned_host_joins_again_once_the_admin_deletes_its_record() {
    let _serial = SERIAL.lock().await;
    let test = "a_reprovisioned_host_joins_again_once_the_admin_deletes_its_record";
    let Some((scene, controller)) = scene(test).await else {
        return;
    };
    let begin = Instant::now();
    let lap = |what: &str| eprintln!("{test}: {what} after {:.1?}", begin.elapsed());
    let first = RealNode::start(&scene.cp, "node-a", NODE_A_IP).await;
    let (first_client, _) = client_joins(&scene, controller, &first, "NewNodeInventory").await;
    let (first_serving, _) = serving_and_ready(&scene, controller, &first, &[]).await;
    lap("node-a joined");

    // Re-provisioned: Node deleted, kubelet state wiped, a new bootstrap token.
    wipe(&scene, first).await;
    let second = RealNode::start(&scene.cp, "node-a", NODE_A_IP).await;
    lap("node-a wiped and started again");
    let csr = csr_by(
        &scene.admin,
        CLIENT_SIGNER,
        &second.bootstrap_user(),
        CLIENT_TIMEOUT,
    )
    .await
    .unwrap_or_else(|| {
        panic!(
            "no client CSR from the new kubelet\n{}",
            context(&scene, controller, &second)
        )
    });
    let csr = csr.metadata.name.unwrap();
    // Inventory only, no Machine: the name's identity was issued once (its NodeIdentity
    // says so, whatever became of the CSR); only the admin can say the earlier host is gone.
    let Some((type_, reason, note)) =
        event(&scene, &csr, "DuplicateClientRequest", CLIENT_TIMEOUT).await
    else {
        let events = scene.events_about("default", &csr).await;
        panic!(
            "no DuplicateClientRequest Event for {csr}: {events:?}\n{}",
            context(&scene, controller, &second)
        );
    };
    assert_eq!(
        (type_.as_str(), reason.as_str()),
        ("Warning", "NotApproved"),
        "{note}"
    );
    assert!(
        note.contains(&first_client)
            && note.contains("kubectl delete nodeidentity node-a")
            && note.contains(&format!("kubectl delete csr {first_client}")),
        "the message names the earlier CSR and the remedy: {note}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(scene.condition(&csr).await, None, "{csr} stays pending");
    assert!(
        !second.dir().join("pki/kubelet-client-current.pem").exists(),
        "the new kubelet has no client certificate yet"
    );
    lap(&format!("new CSR pending: {note:?}"));

    // The admin's explicit word that the earlier host is gone: its record, and its CSR
    // (which the CSR cleaner would delete an hour after its approval).
    let csrs: Api<CertificateSigningRequest> = Api::all(scene.admin.clone());
    csrs.delete(&first_client, &Default::default())
        .await
        .unwrap();
    let records: Api<NodeIdentity> = Api::all(scene.admin.clone());
    records.delete("node-a", &Default::default()).await.unwrap();
    let deleted = Instant::now();
    // The deletion itself re-checks the node's pending CSRs: well within the 30 s requeue.
    let certificate = issued_certificate(&scene.admin, &csr, Duration::from_secs(10))
        .await
        .unwrap_or_else(|| {
            panic!(
                "{csr} not approved within 10 s of the deletion of {first_client} and NodeIdentity node-a\n{}",
                context(&scene, controller, &second)
            )
        });
    lap(&format!(
        "new CSR approved {:.1?} after the earlier one and the record were deleted",
        deleted.elapsed()
    ));
    assert_issued_by_cluster_ca(&scene.cp, &certificate, "system:node:node-a");
    assert_approved_for(&scene, &csr, "NewNodeInventory").await;
    serving_and_ready(&scene, controller, &second, &[first_serving]).await;
    lap("node-a Ready again");
    assert!(second.exited().is_none(), "{}", second.log_tail(20));
}

/// Bootstrap tokens may ask for new nodes; OpenShift Machines (the default:
/// `machine.openshift.io` in `openshift-machine-api`) vouch for them; no inventory.
const MACHINE_POLICY: &str = r#"
client:
  bootstrappers:
    - group: system:bootstrappers
serving:
  allowLoopback: true
"#;

fn machines(scene: &Scene) -> Api<DynamicObject> {
    Api::namespaced_with(
        scene.admin.clone(),
        "openshift-machine-api",
        &openshift_machine_resource(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reprovisioned_host_joins_again_with_a_new_machine() {
    let _serial = SERIAL.lock().await;
    let test = "a_reprovisioned_host_joins_again_with_a_new_machine";
    let setup = Setup {
        policy: Some(MACHINE_POLICY),
        machine_crds: true,
        ..Setup::default()
    };
    let Some((scene, controller)) = scene_with(test, setup).await else {
        return;
    };
    let begin = Instant::now();
    let lap = |what: &str| eprintln!("{test}: {what} after {:.1?}", begin.elapsed());
    let ip = Ipv4Addr::new(127, 0, 0, 4);
    let addresses = [("Hostname", "node-m"), ("InternalIP", "127.0.0.4")];
    scene.create_machine("node-m-gen1", &addresses).await;
    let first = RealNode::start(&scene.cp, "node-m", ip).await;
    let (first_client, _) = client_joins(&scene, controller, &first, "NewNodeMachine").await;
    scene.link_machine("node-m-gen1", "node-m").await;
    let (first_serving, _) = serving_and_ready(&scene, controller, &first, &[]).await;
    lap("node-m joined through Machine node-m-gen1");

    // Re-provisioned: the machine API deletes the old Machine and creates a new one for the
    // host; the earlier CSR stays (nobody deletes it).
    wipe(&scene, first).await;
    machines(&scene)
        .delete("node-m-gen1", &Default::default())
        .await
        .unwrap();
    // A new generation starts at its Machine's creation (less 10 s of clock skew): make the
    // earlier CSR older than that, as any real re-provisioning does.
    let earlier = scene.csr(&first_client).await;
    let created = earlier.metadata.creation_timestamp.unwrap().0.as_second();
    let unix_now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    let wait = (created + 12 - unix_now()).max(0);
    tokio::time::sleep(Duration::from_secs(wait as u64)).await;
    scene.create_machine("node-m-gen2", &addresses).await;
    let second = RealNode::start(&scene.cp, "node-m", ip).await;
    lap(&format!(
        "node-m wiped, Machine node-m-gen2 created ({wait} s wait), node started again"
    ));
    let (_, _) = client_joins(&scene, controller, &second, "NewNodeMachine").await;
    let note = assert_approved_for(
        &scene,
        &csr_by(
            &scene.admin,
            CLIENT_SIGNER,
            &second.bootstrap_user(),
            CLIENT_TIMEOUT,
        )
        .await
        .unwrap()
        .metadata
        .name
        .unwrap(),
        "NewNodeMachine",
    )
    .await;
    assert!(
        note.contains("node-m-gen2"),
        "the new Machine vouches: {note}"
    );
    assert!(
        scene.condition(&first_client).await.is_some(),
        "the earlier CSR {first_client} is still there, approved"
    );
    scene.link_machine("node-m-gen2", "node-m").await;
    serving_and_ready(&scene, controller, &second, &[first_serving]).await;
    lap("node-m Ready again through Machine node-m-gen2");
    assert!(second.exited().is_none(), "{}", second.log_tail(20));
}

/// OpenShift's defaults, plus loopback SANs (the test nodes live on 127.0.0.x).
const OPENSHIFT_POLICY: &str = r#"
serving:
  allowLoopback: true
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openshift_node_joins_with_the_node_bootstrapper_token_and_a_machine() {
    let _serial = SERIAL.lock().await;
    let test = "an_openshift_node_joins_with_the_node_bootstrapper_token_and_a_machine";
    let setup = Setup {
        policy: Some(OPENSHIFT_POLICY),
        machine_crds: true,
        ..Setup::default()
    };
    let Some((scene, controller)) = scene_with(test, setup).await else {
        return;
    };
    let begin = Instant::now();
    let lap = |what: &str| eprintln!("{test}: {what} after {:.1?}", begin.elapsed());
    // The machine controller reports the instance's addresses before its kubelet boots.
    let name = "worker-0";
    scene
        .create_machine(
            "cluster-worker-0",
            &[("Hostname", name), ("InternalIP", "127.0.0.5")],
        )
        .await;
    let node = RealNode::start_with(
        &scene.cp,
        name,
        Ipv4Addr::new(127, 0, 0, 5),
        Bootstrap::openshift(),
    )
    .await;
    assert_eq!(node.bootstrap_user(), BOOTSTRAPPER);
    let (client_csr, _) = client_joins(&scene, controller, &node, "NewNodeMachine").await;
    let request = scene.csr(&client_csr).await.spec;
    for group in BOOTSTRAPPER_GROUPS {
        assert!(
            request.groups.iter().flatten().any(|g| g == group),
            "the requester is in {group}: {:?}",
            request.groups
        );
    }
    let note = event(&scene, &client_csr, "NewNodeMachine", CLIENT_TIMEOUT)
        .await
        .unwrap()
        .2;
    assert!(
        note.contains("cluster-worker-0"),
        "the Machine vouches: {note}"
    );
    lap("client certificate issued, Node registered");
    // The machine controller links the Machine to the Node it registered.
    scene.link_machine("cluster-worker-0", name).await;
    let (serving_csr, _) = serving_and_ready(&scene, controller, &node, &[]).await;
    let note = event(
        &scene,
        &serving_csr,
        "ServingAddressesVerified",
        CLIENT_TIMEOUT,
    )
    .await
    .unwrap()
    .2;
    lap(&format!(
        "serving certificate issued ({note:?}), Node Ready"
    ));
    let by_name = kubelet_get(&scene.cp, &node, Some(name), "/healthz").await;
    assert_eq!(by_name.ok().as_deref(), Some("ok"));
    assert!(node.exited().is_none(), "{}", node.log_tail(20));
}
