//! Real kubelets (v1.37.2, built by scripts/node-assets.sh) with their own containerd join a
//! real control plane through a bootstrap token, and csr-approver — the binary under its
//! ServiceAccount and the RBAC of deploy/ — is the only approver; kube-controller-manager
//! only signs. See tests/support/node.rs.
//!
//! Needs Linux and root (and scripts/node-packages.sh); elsewhere each test prints one line
//! saying why it is skipped and passes. The tests run one at a time.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod e2e;
mod support;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use e2e::{CLIENT_SIGNER, SERIAL, SERVING_SIGNER, Scene, SceneOptions, wait_for};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::{Node, Pod, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, LogParams, PostParams};
use support::node::{RealNode, SIGNING_DURATION, pause_image, unsupported};
use support::{ControlPlane, Options};

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

/// Scene with real-node support and csr-approver running; `None` (after printing why) where
/// real nodes cannot run.
async fn scene(test: &str) -> Option<(Scene, usize)> {
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
    let cp = ControlPlane::start_with(Options { real_nodes: true });
    let mut scene = Scene::on(
        cp,
        SceneOptions {
            machine_crds: false,
            policy: Some(POLICY),
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
                    csr.spec.signer_name == signer && csr.spec.username.as_deref() == Some(username)
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
